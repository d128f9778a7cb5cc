//! The chart's admission webhook (`webhook.enabled`): what it renders, what its values
//! change, what its schema refuses, and that the API server accepts the objects (applied as a
//! server-side dry run, so the webhook configuration never affects other tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::ByteString;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::Scope;
use portico_e2e::apiserver::{namespace, ApiServer};
use serde_json::{json, Value};

const NS: &str = "chart-webhook";

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
        .args(["template", "portico", "charts/portico", "--namespace", NS])
        .args(extra)
        .output()
        .expect("helm (scripts/test installs it)");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Every rendered object.
fn objects(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str::<Value>(d).ok())
        .filter(|v| v.is_object())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

const NAME: &str = "portico-controller-webhook";

/// A CA certificate's PEM, base64 as `caBundle` wants it.
fn ca_bundle() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    serde_json::to_value(ByteString(pem.into_bytes()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn with_secret(ca: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "--set".to_string(),
        "webhook.enabled=true".into(),
        "--set".into(),
        "webhook.certificate.secretName=portico-webhook-tls".into(),
        "--set".into(),
        format!("webhook.certificate.caBundle={ca}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    objects(&template(&args).unwrap())
}

#[test]
fn off_by_default_and_complete_when_on() {
    let default = template(&[]).unwrap();
    assert!(
        !default.contains("kind: ValidatingWebhookConfiguration")
            && !default.contains("--webhook")
            && !default.contains("webhook-certificate"),
        "the webhook renders only when enabled"
    );

    let ca = ca_bundle();
    let objs = with_secret(&ca, &[]);
    let vwc = find(&objs, "ValidatingWebhookConfiguration", NAME);
    let hooks = vwc["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1);
    let h = &hooks[0];
    assert_eq!(h["failurePolicy"], "Fail");
    assert_eq!(h["timeoutSeconds"], 5);
    assert_eq!(h["sideEffects"], "None");
    assert_eq!(h["matchPolicy"], "Equivalent");
    assert_eq!(h["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(
        h["clientConfig"],
        json!({"service": {"name": NAME, "namespace": NS, "path": "/validate", "port": 443},
               "caBundle": ca})
    );
    assert_eq!(
        h["rules"],
        json!([
            {"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"],
             "operations": ["CREATE", "UPDATE"], "resources": ["ingresses"], "scope": "Namespaced"},
            {"apiGroups": ["portico.dev"], "apiVersions": ["v1alpha1"],
             "operations": ["CREATE", "UPDATE"], "resources": ["routepolicies"], "scope": "Namespaced"}
        ])
    );
    assert_eq!(h["namespaceSelector"], json!({}));
    assert_eq!(h["objectSelector"], json!({}));
    assert!(vwc["metadata"].get("annotations").is_none());

    // Its own Service port, to the container's own port: never a proxy port.
    let svc = find(&objs, "Service", NAME);
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}])
    );
    let deploy = find(&objs, "Deployment", "portico-controller");
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for want in [
        "--webhook-addr=[::]:8444",
        "--webhook-cert-file=/etc/portico/webhook/tls.crt",
        "--webhook-key-file=/etc/portico/webhook/tls.key",
    ] {
        assert!(args.contains(&want), "{want} missing from {args:?}");
    }
    let ports = c["ports"].as_array().unwrap();
    assert!(ports.contains(&json!({"name": "webhook", "containerPort": 8444, "protocol": "TCP"})));
    let proxy_ports: Vec<&Value> = ports
        .iter()
        .filter(|p| p["name"] == "http" || p["name"] == "https")
        .map(|p| &p["containerPort"])
        .collect();
    assert!(!proxy_ports.contains(&&json!(8444)), "{ports:?}");
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "webhook-certificate", "mountPath": "/etc/portico/webhook", "readOnly": true}])
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "webhook-certificate", "secret": {"secretName": "portico-webhook-tls"}}])
    );
    // No NetworkPolicy unless asked for; with one, the webhook port is open to the API server.
    assert!(!objs.iter().any(|o| o["kind"] == "NetworkPolicy"));
    let objs = with_secret(&ca, &["--set", "controller.networkPolicy.enabled=true"]);
    let np = find(&objs, "NetworkPolicy", NAME);
    assert_eq!(
        np["spec"]["ingress"],
        json!([{"ports": [{"port": 8444, "protocol": "TCP"}]}])
    );
}

