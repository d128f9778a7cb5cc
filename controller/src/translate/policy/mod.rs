//! Route policy: annotations (and, later in the flow, RoutePolicies and class parameters)
//! parsed with strict grammars into one typed [`PolicyInput`], then built into the proxy's
//! [`Policy`].
//!
//! Sources, strongest first: `portico.dev/*` annotations, `nginx.ingress.kubernetes.io/*`
//! annotations, an attached RoutePolicy, the class's IngressClassParameters. A value that does
//! not parse is a problem; that one setting is ignored and the route keeps serving.

mod annotations;
pub mod client_tls;
mod crd;
pub mod grammar;
pub mod sources;

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use portico_proxy::access::basic::{parse_htpasswd, BasicAuth, Credential};
use portico_proxy::access::cors::{Cors, Origins};
use portico_proxy::access::external::{AuthUrl, AuthUrlPolicy, ExternalAuth};
use portico_proxy::access::rate_limit::{Rate, RateLimit};
use portico_proxy::balance::{Balance, CookieAffinity, HashKey};
use portico_proxy::compress::Compression;
use portico_proxy::policy::{
    ErrorPages, HeaderOps, Redirect, Retry, RetryOn, Rewrite, Timeouts, DEFAULT_MAX_BODY_SIZE,
};
use portico_proxy::upstream::{Protocol, UpstreamTls};
use portico_proxy::{Backend, Policy, TrustedProxies};
use regex::Regex;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::inputs::Inputs;
use crate::problem::{ObjectRef, Problem, Reason};

pub use annotations::{
    canary_of, from_annotations, retry_conditions, CanaryInput, NGINX_PREFIX, PORTICO_PREFIX,
};
pub use crd::from_spec;

/// The key of an htpasswd file in a basic-auth Secret (`auth-secret-type: auth-file`).
pub const AUTH_KEY: &str = "auth";

/// ingress-nginx's `limit-burst-multiplier` default.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;

/// Every policy setting, each unset unless a source set it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyInput {
    pub ssl_redirect: Option<bool>,
    pub force_ssl_redirect: Option<bool>,
    pub preserve_trailing_slash: Option<bool>,
    pub redirect: Option<(HeaderValue, StatusCode)>,
    pub app_root: Option<HeaderValue>,
    pub from_to_www_redirect: Option<bool>,
    pub use_regex: Option<bool>,
    pub rewrite_target: Option<String>,
    pub x_forwarded_prefix: Option<HeaderValue>,
    pub upstream_vhost: Option<HeaderValue>,
    /// `Some(None)`: explicitly unlimited.
    pub max_body_size: Option<Option<u64>>,
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    pub retry_on: Option<RetryOn>,
    pub retry_tries: Option<u32>,
    pub request_set: Option<Vec<(HeaderName, HeaderValue)>>,
    pub request_add: Option<Vec<(HeaderName, HeaderValue)>>,
    pub request_remove: Option<Vec<HeaderName>>,
    pub response_set: Option<Vec<(HeaderName, HeaderValue)>>,
    pub response_add: Option<Vec<(HeaderName, HeaderValue)>>,
    pub response_remove: Option<Vec<HeaderName>>,
    pub protocol: Option<Protocol>,
    pub ssl_verify: Option<bool>,
    /// `proxy-ssl-secret` as written: `name` or `namespace/name`.
    pub ssl_secret: Option<String>,
    pub ssl_name: Option<String>,
    pub ssl_server_name: Option<bool>,
    /// What `ssl_secret` holds, once resolved against the inputs.
    pub ssl_material: Option<SslMaterial>,
    /// `load-balance: ewma` (true) or `round_robin` (false).
    pub ewma: Option<bool>,
    pub hash_by: Option<HashKey>,
    /// `affinity: cookie`.
    pub affinity_cookie: Option<bool>,
    pub affinity_persistent: Option<bool>,
    pub cookie_name: Option<String>,
    pub cookie_path: Option<String>,
    pub cookie_max_age: Option<u64>,
    pub cookie_expires: Option<u64>,
    pub cookie_same_site: Option<&'static str>,
    pub cookie_secure: Option<bool>,
    /// `custom-http-errors`: statuses the error backend answers for.
    pub custom_errors: Option<Vec<u16>>,
    /// `default-backend`: a Service of the Ingress's namespace.
    pub error_backend: Option<String>,
    /// Refuse every request: the Ingress asks for access control Portico cannot apply.
    pub deny: Option<bool>,
    /// `Strict-Transport-Security` (from the class's parameters).
    pub hsts: Option<HeaderValue>,
    pub compression: Option<Compression>,
    pub allow_sources: Option<TrustedProxies>,
    pub deny_sources: Option<TrustedProxies>,
    /// `auth-type: basic` (false: a type Portico cannot apply, which denies).
    pub auth_basic: Option<bool>,
    /// `auth-secret` as written: `name` or `namespace/name`.
    pub auth_secret: Option<String>,
    /// `auth-secret-type: auth-map` (true) or `auth-file` (false, the default).
    pub auth_secret_map: Option<bool>,
    pub auth_realm: Option<String>,
    /// The users of `auth_secret`, once resolved against the inputs.
    pub basic_users: Option<BasicUsers>,
    pub cors_enabled: Option<bool>,
    pub cors_origins: Option<Origins>,
    pub cors_methods: Option<HeaderValue>,
    pub cors_headers: Option<HeaderValue>,
    pub cors_expose: Option<HeaderValue>,
    pub cors_credentials: Option<bool>,
    pub cors_max_age: Option<u64>,
    pub limit_rps: Option<u32>,
    pub limit_rpm: Option<u32>,
    pub limit_connections: Option<u32>,
    pub limit_burst_multiplier: Option<u32>,
    pub limit_exempt: Option<TrustedProxies>,
    pub limit_status: Option<StatusCode>,
    /// Where the limits' per-client state lives: `namespace/ingress` (set when resolving).
    pub limit_zone: Option<String>,
    /// `auth-url`; `Some(None)`: written but unusable, which denies.
    pub auth_url: Option<Option<AuthUrl>>,
    pub auth_method: Option<http::Method>,
    pub auth_signin: Option<String>,
    pub auth_response_headers: Option<Vec<HeaderName>>,
    pub auth_request_redirect: Option<HeaderValue>,
}

