//! Service backends: a Service port resolved to its endpoints through EndpointSlices.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressServiceBackend;
use portico_proxy::{Backend, Endpoints};

use super::validate;
use crate::inputs::{Inputs, Objects};
use crate::problem::Reason;

/// The label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// (namespace, service, port): the port as resolved (`80`), or as written when it is not.
type BackendKey = (String, String, String);

/// The namespace of an object, as sources default it.
fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

/// A backend with the objects it was built from.
struct Built {
    backend: Arc<Backend>,
    problem: Option<Reason>,
    /// The Service and EndpointSlices read, held so that pointer equality with the objects of
    /// a later translation proves they are the same, unchanged objects.
    service: Option<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    allow_external_name: bool,
}

/// Backends of the previous translation, reused while their Service and EndpointSlices are
/// the very same objects (sources replace an object's `Arc` whenever it changes). At ten
/// thousand Services this spares most of a rebuild's work; a reused backend also keeps its
/// load-balancing state across the swap. The result is the same as building afresh.
#[derive(Default)]
pub struct BackendMemo {
    built: HashMap<BackendKey, Built>,
    index: Option<Arc<ObjectIndex>>,
}

/// Services and EndpointSlices by `namespace/name` (slices by their Service's name), as
/// positions in the inputs they were built from. Kept across translations while those are
/// the very same objects, so a translation of a few Ingresses does not index every Service.
struct ObjectIndex {
    services: HashMap<String, usize>,
    slices: HashMap<String, Vec<usize>>,
    indexed_services: Objects<Service>,
    indexed_slices: Objects<EndpointSlice>,
}

fn index_key(namespace: &str, name: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + name.len() + 1);
    k.push_str(namespace);
    k.push('/');
    k.push_str(name);
    k
}

impl ObjectIndex {
    fn new(inputs: &Inputs) -> Self {
        let mut services = HashMap::with_capacity(inputs.services.len());
        for (at, s) in inputs.services.iter().enumerate() {
            if let Some(name) = s.metadata.name.as_deref() {
                // Of duplicates (a manifest directory may hold them), the last wins.
                services.insert(index_key(namespace_of(&s.metadata), name), at);
            }
        }
        let mut slices: HashMap<String, Vec<usize>> = HashMap::new();
        for (at, s) in inputs.endpoint_slices.iter().enumerate() {
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                slices
                    .entry(index_key(namespace_of(&s.metadata), svc))
                    .or_default()
                    .push(at);
            }
        }
        ObjectIndex {
            services,
            slices,
            indexed_services: inputs.services.clone(),
            indexed_slices: inputs.endpoint_slices.clone(),
        }
    }

    fn indexes(&self, inputs: &Inputs) -> bool {
        self.indexed_services.same(&inputs.services)
            && self.indexed_slices.same(&inputs.endpoint_slices)
    }
}

impl std::fmt::Debug for BackendMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendMemo")
            .field("backends", &self.built.len())
            .finish()
    }
}

/// Resolves and shares backends: one `Arc<Backend>` per (namespace, service, port).
pub struct Backends<'a> {
    inputs: &'a Inputs,
    index: Arc<ObjectIndex>,
    /// This translation's backends (becomes the next memo).
    built: HashMap<BackendKey, Built>,
    /// The previous translation's.
    previous: HashMap<BackendKey, Built>,
    allow_external_name: bool,
}

impl<'a> Backends<'a> {
    pub fn new(inputs: &'a Inputs, allow_external_name: bool, memo: BackendMemo) -> Self {
        let index = match memo.index {
            Some(index) if index.indexes(inputs) => index,
            _ => Arc::new(ObjectIndex::new(inputs)),
        };
        Backends {
            inputs,
            index,
            built: HashMap::new(),
            previous: memo.built,
            allow_external_name,
        }
    }

