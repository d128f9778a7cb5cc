//! Publish: turns each new set of inputs into a snapshot and makes it live.
//!
//! The sources debounce bursts of changes; inputs that arrive while a translation runs replace
//! each other in the watch channel, so only the newest is translated next. Translation runs on
//! the blocking pool (it is pure and can take a while at tens of thousands of hosts); problems
//! are logged when they first appear.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portico_proxy::Proxy;
use tokio::sync::watch;
use tracing::{error, info, warn};

use k8s_openapi::api::networking::v1::IngressLoadBalancerStatus;

use k8s_openapi::api::networking::v1::Ingress;

use crate::inputs::{Inputs, ObjectKey, Objects};
use crate::problem::Problem;
use crate::translate::{self, Options};
use portico_crds::{IngressClassParametersStatus, RoutePolicyStatus, TargetStatus};

/// What the last publish did, for the status writer and the event recorder.
#[derive(Debug, Default)]
pub struct Report {
    /// 0 until the first configuration is live.
    pub generation: u64,
    pub problems: Vec<Problem>,
    /// Every Ingress, sorted by namespace and name (the inputs' own list when it already is:
    /// a report copies no Ingress).
    pub ingresses: Objects<Ingress>,
    /// The keys of the Ingresses Portico serves (translate's set, shared).
    pub served: Arc<BTreeSet<ObjectKey>>,
    /// Every RoutePolicy: its generation, its targets' fate, its current status.
    pub route_policies: BTreeMap<ObjectKey, RoutePolicyInfo>,
    /// Every IngressClassParameters, by name.
    pub class_parameters: BTreeMap<String, ClassParametersInfo>,
    /// When this configuration went live (Unix milliseconds).
    pub published_at_millis: i64,
    /// Time from the change to live (debounce, translate and swap).
    pub publish_time: Duration,
    /// Endpoints EndpointSlices list as not ready, by Service (namespace, name), for the
    /// status page (the snapshot holds only the ready ones).
    pub not_ready: BTreeMap<ObjectKey, Vec<String>>,
}

impl Report {
    /// The Ingresses Portico serves, by namespace and name.
    pub fn served_ingresses(&self) -> impl Iterator<Item = &Ingress> {
        self.split(true)
    }

    /// Every other Ingress (another class), so status Portico wrote can be cleared.
    pub fn other_ingresses(&self) -> impl Iterator<Item = &Ingress> {
        self.split(false)
    }

    /// A served Ingress, by namespace and name.
    pub fn served_ingress(&self, namespace: &str, name: &str) -> Option<&Ingress> {
        let at = self
            .ingresses
            .binary_search_by(|i| key_of(i).cmp(&(namespace, name)))
            .ok()?;
        let key = (namespace.to_string(), name.to_string());
        self.served
            .contains(&key)
            .then(|| self.ingresses.get(at).map(|i| &**i))
            .flatten()
    }

    /// One walk over the sorted Ingresses beside the sorted served keys: no lookups, no copies.
    fn split(&self, served: bool) -> impl Iterator<Item = &Ingress> {
        let mut keys = self.served.iter().peekable();
        self.ingresses
            .iter()
            .filter(move |i| {
                let key = key_of(i);
                while keys
                    .next_if(|(ns, name)| (ns.as_str(), name.as_str()) < key)
                    .is_some()
                {}
                keys.peek()
                    .is_some_and(|(ns, name)| (ns.as_str(), name.as_str()) == key)
                    == served
            })
            .map(|i| &**i)
    }
}