/// The users of a basic-auth Secret, parsed when the snapshot is built.
#[derive(Clone, Debug)]
pub struct BasicUsers {
    /// `namespace/name@fingerprint`: equal keys, equal users.
    pub key: String,
    pub users: Arc<Vec<(String, Credential)>>,
}

impl PartialEq for BasicUsers {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

/// What one route's policy needs besides the settings.
#[derive(Default)]
pub struct RouteContext<'a> {
    /// The route's path as a compiled regex (for `rewrite-target`).
    pub path_regex: Option<&'a Regex>,
    /// `name.namespace` of the route's Service (the default backend TLS name).
    pub service: Option<&'a str>,
    /// The route's path when it is not a regex (the default affinity cookie path).
    pub route_path: Option<&'a str>,
    /// The resolved error backend and its `name:port`.
    pub error_backend: Option<(Arc<Backend>, String)>,
}

/// The CA bundle and client certificate of a `proxy-ssl-secret`.
#[derive(Clone, Debug)]
pub struct SslMaterial {
    /// `namespace/name`, plus what identifies its content.
    pub key: String,
    pub roots: Arc<Vec<CertificateDer<'static>>>,
    pub client_auth: Option<Arc<CertifiedKey>>,
}

impl PartialEq for SslMaterial {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

macro_rules! overlay_fields {
    ($self:ident, $stronger:ident, $($field:ident),* $(,)?) => {
        $( if $stronger.$field.is_some() { $self.$field = $stronger.$field.clone(); } )*
    };
}

impl PolicyInput {
    /// Takes every setting `stronger` has.
    pub fn overlay(&mut self, stronger: &PolicyInput) {
        overlay_fields!(
            self,
            stronger,
            ssl_redirect,
            force_ssl_redirect,
            preserve_trailing_slash,
            redirect,
            app_root,
            from_to_www_redirect,
            use_regex,
            rewrite_target,
            x_forwarded_prefix,
            upstream_vhost,
            max_body_size,
            connect_timeout,
            read_timeout,
            send_timeout,
            retry_on,
            retry_tries,
            request_set,
            request_add,
            request_remove,
            response_set,
            response_add,
            response_remove,
            protocol,
            ssl_verify,
            ssl_secret,
            ssl_name,
            ssl_server_name,
            ssl_material,
            ewma,
            hash_by,
            affinity_cookie,
            affinity_persistent,
            cookie_name,
            cookie_path,
            cookie_max_age,
            cookie_expires,
            cookie_same_site,
            cookie_secure,
            custom_errors,
            error_backend,
            deny,
            hsts,
            compression,
            allow_sources,
            deny_sources,
            auth_basic,
            auth_secret,
            auth_secret_map,
            auth_realm,
            basic_users,
            cors_enabled,
            cors_origins,
            cors_methods,
            cors_headers,
            cors_expose,
            cors_credentials,
            cors_max_age,
            limit_rps,
            limit_rpm,
            limit_connections,
            limit_burst_multiplier,
            limit_exempt,
            limit_status,
            limit_zone,
            auth_url,
            auth_method,
            auth_signin,
            auth_response_headers,
            auth_request_redirect,
        );
    }

