//! Parsed, checked certificates: everything is decided when a snapshot is built, nothing
//! during a handshake.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::CertError;

/// A certificate chain with its key, ready for rustls, plus what checks and metrics need.
pub struct TlsCertificate {
    pub certified: Arc<CertifiedKey>,
    /// DNS names from the leaf's subjectAltName (lowercase; wildcards as `*.foo.com`).
    pub dns_names: Vec<String>,
    pub subject: String,
    pub issuer: String,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl std::fmt::Debug for TlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TlsCertificate")
            .field("dns_names", &self.dns_names)
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The crypto provider every part of Portico uses (aws-lc-rs: faster ECDSA and RSA handshakes
/// than ring on x86_64; see bench/).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsCertificate {
    /// Parses `tls.crt` (leaf first, then its chain) and `tls.key` (PKCS#1, PKCS#8 or SEC1;
    /// RSA, ECDSA or Ed25519) and checks that the key belongs to the leaf.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CertError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| CertError::Pem(format!("tls.crt: {e}")))?;
        if chain.is_empty() {
            return Err(CertError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => CertError::NoKey,
            e => CertError::Pem(format!("tls.key: {e}")),
        })?;
        Self::from_der(chain, key)
    }

    /// Builds from DER: the chain (leaf first) and its private key.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, CertError> {
        let provider = provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| CertError::Key(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(_)) => return Err(CertError::KeyMismatch),
            Err(e) => return Err(CertError::Key(e.to_string())),
        }
        let leaf = certified
            .end_entity_cert()
            .map_err(|_| CertError::NoCertificate)?;
        let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| CertError::Parse(e.to_string()))?;
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = x509.subject_alternative_name() {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                    dns_names.push(n.trim_end_matches('.').to_ascii_lowercase());
                }
            }
        }
        let validity = x509.validity();
        Ok(TlsCertificate {
            dns_names,
            subject: x509.subject().to_string(),
            issuer: x509.issuer().to_string(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            certified: Arc::new(certified),
        })
    }

    /// A self-signed ECDSA P-256 certificate, for when no default certificate is configured.
    pub fn self_signed(names: &[&str]) -> Result<Self, CertError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params =
            rcgen::CertificateParams::new(names).map_err(|e| CertError::Parse(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Portico Default Certificate");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CertError::Key(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| CertError::Parse(e.to_string()))?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| CertError::Key(e.to_string()))?;
        Self::from_der(vec![cert.der().clone()], key_der)
    }

    /// Does the leaf's subjectAltName cover `host` (lowercase)? Wildcards cover one label.
    pub fn covers(&self, host: &str) -> bool {
        self.dns_names.iter().any(|name| name_covers(name, host))
    }

    /// Is `now` (seconds since the epoch) outside the validity period?
    pub fn expired_at(&self, now: i64) -> bool {
        now > self.not_after || now < self.not_before
    }
}

/// Does a certificate name (`foo.com` or `*.foo.com`) cover a host or host pattern?
pub fn name_covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((first, rest))) => !first.is_empty() && first != "*" && rest == suffix,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn parses_and_reads_names() {
        let (crt, key) = pem_pair(&["foo.com", "*.bar.com"]);
        let c = TlsCertificate::from_pem(crt.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(c.dns_names, vec!["foo.com", "*.bar.com"]);
        assert!(c.covers("foo.com"));
        assert!(c.covers("x.bar.com"));
        assert!(!c.covers("bar.com"));
        assert!(!c.covers("y.x.bar.com"));
        assert!(c.not_after > c.not_before);
    }

    #[test]
    fn rejects_mismatched_key() {
        let (crt, _) = pem_pair(&["foo.com"]);
        let (_, other_key) = pem_pair(&["foo.com"]);
        let err = TlsCertificate::from_pem(crt.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch), "{err}");
    }

    #[test]
    fn rejects_garbage() {
        let err = TlsCertificate::from_pem(b"not a pem", b"nope").unwrap_err();
        assert!(matches!(err, CertError::NoCertificate), "{err}");
        let (crt, _) = pem_pair(&["foo.com"]);
        let err = TlsCertificate::from_pem(crt.as_bytes(), b"").unwrap_err();
        assert!(matches!(err, CertError::NoKey), "{err}");
    }

    #[test]
    fn self_signed_works() {
        let c = TlsCertificate::self_signed(&["portico.invalid"]).unwrap();
        assert!(c.covers("portico.invalid"));
        assert!(format!("{c:?}").contains("portico.invalid"));
    }
}
