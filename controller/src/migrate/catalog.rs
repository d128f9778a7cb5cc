//! What Portico knows about ingress-nginx's annotations beyond what the parser tells: the
//! stated differences of supported keys, and why an unsupported key is not read.
//!
//! Whether a key is read, ignored or refused comes from the annotation front-end itself
//! (`translate::policy::annotations`), so this table cannot drift into claiming support.

/// Keys Portico reads with a difference a migrating user should know.
pub const DIFFERENCES: &[(&str, &str)] = &[
    (
        "proxy-body-size",
        "bodies are streamed, not buffered: a declared Content-Length over the limit gets 413 up front; a streamed body is cut when it passes the limit",
    ),
    (
        "proxy-read-timeout",
        "bounds the wait for the response head, then each pause between response body chunks",
    ),
    (
        "proxy-send-timeout",
        "bounds each pause between request body chunks on their way upstream",
    ),
    (
        "proxy-next-upstream",
        "a request with a body is never sent twice; retries need an idempotent method unless non_idempotent is listed",
    ),
    (
        "affinity-mode",
        "balanced places sessions by consistent hashing, so a scale-up moves only the sessions new endpoints win",
    ),
    (
        "upstream-hash-by",
        "rendezvous hashing instead of a ketama ring: the same keys stick, but to different endpoints than ingress-nginx chose",
    ),
    (
        "canary-weight",
        "several canaries of one host and path share one draw, so their fractions add up",
    ),
    (
        "auth-secret",
        "namespace/name must be the Ingress's own namespace; a Secret elsewhere answers 503",
    ),
    (
        "auth-type",
        "only basic; auth-secret without auth-type: basic answers 503 rather than serve open",
    ),
    (
        "enable-cors",
        "Portico answers preflights (Origin and Access-Control-Request-Method); other OPTIONS requests reach the backend",
    ),
    (
        "limit-connections",
        "a WebSocket, once switched, no longer counts",
    ),
    (
        "server-alias",
        "the aliases attach to the Ingress's first rule host",
    ),
    (
        "ssl-passthrough",
        "needs the controller flag --enable-ssl-passthrough (as in ingress-nginx); the Ingress then serves no HTTP routes",
    ),
    (
        "ssl-redirect",
        "`/` alone keeps its slash in the redirect (https://host/)",
    ),
];

/// Keys Portico does not read, with why and what to use instead. Every other unread key gets
/// a generic reason.
pub const NOT_READ: &[(&str, &str)] = &[
    ("enable-modsecurity", "Portico has no web application firewall"),
    ("enable-owasp-core-rules", "Portico has no web application firewall"),
    ("modsecurity-transaction-id", "Portico has no web application firewall"),
    ("mirror-request-body", "request mirroring is not implemented"),
    ("mirror-target", "request mirroring is not implemented"),
    ("mirror-host", "request mirroring is not implemented"),
    ("proxy-cookie-domain", "Set-Cookie rewriting is not implemented"),
    ("proxy-cookie-path", "Set-Cookie rewriting is not implemented"),
    ("proxy-redirect-from", "Location rewriting is not implemented"),
    ("proxy-redirect-to", "Location rewriting is not implemented"),
    ("service-upstream", "Portico always balances over the endpoints, never the Service's cluster IP"),
    ("ssl-ciphers", "TLS suites are fixed to rustls' modern set; set the minimum version in IngressClassParameters"),
    ("ssl-prefer-server-ciphers", "TLS suites are fixed to rustls' modern set"),
    ("proxy-ssl-ciphers", "TLS suites towards backends are fixed to rustls' modern set"),
    ("proxy-ssl-protocols", "Portico speaks TLS 1.2 and 1.3 to backends"),
    ("proxy-ssl-verify-depth", "the backend chain is verified to any depth the CA allows"),
    ("http2-push-preload", "HTTP/2 server push is gone from browsers"),
    ("connection-proxy-header", "the Connection header towards backends is managed by Portico"),
    ("enable-access-log", "the access log is configured per instance (--no-access-log)"),
    ("enable-rewrite-log", "Portico has no rewrite log"),
    ("enable-opentelemetry", "tracing is configured per instance"),
    ("opentelemetry-trust-incoming-span", "tracing is configured per instance"),
    ("satisfy", "auth and source lists always both apply (satisfy all)"),
    ("upstream-hash-by-subset", "subset hashing is not implemented"),
    ("upstream-hash-by-subset-size", "subset hashing is not implemented"),
    ("session-cookie-change-on-failure", "the cookie is rewritten only when its endpoint is gone"),
    ("session-cookie-conditional-samesite-none", "user-agent sniffing is not implemented; set session-cookie-samesite"),
    ("session-cookie-domain", "the affinity cookie is host-only"),
    ("affinity-canary-behavior", "canary choice happens before affinity, as with sticky in ingress-nginx"),
    ("custom-headers", "reads a ConfigMap at runtime; use portico.dev/set-response-headers"),
    ("proxy-next-upstream-timeout", "each try is bounded by the connect and read timeouts"),
    ("proxy-busy-buffers-size", "Portico streams without buffering"),
    ("proxy-max-temp-file-size", "Portico never spools bodies to disk"),
    ("global-rate-limit", "global (cross-replica) rate limits are not implemented; limit-rps is per replica"),
    ("global-rate-limit-window", "global (cross-replica) rate limits are not implemented"),
    ("global-rate-limit-key", "global (cross-replica) rate limits are not implemented"),
    ("global-rate-limit-ignored-cidrs", "global (cross-replica) rate limits are not implemented"),
    ("auth-cache-key", "external auth answers are not cached"),
    ("auth-cache-duration", "external auth answers are not cached"),
    ("auth-keepalive", "connections to the auth service are pooled automatically"),
    ("auth-keepalive-share-vars", "connections to the auth service are pooled automatically"),
    ("auth-keepalive-requests", "connections to the auth service are pooled automatically"),
    ("auth-keepalive-timeout", "connections to the auth service are pooled automatically"),
    ("auth-proxy-set-headers", "reads a ConfigMap at runtime; not supported"),
    ("enable-global-auth", "there is no class-wide auth-url"),
    ("auth-always-set-cookie", "cookies from the auth service are not set on the answer"),
    ("auth-signin-redirect-param", "the sign-in redirect parameter is always rd"),
    ("limit-rate", "bandwidth limits are not implemented"),
    ("limit-rate-after", "bandwidth limits are not implemented"),
];

/// Keys whose absence of effect changes nothing a client or backend can see (logs, buffering).
pub const NO_TRAFFIC_EFFECT: &[&str] = &[
    "proxy-buffering",
    "proxy-request-buffering",
    "proxy-buffer-size",
    "proxy-buffers-number",
    "proxy-busy-buffers-size",
    "proxy-max-temp-file-size",
    "client-body-buffer-size",
    "proxy-http-version",
    "enable-access-log",
    "enable-rewrite-log",
    "auth-keepalive",
    "auth-keepalive-share-vars",
    "auth-keepalive-requests",
    "auth-keepalive-timeout",
    "enable-opentelemetry",
    "opentelemetry-trust-incoming-span",
    "http2-push-preload",
];

pub fn difference(key: &str) -> Option<&'static str> {
    DIFFERENCES.iter().find(|(k, _)| *k == key).map(|(_, d)| *d)
}

pub fn not_read(key: &str) -> Option<&'static str> {
    NOT_READ.iter().find(|(k, _)| *k == key).map(|(_, d)| *d)
}

pub fn no_traffic_effect(key: &str) -> bool {
    NO_TRAFFIC_EFFECT.contains(&key)
}