    /// Do this route's paths become regexes (for the whole host, as in ingress-nginx)?
    pub fn regex_paths(&self) -> bool {
        self.use_regex == Some(true) || self.rewrite_target.is_some()
    }

    /// Are plain-HTTP requests redirected to HTTPS, given whether the host has TLS?
    pub fn redirects_to_https(&self, tls_host: bool) -> bool {
        self.force_ssl_redirect == Some(true) || (tls_host && self.ssl_redirect != Some(false))
    }

    /// Does a route's policy depend on its Service (the default backend TLS name)?
    pub fn per_service(&self) -> bool {
        self.protocol.is_some_and(Protocol::tls) && self.ssl_name.is_none()
    }

    /// Does a route's policy depend on its path (the default affinity cookie path)?
    pub fn per_path(&self) -> bool {
        self.rewrite_target.is_some()
            || (self.affinity_cookie == Some(true) && self.cookie_path.is_none())
    }

    fn balance(&self, route_path: Option<&str>) -> Balance {
        if self.affinity_cookie == Some(true) {
            return Balance::Cookie(CookieAffinity {
                name: self
                    .cookie_name
                    .clone()
                    .unwrap_or_else(|| "INGRESSCOOKIE".to_string()),
                persistent: self.affinity_persistent == Some(true),
                // The route's path when it is a literal one (a regex path passes `None`)
                // and fit for a cookie; else `/`.
                path: self
                    .cookie_path
                    .clone()
                    .or_else(|| route_path.and_then(|p| grammar::cookie_path(p).ok()))
                    .unwrap_or_else(|| "/".to_string()),
                max_age: self.cookie_max_age,
                expires: self.cookie_expires,
                same_site: self.cookie_same_site,
                secure: self.cookie_secure == Some(true),
            });
        }
        if let Some(key) = &self.hash_by {
            return Balance::Hash(key.clone());
        }
        if self.ewma == Some(true) {
            return Balance::Ewma;
        }
        Balance::RoundRobin
    }

