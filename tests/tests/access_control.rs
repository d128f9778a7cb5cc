//! Access control through the real binary in manifest mode: basic authentication with each
//! hash type, CORS, rate limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use portico_e2e::manifests::{backend, ingress};
use portico_e2e::{echo, echo_json, write, Portico};
use sha1::Digest as _;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn nginx(key: &str) -> String {
    format!("{NGINX}{key}")
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// An Opaque Secret manifest.
fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\ntype: Opaque\ndata:\n"
    );
    for (k, v) in data {
        y.push_str(&format!("  {k}: {}\n", b64(v.as_bytes())));
    }
    y
}

/// `{SHA}` as `htpasswd -s` writes it.
fn sha_hash(password: &str) -> String {
    format!("{{SHA}}{}", b64(&sha1::Sha1::digest(password.as_bytes())))
}

/// Apache MD5 from OpenSSL (an implementation independent of Portico's).
fn apr1_hash(password: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args(["passwd", "-apr1", password])
        .output()
        .expect("openssl passwd -apr1");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn start(docs: &[String], backends: &[(&str, SocketAddr)]) -> (tempfile::TempDir, Portico) {
    let dir = tempfile::tempdir().unwrap();
    let b: Vec<String> = backends
        .iter()
        .map(|(name, addr)| backend("default", name, &[*addr]))
        .collect();
    write(dir.path(), "backends.yaml", &b.join("---\n"));
    write(dir.path(), "objects.yaml", &docs.join("---\n"));
    let p = Portico::start(dir.path(), &[]).await;
    (dir, p)
}

fn basic_ingress(name: &str, host: &str, secret: &str) -> portico_e2e::manifests::Ingress {
    ingress("default", name)
        .annotation(&nginx("auth-type"), "basic")
        .annotation(&nginx("auth-secret"), secret)
        .annotation(&nginx("auth-realm"), "Staff \"only\"")
        .rule(host, "/", "Prefix", "web")
}

#[tokio::test]
async fn basic_auth_with_each_hash_type_a_missing_secret_and_live_edits() {
    let web = echo("web").await;
    let bcrypt_hash = bcrypt::hash("bc-pass", 5).unwrap();
    let file = format!(
        "# users\nann:{}\nsam:{}\nbea:{bcrypt_hash}\nbroken line\n",
        apr1_hash("ann-pass"),
        sha_hash("sam-pass")
    );
    let map_hash = sha_hash("map-pass");
    let ingresses = [
        basic_ingress("file", "file.test", "users").yaml(),
        basic_ingress("map", "map.test", "default/usermap")
            .annotation(&nginx("auth-secret-type"), "auth-map")
            .yaml(),
        basic_ingress("missing", "missing.test", "nothere").yaml(),
        basic_ingress("foreign", "foreign.test", "other/users").yaml(),
    ];
    let mut docs = ingresses.to_vec();
    docs.push(secret("default", "users", &[("auth", &file)]));
    docs.push(secret("default", "usermap", &[("max", &map_hash)]));
    let (dir, p) = start(&docs, &[("web", web)]).await;
    let c = p.client(&["file.test", "map.test", "missing.test", "foreign.test"]);
    let get = |host: &str, creds: Option<(&str, &str)>| {
        let mut r = c.get(p.http_url(host, "/x"));
        if let Some((u, pw)) = creds {
            r = r.basic_auth(u, Some(pw));
        }
        r.send()
    };

    let r = get("file.test", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"Staff only\"",
        "quotes are dropped from the realm"
    );
    for (user, pw) in [("ann", "ann-pass"), ("sam", "sam-pass"), ("bea", "bc-pass")] {
        let r = get("file.test", Some((user, pw))).await.unwrap();
        assert_eq!(r.status(), 200, "{user}");
        let j = echo_json(r).await;
        assert!(
            j["headers"]["authorization"]
                .as_str()
                .unwrap()
                .starts_with("Basic "),
            "the credentials go upstream, as ingress-nginx sends them"
        );
        // Twice: the second bcrypt check comes from the cache, with the same answer.
        assert_eq!(
            get("file.test", Some((user, pw))).await.unwrap().status(),
            200
        );
        let wrong = get("file.test", Some((user, "wrong"))).await.unwrap();
        assert_eq!(wrong.status(), 401, "{user}");
    }
    assert_eq!(
        get("file.test", Some(("nobody", "x")))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("map.test", Some(("max", "map-pass")))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("map.test", Some(("max", "nope")))
            .await
            .unwrap()
            .status(),
        401
    );
    // A Secret that does not exist, or lives in another namespace: 503, never open.
    assert_eq!(get("missing.test", None).await.unwrap().status(), 503);
    assert_eq!(
        get("missing.test", Some(("ann", "ann-pass")))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        get("foreign.test", Some(("ann", "ann-pass")))
            .await
            .unwrap()
            .status(),
        503
    );

    // Live: Sam's password changes, and the missing Secret appears.
    let g = p.generation().await;
    let mut docs = ingresses.to_vec();
    let edited = format!("sam:{}\n", sha_hash("new-pass"));
    docs.push(secret("default", "users", &[("auth", &edited)]));
    docs.push(secret("default", "usermap", &[("max", &map_hash)]));
    docs.push(secret("default", "nothere", &[("auth", &edited)]));
    write(dir.path(), "objects.yaml", &docs.join("---\n"));
    p.wait_generation(g).await;
    assert_eq!(
        get("file.test", Some(("sam", "sam-pass")))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("file.test", Some(("sam", "new-pass")))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("file.test", Some(("ann", "ann-pass")))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("missing.test", Some(("sam", "new-pass")))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn cors_preflight_simple_requests_and_refusals() {
    let web = echo("web").await;
    let docs = [
        ingress("default", "api")
            .annotation(&nginx("enable-cors"), "true")
            .annotation(
                &nginx("cors-allow-origin"),
                "https://app.example.com, https://*.example.org",
            )
            .annotation(&nginx("cors-expose-headers"), "X-Total")
            .rule("api.test", "/", "Prefix", "web")
            .yaml(),
        ingress("default", "open")
            .annotation(&nginx("enable-cors"), "true")
            .rule("open.test", "/", "Prefix", "web")
            .yaml(),
        basic_ingress("locked", "locked.test", "users")
            .annotation(&nginx("enable-cors"), "true")
            .annotation(&nginx("cors-allow-origin"), "https://app.example.com")
            .yaml(),
        secret(
            "default",
            "users",
            &[("auth", &format!("u:{}", sha_hash("p")))],
        ),
        ingress("default", "barred")
            .annotation(&nginx("enable-cors"), "true")
            .annotation(&nginx("cors-allow-origin"), "https://app.example.com")
            .annotation(&nginx("denylist-source-range"), "127.0.0.0/8")
            .rule("barred.test", "/", "Prefix", "web")
            .yaml(),
    ];
    let (_dir, p) = start(&docs, &[("web", web)]).await;
    let c = p.client(&["api.test", "open.test", "locked.test", "barred.test"]);

    // A preflight is answered by Portico.
    let r = c
        .request(reqwest::Method::OPTIONS, p.http_url("api.test", "/items"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["vary"], "Origin");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "1728000");
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Authorization"));
    assert!(r.headers().get("x-echo-service").is_none() && r.text().await.unwrap().is_empty());

    // A simple request from a wildcard origin reaches the backend and gets the headers.
    let r = c
        .get(p.http_url("api.test", "/items"))
        .header("origin", "https://shop.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://shop.example.org"
    );
    assert_eq!(r.headers()["access-control-expose-headers"], "X-Total");
    // Another origin gets nothing, and its preflight goes to the backend.
    for origin in ["https://evil.test", "https://example.org", "null"] {
        let r = c
            .get(p.http_url("api.test", "/items"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{origin}"
        );
    }
    let r = c
        .request(reqwest::Method::OPTIONS, p.http_url("api.test", "/items"))
        .header("origin", "https://evil.test")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "not answered by Portico");
    assert_eq!(echo_json(r).await["method"], "OPTIONS");

    // `*` (the default) answers `*`, without Vary.
    let r = c
        .get(p.http_url("open.test", "/"))
        .header("origin", "https://anything.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers().get("vary").is_none());

    // A 401 carries the CORS headers too, so the browser lets the script see it.
    let r = c
        .get(p.http_url("locked.test", "/"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let r = c
        .get(p.http_url("barred.test", "/"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    // A preflight is answered before authentication (browsers send no credentials on it).
    let r = c
        .request(reqwest::Method::OPTIONS, p.http_url("locked.test", "/"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn rate_limits_refuse_over_the_burst_with_503_or_429() {
    let web = echo("web").await;
    // One request a minute, one more as burst: exactly two pass within the test.
    let limited = |name: &str, host: &str| {
        ingress("default", name)
            .annotation(&nginx("limit-rpm"), "1")
            .annotation(&nginx("limit-burst-multiplier"), "1")
            .rule(host, "/", "Prefix", "web")
    };
    let docs = [
        limited("slow", "slow.test").yaml(),
        limited("polite", "polite.test")
            .annotation("portico.dev/limit-status-code", "429")
            .yaml(),
        limited("exempt", "exempt.test")
            .annotation(&nginx("limit-whitelist"), "127.0.0.0/8")
            .yaml(),
    ];
    let (dir, p) = start(&docs, &[("web", web)]).await;
    let c = p.client(&["slow.test", "polite.test", "exempt.test"]);
    let started = Instant::now();
    for (host, refused) in [("slow.test", 503), ("polite.test", 429)] {
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(p.status_of(&c, host, "/").await);
        }
        if started.elapsed() < Duration::from_secs(55) {
            assert_eq!(&statuses[..2], [200, 200], "{host}");
            assert!(
                statuses[2..].iter().all(|s| *s == refused),
                "{host}: {statuses:?}"
            );
        }
    }
    for _ in 0..30 {
        assert_eq!(p.status_of(&c, "exempt.test", "/").await, 200);
    }
    let metrics = p.metrics().await;
    let count = |ingress: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("portico_requests_rate_limited_total{")
                    && l.contains(&format!("ingress=\"{ingress}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no counter for {ingress}:\n{metrics}"))
    };
    if started.elapsed() < Duration::from_secs(55) {
        assert_eq!(count("slow"), 10);
        assert_eq!(count("polite"), 10);
    }
    assert_eq!(count("exempt"), 0);

    // A configuration change elsewhere does not reset the counts.
    let g = p.generation().await;
    let mut more = docs.to_vec();
    more.push(
        ingress("default", "unrelated")
            .rule("unrelated.test", "/", "Prefix", "web")
            .yaml(),
    );
    write(dir.path(), "objects.yaml", &more.join("---\n"));
    p.wait_generation(g).await;
    if started.elapsed() < Duration::from_secs(55) {
        assert_eq!(p.status_of(&c, "slow.test", "/").await, 503);
    }
}

/// What the in-test auth service saw of one sub-request.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body_bytes: usize,
}

/// A tiny auth service: the answer depends on the original path (`X-Original-URI`):
/// `/allow` 200 (with `X-User: alice`), `/deny` 401, `/forbid` 403, `/error` 502, `/slow`
/// never in time.
async fn auth_service() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                log.lock().unwrap().push(Seen {
                    head: head.clone(),
                    body_bytes: buf.len() - head_end,
                });
                let path = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-original-uri: "))
                    .unwrap_or("")
                    .to_string();
                let answer = if path.starts_with("/allow") {
                    "HTTP/1.1 200 OK\r\nX-User: alice\r\nContent-Length: 0\r\n"
                } else if path.starts_with("/deny") {
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"test\"\r\nContent-Length: 0\r\n"
                } else if path.starts_with("/forbid") {
                    "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                } else if path.starts_with("/slow") {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                } else {
                    "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
                };
                let _ = s
                    .write_all(format!("{answer}Connection: close\r\n\r\n").as_bytes())
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn external_auth_allows_denies_and_fails_closed() {
    let web = echo("web").await;
    let (auth, seen) = auth_service().await;
    // A port with nothing listening.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let ext = |name: &str, host: &str, url: String| {
        ingress("default", name)
            .annotation(&nginx("auth-url"), &url)
            .annotation(&nginx("auth-response-headers"), "X-User")
            .rule(host, "/", "Prefix", "web")
    };
    let docs = [
        ext(
            "ext",
            "ext.test",
            format!("http://{auth}/check?from=portico"),
        )
        .yaml(),
        ext("signin", "signin.test", format!("http://{auth}/check"))
            .annotation(&nginx("auth-signin"), "https://login.test/start")
            .yaml(),
        ext("vars", "vars.test", format!("http://{auth}/check"))
            .annotation(
                &nginx("auth-signin"),
                "https://$host/oauth2/start?rd=$escaped_request_uri",
            )
            .yaml(),
        ext(
            "hostvar",
            "localhost",
            format!("http://$host:{}/check", auth.port()),
        )
        .yaml(),
        ext("dead", "dead.test", format!("http://{dead}/check")).yaml(),
        ext(
            "elsewhere",
            "elsewhere.test",
            format!("http://127.0.0.2:{}/check", auth.port()),
        )
        .yaml(),
        ext("meta", "meta.test", "http://169.254.169.254/latest".into()).yaml(),
    ];
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "backends.yaml",
        &backend("default", "web", &[web]),
    );
    write(dir.path(), "objects.yaml", &docs.join("---\n"));
    let p = Portico::start(
        dir.path(),
        &["--auth-url-allowed", "127.0.0.1/32", "--auth-timeout", "1s"],
    )
    .await;
    let c = p.client(&[
        "ext.test",
        "signin.test",
        "vars.test",
        "localhost",
        "dead.test",
        "elsewhere.test",
        "meta.test",
    ]);

    // Allowed: the backend gets the auth service's X-User, not the client's.
    let r = c
        .get(p.http_url("ext.test", "/allow?q=1"))
        .header("x-user", "mallory")
        .header("authorization", "Bearer t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j = echo_json(r).await;
    assert_eq!(j["headers"]["x-user"], "alice");
    let sub = seen.lock().unwrap().last().cloned().unwrap();
    assert!(
        sub.head.starts_with("get /check?from=portico http/1.1\r\n"),
        "{}",
        sub.head
    );
    for line in [
        format!("host: {auth}"),
        format!(
            "x-original-url: http://ext.test:{}/allow?q=1",
            p.http_url("x", "").rsplit(':').next().unwrap()
        ),
        "x-original-uri: /allow?q=1".to_string(),
        "x-original-method: get".to_string(),
        "x-auth-request-redirect: /allow?q=1".to_string(),
        "x-forwarded-for: 127.0.0.1".to_string(),
        "authorization: bearer t0ken".to_string(),
        "x-sent-from: nginx-ingress-controller".to_string(),
    ] {
        assert!(
            sub.head.contains(&format!("\r\n{line}\r\n")),
            "{line} in {}",
            sub.head
        );
    }
    // A request's body never goes to the auth service; its method does.
    let r = c
        .post(p.http_url("ext.test", "/allow"))
        .body("secret body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "secret body",
        "the backend gets the body"
    );
    let sub = seen.lock().unwrap().last().cloned().unwrap();
    assert!(sub.head.starts_with("post /check"), "{}", sub.head);
    assert_eq!(sub.body_bytes, 0);
    assert!(!sub.head.contains("content-length: 11"), "{}", sub.head);

    // Denied: 401 with the auth service's challenge; 403 as is.
    let r = c.get(p.http_url("ext.test", "/deny")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"test\"");
    assert_eq!(p.status_of(&c, "ext.test", "/forbid").await, 403);
    // Anything else, a timeout or no auth service at all: 500, never the backend.
    assert_eq!(p.status_of(&c, "ext.test", "/error").await, 500);
    let started = Instant::now();
    assert_eq!(p.status_of(&c, "ext.test", "/slow").await, 500);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(p.status_of(&c, "dead.test", "/allow").await, 500);

    // With auth-signin, a 401 becomes a redirect carrying the original URL.
    let r = c
        .get(p.http_url("signin.test", "/deny?a=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let port = p.http_url("x", "").rsplit(':').next().unwrap().to_string();
    assert_eq!(
        r.headers()["location"],
        format!("https://login.test/start?rd=http://signin.test:{port}%2Fdeny%3Fa%3D1").as_str()
    );
    // The nginx variables oauth2-proxy setups use.
    let r = c
        .get(p.http_url("vars.test", "/deny/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://vars.test/oauth2/start?rd=%2Fdeny%2Fx"
    );

    // `$host` in auth-url: the request's host, resolved and checked on each request.
    let r = c
        .get(p.http_url("localhost", "/allow"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sub = seen.lock().unwrap().last().cloned().unwrap();
    assert!(
        sub.head
            .contains(&format!("\r\nhost: localhost:{}\r\n", auth.port())),
        "{}",
        sub.head
    );

    // Destinations --auth-url-allowed does not permit: refused (503), the auth service
    // never asked.
    let before = seen.lock().unwrap().len();
    assert_eq!(p.status_of(&c, "elsewhere.test", "/allow").await, 503);
    assert_eq!(p.status_of(&c, "meta.test", "/allow").await, 503);
    assert_eq!(seen.lock().unwrap().len(), before);
}

/// A backend whose `/hold` answer sends its head and a first chunk, then keeps the body open
/// for 30 s; other paths answer at once.
async fn holding_backend() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                if buf.starts_with(b"GET /hold") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n")
                        .await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    let _ = s.write_all(b"0\r\n\r\n").await;
                } else {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn limit_connections_holds_a_slot_while_the_answer_streams() {
    let slow = holding_backend().await;
    let docs = [ingress("default", "conn")
        .annotation(&nginx("limit-connections"), "1")
        .rule("conn.test", "/", "Prefix", "slow")
        .yaml()];
    let (_dir, p) = start(&docs, &[("slow", slow)]).await;
    let c = p.client(&["conn.test"]);
    let mut held = c
        .get(p.http_url("conn.test", "/hold"))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    assert_eq!(held.chunk().await.unwrap().unwrap(), "hello");
    // The first answer is still streaming: a second request of the same client is refused.
    assert_eq!(p.status_of(&c, "conn.test", "/quick").await, 503);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if p.status_of(&c, "conn.test", "/quick").await == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_route_policy_sets_the_same_access_control() {
    let web = echo("web").await;
    let policy = "apiVersion: portico.dev/v1alpha1\nkind: RoutePolicy\nmetadata:\n  name: access\n  namespace: default\n\
                  spec:\n  targetRefs:\n    - kind: Ingress\n      name: typed\n  \
                  auth:\n    basic:\n      secretName: typed-users\n      secretType: auth-map\n      realm: Typed\n  \
                  cors:\n    allowOrigins: [\"https://app.example.com\"]\n  \
                  rateLimit:\n    rpm: 1\n    burstMultiplier: 3\n    statusCode: 429\n";
    let docs = [
        policy.to_string(),
        secret("default", "typed-users", &[("tess", &sha_hash("t-pass"))]),
        ingress("default", "typed")
            .rule("typed.test", "/", "Prefix", "web")
            .yaml(),
    ];
    let (_dir, p) = start(&docs, &[("web", web)]).await;
    let c = p.client(&["typed.test"]);
    let started = Instant::now();
    let send = |creds: bool| {
        let mut r = c
            .get(p.http_url("typed.test", "/"))
            .header("origin", "https://app.example.com");
        if creds {
            r = r.basic_auth("tess", Some("t-pass"));
        }
        r.send()
    };
    let r = send(false).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"Typed\"");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    // One request a minute and three more at once: the 401 above counted too.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(send(true).await.unwrap().status().as_u16());
    }
    if started.elapsed() < Duration::from_secs(55) {
        assert_eq!(statuses, [200, 200, 200, 429, 429]);
    }
}

#[tokio::test]
async fn rate_limits_count_the_client_behind_a_trusted_proxy() {
    let web = echo("web").await;
    let docs = [ingress("default", "lb")
        .annotation(&nginx("limit-rpm"), "1")
        .annotation(&nginx("limit-burst-multiplier"), "1")
        .annotation(&nginx("limit-whitelist"), "198.51.100.0/24")
        .rule("lb.test", "/", "Prefix", "web")
        .yaml()];
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "backends.yaml",
        &backend("default", "web", &[web]),
    );
    write(dir.path(), "objects.yaml", &docs.join("---\n"));
    let p = Portico::start(dir.path(), &["--trusted-proxies", "127.0.0.0/8"]).await;
    let c = p.client(&["lb.test"]);
    let started = Instant::now();
    let from = |client: &'static str| {
        c.get(p.http_url("lb.test", "/"))
            .header("x-forwarded-for", client)
            .send()
    };
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(from("192.0.2.1").await.unwrap().status().as_u16());
    }
    let other = from("192.0.2.2").await.unwrap().status().as_u16();
    let mut exempt = Vec::new();
    for _ in 0..5 {
        exempt.push(from("198.51.100.7").await.unwrap().status().as_u16());
    }
    if started.elapsed() < Duration::from_secs(55) {
        assert_eq!(first, [200, 200, 503], "one client's budget");
        assert_eq!(
            other, 200,
            "another client behind the same proxy has its own"
        );
        assert_eq!(
            exempt, [200; 5],
            "limit-whitelist applies to the real client"
        );
    }
}
