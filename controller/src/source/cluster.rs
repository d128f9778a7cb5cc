//! The cluster source. Kubernetes watches: one kube-rs watcher per kind (several when
//! namespaces are listed), its objects stripped of what translate never reads and kept in a
//! sorted [`WatchStore`], turned into [`Inputs`] whenever any store changes.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, BoxStream, StreamExt};
use futures_util::FutureExt as _;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::secret_certificates as certs;
use super::watch_store::{self, sort_key, WatchStore, Writer};
use crate::inputs::{Inputs, Objects};
use portico_crds::{IngressClassParameters, RoutePolicy};

/// The (API group, resource) of every watch, checked against the RBAC table in tests.
pub const WATCHED_KINDS: [(&str, &str); 7] = [
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "ingressclasses"),
    ("", "services"),
    ("discovery.k8s.io", "endpointslices"),
    ("", "secrets"),
    ("portico.dev", "routepolicies"),
    ("portico.dev", "ingressclassparameters"),
];

/// How long a burst of watch events may last before the inputs are rebuilt. A change after a
/// quiet spell of this long is gathered at once.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchScope {
    /// Namespaces to watch; empty means the whole cluster.
    pub namespaces: Vec<String>,
}

/// The stores of every kind, several per kind when namespaces are listed.
#[derive(Clone)]
pub struct Stores {
    ingresses: Vec<WatchStore<Ingress>>,
    classes: WatchStore<IngressClass>,
    services: Vec<WatchStore<Service>>,
    slices: Vec<WatchStore<EndpointSlice>>,
    secrets: Vec<WatchStore<Secret>>,
    /// Empty when Portico's CRDs are not installed.
    route_policies: Vec<WatchStore<RoutePolicy>>,
    class_parameters: Option<WatchStore<IngressClassParameters>>,
    /// The certificates of the Secrets in `secrets`.
    certificates: certs::Shared,
}

impl Stores {
    /// Waits until every store has its first full list; `false` when a watch ended first.
    pub async fn wait_until_ready(&self) -> bool {
        async fn synced<K: Resource>(stores: &[WatchStore<K>]) -> bool {
            for s in stores {
                if !s.wait_until_synced().await {
                    return false;
                }
            }
            true
        }
        synced(&self.ingresses).await
            && synced(std::slice::from_ref(&self.classes)).await
            && synced(&self.services).await
            && synced(&self.slices).await
            && synced(&self.secrets).await
            && synced(&self.route_policies).await
            && synced(self.class_parameters.as_slice()).await
    }

    /// The kinds whose first list has not arrived yet (for `/readyz`).
    pub fn pending(&self) -> Vec<String> {
        fn waiting<K: Resource>(stores: &[WatchStore<K>]) -> bool {
            stores.iter().any(|s| !s.is_synced())
        }
        let kinds = [
            ("Ingress", waiting(&self.ingresses)),
            ("IngressClass", waiting(std::slice::from_ref(&self.classes))),
            ("Service", waiting(&self.services)),
            ("EndpointSlice", waiting(&self.slices)),
            ("Secret", waiting(&self.secrets)),
            ("RoutePolicy", waiting(&self.route_policies)),
            (
                "IngressClassParameters",
                self.class_parameters
                    .as_ref()
                    .is_some_and(|s| waiting(std::slice::from_ref(s))),
            ),
        ];
        kinds
            .iter()
            .filter(|(_, w)| *w)
            .map(|(k, _)| k.to_string())
            .collect()
    }

