//! The manifest-directory source: every `*.yaml`/`*.yml` file of a directory, watched.
//!
//! - Only the directory itself is read (not subdirectories); hidden files are skipped, and
//!   symbolic links are followed (a Kubernetes ConfigMap volume is made of them).
//! - A file holds one or more YAML documents; a document is an object, or a `kind: List`
//!   (`items`). Ingress and IngressClass (`networking.k8s.io/v1`), Service and Secret (`v1`) and
//!   EndpointSlice (`discovery.k8s.io/v1`) are read; other kinds are ignored with a debug log; a
//!   kind Portico reads under another Kubernetes API version is reported and ignored.
//! - An object without `metadata.namespace` is in `default` (IngressClass is cluster-scoped).
//!   A Secret's `stringData` is merged into `data`, as the API server does.
//! - Each file is parsed as a whole: when any document of it fails, the file's last good
//!   version keeps serving and the failure is reported with file, document (1-based) and line.
//!   Other files are not affected.
//! - [`run`] watches the directory (inotify, debounced) and, as a safety net, checks it
//!   again every [`RESCAN`] (a `stat` per file; only files whose size, inode or times moved
//!   are read); it sends new inputs only when a file's bytes changed, and
//!   only once they stopped changing (a half-written file is not published). Writing files
//!   atomically (write elsewhere, then rename) is still best.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use notify::{RecursiveMode, Watcher};
use portico_crds::{IngressClassParameters, RoutePolicy};
use serde::de::DeserializeOwned;
use sha2::Digest as _;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::secret_certificates::SecretCertificates;
use super::watch_store::packed;
use crate::error::SourceError;
use crate::inputs::Inputs;
use crate::problem::{ObjectRef, Problem, Reason};

/// How often the directory is read again even without a file-system event (volume mounts
/// that swap symlinks do not always produce one).
pub const RESCAN: Duration = Duration::from_secs(2);
/// How long to wait for a burst of events to end, and for a changed file to stop changing.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// At most this many extra reads wait for files that keep changing (a slow writer).
const SETTLE_ROUNDS: usize = 10;

/// One object read from a manifest.
#[derive(Clone)]
pub enum Object {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Secret(Arc<Secret>),
    RoutePolicy(Arc<RoutePolicy>),
    IngressClassParameters(Arc<IngressClassParameters>),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Ingress(_) => "Ingress",
            Object::IngressClass(_) => "IngressClass",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Secret(_) => "Secret",
            Object::RoutePolicy(_) => "RoutePolicy",
            Object::IngressClassParameters(_) => "IngressClassParameters",
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Ingress(x) => &x.metadata,
            Object::IngressClass(x) => &x.metadata,
            Object::Service(x) => &x.metadata,
            Object::EndpointSlice(x) => &x.metadata,
            Object::Secret(x) => &x.metadata,
            Object::RoutePolicy(x) => &x.metadata,
            Object::IngressClassParameters(x) => &x.metadata,
        }
    }

    /// `Kind namespace/name` (or `Kind name` when cluster-scoped).
    pub fn reference(&self) -> ObjectRef {
        let m = self.metadata();
        ObjectRef::new(
            self.kind(),
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
        )
    }
}

/// Kind and name only: a Secret's data never reaches a log.
impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reference())
    }
}

/// What one file holds.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Each object with the (1-based) document it came from.
    pub objects: Vec<(usize, Object)>,
    /// Problems that do not keep the file out (an object of an API version Portico does not read).
    pub warnings: Vec<Problem>,
}

#[derive(Default)]
struct FileState {
    /// SHA-256 of the bytes last read (not the bytes: 10,000 objects of YAML would stay in
    /// memory for nothing); `None` before the first read.
    digest: Option<[u8; 32]>,
    /// Size, inode, and modification and change times at the last read: the periodic safety
    /// net reads a file again only when one of them moved.
    stamp: Option<Stamp>,
    /// The last version that parsed.
    good: Parsed,
    /// Why the current version is not applied.
    problem: Option<Problem>,
}

