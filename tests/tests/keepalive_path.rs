//! Portico's own HTTP/1.1 path (plain `GET`/`HEAD` to routes that only forward): answers of
//! every framing arrive whole, the backend gets the same forwarding headers as through hyper,
//! malformed answers become 502 without losing the client connection, pipelined requests and
//! a request the path hands to hyper share one connection, and kept-alive backend
//! connections the backend closed are replaced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portico_e2e::raw::{read_request, read_response};
use portico_e2e::{manifests, write, Portico};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend answering by path, recording each request head; with `once`, it closes every
/// connection after its first answer without saying so.
struct Scripted {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    accepted: Arc<Mutex<usize>>,
}

async fn scripted(once: bool) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(Mutex::new(0));
    let (h, a) = (heads.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            *a.lock().unwrap() += 1;
            tokio::spawn(answer(s, h.clone(), once));
        }
    });
    Scripted {
        addr,
        heads,
        accepted,
    }
}

async fn answer(mut s: TcpStream, heads: Arc<Mutex<Vec<String>>>, once: bool) {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut s, &mut buf).await else {
            return;
        };
        let body = String::from_utf8_lossy(&body);
        heads.lock().unwrap().push(format!("{head}{body}"));
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let parts: Vec<&[u8]> = match path.as_str() {
            "/chunked" => vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n5\r\nhel",
                b"lo\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n",
                b"\r\n",
            ],
            "/close" => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nX-Back: close\r\n\r\nuntil ")
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = s.write_all(b"the end").await;
                return;
            }
            "/interim" => vec![
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ],
            "/bad" => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc"],
            "/switch" => vec![b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"],
            _ if head.starts_with("HEAD ") => vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Back: 1\r\nConnection: x-secret\r\nX-Secret: s\r\nX-Request-Id: backend\r\n\r\n",
            ],
            _ => vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Back: 1\r\nConnection: x-secret\r\nX-Secret: s\r\nX-Request-Id: backend\r\n\r\nhello",
            ],
        };
        for p in parts {
            if s.write_all(p).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if once {
            return;
        }
    }
}

async fn start(backend: SocketAddr) -> (tempfile::TempDir, Portico) {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "b.yaml",
        &manifests::backend("default", "web", &[backend]),
    );
    write(
        dir.path(),
        "i.yaml",
        &manifests::ingress("default", "web")
            .rule("k.test", "/", "Prefix", "web")
            .yaml(),
    );
    let p = Portico::start(dir.path(), &["--no-access-log"]).await;
    (dir, p)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: k.test\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
}

