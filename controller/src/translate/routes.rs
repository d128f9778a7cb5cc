//! Rules to routes: hosts, paths, conflicts, host ownership and default backends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend, ServiceBackendPort};
use portico_proxy::{HostPattern, HostRoutes, PathMatch, Route, RouteTable, Target};

use super::backends::Backends;
use super::{validate, Options, Selected};
use crate::problem::{ObjectRef, Problem, Reason};

/// Which namespace owns each host (the first to claim it), when ownership is exclusive.
pub struct HostOwners<'a> {
    owners: BTreeMap<HostPattern, &'a str>,
    exclusive: bool,
}

impl HostOwners<'_> {
    /// May Ingress `s` serve `host`? When not, the refusal is reported.
    pub fn admit(&self, host: &HostPattern, s: &Selected<'_>, problems: &mut Vec<Problem>) -> bool {
        match self.owners.get(host) {
            Some(owner) if self.exclusive && *owner != s.namespace => {
                problems.push(Problem::new(
                    s.object(),
                    Reason::HostOwnedElsewhere {
                        host: host.to_string(),
                        owner: owner.to_string(),
                    },
                ));
                false
            }
            _ => true,
        }
    }
}

/// Records the namespace claiming each host first: oldest Ingress first, canaries after every
/// primary (a canary never takes a host from its primary). Rule hosts and TLS hosts both
/// claim; a rule without host claims the any-host table, so only one namespace holds the
/// catch-all rules too.
pub fn host_owners<'a>(selected: &[Selected<'a>], exclusive: bool) -> HostOwners<'a> {
    let mut owners = BTreeMap::new();
    for s in primaries_first(selected) {
        let Some(spec) = s.ingress.spec.as_ref() else {
            continue;
        };
        let rule_hosts = spec.rules.iter().flatten().map(|r| r.host.as_deref());
        let tls_hosts = spec
            .tls
            .iter()
            .flatten()
            .flat_map(|t| t.hosts.iter().flatten())
            .map(|h| Some(h.as_str()));
        for h in rule_hosts.chain(tls_hosts) {
            if h.is_some_and(|h| validate::host(h).is_err()) {
                continue;
            }
            owners.entry(HostPattern::parse(h)).or_insert(s.namespace);
        }
    }
    HostOwners { owners, exclusive }
}

/// The selected Ingresses (already oldest first) with every canary moved after every primary.
pub fn primaries_first<'s, 'a>(
    selected: &'s [Selected<'a>],
) -> impl Iterator<Item = &'s Selected<'a>> {
    selected
        .iter()
        .filter(|s| !s.canary)
        .chain(selected.iter().filter(|s| s.canary))
}

/// Hosts served over TLS: their plain-HTTP requests are redirected.
#[derive(Debug, Default)]
pub struct RedirectHosts(pub BTreeSet<HostPattern>);

impl RedirectHosts {
    pub fn covers(&self, host: &HostPattern) -> bool {
        match host {
            HostPattern::Any => false,
            HostPattern::Wildcard(_) => self.0.contains(host),
            HostPattern::Exact(h) => {
                self.0.contains(host)
                    || h.split_once('.').is_some_and(|(_, suffix)| {
                        self.0.contains(&HostPattern::Wildcard(suffix.to_string()))
                    })
            }
        }
    }
}

struct Bucket {
    routes: Vec<Route>,
    fallback: Option<Arc<Target>>,
}

fn port_label(svc: &IngressServiceBackend) -> String {
    match svc.port.as_ref() {
        Some(ServiceBackendPort {
            number: Some(n), ..
        }) => n.to_string(),
        Some(ServiceBackendPort { name: Some(n), .. }) => n.clone(),
        _ => String::new(),
    }
}

