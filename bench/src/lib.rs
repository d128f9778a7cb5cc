//! Portico's benchmarks. See `bench/README.md`.
//!
//! The library holds what the comparison against nginx and haproxy (`peers`) needs: a minimal
//! HTTP/1.1 load generator, a TLS handshake load generator, and CPU and memory accounting from
//! `/proc`.

pub mod http1;
pub mod procfs;
pub mod stats;
pub mod tls;
