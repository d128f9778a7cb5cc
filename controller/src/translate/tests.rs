//! translate, tested with small builders: objects in, snapshot and problems out.

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
        ingresses,
        services: vec![
            service("default", "web", &[(Some("http"), 80)]),
            service("default", "api", &[(None, 80)]),
        ],
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
        ],
        ..Inputs::default()
    }
}

fn run(inputs: &Inputs) -> Output {
    translate(inputs, &options())
}

/// (ingress, service) serving host + path, if any.
fn hit(out: &Output, host: &str, path: &str) -> Option<(String, String)> {
    out.snapshot
        .routes
        .find(host, path)
        .map(|t| (t.ingress.clone(), t.service.clone()))
}

fn served_by(out: &Output, host: &str, path: &str) -> Option<String> {
    hit(out, host, path).map(|(_, s)| s)
}

fn reasons(out: &Output) -> Vec<&Reason> {
    out.problems.iter().map(|p| &p.reason).collect()
}

// ---------- the Kubernetes Ingress path examples, one test per row ----------

fn table(paths: &[(&str, &str)]) -> Output {
    let mut b = ingress("default", "t");
    for (i, (ty, p)) in paths.iter().enumerate() {
        // Each rule gets its own service name so the answer says which rule matched.
        b = b.path("", p, ty, backend(&format!("rule{i}"), 80));
    }
    run(&world(vec![b.build()]))
}

fn matches(out: &Output, path: &str) -> Option<String> {
    served_by(out, "any.host", path).map(|s| s.trim_end_matches(":80").to_string())
}

#[test]
fn row_prefix_root_matches_all_paths() {
    let out = table(&[("Prefix", "/")]);
    for p in ["/", "/foo", "/foo/bar"] {
        assert_eq!(matches(&out, p).as_deref(), Some("rule0"), "{p}");
    }
}

#[test]
fn row_exact_foo_matches_foo() {
    assert_eq!(
        matches(&table(&[("Exact", "/foo")]), "/foo").as_deref(),
        Some("rule0")
    );
}

#[test]
fn row_exact_foo_does_not_match_bar() {
    assert_eq!(matches(&table(&[("Exact", "/foo")]), "/bar"), None);
}

#[test]
fn row_exact_foo_does_not_match_foo_slash() {
    assert_eq!(matches(&table(&[("Exact", "/foo")]), "/foo/"), None);
}

#[test]
fn row_exact_foo_slash_does_not_match_foo() {
    assert_eq!(matches(&table(&[("Exact", "/foo/")]), "/foo"), None);
}

#[test]
fn row_prefix_foo_matches_foo_and_foo_slash() {
    let out = table(&[("Prefix", "/foo")]);
    assert_eq!(matches(&out, "/foo").as_deref(), Some("rule0"));
    assert_eq!(matches(&out, "/foo/").as_deref(), Some("rule0"));
}

#[test]
fn row_prefix_foo_slash_matches_foo_and_foo_slash() {
    let out = table(&[("Prefix", "/foo/")]);
    assert_eq!(matches(&out, "/foo").as_deref(), Some("rule0"));
    assert_eq!(matches(&out, "/foo/").as_deref(), Some("rule0"));
}

#[test]
fn row_prefix_aaa_bb_does_not_match_aaa_bbb() {
    assert_eq!(matches(&table(&[("Prefix", "/aaa/bb")]), "/aaa/bbb"), None);
}

#[test]
fn row_prefix_aaa_bbb_matches_aaa_bbb() {
    assert_eq!(
        matches(&table(&[("Prefix", "/aaa/bbb")]), "/aaa/bbb").as_deref(),
        Some("rule0")
    );
}

#[test]
fn row_prefix_aaa_bbb_slash_matches_aaa_bbb() {
    assert_eq!(
        matches(&table(&[("Prefix", "/aaa/bbb/")]), "/aaa/bbb").as_deref(),
        Some("rule0")
    );
}

