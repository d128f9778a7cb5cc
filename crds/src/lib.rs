//! Portico's custom resources (`portico.dev/v1alpha1`): [`RoutePolicy`] and
//! [`IngressClassParameters`], sharing [`PolicySpec`].
//!
//! The controller's `translate` reads these types next to Ingresses; the chart's CRD templates
//! (`charts/portico/templates/crds/`) are generated from them ([`chart_template`], written by
//! `PORTICO_UPDATE_CHART=1 cargo test -p portico-crds`, checked by the same test), so the
//! chart and the code never disagree. `cargo run -p portico-crds --bin crdgen` prints the CRDs
//! for installs without Helm.

mod chart;
pub mod class_parameters;
mod error;
pub mod policy;
pub mod route_policy;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use chart::{chart_file_name, chart_template, crd_yaml};
pub use class_parameters::{
    AccessLog, AccessLogFormat, ClassTls, Hsts, IngressClassParameters, IngressClassParametersSpec,
    IngressClassParametersStatus, Limits, ProxyProtocol, SecretRef, TlsVersion,
};
pub use error::Error;
pub use policy::{
    Affinity, AffinityMode, Auth, AuthSecretType, BackendProtocol, BasicAuth, Compression,
    CookieAffinity, Cors, ExternalAuth, HeaderOps, Headers, LoadBalance, PolicySpec, RateLimit,
    Redirect, Retries, SameSite, Timeouts, Upstream, UpstreamTls,
};
pub use route_policy::{RoutePolicy, RoutePolicySpec, RoutePolicyStatus, TargetRef, TargetStatus};

/// The API group of Portico's resources.
pub const GROUP: &str = "portico.dev";

/// Every Portico CRD, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![RoutePolicy::crd(), IngressClassParameters::crd()]
}