    fn service(&self, namespace: &str, name: &str) -> Option<&'a Arc<Service>> {
        let inputs: &'a Inputs = self.inputs;
        let at = *self.index.services.get(&index_key(namespace, name))?;
        inputs.services.get(at)
    }

    fn slices(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        let Some(positions) = self.index.slices.get(&index_key(namespace, service)) else {
            return Vec::new();
        };
        positions
            .iter()
            .filter_map(|at| self.inputs.endpoint_slices.get(*at).cloned())
            .collect()
    }

    /// What the next translation may reuse: this one's backends, and with `keep_unused` the
    /// previous ones this translation did not need.
    pub fn into_memo(self, keep_unused: bool) -> BackendMemo {
        let index = Some(self.index);
        if !keep_unused {
            return BackendMemo {
                built: self.built,
                index,
            };
        }
        let mut all = self.previous;
        all.extend(self.built);
        BackendMemo { built: all, index }
    }

    /// The backend for a Service reference in `namespace`. Problems come back beside a
    /// backend without endpoints (the proxy answers 503 for it), so the route still exists.
    /// References to one Service port share one backend, whether they name the port by
    /// number or by name.
    pub fn resolve(
        &mut self,
        namespace: &str,
        svc: &IngressServiceBackend,
    ) -> (Arc<Backend>, Option<Reason>) {
        let written = match svc.port.as_ref() {
            Some(p) => match (p.number, p.name.as_deref()) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => String::new(),
            },
            None => String::new(),
        };
        let port_label = self
            .service_port(namespace, svc)
            .map(|p| p.port.to_string())
            .unwrap_or(written);
        let key = (namespace.to_string(), svc.name.clone(), port_label.clone());
        if let Some(b) = self.built.get(&key) {
            return (b.backend.clone(), b.problem.clone());
        }
        let service = self.service(namespace, &svc.name).cloned();
        let slices: Vec<Arc<EndpointSlice>> = self.slices(namespace, &svc.name);
        let reusable = self.previous.remove(&key).filter(|b| {
            b.allow_external_name == self.allow_external_name
                && match (&b.service, &service) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
                && b.slices.len() == slices.len()
                && b.slices.iter().zip(&slices).all(|(a, b)| Arc::ptr_eq(a, b))
        });
        let built = match reusable {
            Some(b) => b,
            None => {
                let (endpoints, problem) = self.endpoints(namespace, svc, &port_label);
                Built {
                    backend: Arc::new(Backend::new(
                        format!("{namespace}/{}:{port_label}", svc.name),
                        endpoints,
                    )),
                    problem,
                    service,
                    slices,
                    allow_external_name: self.allow_external_name,
                }
            }
        };
        let out = (built.backend.clone(), built.problem.clone());
        self.built.insert(key, built);
        out
    }

    /// The Service port a reference names: by number, by name, or the only port when the
    /// reference names none.
    fn service_port(
        &self,
        namespace: &str,
        svc: &IngressServiceBackend,
    ) -> Option<&'a ServicePort> {
        let service = self.service(namespace, &svc.name)?;
        let ports: &'a [ServicePort] = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        let wanted = svc.port.as_ref();
        ports.iter().find(|p| match wanted {
            Some(w) => match (w.number, w.name.as_deref()) {
                (Some(n), _) => p.port == n,
                (None, Some(name)) => p.name.as_deref() == Some(name),
                (None, None) => ports.len() == 1,
            },
            None => ports.len() == 1,
        })
    }

    fn endpoints(
        &self,
        namespace: &str,
        svc: &IngressServiceBackend,
        port_label: &str,
    ) -> (Endpoints, Option<Reason>) {
        let service_name = format!("{namespace}/{}", svc.name);
        let Some(service) = self.service(namespace, &svc.name) else {
            return (
                Endpoints::Static(vec![]),
                Some(Reason::ServiceNotFound {
                    service: service_name,
                }),
            );
        };
        let spec = service.spec.as_ref();
        let wanted = svc.port.as_ref();
        let port = self.service_port(namespace, svc);

        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            if !self.allow_external_name {
                return (
                    Endpoints::Static(vec![]),
                    Some(Reason::ExternalNameDisabled {
                        service: service_name,
                    }),
                );
            }
            let host = spec
                .and_then(|s| s.external_name.as_deref())
                .unwrap_or_default();
            if let Err(why) = validate::dns_name(host) {
                return (
                    Endpoints::Static(vec![]),
                    Some(Reason::InvalidExternalName {
                        service: service_name,
                        name: host.to_string(),
                        why,
                    }),
                );
            }
            let host = host.trim_end_matches('.').to_string();
            let number = port
                .map(|p| p.port)
                .or_else(|| wanted.and_then(|w| w.number));
            return match number.and_then(|n| u16::try_from(n).ok()) {
                Some(port) => (Endpoints::ExternalName { host, port }, None),
                _ => (
                    Endpoints::Static(vec![]),
                    Some(Reason::ServicePortNotFound {
                        service: service_name,
                        port: port_label.to_string(),
                    }),
                ),
            };
        }

        let Some(port) = port else {
            return (
                Endpoints::Static(vec![]),
                Some(Reason::ServicePortNotFound {
                    service: service_name,
                    port: port_label.to_string(),
                }),
            );
        };
        let family = spec
            .and_then(|s| s.ip_families.as_ref())
            .and_then(|f| f.first())
            .map(String::as_str);
        let port_name = port.name.as_deref().unwrap_or("");
        let mut ready = BTreeSet::new();
        let mut terminating = BTreeSet::new();
        for slice in &self.slices(namespace, &svc.name) {
            let fits = match family {
                Some(f) => slice.address_type == f,
                None => slice.address_type == "IPv4" || slice.address_type == "IPv6",
            };
            if !fits {
                continue;
            }
            let slice_port = slice
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name);
            let Some(number) = slice_port
                .and_then(|p| p.port)
                .and_then(|n| u16::try_from(n).ok())
            else {
                continue;
            };
            for ep in &slice.endpoints {
                let c = ep.conditions.as_ref();
                let is_ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(is_ready);
                let is_terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                for a in &ep.addresses {
                    let Ok(ip) = a.parse::<IpAddr>() else {
                        continue;
                    };
                    let addr = SocketAddr::new(ip, number);
                    if is_ready {
                        ready.insert(addr);
                    } else if serving && is_terminating {
                        terminating.insert(addr);
                    }
                }
            }
        }
        // Like kube-proxy: when nothing is ready, serving endpoints that are terminating still
        // take traffic rather than none.
        let chosen = if ready.is_empty() { terminating } else { ready };
        (Endpoints::Static(chosen.into_iter().collect()), None)
    }
}

impl Backends<'_> {
    /// The first port of a Service, if it exists.
    /// The backend of a Service's first port (the default and error backends), with the
    /// port, and a problem beside it when it has no endpoint; `None` when the Service does
    /// not exist or has no port.
    pub fn resolve_first_port(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> Option<(Arc<Backend>, i32, Option<Reason>)> {
        let port = self.first_port(namespace, name)?;
        let svc = IngressServiceBackend {
            name: name.to_string(),
            port: Some(k8s_openapi::api::networking::v1::ServiceBackendPort {
                number: Some(port),
                name: None,
            }),
        };
        let (backend, problem) = self.resolve(namespace, &svc);
        Some((backend, port, problem))
    }

    pub fn first_port(&self, namespace: &str, name: &str) -> Option<i32> {
        self.service(namespace, name)?
            .spec
            .as_ref()?
            .ports
            .as_ref()?
            .first()
            .map(|p| p.port)
    }
}
