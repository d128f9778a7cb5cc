//! Hostile HTTP/1 clients against the binary: request smuggling, header and body limits, slow
//! and idle clients, connection floods. Every case checks what the client got AND what a raw
//! backend received, and that the process still serves afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use portico_e2e::manifests::{backend, ingress};
use portico_e2e::raw::{exchange, read_response, until_closed, RawBackend};
use portico_e2e::{write, Portico};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn setup(extra: &[&str]) -> (tempfile::TempDir, Portico, RawBackend) {
    let raw = RawBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "b.yaml",
        &backend("default", "raw", &[raw.addr]),
    );
    write(
        dir.path(),
        "i.yaml",
        &ingress("default", "i")
            .rule("a.test", "/", "Prefix", "raw")
            .rule("b.test", "/", "Prefix", "raw")
            .yaml(),
    );
    let p = Portico::start(dir.path(), extra).await;
    (dir, p, raw)
}

/// What a smuggling attempt must end in.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Refused with this status; the backend receives nothing.
    Refused(u16),
    /// Served (after normalisation): the backend receives exactly these many unambiguous
    /// requests, none of them the smuggled one.
    Normalised(usize),
    /// A malformed body: 400 (a client error, never 502); whatever reached the backend was
    /// unambiguous, never complete with the attacker's framing, and never the smuggled one.
    BadBody,
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";

