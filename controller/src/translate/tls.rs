//! `spec.tls` to the SNI certificate table, with every certificate checked here, not during
//! handshakes.

use std::collections::BTreeMap;
use std::sync::Arc;

use portico_proxy::{HostPattern, TlsCertificate, TlsTable};

use super::routes::{HostOwners, RedirectHosts};
use super::{validate, Options, Selected};
use crate::inputs::Inputs;
use crate::problem::{ObjectRef, Problem, Reason};

pub struct TlsBuild {
    pub table: TlsTable,
    pub redirect_hosts: RedirectHosts,
}

/// Builds the certificate table: per host, the Secret of the oldest Ingress listing it.
pub fn build(
    selected: &[Selected<'_>],
    inputs: &Inputs,
    options: &Options,
    owners: &HostOwners<'_>,
    problems: &mut Vec<Problem>,
) -> TlsBuild {
    let mut redirect = RedirectHosts::default();
    // host → (certificate, secret key, ingress key)
    let mut chosen: BTreeMap<HostPattern, (Option<Arc<TlsCertificate>>, String, String)> =
        BTreeMap::new();
    for s in selected.iter().filter(|s| !s.canary) {
        let Some(spec) = s.ingress.spec.as_ref() else {
            continue;
        };
        for entry in spec.tls.iter().flatten() {
            // An entry without hosts covers the Ingress's own rule hosts.
            let hosts: Vec<&str> = match entry.hosts.as_deref() {
                Some(h) if !h.is_empty() => h.iter().map(String::as_str).collect(),
                _ => spec
                    .rules
                    .iter()
                    .flatten()
                    .filter_map(|r| r.host.as_deref())
                    .collect(),
            };
            for host in hosts {
                if let Err(why) = validate::host(host) {
                    problems.push(Problem::new(
                        s.object(),
                        Reason::InvalidHost {
                            host: host.to_string(),
                            why,
                        },
                    ));
                    continue;
                }
                let pattern = HostPattern::parse(Some(host));
                if let Err(owner) = owners.check(&pattern, s.namespace) {
                    problems.push(Problem::new(
                        s.object(),
                        Reason::HostOwnedElsewhere {
                            host: host.to_string(),
                            owner,
                        },
                    ));
                    continue;
                }
                let secret_name = entry.secret_name.as_deref().unwrap_or("");
                let secret_key = if secret_name.is_empty() {
                    String::new()
                } else {
                    format!("{}/{secret_name}", s.namespace)
                };
                if let Some((_, winner_secret, winner)) = chosen.get(&pattern) {
                    if *winner_secret != secret_key {
                        problems.push(Problem::new(
                            s.object(),
                            Reason::TlsConflict {
                                host: host.to_string(),
                                winner: winner.clone(),
                                winner_secret: winner_secret.clone(),
                            },
                        ));
                    }
                    continue;
                }
                redirect.0.insert(pattern.clone());
                let cert = if secret_name.is_empty() {
                    None
                } else {
                    certificate(s, secret_name, host, inputs, options, problems)
                };
                chosen.insert(pattern, (cert, secret_key, s.key()));
            }
        }
    }
    let entries = chosen
        .into_iter()
        .filter_map(|(h, (cert, _, _))| cert.map(|c| (h, c)));
    TlsBuild {
        table: TlsTable::new(entries, default_certificate(inputs, options, problems)),
        redirect_hosts: redirect,
    }
}

/// The checked certificate of `namespace/secret` for `host`, or a problem.
fn certificate(
    s: &Selected<'_>,
    secret: &str,
    host: &str,
    inputs: &Inputs,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> Option<Arc<TlsCertificate>> {
    let secret_key = format!("{}/{secret}", s.namespace);
    let found = inputs
        .certificates
        .get(&(s.namespace.to_string(), secret.to_string()));
    let cert = match found {
        None => {
            problems.push(Problem::new(
                s.object(),
                Reason::SecretNotFound {
                    secret: secret_key,
                    host: host.to_string(),
                },
            ));
            return None;
        }
        Some(Err(error)) => {
            problems.push(Problem::new(
                s.object(),
                Reason::InvalidCertificate {
                    secret: secret_key,
                    host: host.to_string(),
                    error: error.clone(),
                },
            ));
            return None;
        }
        Some(Ok(c)) => c,
    };
    if !cert.covers(host) {
        problems.push(Problem::new(
            s.object(),
            Reason::CertificateMismatch {
                secret: secret_key,
                host: host.to_string(),
            },
        ));
        return None;
    }
    if cert.expired_at(options.now) {
        // Still served: the default certificate would not be any more acceptable to clients.
        problems.push(Problem::new(
            s.object(),
            Reason::CertificateExpired {
                secret: secret_key,
                host: host.to_string(),
            },
        ));
    }
    Some(cert.clone())
}

fn default_certificate(
    inputs: &Inputs,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> Arc<TlsCertificate> {
    let Some((ns, name)) = options.default_certificate.as_ref() else {
        return options.fallback_certificate.clone();
    };
    let error = match inputs.certificates.get(&(ns.clone(), name.clone())) {
        Some(Ok(c)) => return c.clone(),
        Some(Err(e)) => e.clone(),
        None => "not found".to_string(),
    };
    problems.push(Problem::new(
        ObjectRef::new("Secret", ns, name),
        Reason::DefaultCertificate { error },
    ));
    options.fallback_certificate.clone()
}
