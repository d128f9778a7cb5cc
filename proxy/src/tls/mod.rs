//! TLS termination: the SNI certificate table of a snapshot and the rustls configuration built
//! from it.

mod cert;
mod config;

pub use cert::{name_covers, provider, TlsCertificate};
pub use config::{cipher_suites, server_config, server_config_with, SessionState};

use std::collections::HashMap;
use std::sync::Arc;

use crate::routing::HostPattern;

/// Certificates by SNI name: exact names, then wildcards, then the default. Names are shared
/// between the tables a patch makes ([`TlsTable::patched`]).
#[derive(Clone, Debug)]
pub struct TlsTable {
    exact: Arc<HashMap<Arc<str>, Arc<TlsCertificate>>>,
    wildcard: Arc<HashMap<Arc<str>, Arc<TlsCertificate>>>,
    default: Arc<TlsCertificate>,
}

impl TlsTable {
    /// `entries` come from Ingress `spec.tls` host lists; `HostPattern::Any` entries are ignored.
    pub fn new(
        entries: impl IntoIterator<Item = (HostPattern, Arc<TlsCertificate>)>,
        default: Arc<TlsCertificate>,
    ) -> Self {
        let mut table = TlsTable {
            exact: Default::default(),
            wildcard: Default::default(),
            default,
        };
        table.insert(entries);
        table
    }

    fn insert(&mut self, entries: impl IntoIterator<Item = (HostPattern, Arc<TlsCertificate>)>) {
        for (pattern, cert) in entries {
            match pattern {
                HostPattern::Exact(h) => {
                    Arc::make_mut(&mut self.exact).insert(h.into(), cert);
                }
                HostPattern::Wildcard(s) => {
                    Arc::make_mut(&mut self.wildcard).insert(s.into(), cert);
                }
                HostPattern::Any => {}
            }
        }
    }

    /// The certificate for a ClientHello's SNI (lowercase), or the default.
    #[inline]
    pub fn resolve(&self, sni: Option<&str>) -> &Arc<TlsCertificate> {
        let Some(name) = sni else {
            return &self.default;
        };
        if let Some(c) = self.exact.get(name) {
            return c;
        }
        if let Some((first, suffix)) = name.split_once('.') {
            if !first.is_empty() {
                if let Some(c) = self.wildcard.get(suffix) {
                    return c;
                }
            }
        }
        &self.default
    }

    /// This table with the entries of `replaced` dropped and `entries` put in; the default
    /// stays.
    pub fn patched<'p>(
        &self,
        replaced: impl IntoIterator<Item = &'p HostPattern>,
        entries: impl IntoIterator<Item = (HostPattern, Arc<TlsCertificate>)>,
    ) -> Self {
        let mut table = self.clone();
        for pattern in replaced {
            match pattern {
                HostPattern::Exact(h) => {
                    if table.exact.contains_key(h.as_str()) {
                        Arc::make_mut(&mut table.exact).remove(h.as_str());
                    }
                }
                HostPattern::Wildcard(s) => {
                    if table.wildcard.contains_key(s.as_str()) {
                        Arc::make_mut(&mut table.wildcard).remove(s.as_str());
                    }
                }
                HostPattern::Any => {}
            }
        }
        table.insert(entries);
        table
    }

    pub fn default_certificate(&self) -> &Arc<TlsCertificate> {
        &self.default
    }

    /// Every configured host with its certificate (not the default), sorted.
    pub fn hosts(&self) -> Vec<(HostPattern, &Arc<TlsCertificate>)> {
        let mut out: Vec<_> = self
            .exact
            .iter()
            .map(|(h, c)| (HostPattern::Exact(h.to_string()), c))
            .chain(
                self.wildcard
                    .iter()
                    .map(|(h, c)| (HostPattern::Wildcard(h.to_string()), c)),
            )
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Number of distinct certificates, the default included.
    pub fn certificate_count(&self) -> usize {
        let mut seen: Vec<*const TlsCertificate> = self
            .exact
            .values()
            .chain(self.wildcard.values())
            .chain(std::iter::once(&self.default))
            .map(Arc::as_ptr)
            .collect();
        seen.sort();
        seen.dedup();
        seen.len()
    }

    /// The earliest `not_after` among the configured certificates (not the default).
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .map(|c| c.not_after)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> Arc<TlsCertificate> {
        Arc::new(TlsCertificate::self_signed(names).unwrap())
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let exact = cert(&["a.foo.com"]);
        let wild = cert(&["*.foo.com"]);
        let default = cert(&["portico.invalid"]);
        let t = TlsTable::new(
            [
                (HostPattern::parse(Some("a.foo.com")), exact.clone()),
                (HostPattern::parse(Some("*.foo.com")), wild.clone()),
            ],
            default.clone(),
        );
        assert!(Arc::ptr_eq(t.resolve(Some("a.foo.com")), &exact));
        assert!(Arc::ptr_eq(t.resolve(Some("b.foo.com")), &wild));
        assert!(Arc::ptr_eq(t.resolve(Some("foo.com")), &default));
        assert!(Arc::ptr_eq(t.resolve(Some("x.b.foo.com")), &default));
        assert!(Arc::ptr_eq(t.resolve(None), &default));
        assert_eq!(t.certificate_count(), 3);
    }
}
