//! The README's quickstart, run as written: `portico quickstart` and every curl line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portico_e2e::{free_port, portico_bin};

/// The curl lines of the README's quickstart section.
fn readme_curl_lines() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("## Quickstart")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("curl "))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_quickstart_works_as_written() {
    let lines = readme_curl_lines();
    assert!(lines.len() >= 5, "{lines:?}");
    let (http, https, admin) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    // The example manifests, as `--dir` serves them in place (the certificate is generated).
    for (name, text) in portico_controller::quickstart::FILES {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let child = Command::new(portico_bin())
        .args(["quickstart", "--dir"])
        .arg(dir.path())
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .args(["--https-addr", &format!("127.0.0.1:{https}")])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // Stopped even when an assertion fails, so no quickstart outlives the test.
    let child = KillOnDrop(child);
    let logs = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{admin}/readyz")])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        if ready.success() {
            // Ready means a configuration is live; wait for the one with both files.
            let m = Command::new("curl")
                .args(["-s", &format!("http://127.0.0.1:{admin}/metrics")])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&m.stdout).contains("portico_routes 3") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "quickstart not ready:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut outputs = Vec::new();
    for line in &lines {
        let cmd = line
            .replace(":8080", &format!(":{http}"))
            .replace(":8443", &format!(":{https}"))
            .replace(":10254", &format!(":{admin}"));
        let out = Command::new("bash")
            .args(["-c", &format!("set -o pipefail; {cmd}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{cmd}\n{text}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            logs()
        );
        outputs.push(text);
    }
    let all = outputs.join("\n");
    assert!(outputs[0].contains("\"service\": \"web\""), "{all}");
    assert!(
        outputs[1].contains("308")
            && outputs[1].contains(&format!("location: https://demo.portico.test:{https}/")),
        "{all}"
    );
    assert!(
        outputs[2].contains("\"service\": \"api\"") && outputs[2].contains("/api/hello"),
        "{all}"
    );
    assert!(outputs[3].contains("\"service\": \"web\""), "{all}");
    assert!(outputs[4].contains("\"service\": \"web\""), "{all}");
    assert!(
        outputs
            .iter()
            .any(|o| o.contains("portico_requests_total{")),
        "{all}"
    );
    drop(child);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
