//! Portico's data plane.
//!
//! The controller turns Kubernetes objects into one immutable [`Snapshot`] (routes, backends,
//! certificates) and hands it to [`Proxy::publish`]; the listeners read the live snapshot once
//! per TLS handshake and once per request, so a swap never tears and never drops a connection.
//! This crate knows nothing about Kubernetes.

pub mod access;
pub mod access_log;
pub mod admin;
pub mod backend;
pub mod balance;
pub mod body;
pub mod canary;
pub mod client_addr;
pub mod client_auth;
pub mod client_hello;
pub mod compress;
pub mod config;
pub mod error;
mod forward;
pub mod h1;
pub mod headers;
pub mod limits;
pub mod metrics;
pub mod passthrough;
pub mod policy;
pub mod pool;
pub mod proxy_protocol;
pub mod respond;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod trace_context;
pub mod upstream;

pub use backend::{Backend, Endpoints, Target};
pub use canary::{Canary, CanaryHeader, HeaderMatch};
pub use client_addr::TrustedProxies;
pub use client_auth::{ClientAuth, ClientAuthTable, VerifyMode};
pub use config::ProxyConfig;
pub use passthrough::{PassthroughTable, PassthroughTarget};
pub use policy::Policy;
pub use routing::{HostPattern, HostRoutes, Matched, PathMatch, RegexPath, Route, RouteTable};
pub use server::{Drain, Listeners, Live, Proxy};
pub use snapshot::{ListenerSettings, Snapshot};
pub use tls::{TlsCertificate, TlsTable};
