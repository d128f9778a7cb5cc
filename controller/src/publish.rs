//! Publish: turns each new set of inputs into a snapshot and makes it live.
//!
//! Bursts of changes are debounced; translation runs on the blocking pool (it is pure and can
//! take a while at tens of thousands of hosts); problems are logged when they first appear.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portico_proxy::Proxy;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::inputs::Inputs;
use crate::translate::{self, Options};

/// How long to wait for more changes before translating.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// Publishes every change of `inputs` until the sender is dropped.
pub async fn run(proxy: Proxy, mut inputs: watch::Receiver<Arc<Inputs>>, options: Options) {
    let options = Arc::new(options);
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        if inputs.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(DEBOUNCE).await;
        let current = inputs.borrow_and_update().clone();
        let opts = options.clone();
        let started = Instant::now();
        let built = tokio::task::spawn_blocking(move || {
            let mut opts = (*opts).clone();
            opts.now = now();
            translate::translate(&current, &opts)
        })
        .await;
        let output = match built {
            Ok(o) => o,
            Err(e) => {
                error!(error = %e, "translation failed; the last configuration keeps serving");
                continue;
            }
        };
        let build_time = started.elapsed();

        let current_problems: BTreeSet<String> =
            output.problems.iter().map(ToString::to_string).collect();
        for p in current_problems.difference(&reported) {
            warn!(problem = %p, "configuration problem");
        }
        for p in reported.difference(&current_problems) {
            info!(problem = %p, "configuration problem resolved");
        }
        reported = current_problems;

        let routes = output.snapshot.routes.route_count();
        let certificates = output.snapshot.tls.certificate_count();
        let problems = output.problems.len();
        match proxy.publish(output.snapshot, build_time) {
            Ok(generation) => info!(
                generation,
                routes,
                certificates,
                problems,
                build_ms = build_time.as_secs_f64() * 1000.0,
                "configuration published"
            ),
            Err(e) => error!(error = %e, "publishing failed; the last configuration keeps serving"),
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