    /// The proxy's policy for one route. `path_regex` is the route's path as a compiled
    /// regex, needed by `rewrite-target`; `service` (`name.namespace`) names the backend
    /// when TLS towards it has no `proxy-ssl-name`.
    pub fn build(&self, ctx: RouteContext<'_>) -> Arc<Policy> {
        let RouteContext {
            path_regex,
            service,
            route_path,
            error_backend,
        } = ctx;
        let plain = PolicyInput {
            ssl_redirect: None,
            force_ssl_redirect: None,
            use_regex: None,
            from_to_www_redirect: None,
            ..self.clone()
        };
        if plain == PolicyInput::default() {
            return Policy::none();
        }
        let mut retry = Retry::default();
        if let Some(on) = self.retry_on {
            retry.on = on;
        }
        if let Some(tries) = self.retry_tries {
            retry.tries = tries;
        }
        Arc::new(Policy {
            redirect: self.redirect.as_ref().map(|(location, code)| Redirect::To {
                location: location.clone(),
                code: *code,
            }),
            app_root: self.app_root.clone(),
            rewrite: match (&self.rewrite_target, path_regex) {
                (Some(target), Some(re)) => Some(Rewrite::new(re.clone(), target)),
                _ => None,
            },
            x_forwarded_prefix: self.x_forwarded_prefix.clone(),
            upstream_vhost: self.upstream_vhost.clone(),
            max_body_size: match self.max_body_size {
                None => Some(DEFAULT_MAX_BODY_SIZE),
                Some(set) => set,
            },
            timeouts: Timeouts {
                connect: self.connect_timeout,
                read: self.read_timeout,
                send: self.send_timeout,
            },
            retry,
            preserve_trailing_slash: self.preserve_trailing_slash == Some(true),
            request_headers: HeaderOps {
                remove: self.request_remove.clone().unwrap_or_default(),
                set: self.request_set.clone().unwrap_or_default(),
                add: self.request_add.clone().unwrap_or_default(),
            },
            response_headers: HeaderOps {
                remove: self.response_remove.clone().unwrap_or_default(),
                set: self.response_set.clone().unwrap_or_default(),
                add: self.response_add.clone().unwrap_or_default(),
            },
            protocol: self.protocol.unwrap_or_default(),
            upstream_tls: self.upstream_tls(service),
            balance: self.balance(route_path),
            // Basic auth asked for but without usable users: refuse (fail closed).
            deny: self.deny == Some(true)
                || (self.auth_basic.is_some() && self.basic_users.is_none())
                || self.auth_basic == Some(false)
                || self.auth_url == Some(None),
            basic_auth: self.basic_auth(),
            cors: self.cors(),
            rate_limit: self.rate_limit(),
            external_auth: self.external_auth(),
            allow_sources: self.allow_sources.clone(),
            deny_sources: self.deny_sources.clone(),
            hsts: self.hsts.clone(),
            compression: self.compression.clone().filter(|c| c.gzip || c.brotli),
            error_pages: error_backend.map(|(backend, service)| ErrorPages {
                codes: self.custom_errors.clone().unwrap_or_default(),
                backend,
                service,
            }),
            ..Policy::default()
        })
    }

    fn basic_auth(&self) -> Option<Arc<BasicAuth>> {
        if self.auth_basic != Some(true) {
            return None;
        }
        let users = self.basic_users.as_ref()?;
        Some(Arc::new(BasicAuth::new(
            self.auth_realm.as_deref().unwrap_or(""),
            users.users.to_vec(),
        )))
    }

    fn external_auth(&self) -> Option<Arc<ExternalAuth>> {
        let url = self.auth_url.clone().flatten()?;
        Some(Arc::new(ExternalAuth::new(
            url,
            self.auth_method.clone(),
            self.auth_signin
                .as_deref()
                .and_then(|v| portico_proxy::access::external::parse_signin(v).ok()),
            self.auth_response_headers.clone().unwrap_or_default(),
            self.auth_request_redirect.clone(),
        )))
    }

    /// Everything access control needs from outside the annotations: the basic-auth
    /// Secret, the permitted `auth-url` destinations, and the rate-limit zone
    /// (`namespace/name` of the Ingress, so counts survive configuration changes).
    pub fn resolve_access(
        &mut self,
        namespace: &str,
        inputs: &Inputs,
        allowed: &AuthUrlPolicy,
        object: &ObjectRef,
        problems: &mut Vec<Problem>,
    ) {
        self.resolve_auth_secret(namespace, inputs, object, problems);
        self.check_auth_url(allowed, object, problems);
        let limited = self.limit_rps.is_some()
            || self.limit_rpm.is_some()
            || self.limit_connections.is_some();
        self.limit_zone = limited.then(|| format!("{}/{}", object.namespace, object.name));
    }

