//! The validating admission webhook through the real API server: Portico serves it on its own
//! TLS port, a ValidatingWebhookConfiguration points the API server at it, and objects are
//! admitted or refused with Portico's messages.
//!
//! The configuration is scoped to this test's namespace and to objects carrying a test label,
//! so that other tests sharing the API server are never affected, even if this one fails
//! before it deletes the configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use portico_e2e::apiserver::{install_crds, ApiServer};
use portico_e2e::{free_port, Portico};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use serde_json::{json, Value};

mod common;

use common::{backends, CLASS};

const NS: &str = "webhook";
const CONFIG: &str = "portico-e2e-webhook";
const LABEL: &str = "portico.dev/webhook-e2e";

/// Deletes the ValidatingWebhookConfiguration when the test ends, however it ends.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let kubeconfig = self.0.clone();
        // The test's runtime may be blocked in a panic: use a runtime (and client) of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
                let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .unwrap();
                let client = kube::Client::try_from(config).unwrap();
                let _ = Api::<ValidatingWebhookConfiguration>::all(client)
                    .delete(CONFIG, &DeleteParams::default())
                    .await;
            });
        })
        .join();
    }
}

/// A CA, and a certificate for 127.0.0.1 it signed: (ca PEM, cert PEM, key PEM).
fn pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn webhook_configuration(port: u16, ca_pem: &str) -> ValidatingWebhookConfiguration {
    let mut v: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIG},
        "webhooks": [{
            "name": "validate.webhook-e2e.portico.dev",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate")},
            "rules": [
                {"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"],
                 "operations": ["CREATE", "UPDATE"], "resources": ["ingresses"]},
                {"apiGroups": ["portico.dev"], "apiVersions": ["v1alpha1"],
                 "operations": ["CREATE", "UPDATE"], "resources": ["routepolicies"]}
            ],
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "admissionReviewVersions": ["v1"],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
            "objectSelector": {"matchLabels": {LABEL: "true"}}
        }]
    }))
    .unwrap();
    v.webhooks.as_mut().unwrap()[0].client_config.ca_bundle =
        Some(ByteString(ca_pem.as_bytes().to_vec()));
    v
}

/// An Ingress of class `class` for `host` `/` → `web`, labelled for the webhook.
fn ingress(name: &str, class: &str, host: &str, annotations: Value) -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": NS, "labels": {LABEL: "true"},
                     "annotations": annotations},
        "spec": {"ingressClassName": class, "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    }))
    .unwrap()
}

/// The API server's answer to creating `i`: `Ok` or the refusal's message.
async fn create(api: &Api<Ingress>, i: &Ingress, dry_run: bool) -> Result<(), String> {
    let pp = PostParams {
        dry_run,
        ..PostParams::default()
    };
    api.create(&pp, i).await.map(|_| ()).map_err(|e| match e {
        kube::Error::Api(s) => s.message,
        e => format!("{e}"),
    })
}

