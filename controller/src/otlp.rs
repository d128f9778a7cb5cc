//! OTLP span export (feature `otlp`, flag `--otlp-endpoint`): one SERVER span per sampled
//! request, sent in batches as OTLP/HTTP JSON (`POST …/v1/traces`) to a collector.
//!
//! The request path only hands a finished span to a bounded queue (never waits); a full queue
//! drops the span and counts it. A failed batch is dropped too (logged once per failure streak):
//! tracing never holds traffic back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portico_proxy::trace_context::{Span, SpanSink};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::telemetry::{SpanOutcome, TELEMETRY};

/// Spans waiting for export at most.
const QUEUE: usize = 4096;
/// Spans per request to the collector at most.
const BATCH: usize = 512;
/// How long a batch collects spans after its first.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// Longest wait for the collector.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The span sink handed to the data plane.
#[derive(Debug)]
pub struct Exporter {
    tx: mpsc::Sender<Span>,
}

impl SpanSink for Exporter {
    fn export(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            TELEMETRY.spans(SpanOutcome::Dropped, 1);
        }
    }
}

/// Checks the endpoint and starts the export task.
pub fn start(endpoint: &str, service_name: &str) -> Result<Arc<Exporter>, String> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|e| format!("--otlp-endpoint {endpoint:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "--otlp-endpoint {endpoint}: only http is supported (send to a collector on the node or in the pod)"
            ))
        }
        _ => return Err(format!("--otlp-endpoint {endpoint}: expected http://HOST:PORT/v1/traces")),
    }
    if uri.authority().is_none() {
        return Err(format!("--otlp-endpoint {endpoint}: no host"));
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    TELEMETRY.spans(SpanOutcome::Exported, 0);
    tokio::spawn(run(uri, service_name.to_string(), rx));
    Ok(Arc::new(Exporter { tx }))
}

async fn run(uri: Uri, service: String, mut rx: mpsc::Receiver<Span>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let body = encode(&service, &batch).to_string();
        let req = Request::post(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else {
            TELEMETRY.spans(SpanOutcome::Failed, batch.len() as u64);
            continue;
        };
        let sent = tokio::time::timeout(TIMEOUT, client.request(req)).await;
        let outcome = match sent {
            Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
            Ok(Ok(resp)) => Err(format!("the collector answered {}", resp.status())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the collector did not answer in time".to_string()),
        };
        match outcome {
            Ok(()) => {
                TELEMETRY.spans(SpanOutcome::Exported, batch.len() as u64);
                if failing {
                    info!(endpoint = %uri, "span export works again");
                    failing = false;
                }
            }
            Err(e) => {
                TELEMETRY.spans(SpanOutcome::Failed, batch.len() as u64);
                if !failing {
                    warn!(endpoint = %uri, error = %e, spans = batch.len(), "span export failed; spans are dropped until it works");
                    failing = true;
                }
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn string_attr(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

/// One OTLP/JSON `ExportTraceServiceRequest` (ids in hex, times as decimal strings, as the
/// OTLP JSON mapping wants).
pub fn encode(service: &str, spans: &[Span]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut attributes = vec![
                string_attr("http.request.method", s.method.as_str()),
                json!({ "key": "http.response.status_code", "value": { "intValue": s.status.to_string() } }),
                string_attr("url.path", &s.path),
                string_attr("server.address", &s.host),
                string_attr("client.address", &s.client.to_string()),
            ];
            if !s.ingress.is_empty() {
                attributes.push(string_attr("k8s.namespace.name", &s.namespace));
                attributes.push(string_attr("portico.ingress", &s.ingress));
                attributes.push(string_attr("portico.service", &s.service));
            }
            if let Some(u) = s.upstream {
                attributes.push(string_attr("network.peer.address", &u.to_string()));
            }
            let mut span = json!({
                "traceId": s.trace.trace_id.to_string(),
                "spanId": hex(&s.trace.span_id),
                "name": s.method.as_str(),
                "kind": 2,
                "startTimeUnixNano": s.start_unix_nanos.to_string(),
                "endTimeUnixNano": s.end_unix_nanos.to_string(),
                "attributes": attributes,
                // ERROR for server errors, UNSET otherwise (OpenTelemetry's HTTP conventions).
                "status": { "code": if s.status >= 500 { 2 } else { 0 } },
            });
            if let Some(p) = s.trace.parent_id {
                span["parentSpanId"] = Value::String(hex(&p));
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [string_attr("service.name", service)] },
            "scopeSpans": [{
                "scope": { "name": "portico", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_proxy::trace_context::{Trace, TraceId};

    fn span(status: u16, parent: Option<[u8; 8]>) -> Span {
        Span {
            trace: Trace {
                trace_id: TraceId([0xab; 16]),
                span_id: [1, 2, 3, 4, 5, 6, 7, 8],
                parent_id: parent,
                sampled: true,
            },
            start_unix_nanos: 1_000,
            end_unix_nanos: 2_000,
            method: http::Method::GET,
            host: "shop.test".into(),
            path: "/cart".into(),
            status,
            client: "10.0.0.7".parse().unwrap(),
            upstream: Some("10.1.0.1:80".parse().unwrap()),
            namespace: "shop".into(),
            ingress: "web".into(),
            service: "web:80".into(),
        }
    }

    #[test]
    fn encodes_otlp_json() {
        let v = encode("portico", &[span(200, Some([9; 8])), span(503, None)]);
        let rs = &v["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0]["value"]["stringValue"],
            "portico"
        );
        let spans = rs["scopeSpans"][0]["spans"].as_array().unwrap();
        assert_eq!(spans[0]["traceId"], "abababababababababababababababab");
        assert_eq!(spans[0]["spanId"], "0102030405060708");
        assert_eq!(spans[0]["parentSpanId"], "0909090909090909");
        assert_eq!(spans[0]["kind"], 2);
        assert_eq!(spans[0]["startTimeUnixNano"], "1000");
        assert_eq!(spans[0]["status"]["code"], 0);
        assert!(spans[1].get("parentSpanId").is_none());
        assert_eq!(spans[1]["status"]["code"], 2);
        let attrs = spans[0]["attributes"].as_array().unwrap();
        assert!(attrs
            .iter()
            .any(|a| a["key"] == "portico.ingress" && a["value"]["stringValue"] == "web"));
    }

    #[tokio::test]
    async fn refuses_endpoints_it_cannot_send_to() {
        assert!(start("https://collector:4318/v1/traces", "p")
            .unwrap_err()
            .contains("only http"));
        assert!(start("collector:4318", "p").is_err());
        assert!(start("http://127.0.0.1:4318/v1/traces", "p").is_ok());
    }
}
