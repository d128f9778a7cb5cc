//! `portico migrate-check` on a hand-written corpus of ingress-nginx Ingresses (every
//! annotation ingress-nginx documents) and its controller ConfigMap, against golden output;
//! and in cluster mode against the real API server.
//!
//! After an intended change of the output: `PORTICO_UPDATE_GOLDEN=1 cargo test -p portico-e2e
//! --test migrate_check` rewrites the golden files; review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use portico_e2e::apiserver::{apply, namespace, ApiServer};
use portico_e2e::portico_bin;

/// Every annotation ingress-nginx documents (docs/user-guide/nginx-configuration/annotations.md),
/// plus the keys it reads without a table row.
const NGINX_ANNOTATIONS: &[&str] = &[
    "affinity",
    "affinity-canary-behavior",
    "affinity-mode",
    "allowlist-source-range",
    "app-root",
    "auth-always-set-cookie",
    "auth-cache-duration",
    "auth-cache-key",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-share-vars",
    "auth-keepalive-timeout",
    "auth-method",
    "auth-proxy-set-headers",
    "auth-realm",
    "auth-request-redirect",
    "auth-response-headers",
    "auth-secret",
    "auth-secret-type",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-snippet",
    "auth-tls-error-page",
    "auth-tls-match-cn",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-type",
    "auth-url",
    "backend-protocol",
    "canary",
    "canary-by-cookie",
    "canary-by-header",
    "canary-by-header-pattern",
    "canary-by-header-value",
    "canary-weight",
    "canary-weight-total",
    "client-body-buffer-size",
    "configuration-snippet",
    "connection-proxy-header",
    "cors-allow-credentials",
    "cors-allow-headers",
    "cors-allow-methods",
    "cors-allow-origin",
    "cors-expose-headers",
    "cors-max-age",
    "custom-headers",
    "custom-http-errors",
    "default-backend",
    "denylist-source-range",
    "enable-access-log",
    "enable-cors",
    "enable-global-auth",
    "enable-modsecurity",
    "enable-opentelemetry",
    "enable-owasp-core-rules",
    "enable-rewrite-log",
    "force-ssl-redirect",
    "from-to-www-redirect",
    "http2-push-preload",
    "limit-burst-multiplier",
    "limit-connections",
    "limit-rate",
    "limit-rate-after",
    "limit-rpm",
    "limit-rps",
    "limit-whitelist",
    "load-balance",
    "mirror-host",
    "mirror-request-body",
    "mirror-target",
    "modsecurity-snippet",
    "modsecurity-transaction-id",
    "opentelemetry-trust-incoming-span",
    "permanent-redirect",
    "permanent-redirect-code",
    "preserve-trailing-slash",
    "proxy-body-size",
    "proxy-buffer-size",
    "proxy-buffering",
    "proxy-buffers-number",
    "proxy-busy-buffers-size",
    "proxy-connect-timeout",
    "proxy-cookie-domain",
    "proxy-cookie-path",
    "proxy-http-version",
    "proxy-max-temp-file-size",
    "proxy-next-upstream",
    "proxy-next-upstream-timeout",
    "proxy-next-upstream-tries",
    "proxy-read-timeout",
    "proxy-redirect-from",
    "proxy-redirect-to",
    "proxy-request-buffering",
    "proxy-send-timeout",
    "proxy-ssl-ciphers",
    "proxy-ssl-name",
    "proxy-ssl-protocols",
    "proxy-ssl-secret",
    "proxy-ssl-server-name",
    "proxy-ssl-verify",
    "proxy-ssl-verify-depth",
    "rewrite-target",
    "satisfy",
    "server-alias",
    "server-snippet",
    "service-upstream",
    "session-cookie-change-on-failure",
    "session-cookie-conditional-samesite-none",
    "session-cookie-domain",
    "session-cookie-expires",
    "session-cookie-max-age",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-samesite",
    "session-cookie-secure",
    "ssl-ciphers",
    "ssl-passthrough",
    "ssl-prefer-server-ciphers",
    "ssl-redirect",
    "stream-snippet",
    "temporal-redirect",
    "temporal-redirect-code",
    "upstream-hash-by",
    "upstream-hash-by-subset",
    "upstream-hash-by-subset-size",
    "upstream-vhost",
    "use-regex",
    "whitelist-source-range",
    "x-forwarded-prefix",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/migrate")
}

