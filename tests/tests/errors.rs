//! Failure answers (502, 503, 504) and broken input: the rest keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use portico_e2e::manifests::{backend, ingress};
use portico_e2e::{echo, free_port, write, Portico};

#[tokio::test]
async fn no_endpoint_is_503_refused_is_502_slow_is_504() {
    let dir = tempfile::tempdir().unwrap();
    let live = echo("live").await;
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    write(
        dir.path(),
        "b.yaml",
        &[
            backend("default", "live", &[live]),
            backend("default", "dead", &[dead]),
            backend("default", "empty", &[]),
        ]
        .join("---\n"),
    );
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "i")
            .rule("e.com", "/live", "Prefix", "live")
            .rule("e.com", "/dead", "Prefix", "dead")
            .rule("e.com", "/empty", "Prefix", "empty")
            .rule("e.com", "/missing", "Prefix", "no-such-service")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &["--upstream-response-timeout", "300ms"]).await;
    let c = p.client(&["e.com"]);
    let status = |path: &'static str| {
        let c = c.clone();
        let url = p.http_url("e.com", path);
        async move { c.get(url).send().await.unwrap() }
    };
    let r = status("/empty").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "503 Service Unavailable\n");
    assert_eq!(status("/missing").await.status(), 503);
    let r = status("/dead").await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), "502 Bad Gateway\n");
    let r = status("/live?delay=1000").await;
    assert_eq!(r.status(), 504);
    assert_eq!(status("/live").await.status(), 200);

    // Each failure names the ingress and the service in the log.
    let logs = p.logs();
    assert!(
        logs.contains("default/i") && logs.contains("dead:80"),
        "{logs}"
    );
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("portico_upstream_errors_total{kind=\"connect\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portico_upstream_errors_total{kind=\"timeout\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portico_upstream_errors_total{kind=\"no_endpoint\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_refused_endpoint_is_skipped_for_requests_without_body() {
    let dir = tempfile::tempdir().unwrap();
    let live = echo("svc").await;
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    write(
        dir.path(),
        "b.yaml",
        &backend("default", "svc", &[live, dead]),
    );
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "i")
            .rule("x.com", "/", "Prefix", "svc")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let c = p.client(&["x.com"]);
    for _ in 0..10 {
        let r = c.get(p.http_url("x.com", "/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn a_broken_file_is_reported_and_its_last_good_version_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let a = echo("a").await;
    let b = echo("b").await;
    write(
        dir.path(),
        "a.yaml",
        &[
            backend("default", "a", &[a]),
            ingress("default", "a")
                .rule("a.com", "/", "Prefix", "a")
                .yaml(),
        ]
        .join("---\n"),
    );
    write(
        dir.path(),
        "b.yaml",
        &[
            backend("default", "b", &[b]),
            ingress("default", "b")
                .rule("b.com", "/", "Prefix", "b")
                .yaml(),
        ]
        .join("---\n"),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let c = p.client(&["a.com", "b.com", "c.com"]);
    assert_eq!(p.status_of(&c, "a.com", "/").await, 200);

    // Break a.yaml: a.com keeps its last good configuration.
    std::fs::write(
        dir.path().join("a.yaml"),
        "kind: Ingress\nmetadata: [unclosed\n",
    )
    .unwrap();
    p.wait_log("a.yaml", Duration::from_secs(3)).await;
    // Meanwhile b.yaml changes and the change is served.
    let g = p.generation().await;
    write(
        dir.path(),
        "b.yaml",
        &[
            backend("default", "b", &[b]),
            ingress("default", "b")
                .rule("b.com", "/", "Prefix", "b")
                .rule("c.com", "/", "Prefix", "b")
                .yaml(),
        ]
        .join("---\n"),
    );
    // The broken file's own publish (its problem) may land after `g` was read: wait for
    // the change itself, not for any next generation.
    p.wait_generation(g).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while p.status_of(&c, "c.com", "/").await != 200 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.status_of(&c, "a.com", "/").await, 200);
    assert_eq!(p.status_of(&c, "c.com", "/").await, 200);
    let logs = p.logs();
    assert!(logs.contains("line"), "the problem names a line: {logs}");

    // A wrongly typed document (valid YAML) is refused the same way.
    std::fs::write(dir.path().join("a.yaml"), "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\nspec:\n  rules: 7\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.status_of(&c, "a.com", "/").await, 200);

    // Removing the file removes its routes.
    let g = p.generation().await;
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    p.wait_generation(g).await;
    assert_eq!(p.status_of(&c, "a.com", "/").await, 404);
    assert_eq!(p.status_of(&c, "b.com", "/").await, 200);
}
