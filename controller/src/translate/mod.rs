//! translate: Kubernetes objects in, one snapshot plus per-object problems out.
//!
//! Pure and deterministic: no I/O, no clock (`Options::now`), no randomness; every map is
//! ordered. A bad object becomes a [`Problem`] and is skipped; it never fails the whole table.

mod backends;
mod class;
mod incremental;
pub mod policy;
mod routes;
mod tls;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use portico_proxy::{Snapshot, TlsCertificate};

use crate::inputs::{Inputs, ObjectKey};
use crate::problem::{ObjectRef, Problem};

pub use class::{ClassFilter, DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION};

/// The controller name Portico's IngressClasses carry in `spec.controller`.
pub const CONTROLLER_NAME: &str = "portico.dev/ingress-controller";

/// Annotations that mark an Ingress as a canary of another (ingress-nginx's and Portico's).
pub const CANARY_ANNOTATIONS: [&str; 2] =
    ["nginx.ingress.kubernetes.io/canary", "portico.dev/canary"];

/// Settings of a translation that do not come from the objects.
#[derive(Clone, Debug)]
pub struct Options {
    /// `spec.controller` of the IngressClasses that are Portico's.
    pub controller_name: String,
    /// Serve Ingresses that name no class (manifest mode; `--watch-ingress-without-class`).
    pub serve_classless: bool,
    /// The class name the legacy `kubernetes.io/ingress.class` annotation must carry.
    pub ingress_class: String,
    /// The Secret served when no other certificate matches.
    pub default_certificate: Option<ObjectKey>,
    /// Served when `default_certificate` is absent or unusable (generated at start).
    pub fallback_certificate: Arc<TlsCertificate>,
    /// The Service taking requests no rule matches (its first port).
    pub default_backend_service: Option<ObjectKey>,
    /// Namespaces whose labelled certificates (`portico.dev/certificate: "true"`) any
    /// Ingress's TLS hosts may use; otherwise only the Ingress's own namespace is searched.
    pub shared_certificate_namespaces: Vec<String>,
    /// Forward to ExternalName Services.
    pub allow_external_name: bool,
    /// The first namespace to claim a host owns it; other namespaces' rules for it are refused.
    pub exclusive_host_namespaces: bool,
    /// Serve `ssl-passthrough` (ingress-nginx's `--enable-ssl-passthrough`); off, the
    /// annotation is reported and the Ingress is served terminated.
    pub enable_ssl_passthrough: bool,
    /// Where `auth-url` may point (`--auth-url-allowed`).
    pub auth_url_allowed: portico_proxy::access::external::AuthUrlPolicy,
    /// Seconds since the Unix epoch, for certificate validity checks.
    pub now: i64,
}

impl Options {
    pub fn new(fallback_certificate: Arc<TlsCertificate>) -> Self {
        Options {
            controller_name: CONTROLLER_NAME.to_string(),
            serve_classless: false,
            ingress_class: "portico".to_string(),
            default_certificate: None,
            fallback_certificate,
            default_backend_service: None,
            shared_certificate_namespaces: Vec::new(),
            allow_external_name: false,
            exclusive_host_namespaces: true,
            enable_ssl_passthrough: false,
            auth_url_allowed: Default::default(),
            now: 0,
        }
    }
}

/// What translate produces.
#[derive(Debug)]
pub struct Output {
    pub snapshot: Snapshot,
    /// Sorted, without duplicates.
    pub problems: Vec<Problem>,
    /// The Ingresses Portico serves (its class), as `(namespace, name)`.
    pub served: Arc<BTreeSet<ObjectKey>>,
    /// Each RoutePolicy's generation and the fate of its targets.
    pub route_policy_status: BTreeMap<ObjectKey, policy::sources::RoutePolicyOutcome>,
    /// Each IngressClassParameters that one of Portico's IngressClasses names, with those
    /// classes.
    pub class_parameter_users: BTreeMap<String, Vec<String>>,
}

/// An Ingress chosen for serving, with what every later step needs.
pub(crate) struct Selected<'a> {
    pub ingress: &'a Ingress,
    pub namespace: &'a str,
    pub name: &'a str,
    pub canary: bool,
    /// Its policy, from its annotations over the weaker sources (boxed: it is large, and
    /// the list of selected Ingresses is sorted by moving its entries).
    pub policy: Box<policy::PolicyInput>,
    /// The policies of its routes that RoutePolicies narrowed to a host or path apply to, by
    /// (rule host or "", path as written).
    pub narrowed: BTreeMap<(String, String), policy::PolicyInput>,
    /// For a canary: how requests are chosen for it.
    pub canary_input: policy::CanaryInput,
    /// Host-level TLS settings: client certificates, passthrough, aliases.
    pub host_tls: policy::client_tls::HostTlsInput,
    /// Its class's default certificate (`spec.tls.defaultCertificate` of the parameters), for
    /// its TLS hosts without a usable certificate of their own.
    pub class_certificate: Option<Arc<TlsCertificate>>,
}

