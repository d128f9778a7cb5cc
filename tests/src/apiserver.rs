//! The real kube-apiserver of `tests/kube-apiserver`, shared by the tests of one test binary
//! (each test works in its own namespace). It stops when the test process ends.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A running API server.
pub struct ApiServer {
    pub kubeconfig: PathBuf,
    pub server: String,
    control: String,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
    _dir: tempfile::TempDir,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl ApiServer {
    /// The API server of this test binary, started on first use.
    pub fn shared() -> &'static ApiServer {
        static SERVER: OnceLock<ApiServer> = OnceLock::new();
        SERVER.get_or_init(ApiServer::start)
    }

    fn start() -> ApiServer {
        let out = Command::new(repo().join("scripts/kube-apiserver"))
            .arg("path")
            .output()
            .expect("scripts/kube-apiserver");
        assert!(
            out.status.success(),
            "building the API server failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let log = std::fs::File::create(dir.path().join("apiserver.log")).unwrap();
        let mut child = Command::new(bin)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--exit-on-stdin-close")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting the API server");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut server = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("READY ") {
                server = rest
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                break;
            }
        }
        assert!(
            !server.is_empty(),
            "the API server did not start:\n{}",
            std::fs::read_to_string(dir.path().join("apiserver.log")).unwrap_or_default()
        );
        let control = std::fs::read_to_string(dir.path().join("control-url"))
            .unwrap_or_default()
            .trim()
            .to_string();
        ApiServer {
            kubeconfig,
            server,
            control,
            _child: Mutex::new(child),
            _stdin: Mutex::new(stdin),
            _dir: dir,
        }
    }

    /// The API server's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self._child.lock().ok().map(|c| c.id())
    }

    /// An admin client (create it inside the test's runtime).
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// Stops etcd alone: the API server stays up but cannot serve.
    pub async fn stop_etcd(&self) {
        self.control("stop").await;
    }

    pub async fn start_etcd(&self) {
        self.control("start").await;
    }

    async fn control(&self, what: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/etcd/{what}", self.control))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "etcd {what}: {}", r.status());
    }
}

/// Creates a namespace for one test.
pub async fn namespace(client: &kube::Client, name: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_string());
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
}

/// Applies YAML documents (server-side apply, as `kubectl apply --server-side` does).
pub async fn apply(client: &kube::Client, yaml: &str) {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    use kube::discovery::{ApiResource, Scope};
    // Discovery can fail for a moment while another test installs CRDs (a group listed
    // before its versions are served): try again briefly.
    let mut tries = 0;
    let discovery = loop {
        match kube::Discovery::new(client.clone()).run().await {
            Ok(d) => break d,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("discovery: {e}"),
        }
    };
    for doc in yaml.split("\n---\n").filter(|d| !d.trim().is_empty()) {
        let obj: DynamicObject = serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
        let types = obj.types.clone().unwrap();
        let gvk = kube::api::GroupVersionKind::try_from(&types).unwrap();
        let (ar, caps): (ApiResource, _) = discovery.resolve_gvk(&gvk).unwrap();
        let name = obj.metadata.name.clone().unwrap();
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                obj.metadata.namespace.as_deref().unwrap_or("default"),
                &ar,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        api.patch(
            &name,
            &PatchParams::apply("portico-tests").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"));
    }
}

/// The first IP of an Ingress's `status.loadBalancer`, if any.
pub async fn status_ip(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    use k8s_openapi::api::networking::v1::Ingress;
    let i = kube::Api::<Ingress>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    i.status?.load_balancer?.ingress?.first()?.ip.clone()
}

/// Waits until an Ingress's status names `ip`; panics with `context()` after `limit`.
pub async fn wait_status_ip(
    client: &kube::Client,
    ns: &str,
    name: &str,
    ip: &str,
    limit: Duration,
    context: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + limit;
    while status_ip(client, ns, name).await.as_deref() != Some(ip) {
        assert!(
            std::time::Instant::now() < deadline,
            "status of {ns}/{name} never named {ip}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Installs Portico's CRDs (server-side apply) and waits until the API server serves them.
pub async fn install_crds(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in portico_crds::crds() {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("portico-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("installing {name}: {e}"));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let served = client
            .list_api_group_resources("portico.dev/v1alpha1")
            .await
            .map(|l| l.resources.len())
            .unwrap_or(0);
        if served >= 2 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Portico's CRDs never became served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
