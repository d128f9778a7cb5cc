//! The manifest source: parsing, positions of errors, last good versions, watching.

use super::*;

const SVC: &str =
    "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n";

fn objects(text: &str) -> Vec<Object> {
    parse_file("f.yaml", text)
        .unwrap()
        .objects
        .into_iter()
        .map(|(_, o)| o)
        .collect()
}

fn failure(text: &str) -> (usize, Option<usize>, String) {
    let p = parse_file("f.yaml", text).unwrap_err();
    assert_eq!(p.object.to_string(), "File f.yaml");
    match p.reason {
        Reason::Manifest {
            document,
            line,
            message,
        } => (document, line, message),
        other => panic!("{other}"),
    }
}

#[test]
fn reads_multi_document_files_and_lists() {
    let text = format!(
        "# comment\n{SVC}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ignored\n---\n\
         apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: other\n    namespace: team\n"
    );
    let objs = objects(&text);
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
fn reads_every_kind_and_defaults_namespaces_except_for_ingress_classes() {
    let text = "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: i}
spec:
  rules:
  - host: a.com
    http:
      paths:
      - path: /
        backend: {service: {name: web, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portico}
spec: {controller: portico.dev/ingress-controller}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1]}]
ports: [{port: 8080}]
---
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: team}
type: kubernetes.io/tls
data: {a: ZA==}
";
    let objs = objects(text);
    let refs: Vec<String> = objs.iter().map(|o| o.reference().to_string()).collect();
    assert_eq!(
        refs,
        vec![
            "Ingress default/i",
            "IngressClass portico",
            "EndpointSlice default/web-1",
            "Secret team/s"
        ]
    );
    // A path without pathType parses (translate treats it as ImplementationSpecific).
    let Object::Ingress(i) = &objs[0] else {
        panic!()
    };
    let rules = i.spec.as_ref().unwrap().rules.as_ref().unwrap();
    let path = &rules[0].http.as_ref().unwrap().paths[0];
    assert_eq!(path.path_type, "");
}

#[test]
fn reports_document_and_line_of_syntax_errors() {
    let text = format!("{SVC}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [broken\n");
    let (document, line, _) = failure(&text);
    assert_eq!(document, 2);
    assert!(matches!(line, Some(l) if l >= 11), "{line:?}");
}

#[test]
fn reports_the_line_of_type_errors() {
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\nspec:\n  rules: 7\n";
    let (document, line, message) = failure(text);
    assert_eq!(document, 2);
    assert_eq!(line, Some(11), "{message}");
}

#[test]
fn counts_documents_as_yaml_does() {
    // A leading `---` opens the first document; an empty one between markers still counts.
    let text =
        format!("# header\n---\n{SVC}---\n---\napiVersion: v1\nkind: Service\nmetadata: 7\n");
    let (document, line, _) = failure(&text);
    assert_eq!(document, 3);
    assert_eq!(line, Some(14));
    // Content on the marker line is part of its document.
    let objs = objects("--- {apiVersion: v1, kind: Service, metadata: {name: a}}\n");
    assert_eq!(objs.len(), 1);
}

#[test]
fn refuses_documents_that_are_not_objects() {
    for (text, want) in [
        ("- a\n- b\n", "not a Kubernetes object"),
        ("metadata:\n  name: a\n", "apiVersion and kind"),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {}\n",
            "metadata.name",
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- just a string\n",
            "item 1: not a Kubernetes object",
        ),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: '!!not base64'}\n",
            "",
        ),
    ] {
        let (_, _, message) = failure(text);
        assert!(message.contains(want), "{text}: {message}");
    }
    // Empty documents and comment-only files hold nothing, and are fine.
    assert!(objects("---\n# nothing\n---\n~\n").is_empty());
    assert!(objects("").is_empty());
}

