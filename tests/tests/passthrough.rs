//! TLS passthrough (`ssl-passthrough`) end to end: a TLS backend in the test, reached by SNI on
//! Portico's HTTPS port without termination (the client sees the backend's certificate); other
//! hosts on the same port are still terminated by Portico.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_e2e::manifests::{backend, ingress, tls_secret};
use portico_e2e::tls::{handshake, pem_to_der};
use portico_e2e::{echo, write, Portico};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NGINX: &str = "nginx.ingress.kubernetes.io";

/// A TLS server for `name` answering every HTTP/1.1 request with `hello from the backend`;
/// returns its address and its certificate's PEM.
async fn tls_backend(name: &str) -> (SocketAddr, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = cert.pem();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "hello from the backend";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, pem)
}

struct Site {
    _dir: tempfile::TempDir,
    p: Portico,
    backend_pem: String,
    portico_pem: String,
}

async fn site(extra: &[&str]) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let (tls_addr, backend_pem) = tls_backend("pass.example.com").await;
    let web = echo("web").await;
    let (secret, portico_pem) = tls_secret("default", "site-tls", &["site.example.com"]);
    write(
        dir.path(),
        "backends.yaml",
        &[
            backend("default", "secure", &[tls_addr]),
            backend("default", "web", &[web]),
            backend("default", "nothing", &[]),
        ]
        .join("---\n"),
    );
    write(dir.path(), "secret.yaml", &secret);
    write(
        dir.path(),
        "ingress.yaml",
        &[
            ingress("default", "pass")
                .rule("pass.example.com", "/", "Prefix", "secure")
                .annotation(&format!("{NGINX}/ssl-passthrough"), "true")
                .yaml(),
            ingress("default", "dead")
                .rule("*.dead.example.com", "/", "Prefix", "nothing")
                .annotation(&format!("{NGINX}/ssl-passthrough"), "true")
                .yaml(),
            ingress("default", "site")
                .tls(&["site.example.com"], Some("site-tls"))
                .rule("site.example.com", "/", "Prefix", "web")
                .yaml(),
        ]
        .join("---\n"),
    );
    let p = Portico::start(dir.path(), extra).await;
    Site {
        _dir: dir,
        p,
        backend_pem,
        portico_pem,
    }
}

#[tokio::test]
async fn passthrough_by_sni_next_to_terminated_hosts() {
    let s = site(&["--enable-ssl-passthrough"]).await;
    // The client sees the backend's certificate: Portico did not terminate.
    let pass = handshake(s.p.https, "pass.example.com").await.unwrap();
    assert_eq!(pass.leaf, pem_to_der(&s.backend_pem));
    // Another host on the same port is terminated by Portico.
    let site = handshake(s.p.https, "site.example.com").await.unwrap();
    assert_eq!(site.leaf, pem_to_der(&s.portico_pem));

    // Real HTTPS clients, both ways (HTTP/1.1 and HTTP/2 to the terminated host).
    let c = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .resolve("pass.example.com", s.p.https)
        .resolve("site.example.com", s.p.https)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = c
        .get(s.p.https_url("pass.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from the backend");
    let r = c
        .get(s.p.https_url("site.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["service"], "web");

    // Counted and logged per connection.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = s.p.metrics().await;
        let n = m
            .lines()
            .find(|l| l.starts_with("portico_passthrough_connections_total "))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "passthrough not counted:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.p.wait_log("passthrough connection", Duration::from_secs(20))
        .await;

    // A wildcard passthrough host whose Service has no endpoint: the connection is closed.
    assert!(handshake(s.p.https, "x.dead.example.com").await.is_err());
    s.p.wait_log("no endpoint answered", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn passthrough_is_off_without_the_flag() {
    let s = site(&[]).await;
    // Without --enable-ssl-passthrough Portico terminates (its default certificate: the
    // Ingress has no TLS entry) and reports the annotation.
    let pass = handshake(s.p.https, "pass.example.com").await.unwrap();
    assert_ne!(pass.leaf, pem_to_der(&s.backend_pem));
    assert!(
        s.p.logs().contains("--enable-ssl-passthrough"),
        "{}",
        s.p.logs()
    );
}

#[tokio::test]
async fn non_tls_bytes_do_not_pass() {
    let s = site(&["--enable-ssl-passthrough"]).await;
    // Not TLS at all: handed to the TLS stack, which refuses it; the listener keeps serving.
    let mut tcp = tokio::net::TcpStream::connect(s.p.https).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: pass.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("hello from the backend"));
    let pass = handshake(s.p.https, "pass.example.com").await.unwrap();
    assert_eq!(pass.leaf, pem_to_der(&s.backend_pem));
}
