//! The validating admission webhook: the same pure translate code, run on a submitted
//! Ingress or RoutePolicy against the controller's current inputs, so that an object that
//! would be a problem is refused by the API server instead of being reported afterwards.
//!
//! - [`review`]: an `admission.k8s.io/v1` AdmissionReview in, its answer out. Pure.
//! - [`Prepared`]: the latest inputs plus an index of Ingresses by host, built once per change,
//!   so a review translates only the handful of Ingresses the submitted one can interact with.
//! - [`server`]: the HTTPS server on its own port (rustls; certificate files re-read when they
//!   change).
//!
//! Which problems refuse an object is decided by [`rejects`]; see docs/webhook.md.

pub mod server;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use portico_crds::RoutePolicy;
use serde::{Deserialize, Serialize};

use crate::inputs::{Inputs, ObjectKey};
use crate::problem::{ObjectRef, Problem, Reason};
use crate::translate::{self, ClassFilter, Options};

/// At most this many warnings are returned (the API server caps their total size).
const MAX_WARNINGS: usize = 10;
/// Each warning is cut to this many characters (longer ones are truncated by the API server).
const MAX_WARNING_CHARS: usize = 240;

/// Does this problem refuse the object? Only problems the object alone (with the objects it
/// competes with) decides: a value that does not parse, a snippet, a host or path that is
/// invalid, a conflict it loses, a setting its class forbids. A missing or invalid Service or
/// Secret does not: it may be created (or fixed) a moment later (cert-manager, Helm ordering).
pub fn rejects(reason: &Reason) -> bool {
    match reason {
        Reason::InvalidHost { .. }
        | Reason::InvalidPath { .. }
        | Reason::UnknownPathType(_)
        | Reason::UnsupportedBackend
        | Reason::PathConflict { .. }
        | Reason::TlsConflict { .. }
        | Reason::HostOwnedElsewhere { .. }
        | Reason::DefaultBackendConflict { .. }
        | Reason::LimitExceeded { .. }
        | Reason::AnnotationDenied { .. }
        | Reason::InvalidPolicyField { .. }
        | Reason::InvalidAnnotation { .. }
        | Reason::SnippetIgnored { .. }
        | Reason::UnsupportedAccessControl { .. } => true,
        Reason::ServiceNotFound { .. }
        | Reason::ServicePortNotFound { .. }
        | Reason::ExternalNameDisabled { .. }
        | Reason::InvalidExternalName { .. }
        | Reason::SecretNotFound { .. }
        | Reason::InvalidCertificate { .. }
        | Reason::CertificateMismatch { .. }
        | Reason::CertificateExpired { .. }
        | Reason::BackendTlsSecret { .. }
        | Reason::AuthSecret { .. }
        | Reason::ErrorBackend { .. }
        | Reason::UnsupportedAnnotation { .. }
        | Reason::AnnotationNoEffect { .. }
        | Reason::DefaultCertificate { .. }
        | Reason::DefaultCertificateExpired
        | Reason::DefaultBackendService { .. }
        | Reason::Manifest { .. }
        | Reason::UnsupportedApiVersion { .. }
        | Reason::DuplicateObject { .. } => false,
    }
}

// ---------- AdmissionReview (admission.k8s.io/v1), the fields Portico reads and writes ----------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<Request>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    operation: String,
    #[serde(default)]
    object: Option<serde_json::Value>,
    #[serde(default)]
    old_object: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    kind: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut {
    api_version: &'static str,
    kind: &'static str,
    response: Response,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Status {
    code: u16,
    message: String,
}

/// A body that is not an AdmissionReview at all: answered with HTTP 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadReview(String);

/// The decision on one review, before it is written as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why not (the problems, as the controller reports them), or empty.
    pub message: String,
    /// Problems that do not refuse the object, shown by kubectl as warnings.
    pub warnings: Vec<String>,
}

impl Decision {
    fn allow() -> Self {
        Decision {
            allowed: true,
            message: String::new(),
            warnings: Vec::new(),
        }
    }

    fn deny(message: String) -> Self {
        Decision {
            allowed: false,
            message,
            warnings: Vec::new(),
        }
    }
}

/// What a review is judged with besides the inputs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The translation options the controller publishes with.
    pub options: Options,
    /// The namespaces the controller watches (empty: all). Objects elsewhere are not
    /// Portico's and are allowed untouched.
    pub watch_namespaces: Vec<String>,
}

/// Reads the UID of a review (for an answer when something later fails), if the body is one.
pub fn review_uid(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ReviewIn>(body)
        .ok()
        .and_then(|r| r.request.map(|r| r.uid))
}

