//! Access control in cluster mode: an Opaque basic-auth Secret referenced by an annotation is
//! read from the API server and its changes apply live.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use portico_e2e::apiserver::{apply, ApiServer};
use portico_e2e::manifests::ingress;
use portico_e2e::Portico;
use sha1::Digest as _;

mod common;

use common::{args, backends, until};

fn users_secret(ns: &str, user: &str, password: &str) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let line = format!(
        "{user}:{{SHA}}{}\n",
        b64(&sha1::Sha1::digest(password.as_bytes()))
    );
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: users\n  namespace: {ns}\ntype: Opaque\ndata:\n  auth: {}\n  unrelated: {}\n",
        b64(line.as_bytes()),
        b64(&[b'x'; 2048]),
    )
}

/// Polls `host` with the credentials until it answers `want`.
async fn until_with(p: &Portico, host: &str, creds: (&str, &str), want: u16) {
    let c = p.client(&[host]);
    let start = Instant::now();
    loop {
        if let Ok(r) = c
            .get(p.http_url(host, "/"))
            .basic_auth(creds.0, Some(creds.1))
            .send()
            .await
        {
            if r.status().as_u16() == want {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{host} never answered {want} to {creds:?}\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn an_opaque_basic_auth_secret_is_read_and_followed() {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = "access";
    let _backends = backends(&client, ns, ["web"]).await;
    let p = Portico::cluster(&api.kubeconfig, &args(ns, "access-leader")).await;

    apply(
        &client,
        &ingress(ns, "locked")
            .class("portico")
            .annotation("nginx.ingress.kubernetes.io/auth-type", "basic")
            .annotation("nginx.ingress.kubernetes.io/auth-secret", "users")
            .rule("locked.access.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    // The Secret does not exist yet: closed.
    until(
        &p,
        "locked.access.test",
        (503, None),
        Duration::from_secs(10),
    )
    .await;

    apply(&client, &users_secret(ns, "ann", "first")).await;
    until(
        &p,
        "locked.access.test",
        (401, None),
        Duration::from_secs(10),
    )
    .await;
    until_with(&p, "locked.access.test", ("ann", "first"), 200).await;

    // A new password applies live.
    apply(&client, &users_secret(ns, "ann", "second")).await;
    until_with(&p, "locked.access.test", ("ann", "second"), 200).await;
    until_with(&p, "locked.access.test", ("ann", "first"), 401).await;
}
