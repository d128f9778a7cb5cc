//! The weaker policy sources, gathered once per translation: each class's
//! IngressClassParameters (defaults, HSTS, listener settings) and the RoutePolicies attached
//! to each Ingress.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use portico_crds::{
    AccessLogFormat, IngressClassParameters, RoutePolicy, TargetStatus, TlsVersion,
};
use portico_proxy::{ListenerSettings, TlsCertificate, TrustedProxies};

use super::{from_spec, PolicyInput};
use crate::inputs::{Inputs, ObjectKey};
use crate::problem::{ObjectRef, Problem, Reason};

/// What one IngressClassParameters object gives.
#[derive(Clone, Debug, Default)]
pub struct ClassSettings {
    /// `spec.defaults`, the weakest policy source.
    pub defaults: PolicyInput,
    pub listener: ListenerSettings,
    /// `spec.limits.maxBodySize`.
    pub max_body_size: Option<u64>,
    /// `spec.limits.maxTimeout`.
    pub max_timeout: Option<std::time::Duration>,
    /// `spec.deniedAnnotations`.
    pub denied_annotations: Vec<String>,
    /// `spec.tls.defaultCertificate`, when its Secret holds a usable certificate.
    pub default_certificate: Option<Arc<TlsCertificate>>,
}

impl ClassSettings {
    /// Lowers what exceeds the class's limits, reporting each on `object`.
    pub fn clamp(&self, p: &mut PolicyInput, object: &ObjectRef, problems: &mut Vec<Problem>) {
        let mut report = |setting: &str, limit: String| {
            problems.push(Problem::new(
                object.clone(),
                Reason::LimitExceeded {
                    setting: setting.to_string(),
                    limit,
                },
            ));
        };
        if let Some(max) = self.max_body_size {
            let asked = p
                .max_body_size
                .unwrap_or(Some(portico_proxy::policy::DEFAULT_MAX_BODY_SIZE));
            if asked.is_none_or(|a| a > max) {
                report("proxy-body-size", format!("{max} bytes"));
                p.max_body_size = Some(Some(max));
            }
        }
        if let Some(max) = self.max_timeout {
            for (name, t) in [
                ("proxy-connect-timeout", &mut p.connect_timeout),
                ("proxy-read-timeout", &mut p.read_timeout),
                ("proxy-send-timeout", &mut p.send_timeout),
            ] {
                if t.is_some_and(|t| t > max) {
                    report(name, format!("{max:?}"));
                    *t = Some(max);
                }
            }
        }
    }

    /// The annotations without the denied ones (each reported on `object`).
    pub fn allowed_annotations(
        &self,
        annotations: &BTreeMap<String, String>,
        object: &ObjectRef,
        problems: &mut Vec<Problem>,
    ) -> Option<BTreeMap<String, String>> {
        if self.denied_annotations.is_empty() {
            return None;
        }
        let mut kept = annotations.clone();
        kept.retain(|key, _| {
            let name = key
                .strip_prefix(super::NGINX_PREFIX)
                .or_else(|| key.strip_prefix(super::PORTICO_PREFIX));
            let denied = name.is_some_and(|n| self.denied_annotations.iter().any(|d| d == n));
            if denied {
                problems.push(Problem::new(
                    object.clone(),
                    Reason::AnnotationDenied { key: key.clone() },
                ));
            }
            !denied
        });
        Some(kept)
    }
}

