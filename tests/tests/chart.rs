//! The Helm chart: lint, render with several values files, reject wrong values, apply to the
//! real API server, and run Portico as the ServiceAccount the chart creates (RBAC on).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use portico_e2e::apiserver::{apply, namespace, wait_status_ip, ApiServer};
use portico_e2e::manifests::ingress;
use portico_e2e::{netns, Portico};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm() -> Command {
    let bin = std::env::var("PORTICO_HELM").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap();
        format!("{home}/.cache/portico/helm-v3.22.0/helm")
    });
    let mut c = Command::new(bin);
    c.current_dir(repo());
    c
}

fn template(extra: &[&str]) -> Result<String, String> {
    let out = helm()
        .args([
            "template",
            "portico",
            "charts/portico",
            "--namespace",
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

fn kinds(rendered: &str) -> Vec<String> {
    rendered
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_chart_lints_and_renders_with_every_values_file() {
    let out = helm()
        .args(["lint", "charts/portico", "--strict"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let default = template(&[]).unwrap();
    let k = kinds(&default);
    for want in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "IngressClass",
        "PodDisruptionBudget",
    ] {
        assert!(k.iter().any(|x| x == want), "{want} missing from {k:?}");
    }
    assert!(
        default.contains("runAsNonRoot: true") && default.contains("readOnlyRootFilesystem: true")
    );
    assert!(default.contains("maxUnavailable: 0"));
    assert!(!default.contains("kind: ServiceMonitor"));

    let ds = template(&["-f", "tests/values/daemonset.yaml"]).unwrap();
    assert!(kinds(&ds).contains(&"DaemonSet".to_string()));
    assert!(ds.contains("nodePort: 30080") && ds.contains("externalTrafficPolicy: Local"));

    // The ServiceMonitor only renders where its CRD exists.
    let all = template(&[
        "-f",
        "tests/values/everything.yaml",
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
    ])
    .unwrap();
    let k = kinds(&all);
    for want in ["HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy"] {
        assert!(k.iter().any(|x| x == want), "{want} missing from {k:?}");
    }
    for arg in [
        "--trusted-proxies=10.0.0.0/8",
        "--proxy-protocol",
        "--watch-namespace=team-a",
        "--upstream-response-timeout=30s",
        "@sha256:",
    ] {
        assert!(all.contains(arg), "{arg} missing");
    }
    assert!(all.contains("is-default-class: \"true\""));
    let without_crd = template(&["-f", "tests/values/everything.yaml"]).unwrap();
    assert!(!without_crd.contains("kind: ServiceMonitor"));
}

#[test]
fn the_values_schema_rejects_wrong_values() {
    for bad in [
        "controller.kind=Pod",
        "controller.replicaCount=0",
        "controller.service.type=Balanced",
        "controller.logFormat=xml",
        "controller.shutdownDelay=soon",
    ] {
        let err = template(&["--set", bad]).unwrap_err();
        assert!(
            err.contains("values don't meet the specifications") || err.contains("schema"),
            "{bad}: {err}"
        );
    }
}

#[tokio::test]
async fn portico_runs_with_exactly_the_charts_permissions() {
    let api = ApiServer::shared();
    let admin = api.client().await;
    let ns = "portico-system";
    namespace(&admin, ns).await;
    let rendered = template(&["--set", "controller.publishService.enabled=false"]).unwrap();
    // Apply everything the chart renders (nothing schedules Pods here; the RBAC objects,
    // ServiceAccount and IngressClass are what this test uses).
    let docs: Vec<&str> = rendered
        .split("\n---")
        .map(|d| d.trim())
        .filter(|d| d.contains("kind:"))
        .collect();
    for doc in &docs {
        let with_ns = if doc.contains("namespace:")
            || doc.contains("kind: ClusterRole")
            || doc.contains("kind: IngressClass")
        {
            doc.to_string()
        } else {
            doc.replacen("metadata:\n", &format!("metadata:\n  namespace: {ns}\n"), 1)
        };
        apply(&admin, &with_ns).await;
    }

    // A token for the chart's ServiceAccount, from the TokenRequest API.
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let token = sas
        .create_token_request("portico", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let admin_config = std::fs::read_to_string(&api.kubeconfig).unwrap();
    let ca = admin_config
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: sa\ncurrent-context: c\n",
            api.server
        ),
    )
    .unwrap();

    let app_ns = "chart-app";
    namespace(&admin, app_ns).await;
    let web = netns::echo("web").await;
    apply(
        &admin,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: {app_ns}\nspec:\n  ports:\n    - name: http\n      port: 80\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: {app_ns}\n  labels:\n    kubernetes.io/service-name: web\n\
             addressType: IPv4\nports:\n  - name: http\n    port: {}\nendpoints:\n  - addresses: [\"{}\"]\n",
            web.addr.port(),
            web.addr.ip()
        ),
    )
    .await;
    apply(
        &admin,
        &ingress(app_ns, "site")
            .class("portico")
            .rule("chart.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;

    // Cluster-wide, as the chart runs it (no --watch-namespace), as the ServiceAccount.
    let p = Portico::cluster(
        &kubeconfig,
        &[
            "--pod-namespace",
            ns,
            "--election-id",
            "portico-leader",
            "--publish-status-address",
            "192.0.2.20",
        ],
    )
    .await;
    let c = p.client(&["chart.test"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = c.get(p.http_url("chart.test", "/")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "not served\n{}", p.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Status and leadership need the chart's write permissions.
    wait_status_ip(
        &admin,
        app_ns,
        "site",
        "192.0.2.20",
        Duration::from_secs(10),
        || p.logs(),
    )
    .await;
    let logs = p.logs();
    assert!(
        !logs.contains("forbidden") && !logs.contains("Forbidden"),
        "a permission is missing:\n{logs}"
    );
}