    /// Brings `gathered` up to date with the stores for the objects `touched` names (every
    /// object of a kind listed again); the objects nobody touched keep their place and their
    /// parsed certificates. Returns whether anything translate reads changed.
    fn gather(&self, gathered: &mut Gathered, touched: Touched) -> bool {
        let Touched {
            ingresses,
            classes,
            services,
            slices,
            secrets,
            route_policies,
            class_parameters,
        } = touched;
        let mut changed = gathered
            .ingresses
            .update(&self.ingresses, ingresses, |a, b| {
                // Not the resourceVersion: a status update (which Portico itself writes) is
                // not read by translate and must not rebuild the table.
                let (a, b) = (&a.metadata, &b.metadata);
                a.uid == b.uid
                    && a.generation == b.generation
                    && a.labels == b.labels
                    && a.annotations == b.annotations
                    && a.creation_timestamp == b.creation_timestamp
            })
            .is_some();
        changed |= gathered
            .classes
            .update(std::slice::from_ref(&self.classes), classes, same_version)
            .is_some();
        changed |= gathered
            .services
            .update(&self.services, services, same_version)
            .is_some();
        changed |= gathered
            .slices
            .update(&self.slices, slices, same_version)
            .is_some();
        changed |= gathered
            .route_policies
            .update(&self.route_policies, route_policies, same_version)
            .is_some();
        changed |= gathered
            .class_parameters
            .update(
                self.class_parameters.as_slice(),
                class_parameters,
                same_version,
            )
            .is_some();
        // The Secrets' certificates were parsed as they arrived; the lock is held while the
        // stores are read so that every stored Secret's certificate is there.
        let parsed = certs::lock(&self.certificates);
        match gathered
            .secrets
            .update(&self.secrets, secrets, same_version)
        {
            None => {}
            Some(Changes::All) => {
                changed = true;
                let all = &gathered.secrets.sorted;
                gathered.certificates = Arc::new(
                    all.iter()
                        .map(|s| (crate::inputs::secret_key(s), parsed.get(s)))
                        .collect(),
                );
                gathered.ca_bundles = Arc::new(crate::inputs::ca_bundles(all));
            }
            Some(Changes::Some(list)) => {
                changed = true;
                let certificates = Arc::make_mut(&mut gathered.certificates);
                for (before, after) in &list {
                    if let Some(s) = before {
                        certificates.remove(&crate::inputs::secret_key(s));
                    }
                    if let Some(s) = after {
                        certificates.insert(crate::inputs::secret_key(s), parsed.get(s));
                    }
                }
                let touches_ca = |s: &Option<Arc<Secret>>| {
                    s.as_ref()
                        .and_then(|s| s.data.as_ref())
                        .is_some_and(|d| d.contains_key(crate::inputs::CA_CRT))
                };
                if list.iter().any(|(b, a)| touches_ca(b) || touches_ca(a)) {
                    let bundles = Arc::make_mut(&mut gathered.ca_bundles);
                    for (before, after) in &list {
                        if let Some(s) = before {
                            bundles.remove(&crate::inputs::secret_key(s));
                        }
                        if let Some(s) = after {
                            if let Some(ca) = crate::inputs::ca_bundle(s) {
                                bundles.insert(crate::inputs::secret_key(s), ca);
                            }
                        }
                    }
                }
            }
        }
        changed
    }
}

/// Objects of every kind but Ingresses count as changed when their resourceVersion did.
fn same_version<K: Resource>(a: &K, b: &K) -> bool {
    a.meta().uid == b.meta().uid && a.meta().resource_version == b.meta().resource_version
}

/// The objects of every kind as last gathered, sorted, and the certificates of the Secrets.
#[derive(Default)]
struct Gathered {
    ingresses: Kind<Ingress>,
    classes: Kind<IngressClass>,
    services: Kind<Service>,
    slices: Kind<EndpointSlice>,
    secrets: Kind<Secret>,
    route_policies: Kind<RoutePolicy>,
    class_parameters: Kind<IngressClassParameters>,
    certificates: crate::inputs::Certificates,
    ca_bundles: crate::inputs::CaBundles,
}

impl Gathered {
    /// The inputs translate takes: every list is shared, none is copied.
    fn inputs(&self) -> Inputs {
        Inputs {
            ingresses: self.ingresses.sorted.clone(),
            ingress_classes: self.classes.sorted.clone(),
            services: self.services.sorted.clone(),
            endpoint_slices: self.slices.sorted.clone(),
            secrets: self.secrets.sorted.clone(),
            route_policies: self.route_policies.sorted.clone(),
            class_parameters: self.class_parameters.sorted.clone(),
            certificates: self.certificates.clone(),
            ca_bundles: self.ca_bundles.clone(),
            problems: Vec::new(),
            gathered: None,
        }
    }
}

/// `(namespace, name)` of an object a watch event names; the namespace is `None` for
/// cluster-scoped kinds.
type EventKey = (Option<String>, String);

