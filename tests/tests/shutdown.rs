//! Graceful shutdown and the admin endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use portico_e2e::manifests::{backend, ingress};
use portico_e2e::{echo, site, write, Portico};

#[tokio::test]
async fn sigterm_turns_unready_finishes_in_flight_requests_and_exits_zero() {
    let (_dir, mut p) = site(
        "i",
        "s.test",
        &["--shutdown-delay", "700ms", "--shutdown-grace", "10s"],
    )
    .await;
    let c = p.client(&["s.test"]);
    let slow = {
        let c = c.clone();
        let url = p.http_url("s.test", "/?delay=1500");
        tokio::spawn(async move { c.get(url).send().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = reqwest::get(format!("http://{}/readyz", p.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("shutting down"));
    // During the delay, new requests are still served; HTTP/1 answers close their
    // connection so that keep-alive clients reconnect elsewhere.
    let during = c.get(p.http_url("s.test", "/")).send().await.unwrap();
    assert_eq!(during.status(), 200);
    assert_eq!(
        during.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );

    let resp = slow.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test]
async fn readiness_waits_for_the_first_configuration_and_metrics_count_requests() {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    write(dir.path(), "b.yaml", &backend("default", "web", &[web]));
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "site")
            .rule("m.test", "/", "Prefix", "web")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let health = reqwest::get(format!("http://{}/healthz", p.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let c = p.client(&["m.test"]);
    for _ in 0..3 {
        c.get(p.http_url("m.test", "/")).send().await.unwrap();
    }
    c.get(p.http_url("m.test", "/?status=500"))
        .send()
        .await
        .unwrap();
    let m = p.metrics().await;
    assert!(m.contains("portico_requests_total{namespace=\"default\",ingress=\"site\",service=\"web:80\",method=\"GET\",status=\"2xx\"} 3"), "{m}");
    assert!(m.contains("portico_requests_total{namespace=\"default\",ingress=\"site\",service=\"web:80\",method=\"GET\",status=\"5xx\"} 1"), "{m}");
    // Durations are recorded when a response's last byte has gone out.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !p.metrics().await.contains("portico_request_duration_seconds_count{namespace=\"default\",ingress=\"site\",service=\"web:80\"} 4") {
        assert!(std::time::Instant::now() < deadline, "{}", p.metrics().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(m.contains("portico_config_generation 1"), "{m}");
    assert!(m.contains("portico_routes 1"), "{m}");
    // The access log has one line per request, naming the ingress and service.
    p.wait_log("\"GET /?status=500 HTTP/1.1\" 500", Duration::from_secs(2))
        .await;
}

#[tokio::test]
async fn not_ready_until_a_configuration_is_live() {
    // A directory that does not exist yet: Portico serves nothing and says why.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("later");
    let p = Portico::spawn(&missing, "127.0.0.1", &[]);
    let mut status = 0;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("http://{}/readyz", p.admin)).await {
            status = r.status().as_u16();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 503, "{}", p.logs());
    std::fs::create_dir(&missing).unwrap();
    p.wait_ready(Duration::from_secs(5)).await;
}

/// The chart's drain settings: `shutdownDelay`, `shutdownGrace` and
/// `terminationGracePeriodSeconds` from values.yaml, the readiness probe's period and failure
/// threshold and the preStop sleep from the controller template.
struct ChartDrain {
    delay: String,
    grace: String,
    termination_grace: Duration,
    probe_period: Duration,
    probe_failures: u32,
    pre_stop: Duration,
}

fn chart_drain() -> ChartDrain {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/portico");
    let values: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart.join("values.yaml")).unwrap()).unwrap();
    let c = &values["controller"];
    let text = |v: &serde_yaml::Value| v.as_str().unwrap().to_string();
    let template = std::fs::read_to_string(chart.join("templates/controller.yaml")).unwrap();
    // The number after `key:` in the block that starts at `section:`.
    let number = |section: &str, key: &str| -> u64 {
        let block = &template[template.find(section).unwrap()..];
        let line = block.lines().find(|l| l.trim().starts_with(key)).unwrap();
        line.split(':').nth(1).unwrap().trim().parse().unwrap()
    };
    ChartDrain {
        delay: text(&c["shutdownDelay"]),
        grace: text(&c["shutdownGrace"]),
        termination_grace: Duration::from_secs(
            c["terminationGracePeriodSeconds"].as_u64().unwrap(),
        ),
        probe_period: Duration::from_secs(number("readinessProbe:", "periodSeconds:")),
        probe_failures: number("readinessProbe:", "failureThreshold:") as u32,
        pre_stop: Duration::from_secs(number("preStop:", "seconds:")),
    }
}

/// Requests sent and failed by one kind of client.
#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    failed: Vec<String>,
    after_sigterm: u64,
}

/// Sends `path` through `c` until readiness says stop, one request at a time.
fn client_loop(
    c: reqwest::Client,
    url: String,
    accepting: std::sync::Arc<std::sync::atomic::AtomicBool>,
    terminated: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Tally> {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        let mut t = Tally::default();
        while accepting.load(Ordering::Relaxed) {
            let during = terminated.load(Ordering::Relaxed);
            match c.get(&url).send().await {
                Ok(r) if r.status() == 200 => match r.bytes().await {
                    Ok(_) => {
                        t.ok += 1;
                        t.after_sigterm += u64::from(during);
                    }
                    Err(e) => t.failed.push(format!("body: {e}")),
                },
                Ok(r) => t.failed.push(r.status().to_string()),
                Err(e) => t.failed.push(format!("{e:?}")),
            }
        }
        t
    })
}

#[tokio::test]
async fn sigterm_under_load_with_the_charts_drain_settings_fails_no_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let drain = chart_drain();
    let (_dir, mut p) = site(
        "i",
        "d.test",
        &[
            "--shutdown-delay",
            &drain.delay,
            "--shutdown-grace",
            &drain.grace,
        ],
    )
    .await;
    let accepting = Arc::new(AtomicBool::new(true));
    let terminated = Arc::new(AtomicBool::new(false));
    let url = p.http_url("d.test", "/");
    let slow_url = p.http_url("d.test", "/?delay=1500");
    let keep_alive = p.client(&["d.test"]);
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .resolve("d.test", p.http)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let h2 = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .resolve("d.test", p.https)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let h2_url = p.https_url("d.test", "/");
    let mut loops: Vec<(&str, tokio::task::JoinHandle<Tally>)> = Vec::new();
    for _ in 0..4 {
        let (a, t) = (accepting.clone(), terminated.clone());
        loops.push((
            "keep-alive",
            client_loop(keep_alive.clone(), url.clone(), a, t),
        ));
        let (a, t) = (accepting.clone(), terminated.clone());
        loops.push((
            "new connection",
            client_loop(fresh.clone(), url.clone(), a, t),
        ));
    }
    for _ in 0..2 {
        let (a, t) = (accepting.clone(), terminated.clone());
        loops.push((
            "HTTP/2 over TLS",
            client_loop(h2.clone(), h2_url.clone(), a, t),
        ));
        let (a, t) = (accepting.clone(), terminated.clone());
        loops.push((
            "slow (1.5 s)",
            client_loop(keep_alive.clone(), slow_url.clone(), a, t),
        ));
    }
    // The kubelet's readiness probe and the endpoints update, as the clients see them: after
    // `failureThreshold` failed probes `periodSeconds` apart, no new request is sent.
    let readyz = format!("http://{}/readyz", p.admin);
    let probe = {
        let accepting = accepting.clone();
        let (period, threshold) = (drain.probe_period, drain.probe_failures);
        tokio::spawn(async move {
            let mut failures = 0;
            loop {
                let ok = matches!(reqwest::get(&readyz).await, Ok(r) if r.status() == 200);
                failures = if ok { 0 } else { failures + 1 };
                if failures >= threshold {
                    accepting.store(false, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(period).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    terminated.store(true, Ordering::Relaxed);
    let sigterm = std::time::Instant::now();
    p.terminate();
    // A long request sent early in the drain delay is still running when the listeners close.
    let long = {
        let c = keep_alive.clone();
        let url = p.http_url("d.test", "/?delay=6000");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match c.get(url).send().await {
                Ok(r) => r.status().as_u16(),
                Err(e) => panic!("the long request failed: {e:?}"),
            }
        })
    };
    probe.await.unwrap();
    let unready_after = sigterm.elapsed();
    let mut total = 0;
    let mut after = 0;
    let mut failed = Vec::new();
    let mut by_kind = std::collections::BTreeMap::<&str, u64>::new();
    for (kind, l) in loops {
        let t = l.await.unwrap();
        total += t.ok;
        after += t.after_sigterm;
        *by_kind.entry(kind).or_default() += t.ok;
        failed.extend(t.failed.into_iter().map(|f| format!("{kind}: {f}")));
    }
    let long = long.await.unwrap();
    let code = p.wait_exit(drain.termination_grace).await;
    let exited_after = sigterm.elapsed();
    assert_eq!(
        long, 200,
        "the request in flight across the listeners' close"
    );
    eprintln!(
        "SIGTERM under load (shutdown-delay {}, grace {}): {total} requests ({after} after SIGTERM; {by_kind:?}), {} failed; clients stopped {unready_after:?} after SIGTERM; a 6 s request sent 0.5 s after SIGTERM: {long}; exit {code:?} after {exited_after:?}",
        drain.delay,
        drain.grace,
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failed: {:#?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert_eq!(code, Some(0), "{}", p.logs());
    assert!(after > 0, "no request was served after SIGTERM");
    // Within the pod's budget: preStop sleep, then SIGTERM to exit.
    assert!(drain.pre_stop + exited_after < drain.termination_grace);
}