/// Answers one AdmissionReview. `prepared` is `None` until the source has loaded the
/// cluster's objects (the review is then refused: Portico cannot tell yet). `now` is seconds
/// since the Unix epoch, the creation time of a submitted object that carries none.
pub fn review(
    body: &[u8],
    prepared: Option<&Prepared>,
    settings: &Settings,
    now: i64,
) -> Result<Vec<u8>, BadReview> {
    let review: ReviewIn =
        serde_json::from_slice(body).map_err(|e| BadReview(format!("not JSON: {e}")))?;
    if review.api_version.as_deref() != Some("admission.k8s.io/v1")
        || review.kind.as_deref() != Some("AdmissionReview")
    {
        return Err(BadReview(
            "expected an admission.k8s.io/v1 AdmissionReview".into(),
        ));
    }
    let request = review
        .request
        .ok_or_else(|| BadReview("the AdmissionReview has no request".into()))?;
    let decision = match prepared {
        None => Decision::deny(
            "Portico has not loaded the cluster's objects yet; try again in a few seconds".into(),
        ),
        Some(p) => decide(&request, p, settings, now),
    };
    if !decision.allowed {
        tracing::info!(
            kind = %request.kind.kind,
            namespace = request.namespace.as_deref().unwrap_or(""),
            name = request.name.as_deref().unwrap_or(""),
            operation = %request.operation,
            reason = %decision.message,
            "admission webhook refused an object"
        );
    }
    answer(request.uid, decision)
}

/// The answer to a review that could not be decided (deadline, internal failure).
pub fn refusal(uid: String, message: String) -> Result<Vec<u8>, BadReview> {
    answer(uid, Decision::deny(message))
}

fn answer(uid: String, d: Decision) -> Result<Vec<u8>, BadReview> {
    let out = ReviewOut {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: Response {
            uid,
            allowed: d.allowed,
            status: (!d.allowed).then_some(Status {
                code: 400,
                message: d.message,
            }),
            warnings: d.warnings,
        },
    };
    serde_json::to_vec(&out).map_err(|e| BadReview(format!("encoding the answer: {e}")))
}

