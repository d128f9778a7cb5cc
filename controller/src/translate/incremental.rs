//! Incremental translation: after a change to a few Ingresses, only the Ingresses that share a
//! host with them (closed over shared hosts) are translated again, and the previous tables are
//! patched for those hosts.
//!
//! Every conflict translate decides (host ownership, paths, TLS Secrets, canaries, regex
//! hosts) is decided among the Ingresses of one host pattern, and a wildcard TLS host reaches
//! only the exact hosts one label below it; so the patched tables equal a full translation.
//! Whatever reaches further takes the full path: server aliases, www redirects and default
//! backends, wildcard hosts on a changed Ingress, ssl-passthrough and client certificates,
//! RoutePolicies, a change to any other kind or setting, a certificate crossing a validity
//! boundary, or a change too large to be worth it. Tests compare both paths over random
//! change sequences.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use portico_crds::IngressClassParameters;
use portico_proxy::{
    ClientAuthTable, HostPattern, ListenerSettings, PassthroughTable, RouteTable, Snapshot,
    TlsTable,
};

use super::{build, Memo, Options, Output};
use crate::inputs::{Inputs, ObjectKey, Objects};
use crate::problem::Problem;

/// Changes of more Ingresses than this (or a sixteenth of all) take the full path.
const MAX_CHANGED: usize = 64;

/// What the previous translation was made of and what it made.
pub(super) struct Last {
    /// The options, `now` aside (`Debug` text: compared once per translation).
    settings: String,
    /// The earliest time at which a certificate becomes valid or expires: from then on, a
    /// host's certificate choice may differ.
    validity_changes_at: i64,
    /// Sorted by namespace/name.
    ingresses: Objects<Ingress>,
    classes: Objects<IngressClass>,
    services: Objects<Service>,
    slices: Objects<EndpointSlice>,
    secrets: Objects<Secret>,
    class_parameters: Objects<IngressClassParameters>,
    source_problems: Vec<Problem>,
    index: HostIndex,
    /// Ingresses whose rules reach beyond their own hosts.
    cross_host: HashSet<ObjectKey>,
    routes: RouteTable,
    tls: TlsTable,
    client_auth: ClientAuthTable,
    passthrough: PassthroughTable,
    listener: ListenerSettings,
    problems: Vec<Problem>,
    served: Arc<BTreeSet<ObjectKey>>,
}

impl std::fmt::Debug for Last {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Last")
            .field("ingresses", &self.ingresses.len())
            .finish()
    }
}

/// Which hosts each Ingress names (rules and TLS), and which Ingresses name each host.
#[derive(Default)]
struct HostIndex {
    hosts_of: HashMap<ObjectKey, Vec<HostPattern>>,
    /// Sorted, without repeats (a Vec: most hosts are named by one Ingress, and a one-entry
    /// BTreeSet would cost a whole node per host).
    by_host: HashMap<HostPattern, Vec<ObjectKey>>,
}

impl HostIndex {
    fn insert(&mut self, key: ObjectKey, hosts: Vec<HostPattern>) {
        for h in &hosts {
            let keys = self.by_host.entry(h.clone()).or_default();
            if let Err(at) = keys.binary_search(&key) {
                keys.insert(at, key.clone());
            }
        }
        self.hosts_of.insert(key, hosts);
    }

    fn remove(&mut self, key: &ObjectKey) {
        let Some(hosts) = self.hosts_of.remove(key) else {
            return;
        };
        for h in hosts {
            if let Some(keys) = self.by_host.get_mut(&h) {
                if let Ok(at) = keys.binary_search(key) {
                    keys.remove(at);
                }
                if keys.is_empty() {
                    self.by_host.remove(&h);
                }
            }
        }
    }
}

fn key_of(i: &Ingress) -> (&str, &str) {
    (
        i.metadata.namespace.as_deref().unwrap_or("default"),
        i.metadata.name.as_deref().unwrap_or(""),
    )
}

fn owned_key(i: &Ingress) -> ObjectKey {
    let (ns, name) = key_of(i);
    (ns.to_string(), name.to_string())
}

