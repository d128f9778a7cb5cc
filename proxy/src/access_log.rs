//! The access log: one line per request on the `portico::access` target, written when the
//! response body has been sent (or the client went away), so it knows the bytes sent. The same
//! moment records the route's duration and byte counters.
//!
//! Two formats: `json` (structured fields; the binary's access-log layer prints them as one JSON
//! object per line) and `text`, a line in the spirit of ingress-nginx's default `log-format`:
//!
//! ```text
//! $client - - [$time_local] "$method $target $version" $status $bytes_sent "$referer" "$user_agent" $request_length $request_time [$upstream_name] $upstream_addr $request_id $trace_id
//! ```
//!
//! Lines can be left out for health checks (exact paths, user-agent substrings) and sampled;
//! server errors (5xx) are always written.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HOST, REFERER, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri, Version};
use http_body::{Body, Frame, SizeHint};

use crate::backend::Target;
use crate::body::ProxyBody;
use crate::metrics::{self, Metrics, RouteStats};
use crate::trace_context::{Span, SpanSink, Trace, TraceId, Tracing};

/// The tracing target of access-log lines.
pub const TARGET: &str = "portico::access";

/// How access-log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Structured fields (one JSON object per line in the binary).
    #[default]
    Json,
    /// One combined-style text line (ingress-nginx-like).
    Text,
}

/// Which requests get a line, and how it looks.
#[derive(Clone, Debug)]
pub struct Options {
    pub format: Format,
    /// Requests for these exact paths are not logged (health checks).
    pub exclude_paths: Vec<String>,
    /// Requests whose User-Agent contains one of these are not logged (`kube-probe`).
    pub exclude_user_agents: Vec<String>,
    /// Fraction of the other requests logged, 0.0 to 1.0; 5xx answers are always logged.
    pub sample: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::default(),
            exclude_paths: Vec::new(),
            exclude_user_agents: Vec::new(),
            sample: 1.0,
        }
    }
}

impl Options {
    fn excluded(&self, req: &Seen<'_>) -> bool {
        if self.exclude_paths.iter().any(|p| p == req.uri.path()) {
            return true;
        }
        if self.exclude_user_agents.is_empty() {
            return false;
        }
        let ua = req
            .user_agent
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        ua.is_some_and(|ua| {
            self.exclude_user_agents
                .iter()
                .any(|x| ua.contains(x.as_str()))
        })
    }

    fn sampled(&self, status: u16) -> bool {
        status >= 500 || self.sample >= 1.0 || fastrand::f64() < self.sample
    }
}

/// What the access log, the metrics and a span read of a request as it arrives.
pub struct Seen<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub host: Option<&'a HeaderValue>,
    pub referer: Option<&'a HeaderValue>,
    pub user_agent: Option<&'a HeaderValue>,
    /// The body's length as far as it is known.
    pub bytes_in: u64,
}

impl<'a> Seen<'a> {
    pub fn of<B: Body>(req: &'a Request<B>) -> Seen<'a> {
        let headers = req.headers();
        Seen {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            host: headers.get(HOST),
            referer: headers.get(REFERER),
            user_agent: headers.get(USER_AGENT),
            bytes_in: req.body().size_hint().lower(),
        }
    }
}

/// What is known of a request when it arrives: enough for its metrics and its log line.
pub struct Head {
    start: Instant,
    method_index: u8,
    bytes_in: u64,
    trace: Trace,
    /// `None` when the request gets no log line.
    logged: Option<Logged>,
    /// Set when the request is sampled and spans are exported.
    span: Option<Box<PendingSpan>>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("trace", &self.trace)
            .field("logged", &self.logged.is_some())
            .field("span", &self.span.is_some())
            .finish()
    }
}

/// A sampled request's span until its end.
struct PendingSpan {
    sink: Arc<dyn SpanSink>,
    span: Span,
}

#[derive(Debug)]
struct Logged {
    method: Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
}

/// Everything the request's end needs to know that the head did not.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    pub client: IpAddr,
    pub target: Option<Arc<Target>>,
    pub upstream: Option<SocketAddr>,
    pub request_id: HeaderValue,
    pub tls: bool,
}