#[test]
fn row_prefix_aaa_bbb_matches_aaa_bbb_slash() {
    assert_eq!(
        matches(&table(&[("Prefix", "/aaa/bbb")]), "/aaa/bbb/").as_deref(),
        Some("rule0")
    );
}

#[test]
fn row_prefix_aaa_bbb_matches_aaa_bbb_ccc() {
    assert_eq!(
        matches(&table(&[("Prefix", "/aaa/bbb")]), "/aaa/bbb/ccc").as_deref(),
        Some("rule0")
    );
}

#[test]
fn row_prefix_aaa_bbb_does_not_match_aaa_bbbxyz() {
    assert_eq!(
        matches(&table(&[("Prefix", "/aaa/bbb")]), "/aaa/bbbxyz"),
        None
    );
}

#[test]
fn row_prefix_root_and_aaa_match_aaa_ccc_by_aaa() {
    let out = table(&[("Prefix", "/"), ("Prefix", "/aaa")]);
    assert_eq!(matches(&out, "/aaa/ccc").as_deref(), Some("rule1"));
}

#[test]
fn row_prefix_root_aaa_aaa_bbb_match_aaa_bbb_by_aaa_bbb() {
    let out = table(&[("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")]);
    assert_eq!(matches(&out, "/aaa/bbb").as_deref(), Some("rule2"));
}

#[test]
fn row_prefix_root_aaa_aaa_bbb_match_ccc_by_root() {
    let out = table(&[("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")]);
    assert_eq!(matches(&out, "/ccc").as_deref(), Some("rule0"));
}

#[test]
fn row_prefix_aaa_does_not_match_ccc() {
    assert_eq!(matches(&table(&[("Prefix", "/aaa")]), "/ccc"), None);
}

#[test]
fn row_mixed_prefix_and_exact_foo_match_foo_by_exact() {
    let out = table(&[("Prefix", "/foo"), ("Exact", "/foo")]);
    assert_eq!(matches(&out, "/foo").as_deref(), Some("rule1"));
}

// ---------- hosts and paths ----------

#[test]
fn wildcard_hosts_cover_one_label_and_exact_hosts_win() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("*.foo.com", "/", backend("web", 80))
        .rule("bar.foo.com", "/", backend("api", 80))
        .build()]));
    assert_eq!(
        served_by(&out, "baz.foo.com", "/").as_deref(),
        Some("web:80")
    );
    assert_eq!(
        served_by(&out, "bar.foo.com", "/").as_deref(),
        Some("api:80")
    );
    assert_eq!(served_by(&out, "foo.com", "/"), None);
    assert_eq!(served_by(&out, "a.baz.foo.com", "/"), None);
}

#[test]
fn implementation_specific_is_a_plain_string_prefix() {
    let out = run(&world(vec![ingress("default", "a")
        .path(
            "h.com",
            "/foo",
            "ImplementationSpecific",
            backend("web", 80),
        )
        .path("h.com", "", "ImplementationSpecific", backend("api", 80))
        .build()]));
    assert_eq!(
        served_by(&out, "h.com", "/foobar").as_deref(),
        Some("web:80")
    );
    assert_eq!(
        served_by(&out, "h.com", "/other").as_deref(),
        Some("api:80")
    );
}

#[test]
fn rules_for_one_host_merge_across_ingresses() {
    let out = run(&world(vec![
        ingress("default", "a")
            .rule("h.com", "/a", backend("web", 80))
            .build(),
        ingress("default", "b")
            .rule("h.com", "/b", backend("api", 80))
            .build(),
    ]));
    assert_eq!(
        hit(&out, "h.com", "/a"),
        Some(("a".into(), "web:80".into()))
    );
    assert_eq!(
        hit(&out, "h.com", "/b"),
        Some(("b".into(), "api:80".into()))
    );
    assert!(out.problems.is_empty(), "{:?}", out.problems);
}

