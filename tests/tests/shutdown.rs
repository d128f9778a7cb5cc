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
    // During the delay, new requests are still served.
    assert_eq!(
        c.get(p.http_url("s.test", "/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
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