impl Head {
    /// Notes what the log and the metrics need of a request before it is forwarded.
    pub fn capture<B: Body>(
        enabled: bool,
        options: &Options,
        tracing: &Tracing,
        req: &Request<B>,
        start: Instant,
        trace: Trace,
    ) -> Head {
        Head::capture_seen(enabled, options, tracing, &Seen::of(req), start, trace)
    }

    /// As [`Head::capture`], from the parts of the request it reads.
    pub fn capture_seen(
        enabled: bool,
        options: &Options,
        tracing: &Tracing,
        req: &Seen<'_>,
        start: Instant,
        trace: Trace,
    ) -> Head {
        let span = match &tracing.sink {
            Some(sink) if trace.sampled => Some(Box::new(PendingSpan {
                sink: sink.clone(),
                span: Span {
                    trace,
                    start_unix_nanos: unix_nanos(),
                    end_unix_nanos: 0,
                    method: req.method.clone(),
                    host: req
                        .host
                        .and_then(|h| h.to_str().ok())
                        .or_else(|| req.uri.authority().map(|a| a.as_str()))
                        .unwrap_or("")
                        .to_string(),
                    path: req.uri.path().to_string(),
                    status: 0,
                    client: IpAddr::from([0, 0, 0, 0]),
                    upstream: None,
                    namespace: String::new(),
                    ingress: String::new(),
                    service: String::new(),
                },
            })),
            _ => None,
        };
        let logged = (enabled && !options.excluded(req)).then(|| Logged {
            method: req.method.clone(),
            uri: req.uri.clone(),
            version: req.version,
            host: req.host.cloned().or_else(|| {
                req.uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            }),
            referer: req.referer.cloned(),
            user_agent: req.user_agent.cloned(),
        });
        Head {
            start,
            method_index: metrics::method_index(req.method),
            bytes_in: req.bytes_in,
            trace,
            logged,
            span,
        }
    }

    /// Counts the response head and wraps its body so that its end is logged and measured.
    pub fn respond(
        self,
        metrics: &Metrics,
        options: &Options,
        body: ProxyBody,
        outcome: Outcome,
    ) -> LoggedBody {
        let stats = outcome
            .target
            .as_ref()
            .and_then(|t| t.stats.get())
            .unwrap_or(metrics.unrouted())
            .clone();
        stats.record(self.method_index, outcome.status);
        let span = self.span.map(|mut p| {
            p.span.status = outcome.status;
            p.span.client = outcome.client;
            p.span.upstream = outcome.upstream;
            if let Some(t) = &outcome.target {
                p.span.namespace.clone_from(&t.namespace);
                p.span.ingress.clone_from(&t.ingress);
                p.span.service.clone_from(&t.service);
            }
            p
        });
        let record = match self.logged {
            Some(l) if options.sampled(outcome.status) => Some(Box::new(Record {
                logged: l,
                outcome,
                trace_id: self.trace.trace_id,
                format: options.format,
            })),
            _ => None,
        };
        LoggedBody {
            inner: body,
            sent: 0,
            start: self.start,
            bytes_in: self.bytes_in,
            stats: Some(stats),
            record,
            span,
        }
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Everything one access-log line says, apart from the bytes sent and the duration.
#[derive(Debug)]
struct Record {
    logged: Logged,
    outcome: Outcome,
    trace_id: TraceId,
    format: Format,
}

impl Record {
    fn emit(&self, bytes_in: u64, bytes_out: u64, start: Instant, complete: bool) {
        let (namespace, ingress, service) = match &self.outcome.target {
            Some(t) => (t.namespace.as_str(), t.ingress.as_str(), t.service.as_str()),
            None => ("", "", ""),
        };
        let l = &self.logged;
        let o = &self.outcome;
        let seconds = start.elapsed().as_secs_f64();
        match self.format {
            Format::Json => tracing::info!(
                target: TARGET,
                client = %o.client,
                method = %l.method,
                host = l.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""),
                path = l.uri.path(),
                query = l.uri.query().unwrap_or(""),
                protocol = ?l.version,
                status = o.status,
                bytes_in,
                bytes_out,
                duration_ms = seconds * 1000.0,
                upstream = %o.upstream.map(|a| a.to_string()).unwrap_or_default(),
                namespace,
                ingress,
                service,
                referer = l.referer.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""),
                user_agent = l.user_agent.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""),
                request_id = o.request_id.to_str().unwrap_or(""),
                trace_id = %self.trace_id,
                tls = o.tls,
                complete,
            ),
            Format::Text => {
                let line = self.text_line(bytes_in, bytes_out, seconds, now_secs());
                tracing::info!(target: TARGET, "{line}");
            }
        }
    }

    /// The `text` format's line; `now` in Unix seconds.
    fn text_line(&self, bytes_in: u64, bytes_out: u64, seconds: f64, now: i64) -> String {
        let l = &self.logged;
        let o = &self.outcome;
        let mut s = String::with_capacity(256);
        let _ = write!(s, "{} - - [{}] \"{} ", o.client, time_local(now), l.method);
        escaped(
            &mut s,
            l.uri
                .path_and_query()
                .map_or(b"/", |p| p.as_str().as_bytes()),
        );
        let _ = write!(s, " {:?}\" {} {bytes_out} \"", l.version, o.status);
        escaped(&mut s, l.referer.as_ref().map_or(b"-", |v| v.as_bytes()));
        s.push_str("\" \"");
        escaped(&mut s, l.user_agent.as_ref().map_or(b"-", |v| v.as_bytes()));
        let _ = write!(s, "\" {bytes_in} {seconds:.3} [");
        match &o.target {
            // ingress-nginx's $proxy_upstream_name: namespace-service-port.
            Some(t) => {
                let _ = write!(s, "{}-{}", t.namespace, t.service.replace(':', "-"));
            }
            None => s.push('-'),
        }
        s.push_str("] ");
        match o.upstream {
            Some(a) => {
                let _ = write!(s, "{a}");
            }
            None => s.push('-'),
        }
        s.push(' ');
        escaped(&mut s, o.request_id.as_bytes());
        let _ = write!(s, " {}", self.trace_id);
        s
    }
}