#[test]
fn invalid_hosts_and_paths_are_problems_and_skipped() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("Bad_Host.com", "/", backend("web", 80))
        .rule("10.0.0.1", "/", backend("web", 80))
        .rule("ok.com", "no-slash", backend("web", 80))
        .path("ok.com", "/x", "Regex", backend("web", 80))
        .rule("ok.com", "/a;b", backend("web", 80))
        .rule("ok.com", "/fine", backend("web", 80))
        .build()]));
    let r = reasons(&out);
    assert_eq!(
        r.iter()
            .filter(|r| matches!(r, Reason::InvalidHost { .. }))
            .count(),
        2,
        "{r:?}"
    );
    assert_eq!(
        r.iter()
            .filter(|r| matches!(r, Reason::InvalidPath { .. }))
            .count(),
        2,
        "{r:?}"
    );
    assert!(r
        .iter()
        .any(|r| matches!(r, Reason::UnknownPathType(t) if t == "Regex")));
    assert_eq!(
        served_by(&out, "ok.com", "/fine").as_deref(),
        Some("web:80")
    );
    assert_eq!(out.snapshot.routes.route_count(), 1);
}

// ---------- conflicts and ownership ----------

#[test]
fn the_oldest_ingress_wins_a_path_and_the_loser_is_reported() {
    let out = run(&world(vec![
        ingress("default", "young")
            .created(2000)
            .rule("h.com", "/", backend("api", 80))
            .build(),
        ingress("default", "old")
            .created(1000)
            .rule("h.com", "/", backend("web", 80))
            .build(),
    ]));
    assert_eq!(
        hit(&out, "h.com", "/"),
        Some(("old".into(), "web:80".into()))
    );
    assert_eq!(out.problems.len(), 1);
    assert_eq!(out.problems[0].object.name, "young");
    assert!(
        matches!(&out.problems[0].reason, Reason::PathConflict { winner, .. } if winner == "default/old")
    );
}

#[test]
fn equal_age_breaks_ties_by_namespace_then_name() {
    let mut inputs = world(vec![
        ingress("default", "b")
            .rule("h.com", "/", backend("api", 80))
            .build(),
        ingress("default", "a")
            .rule("h.com", "/", backend("web", 80))
            .build(),
    ]);
    let out = run(&inputs);
    assert_eq!(hit(&out, "h.com", "/").unwrap().0, "a");
    inputs.ingresses.reverse();
    assert_eq!(
        run(&inputs).problems,
        out.problems,
        "input order does not matter"
    );
}

#[test]
fn canaries_are_never_conflict_losers() {
    let out = run(&world(vec![
        ingress("default", "canary")
            .created(1000)
            .annotation("nginx.ingress.kubernetes.io/canary", "true")
            .rule("h.com", "/", backend("api", 80))
            .rule("h.com", "/only-canary", backend("api", 80))
            .build(),
        ingress("default", "main")
            .created(2000)
            .rule("h.com", "/", backend("web", 80))
            .build(),
    ]));
    assert_eq!(
        hit(&out, "h.com", "/"),
        Some(("main".into(), "web:80".into()))
    );
    assert_eq!(
        hit(&out, "h.com", "/only-canary"),
        Some(("canary".into(), "api:80".into()))
    );
    assert!(
        reasons(&out)
            .iter()
            .all(|r| matches!(r, Reason::CanaryNotApplied { .. })),
        "{:?}",
        out.problems
    );
    assert_eq!(out.problems.len(), 1);
}

#[test]
fn the_first_namespace_owns_a_host() {
    let mut inputs = world(vec![
        ingress("team-a", "a")
            .created(1000)
            .rule("h.com", "/", backend("web", 80))
            .build(),
        ingress("team-b", "b")
            .created(2000)
            .rule("h.com", "/b", backend("web", 80))
            .build(),
    ]);
    let out = run(&inputs);
    assert_eq!(hit(&out, "h.com", "/b").unwrap().0, "a");
    assert!(
        matches!(
            reasons(&out)[..],
            [
                Reason::ServiceNotFound { .. },
                Reason::HostOwnedElsewhere { .. }
            ] | [
                Reason::HostOwnedElsewhere { .. },
                Reason::ServiceNotFound { .. }
            ]
        ),
        "{:?}",
        out.problems
    );

    let opts = Options {
        exclusive_host_namespaces: false,
        ..options()
    };
    inputs
        .services
        .push(service("team-b", "web", &[(None, 80)]));
    let out = translate(&inputs, &opts);
    assert_eq!(hit(&out, "h.com", "/b").unwrap().0, "b");
}

