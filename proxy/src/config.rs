//! Settings of the data plane that come from the command line, not from Kubernetes objects.

use std::time::Duration;

use crate::access::external::{AuthTimeouts, AuthUrlPolicy};
use crate::client_addr::TrustedProxies;

/// Listener and forwarding settings. Defaults follow what ingress-nginx users expect.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Port written into HTTPS redirects (omitted when 443).
    pub https_redirect_port: u16,
    /// Resolve and forward to `ExternalName` Services.
    pub allow_external_name: bool,
    /// Longest time a client may take to send a request's head; on HTTP/1.1 it also bounds how
    /// long a keep-alive connection may sit idle between requests.
    pub client_header_timeout: Duration,
    /// Longest pause between two reads of a request body (nginx's `client_body_timeout`);
    /// a route's shorter `proxy-send-timeout` wins.
    pub client_body_timeout: Duration,
    /// Longest time an HTTP/2 connection may stay without a ping answer.
    pub idle_timeout: Duration,
    /// Upstream TCP connect timeout, per endpoint tried.
    pub upstream_connect_timeout: Duration,
    /// Longest wait for a backend's response head.
    pub upstream_response_timeout: Duration,
    /// Upstream pooled connections are closed after this long unused (below typical backend
    /// keep-alive timeouts, so Portico closes first).
    pub upstream_idle_timeout: Duration,
    /// Most request header bytes accepted (ingress-nginx: 4 × 8k large buffers).
    pub max_header_bytes: usize,
    /// Most request headers accepted.
    pub max_headers: usize,
    /// Most connections open at once on each listener (0: unlimited). Connections beyond it
    /// are closed at once (plain HTTP first gets a `503`). ingress-nginx: 16384 per worker.
    pub max_connections: usize,
    /// HTTP/2 settings, set deliberately rather than left to library defaults.
    pub h2: H2Limits,
    /// Expect a PROXY protocol (v1 or v2) header on connections from trusted peers.
    pub proxy_protocol: bool,
    /// Emit one access-log line per request.
    pub access_log: bool,
    /// Access-log format, exclusions and sampling.
    pub access_log_options: crate::access_log::Options,
    /// Trace sampling and span export.
    pub tracing: crate::trace_context::Tracing,
    /// Where `auth-url` sub-requests may go (`--auth-url-allowed`).
    pub auth_url_allowed: AuthUrlPolicy,
    /// Connect and total timeouts of `auth-url` sub-requests.
    pub auth_timeouts: AuthTimeouts,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            trusted_proxies: TrustedProxies::default(),
            https_redirect_port: 443,
            allow_external_name: false,
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(30),
            max_header_bytes: 32 * 1024,
            max_headers: 200,
            max_connections: 16384,
            h2: H2Limits::default(),
            proxy_protocol: false,
            access_log: true,
            access_log_options: crate::access_log::Options::default(),
            tracing: crate::trace_context::Tracing::default(),
            auth_url_allowed: AuthUrlPolicy::default(),
            auth_timeouts: AuthTimeouts {
                connect: Duration::from_secs(2),
                total: Duration::from_secs(5),
            },
        }
    }
}

/// Limits of one HTTP/2 client connection. Each bounds an attack: rapid reset
/// (CVE-2023-44487: pending accepted-then-reset streams), error-reset loops
/// (CVE-2024-27316-style local resets), stream floods, and buffered response data.
/// CONTINUATION floods are bounded by `max_header_bytes` (the header list size), and PING and
/// SETTINGS floods by h2 itself (one pending answer at a time).
#[derive(Clone, Debug)]
pub struct H2Limits {
    /// Streams a client may have open at once (ingress-nginx: 128).
    pub max_concurrent_streams: u32,
    /// Streams reset by the client before Portico accepted them that may be pending; past
    /// it, the connection ends with GOAWAY (ENHANCE_YOUR_CALM).
    pub max_pending_accept_reset_streams: usize,
    /// Streams Portico itself may reset for protocol errors before ending the connection.
    pub max_local_error_reset_streams: usize,
    /// Response bytes buffered per stream while the client does not read.
    pub max_send_buf_size: usize,
    /// Time a client has to answer a keep-alive ping.
    pub keep_alive_timeout: Duration,
}

impl Default for H2Limits {
    fn default() -> Self {
        H2Limits {
            max_concurrent_streams: 128,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 128,
            max_send_buf_size: 256 * 1024,
            keep_alive_timeout: Duration::from_secs(20),
        }
    }
}
