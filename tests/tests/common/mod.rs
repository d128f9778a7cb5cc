//! Helpers shared by the cluster-mode test binaries.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use portico_e2e::netns::NetnsEcho;
use portico_e2e::Portico;

pub const CLASS: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: portico\nspec:\n  controller: portico.dev/ingress-controller\n";

/// A Service `name` (port 80) with an EndpointSlice pointing at `echo`.
pub fn service(ns: &str, name: &str, echo: &NetnsEcho) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  ports:\n    - name: http\n      port: 80\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: {ns}\n  labels:\n    kubernetes.io/service-name: {name}\n\
         addressType: IPv4\nports:\n  - name: http\n    port: {port}\nendpoints:\n  - addresses: [\"{ip}\"]\n    conditions:\n      ready: true\n",
        port = echo.addr.port(),
        ip = echo.addr.ip(),
    )
}

pub fn args<'a>(ns: &'a str, lease: &'a str) -> Vec<&'a str> {
    vec![
        "--watch-namespace",
        ns,
        "--pod-namespace",
        ns,
        "--election-id",
        lease,
        "--publish-status-address",
        "192.0.2.10",
    ]
}

/// Polls until `host` answers with `want` (a status, and the echo service name for 200).
pub async fn until(
    p: &Portico,
    host: &str,
    want: (u16, Option<&str>),
    limit: Duration,
) -> Duration {
    let c = p.client(&[host]);
    let start = Instant::now();
    loop {
        if let Ok(r) = c.get(p.http_url(host, "/")).send().await {
            let svc = r
                .headers()
                .get("x-echo-service")
                .map(|v| v.to_str().unwrap().to_string());
            if r.status().as_u16() == want.0 && svc.as_deref() == want.1 {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < limit,
            "{host} never answered {want:?}\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A namespace with Portico's IngressClass and, for each name, an echo backend in the test
/// network namespace behind a Service of that name. Keep the backends alive for the test.
pub async fn backends<const N: usize>(
    client: &kube::Client,
    ns: &str,
    names: [&str; N],
) -> [NetnsEcho; N] {
    portico_e2e::apiserver::namespace(client, ns).await;
    portico_e2e::apiserver::apply(client, CLASS).await;
    let mut out = Vec::new();
    for name in names {
        let echo = portico_e2e::netns::echo(name).await;
        portico_e2e::apiserver::apply(client, &service(ns, name, &echo)).await;
        out.push(echo);
    }
    match out.try_into() {
        Ok(all) => all,
        Err(_) => unreachable!("one backend per name"),
    }
}
