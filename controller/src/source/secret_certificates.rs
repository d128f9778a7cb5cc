//! The certificates of the Secrets the cluster watches hold, parsed as the Secrets arrive.
//!
//! A Secret's `tls.crt` and `tls.key` are read once, on the way into its watch's store: the
//! pair is parsed (once per distinct content, so a certificate copied into many namespaces is
//! parsed and held once) and the store keeps the pair's SHA-256 under [`DIGEST_KEY`] instead
//! of the PEM text. At 10,000 TLS Secrets that is about 10 MB less than keeping both the text
//! and the parsed certificate.
//!
//! Each parsed certificate counts the stored Secrets that name it, and goes when the last one
//! leaves its store. A watch adds a Secret's certificate before the store takes the Secret and
//! lets go of the old one after, and gathering holds the lock while it reads the stores, so a
//! Secret gathering finds in a store always finds its certificate here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use crate::inputs::{self, ParsedCertificate, TLS_CRT, TLS_KEY};

/// Where a stored Secret keeps the digest of its `tls.crt` and `tls.key`.
pub const DIGEST_KEY: &str = "portico.dev/tls-sha256";

/// The parsed certificates, by content digest, with how many stored Secrets hold each.
#[derive(Default)]
pub struct SecretCertificates {
    by_digest: HashMap<[u8; 32], (ParsedCertificate, usize)>,
}

impl std::fmt::Debug for SecretCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never key material: how many, no more.
        f.debug_struct("SecretCertificates")
            .field("contents", &self.by_digest.len())
            .finish()
    }
}

/// Shared by the Secret watches (which add and release) and gathering (which reads).
pub type Shared = Arc<Mutex<SecretCertificates>>;

/// The lock; a poisoned one is taken as it is (each change is one map operation).
pub fn lock(shared: &Shared) -> MutexGuard<'_, SecretCertificates> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

fn digest_of(secret: &Secret) -> Option<[u8; 32]> {
    let value = secret.data.as_ref()?.get(DIGEST_KEY)?;
    value.0.as_slice().try_into().ok()
}

impl SecretCertificates {
    /// Takes a Secret on its way into a store: parses its `tls.crt` and `tls.key` unless that
    /// content is already held, counts one more holder, and puts the digest in their place.
    /// A Secret without `tls.crt` is left as it is.
    pub fn admit(&mut self, secret: &mut Secret) {
        // The key is Portico's: a Secret that brings its own says nothing about its content.
        if let Some(data) = secret.data.as_mut() {
            data.remove(DIGEST_KEY);
        }
        let Some((crt, key)) = inputs::tls_pair(secret) else {
            return;
        };
        let digest = inputs::content_hash(crt, key);
        let entry = self
            .by_digest
            .entry(digest)
            .or_insert_with(|| (inputs::parse(crt, key), 0));
        entry.1 += 1;
        if let Some(data) = secret.data.as_mut() {
            data.remove(TLS_CRT);
            data.remove(TLS_KEY);
            data.insert(DIGEST_KEY.to_string(), ByteString(digest.to_vec()));
        }
    }

    /// A Secret has left its store: one holder fewer for its certificate.
    pub fn release(&mut self, secret: &Secret) {
        let Some(digest) = digest_of(secret) else {
            return;
        };
        if let Some(entry) = self.by_digest.get_mut(&digest) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                self.by_digest.remove(&digest);
            }
        }
    }

    /// The certificate of a stored Secret (an error saying so when it has no `tls.crt`).
    pub fn get(&self, secret: &Secret) -> ParsedCertificate {
        match digest_of(secret) {
            None => inputs::no_certificate(),
            Some(digest) => match self.by_digest.get(&digest) {
                Some((parsed, _)) => parsed.clone(),
                // Not reachable by the order of adding and releasing (see the module's doc).
                None => Err(
                    "the certificate is not parsed yet; it is read again at the next change".into(),
                ),
            },
        }
    }

    /// How many distinct certificate contents are held.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::tests::pem;

    fn secret(name: &str, pem: &(String, String)) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some("ns".into());
        s.metadata.name = Some(name.into());
        s.data = Some(
            [
                (TLS_CRT.to_string(), ByteString(pem.0.clone().into_bytes())),
                (TLS_KEY.to_string(), ByteString(pem.1.clone().into_bytes())),
                ("ca.crt".to_string(), ByteString(pem.0.clone().into_bytes())),
            ]
            .into(),
        );
        s
    }

    #[test]
    fn stored_secrets_keep_a_digest_and_share_one_parse_per_content() {
        let (a, b) = (pem("a.test"), pem("b.test"));
        let mut certs = SecretCertificates::default();
        let mut s1 = secret("one", &a);
        let mut s2 = secret("two", &a);
        let mut s3 = secret("three", &b);
        for s in [&mut s1, &mut s2, &mut s3] {
            certs.admit(s);
        }
        let data = s1.data.as_ref().unwrap();
        assert_eq!(
            data.keys().map(String::as_str).collect::<Vec<_>>(),
            ["ca.crt", DIGEST_KEY],
            "the PEM pair is gone, ca.crt stays"
        );
        assert_eq!(certs.len(), 2);
        let one = certs.get(&s1).unwrap();
        assert!(Arc::ptr_eq(&one, &certs.get(&s2).unwrap()));
        assert_eq!(one.dns_names, ["a.test"]);
        assert_eq!(certs.get(&s3).unwrap().dns_names, ["b.test"]);

        certs.release(&s1);
        assert_eq!(certs.len(), 2, "s2 still holds a.test");
        certs.release(&s2);
        certs.release(&s3);
        assert!(certs.is_empty());
    }

    #[test]
    fn secrets_without_a_certificate_or_with_a_bad_one_say_why() {
        let mut certs = SecretCertificates::default();
        let mut opaque = Secret {
            data: Some(
                [
                    ("auth".to_string(), ByteString(b"u:p".to_vec())),
                    (DIGEST_KEY.to_string(), ByteString(vec![0; 32])),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        certs.admit(&mut opaque);
        assert!(!opaque.data.as_ref().unwrap().contains_key(DIGEST_KEY));
        assert!(certs.is_empty());
        assert!(certs.get(&opaque).unwrap_err().contains(TLS_CRT));

        let mut bad = secret("bad", &("not a pem".into(), "nor this".into()));
        certs.admit(&mut bad);
        assert_eq!(certs.len(), 1);
        assert!(certs.get(&bad).is_err());
        certs.release(&bad);
        assert!(certs.is_empty());
    }
}
