//! Portico's metrics, kept with atomics on the request path and rendered in the Prometheus text
//! format. Names follow ingress-nginx's where one exists (see docs/metrics.md for the mapping).
//!
//! Cardinality is bounded by the configuration, never by traffic: per-route series are keyed by
//! (namespace, ingress, service) — no path, no host from the request — and methods and status
//! codes fold into fixed sets (ten methods, five status classes). A route's counters are found
//! once per snapshot (when it is published) and attached to its target, so the request path
//! looks nothing up and takes no lock; they are allocated on the route's first request, so an
//! idle configuration of 10,000 routes costs only the map.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;

use crate::error::{ForwardError, Side};
use crate::snapshot::Snapshot;
use crate::tls::TlsTable;

/// Upper bounds (seconds) of the duration histograms (Prometheus' defaults plus 1 ms).
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Kinds of upstream (and internal) failure, as `kind` label values.
pub const UPSTREAM_ERROR_KINDS: [&str; 6] = [
    "no_endpoint",
    "connect",
    "timeout",
    "upstream",
    "resolve",
    "internal",
];

/// Kinds of failure caused by the client, as `kind` label values.
pub const CLIENT_ERROR_KINDS: [&str; 4] = [
    "bad_request",
    "body_too_large",
    "client_timeout",
    "client_body",
];

/// `method` label values; anything else is `OTHER`.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// `status` label values: the status class.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `version` label values of TLS handshakes (`unknown`: it failed before one was chosen).
pub const TLS_VERSIONS: [&str; 3] = ["TLSv1.2", "TLSv1.3", "unknown"];

/// How a TLS handshake ended, as `result` label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeResult {
    Ok,
    Failed,
    Timeout,
}

impl HandshakeResult {
    pub const ALL: [HandshakeResult; 3] = [
        HandshakeResult::Ok,
        HandshakeResult::Failed,
        HandshakeResult::Timeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            HandshakeResult::Ok => "ok",
            HandshakeResult::Failed => "failed",
            HandshakeResult::Timeout => "timeout",
        }
    }
}

/// The index of a method in [`METHODS`].
#[inline]
pub fn method_index(m: &Method) -> u8 {
    let i = match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    };
    i as u8
}

#[inline]
fn status_class(status: u16) -> usize {
    (status / 100).clamp(1, 5) as usize - 1
}

/// A histogram with the fixed [`DURATION_BUCKETS`]. Buckets are stored non-cumulative and
/// summed when rendered.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    #[inline]
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        if labels.is_empty() {
            let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        } else {
            let _ = writeln!(
                out,
                "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {count}"
            );
        }
    }
}

/// The counters of one route (namespace, ingress, service).
#[derive(Debug, Default)]
struct RouteCounters {
    /// Responses by method and status class.
    responses: [[AtomicU64; STATUS_CLASSES.len()]; METHODS.len()],
    request_duration: Histogram,
    upstream_duration: Histogram,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Requests refused by the route's rate limits.
    rate_limited: AtomicU64,
}

/// Counters of one (namespace, ingress, service), shared by every route that names it.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Allocated on the first request (an idle route costs one pointer).
    counters: OnceLock<Box<RouteCounters>>,
}

impl RouteStats {
    #[inline]
    fn counters(&self) -> &RouteCounters {
        self.counters.get_or_init(Box::default)
    }

