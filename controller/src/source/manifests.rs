//! The manifest-directory source: every `*.yaml`/`*.yml` file of a directory, watched.
//!
//! Each file is parsed as a whole; when any document of it fails, the file's last good version
//! keeps serving and the failure is reported with file, document and line. Other files are
//! not affected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::ByteString;
use notify::{RecursiveMode, Watcher};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::error::SourceError;
use crate::inputs::{CertCache, Inputs};
use crate::problem::{ObjectRef, Problem, Reason};

/// How often the directory is read again even without a file-system event (volume mounts
/// that swap symlinks do not always produce one).
pub const RESCAN: Duration = Duration::from_secs(2);
/// How long to wait for a burst of events to end.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// One object read from a manifest.
#[derive(Clone, Debug)]
pub enum Object {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Secret(Arc<Secret>),
}

#[derive(Debug, Default)]
struct FileState {
    text: Vec<u8>,
    good: Vec<Object>,
    problem: Option<Problem>,
}

/// The files of a directory and what they hold.
#[derive(Debug)]
pub struct ManifestDir {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    certs: CertCache,
}

impl ManifestDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ManifestDir {
            dir: dir.into(),
            files: BTreeMap::new(),
            certs: CertCache::default(),
        }
    }

    /// Reads the directory again. `Ok(true)` when anything changed.
    pub fn scan(&mut self) -> std::io::Result<bool> {
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let is_manifest = !name.starts_with('.')
                && (name.ends_with(".yaml") || name.ends_with(".yml"))
                && path.is_file();
            if is_manifest {
                seen.push(path);
            }
        }
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| seen.contains(p));
        changed |= self.files.len() != before;
        for path in seen {
            let text = match std::fs::read(&path) {
                Ok(t) => t,
                Err(e) => {
                    debug!(file = %path.display(), error = %e, "file vanished while reading");
                    continue;
                }
            };
            let state = self.files.entry(path.clone()).or_default();
            if state.text == text
                && (state.problem.is_some() || !text.is_empty() || !state.good.is_empty())
            {
                continue;
            }
            changed = true;
            let shown = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match parse_file(&shown, &String::from_utf8_lossy(&text)) {
                Ok(objects) => {
                    if state.problem.take().is_some() {
                        info!(file = %shown, "manifest file fixed");
                    }
                    state.good = objects;
                }
                Err(problem) => {
                    warn!(problem = %problem, "manifest file not applied; its last good version keeps serving");
                    state.problem = Some(*problem);
                }
            }
            state.text = text;
        }
        Ok(changed)
    }

    /// Everything the directory holds now, as translate takes it.
    pub fn inputs(&mut self) -> Inputs {
        let mut inputs = Inputs::default();
        for state in self.files.values() {
            for o in &state.good {
                match o {
                    Object::Ingress(x) => inputs.ingresses.push(x.clone()),
                    Object::IngressClass(x) => inputs.ingress_classes.push(x.clone()),
                    Object::Service(x) => inputs.services.push(x.clone()),
                    Object::EndpointSlice(x) => inputs.endpoint_slices.push(x.clone()),
                    Object::Secret(x) => inputs.secrets.push(x.clone()),
                }
            }
            inputs.problems.extend(state.problem.clone());
        }
        inputs.certificates = self.certs.certificates(&inputs.secrets);
        inputs
    }
}

