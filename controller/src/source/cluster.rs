//! The cluster source. Kubernetes watches: one kube-rs reflector per kind, stripped of what translate never reads,
//! turned into [`Inputs`] whenever any store changes.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::inputs::{CertCache, Inputs};
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

/// How long a burst of watch events may last before the inputs are rebuilt.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchScope {
    /// Namespaces to watch; empty means the whole cluster.
    pub namespaces: Vec<String>,
}

/// The reflector stores of every kind, several per kind when namespaces are listed.
#[derive(Clone)]
pub struct Stores {
    ingresses: Vec<Store<Ingress>>,
    classes: Store<IngressClass>,
    services: Vec<Store<Service>>,
    slices: Vec<Store<EndpointSlice>>,
    secrets: Vec<Store<Secret>>,
    /// Empty when Portico's CRDs are not installed.
    route_policies: Vec<Store<RoutePolicy>>,
    class_parameters: Option<Store<IngressClassParameters>>,
}

impl Stores {
    /// Waits until every store has its first full list. Returns the kinds still waiting when
    /// `progress` is asked (for `/readyz`).
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        for s in &self.ingresses {
            s.wait_until_ready().await?;
        }
        self.classes.wait_until_ready().await?;
        for s in &self.services {
            s.wait_until_ready().await?;
        }
        for s in &self.slices {
            s.wait_until_ready().await?;
        }
        for s in &self.secrets {
            s.wait_until_ready().await?;
        }
        for s in &self.route_policies {
            s.wait_until_ready().await?;
        }
        if let Some(s) = &self.class_parameters {
            s.wait_until_ready().await?;
        }
        Ok(())
    }

    /// The kinds whose first list has not arrived yet (for `/readyz`).
    pub fn pending(&self) -> Vec<String> {
        fn waiting<K: Resource + Clone>(stores: &[Store<K>]) -> bool
        where
            K::DynamicType: Eq + Hash + Clone,
        {
            use futures_util::FutureExt as _;
            stores
                .iter()
                .any(|s| s.wait_until_ready().now_or_never().is_none())
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

    /// Everything in the stores now, and its fingerprint; `previous` (what the last call
    /// returned) spares the work for objects that did not change.
    fn gather(&self, previous: &Gathered, certs: &mut CertCache) -> (Gathered, u64) {
        fn version<K: Resource>(o: &K, h: &mut DefaultHasher) {
            o.meta().resource_version.hash(h);
        }
        let mut total = 0u64;
        let ingresses = Kind::gather(&self.ingresses, &previous.ingresses, &mut total, |i, h| {
            // Not the resourceVersion: a status update (which Portico itself writes) is not
            // read by translate and must not rebuild the table.
            let meta = &i.metadata;
            meta.generation.hash(h);
            meta.labels.hash(h);
            meta.annotations.hash(h);
            meta.creation_timestamp.as_ref().map(|t| t.0).hash(h);
        });
        let classes = Kind::gather(
            std::slice::from_ref(&self.classes),
            &previous.classes,
            &mut total,
            version,
        );
        let services = Kind::gather(&self.services, &previous.services, &mut total, version);
        let slices = Kind::gather(&self.slices, &previous.slices, &mut total, version);
        let secrets = Kind::gather(&self.secrets, &previous.secrets, &mut total, version);
        let route_policies = Kind::gather(
            &self.route_policies,
            &previous.route_policies,
            &mut total,
            version,
        );
        let class_parameters = Kind::gather(
            self.class_parameters.as_slice(),
            &previous.class_parameters,
            &mut total,
            version,
        );
        // Certificates are parsed per Secret content anyway; when no Secret changed, even the
        // maps are the last ones.
        let (certificates, ca_bundles) = match &previous.certificates {
            Some((c, b)) if same(&secrets.sorted, &previous.secrets.sorted) => {
                (c.clone(), b.clone())
            }
            _ => (
                certs.certificates(&secrets.sorted),
                crate::inputs::ca_bundles(&secrets.sorted),
            ),
        };
        let gathered = Gathered {
            ingresses,
            classes,
            services,
            slices,
            secrets,
            route_policies,
            class_parameters,
            certificates: Some((certificates, ca_bundles)),
        };
        (gathered, total)
    }
}

/// The objects of every kind as last gathered, sorted, with their fingerprints.
#[derive(Default)]
struct Gathered {
    ingresses: Kind<Ingress>,
    classes: Kind<IngressClass>,
    services: Kind<Service>,
    slices: Kind<EndpointSlice>,
    secrets: Kind<Secret>,
    route_policies: Kind<RoutePolicy>,
    class_parameters: Kind<IngressClassParameters>,
    certificates: Option<(
        BTreeMap<crate::inputs::ObjectKey, crate::inputs::ParsedCertificate>,
        BTreeMap<crate::inputs::ObjectKey, crate::inputs::ParsedCaBundle>,
    )>,
}

impl Gathered {
    fn inputs(&self) -> Inputs {
        let (certificates, ca_bundles) = self.certificates.clone().unwrap_or_default();
        Inputs {
            ingresses: self.ingresses.sorted.clone(),
            ingress_classes: self.classes.sorted.clone(),
            services: self.services.sorted.clone(),
            endpoint_slices: self.slices.sorted.clone(),
            secrets: self.secrets.sorted.clone(),
            route_policies: self.route_policies.sorted.clone(),
            class_parameters: self.class_parameters.sorted.clone(),
            certificates,
            ca_bundles,
            problems: Vec::new(),
            gathered: None,
        }
    }
}

/// One kind's objects sorted by namespace/name, and each object's fingerprint by address.
/// The sorted list holds every object, so no address is reused while it is known here.
struct Kind<K> {
    sorted: Vec<Arc<K>>,
    hashes: HashMap<usize, u64>,
}

impl<K> Default for Kind<K> {
    fn default() -> Self {
        Kind {
            sorted: Vec::new(),
            hashes: HashMap::new(),
        }
    }
}

impl<K: Resource + Clone> Kind<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// The objects of `stores`, adding their fingerprints (uid and `identity`, summed so the
    /// order does not matter) to `total`. Unchanged objects are not hashed again, and when
    /// no object changed the sorted list is the previous one.
    fn gather(
        stores: &[Store<K>],
        previous: &Kind<K>,
        total: &mut u64,
        identity: impl Fn(&K, &mut DefaultHasher),
    ) -> Kind<K> {
        let objects: Vec<Arc<K>> = stores.iter().flat_map(Store::state).collect();
        let mut hashes = HashMap::with_capacity(objects.len());
        let mut known = 0;
        for o in &objects {
            let at = Arc::as_ptr(o) as usize;
            let h = match previous.hashes.get(&at) {
                Some(h) => {
                    known += 1;
                    *h
                }
                None => {
                    let mut h = DefaultHasher::new();
                    o.meta().uid.hash(&mut h);
                    identity(o, &mut h);
                    h.finish()
                }
            };
            hashes.insert(at, h);
            *total = total.wrapping_add(h);
        }
        let sorted = if known == objects.len() && known == previous.sorted.len() {
            previous.sorted.clone()
        } else {
            let mut v = objects;
            v.sort_by(|a, b| {
                (a.meta().namespace.as_deref(), a.meta().name.as_deref())
                    .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
            });
            v
        };
        Kind { sorted, hashes }
    }
}

