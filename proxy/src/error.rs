//! Errors of the data plane, and the one place where request failures become HTTP statuses.

use http::StatusCode;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate found in tls.crt")]
    NoCertificate,
    #[error("no private key found in tls.key")]
    NoKey,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("unusable private key: {0}")]
    Key(String),
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("invalid certificate: {0}")]
    Parse(String),
}

/// A request that could not be forwarded, classified once.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Upstream: the backend has no endpoint to send to.
    #[error("no ready endpoint")]
    NoEndpoint,
    /// Upstream: every endpoint tried refused or failed to connect.
    #[error("connecting to the backend failed: {0}")]
    Connect(String),
    /// Upstream: connecting to the endpoint took longer than the connect timeout (504, as
    /// nginx answers it; counted with the connect errors).
    #[error("connecting to the backend timed out")]
    ConnectTimeout,
    /// Upstream: the backend did not answer within the response timeout.
    #[error("the backend did not answer in time")]
    Timeout,
    /// Upstream: the backend broke the exchange (reset, malformed response).
    #[error("the backend failed: {0}")]
    Upstream(String),
    /// Upstream: an ExternalName could not be resolved, or resolved to a refused address.
    #[error("resolving the external name failed: {0}")]
    Resolve(String),
    /// Downstream: the client's request cannot be forwarded.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Downstream: the request body is larger than the route allows.
    #[error("the request body is larger than the route allows")]
    BodyTooLarge,
    /// Downstream: the client paused sending its body for longer than allowed
    /// (`--client-body-timeout`, or the route's `proxy-send-timeout` when shorter).
    #[error("the client stalled while sending its body")]
    ClientTimeout,
    /// Downstream: the client's body was malformed (an invalid chunk) or broke off.
    #[error("the client's request body failed: {0}")]
    ClientBody(String),
    /// Internal: Portico could not build the upstream request.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Whose fault a failed request is: it decides the status, the counter and the log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client's request or connection (4xx; `portico_client_errors_total`).
    Downstream,
    /// The backend or the way to it (502/503/504; `portico_upstream_errors_total`).
    Upstream,
    /// Portico itself (500; `portico_upstream_errors_total{kind="internal"}`).
    Internal,
}

impl ForwardError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::NoEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::Connect(_) | ForwardError::Upstream(_) | ForwardError::Resolve(_) => {
                StatusCode::BAD_GATEWAY
            }
            ForwardError::Timeout | ForwardError::ConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
            ForwardError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ForwardError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ForwardError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ForwardError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ForwardError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whose fault the failure is.
    pub fn side(&self) -> Side {
        match self {
            ForwardError::NoEndpoint
            | ForwardError::Connect(_)
            | ForwardError::ConnectTimeout
            | ForwardError::Timeout
            | ForwardError::Upstream(_)
            | ForwardError::Resolve(_) => Side::Upstream,
            ForwardError::BadRequest(_)
            | ForwardError::BodyTooLarge
            | ForwardError::ClientTimeout
            | ForwardError::ClientBody(_) => Side::Downstream,
            ForwardError::Internal(_) => Side::Internal,
        }
    }

    /// A short label for metrics (`portico_upstream_errors_total{kind=…}` or
    /// `portico_client_errors_total{kind=…}`, by [`ForwardError::side`]).
    pub fn kind(&self) -> &'static str {
        match self {
            ForwardError::NoEndpoint => "no_endpoint",
            ForwardError::Connect(_) | ForwardError::ConnectTimeout => "connect",
            ForwardError::Timeout => "timeout",
            ForwardError::Upstream(_) => "upstream",
            ForwardError::Resolve(_) => "resolve",
            ForwardError::BadRequest(_) => "bad_request",
            ForwardError::BodyTooLarge => "body_too_large",
            ForwardError::ClientTimeout => "client_timeout",
            ForwardError::ClientBody(_) => "client_body",
            ForwardError::Internal(_) => "internal",
        }
    }
}

/// A listener or server that could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cert(#[from] CertError),
}
