//! TLS termination: certificates by SNI, HTTP/2 over TLS, redirects, rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use portico_e2e::manifests::{backend, ingress, tls_secret};
use portico_e2e::tls::{handshake, pem_to_der};
use portico_e2e::{echo, write, Portico};

struct Site {
    dir: tempfile::TempDir,
    a_pem: String,
    wild_pem: String,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let (a_secret, a_pem) = tls_secret("default", "a-tls", &["a.example.com"]);
    let (wild_secret, wild_pem) = tls_secret("default", "wild-tls", &["*.example.com"]);
    write(
        dir.path(),
        "backend.yaml",
        &backend("default", "web", &[web]),
    );
    write(
        dir.path(),
        "secrets.yaml",
        &[a_secret, wild_secret].join("---\n"),
    );
    write(
        dir.path(),
        "ingress.yaml",
        &ingress("default", "site")
            .tls(&["a.example.com"], Some("a-tls"))
            .tls(&["*.example.com"], Some("wild-tls"))
            .tls(&["nosecret.example.org"], Some("does-not-exist"))
            .rule("a.example.com", "/", "Prefix", "web")
            .rule("*.example.com", "/", "Prefix", "web")
            .rule("nosecret.example.org", "/", "Prefix", "web")
            .rule("plain.example.org", "/", "Prefix", "web")
            .yaml(),
    );
    Site {
        dir,
        a_pem,
        wild_pem,
    }
}

#[tokio::test]
async fn certificates_are_chosen_by_sni() {
    let s = site().await;
    let p = Portico::start(s.dir.path(), &[]).await;
    let a = handshake(p.https, "a.example.com").await.unwrap();
    assert_eq!(a.leaf, pem_to_der(&s.a_pem));
    let b = handshake(p.https, "b.example.com").await.unwrap();
    assert_eq!(b.leaf, pem_to_der(&s.wild_pem));
    // A wildcard covers one label only; unknown names and a missing Secret get the default.
    for sni in ["x.b.example.com", "unknown.org", "nosecret.example.org"] {
        let d = handshake(p.https, sni).await.unwrap();
        assert_eq!(d.dns_names, vec!["portico.invalid".to_string()], "{sni}");
    }
    // A ClientHello without SNI (an IP literal) gets the default certificate too.
    let d = handshake(p.https, "127.0.0.1").await.unwrap();
    assert_eq!(d.dns_names, vec!["portico.invalid".to_string()]);
    // The missing Secret is reported.
    assert!(p.logs().contains("does-not-exist"), "{}", p.logs());
}

#[tokio::test]
async fn http2_and_http1_over_tls_for_several_hosts() {
    let s = site().await;
    let p = Portico::start(s.dir.path(), &[]).await;
    let hosts = ["a.example.com", "b.example.com", "c.example.com"];
    let mut b = reqwest::Client::builder().tls_danger_accept_invalid_certs(true);
    for h in hosts {
        b = b.resolve(h, p.https);
    }
    let c = b.build().unwrap();
    for h in hosts {
        let r = c.get(p.https_url(h, "/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), reqwest::Version::HTTP_2, "{h}");
        let j: serde_json::Value = r.json().await.unwrap();
        assert_eq!(j["headers"]["x-forwarded-proto"], "https");
        assert_eq!(j["headers"]["host"], format!("{h}:{}", p.https.port()));
        assert_eq!(
            j["version"], "HTTP/1.1",
            "backends are spoken to over HTTP/1.1"
        );
    }
    let h1 = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .http1_only()
        .resolve("a.example.com", p.https)
        .build()
        .unwrap();
    let r = h1
        .get(p.https_url("a.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
    let alpn = handshake(p.https, "a.example.com").await.unwrap().alpn;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn tls_hosts_redirect_plain_http_with_308() {
    let s = site().await;
    let p = Portico::start(s.dir.path(), &["--https-redirect-port", "443"]).await;
    let c = p.client(&["a.example.com", "plain.example.org"]);
    let r = c
        .get(p.http_url("a.example.com", "/x/y?q=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "https://a.example.com/x/y?q=1");
    // ACME HTTP-01 challenges are not redirected.
    let r = c
        .get(p.http_url("a.example.com", "/.well-known/acme-challenge/tok"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Hosts without TLS are served over HTTP.
    let r = c
        .get(p.http_url("plain.example.org", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_rotated_secret_serves_new_handshakes_within_a_second() {
    let s = site().await;
    let p = Portico::start(s.dir.path(), &[]).await;
    assert_eq!(
        handshake(p.https, "a.example.com").await.unwrap().leaf,
        pem_to_der(&s.a_pem)
    );
    let (a2, a2_pem) = tls_secret("default", "a-tls", &["a.example.com"]);
    let (wild, _) = tls_secret("default", "wild-tls", &["*.example.com"]);
    let start = Instant::now();
    write(s.dir.path(), "secrets.yaml", &[a2, wild].join("---\n"));
    loop {
        let leaf = handshake(p.https, "a.example.com").await.unwrap().leaf;
        if leaf == pem_to_der(&a2_pem) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "rotation took more than 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_invalid_secret_is_reported_and_the_host_gets_the_default_certificate() {
    let s = site().await;
    let (_, other_pem) = tls_secret("default", "x", &["a.example.com"]);
    // A certificate whose key does not match.
    let (mismatched, _) = tls_secret("default", "y", &["a.example.com"]);
    let key_part = mismatched.split("tls.key: |").nth(1).unwrap();
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let bad = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a-tls\n  namespace: default\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |{}",
        indent(&other_pem),
        key_part
    );
    write(s.dir.path(), "secrets.yaml", &bad);
    let p = Portico::start(s.dir.path(), &[]).await;
    let a = handshake(p.https, "a.example.com").await.unwrap();
    assert_eq!(a.dns_names, vec!["portico.invalid".to_string()]);
    p.wait_log("does not match", Duration::from_secs(2)).await;
}
