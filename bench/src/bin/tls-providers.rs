//! Full TLS handshakes per second, in memory, with the aws-lc-rs and ring providers: the
//! measurement behind Portico's choice of crypto provider.
//!
//! `cargo run --release -p portico-bench --bin tls-providers [-- SECONDS]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn configs(
    provider: Arc<CryptoProvider>,
    alg: &'static rcgen::SignatureAlgorithm,
    version: &'static rustls::SupportedProtocolVersion,
) -> Option<(Arc<ServerConfig>, Arc<ClientConfig>)> {
    let key = match rcgen::KeyPair::generate_for(alg) {
        Ok(k) => k,
        // rcgen cannot make RSA keys with every backend; openssl can.
        Err(_) => {
            let out = std::process::Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ])
                .output()
                .ok()?;
            let pem = String::from_utf8(out.stdout).ok()?;
            rcgen::KeyPair::from_pem_and_sign_algo(&pem, alg).ok()?
        }
    };
    let cert = rcgen::CertificateParams::new(vec!["bench.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .unwrap();
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = rustls::client::Resumption::disabled();
    Some((Arc::new(server), Arc::new(client)))
}

fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) {
    let mut c =
        ClientConnection::new(client.clone(), ServerName::try_from("bench.test").unwrap()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().unwrap();
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets().unwrap();
        }
    }
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(seconds);
    type MakeProvider = fn() -> CryptoProvider;
    let providers: [(&str, MakeProvider); 2] = [
        ("aws-lc-rs", rustls::crypto::aws_lc_rs::default_provider),
        ("ring", rustls::crypto::ring::default_provider),
    ];
    let keys: [(&str, &'static rcgen::SignatureAlgorithm); 2] = [
        ("ECDSA P-256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("RSA-2048", &rcgen::PKCS_RSA_SHA256),
    ];
    println!("full handshakes per second (client and server in one thread, {seconds} s each)");
    for (key_name, alg) in keys {
        for (version_name, version) in [
            ("TLS1.3", &rustls::version::TLS13),
            ("TLS1.2", &rustls::version::TLS12),
        ] {
            let mut rates = Vec::new();
            for (name, make) in providers {
                let Some((server, client)) = configs(Arc::new(make()), alg, version) else {
                    println!("{key_name:12} {version_name} {name:10} (no key of this type could be generated)");
                    continue;
                };
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < budget {
                    handshake(&server, &client);
                    n += 1;
                }
                let rate = n as f64 / start.elapsed().as_secs_f64();
                rates.push(rate);
                println!("{key_name:12} {version_name} {name:10} {rate:10.0}/s");
            }
            if let [a, r] = rates[..] {
                println!("{key_name:12} {version_name} aws-lc-rs/ring = {:.2}", a / r);
            }
        }
    }
}