/// Appends bytes, escaping quotes, backslashes and non-printable bytes as `\xHH` (as nginx).
fn escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// nginx's `$time_local` in UTC: `28/Nov/2026:12:50:18 +0000`.
fn time_local(unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A response body that counts what it sends, and at its end records the route's duration and
/// bytes, writes the access-log line and exports the span.
pub struct LoggedBody {
    inner: ProxyBody,
    sent: u64,
    start: Instant,
    bytes_in: u64,
    /// Taken when the end has been recorded.
    stats: Option<Arc<RouteStats>>,
    record: Option<Box<Record>>,
    span: Option<Box<PendingSpan>>,
}

impl std::fmt::Debug for LoggedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedBody")
            .field("inner", &self.inner)
            .field("sent", &self.sent)
            .field("record", &self.record)
            .field("span", &self.span.is_some())
            .finish()
    }
}

impl LoggedBody {
    fn finish(&mut self, complete: bool) {
        if let Some(stats) = self.stats.take() {
            stats.finished(self.start.elapsed(), self.bytes_in, self.sent);
        }
        if let Some(r) = self.record.take() {
            r.emit(self.bytes_in, self.sent, self.start, complete);
        }
        if let Some(mut p) = self.span.take() {
            p.span.end_unix_nanos = unix_nanos();
            p.sink.export(p.span);
        }
    }
}

impl LoggedBody {
    /// Records the end of an answer whose body went out without passing through this value
    /// (Portico's own HTTP/1.1 path writes it itself): `sent` body bytes, whole or cut off.
    pub(crate) fn written(mut self, sent: u64, complete: bool) {
        self.sent = sent;
        self.finish(complete);
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // A body dropped before its end (client gone, HEAD, empty) still gets its line.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, ua: Option<&str>) -> Request<ProxyBody> {
        let mut b = Request::builder().uri(path).header(HOST, "shop.test");
        if let Some(ua) = ua {
            b = b.header(USER_AGENT, ua);
        }
        b.body(ProxyBody::empty()).unwrap()
    }