    /// Refuses an `auth-url` whose host `--auth-url-allowed` does not permit (a problem; the
    /// routes answer 503). Names are checked again on each request, once resolved.
    pub fn check_auth_url(
        &mut self,
        allowed: &AuthUrlPolicy,
        object: &ObjectRef,
        problems: &mut Vec<Problem>,
    ) {
        let Some(Some(url)) = &self.auth_url else {
            return;
        };
        // With `$host`, only the request's resolved addresses can be checked.
        let Some(host) = url.fixed_host() else {
            return;
        };
        if !allowed.permits_host(host) {
            problems.push(Problem::new(
                object.clone(),
                Reason::InvalidAnnotation {
                    key: "nginx.ingress.kubernetes.io/auth-url".into(),
                    why: format!(
                        "{host} is not a permitted auth destination (loopback, link-local and metadata addresses are refused; see --auth-url-allowed); the routes answer 503"
                    ),
                },
            ));
            self.auth_url = Some(None);
        }
    }

    fn cors(&self) -> Option<Arc<Cors>> {
        if self.cors_enabled != Some(true) {
            return None;
        }
        let d = Cors::default();
        Some(Arc::new(Cors {
            origins: self.cors_origins.clone().unwrap_or(d.origins),
            allow_methods: self.cors_methods.clone().unwrap_or(d.allow_methods),
            allow_headers: self.cors_headers.clone().unwrap_or(d.allow_headers),
            expose_headers: self.cors_expose.clone(),
            allow_credentials: self.cors_credentials.unwrap_or(d.allow_credentials),
            max_age: self.cors_max_age.map_or(d.max_age, HeaderValue::from),
        }))
    }

    fn rate_limit(&self) -> Option<Arc<RateLimit>> {
        if self.limit_rps.is_none() && self.limit_rpm.is_none() && self.limit_connections.is_none()
        {
            return None;
        }
        let multiplier = self
            .limit_burst_multiplier
            .unwrap_or(DEFAULT_BURST_MULTIPLIER);
        let rate = |count: Option<u32>, per: Duration| {
            count.and_then(|c| Rate::new(c, per, c.saturating_mul(multiplier)))
        };
        Some(Arc::new(RateLimit::new(
            self.limit_zone.as_deref(),
            rate(self.limit_rps, Duration::from_secs(1)),
            rate(self.limit_rpm, Duration::from_secs(60)),
            self.limit_connections,
            self.limit_exempt.clone(),
            self.limit_status.unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        )))
    }

    /// Finds the users of `auth-secret` in `inputs` and parses them. Anything that keeps
    /// them from being used is a problem, and the routes answer 503 (as ingress-nginx does
    /// when the Secret is missing); unusable lines are problems while the others work.
    ///
    /// Only Secrets of the Ingress's own namespace are read: `namespace/name` naming another
    /// namespace is refused, so one tenant cannot borrow (or probe) another's credentials.
    pub fn resolve_auth_secret(
        &mut self,
        namespace: &str,
        inputs: &Inputs,
        object: &ObjectRef,
        problems: &mut Vec<Problem>,
    ) {
        self.basic_users = None;
        if self.auth_basic != Some(true) {
            return;
        }
        let mut fail = |secret: String, error: String| {
            problems.push(Problem::new(
                object.clone(),
                Reason::AuthSecret { secret, error },
            ));
        };
        let Some(written) = self.auth_secret.as_deref() else {
            fail(String::new(), "auth-type basic needs auth-secret".into());
            return;
        };
        let (ns, name) = written.split_once('/').unwrap_or((namespace, written));
        let secret = format!("{ns}/{name}");
        if ns != namespace {
            fail(
                secret,
                "only Secrets in the Ingress's own namespace may be used".into(),
            );
            return;
        }
        let Some(found) = inputs.secrets.iter().find(|s| {
            s.metadata.namespace.as_deref().unwrap_or("default") == ns
                && s.metadata.name.as_deref() == Some(name)
        }) else {
            fail(secret, "the Secret does not exist".into());
            return;
        };
        let empty = std::collections::BTreeMap::new();
        let data = found.data.as_ref().unwrap_or(&empty);
        let mut hasher = Sha256::new();
        let mut users = Vec::new();
        if self.auth_secret_map == Some(true) {
            for (user, hash) in data {
                hasher.update((user.len() as u64).to_le_bytes());
                hasher.update(user.as_bytes());
                hasher.update((hash.0.len() as u64).to_le_bytes());
                hasher.update(&hash.0);
                let parsed = std::str::from_utf8(&hash.0)
                    .map_err(|_| "not UTF-8".to_string())
                    .and_then(|h| {
                        portico_proxy::access::basic::check_user(user)?;
                        Credential::parse(h)
                    });
                match parsed {
                    Ok(c) => users.push((user.clone(), c)),
                    Err(why) => fail(secret.clone(), format!("key {user:?}: {why}")),
                }
            }
        } else {
            let Some(file) = data.get(AUTH_KEY) else {
                fail(secret, format!("the Secret has no {AUTH_KEY} key"));
                return;
            };
            let Ok(text) = std::str::from_utf8(&file.0) else {
                fail(secret, format!("{AUTH_KEY} is not UTF-8"));
                return;
            };
            hasher.update(&file.0);
            let (parsed, errors) = parse_htpasswd(text);
            for e in errors {
                fail(
                    secret.clone(),
                    format!("{AUTH_KEY} line {}: {}", e.line, e.why),
                );
            }
            users = parsed;
        }
        if users.is_empty() {
            fail(
                secret.clone(),
                "no usable user; every request is refused with 401".into(),
            );
        }
        let digest: [u8; 32] = hasher.finalize().into();
        let fingerprint: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        self.basic_users = Some(BasicUsers {
            key: format!("{secret}@{fingerprint}"),
            users: Arc::new(users),
        });
    }