    /// A request was refused by the route's rate limits.
    #[inline]
    pub fn rate_limited(&self) {
        self.counters().rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// A response head went out.
    #[inline]
    pub fn record(&self, method: u8, status: u16) {
        let m = (method as usize).min(METHODS.len() - 1);
        self.counters().responses[m][status_class(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// The response ended (or the client went away): its whole duration and bytes.
    #[inline]
    pub fn finished(&self, elapsed: Duration, bytes_in: u64, bytes_out: u64) {
        let c = self.counters();
        c.request_duration.observe(elapsed);
        c.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        c.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// A backend's response head arrived `elapsed` after the request was sent.
    #[inline]
    pub fn upstream_response(&self, elapsed: Duration) {
        self.counters().upstream_duration.observe(elapsed);
    }
}

/// What the live configuration says, for rendering (not on the request path).
#[derive(Debug, Default)]
struct ConfigInfo {
    /// The live certificate table, for `portico_ssl_expire_time_seconds` (one line per
    /// configured TLS host, rendered when scraped).
    tls: Option<TlsTable>,
    /// Problems of the live configuration by reason code.
    problems: BTreeMap<String, usize>,
}

/// All of Portico's data-plane and publishing metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Route counters by their rendered label set (`namespace="…",ingress="…",service="…"`).
    routes: Mutex<BTreeMap<Box<str>, Arc<RouteStats>>>,
    /// Requests no route took (404, or before the first configuration).
    unrouted: Arc<RouteStats>,
    upstream_errors: [AtomicU64; UPSTREAM_ERROR_KINDS.len()],
    client_errors: [AtomicU64; CLIENT_ERROR_KINDS.len()],
    upstream_retries: AtomicU64,
    tls_handshakes: [[AtomicU64; 3]; TLS_VERSIONS.len()],
    generation: AtomicU64,
    build_micros: AtomicU64,
    publish_micros: AtomicU64,
    last_publish_millis: AtomicI64,
    last_publish_ok: AtomicU64,
    publishes_ok: AtomicU64,
    publishes_failed: AtomicU64,
    route_count: AtomicU64,
    certificates: AtomicU64,
    earliest_expiry: AtomicI64,
    connections_active: AtomicI64,
    connections_total: AtomicU64,
    passthrough_total: AtomicU64,
    config: Mutex<ConfigInfo>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: Mutex::default(),
            unrouted: Arc::default(),
            upstream_errors: Default::default(),
            client_errors: Default::default(),
            upstream_retries: AtomicU64::new(0),
            tls_handshakes: Default::default(),
            generation: AtomicU64::new(0),
            build_micros: AtomicU64::new(0),
            publish_micros: AtomicU64::new(0),
            last_publish_millis: AtomicI64::new(0),
            // Nothing has failed yet.
            last_publish_ok: AtomicU64::new(1),
            publishes_ok: AtomicU64::new(0),
            publishes_failed: AtomicU64::new(0),
            route_count: AtomicU64::new(0),
            certificates: AtomicU64::new(0),
            earliest_expiry: AtomicI64::new(0),
            connections_active: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            passthrough_total: AtomicU64::new(0),
            config: Mutex::default(),
        }
    }
}

/// The label set of a route's series.
pub fn route_labels(namespace: &str, ingress: &str, service: &str) -> String {
    format!(
        "namespace=\"{}\",ingress=\"{}\",service=\"{}\"",
        escape(namespace),
        escape(ingress),
        escape(service)
    )
}

impl Metrics {
    /// Attaches counters to the targets of a snapshot about to go live that have none yet
    /// (targets carried over from the live snapshot keep theirs, so a snapshot patched for a
    /// few hosts costs a few lookups).
    ///
    /// With `all`, every target is looked at; otherwise only those new in the snapshot.
    pub fn attach(&self, snapshot: &Snapshot, all: bool) {
        let targets = snapshot.targets_to_attach(all);
        let mut fresh = targets.filter(|t| t.stats.get().is_none()).peekable();
        if fresh.peek().is_none() {
            return;
        }
        if let Ok(mut routes) = self.routes.lock() {
            for target in fresh {
                let key: Box<str> =
                    route_labels(&target.namespace, &target.ingress, &target.service).into();
                let stats = routes.entry(key).or_default().clone();
                let _ = target.stats.set(stats);
            }
        }
    }

    /// Records a snapshot that just went live (after [`Metrics::attach`]), and forgets
    /// counters no route uses any more: those only this map holds (no target of the live
    /// snapshot, nor of an older one that requests in flight still hold).
    pub fn bind(&self, snapshot: &Snapshot, generation: u64, build_time: Duration) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.retain(|_, stats| Arc::strong_count(stats) > 1);
        }
        self.generation.store(generation, Ordering::Relaxed);
        self.build_micros
            .store(build_time.as_micros() as u64, Ordering::Relaxed);
        self.route_count
            .store(snapshot.routes.route_count() as u64, Ordering::Relaxed);
        self.certificates
            .store(snapshot.tls.certificate_count() as u64, Ordering::Relaxed);
        self.earliest_expiry.store(
            snapshot.tls.earliest_expiry().unwrap_or(0),
            Ordering::Relaxed,
        );
        if let Ok(mut config) = self.config.lock() {
            config.tls = Some(snapshot.tls.clone());
            // Until the controller says more, all problems are of one unknown reason.
            config.problems.clear();
            if snapshot.problems > 0 {
                config
                    .problems
                    .insert("Unclassified".into(), snapshot.problems);
            }
        }
    }

    /// The live configuration's problems by reason code (set by the controller at publish).
    pub fn set_problems(&self, by_reason: BTreeMap<String, usize>) {
        if let Ok(mut config) = self.config.lock() {
            config.problems = by_reason;
        }
    }

