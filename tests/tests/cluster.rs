//! Cluster mode against a real kube-apiserver: watches, classes, TLS, status, leader
//! election, and an API server outage. Each test works in its own namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams};
use portico_e2e::apiserver::{apply, namespace, status_ip, wait_status_ip, ApiServer};
use portico_e2e::manifests::{ingress, tls_secret};
use portico_e2e::netns;
use portico_e2e::tls::{handshake, pem_to_der};
use portico_e2e::Portico;

mod common;

use common::{args, backends, service, until, CLASS};

#[tokio::test]
async fn ingresses_from_the_api_server_are_routed_and_followed() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "routes";
    let _backends = backends(&client, ns, ["web", "other"]).await;
    let p = Portico::cluster(&api.kubeconfig, &args(ns, "routes-leader")).await;

    apply(
        &client,
        &ingress(ns, "site")
            .class("portico")
            .rule("routes.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    let took = until(
        &p,
        "routes.test",
        (200, Some("web")),
        Duration::from_secs(5),
    )
    .await;
    assert!(took < Duration::from_secs(2), "routed after {took:?}");

    // A changed backend is followed.
    apply(
        &client,
        &ingress(ns, "site")
            .class("portico")
            .rule("routes.test", "/", "Prefix", "other")
            .yaml(),
    )
    .await;
    until(
        &p,
        "routes.test",
        (200, Some("other")),
        Duration::from_secs(2),
    )
    .await;

    // Status names the published address.
    wait_status_ip(
        &client,
        ns,
        "site",
        "192.0.2.10",
        Duration::from_secs(10),
        || p.logs(),
    )
    .await;

    // Deleted: 404.
    Api::<Ingress>::namespaced(client.clone(), ns)
        .delete("site", &DeleteParams::default())
        .await
        .unwrap();
    until(&p, "routes.test", (404, None), Duration::from_secs(2)).await;
}

