//! Route policy: annotations (and, later in the flow, RoutePolicies and class parameters)
//! parsed with strict grammars into one typed [`PolicyInput`], then built into the proxy's
//! [`Policy`].
//!
//! Sources, strongest first: `portico.dev/*` annotations, `nginx.ingress.kubernetes.io/*`
//! annotations, an attached RoutePolicy, the class's IngressClassParameters. A value that does
//! not parse is a problem; that one setting is ignored and the route keeps serving.

mod annotations;
pub mod grammar;

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use portico_proxy::policy::{HeaderOps, Redirect, Retry, RetryOn, Rewrite, Timeouts};
use portico_proxy::Policy;
use regex::Regex;

pub use annotations::{canary_of, from_annotations, CanaryInput, NGINX_PREFIX, PORTICO_PREFIX};

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

    /// The proxy's policy for one route. `path_regex` is the route's path as a compiled
    /// regex, needed by `rewrite-target`.
    pub fn build(&self, path_regex: Option<&Regex>) -> Arc<Policy> {
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
            max_body_size: self.max_body_size.flatten(),
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
            ..Policy::default()
        })
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
