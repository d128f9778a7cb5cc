//! Backend protocols (`backend-protocol`, `proxy-ssl-*`): HTTPS, h2c, HTTP/2 over TLS and
//! gRPC end to end, with real TLS and gRPC servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portico_e2e::manifests::{backend, ingress};
use portico_e2e::{echo, echo_json, write, Portico};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn nginx(key: &str) -> String {
    format!("{NGINX}{key}")
}

/// A CA, and a backend certificate it signed for `names`.
struct Pki {
    ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf_pem: leaf.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
    }
}

/// An echo backend over TLS with `pki`'s backend certificate, offering h2 and http/1.1.
async fn tls_echo(service: &str, pki: &Pki) -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(pki.leaf_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.leaf_key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(portico_controller::echo::serve_tls_listener(
        listener,
        service.to_string(),
        Arc::new(config),
    ));
    addr
}

fn ca_secret(name: &str, pki: &Pki) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\n\
         type: kubernetes.io/tls\nstringData:\n  ca.crt: |\n{}  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&pki.ca_pem),
        indent(&pki.leaf_pem),
        indent(&pki.leaf_key_pem),
    )
}

#[tokio::test]
async fn https_h2c_and_h2_backends_with_verification_and_sni() {
    let pki = pki(&["web.default.svc", "named.example"]);
    let secure = tls_echo("secure", &pki).await;
    let plain = echo("plain").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "backends.yaml",
        &[
            backend("default", "web", &[secure]),
            backend("default", "plain", &[plain]),
            ca_secret("backend-ca", &pki),
        ]
        .join("---\n"),
    );
    let https = |name: &str, host: &str, extra: &[(&str, &str)]| {
        let mut i = ingress("default", name).annotation(&nginx("backend-protocol"), "HTTPS");
        for (k, v) in extra {
            i = i.annotation(&nginx(k), v);
        }
        i.rule(host, "/", "Prefix", "web").yaml()
    };
    write(
        dir.path(),
        "ingresses.yaml",
        &[
            https("unverified", "unverified.com", &[]),
            https(
                "verified",
                "verified.com",
                &[
                    ("proxy-ssl-verify", "on"),
                    ("proxy-ssl-secret", "backend-ca"),
                ],
            ),
            https(
                "wrong-name",
                "wrong-name.com",
                &[
                    ("proxy-ssl-verify", "on"),
                    ("proxy-ssl-secret", "default/backend-ca"),
                    ("proxy-ssl-name", "other.example"),
                ],
            ),
            https(
                "no-ca",
                "no-ca.com",
                &[("proxy-ssl-verify", "on"), ("proxy-ssl-secret", "missing")],
            ),
            https(
                "sni",
                "sni.com",
                &[
                    ("proxy-ssl-verify", "on"),
                    ("proxy-ssl-secret", "backend-ca"),
                    ("proxy-ssl-name", "named.example"),
                    ("proxy-ssl-server-name", "on"),
                ],
            ),
            ingress("default", "grpcs")
                .annotation(&nginx("backend-protocol"), "GRPCS")
                .rule("h2.com", "/", "Prefix", "web")
                .yaml(),
            ingress("default", "h2c")
                .annotation(&nginx("backend-protocol"), "H2C")
                .rule("h2c.com", "/", "Prefix", "plain")
                .yaml(),
        ]
        .join("---\n"),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let hosts = [
        "unverified.com",
        "verified.com",
        "wrong-name.com",
        "no-ca.com",
        "sni.com",
        "h2.com",
        "h2c.com",
    ];
    let c = p.client(&hosts);
    let get = |host: &str| c.get(p.http_url(host, "/x")).send();

    let j = echo_json(get("unverified.com").await.unwrap()).await;
    assert_eq!(
        (j["tls"].as_bool(), j["version"].as_str()),
        (Some(true), Some("HTTP/1.1"))
    );
    assert_eq!(j["sni"], "", "no SNI unless proxy-ssl-server-name is on");

    let r = get("verified.com").await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "the backend's certificate names web.default.svc"
    );

    assert_eq!(get("wrong-name.com").await.unwrap().status(), 502);
    assert_eq!(
        get("no-ca.com").await.unwrap().status(),
        502,
        "verification without a CA fails closed"
    );
    p.wait_log("backend TLS Secret default/missing", Duration::from_secs(5))
        .await;

    let j = echo_json(get("sni.com").await.unwrap()).await;
    assert_eq!(j["sni"], "named.example");

    let j = echo_json(get("h2.com").await.unwrap()).await;
    assert_eq!(
        (j["tls"].as_bool(), j["version"].as_str()),
        (Some(true), Some("HTTP/2.0"))
    );
    let j = echo_json(get("h2c.com").await.unwrap()).await;
    assert_eq!(
        (j["tls"].as_bool(), j["version"].as_str()),
        (Some(false), Some("HTTP/2.0"))
    );
}

#[tokio::test]
async fn grpc_unary_and_streaming_through_portico() {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("portico.Test", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "b.yaml",
        &backend("default", "grpc", &[grpc_addr]),
    );
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "grpc")
            .annotation(&nginx("backend-protocol"), "GRPC")
            .rule("", "/", "Prefix", "grpc")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", p.http))
        .unwrap()
        .connect()
        .await
        .unwrap();
    unary_and_streaming_health_checks(channel, &reporter, "portico.Test").await;
}

