//! An API server outage under traffic: etcd stopped for `PORTICO_OUTAGE_SECONDS` (60 by
//! default) and started again. Its own test binary: stopping etcd must not disturb the other
//! cluster tests, which share one API server per binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use portico_e2e::apiserver::{apply, ApiServer};
use portico_e2e::manifests::ingress;
use portico_e2e::Portico;

use common::{args, backends, until};

/// How long etcd stays down: `PORTICO_OUTAGE_SECONDS`, 60 by default.
fn outage() -> Duration {
    let secs = std::env::var("PORTICO_OUTAGE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// Sends requests until `stop`, counting answers that are not 200 from `web`.
fn traffic(
    c: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u32, Vec<String>)> {
    tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match c.get(&url).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) => failed.push(r.status().to_string()),
                Err(e) => failed.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (ok, failed)
    })
}

#[tokio::test]
async fn an_api_server_outage_and_an_etcd_restart_lose_no_request() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "outage";
    let [_web, web2] = backends(&client, ns, ["web", "web2"]).await;
    apply(
        &client,
        &ingress(ns, "site")
            .class("portico")
            .rule("outage.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    let p = Portico::cluster(&api.kubeconfig, &args(ns, "outage-leader")).await;
    until(
        &p,
        "outage.test",
        (200, Some("web")),
        Duration::from_secs(5),
    )
    .await;

    // A keep-alive client and a client opening a connection per request.
    let url = p.http_url("outage.test", "/");
    let stop = Arc::new(AtomicBool::new(false));
    let kept = traffic(p.client(&["outage.test"]), url.clone(), stop.clone());
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .resolve("outage.test", p.http)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let fresh = traffic(fresh, url, stop.clone());
    let readyz = format!("http://{}/readyz", p.admin);

    let generation_before = generation(&p).await;
    let down = outage();
    let started = Instant::now();
    api.stop_etcd().await;
    let mut unready = 0;
    while started.elapsed() < down {
        // Portico stays ready: it serves its last configuration.
        match reqwest::get(&readyz).await {
            Ok(r) if r.status() == 200 => {}
            _ => unready += 1,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The same etcd (data directory and ports) comes back: a restart under the API server.
    api.start_etcd().await;
    let outage_took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    // The watches came back without a change: nothing was published (no empty or partial
    // configuration after the relist).
    let generation_after = generation(&p).await;
    let metrics = p.metrics().await;
    let restarts: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("portico_watch_restarts_total"))
        .collect();
    let mut ok = 0;
    let mut failed = Vec::new();
    for t in [kept, fresh] {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    eprintln!(
        "etcd down for {outage_took:?}: {ok} requests served, {} failed, readyz not ready {unready} times",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failures: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    eprintln!(
        "configuration generation {generation_before} before, {generation_after} after; watch restarts: {restarts:?}"
    );
    assert_eq!(unready, 0, "Portico turned unready during the outage");
    assert_eq!(
        generation_before, generation_after,
        "a configuration was published during or after the outage without any change"
    );
    assert!(ok > 100, "only {ok} requests");

    // Changes made after the API server returns are applied: a new rule (an Ingress watch
    // event) and the endpoints of `web` moved to web2's address (an EndpointSlice event).
    let returned = Instant::now();
    let deadline = returned + Duration::from_secs(30);
    loop {
        let applied = tokio::time::timeout(
            Duration::from_secs(5),
            apply_quietly(
                &client,
                &ingress(ns, "site")
                    .class("portico")
                    .rule("outage.test", "/", "Prefix", "web")
                    .rule("after.outage.test", "/", "Prefix", "web2")
                    .yaml(),
            ),
        )
        .await;
        if matches!(applied, Ok(true)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API server did not come back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let accepted = returned.elapsed();
    apply(&client, &common::service(ns, "web", &web2)).await;
    let rule = until(
        &p,
        "after.outage.test",
        (200, Some("web2")),
        Duration::from_secs(30),
    )
    .await;
    let endpoints = until(
        &p,
        "outage.test",
        (200, Some("web2")),
        Duration::from_secs(30),
    )
    .await;
    eprintln!(
        "after the return: the API server accepted the change after {accepted:?}; the new rule served {rule:?} later, the moved endpoints {endpoints:?} after they were applied"
    );
}

async fn generation(p: &Portico) -> u64 {
    p.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("portico_config_generation ")?.parse().ok())
        .unwrap()
}

async fn apply_quietly(client: &kube::Client, yaml: &str) -> bool {
    use kube::api::{Patch, PatchParams};
    let i: Ingress = serde_yaml::from_str(yaml).unwrap();
    let api: Api<Ingress> =
        Api::namespaced(client.clone(), i.metadata.namespace.as_deref().unwrap());
    api.patch(
        i.metadata.name.as_deref().unwrap(),
        &PatchParams::apply("portico-tests").force(),
        &Patch::Apply(&i),
    )
    .await
    .is_ok()
}