/// Reads one chunked body's decoded data and trailers from `s` after its head was read.
async fn read_chunked(s: &mut TcpStream, mut buf: Vec<u8>) -> String {
    loop {
        if buf.ends_with(b"0\r\nx-trailer: 1\r\n\r\n") || buf.ends_with(b"\r\n0\r\n\r\n") {
            return String::from_utf8(buf).unwrap();
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed mid-body: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a head (up to the blank line) from `s`; returns it and the bytes after it.
async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return (String::from_utf8(buf).unwrap(), rest);
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before a head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn answers_of_every_framing_arrive_whole_on_one_connection() {
    let b = scripted(false).await;
    let (_dir, p) = start(b.addr).await;
    let mut c = TcpStream::connect(p.http).await.unwrap();

    c.write_all(get("/length").as_bytes()).await.unwrap();
    let r = read_response(&mut c, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    let head = r.head.to_ascii_lowercase();
    assert!(
        head.contains("x-back: 1") && head.contains("date: "),
        "{head}"
    );
    assert!(
        !head.contains("x-secret") && !head.contains("connection"),
        "{head}"
    );
    assert!(!head.contains("x-request-id: backend"), "{head}");
    let sent = b.heads.lock().unwrap().last().cloned().unwrap();
    let sent_l = sent.to_ascii_lowercase();
    assert!(sent.starts_with("GET /length HTTP/1.1\r\n"), "{sent}");
    assert!(sent_l.contains("host: k.test\r\n"), "{sent}");
    assert!(sent_l.contains("x-forwarded-for: 127.0.0.1\r\n"), "{sent}");
    assert!(sent_l.contains("x-real-ip: 127.0.0.1\r\n"), "{sent}");
    assert!(sent_l.contains("x-forwarded-host: k.test\r\n"), "{sent}");
    assert!(sent_l.contains("x-forwarded-proto: http\r\n"), "{sent}");
    assert!(sent_l.contains("x-request-id: "), "{sent}");
    assert!(
        !sent_l.contains("x-hop") && !sent_l.contains("connection"),
        "{sent}"
    );
    let id = sent_l
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .to_string();
    assert!(head.contains(&format!("x-request-id: {id}")), "{head}");

    // Chunks pass through as they are, trailers included; Content-Length gives way.
    c.write_all(get("/chunked").as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut c).await;
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    let body = read_chunked(&mut c, rest).await;
    assert_eq!(
        body,
        "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n"
    );

    // A body that runs to the backend's close goes out chunked; the client stays connected.
    c.write_all(get("/close").as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut c).await;
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let body = read_chunked(&mut c, rest).await;
    let data: String = body
        .split("\r\n")
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(data, "until the end");

    // An interim answer is passed over.
    c.write_all(get("/interim").as_bytes()).await.unwrap();
    let r = read_response(&mut c, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));

    // HEAD: the length is the GET's, no body follows.
    c.write_all(b"HEAD /length HTTP/1.1\r\nHost: k.test\r\n\r\n")
        .await
        .unwrap();
    let (head, rest) = read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 5"),
        "{head}"
    );
    assert!(rest.is_empty());

    // `Connection: close` is honoured after the answer.
    c.write_all(b"GET /length HTTP/1.1\r\nHost: k.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut c, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        r.head.to_ascii_lowercase().contains("connection: close"),
        "{}",
        r.head
    );
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    // The kept-alive backend connection served every answer but the one that closed.
    assert_eq!(*b.accepted.lock().unwrap(), 2);
}

#[tokio::test]
async fn malformed_answers_are_502_and_the_connection_goes_on() {
    let b = scripted(false).await;
    let (_dir, p) = start(b.addr).await;
    let mut c = TcpStream::connect(p.http).await.unwrap();
    for path in ["/bad", "/switch", "/length"] {
        c.write_all(get(path).as_bytes()).await.unwrap();
        let r = read_response(&mut c, Duration::from_secs(10))
            .await
            .unwrap();
        let want = if path == "/length" { 200 } else { 502 };
        assert_eq!(r.status, want, "{path}: {}", r.head);
        assert!(
            r.head.to_ascii_lowercase().contains("x-request-id: "),
            "{}",
            r.head
        );
    }
    // Portico's own 502 to a HEAD has its length and no body: the next answer is intact.
    c.write_all(b"HEAD /bad HTTP/1.1\r\nHost: k.test\r\n\r\n")
        .await
        .unwrap();
    let (head, rest) = read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(rest.is_empty(), "a body after a HEAD answer: {rest:?}");
    c.write_all(get("/length").as_bytes()).await.unwrap();
    let r = read_response(&mut c, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    let metrics = p.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("portico_upstream_errors_total{kind=\"upstream\"}")
                && l.ends_with(" 3")
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn pipelined_requests_and_one_for_hyper_share_a_connection() {
    let b = scripted(false).await;
    let (_dir, p) = start(b.addr).await;
    let mut c = TcpStream::connect(p.http).await.unwrap();
    let mut all = get("/length");
    all.push_str("POST /post HTTP/1.1\r\nHost: k.test\r\nContent-Length: 3\r\n\r\nabc");
    all.push_str(&get("/length"));
    c.write_all(all.as_bytes()).await.unwrap();
    for _ in 0..3 {
        let r = read_response(&mut c, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"hello"[..]),
            "{}",
            r.head
        );
    }
    let heads = b.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 3);
    assert!(heads[1].starts_with("POST /post HTTP/1.1\r\n") && heads[1].ends_with("abc"));
}

#[tokio::test]
async fn backend_connections_closed_while_idle_are_replaced() {
    let b = scripted(true).await;
    let (_dir, p) = start(b.addr).await;
    let mut c = TcpStream::connect(p.http).await.unwrap();
    for i in 0..5 {
        c.write_all(get("/length").as_bytes()).await.unwrap();
        let r = read_response(&mut c, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.head);
    }
    assert_eq!(*b.accepted.lock().unwrap(), 5);
}
