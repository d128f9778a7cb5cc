//! A raw rustls client for looking at what Portico presents in a handshake.

use std::net::SocketAddr;
use std::sync::Arc;

use portico_proxy::upstream::AnyCertificate;
use rustls::pki_types::{CertificateDer, ServerName};

/// A client configuration that accepts any certificate, offering `alpn`.
pub fn insecure_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)))
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// What the server presented for `sni`: the leaf certificate as PEM-comparable DER, its DNS
/// names, and the negotiated ALPN protocol.
pub struct Presented {
    pub leaf: Vec<u8>,
    pub dns_names: Vec<String>,
    pub alpn: Option<Vec<u8>>,
    pub cipher_suite: Option<rustls::CipherSuite>,
}

/// Handshakes with `addr` sending `sni` (a name, or an IP literal which sends none).
pub async fn handshake(addr: SocketAddr, sni: &str) -> std::io::Result<Presented> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(insecure_config(&[b"h2", b"http/1.1"]));
    let name = ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
    let tls = connector.connect(name, tcp).await?;
    let (_, conn) = tls.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    Ok(Presented {
        dns_names: dns_names(&leaf),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        cipher_suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
        leaf,
    })
}

/// DER of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return vec![];
    };
    let mut out = vec![];
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                out.push(d.to_string());
            }
        }
    }
    out
}