fn decide(request: &Request, prepared: &Prepared, settings: &Settings, now: i64) -> Decision {
    if !matches!(request.operation.as_str(), "CREATE" | "UPDATE") {
        return Decision::allow();
    }
    let options = &settings.options;
    let watched = &settings.watch_namespaces;
    if !watched.is_empty()
        && !request
            .namespace
            .as_ref()
            .is_some_and(|ns| watched.contains(ns))
    {
        return Decision::allow();
    }
    let Some(object) = request.object.as_ref() else {
        return Decision::deny("the request holds no object".into());
    };
    let gvk = &request.kind;
    let old = if request.operation == "UPDATE" {
        request.old_object.as_ref()
    } else {
        None
    };
    match (gvk.group.as_str(), gvk.version.as_str(), gvk.kind.as_str()) {
        ("networking.k8s.io", "v1", "Ingress") => {
            let mut new = match parse::<Ingress>(object, request) {
                Ok(i) => i,
                Err(d) => return d,
            };
            // On CREATE the object may not carry its namespace yet: the request names it.
            if new.metadata.namespace.is_none() {
                new.metadata.namespace = request.namespace.clone();
            }
            if new.metadata.deletion_timestamp.is_some() {
                // Finalizers being removed: never block a deletion.
                return Decision::allow();
            }
            let old = old
                .and_then(|o| serde_json::from_value::<Ingress>(o.clone()).ok())
                .map(|mut o| {
                    o.metadata.namespace = new.metadata.namespace.clone();
                    o
                });
            let found = prepared.ingress_problems(new, options, now);
            let before = old
                .map(|o| prepared.ingress_problems(o, options, now))
                .unwrap_or_default();
            judge(found, &before)
        }
        (portico_crds::GROUP, "v1alpha1", "RoutePolicy") => {
            let new = match parse::<RoutePolicy>(object, request) {
                Ok(p) => p,
                Err(d) => return d,
            };
            if new.metadata.deletion_timestamp.is_some() {
                return Decision::allow();
            }
            let old = old.and_then(|o| serde_json::from_value::<RoutePolicy>(o.clone()).ok());
            let found = route_policy_problems(&new, request);
            let before = old
                .map(|o| route_policy_problems(&o, request))
                .unwrap_or_default();
            judge(found, &before)
        }
        // Not ours to judge (a webhook configuration broader than ours): allowed untouched.
        _ => Decision::allow(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    object: &serde_json::Value,
    request: &Request,
) -> Result<T, Decision> {
    serde_json::from_value(object.clone()).map_err(|e| {
        Decision::deny(format!(
            "{} {}: not a valid object: {e}",
            request.kind.kind,
            request.name.as_deref().unwrap_or("")
        ))
    })
}

/// Refuses on the rejecting problems `found` has that the previous version of the object did
/// not have (an update never fails for what was already there, so labels and finalizers of an
/// object created before the webhook can still change); the others are warnings.
fn judge(found: Vec<Problem>, before: &[Problem]) -> Decision {
    let before: BTreeSet<&Reason> = before.iter().map(|p| &p.reason).collect();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for p in found {
        if rejects(&p.reason) && !before.contains(&p.reason) {
            errors.push(p.to_string());
        } else if warnings.len() < MAX_WARNINGS {
            let mut w = p.to_string();
            if w.chars().count() > MAX_WARNING_CHARS {
                w = w.chars().take(MAX_WARNING_CHARS - 1).collect::<String>() + "…";
            }
            warnings.push(w);
        }
    }
    if errors.is_empty() {
        Decision {
            allowed: true,
            message: String::new(),
            warnings,
        }
    } else {
        Decision {
            allowed: false,
            message: errors.join("; "),
            warnings,
        }
    }
}

/// A RoutePolicy's problems: its fields through the same parser translate uses.
fn route_policy_problems(p: &RoutePolicy, request: &Request) -> Vec<Problem> {
    let ns = p
        .metadata
        .namespace
        .as_deref()
        .or(request.namespace.as_deref())
        .unwrap_or("default");
    let name = p
        .metadata
        .name
        .as_deref()
        .or(request.name.as_deref())
        .unwrap_or("");
    let object = ObjectRef::new("RoutePolicy", ns, name);
    let mut problems = Vec::new();
    translate::policy::from_spec(&p.spec.policy, &object, &mut problems);
    problems.sort();
    problems.dedup();
    problems
}

// ---------- the prepared inputs ----------

/// The namespaced objects of one namespace.
#[derive(Default)]
struct Namespaced {
    services: Vec<Arc<Service>>,
    endpoint_slices: Vec<Arc<EndpointSlice>>,
    secrets: Vec<Arc<Secret>>,
    route_policies: Vec<Arc<RoutePolicy>>,
}

/// The latest inputs, indexed for reviews: Ingresses by every host they could compete for,
/// and the other objects by namespace. Built once per change of the inputs.
pub struct Prepared {
    inputs: Arc<Inputs>,
    /// Host (`""` for rules without one) → indexes into `inputs.ingresses`.
    by_host: HashMap<String, Vec<usize>>,
    /// Ingresses with a `spec.defaultBackend` (they compete with each other).
    with_default_backend: Vec<usize>,
    namespaces: BTreeMap<String, Namespaced>,
}

impl Prepared {
    pub fn new(inputs: Arc<Inputs>) -> Self {
        let mut by_host: HashMap<String, Vec<usize>> = HashMap::new();
        let mut with_default_backend = Vec::new();
        for (i, ing) in inputs.ingresses.iter().enumerate() {
            for h in hosts(ing) {
                by_host.entry(h).or_default().push(i);
            }
            if ing
                .spec
                .as_ref()
                .is_some_and(|s| s.default_backend.is_some())
            {
                with_default_backend.push(i);
            }
        }
        let mut namespaces: BTreeMap<String, Namespaced> = BTreeMap::new();
        fn ns_of(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
            m.namespace.clone().unwrap_or_else(|| "default".into())
        }
        for s in &inputs.services {
            let e = namespaces.entry(ns_of(&s.metadata)).or_default();
            e.services.push(s.clone());
        }
        for s in &inputs.endpoint_slices {
            let e = namespaces.entry(ns_of(&s.metadata)).or_default();
            e.endpoint_slices.push(s.clone());
        }
        for s in &inputs.secrets {
            let e = namespaces.entry(ns_of(&s.metadata)).or_default();
            e.secrets.push(s.clone());
        }
        for p in &inputs.route_policies {
            let e = namespaces.entry(ns_of(&p.metadata)).or_default();
            e.route_policies.push(p.clone());
        }
        Prepared {
            inputs,
            by_host,
            with_default_backend,
            namespaces,
        }
    }

    /// The inputs this was built from.
    pub fn inputs(&self) -> &Arc<Inputs> {
        &self.inputs
    }

    /// The problems translate finds for `ingress` when it is added to (or replaces its
    /// namesake in) the inputs. Only the Ingresses it can compete with (a shared host, alias
    /// or `www.` twin; a default backend) and the objects of the namespaces involved are
    /// translated, so a review costs the same at 10 Ingresses or 10,000.
    pub fn ingress_problems(
        &self,
        mut ingress: Ingress,
        options: &Options,
        now: i64,
    ) -> Vec<Problem> {
        let namespace = ingress
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        ingress.metadata.namespace = Some(namespace.clone());
        let name = ingress.metadata.name.clone().unwrap_or_default();
        let classes = ClassFilter::new(
            &self.inputs.ingress_classes,
            &options.controller_name,
            &options.ingress_class,
            options.serve_classless,
        );
        if !classes.accepts(&ingress) {
            return Vec::new();
        }
        // An object not yet stored carries no creation time; as translate counts a missing
        // one as the oldest, it is given "now": it loses every conflict with stored objects.
        if ingress.metadata.creation_timestamp.is_none() {
            ingress.metadata.creation_timestamp = Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(now).unwrap_or_default(),
            ));
        }

        let key: ObjectKey = (namespace.clone(), name.clone());
        let mut related: BTreeSet<usize> = BTreeSet::new();
        for h in hosts(&ingress) {
            if let Some(list) = self.by_host.get(&h) {
                related.extend(list.iter().copied());
            }
        }
        if ingress
            .spec
            .as_ref()
            .is_some_and(|s| s.default_backend.is_some())
        {
            related.extend(self.with_default_backend.iter().copied());
        }
        let mut ingresses: Vec<Arc<Ingress>> = related
            .into_iter()
            .filter_map(|i| self.inputs.ingresses.get(i))
            .filter(|i| {
                let ns = i.metadata.namespace.as_deref().unwrap_or("default");
                let n = i.metadata.name.as_deref().unwrap_or("");
                (ns, n) != (key.0.as_str(), key.1.as_str())
            })
            .cloned()
            .collect();

        // The namespaces whose objects can matter to this Ingress's problems.
        let mut wanted: BTreeSet<String> = ingresses
            .iter()
            .map(|i| {
                i.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into())
            })
            .collect();
        wanted.insert(namespace.clone());
        wanted.extend(options.shared_certificate_namespaces.iter().cloned());
        for (ns, _) in options
            .default_certificate
            .iter()
            .chain(options.default_backend_service.iter())
        {
            wanted.insert(ns.clone());
        }
        // `namespace/name` references in annotations (backend TLS, client CA Secrets).
        for v in ingress.metadata.annotations.iter().flat_map(|a| a.values()) {
            if let Some((ns, _)) = v.split_once('/') {
                if !ns.is_empty() && ns.len() <= 63 && !ns.contains([' ', ',']) {
                    wanted.insert(ns.to_string());
                }
            }
        }
        ingresses.push(Arc::new(ingress));

        let mut inputs = Inputs {
            ingresses: ingresses.into(),
            ingress_classes: self.inputs.ingress_classes.clone(),
            class_parameters: self.inputs.class_parameters.clone(),
            ..Inputs::default()
        };
        for ns in &wanted {
            if let Some(n) = self.namespaces.get(ns) {
                inputs.services.extend(n.services.iter().cloned());
                inputs
                    .endpoint_slices
                    .extend(n.endpoint_slices.iter().cloned());
                inputs.secrets.extend(n.secrets.iter().cloned());
                inputs
                    .route_policies
                    .extend(n.route_policies.iter().cloned());
            }
            let from = (ns.clone(), String::new());
            for (k, v) in self.inputs.certificates.range(from.clone()..) {
                if &k.0 != ns {
                    break;
                }
                Arc::make_mut(&mut inputs.certificates).insert(k.clone(), v.clone());
            }
            for (k, v) in self.inputs.ca_bundles.range(from..) {
                if &k.0 != ns {
                    break;
                }
                Arc::make_mut(&mut inputs.ca_bundles).insert(k.clone(), v.clone());
            }
        }

        let mut opts = options.clone();
        opts.now = now;
        let out = translate::translate(&inputs, &opts);
        let me = ObjectRef::new("Ingress", &key.0, &key.1);
        out.problems
            .into_iter()
            .filter(|p| p.object == me)
            .collect()
    }
}

/// Every host an Ingress could compete for: its rules' hosts (`""` for a rule without one),
/// its TLS hosts, its `server-alias` names, and the `www.` twin of each (`from-to-www-redirect`).
fn hosts(i: &Ingress) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(spec) = &i.spec {
        for r in spec.rules.iter().flatten() {
            out.insert(r.host.clone().unwrap_or_default().to_ascii_lowercase());
        }
        for t in spec.tls.iter().flatten() {
            for h in t.hosts.iter().flatten() {
                out.insert(h.to_ascii_lowercase());
            }
        }
    }
    if let Some(a) = &i.metadata.annotations {
        for (k, v) in a {
            if k.ends_with("/server-alias") {
                for h in v.split([',', ' ', '\t', '\n']).filter(|h| !h.is_empty()) {
                    out.insert(h.to_ascii_lowercase());
                }
            }
        }
    }
    let twins: Vec<String> = out
        .iter()
        .filter(|h| !h.is_empty())
        .map(|h| match h.strip_prefix("www.") {
            Some(bare) => bare.to_string(),
            None => format!("www.{h}"),
        })
        .collect();
    out.extend(twins);
    out
}

#[cfg(test)]
mod tests;