#[test]
fn other_api_versions_of_read_kinds_are_reported_without_failing_the_file() {
    let text = format!(
        "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: old\n---\n{SVC}---\n\
         apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: kn\n"
    );
    let parsed = parse_file("f.yaml", &text).unwrap();
    assert_eq!(parsed.objects.len(), 1);
    assert!(
        matches!(&parsed.warnings[..], [p] if matches!(&p.reason,
            Reason::UnsupportedApiVersion { document: 1, kind, api_version, .. }
                if kind == "Ingress" && api_version == "extensions/v1beta1")),
        "{:?}",
        parsed.warnings
    );
}

#[test]
fn merges_string_data() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  a: b\n  c: e\ndata:\n  c: ZA==\n";
    let objs = objects(text);
    let Object::Secret(s) = &objs[0] else {
        panic!()
    };
    let data = s.data.as_ref().unwrap();
    assert_eq!(data["a"].0, b"b");
    assert_eq!(data["c"].0, b"e", "stringData wins, as in the API server");
    assert!(s.string_data.is_none());
    assert_eq!(format!("{:?}", objs[0]), "Secret default/s");
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

#[test]
fn a_half_written_file_seen_while_settling_never_replaces_the_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, SVC).unwrap();
    let mut m = ManifestDir::new(dir.path());
    assert!(m.scan().unwrap());

    // An editor truncates the file, then writes a version that does not parse; a file that
    // appears and vanishes meanwhile leaves nothing behind.
    std::fs::write(&path, "").unwrap();
    std::fs::write(dir.path().join("tmp.yaml"), SVC).unwrap();
    let mut pending = m.read(ScanMode::Full, &Reading::default()).unwrap();
    assert_eq!(pending.changed.len(), 2);
    assert!(
        pending.changed[&path]
            .parsed
            .as_ref()
            .unwrap()
            .objects
            .is_empty(),
        "the truncated file parses, to nothing"
    );
    std::fs::write(&path, "kind: [").unwrap();
    std::fs::remove_file(dir.path().join("tmp.yaml")).unwrap();
    let newer = m.read(ScanMode::Full, &pending).unwrap();
    pending.merge(newer, &m.files);
    assert!(
        m.read(ScanMode::Full, &pending).unwrap().is_empty(),
        "settled"
    );
    assert!(pending.gone.is_empty() && pending.changed.len() == 1);

    assert!(m.apply(pending));
    let inputs = m.inputs();
    assert_eq!(
        inputs.services.len(),
        1,
        "the last good version still serves"
    );
    assert_eq!(inputs.problems.len(), 1, "{:?}", inputs.problems);
    assert!(!m.scan().unwrap(), "nothing left to take");
}

#[test]
fn a_file_broken_from_the_start_is_reported_and_others_still_count() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "kind: [").unwrap();
    std::fs::write(dir.path().join("good.yml"), SVC).unwrap();
    let inputs = load_once(dir.path()).unwrap();
    assert_eq!(inputs.services.len(), 1);
    assert!(
        matches!(&inputs.problems[..], [p] if p.object.name == "bad.yaml"),
        "{:?}",
        inputs.problems
    );
}

#[test]
fn skips_hidden_files_subdirectories_and_other_extensions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), SVC).unwrap();
    std::fs::write(dir.path().join("svc.yaml~"), SVC).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/svc.yaml"), SVC).unwrap();
    std::fs::create_dir(dir.path().join("dir.yaml")).unwrap();
    let inputs = load_once(dir.path()).unwrap();
    assert!(inputs.services.is_empty());
    assert!(inputs.problems.is_empty());
}

#[test]
fn follows_symbolic_links_like_a_configmap_volume() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("..2024_01_01");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("svc.yaml"), SVC).unwrap();
    std::os::unix::fs::symlink("..2024_01_01", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/svc.yaml", dir.path().join("svc.yaml")).unwrap();
    let inputs = load_once(dir.path()).unwrap();
    assert_eq!(inputs.services.len(), 1);
}