#[tokio::test]
async fn only_portico_classes_are_served() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "classes";
    namespace(&client, ns).await;
    let web = netns::echo("web").await;
    apply(&client, CLASS).await;
    apply(&client, "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: other\nspec:\n  controller: example.com/other\n").await;
    apply(&client, &service(ns, "web", &web)).await;
    for (name, class, legacy) in [
        ("ours", Some("portico"), None),
        ("theirs", Some("other"), None),
        ("none", None, None),
        ("legacy", None, Some("portico")),
    ] {
        let mut i = ingress(ns, name).rule(&format!("{name}.classes.test"), "/", "Prefix", "web");
        if let Some(c) = class {
            i = i.class(c);
        }
        if let Some(l) = legacy {
            i = i.annotation("kubernetes.io/ingress.class", l);
        }
        apply(&client, &i.yaml()).await;
    }
    let p = Portico::cluster(&api.kubeconfig, &args(ns, "classes-leader")).await;
    until(
        &p,
        "ours.classes.test",
        (200, Some("web")),
        Duration::from_secs(5),
    )
    .await;
    until(
        &p,
        "legacy.classes.test",
        (200, Some("web")),
        Duration::from_secs(2),
    )
    .await;
    until(
        &p,
        "theirs.classes.test",
        (404, None),
        Duration::from_secs(2),
    )
    .await;
    until(&p, "none.classes.test", (404, None), Duration::from_secs(2)).await;
    drop(p);
    // With --watch-ingress-without-class, class-less Ingresses are served too.
    let mut a = args(ns, "classes-leader-2");
    a.push("--watch-ingress-without-class");
    let p = Portico::cluster(&api.kubeconfig, &a).await;
    until(
        &p,
        "none.classes.test",
        (200, Some("web")),
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn tls_secrets_are_followed() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "tls";
    let _backends = backends(&client, ns, ["web"]).await;
    apply(
        &client,
        &ingress(ns, "site")
            .class("portico")
            .tls(&["secure.tls.test"], Some("site-tls"))
            .rule("secure.tls.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    let p = Portico::cluster(&api.kubeconfig, &args(ns, "tls-leader")).await;
    // Missing Secret: the default certificate.
    assert_eq!(
        handshake(p.https, "secure.tls.test")
            .await
            .unwrap()
            .dns_names,
        vec!["portico.invalid"]
    );
    let wait_leaf = |want: Vec<u8>| {
        let addr = p.https;
        async move {
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                if handshake(addr, "secure.tls.test").await.unwrap().leaf == want {
                    return;
                }
                assert!(Instant::now() < deadline, "certificate not followed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (secret, pem) = tls_secret(ns, "site-tls", &["secure.tls.test"]);
    apply(&client, &secret).await;
    wait_leaf(pem_to_der(&pem)).await;
    let (secret, pem) = tls_secret(ns, "site-tls", &["secure.tls.test"]);
    apply(&client, &secret).await;
    wait_leaf(pem_to_der(&pem)).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .delete("site-tls", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while handshake(p.https, "secure.tls.test")
        .await
        .unwrap()
        .dns_names
        != vec!["portico.invalid"]
    {
        assert!(
            Instant::now() < deadline,
            "deleted certificate still served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_leader_writes_status_and_another_takes_over() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "leader";
    let _backends = backends(&client, ns, ["web"]).await;
    apply(
        &client,
        &ingress(ns, "first")
            .class("portico")
            .rule("first.leader.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    let a = Portico::cluster(
        &api.kubeconfig,
        &[args(ns, "leader-lease"), vec!["--pod-name", "replica-a"]].concat(),
    )
    .await;
    let b = Portico::cluster(
        &api.kubeconfig,
        &[args(ns, "leader-lease"), vec!["--pod-name", "replica-b"]].concat(),
    )
    .await;
    // Both serve.
    until(
        &a,
        "first.leader.test",
        (200, Some("web")),
        Duration::from_secs(5),
    )
    .await;
    until(
        &b,
        "first.leader.test",
        (200, Some("web")),
        Duration::from_secs(5),
    )
    .await;
    wait_status_ip(
        &client,
        ns,
        "first",
        "192.0.2.10",
        Duration::from_secs(10),
        || a.logs(),
    )
    .await;
    let leaders: Vec<&Portico> = [&a, &b]
        .into_iter()
        .filter(|p| p.logs().contains("became the leader"))
        .collect();
    assert_eq!(
        leaders.len(),
        1,
        "exactly one leader\nA:\n{}\nB:\n{}",
        a.logs(),
        b.logs()
    );
    let (mut leader, follower) = if a.logs().contains("became the leader") {
        (a, b)
    } else {
        (b, a)
    };

    // The leader stops (and hands the lease over); the other replica takes over and writes
    // the status of a new Ingress.
    leader.terminate();
    assert_eq!(leader.wait_exit(Duration::from_secs(20)).await, Some(0));
    follower
        .wait_log("became the leader", Duration::from_secs(20))
        .await;
    apply(
        &client,
        &ingress(ns, "second")
            .class("portico")
            .rule("second.leader.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    wait_status_ip(
        &client,
        ns,
        "second",
        "192.0.2.10",
        Duration::from_secs(10),
        || follower.logs(),
    )
    .await;
    // The stopped leader did not clear the status it had written.
    assert_eq!(
        status_ip(&client, ns, "first").await.as_deref(),
        Some("192.0.2.10")
    );
}

#[tokio::test]
async fn labelled_certificates_and_problem_events() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "labels";
    let _backends = backends(&client, ns, ["web"]).await;
    // A certificate stored once per host name, named by no Ingress.
    let (secret, pem) = tls_secret(ns, "wildcard", &["*.labels.test"]);
    let secret = secret.replacen(
        "metadata:\n",
        "metadata:\n  labels:\n    portico.dev/certificate: \"true\"\n",
        1,
    );
    apply(&client, &secret).await;
    apply(
        &client,
        &ingress(ns, "site")
            .class("portico")
            .tls(&["www.labels.test"], None)
            .rule("www.labels.test", "/", "Prefix", "web")
            .rule("www.labels.test", "/broken", "Prefix", "no-such-service")
            .yaml(),
    )
    .await;
    let p = Portico::cluster(&api.kubeconfig, &args(ns, "labels-leader")).await;
    assert_eq!(
        handshake(p.https, "www.labels.test").await.unwrap().leaf,
        pem_to_der(&pem)
    );

    // The unknown Service is reported as a Warning Event on the Ingress.
    wait_warning(&client, ns, "site", "ServiceNotFound", &p).await;
}

#[tokio::test]
async fn annotations_from_the_api_server_shape_routes_and_report_events() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "policies";
    let _backends = backends(&client, ns, ["web", "beta"]).await;
    let p = Portico::cluster(&api.kubeconfig, &args(ns, "policies-leader")).await;

    apply(
        &client,
        &ingress(ns, "app")
            .class("portico")
            .annotation("nginx.ingress.kubernetes.io/rewrite-target", "/$2")
            .annotation(
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "return 200;",
            )
            .rule(
                "policies.test",
                "/api(/|$)(.*)",
                "ImplementationSpecific",
                "web",
            )
            .rule("policies.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    apply(
        &client,
        &ingress(ns, "app-canary")
            .class("portico")
            .annotation("nginx.ingress.kubernetes.io/canary", "true")
            .annotation("nginx.ingress.kubernetes.io/canary-by-header", "X-Beta")
            .rule("policies.test", "/", "Prefix", "beta")
            .yaml(),
    )
    .await;
    until(
        &p,
        "policies.test",
        (200, Some("web")),
        Duration::from_secs(5),
    )
    .await;
    let c = p.client(&["policies.test"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c
            .get(p.http_url("policies.test", "/"))
            .header("x-beta", "always")
            .send()
            .await
            .unwrap();
        if r.headers()
            .get("x-echo-service")
            .is_some_and(|v| v == "beta")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the canary never took over\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c
        .get(p.http_url("policies.test", "/api/v1/users"))
        .send()
        .await
        .unwrap();
    let j: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(j["path"], "/v1/users");

    wait_warning(&client, ns, "app", "SnippetIgnored", &p).await;
}

#[tokio::test]
async fn route_policies_from_the_api_server_apply_and_get_status() {
    use portico_crds::RoutePolicy;
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "routepolicies";
    namespace(&client, ns).await;
    portico_e2e::apiserver::install_crds(&client).await;
    let web = netns::echo("web").await;
    apply(&client, CLASS).await;
    apply(&client, &service(ns, "web", &web)).await;
    let p = Portico::cluster(&api.kubeconfig, &args(ns, "rp-leader")).await;
    apply(
        &client,
        &ingress(ns, "app")
            .class("portico")
            .rule("rp.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    until(&p, "rp.test", (200, Some("web")), Duration::from_secs(5)).await;
    apply(
        &client,
        &format!(
            "apiVersion: portico.dev/v1alpha1\nkind: RoutePolicy\nmetadata:\n  name: headers\n  namespace: {ns}\n\
             spec:\n  targetRefs:\n    - kind: Ingress\n      name: app\n    - kind: Ingress\n      name: nowhere\n  \
             headers:\n    response:\n      set:\n        X-Policy: applied\n"
        ),
    )
    .await;
    let c = p.client(&["rp.test"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.get(p.http_url("rp.test", "/")).send().await.unwrap();
        if r.headers().get("x-policy").is_some_and(|v| v == "applied") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the RoutePolicy never applied\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let policies: Api<RoutePolicy> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rp = policies.get("headers").await.unwrap();
        if let Some(status) = rp.status.as_ref().filter(|s| !s.targets.is_empty()) {
            let accepted = &status.conditions[0];
            assert_eq!(
                (accepted.type_.as_str(), accepted.status.as_str()),
                ("Accepted", "True")
            );
            let fates: Vec<(&str, bool)> = status
                .targets
                .iter()
                .map(|t| (t.name.as_str(), t.accepted))
                .collect();
            assert_eq!(fates, [("app", true), ("nowhere", false)]);
            assert_eq!(status.observed_generation, rp.metadata.generation);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no RoutePolicy status\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A younger RoutePolicy, narrowed to the Ingress's host and path, setting the same field:
    // the older keeps it, the younger is Conflicted, naming the field and the winner.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply(
        &client,
        &format!(
            "apiVersion: portico.dev/v1alpha1\nkind: RoutePolicy\nmetadata:\n  name: late\n  namespace: {ns}\n\
             spec:\n  targetRefs:\n    - kind: Ingress\n      name: app\n      host: rp.test\n      path: /\n  \
             headers:\n    response:\n      set:\n        X-Policy: late\n"
        ),
    )
    .await;
    let conflicted = |rp: &RoutePolicy| {
        rp.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "Conflicted")
                .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let late = policies.get("late").await.unwrap();
        if let Some((status, reason, message)) =
            conflicted(&late).filter(|(status, _, _)| status == "True")
        {
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("True", "FieldSetByOlderPolicy")
            );
            assert!(
                message.contains("headers.response.set")
                    && message.contains(&format!("RoutePolicy {ns}/headers")),
                "{message}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "late is not Conflicted: {:?}\n{}",
            late.status,
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let headers = policies.get("headers").await.unwrap();
    assert_eq!(
        conflicted(&headers).map(|(s, r, _)| (s, r)),
        Some(("False".to_string(), "NoConflict".to_string()))
    );
    let r = c.get(p.http_url("rp.test", "/")).send().await.unwrap();
    assert_eq!(
        r.headers()["x-policy"],
        "applied",
        "the older RoutePolicy wins"
    );
}

/// Waits (10 s at most) for a Warning Event with `reason` on Ingress `ns/name`.
async fn wait_warning(client: &kube::Client, ns: &str, name: &str, reason: &str, p: &Portico) {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = events.list(&Default::default()).await.unwrap();
        let found = list.items.iter().any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        });
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "no {reason} event\n{}", p.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn killing_the_leader_loses_no_status_update() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "failover";
    let _backends = backends(&client, ns, ["web"]).await;
    let ing = |name: &str, class: &str| {
        ingress(ns, name)
            .class(class)
            .rule(&format!("{name}.failover.test"), "/", "Prefix", "web")
            .yaml()
    };
    apply(&client, &ing("settled", "portico")).await;
    // Another controller's Ingress: no status from Portico until it changes class.
    apply(&client, &ing("adopted", "other")).await;
    let a = Portico::cluster(
        &api.kubeconfig,
        &[args(ns, "failover-lease"), vec!["--pod-name", "replica-a"]].concat(),
    )
    .await;
    let b = Portico::cluster(
        &api.kubeconfig,
        &[args(ns, "failover-lease"), vec!["--pod-name", "replica-b"]].concat(),
    )
    .await;
    wait_status_ip(
        &client,
        ns,
        "settled",
        "192.0.2.10",
        Duration::from_secs(10),
        || format!("A:\n{}\nB:\n{}", a.logs(), b.logs()),
    )
    .await;
    assert_eq!(status_ip(&client, ns, "adopted").await, None);
    let (mut leader, follower) = if a.logs().contains("became the leader") {
        (a, b)
    } else {
        (b, a)
    };

    // Just before the crash: new Ingresses, and the other controller's one moved to Portico.
    let mut names: Vec<String> = Vec::new();
    for i in 0..3 {
        let name = format!("before-{i}");
        apply(&client, &ing(&name, "portico")).await;
        names.push(name);
    }
    apply(&client, &ing("adopted", "portico")).await;
    names.push("adopted".into());
    leader.kill();
    let killed = Instant::now();
    // While nobody leads (the crashed leader's lease runs out): more new Ingresses and a
    // changed one.
    for i in 0..5 {
        let name = format!("during-{i}");
        apply(&client, &ing(&name, "portico")).await;
        names.push(name);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    apply(
        &client,
        &ingress(ns, "settled")
            .class("portico")
            .rule("settled.failover.test", "/", "Prefix", "web")
            .rule("more.failover.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    names.push("settled".into());
    follower
        .wait_log("became the leader", Duration::from_secs(30))
        .await;
    let took_over = killed.elapsed();
    for name in &names {
        wait_status_ip(
            &client,
            ns,
            name,
            "192.0.2.10",
            Duration::from_secs(20),
            || follower.logs(),
        )
        .await;
    }
    eprintln!(
        "leader killed: the other replica led after {took_over:?}; all {} Ingresses had their status {:?} after the kill",
        names.len(),
        killed.elapsed()
    );
}

/// Waits (10 s at most) for the `Accepted` condition of IngressClassParameters `name` to have
/// `status`; returns its reason and message.
async fn wait_class_parameters_accepted(
    client: &kube::Client,
    name: &str,
    status: &str,
    p: &Portico,
) -> (String, String) {
    use portico_crds::IngressClassParameters;
    let api: Api<IngressClassParameters> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = api.get(name).await.unwrap();
        let found = o.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "Accepted" && c.status == status)
                .map(|c| (s.observed_generation, c.reason.clone(), c.message.clone()))
        });
        if let Some((generation, reason, message)) = found {
            assert_eq!(generation, o.metadata.generation);
            return (reason, message);
        }
        assert!(
            Instant::now() < deadline,
            "{name}: no Accepted={status} ({:?})\n{}",
            o.status,
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ingress_class_parameters_get_status_events_and_change_what_is_served() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "classparams";
    let _backends = backends(&client, ns, ["web"]).await;
    portico_e2e::apiserver::install_crds(&client).await;
    let class = |name: &str, params: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: {name}\nspec:\n  \
             controller: portico.dev/ingress-controller\n  parameters:\n    apiGroup: portico.dev\n    \
             kind: IngressClassParameters\n    name: {params}\n    scope: Cluster\n"
        )
    };
    apply(&client, &class("cp-strict", "cp-valid")).await;
    apply(&client, &class("cp-broken", "cp-invalid")).await;
    // Named only by another controller's class: not Portico's to judge.
    apply(
        &client,
        &class("cp-theirs", "cp-foreign").replace(
            "controller: portico.dev/ingress-controller",
            "controller: example.com/other",
        ),
    )
    .await;
    apply(
        &client,
        "apiVersion: portico.dev/v1alpha1\nkind: IngressClassParameters\nmetadata:\n  name: cp-foreign\n\
         spec:\n  trustedProxies: [\"not-an-address\"]\n",
    )
    .await;
    apply(
        &client,
        "apiVersion: portico.dev/v1alpha1\nkind: IngressClassParameters\nmetadata:\n  name: cp-valid\n\
         spec:\n  tls:\n    minVersion: \"1.3\"\n    hsts:\n      maxAge: 600\n      includeSubDomains: true\n",
    )
    .await;
    // Passes the schema, not Portico's parser.
    apply(
        &client,
        "apiVersion: portico.dev/v1alpha1\nkind: IngressClassParameters\nmetadata:\n  name: cp-invalid\n\
         spec:\n  proxyProtocol:\n    trustedCidrs: [\"10.0.0.0/33\"]\n",
    )
    .await;
    let (secret, _) = tls_secret(ns, "site-tls", &["params.test"]);
    apply(&client, &secret).await;
    apply(
        &client,
        &ingress(ns, "site")
            .class("cp-strict")
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
            .tls(&["params.test"], Some("site-tls"))
            .rule("params.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    let mut a = args(ns, "params-leader");
    a.extend(["--ingress-class", "cp-strict"]);
    let p = Portico::cluster(&api.kubeconfig, &a).await;
    until(
        &p,
        "params.test",
        (200, Some("web")),
        Duration::from_secs(5),
    )
    .await;

    // Served: TLS 1.3 only, with the class's HSTS header.
    let tls12 = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .resolve("params.test", p.https)
        .build()
        .unwrap();
    let refused = tls12
        .get(p.https_url("params.test", "/"))
        .send()
        .await
        .is_err();
    assert!(refused, "a TLS 1.2 handshake was accepted");
    let r = p
        .client(&["params.test"])
        .get(p.https_url("params.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=600; includeSubDomains"
    );

    // Status: the valid one accepted and in use, the invalid one refused naming its field.
    let (reason, message) = wait_class_parameters_accepted(&client, "cp-valid", "True", &p).await;
    assert_eq!(reason, "Accepted");
    assert!(message.contains("cp-strict"), "{message}");
    let (reason, message) =
        wait_class_parameters_accepted(&client, "cp-invalid", "False", &p).await;
    assert_eq!(reason, "InvalidFields");
    assert!(message.contains("proxyProtocol.trustedCidrs"), "{message}");
    let foreign = Api::<portico_crds::IngressClassParameters>::all(client.clone())
        .get("cp-foreign")
        .await
        .unwrap();
    assert_eq!(
        foreign.status, None,
        "another controller's parameters got a status"
    );

    // A Warning Event on the invalid one (cluster-scoped: in `default`).
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = events.list(&Default::default()).await.unwrap();
        let found = list.items.iter().any(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("InvalidPolicyField")
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref())
                    == Some("IngressClassParameters")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("cp-invalid")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("proxyProtocol.trustedCidrs"))
        });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Warning event on cp-invalid\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Fixed: accepted (the generation moves, and so does the status).
    apply(
        &client,
        "apiVersion: portico.dev/v1alpha1\nkind: IngressClassParameters\nmetadata:\n  name: cp-invalid\n\
         spec:\n  proxyProtocol:\n    trustedCidrs: [\"10.0.0.0/8\"]\n",
    )
    .await;
    let (reason, _) = wait_class_parameters_accepted(&client, "cp-invalid", "True", &p).await;
    assert_eq!(reason, "Accepted");
}