    /// A publish finished: `elapsed` from the change to live (translate and publish).
    pub fn published(&self, elapsed: Duration) {
        self.publish_micros
            .store(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.last_publish_millis
            .store(now_millis(), Ordering::Relaxed);
        self.last_publish_ok.store(1, Ordering::Relaxed);
        self.publishes_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// A configuration could not be made live; the previous one keeps serving.
    pub fn publish_failed(&self) {
        self.last_publish_ok.store(0, Ordering::Relaxed);
        self.publishes_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// When the live configuration was published (Unix milliseconds; 0 before the first).
    pub fn last_publish_millis(&self) -> i64 {
        self.last_publish_millis.load(Ordering::Relaxed)
    }

    /// A response head went out: counted by route, method and status class.
    #[inline]
    pub fn request(&self, stats: Option<&RouteStats>, method: u8, status: u16) {
        stats.unwrap_or(&self.unrouted).record(method, status);
    }

    /// The counters of requests no route took.
    pub fn unrouted(&self) -> &Arc<RouteStats> {
        &self.unrouted
    }

    /// A request that could not be forwarded, counted on its side.
    #[inline]
    pub fn forward_error(&self, e: &ForwardError) {
        let kind = e.kind();
        let (kinds, counters): (&[&str], &[AtomicU64]) = match e.side() {
            Side::Downstream => (&CLIENT_ERROR_KINDS, &self.client_errors),
            Side::Upstream | Side::Internal => (&UPSTREAM_ERROR_KINDS, &self.upstream_errors),
        };
        if let Some(i) = kinds.iter().position(|k| *k == kind) {
            counters[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One more attempt on another endpoint (`proxy-next-upstream`).
    #[inline]
    pub fn upstream_retry(&self) {
        self.upstream_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS handshake ended; `version` is rustls' negotiated version, if any.
    #[inline]
    pub fn tls_handshake(&self, version: Option<rustls::ProtocolVersion>, result: HandshakeResult) {
        let v = match version {
            Some(rustls::ProtocolVersion::TLSv1_2) => 0,
            Some(rustls::ProtocolVersion::TLSv1_3) => 1,
            _ => 2,
        };
        let r = HandshakeResult::ALL
            .iter()
            .position(|x| *x == result)
            .unwrap_or(1);
        self.tls_handshakes[v][r].fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_active.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// One TLS connection passed through unterminated (`ssl-passthrough`).
    pub fn passthrough_connection(&self) {
        self.passthrough_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_active.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let routes: Vec<(Box<str>, Arc<RouteStats>)> = match self.routes.lock() {
            Ok(r) => r.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        let unrouted_labels = route_labels("", "", "");
        let all = || {
            routes
                .iter()
                .map(|(k, v)| (&**k, v.as_ref()))
                .chain(std::iter::once((unrouted_labels.as_str(), &*self.unrouted)))
        };

        header(
            &mut out,
            "portico_requests_total",
            "counter",
            "Responses sent, by route (namespace, ingress, service), method and status class.",
        );
        for (labels, stats) in all() {
            let Some(c) = stats.counters.get() else {
                continue;
            };
            for (m, method) in METHODS.iter().enumerate() {
                for (s, class) in STATUS_CLASSES.iter().enumerate() {
                    let n = c.responses[m][s].load(Ordering::Relaxed);
                    // Series appear on their first request and stay.
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "portico_requests_total{{{labels},method=\"{method}\",status=\"{class}\"}} {n}"
                        );
                    }
                }
            }
        }
        for (name, help, pick) in [
            (
                "portico_request_duration_seconds",
                "Time from the request head to the response's last byte, by route.",
                (|c: &RouteCounters| &c.request_duration) as fn(&RouteCounters) -> &Histogram,
            ),
            (
                "portico_upstream_response_duration_seconds",
                "Time from sending a request upstream to the backend's response head, by route.",
                |c: &RouteCounters| &c.upstream_duration,
            ),
        ] {
            header(&mut out, name, "histogram", help);
            for (labels, stats) in all() {
                if let Some(c) = stats.counters.get() {
                    pick(c).render(&mut out, name, labels);
                }
            }
        }
        for (name, help, pick) in [
            (
                "portico_request_bytes_total",
                "Request body bytes received (as declared by Content-Length), by route.",
                (|c: &RouteCounters| &c.bytes_in) as fn(&RouteCounters) -> &AtomicU64,
            ),
            (
                "portico_response_bytes_total",
                "Response body bytes sent, by route.",
                |c: &RouteCounters| &c.bytes_out,
            ),
            (
                "portico_requests_rate_limited_total",
                "Requests refused by the route's rate limits (per replica).",
                |c: &RouteCounters| &c.rate_limited,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (labels, stats) in all() {
                if let Some(c) = stats.counters.get() {
                    let _ = writeln!(
                        out,
                        "{name}{{{labels}}} {}",
                        pick(c).load(Ordering::Relaxed)
                    );
                }
            }
        }

        header(
            &mut out,
            "portico_upstream_errors_total",
            "counter",
            "Requests that could not be forwarded, by kind (connect: upstream connect errors).",
        );
        for (i, kind) in UPSTREAM_ERROR_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "portico_upstream_errors_total{{kind=\"{kind}\"}} {}",
                self.upstream_errors[i].load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "portico_client_errors_total",
            "counter",
            "Requests not forwarded because of the client: malformed, too large, stalled or broken-off bodies.",
        );
        for (i, kind) in CLIENT_ERROR_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "portico_client_errors_total{{kind=\"{kind}\"}} {}",
                self.client_errors[i].load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "portico_upstream_retries_total",
            "counter",
            "Attempts sent to another endpoint after a failed one.",
        );
        let _ = writeln!(
            out,
            "portico_upstream_retries_total {}",
            self.upstream_retries.load(Ordering::Relaxed)
        );

        header(
            &mut out,
            "portico_tls_handshakes_total",
            "counter",
            "TLS handshakes by negotiated version and result.",
        );
        for (v, version) in TLS_VERSIONS.iter().enumerate() {
            for (r, result) in HandshakeResult::ALL.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "portico_tls_handshakes_total{{version=\"{version}\",result=\"{}\"}} {}",
                    result.label(),
                    self.tls_handshakes[v][r].load(Ordering::Relaxed)
                );
            }
        }

        let (tls, problems) = match self.config.lock() {
            Ok(c) => (c.tls.clone(), c.problems.clone()),
            Err(_) => (None, BTreeMap::new()),
        };
        header(
            &mut out,
            "portico_ssl_expire_time_seconds",
            "gauge",
            "notAfter (Unix seconds) of the certificate served for each configured TLS host.",
        );
        for (host, cert) in tls.iter().flat_map(TlsTable::hosts) {
            let _ = writeln!(
                out,
                "portico_ssl_expire_time_seconds{{host=\"{}\"}} {}",
                escape(&host.to_string()),
                cert.not_after
            );
        }
        header(
            &mut out,
            "portico_config_problems",
            "gauge",
            "Problems found while building the live configuration, by reason.",
        );
        for (reason, n) in &problems {
            let _ = writeln!(
                out,
                "portico_config_problems{{reason=\"{}\"}} {n}",
                escape(reason)
            );
        }
        header(
            &mut out,
            "portico_config_publishes_total",
            "counter",
            "Configurations made live (success) or refused (failure).",
        );
        let _ = writeln!(
            out,
            "portico_config_publishes_total{{result=\"success\"}} {}\nportico_config_publishes_total{{result=\"failure\"}} {}",
            self.publishes_ok.load(Ordering::Relaxed),
            self.publishes_failed.load(Ordering::Relaxed)
        );

        let gauges: [(&str, &str, &str, String); 12] = [
            (
                "portico_config_generation",
                "gauge",
                "Generation of the live configuration.",
                self.generation.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_config_build_seconds",
                "gauge",
                "Time the last configuration took to translate.",
                (self.build_micros.load(Ordering::Relaxed) as f64 / 1e6).to_string(),
            ),
            (
                "portico_config_publish_duration_seconds",
                "gauge",
                "Time the last publish took, from the change to live (translate and swap).",
                (self.publish_micros.load(Ordering::Relaxed) as f64 / 1e6).to_string(),
            ),
            (
                "portico_config_last_publish_timestamp_seconds",
                "gauge",
                "When the live configuration was published (Unix seconds; 0 before the first).",
                (self.last_publish_millis.load(Ordering::Relaxed) as f64 / 1e3).to_string(),
            ),
            (
                "portico_config_last_publish_successful",
                "gauge",
                "1 when the last configuration built was made live, 0 when it was refused.",
                self.last_publish_ok.load(Ordering::Relaxed).to_string(),
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
                "portico_connections_active",
                "gauge",
                "Client connections open now.",
                self.connections_active.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_connections_total",
                "counter",
                "Client connections accepted.",
                self.connections_total.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_passthrough_connections_total",
                "counter",
                "TLS connections passed through to a backend unterminated (ssl-passthrough).",
                self.passthrough_total.load(Ordering::Relaxed).to_string(),
            ),
            (
                "portico_build_info",
                "gauge",
                "Portico's version.",
                "1".to_string(),
            ),
        ];
        for (name, kind, help, value) in gauges {
            header(&mut out, name, kind, help);
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

/// Writes a metric's `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Escapes a label value (backslash, quote, newline).
pub fn escape(v: &str) -> std::borrow::Cow<'_, str> {
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
    use std::collections::BTreeSet;

    fn series(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
            .collect()
    }

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        let s = RouteStats::default();
        s.finished(Duration::from_millis(2), 0, 10);
        s.finished(Duration::from_millis(200), 5, 20);
        m.routes
            .lock()
            .unwrap()
            .insert(route_labels("ns", "ing", "svc:80").into(), Arc::new(s));
        let text = m.render();
        let l = "namespace=\"ns\",ingress=\"ing\",service=\"svc:80\"";
        assert!(text.contains(&format!(
            "portico_request_duration_seconds_bucket{{{l},le=\"0.005\"}} 1"
        )));
        assert!(text.contains(&format!(
            "portico_request_duration_seconds_bucket{{{l},le=\"0.25\"}} 2"
        )));
        assert!(text.contains(&format!("portico_request_duration_seconds_count{{{l}}} 2")));
        assert!(text.contains(&format!("portico_response_bytes_total{{{l}}} 30")));
        assert!(text.contains(&format!("portico_request_bytes_total{{{l}}} 5")));
    }

    #[test]
    fn requests_count_by_method_and_status_class() {
        let m = Metrics::default();
        m.request(None, method_index(&Method::GET), 200);
        m.request(None, method_index(&Method::GET), 204);
        m.request(
            None,
            method_index(&Method::from_bytes(b"PROPFIND").unwrap()),
            503,
        );
        let text = m.render();
        let l = "namespace=\"\",ingress=\"\",service=\"\"";
        assert!(text.contains(&format!(
            "portico_requests_total{{{l},method=\"GET\",status=\"2xx\"}} 2"
        )));
        assert!(text.contains(&format!(
            "portico_requests_total{{{l},method=\"OTHER\",status=\"5xx\"}} 1"
        )));
    }

    #[test]
    fn traffic_adds_no_series_beyond_its_first_request() {
        let m = Metrics::default();
        m.request(None, 0, 404);
        m.unrouted().finished(Duration::from_millis(1), 0, 9);
        let before = series(&m.render());
        for i in 0..1000u16 {
            m.request(None, 0, 400 + (i % 100));
            m.unrouted()
                .finished(Duration::from_micros(u64::from(i)), 1, 9);
        }
        assert_eq!(before, series(&m.render()));
    }

    #[test]
    fn tls_handshakes_by_version_and_result() {
        let m = Metrics::default();
        m.tls_handshake(Some(rustls::ProtocolVersion::TLSv1_3), HandshakeResult::Ok);
        m.tls_handshake(None, HandshakeResult::Timeout);
        let text = m.render();
        assert!(text.contains("portico_tls_handshakes_total{version=\"TLSv1.3\",result=\"ok\"} 1"));
        assert!(
            text.contains("portico_tls_handshakes_total{version=\"unknown\",result=\"timeout\"} 1")
        );
        assert!(text.contains("portico_tls_handshakes_total{version=\"TLSv1.2\",result=\"ok\"} 0"));
    }

    #[test]
    fn publishes_and_problems() {
        let m = Metrics::default();
        m.published(Duration::from_millis(1500));
        m.publish_failed();
        m.set_problems(BTreeMap::from([("ServiceNotFound".to_string(), 2)]));
        let text = m.render();
        assert!(text.contains("portico_config_problems{reason=\"ServiceNotFound\"} 2"));
        assert!(text.contains("portico_config_publish_duration_seconds 1.5"));
        assert!(text.contains("portico_config_last_publish_successful 0"));
        assert!(text.contains("portico_config_publishes_total{result=\"failure\"} 1"));
        assert!(text.contains("portico_config_publishes_total{result=\"success\"} 1"));
        assert!(m.last_publish_millis() > 0);
    }

    #[test]
    fn escapes_labels() {
        assert_eq!(escape("a\"b"), "a\\\"b");
        assert_eq!(
            route_labels("a", "b\\", "c\n"),
            "namespace=\"a\",ingress=\"b\\\\\",service=\"c\\n\""
        );
    }
}