/// The objects of one kind that watch events named since the last gathering.
#[derive(Debug)]
enum Pending {
    Some(BTreeSet<EventKey>),
    /// The kind was listed again (a watch restarted): look at every object.
    All,
}

impl Default for Pending {
    fn default() -> Self {
        Pending::Some(BTreeSet::new())
    }
}

impl Pending {
    fn add(&mut self, key: Option<EventKey>) {
        match (self, key) {
            (Pending::Some(keys), Some(key)) => {
                keys.insert(key);
            }
            (me, None) => *me = Pending::All,
            (Pending::All, Some(_)) => {}
        }
    }
}

/// What the watch events of a burst named, by kind.
#[derive(Debug, Default)]
struct Touched {
    ingresses: Pending,
    classes: Pending,
    services: Pending,
    slices: Pending,
    secrets: Pending,
    route_policies: Pending,
    class_parameters: Pending,
}

impl Touched {
    /// Every object of every kind (the first gathering).
    fn all() -> Self {
        Touched {
            ingresses: Pending::All,
            classes: Pending::All,
            services: Pending::All,
            slices: Pending::All,
            secrets: Pending::All,
            route_policies: Pending::All,
            class_parameters: Pending::All,
        }
    }

    fn add(&mut self, event: Event) {
        let pending = match event.kind {
            "Ingress" => &mut self.ingresses,
            "IngressClass" => &mut self.classes,
            "Service" => &mut self.services,
            "EndpointSlice" => &mut self.slices,
            "Secret" => &mut self.secrets,
            "RoutePolicy" => &mut self.route_policies,
            "IngressClassParameters" => &mut self.class_parameters,
            _ => return,
        };
        pending.add(event.object);
    }
}

/// A watch event that changed a store: the kind, and the object it named, or `None` when the
/// kind's store was replaced by a new list.
#[derive(Debug)]
pub struct Event {
    pub kind: &'static str,
    object: Option<EventKey>,
}

/// One object before and after a change (`None` when created or deleted).
type Change<K> = (Option<Arc<K>>, Option<Arc<K>>);

/// What changed in one kind: some objects, or everything.
enum Changes<K> {
    Some(Vec<Change<K>>),
    All,
}

/// One kind's objects, sorted by namespace/name.
struct Kind<K> {
    sorted: Objects<K>,
}

impl<K> Default for Kind<K> {
    fn default() -> Self {
        Kind {
            sorted: Objects::default(),
        }
    }
}

impl<K: Resource + Clone> Kind<K>
where
    K::DynamicType: Default + Eq + Hash + Clone,
{
    /// Takes the current version of every object `pending` names from `stores` (all of
    /// them for [`Pending::All`]). Returns what changed for translate (`unchanged` says when
    /// two versions of an object read the same), or `None` when nothing did; the list holds
    /// the stores' newest objects either way.
    fn update(
        &mut self,
        stores: &[WatchStore<K>],
        pending: Pending,
        unchanged: impl Fn(&K, &K) -> bool,
    ) -> Option<Changes<K>> {
        let keys = match pending {
            Pending::All => {
                let mut all: Vec<Arc<K>> = stores.iter().flat_map(WatchStore::state).collect();
                all.sort_by(|a, b| sort_key(&**a).cmp(&sort_key(&**b)));
                let differs = all.len() != self.sorted.len()
                    || all
                        .iter()
                        .zip(self.sorted.iter())
                        .any(|(a, b)| sort_key(&**a) != sort_key(&**b) || !unchanged(a, b));
                self.sorted = all.into();
                return differs.then_some(Changes::All);
            }
            Pending::Some(keys) => keys,
        };
        let mut changes = Vec::new();
        let mut differs = false;
        for (namespace, name) in keys {
            let after = stores
                .iter()
                .find_map(|s| s.get(namespace.as_deref(), &name));
            let wanted = (namespace.as_deref(), name.as_str());
            let before = self
                .sorted
                .binary_search_by(|o| sort_key(&**o).cmp(&wanted))
                .ok()
                .and_then(|i| self.sorted.get(i).cloned());
            match (&before, &after) {
                (None, None) => continue,
                (Some(b), Some(a)) if Arc::ptr_eq(b, a) => continue,
                (Some(b), Some(a)) => differs |= !unchanged(b, a),
                _ => differs = true,
            }
            changes.push((before, after));
        }
        if changes.is_empty() {
            return None;
        }
        let list = self.sorted.to_mut();
        for (before, after) in &changes {
            let Some(o) = after.as_ref().or(before.as_ref()) else {
                continue;
            };
            let wanted = sort_key(&**o);
            match (
                list.binary_search_by(|x| sort_key(&**x).cmp(&wanted)),
                after,
            ) {
                (Ok(i), Some(a)) => list[i] = a.clone(),
                (Ok(i), None) => {
                    list.remove(i);
                }
                (Err(i), Some(a)) => list.insert(i, a.clone()),
                (Err(_), None) => {}
            }
        }
        differs.then_some(Changes::Some(changes))
    }
}

