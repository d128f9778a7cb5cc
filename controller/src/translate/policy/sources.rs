//! The weaker policy sources, gathered once per translation: each class's
//! IngressClassParameters (defaults, HSTS, listener settings) and the RoutePolicies attached
//! to each Ingress.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// RoutePolicies by the Ingress they target, each already parsed, oldest first.
pub struct RoutePolicies {
    by_target: BTreeMap<ObjectKey, Vec<PolicyInput>>,
    /// Every RoutePolicy and its targets (for status).
    targets: Vec<(ObjectKey, Option<i64>, Vec<String>)>,
}

impl RoutePolicies {
    pub fn new(inputs: &Inputs, problems: &mut Vec<Problem>) -> Self {
        let mut policies: Vec<&RoutePolicy> =
            inputs.route_policies.iter().map(|p| p.as_ref()).collect();
        policies.sort_by(|a, b| {
            let key = |p: &RoutePolicy| {
                (
                    p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    p.metadata.namespace.clone(),
                    p.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let mut by_target: BTreeMap<ObjectKey, Vec<PolicyInput>> = BTreeMap::new();
        let mut targets = Vec::new();
        for p in policies {
            let ns = p
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = p.metadata.name.clone().unwrap_or_default();
            let object = ObjectRef::new("RoutePolicy", &ns, &name);
            let input = from_spec(&p.spec.policy, &object, problems);
            let mut names = Vec::new();
            for t in &p.spec.target_refs {
                let group_ok =
                    t.group.as_deref().unwrap_or("networking.k8s.io") == "networking.k8s.io";
                if t.kind != "Ingress" || !group_ok {
                    continue;
                }
                names.push(t.name.clone());
                by_target
                    .entry((ns.clone(), t.name.clone()))
                    .or_default()
                    .push(input.clone());
            }
            targets.push(((ns, name), p.metadata.generation, names));
        }
        RoutePolicies { by_target, targets }
    }

    /// The RoutePolicy settings for an Ingress: the oldest policy wins a field two set.
    pub fn for_ingress(&self, namespace: &str, name: &str) -> Option<PolicyInput> {
        let list = self
            .by_target
            .get(&(namespace.to_string(), name.to_string()))?;
        let mut merged = PolicyInput::default();
        for p in list.iter().rev() {
            merged.overlay(p);
        }
        Some(merged)
    }

    /// Each RoutePolicy's generation and targets, accepted when Portico serves the Ingress.
    pub fn status(
        &self,
        served: &std::collections::BTreeSet<ObjectKey>,
        exists: &std::collections::BTreeSet<ObjectKey>,
    ) -> BTreeMap<ObjectKey, (Option<i64>, Vec<TargetStatus>)> {
        let mut out = BTreeMap::new();
        for (key, generation, names) in &self.targets {
            let list = names
                .iter()
                .map(|n| {
                    let target = (key.0.clone(), n.clone());
                    let (accepted, reason, message) = if served.contains(&target) {
                        (
                            true,
                            "Accepted",
                            "the Ingress is served by Portico with this policy",
                        )
                    } else if exists.contains(&target) {
                        (
                            false,
                            "NotServed",
                            "the Ingress belongs to another ingress class",
                        )
                    } else {
                        (
                            false,
                            "IngressNotFound",
                            "no Ingress of this name in the namespace",
                        )
                    };
                    TargetStatus {
                        name: n.clone(),
                        accepted,
                        reason: reason.to_string(),
                        message: message.to_string(),
                    }
                })
                .collect();
            out.insert(key.clone(), (*generation, list));
        }
        out
    }
}