/// What `stat` says of a file, to tell cheaply whether it may have changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            len: m.len(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// How much of a file a scan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanMode {
    /// Every file's bytes (after a change notification: a rewrite may keep size and times).
    Full,
    /// Only files whose size, inode or times moved (the periodic safety net: a `stat` per
    /// file instead of reading and hashing all of them every few seconds).
    Stat,
}

/// The files of a directory and what they hold.
pub struct ManifestDir {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// The certificates of the Secrets in `files`, which keep only their digests.
    certs: SecretCertificates,
}

impl fmt::Debug for ManifestDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManifestDir")
            .field("dir", &self.dir)
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn is_manifest(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) && path.is_file()
}

fn shown_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl ManifestDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ManifestDir {
            dir: dir.into(),
            files: BTreeMap::new(),
            certs: SecretCertificates::default(),
        }
    }

    /// Reads the directory again, parsing only files whose bytes changed. `Ok(true)` when
    /// anything changed (a file added, edited or removed).
    pub fn scan(&mut self) -> std::io::Result<bool> {
        self.scan_with(ScanMode::Full)
    }

    /// [`scan`](Self::scan), reading only what `mode` says.
    pub fn scan_with(&mut self, mode: ScanMode) -> std::io::Result<bool> {
        let reading = self.read(mode, &Reading::default())?;
        Ok(self.apply(reading))
    }

    /// Like [`scan`](Self::scan), but when something changed, reads again after
    /// [`DEBOUNCE`] until nothing changes any more (at most a few times), and only then
    /// takes what it read: a file caught half-written (`open` truncates before `write`) is
    /// never taken, so it can neither be published alone nor replace a file's last good
    /// version when the finished file does not parse. Blocks.
    pub fn scan_settled(&mut self, mode: ScanMode) -> std::io::Result<bool> {
        let mut pending = self.read(mode, &Reading::default())?;
        if pending.is_empty() {
            return Ok(false);
        }
        for _ in 0..SETTLE_ROUNDS {
            std::thread::sleep(DEBOUNCE);
            let newer = self.read(ScanMode::Full, &pending)?;
            if newer.is_empty() {
                break;
            }
            pending.merge(newer, &self.files);
        }
        Ok(self.apply(pending))
    }

    /// What the directory holds that differs from what is known: the files taken, with
    /// `pending` (an earlier reading not taken yet) over them. Changes nothing.
    fn read(&self, mode: ScanMode, pending: &Reading) -> std::io::Result<Reading> {
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if is_manifest(&path) {
                seen.push(path);
            }
        }
        let known = |p: &PathBuf| {
            pending.changed.contains_key(p)
                || (self.files.contains_key(p) && !pending.gone.contains(p))
        };
        let mut reading = Reading {
            gone: self
                .files
                .keys()
                .chain(pending.changed.keys())
                .filter(|p| known(p) && !seen.contains(p))
                .cloned()
                .collect(),
            changed: BTreeMap::new(),
        };
        reading.gone.sort();
        reading.gone.dedup();
        for path in seen {
            let (digest, stamp) = match pending.changed.get(&path) {
                Some(c) => (Some(c.digest), c.stamp),
                None if known(&path) => self
                    .files
                    .get(&path)
                    .map_or((None, None), |f| (f.digest, f.stamp)),
                None => (None, None),
            };
            let now = Stamp::of(&path);
            if mode == ScanMode::Stat && now.is_some() && stamp == now {
                continue;
            }
            let text = match std::fs::read(&path) {
                Ok(t) => t,
                Err(e) => {
                    debug!(file = %path.display(), error = %e, "file vanished while reading");
                    continue;
                }
            };
            let new_digest: [u8; 32] = sha2::Sha256::digest(&text).into();
            if digest == Some(new_digest) {
                continue;
            }
            let parsed = parse_file(&shown_name(&path), &String::from_utf8_lossy(&text));
            reading.changed.insert(
                path,
                Changed {
                    stamp: now,
                    digest: new_digest,
                    parsed,
                },
            );
        }
        Ok(reading)
    }

    /// Takes a reading: files gone are dropped, changed files that parse replace their last
    /// good version, and those that do not keep it, with their problem. Whether anything
    /// changed.
    fn apply(&mut self, reading: Reading) -> bool {
        let mut changed = false;
        for path in reading.gone {
            if let Some(state) = self.files.remove(&path) {
                release(&mut self.certs, &state.good);
                changed = true;
            }
        }
        for (path, c) in reading.changed {
            changed = true;
            let file = shown_name(&path);
            let state = self.files.entry(path).or_default();
            state.stamp = c.stamp;
            state.digest = Some(c.digest);
            match c.parsed {
                Ok(parsed) => {
                    if state.problem.take().is_some() {
                        info!(file = %file, "manifest file fixed");
                    }
                    let parsed = keep(parsed, &mut self.certs);
                    release(&mut self.certs, &std::mem::replace(&mut state.good, parsed));
                }
                Err(problem) => {
                    warn!(%problem, "manifest file not applied; its last good version keeps serving");
                    state.problem = Some(*problem);
                }
            }
        }
        changed
    }

    /// Everything the directory holds now, as translate takes it. An object defined in two
    /// files is taken from the first (by file name) and reported in the other.
    pub fn inputs(&mut self) -> Inputs {
        let mut inputs = Inputs::default();
        let mut defined: BTreeMap<ObjectRef, String> = BTreeMap::new();
        for (path, state) in &self.files {
            let file = shown_name(path);
            for (document, o) in &state.good.objects {
                let reference = o.reference();
                if let Some(first) = defined.get(&reference) {
                    inputs.problems.push(Problem::new(
                        ObjectRef::new("File", "", &file),
                        Reason::DuplicateObject {
                            document: *document,
                            object: reference.to_string(),
                            first: first.clone(),
                        },
                    ));
                    continue;
                }
                defined.insert(reference, file.clone());
                match o {
                    Object::Ingress(x) => inputs.ingresses.push(x.clone()),
                    Object::IngressClass(x) => inputs.ingress_classes.push(x.clone()),
                    Object::Service(x) => inputs.services.push(x.clone()),
                    Object::EndpointSlice(x) => inputs.endpoint_slices.push(x.clone()),
                    Object::Secret(x) => inputs.secrets.push(x.clone()),
                    Object::RoutePolicy(x) => inputs.route_policies.push(x.clone()),
                    Object::IngressClassParameters(x) => inputs.class_parameters.push(x.clone()),
                }
            }
            inputs.problems.extend(state.good.warnings.iter().cloned());
            inputs.problems.extend(state.problem.clone());
        }
        inputs.certificates = Arc::new(
            inputs
                .secrets
                .iter()
                .map(|s| (crate::inputs::secret_key(s), self.certs.get(s)))
                .collect(),
        );
        inputs.ca_bundles = Arc::new(crate::inputs::ca_bundles(&inputs.secrets));
        inputs
    }
}

