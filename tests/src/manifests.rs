//! Small builders for the Kubernetes manifests the end-to-end tests write.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// A Service with one port named `http` (port 80) and one EndpointSlice holding `endpoints`
/// (all must share one port; IPv4 and IPv6 go to separate slices).
pub fn backend(namespace: &str, name: &str, endpoints: &[SocketAddr]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  ports:\n    - name: http\n      port: 80\n"
    );
    let v4: Vec<_> = endpoints.iter().filter(|a| a.is_ipv4()).collect();
    let v6: Vec<_> = endpoints.iter().filter(|a| a.is_ipv6()).collect();
    for (family, addrs) in [("IPv4", v4), ("IPv6", v6)] {
        if addrs.is_empty() {
            continue;
        }
        // Each endpoint gets its own slice when ports differ (tests use ephemeral ports).
        for (i, a) in addrs.iter().enumerate() {
            let _ = write!(
                out,
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  \
                 name: {name}-{fam}-{i}\n  namespace: {namespace}\n  labels:\n    \
                 kubernetes.io/service-name: {name}\naddressType: {family}\nports:\n  \
                 - name: http\n    port: {port}\nendpoints:\n  - addresses: [\"{ip}\"]\n    \
                 conditions:\n      ready: true\n",
                fam = family.to_lowercase(),
                port = a.port(),
                ip = a.ip(),
            );
        }
    }
    out
}

/// One path rule.
#[derive(Clone, Debug)]
pub struct Path {
    pub path: String,
    pub path_type: String,
    pub service: String,
    pub port: u16,
}

/// An Ingress builder.
#[derive(Clone, Debug, Default)]
pub struct Ingress {
    namespace: String,
    name: String,
    class: Option<String>,
    annotations: Vec<(String, String)>,
    rules: Vec<(Option<String>, Vec<Path>)>,
    tls: Vec<(Vec<String>, Option<String>)>,
    default_backend: Option<String>,
    created: Option<String>,
}

pub fn ingress(namespace: &str, name: &str) -> Ingress {
    Ingress {
        namespace: namespace.into(),
        name: name.into(),
        ..Ingress::default()
    }
}

impl Ingress {
    /// Adds a path rule for `host` (empty: any host) to `service` port 80.
    pub fn rule(mut self, host: &str, path: &str, path_type: &str, service: &str) -> Self {
        let host = (!host.is_empty()).then(|| host.to_string());
        let p = Path {
            path: path.into(),
            path_type: path_type.into(),
            service: service.into(),
            port: 80,
        };
        match self.rules.iter_mut().find(|(h, _)| *h == host) {
            Some((_, paths)) => paths.push(p),
            None => self.rules.push((host, vec![p])),
        }
        self
    }

    pub fn tls(mut self, hosts: &[&str], secret: Option<&str>) -> Self {
        self.tls.push((
            hosts.iter().map(|h| h.to_string()).collect(),
            secret.map(str::to_string),
        ));
        self
    }

    pub fn class(mut self, class: &str) -> Self {
        self.class = Some(class.into());
        self
    }

    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.annotations.push((k.into(), v.into()));
        self
    }

    pub fn default_backend(mut self, service: &str) -> Self {
        self.default_backend = Some(service.into());
        self
    }

    pub fn created(mut self, rfc3339: &str) -> Self {
        self.created = Some(rfc3339.into());
        self
    }

    pub fn yaml(&self) -> String {
        let mut o = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {}\n  namespace: {}\n",
            self.name, self.namespace
        );
        if let Some(c) = &self.created {
            let _ = writeln!(o, "  creationTimestamp: \"{c}\"");
        }
        if !self.annotations.is_empty() {
            o.push_str("  annotations:\n");
            for (k, v) in &self.annotations {
                let _ = writeln!(o, "    {k}: {}", serde_json::Value::from(v.as_str()));
            }
        }
        o.push_str("spec:\n");
        if let Some(c) = &self.class {
            let _ = writeln!(o, "  ingressClassName: {c}");
        }
        if let Some(svc) = &self.default_backend {
            let _ = writeln!(
                o,
                "  defaultBackend:\n    service:\n      name: {svc}\n      port:\n        number: 80"
            );
        }
        if !self.tls.is_empty() {
            o.push_str("  tls:\n");
            for (hosts, secret) in &self.tls {
                let _ = writeln!(o, "    - hosts: {:?}", hosts);
                if let Some(s) = secret {
                    let _ = writeln!(o, "      secretName: {s}");
                }
            }
        }
        if !self.rules.is_empty() {
            o.push_str("  rules:\n");
            for (host, paths) in &self.rules {
                match host {
                    Some(h) => {
                        let _ = writeln!(o, "    - host: \"{h}\"\n      http:\n        paths:");
                    }
                    None => o.push_str("    - http:\n        paths:\n"),
                }
                for p in paths {
                    let _ = writeln!(
                        o,
                        "          - path: \"{}\"\n            pathType: {}\n            backend:\n              service:\n                name: {}\n                port:\n                  number: {}",
                        p.path, p.path_type, p.service, p.port
                    );
                }
            }
        }
        o
    }
}

/// A `kubernetes.io/tls` Secret with a fresh self-signed certificate for `hosts`; returns the
/// manifest and the certificate's serial-like identity (its PEM).
pub fn tls_secret(namespace: &str, name: &str, hosts: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&pem),
        indent(&key.serialize_pem())
    );
    (yaml, pem)
}
