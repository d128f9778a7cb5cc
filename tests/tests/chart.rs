//! The Helm chart: lint, render with several values files, reject wrong values, apply to the
//! real API server, run Portico as the ServiceAccount the chart creates (RBAC on), validate
//! Portico's CRDs in the API server, and `helm upgrade` from the previous chart.
//!
//! Helm owns the CRDs of the release it installs (cluster-scoped, one name each), so every test
//! that touches them first waits for that release ([`upgraded_release`]) and then applies on
//! top of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use portico_e2e::apiserver::{apply, namespace, wait_status_ip, ApiServer};
use portico_e2e::manifests::ingress;
use portico_e2e::{netns, Portico};
use serde_json::{json, Value};

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
    template_release("portico", "portico-system", extra)
}

fn template_release(release: &str, ns: &str, extra: &[&str]) -> Result<String, String> {
    let out = helm()
        .args(["template", release, "charts/portico", "--namespace", ns])
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
        "CustomResourceDefinition",
    ] {
        assert!(k.iter().any(|x| x == want), "{want} missing from {k:?}");
    }
    for crd in [
        "routepolicies.portico.dev",
        "ingressclassparameters.portico.dev",
    ] {
        assert!(default.contains(&format!("name: {crd}")), "{crd} missing");
    }
    assert_eq!(default.matches("helm.sh/resource-policy: keep").count(), 2);
    let without_crds = template(&["--set", "crds.enabled=false"]).unwrap();
    assert!(!kinds(&without_crds).contains(&"CustomResourceDefinition".to_string()));
    let not_kept = template(&["--set", "crds.keep=false"]).unwrap();
    assert!(kinds(&not_kept).contains(&"CustomResourceDefinition".to_string()));
    assert!(!not_kept.contains("helm.sh/resource-policy"));
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
    assert!(all.contains("  parameters:\n    apiGroup: portico.dev\n    kind: IngressClassParameters\n    name: everything-params\n"));
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
        "crds.enabled=maybe",
        "crds.keep=1",
        "crds.install=true",
        // Typos: unknown keys are refused, at the root and in nested objects.
        "controler.replicaCount=3",
        "controller.replicaCont=3",
        "controller.service.tpye=NodePort",
        "controller.ingressClassResource.parameters.nmae=x",
    ] {
        let err = template(&["--set", bad]).unwrap_err();
        assert!(
            err.contains("values don't meet the specifications") || err.contains("schema"),
            "{bad}: {err}"
        );
    }
    // A typo's message names the unknown key and where it is.
    let err = template(&["--set", "controller.replicaCont=3"]).unwrap_err();
    assert!(
        err.contains("at '/controller'") && err.contains("'replicaCont' not allowed"),
        "{err}"
    );
}