/// Drops what translate never reads, so 10,000 objects stay small in memory.
fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Services keep what translate reads of them: the type, the ExternalName, the ports and the
/// IP families; cluster IPs, traffic policies, session affinity and the status go.
pub fn slim_service(service: &mut Service) {
    slim(service);
    service.status = None;
    if let Some(spec) = service.spec.take() {
        service.spec = Some(ServiceSpec {
            type_: spec.type_,
            external_name: spec.external_name,
            ports: spec.ports,
            ip_families: spec.ip_families,
            ..ServiceSpec::default()
        });
    }
}

/// EndpointSlices keep their endpoints' addresses and conditions; the Pod references, node
/// names, zones and topology hints go (a real cluster sets them on every endpoint).
pub fn slim_slice(slice: &mut EndpointSlice) {
    slim(slice);
    for endpoint in &mut slice.endpoints {
        endpoint.target_ref = None;
        endpoint.node_name = None;
        endpoint.zone = None;
        endpoint.hints = None;
        endpoint.deprecated_topology = None;
    }
}

/// The Secret keys Portico reads: basic-auth files, CA bundles and CRLs, certificates.
pub const SECRET_KEYS: [&str; 5] = ["auth", "ca.crt", "ca.crl", "tls.crt", "tls.key"];

/// Longest value kept for a key outside [`SECRET_KEYS`] (an `auth-map` password hash).
const MAX_HASH_LEN: usize = 128;

/// Secrets of other types than `kubernetes.io/tls` are watched for what annotations
/// reference (basic-auth users, CA bundles). Everything Portico never reads is dropped before
/// the store keeps them: other keys (an `auth-map` entry whose value looks like a password
/// hash excepted), `stringData`, managed fields.
pub fn slim_secret(secret: &mut Secret) {
    slim(secret);
    secret.string_data = None;
    if let Some(data) = secret.data.as_mut() {
        data.retain(|key, value| {
            SECRET_KEYS.contains(&key.as_str()) || looks_like_password_hash(&value.0)
        });
    }
}

fn looks_like_password_hash(v: &[u8]) -> bool {
    v.len() <= MAX_HASH_LEN
        && [&b"$2y$"[..], b"$2a$", b"$2b$", b"$apr1$", b"{SHA}"]
            .iter()
            .any(|p| v.starts_with(p))
}

/// The field selector of the second Secret watch: every type but TLS (the first watch),
/// Helm releases and service-account tokens (large, and never referenced by annotations).
pub const OTHER_SECRETS: &str =
    "type!=kubernetes.io/tls,type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token";

/// What a watch does with its objects on the way into its store, and after they leave it.
trait Keeper<K>: Send + 'static {
    fn admit(&mut self, object: &mut K);
    fn release(&mut self, _gone: Vec<Arc<K>>) {}
}

/// Strips what translate never reads.
struct Slim<K>(fn(&mut K));

impl<K: 'static> Keeper<K> for Slim<K> {
    fn admit(&mut self, object: &mut K) {
        (self.0)(object);
    }
}

/// Secrets: stripped, and their certificates parsed into the shared map (see
/// [`secret_certificates`](super::secret_certificates)).
struct KeepCertificates {
    slim: fn(&mut Secret),
    certificates: certs::Shared,
}

impl Keeper<Secret> for KeepCertificates {
    fn admit(&mut self, secret: &mut Secret) {
        (self.slim)(secret);
        certs::lock(&self.certificates).admit(secret);
    }

