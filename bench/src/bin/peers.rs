//! Portico against nginx and haproxy on one machine, one proxy at a time on CPU 0 with one
//! worker each, the load generator and the backend on CPU 1. Prints one markdown table of
//! every figure: the median and range over the repetitions, the ratios, and the targets.
//!
//! Run it with `bench/run` (which installs the peers and builds); see `bench/README.md`.
//! `peers [--quick | --smoke] [--work DIR]`

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use portico_bench::http1::{self, Counts, Window};
use portico_bench::procfs;
use portico_bench::stats::{quantile, Summary};
use portico_bench::tls;
use portico_e2e::manifests::{backend, ingress};
use rustls::pki_types::ServerName;

const BACKEND: u16 = 18001;
const DIRECT: u16 = 18002;
const HTTP: u16 = 18080;
const HTTPS: u16 = 18443;
const ADMIN: u16 = 18254;

const NGINX_CONF: &str = include_str!("../../peers/nginx.conf");
const HAPROXY_CFG: &str = include_str!("../../peers/haproxy.cfg");

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Smoke,
    Quick,
    Full,
}

/// How long and how often.
struct Plan {
    mode: Mode,
    reps: usize,
    /// Repetitions of the N-hosts, N-certificates and latency runs.
    large_reps: usize,
    warmup: Duration,
    duration: Duration,
    /// Hosts and certificates in the large configuration.
    n: usize,
    change_duration: Duration,
    rsa: bool,
    /// Closed-loop HTTP/1.1 connections, open-loop connections, TLS clients, h2load clients.
    conns: usize,
    open_conns: usize,
    tls_clients: usize,
    h2_clients: usize,
    /// Idle TLS connections held open to measure memory per connection.
    idle_conns: usize,
}

impl Plan {
    fn new(mode: Mode) -> Plan {
        let secs = Duration::from_secs_f64;
        let base = Plan {
            mode,
            reps: 5,
            large_reps: 5,
            warmup: secs(1.0),
            duration: secs(4.0),
            n: 10_000,
            change_duration: secs(10.0),
            rsa: true,
            conns: 50,
            open_conns: 32,
            tls_clients: 16,
            h2_clients: 16,
            // 10,000 would need more than the 20,000 descriptors haproxy may have here.
            idle_conns: 9_000,
        };
        match mode {
            Mode::Full => base,
            Mode::Quick => Plan {
                reps: 2,
                large_reps: 1,
                warmup: secs(0.5),
                duration: secs(2.0),
                change_duration: secs(3.0),
                rsa: false,
                idle_conns: 2_000,
                ..base
            },
            Mode::Smoke => Plan {
                reps: 1,
                large_reps: 1,
                warmup: secs(0.1),
                duration: secs(0.3),
                n: 200,
                change_duration: secs(0.6),
                rsa: true,
                idle_conns: 100,
                ..base
            },
        }
    }

    fn window(&self) -> Window {
        Window::new(self.warmup, self.duration)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Direct,
    Portico,
    Nginx,
    Haproxy,
}

const PROXIES: [Peer; 3] = [Peer::Portico, Peer::Nginx, Peer::Haproxy];

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Direct => "direct",
            Peer::Portico => "portico",
            Peer::Nginx => "nginx",
            Peer::Haproxy => "haproxy",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    /// bench.test (HTTP), t0.tls.test (ECDSA) and rsa.tls.test (RSA): the single-host runs.
    Small,
    /// Small plus N plain-HTTP hosts.
    Routes,
    /// Small plus N-1 more TLS hosts, each with its own certificate (N in all).
    Certs,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Small => "small",
            Config::Routes => "routes",
            Config::Certs => "certs",
        }
    }
}

fn http_host(i: usize) -> String {
    format!("h{i}.http.test")
}

fn tls_host(i: usize) -> String {
    format!("t{i}.tls.test")
}

const ONE_HOST: &str = "bench.test";
const RSA_HOST: &str = "rsa.tls.test";

struct Ctx {
    plan: Plan,
    work: PathBuf,
    portico: PathBuf,
    backend: PathBuf,
    clock_ticks: f64,
    results: Results,
    /// Interleaving: repetition r starts with the r-th peer.
    rep: usize,
}

impl Ctx {
    fn dir(&self, peer: Peer, config: Config) -> PathBuf {
        self.work.join(format!("{}-{}", peer.name(), config.name()))
    }

