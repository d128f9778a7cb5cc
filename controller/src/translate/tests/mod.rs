//! translate, tested with small builders: objects in, snapshot and problems out.
//!
//! `mod.rs` holds the builders; each file tests one concern.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use portico_proxy::{Endpoints, TlsCertificate};

use super::*;
use crate::inputs::Inputs;
use crate::problem::Reason;

mod backends;
mod bad_objects;
mod classes;
mod conflicts;
mod default_backends;
mod host_tls;
mod hosts_and_paths;
mod incremental;
mod path_examples;
mod policies;
mod tls;

// ---------- builders ----------

fn backend(svc: &str, port: i32) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: svc.into(),
            port: Some(ServiceBackendPort {
                number: Some(port),
                name: None,
            }),
        }),
        resource: None,
    }
}

fn named_port(svc: &str, port: &str) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: svc.into(),
            port: Some(ServiceBackendPort {
                number: None,
                name: Some(port.into()),
            }),
        }),
        resource: None,
    }
}

struct IngressBuilder(Ingress);

fn ingress(ns: &str, name: &str) -> IngressBuilder {
    let mut i = Ingress::default();
    i.metadata.namespace = Some(ns.into());
    i.metadata.name = Some(name.into());
    i.spec = Some(IngressSpec::default());
    IngressBuilder(i)
}

impl IngressBuilder {
    fn spec(&mut self) -> &mut IngressSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }

    fn path(mut self, host: &str, path: &str, path_type: &str, b: IngressBackend) -> Self {
        let host = (!host.is_empty()).then(|| host.to_string());
        let rules = self.spec().rules.get_or_insert_with(Vec::new);
        let idx = match rules.iter().position(|r| r.host == host) {
            Some(i) => i,
            None => {
                rules.push(IngressRule {
                    host: host.clone(),
                    http: Some(HTTPIngressRuleValue { paths: vec![] }),
                });
                rules.len() - 1
            }
        };
        rules[idx]
            .http
            .get_or_insert_with(Default::default)
            .paths
            .push(HTTPIngressPath {
                path: Some(path.into()),
                path_type: path_type.into(),
                backend: b,
            });
        self
    }

    fn rule(self, host: &str, path: &str, b: IngressBackend) -> Self {
        self.path(host, path, "Prefix", b)
    }

    fn tls(mut self, hosts: &[&str], secret: Option<&str>) -> Self {
        self.spec()
            .tls
            .get_or_insert_with(Vec::new)
            .push(IngressTLS {
                hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
                secret_name: secret.map(str::to_string),
            });
        self
    }

    fn default_backend(mut self, b: IngressBackend) -> Self {
        self.spec().default_backend = Some(b);
        self
    }

    fn class(mut self, c: &str) -> Self {
        self.spec().ingress_class_name = Some(c.into());
        self
    }

    fn annotation(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(k.into(), v.into());
        self
    }

    fn created(mut self, secs: i64) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
        ));
        self
    }

    fn build(self) -> Arc<Ingress> {
        Arc::new(self.0)
    }
}

fn service(ns: &str, name: &str, ports: &[(Option<&str>, i32)]) -> Arc<Service> {
    let mut s = Service::default();
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(name.into());
    s.spec = Some(ServiceSpec {
        ports: Some(
            ports
                .iter()
                .map(|(n, p)| ServicePort {
                    name: n.map(str::to_string),
                    port: *p,
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    });
    Arc::new(s)
}

#[derive(Clone, Copy)]
struct Ep(&'static str, Option<bool>, Option<bool>, Option<bool>);

fn ready(ip: &'static str) -> Ep {
    Ep(ip, Some(true), None, None)
}

fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    family: &str,
    port: (Option<&str>, i32),
    eps: &[Ep],
) -> Arc<EndpointSlice> {
    let mut s = EndpointSlice {
        address_type: family.into(),
        endpoints: eps
            .iter()
            .map(|Ep(ip, r, sv, t)| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: *r,
                    serving: *sv,
                    terminating: *t,
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: port.0.map(str::to_string),
            port: Some(port.1),
            ..Default::default()
        }]),
        ..Default::default()
    };
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(name.into());
    s.metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        svc.to_string(),
    )]));
    Arc::new(s)
}

fn class(name: &str, controller: &str, default: bool) -> Arc<IngressClass> {
    let mut c = IngressClass::default();
    c.metadata.name = Some(name.into());
    if default {
        c.metadata.annotations = Some(BTreeMap::from([(
            DEFAULT_CLASS_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
    }
    c.spec = Some(IngressClassSpec {
        controller: Some(controller.into()),
        parameters: None,
    });
    Arc::new(c)
}

fn cert(names: &[&str]) -> Arc<TlsCertificate> {
    Arc::new(TlsCertificate::self_signed(names).unwrap())
}

fn fallback() -> Arc<TlsCertificate> {
    static F: OnceLock<Arc<TlsCertificate>> = OnceLock::new();
    F.get_or_init(|| cert(&["portico.invalid"])).clone()
}

fn options() -> Options {
    Options {
        serve_classless: true,
        now: 1_800_000_000,
        ..Options::new(fallback())
    }
}

/// A world with a Service `web` (port 80 named http, endpoint 10.0.0.1:8080) and `api`
/// (port 80, endpoint 10.0.0.2:9090) in `default`.
fn world(ingresses: Vec<Arc<Ingress>>) -> Inputs {
    Inputs {
        ingresses: ingresses.into(),
        services: vec![
            service("default", "web", &[(Some("http"), 80)]),
            service("default", "api", &[(None, 80)]),
        ]
        .into(),
        endpoint_slices: vec![
            slice(
                "default",
                "web-1",
                "web",
                "IPv4",
                (Some("http"), 8080),
                &[ready("10.0.0.1")],
            ),
            slice(
                "default",
                "api-1",
                "api",
                "IPv4",
                (None, 9090),
                &[ready("10.0.0.2")],
            ),
        ]
        .into(),
        ..Inputs::default()
    }
}

fn with_certs(mut inputs: Inputs, certs: &[(&str, Result<Arc<TlsCertificate>, String>)]) -> Inputs {
    for (name, c) in certs {
        Arc::make_mut(&mut inputs.certificates)
            .insert(("default".into(), name.to_string()), c.clone());
    }
    inputs
}

fn run(inputs: &Inputs) -> Output {
    translate(inputs, &options())
}

/// (ingress, service) serving host + path, if any.
fn hit(out: &Output, host: &str, path: &str) -> Option<(String, String)> {
    out.snapshot
        .routes
        .find(host, path)
        .map(|m| (m.target.ingress.clone(), m.target.service.clone()))
}

fn served_by(out: &Output, host: &str, path: &str) -> Option<String> {
    hit(out, host, path).map(|(_, s)| s)
}

fn reasons(out: &Output) -> Vec<&Reason> {
    out.problems.iter().map(|p| &p.reason).collect()
}
