//! Counters kept with atomics on the request path and rendered in the Prometheus text format.
//!
//! Per-route counters are found once per snapshot (when it is published) and attached to the
//! route's target, so the request path never looks anything up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::snapshot::Snapshot;

/// Upper bounds (seconds) of the request duration histogram.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Kinds of upstream failure, as `kind` label values.
pub const UPSTREAM_ERROR_KINDS: [&str; 8] = [
    "no_endpoint",
    "connect",
    "timeout",
    "upstream",
    "resolve",
    "bad_request",
    "body_too_large",
    "client_timeout",
];

/// Counters of one (namespace, ingress, service).
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Responses by status class: 1xx … 5xx.
    responses: [AtomicU64; 5],
    /// Requests refused by the route's rate limits.
    rate_limited: AtomicU64,
}

impl RouteStats {
    #[inline]
    pub fn record(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

type RouteKey = (String, String, String);

/// All of Portico's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<RouteKey, Arc<RouteStats>>>,
    duration: Histogram,
    unrouted: RouteStats,
    upstream_errors: [AtomicU64; UPSTREAM_ERROR_KINDS.len()],
    upstream_retries: AtomicU64,
    generation: AtomicU64,
    build_micros: AtomicU64,
    problems: AtomicU64,
    route_count: AtomicU64,
    certificates: AtomicU64,
    earliest_expiry: AtomicI64,
    connections_open: AtomicI64,
    connections_total: AtomicU64,
}

impl Metrics {
    /// Attaches counters to every target of a snapshot about to go live, and forgets counters
    /// no route uses any more.
    pub fn bind(&self, snapshot: &Snapshot, generation: u64, build_time: Duration) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let mut live = std::collections::BTreeSet::new();
        for target in snapshot.targets() {
            let key = (
                target.namespace.clone(),
                target.ingress.clone(),
                target.service.clone(),
            );
            let stats = routes.entry(key.clone()).or_default().clone();
            let _ = target.stats.set(stats);
            live.insert(key);
        }
        routes.retain(|k, _| live.contains(k));
        drop(routes);
        self.generation.store(generation, Ordering::Relaxed);
        self.build_micros
            .store(build_time.as_micros() as u64, Ordering::Relaxed);
        self.problems
            .store(snapshot.problems as u64, Ordering::Relaxed);
        self.route_count
            .store(snapshot.routes.route_count() as u64, Ordering::Relaxed);
        self.certificates
            .store(snapshot.tls.certificate_count() as u64, Ordering::Relaxed);
        self.earliest_expiry.store(
            snapshot.tls.earliest_expiry().unwrap_or(0),
            Ordering::Relaxed,
        );
    }

    /// One finished request.
    #[inline]
    pub fn request(&self, stats: Option<&RouteStats>, status: u16, elapsed: Duration) {
        stats.unwrap_or(&self.unrouted).record(status);
        self.duration.observe(elapsed);
    }

    #[inline]
    pub fn upstream_error(&self, kind: &str) {
        if let Some(i) = UPSTREAM_ERROR_KINDS.iter().position(|k| *k == kind) {
            self.upstream_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One more attempt on another endpoint (`proxy-next-upstream`).
    #[inline]
    pub fn upstream_retry(&self) {
        self.upstream_retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP portico_requests_total Responses sent, by ingress, service and status class.\n",
        );
        out.push_str("# TYPE portico_requests_total counter\n");
        let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        if let Ok(routes) = self.routes.lock() {
            for ((ns, ing, svc), stats) in routes.iter() {
                for (i, class) in classes.iter().enumerate() {
                    let n = stats.responses[i].load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "portico_requests_total{{namespace=\"{}\",ingress=\"{}\",service=\"{}\",status=\"{class}\"}} {n}",
                        escape(ns),
                        escape(ing),
                        escape(svc)
                    );
                }
            }
        }
        for (i, class) in classes.iter().enumerate() {
            let n = self.unrouted.responses[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "portico_requests_total{{namespace=\"\",ingress=\"\",service=\"\",status=\"{class}\"}} {n}"
            );
        }

        out.push_str("# HELP portico_requests_rate_limited_total Requests refused by a route's rate limits.\n# TYPE portico_requests_rate_limited_total counter\n");
        if let Ok(routes) = self.routes.lock() {
            for ((ns, ing, svc), stats) in routes.iter() {
                let _ = writeln!(
                    out,
                    "portico_requests_rate_limited_total{{namespace=\"{}\",ingress=\"{}\",service=\"{}\"}} {}",
                    escape(ns),
                    escape(ing),
                    escape(svc),
                    stats.rate_limited.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str(
            "# HELP portico_request_duration_seconds Time from request head to response head.\n",
        );
        out.push_str("# TYPE portico_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += self.duration.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "portico_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.duration.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "portico_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "portico_request_duration_seconds_sum {}",
            self.duration.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "portico_request_duration_seconds_count {count}");

        out.push_str(
            "# HELP portico_upstream_errors_total Requests that could not be forwarded, by kind.\n",
        );
        out.push_str("# TYPE portico_upstream_errors_total counter\n");
        for (i, kind) in UPSTREAM_ERROR_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "portico_upstream_errors_total{{kind=\"{kind}\"}} {}",
                self.upstream_errors[i].load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP portico_upstream_retries_total Attempts sent to another endpoint after a failed one.\n",
        );
        out.push_str("# TYPE portico_upstream_retries_total counter\n");
        let _ = writeln!(
            out,
            "portico_upstream_retries_total {}",
            self.upstream_retries.load(Ordering::Relaxed)
        );

        let gauges: [(&str, &str, &str, String); 9] = [
            (
                "portico_config_generation",
                "gauge",
                "Generation of the live configuration.",
                self.generation.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_config_build_seconds",
                "gauge",
                "Time the last configuration took to build.",
                (self.build_micros.load(Ordering::Relaxed) as f64 / 1e6).to_string(),
            ),
            (
                "portico_config_problems",
                "gauge",
                "Problems reported while building the live configuration.",
                self.problems.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_routes",
                "gauge",
                "Path rules in the live configuration.",
                self.route_count.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_certificates",
                "gauge",
                "Distinct certificates in the live configuration, the default included.",
                self.certificates.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_certificate_earliest_expiry_timestamp_seconds",
                "gauge",
                "Earliest notAfter among configured certificates (0 when none).",
                self.earliest_expiry.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_connections_open",
                "gauge",
                "Client connections open now.",
                self.connections_open.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_connections_total",
                "counter",
                "Client connections accepted.",
                self.connections_total.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_build_info",
                "gauge",
                "Portico's version.",
                "1".to_string(),
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if name == "portico_build_info" {
                let _ = writeln!(
                    out,
                    "{name}{{version=\"{}\"}} {value}",
                    env!("CARGO_PKG_VERSION")
                );
            } else {
                let _ = writeln!(out, "{name} {value}");
            }
        }
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        std::borrow::Cow::Owned(
            v.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n"),
        )
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.request(None, 200, Duration::from_millis(2));
        m.request(None, 503, Duration::from_millis(200));
        let text = m.render();
        assert!(text.contains("portico_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("portico_request_duration_seconds_bucket{le=\"0.25\"} 2"));
        assert!(text.contains("portico_request_duration_seconds_count 2"));
        assert!(text.contains("status=\"5xx\"} 1"));
    }

    #[test]
    fn escapes_labels() {
        assert_eq!(escape("a\"b"), "a\\\"b");
    }
}
