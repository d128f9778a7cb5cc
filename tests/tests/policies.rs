//! Route policies from ingress-nginx and Portico annotations, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portico_e2e::manifests::{backend, ingress};
use portico_e2e::{echo, echo_json, write, Portico};

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn nginx(key: &str) -> String {
    format!("{NGINX}{key}")
}

async fn start_with(
    ingresses: &[String],
    backends: &[(&str, Vec<SocketAddr>)],
) -> (tempfile::TempDir, Portico) {
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<String> = backends
        .iter()
        .map(|(name, addrs)| backend("default", name, addrs))
        .collect();
    write(dir.path(), "backends.yaml", &docs.join("---\n"));
    write(dir.path(), "ingresses.yaml", &ingresses.join("---\n"));
    let p = Portico::start(dir.path(), &[]).await;
    (dir, p)
}

#[tokio::test]
async fn redirects_app_root_and_www() {
    let web = echo("web").await;
    let (_dir, p) = start_with(
        &[
            ingress("default", "perm")
                .annotation(&nginx("permanent-redirect"), "https://new.example/landing")
                .rule("perm.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "temp")
                .annotation(&nginx("temporal-redirect"), "https://later.example/")
                .annotation(&nginx("temporal-redirect-code"), "307")
                .rule("temp.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "both")
                .annotation(&nginx("permanent-redirect"), "https://new.example/")
                .annotation(&nginx("permanent-redirect-code"), "308")
                .annotation(&nginx("temporal-redirect"), "https://soon.example/")
                .rule("both.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "root")
                .annotation(&nginx("app-root"), "/app")
                .rule("root.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "www")
                .annotation(&nginx("from-to-www-redirect"), "true")
                .rule("www.w.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "force")
                .annotation(&nginx("force-ssl-redirect"), "true")
                .rule("force.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "keep")
                .annotation(&nginx("force-ssl-redirect"), "true")
                .annotation(&nginx("preserve-trailing-slash"), "true")
                .rule("keep.com", "/", "Prefix", "web")
                .yaml(),
        ],
        &[("web", vec![web])],
    )
    .await;
    let hosts = [
        "perm.com",
        "temp.com",
        "both.com",
        "root.com",
        "w.com",
        "www.w.com",
        "force.com",
        "keep.com",
    ];
    let c = p.client(&hosts);
    let get = |host: &'static str, path: &'static str| {
        let c = c.clone();
        let url = p.http_url(host, path);
        async move {
            let r = c.get(url).send().await.unwrap();
            let loc = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), loc)
        }
    };
    assert_eq!(
        get("perm.com", "/any?x=1").await,
        (301, Some("https://new.example/landing".into()))
    );
    assert_eq!(
        get("temp.com", "/").await,
        (307, Some("https://later.example/".into()))
    );
    assert_eq!(
        get("both.com", "/").await,
        (302, Some("https://soon.example/".into())),
        "temporal before permanent, as ingress-nginx"
    );
    assert_eq!(get("root.com", "/").await, (302, Some("/app".into())));
    assert_eq!(get("root.com", "/app").await.0, 200);
    assert_eq!(
        get("w.com", "/x?y=1").await,
        (308, Some("http://www.w.com/x?y=1".into()))
    );
    assert_eq!(get("www.w.com", "/x").await.0, 200);
    assert_eq!(
        get("force.com", "/a/").await,
        (308, Some("https://force.com/a".into())),
        "the trailing slash is dropped, as ingress-nginx does"
    );
    assert_eq!(
        get("keep.com", "/a/").await,
        (308, Some("https://keep.com/a/".into()))
    );
}

#[tokio::test]
async fn rewrite_target_with_captures_prefix_vhost_and_headers() {
    let web = echo("web").await;
    let (_dir, p) = start_with(
        &[ingress("default", "rw")
            .annotation(&nginx("rewrite-target"), "/$2")
            .annotation(&nginx("x-forwarded-prefix"), "/something")
            .annotation(&nginx("upstream-vhost"), "internal.svc.local")
            .annotation(
                "portico.dev/set-request-headers",
                "X-Team: blue\nX-Trace: on",
            )
            .annotation("portico.dev/remove-request-headers", "X-Secret")
            .annotation("portico.dev/set-response-headers", "X-Frame-Options: DENY")
            .annotation("portico.dev/remove-response-headers", "x-echo-endpoint")
            .rule(
                "rw.com",
                "/something(/|$)(.*)",
                "ImplementationSpecific",
                "web",
            )
            .yaml()],
        &[("web", vec![web])],
    )
    .await;
    let c = p.client(&["rw.com"]);
    let r = c
        .get(p.http_url("rw.com", "/something/new/deep?q=1"))
        .header("x-secret", "hidden")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.headers().get("x-echo-endpoint").is_none());
    let j = echo_json(r).await;
    assert_eq!(j["path"], "/new/deep");
    assert_eq!(j["query"], "q=1");
    assert_eq!(j["headers"]["host"], "internal.svc.local");
    assert_eq!(j["headers"]["x-forwarded-prefix"], "/something");
    assert_eq!(j["headers"]["x-team"], "blue");
    assert_eq!(j["headers"]["x-trace"], "on");
    assert!(j["headers"].get("x-secret").is_none());
    // Case-insensitive and anchored at the start, as ingress-nginx's `location ~*`.
    let j = echo_json(
        c.get(p.http_url("rw.com", "/SOMETHING"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(j["path"], "/");
    let r = c
        .get(p.http_url("rw.com", "/x/something"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn body_size_and_read_timeout() {
    let web = echo("web").await;
    let (_dir, p) = start_with(
        &[
            ingress("default", "limits")
                .annotation(&nginx("proxy-body-size"), "1k")
                .annotation(&nginx("proxy-read-timeout"), "1")
                .rule("limits.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "default")
                .rule("default.com", "/", "Prefix", "web")
                .yaml(),
        ],
        &[("web", vec![web])],
    )
    .await;
    let c = p.client(&["limits.com", "default.com"]);
    // Without a setting, bodies up to 1 MiB pass, as in ingress-nginx.
    let url = p.http_url("default.com", "/upload");
    let ok = c.post(&url).body(vec![b'a'; 1 << 20]).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..3).map(|_| Ok(vec![b'c'; 512 * 1024])).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    // The echo backend answers as soon as the body starts, so the cut may come after its
    // answer began: then the exchange is aborted instead of answered 413.
    let over = c.post(&url).body(stream).send().await;
    match over {
        Ok(r) if r.status() == 413 => {}
        Ok(r) => assert!(
            r.bytes().await.is_err(),
            "a body over 1 MiB was passed whole"
        ),
        Err(_) => {}
    }
    let url = p.http_url("limits.com", "/upload");
    let small = c.post(&url).body(vec![b'a'; 1000]).send().await.unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(small.bytes().await.unwrap().len(), 1000);
    let big = c.post(&url).body(vec![b'a'; 2000]).send().await.unwrap();
    assert_eq!(big.status(), 413, "a declared length over the limit");
    // A chunked body has no length up front: it is cut off when it passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b'b'; 600])).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let chunked = c.post(&url).body(stream).send().await.unwrap();
    assert_eq!(chunked.status(), 413, "a streamed body over the limit");

    let started = std::time::Instant::now();
    let slow = c
        .get(p.http_url("limits.com", "/slow?delay=4000"))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        c.get(p.http_url("limits.com", "/ok?delay=200"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A backend that accepts connections and closes them at once, counting them.
async fn resetting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, count)
}

#[tokio::test]
async fn failed_attempts_are_retried_only_when_safe() {
    let web = echo("web").await;
    let (bad, resets) = resetting_backend().await;
    let (_dir, p) = start_with(
        &[ingress("default", "retry")
            .rule("retry.com", "/", "Prefix", "web")
            .yaml()],
        &[("web", vec![bad, web])],
    )
    .await;
    let c = p.client(&["retry.com"]);
    for i in 0..10 {
        let r = c
            .get(p.http_url("retry.com", &format!("/get/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {i} is retried on the other endpoint");
    }
    assert!(resets.load(Ordering::SeqCst) >= 1);
    let before = resets.load(Ordering::SeqCst);
    let (mut ok, mut failed) = (0, 0);
    for i in 0..10 {
        let r = c
            .post(p.http_url("retry.com", &format!("/post/{i}")))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            502 => failed += 1,
            s => panic!("unexpected {s}"),
        }
    }
    let hit_bad = resets.load(Ordering::SeqCst) - before;
    assert!(
        failed >= 1,
        "round robin sends some POSTs to the failing endpoint"
    );
    assert_eq!(
        failed, hit_bad,
        "each POST that reached the failing endpoint was answered 502, never sent again"
    );
    assert_eq!(ok + failed, 10);
    let metrics = p.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("portico_upstream_retries_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn canaries_by_header_cookie_and_weight() {
    let web = echo("web").await;
    let beta = echo("beta").await;
    let gamma = echo("gamma").await;
    let (_dir, p) = start_with(
        &[
            ingress("default", "main")
                .rule("c.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "beta")
                .annotation(&nginx("canary"), "true")
                .annotation(&nginx("canary-by-header"), "X-Canary")
                .annotation(&nginx("canary-by-cookie"), "beta")
                .rule("c.com", "/", "Prefix", "beta")
                .yaml(),
            ingress("default", "gamma")
                .annotation(&nginx("canary"), "true")
                .annotation(&nginx("canary-weight"), "30")
                .rule("c.com", "/", "Prefix", "gamma")
                .yaml(),
            ingress("default", "main-total")
                .rule("t.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "three-quarters")
                .annotation(&nginx("canary"), "true")
                .annotation(&nginx("canary-weight"), "3")
                .annotation(&nginx("canary-weight-total"), "4")
                .rule("t.com", "/", "Prefix", "gamma")
                .yaml(),
        ],
        &[
            ("web", vec![web]),
            ("beta", vec![beta]),
            ("gamma", vec![gamma]),
        ],
    )
    .await;
    let c = p.client(&["c.com"]);
    let url = p.http_url("c.com", "/");
    let service =
        |r: reqwest::Response| r.headers()["x-echo-service"].to_str().unwrap().to_string();
    for _ in 0..5 {
        let r = c
            .get(&url)
            .header("x-canary", "always")
            .send()
            .await
            .unwrap();
        assert_eq!(service(r), "beta");
        let r = c
            .get(&url)
            .header("cookie", "a=1; beta=always")
            .send()
            .await
            .unwrap();
        assert_eq!(service(r), "beta");
    }
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..400 {
        let r = c
            .get(&url)
            .header("x-canary", "never")
            .send()
            .await
            .unwrap();
        *counts.entry(service(r)).or_insert(0) += 1;
    }
    assert!(!counts.contains_key("beta"), "{counts:?}");
    let gamma = f64::from(counts.get("gamma").copied().unwrap_or(0)) / 400.0;
    assert!((0.2..0.4).contains(&gamma), "{counts:?}");
    // canary-weight-total: 3 of 4, not 3 of 100.
    let c = p.client(&["t.com"]);
    let url = p.http_url("t.com", "/");
    let mut canary = 0u32;
    for _ in 0..400 {
        if service(c.get(&url).send().await.unwrap()) == "gamma" {
            canary += 1;
        }
    }
    let share = f64::from(canary) / 400.0;
    assert!((0.65..0.85).contains(&share), "{canary} of 400");
}

#[tokio::test]
async fn snippets_and_bad_values_are_reported_and_the_route_still_serves() {
    let web = echo("web").await;
    let (_dir, p) = start_with(
        &[
            ingress("default", "legacy")
                .annotation(
                    &nginx("configuration-snippet"),
                    "more_set_headers \"X: y\";",
                )
                .annotation(&nginx("proxy-body-size"), "lots")
                .annotation(&nginx("mirror-target"), "http://elsewhere")
                .rule("legacy.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "secured")
                .annotation(&nginx("auth-type"), "basic")
                .annotation(&nginx("auth-secret"), "users")
                .rule("secured.com", "/", "Prefix", "web")
                .yaml(),
        ],
        &[("web", vec![web])],
    )
    .await;
    let c = p.client(&["legacy.com", "secured.com"]);
    assert_eq!(
        p.status_of(&c, "secured.com", "/").await,
        503,
        "access control that cannot be applied fails closed"
    );
    let r = c.get(p.http_url("legacy.com", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x").is_none(), "the snippet never ran");
    let limit = Duration::from_secs(5);
    p.wait_log("configuration-snippet is a snippet", limit)
        .await;
    p.wait_log("proxy-body-size: expected a size", limit).await;
    p.wait_log("mirror-target is not supported", limit).await;
}

#[tokio::test]
async fn custom_errors_come_from_the_error_backend() {
    let web = echo("web").await;
    let errors = echo("errors").await;
    let (_dir, p) = start_with(
        &[
            ingress("default", "app")
                .annotation(&nginx("custom-http-errors"), "404,503")
                .annotation(&nginx("default-backend"), "errors")
                .rule("app.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "down")
                .annotation(&nginx("default-backend"), "errors")
                .rule("down.com", "/", "Prefix", "nothing")
                .yaml(),
        ],
        &[
            ("web", vec![web]),
            ("errors", vec![errors]),
            ("nothing", vec![]),
        ],
    )
    .await;
    let c = p.client(&["app.com", "down.com"]);
    let r = c
        .get(p.http_url("app.com", "/missing?status=404"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-echo-service"], "errors");
    let j = echo_json(r).await;
    assert_eq!(j["headers"]["x-code"], "404");
    assert_eq!(j["headers"]["x-format"], "application/json");
    assert_eq!(j["headers"]["x-original-uri"], "/missing?status=404");
    assert_eq!(j["headers"]["x-ingress-name"], "app");
    assert_eq!(j["headers"]["x-service-name"], "web:80");
    // Statuses not listed pass through untouched.
    let r = c
        .get(p.http_url("app.com", "/x?status=500"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["x-echo-service"].to_str().unwrap()
        ),
        (500, "web")
    );
    // A backend without endpoints: the error backend answers 503.
    let r = c.get(p.http_url("down.com", "/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-echo-service"], "errors");
}

#[tokio::test]
async fn class_parameters_and_route_policies_change_what_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let web = echo("web").await;
    let (secret, _) = portico_e2e::manifests::tls_secret("default", "site-tls", &["site.com"]);
    let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: portico\n\
                 spec:\n  controller: portico.dev/ingress-controller\n  parameters:\n    \
                 apiGroup: portico.dev\n    kind: IngressClassParameters\n    name: strict\n    scope: Cluster\n";
    let params = "apiVersion: portico.dev/v1alpha1\nkind: IngressClassParameters\nmetadata:\n  name: strict\n\
                  spec:\n  tls:\n    minVersion: \"1.3\"\n    hsts:\n      maxAge: 86400\n      includeSubDomains: true\n  \
                  proxyProtocol:\n    trustedCidrs: [\"127.0.0.2/32\"]\n  defaults:\n    headers:\n      response:\n        \
                  set:\n          X-Content-Type-Options: nosniff\n    compression:\n      gzip: true\n      brotli: true\n";
    let policy = "apiVersion: portico.dev/v1alpha1\nkind: RoutePolicy\nmetadata:\n  name: site\n  namespace: default\n\
                  spec:\n  targetRefs:\n    - kind: Ingress\n      name: site\n  rewriteTarget: /v2/$1\n";
    let (_dir, p) = start_with(
        &[
            class.to_string(),
            params.to_string(),
            policy.to_string(),
            secret,
            ingress("default", "site")
                .class("portico")
                .annotation(&nginx("ssl-redirect"), "false")
                .tls(&["site.com"], Some("site-tls"))
                .rule("site.com", "/api/(.*)", "ImplementationSpecific", "web")
                .yaml(),
        ],
        &[("web", vec![web])],
    )
    .await;

    // TLS 1.3 only: a TLS 1.2 client is refused, a TLS 1.3 client served with HSTS.
    let tls12 = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .resolve("site.com", p.https)
        .build()
        .unwrap();
    assert!(tls12
        .get(p.https_url("site.com", "/api/x"))
        .send()
        .await
        .is_err());
    let c = p.client(&["site.com"]);
    let r = c
        .get(p.https_url("site.com", "/api/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=86400; includeSubDomains"
    );
    assert_eq!(
        r.headers()["x-content-type-options"],
        "nosniff",
        "the class's defaults"
    );
    let j = echo_json(r).await;
    assert_eq!(j["path"], "/v2/users", "the RoutePolicy's rewrite");

    // Compression from the class's defaults: brotli first, gzip otherwise, as accepted.
    for (accept, want) in [("gzip, br", "br"), ("gzip", "gzip")] {
        let r = c
            .get(p.https_url("site.com", "/api/zip"))
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], want);
        assert!(r.headers().get("content-length").is_none());
        let wire = r.bytes().await.unwrap();
        let mut plain = String::new();
        use std::io::Read;
        if want == "br" {
            brotli::Decompressor::new(&wire[..], 4096)
                .read_to_string(&mut plain)
                .unwrap();
        } else {
            flate2::read::GzDecoder::new(&wire[..])
                .read_to_string(&mut plain)
                .unwrap();
        }
        let j: serde_json::Value = serde_json::from_str(&plain).unwrap();
        assert_eq!(j["path"], "/v2/zip");
    }

    // PROXY protocol from the class's trusted peers (here 127.0.0.2): the client address
    // comes from the header.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = socket.connect(p.http).await.unwrap();
    s.write_all(
        b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 80\r\nGET /api/who HTTP/1.1\r\nHost: site.com\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.contains("\"x-real-ip\": \"203.0.113.9\""),
        "{answer}"
    );
}

#[tokio::test]
async fn source_ranges_allow_deny_and_fail_closed() {
    let web = echo("web").await;
    let (_dir, p) = start_with(
        &[
            ingress("default", "office")
                .annotation(&nginx("whitelist-source-range"), "127.0.0.1/32, 10.0.0.0/8")
                .rule("office.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "elsewhere")
                .annotation(&nginx("allowlist-source-range"), "10.0.0.0/8")
                .rule("elsewhere.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "blocked")
                .annotation(&nginx("denylist-source-range"), "127.0.0.0/8")
                .annotation(&nginx("allowlist-source-range"), "127.0.0.1")
                .rule("blocked.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "broken")
                .annotation(&nginx("whitelist-source-range"), "10.0.0.0/8, the office")
                .rule("broken.com", "/", "Prefix", "web")
                .yaml(),
        ],
        &[("web", vec![web])],
    )
    .await;
    let hosts = ["office.com", "elsewhere.com", "blocked.com", "broken.com"];
    let c = p.client(&hosts);
    assert_eq!(p.status_of(&c, "office.com", "/").await, 200);
    assert_eq!(p.status_of(&c, "elsewhere.com", "/").await, 403);
    assert_eq!(p.status_of(&c, "blocked.com", "/").await, 403, "deny first");
    assert_eq!(
        p.status_of(&c, "broken.com", "/").await,
        503,
        "a list that cannot be applied refuses everyone"
    );
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let r = c
        .get(p.http_url("elsewhere.com", "/"))
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// A backend that reads each request head, answers `answer` (any bytes) and closes, counting
/// the requests it saw.
async fn raw_backend(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, count)
}

const NOT_HTTP: &[u8] = b"this is not HTTP\r\n\r\n";
const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 3\r\nconnection: close\r\n\r\n502";
const UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 3\r\nconnection: close\r\n\r\n503";

#[tokio::test]
async fn next_upstream_conditions_and_tries() {
    let web = echo("web").await;
    let (garbage, garbage_seen) = raw_backend(NOT_HTTP).await;
    let (garbage2, garbage2_seen) = raw_backend(NOT_HTTP).await;
    let (b502, seen_502) = raw_backend(BAD_GATEWAY).await;
    let (b503, seen_503) = raw_backend(UNAVAILABLE).await;
    let mut down = Vec::new();
    let mut down_seen = Vec::new();
    for _ in 0..4 {
        let (addr, seen) = raw_backend(UNAVAILABLE).await;
        down.push(addr);
        down_seen.push(seen);
    }
    let (_dir, p) = start_with(
        &[
            ingress("default", "invalid")
                .annotation(&nginx("proxy-next-upstream"), "invalid_header")
                .rule("invalid.com", "/", "Prefix", "garbled")
                .yaml(),
            ingress("default", "error-only")
                .annotation(&nginx("proxy-next-upstream"), "error timeout")
                .rule("error-only.com", "/", "Prefix", "garbled2")
                .yaml(),
            ingress("default", "statuses")
                .annotation(&nginx("proxy-next-upstream"), "http_502 http_503")
                .rule("statuses.com", "/", "Prefix", "flaky")
                .yaml(),
            ingress("default", "two")
                .annotation(&nginx("proxy-next-upstream"), "http_503")
                .annotation(&nginx("proxy-next-upstream-tries"), "2")
                .rule("two.com", "/", "Prefix", "down")
                .yaml(),
            ingress("default", "all")
                .annotation(&nginx("proxy-next-upstream"), "http_503")
                .annotation(&nginx("proxy-next-upstream-tries"), "0")
                .rule("all.com", "/", "Prefix", "down")
                .yaml(),
        ],
        &[
            ("garbled", vec![garbage, web]),
            ("garbled2", vec![garbage2, web]),
            ("flaky", vec![b502, b503, web]),
            ("down", down),
        ],
    )
    .await;
    let hosts = [
        "invalid.com",
        "error-only.com",
        "statuses.com",
        "two.com",
        "all.com",
    ];
    let c = p.client(&hosts);
    let status = |host: &'static str, method: reqwest::Method, i: usize| {
        let c = c.clone();
        let url = p.http_url(host, &format!("/r/{i}"));
        async move {
            c.request(method, url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    // invalid_header: a GET that met a malformed answer is tried on the next endpoint.
    for i in 0..6 {
        assert_eq!(status("invalid.com", reqwest::Method::GET, i).await, 200);
    }
    assert!(garbage_seen.load(Ordering::SeqCst) >= 2);
    // ... but a POST is never sent twice: the malformed answer becomes 502.
    let before = garbage_seen.load(Ordering::SeqCst);
    let mut posts = Vec::new();
    for i in 0..6 {
        posts.push(status("invalid.com", reqwest::Method::POST, i).await);
    }
    let hit = garbage_seen.load(Ordering::SeqCst) - before;
    assert!(hit >= 1, "{posts:?}");
    assert_eq!(
        posts.iter().filter(|s| **s == 502).count(),
        hit,
        "{posts:?}"
    );
    // Without invalid_header (error and timeout only, as nginx), it is not retried either.
    let gets: Vec<u16> = {
        let mut v = Vec::new();
        for i in 0..6 {
            v.push(status("error-only.com", reqwest::Method::GET, i).await);
        }
        v
    };
    let hit = garbage2_seen.load(Ordering::SeqCst);
    assert!(hit >= 1, "{gets:?}");
    assert_eq!(gets.iter().filter(|s| **s == 502).count(), hit, "{gets:?}");

    // http_502 and http_503: both failing endpoints are passed over.
    for i in 0..6 {
        assert_eq!(status("statuses.com", reqwest::Method::GET, i).await, 200);
    }
    assert!(seen_502.load(Ordering::SeqCst) >= 1 && seen_503.load(Ordering::SeqCst) >= 1);

    // proxy-next-upstream-tries bounds the attempts (2 here), the first one included; 0 tries
    // every endpoint once. The last answer goes to the client.
    let total = || {
        down_seen
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    for i in 0..3 {
        let before = total();
        assert_eq!(status("two.com", reqwest::Method::GET, i).await, 503);
        assert_eq!(total() - before, 2, "request {i}");
    }
    let before = total();
    assert_eq!(status("all.com", reqwest::Method::GET, 0).await, 503);
    assert_eq!(total() - before, 4);
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so connecting to it
/// hangs as to an address that never answers (the loopback way to exercise connect timeouts).
/// Keep the returned connections alive for as long as the address must stay full.
async fn unanswering_backend() -> (
    SocketAddr,
    tokio::net::TcpListener,
    Vec<std::net::TcpStream>,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        let connected = tokio::task::spawn_blocking(move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300))
        })
        .await
        .unwrap();
        match connected {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    (addr, listener, fillers)
}

/// A backend that reads a request head and then nothing more, without answering or closing.
async fn stalling_backend() -> SocketAddr {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            held.push(s);
        }
    });
    addr
}

#[tokio::test]
async fn connect_timeout_bounds_each_attempt() {
    let (addr, _listener, _fillers) = unanswering_backend().await;
    let (_dir, p) = start_with(
        &[ingress("default", "slow")
            .annotation(&nginx("proxy-connect-timeout"), "500ms")
            .rule("connect.com", "/", "Prefix", "blackhole")
            .yaml()],
        &[("blackhole", vec![addr])],
    )
    .await;
    let c = p.client(&["connect.com"]);
    let started = std::time::Instant::now();
    let r = c.get(p.http_url("connect.com", "/")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 504, "a connect timeout, as nginx answers it");
    // The route's 500 ms, not the controller's 5 s default.
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn send_timeout_bounds_a_backend_that_stops_reading() {
    use tokio::io::AsyncWriteExt;
    let stalled = stalling_backend().await;
    let (_dir, p) = start_with(
        &[ingress("default", "upload")
            .annotation(&nginx("proxy-send-timeout"), "1")
            .annotation(&nginx("proxy-read-timeout"), "30")
            .annotation(&nginx("proxy-body-size"), "0")
            .rule("send.com", "/", "Prefix", "stalled")
            .yaml()],
        &[("stalled", vec![stalled])],
    )
    .await;
    // 256 MiB announced and written as fast as Portico takes it: far more than the socket
    // buffers between Portico and a backend that has stopped reading.
    let s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let started = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: send.com\r\nContent-Length: {}\r\n\r\n",
            256u64 << 20
        );
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..4096 {
            wr.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let answer = portico_e2e::raw::read_response(&mut rd, Duration::from_secs(40))
        .await
        .expect("a response");
    let took = started.elapsed();
    writer.abort();
    assert_eq!(answer.status, 504, "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[tokio::test]
async fn class_parameters_set_the_default_certificate_trusted_proxies_and_cipher_suites() {
    let web = echo("web").await;
    let (class_secret, class_pem) =
        portico_e2e::manifests::tls_secret("default", "class-default", &["*.params.test"]);
    let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: portico\n\
                 spec:\n  controller: portico.dev/ingress-controller\n  parameters:\n    \
                 apiGroup: portico.dev\n    kind: IngressClassParameters\n    name: edge\n    scope: Cluster\n";
    let params = "apiVersion: portico.dev/v1alpha1\nkind: IngressClassParameters\nmetadata:\n  name: edge\n\
                  spec:\n  trustedProxies: [\"127.0.0.1/32\"]\n  accessLog:\n    format: json\n  tls:\n    \
                  cipherSuites: [TLS13_CHACHA20_POLY1305_SHA256]\n    \
                  defaultCertificate:\n      namespace: default\n      name: class-default\n";
    let (_dir, p) = start_with(
        &[
            class.to_string(),
            params.to_string(),
            class_secret,
            ingress("default", "site")
                .class("portico")
                .annotation(&nginx("ssl-redirect"), "false")
                .tls(&["a.params.test"], None)
                .rule("a.params.test", "/", "Prefix", "web")
                .yaml(),
        ],
        &[("web", vec![web])],
    )
    .await;

    // The class's default certificate for a TLS host without a Secret, the flag's elsewhere;
    // only the suite the class allows.
    let presented = portico_e2e::tls::handshake(p.https, "a.params.test")
        .await
        .unwrap();
    assert_eq!(presented.leaf, portico_e2e::tls::pem_to_der(&class_pem));
    assert_eq!(
        presented.cipher_suite,
        Some(rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256)
    );
    let elsewhere = portico_e2e::tls::handshake(p.https, "other.test")
        .await
        .unwrap();
    assert_ne!(elsewhere.leaf, presented.leaf);

    // The class trusts the loopback peer's X-Forwarded-For.
    let r = p
        .client(&["a.params.test"])
        .get(p.http_url("a.params.test", "/"))
        .header("x-forwarded-for", "203.0.113.77")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j = echo_json(r).await;
    assert_eq!(j["headers"]["x-real-ip"], "203.0.113.77", "{j}");

    // The class's access-log format (JSON; the flag's default is text), with the client the
    // trusted proxy named.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let logs = p.logs();
        let line = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["ingress"] == "site");
        if let Some(line) = line {
            assert_eq!(line["client"], "203.0.113.77", "{line}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no JSON access-log line\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
