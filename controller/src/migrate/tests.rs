use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;

use super::*;

fn ingress(annotations: &[(&str, &str)]) -> Ingress {
    let mut i = Ingress::default();
    i.metadata.namespace = Some("shop".into());
    i.metadata.name = Some("web".into());
    i.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    i
}

fn verdict(report: &IngressReport, key: &str) -> Verdict {
    report
        .annotations
        .iter()
        .find(|f| f.key == key)
        .map(|f| f.verdict)
        .unwrap_or_else(|| panic!("{key} not in report: {report:?}"))
}

const N: &str = "nginx.ingress.kubernetes.io/";

#[test]
fn verdicts_follow_the_annotation_front_end() {
    let r = check_ingress(&ingress(&[
        ("nginx.ingress.kubernetes.io/rewrite-target", "/$1"),
        ("nginx.ingress.kubernetes.io/proxy-body-size", "8m"),
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", "soon"),
        (
            "nginx.ingress.kubernetes.io/configuration-snippet",
            "more_set_headers x;",
        ),
        ("nginx.ingress.kubernetes.io/enable-modsecurity", "true"),
        ("nginx.ingress.kubernetes.io/proxy-buffering", "on"),
        ("nginx.ingress.kubernetes.io/no-such-key", "1"),
        ("kubernetes.io/ingress.class", "nginx"),
        ("example.com/other", "x"),
    ]));
    assert_eq!(
        verdict(&r, &format!("{N}rewrite-target")),
        Verdict::Supported
    );
    assert_eq!(
        verdict(&r, &format!("{N}proxy-body-size")),
        Verdict::Difference
    );
    assert_eq!(
        verdict(&r, &format!("{N}proxy-read-timeout")),
        Verdict::Invalid
    );
    assert_eq!(
        verdict(&r, &format!("{N}configuration-snippet")),
        Verdict::Refused
    );
    assert_eq!(
        verdict(&r, &format!("{N}enable-modsecurity")),
        Verdict::NotRead
    );
    assert_eq!(
        verdict(&r, &format!("{N}proxy-buffering")),
        Verdict::NoEffect
    );
    assert_eq!(verdict(&r, &format!("{N}no-such-key")), Verdict::NotRead);
    // Only the two prefixes are looked at.
    assert_eq!(r.annotations.len(), 7);
    let report = Report::new(vec![r], None);
    assert!(report.changes_behaviour);
    assert_eq!(report.summary.get("invalid"), Some(&1));
}

#[test]
fn supported_only_means_no_behaviour_change() {
    let r = check_ingress(&ingress(&[
        ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
        ("nginx.ingress.kubernetes.io/proxy-buffering", "off"),
        ("nginx.ingress.kubernetes.io/proxy-body-size", "0"),
    ]));
    let report = Report::new(vec![r], None);
    assert!(!report.changes_behaviour, "{report:?}");
}

#[test]
fn invalid_reason_is_given_once() {
    let r = check_ingress(&ingress(&[
        ("nginx.ingress.kubernetes.io/canary-weight", "x"),
        ("nginx.ingress.kubernetes.io/canary", "true"),
    ]));
    let f = r
        .annotations
        .iter()
        .find(|f| f.key.ends_with("canary-weight"))
        .expect("finding");
    assert_eq!(f.verdict, Verdict::Invalid);
    assert_eq!(f.detail.matches("expected").count(), 1, "{}", f.detail);
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn configmap_maps_onto_class_parameters() {
    let r = configmap::check(
        "ingress-nginx",
        "ingress-nginx-controller",
        &data(&[
            ("use-gzip", "true"),
            ("gzip-level", "5"),
            ("proxy-body-size", "20m"),
            ("proxy-read-timeout", "120"),
            ("ssl-protocols", "TLSv1.2 TLSv1.3"),
            ("hsts-max-age", "600"),
            ("use-forwarded-headers", "true"),
            ("proxy-real-ip-cidr", "10.0.0.0/8"),
            ("worker-processes", "4"),
            ("allow-snippet-annotations", "true"),
            ("load-balance", "least_conn"),
        ]),
    );
    let spec = &r.class_parameters;
    let defaults = spec.defaults.as_ref().expect("defaults");
    assert_eq!(defaults.max_body_size.as_deref(), Some("20m"));
    let compression = defaults.compression.as_ref().expect("compression");
    assert_eq!(compression.gzip, Some(true));
    assert_eq!(compression.gzip_level, Some(5));
    assert_eq!(
        defaults.timeouts.as_ref().and_then(|t| t.read.as_deref()),
        Some("120s")
    );
    let tls = spec.tls.as_ref().expect("tls");
    assert_eq!(
        tls.min_version,
        Some(portico_crds::class_parameters::TlsVersion::Tls12)
    );
    // HSTS is on in ingress-nginx unless turned off: carried over with its max-age.
    let hsts = tls.hsts.as_ref().expect("hsts");
    assert_eq!(hsts.max_age, Some(600));
    assert_eq!(hsts.include_sub_domains, Some(true));
    assert_eq!(r.flags, vec!["--trusted-proxies=10.0.0.0/8".to_string()]);
    let v = |k: &str| r.keys.iter().find(|f| f.key == k).map(|f| f.verdict);
    assert_eq!(v("worker-processes"), Some(Verdict::NoEffect));
    assert_eq!(v("allow-snippet-annotations"), Some(Verdict::Refused));
    assert_eq!(v("load-balance"), Some(Verdict::Invalid));
}

#[test]
fn configmap_turning_hsts_off_leaves_it_off() {
    let r = configmap::check("ns", "cm", &data(&[("hsts", "false")]));
    assert!(r
        .class_parameters
        .tls
        .as_ref()
        .is_none_or(|t| t.hsts.is_none()));
}

#[test]
fn hostile_configmap_values_are_invalid_not_mapped() {
    let r = configmap::check(
        "ns",
        "cm",
        &data(&[
            ("proxy-body-size", "1m;\n evil"),
            ("gzip-types", "text/html\"; x"),
            ("proxy-connect-timeout", "5s\r\n"),
            ("use-proxy-protocol", "yes"),
            ("hsts", "false"),
        ]),
    );
    assert!(
        r.keys
            .iter()
            .filter(|f| f.key != "hsts")
            .all(|f| f.verdict == Verdict::Invalid),
        "{:?}",
        r.keys
    );
    assert!(r.class_parameters.defaults.is_none());
}

#[test]
fn every_difference_is_documented() {
    let docs = include_str!("../../../docs/annotations.md");
    for (key, _) in catalog::DIFFERENCES {
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/annotations.md does not mention {key}"
        );
    }
}
