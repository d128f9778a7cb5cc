//! Steady load while the configuration churns: 10 changes a second (endpoint swaps, an
//! Ingress appearing and disappearing, a TLS Secret rotating) for `PORTICO_CHURN_SECONDS`
//! (default 30, as in CI; minutes in a bench run), with keep-alive HTTP/1.1 and HTTP/2-over-TLS
//! clients and new connections, and a WebSocket exchanging a message on every change. Not one
//! request may fail, the WebSocket must stay open, and memory must stay flat.
//! And faults: a backend that dies mid-response and one that hangs fail only their own
//! requests, within the timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use portico_e2e::manifests::{backend, ingress, tls_secret};
use portico_e2e::{echo, write, Portico};
use tokio_tungstenite::tungstenite::Message;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_through_ten_changes_a_second_loses_nothing() {
    let secs: u64 = std::env::var("PORTICO_CHURN_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let a = echo("web").await;
    let b = echo("web").await;
    let other = echo("other").await;
    write(dir.path(), "b.yaml", &backend("default", "web", &[a]));
    write(dir.path(), "o.yaml", &backend("default", "other", &[other]));
    let (secret, _) = tls_secret("default", "load-tls", &["load.test"]);
    write(dir.path(), "s.yaml", &secret);
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "load")
            .tls(&["load.test"], Some("load-tls"))
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
            .rule("load.test", "/", "Prefix", "web")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &["--no-access-log"]).await;
    let generation = p.generation().await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    // Keep-alive HTTP/1.1, HTTP/2 over TLS, and a new connection per request.
    for kind in ["http1", "http1", "h2", "h2", "fresh"] {
        let client = match kind {
            "h2" => reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(true)
                .http2_prior_knowledge()
                .resolve("load.test", p.https)
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            "fresh" => reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .resolve("load.test", p.http)
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            _ => p.client(&["load.test"]),
        };
        let url = match kind {
            "h2" => p.https_url("load.test", "/"),
            _ => p.http_url("load.test", "/"),
        };
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r)
                        if r.status() == 200
                            && r.headers()
                                .get("x-echo-service")
                                .is_some_and(|v| v == "web") =>
                    {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failed.lock().unwrap().push(format!(
                        "{kind}: {} from {:?}",
                        r.status(),
                        r.headers().get("x-echo-service")
                    )),
                    Err(e) => failed.lock().unwrap().push(format!("{kind}: {e}")),
                }
            }
        }));
    }

    // A WebSocket opened before the churn, through the endpoint swaps (its backend stays alive,
    // so its connection must too).
    let tcp = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://load.test:{}/ws", p.http.port()), tcp)
            .await
            .unwrap();
    let mut ws_messages = 0u64;

    // Warm up, then measure memory over the churn.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start = rss_kb(p.pid());
    let start = Instant::now();
    let mut changes = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut rss_mid = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        match changes % 3 {
            // Endpoint swap between two live backends.
            0 => {
                let to = if (changes / 3) % 2 == 0 { b } else { a };
                write(dir.path(), "b.yaml", &backend("default", "web", &[to]));
            }
            // Another Ingress appears and disappears.
            1 => {
                let name = "extra.yaml";
                if (changes / 3) % 2 == 0 {
                    write(
                        dir.path(),
                        name,
                        &ingress("default", "extra")
                            .rule(&format!("extra-{changes}.test"), "/", "Prefix", "other")
                            .yaml(),
                    );
                } else {
                    let _ = std::fs::remove_file(dir.path().join(name));
                }
            }
            // The TLS Secret rotates.
            _ => {
                let (secret, _) = tls_secret("default", "load-tls", &["load.test"]);
                write(dir.path(), "s.yaml", &secret);
            }
        }
        changes += 1;
        let text = format!("change {changes}");
        ws.send(Message::text(text.clone()))
            .await
            .unwrap_or_else(|e| panic!("the WebSocket closed after {changes} changes: {e}"));
        let echoed = match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => panic!("the WebSocket failed after {changes} changes: {e}"),
            Ok(None) => panic!("the WebSocket closed after {changes} changes"),
            Err(_) => panic!("no WebSocket echo after {changes} changes"),
        };
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
        ws_messages += 1;
        if start.elapsed() >= Duration::from_secs(secs / 2) && rss_mid == 0 {
            rss_mid = rss_kb(p.pid());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let rss_end = rss_kb(p.pid());
    let published = p.generation().await - generation;
    let ok = ok.load(Ordering::Relaxed);
    let failed = failed.lock().unwrap().clone();
    eprintln!(
        "churn {secs}s: {changes} changes, {published} configurations published, {ok} requests \
         ok, {} failed, {ws_messages} WebSocket messages echoed on one connection; RSS \
         {rss_start} → {rss_mid} → {rss_end} kB",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(20)]
    );
    assert!(ok > 100, "only {ok} requests");
    // Debounced, but the changes did go live.
    assert!(
        published >= secs,
        "only {published} configurations published"
    );
    // Flat: the second half grows less than 20 MB (the first includes warm-up of the TLS
    // session cache and pools).
    assert!(
        rss_end < rss_mid + 20_000,
        "RSS grew {rss_start} → {rss_mid} → {rss_end} kB"
    );
}

/// A backend that answers the head of a 100 KB response, sends 1 KB of it and dies (closes
/// the connection), as a killed pod does mid-response.
async fn dying_backend() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\nx-echo-service: dying\r\n\r\n")
                    .await;
                let _ = s.write_all(&[b'x'; 1000]).await;
                // Dropped: the connection closes mid-body.
            });
        }
    });
    addr
}

/// A backend that accepts and reads but never answers (a hung pod).
async fn silent_backend() -> std::net::SocketAddr {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_hung_backends_fail_only_their_own_requests_and_nothing_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let dying = dying_backend().await;
    let silent = silent_backend().await;
    write(
        dir.path(),
        "b.yaml",
        &[
            backend("default", "web", &[web]),
            backend("default", "dying", &[dying]),
            backend("default", "silent", &[silent]),
        ]
        .join("---\n"),
    );
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "i")
            .rule("web.test", "/", "Prefix", "web")
            .rule("dying.test", "/", "Prefix", "dying")
            .rule("silent.test", "/", "Prefix", "silent")
            .yaml(),
    );
    let p = Portico::start(
        dir.path(),
        &["--upstream-response-timeout", "2s", "--no-access-log"],
    )
    .await;
    let client = p.client(&["web.test", "dying.test", "silent.test"]);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let host = ["web.test", "dying.test", "silent.test"][i % 3];
        let (c, url) = (client.clone(), p.http_url(host, "/"));
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let outcome = match c.get(&url).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    match r.bytes().await {
                        Ok(b) => format!("{status} {} bytes", b.len()),
                        Err(_) => format!("{status} truncated"),
                    }
                }
                Err(e) => format!("error {e}"),
            };
            (host, outcome, started.elapsed())
        }));
    }
    for t in tasks {
        let (host, outcome, took) = t.await.unwrap();
        // Nothing hangs: the client's own limit is 20 s; Portico's is 2 s plus slack.
        assert!(
            took < Duration::from_secs(10),
            "{host}: {outcome} after {took:?}"
        );
        match host {
            "web.test" => assert!(outcome.starts_with("200 "), "{host}: {outcome}"),
            // The head was forwarded, the body cut: the client sees the truncation.
            "dying.test" => assert_eq!(outcome, "200 truncated", "{host}"),
            _ => assert_eq!(outcome, "504 20 bytes", "{host}"),
        }
    }
    let c = p.client(&["web.test"]);
    assert_eq!(p.status_of(&c, "web.test", "/").await, 200);
}
