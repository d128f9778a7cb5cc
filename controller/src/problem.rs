//! Per-object problems: what translate or a source could not use, and why. A problem never
//! fails the whole configuration; it becomes a log line (and, in a cluster, an Event).

use std::fmt;

/// The object a problem is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// `Ingress`, `Secret`, `Service`, … or `File` for a manifest file.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &'static str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Every kind of problem.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum Reason {
    #[error("document {document}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Manifest {
        document: usize,
        line: Option<usize>,
        message: String,
    },
    #[error("invalid host {host:?}: {why}")]
    InvalidHost { host: String, why: &'static str },
    #[error("invalid path {path:?} ({path_type}): {why}")]
    InvalidPath {
        path: String,
        path_type: String,
        why: &'static str,
    },
    #[error("unknown pathType {0:?}")]
    UnknownPathType(String),
    #[error("Service {service} not found")]
    ServiceNotFound { service: String },
    #[error("Service {service} has no port {port}")]
    ServicePortNotFound { service: String, port: String },
    #[error("a backend names no Service (resource backends are not supported)")]
    UnsupportedBackend,
    #[error("Service {service} is an ExternalName, and ExternalName backends are disabled (--allow-external-name)")]
    ExternalNameDisabled { service: String },
    #[error("Service {service} is an ExternalName with an invalid name {name:?}: {why}")]
    InvalidExternalName {
        service: String,
        name: String,
        why: &'static str,
    },
    #[error("TLS Secret {secret} not found; {host} is served with a labelled certificate covering it, else the default certificate")]
    SecretNotFound { secret: String, host: String },
    #[error(
        "TLS Secret {secret} is invalid ({error}); {host} is served with a labelled certificate covering it, else the default certificate"
    )]
    InvalidCertificate {
        secret: String,
        host: String,
        error: String,
    },
    #[error("the certificate of Secret {secret} does not cover {host}; it is served with a labelled certificate covering it, else the default certificate")]
    CertificateMismatch { secret: String, host: String },
    #[error("the certificate of Secret {secret} for {host} is expired or not yet valid")]
    CertificateExpired { secret: String, host: String },
    #[error("{host} {path} ({path_type}) is already served by Ingress {winner}")]
    PathConflict {
        host: String,
        path: String,
        path_type: String,
        winner: String,
    },
    #[error("{host} already uses {} of Ingress {winner}", winner_secret.as_deref().map(|s| format!("TLS Secret {s}")).unwrap_or_else(|| "the default certificate".into()))]
    TlsConflict {
        host: String,
        winner: String,
        /// `namespace/name`, or `None` when the winner's TLS entry names no Secret.
        winner_secret: Option<String>,
    },
    #[error("host {host} belongs to namespace {owner} (first to claim it)")]
    HostOwnedElsewhere { host: String, owner: String },
    #[error("backend TLS Secret {secret} is not usable ({error}); certificate verification towards the backend fails until it is")]
    BackendTlsSecret { secret: String, error: String },
    #[error(
        "basic-auth Secret {secret} is not usable ({error}); the routes answer 503 until it is"
    )]
    AuthSecret { secret: String, error: String },
    #[error("error backend Service {service} does not exist or has no port; custom error pages are not served")]
    ErrorBackend { service: String },
    #[error("{setting} is above the class's limit; {limit} is used")]
    LimitExceeded { setting: String, limit: String },
    #[error("annotation {key} is denied by the class's parameters; it is ignored")]
    AnnotationDenied { key: String },
    #[error("field {field}: {why}; this setting is ignored")]
    InvalidPolicyField { field: String, why: String },
    #[error("annotation {key}: {why}; this setting is ignored")]
    InvalidAnnotation { key: String, why: String },
    #[error("annotation {key} is a snippet: Portico never executes configuration text from Ingresses; it is ignored")]
    SnippetIgnored { key: String },
    #[error("annotation {key} asks for access control Portico does not apply yet; the Ingress's routes answer 503 instead of serving unprotected")]
    UnsupportedAccessControl { key: String },
    #[error(
        "annotation {key} is not supported by Portico; it is ignored (see docs/annotations.md)"
    )]
    UnsupportedAnnotation { key: String },
    #[error("annotation {key} has no effect: {why}")]
    AnnotationNoEffect { key: String, why: &'static str },
    #[error("its defaultBackend is not used: Ingress {winner} is older")]
    DefaultBackendConflict { winner: String },
    #[error("default certificate Secret not usable ({error}); a self-signed certificate is served instead")]
    DefaultCertificate { error: String },
    #[error("the default certificate is expired or not yet valid")]
    DefaultCertificateExpired,
    #[error("default backend Service not usable: {error}")]
    DefaultBackendService { error: String },
    #[error("document {document}: {kind} {api_version} is not read (Portico reads {expected}); the object is ignored")]
    UnsupportedApiVersion {
        document: usize,
        kind: String,
        api_version: String,
        expected: &'static str,
    },
    #[error(
        "document {document}: {object} is also defined in {first}; this definition is ignored"
    )]
    DuplicateObject {
        document: usize,
        object: String,
        first: String,
    },
}

