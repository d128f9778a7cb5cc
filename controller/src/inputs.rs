//! Inputs: every object translate reads, as plain lists, plus parsed certificates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use portico_proxy::TlsCertificate;
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// `(namespace, name)`.
pub type ObjectKey = (String, String);

/// A Secret's certificate: parsed and checked, or why not.
pub type ParsedCertificate = Result<Arc<TlsCertificate>, String>;

/// Everything a source knows, in the form translate takes.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub ingresses: Vec<Arc<Ingress>>,
    pub ingress_classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    /// Certificates of the Secrets that hold `tls.crt`, by Secret.
    pub certificates: BTreeMap<ObjectKey, ParsedCertificate>,
    /// Problems the source found (unparsable files, …).
    pub problems: Vec<Problem>,
}

/// Parsed certificates by the hash of their PEM, so that unchanged Secrets are never parsed
/// twice, however often the configuration is rebuilt.
#[derive(Debug, Default)]
pub struct CertCache {
    by_content: HashMap<[u8; 32], ParsedCertificate>,
}

impl CertCache {
    /// The certificate of every Secret that has a `tls.crt`; forgets certificates no Secret
    /// holds any more.
    pub fn certificates(
        &mut self,
        secrets: &[Arc<Secret>],
    ) -> BTreeMap<ObjectKey, ParsedCertificate> {
        let mut out = BTreeMap::new();
        let mut used = HashMap::with_capacity(secrets.len());
        for secret in secrets {
            let Some(data) = secret.data.as_ref() else {
                continue;
            };
            let Some(crt) = data.get("tls.crt") else {
                continue;
            };
            let key_pem = data
                .get("tls.key")
                .map(|k| k.0.as_slice())
                .unwrap_or_default();
            let mut hasher = Sha256::new();
            hasher.update((crt.0.len() as u64).to_le_bytes());
            hasher.update(&crt.0);
            hasher.update(key_pem);
            let hash: [u8; 32] = hasher.finalize().into();
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
            let ns = secret.metadata.namespace.clone().unwrap_or_default();
            let name = secret.metadata.name.clone().unwrap_or_default();
            out.insert((ns, name), parsed);
        }
        self.by_content = used;
        out
    }
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
        assert!(cache.by_content.is_empty());
    }
}
