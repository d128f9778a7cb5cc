//! Scale benchmark in cluster mode, against the real kube-apiserver: N Ingresses, each with
//! its own host, TLS Secret, Service and EndpointSlice. Reports start → ready, one change →
//! live (p50/p99 over 50 changes, by polling the host), snapshot build time and peak RSS.
//!
//! `cargo run --release -p portico-bench --bin scale -- 1000 10000 [--runs R]`
//! (build `portico` in release first: `cargo build --release -p portico`, and point
//! `PORTICO_BIN` at `target/release/portico`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use portico_e2e::apiserver::{apply, namespace, ApiServer};
use portico_e2e::manifests::{ingress, tls_secret};
use portico_e2e::{netns, Portico};

const CLASS: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: portico\nspec:\n  controller: portico.dev/ingress-controller\n";

fn objects(ns: &str, i: usize, backend: std::net::SocketAddr) -> Vec<String> {
    let host = format!("h{i}.scale.test");
    let (secret, _) = tls_secret(ns, &format!("tls-{i}"), &[&host]);
    vec![
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: {ns}\nspec:\n  ports:\n    - name: http\n      port: 80\n"),
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{i}-1\n  namespace: {ns}\n  labels:\n    kubernetes.io/service-name: svc-{i}\naddressType: IPv4\nports:\n  - name: http\n    port: {}\nendpoints:\n  - addresses: [\"{}\"]\n",
            backend.port(),
            backend.ip()
        ),
        secret,
        ingress(ns, &format!("ing-{i}")).class("portico").tls(&[&host], Some(&format!("tls-{i}"))).rule(&host, "/", "Prefix", &format!("svc-{i}")).yaml(),
    ]
}

async fn create_all(client: &kube::Client, docs: Vec<String>) {
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    stream::iter(docs)
        .for_each_concurrent(32, |doc| {
            let client = client.clone();
            let discovery = &discovery;
            async move {
                let obj: DynamicObject = serde_yaml::from_str(&doc).unwrap();
                let gvk =
                    kube::api::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
                let (ar, _) = discovery.resolve_gvk(&gvk).unwrap();
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client, obj.metadata.namespace.as_deref().unwrap(), &ar);
                api.patch(
                    obj.metadata.name.as_deref().unwrap(),
                    &PatchParams::apply("portico-bench").force(),
                    &Patch::Apply(&obj),
                )
                .await
                .unwrap();
            }
        })
        .await;
}

fn peak_rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmHWM:")
}

/// A memory figure of `/proc/PID/status` (`VmHWM:`, `RssAnon:`, `RssFile:`), in MB.
fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One Portico process against the loaded objects: its start → ready and 50 changes.
struct Run {
    ready: Duration,
    /// From the server-side apply call to the first 200 for the new host.
    changes: Vec<Duration>,
    /// The apply call alone (the API server's share).
    applies: Vec<Duration>,
    /// From the apply call's answer to the first 200 (Portico's share, and the watch).
    after_apply: Vec<Duration>,
    build: String,
    rss: f64,
    /// CPU time per change (utime + stime over the 50 changes): Portico's, the API server's.
    portico_cpu: Duration,
    apiserver_cpu: Duration,
}

/// A process's CPU time so far.
fn cpu(pid: Option<u32>) -> Duration {
    let ticks = pid.map(portico_bench::procfs::tree_cpu_ticks).unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / portico_bench::procfs::clock_ticks())
}