#[tokio::test]
async fn request_smuggling_is_refused_or_normalised() {
    let (_dir, p, raw) = setup(&[]).await;
    let s = SMUGGLED;
    let cases: Vec<(&str, String, Want)> = vec![
        (
            "CL then TE: TE wins, the connection closes after",
            format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"),
            Want::Normalised(1),
        ),
        (
            "TE then CL",
            format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}"),
            Want::Normalised(1),
        ),
        (
            "two different Content-Lengths",
            format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 44\r\n\r\nhello{s}"),
            Want::Refused(400),
        ),
        (
            "a Content-Length list with different values",
            "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5, 6\r\n\r\nhello!".into(),
            Want::Refused(400),
        ),
        (
            "two equal Content-Lengths: one goes on",
            "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello".into(),
            Want::Normalised(1),
        ),
        (
            "a signed Content-Length",
            "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: +5\r\n\r\nhello".into(),
            Want::Refused(400),
        ),
        (
            "Transfer-Encoding: chunked, identity",
            format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{s}"),
            Want::Refused(400),
        ),
        (
            "Transfer-Encoding: identity",
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello".into(),
            Want::Refused(400),
        ),
        (
            "Transfer-Encoding: xchunked",
            format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{s}"),
            Want::Refused(400),
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            format!("POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"),
            Want::Refused(400),
        ),
        (
            "an obs-folded header",
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: one\r\n two\r\n\r\n".into(),
            Want::Refused(400),
        ),
        (
            "an obs-folded Transfer-Encoding",
            format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{s}"),
            Want::Refused(400),
        ),
        (
            "a bare CR inside a header value",
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\rb\r\n\r\n".into(),
            Want::Refused(400),
        ),
        (
            "a NUL inside a header value",
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\0b\r\n\r\n".into(),
            Want::Refused(400),
        ),
        (
            "whitespace before the colon",
            "GET / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding : chunked\r\n\r\n".into(),
            Want::Refused(400),
        ),
        (
            "bare LF line ends: parsed, forwarded with CRLF",
            "GET /lf HTTP/1.1\nHost: a.test\nX-A: 1\n\n".into(),
            Want::Normalised(1),
        ),
        (
            "an invalid chunk size",
            format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n{s}"),
            Want::BadBody,
        ),
        (
            "a chunk size overflowing 64 bits",
            format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n{s}"),
            Want::BadBody,
        ),
        (
            "a chunk larger than its size",
            format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n{s}"),
            Want::BadBody,
        ),
        (
            "two Host headers",
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n".into(),
            Want::Refused(400),
        ),
        (
            "an absolute URI and another Host: the URI's authority routes and goes upstream",
            "GET http://b.test/abs HTTP/1.1\r\nHost: a.test\r\n\r\n".into(),
            Want::Normalised(1),
        ),
        (
            "no Host on HTTP/1.1",
            "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n".into(),
            Want::Refused(400),
        ),
        (
            "HTTP/1.0 keep-alive: both requests served, no Connection header upstream",
            "GET /one HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\nGET /two HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n".into(),
            Want::Normalised(2),
        ),
        (
            "a request line with spaces in the target",
            "GET /a b HTTP/1.1\r\nHost: a.test\r\n\r\n".into(),
            Want::Refused(400),
        ),
    ];
    let mut failures = Vec::new();
    for (case, (name, bytes, want)) in cases.iter().enumerate() {
        // Each case's requests carry its number: an aborted upstream request of one case
        // may be recorded after the next case began.
        let eol = if bytes.contains("\r\n") { "\r\n" } else { "\n" };
        let mut tagged = bytes.clone();
        for version in ["HTTP/1.1", "HTTP/1.0"] {
            let line_end = format!(" {version}{eol}");
            tagged = tagged.replace(&line_end, &format!("{line_end}X-Case: {case}{eol}"));
        }
        let mut stream = TcpStream::connect(p.http).await.unwrap();
        let _ = stream.write_all(tagged.as_bytes()).await;
        let first = read_response(&mut stream, Duration::from_secs(20)).await;
        // Let every further response and upstream request happen before looking.
        let rest = until_closed_or_idle(&mut stream).await;
        let seen: Vec<_> = raw
            .seen()
            .into_iter()
            .filter(|s| s.header("x-case") == [case.to_string()])
            .collect();
        let status = first.as_ref().map(|r| r.status);
        for s in &seen {
            if let Some(why) = s.ambiguity() {
                failures.push(format!(
                    "{name}: the backend received an ambiguous request: {why}"
                ));
            }
            if s.request_line().contains("smuggled") {
                failures.push(format!(
                    "{name}: the smuggled request reached the backend: {s:?}"
                ));
            }
        }
        if name.starts_with("an absolute URI")
            && seen.iter().any(|s| s.header("host") != ["b.test"])
        {
            failures.push(format!("{name}: the backend saw another host: {seen:?}"));
        }
        let ok = match want {
            Want::Refused(code) => status == Some(*code) && seen.is_empty(),
            Want::Normalised(n) => {
                status == Some(200)
                    && seen.len() == *n
                    && seen
                        .iter()
                        .all(|s| s.complete && s.header("connection").is_empty())
            }
            Want::BadBody => {
                status == Some(400) && seen.iter().all(|s| !s.complete || s.body.is_empty())
            }
        };
        if !ok {
            failures.push(format!(
                "{name}: wanted {want:?}, got status {status:?}, backend saw {seen:#?}, then {:?}",
                String::from_utf8_lossy(&rest)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The process is fine.
    let r = exchange(
        p.http,
        b"GET /after HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}

/// Reads until the server closes, or until it has been quiet for a while (a keep-alive
/// connection after a normalised request). Returns what came.
async fn until_closed_or_idle(stream: &mut TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The value of metric line `name` (with its labels) in `text`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Reads one response, then waits for the connection to close.
async fn answer_then_close(stream: &mut TcpStream) -> Option<portico_e2e::raw::RawResponse> {
    let r = read_response(stream, Duration::from_secs(20)).await;
    until_closed(stream, Duration::from_secs(10)).await;
    r
}

#[tokio::test]
async fn malformed_or_broken_off_bodies_are_client_errors() {
    let (_dir, p, raw) = setup(&[]).await;
    let head = "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n";
    let cases = [
        (
            "an invalid chunk size",
            "5\r\nhello\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "a chunk size overflowing 64 bits",
            "1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        ("a chunk longer than its size", "2\r\nhello\r\n0\r\n\r\n"),
        (
            "a chunk extension with a bare LF",
            "5;a\nb\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    let mut failures = Vec::new();
    for (case, (name, body)) in cases.iter().enumerate() {
        let mut stream = TcpStream::connect(p.http).await.unwrap();
        let bytes = format!("{head}X-Case: {case}\r\n\r\n{body}");
        let _ = stream.write_all(bytes.as_bytes()).await;
        let r = answer_then_close(&mut stream).await;
        let status = r.as_ref().map(|r| r.status);
        let close = r.as_ref().is_some_and(|r| {
            r.head
                .to_ascii_lowercase()
                .contains("\r\nconnection: close")
        });
        if status != Some(400) || !close {
            failures.push(format!(
                "{name}: wanted 400 and Connection: close, got {r:?}"
            ));
        }
    }
    // A body that breaks off: the client declares 100 bytes, sends 10 and half-closes.
    let mut stream = TcpStream::connect(p.http).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nX-Case: short\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let short = answer_then_close(&mut stream).await.map(|r| r.status);
    eprintln!("a body cut short: {short:?}");
    if !matches!(short, None | Some(400)) {
        failures.push(format!(
            "a body cut short: wanted 400 or a close, got {short:?}"
        ));
    }
    // Everything upstream happened before the answers; let the backend record it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in raw.seen() {
        if s.complete || s.ambiguity().is_some() {
            failures.push(format!(
                "the backend received a complete or ambiguous request: {s:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let m = p.metrics().await;
    assert_eq!(
        metric(&m, "portico_client_errors_total{kind=\"client_body\"}"),
        5.0,
        "{m}"
    );
    for kind in ["upstream", "connect", "timeout", "internal"] {
        let line = format!("portico_upstream_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(metric(&m, &line), 0.0, "{m}");
    }
    still_serves(p.http).await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_its_upstream_request_is_abandoned() {
    let (_dir, p, raw) = setup(&[
        "--client-body-timeout",
        "1s",
        "--upstream-response-timeout",
        "30s",
    ])
    .await;
    let mut failures = Vec::new();
    let cases: [(&str, &[u8]); 3] = [
        (
            "Content-Length, 10 of 100 bytes then nothing",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n0123456789",
        ),
        (
            "chunked, one chunk then nothing",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ),
        (
            "the head, then nothing",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n",
        ),
    ];
    for (name, bytes) in cases {
        let started = Instant::now();
        let mut stream = TcpStream::connect(p.http).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let r = answer_then_close(&mut stream).await;
        let took = started.elapsed();
        let status = r.as_ref().map(|r| r.status);
        let close = r.as_ref().is_some_and(|r| {
            r.head
                .to_ascii_lowercase()
                .contains("\r\nconnection: close")
        });
        if status != Some(408) || !close || took > Duration::from_secs(5) {
            failures.push(format!("{name}: wanted 408 with Connection: close within 5 s, got {status:?} (close: {close}) after {took:?}"));
        }
        eprintln!("{name}: {status:?} after {took:?}");
    }
    // A slow but steady body (a byte every 400 ms, 4 s in all) is within the limit: the
    // limit is on the pause between two reads, not on the whole body.
    let mut stream = TcpStream::connect(p.http).await.unwrap();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: a.test\r\nX-Case: steady\r\nContent-Length: 10\r\n\r\n",
        )
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        stream.write_all(b"x").await.unwrap();
    }
    let steady = read_response(&mut stream, Duration::from_secs(10)).await;
    if steady.as_ref().map(|r| r.status) != Some(200) {
        failures.push(format!("a steady slow body: wanted 200, got {steady:?}"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = raw.seen();
    let complete: Vec<_> = seen.iter().filter(|s| s.complete).collect();
    if complete.len() != 1 || complete[0].header("x-case") != ["steady"] {
        failures.push(format!(
            "only the steady request should reach the backend whole: {seen:#?}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let m = p.metrics().await;
    assert_eq!(
        metric(&m, "portico_client_errors_total{kind=\"client_timeout\"}"),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "portico_upstream_errors_total{kind=\"timeout\"}"),
        0.0,
        "{m}"
    );
}

#[tokio::test]
async fn header_and_body_limits_answer_431_and_413() {
    let (_dir, p, raw) = setup(&[]).await;
    let get = |extra: String| format!("GET / HTTP/1.1\r\nHost: a.test\r\n{extra}\r\n");

    // ingress-nginx accepts large headers up to 4 × 8k: three 7 KB headers pass.
    let big: String = (0..3)
        .map(|i| format!("X-Big-{i}: {}\r\n", "v".repeat(7 * 1024)))
        .collect();
    let r = exchange(p.http, get(big).as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let seen = raw.seen();
    assert_eq!(seen.last().unwrap().header("x-big-2")[0].len(), 7 * 1024);

    // Past 32 KB of head: 431.
    let huge = format!("X-Huge: {}\r\n", "v".repeat(40 * 1024));
    assert_eq!(
        exchange(p.http, get(huge).as_bytes()).await.unwrap().status,
        431
    );
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: a.test\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    assert_eq!(
        exchange(p.http, long_line.as_bytes()).await.unwrap().status,
        431
    );
    // More than 200 headers: 431; 150 pass (hyper's default of 100 is raised).
    let many = |n: usize| (0..n).map(|i| format!("X-H{i}: v\r\n")).collect::<String>();
    assert_eq!(
        exchange(p.http, get(many(150)).as_bytes())
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        exchange(p.http, get(many(250)).as_bytes())
            .await
            .unwrap()
            .status,
        431
    );

    // Bodies past the default 1m: 413, by declared length or while streaming.
    raw.clear();
    let declared = "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2000000\r\n\r\n";
    assert_eq!(
        exchange(p.http, declared.as_bytes()).await.unwrap().status,
        413
    );
    let mut chunked =
        String::from("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    let piece = "x".repeat(64 * 1024);
    for _ in 0..20 {
        chunked.push_str(&format!("{:x}\r\n{piece}\r\n", piece.len()));
    }
    chunked.push_str("0\r\n\r\n");
    let r = exchange(p.http, chunked.as_bytes()).await;
    assert_eq!(r.map(|r| r.status), Some(413));
    assert!(
        raw.seen().iter().all(|s| !s.complete),
        "an over-limit body reached the backend whole"
    );
    still_serves(p.http).await;
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let (_dir, p, raw) = setup(&[
        "--client-header-timeout",
        "2s",
        "--upstream-response-timeout",
        "3s",
    ])
    .await;
    let limit = Duration::from_secs(15);
    let started = Instant::now();

    // Connects and sends nothing.
    let mut idle = TcpStream::connect(p.http).await.unwrap();
    // Sends the start of the HTTP/2 preface and stops (before hyper picks a protocol).
    let mut preface = TcpStream::connect(p.http).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // Slowloris: a header line every 500 ms, never the end of the head.
    let mut slow = TcpStream::connect(p.http).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n")
        .await
        .unwrap();
    let slowloris = tokio::spawn(async move {
        for i in 0.. {
            if slow
                .write_all(format!("X-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return (i, until_closed(&mut slow, Duration::from_secs(15)).await);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            if i > 60 {
                panic!("slowloris connection still open after 30 s");
            }
        }
        unreachable!()
    });
    // Keep-alive connection idle after one request.
    let mut kept = TcpStream::connect(p.http).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut kept, limit).await.unwrap().status, 200);

    until_closed(&mut idle, limit).await;
    until_closed(&mut preface, limit).await;
    until_closed(&mut kept, limit).await;
    let (_lines, _) = slowloris.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));

    // A slow body: the head in time, then a byte a second. The backend waits for the whole
    // body, so the request ends at the upstream response timeout, not never.
    raw.clear();
    let body = TcpStream::connect(p.http).await.unwrap();
    let (mut rd, mut wr) = body.into_split();
    wr.write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let dripping = tokio::spawn(async move {
        for _ in 0..100 {
            if wr.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let r = read_response(&mut rd, Duration::from_secs(30)).await;
    assert_eq!(r.map(|r| r.status), Some(504));
    dripping.abort();
    assert!(
        raw.seen().iter().all(|s| !s.complete),
        "a 100-byte body sent over 50 s reached the backend whole"
    );

    still_serves(p.http).await;
}

#[tokio::test]
async fn connections_past_the_limit_are_turned_away_then_served_again() {
    let (_dir, p, _raw) = setup(&["--max-connections", "20"]).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(p.http).await.unwrap();
        // Each held connection proves it has a slot: it is served.
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            read_response(&mut s, Duration::from_secs(20))
                .await
                .unwrap()
                .status,
            200
        );
        held.push(s);
    }
    // The 21st: a 503 written at accept, or just closed; never served.
    for _ in 0..5 {
        let mut s = TcpStream::connect(p.http).await.unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
        let got = until_closed(&mut s, Duration::from_secs(20)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 503"),
            "over the limit, got {text:?}"
        );
    }
    // TLS listener has its own slots.
    let tls = portico_e2e::tls::handshake(p.https, "a.test").await;
    assert!(tls.is_ok());
    // Slots come back when connections close.
    held.truncate(10);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = exchange(
            p.http,
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        if r.as_ref().is_some_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "no slot came back: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
}

/// The listener still answers a plain request after the hostile ones.
async fn still_serves(addr: std::net::SocketAddr) {
    let r = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.map(|r| r.status), Some(200));
}