#[test]
fn an_empty_file_changes_nothing_after_its_first_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.yaml"), "").unwrap();
    let mut m = ManifestDir::new(dir.path());
    assert!(m.scan().unwrap(), "a new file");
    assert!(!m.scan().unwrap(), "still the same empty file");
}

#[test]
fn an_object_defined_twice_is_taken_from_the_first_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), SVC).unwrap();
    std::fs::write(dir.path().join("b.yaml"), format!("{SVC}---\n{SVC}")).unwrap();
    let inputs = load_once(dir.path()).unwrap();
    assert_eq!(inputs.services.len(), 1);
    let shown: Vec<String> = inputs.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "File b.yaml: document 1: Service default/web is also defined in a.yaml; this definition is ignored",
            "File b.yaml: document 2: Service default/web is also defined in a.yaml; this definition is ignored",
        ]
    );
}

fn tls_secret_yaml(name: &str, host: &str) -> String {
    let (crt, key) = crate::inputs::tests::pem(host);
    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(crt),
        indent(key)
    )
}

#[test]
fn secrets_become_certificates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), tls_secret_yaml("tls", "a.test")).unwrap();
    let inputs = load_once(dir.path()).unwrap();
    let c = inputs.certificates[&("default".into(), "tls".into())]
        .as_ref()
        .unwrap();
    assert!(c.covers("a.test"));
}

#[test]
fn the_directory_keeps_digests_and_lets_go_of_certificates_with_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut manifests = ManifestDir::new(dir.path());
    let same = tls_secret_yaml("one", "a.test");
    std::fs::write(dir.path().join("a.yaml"), &same).unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        same.replace("name: one", "name: two"),
    )
    .unwrap();
    manifests.scan().unwrap();
    let inputs = manifests.inputs();
    let data = inputs.secrets[0].data.as_ref().unwrap();
    assert!(
        !data.contains_key(crate::inputs::TLS_KEY),
        "no key material kept"
    );
    assert_eq!(manifests.certs.len(), 1, "one content, parsed once");
    let one = inputs.certificates[&("default".into(), "one".into())].clone();
    let two = inputs.certificates[&("default".into(), "two".into())].clone();
    assert!(Arc::ptr_eq(one.as_ref().unwrap(), two.as_ref().unwrap()));

    // A rotated file is parsed again; the other file still holds the first content.
    std::fs::write(dir.path().join("a.yaml"), tls_secret_yaml("one", "b.test")).unwrap();
    manifests.scan().unwrap();
    let inputs = manifests.inputs();
    assert!(inputs.certificates[&("default".into(), "one".into())]
        .as_ref()
        .unwrap()
        .covers("b.test"));
    assert_eq!(manifests.certs.len(), 2);

    // A broken edit keeps the last good version and its certificate.
    std::fs::write(dir.path().join("a.yaml"), "kind: [").unwrap();
    manifests.scan().unwrap();
    assert_eq!(manifests.certs.len(), 2);

    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    manifests.scan().unwrap();
    assert_eq!(manifests.certs.len(), 1);
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    manifests.scan().unwrap();
    assert!(manifests.certs.is_empty(), "nothing held for nothing");
    assert!(manifests.inputs().certificates.is_empty());
}

/// Waits for the next inputs, at most `within`.
async fn next(rx: &mut watch::Receiver<Arc<Inputs>>, within: Duration) -> Option<Arc<Inputs>> {
    match tokio::time::timeout(within, rx.changed()).await {
        Ok(Ok(())) => Some(rx.borrow_and_update().clone()),
        _ => None,
    }
}

