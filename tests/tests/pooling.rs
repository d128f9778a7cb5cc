//! Upstream connection reuse under concurrency: every answer belongs to its own request.
//!
//! Kept-alive upstream connections are shared by all clients of a backend; an answer handed
//! to the wrong request (a connection returned to the pool while its answer was still being
//! read) would leak one user's data to another. 32 keep-alive clients send distinct paths and
//! bodies of many sizes, and check that each answer is their own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portico_e2e::{echo_json, site};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_goes_to_its_own_request() {
    let (_dir, p) = site("pool", "pool.test", &["--no-access-log"]).await;
    let mut clients = Vec::new();
    for c in 0..32 {
        let client = p.client(&["pool.test"]);
        let base = p.http_url("pool.test", "");
        clients.push(tokio::spawn(async move {
            for r in 0..60 {
                let path = format!("/c{c}/r{r}");
                if r % 3 == 0 {
                    // A body (up to about 64 KiB, made of the path) that the backend echoes
                    // back, so answers of different lengths interleave on the shared upstream
                    // connections, and each must come back to its own sender.
                    let body = path.repeat(1 + (c * 977 + r * 131) % 65_536 / path.len());
                    let resp = client
                        .post(format!("{base}{path}"))
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200, "{path}");
                    let echoed = resp.text().await.unwrap();
                    assert!(echoed == body, "{path}: an answer for another request");
                } else {
                    let resp = client.get(format!("{base}{path}")).send().await.unwrap();
                    assert_eq!(resp.status(), 200, "{path}");
                    let json = echo_json(resp).await;
                    assert_eq!(json["path"], path.as_str(), "an answer for another request");
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
}
