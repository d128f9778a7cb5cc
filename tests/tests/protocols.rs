//! Client protocols: h2c, WebSocket, streamed bodies, IPv6, header limits, forwarded headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use portico_e2e::manifests::{backend, ingress};
use portico_e2e::{echo, echo_json, echo_on, site, write, Portico};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

async fn one_backend(host: &str) -> (tempfile::TempDir, Portico, String) {
    let (dir, p) = site("i", host, &[]).await;
    (dir, p, host.to_string())
}

#[tokio::test]
async fn h2c_with_prior_knowledge() {
    let (_d, p, host) = one_backend("h2c.test").await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve(&host, p.http)
        .build()
        .unwrap();
    let r = c.get(p.http_url(&host, "/")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["headers"]["host"], format!("{host}:{}", p.http.port()));
}

#[tokio::test]
async fn websocket_passes_through() {
    let (_d, p, host) = one_backend("ws.test").await;
    let tcp = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let url = format!("ws://{host}:{}/socket", p.http.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), format!("hello {i}"));
    }
}

#[tokio::test]
async fn other_upgrades_are_not_passed_through() {
    let (_d, p, host) = one_backend("up.test").await;
    let c = p.client(&[&host]);
    let j = echo_json(
        c.get(p.http_url(&host, "/"))
            .header("upgrade", "h2c")
            .header("connection", "upgrade, http2-settings")
            .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(j["headers"].get("upgrade").is_none(), "{j}");
    assert!(j["headers"].get("http2-settings").is_none(), "{j}");
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    // Unlimited bodies on this route (the default limit is 1 MiB, as ingress-nginx's).
    let dir = tempfile::tempdir().unwrap();
    let web = portico_e2e::echo("web").await;
    portico_e2e::write(
        dir.path(),
        "b.yaml",
        &portico_e2e::manifests::backend("default", "web", &[web]),
    );
    portico_e2e::write(
        dir.path(),
        "i.yaml",
        &portico_e2e::manifests::ingress("default", "i")
            .annotation("nginx.ingress.kubernetes.io/proxy-body-size", "0")
            .rule("body.test", "/", "Prefix", "web")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let host = "body.test".to_string();
    let c = p.client(&[&host]);
    // A chunked upload of 8 MiB, echoed back as it streams.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..128)
        .map(|i| Ok(bytes::Bytes::from(vec![i as u8; 64 * 1024])))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = c
        .post(p.http_url(&host, "/upload"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), 8 * 1024 * 1024);
    assert!(got
        .chunks(64 * 1024)
        .enumerate()
        .all(|(i, c)| c.iter().all(|b| *b == i as u8)));
}

#[tokio::test]
async fn serves_and_forwards_over_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let web6 = echo_on("[::1]:0", "web6").await;
    write(dir.path(), "b.yaml", &backend("default", "web6", &[web6]));
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "i")
            .rule("v6.test", "/", "Prefix", "web6")
            .yaml(),
    );
    let p = Portico::spawn(dir.path(), "::1", &[]);
    p.wait_ready(Duration::from_secs(15)).await;
    let c = reqwest::Client::builder()
        .resolve("v6.test", p.http)
        .build()
        .unwrap();
    let r = c.get(p.http_url("v6.test", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-echo-endpoint"], web6.to_string());
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["headers"]["x-forwarded-for"], "::1");
    assert_eq!(j["headers"]["x-real-ip"], "::1");
}

#[tokio::test]
async fn oversized_headers_get_431_and_large_ones_pass() {
    let (_d, p, host) = one_backend("big.test").await;
    let c = p.client(&[&host]);
    // 150 headers (over hyper's default of 100) and a 7 KiB cookie are fine.
    let mut req = c.get(p.http_url(&host, "/"));
    for i in 0..150 {
        req = req.header(format!("x-h-{i}"), "v");
    }
    req = req.header("cookie", "c".repeat(7 * 1024));
    assert_eq!(req.send().await.unwrap().status(), 200);

    // 64 KiB of headers is over the 32 KiB limit.
    let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let big = "x".repeat(64 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peers_are_overwritten() {
    let (_d, p, host) = one_backend("fwd.test").await;
    let c = p.client(&[&host]);
    let j = echo_json(
        c.get(p.http_url(&host, "/"))
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.test")
            .header("x-forwarded-port", "1")
            .header("x-request-id", "req-42")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let h = &j["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], format!("{host}:{}", p.http.port()));
    assert_eq!(h["x-forwarded-port"], p.http.port().to_string());
    assert_eq!(h["x-request-id"], "req-42");
    // A generated request id is sent upstream and echoed to the client.
    let r = c.get(p.http_url(&host, "/")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["headers"]["x-request-id"], id);
}

#[tokio::test]
async fn trusted_proxies_forwarded_headers_are_believed_and_appended() {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    write(dir.path(), "b.yaml", &backend("default", "web", &[web]));
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "i")
            .rule("t.test", "/", "Prefix", "web")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &["--trusted-proxies", "127.0.0.0/8,10.0.0.0/8"]).await;
    let c = p.client(&["t.test"]);
    let j = echo_json(
        c.get(p.http_url("t.test", "/"))
            .header("x-forwarded-for", "203.0.113.7, 10.1.2.3")
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let h = &j["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.1.2.3, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "203.0.113.7");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed() {
    let (_d, p, host) = one_backend("hop.test").await;
    let c = p.client(&[&host]);
    let j = echo_json(
        c.get(p.http_url(&host, "/"))
            .header("connection", "x-private")
            .header("x-private", "secret")
            .header("keep-alive", "timeout=1")
            .header("proxy-connection", "keep-alive")
            .send()
            .await
            .unwrap(),
    )
    .await;
    for h in ["x-private", "keep-alive", "proxy-connection"] {
        assert!(
            j["headers"].get(h).is_none(),
            "{h} reached the backend: {j}"
        );
    }
}

#[tokio::test]
async fn proxy_protocol_from_trusted_peers_sets_the_client_address() {
    let (_dir, p) = site(
        "i",
        "pp.test",
        &["--proxy-protocol", "--trusted-proxies", "127.0.0.1/32"],
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"PROXY TCP4 198.51.100.23 127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"x-real-ip\": \"198.51.100.23\""), "{text}");
    assert!(
        text.contains("\"x-forwarded-for\": \"198.51.100.23\""),
        "{text}"
    );

    // Without the header, a trusted peer's connection is refused.
    let mut s = tokio::net::TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
}
