//! Inputs: every object translate reads, as plain lists, plus parsed certificates.
//!
//! Sources (the manifest directory, Kubernetes watches) build an [`Inputs`]; translate only
//! reads it. Certificates arrive parsed, once per distinct content, so translate never
//! touches PEM: both sources parse each Secret as it arrives and keep only its digest
//! (`source::secret_certificates`).

use std::collections::BTreeMap;
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

/// One kind's objects, shared: an `Inputs` and its clones, the translation memo and the
/// source all hold the same list, so passing inputs around or keeping a kind that did not
/// change copies nothing. Changing it copies the list once, when it is shared.
pub struct Objects<K>(Arc<Vec<Arc<K>>>);

impl<K> Objects<K> {
    /// The list to change (copied first when another holder shares it).
    pub fn to_mut(&mut self) -> &mut Vec<Arc<K>> {
        Arc::make_mut(&mut self.0)
    }

    pub fn push(&mut self, object: Arc<K>) {
        self.to_mut().push(object);
    }

    /// The very same objects, in the same order (see [`same`]); free when the list itself is
    /// shared.
    pub fn same(&self, other: &Objects<K>) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || same(&self.0, &other.0)
    }
}

/// Are two lists the very same objects in the same order? Sources replace an object's `Arc`
/// whenever it changes, so this proves them unchanged without comparing their contents.
pub fn same<K>(a: &[Arc<K>], b: &[Arc<K>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

impl<K> Clone for Objects<K> {
    fn clone(&self) -> Self {
        Objects(self.0.clone())
    }
}

impl<K> Default for Objects<K> {
    fn default() -> Self {
        Objects(Arc::new(Vec::new()))
    }
}

impl<K> std::ops::Deref for Objects<K> {
    type Target = [Arc<K>];
    fn deref(&self) -> &[Arc<K>] {
        &self.0
    }
}

impl<K> From<Vec<Arc<K>>> for Objects<K> {
    fn from(v: Vec<Arc<K>>) -> Self {
        Objects(Arc::new(v))
    }
}

impl<K> FromIterator<Arc<K>> for Objects<K> {
    fn from_iter<I: IntoIterator<Item = Arc<K>>>(iter: I) -> Self {
        Objects(Arc::new(iter.into_iter().collect()))
    }
}

impl<K> Extend<Arc<K>> for Objects<K> {
    fn extend<I: IntoIterator<Item = Arc<K>>>(&mut self, iter: I) {
        self.to_mut().extend(iter);
    }
}

impl<'a, K> IntoIterator for &'a Objects<K> {
    type Item = &'a Arc<K>;
    type IntoIter = std::slice::Iter<'a, Arc<K>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<K: fmt::Debug> fmt::Debug for Objects<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

/// Parsed certificates by Secret, shared like [`Objects`].
pub type Certificates = Arc<BTreeMap<ObjectKey, ParsedCertificate>>;

/// Parsed CA bundles by Secret, shared like [`Objects`].
pub type CaBundles = Arc<BTreeMap<ObjectKey, ParsedCaBundle>>;

/// Everything a source knows, in the form translate takes. Cloning it copies no list.
///
/// Its `Debug` prints counts only: Secrets hold private keys and must never reach a log.
#[derive(Clone, Default)]
pub struct Inputs {
    pub ingresses: Objects<Ingress>,
    pub ingress_classes: Objects<IngressClass>,
    pub services: Objects<Service>,
    pub endpoint_slices: Objects<EndpointSlice>,
    pub secrets: Objects<Secret>,
    pub route_policies: Objects<RoutePolicy>,
    pub class_parameters: Objects<IngressClassParameters>,
    /// The certificate of every Secret, by `(namespace, name)`: parsed and checked, or why
    /// not (no `tls.crt`, bad PEM, a key that does not match, …).
    pub certificates: Certificates,
    /// The CA bundle of every Secret that has a `ca.crt`.
    pub ca_bundles: CaBundles,
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

/// The Secret keys of a TLS certificate and its private key.
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// A Secret's `(namespace, name)`, as sources default it.
pub fn secret_key(secret: &Secret) -> ObjectKey {
    (
        secret
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        secret.metadata.name.clone().unwrap_or_default(),
    )
}

/// A Secret's `tls.crt` and `tls.key` (empty when missing), or `None` without `tls.crt`.
pub(crate) fn tls_pair(secret: &Secret) -> Option<(&[u8], &[u8])> {
    let data = secret.data.as_ref()?;
    let crt = data.get(TLS_CRT)?;
    let key = data
        .get(TLS_KEY)
        .map(|k| k.0.as_slice())
        .unwrap_or_default();
    Some((&crt.0, key))
}

pub(crate) fn no_certificate() -> ParsedCertificate {
    Err(format!("the Secret has no {TLS_CRT}"))
}

pub(crate) fn parse(crt: &[u8], key: &[u8]) -> ParsedCertificate {
    TlsCertificate::from_pem(crt, key)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The CA bundles of the Secrets that have a `ca.crt` (few do; they are parsed each time).
pub fn ca_bundles(secrets: &[Arc<Secret>]) -> BTreeMap<ObjectKey, ParsedCaBundle> {
    secrets
        .iter()
        .filter_map(|s| Some((secret_key(s), ca_bundle(s)?)))
        .collect()
}

/// The CA bundle of a Secret with a `ca.crt`.
pub fn ca_bundle(secret: &Secret) -> Option<ParsedCaBundle> {
    let pem = secret.data.as_ref()?.get(CA_CRT)?;
    let parsed: Result<Vec<CertificateDer<'static>>, String> =
        CertificateDer::pem_slice_iter(&pem.0)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{CA_CRT}: {e}"));
    Some(match parsed {
        Ok(certs) if certs.is_empty() => Err(format!("{CA_CRT} holds no certificate")),
        Ok(certs) => Ok(Arc::new(certs)),
        Err(e) => Err(e),
    })
}

/// SHA-256 over both PEMs, the first length-prefixed so that no two pairs collide by
/// shifting bytes from one to the other.
pub(crate) fn content_hash(crt: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((crt.len() as u64).to_le_bytes());
    hasher.update(crt);
    hasher.update(key);
    hasher.finalize().into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::source::secret_certificates::SecretCertificates;
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

    /// A self-signed certificate for `name` and its key, as PEM.
    pub(crate) fn pem(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The certificates of PEM Secrets, parsed as the sources parse them.
    pub(crate) fn certificates_of(
        secrets: &[Arc<Secret>],
    ) -> BTreeMap<ObjectKey, ParsedCertificate> {
        let mut certs = SecretCertificates::default();
        secrets
            .iter()
            .map(|s| {
                let mut s = (**s).clone();
                certs.admit(&mut s);
                (secret_key(&s), certs.get(&s))
            })
            .collect()
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
        let out = certificates_of(&[Arc::new(s), Arc::new(no_key)]);
        let opaque = out[&("default".into(), "opaque".into())]
            .as_ref()
            .unwrap_err();
        assert!(opaque.contains("tls.crt"), "{opaque}");
        assert!(out[&("default".into(), "nokey".into())].is_err());
    }

    #[test]
    fn debug_never_prints_secret_data() {
        let (crt, key) = pem("a.test");
        let secrets = vec![secret("a", &crt, &key)];
        let mut certs = SecretCertificates::default();
        certs.admit(&mut (*secrets[0]).clone());
        let inputs = Inputs {
            certificates: Arc::new(certificates_of(&secrets)),
            secrets: secrets.into(),
            ..Inputs::default()
        };
        let shown = format!("{inputs:?} {certs:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(!shown.contains("BEGIN"), "{shown}");
        assert!(shown.contains("secrets: 1"), "{shown}");
    }
}
