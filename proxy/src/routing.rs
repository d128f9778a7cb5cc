//! The routing table: hosts (exact, single-label wildcard, any) to paths to targets.
//!
//! Built once per snapshot by the controller's translate step; read lock-free on every request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::Target;
use crate::canary::Canary;

/// How a rule's path is compared with a request's path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathMatch {
    /// `pathType: Exact`: the whole path, case-sensitive.
    Exact(String),
    /// `pathType: Prefix`: element by element. Stored without a trailing slash (`/` is stored empty).
    Prefix(String),
    /// `pathType: ImplementationSpecific`: a plain string prefix, as ingress-nginx does.
    StringPrefix(String),
    /// A path of a host that uses regexes (`use-regex`, `rewrite-target`): anchored at the
    /// start, case-insensitive, as ingress-nginx's `location ~*`.
    Regex(RegexPath),
}

/// A compiled path regex; compared, ordered and hashed by its source.
#[derive(Clone, Debug)]
pub struct RegexPath {
    source: String,
    regex: regex::Regex,
}

impl RegexPath {
    /// `regex` must be `source` compiled as `^(?:source)`, case-insensitive.
    pub fn new(source: String, regex: regex::Regex) -> Self {
        RegexPath { source, regex }
    }

    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }
}

impl PartialEq for RegexPath {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for RegexPath {}
impl PartialOrd for RegexPath {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RegexPath {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.source.cmp(&other.source)
    }
}
impl std::hash::Hash for RegexPath {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl PathMatch {
    /// A `Prefix` rule from its path as written in the Ingress (trailing slashes ignored).
    pub fn prefix(path: &str) -> Self {
        PathMatch::Prefix(path.trim_end_matches('/').to_string())
    }

    /// Does this rule match a request path (without its query)?
    #[inline]
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => match path.strip_prefix(p.as_str()) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
            PathMatch::StringPrefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(r) => r.regex.is_match(path),
        }
    }

    /// The rule's path as written in the table (for logs and the routes view).
    pub fn path(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::StringPrefix(p) => p,
            PathMatch::Prefix(p) if p.is_empty() => "/",
            PathMatch::Prefix(p) => p,
            PathMatch::Regex(r) => &r.source,
        }
    }

    /// The Kubernetes name of the path type.
    pub fn kind(&self) -> &'static str {
        match self {
            PathMatch::Exact(_) => "Exact",
            PathMatch::Prefix(_) => "Prefix",
            PathMatch::StringPrefix(_) => "ImplementationSpecific",
            PathMatch::Regex(_) => "Regex",
        }
    }

    /// Ordering key: longer paths first; at equal length Exact, then Prefix, then string
    /// prefix, then regex. On a host with regexes, Exact paths come before everything (as
    /// nginx tries `location =` before regex locations).
    fn precedence(&self, regex_host: bool) -> (u8, std::cmp::Reverse<usize>, u8) {
        let (len, rank) = match self {
            PathMatch::Exact(p) => (p.len(), 0),
            PathMatch::Prefix(p) => (p.len(), 1),
            PathMatch::StringPrefix(p) => (p.len(), 2),
            PathMatch::Regex(r) => (r.source.len(), 3),
        };
        let group = u8::from(regex_host && rank != 0);
        (group, std::cmp::Reverse(len), rank)
    }
}

/// One path rule of a host and where it sends requests.
#[derive(Debug)]
pub struct Route {
    pub path: PathMatch,
    pub target: Arc<Target>,
    /// Alternatives chosen per request (canary Ingresses for the same host and path).
    pub canaries: Vec<Canary>,
}

impl Route {
    pub fn new(path: PathMatch, target: Arc<Target>) -> Self {
        Route {
            path,
            target,
            canaries: Vec::new(),
        }
    }
}

/// What a request matched: the route's target and its canaries.
#[derive(Clone, Copy, Debug)]
pub struct Matched<'a> {
    pub target: &'a Arc<Target>,
    pub canaries: &'a [Canary],
    /// The path rule, when a rule matched (not a default backend).
    pub path: Option<&'a PathMatch>,
}

impl<'a> Matched<'a> {
    fn fallback(target: &'a Arc<Target>) -> Self {
        Matched {
            target,
            canaries: &[],
            path: None,
        }
    }
}

/// All path rules of one host (merged across Ingresses), longest first.
#[derive(Debug, Default)]
pub struct HostRoutes {
    routes: Vec<Route>,
    /// Where requests for this host that match no path go (an Ingress `defaultBackend`).
    pub fallback: Option<Arc<Target>>,
}