#[test]
fn values_reach_the_webhook_configuration() {
    let ca = ca_bundle();
    let objs = with_secret(
        &ca,
        &[
            "--set",
            "webhook.failurePolicy=Ignore",
            "--set",
            "webhook.timeoutSeconds=10",
            "--set",
            "webhook.port=9443",
            "--set-json",
            r#"webhook.namespaceSelector={"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system"]}]}"#,
            "--set-json",
            r#"webhook.objectSelector={"matchLabels":{"team":"web"}}"#,
        ],
    );
    let h = &find(&objs, "ValidatingWebhookConfiguration", NAME)["webhooks"][0];
    assert_eq!(h["failurePolicy"], "Ignore");
    assert_eq!(h["timeoutSeconds"], 10);
    assert_eq!(
        h["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["kube-system"])
    );
    assert_eq!(h["objectSelector"], json!({"matchLabels": {"team": "web"}}));
    let deploy = find(&objs, "Deployment", "portico-controller");
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert!(c["args"]
        .as_array()
        .unwrap()
        .contains(&json!("--webhook-addr=[::]:9443")));
}

#[test]
fn cert_manager_issues_the_certificate_and_injects_the_ca() {
    let rendered = template(&[
        "--set",
        "webhook.enabled=true",
        "--set",
        "webhook.certManager.enabled=true",
    ])
    .unwrap();
    let objs = objects(&rendered);
    let vwc = find(&objs, "ValidatingWebhookConfiguration", NAME);
    assert_eq!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NS}/{NAME}")
    );
    assert!(vwc["webhooks"][0]["clientConfig"].get("caBundle").is_none());
    let cert = find(&objs, "Certificate", NAME);
    assert_eq!(cert["spec"]["secretName"], format!("{NAME}-tls"));
    assert_eq!(
        cert["spec"]["dnsNames"][0],
        format!("{NAME}.{NS}.svc"),
        "the name the API server calls"
    );
    assert_eq!(cert["spec"]["issuerRef"]["name"], NAME);
    assert_eq!(
        find(&objs, "Issuer", NAME)["spec"],
        json!({"selfSigned": {}})
    );
    let deploy = find(&objs, "Deployment", "portico-controller");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        format!("{NAME}-tls")
    );

    // An issuer of the cluster's: no Issuer of ours.
    let objs = objects(
        &template(&[
            "--set",
            "webhook.enabled=true",
            "--set",
            "webhook.certManager.enabled=true",
            "--set-json",
            r#"webhook.certManager.issuerRef={"name":"corp-ca","kind":"ClusterIssuer","group":"cert-manager.io"}"#,
        ])
        .unwrap(),
    );
    assert!(!objs.iter().any(|o| o["kind"] == "Issuer"));
    assert_eq!(
        find(&objs, "Certificate", NAME)["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
}

#[test]
fn wrong_webhook_values_are_refused() {
    let err = template(&["--set", "webhook.enabled=true"]).unwrap_err();
    assert!(
        err.contains("webhook.certificate.secretName and webhook.certificate.caBundle"),
        "{err}"
    );
    for bad in [
        "webhook.failurePolicy=Sometimes",
        "webhook.timeoutSeconds=31",
        "webhook.timeoutSeconds=0",
        "webhook.port=70000",
        "webhook.enabled=yes",
        "webhook.bogus=1",
        "webhook.certManager.duration=90d",
    ] {
        let err = template(&["--set", bad]).unwrap_err();
        assert!(
            err.contains("values don't meet the specifications") || err.contains("schema"),
            "{bad}: {err}"
        );
    }
}

/// The API server accepts every object the webhook adds (server-side dry run: nothing is
/// stored, so the configuration cannot affect other tests).
#[tokio::test]
async fn the_api_server_accepts_the_webhook_objects() {
    let api = ApiServer::shared();
    let client = api.client().await;
    namespace(&client, NS).await;
    let objs = with_secret(
        &ca_bundle(),
        &[
            "--set",
            "controller.networkPolicy.enabled=true",
            "--set-json",
            r#"webhook.namespaceSelector={"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system"]}]}"#,
        ],
    );
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let mut checked = Vec::new();
    for o in objs.iter().filter(|o| {
        matches!(
            o["kind"].as_str(),
            Some("ValidatingWebhookConfiguration" | "Service" | "Deployment" | "NetworkPolicy")
        )
    }) {
        let obj: DynamicObject = serde_json::from_value(o.clone()).unwrap();
        let types = obj.types.clone().unwrap();
        let gvk = kube::api::GroupVersionKind::try_from(&types).unwrap();
        let (ar, caps) = discovery.resolve_gvk(&gvk).unwrap();
        let name = obj.metadata.name.clone().unwrap();
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(client.clone(), NS, &ar),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        api.patch(
            &name,
            &PatchParams::apply("portico-tests").dry_run(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("{} {name}: {e}", types.kind));
        checked.push(types.kind);
    }
    for kind in [
        "ValidatingWebhookConfiguration",
        "Service",
        "Deployment",
        "NetworkPolicy",
    ] {
        assert!(checked.iter().any(|k| k == kind), "{kind}: {checked:?}");
    }
}