    fn upstream_tls(&self, service: Option<&str>) -> Option<Arc<UpstreamTls>> {
        if !self.protocol.is_some_and(Protocol::tls) {
            return None;
        }
        let server_name = match (&self.ssl_name, service) {
            (Some(name), _) => name.clone(),
            (None, Some(svc)) => format!("{svc}.svc"),
            (None, None) => "backend.invalid".to_string(),
        };
        let verify = self.ssl_verify == Some(true);
        let sni = self.ssl_server_name == Some(true);
        let material = self.ssl_material.as_ref();
        let key = format!(
            "verify={verify};sni={sni};name={server_name};secret={}",
            material.map_or("", |m| m.key.as_str())
        );
        Some(Arc::new(UpstreamTls {
            verify,
            roots: material.map(|m| m.roots.to_vec()).unwrap_or_default(),
            server_name,
            sni,
            client_auth: material.and_then(|m| m.client_auth.clone()),
            key,
        }))
    }

    /// Finds the `proxy-ssl-secret` in `inputs`. A missing or unusable Secret is a problem;
    /// verification then has no CA to trust and every handshake fails (closed, not open).
    pub fn resolve_ssl_secret(
        &mut self,
        namespace: &str,
        inputs: &Inputs,
        object: &ObjectRef,
        problems: &mut Vec<Problem>,
    ) {
        let Some(written) = self.ssl_secret.as_deref() else {
            return;
        };
        let (ns, name) = match written.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (namespace, written),
        };
        let secret = format!("{ns}/{name}");
        if ns != namespace {
            problems.push(Problem::new(
                object.clone(),
                Reason::BackendTlsSecret {
                    secret,
                    error: "only Secrets in the Ingress's own namespace may be used".into(),
                },
            ));
            return;
        }
        let id = (ns.to_string(), name.to_string());
        let roots = match inputs.ca_bundles.get(&id) {
            Some(Ok(roots)) => roots.clone(),
            Some(Err(e)) => {
                problems.push(Problem::new(
                    object.clone(),
                    Reason::BackendTlsSecret {
                        secret,
                        error: e.clone(),
                    },
                ));
                return;
            }
            None => {
                let error = if inputs.secrets.iter().any(|s| {
                    s.metadata.namespace.as_deref() == Some(ns)
                        && s.metadata.name.as_deref() == Some(name)
                }) {
                    "the Secret has no ca.crt".to_string()
                } else {
                    "the Secret does not exist (or is not a kubernetes.io/tls Secret)".to_string()
                };
                problems.push(Problem::new(
                    object.clone(),
                    Reason::BackendTlsSecret { secret, error },
                ));
                return;
            }
        };
        let client_auth = match inputs.certificates.get(&id) {
            Some(Ok(cert)) => Some(cert.certified.clone()),
            _ => None,
        };
        let mut hasher = Sha256::new();
        for c in roots.iter() {
            hasher.update((c.len() as u64).to_le_bytes());
            hasher.update(c.as_ref());
        }
        for c in client_auth.iter().flat_map(|k| k.cert.iter()) {
            hasher.update((c.len() as u64).to_le_bytes());
            hasher.update(c.as_ref());
        }
        let digest: [u8; 32] = hasher.finalize().into();
        let fingerprint: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        self.ssl_material = Some(SslMaterial {
            key: format!("{secret}@{fingerprint}"),
            roots,
            client_auth,
        });
    }
}