fn target(
    s: &Selected<'_>,
    backend: &IngressBackend,
    redirect: bool,
    backends: &mut Backends<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Arc<Target>> {
    let Some(svc) = backend.service.as_ref() else {
        problems.push(Problem::new(s.object(), Reason::UnsupportedBackend));
        return None;
    };
    let (b, problem) = backends.resolve(s.namespace, svc);
    if let Some(reason) = problem {
        problems.push(Problem::new(s.object(), reason));
    }
    Some(Arc::new(Target::new(
        s.namespace,
        s.name,
        format!("{}:{}", svc.name, port_label(svc)),
        b,
        redirect,
    )))
}

fn path_match(path: Option<&str>, path_type: &str) -> Result<PathMatch, Reason> {
    let invalid = |why| Reason::InvalidPath {
        path: path.unwrap_or("").to_string(),
        path_type: path_type.to_string(),
        why,
    };
    match path_type {
        "Exact" | "Prefix" => {
            let p = path.unwrap_or("");
            validate::path(p).map_err(invalid)?;
            Ok(if path_type == "Exact" {
                PathMatch::Exact(p.to_string())
            } else {
                PathMatch::prefix(p)
            })
        }
        "ImplementationSpecific" => {
            // ingress-nginx: a plain string prefix; an empty path is `/`.
            let p = match path {
                None | Some("") => "/",
                Some(p) => p,
            };
            validate::path_chars(p).map_err(invalid)?;
            Ok(PathMatch::StringPrefix(p.to_string()))
        }
        other => Err(Reason::UnknownPathType(other.to_string())),
    }
}

/// Builds the route table from the selected Ingresses (oldest first).
pub fn build(
    selected: &[Selected<'_>],
    owners: &HostOwners<'_>,
    redirect: &RedirectHosts,
    backends: &mut Backends<'_>,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> RouteTable {
    let mut buckets: BTreeMap<HostPattern, Bucket> = BTreeMap::new();
    // (host, path) → the Ingress that holds it.
    let mut claimed: BTreeMap<(HostPattern, PathMatch), String> = BTreeMap::new();
    let mut default: Option<(Arc<Target>, String)> = None;

    // Primaries first, so a canary never takes a path from its primary.
    for s in primaries_first(selected) {
        let Some(spec) = s.ingress.spec.as_ref() else {
            continue;
        };
        let mut hosts_of_ingress = Vec::new();
        for rule in spec.rules.iter().flatten() {
            if let Some(h) = rule.host.as_deref() {
                if let Err(why) = validate::host(h) {
                    problems.push(Problem::new(
                        s.object(),
                        Reason::InvalidHost {
                            host: h.to_string(),
                            why,
                        },
                    ));
                    continue;
                }
            }
            let host = HostPattern::parse(rule.host.as_deref());
            if !owners.admit(&host, s, problems) {
                continue;
            }
            hosts_of_ingress.push(host.clone());
            let redirect_https = redirect.covers(&host);
            for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                let path_type = p.path_type.as_str();
                let path_type = if path_type.is_empty() {
                    "ImplementationSpecific"
                } else {
                    path_type
                };
                let pm = match path_match(p.path.as_deref(), path_type) {
                    Ok(pm) => pm,
                    Err(reason) => {
                        problems.push(Problem::new(s.object(), reason));
                        continue;
                    }
                };
                let key = (host.clone(), pm.clone());
                if let Some(winner) = claimed.get(&key) {
                    let reason = if s.canary {
                        Reason::CanaryNotApplied {
                            host: host.to_string(),
                            path: pm.path().to_string(),
                            primary: winner.clone(),
                        }
                    } else {
                        Reason::PathConflict {
                            host: host.to_string(),
                            path: pm.path().to_string(),
                            path_type: pm.kind().to_string(),
                            winner: winner.clone(),
                        }
                    };
                    problems.push(Problem::new(s.object(), reason));
                    continue;
                }
                let Some(t) = target(s, &p.backend, redirect_https, backends, problems) else {
                    continue;
                };
                claimed.insert(key, s.key());
                buckets
                    .entry(host.clone())
                    .or_insert_with(|| Bucket {
                        routes: Vec::new(),
                        fallback: None,
                    })
                    .routes
                    .push(Route {
                        path: pm,
                        target: t,
                    });
            }
        }

        if let Some(db) = spec.default_backend.as_ref() {
            if s.canary {
                continue;
            }
            // For the Ingress's own hosts: what none of their paths match.
            for host in &hosts_of_ingress {
                let bucket = buckets.entry(host.clone()).or_insert_with(|| Bucket {
                    routes: Vec::new(),
                    fallback: None,
                });
                if bucket.fallback.is_none() {
                    bucket.fallback = target(s, db, redirect.covers(host), backends, problems);
                }
            }
            // For every other request: the oldest Ingress with a defaultBackend.
            match &default {
                None => {
                    default = target(s, db, false, backends, problems).map(|t| (t, s.key()));
                }
                Some((_, winner)) if hosts_of_ingress.is_empty() => {
                    problems.push(Problem::new(
                        s.object(),
                        Reason::DefaultBackendConflict {
                            winner: winner.clone(),
                        },
                    ));
                }
                Some(_) => {}
            }
        }
    }

    let default = match default {
        Some((t, _)) => Some(t),
        None => options
            .default_backend_service
            .as_ref()
            .and_then(|(ns, name)| default_backend_service(ns, name, backends, problems)),
    };
    RouteTable::new(
        buckets
            .into_iter()
            .map(|(h, b)| (h, HostRoutes::new(b.routes, b.fallback)))
            .collect(),
        default,
    )
}

fn default_backend_service(
    ns: &str,
    name: &str,
    backends: &mut Backends<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Arc<Target>> {
    let object = ObjectRef::new("Service", ns, name);
    let Some(port) = backends.first_port(ns, name) else {
        problems.push(Problem::new(
            object,
            Reason::DefaultBackendService {
                error: "the Service does not exist or has no port".into(),
            },
        ));
        return None;
    };
    let svc = IngressServiceBackend {
        name: name.to_string(),
        port: Some(ServiceBackendPort {
            number: Some(port),
            name: None,
        }),
    };
    let (b, problem) = backends.resolve(ns, &svc);
    if let Some(reason) = problem {
        problems.push(Problem::new(object, reason));
    }
    Some(Arc::new(Target::new(
        ns,
        "",
        format!("{name}:{port}"),
        b,
        false,
    )))
}