fn migrate_check(args: &[&str]) -> Output {
    std::process::Command::new(portico_bin())
        .arg("migrate-check")
        .args(args)
        .env("PORTICO_LOG", "warn")
        .output()
        .expect("run portico migrate-check")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

/// Compares `actual` with the golden file, or rewrites it under PORTICO_UPDATE_GOLDEN=1.
fn golden(name: &str, actual: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("PORTICO_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (PORTICO_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(10)
            .map(|(i, (e, a))| format!("line {}:\n  golden: {e}\n  actual: {a}", i + 1))
            .collect();
        panic!(
            "{} differs from the output ({} vs {} lines):\n{}\n(PORTICO_UPDATE_GOLDEN=1 rewrites it after an intended change)",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn the_corpus_covers_every_ingress_nginx_annotation() {
    let dir = fixtures().join("corpus");
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    let missing: Vec<&str> = NGINX_ANNOTATIONS
        .iter()
        .copied()
        .filter(|k| !text.contains(&format!("nginx.ingress.kubernetes.io/{k}:")))
        .collect();
    assert!(missing.is_empty(), "not in the corpus: {missing:?}");
}

#[test]
fn corpus_table_matches_golden_and_exits_1() {
    let corpus = fixtures().join("corpus");
    let out = migrate_check(&["--manifests", corpus.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "behaviour changes must exit 1; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = stdout(&out);
    golden("expected.txt", &table);
    // Every annotation of the corpus has a row with a verdict.
    for key in NGINX_ANNOTATIONS {
        assert!(
            table.contains(&format!("nginx.ingress.kubernetes.io/{key} ")),
            "{key} has no row"
        );
    }
}

#[test]
fn corpus_json_matches_golden_and_is_consistent() {
    let corpus = fixtures().join("corpus");
    let out = migrate_check(&["--manifests", corpus.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    golden("expected.json", &text);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["changesBehaviour"], true);
    let rows: usize = v["ingresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["annotations"].as_array().unwrap().len())
        .sum::<usize>()
        + v["configMap"]["keys"].as_array().unwrap().len();
    let counted: u64 = v["summary"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(rows as u64, counted);
    // The suggested parameters are a typed object the CRD accepts.
    let spec = &v["configMap"]["classParameters"];
    assert_eq!(spec["tls"]["hsts"]["maxAge"], 63072000);
    assert_eq!(spec["defaults"]["maxBodySize"], "50m");
}

#[test]
fn class_filter_and_a_clean_directory_exit_0() {
    let corpus = fixtures().join("corpus");
    let out = migrate_check(&[
        "--manifests",
        corpus.to_str().unwrap(),
        "--class",
        "traefik",
    ]);
    let table = stdout(&out);
    assert!(table.contains("Ingress web/other-controller"), "{table}");
    assert!(!table.contains("Ingress shop/storefront"), "{table}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ok.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: plain\n  annotations:\n    nginx.ingress.kubernetes.io/rewrite-target: /\n    nginx.ingress.kubernetes.io/proxy-buffering: \"off\"\nspec:\n  rules: []\n",
    )
    .unwrap();
    let out = migrate_check(&[
        "--manifests",
        dir.path().to_str().unwrap(),
        "--configmap",
        "none/none",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("keeps behaviour"));
}

#[test]
fn unreadable_manifest_is_an_error_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "kind: [unclosed\n").unwrap();
    let out = migrate_check(&["--manifests", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert_ne!(out.status.code(), Some(1), "a read error is not a verdict");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml"));
}

#[tokio::test]
async fn cluster_mode_reads_ingresses_and_the_configmap() {
    let api = ApiServer::shared();
    let client = api.client().await;
    namespace(&client, "migrate").await;
    namespace(&client, "ingress-nginx").await;
    apply(
        &client,
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: legacy
  namespace: migrate
  annotations:
    nginx.ingress.kubernetes.io/server-snippet: "return 200;"
    nginx.ingress.kubernetes.io/use-regex: "true"
spec:
  ingressClassName: nginx
  rules:
    - host: migrate.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service: {name: web, port: {number: 80}}
"#,
    )
    .await;
    apply(
        &client,
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: ingress-nginx-controller
  namespace: ingress-nginx
data:
  use-gzip: "true"
"#,
    )
    .await;
    let out = migrate_check(&[
        "--kubeconfig",
        api.kubeconfig.to_str().unwrap(),
        "--class",
        "nginx",
        "--output",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ingress = v["ingresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["namespace"] == "migrate" && i["name"] == "legacy")
        .expect("the Ingress is read from the cluster");
    let verdict = |key: &str| {
        ingress["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == format!("nginx.ingress.kubernetes.io/{key}"))
            .map(|a| a["verdict"].as_str().unwrap().to_string())
    };
    assert_eq!(verdict("server-snippet").as_deref(), Some("refused"));
    assert_eq!(verdict("use-regex").as_deref(), Some("supported"));
    assert_eq!(
        v["configMap"]["classParameters"]["defaults"]["compression"]["gzip"],
        true
    );
}
