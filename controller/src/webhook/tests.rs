//! The webhook's decisions, from AdmissionReview JSON in to AdmissionReview JSON out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use portico_proxy::TlsCertificate;
use serde_json::{json, Value};

use super::*;

const NOW: i64 = 1_800_000_000;

fn options() -> Options {
    static F: OnceLock<Arc<TlsCertificate>> = OnceLock::new();
    let fallback = F
        .get_or_init(|| Arc::new(TlsCertificate::self_signed(&["portico.invalid"]).unwrap()))
        .clone();
    Options::new(fallback)
}

fn class() -> Arc<IngressClass> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "portico"},
            "spec": {"controller": "portico.dev/ingress-controller"}
        }))
        .unwrap(),
    )
}

/// An Ingress of class `portico` (unless `class` says otherwise) serving `host` `path`
/// (Prefix) from Service `web`, created at `created` (seconds) when given.
fn ing(ns: &str, name: &str, host: &str, path: &str, created: Option<i64>) -> Value {
    let mut v = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ingressClassName": "portico", "rules": [{"host": host, "http": {"paths": [
            {"path": path, "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    });
    if let Some(t) = created {
        v["metadata"]["creationTimestamp"] = json!(k8s_openapi::jiff::Timestamp::from_second(t)
            .unwrap()
            .to_string());
    }
    v
}

fn with_annotation(mut v: Value, k: &str, val: &str) -> Value {
    v["metadata"]["annotations"][k] = json!(val);
    v
}

fn web(ns: &str) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"ports": [{"port": 80}]}
        }))
        .unwrap(),
    )
}

fn prepared(ingresses: Vec<Value>) -> Prepared {
    let inputs = Inputs {
        ingresses: ingresses
            .into_iter()
            .map(|v| Arc::new(serde_json::from_value::<Ingress>(v).unwrap()))
            .collect(),
        ingress_classes: vec![class()].into(),
        services: vec![web("shop")].into(),
        ..Inputs::default()
    };
    Prepared::new(Arc::new(inputs))
}

fn request(kind: (&str, &str, &str), op: &str, object: Value, old: Option<Value>) -> Vec<u8> {
    let mut r = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": kind.0, "version": kind.1, "kind": kind.2},
            "resource": {"group": kind.0, "version": kind.1, "resource": "x"},
            "namespace": object["metadata"]["namespace"],
            "name": object["metadata"]["name"],
            "operation": op,
            "object": object,
        }
    });
    if let Some(o) = old {
        r["request"]["oldObject"] = o;
    }
    serde_json::to_vec(&r).unwrap()
}

const INGRESS: (&str, &str, &str) = ("networking.k8s.io", "v1", "Ingress");
const ROUTE_POLICY: (&str, &str, &str) = ("portico.dev", "v1alpha1", "RoutePolicy");

/// The answer's `response`.
fn settings() -> Settings {
    Settings {
        options: options(),
        watch_namespaces: Vec::new(),
    }
}

fn answer(p: Option<&Prepared>, body: &[u8]) -> Value {
    answer_with(p, body, &settings())
}

fn answer_with(p: Option<&Prepared>, body: &[u8], settings: &Settings) -> Value {
    let out = review(body, p, settings, NOW).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    v["response"].clone()
}

fn message(r: &Value) -> &str {
    r["status"]["message"].as_str().unwrap_or("")
}

