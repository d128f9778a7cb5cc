//! Operability through the real binary: metrics (one assertion per metric, bounded
//! cardinality), trace context, access-log formats, the admin surface (status page in headless
//! Chromium, routes API, `portico routes`, runtime log level).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portico_e2e::manifests::{backend, ingress};
use portico_e2e::{echo, echo_json, portico_bin, write, Portico};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A `kubernetes.io/tls` Secret for `hosts` whose certificate expires `days` days (and an
/// hour) from now.
fn expiring_secret(namespace: &str, name: &str, hosts: &[&str], days: u64) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hosts[0]);
    // 1975-01-01 is 157,766,400 s after the epoch.
    let from_1975 = now() - 157_766_400 + days * 86_400 + 3_600;
    params.not_after = rcgen::date_time_ymd(1975, 1, 1) + Duration::from_secs(from_1975);
    let cert = params.self_signed(&key).unwrap();
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    )
}

/// shop.test (TLS, certificate expiring in 40 days) and api.test served by echo backends, plus
/// an Ingress naming a Service that does not exist (a problem).
async fn seeded(extra: &[&str]) -> (tempfile::TempDir, Portico) {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let api = echo("api").await;
    write(
        dir.path(),
        "backends.yaml",
        &[
            backend("shop", "web", &[web]),
            backend("shop", "api", &[api]),
        ]
        .join("---\n"),
    );
    write(
        dir.path(),
        "secret.yaml",
        &expiring_secret("shop", "shop-tls", &["shop.test"], 40),
    );
    write(
        dir.path(),
        "ingresses.yaml",
        &[
            ingress("shop", "storefront")
                .rule("shop.test", "/", "Prefix", "web")
                .tls(&["shop.test"], Some("shop-tls"))
                .yaml(),
            ingress("shop", "api")
                .rule("api.test", "/v1", "Prefix", "api")
                .rule("*.api.test", "/", "Prefix", "api")
                .yaml(),
            ingress("shop", "broken")
                .rule("broken.test", "/", "Prefix", "missing")
                .yaml(),
        ]
        .join("---\n"),
    );
    let p = Portico::start(dir.path(), extra).await;
    (dir, p)
}

/// Every sample's series (name and labels), without values.
fn series(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
        .collect()
}