/// A reading of the directory not taken yet: files gone, and files whose bytes changed.
#[derive(Default)]
struct Reading {
    gone: Vec<PathBuf>,
    changed: BTreeMap<PathBuf, Changed>,
}

/// A file's new bytes: their digest, the file's stamp, and what they parse to.
struct Changed {
    stamp: Option<Stamp>,
    digest: [u8; 32],
    parsed: Result<Parsed, Box<Problem>>,
}

impl Reading {
    fn is_empty(&self) -> bool {
        self.gone.is_empty() && self.changed.is_empty()
    }

    /// A later reading over this one: its files gone and changed win.
    fn merge(&mut self, later: Reading, taken: &BTreeMap<PathBuf, FileState>) {
        for path in later.gone {
            self.changed.remove(&path);
            if taken.contains_key(&path) && !self.gone.contains(&path) {
                self.gone.push(path);
            }
        }
        for (path, c) in later.changed {
            self.gone.retain(|p| *p != path);
            self.changed.insert(path, c);
        }
    }
}

/// A file's objects as the directory keeps them: each packed by a clone (see
/// [`packed`]), each Secret's certificate parsed into `certs` and only its digest kept.
fn keep(parsed: Parsed, certs: &mut SecretCertificates) -> Parsed {
    let objects = parsed
        .objects
        .into_iter()
        .map(|(document, object)| {
            let object = match object {
                Object::Secret(x) => {
                    let mut secret = Arc::unwrap_or_clone(x);
                    certs.admit(&mut secret);
                    Object::Secret(packed(secret))
                }
                Object::Ingress(x) => Object::Ingress(packed(Arc::unwrap_or_clone(x))),
                Object::IngressClass(x) => Object::IngressClass(packed(Arc::unwrap_or_clone(x))),
                Object::Service(x) => Object::Service(packed(Arc::unwrap_or_clone(x))),
                Object::EndpointSlice(x) => Object::EndpointSlice(packed(Arc::unwrap_or_clone(x))),
                Object::RoutePolicy(x) => Object::RoutePolicy(packed(Arc::unwrap_or_clone(x))),
                Object::IngressClassParameters(x) => {
                    Object::IngressClassParameters(packed(Arc::unwrap_or_clone(x)))
                }
            };
            (document, object)
        })
        .collect();
    Parsed {
        objects,
        warnings: parsed.warnings,
    }
}

