//! Memory held by many slow or idle clients: slowloris connections (a request head that
//! never ends), idle TLS connections after the handshake, and idle cleartext ones. The count
//! is `PORTICO_SLOW_CONNECTIONS` (default 200 per kind, as in CI), the kinds
//! `PORTICO_SLOW_KINDS` (default `slowloris,tls,idle`); `bench/slowloris` runs each kind with
//! 10,000 against the release binary and prints the figures of docs/hardening.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use portico_e2e::{site, Portico};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn open_connections(p: &Portico) -> i64 {
    p.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("portico_connections_active "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// Waits until Portico counts `n` open connections (they are accepted asynchronously).
async fn until_open(p: &Portico, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open = open_connections(p).await;
        if open >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {open} of {n} connections open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slow_and_idle_connections_cost_bounded_memory() {
    let n: usize = std::env::var("PORTICO_SLOW_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let kinds = std::env::var("PORTICO_SLOW_KINDS").unwrap_or("slowloris,tls,idle".into());
    let kinds: Vec<&str> = kinds.split(',').collect();
    // Timeouts far away: the connections must stay open while they are counted.
    let (_dir, p) = site(
        "i",
        "a.test",
        &[
            "--client-header-timeout",
            "600s",
            "--max-connections",
            "0",
            "--no-access-log",
        ],
    )
    .await;
    let c = p.client(&["a.test"]);
    for _ in 0..20 {
        assert_eq!(p.status_of(&c, "a.test", "/").await, 200);
    }
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_open = open_connections(&p).await;
    let base = rss_kb(p.pid());
    let mut report = vec![format!("baseline: RSS {base} kB")];
    let mut held = Vec::new();

    let mut total = 0i64;
    let mut last = base;
    // 1. Slowloris: a request line and one header, never the blank line.
    for _ in 0..if kinds.contains(&"slowloris") { n } else { 0 } {
        let mut s = TcpStream::connect(p.http).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: 1\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    if kinds.contains(&"slowloris") {
        total += n as i64;
        until_open(&p, base_open + total).await;
        let rss = rss_kb(p.pid());
        report.push(format!(
            "+ {n} slowloris connections: RSS {rss} kB, {:.1} KB each",
            (rss.saturating_sub(last)) as f64 / n as f64
        ));
        last = rss;
    }

    // 2. Idle TLS connections: handshake done, nothing sent.
    let connector =
        tokio_rustls::TlsConnector::from(portico_e2e::tls::insecure_config(&[b"http/1.1"]));
    let name = ServerName::try_from("a.test").unwrap();
    let mut tls_held = Vec::new();
    for _ in 0..if kinds.contains(&"tls") { n } else { 0 } {
        let tcp = TcpStream::connect(p.https).await.unwrap();
        tls_held.push(connector.connect(name.clone(), tcp).await.unwrap());
    }
    if kinds.contains(&"tls") {
        total += n as i64;
        until_open(&p, base_open + total).await;
        let rss = rss_kb(p.pid());
        report.push(format!(
            "+ {n} idle TLS connections: RSS {rss} kB, {:.1} KB each",
            (rss.saturating_sub(last)) as f64 / n as f64
        ));
        last = rss;
    }

    // 3. Idle cleartext connections: connected, nothing sent.
    if kinds.contains(&"idle") {
        for _ in 0..n {
            held.push(TcpStream::connect(p.http).await.unwrap());
        }
        total += n as i64;
        until_open(&p, base_open + total).await;
        let rss = rss_kb(p.pid());
        report.push(format!(
            "+ {n} idle cleartext connections: RSS {rss} kB, {:.1} KB each",
            (rss.saturating_sub(last)) as f64 / n as f64
        ));
        last = rss;
    }
    eprintln!("{}", report.join("\n"));

    // Still serving while they are all open.
    let c = p.client(&["a.test"]);
    assert_eq!(p.status_of(&c, "a.test", "/").await, 200);
    // Bounded: well under 64 KB per connection on average (the debug build included).
    assert!(total > 0, "no known kind in {kinds:?}");
    let per = (last.saturating_sub(base)) as f64 / total as f64;
    assert!(
        per < 64.0,
        "{per:.1} KB per connection:\n{}",
        report.join("\n")
    );
    drop(tls_held);
    drop(held);
}
