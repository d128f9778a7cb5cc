//! Snapshot build time: translate N Ingresses (each with its own host, TLS Secret, Service and
//! EndpointSlice) from a manifest directory, in process; then one changed Ingress rebuilt and
//! published to a real `Proxy`, as the publisher does it.
//!
//! `cargo run --release -p portico-bench --bin translate -- 10000`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use portico_controller::source::manifests::load_once;
use portico_controller::translate::{translate, translate_with, Memo, Options};
use portico_e2e::manifests::{backend, ingress, tls_secret};
use portico_proxy::{Proxy, ProxyConfig, TlsCertificate};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..n {
        let host = format!("h{i}.bench.test");
        let (secret, _) = tls_secret("default", &format!("tls-{i}"), &[&host]);
        text.push_str(&backend(
            "default",
            &format!("svc-{i}"),
            &[format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)
                .parse()
                .unwrap()],
        ));
        text.push_str("---\n");
        text.push_str(&secret);
        text.push_str("---\n");
        text.push_str(
            &ingress("default", &format!("ing-{i}"))
                .tls(&[&host], Some(&format!("tls-{i}")))
                .rule(&host, "/", "Prefix", &format!("svc-{i}"))
                .yaml(),
        );
        text.push_str("---\n");
        if i % 1000 == 999 {
            std::fs::write(
                dir.path().join(format!("part-{i}.yaml")),
                std::mem::take(&mut text),
            )
            .unwrap();
        }
    }
    std::fs::write(dir.path().join("rest.yaml"), text).unwrap();
    let t = Instant::now();
    let inputs = load_once(dir.path()).unwrap();
    println!(
        "N={n}: read and parsed the directory in {:.1?} ({} problems)",
        t.elapsed(),
        inputs.problems.len()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let options = Options {
        serve_classless: true,
        now,
        ..Options::new(Arc::new(
            TlsCertificate::self_signed(&["portico.invalid"]).unwrap(),
        ))
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = translate(&inputs, &options);
        times.push(t.elapsed());
        assert_eq!(out.snapshot.routes.route_count(), n);
    }
    times.sort();
    println!(
        "N={n}: translate median {:.1?} (min {:.1?}, max {:.1?}), {} problems",
        times[2],
        times[0],
        times[4],
        translate(&inputs, &options).problems.len()
    );

    // A rebuild after one change, as the publisher runs it: the memo of the previous
    // translation, one Ingress replaced by a changed copy.
    let mut inputs = inputs;
    let mut memo = Memo::default();
    let proxy = Proxy::new(ProxyConfig::default()).unwrap();
    let first = translate_with(&inputs, &options, &mut memo);
    let t = Instant::now();
    proxy.publish(first.snapshot, t.elapsed()).unwrap();
    println!("N={n}: first publish {:.1?}", t.elapsed());
    let mut times = Vec::new();
    let mut publishes = Vec::new();
    for k in 0..5 {
        let i = k * (n / 5);
        let mut changed = (*inputs.ingresses[i]).clone();
        changed
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("bench/change".into(), k.to_string());
        inputs.ingresses.to_mut()[i] = Arc::new(changed);
        let t = Instant::now();
        let out = translate_with(&inputs, &options, &mut memo);
        times.push(t.elapsed());
        assert_eq!(out.snapshot.routes.route_count(), n);
        let t = Instant::now();
        proxy.publish(out.snapshot, t.elapsed()).unwrap();
        publishes.push(t.elapsed());
    }
    times.sort();
    publishes.sort();
    println!(
        "N={n}: rebuild after one change, median {:.1?} (min {:.1?}, max {:.1?})",
        times[2], times[0], times[4]
    );
    println!(
        "N={n}: publishing it (the swap and the proxy's bookkeeping), median {:.1?} (min {:.1?}, max {:.1?})",
        publishes[2], publishes[0], publishes[4]
    );
}
