//! The example objects in `tests/fixtures/crds/` (which the end-to-end CRD test applies to a
//! real API server) read into the types and write back unchanged: every field of the YAML is a
//! field of the types, under the same name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use portico_crds::{
    AffinityMode, BackendProtocol, IngressClassParameters, LoadBalance, RoutePolicy, SameSite,
    TlsVersion,
};

fn fixture(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/crds")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn the_route_policy_fixture_round_trips() {
    let yaml = fixture("routepolicy.yaml");
    let rp: RoutePolicy = serde_json::from_value(yaml.clone()).unwrap();
    assert_eq!(serde_json::to_value(&rp).unwrap(), yaml);

    let p = &rp.spec.policy;
    assert_eq!(rp.spec.target_refs[1].name, "api");
    assert_eq!(p.timeouts.as_ref().unwrap().send.as_deref(), Some("500ms"));
    assert_eq!(p.load_balance, Some(LoadBalance::Ewma));
    let upstream = p.upstream.as_ref().unwrap();
    assert_eq!(upstream.protocol, Some(BackendProtocol::Https));
    let affinity = p.affinity.as_ref().unwrap();
    assert_eq!(affinity.mode, Some(AffinityMode::Persistent));
    assert_eq!(
        affinity.cookie.as_ref().unwrap().same_site,
        Some(SameSite::None)
    );
    assert_eq!(p.custom_http_errors, vec![502, 503]);
}

#[test]
fn the_class_parameters_fixture_round_trips() {
    let yaml = fixture("ingressclassparameters.yaml");
    let icp: IngressClassParameters = serde_json::from_value(yaml.clone()).unwrap();
    assert_eq!(serde_json::to_value(&icp).unwrap(), yaml);
    let tls = icp.spec.tls.as_ref().unwrap();
    assert_eq!(tls.min_version, Some(TlsVersion::Tls13));
    assert!(TlsVersion::Tls12 < TlsVersion::Tls13);
    let defaults = icp.spec.defaults.as_ref().unwrap();
    assert_eq!(defaults.redirect.as_ref().unwrap().code, Some(308));
    assert_eq!(defaults.load_balance, Some(LoadBalance::RoundRobin));
}

#[test]
fn empty_lists_and_maps_are_left_out() {
    let p = portico_crds::PolicySpec {
        headers: Some(portico_crds::Headers {
            request: Some(portico_crds::HeaderOps::default()),
            response: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        serde_json::json!({"headers": {"request": {}}})
    );
}
