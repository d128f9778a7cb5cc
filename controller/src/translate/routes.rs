//! Rules to routes: hosts, paths, conflicts, host ownership and default backends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend, ServiceBackendPort};
use portico_proxy::{
    Backend, Canary, CanaryHeader, Endpoints, HeaderMatch, HostPattern, HostRoutes,
    PassthroughTable, PassthroughTarget, PathMatch, Policy, RegexPath, Route, RouteTable, Target,
};

use super::backends::Backends;
use super::policy::{self, grammar, RouteContext};
use super::{validate, Options, Selected};
use crate::problem::{ObjectRef, Problem, Reason};

/// Which namespace owns each host (the first to claim it), when ownership is exclusive.
pub struct HostOwners<'a> {
    owners: BTreeMap<HostPattern, &'a str>,
    exclusive: bool,
}

impl HostOwners<'_> {
    /// Does any Ingress claim `host`?
    pub fn claimed(&self, host: &HostPattern) -> bool {
        self.owners.contains_key(host)
    }

    /// Is `host` claimed by `namespace` (or is ownership not exclusive)?
    pub fn owned_by(&self, host: &HostPattern, namespace: &str) -> bool {
        !self.exclusive || self.owners.get(host).is_none_or(|o| *o == namespace)
    }

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
    policy: Arc<Policy>,
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
    Some(Arc::new(
        Target::new(
            s.namespace,
            s.name,
            format!("{}:{}", svc.name, port_label(svc)),
            b,
            redirect,
        )
        .with_policy(policy),
    ))
}