/// Splits a file into YAML documents: (first line number, text).
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = vec![(1, String::new())];
    for (i, line) in text.lines().enumerate() {
        let marker =
            line == "---" || line.starts_with("--- ") || line.starts_with("---\t") || line == "...";
        if marker {
            docs.push((i + 2, String::new()));
            continue;
        }
        if let Some((_, d)) = docs.last_mut() {
            d.push_str(line);
            d.push('\n');
        }
    }
    docs.retain(|(_, d)| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// Parses one file's text; every document must be valid for the file to count.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Object>, Box<Problem>> {
    let mut objects = Vec::new();
    for (index, (first_line, doc)) in documents(text).into_iter().enumerate() {
        let fail = |line: Option<usize>, message: String| {
            Box::new(Problem::new(
                ObjectRef::new("File", "", file),
                Reason::Manifest {
                    document: index + 1,
                    line,
                    message,
                },
            ))
        };
        let located = |e: &serde_yaml::Error| e.location().map(|l| first_line + l.line() - 1);
        let value: serde_yaml::Value =
            serde_yaml::from_str(&doc).map_err(|e| fail(located(&e), e.to_string()))?;
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind == "List" || kind.ends_with("List") && value.get("items").is_some() {
            let items = value
                .get("items")
                .and_then(|i| i.as_sequence())
                .cloned()
                .unwrap_or_default();
            for (n, item) in items.into_iter().enumerate() {
                if let Some(o) = object_from_value(item)
                    .map_err(|e| fail(Some(first_line), format!("item {}: {e}", n + 1)))?
                {
                    objects.push(o);
                }
            }
            continue;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or("");
        if let Some(o) = typed(api_version, kind, || {
            serde_yaml::from_str::<serde_yaml::Value>(&doc)
        })
        .map_err(|e| fail(located(&e).or(Some(first_line)), e.to_string()))?
        {
            objects.push(o);
        }
    }
    Ok(objects)
}

fn object_from_value(v: serde_yaml::Value) -> Result<Option<Object>, serde_yaml::Error> {
    let kind = v
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    let api_version = v
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    typed(&api_version, &kind, || Ok(v.clone()))
}

fn typed(
    api_version: &str,
    kind: &str,
    value: impl Fn() -> Result<serde_yaml::Value, serde_yaml::Error>,
) -> Result<Option<Object>, serde_yaml::Error> {
    fn de<K: DeserializeOwned>(v: serde_yaml::Value) -> Result<K, serde_yaml::Error> {
        serde_yaml::from_value(v)
    }
    let o = match (api_version, kind) {
        ("networking.k8s.io/v1", "Ingress") => {
            let mut x: Ingress = de(value()?)?;
            default_namespace(&mut x.metadata);
            Object::Ingress(Arc::new(x))
        }
        ("networking.k8s.io/v1", "IngressClass") => Object::IngressClass(Arc::new(de(value()?)?)),
        ("v1", "Service") => {
            let mut x: Service = de(value()?)?;
            default_namespace(&mut x.metadata);
            Object::Service(Arc::new(x))
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            let mut x: EndpointSlice = de(value()?)?;
            default_namespace(&mut x.metadata);
            Object::EndpointSlice(Arc::new(x))
        }
        ("v1", "Secret") => {
            let mut x: Secret = de(value()?)?;
            default_namespace(&mut x.metadata);
            // As the API server does: stringData is merged into data.
            if let Some(sd) = x.string_data.take() {
                let data = x.data.get_or_insert_with(BTreeMap::new);
                for (k, v) in sd {
                    data.insert(k, ByteString(v.into_bytes()));
                }
            }
            Object::Secret(Arc::new(x))
        }
        _ => {
            debug!(
                api_version,
                kind, "ignoring an object of a kind Portico does not read"
            );
            return Ok(None);
        }
    };
    Ok(Some(o))
}

fn default_namespace(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    if meta.namespace.as_deref().unwrap_or("").is_empty() {
        meta.namespace = Some("default".to_string());
    }
}

/// Reads `dir` once: its inputs, whatever problems it has.
pub fn load_once(dir: &Path) -> std::io::Result<Inputs> {
    let mut d = ManifestDir::new(dir);
    d.scan()?;
    Ok(d.inputs())
}

/// Watches `dir` and sends new inputs on `tx` whenever its files change. The first inputs are
/// sent once the directory could be read; until then Portico is not ready.
pub async fn run(dir: PathBuf, tx: watch::Sender<Arc<Inputs>>) -> Result<(), SourceError> {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = events_tx.send(());
        }
    })
    .map_err(|source| SourceError::Watch {
        dir: dir.clone(),
        source,
    })?;
    let mut watching = false;
    let mut manifests = ManifestDir::new(&dir);
    let mut sent_once = false;
    let mut tick = tokio::time::interval(RESCAN);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !watching {
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => watching = true,
                Err(e) => {
                    debug!(dir = %dir.display(), error = %e, "cannot watch the directory yet")
                }
            }
        }
        match manifests.scan() {
            Ok(changed) if changed || !sent_once => {
                let inputs = manifests.inputs();
                debug!(
                    ingresses = inputs.ingresses.len(),
                    services = inputs.services.len(),
                    secrets = inputs.secrets.len(),
                    "manifests read"
                );
                tx.send(Arc::new(inputs)).map_err(|_| SourceError::Closed)?;
                sent_once = true;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot read the manifest directory");
                // The directory may be replaced (e.g. a volume remount): watch it again.
                if watching {
                    let _ = watcher.unwatch(&dir);
                    watching = false;
                }
            }
        }
        tokio::select! {
            ev = events.recv() => {
                if ev.is_none() {
                    return Err(SourceError::Closed);
                }
                tokio::time::sleep(DEBOUNCE).await;
                while events.try_recv().is_ok() {}
            }
            _ = tick.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n";

    #[test]
    fn reads_multi_document_files_and_lists() {
        let text = format!(
            "# comment\n{SVC}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ignored\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: other\n    namespace: team\n"
        );
        let objs = parse_file("f.yaml", &text).unwrap();
        assert_eq!(objs.len(), 2);
        let Object::Service(s) = &objs[0] else {
            panic!()
        };
        assert_eq!(s.metadata.namespace.as_deref(), Some("default"));
        let Object::Service(s) = &objs[1] else {
            panic!()
        };
        assert_eq!(s.metadata.namespace.as_deref(), Some("team"));
    }

    #[test]
    fn reports_document_and_line() {
        let text = format!("{SVC}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [broken\n");
        let p = parse_file("f.yaml", &text).unwrap_err();
        let Reason::Manifest { document, line, .. } = &p.reason else {
            panic!("{p}")
        };
        assert_eq!(*document, 2);
        assert!(matches!(line, Some(l) if *l >= 9), "{p}");
        assert!(p.to_string().contains("f.yaml"), "{p}");
    }

    #[test]
    fn reports_type_errors() {
        let text = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\nspec:\n  rules: 7\n";
        let p = parse_file("f.yaml", text).unwrap_err();
        assert!(
            matches!(p.reason, Reason::Manifest { document: 1, .. }),
            "{p}"
        );
    }

    #[test]
    fn merges_string_data() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  a: b\ndata:\n  c: ZA==\n";
        let objs = parse_file("f.yaml", text).unwrap();
        let Object::Secret(s) = &objs[0] else {
            panic!()
        };
        let data = s.data.as_ref().unwrap();
        assert_eq!(data["a"].0, b"b");
        assert_eq!(data["c"].0, b"d");
        assert!(s.string_data.is_none());
    }

    #[test]
    fn keeps_the_last_good_version_of_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), SVC).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        let mut m = ManifestDir::new(dir.path());
        assert!(m.scan().unwrap());
        assert_eq!(m.inputs().services.len(), 1);
        assert!(!m.scan().unwrap(), "nothing changed");
        std::fs::write(dir.path().join("a.yaml"), "kind: [").unwrap();
        assert!(m.scan().unwrap());
        let inputs = m.inputs();
        assert_eq!(inputs.services.len(), 1, "last good version");
        assert_eq!(inputs.problems.len(), 1);
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        assert!(m.scan().unwrap());
        let inputs = m.inputs();
        assert!(inputs.services.is_empty() && inputs.problems.is_empty());
    }
}
