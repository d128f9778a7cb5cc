//! Control-plane state the admin listener shows: watch restarts, which watches have not synced
//! yet (for `/readyz`), and leader election. Sources and the elector report here; nothing on
//! the request path touches it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};

use portico_proxy::metrics::{escape, header};

/// The process's control-plane telemetry.
pub static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(Telemetry::default);

/// Control-plane counters and states.
#[derive(Debug, Default)]
pub struct Telemetry {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Watch errors (each followed by a restart with backoff) by kind.
    watch_restarts: BTreeMap<String, u64>,
    /// Kinds whose first list has not arrived; `None` when no watch runs (manifest mode).
    unsynced: Option<Vec<String>>,
    /// Lease name and whether this replica leads; `None` without an election.
    leader: Option<(String, bool)>,
    /// Spans by export outcome; `None` when spans are not exported.
    spans: Option<[u64; 3]>,
}

/// What became of exported spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanOutcome {
    Exported,
    /// The export queue was full.
    Dropped,
    /// The collector refused or did not answer.
    Failed,
}

impl Telemetry {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// A watch of `kind` failed and restarts with backoff.
    pub fn watch_restarted(&self, kind: &str) {
        self.with(|s| *s.watch_restarts.entry(kind.to_string()).or_default() += 1);
    }

    /// The kinds still waiting for their first list (empty: all synced).
    pub fn set_unsynced(&self, kinds: Vec<String>) {
        self.with(|s| s.unsynced = Some(kinds));
    }

    /// Why not ready, from the control plane's side.
    pub fn not_ready(&self) -> Option<String> {
        self.with(|s| match &s.unsynced {
            Some(kinds) if !kinds.is_empty() => Some(format!(
                "waiting for the first list of: {}",
                kinds.join(", ")
            )),
            _ => None,
        })
        .flatten()
    }

    /// Leadership of the lease `name` changed (or was first decided).
    pub fn set_leader(&self, name: &str, leading: bool) {
        self.with(|s| s.leader = Some((name.to_string(), leading)));
    }

    /// Whether this replica leads, when there is an election.
    pub fn leader(&self) -> Option<(String, bool)> {
        self.with(|s| s.leader.clone()).flatten()
    }

    /// `n` spans had `outcome` (0 declares that spans are exported).
    pub fn spans(&self, outcome: SpanOutcome, n: u64) {
        let i = outcome as usize;
        self.with(|s| s.spans.get_or_insert([0; 3])[i] += n);
    }

    /// Appends the control-plane metrics.
    pub fn render(&self, out: &mut String) {
        let Some((restarts, leader, spans)) =
            self.with(|s| (s.watch_restarts.clone(), s.leader.clone(), s.spans))
        else {
            return;
        };
        if let Some(spans) = spans {
            header(
                out,
                "portico_otlp_spans_total",
                "counter",
                "Request spans by export result (exported, dropped: queue full, failed: collector error).",
            );
            for (i, result) in ["exported", "dropped", "failed"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "portico_otlp_spans_total{{result=\"{result}\"}} {}",
                    spans[i]
                );
            }
        }
        header(
            out,
            "portico_watch_restarts_total",
            "counter",
            "Kubernetes watch failures, each followed by a restart with backoff, by kind.",
        );
        for (kind, n) in &restarts {
            let _ = writeln!(
                out,
                "portico_watch_restarts_total{{kind=\"{}\"}} {n}",
                escape(kind)
            );
        }
        header(
            out,
            "portico_leader_election_status",
            "gauge",
            "1 when this replica holds the leader lease (it writes status and events), else 0.",
        );
        if let Some((name, leading)) = leader {
            let _ = writeln!(
                out,
                "portico_leader_election_status{{name=\"{}\"}} {}",
                escape(&name),
                u8::from(leading)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_restarts_and_leadership() {
        let t = Telemetry::default();
        t.watch_restarted("Ingress");
        t.watch_restarted("Ingress");
        t.set_leader("portico-leader", true);
        let mut out = String::new();
        t.render(&mut out);
        assert!(
            out.contains("portico_watch_restarts_total{kind=\"Ingress\"} 2"),
            "{out}"
        );
        assert!(out.contains("portico_leader_election_status{name=\"portico-leader\"} 1"));
        t.set_leader("portico-leader", false);
        let mut out = String::new();
        t.render(&mut out);
        assert!(out.contains("portico_leader_election_status{name=\"portico-leader\"} 0"));
    }

    #[test]
    fn readiness_names_the_unsynced_kinds() {
        let t = Telemetry::default();
        assert_eq!(t.not_ready(), None);
        t.set_unsynced(vec!["EndpointSlice".into(), "Secret".into()]);
        assert_eq!(
            t.not_ready().as_deref(),
            Some("waiting for the first list of: EndpointSlice, Secret")
        );
        t.set_unsynced(vec![]);
        assert_eq!(t.not_ready(), None);
    }
}
