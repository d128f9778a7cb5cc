//! Portico's data plane.
//!
//! The controller turns Kubernetes objects into one immutable [`Snapshot`] (routes, backends,
//! certificates) and hands it to [`Proxy::publish`]; the listeners read the live snapshot once
//! per TLS handshake and once per request, so a swap never tears and never drops a connection.
//! This crate knows nothing about Kubernetes.

pub mod backend;
pub mod error;
pub mod metrics;
pub mod routing;
pub mod snapshot;
pub mod tls;

pub use backend::{Backend, Endpoints, Target};
pub use routing::{HostPattern, HostRoutes, PathMatch, Route, RouteTable};
pub use snapshot::Snapshot;
pub use tls::{TlsCertificate, TlsTable};