#[test]
fn a_valid_ingress_is_allowed_and_a_missing_service_is_only_a_warning() {
    let p = prepared(vec![]);
    let r = answer(
        Some(&p),
        &request(
            INGRESS,
            "CREATE",
            ing("shop", "a", "a.test", "/", None),
            None,
        ),
    );
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");

    let mut other = ing("shop", "b", "b.test", "/", None);
    other["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = json!("later");
    let r = answer(Some(&p), &request(INGRESS, "CREATE", other, None));
    assert_eq!(r["allowed"], true, "{r}");
    let w = r["warnings"][0].as_str().unwrap();
    assert!(w.contains("Service shop/later not found"), "{w}");
}

#[test]
fn snippets_and_invalid_annotation_values_are_refused_with_the_controllers_message() {
    let p = prepared(vec![]);
    let snippet = with_annotation(
        ing("shop", "a", "a.test", "/", None),
        "nginx.ingress.kubernetes.io/configuration-snippet",
        "more_set_headers \"X: y\";",
    );
    let r = answer(Some(&p), &request(INGRESS, "CREATE", snippet, None));
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], 400);
    assert_eq!(
        message(&r),
        "Ingress shop/a: annotation nginx.ingress.kubernetes.io/configuration-snippet is a \
         snippet: Portico never executes configuration text from Ingresses; it is ignored"
    );

    let bad = with_annotation(
        ing("shop", "a", "a.test", "/", None),
        "nginx.ingress.kubernetes.io/proxy-read-timeout",
        "soon",
    );
    let r = answer(Some(&p), &request(INGRESS, "CREATE", bad, None));
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).starts_with(
            "Ingress shop/a: annotation nginx.ingress.kubernetes.io/proxy-read-timeout: "
        ),
        "{r}"
    );

    let mut regex = with_annotation(
        ing("shop", "a", "a.test", "/(unclosed", None),
        "nginx.ingress.kubernetes.io/use-regex",
        "true",
    );
    regex["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = json!("ImplementationSpecific");
    let r = answer(Some(&p), &request(INGRESS, "CREATE", regex, None));
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("invalid path \"/(unclosed\""), "{r}");
}

#[test]
fn a_conflict_the_new_ingress_would_lose_is_refused() {
    let p = prepared(vec![ing("shop", "old", "a.test", "/", Some(NOW - 100))]);
    // No creation time yet (as some clients send it): it counts as created now, so it loses.
    let r = answer(
        Some(&p),
        &request(
            INGRESS,
            "CREATE",
            ing("shop", "new", "a.test", "/", None),
            None,
        ),
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(
        message(&r),
        "Ingress shop/new: a.test / (Prefix) is already served by Ingress shop/old"
    );
    // The existing Ingress itself, updated: it replaces its stored version, no conflict.
    let r = answer(
        Some(&p),
        &request(
            INGRESS,
            "UPDATE",
            ing("shop", "old", "a.test", "/", Some(NOW - 100)),
            Some(ing("shop", "old", "a.test", "/", Some(NOW - 100))),
        ),
    );
    assert_eq!(r["allowed"], true, "{r}");
    // Another namespace: the host belongs to shop.
    let r = answer(
        Some(&p),
        &request(
            INGRESS,
            "CREATE",
            ing("blog", "x", "a.test", "/blog", None),
            None,
        ),
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).contains("host a.test belongs to namespace shop"),
        "{r}"
    );
    // A `www.` twin of another namespace's host is looked at too.
    let twin = with_annotation(
        ing("blog", "w", "www.a.test", "/", None),
        "nginx.ingress.kubernetes.io/from-to-www-redirect",
        "true",
    );
    let r = answer(Some(&p), &request(INGRESS, "CREATE", twin, None));
    assert_eq!(r["allowed"], true, "{r}");
}

#[test]
fn the_namespace_comes_from_the_request_when_the_object_has_none() {
    let p = prepared(vec![ing("shop", "old", "a.test", "/", Some(NOW - 100))]);
    let mut body: Value = serde_json::from_slice(&request(
        INGRESS,
        "CREATE",
        ing("shop", "new", "a.test", "/", None),
        None,
    ))
    .unwrap();
    body["request"]["object"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let r = answer(Some(&p), &serde_json::to_vec(&body).unwrap());
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).starts_with("Ingress shop/new: "), "{r}");
}

#[test]
fn other_classes_are_allowed_untouched() {
    let p = prepared(vec![]);
    let mut theirs = with_annotation(
        ing("shop", "a", "a.test", "/", None),
        "nginx.ingress.kubernetes.io/configuration-snippet",
        "anything",
    );
    theirs["spec"]["ingressClassName"] = json!("nginx");
    let r = answer(Some(&p), &request(INGRESS, "CREATE", theirs, None));
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");

    // A namespace the controller does not watch: not Portico's either.
    let ours = with_annotation(
        ing("shop", "a", "a.test", "/", None),
        "nginx.ingress.kubernetes.io/configuration-snippet",
        "anything",
    );
    let body = request(INGRESS, "CREATE", ours, None);
    let mut watching = settings();
    watching.watch_namespaces = vec!["blog".into()];
    assert_eq!(answer_with(Some(&p), &body, &watching)["allowed"], true);
    watching.watch_namespaces.push("shop".into());
    assert_eq!(answer_with(Some(&p), &body, &watching)["allowed"], false);
}

