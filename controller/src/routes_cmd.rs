//! `portico routes`: the live routing table of a running instance, from its admin listener's
//! `/api/routes`, as a table or JSON.

use std::fmt::Write as _;

use http::header::{AUTHORIZATION, HOST};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

use crate::cli::{RoutesArgs, RoutesOutput};
use crate::status_page::{RouteRow, RoutesView};

/// Why the routing table could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("connecting to the admin listener {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("talking to the admin listener {addr}: {source}")]
    Http { addr: String, source: hyper::Error },
    #[error("reading the token file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("the admin listener answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("the admin listener's answer is not a routing table: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
}

/// Fetches the table and renders it as asked.
pub async fn run(args: &RoutesArgs) -> Result<String, RoutesError> {
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|source| RoutesError::Token {
                    path: path.display().to_string(),
                    source,
                })?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let body = fetch(&args.admin_addr, args.host.as_deref(), token.as_deref()).await?;
    let view: RoutesView = serde_json::from_str(&body)?;
    Ok(match args.output {
        RoutesOutput::Json => body.trim_end().to_string() + "\n",
        RoutesOutput::Table => table(&view),
    })
}

/// `GET /api/routes[?host=H]` on `addr` (HOST:PORT); the body on 200.
async fn fetch(addr: &str, host: Option<&str>, token: Option<&str>) -> Result<String, RoutesError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| RoutesError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let http_err = |source| RoutesError::Http {
        addr: addr.to_string(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    tokio::spawn(conn);
    let uri = match host {
        Some(h) => format!("/api/routes?host={}", encode(h)),
        None => "/api/routes".to_string(),
    };
    let mut req = Request::get(uri).header(HOST, addr);
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = sender
        .send_request(req.body(Empty::<bytes::Bytes>::new())?)
        .await
        .map_err(http_err)?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(http_err)?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status != StatusCode::OK {
        return Err(RoutesError::Status {
            status,
            body: body.trim().to_string(),
        });
    }
    Ok(body)
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The table: one line per route, columns aligned.
pub fn table(view: &RoutesView) -> String {
    let header = ["HOST", "PATH", "TYPE", "INGRESS", "SERVICE", "ENDPOINTS"];
    let cells = |r: &RouteRow| {
        let kind = if r.role.is_empty() {
            r.path_type.clone()
        } else {
            format!("{} ({})", r.path_type, r.role)
        };
        let mut endpoints = if r.endpoints.is_empty() {
            "none ready".to_string()
        } else {
            r.endpoints.join(",")
        };
        if !r.not_ready.is_empty() {
            let _ = write!(endpoints, " (not ready: {})", r.not_ready.join(","));
        }
        [
            r.host.clone(),
            if r.path.is_empty() {
                "-".into()
            } else {
                r.path.clone()
            },
            kind,
            format!("{}/{}", r.namespace, r.ingress),
            r.service.clone(),
            endpoints,
        ]
    };
    let rows: Vec<[String; 6]> = view.routes.iter().map(cells).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cols: &[&str]| {
        let mut l = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == cols.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, &header);
    for r in &rows {
        let cols: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&mut out, &cols);
    }
    if let Some(h) = &view.matched_host {
        let _ = writeln!(out, "(host table {h}; generation {})", view.generation);
    } else {
        let _ = writeln!(out, "(generation {})", view.generation);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, path: &str, svc: &str, eps: &[&str]) -> RouteRow {
        RouteRow {
            host: host.into(),
            path: path.into(),
            path_type: "Prefix".into(),
            namespace: "shop".into(),
            ingress: "web".into(),
            service: svc.into(),
            role: String::new(),
            endpoints: eps.iter().map(|e| e.to_string()).collect(),
            not_ready: vec![],
        }
    }

    #[test]
    fn table_aligns_columns() {
        let view = RoutesView {
            generation: 4,
            matched_host: None,
            routes: vec![
                row("shop.test", "/", "web:80", &["10.0.0.1:80"]),
                row("a-much-longer-host.test", "/api", "api:8080", &[]),
            ],
        };
        let t = table(&view);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        let col = lines[0].find("PATH").unwrap();
        assert_eq!(&lines[1][col..col + 1], "/");
        assert_eq!(&lines[2][col..col + 4], "/api");
        assert!(lines[2].ends_with("none ready"));
        assert_eq!(lines[3], "(generation 4)");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("*.foo.com"), "%2A.foo.com");
        assert_eq!(encode("a&b"), "a%26b");
    }
}