    fn order(&self) -> Vec<Peer> {
        let mut v = PROXIES.to_vec();
        let k = self.rep % v.len();
        v.rotate_left(k);
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Results and the table

#[derive(Default)]
struct Results {
    samples: BTreeMap<(&'static str, Peer), Vec<f64>>,
    /// Cells shown as text instead of a summary.
    text: BTreeMap<(&'static str, Peer), String>,
    notes: Vec<String>,
}

impl Results {
    fn add(&mut self, key: &'static str, peer: Peer, v: f64) {
        eprintln!("  {key:14} {:8} {v:.2}", peer.name());
        self.samples.entry((key, peer)).or_default().push(v);
    }

    fn get(&self, key: &'static str, peer: Peer) -> Option<Summary> {
        self.samples.get(&(key, peer)).and_then(|v| Summary::of(v))
    }

    fn note(&mut self, s: String) {
        eprintln!("  note: {s}");
        self.notes.push(s);
    }
}

enum Target {
    None,
    /// Portico's value at least these multiples of nginx's and haproxy's.
    AtLeastTimes(Option<f64>, Option<f64>),
    /// Portico's value at most this multiple of haproxy's.
    AtMostTimesHaproxy(f64),
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn text(&self, unit: &str) -> String {
        match self {
            Target::None => "—".into(),
            Target::AtLeastTimes(n, h) => [
                n.map(|x| format!("≥{x}× nginx")),
                h.map(|x| format!("≥{x}× haproxy")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
            Target::AtMostTimesHaproxy(x) => format!("≤{x}× haproxy"),
            Target::AtLeast(x) => format!("≥{x} {unit}"),
            Target::AtMost(x) => format!("≤{x} {unit}"),
        }
    }

    fn met(&self, p: Option<f64>, n: Option<f64>, h: Option<f64>) -> &'static str {
        let yes = |b: bool| if b { "yes" } else { "**no**" };
        let Some(p) = p else { return "—" };
        match *self {
            Target::None => "",
            Target::AtLeastTimes(rn, rh) => {
                let ok_n = rn.map(|r| n.map(|n| p >= r * n));
                let ok_h = rh.map(|r| h.map(|h| p >= r * h));
                match (ok_n, ok_h) {
                    (Some(None), _) | (_, Some(None)) => "—",
                    (a, b) => yes(a.flatten().unwrap_or(true) && b.flatten().unwrap_or(true)),
                }
            }
            Target::AtMostTimesHaproxy(r) => h.map_or("—", |h| yes(p <= r * h)),
            Target::AtLeast(x) => yes(p >= x),
            Target::AtMost(x) => yes(p <= x),
        }
    }
}

struct Row {
    key: &'static str,
    label: String,
    unit: &'static str,
    target: Target,
    /// Whether a missing Portico/nginx/haproxy figure is a failure of the bench.
    required: bool,
}

fn num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let s = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A count: an integer with thousands separators.
fn int(v: u64) -> String {
    if v >= 1000 {
        num(v as f64)
    } else {
        v.to_string()
    }
}

fn cell(s: Option<Summary>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.min == s.max => num(s.median),
        Some(s) => format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
    }
}

fn rows(plan: &Plan, rates: (f64, f64)) -> Vec<Row> {
    let n = num(plan.n as f64);
    let n1000 = num(plan.n.min(1000) as f64);
    let row = |key, label: String, unit, target, required| Row {
        key,
        label,
        unit,
        target,
        required,
    };
    let mut v = vec![
        row(
            "h1_one",
            "HTTP/1.1 keep-alive, one host".into(),
            "req/CPU-s",
            Target::AtLeastTimes(Some(1.1), Some(1.1)),
            true,
        ),
        row(
            "h1_one_rps",
            "HTTP/1.1 keep-alive, one host (throughput)".into(),
            "req/s",
            Target::None,
            true,
        ),
        row(
            "h1_one_direct",
            "HTTP/1.1 one host: req/CPU-s ÷ direct backend's".into(),
            "ratio",
            Target::None,
            true,
        ),
        row(
            "h1_rand",
            format!("HTTP/1.1 keep-alive, random host of {n}"),
            "req/CPU-s",
            Target::AtLeastTimes(Some(1.1), Some(1.1)),
            true,
        ),
        row(
            "h1_rand_rps",
            format!("HTTP/1.1 keep-alive, random host of {n} (throughput)"),
            "req/s",
            Target::None,
            true,
        ),
        row(
            "p99_50",
            format!(
                "p99 latency at {} req/s (50% of nginx max), CO-corrected",
                num(rates.0)
            ),
            "ms",
            Target::None,
            true,
        ),
        row(
            "p99_80",
            format!(
                "p99 latency at {} req/s (80% of nginx max), CO-corrected",
                num(rates.1)
            ),
            "ms",
            Target::AtMostTimesHaproxy(0.9),
            true,
        ),
        row(
            "tls_full_1",
            "TLS 1.3 ECDSA P-256 full handshakes, 1 certificate".into(),
            "hs/CPU-s",
            Target::AtLeastTimes(Some(1.5), None),
            true,
        ),
        row(
            "tls_res_1",
            "TLS 1.3 ECDSA P-256 resumed handshakes, 1 certificate".into(),
            "hs/CPU-s",
            Target::AtLeastTimes(Some(1.5), None),
            true,
        ),
        row(
            "tls_full_1k",
            format!("TLS 1.3 full handshakes, random SNI of {n1000} (of {n} loaded)"),
            "hs/CPU-s",
            Target::None,
            true,
        ),
        row(
            "tls_full_n",
            format!("TLS 1.3 full handshakes, random SNI of {n}"),
            "hs/CPU-s",
            Target::None,
            true,
        ),
        row(
            "tls_scale",
            format!("full handshakes/CPU-s: {n} certificates ÷ 1"),
            "ratio",
            Target::AtLeast(0.95),
            true,
        ),
    ];
    v.push(row(
        "tls_rsa",
        "TLS 1.3 RSA-2048 full handshakes, 1 certificate".into(),
        "hs/CPU-s",
        Target::None,
        plan.rsa,
    ));
    v.extend([
        row(
            "h2_1",
            "HTTP/2 over TLS, h2load 1 stream/conn".into(),
            "req/CPU-s",
            Target::None,
            true,
        ),
        row(
            "h2_32",
            "HTTP/2 over TLS, h2load 32 streams/conn".into(),
            "req/CPU-s",
            Target::AtLeastTimes(Some(1.0), None),
            true,
        ),
        row(
            "h2_100",
            "HTTP/2 over TLS, h2load 100 streams/conn".into(),
            "req/CPU-s",
            Target::None,
            true,
        ),
        row(
            "ready_n",
            format!("start → ready, {n} hosts + {n} certificates"),
            "s",
            Target::AtMost(2.0),
            true,
        ),
        row(
            "pss_n",
            format!("memory (PSS, all processes), {n} hosts + {n} certificates"),
            "MB",
            Target::AtMost(100.0),
            true,
        ),
        row(
            "idle_tls_kib",
            format!(
                "memory per idle TLS connection ({} open, PSS delta / connections)",
                plan.idle_conns
            ),
            "KB",
            Target::AtMost(16.0),
            true,
        ),
        row(
            "change_failed",
            "failed requests under load at 10 changes/s (failed / answered)".into(),
            "requests",
            Target::AtMost(0.0),
            true,
        ),
    ]);
    v
}

/// Ratio rows computed from the medians of other rows.
fn derive(results: &mut Results) {
    let median = |r: &Results, k, p| r.get(k, p).map(|s| s.median);
    for p in PROXIES {
        if let (Some(v), Some(d)) = (
            median(results, "h1_one", p),
            median(results, "h1_one", Peer::Direct),
        ) {
            results.samples.insert(("h1_one_direct", p), vec![v / d]);
        }
        if let (Some(v), Some(one)) = (
            median(results, "tls_full_n", p),
            median(results, "tls_full_1", p),
        ) {
            results.samples.insert(("tls_scale", p), vec![v / one]);
        }
    }
}

fn table(ctx: &Ctx, rates: (f64, f64)) -> (String, Vec<String>) {
    let r = &ctx.results;
    let mut out = String::from(
        "| Scenario | Unit | Direct | Portico | nginx | haproxy | Portico/nginx | Portico/haproxy | Target | Met |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut missing = Vec::new();
    for row in rows(&ctx.plan, rates) {
        let med = |p| r.get(row.key, p).map(|s| s.median);
        let text = |p: Peer| {
            r.text
                .get(&(row.key, p))
                .cloned()
                .unwrap_or_else(|| cell(r.get(row.key, p)))
        };
        for p in PROXIES {
            if row.required && med(p).is_none() {
                missing.push(format!("{} / {}", row.label, p.name()));
            }
        }
        if !row.required && PROXIES.iter().all(|&p| med(p).is_none()) {
            continue;
        }
        let ratio = |other: Option<f64>| match (med(Peer::Portico), other) {
            (Some(p), Some(o)) if o != 0.0 && row.unit != "ratio" => format!("{:.2}×", p / o),
            _ => "—".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            row.unit,
            text(Peer::Direct),
            text(Peer::Portico),
            text(Peer::Nginx),
            text(Peer::Haproxy),
            ratio(med(Peer::Nginx)),
            ratio(med(Peer::Haproxy)),
            row.target.text(row.unit),
            row.target
                .met(med(Peer::Portico), med(Peer::Nginx), med(Peer::Haproxy)),
        );
    }
    (out, missing)
}

// ---------------------------------------------------------------------------------------------
// Certificates and configurations

struct Pair {
    crt: String,
    key: String,
}

fn ecdsa(host: &str) -> Result<Pair> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])?.self_signed(&key)?;
    Ok(Pair {
        crt: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn rsa(host: &str) -> Result<Pair> {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .context("running openssl genpkey")?;
    let pem = String::from_utf8(out.stdout)?;
    let key = rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)?;
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])?.self_signed(&key)?;
    Ok(Pair {
        crt: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A `kubernetes.io/tls` Secret for Portico holding `pair` (the same files nginx and haproxy
/// load).
fn secret_yaml(name: &str, pair: &Pair) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&pair.crt),
        indent(&pair.key)
    )
}

/// The hosts of a configuration: (plain-HTTP hosts, TLS hosts with their certificate file
/// stem).
fn hosts(n: usize, config: Config) -> (Vec<String>, Vec<(String, String)>) {
    let mut plain = vec![ONE_HOST.to_string()];
    let mut tls = vec![
        (tls_host(0), "t0".to_string()),
        (RSA_HOST.to_string(), "rsa".to_string()),
    ];
    match config {
        Config::Small => {}
        Config::Routes => plain.extend((0..n).map(http_host)),
        Config::Certs => tls.extend((1..n).map(|i| (tls_host(i), format!("t{i}")))),
    }
    (plain, tls)
}

fn write_certs(ctx: &Ctx) -> Result<()> {
    let dir = ctx.work.join("certs");
    fs::create_dir_all(&dir)?;
    let t = Instant::now();
    let mut pairs: Vec<(String, Pair)> = (0..ctx.plan.n)
        .map(|i| Ok((format!("t{i}"), ecdsa(&tls_host(i))?)))
        .collect::<Result<_>>()?;
    pairs.push(("rsa".into(), rsa(RSA_HOST)?));
    for (stem, p) in &pairs {
        fs::write(dir.join(format!("{stem}.crt")), &p.crt)?;
        fs::write(dir.join(format!("{stem}.key")), &p.key)?;
        fs::write(
            dir.join(format!("{stem}.pem")),
            format!("{}{}", p.crt, p.key),
        )?;
    }
    eprintln!(
        "generated {} certificates in {:.1?}",
        pairs.len(),
        t.elapsed()
    );
    Ok(())
}

fn read_pair(ctx: &Ctx, stem: &str) -> Result<Pair> {
    let dir = ctx.work.join("certs");
    Ok(Pair {
        crt: fs::read_to_string(dir.join(format!("{stem}.crt")))?,
        key: fs::read_to_string(dir.join(format!("{stem}.key")))?,
    })
}

fn change_host(k: usize) -> String {
    format!("c{k}.change.test")
}

fn portico_change(k: usize) -> String {
    ingress("default", "change")
        .rule(&change_host(k), "/", "Prefix", "bench")
        .yaml()
}

fn write_portico(ctx: &Ctx, config: Config) -> Result<()> {
    let dir = ctx.dir(Peer::Portico, config).join("manifests");
    fs::create_dir_all(&dir)?;
    let (plain, tls) = hosts(ctx.plan.n, config);
    let mut text = backend("default", "bench", &[addr(BACKEND)]);
    let mut part = 0;
    let mut objects = 0;
    let mut flush = |text: &mut String, objects: &mut usize, force: bool| -> Result<()> {
        if *objects >= 1000 || (force && !text.is_empty()) {
            fs::write(dir.join(format!("part-{part}.yaml")), std::mem::take(text))?;
            part += 1;
            *objects = 0;
        }
        Ok(())
    };
    for (i, h) in plain.iter().enumerate() {
        text.push_str("---\n");
        text.push_str(
            &ingress("default", &format!("http-{i}"))
                .rule(h, "/", "Prefix", "bench")
                .yaml(),
        );
        objects += 1;
        flush(&mut text, &mut objects, false)?;
    }
    for (h, stem) in &tls {
        text.push_str("---\n");
        text.push_str(&secret_yaml(&format!("tls-{stem}"), &read_pair(ctx, stem)?));
        text.push_str("---\n");
        text.push_str(
            &ingress("default", &format!("tls-{stem}"))
                .tls(&[h], Some(&format!("tls-{stem}")))
                .rule(h, "/", "Prefix", "bench")
                .yaml(),
        );
        objects += 2;
        flush(&mut text, &mut objects, false)?;
    }
    flush(&mut text, &mut objects, true)?;
    if config == Config::Small {
        fs::write(dir.join("change.yaml"), portico_change(0))?;
    }
    Ok(())
}

fn fill(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |t, (k, v)| {
        t.replace(&format!("@{k}@"), v)
    })
}

fn nginx_server(host: &str, tls_stem: Option<&str>, certs: &Path) -> String {
    match tls_stem {
        None => format!(
            "server {{\n    listen 127.0.0.1:{HTTP};\n    server_name {host};\n    location / {{ proxy_pass http://backend; }}\n}}\n"
        ),
        Some(stem) => format!(
            "server {{\n    listen 127.0.0.1:{HTTPS} ssl http2;\n    server_name {host};\n    \
             ssl_certificate {c}/{stem}.crt;\n    ssl_certificate_key {c}/{stem}.key;\n    \
             location / {{ proxy_pass http://backend; }}\n}}\n",
            c = certs.display()
        ),
    }
}

fn write_nginx(ctx: &Ctx, config: Config) -> Result<()> {
    let dir = ctx.dir(Peer::Nginx, config);
    fs::create_dir_all(dir.join("tmp"))?;
    let certs = ctx.work.join("certs");
    let (plain, tls) = hosts(ctx.plan.n, config);
    let mut servers = String::new();
    for h in &plain {
        servers.push_str(&nginx_server(h, None, &certs));
    }
    for (h, stem) in &tls {
        servers.push_str(&nginx_server(h, Some(stem), &certs));
    }
    if config == Config::Small {
        let _ = writeln!(servers, "include {}/change.conf;", dir.display());
        fs::write(
            dir.join("change.conf"),
            nginx_server(&change_host(0), None, &certs),
        )?;
    }
    fs::write(dir.join("servers.conf"), servers)?;
    let conf = fill(
        NGINX_CONF,
        &[
            ("WORK", dir.display().to_string()),
            ("BACKEND", BACKEND.to_string()),
            ("HTTP", HTTP.to_string()),
            ("HTTPS", HTTPS.to_string()),
            ("DEFAULT_CRT", certs.join("t0.crt").display().to_string()),
            ("DEFAULT_KEY", certs.join("t0.key").display().to_string()),
            ("SERVERS", dir.join("servers.conf").display().to_string()),
        ],
    );
    fs::write(dir.join("nginx.conf"), conf)?;
    Ok(())
}

fn haproxy_hosts(n: usize, config: Config, change: Option<usize>) -> String {
    let (plain, tls) = hosts(n, config);
    let mut s = String::new();
    for h in plain.iter().chain(tls.iter().map(|(h, _)| h)) {
        s.push_str(h);
        s.push('\n');
    }
    if let Some(k) = change {
        s.push_str(&change_host(k));
        s.push('\n');
    }
    s
}

fn write_haproxy(ctx: &Ctx, config: Config) -> Result<()> {
    let dir = ctx.dir(Peer::Haproxy, config);
    fs::create_dir_all(&dir)?;
    let certs = ctx.work.join("certs");
    let (_, tls) = hosts(ctx.plan.n, config);
    let crt_list: String = tls
        .iter()
        .map(|(_, stem)| format!("{}/{stem}.pem\n", certs.display()))
        .collect();
    fs::write(dir.join("crt-list.txt"), crt_list)?;
    let change = (config == Config::Small).then_some(0);
    fs::write(
        dir.join("hosts.lst"),
        haproxy_hosts(ctx.plan.n, config, change),
    )?;
    let cfg = fill(
        HAPROXY_CFG,
        &[
            ("WORK", dir.display().to_string()),
            ("BACKEND", BACKEND.to_string()),
            ("HTTP", HTTP.to_string()),
            ("HTTPS", HTTPS.to_string()),
            ("CRTLIST", dir.join("crt-list.txt").display().to_string()),
            ("HOSTS", dir.join("hosts.lst").display().to_string()),
        ],
    );
    fs::write(dir.join("haproxy.cfg"), cfg)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes

struct Running {
    peer: Peer,
    child: Child,
    pid: u32,
    log: PathBuf,
    /// Spawn → ready (Portico: /readyz answers 200; others: the probe host answers 200).
    ready: Duration,
}

impl Running {
    fn signal(&self, sig: &str) -> Result<()> {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid.to_string()])
            .stderr(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("kill -{sig} {} failed", self.pid);
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // nginx and haproxy in master-worker mode stop their workers on SIGTERM.
        let graceful =
            matches!(self.peer, Peer::Nginx | Peer::Haproxy) && self.signal("TERM").is_ok();
        if graceful {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn start(ctx: &Ctx, peer: Peer, config: Config, master_worker: bool) -> Result<Running> {
    let dir = ctx.dir(peer, config);
    fs::create_dir_all(&dir)?;
    let log = dir.join("out.log");
    let out = fs::File::create(&log)?;
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"]);
    match peer {
        Peer::Direct => {
            cmd.arg(&ctx.backend).arg(addr(DIRECT).to_string());
        }
        Peer::Portico => {
            cmd.arg(&ctx.portico)
                .arg("--manifests")
                .arg(dir.join("manifests"))
                .args(["--http-addr", &addr(HTTP).to_string()])
                .args(["--https-addr", &addr(HTTPS).to_string()])
                .args(["--admin-addr", &addr(ADMIN).to_string()])
                .args(["--no-access-log", "--workers", "1"])
                .env("PORTICO_LOG", "warn");
        }
        Peer::Nginx => {
            cmd.arg("nginx")
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"));
        }
        Peer::Haproxy => {
            cmd.arg("haproxy").arg("-db");
            if master_worker {
                cmd.arg("-W");
            }
            cmd.arg("-f").arg(dir.join("haproxy.cfg"));
        }
    }
    let t = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", peer.name()))?;
    let pid = child.id();
    let mut running = Running {
        peer,
        child,
        pid,
        log,
        ready: Duration::ZERO,
    };
    let (port, probe) = match (peer, config) {
        (Peer::Direct, _) => (DIRECT, ONE_HOST.to_string()),
        (_, Config::Small) => (HTTP, ONE_HOST.to_string()),
        (_, Config::Routes) => (HTTP, http_host(ctx.plan.n - 1)),
        (_, Config::Certs) => (HTTP, ONE_HOST.to_string()),
    };
    let deadline = t + Duration::from_secs(180);
    let mut readyz = peer != Peer::Portico;
    loop {
        if let Some(st) = running.child.try_wait()? {
            bail!("{} exited ({st}):\n{}", peer.name(), tail(&running.log));
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready after 180 s:\n{}",
                peer.name(),
                tail(&running.log)
            );
        }
        if !readyz {
            if http1::get_status(addr(ADMIN), "localhost", "/readyz").ok() == Some(200) {
                readyz = true;
                running.ready = t.elapsed();
            }
        } else if http1::get_status(addr(port), &probe, "/").ok() == Some(200) {
            if peer != Peer::Portico {
                running.ready = t.elapsed();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "{} ({}) ready in {:.2?}",
        peer.name(),
        config.name(),
        running.ready
    );
    Ok(running)
}

// ---------------------------------------------------------------------------------------------
// Measurements

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Runs `load` on its own thread and returns its result with the CPU seconds the proxy's
/// processes used inside the window.
fn measured<T: Send + 'static>(
    ctx: &Ctx,
    pid: u32,
    window: Window,
    load: impl FnOnce() -> T + Send + 'static,
) -> Result<(T, f64)> {
    let h = std::thread::spawn(load);
    sleep_until(window.measure);
    let c0 = procfs::tree_cpu_ticks(pid);
    sleep_until(window.end);
    let c1 = procfs::tree_cpu_ticks(pid);
    let t = h.join().map_err(|_| anyhow!("load thread panicked"))?;
    Ok((t, c1.saturating_sub(c0) as f64 / ctx.clock_ticks))
}

fn check_counts(ctx: &mut Ctx, what: &str, peer: Peer, c: Counts) {
    let bad = c.failed + c.non_2xx;
    if bad > 0 {
        ctx.results.note(format!(
            "{what} / {}: {} failed and {} non-2xx of {} answers",
            peer.name(),
            c.failed,
            c.non_2xx,
            c.ok + c.non_2xx
        ));
    }
}

fn run_http1(
    ctx: &mut Ctx,
    r: &Running,
    port: u16,
    hosts: Vec<String>,
    key: &'static str,
    rps_key: &'static str,
) -> Result<()> {
    let reqs = Arc::new(hosts.iter().map(|h| http1::request(h)).collect::<Vec<_>>());
    let (conns, window) = (ctx.plan.conns, ctx.plan.window());
    let (counts, cpu) = measured(ctx, r.pid, window, move || {
        http1::closed_loop(addr(port), reqs, conns, window)
    })?;
    let counts = counts?;
    check_counts(ctx, key, r.peer, counts);
    if counts.ok > 0 && cpu > 0.0 {
        ctx.results.add(key, r.peer, counts.ok as f64 / cpu);
        let secs = ctx.plan.duration.as_secs_f64();
        ctx.results.add(rps_key, r.peer, counts.ok as f64 / secs);
    }
    Ok(())
}

fn run_tls(
    ctx: &mut Ctx,
    r: &Running,
    names: Vec<String>,
    resume: bool,
    key: &'static str,
) -> Result<()> {
    let names = names
        .into_iter()
        .map(ServerName::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let names = Arc::new(names);
    let (clients, window) = (ctx.plan.tls_clients, ctx.plan.window());
    let (hs, cpu) = measured(ctx, r.pid, window, move || {
        tls::handshakes(addr(HTTPS), names, resume, clients, window)
    })?;
    let hs = hs?;
    if hs.failed > 0 {
        ctx.results.note(format!(
            "{key} / {}: {} handshakes failed",
            r.peer.name(),
            hs.failed
        ));
    }
    if resume && hs.total() > 0 && (hs.resumed as f64) < 0.9 * hs.total() as f64 {
        ctx.results.note(format!(
            "{key} / {}: only {} of {} handshakes were resumed",
            r.peer.name(),
            hs.resumed,
            hs.total()
        ));
    }
    if hs.total() > 0 && cpu > 0.0 {
        ctx.results.add(key, r.peer, hs.total() as f64 / cpu);
    }
    Ok(())
}

fn run_h2(ctx: &mut Ctx, r: &Running, streams: usize, key: &'static str) -> Result<()> {
    // At least a second: a debug build (the smoke check) needs that long to answer 100
    // streams on each of the clients once.
    let secs = ctx.plan.duration.as_millis().max(1000);
    let c0 = procfs::tree_cpu_ticks(r.pid);
    // h2load can wait forever for a server that stopped answering: bound it.
    let limit = (secs / 1000 + 20).to_string();
    let out = Command::new("timeout")
        .args([limit.as_str(), "h2load"])
        .args(["-c", &ctx.plan.h2_clients.to_string()])
        .args(["-m", &streams.to_string()])
        .args(["-D", &format!("{secs}ms")])
        .arg(format!("--connect-to=127.0.0.1:{HTTPS}"))
        .arg(format!("https://{}:{HTTPS}/", tls_host(0)))
        .output()
        .context("running h2load")?;
    let c1 = procfs::tree_cpu_ticks(r.pid);
    let text = String::from_utf8_lossy(&out.stdout);
    // "status codes: 1234 2xx, 0 3xx, 0 4xx, 0 5xx"
    let ok: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("status codes:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let failed = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("requests:"))
        .map(str::trim)
        .unwrap_or("");
    let cpu = c1.saturating_sub(c0) as f64 / ctx.clock_ticks;
    if ok == 0 {
        ctx.results.note(format!(
            "{key} / {}: h2load answered nothing: {}",
            r.peer.name(),
            text.trim()
        ));
    } else if !failed.contains(" 0 failed") {
        ctx.results.note(format!(
            "{key} / {}: h2load requests: {failed}",
            r.peer.name()
        ));
    }
    if ok > 0 && cpu > 0.0 {
        ctx.results.add(key, r.peer, ok as f64 / cpu);
    }
    Ok(())
}

fn small_phase(ctx: &mut Ctx, peer: Peer) -> Result<()> {
    let r = start(ctx, peer, Config::Small, false)?;
    if peer == Peer::Direct {
        return run_http1(
            ctx,
            &r,
            DIRECT,
            vec![ONE_HOST.into()],
            "h1_one",
            "h1_one_rps",
        );
    }
    run_http1(ctx, &r, HTTP, vec![ONE_HOST.into()], "h1_one", "h1_one_rps")?;
    run_tls(ctx, &r, vec![tls_host(0)], false, "tls_full_1")?;
    run_tls(ctx, &r, vec![tls_host(0)], true, "tls_res_1")?;
    if ctx.plan.rsa {
        run_tls(ctx, &r, vec![RSA_HOST.into()], false, "tls_rsa")?;
    }
    for (m, key) in [(1, "h2_1"), (32, "h2_32"), (100, "h2_100")] {
        run_h2(ctx, &r, m, key)?;
    }
    Ok(())
}

fn routes_phase(ctx: &mut Ctx, peer: Peer) -> Result<()> {
    let r = start(ctx, peer, Config::Routes, false)?;
    let n = ctx.plan.n;
    let hosts = (0..n).map(http_host).collect();
    run_http1(ctx, &r, HTTP, hosts, "h1_rand", "h1_rand_rps")
}

fn certs_phase(ctx: &mut Ctx, peer: Peer) -> Result<()> {
    let r = start(ctx, peer, Config::Certs, false)?;
    ctx.results.add("ready_n", peer, r.ready.as_secs_f64());
    let n = ctx.plan.n;
    run_tls(
        ctx,
        &r,
        (0..n.min(1000)).map(tls_host).collect(),
        false,
        "tls_full_1k",
    )?;
    run_tls(ctx, &r, (0..n).map(tls_host).collect(), false, "tls_full_n")?;
    let idle_pss = procfs::tree_pss_kib(r.pid);
    ctx.results.add("pss_n", peer, idle_pss as f64 / 1024.0);
    idle_tls_phase(ctx, &r, peer, idle_pss)
}

/// Memory per idle TLS connection: PSS with `idle_conns` handshaken, idle connections open,
/// minus PSS before, per connection.
fn idle_tls_phase(ctx: &mut Ctx, r: &Running, peer: Peer, before_kib: u64) -> Result<()> {
    let n = ctx.plan.n;
    let names: Vec<ServerName<'static>> = (0..n)
        .map(|i| ServerName::try_from(tls_host(i)))
        .collect::<Result<_, _>>()?;
    let idle = tls::IdleConnections::open(addr(HTTPS), Arc::new(names), ctx.plan.idle_conns, 8)?;
    if idle.failed > 0 {
        ctx.results.note(format!(
            "idle TLS / {}: {} of {} connections failed",
            peer.name(),
            idle.failed,
            ctx.plan.idle_conns
        ));
    }
    // Let the server finish its side of every handshake (tickets sent, buffers released).
    std::thread::sleep(Duration::from_millis(500));
    let after_kib = procfs::tree_pss_kib(r.pid);
    if !idle.is_empty() {
        let per_conn = after_kib.saturating_sub(before_kib) as f64 / idle.len() as f64;
        ctx.results.add("idle_tls_kib", peer, per_conn);
    }
    drop(idle);
    Ok(())
}

fn latency_phase(ctx: &mut Ctx, peer: Peer, rates: (f64, f64)) -> Result<()> {
    let _running = start(ctx, peer, Config::Small, false)?;
    for (rate, key) in [(rates.0, "p99_50"), (rates.1, "p99_80")] {
        let req = Arc::new(http1::request(ONE_HOST));
        let window = ctx.plan.window();
        let res = http1::open_loop(addr(HTTP), req, ctx.plan.open_conns, rate, window)?;
        check_counts(ctx, key, peer, res.counts);
        let p50 = quantile(&res.latencies_us, 0.5);
        let p99 = quantile(&res.latencies_us, 0.99);
        eprintln!(
            "  {key} {}: {} answers, p50 {:?} µs, p99 {:?} µs, max {:?} µs",
            peer.name(),
            res.latencies_us.len(),
            p50,
            p99,
            res.latencies_us.last()
        );
        if let Some(p99) = p99 {
            ctx.results.add(key, peer, p99 as f64 / 1000.0);
        }
    }
    Ok(())
}

fn apply_change(ctx: &Ctx, r: &Running, k: usize) -> Result<()> {
    let dir = ctx.dir(r.peer, Config::Small);
    let write = |name: &str, text: String| -> Result<()> {
        let tmp = dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, text)?;
        fs::rename(&tmp, dir.join(name))?;
        Ok(())
    };
    match r.peer {
        Peer::Portico => {
            let tmp = dir.join("change.yaml.tmp");
            fs::write(&tmp, portico_change(k))?;
            fs::rename(&tmp, dir.join("manifests").join("change.yaml"))?;
        }
        Peer::Nginx => {
            write(
                "change.conf",
                nginx_server(&change_host(k), None, &ctx.work.join("certs")),
            )?;
            r.signal("HUP")?;
        }
        Peer::Haproxy => {
            write(
                "hosts.lst",
                haproxy_hosts(ctx.plan.n, Config::Small, Some(k)),
            )?;
            r.signal("USR2")?;
        }
        Peer::Direct => {}
    }
    Ok(())
}

fn change_phase(ctx: &mut Ctx, peer: Peer) -> Result<()> {
    let r = start(ctx, peer, Config::Small, true)?;
    let reqs = Arc::new(vec![http1::request(ONE_HOST)]);
    let window = Window::new(Duration::ZERO, ctx.plan.change_duration);
    let conns = 16;
    let load = std::thread::spawn(move || http1::closed_loop(addr(HTTP), reqs, conns, window));
    let mut k = 0;
    let start_t = Instant::now();
    while Instant::now() + Duration::from_millis(100) < window.end {
        k += 1;
        apply_change(ctx, &r, k)?;
        sleep_until(start_t + Duration::from_millis(100 * k as u64));
    }
    let counts = load.join().map_err(|_| anyhow!("load thread panicked"))??;
    // The last change must be live.
    let deadline = Instant::now() + Duration::from_secs(5);
    let live = loop {
        if http1::get_status(addr(HTTP), &change_host(k), "/").ok() == Some(200) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !live {
        ctx.results.note(format!(
            "change / {}: the last change ({}) was not live 5 s later",
            peer.name(),
            change_host(k)
        ));
    }
    let failed = counts.failed + counts.non_2xx;
    eprintln!("  change {}: {k} changes, {counts:?}", peer.name());
    if counts.ok > 0 {
        ctx.results.add("change_failed", peer, failed as f64);
        let mut text = format!("{} / {}", int(failed), int(counts.ok + counts.non_2xx));
        if counts.retried > 0 {
            let _ = write!(text, " ({} retried)", int(counts.retried));
        }
        ctx.results.text.insert(("change_failed", peer), text);
    }
    Ok(())
}

fn need(tool: &str) -> Result<()> {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("{tool} is not installed (bench/run installs it)");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = if args.iter().any(|a| a == "--smoke") {
        Mode::Smoke
    } else if args.iter().any(|a| a == "--quick") {
        Mode::Quick
    } else {
        Mode::Full
    };
    let exe_dir = std::env::current_exe()?
        .parent()
        .ok_or_else(|| anyhow!("no executable directory"))?
        .to_path_buf();
    let work = args
        .iter()
        .position(|a| a == "--work")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| exe_dir.join("bench-peers"));
    for tool in ["taskset", "nginx", "haproxy", "h2load", "openssl"] {
        need(tool)?;
    }
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let mut ctx = Ctx {
        plan: Plan::new(mode),
        work,
        // PORTICO_BIN: another build of Portico to measure (a before/after comparison).
        portico: std::env::var_os("PORTICO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| exe_dir.join("portico")),
        backend: exe_dir.join("backend"),
        clock_ticks: procfs::clock_ticks(),
        results: Results::default(),
        rep: 0,
    };
    for b in [&ctx.portico, &ctx.backend] {
        if !b.exists() {
            bail!(
                "{} is missing: build with cargo build -p portico -p portico-bench",
                b.display()
            );
        }
    }
    let began = Instant::now();
    write_certs(&ctx)?;
    for config in [Config::Small, Config::Routes, Config::Certs] {
        write_portico(&ctx, config)?;
        write_nginx(&ctx, config)?;
        write_haproxy(&ctx, config)?;
    }
    // The backend for every proxy, on CPU 1 with the load generator.
    let backend_log = fs::File::create(ctx.work.join("backend.log"))?;
    let mut backend = Command::new("taskset")
        .args(["-c", "1"])
        .arg(&ctx.backend)
        .arg(addr(BACKEND).to_string())
        .stdout(backend_log.try_clone()?)
        .stderr(backend_log)
        .spawn()?;
    let result = run(&mut ctx);
    let _ = backend.kill();
    let _ = backend.wait();
    let rates = result?;
    derive(&mut ctx.results);
    let (table, missing) = table(&ctx, rates);
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let header = format!(
        "Portico vs nginx vs haproxy — mode {:?}, {} repetition(s) ({} of the N-host and latency runs) \
         of {:.1} s (+{:.1} s warm-up), N = {}; took {:.0} s; load average at the end: {}\n\n",
        ctx.plan.mode,
        ctx.plan.reps,
        ctx.plan.large_reps,
        ctx.plan.duration.as_secs_f64(),
        ctx.plan.warmup.as_secs_f64(),
        num(ctx.plan.n as f64),
        began.elapsed().as_secs_f64(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    );
    let mut out = header + &table;
    if !ctx.results.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in &ctx.results.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    fs::write(ctx.work.join("results.md"), &out)?;
    println!("{out}");
    if !missing.is_empty() {
        bail!("no figure for: {}", missing.join("; "));
    }
    Ok(())
}

/// Every scenario; returns the offered rates of the latency runs.
fn run(ctx: &mut Ctx) -> Result<(f64, f64)> {
    for _ in 0..100 {
        if http1::get_status(addr(BACKEND), ONE_HOST, "/").is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for rep in 0..ctx.plan.reps {
        ctx.rep = rep;
        eprintln!("== repetition {} of {}", rep + 1, ctx.plan.reps);
        small_phase(ctx, Peer::Direct)?;
        for peer in ctx.order() {
            small_phase(ctx, peer)?;
        }
        if rep < ctx.plan.large_reps {
            for peer in ctx.order() {
                routes_phase(ctx, peer)?;
            }
            for peer in ctx.order() {
                certs_phase(ctx, peer)?;
            }
        }
    }
    let nginx_max = ctx
        .results
        .get("h1_one_rps", Peer::Nginx)
        .map(|s| s.median)
        .ok_or_else(|| anyhow!("no nginx throughput to set the latency runs' rate"))?;
    let rates = (0.5 * nginx_max, 0.8 * nginx_max);
    for rep in 0..ctx.plan.large_reps {
        ctx.rep = rep;
        eprintln!(
            "== latency, repetition {} of {}",
            rep + 1,
            ctx.plan.large_reps
        );
        for peer in ctx.order() {
            latency_phase(ctx, peer, rates)?;
        }
    }
    eprintln!("== change → live at 10 changes/s");
    for peer in PROXIES {
        change_phase(ctx, peer)?;
    }
    Ok(rates)
}