/// An Ingress's namespace and name, borrowed.
pub fn key_of(ingress: &Ingress) -> (&str, &str) {
    (
        ingress.metadata.namespace.as_deref().unwrap_or_default(),
        ingress.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The load-balancer status an Ingress carries now.
pub fn load_balancer(ingress: &Ingress) -> Option<&IngressLoadBalancerStatus> {
    ingress.status.as_ref()?.load_balancer.as_ref()
}

/// Addresses of endpoints whose `conditions.ready` is false, by Service.
fn not_ready_endpoints(inputs: &Inputs) -> BTreeMap<ObjectKey, Vec<String>> {
    let mut out: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
    for slice in &inputs.endpoint_slices {
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        for ep in &slice.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                let key = (
                    slice.metadata.namespace.clone().unwrap_or_default(),
                    service.clone(),
                );
                out.entry(key)
                    .or_default()
                    .extend(ep.addresses.iter().cloned());
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

/// Problems counted by reason code, for `portico_config_problems`.
pub fn problems_by_reason(problems: &[Problem]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in problems {
        *out.entry(p.reason.code().to_string()).or_default() += 1;
    }
    out
}

/// What the RoutePolicy status writer needs of one RoutePolicy.
#[derive(Debug, Default)]
pub struct RoutePolicyInfo {
    pub generation: Option<i64>,
    pub targets: Vec<TargetStatus>,
    /// Fields an older RoutePolicy sets for the same routes (it loses them).
    pub conflicts: Vec<String>,
    /// Problems found in its fields.
    pub problems: Vec<String>,
    pub current: Option<RoutePolicyStatus>,
}

/// What the status writer and the event recorder need of one IngressClassParameters.
#[derive(Debug, Default)]
pub struct ClassParametersInfo {
    pub generation: Option<i64>,
    pub uid: Option<String>,
    /// Problems found in its fields.
    pub problems: Vec<String>,
    /// Portico's IngressClasses that name it.
    pub classes: Vec<String>,
    /// Only other controllers' IngressClasses name it: its status and events are theirs.
    pub foreign: bool,
    pub current: Option<IngressClassParametersStatus>,
}

fn report(
    inputs: &Inputs,
    problems: Vec<Problem>,
    served: Arc<BTreeSet<ObjectKey>>,
    policy_status: BTreeMap<ObjectKey, crate::translate::policy::sources::RoutePolicyOutcome>,
    mut class_users: BTreeMap<String, Vec<String>>,
    generation: u64,
) -> Report {
    let named: BTreeSet<&str> = inputs
        .ingress_classes
        .iter()
        .filter_map(|c| c.spec.as_ref()?.parameters.as_ref())
        .filter(|p| {
            p.api_group.as_deref() == Some(portico_crds::GROUP)
                && p.kind == "IngressClassParameters"
        })
        .map(|p| p.name.as_str())
        .collect();
    let mut class_parameters = BTreeMap::new();
    for p in &inputs.class_parameters {
        let name = p.metadata.name.clone().unwrap_or_default();
        let found = problems
            .iter()
            .filter(|pr| pr.object.kind == "IngressClassParameters" && pr.object.name == name)
            .map(|pr| pr.reason.to_string())
            .collect();
        let classes = class_users.remove(&name).unwrap_or_default();
        let foreign = classes.is_empty() && named.contains(name.as_str());
        class_parameters.insert(
            name.clone(),
            ClassParametersInfo {
                generation: p.metadata.generation,
                uid: p.metadata.uid.clone(),
                problems: found,
                classes,
                foreign,
                current: p.status.clone(),
            },
        );
    }
    let mut route_policies = BTreeMap::new();
    for p in &inputs.route_policies {
        let key = (
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        );
        let outcome = policy_status.get(&key).cloned().unwrap_or_default();
        let found = problems
            .iter()
            .filter(|pr| {
                pr.object.kind == "RoutePolicy"
                    && pr.object.namespace == key.0
                    && pr.object.name == key.1
            })
            .map(|pr| pr.reason.to_string())
            .collect();
        route_policies.insert(
            key,
            RoutePolicyInfo {
                generation: outcome.generation,
                targets: outcome.targets,
                conflicts: outcome.conflicts,
                problems: found,
                current: p.status.clone(),
            },
        );
    }
    let sorted = |l: &[Arc<Ingress>]| l.is_sorted_by(|a, b| key_of(a) <= key_of(b));
    let ingresses = if sorted(&inputs.ingresses) {
        inputs.ingresses.clone()
    } else {
        let mut list = inputs.ingresses.to_vec();
        list.sort_by(|a, b| key_of(a).cmp(&key_of(b)));
        list.into()
    };
    Report {
        generation,
        problems,
        ingresses,
        served,
        route_policies,
        class_parameters,
        not_ready: not_ready_endpoints(inputs),
        ..Report::default()
    }
}

/// How long the webhook's index waits for more changes before rebuilding.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// Publishes every change of `inputs` until the sender is dropped.
pub async fn run(
    proxy: Proxy,
    mut inputs: watch::Receiver<Arc<Inputs>>,
    options: Options,
    reports: watch::Sender<Arc<Report>>,
) {
    let options = Arc::new(options);
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut memo = translate::Memo::default();
    loop {
        if inputs.changed().await.is_err() {
            return;
        }
        let changed_at = Instant::now();
        let current = inputs.borrow_and_update().clone();
        let opts = options.clone();
        let started = Instant::now();
        let for_translate = current.clone();
        let mut previous = std::mem::take(&mut memo);
        let built = tokio::task::spawn_blocking(move || {
            let mut opts = (*opts).clone();
            opts.now = now();
            let output = translate::translate_with(&for_translate, &opts, &mut previous);
            (output, previous)
        })
        .await;
        let output = match built {
            Ok((o, m)) => {
                memo = m;
                o
            }
            Err(e) => {
                error!(error = %e, "translation failed; the last configuration keeps serving");
                continue;
            }
        };
        let build_time = started.elapsed();
        // How many hosts were translated again when only a few Ingresses changed.
        let patched_hosts = memo.patched_hosts();

        let translate::Output {
            snapshot,
            problems: found,
            served,
            route_policy_status,
            class_parameter_users,
        } = output;
        let problems = found.len();
        // Nothing over every object happens before the swap: counts, problem logs and the
        // report come after it.
        let swap = Instant::now();
        let published = proxy.publish(snapshot, build_time);
        let swap_time = swap.elapsed();
        let since_change = current.gathered.map(|(at, _)| at.elapsed());
        let current_problems: BTreeSet<String> = found.iter().map(ToString::to_string).collect();
        for p in current_problems.difference(&reported) {
            warn!(problem = %p, "configuration problem");
        }
        for p in reported.difference(&current_problems) {
            info!(problem = %p, "configuration problem resolved");
        }
        reported = current_problems;
        match published {
            Ok(generation) => {
                let publish_time = changed_at.elapsed();
                proxy.metrics().set_problems(problems_by_reason(&found));
                proxy.metrics().published(publish_time);
                let (routes, certificates) = proxy
                    .live()
                    .map(|l| {
                        (
                            l.snapshot.routes.route_count(),
                            l.snapshot.tls.certificate_count(),
                        )
                    })
                    .unwrap_or_default();
                let mut r = report(
                    &current,
                    found,
                    served,
                    route_policy_status,
                    class_parameter_users,
                    generation,
                );
                r.published_at_millis = proxy.metrics().last_publish_millis();
                r.publish_time = publish_time;
                let _ = reports.send(Arc::new(r));
                info!(
                    generation,
                    routes,
                    certificates,
                    problems,
                    build_ms = build_time.as_secs_f64() * 1000.0,
                    patched_hosts,
                    gather_ms = current.gathered.map(|(_, d)| d.as_secs_f64() * 1000.0),
                    swap_ms = swap_time.as_secs_f64() * 1000.0,
                    since_change_ms = since_change.map(|d| d.as_secs_f64() * 1000.0),
                    "configuration published"
                )
            }
            Err(e) => {
                proxy.metrics().publish_failed();
                error!(error = %e, "publishing failed; the last configuration keeps serving")
            }
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