// ---------- classes ----------

#[test]
fn class_selection() {
    let ours = "portico.dev/ingress-controller";
    let mk = |name: &str, f: fn(IngressBuilder) -> IngressBuilder| {
        f(ingress("default", name))
            .rule(&format!("{name}.com"), "/", backend("web", 80))
            .build()
    };
    let ingresses = vec![
        mk("ours", |b| b.class("portico")),
        mk("theirs", |b| b.class("nginx")),
        mk("unknown", |b| b.class("nope")),
        mk("legacy", |b| {
            b.annotation(LEGACY_CLASS_ANNOTATION, "portico")
        }),
        mk("legacy-theirs", |b| {
            b.annotation(LEGACY_CLASS_ANNOTATION, "nginx")
        }),
        mk("classless", |b| b),
    ];
    let mut inputs = world(ingresses);
    inputs.ingress_classes = vec![
        class("portico", ours, false),
        class("nginx", "k8s.io/ingress-nginx", false),
    ];
    let served = |out: &Output| -> Vec<&str> {
        [
            "ours",
            "theirs",
            "unknown",
            "legacy",
            "legacy-theirs",
            "classless",
        ]
        .into_iter()
        .filter(|n| hit(out, &format!("{n}.com"), "/").is_some())
        .collect()
    };
    // Manifest mode serves class-less Ingresses.
    assert_eq!(served(&run(&inputs)), vec!["ours", "legacy", "classless"]);
    // A cluster serves them only when our class is the default.
    let strict = Options {
        serve_classless: false,
        ..options()
    };
    assert_eq!(served(&translate(&inputs, &strict)), vec!["ours", "legacy"]);
    inputs.ingress_classes[0] = class("portico", ours, true);
    assert_eq!(
        served(&translate(&inputs, &strict)),
        vec!["ours", "legacy", "classless"]
    );
}

// ---------- backends ----------

#[test]
fn service_ports_by_name_and_number_resolve_to_slice_ports() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("h.com", "/num", backend("web", 80))
        .rule("h.com", "/name", named_port("web", "http"))
        .build()]));
    for p in ["/num", "/name"] {
        let t = out.snapshot.routes.find("h.com", p).unwrap();
        assert_eq!(
            t.backend.addresses(),
            &["10.0.0.1:8080".parse().unwrap()],
            "{p}"
        );
    }
    assert!(out.problems.is_empty());
}

#[test]
fn missing_services_and_ports_keep_the_route_with_no_endpoint() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("h.com", "/nosvc", backend("nope", 80))
        .rule("h.com", "/noport", backend("web", 81))
        .build()]));
    for p in ["/nosvc", "/noport"] {
        let t = out.snapshot.routes.find("h.com", p).unwrap();
        assert!(t.backend.addresses().is_empty(), "{p}");
    }
    let r = reasons(&out);
    assert!(r
        .iter()
        .any(|r| matches!(r, Reason::ServiceNotFound { service } if service == "default/nope")));
    assert!(r
        .iter()
        .any(|r| matches!(r, Reason::ServicePortNotFound { port, .. } if port == "81")));
}

