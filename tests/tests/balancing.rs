//! Endpoint choice per route: cookie affinity, consistent hashing, EWMA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use portico_e2e::manifests::{backend, ingress};
use portico_e2e::{echo, write, Portico};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn nginx(key: &str) -> String {
    format!("{NGINX}{key}")
}

fn endpoint(r: &reqwest::Response) -> String {
    r.headers()["x-echo-endpoint"].to_str().unwrap().to_string()
}

/// An HTTP/1.1 backend that answers every request after `delay`, keeping connections open.
async fn slow_backend(delay: Duration) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    tokio::time::sleep(delay).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nx-echo-endpoint: {addr}\r\n\r\nslow"
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn cookie_affinity_hashing_and_ewma() {
    let (a, b, c) = (echo("web").await, echo("web").await, echo("web").await);
    let fast = echo("fast").await;
    let slow = slow_backend(Duration::from_millis(60)).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "b.yaml",
        &[
            backend("default", "web", &[a, b, c]),
            backend("default", "mixed", &[fast, slow]),
        ]
        .join("---\n"),
    );
    write(
        dir.path(),
        "i.yaml",
        &[
            ingress("default", "sticky")
                .annotation(&nginx("affinity"), "cookie")
                .annotation(&nginx("session-cookie-name"), "route")
                .annotation(&nginx("session-cookie-max-age"), "3600")
                .annotation(&nginx("session-cookie-samesite"), "Lax")
                .rule("sticky.com", "/app", "Prefix", "web")
                .yaml(),
            ingress("default", "persistent")
                .annotation(&nginx("affinity"), "cookie")
                .annotation(&nginx("affinity-mode"), "persistent")
                .annotation(&nginx("session-cookie-expires"), "7200")
                .annotation(&nginx("session-cookie-secure"), "true")
                .rule("persistent.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "hash")
                .annotation(&nginx("upstream-hash-by"), "$arg_user")
                .rule("hash.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "ewma")
                .annotation(&nginx("load-balance"), "ewma")
                .rule("ewma.com", "/", "Prefix", "mixed")
                .yaml(),
        ]
        .join("---\n"),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let c = p.client(&["sticky.com", "persistent.com", "hash.com", "ewma.com"]);

    for (host, path, cookie_name) in [
        ("sticky.com", "/app/x", "route"),
        ("persistent.com", "/", "INGRESSCOOKIE"),
    ] {
        let mut firsts = BTreeSet::new();
        for _ in 0..12 {
            let r = c.get(p.http_url(host, path)).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
            assert!(set.starts_with(&format!("{cookie_name}=")), "{set}");
            if host == "sticky.com" {
                assert!(
                    set.contains("Path=/app") && set.contains("Max-Age=3600"),
                    "{set}"
                );
                assert!(set.contains("SameSite=Lax"), "{set}");
                assert!(
                    !set.contains("Expires=") && !set.contains("Secure"),
                    "{set}"
                );
            } else {
                // `session-cookie-expires`: an absolute date that many seconds ahead.
                let expires = set
                    .split("; ")
                    .find_map(|a| a.strip_prefix("Expires="))
                    .unwrap_or_else(|| panic!("no Expires: {set}"));
                let at = httpdate::parse_http_date(expires).unwrap();
                let ahead = at
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                assert!(
                    ahead > Duration::from_secs(7100) && ahead <= Duration::from_secs(7200),
                    "{set}"
                );
                assert!(
                    set.contains("; Secure") && !set.contains("Max-Age"),
                    "{set}"
                );
            }
            let pinned = endpoint(&r);
            firsts.insert(pinned.clone());
            let cookie = set.split(';').next().unwrap().to_string();
            for _ in 0..5 {
                let again = c
                    .get(p.http_url(host, path))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(endpoint(&again), pinned, "{host}: the session sticks");
                assert!(again.headers().get("set-cookie").is_none());
            }
        }
        assert!(firsts.len() >= 2, "{host}: new sessions spread: {firsts:?}");
    }

    let mut by_user = BTreeMap::new();
    for round in 0..3 {
        for user in 0..30 {
            let r = c
                .get(p.http_url("hash.com", &format!("/x?user=u{user}")))
                .send()
                .await
                .unwrap();
            let e = endpoint(&r);
            let first = by_user.entry(user).or_insert_with(|| e.clone());
            assert_eq!(*first, e, "user {user} round {round}");
        }
    }
    let spread: BTreeSet<_> = by_user.values().collect();
    assert!(spread.len() >= 2, "{spread:?}");

    // Warm up, then most requests go to the fast endpoint.
    for _ in 0..20 {
        c.get(p.http_url("ewma.com", "/")).send().await.unwrap();
    }
    let mut to_fast = 0;
    for _ in 0..50 {
        let r = c.get(p.http_url("ewma.com", "/")).send().await.unwrap();
        if endpoint(&r) == fast.to_string() {
            to_fast += 1;
        }
    }
    assert!(to_fast >= 40, "{to_fast} of 50 went to the fast endpoint");
}