/// A file's last good version is gone: its Secrets no longer hold their certificates.
fn release(certs: &mut SecretCertificates, parsed: &Parsed) {
    for (_, object) in &parsed.objects {
        if let Object::Secret(secret) = object {
            certs.release(secret);
        }
    }
}

/// One YAML document of a file.
struct Document {
    /// 1-based, counted as YAML does (a `---` starts one; a comment-only preamble is none).
    index: usize,
    /// The file's line number of the document's first line.
    first_line: usize,
    text: String,
}

fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    })
}

/// Splits a file into its YAML documents, keeping each one's position for error reports.
fn documents(text: &str) -> Vec<Document> {
    struct Chunk {
        first_line: usize,
        text: String,
        /// Opened by `---` (so a document even when empty).
        explicit: bool,
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut current = Chunk {
        first_line: 1,
        text: String::new(),
        explicit: false,
    };
    for (i, line) in text.lines().enumerate() {
        let start = line
            .strip_prefix("---")
            .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
        let end = line == "..." || line.starts_with("... ");
        if let Some(rest) = start {
            // The marker's own line stays in the document (as an empty line or its rest), so
            // the document's line numbers are the file's.
            let next = Chunk {
                first_line: i + 1,
                text: format!("{rest}\n"),
                explicit: true,
            };
            if !current.explicit && !has_content(&current.text) {
                current = next;
            } else {
                chunks.push(std::mem::replace(&mut current, next));
            }
        } else if end {
            let next = Chunk {
                first_line: i + 2,
                text: String::new(),
                explicit: false,
            };
            chunks.push(std::mem::replace(&mut current, next));
        } else {
            current.text.push_str(line);
            current.text.push('\n');
        }
    }
    if current.explicit || has_content(&current.text) {
        chunks.push(current);
    }
    chunks
        .into_iter()
        .enumerate()
        .filter(|(_, c)| has_content(&c.text))
        .map(|(i, c)| Document {
            index: i + 1,
            first_line: c.first_line,
            text: c.text,
        })
        .collect()
}

/// Where a typed object is decoded from: the document's text (errors carry a line) or a
/// value (a `List` item).
enum Source<'a> {
    Text(&'a str),
    Value(serde_yaml::Value),
}

impl Source<'_> {
    fn decode<K: DeserializeOwned>(self) -> Result<K, serde_yaml::Error> {
        match self {
            Source::Text(t) => serde_yaml::from_str(t),
            Source::Value(v) => serde_yaml::from_value(v),
        }
    }
}

/// What a document (or List item) turned out to be.
enum Decoded {
    Object(Object),
    /// A kind Portico does not read.
    Ignored,
    /// A kind Portico reads, under an API version it does not.
    OtherVersion {
        expected: &'static str,
    },
}

/// The API version Portico reads each kind in.
fn expected_version(kind: &str) -> Option<&'static str> {
    match kind {
        "Ingress" | "IngressClass" => Some("networking.k8s.io/v1"),
        "Service" | "Secret" => Some("v1"),
        "EndpointSlice" => Some("discovery.k8s.io/v1"),
        "RoutePolicy" | "IngressClassParameters" => Some("portico.dev/v1alpha1"),
        _ => None,
    }
}