#[tokio::test]
async fn run_sends_changes_within_a_second_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), SVC).unwrap();
    let (tx, mut rx) = watch::channel(Arc::new(Inputs::default()));
    let task = tokio::spawn(run(dir.path().to_path_buf(), tx));

    let first = next(&mut rx, Duration::from_secs(2)).await.unwrap();
    assert_eq!(first.services.len(), 1);

    // An edit is live well within a second.
    let edited = SVC.replace("name: web", "name: api");
    let started = std::time::Instant::now();
    std::fs::write(dir.path().join("a.yaml"), &edited).unwrap();
    let inputs = next(&mut rx, Duration::from_secs(1)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        inputs.services[0].metadata.name.as_deref(),
        Some("api"),
        "{inputs:?}"
    );

    // A new file, then a broken one (reported; the rest keeps serving).
    std::fs::write(dir.path().join("b.yaml"), SVC).unwrap();
    let inputs = next(&mut rx, Duration::from_secs(1)).await.unwrap();
    assert_eq!(inputs.services.len(), 2, "{:?}", inputs.services);
    std::fs::write(dir.path().join("b.yaml"), "kind: [").unwrap();
    let inputs = next(&mut rx, Duration::from_secs(1)).await.unwrap();
    assert_eq!(inputs.services.len(), 2);
    assert_eq!(inputs.problems.len(), 1);

    // Rewriting the same bytes, or touching an unrelated file, sends nothing, even across a
    // periodic rescan.
    std::fs::write(dir.path().join("a.yaml"), &edited).unwrap();
    std::fs::write(dir.path().join("readme.txt"), "hello").unwrap();
    assert!(next(&mut rx, RESCAN + Duration::from_millis(300))
        .await
        .is_none());

    // A removed file is gone within a second.
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let inputs = next(&mut rx, Duration::from_secs(1)).await.unwrap();
    assert_eq!(inputs.services.len(), 1);
    assert!(inputs.problems.is_empty());

    drop(rx);
    let stopped = tokio::time::timeout(Duration::from_secs(3), task).await;
    assert!(
        matches!(stopped, Ok(Ok(Err(SourceError::Closed)))),
        "stops once nobody listens"
    );
}

#[tokio::test]
async fn run_waits_for_a_missing_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("later");
    let (tx, mut rx) = watch::channel(Arc::new(Inputs::default()));
    let task = tokio::spawn(run(dir.clone(), tx));
    assert!(next(&mut rx, Duration::from_millis(300)).await.is_none());
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), SVC).unwrap();
    let inputs = next(&mut rx, RESCAN + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(inputs.services.len(), 1);
    task.abort();
}

#[test]
fn the_periodic_check_reads_only_files_whose_stat_moved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, SVC).unwrap();
    let mut m = ManifestDir::new(dir.path());
    assert!(m.scan_with(ScanMode::Stat).unwrap(), "a new file is read");
    assert!(!m.scan_with(ScanMode::Stat).unwrap(), "nothing moved");
    let renamed = SVC.replace("name: web", "name: www");
    assert_eq!(renamed.len(), SVC.len(), "same size on purpose");
    std::fs::write(&path, &renamed).unwrap();
    assert!(
        m.scan_with(ScanMode::Stat).unwrap(),
        "a rewrite of the same size moves the change time"
    );
    assert_eq!(m.inputs().services[0].metadata.name.as_deref(), Some("www"));
    std::fs::remove_file(&path).unwrap();
    assert!(
        m.scan_with(ScanMode::Stat).unwrap(),
        "a removed file is seen"
    );
}

#[test]
fn reading_a_file_is_not_a_change() {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
    use notify::EventKind;
    assert!(!changes_content(&EventKind::Access(AccessKind::Open(
        AccessMode::Any
    ))));
    assert!(!changes_content(&EventKind::Access(AccessKind::Close(
        AccessMode::Read
    ))));
    assert!(changes_content(&EventKind::Access(AccessKind::Close(
        AccessMode::Write
    ))));
    assert!(changes_content(&EventKind::Modify(ModifyKind::Any)));
    assert!(changes_content(&EventKind::Create(CreateKind::File)));
}
