//! `IngressClassParameters`: settings of one IngressClass, named by its `spec.parameters`
//! (`apiGroup: portico.dev`, `kind: IngressClassParameters`). Cluster-scoped, as the class is.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::PolicySpec;

/// HSTS `max-age` used when `hsts` gives none: one year, as preload lists require.
pub const DEFAULT_HSTS_MAX_AGE: i64 = 31_536_000;

/// Settings of the IngressClasses whose `spec.parameters` name it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "IngressClassParameters",
    plural = "ingressclassparameters",
    shortname = "icp",
    category = "portico",
    status = "IngressClassParametersStatus",
    derive = "PartialEq",
    doc = "Settings of the IngressClasses that name it in spec.parameters: TLS, PROXY protocol, and default routing policy.",
    printcolumn(name = "MinTLS", type_ = "string", json_path = ".spec.tls.minVersion"),
    printcolumn(
        name = "HSTS max-age",
        type_ = "integer",
        json_path = ".spec.tls.hsts.maxAge"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IngressClassParametersSpec {
    /// TLS on the client side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClassTls>,
    /// PROXY protocol from trusted load balancers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Peers (CIDRs or addresses) whose `X-Forwarded-For`, `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` are believed, in addition to `--trusted-proxies`. Listener-wide:
    /// taken from the parameters of the class named by --ingress-class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    pub trusted_proxies: Vec<String>,
    /// The access log. Listener-wide: taken from the parameters of the class named by
    /// --ingress-class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// Policy for every Ingress of the class; a RoutePolicy overrides it field by field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defaults: Option<PolicySpec>,
    /// Ceilings no RoutePolicy or annotation of the class may exceed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Annotation keys (without their `nginx.ingress.kubernetes.io/` or `portico.dev/`
    /// prefix, e.g. `rewrite-target`) that Ingresses of the class may not use; such
    /// annotations are reported and ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), inner(regex(pattern = "^[a-z0-9-]+$")))]
    pub denied_annotations: Vec<String>,
}

/// Ceilings for the class's routes. A larger value from a RoutePolicy or annotation is
/// lowered to the ceiling and reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// The largest `proxy-body-size` (also the ceiling of "unlimited").
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::policy::SIZE_PATTERN))]
    pub max_body_size: Option<String>,
    /// The longest connect, read or send timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::policy::DURATION_PATTERN))]
    pub max_timeout: Option<String>,
}

/// TLS on the client side.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassTls {
    /// The lowest TLS version accepted (default 1.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
    /// `Strict-Transport-Security` on HTTPS responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
    /// The certificate (a `kubernetes.io/tls` Secret) for the TLS hosts of the class's
    /// Ingresses that have no usable certificate of their own (a TLS entry without
    /// `secretName`, or whose Secret is missing or does not fit), instead of
    /// `--default-certificate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_certificate: Option<SecretRef>,
    /// Restricts the cipher suites offered to this subset of the supported ones, named as
    /// IANA does: TLS 1.3 `TLS13_AES_256_GCM_SHA384`, `TLS13_AES_128_GCM_SHA256`,
    /// `TLS13_CHACHA20_POLY1305_SHA256`; TLS 1.2 `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256`, `TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`,
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, `TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256`
    /// (all AEAD with forward secrecy; nothing weaker can be added). At least one TLS 1.3
    /// suite must stay. Listener-wide: taken from the parameters of the class named by
    /// --ingress-class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(regex(pattern = "^TLS[A-Z0-9_]+$")))]
    pub cipher_suites: Vec<String>,
}

/// The access log (one line per request on stdout).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// `json` (one object per line, with fields) or `text` (ingress-nginx's combined-style
    /// line), instead of --access-log-format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<AccessLogFormat>,
}

/// An access-log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    Json,
    Text,
}

/// A Secret by namespace and name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's namespace.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A TLS protocol version.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// `Strict-Transport-Security`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.preload) || !self.preload || (has(self.includeSubDomains) && self.includeSubDomains && (!has(self.maxAge) || self.maxAge >= 31536000))",
        "message": "preload needs includeSubDomains and a maxAge of at least 31536000"
    }
]))]
pub struct Hsts {
    /// `max-age`, in seconds (default 31536000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_age: Option<i64>,
    /// `includeSubDomains`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_sub_domains: Option<bool>,
    /// `preload` (needs includeSubDomains and a max-age of a year or more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preload: Option<bool>,
}

/// PROXY protocol (v1 and v2) on the listeners.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyProtocol {
    /// Peers that must send a PROXY header (v1 or v2) first; the client address is read from
    /// it. Other peers' connections are served as they come (a PROXY header from them is not
    /// read). Listener-wide: taken from the parameters of the class named by --ingress-class.
    #[schemars(length(min = 1, max = 64), inner(length(max = 43)))]
    pub trusted_cidrs: Vec<String>,
}

/// What the controller made of an `IngressClassParameters`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressClassParametersStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (the parameters are valid and in use).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
