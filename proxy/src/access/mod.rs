//! Access control on the request path: basic authentication, external authentication,
//! CORS and rate limits. translate builds each from annotations or RoutePolicies; the
//! request path only reads what it built.

pub mod basic;
pub mod cors;
pub mod external;
pub mod rate_limit;