#[test]
fn endpoint_conditions_families_and_duplicates() {
    let mut inputs = world(vec![ingress("default", "a")
        .rule("h.com", "/", backend("multi", 80))
        .build()]);
    inputs
        .services
        .push(service("default", "multi", &[(Some("http"), 80)]));
    inputs.endpoint_slices.extend([
        slice(
            "default",
            "m1",
            "multi",
            "IPv4",
            (Some("http"), 80),
            &[
                ready("10.1.0.1"),
                Ep("10.1.0.2", None, None, None), // no condition: ready
                Ep("10.1.0.3", Some(false), Some(true), Some(true)), // terminating
                Ep("10.1.0.4", Some(false), None, None), // not ready
            ],
        ),
        slice(
            "default",
            "m2",
            "multi",
            "IPv4",
            (Some("http"), 80),
            &[ready("10.1.0.1")],
        ), // duplicate
        slice(
            "default",
            "m3",
            "multi",
            "IPv4",
            (Some("other"), 81),
            &[ready("10.1.0.9")],
        ), // other port
        slice(
            "default",
            "m4",
            "multi",
            "IPv6",
            (Some("http"), 80),
            &[ready("fd00::1")],
        ),
    ]);
    let out = run(&inputs);
    let addrs: Vec<String> = out
        .snapshot
        .routes
        .find("h.com", "/")
        .unwrap()
        .backend
        .addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(addrs, vec!["10.1.0.1:80", "10.1.0.2:80", "[fd00::1]:80"]);

    // With a primary family, only that family's slices count.
    let svc = Arc::make_mut(inputs.services.last_mut().unwrap());
    svc.spec.as_mut().unwrap().ip_families = Some(vec!["IPv6".into()]);
    let out = run(&inputs);
    let addrs: Vec<String> = out
        .snapshot
        .routes
        .find("h.com", "/")
        .unwrap()
        .backend
        .addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(addrs, vec!["[fd00::1]:80"]);
}

#[test]
fn terminating_serving_endpoints_are_used_when_none_is_ready() {
    let mut inputs = world(vec![ingress("default", "a")
        .rule("h.com", "/", backend("t", 80))
        .build()]);
    inputs.services.push(service("default", "t", &[(None, 80)]));
    inputs.endpoint_slices.push(slice(
        "default",
        "t1",
        "t",
        "IPv4",
        (None, 80),
        &[
            Ep("10.2.0.1", Some(false), Some(true), Some(true)),
            Ep("10.2.0.2", Some(false), Some(false), Some(true)),
        ],
    ));
    let out = run(&inputs);
    let b = &out.snapshot.routes.find("h.com", "/").unwrap().backend;
    assert_eq!(b.addresses(), &["10.2.0.1:80".parse().unwrap()]);
}

#[test]
fn external_names_need_the_flag() {
    let mut inputs = world(vec![ingress("default", "a")
        .rule("h.com", "/", backend("ext", 443))
        .build()]);
    let mut ext = (*service("default", "ext", &[(None, 443)])).clone();
    ext.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    ext.spec.as_mut().unwrap().external_name = Some("api.example.com".into());
    inputs.services.push(Arc::new(ext));
    let out = run(&inputs);
    assert!(matches!(
        reasons(&out)[..],
        [Reason::ExternalNameDisabled { .. }]
    ));
    let opts = Options {
        allow_external_name: true,
        ..options()
    };
    let out = translate(&inputs, &opts);
    assert!(out.problems.is_empty());
    assert_eq!(
        out.snapshot
            .routes
            .find("h.com", "/")
            .unwrap()
            .backend
            .endpoints,
        Endpoints::ExternalName {
            host: "api.example.com".into(),
            port: 443
        }
    );
}

#[test]
fn backends_are_shared_between_routes() {
    let out = run(&world(vec![
        ingress("default", "a")
            .rule("a.com", "/", backend("web", 80))
            .build(),
        ingress("default", "b")
            .rule("b.com", "/", backend("web", 80))
            .build(),
    ]));
    let a = &out.snapshot.routes.find("a.com", "/").unwrap().backend;
    let b = &out.snapshot.routes.find("b.com", "/").unwrap().backend;
    assert!(Arc::ptr_eq(a, b));
}

#[test]
fn resource_backends_are_refused() {
    let out = run(&world(vec![ingress("default", "a")
        .rule(
            "h.com",
            "/",
            IngressBackend {
                service: None,
                resource: None,
            },
        )
        .build()]));
    assert!(matches!(reasons(&out)[..], [Reason::UnsupportedBackend]));
    assert_eq!(out.snapshot.routes.route_count(), 0);
}

// ---------- default backends ----------