#[test]
fn updates_fail_only_for_new_problems_and_deletions_never() {
    let p = prepared(vec![]);
    let bad = with_annotation(
        ing("shop", "a", "a.test", "/", Some(NOW - 10)),
        "nginx.ingress.kubernetes.io/server-snippet",
        "x",
    );
    let mut relabelled = bad.clone();
    relabelled["metadata"]["labels"]["team"] = json!("web");
    let r = answer(
        Some(&p),
        &request(INGRESS, "UPDATE", relabelled, Some(bad.clone())),
    );
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        r["warnings"][0].as_str().unwrap().contains("snippet"),
        "{r}"
    );

    let worse = with_annotation(
        bad.clone(),
        "nginx.ingress.kubernetes.io/proxy-body-size",
        "lots",
    );
    let r = answer(
        Some(&p),
        &request(INGRESS, "UPDATE", worse, Some(bad.clone())),
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("proxy-body-size"), "{r}");
    assert!(!message(&r).contains("snippet"), "{r}");

    let mut deleting = bad.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2027-01-15T08:00:00Z");
    let mut clean = bad;
    clean["metadata"]["annotations"] = json!({});
    let r = answer(Some(&p), &request(INGRESS, "UPDATE", deleting, Some(clean)));
    assert_eq!(r["allowed"], true, "{r}");
}

#[test]
fn route_policies_with_fields_portico_cannot_use_are_refused() {
    let p = prepared(vec![]);
    let policy = |hash_by: &str| {
        json!({
            "apiVersion": "portico.dev/v1alpha1", "kind": "RoutePolicy",
            "metadata": {"name": "rp", "namespace": "shop"},
            "spec": {"targetRefs": [{"kind": "Ingress", "name": "a"}],
                     "hashBy": hash_by, "timeouts": {"read": "2s"}}
        })
    };
    let r = answer(
        Some(&p),
        &request(ROUTE_POLICY, "CREATE", policy("$request_uri"), None),
    );
    assert_eq!(r["allowed"], true, "{r}");
    let r = answer(
        Some(&p),
        &request(ROUTE_POLICY, "CREATE", policy("$nope"), None),
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).starts_with("RoutePolicy shop/rp: field hashBy: "),
        "{r}"
    );
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    let p = prepared(vec![]);
    for body in [
        &b""[..],
        b"{",
        b"[]",
        b"null",
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
        b"{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\",\"request\":{}}",
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":7}}",
    ] {
        assert!(review(body, Some(&p), &settings(), NOW).is_err(), "{body:?}");
    }
    // An object that is not an Ingress: refused with a message, not a crash.
    let mut broken = ing("shop", "a", "a.test", "/", None);
    broken["spec"]["rules"] = json!("not a list");
    let r = answer(Some(&p), &request(INGRESS, "CREATE", broken, None));
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("not a valid object"), "{r}");
    // Not ready yet: refused, saying so.
    let r = answer(
        None,
        &request(
            INGRESS,
            "CREATE",
            ing("shop", "a", "a.test", "/", None),
            None,
        ),
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("not loaded"), "{r}");
    // Other kinds and operations: allowed.
    let r = answer(
        Some(&p),
        &request(
            ("", "v1", "ConfigMap"),
            "CREATE",
            json!({"metadata": {"name": "c", "namespace": "shop"}}),
            None,
        ),
    );
    assert_eq!(r["allowed"], true, "{r}");
}