/// The host patterns an Ingress names: rule hosts (a rule without host names the any-host
/// table) and TLS hosts.
fn hosts_of(i: &Ingress) -> Vec<HostPattern> {
    let mut out = Vec::new();
    if let Some(spec) = i.spec.as_ref() {
        for r in spec.rules.iter().flatten() {
            out.push(HostPattern::parse(r.host.as_deref()));
        }
        for t in spec.tls.iter().flatten() {
            for h in t.hosts.iter().flatten() {
                out.push(HostPattern::parse(Some(h)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The Ingresses sorted by key: the very same list when it is (the cluster source keeps it
/// sorted).
fn sorted(ingresses: &Objects<Ingress>) -> Objects<Ingress> {
    let mut v = ingresses.clone();
    if !v.is_sorted_by(|a, b| key_of(a) <= key_of(b)) {
        v.to_mut().sort_by(|a, b| key_of(a).cmp(&key_of(b)));
    }
    v
}

fn settings(options: &Options) -> String {
    let mut o = options.clone();
    o.now = 0;
    format!("{o:?}")
}

/// The first time after `now` at which a certificate of `inputs` (or the fallback) becomes
/// valid or expires.
fn validity_changes_at(inputs: &Inputs, options: &Options) -> i64 {
    inputs
        .certificates
        .values()
        .filter_map(|c| c.as_ref().ok())
        .chain(std::iter::once(&options.fallback_certificate))
        .flat_map(|c| [c.not_before, c.not_after.saturating_add(1)])
        .filter(|t| *t > options.now)
        .min()
        .unwrap_or(i64::MAX)
}

impl Last {
    pub(super) fn new(
        inputs: &Inputs,
        options: &Options,
        output: &Output,
        cross_host: BTreeSet<ObjectKey>,
    ) -> Last {
        let ingresses = sorted(&inputs.ingresses);
        let mut index = HostIndex::default();
        for i in &ingresses {
            index.insert(owned_key(i), hosts_of(i));
        }
        Last {
            settings: settings(options),
            validity_changes_at: validity_changes_at(inputs, options),
            ingresses,
            classes: inputs.ingress_classes.clone(),
            services: inputs.services.clone(),
            slices: inputs.endpoint_slices.clone(),
            secrets: inputs.secrets.clone(),
            class_parameters: inputs.class_parameters.clone(),
            source_problems: inputs.problems.clone(),
            index,
            cross_host: cross_host.into_iter().collect(),
            routes: output.snapshot.routes.clone(),
            tls: output.snapshot.tls.clone(),
            client_auth: output.snapshot.client_auth.clone(),
            passthrough: output.snapshot.passthrough.clone(),
            listener: output.snapshot.listener.clone(),
            problems: output.problems.clone(),
            served: output.served.clone(),
        }
    }

    /// Are the inputs other than Ingresses, and the settings, those of the last translation?
    fn same_world(&self, inputs: &Inputs, options: &Options) -> bool {
        inputs.route_policies.is_empty()
            && options.now < self.validity_changes_at
            && self.classes.same(&inputs.ingress_classes)
            && self.services.same(&inputs.services)
            && self.slices.same(&inputs.endpoint_slices)
            && self.secrets.same(&inputs.secrets)
            && self.class_parameters.same(&inputs.class_parameters)
            && self.source_problems == inputs.problems
            && self.settings == settings(options)
    }
}

/// One Ingress added, changed or removed: (key, before, after).
type Change = (ObjectKey, Option<Arc<Ingress>>, Option<Arc<Ingress>>);

/// The Ingresses that differ between two key-sorted lists; `None` past `limit` changes.
fn changes(before: &[Arc<Ingress>], after: &[Arc<Ingress>], limit: usize) -> Option<Vec<Change>> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < before.len() || j < after.len() {
        if out.len() > limit {
            return None;
        }
        match (before.get(i), after.get(j)) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) => match key_of(a).cmp(&key_of(b)) {
                std::cmp::Ordering::Equal => {
                    out.push((owned_key(a), Some(a.clone()), Some(b.clone())));
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Less => {
                    out.push((owned_key(a), Some(a.clone()), None));
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push((owned_key(b), None, Some(b.clone())));
                    j += 1;
                }
            },
            (Some(a), None) => {
                out.push((owned_key(a), Some(a.clone()), None));
                i += 1;
            }
            (None, Some(b)) => {
                out.push((owned_key(b), None, Some(b.clone())));
                j += 1;
            }
            (None, None) => break,
        }
    }
    Some(out)
}

/// The exact hosts' wildcard one label up: its TLS host may cover them.
fn wildcard_above(h: &HostPattern) -> Option<HostPattern> {
    match h {
        HostPattern::Exact(name) => name
            .split_once('.')
            .map(|(_, suffix)| HostPattern::Wildcard(suffix.to_string())),
        _ => None,
    }
}

/// The translation of `inputs` made by patching the memo's last one, when only a few
/// Ingresses changed and nothing reaches across hosts; `None` means translate in full. On
/// `None` the memo's last translation may be stale: the caller replaces it.
#[inline(never)]
pub(super) fn update(inputs: &Inputs, options: &Options, memo: &mut Memo) -> Option<Output> {
    let last = memo.last.as_mut()?;
    if !last.same_world(inputs, options) {
        return None;
    }
    let after = sorted(&inputs.ingresses);
    let limit = MAX_CHANGED.max(after.len() / 16);
    let changed = changes(&last.ingresses, &after, limit)?;

    // The hosts to translate again, and the Ingresses naming them (closed over their hosts).
    let mut hosts: BTreeSet<HostPattern> = BTreeSet::new();
    let mut keys: BTreeSet<ObjectKey> = BTreeSet::new();
    for (key, before, now) in &changed {
        if last.cross_host.contains(key) {
            return None;
        }
        for i in before.iter().chain(now) {
            for h in hosts_of(i) {
                if matches!(h, HostPattern::Wildcard(_)) {
                    return None;
                }
                hosts.insert(h);
            }
        }
        last.index.remove(key);
        if let Some(i) = now {
            last.index.insert(key.clone(), hosts_of(i));
            keys.insert(key.clone());
        }
    }
    let mut queue: Vec<HostPattern> = hosts.iter().cloned().collect();
    while let Some(h) = queue.pop() {
        if let Some(w) = wildcard_above(&h) {
            if last.index.by_host.contains_key(&w) && hosts.insert(w.clone()) {
                queue.push(w);
            }
        }
        let Some(naming) = last.index.by_host.get(&h) else {
            continue;
        };
        for key in naming {
            if !keys.insert(key.clone()) {
                continue;
            }
            if last.cross_host.contains(key) || keys.len() > limit {
                return None;
            }
            for h2 in last.index.hosts_of.get(key).into_iter().flatten() {
                if hosts.insert(h2.clone()) {
                    queue.push(h2.clone());
                }
            }
        }
    }
    if hosts
        .iter()
        .any(|h| last.client_auth.contains(h) || last.passthrough.contains(h))
    {
        return None;
    }

    let subset: Vec<Arc<Ingress>> = keys
        .iter()
        .filter_map(|(ns, name)| {
            after
                .binary_search_by(|i| key_of(i).cmp(&(ns.as_str(), name.as_str())))
                .ok()
                .map(|at| after[at].clone())
        })
        .collect();
    let (part, cross_host) = build(inputs, &subset, options, &mut memo.backends, true);
    let last = memo.last.as_mut()?;
    if !cross_host.is_empty()
        || !part.snapshot.client_auth.is_empty()
        || !part.snapshot.passthrough.is_empty()
    {
        return None;
    }
    let class_parameter_users = part.class_parameter_users;
    let part_hosts = part.snapshot.routes.into_hosts();
    let part_tls: Vec<_> = part
        .snapshot
        .tls
        .hosts()
        .into_iter()
        .map(|(h, c)| (h, c.clone()))
        .collect();
    if part_hosts
        .iter()
        .map(|(h, _)| h)
        .chain(part_tls.iter().map(|(h, _)| h))
        .any(|h| !hosts.contains(h))
    {
        return None;
    }

    let redone: HashSet<(&str, &str)> = keys
        .iter()
        .chain(changed.iter().map(|(k, _, _)| k))
        .map(|(ns, name)| (ns.as_str(), name.as_str()))
        .collect();
    let mut problems: Vec<Problem> = last
        .problems
        .iter()
        .filter(|p| {
            p.object.kind == "Ingress"
                && !redone.contains(&(p.object.namespace.as_str(), p.object.name.as_str()))
        })
        .cloned()
        .chain(part.problems)
        .collect();
    problems.sort();
    problems.dedup();
    // Copied only when the previous output still holds the set.
    let served = Arc::make_mut(&mut last.served);
    for key in keys.iter().chain(changed.iter().map(|(k, _, _)| k)) {
        served.remove(key);
    }
    served.extend(part.served.iter().cloned());
    let served = last.served.clone();

    // The maps are copied once here (the live snapshot holds them); the output shares them.
    last.routes = last.routes.patched(&hosts, part_hosts);
    last.tls = last.tls.patched(&hosts, part_tls);
    last.problems = problems.clone();
    last.ingresses = after;
    memo.patched_hosts = Some(hosts.len());
    Some(Output {
        snapshot: Snapshot {
            routes: last.routes.clone(),
            tls: last.tls.clone(),
            client_auth: last.client_auth.clone(),
            passthrough: last.passthrough.clone(),
            problems: problems.len(),
            listener: last.listener.clone(),
        },
        problems,
        served,
        route_policy_status: Default::default(),
        class_parameter_users,
    })
}
