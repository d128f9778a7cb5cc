//! An API server outage under traffic. Its own test binary: stopping etcd must not disturb
//! the other cluster tests, which share one API server per binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use portico_e2e::apiserver::{apply, ApiServer};
use portico_e2e::manifests::ingress;
use portico_e2e::Portico;

use common::{args, backends, until};

#[tokio::test]
async fn an_api_server_outage_loses_no_request() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "outage";
    let _backends = backends(&client, ns, ["web"]).await;
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

    let c = p.client(&["outage.test"]);
    let url = p.http_url("outage.test", "/");
    let traffic = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(12) {
            match c.get(&url).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) => failed.push(r.status().to_string()),
                Err(e) => failed.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (ok, failed)
    });
    api.stop_etcd().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    api.start_etcd().await;
    let (ok, failed) = traffic.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} failures: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests");

    // Changes made after the API server returns are applied.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let applied = tokio::time::timeout(
            Duration::from_secs(5),
            apply_quietly(
                &client,
                &ingress(ns, "site")
                    .class("portico")
                    .rule("outage.test", "/", "Prefix", "web")
                    .rule("after.outage.test", "/", "Prefix", "web")
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
    until(
        &p,
        "after.outage.test",
        (200, Some("web")),
        Duration::from_secs(30),
    )
    .await;
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
