//! Client certificates (`auth-tls-*`) end to end: a real TLS client presenting certificates
//! generated here (valid, expired, from another CA, none), per host chosen by SNI; 421 when
//! the Host differs from the SNI on a host asking for certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portico_e2e::manifests::{backend, ingress, tls_secret};
use portico_e2e::{echo, write, Portico};
use portico_proxy::upstream::AnyCertificate;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NGINX: &str = "nginx.ingress.kubernetes.io";

struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_cert(ca: &Ca, cn: &str, expired: bool) -> Identity {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    if expired {
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (vec![cert.der().clone()], key)
}

fn ca_secret(namespace: &str, name: &str, pem: &str) -> String {
    let indent: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         type: Opaque\nstringData:\n  ca.crt: |\n{indent}"
    )
}

/// An HTTP/1.1 answer: status, headers (lowercase names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn echo(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not echo JSON ({e}): {}", self.body))
    }
}

/// `GET path` over TLS to `addr` with `sni`, `Host: host`, the client certificate `id`, and
/// extra request headers.
async fn get(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    id: Option<&Identity>,
    extra: &[(&str, &str)],
) -> Answer {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)));
    let mut config = match id {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut req = format!("GET /path HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut raw)).await;
    // A peer closing without close_notify is fine once the answer is in.
    let _ = read.expect("the answer timed out");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    // The echo answers with a Content-Length; Portico's own pages too.
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

struct Site {
    dir: tempfile::TempDir,
    p: Portico,
    ca: Ca,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let web = echo("web").await;
    let ca = ca("Portico Test Client CA");
    let hosts = [
        "on.example.com",
        "opt.example.com",
        "noca.example.com",
        "page.example.com",
        "broken.example.com",
        "plain.example.com",
    ];
    let (server_secret, _) = tls_secret("default", "server-tls", &hosts);
    write(
        dir.path(),
        "backend.yaml",
        &backend("default", "web", &[web]),
    );
    write(dir.path(), "secrets.yaml", &server_secret);
    write(
        dir.path(),
        "ca.yaml",
        &ca_secret("default", "client-ca", &ca.pem),
    );
    let mtls = |name: &str, host: &str, mode: Option<&str>| {
        let mut i = ingress("default", name)
            .tls(&[host], Some("server-tls"))
            .rule(host, "/", "Prefix", "web")
            .annotation(
                &format!("{NGINX}/auth-tls-secret"),
                if name == "broken" {
                    "default/no-such-ca"
                } else {
                    "default/client-ca"
                },
            );
        if let Some(m) = mode {
            i = i.annotation(&format!("{NGINX}/auth-tls-verify-client"), m);
        }
        i
    };
    let ingresses = [
        mtls("on", "on.example.com", Some("on"))
            .annotation(
                &format!("{NGINX}/auth-tls-pass-certificate-to-upstream"),
                "true",
            )
            .annotation(&format!("{NGINX}/server-alias"), "on-alias.example.net")
            .yaml(),
        mtls("opt", "opt.example.com", Some("optional")).yaml(),
        // No HTTPS redirect of its own: plain HTTP must still not reach it.
        mtls("noredir", "noredir.example.com", Some("on"))
            .annotation(&format!("{NGINX}/ssl-redirect"), "false")
            .yaml(),
        mtls("noca", "noca.example.com", Some("optional_no_ca")).yaml(),
        mtls("page", "page.example.com", None)
            .annotation(
                &format!("{NGINX}/auth-tls-error-page"),
                "https://errors.example.org/mtls",
            )
            .yaml(),
        mtls("broken", "broken.example.com", None).yaml(),
        ingress("default", "plain")
            .tls(&["plain.example.com"], Some("server-tls"))
            .rule("plain.example.com", "/", "Prefix", "web")
            .yaml(),
    ];
    write(dir.path(), "ingress.yaml", &ingresses.join("---\n"));
    let p = Portico::start(dir.path(), &[]).await;
    Site { dir, p, ca }
}

#[tokio::test]
async fn required_certificates() {
    let s = site().await;
    let addr = s.p.https;
    let good = client_cert(&s.ca, "alice", false);
    let expired = client_cert(&s.ca, "old", true);
    let stranger = client_cert(&ca("Some Other CA"), "mallory", false);
    let host = "on.example.com";

    let a = get(
        addr,
        host,
        host,
        Some(&good),
        &[
            ("ssl-client-verify", "FORGED"),
            ("ssl-client-subject-dn", "CN=admin"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.echo();
    assert_eq!(j["headers"]["ssl-client-verify"], "SUCCESS");
    assert_eq!(j["headers"]["ssl-client-subject-dn"], "CN=alice");
    assert_eq!(
        j["headers"]["ssl-client-issuer-dn"],
        "CN=Portico Test Client CA"
    );
    let cert = j["headers"]["ssl-client-cert"].as_str().unwrap();
    assert!(
        cert.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
        "URL-encoded PEM: {cert}"
    );

    let a = get(addr, host, host, None, &[]).await;
    assert_eq!(a.status, 400);
    assert!(
        a.body.contains("No required SSL certificate was sent"),
        "{}",
        a.body
    );
    for (what, id) in [("expired", &expired), ("another CA's", &stranger)] {
        let a = get(addr, host, host, Some(id), &[]).await;
        assert_eq!(a.status, 400, "{what} certificate");
        assert!(a.body.contains("The SSL certificate error"), "{}", a.body);
    }
}

#[tokio::test]
async fn optional_modes_error_page_and_unusable_ca() {
    let s = site().await;
    let addr = s.p.https;
    let good = client_cert(&s.ca, "alice", false);
    let stranger = client_cert(&ca("Some Other CA"), "mallory", false);

    // optional: no certificate passes with NONE; an invalid one is refused.
    let a = get(
        addr,
        "opt.example.com",
        "opt.example.com",
        None,
        &[("ssl-client-verify", "SUCCESS")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.echo();
    assert_eq!(j["headers"]["ssl-client-verify"], "NONE");
    assert!(j["headers"].get("ssl-client-cert").is_none());
    let a = get(
        addr,
        "opt.example.com",
        "opt.example.com",
        Some(&stranger),
        &[],
    )
    .await;
    assert_eq!(a.status, 400);
    let a = get(addr, "opt.example.com", "opt.example.com", Some(&good), &[]).await;
    assert_eq!(a.echo()["headers"]["ssl-client-verify"], "SUCCESS");

    // optional_no_ca: anything passes; the verdict goes upstream.
    let a = get(
        addr,
        "noca.example.com",
        "noca.example.com",
        Some(&stranger),
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.echo()["headers"]["ssl-client-verify"],
        "FAILED:unable to get local issuer certificate"
    );

    // auth-tls-error-page: a redirect instead of the 400.
    let a = get(addr, "page.example.com", "page.example.com", None, &[]).await;
    assert_eq!(a.status, 302);
    assert_eq!(
        a.header("location"),
        Some("https://errors.example.org/mtls")
    );

    // A missing CA Secret: reported, and the host refuses even valid certificates.
    let a = get(
        addr,
        "broken.example.com",
        "broken.example.com",
        Some(&good),
        &[],
    )
    .await;
    assert_eq!(a.status, 503);
    assert!(s.p.logs().contains("no-such-ca"), "{}", s.p.logs());

    // A host without client authentication is not asked for a certificate.
    let a = get(addr, "plain.example.com", "plain.example.com", None, &[]).await;
    assert_eq!(a.status, 200);
    assert!(a.echo()["headers"].get("ssl-client-verify").is_none());
}

#[tokio::test]
async fn host_must_match_sni_on_mtls_hosts() {
    let s = site().await;
    let addr = s.p.https;
    let good = client_cert(&s.ca, "alice", false);
    // A connection opened for a host without client authentication cannot reach one with it.
    let a = get(
        addr,
        "plain.example.com",
        "on.example.com",
        Some(&good),
        &[],
    )
    .await;
    assert_eq!(a.status, 421);
    // Nor one opened for another mTLS host, nor one with no SNI.
    let a = get(addr, "opt.example.com", "on.example.com", Some(&good), &[]).await;
    assert_eq!(a.status, 421);
    let a = get(addr, "127.0.0.1", "on.example.com", Some(&good), &[]).await;
    assert_eq!(a.status, 421);
    // Going the other way is harmless: the target host asks for nothing.
    let a = get(
        addr,
        "on.example.com",
        "plain.example.com",
        Some(&good),
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    // Same host, another letter case and an explicit port: the same host.
    let a = get(
        addr,
        "on.example.com",
        "ON.example.com:443",
        Some(&good),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Plain HTTP never reaches an mTLS host's backend, even where the route does not
    // redirect to HTTPS itself.
    for host in ["on.example.com", "noredir.example.com"] {
        let c = s.p.client(&[host]);
        let r = c.get(s.p.http_url(host, "/x")).send().await.unwrap();
        assert_eq!(r.status(), 308, "{host}");
    }
}

#[tokio::test]
async fn openssl_s_client_gets_the_400() {
    // Another TLS stack: openssl, when installed, without a certificate.
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("openssl not installed; skipping");
        return;
    }
    let s = site().await;
    let addr = s.p.https;
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-connect",
                &addr.to_string(),
                "-servername",
                "on.example.com",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.1\r\nHost: on.example.com\r\nConnection: close\r\n\r\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.contains("No required SSL certificate was sent"),
        "{text}"
    );
}

/// HTTP/2 over one TLS connection opened with `sni` and `id`: the status of `GET /` for each
/// authority in turn (connection reuse, as browsers coalesce).
async fn h2_statuses(
    addr: SocketAddr,
    sni: &str,
    id: Option<&Identity>,
    authorities: &[&str],
) -> Vec<u16> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)));
    let mut config = match id {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for authority in authorities {
        let req = hyper::Request::get(format!("https://{authority}/"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        out.push(resp.status().as_u16());
    }
    out
}

#[tokio::test]
async fn http2_connection_reuse_cannot_skip_the_check() {
    let s = site().await;
    let good = client_cert(&s.ca, "alice", false);
    // Opened for the mTLS host with a valid certificate: that host, then another mTLS host
    // (421: its own check never ran), then a host asking for nothing.
    let got = h2_statuses(
        s.p.https,
        "on.example.com",
        Some(&good),
        &["on.example.com", "opt.example.com", "plain.example.com"],
    )
    .await;
    assert_eq!(got, [200, 421, 200]);
    // Opened for a host without client authentication: the mTLS host is misdirected.
    let got = h2_statuses(
        s.p.https,
        "plain.example.com",
        None,
        &["plain.example.com", "on.example.com", "page.example.com"],
    )
    .await;
    assert_eq!(got, [200, 421, 421]);
}

#[tokio::test]
async fn a_rotated_ca_applies_live() {
    let s = site().await;
    let addr = s.p.https;
    let old = client_cert(&s.ca, "alice", false);
    let next_ca = ca("Next Client CA");
    let new = client_cert(&next_ca, "bob", false);
    assert_eq!(
        get(addr, "on.example.com", "on.example.com", Some(&old), &[])
            .await
            .status,
        200
    );
    assert_eq!(
        get(addr, "on.example.com", "on.example.com", Some(&new), &[])
            .await
            .status,
        400
    );
    write(
        s.dir.path(),
        "ca.yaml",
        &ca_secret("default", "client-ca", &next_ca.pem),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while get(addr, "on.example.com", "on.example.com", Some(&new), &[])
        .await
        .status
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the new CA never applied:\n{}",
            s.p.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = get(addr, "on.example.com", "on.example.com", Some(&old), &[]).await;
    assert_eq!(a.status, 400, "the old CA is no longer trusted");
}

#[tokio::test]
async fn an_alias_is_served_and_checked_like_its_host() {
    let s = site().await;
    let good = client_cert(&s.ca, "alice", false);
    let alias = "on-alias.example.net";
    let a = get(s.p.https, alias, alias, Some(&good), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.echo()["headers"]["ssl-client-verify"], "SUCCESS");
    assert_eq!(get(s.p.https, alias, alias, None, &[]).await.status, 400);
    // The host's certificate does not cover the alias: the default one is served.
    let presented = portico_e2e::tls::handshake(s.p.https, alias).await.unwrap();
    assert_eq!(presented.dns_names, ["portico.invalid"]);
}
