//! The router against a reference model: a table built from fuzzed rules answers every
//! (host, path) exactly as a brute-force reading of the rules does.
//!
//! Model: the host's rules are the exact host's if any rule names it, else the wildcard's
//! (`*.suffix` takes one more label), else the host-less rules. Among them, the matching
//! rules (Exact: equal; Prefix: the rule's `/`-separated elements begin the path's;
//! ImplementationSpecific: a string prefix) with the longest path win, Exact before Prefix
//! before string prefix; else the table's default.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use portico_proxy::{
    Backend, Endpoints, HostPattern, HostRoutes, PathMatch, Route, RouteTable, Target,
};

const HOSTS: &[&str] = &["", "a.com", "*.a.com", "b.a.com", "*.b.a.com", "c.com"];
const QUERY_HOSTS: &[&str] = &[
    "a.com",
    "b.a.com",
    "x.a.com",
    "y.b.a.com",
    "c.com",
    "d.com",
    ".a.com",
];

#[derive(Clone, Debug)]
struct Rule {
    host: &'static str,
    kind: u8,
    path: String,
}

/// Bytes to a path over a small alphabet, so that paths collide often.
fn path_of(bytes: &[u8], rule: bool) -> String {
    let mut p = String::from("/");
    for b in bytes {
        p.push(match b % 4 {
            0 => 'a',
            1 => 'b',
            2 if !rule || !p.ends_with('/') => '/',
            _ => 'a',
        });
    }
    p
}

fn elements(p: &str) -> Vec<&str> {
    p.split('/').skip(1).collect()
}

fn model_matches(rule: &Rule, path: &str) -> bool {
    match rule.kind {
        0 => path == rule.path,
        1 => {
            let r = elements(rule.path.trim_end_matches('/'));
            let p = elements(path);
            p.len() >= r.len() && p[..r.len()] == r[..]
        }
        _ => path.starts_with(rule.path.as_str()),
    }
}

fn model_len(rule: &Rule) -> usize {
    match rule.kind {
        1 => rule.path.trim_end_matches('/').len(),
        _ => rule.path.len(),
    }
}

/// The index of the rule the model picks, or None (the default).
fn model(rules: &[Rule], host: &str, path: &str) -> Option<usize> {
    let table: &str = if rules.iter().any(|r| r.host == host) {
        host
    } else {
        let wildcard = host
            .split_once('.')
            .filter(|(first, _)| !first.is_empty())
            .map(|(_, suffix)| format!("*.{suffix}"));
        match wildcard {
            Some(w) if rules.iter().any(|r| r.host == w) => {
                rules.iter().find(|r| r.host == w).map(|r| r.host)?
            }
            _ if rules.iter().any(|r| r.host.is_empty()) => "",
            _ => return None,
        }
    };
    let mut best: Option<(usize, (usize, u8))> = None;
    for (i, r) in rules.iter().enumerate() {
        if r.host != table || !model_matches(r, path) {
            continue;
        }
        let key = (model_len(r), r.kind);
        // Longer first; at equal length the lower kind; at a full tie the first rule.
        let better = match best {
            None => true,
            Some((_, (len, kind))) => key.0 > len || (key.0 == len && key.1 < kind),
        };
        if better {
            best = Some((i, key));
        }
    }
    best.map(|(i, _)| i)
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let Some(rule_bytes) = parts.next() else {
        return;
    };
    // Rules: chunks of up to 5 bytes (host, kind, path bytes).
    let mut rules: Vec<Rule> = Vec::new();
    for chunk in rule_bytes.chunks(5).take(24) {
        let host = HOSTS[chunk[0] as usize % HOSTS.len()];
        let kind = chunk.get(1).map_or(1, |k| k % 3);
        let path = path_of(chunk.get(2..).unwrap_or_default(), true);
        // translate keeps one rule per (host, kind, path): so does the table.
        let stored = |r: &Rule| match r.kind {
            1 => r.path.trim_end_matches('/').to_string(),
            _ => r.path.clone(),
        };
        let rule = Rule { host, kind, path };
        if rules
            .iter()
            .any(|r| r.host == host && r.kind == kind && stored(r) == stored(&rule))
        {
            continue;
        }
        rules.push(rule);
    }
    let backend = Arc::new(Backend::new("b", Endpoints::Static(vec![])));
    let target = |i: usize| {
        Arc::new(Target::new(
            "ns",
            "ing",
            i.to_string(),
            backend.clone(),
            false,
        ))
    };
    let mut hosts: Vec<(HostPattern, Vec<Route>)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let pattern = HostPattern::parse(Some(r.host));
        let path = match r.kind {
            0 => PathMatch::Exact(r.path.clone()),
            1 => PathMatch::prefix(&r.path),
            _ => PathMatch::StringPrefix(r.path.clone()),
        };
        let route = Route::new(path, target(i));
        match hosts.iter_mut().find(|(p, _)| *p == pattern) {
            Some((_, routes)) => routes.push(route),
            None => hosts.push((pattern, vec![route])),
        }
    }
    let default = target(usize::MAX);
    let table = RouteTable::new(
        hosts
            .into_iter()
            .map(|(p, routes)| (p, HostRoutes::new(routes, None)))
            .collect(),
        Some(default),
    );
    for q in parts {
        let Some((&h, path)) = q.split_first() else {
            continue;
        };
        let host = QUERY_HOSTS[h as usize % QUERY_HOSTS.len()];
        let path = path_of(path, false);
        let got = table.find(host, &path).map(|m| m.target.service.clone());
        let want =
            Some(model(&rules, host, &path).map_or(usize::MAX.to_string(), |i| i.to_string()));
        assert_eq!(got, want, "{host}{path} with rules {rules:#?}");
    }
});
