//! The permissions Portico needs, as one table: the chart's ClusterRole and Role are generated
//! from it (`charts/portico/files/*-rules.yaml`) and tests check that the watches and writes
//! of the controller stay inside it.

use std::fmt::Write as _;

/// One RBAC rule.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub api_group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const READ: &[&str] = &["get", "list", "watch"];

/// What the watches read, cluster-wide (or in `--watch-namespace`s).
pub const WATCHED: &[Rule] = &[
    Rule {
        api_group: "networking.k8s.io",
        resources: &["ingresses", "ingressclasses"],
        verbs: READ,
    },
    Rule {
        api_group: "",
        resources: &["services", "secrets"],
        verbs: READ,
    },
    Rule {
        api_group: "discovery.k8s.io",
        resources: &["endpointslices"],
        verbs: READ,
    },
    Rule {
        api_group: "portico.dev",
        resources: &["routepolicies", "ingressclassparameters"],
        verbs: READ,
    },
];

/// Everything granted cluster-wide: the watches, the status of Ingresses and of Portico's own
/// resources, Events.
pub const CLUSTER_RULES: &[Rule] = &[
    WATCHED[0],
    WATCHED[1],
    WATCHED[2],
    WATCHED[3],
    Rule {
        api_group: "networking.k8s.io",
        resources: &["ingresses/status"],
        verbs: &["get", "patch", "update"],
    },
    Rule {
        api_group: "portico.dev",
        resources: &["routepolicies/status", "ingressclassparameters/status"],
        verbs: &["patch", "update"],
    },
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
    },
];

/// Granted in Portico's own namespace: the leader-election Lease.
pub const NAMESPACE_RULES: &[Rule] = &[Rule {
    api_group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "create", "update"],
}];

/// The rules as YAML list items, as the chart includes them.
pub fn render(rules: &[Rule]) -> String {
    let mut out = String::new();
    for r in rules {
        let list = |items: &[&str]| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "- apiGroups: [\"{}\"]\n  resources: [{}]\n  verbs: [{}]",
            r.api_group,
            list(r.resources),
            list(r.verbs)
        );
    }
    out
}

/// Does the table grant `verb` on `group`/`resource`?
pub fn allows(rules: &[Rule], group: &str, resource: &str, verb: &str) -> bool {
    rules
        .iter()
        .any(|r| r.api_group == group && r.resources.contains(&resource) && r.verbs.contains(&verb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn chart_file(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../charts/portico/files")
            .join(name)
    }

    /// The chart's rule files are generated from the table; `PORTICO_UPDATE_CHART=1` rewrites them.
    #[test]
    fn chart_rules_match_the_table() {
        for (file, rules) in [
            ("cluster-rules.yaml", CLUSTER_RULES),
            ("namespace-rules.yaml", NAMESPACE_RULES),
        ] {
            let want = render(rules);
            let path = chart_file(file);
            if std::env::var_os("PORTICO_UPDATE_CHART").is_some() {
                std::fs::write(&path, &want).unwrap();
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                have,
                want,
                "{} is stale: run PORTICO_UPDATE_CHART=1 cargo test -p portico rbac",
                path.display()
            );
        }
    }

    #[test]
    fn every_watched_kind_is_granted() {
        for (group, resource) in crate::source::cluster::WATCHED_KINDS {
            for verb in ["list", "watch"] {
                assert!(
                    allows(WATCHED, group, resource, verb),
                    "{group}/{resource} {verb}"
                );
            }
        }
    }

    /// Every watch is granted cluster-wide: nothing in `WATCHED` is left out of the ClusterRole.
    #[test]
    fn the_cluster_role_grants_every_watch() {
        for rule in WATCHED {
            for resource in rule.resources {
                for verb in rule.verbs {
                    assert!(
                        allows(CLUSTER_RULES, rule.api_group, resource, verb),
                        "{}/{resource} {verb}",
                        rule.api_group
                    );
                }
            }
        }
    }

    #[test]
    fn portico_resources_are_read_and_only_their_status_written() {
        for resource in ["routepolicies", "ingressclassparameters"] {
            for verb in ["get", "list", "watch"] {
                assert!(allows(CLUSTER_RULES, "portico.dev", resource, verb));
            }
            for verb in ["create", "update", "patch", "delete"] {
                assert!(!allows(CLUSTER_RULES, "portico.dev", resource, verb));
            }
            for verb in ["patch", "update"] {
                let status = format!("{resource}/status");
                assert!(allows(CLUSTER_RULES, "portico.dev", &status, verb));
            }
        }
    }

    #[test]
    fn secrets_are_never_written() {
        for verb in ["create", "update", "patch", "delete"] {
            assert!(!allows(CLUSTER_RULES, "", "secrets", verb));
        }
    }
}
