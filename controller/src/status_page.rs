//! The status page and the routes API of the admin listener: what the live snapshot serves,
//! with the publish report's problems and endpoint readiness. Server-rendered HTML without
//! scripts or external assets; every value is HTML-escaped.

use std::fmt::Write as _;

use portico_proxy::{HostPattern, HostRoutes, Live, Target};
use serde::{Deserialize, Serialize};

use crate::publish::Report;

/// One line of the routing table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRow {
    /// The host pattern (`foo.com`, `*.foo.com`, `*` for rules without a host).
    pub host: String,
    /// The path as the table compares it (empty for fallbacks).
    pub path: String,
    /// `Exact`, `Prefix`, `ImplementationSpecific`, `Regex`, `Fallback` (the host's Ingress
    /// `defaultBackend`) or `Default` (requests no host takes).
    pub path_type: String,
    pub namespace: String,
    pub ingress: String,
    /// `service:port`.
    pub service: String,
    /// `canary` for a canary Ingress's target, else empty.
    #[serde(default)]
    pub role: String,
    /// Ready endpoints, in the order the balancer knows them.
    pub endpoints: Vec<String>,
    /// Endpoints the Service's EndpointSlices list as not ready.
    pub not_ready: Vec<String>,
}

/// What `/api/routes` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesView {
    pub generation: u64,
    /// With `?host=`: the host table that serves the host (`null` when none does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_host: Option<String>,
    pub routes: Vec<RouteRow>,
}

fn row(report: &Report, host: &str, path: &str, kind: &str, role: &str, t: &Target) -> RouteRow {
    let service_name = t
        .service
        .rsplit_once(':')
        .map_or(t.service.as_str(), |(n, _)| n);
    RouteRow {
        host: host.to_string(),
        path: path.to_string(),
        path_type: kind.to_string(),
        namespace: t.namespace.clone(),
        ingress: t.ingress.clone(),
        service: t.service.clone(),
        role: role.to_string(),
        endpoints: match &t.backend.endpoints {
            portico_proxy::Endpoints::Static(a) => a.iter().map(ToString::to_string).collect(),
            portico_proxy::Endpoints::ExternalName { host, port } => {
                vec![format!("{host}:{port} (ExternalName)")]
            }
        },
        not_ready: report
            .not_ready
            .get(&(t.namespace.clone(), service_name.to_string()))
            .cloned()
            .unwrap_or_default(),
    }
}

fn host_rows(report: &Report, pattern: &HostPattern, routes: &HostRoutes, out: &mut Vec<RouteRow>) {
    let host = pattern.to_string();
    for r in routes.routes() {
        out.push(row(
            report,
            &host,
            r.path.path(),
            r.path.kind(),
            "",
            &r.target,
        ));
        for c in &r.canaries {
            out.push(row(
                report,
                &host,
                r.path.path(),
                r.path.kind(),
                "canary",
                &c.target,
            ));
        }
    }
    if let Some(f) = &routes.fallback {
        out.push(row(report, &host, "", "Fallback", "", f));
    }
}

/// The routing table; with `host`, only the table a request for it is served from (exact, then
/// wildcard, then rules without a host) and the default backend.
pub fn routes(live: Option<&Live>, report: &Report, host: Option<&str>) -> RoutesView {
    let Some(live) = live else {
        return RoutesView::default();
    };
    let table = &live.snapshot.routes;
    let mut rows = Vec::new();
    let mut matched_host = None;
    match host {
        None => {
            for (pattern, routes) in table.hosts() {
                host_rows(report, &pattern, routes, &mut rows);
            }
        }
        Some(h) => {
            let h = portico_proxy::routing::normalize_host(h.trim()).into_owned();
            if let Some(found) = table.host(&h) {
                if let Some((pattern, routes)) = table
                    .hosts()
                    .into_iter()
                    .find(|(_, r)| std::ptr::eq(*r, found))
                {
                    matched_host = Some(pattern.to_string());
                    host_rows(report, &pattern, routes, &mut rows);
                }
            }
        }
    }
    if let Some(d) = &table.default {
        rows.push(row(report, "*", "", "Default", "", d));
    }
    RoutesView {
        generation: live.generation,
        matched_host,
        routes: rows,
    }
}

/// HTML-escapes text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn utc(unix_secs: i64) -> String {
    match k8s_openapi::jiff::Timestamp::from_second(unix_secs) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => unix_secs.to_string(),
    }
}