/// The value of one series.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls /metrics until `series` reaches at least `want`.
async fn wait_value(p: &Portico, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = p.metrics().await;
        if value(&m, series).is_some_and(|v| v >= want) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn metrics_name_routes_methods_and_statuses_and_traffic_adds_no_series() {
    let (_dir, p) = seeded(&["--no-access-log"]).await;
    let c = p.client(&["shop.test", "api.test", "nowhere.test"]);
    for _ in 0..3 {
        let r = c.get(p.http_url("api.test", "/v1/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let r = c
        .post(p.http_url("api.test", "/v1/x?status=503"))
        .body("12345")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    r.bytes().await.unwrap();
    let r = c.get(p.http_url("nowhere.test", "/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // One TLS handshake (TLS 1.3 with reqwest's rustls).
    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("shop.test", p.https)
        .build()
        .unwrap();
    let r = tls.get(p.https_url("shop.test", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let api = "namespace=\"shop\",ingress=\"api\",service=\"api:80\"";
    let m = wait_value(
        &p,
        &format!("portico_request_duration_seconds_count{{{api}}}"),
        4.0,
    )
    .await;
    let expect = |series: &str, v: f64| {
        assert_eq!(value(&m, series), Some(v), "{series}\n{m}");
    };
    expect(
        &format!("portico_requests_total{{{api},method=\"GET\",status=\"2xx\"}}"),
        3.0,
    );
    expect(
        &format!("portico_requests_total{{{api},method=\"POST\",status=\"5xx\"}}"),
        1.0,
    );
    expect(
        "portico_requests_total{namespace=\"\",ingress=\"\",service=\"\",method=\"GET\",status=\"4xx\"}",
        1.0,
    );
    expect(
        &format!("portico_upstream_response_duration_seconds_count{{{api}}}"),
        4.0,
    );
    expect(
        &format!("portico_request_duration_seconds_bucket{{{api},le=\"+Inf\"}}"),
        4.0,
    );
    expect(&format!("portico_request_bytes_total{{{api}}}"), 5.0);
    assert!(value(&m, &format!("portico_response_bytes_total{{{api}}}")).unwrap() > 100.0);
    expect(
        "portico_tls_handshakes_total{version=\"TLSv1.3\",result=\"ok\"}",
        1.0,
    );
    expect("portico_upstream_errors_total{kind=\"connect\"}", 0.0);
    expect("portico_upstream_retries_total", 0.0);
    assert!(value(&m, "portico_connections_total").unwrap() >= 2.0);
    assert!(value(&m, "portico_connections_active").is_some());
    let expiry = value(&m, "portico_ssl_expire_time_seconds{host=\"shop.test\"}").unwrap();
    let days = (expiry - now() as f64) / 86_400.0;
    assert!((40.0..41.0).contains(&days), "{days}");
    expect("portico_config_problems{reason=\"ServiceNotFound\"}", 1.0);
    expect("portico_config_generation", 1.0);
    expect("portico_config_publishes_total{result=\"success\"}", 1.0);
    expect("portico_config_last_publish_successful", 1.0);
    let published = value(&m, "portico_config_last_publish_timestamp_seconds").unwrap();
    assert!((published - now() as f64).abs() < 600.0, "{published}");
    assert!(value(&m, "portico_config_publish_duration_seconds").unwrap() > 0.0);
    // Manifest mode: no watches and no election, so their families are empty.
    assert!(m.contains("# TYPE portico_watch_restarts_total counter"));
    assert!(m.contains("# TYPE portico_leader_election_status gauge"));
    assert!(!m.contains("portico_leader_election_status{"));

    // 10,000 distinct paths (routed and unrouted) add no series.
    let before = series(&m);
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let c = c.clone();
            let (api, nowhere) = (
                p.http_url("api.test", "/v1/"),
                p.http_url("nowhere.test", "/"),
            );
            tokio::spawn(async move {
                for i in (t..10_000).step_by(16) {
                    let url = if i % 2 == 0 {
                        format!("{api}{i}/x?q={i}")
                    } else {
                        format!("{nowhere}{i}")
                    };
                    let r = c.get(url).send().await.unwrap();
                    r.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let m = wait_value(
        &p,
        &format!("portico_request_duration_seconds_count{{{api}}}"),
        5_004.0,
    )
    .await;
    let after = series(&m);
    assert_eq!(
        before.symmetric_difference(&after).collect::<Vec<_>>(),
        Vec::<&String>::new()
    );
    assert!(!m.contains("/v1/1"), "no raw paths in labels");
}

#[tokio::test]
async fn traceparent_goes_upstream_and_into_the_access_log() {
    let (_dir, p) = seeded(&["--access-log-format", "json"]).await;
    let c = p.client(&["api.test"]);
    let incoming = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let r = c
        .get(p.http_url("api.test", "/v1/kept"))
        .header("traceparent", &incoming)
        .header("tracestate", "congo=t61rcWkgMzE")
        .send()
        .await
        .unwrap();
    let seen = echo_json(r).await;
    let up = seen["headers"]["traceparent"].as_str().unwrap().to_string();
    assert!(up.starts_with(&format!("00-{TRACE_ID}-")), "{up}");
    assert!(up.ends_with("-01"), "{up}");
    assert_ne!(&up[36..52], "00f067aa0ba902b7", "Portico's own span id");
    assert_eq!(seen["headers"]["tracestate"], "congo=t61rcWkgMzE");

    // Invalid: replaced by a new trace, tracestate dropped.
    let r = c
        .get(p.http_url("api.test", "/v1/replaced"))
        .header("traceparent", "00-not-a-trace")
        .header("tracestate", "congo=t61rcWkgMzE")
        .send()
        .await
        .unwrap();
    let seen = echo_json(r).await;
    let replaced = seen["headers"]["traceparent"].as_str().unwrap().to_string();
    assert_eq!(replaced.len(), 55, "{replaced}");
    assert!(replaced.ends_with("-00"));
    assert!(seen["headers"].get("tracestate").is_none(), "{seen}");

    // Absent: generated.
    let r = c
        .get(p.http_url("api.test", "/v1/generated"))
        .send()
        .await
        .unwrap();
    let seen = echo_json(r).await;
    let generated = seen["headers"]["traceparent"].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 55);

    // The access log (JSON) carries each request's trace id.
    let lines = access_lines(&p, 3).await;
    let trace_of = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .unwrap_or_else(|| panic!("no line for {path}: {lines:?}"))["trace_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(trace_of("/v1/kept"), TRACE_ID);
    assert_eq!(trace_of("/v1/replaced"), &replaced[3..35]);
    assert_eq!(trace_of("/v1/generated"), &generated[3..35]);
}

/// Waits for at least `n` JSON access-log lines and returns them.
async fn access_lines(p: &Portico, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<serde_json::Value> = p
            .logs()
            .lines()
            .filter(|l| l.starts_with('{') && l.contains("portico::access"))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} access lines, want {n}:\n{}",
            lines.len(),
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn json_access_log_leaves_out_health_checks() {
    let (_dir, p) = seeded(&[
        "--access-log-format",
        "json",
        "--access-log-exclude-path",
        "/v1/healthz",
        "--access-log-exclude-user-agent",
        "kube-probe/",
    ])
    .await;
    let c = p.client(&["api.test"]);
    c.get(p.http_url("api.test", "/v1/healthz"))
        .send()
        .await
        .unwrap();
    c.get(p.http_url("api.test", "/v1/probed"))
        .header("user-agent", "kube-probe/1.31")
        .send()
        .await
        .unwrap();
    c.get(p.http_url("api.test", "/v1/logged?a=1"))
        .header("user-agent", "curl/8.0")
        .header("referer", "https://shop.test/")
        .send()
        .await
        .unwrap();
    let lines = access_lines(&p, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["path"], "/v1/logged");
    assert_eq!(l["query"], "a=1");
    assert_eq!(l["method"], "GET");
    assert_eq!(l["status"], 200);
    assert_eq!(l["namespace"], "shop");
    assert_eq!(l["ingress"], "api");
    assert_eq!(l["service"], "api:80");
    assert_eq!(l["user_agent"], "curl/8.0");
    assert_eq!(l["referer"], "https://shop.test/");
    assert_eq!(l["trace_id"].as_str().unwrap().len(), 32);
    assert!(l["bytes_out"].as_u64().unwrap() > 0);
    assert!(l["timestamp"].is_string());
}

#[tokio::test]
async fn text_access_log_is_combined_like() {
    let (_dir, p) = seeded(&[]).await;
    let c = p.client(&["api.test"]);
    let r = c
        .get(p.http_url("api.test", "/v1/text"))
        .header("user-agent", "curl/8.0")
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    p.wait_log("\"GET /v1/text HTTP/1.1\" 200", Duration::from_secs(5))
        .await;
    let logs = p.logs();
    let line = logs.lines().find(|l| l.contains("/v1/text")).unwrap();
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains("\"-\" \"curl/8.0\" 0 "), "{line}");
    assert!(line.contains("[shop-api-80] 127.0.0.1:"), "{line}");
    assert!(
        line.ends_with(&format!("{request_id} {TRACE_ID}")),
        "{line}"
    );
}

#[tokio::test]
async fn routes_api_and_portico_routes() {
    let (_dir, p) = seeded(&[]).await;
    let body = reqwest::get(format!("http://{}/api/routes", p.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["generation"], 1);
    let hosts: BTreeSet<&str> = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        BTreeSet::from(["shop.test", "api.test", "*.api.test", "broken.test"]),
        "{body}"
    );

    let run = |args: &[&str]| {
        let out = Command::new(portico_bin())
            .arg("routes")
            .args(["--admin-addr", &p.admin.to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(&[]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("HOST"), "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("api.test") && l.contains("/v1") && l.contains("shop/api")),
        "{table}"
    );
    assert!(table.contains("shop.test"), "{table}");
    // --host: the table that serves the host, by the proxy's own lookup.
    let filtered = run(&["--host", "x.api.test", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&filtered).unwrap();
    assert_eq!(v["matched_host"], "*.api.test");
    assert_eq!(v["routes"].as_array().unwrap().len(), 1, "{filtered}");
    assert_eq!(v["routes"][0]["service"], "api:80");
    let t = run(&["--host", "shop.test"]);
    assert!(!t.contains("api.test"), "{t}");
    assert!(t.contains("(host table shop.test; generation 1)"), "{t}");

    // Unreachable instance: a clear error, not a panic.
    let out = Command::new(portico_bin())
        .args(["routes", "--admin-addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("connecting to the admin listener"));
}

#[tokio::test]
async fn log_level_changes_at_runtime() {
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "s3cret\n").unwrap();
    let (_dir, p) = seeded(&["--admin-token-file", token.path().to_str().unwrap()]).await;
    let admin = reqwest::Client::new();
    let url = format!("http://{}/api/log-level", p.admin);
    let current = admin.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(current.contains("info"), "{current}");
    let bad = admin.put(&url).body("info,[[[").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let set = admin.put(&url).body("warn").send().await.unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(set.text().await.unwrap().trim(), "warn");

    let c = p.client(&["api.test"]);
    c.get(p.http_url("api.test", "/v1/quiet"))
        .send()
        .await
        .unwrap();
    let set = admin
        .put(&url)
        .body("info,portico::access=info")
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    c.get(p.http_url("api.test", "/v1/loud"))
        .send()
        .await
        .unwrap();
    p.wait_log("GET /v1/loud", Duration::from_secs(5)).await;
    assert!(!p.logs().contains("/v1/quiet"), "{}", p.logs());
    p.wait_log("log level changed", Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn a_missing_or_empty_admin_token_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    for (file, why) in [
        (dir.path().join("absent"), "reading --admin-token-file"),
        (empty.clone(), "is empty"),
    ] {
        let out = Command::new(portico_bin())
            .args(["--manifests", dir.path().to_str().unwrap()])
            .args(["--admin-token-file", file.to_str().unwrap()])
            .args(["--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"])
            .args(["--admin-addr", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{err}");
    }
}

#[tokio::test]
async fn status_page_in_headless_chromium() {
    let (_dir, p) = seeded(&[]).await;
    let url = format!("http://{}/status", p.admin);
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));

    let Some(chromium) = find_chromium() else {
        panic!("chromium is not installed: `apt-get install chromium` (scripts/test installs it)");
    };
    let shots = tempfile::tempdir().unwrap();
    let dom = run_chromium(&chromium, shots.path(), &["--dump-dom", &url]);
    let Some(dom) = dom else {
        return;
    };
    for host in ["shop.test", "api.test", "*.api.test"] {
        assert!(dom.contains(&format!("<td>{host}</td>")), "{host}:\n{dom}");
    }
    // The certificate expires in 40 days (and an hour).
    assert!(dom.contains(">40 days</td>"), "{dom}");
    assert!(dom.contains("CN=shop.test"), "{dom}");
    // The problem and the object that caused it.
    assert!(dom.contains("Ingress shop/broken"), "{dom}");
    assert!(dom.contains("ServiceNotFound"), "{dom}");
    assert!(dom.contains("<dd id=\"generation\">1</dd>"), "{dom}");
    assert!(dom.contains("Last publish"), "{dom}");

    let png = shots.path().join("status.png");
    let arg = format!("--screenshot={}", png.display());
    run_chromium(
        &chromium,
        shots.path(),
        &[&arg, "--window-size=1280,900", "--hide-scrollbars", &url],
    )
    .unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 10_000,
        "a blank screenshot? {} bytes",
        bytes.len()
    );
    if std::env::var_os("PORTICO_UPDATE_DOCS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/status-page.png");
        std::fs::copy(&png, docs).unwrap();
    }
}

fn find_chromium() -> Option<String> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_string)
}

/// Runs headless Chromium (as root it needs `--no-sandbox`); its stdout, or `None` (the test
/// skips) when it cannot run here at all.
fn run_chromium(chromium: &str, profile: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("timeout")
        .arg("120")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=2000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("sandbox") {
            eprintln!("SKIPPED: chromium cannot run here even with --no-sandbox:\n{stderr}");
            return None;
        }
        panic!("chromium failed ({}):\n{stderr}", out.status);
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn readyz_names_the_watches_that_have_not_synced() {
    let api = portico_e2e::apiserver::ApiServer::shared();
    let client = api.client().await;
    let ns = "ops-readyz";
    portico_e2e::apiserver::namespace(&client, ns).await;
    // Without etcd the API server answers no list: no watch can sync.
    api.stop_etcd().await;
    let p = Portico::spawn_cluster(
        &api.kubeconfig,
        &[
            "--watch-namespace",
            ns,
            "--pod-namespace",
            ns,
            "--election-id",
            "ops-readyz",
        ],
    );
    let url = format!("http://{}/readyz", p.admin);
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Ok(r) = reqwest::get(&url).await {
            let status = r.status();
            let body = r.text().await.unwrap();
            if body.contains("waiting for the first list of:") {
                assert_eq!(status, 503);
                break body;
            }
        }
        assert!(Instant::now() < deadline, "{}", p.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.contains("Ingress"), "{body}");
    assert!(body.contains("EndpointSlice"), "{body}");
    api.start_etcd().await;
    p.wait_ready(Duration::from_secs(60)).await;
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert_eq!(body, "ready\n");
    // The only replica leads.
    wait_value(
        &p,
        "portico_leader_election_status{name=\"ops-readyz\"}",
        1.0,
    )
    .await;
}

fn helm_template(extra: &[&str]) -> Result<String, String> {
    let bin = std::env::var("PORTICO_HELM").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap();
        format!("{home}/.cache/portico/helm-v3.22.0/helm")
    });
    let out = Command::new(bin)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args([
            "template",
            "portico",
            "charts/portico",
            "-n",
            "portico-system",
        ])
        .args(extra)
        .output()
        .expect("helm (scripts/test installs it)");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The metric families a running Portico exposes (`# TYPE` lines).
async fn families(p: &Portico) -> BTreeSet<String> {
    p.metrics()
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn chart_ships_a_grafana_dashboard_of_real_metrics_and_access_log_settings() {
    let default = helm_template(&[]).unwrap();
    assert!(
        default.contains("- --access-log-format=json"),
        "json is the chart's default"
    );
    assert!(!default.contains("grafana_dashboard"));
    assert!(!default.contains("--admin-token-file"));
    assert!(!default.contains("--otlp-endpoint"));

    let rendered = helm_template(&[
        "--set",
        "controller.metrics.grafanaDashboard.enabled=true",
        "--set",
        "controller.adminToken.secretName=portico-admin",
        "--set",
        "controller.accessLogFormat=text",
        "--set",
        "controller.accessLogExcludePaths={/healthz}",
        "--set",
        "controller.accessLogSample=0.25",
        "--set",
        "controller.tracing.otlpEndpoint=http://otel.observability:4318/v1/traces",
    ])
    .unwrap();
    for arg in [
        "- --otlp-endpoint=http://otel.observability:4318/v1/traces",
        "- --otlp-sample-ratio=0.01",
        "- --access-log-format=text",
        "- --access-log-exclude-path=/healthz",
        "- --access-log-sample=0.25",
        "- --admin-token-file=/etc/portico/admin/token",
        "secretName: portico-admin",
    ] {
        assert!(rendered.contains(arg), "{arg} missing");
    }
    let dashboard = rendered
        .split("\n---\n")
        .filter_map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).ok())
        .find(|d| {
            d["kind"] == "ConfigMap" && d["metadata"]["name"] == "portico-controller-dashboard"
        })
        .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value =
        serde_json::from_str(dashboard["data"]["portico.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "portico-overview");

    // Every metric the dashboard queries is one Portico exposes.
    let (_dir, p) = seeded(&[]).await;
    let exposed = families(&p).await;
    let mut queried = BTreeSet::new();
    for panel in json["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("portico_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                queried.insert(name.trim_end_matches("_bucket").to_string());
            }
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");
    let missing: Vec<_> = queried.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "{missing:?} not exposed; exposed: {exposed:?}"
    );

    for bad in [
        "controller.accessLogFormat=xml",
        "controller.accessLogSample=2",
        "controller.accessLogExcludePaths={healthz}",
        "controller.adminToken.secretName=Not_A_Name",
        "controller.metrics.grafanaDashboard.enabled=yes",
        "controller.tracing.otlpEndpoint=https://otel:4318",
    ] {
        let err = helm_template(&["--set", bad]).unwrap_err();
        assert!(err.contains("schema"), "{bad}: {err}");
    }
}

/// A minimal OTLP/HTTP collector: keeps every request body, answers 200.
async fn collector() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some((_, body)) = portico_e2e::raw::read_request(&mut s, &mut buf).await
                    else {
                        return;
                    };
                    let body = String::from_utf8_lossy(&body).into_owned();
                    kept.lock().unwrap().push(body);
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, bodies)
}

#[tokio::test]
async fn sampled_requests_are_exported_as_otlp_spans() {
    let (addr, bodies) = collector().await;
    let endpoint = format!("http://{addr}/v1/traces");
    let (_dir, p) = seeded(&["--otlp-endpoint", &endpoint, "--otlp-sample-ratio", "0"]).await;
    let c = p.client(&["api.test"]);
    let send = |path: &'static str, traceparent: Option<String>| {
        let c = c.clone();
        let url = p.http_url("api.test", path);
        async move {
            let mut r = c.get(url);
            if let Some(tp) = traceparent {
                r = r.header("traceparent", tp);
            }
            echo_json(r.send().await.unwrap()).await
        }
    };
    let sampled = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let seen = send("/v1/sampled", Some(sampled.clone())).await;
    let portico_span = seen["headers"]["traceparent"].as_str().unwrap()[36..52].to_string();
    // Not sampled: an unsampled parent, and a new trace at ratio 0.
    send(
        "/v1/unsampled",
        Some(format!("00-{TRACE_ID}-00f067aa0ba902b7-00")),
    )
    .await;
    let fresh = send("/v1/fresh", None).await;
    assert!(fresh["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .ends_with("-00"));
    send("/v1/marker", Some(sampled)).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let spans: Vec<serde_json::Value> = loop {
        let spans: Vec<serde_json::Value> = bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                v["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .collect();
        let path = |s: &serde_json::Value| {
            s["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "url.path")
                .map(|a| a["value"]["stringValue"].as_str().unwrap().to_string())
        };
        if spans
            .iter()
            .any(|s| path(s).as_deref() == Some("/v1/marker"))
        {
            let paths: Vec<String> = spans.iter().filter_map(path).collect();
            assert_eq!(paths, vec!["/v1/sampled", "/v1/marker"], "{spans:?}");
            break spans;
        }
        assert!(Instant::now() < deadline, "no spans arrived:\n{}", p.logs());
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let s = &spans[0];
    assert_eq!(s["traceId"], TRACE_ID);
    assert_eq!(s["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(
        s["spanId"],
        portico_span.as_str(),
        "the span the backend saw as parent"
    );
    assert_eq!(s["kind"], 2);
    let m = wait_value(&p, "portico_otlp_spans_total{result=\"exported\"}", 2.0).await;
    assert_eq!(
        value(&m, "portico_otlp_spans_total{result=\"dropped\"}"),
        Some(0.0)
    );

    // An endpoint Portico cannot send to is refused at start.
    let out = Command::new(portico_bin())
        .args([
            "--manifests",
            "/nonexistent",
            "--otlp-endpoint",
            "https://c:4318/v1/traces",
        ])
        .args(["--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"])
        .args(["--admin-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http"));
}
