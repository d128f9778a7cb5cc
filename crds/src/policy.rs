//! The routing policy shared by `RoutePolicy` (per Ingress) and `IngressClassParameters`
//! (class defaults): the typed counterpart of the ingress-nginx annotations Portico supports.
//!
//! Durations and sizes stay strings here, checked by a pattern in the CRD; the controller parses
//! them with its strict grammars when it translates.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A duration such as `500ms`, `30s`, `5m` or `1h`.
pub const DURATION_PATTERN: &str = "^[0-9]+(ms|s|m|h)$";
/// A size in bytes, optionally with a unit: `1024`, `8k`, `10m`, `1g`.
pub const SIZE_PATTERN: &str = "^[0-9]+[kKmMgG]?$";

/// Routing policy for the paths of an Ingress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.redirect) || !has(self.appRoot)",
        "message": "redirect and appRoot are mutually exclusive"
    },
    {
        "rule": "!has(self.redirect) || !has(self.rewriteTarget)",
        "message": "redirect and rewriteTarget are mutually exclusive"
    },
    {
        "rule": "!has(self.affinity) || !has(self.hashBy)",
        "message": "affinity and hashBy are mutually exclusive"
    }
]))]
pub struct PolicySpec {
    /// Redirect plain HTTP to HTTPS when the host has TLS (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_redirect: Option<bool>,
    /// Redirect plain HTTP to HTTPS even when the host has no TLS in this Ingress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_ssl_redirect: Option<bool>,
    /// Keep a trailing slash in the HTTPS redirect's location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preserve_trailing_slash: Option<bool>,
    /// Answer every request with a redirect instead of proxying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// Redirect requests for `/` to this path.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^/"))]
    pub app_root: Option<String>,
    /// Redirect `www.HOST` to `HOST` and back, whichever the rules do not name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_to_www_redirect: Option<bool>,
    /// Paths are regular expressions (as ingress-nginx's `use-regex`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_regex: Option<bool>,
    /// The path sent upstream; may use the capture groups of a regex path (`/$1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite_target: Option<String>,
    /// Value of the `X-Forwarded-Prefix` header sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_forwarded_prefix: Option<String>,
    /// How Portico speaks to the backends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    /// Upstream timeouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    /// Largest request body accepted (`0`: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SIZE_PATTERN))]
    pub max_body_size: Option<String>,
    /// When a request is tried on another endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// How endpoints are chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balance: Option<LoadBalance>,
    /// Consistent hashing on this value (e.g. `$request_uri`, `$remote_addr`, `$http_x_user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_by: Option<String>,
    /// Session affinity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Request and response header changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    /// Upstream status codes answered by the default backend instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(range(min = 400, max = 599)))]
    pub custom_http_errors: Vec<u16>,
    /// `NAMESPACE/NAME` or `NAME` (the Ingress's namespace) of the Service that answers when
    /// no endpoint can, and for `customHttpErrors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<String>,
    /// Compress answers (ingress-nginx's `use-gzip`, `enable-brotli`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Who may use the routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// CORS headers and preflight answers (ingress-nginx's `enable-cors` and `cors-*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// Request and connection limits per client address, per replica (ingress-nginx's
    /// `limit-*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// Authentication of the routes' clients.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// HTTP Basic authentication against users kept in a Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// Ask an auth service before forwarding (ingress-nginx's `auth-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalAuth>,
}

/// External authentication: a sub-request to `url` (2xx allows; 401 and 403 go back to the
/// client; anything else answers 500).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAuth {
    /// `http(s)://host[:port]/path`; may use `$host` (the request's host).
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// The sub-request's method (default: the request's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]))]
    pub method: Option<String>,
    /// Where a 401 redirects to (`rd=` the original URL is added unless present).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub signin_url: Option<String>,
    /// Headers of the auth service's answer set on the upstream request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(regex(pattern = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))
    )]
    pub response_headers: Vec<String>,
    /// Sent as `X-Auth-Request-Redirect` (default: the request URI).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub request_redirect: Option<String>,
}

/// HTTP Basic authentication (ingress-nginx's `auth-type: basic`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// A Secret in the policy's namespace holding the users.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// How the Secret holds the users (default `auth-file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<AuthSecretType>,
    /// The realm shown by browsers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub realm: Option<String>,
}

/// How a basic-auth Secret holds its users.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AuthSecretType {
    /// The key `auth` holds an htpasswd file (bcrypt, `$apr1$` or `{SHA}` hashes).
    #[serde(rename = "auth-file")]
    AuthFile,
    /// Each key is a user, its value the password hash.
    #[serde(rename = "auth-map")]
    AuthMap,
}

/// CORS (as ingress-nginx's `cors-*` annotations, with their defaults).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Allowed origins: `*`, or `http(s)://host[:port]` where the host may start with `*.`
    /// (default `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 300)))]
    pub allow_origins: Vec<String>,
    /// Default `GET, PUT, POST, DELETE, PATCH, OPTIONS`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(regex(pattern = "^[A-Za-z]+$")))]
    pub allow_methods: Vec<String>,
    /// Default: ingress-nginx's list (`DNT`, `Keep-Alive`, `User-Agent`, …, `Authorization`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(regex(pattern = "^[A-Za-z0-9_-]+$")))]
    pub allow_headers: Vec<String>,
    /// Headers scripts may read (default none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(regex(pattern = "^([A-Za-z0-9_-]+|[*])$")))]
    pub expose_headers: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// `Access-Control-Max-Age` in seconds (default 1728000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub max_age: Option<u64>,
}