impl HostRoutes {
    /// Builds the path table; routes are sorted into precedence order (stable, so the caller's
    /// order decides among identical paths — translate removes those first).
    pub fn new(mut routes: Vec<Route>, fallback: Option<Arc<Target>>) -> Self {
        let regex_host = routes.iter().any(|r| matches!(r.path, PathMatch::Regex(_)));
        routes.sort_by_key(|r| r.path.precedence(regex_host));
        HostRoutes { routes, fallback }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    #[inline]
    fn find(&self, path: &str) -> Option<Matched<'_>> {
        match self.routes.iter().find(|r| r.path.matches(path)) {
            Some(r) => Some(Matched {
                target: &r.target,
                canaries: &r.canaries,
                path: Some(&r.path),
            }),
            None => self.fallback.as_ref().map(Matched::fallback),
        }
    }
}

/// Host patterns as the table keys them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostPattern {
    /// `foo.com` (lowercase).
    Exact(String),
    /// `*.foo.com`, stored as the suffix `foo.com`.
    Wildcard(String),
    /// A rule without a host.
    Any,
}

impl HostPattern {
    /// Parses a host as written in an Ingress rule (already validated by translate).
    pub fn parse(host: Option<&str>) -> Self {
        match host {
            None | Some("") => HostPattern::Any,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix("*.") {
                    Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
                    None => HostPattern::Exact(h),
                }
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// Hosts to path tables, plus the catch-all default backend. Host tables are shared, so a
/// table patched for a few hosts ([`RouteTable::patched`]) copies no routes, and its host
/// names are shared too: copying the maps allocates nothing per host.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    exact: Arc<HashMap<Arc<str>, Arc<HostRoutes>>>,
    wildcard: Arc<HashMap<Arc<str>, Arc<HostRoutes>>>,
    any: Option<Arc<HostRoutes>>,
    /// Requests that no host table takes (the oldest rule-less Ingress's `defaultBackend`, or
    /// the controller-wide default backend).
    pub default: Option<Arc<Target>>,
    /// For a table made by [`RouteTable::patched`]: the host tables it put in (the others
    /// are shared with the table it was patched from). `None`: every table is new.
    patched_in: Option<Arc<[Arc<HostRoutes>]>>,
}

impl RouteTable {
    pub fn new(hosts: Vec<(HostPattern, HostRoutes)>, default: Option<Arc<Target>>) -> Self {
        let mut table = RouteTable {
            default,
            ..RouteTable::default()
        };
        for (pattern, routes) in hosts {
            table.insert(pattern, Arc::new(routes));
        }
        table
    }

    fn insert(&mut self, pattern: HostPattern, routes: Arc<HostRoutes>) {
        match pattern {
            HostPattern::Exact(h) => {
                Arc::make_mut(&mut self.exact).insert(h.into(), routes);
            }
            HostPattern::Wildcard(s) => {
                Arc::make_mut(&mut self.wildcard).insert(s.into(), routes);
            }
            HostPattern::Any => self.any = Some(routes),
        }
    }

    /// This table with the host tables of `replaced` dropped and `hosts` put in (every
    /// pattern of `hosts` should be in `replaced`); the other hosts' tables are shared, and
    /// the host maps are copied once, only if another table holds them.
    pub fn patched<'p>(
        &self,
        replaced: impl IntoIterator<Item = &'p HostPattern>,
        hosts: Vec<(HostPattern, Arc<HostRoutes>)>,
    ) -> Self {
        let mut table = self.clone();
        table.patched_in = Some(hosts.iter().map(|(_, r)| r.clone()).collect());
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
                HostPattern::Any => table.any = None,
            }
        }
        for (pattern, routes) in hosts {
            table.insert(pattern, routes);
        }
        table
    }

    /// The host tables, unsorted (for [`RouteTable::patched`]).
    pub fn into_hosts(self) -> Vec<(HostPattern, Arc<HostRoutes>)> {
        let exact = Arc::unwrap_or_clone(self.exact)
            .into_iter()
            .map(|(h, r)| (HostPattern::Exact(h.to_string()), r));
        let wildcard = Arc::unwrap_or_clone(self.wildcard)
            .into_iter()
            .map(|(s, r)| (HostPattern::Wildcard(s.to_string()), r));
        let any = self.any.map(|r| (HostPattern::Any, r));
        exact.chain(wildcard).chain(any).collect()
    }

    /// The path table for a host: exact beats wildcard beats any-host. `host` must be lowercase
    /// and without a port.
    #[inline]
    pub fn host(&self, host: &str) -> Option<&HostRoutes> {
        if let Some(r) = self.exact.get(host) {
            return Some(r);
        }
        if let Some((first, suffix)) = host.split_once('.') {
            if !first.is_empty() {
                if let Some(r) = self.wildcard.get(suffix) {
                    return Some(r);
                }
            }
        }
        self.any.as_deref()
    }

    /// The target for a request. `host` lowercase without port, `path` without query.
    #[inline]
    pub fn find(&self, host: &str, path: &str) -> Option<Matched<'_>> {
        let default = || self.default.as_ref().map(Matched::fallback);
        match self.host(host) {
            Some(routes) => routes.find(path).or_else(default),
            None => default(),
        }
    }

    /// Every host table, sorted by pattern (for the routes view and tests).
    pub fn hosts(&self) -> Vec<(HostPattern, &HostRoutes)> {
        let mut out: Vec<(HostPattern, &HostRoutes)> = self
            .exact
            .iter()
            .map(|(h, r)| (HostPattern::Exact(h.to_string()), &**r))
            .chain(
                self.wildcard
                    .iter()
                    .map(|(h, r)| (HostPattern::Wildcard(h.to_string()), &**r)),
            )
            .chain(self.any.iter().map(|r| (HostPattern::Any, &**r)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every host table, in no particular order and without copying a name (for work over
    /// every target at publish time).
    pub fn host_tables(&self) -> impl Iterator<Item = &HostRoutes> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.any.iter())
            .map(|r| &**r)
    }

    /// The host tables that are new in this table: those [`RouteTable::patched`] put in, or
    /// every one for a table built whole.
    pub fn new_host_tables(&self) -> Box<dyn Iterator<Item = &HostRoutes> + '_> {
        match &self.patched_in {
            Some(tables) => Box::new(tables.iter().map(|r| &**r)),
            None => Box::new(self.host_tables()),
        }
    }

    /// How many path rules the table holds.
    pub fn route_count(&self) -> usize {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.any.iter())
            .map(|h| h.routes.len())
            .sum()
    }
}