async fn measure(api: &ApiServer, client: &kube::Client, ns: &str, run: usize) -> Run {
    let started = Instant::now();
    let p = Portico::cluster(
        &api.kubeconfig,
        &[
            "--watch-namespace",
            ns,
            "--no-access-log",
            "--pod-namespace",
            ns,
        ],
    )
    .await;
    let ready = started.elapsed();
    let c = p.client(&[]);
    let (mut changes, mut applies, mut after_apply) = (Vec::new(), Vec::new(), Vec::new());
    let cpu_before = (cpu(Some(p.pid())), cpu(api.pid()));
    for k in 0..50 {
        let host = format!("new{k}-{run}.scale.test");
        let yaml = ingress(ns, &format!("new-{k}-{run}"))
            .class("portico")
            .rule(&host, "/", "Prefix", "svc-0")
            .yaml();
        let t = Instant::now();
        apply(client, &yaml).await;
        let applied = Instant::now();
        applies.push(applied - t);
        loop {
            let r = c
                .get(format!("http://{}/", p.http))
                .header("host", &host)
                .send()
                .await;
            if r.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "change never went live"
            );
            // A short pause between polls, so polling does not take the CPU that the API
            // server and Portico need on this 2-core machine (1 ms of resolution).
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        changes.push(t.elapsed());
        after_apply.push(applied.elapsed());
    }
    let portico_cpu = (cpu(Some(p.pid())) - cpu_before.0) / 50;
    let apiserver_cpu = (cpu(api.pid()) - cpu_before.1) / 50;
    for v in [&mut changes, &mut applies, &mut after_apply] {
        v.sort();
    }
    let metrics = p.metrics().await;
    let build = metrics
        .lines()
        .find_map(|l| l.strip_prefix("portico_config_build_seconds "))
        .unwrap_or("?")
        .to_string();
    let rss = peak_rss_mb(p.pid());
    eprintln!(
        "  RSS at the end: {:.1} MB anonymous (heap, stacks), {:.1} MB file-backed (the binary)",
        status_mb(p.pid(), "RssAnon:"),
        status_mb(p.pid(), "RssFile:")
    );
    // Where the time of the last changes went, from Portico's own publish lines.
    for line in p
        .logs()
        .lines()
        .filter(|l| l.contains("configuration published"))
        .rev()
        .take(3)
    {
        eprintln!("  {line}");
    }
    Run {
        ready,
        changes,
        applies,
        after_apply,
        build,
        rss,
        portico_cpu,
        apiserver_cpu,
    }
}

async fn run(n: usize, runs: usize) {
    let api = ApiServer::shared();
    let client = api.client().await;
    let ns = format!("scale-{n}");
    namespace(&client, &ns).await;
    apply(&client, CLASS).await;
    let backend = netns::echo("scale").await;
    let start = Instant::now();
    let docs: Vec<String> = (0..n).flat_map(|i| objects(&ns, i, backend.addr)).collect();
    create_all(&client, docs).await;
    eprintln!(
        "N={n}: created {} objects in {:.1?}",
        n * 4,
        start.elapsed()
    );
    for run in 0..runs {
        let r = measure(api, &client, &ns, run).await;
        println!(
            "N={n:>6}  ready {:>8.2?}  change→live p50 {:>8.2?} p99 {:>8.2?}  after the apply call p50 {:>8.2?} p99 {:>8.2?}  apply call p50 {:>8.2?}  build {} s  peak RSS {:.1} MB  CPU per change: Portico {:.1?}, API server {:.1?}",
            r.ready,
            percentile(&r.changes, 0.5),
            percentile(&r.changes, 0.99),
            percentile(&r.after_apply, 0.5),
            percentile(&r.after_apply, 0.99),
            percentile(&r.applies, 0.5),
            r.build,
            r.rss,
            r.portico_cpu,
            r.apiserver_cpu,
        );
    }
}

#[tokio::main]
async fn main() {
    // Sizes, and `--runs R`: start Portico R times against the same loaded objects.
    let (mut sizes, mut runs) = (Vec::new(), 1);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args.next().and_then(|r| r.parse().ok()).expect("--runs R");
        } else {
            sizes.push(a.parse::<usize>().expect("a number of Ingresses"));
        }
    }
    let sizes = if sizes.is_empty() {
        vec![1000, 10000]
    } else {
        sizes
    };
    for n in sizes {
        run(n, runs).await;
    }
}