/// Limits per client address, counted by each replica on its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.rps) || has(self.rpm) || has(self.connections)",
        "message": "set rps, rpm or connections"
    }
]))]
pub struct RateLimit {
    /// Requests per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub rps: Option<u32>,
    /// Requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub rpm: Option<u32>,
    /// Requests being processed at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub connections: Option<u32>,
    /// Requests allowed at once above the rate, as a multiple of it (default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub burst_multiplier: Option<u32>,
    /// Client CIDRs never limited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub exempt: Vec<String>,
    /// The status of a refused request (default 503, as ingress-nginx).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [429, 503]))]
    pub status_code: Option<u16>,
}

/// Response compression, chosen from the client's `Accept-Encoding` (brotli first).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Compression {
    /// Offer gzip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gzip: Option<bool>,
    /// Offer brotli.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brotli: Option<bool>,
    /// gzip level (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9))]
    pub gzip_level: Option<u32>,
    /// brotli quality (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 11))]
    pub brotli_level: Option<u32>,
    /// Answers with a known length below this many bytes are not compressed (default 256).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_length: Option<u64>,
    /// Media types to compress (default: ingress-nginx's `gzip-types`, plus text/html).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(regex(pattern = "^[a-z0-9.+-]+/[a-z0-9.+-]+$"))
    )]
    pub types: Vec<String>,
}

/// A redirect answered by Portico itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    /// Where to: an absolute URL.
    #[schemars(length(min = 1))]
    pub url: String,
    /// The status code (default 301).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [301, 302, 303, 307, 308]))]
    pub code: Option<u16>,
}

/// How Portico speaks to the backends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.tls) || (has(self.protocol) && (self.protocol == 'HTTPS' || self.protocol == 'GRPCS'))",
        "message": "tls needs protocol HTTPS or GRPCS"
    }
]))]
pub struct Upstream {
    /// The `Host` header sent upstream (default: the request's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    /// The protocol spoken to the backends (default HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<BackendProtocol>,
    /// TLS to the backends (protocol HTTPS or GRPCS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

/// The protocol spoken to the backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BackendProtocol {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
    #[serde(rename = "GRPC")]
    Grpc,
    #[serde(rename = "GRPCS")]
    Grpcs,
    #[serde(rename = "H2C")]
    H2c,
}

/// TLS to the backends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTls {
    /// Verify the backend's certificate (default false, as ingress-nginx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    /// A Secret in the policy's namespace whose `ca.crt` verifies the backend (and whose
    /// `tls.crt`/`tls.key`, when present, are the client certificate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The name verified and sent as SNI (default: the Service's DNS name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Send SNI to the backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_sni: Option<bool>,
}

/// Upstream timeouts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Establishing a connection to an endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub connect: Option<String>,
    /// Between two reads from the backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub read: Option<String>,
    /// Between two writes to the backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub send: Option<String>,
}

/// When a request is tried on another endpoint (as ingress-nginx's `proxy-next-upstream`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.on) || !('off' in self.on) || size(self.on) == 1",
        "message": "off cannot be combined with other conditions"
    }
]))]
pub struct Retries {
    /// The conditions (default: `error`, `timeout`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "retry_conditions")]
    pub on: Vec<String>,
    /// How many endpoints to try in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub tries: Option<u32>,
}

/// The conditions `Retries::on` accepts (ingress-nginx's `proxy-next-upstream` values).
pub const RETRY_CONDITIONS: [&str; 12] = [
    "error",
    "timeout",
    "invalid_header",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_403",
    "http_404",
    "http_429",
    "non_idempotent",
    "off",
];

fn retry_conditions(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": RETRY_CONDITIONS.len(),
        "items": { "type": "string", "enum": RETRY_CONDITIONS },
    })
}

/// How endpoints are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalance {
    RoundRobin,
    Ewma,
}

/// Session affinity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Affinity {
    /// Affinity by cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieAffinity>,
    /// What happens to existing sessions when endpoints change (default balanced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<AffinityMode>,
}

/// The affinity cookie.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.sameSite) || self.sameSite != 'None' || (has(self.secure) && self.secure)",
        "message": "sameSite None needs secure"
    }
]))]
pub struct CookieAffinity {
    /// The cookie's name (default `INGRESSCOOKIE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub name: Option<String>,
    /// `Max-Age`, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
    /// `Expires`, in seconds from now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// `Path` (default: the Ingress path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `SameSite`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
    /// `Secure`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
}

/// The cookie's `SameSite` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// What happens to existing sessions when endpoints change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AffinityMode {
    /// Sessions may move to rebalance new endpoints.
    Balanced,
    /// Sessions stay on their endpoint while it exists.
    Persistent,
}

/// Request and response header changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Headers {
    /// Applied to the request sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOps>,
    /// Applied to the response sent to the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOps>,
}

/// Header changes: `remove` first, then `set` (replacing), then `add` (appending).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOps {
    /// Header name → value, replacing any present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Header name → value, appended.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Header names removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}
