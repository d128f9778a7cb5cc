//! Every annotation parser, through translate: an Ingress with fuzzed annotation values (and
//! a fuzzed path, so `use-regex` and `rewrite-target` meet odd paths) gives a snapshot and
//! problems; never a panic, and every problem names the Ingress.
//!
//! Input: records separated by 0x00; the first is the path, each other is one key-index byte
//! then the value.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use libfuzzer_sys::fuzz_target;
use portico_controller::inputs::Inputs;
use portico_controller::translate::{translate, Options};
use portico_proxy::TlsCertificate;

const KEYS: &[&str] = &[
    "add-request-headers",
    "add-response-headers",
    "affinity",
    "affinity-mode",
    "allowlist-source-range",
    "app-root",
    "auth-method",
    "auth-realm",
    "auth-response-headers",
    "auth-secret",
    "auth-secret-type",
    "auth-signin",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-type",
    "auth-url",
    "backend-protocol",
    "canary",
    "canary-by-cookie",
    "canary-by-header",
    "canary-by-header-pattern",
    "canary-by-header-value",
    "canary-weight",
    "canary-weight-total",
    "client-body-buffer-size",
    "configuration-snippet",
    "custom-http-errors",
    "default-backend",
    "denylist-source-range",
    "enable-cors",
    "enable-brotli",
    "force-ssl-redirect",
    "from-to-www-redirect",
    "load-balance",
    "permanent-redirect",
    "permanent-redirect-code",
    "preserve-trailing-slash",
    "proxy-body-size",
    "proxy-buffer-size",
    "proxy-buffering",
    "proxy-buffers-number",
    "proxy-connect-timeout",
    "proxy-http-version",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "proxy-read-timeout",
    "proxy-request-buffering",
    "proxy-send-timeout",
    "proxy-ssl-name",
    "proxy-ssl-secret",
    "proxy-ssl-server-name",
    "proxy-ssl-verify",
    "remove-request-headers",
    "remove-response-headers",
    "rewrite-target",
    "server-snippets",
    "session-cookie-expires",
    "session-cookie-max-age",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-samesite",
    "session-cookie-secure",
    "set-request-headers",
    "set-response-headers",
    "ssl-redirect",
    "temporal-redirect",
    "temporal-redirect-code",
    "upstream-hash-by",
    "upstream-vhost",
    "use-gzip",
    "use-regex",
    "whitelist-source-range",
    "x-forwarded-prefix",
];

fn fallback() -> Arc<TlsCertificate> {
    static F: std::sync::OnceLock<Arc<TlsCertificate>> = std::sync::OnceLock::new();
    F.get_or_init(|| Arc::new(TlsCertificate::self_signed(&["portico.invalid"]).unwrap()))
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let mut records = data.split(|b| *b == 0);
    let path = String::from_utf8_lossy(records.next().unwrap_or_default()).into_owned();
    let mut annotations = BTreeMap::new();
    for r in records {
        let Some((&k, value)) = r.split_first() else {
            continue;
        };
        let key = KEYS[k as usize % KEYS.len()];
        let prefix = if k >= 128 {
            "portico.dev/"
        } else {
            "nginx.ingress.kubernetes.io/"
        };
        annotations.insert(
            format!("{prefix}{key}"),
            String::from_utf8_lossy(value).into_owned(),
        );
    }
    let mut ing = Ingress::default();
    ing.metadata.namespace = Some("default".into());
    ing.metadata.name = Some("fuzz".into());
    ing.metadata.annotations = Some(annotations);
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: "web".into(),
            port: Some(ServiceBackendPort {
                number: Some(80),
                name: None,
            }),
        }),
        resource: None,
    };
    ing.spec = Some(IngressSpec {
        rules: Some(vec![IngressRule {
            host: Some("fuzz.example".into()),
            http: Some(HTTPIngressRuleValue {
                paths: vec![HTTPIngressPath {
                    path: Some(path.clone()),
                    path_type: "ImplementationSpecific".into(),
                    backend,
                }],
            }),
        }]),
        ..Default::default()
    });
    let mut svc = Service::default();
    svc.metadata.namespace = Some("default".into());
    svc.metadata.name = Some("web".into());
    svc.spec = Some(ServiceSpec {
        ports: Some(vec![ServicePort {
            port: 80,
            ..Default::default()
        }]),
        ..Default::default()
    });
    let inputs = Inputs {
        ingresses: vec![Arc::new(ing)].into(),
        services: vec![Arc::new(svc)].into(),
        ..Inputs::default()
    };
    let options = Options {
        serve_classless: true,
        now: 1_800_000_000,
        ..Options::new(fallback())
    };
    let out = translate(&inputs, &options);
    for p in &out.problems {
        assert!(p.object.name == "fuzz" || p.object.name == "web", "{p}");
        let _ = p.to_string();
    }
    // Whatever was built answers lookups.
    let _ = out.snapshot.routes.find("fuzz.example", &path);
    let _ = out.snapshot.routes.find("fuzz.example", "/");
});