    fn release(&mut self, gone: Vec<Arc<Secret>>) {
        if gone.is_empty() {
            return;
        }
        let mut certificates = certs::lock(&self.certificates);
        for secret in &gone {
            certificates.release(secret);
        }
    }
}

/// Applies one watch event to a store: objects coming in are admitted first, objects the
/// store let go are released after. Returns the object the event named, or `None` (the key
/// is `None` when a new list replaced the store).
fn feed<K: Resource + Clone>(
    writer: &mut Writer<K>,
    keeper: &mut impl Keeper<K>,
    event: watcher::Event<K>,
) -> Option<Option<EventKey>> {
    let key = |o: &K| {
        let meta = o.meta();
        Some((
            meta.namespace.clone(),
            meta.name.clone().unwrap_or_default(),
        ))
    };
    let (event, named) = match event {
        watcher::Event::Apply(mut o) => {
            keeper.admit(&mut o);
            let named = key(&o);
            (watcher::Event::Apply(o), Some(named))
        }
        watcher::Event::InitApply(mut o) => {
            keeper.admit(&mut o);
            (watcher::Event::InitApply(o), None)
        }
        watcher::Event::Delete(o) => {
            let named = key(&o);
            (watcher::Event::Delete(o), Some(named))
        }
        // The store is replaced by the new list at its end.
        watcher::Event::InitDone => (watcher::Event::InitDone, Some(None)),
        watcher::Event::Init => (watcher::Event::Init, None),
    };
    keeper.release(writer.apply(event));
    named
}

fn reflect<K>(api: Api<K>, config: watcher::Config) -> (WatchStore<K>, BoxStream<'static, Event>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    reflect_with(api, config, Slim(slim::<K>))
}

fn reflect_with<K>(
    api: Api<K>,
    config: watcher::Config,
    mut keeper: impl Keeper<K>,
) -> (WatchStore<K>, BoxStream<'static, Event>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, mut writer) = watch_store::store();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let kind: &'static str = Box::leak(kind.into_boxed_str());
    let events = watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let event = match event {
                Ok(event) => {
                    feed(&mut writer, &mut keeper, event).map(|object| Event { kind, object })
                }
                Err(e) => {
                    crate::telemetry::TELEMETRY.watch_restarted(kind);
                    warn!(kind, error = %e, "watch failed; retrying with backoff");
                    None
                }
            };
            std::future::ready(event)
        })
        .boxed();
    (reader, events)
}

fn apis<K>(client: &Client, scope: &WatchScope) -> Vec<Api<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if scope.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        scope
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// Are Portico's CRDs served? Without them (`crds.enabled=false`), RoutePolicies and
/// IngressClassParameters are not watched, and everything else still is.
async fn crds_installed(client: &Client) -> bool {
    let version = format!("{}/v1alpha1", portico_crds::GROUP);
    match client.list_api_group_resources(&version).await {
        Ok(list) => {
            let served: Vec<&str> = list.resources.iter().map(|r| r.name.as_str()).collect();
            served.contains(&"routepolicies") && served.contains(&"ingressclassparameters")
        }
        Err(e) => {
            warn!(error = %e, "Portico's CRDs are not installed; RoutePolicies and IngressClassParameters are not read (install them and restart)");
            false
        }
    }
}