/// Every IngressClassParameters, by name.
pub fn class_settings(
    inputs: &Inputs,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, ClassSettings> {
    let mut out = BTreeMap::new();
    for p in &inputs.class_parameters {
        let name = p.metadata.name.clone().unwrap_or_default();
        let object = ObjectRef::new("IngressClassParameters", "", &name);
        out.insert(name, settings_of(p, inputs, &object, problems));
    }
    out
}

fn settings_of(
    p: &IngressClassParameters,
    inputs: &Inputs,
    object: &ObjectRef,
    problems: &mut Vec<Problem>,
) -> ClassSettings {
    let mut defaults = p
        .spec
        .defaults
        .as_ref()
        .map(|d| from_spec(d, object, problems))
        .unwrap_or_default();
    let tls = p.spec.tls.as_ref();
    if let Some(h) = tls.and_then(|t| t.hsts.as_ref()) {
        let mut value = format!(
            "max-age={}",
            h.max_age
                .unwrap_or(portico_crds::class_parameters::DEFAULT_HSTS_MAX_AGE)
                .max(0)
        );
        if h.include_sub_domains == Some(true) {
            value.push_str("; includeSubDomains");
        }
        if h.preload == Some(true) {
            value.push_str("; preload");
        }
        defaults.hsts = HeaderValue::from_str(&value).ok();
    }
    let proxy_protocol_from = match p.spec.proxy_protocol.as_ref() {
        Some(pp) if !pp.trusted_cidrs.is_empty() => {
            match TrustedProxies::parse(&pp.trusted_cidrs.join(",")) {
                Ok(t) => Some(t),
                Err(why) => {
                    problems.push(Problem::new(
                        object.clone(),
                        Reason::InvalidPolicyField {
                            field: "proxyProtocol.trustedCidrs".into(),
                            why,
                        },
                    ));
                    None
                }
            }
        }
        _ => None,
    };
    let mut field = |name: &str, why: String| {
        problems.push(Problem::new(
            object.clone(),
            Reason::InvalidPolicyField {
                field: name.into(),
                why,
            },
        ));
    };
    let trusted_proxies = if p.spec.trusted_proxies.is_empty() {
        None
    } else {
        match TrustedProxies::parse(&p.spec.trusted_proxies.join(",")) {
            Ok(t) => Some(t),
            Err(why) => {
                field("trustedProxies", why);
                None
            }
        }
    };
    let cipher_suites = match tls.map(|t| t.cipher_suites.as_slice()) {
        Some(names) if !names.is_empty() => match cipher_suites(names) {
            Ok(list) => Some(list),
            Err(why) => {
                field("tls.cipherSuites", why);
                None
            }
        },
        _ => None,
    };
    let default_certificate = tls
        .and_then(|t| t.default_certificate.as_ref())
        .and_then(|r| {
            match inputs
                .certificates
                .get(&(r.namespace.clone(), r.name.clone()))
            {
                Some(Ok(c)) => Some(c.clone()),
                Some(Err(e)) => {
                    field(
                        "tls.defaultCertificate",
                        format!("Secret {}/{}: {e}", r.namespace, r.name),
                    );
                    None
                }
                None => {
                    field(
                        "tls.defaultCertificate",
                        format!("Secret {}/{} not found", r.namespace, r.name),
                    );
                    None
                }
            }
        });
    let limits = p.spec.limits.as_ref();
    let max_body_size = match limits
        .and_then(|l| l.max_body_size.as_deref())
        .map(super::grammar::size)
    {
        Some(Ok(v)) => v,
        Some(Err(why)) => {
            field("limits.maxBodySize", why);
            None
        }
        None => None,
    };
    let max_timeout = match limits
        .and_then(|l| l.max_timeout.as_deref())
        .map(super::grammar::duration)
    {
        Some(Ok(v)) => Some(v),
        Some(Err(why)) => {
            field("limits.maxTimeout", why);
            None
        }
        None => None,
    };
    ClassSettings {
        defaults,
        max_body_size,
        max_timeout,
        denied_annotations: p.spec.denied_annotations.clone(),
        default_certificate,
        listener: ListenerSettings {
            tls13_only: tls.and_then(|t| t.min_version) == Some(TlsVersion::Tls13),
            proxy_protocol_from,
            trusted_proxies,
            cipher_suites,
            access_log_format: p
                .spec
                .access_log
                .as_ref()
                .and_then(|a| a.format)
                .map(|f| match f {
                    AccessLogFormat::Json => portico_proxy::access_log::Format::Json,
                    AccessLogFormat::Text => portico_proxy::access_log::Format::Text,
                }),
        },
    }
}

/// `tls.cipherSuites`: every name one Portico supports, and at least one TLS 1.3 suite.
fn cipher_suites(names: &[String]) -> Result<Vec<rustls::CipherSuite>, String> {
    let supported = portico_proxy::tls::cipher_suites();
    let mut out = Vec::new();
    let mut tls13 = false;
    for name in names {
        let Some((_, suite, is13)) = supported.iter().find(|(n, _, _)| n == name) else {
            let known: Vec<&str> = supported.iter().map(|(n, _, _)| n.as_str()).collect();
            return Err(format!(
                "{name:?} is not a supported cipher suite (supported: {})",
                known.join(", ")
            ));
        };
        tls13 |= is13;
        out.push(*suite);
    }
    if !tls13 {
        return Err("at least one TLS 1.3 suite is needed".into());
    }
    Ok(out)
}

/// One parsed RoutePolicy.
struct Parsed {
    key: ObjectKey,
    generation: Option<i64>,
    input: PolicyInput,
    /// The fields it sets, as dotted paths of its spec (`timeouts.read`).
    fields: BTreeSet<String>,
    /// Its Ingress targets: name, host, path.
    targets: Vec<(String, Option<String>, Option<String>)>,
}

/// A RoutePolicy attached to an Ingress, optionally narrowed to a rule host and a path.
struct Attached {
    /// Its index in `RoutePolicies::policies` (oldest first).
    policy: usize,
    host: Option<String>,
    path: Option<String>,
}

impl Attached {
    fn narrowed(&self) -> bool {
        self.host.is_some() || self.path.is_some()
    }

    /// Does it apply to the route of `host` (empty: the rule without host) and `path` (as
    /// the Ingress writes it)?
    fn covers(&self, host: &str, path: &str) -> bool {
        self.host.as_deref().is_none_or(|h| h == host)
            && self.path.as_deref().is_none_or(|p| p == path)
    }
}

/// What a RoutePolicy's status says, as translate found it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoutePolicyOutcome {
    pub generation: Option<i64>,
    pub targets: Vec<TargetStatus>,
    /// The fields an older RoutePolicy sets for the same route, which it loses (sorted).
    pub conflicts: Vec<String>,
}

