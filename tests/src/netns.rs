//! Backends on the test host of the `portico-test` network namespace (10.213.0.2), made by
//! `scripts/test-netns`: cluster-mode tests need endpoint addresses the Kubernetes API accepts.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The test host's address.
pub const HOST: &str = "10.213.0.2";

/// Makes sure the namespace exists.
pub fn ensure() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-netns");
    let status = Command::new(script).status().expect("scripts/test-netns");
    assert!(
        status.success(),
        "scripts/test-netns failed (it needs root and iproute2)"
    );
}

/// An echo backend on the test host, killed when dropped.
pub struct NetnsEcho {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for NetnsEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn next_port() -> u16 {
    // Ports differ between test processes (pid) and within one (counter).
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20000 + (std::process::id() % 400) as u16 * 100;
    base + NEXT.fetch_add(1, Ordering::Relaxed) % 100
}

/// Starts `portico echo` for `service` on the test host; waits until it answers.
pub async fn echo(service: &str) -> NetnsEcho {
    ensure();
    let port = next_port();
    let addr: SocketAddr = format!("{HOST}:{port}").parse().unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", "portico-test"])
        .arg(crate::portico_bin())
        .args(["echo", "--listen", &format!("{addr}={service}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting an echo backend in the test namespace");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "echo backend on {addr} did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    NetnsEcho { child, addr }
}