impl Selected<'_> {
    /// Is the Ingress passed through (`ssl-passthrough`, allowed by the controller)? Its
    /// rules and TLS entries then serve nothing else.
    pub fn passthrough(&self, options: &Options) -> bool {
        self.host_tls.passthrough && options.enable_ssl_passthrough && !self.canary
    }

    /// Does the Ingress shape hosts other than its own: `server-alias`, `from-to-www-redirect`,
    /// or a `defaultBackend` (the oldest one takes every request no host takes)?
    pub fn reaches_other_hosts(&self) -> bool {
        let default_backend = self
            .ingress
            .spec
            .as_ref()
            .is_some_and(|s| s.default_backend.is_some());
        default_backend
            || !self.host_tls.aliases.is_empty()
            || self.policy.from_to_www_redirect == Some(true)
    }

    pub fn object(&self) -> ObjectRef {
        ObjectRef::new("Ingress", self.namespace, self.name)
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Builds the snapshot for `inputs`.
///
/// Every conflict is decided by age: Ingresses are ordered by `creationTimestamp`, then
/// namespace, then name. An Ingress without a timestamp (a manifest file) counts as the
/// oldest, so in manifest mode the order is namespace/name. Canaries always come after
/// primaries. Problems come back sorted and without duplicates; `snapshot.problems` is their
/// count.
pub fn translate(inputs: &Inputs, options: &Options) -> Output {
    translate_with(inputs, options, &mut Memo::default())
}

/// What one translation leaves for the next to reuse. Reuse never changes the result: a
/// translation with a memo equals one without.
#[derive(Debug, Default)]
pub struct Memo {
    backends: backends::BackendMemo,
    /// The previous translation, for patching it when only a few Ingresses changed.
    last: Option<incremental::Last>,
    /// How many hosts the last translation translated again, when it was a patch.
    patched_hosts: Option<usize>,
}

impl Memo {
    /// How many hosts the last translation translated again when it patched the one before;
    /// `None` when it translated in full.
    pub fn patched_hosts(&self) -> Option<usize> {
        self.patched_hosts
    }
}

/// [`translate`], reusing what `memo` holds from the previous translation and leaving this
/// one's results in it (the publisher keeps one across rebuilds). When only a few Ingresses
/// changed, only the hosts they touch are translated again (see `incremental`).
pub fn translate_with(inputs: &Inputs, options: &Options, memo: &mut Memo) -> Output {
    memo.patched_hosts = None;
    if let Some(output) = incremental::update(inputs, options, memo) {
        return output;
    }
    memo.last = None;
    let (output, cross_host) = build(
        inputs,
        &inputs.ingresses,
        options,
        &mut memo.backends,
        false,
    );
    memo.last = Some(incremental::Last::new(inputs, options, &output, cross_host));
    output
}

/// Translates `ingresses` (all of `inputs`' or a subset sharing hosts) with every other kind
/// of `inputs`. Also returns the Ingresses whose rules reach beyond their own hosts (server
/// aliases, www redirects, rule-less default backends). `keep_unused` keeps the memo's
/// backends this translation did not use (a partial translation does not use them all).
fn build(
    inputs: &Inputs,
    ingresses: &[Arc<Ingress>],
    options: &Options,
    backend_memo: &mut backends::BackendMemo,
    keep_unused: bool,
) -> (Output, BTreeSet<ObjectKey>) {
    let mut problems: Vec<Problem> = inputs.problems.clone();
    let classes = ClassFilter::new(
        &inputs.ingress_classes,
        &options.controller_name,
        &options.ingress_class,
        options.serve_classless,
    );

    let class_settings = policy::sources::class_settings(inputs, &mut problems);
    let route_policies = policy::sources::RoutePolicies::new(inputs, &mut problems);

    // Oldest first (a missing timestamp counts as oldest), then namespace/name: the order
    // decides every conflict.
    // Selected first, so the list below is allocated once at its size (10,000 entries of it
    // are megabytes, and a doubling growth would be a peak of memory at every full build).
    let accepted: Vec<&Ingress> = ingresses
        .iter()
        .map(|i| &**i)
        .filter(|i| classes.accepts(i))
        .collect();
    let mut selected: Vec<Selected<'_>> = accepted
        .into_iter()
        .map(|i| {
            let namespace = i.metadata.namespace.as_deref().unwrap_or("default");
            let name = i.metadata.name.as_deref().unwrap_or("");
            let annotations = i.metadata.annotations.as_ref();
            let canary = annotations.is_some_and(|a| {
                CANARY_ANNOTATIONS
                    .iter()
                    .any(|k| a.get(*k).is_some_and(|v| v == "true"))
            });
            let object = ObjectRef::new("Ingress", namespace, name);
            // Weakest first: the class's defaults, RoutePolicies, then annotations; then the
            // class's limits.
            let class = classes.parameters_of(i).and_then(|p| class_settings.get(p));
            let allowed = match (class, annotations) {
                (Some(c), Some(a)) => c.allowed_annotations(a, &object, &mut problems),
                _ => None,
            };
            let annotations = allowed.as_ref().or(annotations);
            let from_annotations = policy::from_annotations(annotations, &object, &mut problems);
            let build = |rp: Option<policy::PolicyInput>, problems: &mut Vec<Problem>| {
                let mut policy = class.map(|c| c.defaults.clone()).unwrap_or_default();
                if let Some(rp) = rp {
                    policy.overlay(&rp);
                }
                policy.overlay(&from_annotations);
                if let Some(c) = class {
                    c.clamp(&mut policy, &object, problems);
                }
                policy.resolve_ssl_secret(namespace, inputs, &object, problems);
                policy.resolve_access(
                    namespace,
                    inputs,
                    &options.auth_url_allowed,
                    &object,
                    problems,
                );
                policy
            };
            let policy = Box::new(build(
                route_policies.for_ingress(namespace, name),
                &mut problems,
            ));
            let mut narrowed = BTreeMap::new();
            let narrows = route_policies.narrows(namespace, name);
            for rule in i
                .spec
                .iter()
                .filter(|_| narrows)
                .flat_map(|s| s.rules.iter().flatten())
            {
                let host = rule.host.clone().unwrap_or_default();
                for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                    let path = p.path.clone().unwrap_or_default();
                    if narrowed.contains_key(&(host.clone(), path.clone())) {
                        continue;
                    }
                    if let Some(rp) = route_policies.for_route(namespace, name, &host, &path) {
                        let route = build(Some(rp), &mut problems);
                        narrowed.insert((host.clone(), path), route);
                    }
                }
            }
            let host_tls = policy::client_tls::from_annotations(
                annotations,
                namespace,
                &object,
                &mut problems,
            );
            let canary_input = if canary {
                policy::canary_of(annotations, &object, &mut problems)
            } else {
                policy::CanaryInput::default()
            };
            Selected {
                ingress: i,
                namespace,
                name,
                canary,
                policy,
                narrowed,
                canary_input,
                host_tls,
                class_certificate: class.and_then(|c| c.default_certificate.clone()),
            }
        })
        .collect();
    selected.sort_by(|a, b| {
        let ta = a.ingress.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let tb = b.ingress.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (ta, a.namespace, a.name).cmp(&(tb, b.namespace, b.name))
    });

    let owners = routes::host_owners(&selected, options.exclusive_host_namespaces);
    let aliases = routes::aliases(&selected, &owners, options, &mut problems);
    let tls::TlsBuild {
        table: tls_table,
        redirect_hosts,
        client_auth,
    } = tls::build(&selected, inputs, options, &owners, &aliases, &mut problems);
    let mut backends = backends::Backends::new(
        inputs,
        options.allow_external_name,
        std::mem::take(backend_memo),
    );
    let routes = routes::build(
        &selected,
        &owners,
        &redirect_hosts,
        &aliases,
        &mut backends,
        options,
        &mut problems,
    );
    let passthrough =
        routes::passthrough(&selected, &owners, &mut backends, options, &mut problems);
    *backend_memo = backends.into_memo(keep_unused);

    problems.sort();
    problems.dedup();
    let served: BTreeSet<ObjectKey> = selected
        .iter()
        .map(|s| (s.namespace.to_string(), s.name.to_string()))
        .collect();
    let cross_host = selected
        .iter()
        .filter(|s| s.reaches_other_hosts())
        .map(|s| (s.namespace.to_string(), s.name.to_string()))
        .collect();
    let exists: BTreeSet<ObjectKey> = ingresses
        .iter()
        .map(|i| {
            (
                i.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                i.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    let listener = classes
        .primary_parameters()
        .and_then(|p| class_settings.get(p))
        .map(|c| c.listener.clone())
        .unwrap_or_default();
    let output = Output {
        snapshot: Snapshot {
            routes,
            tls: tls_table,
            client_auth,
            passthrough,
            problems: problems.len(),
            listener,
        },
        problems,
        route_policy_status: route_policies.status(&served, &exists),
        class_parameter_users: classes.parameter_users(),
        served: Arc::new(served),
    };
    (output, cross_host)
}
