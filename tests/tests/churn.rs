//! Steady load while the configuration churns: 10 changes a second (endpoint swaps, an
//! Ingress appearing and disappearing, a TLS Secret rotating) for `PORTICO_CHURN_SECONDS`
//! (default 30, as in CI; minutes in a bench run), with keep-alive HTTP/1.1 and HTTP/2-over-TLS
//! clients and new connections. Not one request may fail, and memory must stay flat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_e2e::manifests::{backend, ingress, tls_secret};
use portico_e2e::{echo, write, Portico};

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
         ok, {} failed; RSS {rss_start} → {rss_mid} → {rss_end} kB",
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