/// Is `api_version` one of Kubernetes' own groups (so a kind name there means the real kind,
/// not a custom resource that happens to share it, like Knative's `Service`)?
fn is_kubernetes_group(api_version: &str) -> bool {
    match api_version.split_once('/') {
        None => true,
        Some((group, _)) => {
            group == "extensions" || group.ends_with(".k8s.io") || group == portico_crds::GROUP
        }
    }
}

/// Why a document did not decode: the message, and the line within the document if known.
struct DecodeError {
    message: String,
    line: Option<usize>,
}

impl From<serde_yaml::Error> for DecodeError {
    fn from(e: serde_yaml::Error) -> Self {
        DecodeError {
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        }
    }
}

fn decode(api_version: &str, kind: &str, source: Source<'_>) -> Result<Decoded, DecodeError> {
    let Some(expected) = expected_version(kind) else {
        return Ok(Decoded::Ignored);
    };
    if api_version != expected {
        return Ok(if is_kubernetes_group(api_version) {
            Decoded::OtherVersion { expected }
        } else {
            Decoded::Ignored
        });
    }
    let object = match kind {
        "Ingress" => {
            let mut x: Ingress = source.decode()?;
            default_namespace(&mut x.metadata);
            Object::Ingress(Arc::new(x))
        }
        "IngressClass" => Object::IngressClass(Arc::new(source.decode()?)),
        "Service" => {
            let mut x: Service = source.decode()?;
            default_namespace(&mut x.metadata);
            Object::Service(Arc::new(x))
        }
        "EndpointSlice" => {
            let mut x: EndpointSlice = source.decode()?;
            default_namespace(&mut x.metadata);
            Object::EndpointSlice(Arc::new(x))
        }
        "RoutePolicy" => {
            let mut x: RoutePolicy = source.decode()?;
            default_namespace(&mut x.metadata);
            Object::RoutePolicy(Arc::new(x))
        }
        "IngressClassParameters" => Object::IngressClassParameters(Arc::new(source.decode()?)),
        _ => {
            let mut x: Secret = source.decode()?;
            default_namespace(&mut x.metadata);
            // As the API server does: stringData is merged into data, and wins.
            if let Some(sd) = x.string_data.take() {
                let data = x.data.get_or_insert_with(BTreeMap::new);
                for (k, v) in sd {
                    data.insert(k, ByteString(v.into_bytes()));
                }
            }
            Object::Secret(Arc::new(x))
        }
    };
    if object.metadata().name.as_deref().unwrap_or("").is_empty() {
        return Err(DecodeError {
            message: format!("{kind} without metadata.name"),
            line: None,
        });
    }
    Ok(Decoded::Object(object))
}

fn default_namespace(meta: &mut ObjectMeta) {
    if meta.namespace.as_deref().unwrap_or("").is_empty() {
        meta.namespace = Some("default".to_string());
    }
}

/// `apiVersion` and `kind` of a value, or why it is not a Kubernetes object.
fn type_of(value: &serde_yaml::Value) -> Result<(&str, &str), &'static str> {
    if !value.is_mapping() {
        return Err("not a Kubernetes object (a mapping with apiVersion and kind)");
    }
    let field = |k: &str| {
        value
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    match (field("apiVersion"), field("kind")) {
        (Some(a), Some(k)) => Ok((a, k)),
        _ => Err("apiVersion and kind are required"),
    }
}