fn path_match(path: Option<&str>, path_type: &str, regex_host: bool) -> Result<PathMatch, Reason> {
    let invalid = |why| Reason::InvalidPath {
        path: path.unwrap_or("").to_string(),
        path_type: path_type.to_string(),
        why,
    };
    if regex_host && path_type != "Exact" && !path_type.is_empty() {
        // ingress-nginx: on a host with `use-regex` or `rewrite-target`, every path but the
        // Exact ones is a regex, anchored at the start and case-insensitive.
        let p = match path {
            None | Some("") => "/",
            Some(p) => p,
        };
        if !p.starts_with('/') {
            return Err(invalid("must start with '/'"));
        }
        let re = grammar::regex(p, true)
            .map_err(|_| invalid("not a valid regex (the host uses regex paths)"))?;
        return Ok(PathMatch::Regex(RegexPath::new(p.to_string(), re)));
    }
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

/// Hosts whose paths are regexes: some Ingress for them sets `use-regex` or `rewrite-target`
/// (ingress-nginx applies it to every path of the host).
fn regex_hosts(selected: &[Selected<'_>]) -> BTreeSet<HostPattern> {
    selected
        .iter()
        .filter(|s| !s.canary && s.policy.regex_paths())
        .filter_map(|s| s.ingress.spec.as_ref())
        .flat_map(|spec| spec.rules.iter().flatten())
        .map(|r| HostPattern::parse(r.host.as_deref()))
        .collect()
}

/// Does `s` ask for cookie affinity on a regex path without saying which cookie path?
fn regex_cookie_without_path(s: &Selected<'_>, pm: &PathMatch) -> bool {
    matches!(pm, PathMatch::Regex(_))
        && s.policy.affinity_cookie == Some(true)
        && s.policy.cookie_path.is_none()
}

/// The policy of one route of `s`: shared by all its routes unless it rewrites paths (the
/// rewrite needs the route's own regex).
fn route_policy(
    s: &Selected<'_>,
    input: &policy::PolicyInput,
    shared: &Arc<Policy>,
    pm: &PathMatch,
    backend: &IngressBackend,
    error_backend: &Option<(Arc<Backend>, String)>,
) -> Arc<Policy> {
    let service = backend
        .service
        .as_ref()
        .map(|svc| format!("{}.{}", svc.name, s.namespace));
    let service = service.as_deref().filter(|_| input.per_service());
    if !input.per_path() && service.is_none() {
        return shared.clone();
    }
    let compiled;
    let re = match (&input.rewrite_target, pm) {
        (None, _) => None,
        (Some(_), PathMatch::Regex(r)) => Some(r.regex()),
        (Some(_), other) => match grammar::regex(&regex::escape(other.path()), true) {
            Ok(re) => {
                compiled = re;
                Some(&compiled)
            }
            Err(_) => None,
        },
    };
    input.build(RouteContext {
        path_regex: re,
        service,
        // A regex is no cookie path: without `session-cookie-path` the cookie gets `/`.
        route_path: (!matches!(pm, PathMatch::Regex(_))).then(|| pm.path()),
        error_backend: error_backend.clone(),
    })
}

/// The error backend of `s` (`default-backend`, else the controller-wide default backend
/// when `custom-http-errors` asks for one).
fn error_backend(
    s: &Selected<'_>,
    backends: &mut Backends<'_>,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> Option<(Arc<Backend>, String)> {
    let (ns, name) = match (&s.policy.error_backend, &s.policy.custom_errors) {
        (Some(name), _) => (s.namespace.to_string(), name.clone()),
        (None, Some(_)) => options.default_backend_service.clone()?,
        (None, None) => return None,
    };
    let Some((backend, port, problem)) = backends.resolve_first_port(&ns, &name) else {
        problems.push(Problem::new(
            s.object(),
            Reason::ErrorBackend {
                service: format!("{ns}/{name}"),
            },
        ));
        return None;
    };
    if let Some(reason) = problem {
        problems.push(Problem::new(s.object(), reason));
    }
    Some((backend, format!("{name}:{port}")))
}

fn canary(s: &Selected<'_>, target: Arc<Target>) -> Canary {
    let input = &s.canary_input;
    Canary {
        target,
        header: input.header.clone().map(|name| CanaryHeader {
            name,
            matches: match (&input.header_value, &input.header_pattern) {
                (Some(v), _) => HeaderMatch::Value(v.clone()),
                (None, Some(re)) => HeaderMatch::Pattern(re.clone()),
                (None, None) => HeaderMatch::AlwaysNever,
            },
        }),
        cookie: input.cookie.clone(),
        weight: input.weight,
        total: input.total,
    }
}

/// `server-alias` names, each with the host it serves like and the Ingress that asked.
#[derive(Debug, Default)]
pub struct Aliases(pub BTreeMap<HostPattern, (HostPattern, String)>);

impl Aliases {
    /// The aliases of `host`.
    pub fn of<'s>(&'s self, host: &'s HostPattern) -> impl Iterator<Item = &'s HostPattern> {
        self.0
            .iter()
            .filter(move |(_, (real, _))| real == host)
            .map(|(alias, _)| alias)
    }
}

/// The host an Ingress's aliases attach to: its first rule host (as ingress-nginx, whose
/// first server of the Ingress takes the aliases).
pub fn alias_target(s: &Selected<'_>) -> Option<HostPattern> {
    let spec = s.ingress.spec.as_ref()?;
    let host = spec
        .rules
        .iter()
        .flatten()
        .find_map(|r| r.host.as_deref())?;
    validate::host(host).ok()?;
    Some(HostPattern::parse(Some(host)))
}

/// Decides every `server-alias`: an alias serves like its Ingress's first rule host (routes,
/// certificate, client authentication). A name some Ingress has as a host stays that
/// Ingress's (the real host wins); a name two Ingresses alias goes to the oldest. Both are
/// reported.
pub fn aliases(
    selected: &[Selected<'_>],
    owners: &HostOwners<'_>,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> Aliases {
    let mut out = Aliases::default();
    for s in selected
        .iter()
        .filter(|s| !s.canary && !s.passthrough(options))
    {
        if s.host_tls.aliases.is_empty() {
            continue;
        }
        let key = super::policy::NGINX_PREFIX.to_string() + "server-alias";
        let Some(real) = alias_target(s) else {
            problems.push(Problem::new(
                s.object(),
                Reason::InvalidAnnotation {
                    key,
                    why: "the Ingress has no rule with a host for the aliases to serve like".into(),
                },
            ));
            continue;
        };
        if owners.claimed(&real) && !owners.owned_by(&real, s.namespace) {
            continue;
        }
        for alias in &s.host_tls.aliases {
            let pattern = HostPattern::parse(Some(alias));
            if pattern == real {
                continue;
            }
            let why = if owners.claimed(&pattern) {
                format!("{alias} is the host of an Ingress, which serves it; the alias is ignored")
            } else if let Some((_, winner)) = out.0.get(&pattern) {
                format!("{alias} is already an alias of {winner}; the alias is ignored")
            } else {
                out.0.insert(pattern, (real.clone(), s.key()));
                continue;
            };
            problems.push(Problem::new(
                s.object(),
                Reason::InvalidAnnotation {
                    key: key.clone(),
                    why,
                },
            ));
        }
    }
    out
}

/// The TLS passthrough table: for each passthrough Ingress, the host of its first rule to the
/// backend of that rule's first path (or its `defaultBackend`), as ingress-nginx. The oldest
/// Ingress wins a host.
pub fn passthrough(
    selected: &[Selected<'_>],
    owners: &HostOwners<'_>,
    backends: &mut Backends<'_>,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> PassthroughTable {
    let key = || super::policy::NGINX_PREFIX.to_string() + "ssl-passthrough";
    let mut chosen: BTreeMap<HostPattern, Arc<PassthroughTarget>> = BTreeMap::new();
    let mut owner: BTreeMap<HostPattern, String> = BTreeMap::new();
    for s in selected
        .iter()
        .filter(|s| s.host_tls.passthrough && !s.canary)
    {
        let invalid =
            |why: String| Problem::new(s.object(), Reason::InvalidAnnotation { key: key(), why });
        if !options.enable_ssl_passthrough {
            problems.push(invalid(
                "TLS passthrough is disabled; start the controller with --enable-ssl-passthrough (the Ingress is served with TLS terminated)".into(),
            ));
            continue;
        }
        let Some(spec) = s.ingress.spec.as_ref() else {
            continue;
        };
        let first = spec.rules.iter().flatten().next();
        let Some(host) = first.and_then(|r| r.host.as_deref()) else {
            problems.push(invalid("passthrough needs a rule with a host".into()));
            continue;
        };
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
        if let Some(winner) = owner.get(&pattern) {
            problems.push(invalid(format!(
                "{host} is already passed through by {winner}"
            )));
            continue;
        }
        let backend = first
            .and_then(|r| r.http.as_ref())
            .and_then(|h| h.paths.first())
            .map(|p| &p.backend)
            .or(spec.default_backend.as_ref());
        let Some(svc) = backend.and_then(|b| b.service.as_ref()) else {
            problems.push(Problem::new(s.object(), Reason::UnsupportedBackend));
            continue;
        };
        let (b, problem) = backends.resolve(s.namespace, svc);
        if let Some(reason) = problem {
            problems.push(Problem::new(s.object(), reason));
        }
        owner.insert(pattern.clone(), s.key());
        chosen.insert(
            pattern,
            Arc::new(PassthroughTarget {
                backend: b,
                ingress: s.key(),
            }),
        );
    }
    PassthroughTable::new(chosen)
}

fn copy_route(r: &Route) -> Route {
    Route {
        path: r.path.clone(),
        target: r.target.clone(),
        canaries: r
            .canaries
            .iter()
            .map(|c| Canary {
                target: c.target.clone(),
                header: c.header.as_ref().map(|h| CanaryHeader {
                    name: h.name.clone(),
                    matches: match &h.matches {
                        HeaderMatch::AlwaysNever => HeaderMatch::AlwaysNever,
                        HeaderMatch::Value(v) => HeaderMatch::Value(v.clone()),
                        HeaderMatch::Pattern(p) => HeaderMatch::Pattern(p.clone()),
                    },
                }),
                cookie: c.cookie.clone(),
                weight: c.weight,
                total: c.total,
            })
            .collect(),
    }
}

/// Builds the route table from the selected Ingresses (oldest first).
pub fn build(
    selected: &[Selected<'_>],
    owners: &HostOwners<'_>,
    redirect: &RedirectHosts,
    aliases: &Aliases,
    backends: &mut Backends<'_>,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> RouteTable {
    let mut buckets: BTreeMap<HostPattern, Bucket> = BTreeMap::new();
    // (host, path) → the Ingress that holds it.
    let mut claimed: BTreeMap<(HostPattern, &'static str, String), String> = BTreeMap::new();
    let mut default: Option<(Arc<Target>, String)> = None;
    let regex_hosts = regex_hosts(selected);
    let mut www_twins: Vec<(String, String)> = Vec::new();

    // Primaries first, so a canary never takes a path from its primary.
    for s in primaries_first(selected) {
        let Some(spec) = s.ingress.spec.as_ref() else {
            continue;
        };
        if s.passthrough(options) {
            // Its host's TLS connections go to the backend unterminated; nothing else.
            continue;
        }
        let error_backend = error_backend(s, backends, options, problems);
        let shared_policy = s.policy.build(RouteContext {
            error_backend: error_backend.clone(),
            ..RouteContext::default()
        });
        let mut hosts_of_ingress = Vec::new();
        let mut cookie_path_reported = false;
        for rule in spec.rules.iter().flatten() {
            if rule.host.is_none() && s.host_tls.client.is_some() && !s.canary {
                // Client certificates are chosen by SNI, per host: a rule without host could
                // not be protected, so it is not served (fail closed).
                problems.push(Problem::new(
                    s.object(),
                    Reason::InvalidAnnotation {
                        key: super::policy::NGINX_PREFIX.to_string() + "auth-tls-secret",
                        why: "client certificates apply to hosts; the rule without host is not served".into(),
                    },
                ));
                continue;
            }
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
            if let (HostPattern::Exact(h), false, Some(true)) =
                (&host, s.canary, s.policy.from_to_www_redirect)
            {
                let twin = match h.strip_prefix("www.") {
                    Some(bare) => bare.to_string(),
                    None => format!("www.{h}"),
                };
                www_twins.push((twin, h.clone()));
            }
            let redirect_https = s.policy.redirects_to_https(redirect.covers(&host));
            let regex_host = regex_hosts.contains(&host);
            for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                let path_type = p.path_type.as_str();
                let path_type = if path_type.is_empty() {
                    "ImplementationSpecific"
                } else {
                    path_type
                };
                let pm = match path_match(p.path.as_deref(), path_type, regex_host) {
                    Ok(pm) => pm,
                    Err(reason) => {
                        problems.push(Problem::new(s.object(), reason));
                        continue;
                    }
                };
                let key = (host.clone(), pm.kind(), pm.path().to_string());
                if !s.canary && !cookie_path_reported && regex_cookie_without_path(s, &pm) {
                    cookie_path_reported = true;
                    problems.push(Problem::new(
                        s.object(),
                        Reason::InvalidAnnotation {
                            key: format!("{}session-cookie-path", super::policy::NGINX_PREFIX),
                            why: "cookie affinity on regex paths needs session-cookie-path (as in ingress-nginx); the cookie's Path is /".into(),
                        },
                    ));
                }
                if s.canary {
                    // A canary joins the primary's route: same policy, its own backend. Without
                    // a primary for its host and path, it is served like any Ingress.
                    let primary = buckets
                        .get_mut(&host)
                        .and_then(|b| b.routes.iter_mut().find(|r| r.path == pm));
                    if let Some(primary) = primary {
                        let policy = primary.target.policy.clone();
                        let redirect_https = primary.target.redirect_https;
                        if let Some(t) =
                            target(s, &p.backend, redirect_https, policy, backends, problems)
                        {
                            primary.canaries.push(canary(s, t));
                        }
                        continue;
                    }
                }
                if let Some(winner) = claimed.get(&key) {
                    problems.push(Problem::new(
                        s.object(),
                        Reason::PathConflict {
                            host: host.to_string(),
                            path: pm.path().to_string(),
                            path_type: pm.kind().to_string(),
                            winner: winner.clone(),
                        },
                    ));
                    continue;
                }
                // A RoutePolicy narrowed to this host or path: the route's own policy.
                let written = (
                    rule.host.clone().unwrap_or_default(),
                    p.path.clone().unwrap_or_default(),
                );
                let (policy, redirect_https) = match s.narrowed.get(&written) {
                    Some(input) => {
                        let shared = input.build(RouteContext {
                            error_backend: error_backend.clone(),
                            ..RouteContext::default()
                        });
                        (
                            route_policy(s, input, &shared, &pm, &p.backend, &error_backend),
                            input.redirects_to_https(redirect.covers(&host)),
                        )
                    }
                    None => (
                        route_policy(
                            s,
                            &s.policy,
                            &shared_policy,
                            &pm,
                            &p.backend,
                            &error_backend,
                        ),
                        redirect_https,
                    ),
                };
                let Some(t) = target(s, &p.backend, redirect_https, policy, backends, problems)
                else {
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
                    .push(Route::new(pm, t));
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
                    let redirect_https = s.policy.redirects_to_https(redirect.covers(host));
                    bucket.fallback = target(
                        s,
                        db,
                        redirect_https,
                        shared_policy.clone(),
                        backends,
                        problems,
                    );
                }
            }
            // For every other request: the oldest Ingress with a defaultBackend.
            match &default {
                None => {
                    default = target(s, db, false, shared_policy.clone(), backends, problems)
                        .map(|t| (t, s.key()));
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

    // `server-alias`: the alias serves what its host serves.
    for (alias, (real, _)) in &aliases.0 {
        let Some(bucket) = buckets.get(real) else {
            continue;
        };
        let copy = Bucket {
            routes: bucket.routes.iter().map(copy_route).collect(),
            fallback: bucket.fallback.clone(),
        };
        buckets.entry(alias.clone()).or_insert(copy);
    }

    // `from-to-www-redirect`: the twin host redirects to the declared one, unless some
    // Ingress serves the twin itself (then the annotation is omitted, as in ingress-nginx).
    for (twin, host) in www_twins {
        let pattern = HostPattern::Exact(twin);
        if buckets.contains_key(&pattern) || owners.claimed(&pattern) {
            continue;
        }
        let nowhere = Arc::new(Backend::new("redirect", Endpoints::Static(Vec::new())));
        let redirect = Target::new("", "", "redirect", nowhere, false)
            .with_policy(policy::host_redirect(&host));
        buckets.insert(
            pattern,
            Bucket {
                routes: Vec::new(),
                fallback: Some(Arc::new(redirect)),
            },
        );
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
    let Some((b, port, problem)) = backends.resolve_first_port(ns, name) else {
        problems.push(Problem::new(
            object,
            Reason::DefaultBackendService {
                error: "the Service does not exist or has no port".into(),
            },
        ));
        return None;
    };
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