/// Starts every watch; returns the stores and a stream that yields on every change.
pub fn start(
    client: &Client,
    scope: &WatchScope,
    with_crds: bool,
) -> (Stores, BoxStream<'static, Event>) {
    let mut streams = Vec::new();
    let mut ingresses = Vec::new();
    for api in apis::<Ingress>(client, scope) {
        let (s, e) = reflect(api, watcher::Config::default());
        ingresses.push(s);
        streams.push(e);
    }
    let mut services = Vec::new();
    for api in apis::<Service>(client, scope) {
        let (s, e) = reflect_with(api, watcher::Config::default(), Slim(slim_service));
        services.push(s);
        streams.push(e);
    }
    let mut slices = Vec::new();
    for api in apis::<EndpointSlice>(client, scope) {
        let (s, e) = reflect_with(api, watcher::Config::default(), Slim(slim_slice));
        slices.push(s);
        streams.push(e);
    }
    let mut secrets = Vec::new();
    let certificates = certs::Shared::default();
    let keeper = |slim| KeepCertificates {
        slim,
        certificates: certificates.clone(),
    };
    for api in apis::<Secret>(client, scope) {
        let (s, e) = reflect_with(
            api,
            watcher::Config::default().fields("type=kubernetes.io/tls"),
            keeper(slim::<Secret>),
        );
        secrets.push(s);
        streams.push(e);
    }
    for api in apis::<Secret>(client, scope) {
        let (s, e) = reflect_with(
            api,
            watcher::Config::default().fields(OTHER_SECRETS),
            keeper(slim_secret),
        );
        secrets.push(s);
        streams.push(e);
    }
    let (classes, e) = reflect(
        Api::<IngressClass>::all(client.clone()),
        watcher::Config::default(),
    );
    streams.push(e);
    let mut route_policies = Vec::new();
    let mut class_parameters = None;
    if with_crds {
        for api in apis::<RoutePolicy>(client, scope) {
            let (s, e) = reflect(api, watcher::Config::default());
            route_policies.push(s);
            streams.push(e);
        }
        let (s, e) = reflect(
            Api::<IngressClassParameters>::all(client.clone()),
            watcher::Config::default(),
        );
        class_parameters = Some(s);
        streams.push(e);
    }
    (
        Stores {
            ingresses,
            classes,
            services,
            slices,
            secrets,
            route_policies,
            class_parameters,
            certificates,
        },
        stream::select_all(streams).boxed(),
    )
}

/// Runs the watches: waits for every store to sync, then sends [`Inputs`] on `tx` after each
/// burst of changes (debounced) whose objects differ from the last sent.
pub async fn run(client: Client, scope: WatchScope, tx: watch::Sender<Arc<Inputs>>) {
    let with_crds = crds_installed(&client).await;
    let (stores, mut events) = start(&client, &scope, with_crds);
    let waiting = stores.clone();
    let mut ready = Box::pin(async move { waiting.wait_until_ready().await });
    crate::telemetry::TELEMETRY.set_unsynced(stores.pending());
    // Drive the watches while waiting for the first lists.
    let ok = loop {
        tokio::select! {
            ok = &mut ready => break ok,
            e = events.next() => match e {
                Some(_) => crate::telemetry::TELEMETRY.set_unsynced(stores.pending()),
                None => break false,
            },
        }
    };
    crate::telemetry::TELEMETRY.set_unsynced(stores.pending());
    if !ok {
        warn!("watches ended before they synced");
        return;
    }
    info!("every watch has synced");
    let mut gathered = Gathered::default();
    stores.gather(&mut gathered, Touched::all());
    let _ = tx.send(Arc::new(gathered.inputs()));

    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut touched = Touched::default();
    let mut last_gathered = Instant::now();
    while let Some(event) = events.next().await {
        let first_event = Instant::now();
        *kinds.entry(event.kind).or_default() += 1;
        touched.add(event);
        if last_gathered.elapsed() < DEBOUNCE {
            // Within a burst: collect the rest of it.
            let deadline = tokio::time::sleep(DEBOUNCE);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    e = events.next() => match e {
                        Some(e) => {
                            *kinds.entry(e.kind).or_default() += 1;
                            touched.add(e);
                        }
                        None => return,
                    },
                }
            }
        } else {
            // After a quiet spell: only the events already waiting.
            while let Some(e) = events.next().now_or_never() {
                let Some(e) = e else { return };
                *kinds.entry(e.kind).or_default() += 1;
                touched.add(e);
            }
        }
        let started = Instant::now();
        let changed = stores.gather(&mut gathered, std::mem::take(&mut touched));
        last_gathered = Instant::now();
        if !changed {
            kinds.clear();
            continue;
        }
        let mut inputs = gathered.inputs();
        inputs.gathered = Some((first_event, started.elapsed()));
        debug!(?kinds, "objects changed");
        kinds.clear();
        let _ = tx.send(Arc::new(inputs));
    }
}