/// Whole days from `now` to `not_after` (negative once expired).
pub fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(86_400)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f24}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.8rem}\
table{border-collapse:collapse;width:100%;font-size:.9rem}\
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}\
th{background:#f6f8fa}.bad{color:#b42318;font-weight:600}.ok{color:#1a7f37}\
.muted{color:#57606a}code{font-size:.85rem}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}\
dt{font-weight:600}";

/// The whole status page. `now` in Unix seconds.
pub fn render(
    live: Option<&Live>,
    report: &Report,
    leader: Option<(String, bool)>,
    now: i64,
) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Portico status</title><style>{STYLE}</style></head><body>\n<h1>Portico status</h1>\n"
    );

    // Configuration.
    h.push_str("<section id=\"configuration\"><h2>Configuration</h2><dl>");
    let _ = write!(
        h,
        "<dt>Generation</dt><dd id=\"generation\">{}</dd>",
        report.generation
    );
    if report.published_at_millis > 0 {
        let at = report.published_at_millis / 1000;
        let _ = write!(
            h,
            "<dt>Last publish</dt><dd id=\"published\">{} ({} s ago, took {:.1} ms)</dd>",
            escape(&utc(at)),
            (now - at).max(0),
            report.publish_time.as_secs_f64() * 1000.0
        );
    } else {
        h.push_str("<dt>Last publish</dt><dd id=\"published\">none yet</dd>");
    }
    let routes = routes(live, report, None);
    let _ = write!(
        h,
        "<dt>Routes</dt><dd>{}</dd><dt>Ingresses served</dt><dd>{}</dd><dt>Problems</dt><dd>{}</dd>",
        routes.routes.len(),
        report.served.len(),
        report.problems.len()
    );
    if let Some((lease, leading)) = leader {
        let _ = write!(
            h,
            "<dt>Leader</dt><dd>{} (lease {})</dd>",
            if leading { "yes" } else { "no" },
            escape(&lease)
        );
    }
    h.push_str("</dl></section>\n");

    // Routes.
    h.push_str(
        "<section id=\"routes\"><h2>Routes</h2><table><thead><tr><th>Host</th><th>Path</th>\
         <th>Type</th><th>Ingress</th><th>Service</th><th>Ready endpoints</th>\
         <th>Not ready</th></tr></thead><tbody>\n",
    );
    if routes.routes.is_empty() {
        h.push_str("<tr><td colspan=\"7\" class=\"muted\">no routes</td></tr>\n");
    }
    for r in &routes.routes {
        let kind = if r.role.is_empty() {
            escape(&r.path_type)
        } else {
            format!("{} ({})", escape(&r.path_type), escape(&r.role))
        };
        let ready = if r.endpoints.is_empty() {
            "<span class=\"bad\">none</span>".to_string()
        } else {
            r.endpoints
                .iter()
                .map(|e| format!("<code>{}</code>", escape(e)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let not_ready = r
            .not_ready
            .iter()
            .map(|e| format!("<code class=\"bad\">{}</code>", escape(e)))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{kind}</td><td>{}/{}</td><td>{}</td><td>{ready}</td><td>{not_ready}</td></tr>",
            escape(&r.host),
            escape(&r.path),
            escape(&r.namespace),
            escape(&r.ingress),
            escape(&r.service),
        );
    }
    h.push_str("</tbody></table></section>\n");

    // Certificates.
    h.push_str(
        "<section id=\"certificates\"><h2>Certificates</h2><table><thead><tr><th>Host</th>\
         <th>Subject</th><th>Issuer</th><th>Not after</th><th>Days left</th></tr></thead><tbody>\n",
    );
    if let Some(live) = live {
        let tls = &live.snapshot.tls;
        let default = tls.default_certificate();
        let rows = tls
            .hosts()
            .into_iter()
            .map(|(p, c)| (p.to_string(), c))
            .chain(std::iter::once((
                "(default certificate)".to_string(),
                default,
            )));
        for (host, c) in rows {
            let days = days_left(c.not_after, now);
            let class = if days < 14 { "bad" } else { "ok" };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class} days\">{days} days</td></tr>",
                escape(&host),
                escape(&c.subject),
                escape(&c.issuer),
                escape(&utc(c.not_after)),
            );
        }
    }
    h.push_str("</tbody></table></section>\n");

    // Problems.
    h.push_str(
        "<section id=\"problems\"><h2>Problems</h2><table><thead><tr><th>Object</th>\
         <th>Reason</th><th>Detail</th></tr></thead><tbody>\n",
    );
    if report.problems.is_empty() {
        h.push_str("<tr><td colspan=\"3\" class=\"ok\">none</td></tr>\n");
    }
    for p in &report.problems {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"bad\">{}</td><td>{}</td></tr>",
            escape(&p.object.to_string()),
            escape(p.reason.code()),
            escape(&p.reason.to_string()),
        );
    }
    h.push_str("</tbody></table></section>\n");
    let _ = writeln!(
        h,
        "<p class=\"muted\">Portico {} — read-only; rendered at {}.</p></body></html>",
        env!("CARGO_PKG_VERSION"),
        escape(&utc(now))
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{ObjectRef, Problem, Reason};
    use portico_proxy::{
        Backend, Endpoints, PathMatch, Proxy, ProxyConfig, Route, RouteTable, Snapshot,
        TlsCertificate, TlsTable,
    };
    use std::sync::Arc;
    use std::time::Duration;

    fn target(ns: &str, ing: &str, svc: &str, addrs: &[&str]) -> Arc<Target> {
        let addrs = addrs.iter().map(|a| a.parse().unwrap()).collect();
        Arc::new(Target::new(
            ns,
            ing,
            svc,
            Arc::new(Backend::new(svc, Endpoints::Static(addrs))),
            false,
        ))
    }

    fn live() -> Arc<Live> {
        let cert = Arc::new(TlsCertificate::self_signed(&["shop.test"]).unwrap());
        let snapshot = Snapshot {
            routes: RouteTable::new(
                vec![
                    (
                        HostPattern::parse(Some("shop.test")),
                        HostRoutes::new(
                            vec![
                                Route::new(
                                    PathMatch::prefix("/"),
                                    target("shop", "web", "web:80", &["10.0.0.1:8080"]),
                                ),
                                Route::new(
                                    PathMatch::Exact("/<script>".into()),
                                    target("shop", "api", "api:80", &[]),
                                ),
                            ],
                            None,
                        ),
                    ),
                    (
                        HostPattern::parse(Some("*.shop.test")),
                        HostRoutes::new(
                            vec![Route::new(
                                PathMatch::prefix("/"),
                                target("shop", "wild", "wild:80", &["10.0.0.2:80"]),
                            )],
                            None,
                        ),
                    ),
                ],
                Some(target("ops", "fallback", "default:80", &["10.0.0.9:80"])),
            ),
            tls: TlsTable::new(
                [(HostPattern::parse(Some("shop.test")), cert.clone())],
                cert,
            ),
            client_auth: Default::default(),
            passthrough: Default::default(),
            problems: 1,
            listener: Default::default(),
        };
        let proxy = Proxy::new(ProxyConfig::default()).unwrap();
        proxy.publish(snapshot, Duration::ZERO).unwrap();
        proxy.live().unwrap()
    }

    fn report() -> Report {
        let mut r = Report {
            generation: 1,
            published_at_millis: 1_795_870_218_000,
            problems: vec![Problem::new(
                ObjectRef::new("Ingress", "shop", "broken"),
                Reason::ServiceNotFound {
                    service: "shop/<missing>".into(),
                },
            )],
            ..Report::default()
        };
        r.not_ready
            .insert(("shop".into(), "api".into()), vec!["10.0.0.5".into()]);
        r
    }

    #[test]
    fn routes_list_every_host_and_the_default() {
        let live = live();
        let v = routes(Some(&live), &report(), None);
        let shown: Vec<(String, String, String)> = v
            .routes
            .iter()
            .map(|r| (r.host.clone(), r.path.clone(), r.service.clone()))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("shop.test".into(), "/<script>".into(), "api:80".into()),
                ("shop.test".into(), "/".into(), "web:80".into()),
                ("*.shop.test".into(), "/".into(), "wild:80".into()),
                ("*".into(), "".into(), "default:80".into()),
            ]
        );
        assert_eq!(v.routes[0].not_ready, vec!["10.0.0.5".to_string()]);
        assert_eq!(v.routes[1].endpoints, vec!["10.0.0.1:8080".to_string()]);
    }

    #[test]
    fn host_filter_uses_the_proxy_lookup() {
        let live = live();
        let v = routes(Some(&live), &report(), Some("A.Shop.Test:8443"));
        assert_eq!(v.matched_host.as_deref(), Some("*.shop.test"));
        assert_eq!(v.routes.len(), 2, "{v:?}");
        assert_eq!(v.routes[0].service, "wild:80");
        let none = routes(Some(&live), &report(), Some("other.test"));
        assert_eq!(none.matched_host, None);
        assert_eq!(none.routes.len(), 1, "only the default backend");
    }

    #[test]
    fn page_escapes_everything_and_shows_expiry_and_problems() {
        let live = live();
        let not_after = live.snapshot.tls.default_certificate().not_after;
        let now = not_after - 30 * 86_400 - 5;
        let page = render(Some(&live), &report(), Some(("lease".into(), true)), now);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("/&lt;script&gt;"));
        assert!(page.contains("shop/&lt;missing&gt;"));
        assert!(page.contains("ServiceNotFound"));
        assert!(page.contains("30 days"));
        assert!(page.contains("2026-11-28 12:50:18 UTC"));
        assert!(page.contains("<code class=\"bad\">10.0.0.5</code>"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external assets"
        );
    }

    #[test]
    fn days_round_down() {
        assert_eq!(days_left(86_400 * 2, 1), 1);
        assert_eq!(days_left(0, 1), -1);
    }
}