#[tokio::test]
async fn portico_runs_with_exactly_the_charts_permissions() {
    let api = ApiServer::shared();
    let admin = api.client().await;
    upgraded_release().await;
    let ns = "portico-system";
    namespace(&admin, ns).await;
    let rendered = template(&[
        "--set",
        "controller.publishService.enabled=false",
        "--set",
        "controller.ingressClassResource.parameters.name=chart-params",
    ])
    .unwrap();
    assert!(rendered.contains(
        "  parameters:\n    apiGroup: portico.dev\n    kind: IngressClassParameters\n    name: chart-params\n    scope: Cluster\n"
    ));
    // Apply everything the chart renders (nothing schedules Pods here; the RBAC objects,
    // ServiceAccount and IngressClass are what this test uses).
    apply_rendered(&admin, &rendered, ns).await;

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
            // Reported and ignored: a Warning Event, written with the chart's permissions.
            .annotation(
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "return 200;",
            )
            .rule("chart.test", "/", "Prefix", "web")
            .yaml(),
    )
    .await;
    // The IngressClassParameters the chart's IngressClass names, and a RoutePolicy: their
    // status is written with the chart's permissions.
    apply(
        &admin,
        "apiVersion: portico.dev/v1alpha1\nkind: IngressClassParameters\nmetadata:\n  name: chart-params\n\
         spec:\n  defaults:\n    headers:\n      response:\n        add:\n          X-Class: chart-params\n",
    )
    .await;
    apply(
        &admin,
        &format!(
            "apiVersion: portico.dev/v1alpha1\nkind: RoutePolicy\nmetadata:\n  name: chart-policy\n  namespace: {app_ns}\n\
             spec:\n  targetRefs:\n    - kind: Ingress\n      name: site\n  \
             headers:\n    response:\n      set:\n        X-Policy: chart\n"
        ),
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
            let header = |n: &str| {
                r.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            if r.status() == 200
                && header("x-class").as_deref() == Some("chart-params")
                && header("x-policy").as_deref() == Some("chart")
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not served with the class's and the RoutePolicy's headers ({:?})\n{}",
            c.get(p.http_url("chart.test", "/"))
                .send()
                .await
                .map(|r| r.headers().clone()),
            p.logs()
        );
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
    // RoutePolicy and IngressClassParameters status, and Events, as the ServiceAccount.
    let accepted = |o: &DynamicObject| {
        o.data["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Accepted" && c["status"] == "True")
        })
    };
    let policies = portico_api(&admin, "RoutePolicy", "routepolicies", Some(app_ns));
    let params = portico_api(
        &admin,
        "IngressClassParameters",
        "ingressclassparameters",
        None,
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin.clone(), app_ns);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let policy_ok = accepted(&policies.get("chart-policy").await.unwrap());
        let params_ok = accepted(&params.get("chart-params").await.unwrap());
        let list = events.list(&Default::default()).await.unwrap();
        let warned = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("SnippetIgnored")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("site")
        });
        if policy_ok && params_ok && warned {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status or events missing (RoutePolicy {policy_ok}, IngressClassParameters {params_ok}, event {warned})\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = p.logs();
    assert!(
        !logs.contains("forbidden") && !logs.contains("Forbidden"),
        "a permission is missing:\n{logs}"
    );
}

/// Server-side applies every object of a render (namespaced ones without a namespace go to
/// `ns`); returns the kinds applied.
async fn apply_rendered(admin: &kube::Client, rendered: &str, ns: &str) -> Vec<String> {
    let docs: Vec<&str> = rendered
        .split("\n---")
        .map(|d| d.trim())
        .filter(|d| d.contains("kind:"))
        .collect();
    let mut applied = Vec::new();
    for doc in &docs {
        let cluster_scoped = doc.contains("kind: ClusterRole")
            || doc.contains("kind: IngressClass")
            || doc.contains("kind: CustomResourceDefinition")
            || doc.contains("kind: ValidatingWebhookConfiguration");
        let with_ns = if doc.contains("namespace:") || cluster_scoped {
            doc.to_string()
        } else {
            doc.replacen("metadata:\n", &format!("metadata:\n  namespace: {ns}\n"), 1)
        };
        for line in with_ns.lines() {
            if let Some(other) = line.strip_prefix("  namespace: ") {
                namespace(admin, other.trim()).await;
            }
        }
        apply(admin, &with_ns).await;
        applied.extend(kinds(doc));
    }
    applied
}