/// Object names for logs: `namespace/name`.
pub fn key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.name_any()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind<K: Resource<DynamicType = ()>>() -> (String, String) {
        (K::group(&()).to_string(), K::plural(&()).to_string())
    }

    #[test]
    fn other_secrets_keep_only_what_portico_reads() {
        use k8s_openapi::ByteString;
        let mut s = Secret::default();
        s.metadata.managed_fields = Some(Vec::new());
        let big = vec![b'x'; 4096];
        s.data = Some(
            [
                ("auth", b"u:{SHA}x".to_vec()),
                ("ca.crt", b"pem".to_vec()),
                ("alice", b"$2y$05$abc".to_vec()),
                ("bob", b"{SHA}abc".to_vec()),
                ("password", b"hunter2".to_vec()),
                ("config.json", big.clone()),
                ("huge-hash", [b"$apr1$".to_vec(), big].concat()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v)))
            .collect(),
        );
        s.string_data = Some([("x".to_string(), "y".to_string())].into());
        slim_secret(&mut s);
        let keys: Vec<&str> = s
            .data
            .as_ref()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["alice", "auth", "bob", "ca.crt"]);
        assert!(s.string_data.is_none() && s.metadata.managed_fields.is_none());
    }

    #[test]
    fn services_and_slices_keep_what_translate_reads() {
        use k8s_openapi::api::core::v1::{ObjectReference, ServicePort, ServiceStatus};
        use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
        let mut svc = Service {
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some("db.example.com".into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    ..ServicePort::default()
                }]),
                ip_families: Some(vec!["IPv6".into()]),
                cluster_ips: Some(vec!["10.0.0.1".into()]),
                session_affinity: Some("None".into()),
                ..ServiceSpec::default()
            }),
            status: Some(ServiceStatus::default()),
            ..Service::default()
        };
        slim_service(&mut svc);
        let spec = svc.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ExternalName"));
        assert_eq!(spec.external_name.as_deref(), Some("db.example.com"));
        assert_eq!(spec.ports.as_ref().unwrap()[0].port, 80);
        assert_eq!(spec.ip_families.as_deref(), Some(&["IPv6".to_string()][..]));
        assert!(spec.cluster_ips.is_none() && spec.session_affinity.is_none());
        assert!(svc.status.is_none());

        let mut slice = EndpointSlice {
            endpoints: vec![Endpoint {
                addresses: vec!["10.1.0.5".into()],
                conditions: Some(EndpointConditions {
                    ready: Some(false),
                    ..EndpointConditions::default()
                }),
                node_name: Some("node-1".into()),
                zone: Some("a".into()),
                target_ref: Some(ObjectReference {
                    name: Some("pod-1".into()),
                    ..ObjectReference::default()
                }),
                ..Endpoint::default()
            }],
            ..EndpointSlice::default()
        };
        slim_slice(&mut slice);
        let e = &slice.endpoints[0];
        assert_eq!(e.addresses, ["10.1.0.5"]);
        assert_eq!(e.conditions.as_ref().and_then(|c| c.ready), Some(false));
        assert!(e.node_name.is_none() && e.zone.is_none() && e.target_ref.is_none());
    }

    /// What translate reads of the gathered Ingresses and Secrets.
    fn read(g: &Gathered) -> Vec<String> {
        let ingresses = g.ingresses.sorted.iter().map(|i| {
            let m = &i.metadata;
            format!(
                "{:?} {:?} {:?} {:?} {:?}",
                m.namespace, m.name, m.uid, m.generation, m.annotations
            )
        });
        let secrets = g.secrets.sorted.iter().map(|s| {
            let m = &s.metadata;
            format!("{:?} {:?} {:?}", m.namespace, m.name, m.resource_version)
        });
        ingresses.chain(secrets).collect()
    }

    fn secret_store_is_empty(stores: &Stores) -> bool {
        stores.secrets.iter().all(|s| s.state().is_empty())
    }

    fn certificates(g: &Gathered) -> Vec<String> {
        g.certificates
            .iter()
            .map(|(k, c)| format!("{k:?} {:?}", c.as_ref().map(|c| c.not_after)))
            .chain(g.ca_bundles.keys().map(|k| format!("ca {k:?}")))
            .collect()
    }

    #[test]
    fn gathering_what_events_named_equals_gathering_everything() {
        use k8s_openapi::ByteString;
        let (ingress_store, mut ingresses) = watch_store::store::<Ingress>();
        let (secret_store, mut secrets) = watch_store::store::<Secret>();
        let stores = Stores {
            ingresses: vec![ingress_store],
            classes: watch_store::store::<IngressClass>().0,
            services: vec![watch_store::store::<Service>().0],
            slices: vec![watch_store::store::<EndpointSlice>().0],
            secrets: vec![secret_store],
            route_policies: Vec::new(),
            class_parameters: None,
            certificates: certs::Shared::default(),
        };
        let mut keeper = KeepCertificates {
            slim: slim::<Secret>,
            certificates: stores.certificates.clone(),
        };
        let pems: Vec<(String, String)> = (0..2)
            .map(|_| crate::inputs::tests::pem("a.test"))
            .collect();
        let mut gathered = Gathered::default();
        stores.gather(&mut gathered, Touched::all());
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut version = 0;
        for _ in 0..400 {
            let before = read(&gathered);
            let mut touched = Touched::default();
            for _ in 0..=rand(3) {
                version += 1;
                let ns = ["a", "b"][rand(2) as usize].to_string();
                let name = format!("o{}", rand(8));
                let mut meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    namespace: Some(ns.clone()),
                    name: Some(name.clone()),
                    uid: Some(format!("{ns}/{name}")),
                    resource_version: Some(version.to_string()),
                    ..Default::default()
                };
                let kind = match rand(6) {
                    0..=2 => {
                        // A status update keeps the generation: nothing to translate.
                        meta.generation = Some(rand(2) as i64);
                        if rand(3) == 0 {
                            meta.annotations = Some([("x".into(), rand(2).to_string())].into());
                        }
                        let i = Ingress {
                            metadata: meta,
                            ..Default::default()
                        };
                        ingresses.apply(if rand(4) == 0 {
                            watcher::Event::Delete(i)
                        } else {
                            watcher::Event::Apply(i)
                        });
                        "Ingress"
                    }
                    _ => {
                        let (crt, key) = &pems[rand(2) as usize];
                        let mut data = std::collections::BTreeMap::new();
                        if rand(4) != 0 {
                            data.insert("tls.crt".into(), ByteString(crt.clone().into_bytes()));
                            data.insert("tls.key".into(), ByteString(key.clone().into_bytes()));
                        }
                        if rand(4) == 0 {
                            data.insert("ca.crt".into(), ByteString(crt.clone().into_bytes()));
                        }
                        let s = Secret {
                            metadata: meta,
                            data: Some(data),
                            ..Default::default()
                        };
                        let event = if rand(4) == 0 {
                            watcher::Event::Delete(s)
                        } else {
                            watcher::Event::Apply(s)
                        };
                        feed(&mut secrets, &mut keeper, event);
                        "Secret"
                    }
                };
                touched.add(Event {
                    kind,
                    object: Some((Some(ns), name)),
                });
            }
            let changed = stores.gather(&mut gathered, touched);
            let mut full = Gathered::default();
            stores.gather(&mut full, Touched::all());
            assert!(crate::inputs::same(
                &gathered.ingresses.sorted,
                &full.ingresses.sorted
            ));
            assert!(crate::inputs::same(
                &gathered.secrets.sorted,
                &full.secrets.sorted
            ));
            assert_eq!(certificates(&gathered), certificates(&full));
            assert_eq!(changed, read(&gathered) != before);
        }
        assert!(certs::lock(&stores.certificates).len() <= 2);
        // Once every Secret is gone, so is every certificate: none is kept for nothing.
        for ns in ["a", "b"] {
            for i in 0..8 {
                let mut s = Secret::default();
                s.metadata.namespace = Some(ns.into());
                s.metadata.name = Some(format!("o{i}"));
                feed(&mut secrets, &mut keeper, watcher::Event::Delete(s));
            }
        }
        assert!(secret_store_is_empty(&stores));
        assert!(certs::lock(&stores.certificates).is_empty());
    }

    #[test]
    fn the_watched_kinds_are_listed() {
        let watched: Vec<(String, String)> = vec![
            kind::<Ingress>(),
            kind::<IngressClass>(),
            kind::<Service>(),
            kind::<EndpointSlice>(),
            kind::<Secret>(),
            kind::<RoutePolicy>(),
            kind::<IngressClassParameters>(),
        ];
        let listed: Vec<(String, String)> = WATCHED_KINDS
            .iter()
            .map(|(g, r)| (g.to_string(), r.to_string()))
            .collect();
        assert_eq!(watched, listed);
    }
}