impl Reason {
    /// A short PascalCase name, as Kubernetes Events' `reason`.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Manifest { .. } => "InvalidManifest",
            Reason::InvalidHost { .. } => "InvalidHost",
            Reason::InvalidPath { .. } => "InvalidPath",
            Reason::UnknownPathType(_) => "UnknownPathType",
            Reason::ServiceNotFound { .. } => "ServiceNotFound",
            Reason::ServicePortNotFound { .. } => "ServicePortNotFound",
            Reason::UnsupportedBackend => "UnsupportedBackend",
            Reason::ExternalNameDisabled { .. } => "ExternalNameDisabled",
            Reason::InvalidExternalName { .. } => "InvalidExternalName",
            Reason::SecretNotFound { .. } => "SecretNotFound",
            Reason::InvalidCertificate { .. } => "InvalidCertificate",
            Reason::CertificateMismatch { .. } => "CertificateMismatch",
            Reason::CertificateExpired { .. } => "CertificateExpired",
            Reason::PathConflict { .. } => "PathConflict",
            Reason::TlsConflict { .. } => "TLSConflict",
            Reason::HostOwnedElsewhere { .. } => "HostOwnedElsewhere",
            Reason::InvalidAnnotation { .. } => "InvalidAnnotation",
            Reason::InvalidPolicyField { .. } => "InvalidPolicyField",
            Reason::LimitExceeded { .. } => "LimitExceeded",
            Reason::AnnotationDenied { .. } => "AnnotationDenied",
            Reason::BackendTlsSecret { .. } => "BackendTlsSecret",
            Reason::AuthSecret { .. } => "AuthSecret",
            Reason::ErrorBackend { .. } => "ErrorBackend",
            Reason::SnippetIgnored { .. } => "SnippetIgnored",
            Reason::UnsupportedAnnotation { .. } => "UnsupportedAnnotation",
            Reason::UnsupportedAccessControl { .. } => "UnsupportedAccessControl",
            Reason::AnnotationNoEffect { .. } => "AnnotationNoEffect",
            Reason::DefaultBackendConflict { .. } => "DefaultBackendConflict",
            Reason::DefaultCertificate { .. } => "DefaultCertificate",
            Reason::DefaultCertificateExpired => "DefaultCertificateExpired",
            Reason::DefaultBackendService { .. } => "DefaultBackendService",
            Reason::UnsupportedApiVersion { .. } => "UnsupportedApiVersion",
            Reason::DuplicateObject { .. } => "DuplicateObject",
        }
    }
}

/// One problem with one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    pub object: ObjectRef,
    pub reason: Reason,
}

impl Problem {
    pub fn new(object: ObjectRef, reason: Reason) -> Self {
        Problem { object, reason }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_well_in_a_log_line() {
        let p = Problem::new(
            ObjectRef::new("File", "", "apps.yaml"),
            Reason::Manifest {
                document: 2,
                line: Some(14),
                message: "invalid type: integer `7`, expected a sequence".into(),
            },
        );
        assert_eq!(
            p.to_string(),
            "File apps.yaml: document 2, line 14: invalid type: integer `7`, expected a sequence"
        );
        let p = Problem::new(
            ObjectRef::new("Ingress", "shop", "web"),
            Reason::PathConflict {
                host: "shop.com".into(),
                path: "/api".into(),
                path_type: "Prefix".into(),
                winner: "shop/api".into(),
            },
        );
        assert_eq!(
            p.to_string(),
            "Ingress shop/web: shop.com /api (Prefix) is already served by Ingress shop/api"
        );
    }

    #[test]
    fn problems_sort_by_object_then_reason() {
        let mut v = [
            Problem::new(
                ObjectRef::new("Ingress", "b", "x"),
                Reason::UnsupportedBackend,
            ),
            Problem::new(
                ObjectRef::new("Ingress", "a", "y"),
                Reason::ServiceNotFound {
                    service: "a/s".into(),
                },
            ),
            Problem::new(
                ObjectRef::new("Ingress", "a", "y"),
                Reason::InvalidHost {
                    host: "X".into(),
                    why: "uppercase",
                },
            ),
        ];
        v.sort();
        let shown: Vec<String> = v.iter().map(|p| p.reason.code().to_string()).collect();
        assert_eq!(
            shown,
            vec!["InvalidHost", "ServiceNotFound", "UnsupportedBackend"]
        );
    }
}
