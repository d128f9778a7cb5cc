//! Harnesses for Portico's end-to-end tests: run the real `portico` binary on a manifest
//! directory, run echo backends in-process, write manifests, and talk TLS with real clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod apiserver;
pub mod manifests;
pub mod netns;
pub mod raw;
pub mod tls;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `portico` binary under test: `$PORTICO_BIN`, else `target/debug/portico`.
pub fn portico_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PORTICO_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/portico");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p portico` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `portico --manifests DIR`, killed when dropped.
pub struct Portico {
    child: Option<Child>,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Portico {
    /// Starts Portico on `dir` with extra flags, and waits until `/readyz` answers 200.
    pub async fn start(dir: &Path, extra: &[&str]) -> Portico {
        let source = vec!["--manifests".into(), dir.as_os_str().to_owned()];
        Self::start_with(&source, extra, Duration::from_secs(15)).await
    }

    /// Spawns and waits for readiness; picks new ports when one was taken meanwhile (ports
    /// are chosen free, then bound by the child, so another test can win the race).
    async fn start_with(source: &[std::ffi::OsString], extra: &[&str], limit: Duration) -> Portico {
        for _ in 0..5 {
            let mut p = Self::spawn_with(source, "127.0.0.1", extra);
            let deadline = Instant::now() + limit;
            loop {
                if p.is_ready().await {
                    return p;
                }
                let exited = p
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                    .is_some();
                if exited && p.logs().contains("Address already in use") {
                    break;
                }
                assert!(
                    !exited && Instant::now() < deadline,
                    "portico did not become ready; log:\n{}",
                    p.logs()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("no free ports after five tries");
    }

    async fn is_ready(&self) -> bool {
        let url = format!("http://{}/readyz", self.admin);
        matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200)
    }

    /// Starts Portico on `dir` listening on `ip` (e.g. `::1`) without waiting.
    pub fn spawn(dir: &Path, ip: &str, extra: &[&str]) -> Portico {
        let source = vec!["--manifests".into(), dir.as_os_str().to_owned()];
        Self::spawn_with(&source, ip, extra)
    }

    /// Starts Portico in cluster mode against `kubeconfig`, and waits until it is ready.
    pub async fn cluster(kubeconfig: &Path, extra: &[&str]) -> Portico {
        let source = vec!["--kubeconfig".into(), kubeconfig.as_os_str().to_owned()];
        Self::start_with(&source, extra, Duration::from_secs(30)).await
    }

    /// Starts Portico in cluster mode against `kubeconfig` without waiting.
    pub fn spawn_cluster(kubeconfig: &Path, extra: &[&str]) -> Portico {
        let source = vec!["--kubeconfig".into(), kubeconfig.as_os_str().to_owned()];
        Self::spawn_with(&source, "127.0.0.1", extra)
    }

    fn spawn_with(source: &[std::ffi::OsString], ip: &str, extra: &[&str]) -> Portico {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let http = SocketAddr::new(ip, free_port());
        let https = SocketAddr::new(ip, free_port());
        let admin = SocketAddr::new("127.0.0.1".parse().unwrap(), free_port());
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("portico.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut defaults: Vec<&str> = Vec::new();
        if !extra.contains(&"--shutdown-delay") {
            defaults.extend(["--shutdown-delay", "0s"]);
        }
        let child = Command::new(portico_bin())
            .args(source)
            .args(["--http-addr", &http.to_string()])
            .args(["--https-addr", &https.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(defaults)
            .args(extra)
            .env("PORTICO_LOG", "info,portico::access=info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("starting portico");
        Portico {
            child: Some(child),
            http,
            https,
            admin,
            log,
            _log_dir: log_dir,
        }
    }

    /// Waits until `/readyz` is 200.
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let client = reqwest::Client::new();
        loop {
            let url = format!("http://{}/readyz", self.admin);
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "portico did not become ready; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Everything Portico logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never contained {needle:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The live configuration generation, from /metrics.
    pub async fn generation(&self) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix("portico_config_generation "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits for a generation newer than `after` (a published change).
    pub async fn wait_generation(&self, after: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let g = self.generation().await;
            if g > after {
                return g;
            }
            assert!(
                Instant::now() < deadline,
                "no new configuration; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client that sends every listed host to this Portico (HTTP and HTTPS ports), accepts
    /// any certificate, and does not follow redirects.
    pub fn client(&self, hosts: &[&str]) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20));
        for h in hosts {
            b = b.resolve(h, self.http);
        }
        b.build().unwrap()
    }

    pub fn http_url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.http.port())
    }

    pub fn https_url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https.port())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// Sends SIGKILL (a crash: nothing is handed over or cleaned up) and reaps the process.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "portico did not exit; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Portico {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- portico log ----\n{}", self.logs());
        }
    }
}

/// Starts an in-process echo backend on 127.0.0.1 reporting `service`; returns its address.
pub async fn echo(service: &str) -> SocketAddr {
    echo_on("127.0.0.1:0", service).await
}

/// Starts an in-process echo backend on `addr`.
pub async fn echo_on(addr: &str, service: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(portico_controller::echo::serve_listener(
        listener,
        service.to_string(),
    ));
    local
}

/// Writes a file atomically (write + rename), as tools and Kubernetes volume updates do.
pub fn write(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// The JSON an echo backend answered with.
pub async fn echo_json(resp: reqwest::Response) -> serde_json::Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not echo JSON ({e}): {text}"))
}

/// A directory serving `host` (Ingress `default/{ingress}`, path `/`) from one in-process echo
/// backend `web`, and Portico started on it with `extra` flags.
pub async fn site(ingress: &str, host: &str, extra: &[&str]) -> (tempfile::TempDir, Portico) {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    write(
        dir.path(),
        "b.yaml",
        &manifests::backend("default", "web", &[web]),
    );
    write(
        dir.path(),
        "i.yaml",
        &manifests::ingress("default", ingress)
            .rule(host, "/", "Prefix", "web")
            .yaml(),
    );
    let p = Portico::start(dir.path(), extra).await;
    (dir, p)
}

impl Portico {
    /// The status of `GET http://host/path` through this Portico.
    pub async fn status_of(&self, client: &reqwest::Client, host: &str, path: &str) -> u16 {
        client
            .get(self.http_url(host, path))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}