#[tokio::test]
async fn every_values_file_render_is_accepted_by_the_api_server() {
    let api = ApiServer::shared();
    let admin = api.client().await;
    upgraded_release().await;
    apply(&admin, SERVICE_MONITOR_CRD).await;
    wait_established(&admin, "servicemonitors.monitoring.coreos.com").await;
    // Discovery lists the new group a moment after it is established.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !kube::Discovery::new(admin.clone())
        .run()
        .await
        .is_ok_and(|d| d.has_group("monitoring.coreos.com"))
    {
        assert!(Instant::now() < deadline, "ServiceMonitor never discovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/values"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let mut all_kinds = Vec::new();
    for file in &files {
        let stem = file.file_stem().unwrap().to_str().unwrap();
        let release = format!("values-{stem}");
        namespace(&admin, &release).await;
        // Its own IngressClass and controller value, so the other tests' Portico ignores it;
        // the CRDs are the upgraded release's.
        let rendered = template_release(
            &release,
            &release,
            &[
                "-f",
                file.to_str().unwrap(),
                "--set",
                "crds.enabled=false",
                "--set",
                &format!("controller.ingressClassResource.name={release}"),
                "--set",
                &format!("controller.ingressClassResource.controllerValue=example.com/{release}"),
                "--api-versions",
                "monitoring.coreos.com/v1/ServiceMonitor",
            ],
        )
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        all_kinds.extend(apply_rendered(&admin, &rendered, &release).await);
    }
    for want in [
        "DaemonSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "IngressClass",
    ] {
        assert!(
            all_kinds.iter().any(|k| k == want),
            "{want} never applied: {all_kinds:?}"
        );
    }
    // The NodePort Service kept its ports, and the IngressClass its parameters.
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(admin.clone(), "values-daemonset");
    let svc = services.list(&Default::default()).await.unwrap();
    let node_ports: Vec<i32> = svc
        .items
        .iter()
        .flat_map(|s| s.spec.iter().flat_map(|sp| sp.ports.iter().flatten()))
        .filter_map(|p| p.node_port)
        .collect();
    assert!(node_ports.contains(&30080), "{node_ports:?}");
    let classes: Api<k8s_openapi::api::networking::v1::IngressClass> = Api::all(admin.clone());
    let everything = classes.get("values-everything").await.unwrap();
    let params = everything.spec.unwrap().parameters.unwrap();
    assert_eq!(
        (
            params.api_group.as_deref(),
            params.kind.as_str(),
            params.name.as_str()
        ),
        (
            Some("portico.dev"),
            "IngressClassParameters",
            "everything-params"
        )
    );
}

// ---- Portico's CRDs and `helm upgrade` -------------------------------------------------------

/// The release that `helm upgrade` brings from the previous chart to this one.
const RELEASE: &str = "portico-upgrade";
const RELEASE_NS: &str = "chart-upgrade";
/// Its IngressClass, so that it does not collide with the other tests' `portico`.
const RELEASE_CLASS: &str = "controller.ingressClassResource.name=portico-upgrade";
const PREVIOUS_CHART: &str = "tests/fixtures/charts/portico-0.1.0.tgz";
const CRDS: [&str; 2] = [
    "routepolicies.portico.dev",
    "ingressclassparameters.portico.dev",
];

/// What the release looked like between `helm install` of the previous chart and `helm upgrade`.
struct Release {
    before_chart_label: String,
    before_cluster_role: String,
    before_crds: Vec<bool>,
}

/// Runs helm against the test API server; panics with its output when it fails.
fn helm_ok(args: &[&str]) -> String {
    let api = ApiServer::shared();
    let out = helm()
        .args(args)
        .arg("--kubeconfig")
        .arg(&api.kubeconfig)
        .output()
        .expect("helm (scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helm {args:?}:\n{text}");
    text
}

/// `helm install` of the previous chart, then `helm upgrade` to this one, once per test binary.
async fn upgraded_release() -> &'static Release {
    static RELEASE_DONE: tokio::sync::OnceCell<Release> = tokio::sync::OnceCell::const_new();
    RELEASE_DONE
        .get_or_init(|| async {
            let admin = ApiServer::shared().client().await;
            // Pods never run here (no kubelet), so no --wait.
            helm_ok(&[
                "install",
                RELEASE,
                PREVIOUS_CHART,
                "--namespace",
                RELEASE_NS,
                "--create-namespace",
                "--set",
                RELEASE_CLASS,
            ]);
            let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
            let mut before_crds = Vec::new();
            for crd in CRDS {
                before_crds.push(crds.get_opt(crd).await.unwrap().is_some());
            }
            let before = Release {
                before_chart_label: chart_label(&admin).await,
                before_cluster_role: cluster_role(&admin).await,
                before_crds,
            };
            // The ServiceMonitor is asked for, but its CRD does not exist yet.
            helm_ok(&[
                "upgrade",
                RELEASE,
                "charts/portico",
                "--namespace",
                RELEASE_NS,
                "--set",
                RELEASE_CLASS,
                "--set",
                "controller.metrics.serviceMonitor.enabled=true",
            ]);
            for crd in CRDS {
                wait_established(&admin, crd).await;
            }
            before
        })
        .await
}

async fn chart_label(admin: &kube::Client) -> String {
    let d = Api::<Deployment>::namespaced(admin.clone(), RELEASE_NS)
        .get("portico-upgrade-controller")
        .await
        .unwrap();
    d.metadata.labels.unwrap()["helm.sh/chart"].clone()
}

async fn cluster_role(admin: &kube::Client) -> String {
    let role = Api::<ClusterRole>::all(admin.clone())
        .get(RELEASE)
        .await
        .unwrap();
    serde_json::to_string(&role.rules).unwrap()
}

async fn wait_established(admin: &kube::Client, name: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let established = crds.get_opt(name).await.unwrap().is_some_and(|crd| {
            crd.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never became Established");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn helm_upgrade_from_the_previous_chart_adds_the_crds_and_rbac() {
    let admin = ApiServer::shared().client().await;
    let before = upgraded_release().await;

    assert_eq!(before.before_chart_label, "portico-0.1.0");
    assert_eq!(before.before_crds, vec![false, false]);
    assert!(!before.before_cluster_role.contains("routepolicies"));

    assert_eq!(chart_label(&admin).await, "portico-0.2.0");
    let role = cluster_role(&admin).await;
    for resource in [
        "routepolicies",
        "ingressclassparameters",
        "routepolicies/status",
    ] {
        assert!(role.contains(&format!("\"{resource}\"")), "{role}");
    }
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for name in CRDS {
        let crd = crds.get(name).await.unwrap();
        let annotations = crd.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations["helm.sh/resource-policy"], "keep");
        assert_eq!(annotations["meta.helm.sh/release-name"], RELEASE);
    }
    let manifest = helm_ok(&["get", "manifest", RELEASE, "--namespace", RELEASE_NS]);
    assert!(
        !manifest.contains("kind: ServiceMonitor"),
        "rendered without its CRD"
    );

    // Once the ServiceMonitor CRD exists, the Capabilities gate renders it.
    apply(&admin, SERVICE_MONITOR_CRD).await;
    wait_established(&admin, "servicemonitors.monitoring.coreos.com").await;
    helm_ok(&[
        "upgrade",
        RELEASE,
        "charts/portico",
        "--namespace",
        RELEASE_NS,
        "--set",
        RELEASE_CLASS,
        "--set",
        "controller.metrics.serviceMonitor.enabled=true",
    ]);
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    );
    let monitors: Api<DynamicObject> = Api::namespaced_with(admin.clone(), RELEASE_NS, &ar);
    let sm = monitors.get("portico-upgrade-controller").await.unwrap();
    assert_eq!(sm.data["spec"]["endpoints"][0]["port"], "metrics");
}

/// A stand-in for the prometheus-operator's CRD: any ServiceMonitor is accepted.
const SERVICE_MONITOR_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names:
    kind: ServiceMonitor
    listKind: ServiceMonitorList
    plural: servicemonitors
    singular: servicemonitor
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
";

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/crds").join(name)).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn portico_api(
    client: &kube::Client,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("portico.dev", "v1alpha1", kind),
        plural,
    );
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Merges `patch` into `base` (JSON merge patch: objects merge, anything else replaces).
fn merged(mut base: Value, patch: &Value) -> Value {
    fn merge(a: &mut Value, b: &Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    if v.is_null() {
                        a.remove(k);
                    } else {
                        merge(a.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (a, b) => *a = b.clone(),
        }
    }
    merge(&mut base, patch);
    base
}

/// Creates `obj`; `Err` carries the API server's message.
async fn create(api: &Api<DynamicObject>, obj: &Value) -> Result<DynamicObject, String> {
    let obj: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 422, "{s:?}");
                s.message
            }
            e => panic!("{e}"),
        })
}

