//! Inputs: every object translate reads, as plain lists, plus parsed certificates.
//!
//! Sources (the manifest directory, Kubernetes watches) build an [`Inputs`]; translate only
//! reads it. Certificates are parsed here, once per distinct content, by a [`CertCache`] the
//! source keeps across rebuilds, so translate never touches PEM.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use portico_crds::{IngressClassParameters, RoutePolicy};
use portico_proxy::TlsCertificate;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// `(namespace, name)`.
pub type ObjectKey = (String, String);

/// A Secret's certificate: parsed and checked, or why not.
pub type ParsedCertificate = Result<Arc<TlsCertificate>, String>;

/// A Secret's `ca.crt`: the CA certificates it holds, or why they are unusable.
pub type ParsedCaBundle = Result<Arc<Vec<CertificateDer<'static>>>, String>;

/// The Secret key of a CA bundle (`proxy-ssl-secret`, client certificate checks).
pub const CA_CRT: &str = "ca.crt";

/// Everything a source knows, in the form translate takes.
///
/// Its `Debug` prints counts only: Secrets hold private keys and must never reach a log.
#[derive(Clone, Default)]
pub struct Inputs {
    pub ingresses: Vec<Arc<Ingress>>,
    pub ingress_classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    pub route_policies: Vec<Arc<RoutePolicy>>,
    pub class_parameters: Vec<Arc<IngressClassParameters>>,
    /// The certificate of every Secret, by `(namespace, name)`: parsed and checked, or why
    /// not (no `tls.crt`, bad PEM, a key that does not match, …).
    pub certificates: BTreeMap<ObjectKey, ParsedCertificate>,
    /// The CA bundle of every Secret that has a `ca.crt`.
    pub ca_bundles: BTreeMap<ObjectKey, ParsedCaBundle>,
    /// Problems the source found (unparsable files, …).
    pub problems: Vec<Problem>,
    /// When the source saw the first change these inputs carry, and how long it took to
    /// gather them (for the publish log line; not read by translate).
    pub gathered: Option<(std::time::Instant, std::time::Duration)>,
}

impl fmt::Debug for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inputs")
            .field("ingresses", &self.ingresses.len())
            .field("ingress_classes", &self.ingress_classes.len())
            .field("services", &self.services.len())
            .field("endpoint_slices", &self.endpoint_slices.len())
            .field("secrets", &self.secrets.len())
            .field("route_policies", &self.route_policies.len())
            .field("class_parameters", &self.class_parameters.len())
            .field("certificates", &self.certificates.len())
            .field("ca_bundles", &self.ca_bundles.len())
            .field("problems", &self.problems)
            .finish()
    }
}

/// Parsed certificates by the hash of their PEM, so that unchanged Secrets are never parsed
/// twice, however often the configuration is rebuilt (10,000 TLS Secrets re-parsed on every
/// change would cost seconds). Keyed by SHA-256 of (`tls.crt`, `tls.key`); it holds only
/// what the last call saw, so a rotated Secret's old certificate is dropped.
#[derive(Default)]
pub struct CertCache {
    by_content: HashMap<[u8; 32], ParsedCertificate>,
    /// (uid, resourceVersion) → content hash: an unchanged object is not even hashed again.
    by_version: HashMap<(String, String), [u8; 32]>,
}

impl fmt::Debug for CertCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertCache")
            .field("entries", &self.by_content.len())
            .finish()
    }
}

/// The Secret keys of a TLS certificate and its private key.
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

impl CertCache {
    /// The certificate of every Secret (a Secret without `tls.crt` maps to an error saying
    /// so); forgets certificates no Secret holds any more. Parses only content it has not seen.
    pub fn certificates(
        &mut self,
        secrets: &[Arc<Secret>],
    ) -> BTreeMap<ObjectKey, ParsedCertificate> {
        let mut out = BTreeMap::new();
        let mut used = HashMap::with_capacity(secrets.len());
        let mut versions = HashMap::with_capacity(secrets.len());
        for secret in secrets {
            let ns = secret
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string());
            let name = secret.metadata.name.clone().unwrap_or_default();
            let data = secret.data.as_ref();
            let Some(crt) = data.and_then(|d| d.get(TLS_CRT)) else {
                out.insert((ns, name), Err(format!("the Secret has no {TLS_CRT}")));
                continue;
            };
            let key_pem = data
                .and_then(|d| d.get(TLS_KEY))
                .map(|k| k.0.as_slice())
                .unwrap_or_default();
            let version = match (&secret.metadata.uid, &secret.metadata.resource_version) {
                (Some(uid), Some(rv)) => Some((uid.clone(), rv.clone())),
                _ => None,
            };
            let hash = match version.as_ref().and_then(|v| self.by_version.get(v)) {
                Some(h) => *h,
                None => content_hash(&crt.0, key_pem),
            };
            if let Some(v) = version {
                versions.insert(v, hash);
            }
            let parsed = match self
                .by_content
                .remove(&hash)
                .or_else(|| used.get(&hash).cloned())
            {
                Some(p) => p,
                None => TlsCertificate::from_pem(&crt.0, key_pem)
                    .map(Arc::new)
                    .map_err(|e| e.to_string()),
            };
            used.insert(hash, parsed.clone());
            out.insert((ns, name), parsed);
        }
        self.by_content = used;
        self.by_version = versions;
        out
    }

    /// How many distinct certificate contents are cached.
    pub fn len(&self) -> usize {
        self.by_content.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_content.is_empty()
    }
}