/// Parses one file's text; every document must be valid for the file to count.
pub fn parse_file(file: &str, text: &str) -> Result<Parsed, Box<Problem>> {
    let mut parsed = Parsed::default();
    for doc in documents(text) {
        let fail = |line: Option<usize>, message: String| {
            Box::new(Problem::new(
                ObjectRef::new("File", "", file),
                Reason::Manifest {
                    document: doc.index,
                    line,
                    message,
                },
            ))
        };
        let located = |e: &serde_yaml::Error| e.location().map(|l| doc.first_line + l.line() - 1);
        let value: serde_yaml::Value =
            serde_yaml::from_str(&doc.text).map_err(|e| fail(located(&e), e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let (api_version, kind) =
            type_of(&value).map_err(|why| fail(Some(doc.first_line), why.to_string()))?;
        let is_list = kind == "List" || (kind.ends_with("List") && value.get("items").is_some());
        let mut decoded = Vec::new();
        if is_list {
            let items = value
                .get("items")
                .and_then(|i| i.as_sequence())
                .cloned()
                .unwrap_or_default();
            for (n, item) in items.into_iter().enumerate() {
                let item_fail =
                    |why: String| fail(Some(doc.first_line), format!("item {}: {why}", n + 1));
                let (a, k) = type_of(&item).map_err(|why| item_fail(why.to_string()))?;
                let (a, k) = (a.to_string(), k.to_string());
                let d = decode(&a, &k, Source::Value(item)).map_err(|e| item_fail(e.message))?;
                decoded.push((a, k, d));
            }
        } else {
            // Decoding the text again (not the value) gives type errors their line.
            let d = decode(api_version, kind, Source::Text(&doc.text)).map_err(|e| {
                let line = e.line.map_or(doc.first_line, |l| doc.first_line + l - 1);
                fail(Some(line), e.message)
            })?;
            decoded.push((api_version.to_string(), kind.to_string(), d));
        }
        for (api_version, kind, d) in decoded {
            match d {
                Decoded::Object(o) => parsed.objects.push((doc.index, o)),
                Decoded::Ignored => {
                    debug!(file, %api_version, %kind, "ignoring an object of a kind Portico does not read");
                }
                Decoded::OtherVersion { expected } => parsed.warnings.push(Problem::new(
                    ObjectRef::new("File", "", file),
                    Reason::UnsupportedApiVersion {
                        document: doc.index,
                        kind,
                        api_version,
                        expected,
                    },
                )),
            }
        }
    }
    Ok(parsed)
}

/// Reads `dir` once: its inputs, whatever problems its files have.
pub fn load_once(dir: &Path) -> std::io::Result<Inputs> {
    let mut d = ManifestDir::new(dir);
    d.scan()?;
    Ok(d.inputs())
}

/// Does an event of this kind say a file's content may have changed? (Not an open, a read or
/// the close of a file opened for reading.)
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

/// Watches `dir` and sends new inputs on `tx` whenever its files change, until `tx` has no
/// receiver left ([`SourceError::Closed`]). The first inputs are sent once the directory could
/// be read (until then Portico is not ready); after that, only changes are sent. Reading and
/// certificate parsing run on the blocking pool.
pub async fn run(dir: PathBuf, tx: watch::Sender<Arc<Inputs>>) -> Result<(), SourceError> {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Opening and reading a file are events too, and Portico's own reads would wake it
        // again and again: only writes, creations, removals and renames count.
        if res.is_ok_and(|ev| changes_content(&ev.kind)) {
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
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + RESCAN, RESCAN);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut mode = ScanMode::Full;
    loop {
        if !watching {
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => watching = true,
                Err(e) => {
                    debug!(dir = %dir.display(), error = %e, "cannot watch the directory yet")
                }
            }
        }
        let first = !sent_once;
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = manifests
                .scan_settled(mode)
                .map(|changed| (changed || first).then(|| manifests.inputs()));
            (manifests, result)
        })
        .await
        .map_err(|e| SourceError::Reader(e.to_string()))?;
        manifests = back;
        match result {
            Ok(Some(inputs)) => {
                debug!(
                    ingresses = inputs.ingresses.len(),
                    services = inputs.services.len(),
                    endpoint_slices = inputs.endpoint_slices.len(),
                    secrets = inputs.secrets.len(),
                    problems = inputs.problems.len(),
                    "manifests read"
                );
                tx.send(Arc::new(inputs)).map_err(|_| SourceError::Closed)?;
                sent_once = true;
            }
            Ok(None) => {}
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
                mode = ScanMode::Full;
            }
            _ = tick.tick() => mode = if watching { ScanMode::Stat } else { ScanMode::Full },
            _ = tx.closed() => return Err(SourceError::Closed),
        }
    }
}

#[cfg(test)]
mod tests;