/// An echo backend over TLS that refuses handshakes without a client certificate signed by
/// `pki`'s CA.
async fn mtls_echo(service: &str, pki: &Pki) -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(pki.leaf_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.leaf_key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(portico_controller::echo::serve_tls_listener(
        listener,
        service.to_string(),
        Arc::new(config),
    ));
    addr
}

#[tokio::test]
async fn proxy_ssl_secret_presents_its_client_certificate() {
    let trusted = pki(&["web.default.svc"]);
    let mtls = mtls_echo("mtls", &trusted).await;
    // Another CA's pair, with the same name.
    let other = pki(&["web.default.svc"]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "backends.yaml",
        &[
            backend("default", "web", &[mtls]),
            ca_secret("client-pair", &trusted),
            ca_secret("foreign-pair", &other),
        ]
        .join("---\n"),
    );
    let route = |name: &str, host: &str, protocol: &str, extra: &[(&str, &str)]| {
        let mut i = ingress("default", name).annotation(&nginx("backend-protocol"), protocol);
        for (k, v) in extra {
            i = i.annotation(&nginx(k), v);
        }
        i.rule(host, "/", "Prefix", "web").yaml()
    };
    write(
        dir.path(),
        "ingresses.yaml",
        &[
            route(
                "with-cert",
                "with-cert.com",
                "HTTPS",
                &[
                    ("proxy-ssl-secret", "client-pair"),
                    ("proxy-ssl-verify", "on"),
                ],
            ),
            route(
                "grpcs-cert",
                "grpcs-cert.com",
                "GRPCS",
                &[("proxy-ssl-secret", "client-pair")],
            ),
            route("without", "without.com", "HTTPS", &[]),
            route(
                "foreign",
                "foreign.com",
                "HTTPS",
                &[("proxy-ssl-secret", "foreign-pair")],
            ),
        ]
        .join("---\n"),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let hosts = [
        "with-cert.com",
        "grpcs-cert.com",
        "without.com",
        "foreign.com",
    ];
    let c = p.client(&hosts);
    let get = |host: &str| c.get(p.http_url(host, "/x")).send();
    let j = echo_json(get("with-cert.com").await.unwrap()).await;
    assert_eq!(
        (j["tls"].as_bool(), j["version"].as_str()),
        (Some(true), Some("HTTP/1.1"))
    );
    let j = echo_json(get("grpcs-cert.com").await.unwrap()).await;
    assert_eq!(j["version"], "HTTP/2.0");
    assert_eq!(
        get("without.com").await.unwrap().status(),
        502,
        "no client certificate: the backend refuses the handshake"
    );
    assert_eq!(
        get("foreign.com").await.unwrap().status(),
        502,
        "a certificate from another CA is refused too"
    );
}

/// A TLS stream tonic can serve on (tonic knows TLS streams only with its own TLS features).
struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn grpcs_unary_and_streaming_through_portico() {
    use rustls_pki_types::pem::PemObject;

    // A tonic server over TLS (h2 only), with a certificate for the Service's name.
    let pki = pki(&["grpc.default.svc"]);
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(pki.leaf_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.leaf_key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    let incoming = futures_util::stream::unfold((listener, acceptor), |(l, a)| async move {
        loop {
            let (tcp, _) = l.accept().await.ok()?;
            if let Ok(tls) = a.accept(tcp).await {
                return Some((Ok::<_, std::io::Error>(TlsConn(tls)), (l, a)));
            }
        }
    });
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("portico.Secure", tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "b.yaml",
        &[
            backend("default", "grpc", &[grpc_addr]),
            ca_secret("grpc-ca", &pki),
        ]
        .join("---\n"),
    );
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "grpcs")
            .annotation(&nginx("backend-protocol"), "GRPCS")
            .annotation(&nginx("proxy-ssl-verify"), "on")
            .annotation(&nginx("proxy-ssl-secret"), "grpc-ca")
            .rule("", "/", "Prefix", "grpc")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", p.http))
        .unwrap()
        .connect()
        .await
        .unwrap();
    unary_and_streaming_health_checks(channel, &reporter, "portico.Secure").await;
}

/// A gRPC health check through Portico: unary (the status arrives in trailers, so a success
/// means trailers went through), an unknown service's error status, and a server stream
/// whose update arrives while the call stays open.
async fn unary_and_streaming_health_checks(
    channel: tonic::transport::Channel,
    reporter: &tonic_health::server::HealthReporter,
    name: &str,
) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let mut client = HealthClient::new(channel);
    let check = |name: &str| HealthCheckRequest {
        service: name.to_string(),
    };
    let resp = client.check(check(name)).await.unwrap().into_inner();
    assert_eq!(resp.status, ServingStatus::Serving as i32);
    let err = client.check(check("unknown")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let mut stream = client.watch(check(name)).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    reporter
        .set_service_status(name, tonic_health::ServingStatus::NotServing)
        .await;
    let next = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
}