    #[test]
    fn time_local_matches_nginx() {
        assert_eq!(time_local(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(time_local(1_795_870_218), "28/Nov/2026:12:50:18 +0000");
        assert_eq!(time_local(951_782_400), "29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn health_checks_are_excluded() {
        let o = Options {
            exclude_paths: vec!["/healthz".into()],
            exclude_user_agents: vec!["kube-probe/".into()],
            ..Options::default()
        };
        let excluded = |path, ua| o.excluded(&Seen::of(&request(path, ua)));
        assert!(excluded("/healthz", None));
        assert!(!excluded("/healthz/deep", None));
        assert!(excluded("/", Some("kube-probe/1.31")));
        assert!(!excluded("/", Some("curl/8")));
    }

    #[test]
    fn sampling_keeps_every_server_error() {
        let o = Options {
            sample: 0.0,
            ..Options::default()
        };
        assert!(o.sampled(502));
        assert!(!o.sampled(200));
        assert!(Options::default().sampled(200));
    }

    #[test]
    fn text_line_is_combined_like_and_escaped() {
        let req = Request::builder()
            .uri("/a?q=1")
            .header(HOST, "shop.test")
            .header(USER_AGENT, "curl/8.0 \"x\"")
            .body(ProxyBody::empty())
            .unwrap();
        let trace = Trace {
            trace_id: TraceId([0xab; 16]),
            span_id: [1; 8],
            parent_id: None,
            sampled: false,
        };
        let head = Head::capture(
            true,
            &Options::default(),
            &Tracing::default(),
            &req,
            Instant::now(),
            trace,
        );
        let target = crate::backend::testing::target("web:80");
        let r = Record {
            logged: head.logged.unwrap(),
            outcome: Outcome {
                status: 200,
                client: "10.0.0.7".parse().unwrap(),
                target: Some(target),
                upstream: Some("10.1.0.1:8080".parse().unwrap()),
                request_id: HeaderValue::from_static("rid"),
                tls: false,
            },
            trace_id: TraceId([0xab; 16]),
            format: Format::Text,
        };
        assert_eq!(
            r.text_line(0, 12, 0.0015, 0),
            "10.0.0.7 - - [01/Jan/1970:00:00:00 +0000] \"GET /a?q=1 HTTP/1.1\" 200 12 \"-\" \"curl/8.0 \\x22x\\x22\" 0 0.002 [default-web-80] 10.1.0.1:8080 rid abababababababababababababababab"
        );
        let mut s = String::new();
        escaped(&mut s, b"a\"b\\c\x01");
        assert_eq!(s, "a\\x22b\\x5Cc\\x01");
    }
}

#[cfg(test)]
mod span_tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Span>>);
    impl SpanSink for Collect {
        fn export(&self, span: Span) {
            self.0.lock().unwrap().push(span);
        }
    }

    fn trace(sampled: bool) -> Trace {
        Trace {
            trace_id: TraceId([7; 16]),
            span_id: [2; 8],
            parent_id: Some([3; 8]),
            sampled,
        }
    }

    #[test]
    fn sampled_requests_export_one_span_at_their_end() {
        let sink = Arc::new(Collect::default());
        let tracing = Tracing {
            sample_new: 0.0,
            sink: Some(sink.clone()),
        };
        let metrics = Metrics::default();
        for sampled in [true, false] {
            let exported = sink.0.lock().unwrap().len();
            let req = Request::builder()
                .method(Method::POST)
                .uri("/cart")
                .header(HOST, "shop.test")
                .body(ProxyBody::empty())
                .unwrap();
            let head = Head::capture(
                false,
                &Options::default(),
                &tracing,
                &req,
                Instant::now(),
                trace(sampled),
            );
            let body = head.respond(
                &metrics,
                &Options::default(),
                ProxyBody::text("ok"),
                Outcome {
                    status: 201,
                    client: "10.0.0.7".parse().unwrap(),
                    target: Some(crate::backend::testing::target("web:80")),
                    upstream: Some("10.1.0.1:80".parse().unwrap()),
                    request_id: HeaderValue::from_static("rid"),
                    tls: false,
                },
            );
            assert_eq!(sink.0.lock().unwrap().len(), exported, "only at the end");
            drop(body);
        }
        let spans = sink.0.lock().unwrap();
        assert_eq!(spans.len(), 1, "only the sampled request");
        let s = &spans[0];
        assert_eq!(s.trace, trace(true));
        assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/cart"));
        assert_eq!((s.host.as_str(), s.status), ("shop.test", 201));
        assert_eq!(s.service, "web:80");
        assert!(s.end_unix_nanos >= s.start_unix_nanos && s.start_unix_nanos > 0);
    }
}