/// The policy of a host's `from-to-www-redirect` twin: everything goes to `host`.
pub fn host_redirect(host: &str) -> Arc<Policy> {
    Arc::new(Policy {
        redirect: Some(Redirect::Host {
            host: host.to_string(),
            code: StatusCode::PERMANENT_REDIRECT,
        }),
        ..Policy::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Arc<Secret> {
        let mut s = Secret::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        );
        Arc::new(s)
    }

    fn resolve(p: &mut PolicyInput, inputs: &Inputs) -> Vec<Problem> {
        let mut problems = Vec::new();
        let object = ObjectRef::new("Ingress", "ns", "ing");
        p.resolve_auth_secret("ns", inputs, &object, &mut problems);
        problems
    }

    fn basic(secret: &str, map: bool) -> PolicyInput {
        PolicyInput {
            auth_basic: Some(true),
            auth_secret: Some(secret.into()),
            auth_secret_map: Some(map),
            ..PolicyInput::default()
        }
    }

    #[test]
    fn basic_auth_secrets_resolve_or_deny() {
        let apr = portico_proxy::access::basic::apr1(b"pw", b"abcdefgh");
        let file = format!("alice:{apr}\nbob:nothash\n");
        let inputs = Inputs {
            secrets: vec![
                secret("ns", "file", &[("auth", &file)]),
                secret("ns", "map", &[("carol", &apr), ("dave", "$1$x$y")]),
                secret("ns", "nokey", &[("other", "x")]),
                secret("other", "file", &[("auth", &file)]),
            ]
            .into(),
            ..Inputs::default()
        };
        let mut p = basic("file", false);
        let problems = resolve(&mut p, &inputs);
        assert_eq!(problems.len(), 1, "bob's line: {problems:?}");
        assert!(problems[0].to_string().contains("line 2"), "{problems:?}");
        assert!(!problems[0].to_string().contains("nothash"));
        let built = p.build(RouteContext::default());
        assert!(!built.deny);
        assert_eq!(built.basic_auth.as_ref().unwrap().users(), 1);

        let mut p = basic("ns/map", true);
        let problems = resolve(&mut p, &inputs);
        assert_eq!(problems.len(), 1, "dave: {problems:?}");
        assert_eq!(p.basic_users.as_ref().unwrap().users.len(), 1);

        for (name, map) in [("missing", false), ("nokey", false), ("other/file", false)] {
            let mut p = basic(name, map);
            let problems = resolve(&mut p, &inputs);
            assert_eq!(problems[0].reason.code(), "AuthSecret", "{name}");
            let built = p.build(RouteContext::default());
            assert!(built.deny && built.basic_auth.is_none(), "{name}");
        }
    }

    #[test]
    fn an_edited_secret_changes_the_key() {
        let a = Inputs {
            secrets: vec![secret(
                "ns",
                "s",
                &[("auth", "u:{SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=")],
            )]
            .into(),
            ..Inputs::default()
        };
        let b = Inputs {
            secrets: vec![secret(
                "ns",
                "s",
                &[("auth", "u:{SHA}BBBBBBBBBBBBBBBBBBBBBBBBBBA=")],
            )]
            .into(),
            ..Inputs::default()
        };
        let (mut pa, mut pb) = (basic("s", false), basic("s", false));
        assert!(resolve(&mut pa, &a).is_empty());
        assert!(resolve(&mut pb, &b).is_empty());
        assert_ne!(pa, pb, "a rotated Secret gives another policy");
    }
}