#[tokio::test]
async fn the_crds_apply_and_the_api_server_validates_portico_resources() {
    let admin = ApiServer::shared().client().await;
    upgraded_release().await;

    // The CRDs as `helm template` renders them, server-side applied over the release's.
    let rendered = template(&[]).unwrap();
    let crd_docs: Vec<&str> = rendered
        .split("\n---")
        .map(|d| d.trim())
        .filter(|d| d.contains("kind: CustomResourceDefinition"))
        .collect();
    assert_eq!(crd_docs.len(), 2);
    for doc in crd_docs {
        apply(&admin, doc).await;
    }
    for crd in CRDS {
        wait_established(&admin, crd).await;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for (crd, columns) in [
        (CRDS[0], &["Targets", "Accepted", "Conflicted", "Age"][..]),
        (CRDS[1], &["MinTLS", "HSTS max-age", "Age"][..]),
    ] {
        let crd = crds.get(crd).await.unwrap();
        let have: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(have, columns);
        assert!(crd.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some());
    }

    let ns = "chart-crds";
    namespace(&admin, ns).await;
    let policies = portico_api(&admin, "RoutePolicy", "routepolicies", Some(ns));
    let params = portico_api(
        &admin,
        "IngressClassParameters",
        "ingressclassparameters",
        None,
    );

    // Valid objects are accepted as they are.
    let rp = fixture("routepolicy.yaml");
    let created = create(&policies, &rp).await.unwrap();
    assert_eq!(created.data["spec"], rp["spec"]);
    let icp = fixture("ingressclassparameters.yaml");
    let created = create(&params, &icp).await.unwrap();
    assert_eq!(created.data["spec"], icp["spec"]);
    // The group of a target defaults to networking.k8s.io.
    let minimal = json!({
        "apiVersion": "portico.dev/v1alpha1", "kind": "RoutePolicy",
        "metadata": {"name": "minimal"},
        "spec": {"targetRefs": [{"kind": "Ingress", "name": "shop"}], "sslRedirect": false}
    });
    let created = create(&policies, &minimal).await.unwrap();
    assert_eq!(
        created.data["spec"]["targetRefs"][0]["group"],
        "networking.k8s.io"
    );

    // Invalid ones are refused with the API server's reason.
    let rp_cases = [
        (
            json!({"spec": {"targetRefs": [{"kind": "Service", "name": "shop"}]}}),
            "Unsupported value: \"Service\"",
        ),
        (
            json!({"spec": {"targetRefs": []}}),
            "should have at least 1 items",
        ),
        (
            json!({"spec": {"timeouts": {"connect": "5 seconds"}}}),
            "should match '^[0-9]+(ms|s|m|h)$'",
        ),
        (
            json!({"spec": {"maxBodySize": "10MB"}}),
            "should match '^[0-9]+[kKmMgG]?$'",
        ),
        (
            json!({"spec": {"rewriteTarget": null, "redirect": {"url": "https://x.test/", "code": 200}}}),
            "Unsupported value: 200",
        ),
        (
            json!({"spec": {"rewriteTarget": null, "appRoot": "/app", "redirect": {"url": "https://x.test/"}}}),
            "redirect and appRoot are mutually exclusive",
        ),
        (
            json!({"spec": {"redirect": {"url": "https://x.test/"}}}),
            "redirect and rewriteTarget are mutually exclusive",
        ),
        (
            json!({"spec": {"hashBy": "$remote_addr"}}),
            "affinity and hashBy are mutually exclusive",
        ),
        (
            json!({"spec": {"retries": {"on": ["off", "error"]}}}),
            "off cannot be combined with other conditions",
        ),
        (
            json!({"spec": {"retries": {"on": ["sometimes"]}}}),
            "Unsupported value: \"sometimes\"",
        ),
        (
            json!({"spec": {"upstream": {"protocol": "HTTP"}}}),
            "tls needs protocol HTTPS or GRPCS",
        ),
        (
            json!({"spec": {"upstream": {"protocol": "HTTP3", "tls": null}}}),
            "Unsupported value: \"HTTP3\"",
        ),
        (
            json!({"spec": {"loadBalance": "random"}}),
            "Unsupported value: \"random\"",
        ),
        (
            json!({"spec": {"affinity": {"cookie": {"secure": false}}}}),
            "sameSite None needs secure",
        ),
        (
            json!({"spec": {"customHttpErrors": [200]}}),
            "should be greater than or equal to 400",
        ),
    ];
    for (i, (patch, want)) in rp_cases.iter().enumerate() {
        let obj = merged(
            rp.clone(),
            &merged(
                patch.clone(),
                &json!({"metadata": {"name": format!("bad-{i}")}}),
            ),
        );
        let err = create(&policies, &obj).await.expect_err(want);
        assert!(err.contains(want), "{patch}: {err}");
    }
    let icp_cases = [
        (
            json!({"spec": {"tls": {"hsts": {"includeSubDomains": false}}}}),
            "preload needs includeSubDomains and a maxAge of at least 31536000",
        ),
        (
            json!({"spec": {"tls": {"hsts": {"includeSubDomains": null}}}}),
            "preload needs includeSubDomains",
        ),
        (
            json!({"spec": {"tls": {"hsts": {"maxAge": 86400}}}}),
            "preload needs includeSubDomains",
        ),
        (
            json!({"spec": {"tls": {"minVersion": "1.1"}}}),
            "Unsupported value: \"1.1\"",
        ),
        (
            json!({"spec": {"proxyProtocol": {"trustedCidrs": []}}}),
            "should have at least 1 items",
        ),
        (
            json!({"spec": {"defaults": {"hashBy": null, "redirect": {"url": "https://x.test/", "code": 200}}}}),
            "Unsupported value: 200",
        ),
        (
            json!({"spec": {"defaults": {"timeouts": {"read": "1d"}}}}),
            "should match '^[0-9]+(ms|s|m|h)$'",
        ),
    ];
    for (i, (patch, want)) in icp_cases.iter().enumerate() {
        let obj = merged(
            icp.clone(),
            &merged(
                patch.clone(),
                &json!({"metadata": {"name": format!("bad-{i}")}}),
            ),
        );
        let err = create(&params, &obj).await.expect_err(want);
        assert!(err.contains(want), "{patch}: {err}");
    }
    // Without preload, any max-age and includeSubDomains go.
    let no_preload = merged(
        icp.clone(),
        &json!({"metadata": {"name": "short"}, "spec": {"tls": {"hsts": {"preload": false, "maxAge": 300, "includeSubDomains": null}}}}),
    );
    create(&params, &no_preload).await.unwrap();

    // The status subresource: written through /status, not through the object.
    let status = json!({"status": {
        "observedGeneration": 1,
        "conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted",
            "message": "applies to 2 Ingresses", "lastTransitionTime": "2025-01-01T00:00:00Z"
        }],
        "targets": [
            {"name": "shop", "accepted": true, "reason": "Accepted", "message": ""},
            {"name": "api", "accepted": false, "reason": "NotFound", "message": "no Ingress api"}
        ]
    }});
    let pp = PatchParams::default();
    let patched = policies
        .patch_status("everything", &pp, &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(patched.data["status"], status["status"]);
    let through_object = policies
        .patch("minimal", &pp, &Patch::Merge(&status))
        .await
        .unwrap();
    assert!(through_object.data.get("status").is_none());
    let icp_status = json!({"status": {"observedGeneration": 1, "conditions": [{
        "type": "Accepted", "status": "False", "reason": "Invalid",
        "message": "bad", "lastTransitionTime": "2025-01-01T00:00:00Z"
    }]}});
    let patched = params
        .patch_status("everything", &pp, &Patch::Merge(&icp_status))
        .await
        .unwrap();
    assert_eq!(patched.data["status"], icp_status["status"]);
    // A condition without its required fields is refused.
    let err = policies
        .patch_status(
            "everything",
            &pp,
            &Patch::Merge(&json!({"status": {"conditions": [{"type": "Accepted"}]}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Required value"), "{err}");

    // kubectl's columns: the API server fills them from the printer columns.
    let mut req = kube::core::Request::new(format!(
        "/apis/portico.dev/v1alpha1/namespaces/{ns}/routepolicies"
    ))
    .list(&Default::default())
    .unwrap();
    req.headers_mut().insert(
        reqwest::header::ACCEPT,
        reqwest::header::HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io"),
    );
    let table: Value = serde_json::from_str(&admin.request_text(req).await.unwrap()).unwrap();
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cells"][0] == "everything")
        .unwrap();
    // The API server shows the first value of a `[*]` path.
    assert_eq!(row["cells"][1], "shop");
    assert_eq!(row["cells"][2], "True");
}
