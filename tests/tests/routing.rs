//! Routing by host and path through the real binary, over HTTP/1.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portico_e2e::manifests::{backend, ingress};
use portico_e2e::{echo, echo_json, write, Portico};

#[tokio::test]
async fn routes_by_host_and_path_with_longest_match() {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let api = echo("api").await;
    let wild = echo("wild").await;
    let any = echo("any").await;
    write(
        dir.path(),
        "backends.yaml",
        &[
            backend("default", "web", &[web]),
            backend("default", "api", &[api]),
            backend("default", "wild", &[wild]),
            backend("default", "any", &[any]),
        ]
        .join("---\n"),
    );
    write(
        dir.path(),
        "ingress.yaml",
        &ingress("default", "site")
            .rule("foo.com", "/", "Prefix", "web")
            .rule("foo.com", "/api", "Prefix", "api")
            .rule("foo.com", "/exact", "Exact", "api")
            .rule("*.foo.com", "/", "Prefix", "wild")
            .rule("", "/", "Prefix", "any")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let c = p.client(&[
        "foo.com",
        "a.foo.com",
        "b.a.foo.com",
        "other.org",
        "FOO.com",
    ]);
    let cases = [
        ("foo.com", "/", "web"),
        ("foo.com", "/api", "api"),
        ("foo.com", "/api/v1?x=1", "api"),
        ("foo.com", "/apix", "web"),
        ("foo.com", "/exact", "api"),
        ("foo.com", "/exact/", "web"),
        ("FOO.com", "/api", "api"),
        ("a.foo.com", "/", "wild"),
        ("b.a.foo.com", "/", "any"),
        ("other.org", "/x", "any"),
    ];
    for (host, path, want) in cases {
        let r = c.get(p.http_url(host, path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{host}{path}");
        assert_eq!(r.headers()["x-echo-service"], want, "{host}{path}");
    }
    // The backend sees the original path and query, and the Host header as sent.
    let j = echo_json(
        c.get(p.http_url("foo.com", "/api/v1?x=1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(j["path"], "/api/v1");
    assert_eq!(j["query"], "x=1");
    assert_eq!(j["headers"]["host"], format!("foo.com:{}", p.http.port()));
}

#[tokio::test]
async fn unmatched_requests_get_a_local_404_and_default_backends_take_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let fallback = echo("fallback").await;
    write(
        dir.path(),
        "b.yaml",
        &[
            backend("default", "web", &[web]),
            backend("default", "fallback", &[fallback]),
        ]
        .join("---\n"),
    );
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "site")
            .rule("foo.com", "/app", "Prefix", "web")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let c = p.client(&["foo.com", "bar.com"]);
    let r = c
        .get(p.http_url("foo.com", "/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("x-echo-service").is_none());
    assert_eq!(r.text().await.unwrap(), "404 Not Found\n");
    let r = c.get(p.http_url("bar.com", "/")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // An Ingress with only a defaultBackend takes what no rule matches.
    let g = p.generation().await;
    write(
        dir.path(),
        "d.yaml",
        &ingress("default", "catch-all")
            .default_backend("fallback")
            .yaml(),
    );
    p.wait_generation(g).await;
    let r = c.get(p.http_url("bar.com", "/")).send().await.unwrap();
    assert_eq!(r.headers()["x-echo-service"], "fallback");
    let r = c.get(p.http_url("foo.com", "/app/x")).send().await.unwrap();
    assert_eq!(r.headers()["x-echo-service"], "web");
}

#[tokio::test]
async fn ingresses_of_other_classes_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let other = echo("other").await;
    write(
        dir.path(),
        "b.yaml",
        &[
            backend("default", "web", &[web]),
            backend("default", "other", &[other]),
        ]
        .join("---\n"),
    );
    write(
        dir.path(),
        "classes.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: portico\nspec:\n  controller: portico.dev/ingress-controller\n---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: nginx\nspec:\n  controller: k8s.io/ingress-nginx\n",
    );
    write(
        dir.path(),
        "i.yaml",
        &[
            ingress("default", "ours")
                .class("portico")
                .rule("ours.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "theirs")
                .class("nginx")
                .rule("theirs.com", "/", "Prefix", "other")
                .yaml(),
            ingress("default", "missing")
                .class("nope")
                .rule("missing.com", "/", "Prefix", "other")
                .yaml(),
            ingress("default", "classless")
                .rule("classless.com", "/", "Prefix", "web")
                .yaml(),
        ]
        .join("---\n"),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let c = p.client(&["ours.com", "theirs.com", "missing.com", "classless.com"]);
    for (host, status) in [
        ("ours.com", 200),
        ("theirs.com", 404),
        ("missing.com", 404),
        ("classless.com", 200),
    ] {
        let r = c.get(p.http_url(host, "/")).send().await.unwrap();
        assert_eq!(r.status(), status, "{host}");
    }
}

#[tokio::test]
async fn requests_spread_round_robin_over_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let a = echo("svc").await;
    let b = echo("svc").await;
    write(dir.path(), "b.yaml", &backend("default", "svc", &[a, b]));
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "i")
            .rule("rr.com", "/", "Prefix", "svc")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let c = p.client(&["rr.com"]);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let r = c.get(p.http_url("rr.com", "/")).send().await.unwrap();
        let ep = r.headers()["x-echo-endpoint"].to_str().unwrap().to_string();
        *seen.entry(ep).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|n| *n == 10), "{seen:?}");
}