#[test]
fn default_backends() {
    let out = run(&world(vec![
        ingress("default", "site")
            .created(1000)
            .rule("h.com", "/app", backend("web", 80))
            .default_backend(backend("api", 80))
            .build(),
        ingress("default", "catchall")
            .created(2000)
            .default_backend(backend("web", 80))
            .build(),
    ]));
    // The host's own fallback, then the oldest defaultBackend for everything else.
    assert_eq!(served_by(&out, "h.com", "/app").as_deref(), Some("web:80"));
    assert_eq!(
        served_by(&out, "h.com", "/other").as_deref(),
        Some("api:80")
    );
    assert_eq!(served_by(&out, "other.com", "/").as_deref(), Some("api:80"));
    assert!(matches!(
        reasons(&out)[..],
        [Reason::DefaultBackendConflict { .. }]
    ));

    let out = run(&world(vec![ingress("default", "site")
        .rule("h.com", "/app", backend("web", 80))
        .build()]));
    assert_eq!(
        served_by(&out, "other.com", "/"),
        None,
        "404 without any default"
    );
    let opts = Options {
        default_backend_service: Some(("default".into(), "api".into())),
        ..options()
    };
    let out = translate(&world(vec![]), &opts);
    assert_eq!(served_by(&out, "other.com", "/").as_deref(), Some("api:80"));
}

// ---------- TLS ----------

fn with_certs(mut inputs: Inputs, certs: &[(&str, Result<Arc<TlsCertificate>, String>)]) -> Inputs {
    for (name, c) in certs {
        inputs
            .certificates
            .insert(("default".into(), name.to_string()), c.clone());
    }
    inputs
}

#[test]
fn tls_hosts_get_their_certificates_and_redirect() {
    let a = cert(&["a.com"]);
    let wild = cert(&["*.b.com"]);
    let inputs = with_certs(
        world(vec![ingress("default", "i")
            .tls(&["a.com"], Some("a"))
            .tls(&["*.b.com"], Some("wild"))
            .tls(&["nosecret.com"], None)
            .rule("a.com", "/", backend("web", 80))
            .rule("x.b.com", "/", backend("web", 80))
            .rule("nosecret.com", "/", backend("web", 80))
            .rule("plain.com", "/", backend("web", 80))
            .rule("", "/", backend("web", 80))
            .build()]),
        &[("a", Ok(a.clone())), ("wild", Ok(wild.clone()))],
    );
    let out = run(&inputs);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let tls = &out.snapshot.tls;
    assert!(Arc::ptr_eq(tls.resolve(Some("a.com")), &a));
    assert!(Arc::ptr_eq(tls.resolve(Some("y.b.com")), &wild));
    assert!(Arc::ptr_eq(tls.resolve(Some("nosecret.com")), &fallback()));
    let redirect = |h: &str| out.snapshot.routes.find(h, "/").unwrap().redirect_https;
    assert!(redirect("a.com"));
    assert!(redirect("x.b.com"), "covered by the wildcard TLS host");
    assert!(redirect("nosecret.com"));
    assert!(!redirect("plain.com"));
    assert!(!redirect("anything.org"), "hostless rules never redirect");
}