fn same<K>(a: &[Arc<K>], b: &[Arc<K>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

/// Drops what translate never reads, so 10,000 objects stay small in memory.
fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
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

fn reflect<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, BoxStream<'static, &'static str>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    reflect_with(api, config, slim::<K>)
}

fn reflect_with<K>(
    api: Api<K>,
    config: watcher::Config,
    modify: fn(&mut K),
) -> (Store<K>, BoxStream<'static, &'static str>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let kind: &'static str = Box::leak(kind.into_boxed_str());
    let events = watcher(api, config)
        .default_backoff()
        .modify(modify)
        .reflect(writer)
        .filter_map(move |event| async move {
            match event {
                Ok(_) => Some(kind),
                Err(e) => {
                    crate::telemetry::TELEMETRY.watch_restarted(kind);
                    warn!(kind, error = %e, "watch failed; retrying with backoff");
                    None
                }
            }
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
) -> (Stores, BoxStream<'static, &'static str>) {
    let mut streams = Vec::new();
    let mut ingresses = Vec::new();
    for api in apis::<Ingress>(client, scope) {
        let (s, e) = reflect(api, watcher::Config::default());
        ingresses.push(s);
        streams.push(e);
    }
    let mut services = Vec::new();
    for api in apis::<Service>(client, scope) {
        let (s, e) = reflect(api, watcher::Config::default());
        services.push(s);
        streams.push(e);
    }
    let mut slices = Vec::new();
    for api in apis::<EndpointSlice>(client, scope) {
        let (s, e) = reflect(api, watcher::Config::default());
        slices.push(s);
        streams.push(e);
    }
    let mut secrets = Vec::new();
    for api in apis::<Secret>(client, scope) {
        let (s, e) = reflect(
            api,
            watcher::Config::default().fields("type=kubernetes.io/tls"),
        );
        secrets.push(s);
        streams.push(e);
    }
    for api in apis::<Secret>(client, scope) {
        let (s, e) = reflect_with(
            api,
            watcher::Config::default().fields(OTHER_SECRETS),
            slim_secret,
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
    let mut ready = Box::pin(async move { waiting.wait_until_ready().await.is_ok() });
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
    let mut certs = CertCache::default();
    let (mut gathered, mut last) = stores.gather(&Gathered::default(), &mut certs);
    let _ = tx.send(Arc::new(gathered.inputs()));

    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    while let Some(kind) = events.next().await {
        let first_event = std::time::Instant::now();
        *kinds.entry(kind).or_default() += 1;
        // Debounce: collect the rest of the burst.
        let deadline = tokio::time::sleep(DEBOUNCE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                e = events.next() => match e {
                    Some(k) => *kinds.entry(k).or_default() += 1,
                    None => return,
                },
            }
        }
        let started = std::time::Instant::now();
        let (now, fp) = stores.gather(&gathered, &mut certs);
        gathered = now;
        if fp == last {
            kinds.clear();
            continue;
        }
        last = fp;
        let mut inputs = gathered.inputs();
        inputs.gathered = Some((first_event, started.elapsed()));
        let inputs = Arc::new(inputs);
        debug!(?kinds, "objects changed");
        kinds.clear();
        let _ = tx.send(inputs);
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