/// The CA bundles of the Secrets that have a `ca.crt` (few do; they are parsed each time).
pub fn ca_bundles(secrets: &[Arc<Secret>]) -> BTreeMap<ObjectKey, ParsedCaBundle> {
    let mut out = BTreeMap::new();
    for secret in secrets {
        let Some(pem) = secret.data.as_ref().and_then(|d| d.get(CA_CRT)) else {
            continue;
        };
        let key = (
            secret
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            secret.metadata.name.clone().unwrap_or_default(),
        );
        let parsed: Result<Vec<CertificateDer<'static>>, String> =
            CertificateDer::pem_slice_iter(&pem.0)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{CA_CRT}: {e}"));
        let parsed = match parsed {
            Ok(certs) if certs.is_empty() => Err(format!("{CA_CRT} holds no certificate")),
            Ok(certs) => Ok(Arc::new(certs)),
            Err(e) => Err(e),
        };
        out.insert(key, parsed);
    }
    out
}

/// SHA-256 over both PEMs, the first length-prefixed so that no two pairs collide by
/// shifting bytes from one to the other.
fn content_hash(crt: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((crt.len() as u64).to_le_bytes());
    hasher.update(crt);
    hasher.update(key);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(name: &str, crt: &str, key: &str) -> Arc<Secret> {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("default".into());
        s.data = Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec())),
            ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
        ]));
        Arc::new(s)
    }

    #[test]
    fn parses_once_and_shares() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (crt, key) = (cert.pem(), key.serialize_pem());
        let mut cache = CertCache::default();
        let secrets = vec![
            secret("a", &crt, &key),
            secret("b", &crt, &key),
            secret("bad", "x", "y"),
        ];
        let first = cache.certificates(&secrets);
        let again = cache.certificates(&secrets);
        let a1 = first[&("default".into(), "a".into())].as_ref().unwrap();
        let a2 = again[&("default".into(), "a".into())].as_ref().unwrap();
        let b = again[&("default".into(), "b".into())].as_ref().unwrap();
        assert!(Arc::ptr_eq(a1, a2), "not parsed again");
        assert!(Arc::ptr_eq(a1, b), "same content, same parse");
        assert!(again[&("default".into(), "bad".into())].is_err());
        cache.certificates(&[]);
        assert!(cache.is_empty());
    }

    fn pem(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_rotated_secret_is_parsed_again_and_the_old_entry_evicted() {
        let mut cache = CertCache::default();
        let (crt, key) = pem("a.test");
        let first = cache.certificates(&[secret("a", &crt, &key)]);
        let (crt2, key2) = pem("a.test");
        let second = cache.certificates(&[secret("a", &crt2, &key2)]);
        let k = ("default".to_string(), "a".to_string());
        assert!(!Arc::ptr_eq(
            first[&k].as_ref().unwrap(),
            second[&k].as_ref().unwrap()
        ));
        assert_eq!(cache.len(), 1, "the old certificate is forgotten");
    }

    #[test]
    fn secrets_without_a_certificate_say_so() {
        let mut s = Secret::default();
        s.metadata.name = Some("opaque".into());
        s.data = Some(BTreeMap::from([(
            "password".to_string(),
            ByteString(b"hunter2".to_vec()),
        )]));
        let mut no_key = (*secret("nokey", "x", "y")).clone();
        no_key.data.as_mut().unwrap().remove(TLS_KEY);
        let (crt, _) = pem("a.test");
        no_key
            .data
            .as_mut()
            .unwrap()
            .insert(TLS_CRT.into(), ByteString(crt.into_bytes()));
        let mut cache = CertCache::default();
        let out = cache.certificates(&[Arc::new(s), Arc::new(no_key)]);
        let opaque = out[&("default".into(), "opaque".into())]
            .as_ref()
            .unwrap_err();
        assert!(opaque.contains("tls.crt"), "{opaque}");
        assert!(out[&("default".into(), "nokey".into())].is_err());
    }

    #[test]
    fn debug_never_prints_secret_data() {
        let (crt, key) = pem("a.test");
        let mut cache = CertCache::default();
        let secrets = vec![secret("a", &crt, &key)];
        let inputs = Inputs {
            certificates: cache.certificates(&secrets),
            secrets,
            ..Inputs::default()
        };
        let shown = format!("{inputs:?} {cache:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(!shown.contains("BEGIN"), "{shown}");
        assert!(shown.contains("secrets: 1"), "{shown}");
    }
}