#[test]
fn unusable_secrets_are_problems_and_get_the_default_certificate() {
    let expired = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["old.com".to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let c = p.self_signed(&key).unwrap();
        Arc::new(
            TlsCertificate::from_pem(c.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap(),
        )
    };
    let inputs = with_certs(
        world(vec![ingress("default", "i")
            .tls(&["missing.com"], Some("missing"))
            .tls(&["bad.com"], Some("bad"))
            .tls(&["other.com"], Some("mismatch"))
            .tls(&["old.com"], Some("expired"))
            .build()]),
        &[
            (
                "bad",
                Err("the private key does not match the certificate".into()),
            ),
            ("mismatch", Ok(cert(&["not-it.com"]))),
            ("expired", Ok(expired.clone())),
        ],
    );
    let out = run(&inputs);
    let tls = &out.snapshot.tls;
    for h in ["missing.com", "bad.com", "other.com"] {
        assert!(Arc::ptr_eq(tls.resolve(Some(h)), &fallback()), "{h}");
    }
    assert!(
        Arc::ptr_eq(tls.resolve(Some("old.com")), &expired),
        "expired is still served"
    );
    let r = reasons(&out);
    assert!(r.iter().any(|r| matches!(r, Reason::SecretNotFound { .. })));
    assert!(r.iter().any(|r| matches!(r, Reason::InvalidCertificate { error, .. } if error.contains("does not match"))));
    assert!(r
        .iter()
        .any(|r| matches!(r, Reason::CertificateMismatch { .. })));
    assert!(r
        .iter()
        .any(|r| matches!(r, Reason::CertificateExpired { .. })));
    assert_eq!(out.snapshot.problems, 4);
}

#[test]
fn the_oldest_ingress_decides_a_hosts_secret() {
    let old = cert(&["h.com"]);
    let young = cert(&["h.com"]);
    let inputs = with_certs(
        world(vec![
            ingress("default", "young")
                .created(2000)
                .tls(&["h.com"], Some("young"))
                .build(),
            ingress("default", "old")
                .created(1000)
                .tls(&["h.com"], Some("old"))
                .build(),
        ]),
        &[("old", Ok(old.clone())), ("young", Ok(young))],
    );
    let out = run(&inputs);
    assert!(Arc::ptr_eq(out.snapshot.tls.resolve(Some("h.com")), &old));
    assert!(
        matches!(&out.problems[..], [p] if p.object.name == "young" && matches!(p.reason, Reason::TlsConflict { .. }))
    );
}

#[test]
fn a_configured_default_certificate_replaces_the_generated_one() {
    let d = cert(&["default.example"]);
    let inputs = with_certs(world(vec![]), &[("dflt", Ok(d.clone()))]);
    let opts = Options {
        default_certificate: Some(("default".into(), "dflt".into())),
        ..options()
    };
    assert!(Arc::ptr_eq(
        translate(&inputs, &opts).snapshot.tls.resolve(None),
        &d
    ));
    let opts = Options {
        default_certificate: Some(("default".into(), "absent".into())),
        ..options()
    };
    let out = translate(&inputs, &opts);
    assert!(Arc::ptr_eq(out.snapshot.tls.resolve(None), &fallback()));
    assert!(matches!(
        reasons(&out)[..],
        [Reason::DefaultCertificate { .. }]
    ));
}

#[test]
fn another_namespace_cannot_take_a_hosts_certificate() {
    let mut inputs = world(vec![
        ingress("team-a", "a")
            .created(1000)
            .tls(&["h.com"], None)
            .rule("h.com", "/", backend("web", 80))
            .build(),
        ingress("team-b", "b")
            .created(2000)
            .tls(&["h.com"], Some("evil"))
            .build(),
    ]);
    inputs
        .certificates
        .insert(("team-b".into(), "evil".into()), Ok(cert(&["h.com"])));
    let out = run(&inputs);
    assert!(Arc::ptr_eq(
        out.snapshot.tls.resolve(Some("h.com")),
        &fallback()
    ));
    assert!(reasons(&out)
        .iter()
        .any(|r| matches!(r, Reason::HostOwnedElsewhere { .. })));
}

#[test]
fn source_problems_are_carried_and_output_is_deterministic() {
    let mut inputs = world(vec![
        ingress("default", "a")
            .rule("h.com", "/", backend("nope", 80))
            .build(),
        ingress("default", "b")
            .rule("h.com", "/", backend("nope2", 80))
            .build(),
    ]);
    inputs.problems.push(crate::problem::Problem::new(
        crate::problem::ObjectRef::new("File", "", "x.yaml"),
        Reason::Manifest {
            document: 1,
            line: Some(3),
            message: "bad".into(),
        },
    ));
    let a = run(&inputs);
    let b = run(&inputs);
    assert_eq!(a.problems, b.problems);
    assert_eq!(a.problems.len(), 3);
    assert!(a.problems.windows(2).all(|w| w[0] <= w[1]), "sorted");
}