/// The reduced translation a review runs finds the same problems for the object as the whole
/// translation does.
#[test]
fn the_reduced_translation_agrees_with_the_full_one() {
    let mut stored = Vec::new();
    for i in 0..40 {
        let ns = if i % 3 == 0 { "shop" } else { "blog" };
        let host = format!("h{}.test", i % 7);
        let mut v = ing(
            ns,
            &format!("i{i}"),
            &host,
            &format!("/p{}", i % 4),
            Some(NOW - 1000 + i),
        );
        if i % 5 == 0 {
            v = with_annotation(v, "nginx.ingress.kubernetes.io/server-alias", "alias.test");
        }
        stored.push(v);
    }
    let p = prepared(stored.clone());
    for (n, candidate) in [
        ing("shop", "c1", "h1.test", "/p1", None),
        ing("blog", "c2", "h3.test", "/new", None),
        ing("shop", "c3", "alias.test", "/", None),
        ing("shop", "i3", "h3.test", "/p3", Some(NOW - 997)),
    ]
    .into_iter()
    .enumerate()
    {
        let obj: Ingress = serde_json::from_value(candidate.clone()).unwrap();
        let fast = p.ingress_problems(obj.clone(), &options(), NOW);
        let mut all = p.inputs().as_ref().clone();
        let key = (obj.metadata.namespace.clone(), obj.metadata.name.clone());
        all.ingresses
            .to_mut()
            .retain(|i| (i.metadata.namespace.clone(), i.metadata.name.clone()) != key);
        let mut stamped = obj.clone();
        if stamped.metadata.creation_timestamp.is_none() {
            stamped.metadata.creation_timestamp = Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(NOW).unwrap(),
            ));
        }
        all.ingresses.push(Arc::new(stamped));
        let mut opts = options();
        opts.now = NOW;
        let me = ObjectRef::new(
            "Ingress",
            obj.metadata.namespace.as_deref().unwrap(),
            obj.metadata.name.as_deref().unwrap(),
        );
        let full: Vec<Problem> = translate::translate(&all, &opts)
            .problems
            .into_iter()
            .filter(|p| p.object == me)
            .collect();
        assert_eq!(fast, full, "candidate {n}");
        // A conflict and another namespace's host; an alias yields to a real host instead.
        if n < 2 {
            assert!(
                fast.iter().any(|p| rejects(&p.reason)),
                "candidate {n}: {fast:?}"
            );
        }
    }
}

/// Time per review with 10,000 stored Ingresses (printed, not asserted: the machine is shared).
#[test]
fn review_time_at_ten_thousand_ingresses() {
    let stored: Vec<Value> = (0..10_000)
        .map(|i| {
            ing(
                &format!("ns{}", i % 100),
                &format!("i{i}"),
                &format!("host{i}.test"),
                "/",
                Some(NOW - 100_000 + i),
            )
        })
        .collect();
    let inputs = Arc::new(Inputs {
        ingresses: stored
            .into_iter()
            .map(|v| Arc::new(serde_json::from_value::<Ingress>(v).unwrap()))
            .collect(),
        ingress_classes: vec![class()].into(),
        services: (0..100).map(|n| web(&format!("ns{n}"))).collect(),
        ..Inputs::default()
    });
    let started = Instant::now();
    let p = Prepared::new(inputs);
    let prepare = started.elapsed();
    let bodies: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            let host = format!("host{}.test", i * 37);
            request(
                INGRESS,
                "CREATE",
                ing("ns1", &format!("c{i}"), &host, "/", None),
                None,
            )
        })
        .collect();
    let started = Instant::now();
    let mut refused = 0;
    for b in &bodies {
        let r = answer(Some(&p), b);
        if r["allowed"] == false {
            refused += 1;
        }
    }
    let per = started.elapsed() / bodies.len() as u32;
    // Every candidate takes a host that another namespace (or an older Ingress) owns.
    assert_eq!(refused, bodies.len());
    // For comparison: one translation of everything, which a review without the index would run.
    let started = Instant::now();
    let whole = translate::translate(p.inputs(), &options());
    let full = started.elapsed();
    assert_eq!(whole.served.len(), 10_000);
    println!(
        "10,000 Ingresses: index built in {prepare:?}; {per:?} per review \
         (a whole translation: {full:?})"
    );
}