/// Lowercases a request's host and strips a port, borrowing when nothing changes.
#[inline]
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        match rest.split_once(']') {
            Some((addr, _)) => addr,
            None => raw,
        }
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::testing::target;

    fn table(rules: &[(&str, PathMatch, &str)]) -> RouteTable {
        let mut by_host: std::collections::BTreeMap<HostPattern, Vec<Route>> = Default::default();
        for (host, path, name) in rules {
            let host = if host.is_empty() { None } else { Some(*host) };
            by_host
                .entry(HostPattern::parse(host))
                .or_default()
                .push(Route::new(path.clone(), target(name)));
        }
        RouteTable::new(
            by_host
                .into_iter()
                .map(|(h, r)| (h, HostRoutes::new(r, None)))
                .collect(),
            None,
        )
    }

    fn hit(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.find(host, path).map(|m| m.target.service.clone())
    }

    #[test]
    fn prefix_matches_element_by_element() {
        let p = PathMatch::prefix("/foo");
        assert!(p.matches("/foo"));
        assert!(p.matches("/foo/"));
        assert!(p.matches("/foo/bar"));
        assert!(!p.matches("/foobar"));
        let p = PathMatch::prefix("/foo/");
        assert!(p.matches("/foo"));
        let root = PathMatch::prefix("/");
        assert!(root.matches("/"));
        assert!(root.matches("/anything"));
    }

    #[test]
    fn string_prefix_is_plain() {
        let p = PathMatch::StringPrefix("/foo".into());
        assert!(p.matches("/foobar"));
        assert!(!p.matches("/fo"));
    }

    #[test]
    fn host_precedence() {
        let t = table(&[
            ("foo.com", PathMatch::prefix("/"), "exact"),
            ("*.foo.com", PathMatch::prefix("/"), "wild"),
            ("", PathMatch::prefix("/"), "any"),
        ]);
        assert_eq!(hit(&t, "foo.com", "/").as_deref(), Some("exact"));
        assert_eq!(hit(&t, "bar.foo.com", "/").as_deref(), Some("wild"));
        assert_eq!(hit(&t, "baz.bar.foo.com", "/").as_deref(), Some("any"));
        assert_eq!(hit(&t, "other.org", "/").as_deref(), Some("any"));
    }

    #[test]
    fn longest_path_then_exact_wins() {
        let t = table(&[
            ("h", PathMatch::prefix("/"), "root"),
            ("h", PathMatch::prefix("/aaa"), "aaa-prefix"),
            ("h", PathMatch::Exact("/aaa".into()), "aaa-exact"),
        ]);
        assert_eq!(hit(&t, "h", "/aaa").as_deref(), Some("aaa-exact"));
        assert_eq!(hit(&t, "h", "/aaa/ccc").as_deref(), Some("aaa-prefix"));
        assert_eq!(hit(&t, "h", "/aaab").as_deref(), Some("root"));
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("Foo.COM:8443"), "foo.com");
        assert_eq!(normalize_host("foo.com."), "foo.com");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert!(matches!(
            normalize_host("foo.com"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
