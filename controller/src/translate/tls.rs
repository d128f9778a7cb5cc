//! `spec.tls` to the SNI certificate table, with every certificate checked here, not during
//! handshakes.
//!
//! Which hosts an entry covers:
//! - every host it lists;
//! - an entry listing no host covers the Ingress's rule hosts that no entry of it lists. As
//!   ingress-nginx does, such a host takes the first Secret of the Ingress whose certificate
//!   covers it, else the entry's own Secret (reported when it does not fit).
//!
//! A host named by no entry is not a TLS host. (ingress-nginx goes further: every rule host of
//! an Ingress with any TLS entry gets the default certificate and the HTTPS redirect; Portico
//! redirects only hosts a TLS entry covers, as the issue asks.)
//!
//! Per host the oldest Ingress wins; a younger one naming another Secret is reported. A
//! missing, invalid or non-covering Secret is reported and the host gets the default
//! certificate; an expired one is reported and still served. Every covered host, whatever its
//! certificate, is a TLS host: its plain-HTTP requests are redirected.
//!
//! Canaries come after every primary: they never lose a conflict (nothing is reported), and
//! their entries count only for hosts no primary Ingress has rules for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::IngressTLS;
use portico_proxy::{ClientAuth, ClientAuthTable, HostPattern, TlsCertificate, TlsTable};
use sha2::{Digest, Sha256};

use super::policy::client_tls::ClientTlsInput;
use super::routes::{primaries_first, Aliases, HostOwners, RedirectHosts};
use super::{validate, Options, Selected};
use crate::inputs::Inputs;
use crate::problem::{ObjectRef, Problem, Reason};

pub struct TlsBuild {
    pub table: TlsTable,
    pub redirect_hosts: RedirectHosts,
    /// Hosts asking for client certificates.
    pub client_auth: ClientAuthTable,
}

/// What a host got, and from whom.
struct Choice {
    cert: Option<Arc<TlsCertificate>>,
    /// `namespace/name`, or `None` for an entry without `secretName` (default certificate).
    secret: Option<String>,
    ingress: String,
}

struct Builder<'i> {
    inputs: &'i Inputs,
    options: &'i Options,
    index: CertificateIndex,
    chosen: BTreeMap<HostPattern, Choice>,
    redirect: RedirectHosts,
}