/// Polls until creating `i` (dry run) is refused with a message holding `needle`: the API
/// server picks up a new webhook configuration, and Portico new objects, a moment later.
async fn until_refused(api: &Api<Ingress>, i: &Ingress, needle: &str, p: &Portico) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = create(api, i, true).await;
        if let Err(m) = &last {
            if m.contains(needle) {
                return m.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "never refused with {needle:?}; last answer {last:?}\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_api_server_refuses_what_portico_would_report() {
    let api = ApiServer::shared();
    let client = api.client().await;
    install_crds(&client).await;
    let _backends = backends(&client, NS, ["web"]).await;
    portico_e2e::apiserver::apply(&client, CLASS).await;

    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki();
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut flags = common::args(NS, "webhook-leader");
    let (cert_arg, key_arg) = (
        cert_file.to_str().unwrap().to_string(),
        key_file.to_str().unwrap().to_string(),
    );
    flags.extend([
        "--webhook-addr",
        &addr,
        "--webhook-cert-file",
        &cert_arg,
        "--webhook-key-file",
        &key_arg,
    ]);
    let p = Portico::cluster(&api.kubeconfig, &flags).await;
    p.wait_log("admission webhook serving", Duration::from_secs(10))
        .await;

    let _cleanup = Cleanup(api.kubeconfig.clone());
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let _ = configs.delete(CONFIG, &DeleteParams::default()).await;
    configs
        .create(&PostParams::default(), &webhook_configuration(port, &ca))
        .await
        .unwrap();

    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), NS);
    // A snippet: refused (once the API server uses the new configuration) with the message
    // Portico reports for it.
    let snippet = ingress(
        "snippet",
        "portico",
        "snippet.webhook.test",
        json!({"nginx.ingress.kubernetes.io/configuration-snippet": "return 200;"}),
    );
    let m = until_refused(&ingresses, &snippet, "is a snippet", &p).await;
    assert!(m.contains("admission webhook"), "{m}");
    assert!(
        m.contains(&format!(
            "Ingress {NS}/snippet: annotation nginx.ingress.kubernetes.io/configuration-snippet \
             is a snippet: Portico never executes configuration text from Ingresses"
        )),
        "{m}"
    );

    // A valid Ingress is admitted (for real, not a dry run).
    let site = ingress("site", "portico", "site.webhook.test", json!({}));
    create(&ingresses, &site, false).await.unwrap();

    // An invalid annotation value.
    let timeout = ingress(
        "timeout",
        "portico",
        "timeout.webhook.test",
        json!({"nginx.ingress.kubernetes.io/proxy-read-timeout": "soon"}),
    );
    let m = create(&ingresses, &timeout, false).await.unwrap_err();
    assert!(
        m.contains(&format!(
            "Ingress {NS}/timeout: annotation nginx.ingress.kubernetes.io/proxy-read-timeout: "
        )),
        "{m}"
    );

    // An invalid regex path.
    let mut regex = ingress(
        "regex",
        "portico",
        "regex.webhook.test",
        json!({"nginx.ingress.kubernetes.io/use-regex": "true"}),
    );
    let path = &mut regex.spec.as_mut().unwrap().rules.as_mut().unwrap()[0]
        .http
        .as_mut()
        .unwrap()
        .paths[0];
    path.path = Some("/(unclosed".into());
    path.path_type = "ImplementationSpecific".into();
    let m = create(&ingresses, &regex, false).await.unwrap_err();
    assert!(m.contains("invalid path \"/(unclosed\""), "{m}");

    // A conflict it would lose against the stored `site` (once Portico's watch has it).
    let rival = ingress("rival", "portico", "site.webhook.test", json!({}));
    let m = until_refused(&ingresses, &rival, "is already served by Ingress", &p).await;
    assert!(
        m.contains(&format!("is already served by Ingress {NS}/site")),
        "{m}"
    );

    // An update that adds a problem is refused too (the old object is judged as well).
    let patch = json!({"metadata": {"annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "lots"}}});
    let refused = ingresses
        .patch("site", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = refused else {
        panic!("{refused}")
    };
    assert!(
        s.message.contains(&format!(
            "Ingress {NS}/site: annotation nginx.ingress.kubernetes.io/proxy-body-size: "
        )),
        "{}",
        s.message
    );
    let patch = json!({"metadata": {"labels": {"team": "web"}}});
    ingresses
        .patch("site", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    // Another class's Ingress, snippet and all: not Portico's to judge.
    let theirs = ingress(
        "theirs",
        "other",
        "theirs.webhook.test",
        json!({"nginx.ingress.kubernetes.io/configuration-snippet": "return 200;"}),
    );
    create(&ingresses, &theirs, false).await.unwrap();

    // A RoutePolicy whose field passes the CRD schema but not Portico's parser.
    let ar = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("portico.dev", "v1alpha1", "RoutePolicy"),
        "routepolicies",
    );
    let policies: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &ar);
    let policy = |name: &str, hash_by: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "portico.dev/v1alpha1", "kind": "RoutePolicy",
            "metadata": {"name": name, "namespace": NS, "labels": {LABEL: "true"}},
            "spec": {"targetRefs": [{"kind": "Ingress", "name": "site"}], "hashBy": hash_by}
        }))
        .unwrap()
    };
    let refused = policies
        .create(&PostParams::default(), &policy("bad", "$nope"))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = refused else {
        panic!("{refused}")
    };
    assert!(
        s.message
            .contains(&format!("RoutePolicy {NS}/bad: field hashBy: ")),
        "{}",
        s.message
    );
    policies
        .create(&PostParams::default(), &policy("good", "$request_uri"))
        .await
        .unwrap();

    configs
        .delete(CONFIG, &DeleteParams::default())
        .await
        .unwrap();
}

/// The webhook's HTTPS surface on its own: only `POST /validate`, bounded bodies, 400 for
/// what is not an AdmissionReview, and a rotated certificate served without a restart.
#[tokio::test]
async fn the_webhook_port_answers_only_reviews_and_follows_certificate_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let (ca, cert, key) = pki();
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let p = Portico::start(
        &manifests,
        &[
            "--webhook-addr",
            &addr,
            "--webhook-cert-file",
            cert_file.to_str().unwrap(),
            "--webhook-key-file",
            key_file.to_str().unwrap(),
        ],
    )
    .await;
    p.wait_log("admission webhook serving", Duration::from_secs(10))
        .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/validate");

    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = client
        .post(format!("https://127.0.0.1:{port}/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for garbage in [&b"{"[..], b"[]", b"\xff\xfe", b"{\"request\":{\"uid\":1}}"] {
        let r = client
            .post(&url)
            .body(garbage.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{garbage:?}");
    }
    let r = client
        .post(&url)
        .body(vec![b' '; 4 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // A review: classless Ingresses are served in manifest mode, so a snippet is refused.
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "operation": "CREATE", "namespace": "default", "name": "s",
            "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "object": {
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "s", "namespace": "default", "annotations":
                    {"nginx.ingress.kubernetes.io/server-snippet": "listen 80;"}},
                "spec": {"rules": [{"host": "s.test", "http": {"paths": [{"path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
            }
        }
    });
    // Until the webhook has indexed the source's first inputs it refuses, saying so.
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let r = client.post(&url).json(&review).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let loading = v["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not loaded"));
        if !loading || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(v["response"]["uid"], "u-1");
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains(
            "Ingress default/s: annotation nginx.ingress.kubernetes.io/server-snippet is a snippet"
        ),
        "{v}"
    );

    // Rotation: new files, and the new certificate is served (no restart).
    let (_, cert2, key2) = pki();
    std::fs::write(&key_file, &key2).unwrap();
    std::fs::write(&cert_file, &cert2).unwrap();
    let want = portico_e2e::tls::pem_to_der(&cert2);
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let presented = portico_e2e::tls::handshake(sock, "127.0.0.1")
            .await
            .unwrap();
        if presented.leaf == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(p.logs().contains("webhook certificate reloaded"));
}