/// RoutePolicies by the Ingress they target, each already parsed, oldest first (then
/// namespace/name). A target may be narrowed to the routes of one rule host and/or one path
/// (each as the Ingress writes it). When two RoutePolicies set the same field for the same
/// route, the older wins and the younger is reported as conflicted.
pub struct RoutePolicies {
    policies: Vec<Parsed>,
    by_ingress: BTreeMap<ObjectKey, Vec<Attached>>,
    /// The routes of each Ingress a RoutePolicy targets: (rule host or "", path as written or "").
    routes: BTreeMap<ObjectKey, BTreeSet<(String, String)>>,
}

impl RoutePolicies {
    pub fn new(inputs: &Inputs, problems: &mut Vec<Problem>) -> Self {
        let mut sorted: Vec<&RoutePolicy> =
            inputs.route_policies.iter().map(|p| p.as_ref()).collect();
        sorted.sort_by(|a, b| {
            let key = |p: &RoutePolicy| {
                (
                    p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    p.metadata.namespace.clone(),
                    p.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let mut policies = Vec::new();
        let mut by_ingress: BTreeMap<ObjectKey, Vec<Attached>> = BTreeMap::new();
        for p in sorted {
            let ns = p
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = p.metadata.name.clone().unwrap_or_default();
            let object = ObjectRef::new("RoutePolicy", &ns, &name);
            let input = from_spec(&p.spec.policy, &object, problems);
            let mut targets = Vec::new();
            for t in &p.spec.target_refs {
                let group_ok =
                    t.group.as_deref().unwrap_or("networking.k8s.io") == "networking.k8s.io";
                if t.kind != "Ingress" || !group_ok {
                    continue;
                }
                targets.push((t.name.clone(), t.host.clone(), t.path.clone()));
                by_ingress
                    .entry((ns.clone(), t.name.clone()))
                    .or_default()
                    .push(Attached {
                        policy: policies.len(),
                        host: t.host.clone(),
                        path: t.path.clone(),
                    });
            }
            policies.push(Parsed {
                key: (ns, name),
                generation: p.metadata.generation,
                input,
                fields: fields_set(&p.spec.policy),
                targets,
            });
        }
        // The routes of the Ingresses some policy targets (usually none of 10,000).
        let targeted: BTreeSet<(&str, &str)> = by_ingress
            .keys()
            .map(|(ns, name)| (ns.as_str(), name.as_str()))
            .collect();
        let mut routes: BTreeMap<ObjectKey, BTreeSet<(String, String)>> = BTreeMap::new();
        for i in inputs.ingresses.iter().filter(|_| !targeted.is_empty()) {
            let ns = i.metadata.namespace.as_deref().unwrap_or("default");
            let name = i.metadata.name.as_deref().unwrap_or_default();
            if !targeted.contains(&(ns, name)) {
                continue;
            }
            let set = routes
                .entry((ns.to_string(), name.to_string()))
                .or_default();
            for rule in i.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
                let host = rule.host.clone().unwrap_or_default();
                for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
                    set.insert((host.clone(), path.path.clone().unwrap_or_default()));
                }
            }
        }
        RoutePolicies {
            policies,
            by_ingress,
            routes,
        }
    }

    /// Merges `attached` (oldest first): the oldest policy wins a field two set.
    fn merge<'a>(&self, attached: impl DoubleEndedIterator<Item = &'a Attached>) -> PolicyInput {
        let mut merged = PolicyInput::default();
        for a in attached.rev() {
            if let Some(p) = self.policies.get(a.policy) {
                merged.overlay(&p.input);
            }
        }
        merged
    }

    /// The settings of the RoutePolicies that target the whole Ingress.
    pub fn for_ingress(&self, namespace: &str, name: &str) -> Option<PolicyInput> {
        let list = self
            .by_ingress
            .get(&(namespace.to_string(), name.to_string()))?;
        Some(self.merge(list.iter().filter(|a| !a.narrowed())))
    }

    /// Does a RoutePolicy narrowed to some of its routes target this Ingress?
    pub fn narrows(&self, namespace: &str, name: &str) -> bool {
        self.by_ingress
            .get(&(namespace.to_string(), name.to_string()))
            .is_some_and(|list| list.iter().any(Attached::narrowed))
    }

    /// The settings for one route of the Ingress (`host`: the rule's, "" without; `path` as
    /// written), when a RoutePolicy narrowed to it applies; otherwise `None` (the route takes
    /// [`Self::for_ingress`]).
    pub fn for_route(
        &self,
        namespace: &str,
        name: &str,
        host: &str,
        path: &str,
    ) -> Option<PolicyInput> {
        let list = self
            .by_ingress
            .get(&(namespace.to_string(), name.to_string()))?;
        if !list.iter().any(|a| a.narrowed() && a.covers(host, path)) {
            return None;
        }
        Some(self.merge(list.iter().filter(|a| a.covers(host, path))))
    }

    /// Each RoutePolicy's generation, targets (accepted when Portico serves the Ingress and,
    /// for a narrowed target, has such a route) and the fields it loses to older policies.
    pub fn status(
        &self,
        served: &BTreeSet<ObjectKey>,
        exists: &BTreeSet<ObjectKey>,
    ) -> BTreeMap<ObjectKey, RoutePolicyOutcome> {
        let mut conflicts: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for (key, list) in &self.by_ingress {
            let Some(routes) = self.routes.get(key) else {
                continue;
            };
            for (i, older) in list.iter().enumerate() {
                for younger in &list[i + 1..] {
                    if younger.policy == older.policy {
                        continue;
                    }
                    let shared_route = routes
                        .iter()
                        .any(|(h, p)| older.covers(h, p) && younger.covers(h, p));
                    let (Some(o), Some(y)) = (
                        self.policies.get(older.policy),
                        self.policies.get(younger.policy),
                    ) else {
                        continue;
                    };
                    if !shared_route {
                        continue;
                    }
                    for field in o.fields.intersection(&y.fields) {
                        conflicts.entry(younger.policy).or_default().insert(format!(
                            "field {field} for Ingress {}: RoutePolicy {}/{} is older and wins",
                            key.1, o.key.0, o.key.1
                        ));
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        for (index, p) in self.policies.iter().enumerate() {
            let targets = p
                .targets
                .iter()
                .map(|(name, host, path)| {
                    let target = (p.key.0.clone(), name.clone());
                    let narrowed = host.is_some() || path.is_some();
                    let has_route = self.routes.get(&target).is_some_and(|routes| {
                        routes.iter().any(|(h, pa)| {
                            host.as_deref().is_none_or(|x| x == h)
                                && path.as_deref().is_none_or(|x| x == pa)
                        })
                    });
                    let (accepted, reason, message) = if !served.contains(&target) {
                        if exists.contains(&target) {
                            (
                                false,
                                "NotServed",
                                "the Ingress belongs to another ingress class".to_string(),
                            )
                        } else {
                            (
                                false,
                                "IngressNotFound",
                                "no Ingress of this name in the namespace".to_string(),
                            )
                        }
                    } else if narrowed && !has_route {
                        (
                            false,
                            "NoMatchingRoute",
                            format!(
                                "the Ingress has no path{}{}",
                                path.as_deref().map(|p| format!(" {p}")).unwrap_or_default(),
                                host.as_deref()
                                    .map(|h| format!(" for host {h:?}"))
                                    .unwrap_or_default()
                            ),
                        )
                    } else if narrowed {
                        (
                            true,
                            "Accepted",
                            "the Ingress's matching routes are served by Portico with this policy"
                                .to_string(),
                        )
                    } else {
                        (
                            true,
                            "Accepted",
                            "the Ingress is served by Portico with this policy".to_string(),
                        )
                    };
                    TargetStatus {
                        name: name.clone(),
                        accepted,
                        reason: reason.to_string(),
                        message,
                    }
                })
                .collect();
            out.insert(
                p.key.clone(),
                RoutePolicyOutcome {
                    generation: p.generation,
                    targets,
                    conflicts: conflicts
                        .remove(&index)
                        .map(|c| c.into_iter().collect())
                        .unwrap_or_default(),
                },
            );
        }
        out
    }
}

/// The fields a policy sets, as dotted paths of the RoutePolicy schema: an object whose
/// schema lists properties is descended into, anything else (a value, a list, a map such as
/// `headers.request.set`) is one field, replaced whole by a stronger source.
fn fields_set(policy: &portico_crds::PolicySpec) -> BTreeSet<String> {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        use kube::CustomResourceExt;
        serde_json::to_value(RoutePolicy::crd())
            .ok()
            .and_then(|crd| {
                crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
                    .cloned()
            })
            .unwrap_or_default()
    });
    fn walk(
        value: &serde_json::Value,
        schema: Option<&serde_json::Value>,
        prefix: &str,
        out: &mut BTreeSet<String>,
    ) {
        let properties = schema.and_then(|s| s.get("properties"));
        match (value, properties) {
            (serde_json::Value::Null, _) => {}
            (serde_json::Value::Object(fields), Some(properties)) => {
                for (k, v) in fields {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, properties.get(k), &path, out);
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.to_string());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    if let Ok(value) = serde_json::to_value(policy) {
        walk(&value, Some(schema), "", &mut out);
    }
    out
}