/// Builds the certificate table and the set of hosts whose HTTP requests are redirected.
pub fn build(
    selected: &[Selected<'_>],
    inputs: &Inputs,
    options: &Options,
    owners: &HostOwners<'_>,
    aliases: &Aliases,
    problems: &mut Vec<Problem>,
) -> TlsBuild {
    let primary_hosts = primary_rule_hosts(selected);
    let mut b = Builder {
        inputs,
        options,
        index: CertificateIndex::new(inputs),
        chosen: BTreeMap::new(),
        redirect: RedirectHosts::default(),
    };
    for s in primaries_first(selected) {
        let Some(spec) = s.ingress.spec.as_ref() else {
            continue;
        };
        if s.passthrough(options) {
            continue;
        }
        let entries: &[IngressTLS] = spec.tls.as_deref().unwrap_or_default();
        if entries.is_empty() {
            continue;
        }
        // Hosts the entries list, each with the Secret of the first entry listing it.
        let mut listed: Vec<(&str, Option<&str>)> = Vec::new();
        for entry in entries {
            for host in entry.hosts.iter().flatten() {
                if !listed.iter().any(|(h, _)| h == host) {
                    listed.push((host, secret_name(entry)));
                } else if let Some((_, first)) = listed.iter().find(|(h, _)| h == host) {
                    if *first != secret_name(entry) {
                        problems.push(Problem::new(
                            s.object(),
                            Reason::TlsConflict {
                                host: host.clone(),
                                winner: s.key(),
                                winner_secret: first.map(|n| format!("{}/{n}", s.namespace)),
                            },
                        ));
                    }
                }
            }
        }
        // Rule hosts no entry lists, when an entry lists no host.
        let mut implicit: Vec<(&str, Option<&str>)> = Vec::new();
        if let Some(catch_all) = entries
            .iter()
            .find(|e| e.hosts.as_deref().unwrap_or_default().is_empty())
        {
            for rule in spec.rules.iter().flatten() {
                let Some(host) = rule.host.as_deref() else {
                    continue;
                };
                if listed.iter().chain(&implicit).any(|(h, _)| *h == host) {
                    continue;
                }
                let covering = entries
                    .iter()
                    .filter_map(secret_name)
                    .find(|name| b.covers(s.namespace, name, host));
                implicit.push((host, covering.or(secret_name(catch_all))));
            }
        }

        for (host, secret) in listed.into_iter().chain(implicit) {
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
            if !owners.admit(&pattern, s, problems) {
                continue;
            }
            if s.canary && primary_hosts.contains(&pattern) {
                // The primary's TLS settings stand for its hosts.
                continue;
            }
            b.assign(s, pattern, host, secret, problems);
        }
    }
    // `server-alias`: an alias of a TLS host is a TLS host, with the host's Secret when its
    // certificate covers the alias, else the labelled certificate for it.
    for (alias, (real, ingress)) in &aliases.0 {
        let Some(choice) = b.chosen.get(real) else {
            continue;
        };
        let Some(s) = selected.iter().find(|s| s.key() == *ingress) else {
            continue;
        };
        let name = alias.to_string();
        let cert = choice
            .cert
            .clone()
            .filter(|c| c.covers(&name))
            .or_else(|| b.index.best(&name, s.namespace, options));
        let secret = choice.secret.clone();
        b.redirect.0.insert(alias.clone());
        b.chosen.insert(
            alias.clone(),
            Choice {
                cert,
                secret,
                ingress: ingress.clone(),
            },
        );
    }
    let client_auth = client_auth(selected, inputs, options, owners, aliases, problems);
    let entries = b
        .chosen
        .into_iter()
        .filter_map(|(h, choice)| choice.cert.map(|c| (h, c)));
    TlsBuild {
        table: TlsTable::new(entries, default_certificate(inputs, options, problems)),
        redirect_hosts: b.redirect,
        client_auth,
    }
}

/// The client-certificate settings of every host: an Ingress's `auth-tls-*` annotations apply
/// to its rule hosts and their aliases, for every path of those hosts (nginx's server level).
/// The oldest Ingress decides a host; a younger one asking otherwise is reported. A CA Secret
/// that is missing, unusable or in another namespace is reported and the host refuses every
/// request (fail closed).
fn client_auth(
    selected: &[Selected<'_>],
    inputs: &Inputs,
    options: &Options,
    owners: &HostOwners<'_>,
    aliases: &Aliases,
    problems: &mut Vec<Problem>,
) -> ClientAuthTable {
    let mut chosen: BTreeMap<HostPattern, (Arc<ClientAuth>, String)> = BTreeMap::new();
    let secret_key = || format!("{}auth-tls-secret", super::policy::NGINX_PREFIX);
    for s in selected
        .iter()
        .filter(|s| !s.canary && !s.passthrough(options))
    {
        let Some(input) = s.host_tls.client.as_ref() else {
            continue;
        };
        let Some(spec) = s.ingress.spec.as_ref() else {
            continue;
        };
        let auth = Arc::new(client_auth_of(s, input, inputs, problems));
        let mut hosts: Vec<HostPattern> = Vec::new();
        for host in spec
            .rules
            .iter()
            .flatten()
            .filter_map(|r| r.host.as_deref())
        {
            if validate::host(host).is_err() {
                continue;
            }
            let pattern = HostPattern::parse(Some(host));
            if !owners.owned_by(&pattern, s.namespace) || hosts.contains(&pattern) {
                continue;
            }
            hosts.extend(aliases.of(&pattern).cloned());
            hosts.push(pattern);
        }
        if hosts.is_empty() {
            problems.push(Problem::new(
                s.object(),
                Reason::InvalidAnnotation {
                    key: secret_key(),
                    why: "client certificates apply to hosts; the Ingress has no rule with a host"
                        .into(),
                },
            ));
        }
        for host in hosts {
            match chosen.get(&host) {
                Some((other, winner)) => {
                    if other.key != auth.key {
                        problems.push(Problem::new(
                            s.object(),
                            Reason::InvalidAnnotation {
                                key: secret_key(),
                                why: format!(
                                    "{host} already has client certificate settings from {winner}, which stand"
                                ),
                            },
                        ));
                    }
                }
                None => {
                    chosen.insert(host, (auth.clone(), s.key()));
                }
            }
        }
    }
    ClientAuthTable::new(chosen.into_iter().map(|(h, (a, _))| (h, a)))
}

/// The proxy's settings for one Ingress's `auth-tls-*` annotations.
fn client_auth_of(
    s: &Selected<'_>,
    input: &ClientTlsInput,
    inputs: &Inputs,
    problems: &mut Vec<Problem>,
) -> ClientAuth {
    let settings = format!(
        "{}:{}:{}:{}",
        input.mode.as_str(),
        input.depth,
        input.pass_certificate,
        input
            .error_page
            .as_ref()
            .and_then(|p| p.to_str().ok())
            .unwrap_or("")
    );
    let Some((ns, name)) = input.secret.as_ref() else {
        // Already reported by the annotation parser.
        return ClientAuth::unusable(format!("{}:unusable", s.key()));
    };
    let secret = format!("{ns}/{name}");
    let refuse = |error: String, problems: &mut Vec<Problem>| {
        problems.push(Problem::new(
            s.object(),
            Reason::InvalidAnnotation {
                key: format!("{}auth-tls-secret", super::policy::NGINX_PREFIX),
                why: format!("{secret}: {error}; the host refuses every request"),
            },
        ));
        ClientAuth::unusable(format!("{secret}:unusable"))
    };
    if ns != s.namespace {
        return refuse(
            "only Secrets in the Ingress's own namespace may be used".into(),
            problems,
        );
    }
    let roots = match inputs.ca_bundles.get(&(ns.clone(), name.clone())) {
        Some(Ok(roots)) => roots,
        Some(Err(e)) => return refuse(e.clone(), problems),
        None => {
            let exists = inputs.secrets.iter().any(|x| {
                x.metadata.namespace.as_deref() == Some(ns.as_str())
                    && x.metadata.name.as_deref() == Some(name.as_str())
            });
            let why = if exists {
                "the Secret has no ca.crt"
            } else {
                "the Secret does not exist (or is not a kubernetes.io/tls Secret)"
            };
            return refuse(why.into(), problems);
        }
    };
    let mut hasher = Sha256::new();
    for c in roots.iter() {
        hasher.update((c.len() as u64).to_le_bytes());
        hasher.update(c.as_ref());
    }
    let digest: [u8; 32] = hasher.finalize().into();
    let fingerprint: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("{secret}@{fingerprint}:{settings}");
    match ClientAuth::new(
        input.mode,
        input.depth,
        input.pass_certificate,
        input.error_page.clone(),
        roots,
        key,
    ) {
        Ok(auth) => auth,
        Err(e) => refuse(format!("ca.crt: {e}"), problems),
    }
}

fn secret_name(entry: &IngressTLS) -> Option<&str> {
    entry.secret_name.as_deref().filter(|n| !n.is_empty())
}

/// Valid hosts with rules in primary (non-canary) Ingresses.
fn primary_rule_hosts(selected: &[Selected<'_>]) -> BTreeSet<HostPattern> {
    selected
        .iter()
        .filter(|s| !s.canary)
        .filter_map(|s| s.ingress.spec.as_ref())
        .flat_map(|spec| spec.rules.iter().flatten())
        .filter_map(|r| r.host.as_deref())
        .filter(|h| validate::host(h).is_ok())
        .map(|h| HostPattern::parse(Some(h)))
        .collect()
}

impl Builder<'_> {
    /// Does `namespace/secret` hold a usable certificate covering `host`?
    fn covers(&self, namespace: &str, secret: &str, host: &str) -> bool {
        matches!(
            self.inputs.certificates.get(&(namespace.to_string(), secret.to_string())),
            Some(Ok(c)) if c.covers(host)
        )
    }

    /// Gives `host` the Secret of Ingress `s`, unless an older Ingress already gave it one.
    fn assign(
        &mut self,
        s: &Selected<'_>,
        pattern: HostPattern,
        host: &str,
        secret: Option<&str>,
        problems: &mut Vec<Problem>,
    ) {
        let secret_key = secret.map(|n| format!("{}/{n}", s.namespace));
        if let Some(winner) = self.chosen.get(&pattern) {
            if winner.secret != secret_key && winner.ingress != s.key() && !s.canary {
                problems.push(Problem::new(
                    s.object(),
                    Reason::TlsConflict {
                        host: host.to_string(),
                        winner: winner.ingress.clone(),
                        winner_secret: winner.secret.clone(),
                    },
                ));
            }
            return;
        }
        self.redirect.0.insert(pattern.clone());
        // The Ingress's own Secret; failing that, the labelled certificate for the host, then
        // the class's default certificate.
        let cert = secret
            .and_then(|name| self.certificate(s, name, host, problems))
            .or_else(|| self.index.best(host, s.namespace, self.options))
            .or_else(|| s.class_certificate.clone());
        self.chosen.insert(
            pattern,
            Choice {
                cert,
                secret: secret_key,
                ingress: s.key(),
            },
        );
    }

    /// The checked certificate of `namespace/secret` for `host`, or a problem.
    fn certificate(
        &self,
        s: &Selected<'_>,
        secret: &str,
        host: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<Arc<TlsCertificate>> {
        let secret_key = format!("{}/{secret}", s.namespace);
        let found = self
            .inputs
            .certificates
            .get(&(s.namespace.to_string(), secret.to_string()));
        let reason = match found {
            None => Reason::SecretNotFound {
                secret: secret_key,
                host: host.to_string(),
            },
            Some(Err(error)) => Reason::InvalidCertificate {
                secret: secret_key,
                host: host.to_string(),
                error: error.clone(),
            },
            Some(Ok(cert)) if !cert.covers(host) => Reason::CertificateMismatch {
                secret: secret_key,
                host: host.to_string(),
            },
            Some(Ok(cert)) => {
                if cert.expired_at(self.options.now) {
                    // Still served: the default certificate would be no more acceptable.
                    problems.push(Problem::new(
                        s.object(),
                        Reason::CertificateExpired {
                            secret: secret_key,
                            host: host.to_string(),
                        },
                    ));
                }
                return Some(cert.clone());
            }
        };
        problems.push(Problem::new(s.object(), reason));
        None
    }
}

/// `--default-certificate`'s Secret when usable, else the generated fallback.
fn default_certificate(
    inputs: &Inputs,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> Arc<TlsCertificate> {
    let Some((ns, name)) = options.default_certificate.as_ref() else {
        return options.fallback_certificate.clone();
    };
    let object = ObjectRef::new("Secret", ns, name);
    let error = match inputs.certificates.get(&(ns.clone(), name.clone())) {
        Some(Ok(c)) => {
            if c.expired_at(options.now) {
                problems.push(Problem::new(object, Reason::DefaultCertificateExpired));
            }
            return c.clone();
        }
        Some(Err(e)) => e.clone(),
        None => "not found".to_string(),
    };
    problems.push(Problem::new(object, Reason::DefaultCertificate { error }));
    options.fallback_certificate.clone()
}

/// Labelled Secrets (`portico.dev/certificate: "true"`), indexed by the DNS names of their
/// certificates: hosts get certificates without any Ingress naming them.
pub const CERTIFICATE_LABEL: &str = "portico.dev/certificate";

struct Indexed {
    namespace: String,
    name: String,
    cert: Arc<TlsCertificate>,
}

#[derive(Default)]
struct CertificateIndex {
    entries: Vec<Indexed>,
    /// DNS name (`foo.com`, or `*.foo.com`) → entries.
    by_name: BTreeMap<String, Vec<usize>>,
}

impl CertificateIndex {
    fn new(inputs: &Inputs) -> Self {
        let mut index = CertificateIndex::default();
        for secret in &inputs.secrets {
            let labelled = secret
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(CERTIFICATE_LABEL))
                .is_some_and(|v| v == "true");
            if !labelled {
                continue;
            }
            let ns = secret.metadata.namespace.clone().unwrap_or_default();
            let name = secret.metadata.name.clone().unwrap_or_default();
            let Some(Ok(cert)) = inputs.certificates.get(&(ns.clone(), name.clone())) else {
                continue;
            };
            let i = index.entries.len();
            for dns in &cert.dns_names {
                index.by_name.entry(dns.clone()).or_default().push(i);
            }
            index.entries.push(Indexed {
                namespace: ns,
                name,
                cert: cert.clone(),
            });
        }
        index
    }

    /// The best labelled certificate covering `host` from `namespace` or a shared namespace:
    /// an exact name beats a wildcard; then one valid now; then the one valid longest.
    fn best(&self, host: &str, namespace: &str, options: &Options) -> Option<Arc<TlsCertificate>> {
        if self.entries.is_empty() {
            return None;
        }
        let allowed = |e: &Indexed| {
            e.namespace == namespace || options.shared_certificate_namespaces.contains(&e.namespace)
        };
        let wildcard = host
            .split_once('.')
            .filter(|(first, _)| !first.is_empty() && *first != "*")
            .map(|(_, suffix)| format!("*.{suffix}"));
        let exact = self
            .by_name
            .get(host)
            .into_iter()
            .flatten()
            .map(|i| (0u8, *i));
        let wild = wildcard
            .as_ref()
            .and_then(|w| self.by_name.get(w))
            .into_iter()
            .flatten()
            .map(|i| (1u8, *i));
        exact
            .chain(wild)
            .map(|(rank, i)| (rank, &self.entries[i]))
            .filter(|(_, e)| allowed(e))
            .min_by_key(|(rank, e)| {
                (
                    *rank,
                    e.cert.expired_at(options.now),
                    std::cmp::Reverse(e.cert.not_after),
                    e.namespace.clone(),
                    e.name.clone(),
                )
            })
            .map(|(_, e)| e.cert.clone())
    }
}
