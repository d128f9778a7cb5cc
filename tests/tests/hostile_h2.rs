//! HTTP/2 abuse against the binary, with hand-encoded frames over cleartext HTTP/2 (prior
//! knowledge): rapid reset, CONTINUATION floods, SETTINGS and PING floods, HPACK table
//! abuse, too many streams. Each must end in a bounded way (GOAWAY, refused streams, a closed
//! connection) while the process keeps its memory and keeps serving other clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use portico_e2e::manifests::{backend, ingress};
use portico_e2e::raw::{exchange, RawBackend};
use portico_e2e::{write, Portico};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK block for `GET http://a.test{path}`: static-table entries plus literal
/// :authority and :path (never indexed, so no dynamic table state).
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
    for (index, value) in [(1u8, "a.test"), (4u8, path)] {
        b.push(index); // literal without indexing, indexed name
        b.push(value.len() as u8);
        b.extend_from_slice(value.as_bytes());
    }
    b
}

/// A cleartext HTTP/2 connection that has sent the preface and an empty SETTINGS.
async fn connect(p: &Portico) -> TcpStream {
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    s
}

/// What the server sent until it closed the connection or `limit` passed.
#[derive(Debug, Default)]
struct Received {
    frames: usize,
    /// GOAWAY error codes.
    goaway: Vec<u32>,
    /// RST_STREAM error codes.
    resets: Vec<u32>,
    /// Streams that got a response HEADERS frame.
    answered: Vec<u32>,
    closed: bool,
}

async fn receive(s: &mut TcpStream, limit: Duration) -> Received {
    let mut r = Received::default();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = &buf[9..9 + len];
            r.frames += 1;
            match kind {
                GOAWAY if len >= 8 => r.goaway.push(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ])),
                RST_STREAM if len >= 4 => r.resets.push(u32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ])),
                HEADERS => r.answered.push(stream),
                _ => {}
            }
            buf.drain(..9 + len);
        }
        let mut chunk = [0u8; 65536];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                r.closed = true;
                return r;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return r,
        }
    }
}

/// Writes `frames` until done or the server stops reading/closes; returns the bytes written.
async fn flood(s: &mut TcpStream, frames: impl Iterator<Item = Vec<u8>>, limit: Duration) -> usize {
    let mut written = 0;
    let deadline = tokio::time::Instant::now() + limit;
    for f in frames {
        match tokio::time::timeout_at(deadline, s.write_all(&f)).await {
            Ok(Ok(())) => written += f.len(),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    written
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A plain HTTP/2 GET on a fresh connection is answered: the server is fine.
async fn still_serves(p: &Portico) {
    let mut s = connect(p).await;
    s.write_all(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block("/ok"),
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = receive(&mut s, Duration::from_millis(500)).await;
        if r.answered.contains(&1) {
            break;
        }
        assert!(
            !r.closed && Instant::now() < deadline,
            "no answer: {r:?}\n{}",
            p.logs()
        );
    }
    let r = exchange(
        p.http,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}

async fn setup() -> (tempfile::TempDir, Portico, RawBackend) {
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
            .yaml(),
    );
    let p = Portico::start(dir.path(), &["--no-access-log"]).await;
    (dir, p, raw)
}

#[tokio::test]
async fn rapid_reset_ends_the_connection() {
    let (_dir, p, raw) = setup().await;
    let before = rss_kb(p.pid());
    let mut s = connect(&p).await;
    let n = 20_000u32;
    let frames = (0..n).map(|i| {
        let id = 1 + 2 * i;
        let mut f = frame(HEADERS, END_STREAM | END_HEADERS, id, &get_block("/reset"));
        f.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
        f
    });
    let written = flood(&mut s, frames, Duration::from_secs(30)).await;
    let r = receive(&mut s, Duration::from_secs(10)).await;
    let forwarded = raw.seen().len();
    eprintln!(
        "rapid reset: wrote {written} bytes of {n} HEADERS+RST pairs; backend saw {forwarded}; \
         server: {:?} goaway, closed {}",
        r.goaway, r.closed
    );
    // ENHANCE_YOUR_CALM (0xb) once too many streams are reset before being served.
    assert!(r.goaway.contains(&0xb), "{r:?}");
    assert!(
        forwarded < n as usize / 10,
        "{forwarded} of {n} reset requests were forwarded"
    );
    still_serves(&p).await;
    let after = rss_kb(p.pid());
    assert!(
        after < before + 50_000,
        "RSS grew from {before} kB to {after} kB"
    );
}

#[tokio::test]
async fn a_continuation_flood_is_cut_off() {
    let (_dir, p, _raw) = setup().await;
    let mut s = connect(&p).await;
    // HEADERS without END_HEADERS, then CONTINUATION frames of fresh literal headers forever.
    let mut first = get_block("/c");
    first.extend([0x00, 0x01, b'x', 0x01, b'y']);
    s.write_all(&frame(HEADERS, END_STREAM, 1, &first))
        .await
        .unwrap();
    // Each frame: 900 whole literal fields (never indexed), 16,200 bytes.
    let mut lit = Vec::new();
    for _ in 0..900 {
        lit.push(0x00); // literal without indexing, new name
        lit.push(7);
        lit.extend_from_slice(b"x-flood");
        lit.push(8);
        lit.extend_from_slice(b"flooding");
    }
    let frames = std::iter::repeat_n(frame(CONTINUATION, 0, 1, &lit), 100_000);
    let written = flood(&mut s, frames, Duration::from_secs(30)).await;
    let r = receive(&mut s, Duration::from_secs(10)).await;
    eprintln!(
        "CONTINUATION flood: {written} bytes accepted; server {:?} closed {}",
        r.goaway, r.closed
    );
    assert!(r.closed || !r.goaway.is_empty(), "{r:?}");
    // Cut off long before the 1.6 GB the flood would send.
    assert!(written < 64 << 20, "{written} bytes accepted");
    still_serves(&p).await;
}

#[tokio::test]
async fn settings_and_ping_floods_stay_bounded() {
    let (_dir, p, _raw) = setup().await;
    let before = rss_kb(p.pid());
    for (name, f) in [
        ("SETTINGS", frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff])),
        ("PING", frame(PING, 0, 0, &[7; 8])),
    ] {
        let mut s = connect(&p).await;
        // Never read: the answers can only pile up if the server lets them.
        let written = flood(
            &mut s,
            std::iter::repeat_n(f, 200_000),
            Duration::from_secs(30),
        )
        .await;
        let rss = rss_kb(p.pid());
        eprintln!("{name} flood: {written} bytes written without reading; RSS {before} → {rss} kB");
        assert!(
            rss < before + 50_000,
            "{name} flood: RSS {before} → {rss} kB"
        );
        drop(s);
        still_serves(&p).await;
    }
}

#[tokio::test]
async fn hpack_table_abuse_is_refused_or_harmless() {
    let (_dir, p, _raw) = setup().await;
    // The client announces a 4 GiB table for the server's encoder: harmless, answers flow.
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[0, 1, 0xff, 0xff, 0xff, 0xff]))
        .await
        .unwrap();
    for i in 0..50u32 {
        s.write_all(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1 + 2 * i,
            &get_block("/t"),
        ))
        .await
        .unwrap();
    }
    let r = receive(&mut s, Duration::from_secs(5)).await;
    assert_eq!(r.answered.len(), 50, "{r:?}");

    // A dynamic table size update above the server's 4096: a connection error (h2 says
    // PROTOCOL_ERROR, 0x1; RFC 7541 §6.3 suggests COMPRESSION_ERROR, 0x9).
    let mut s = connect(&p).await;
    let mut block = vec![0x3f, 0xe1, 0xff, 0xff, 0x0f]; // size update to 2^32-ish
    block.extend(get_block("/t"));
    s.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
        .await
        .unwrap();
    let r = receive(&mut s, Duration::from_secs(10)).await;
    assert!(
        r.goaway.iter().any(|c| [0x1, 0x9].contains(c)) && r.closed,
        "{r:?}"
    );
    still_serves(&p).await;
}

#[tokio::test]
async fn streams_past_the_limit_are_refused() {
    let (_dir, p, _raw) = setup().await;
    let mut s = connect(&p).await;
    // 300 streams left open (no END_STREAM: each request waits for a body).
    for i in 0..300u32 {
        s.write_all(&frame(HEADERS, END_HEADERS, 1 + 2 * i, &get_block("/open")))
            .await
            .unwrap();
    }
    let r = receive(&mut s, Duration::from_secs(5)).await;
    // REFUSED_STREAM (0x7) for the streams past 128, or the connection ended.
    let refused = r.resets.iter().filter(|c| **c == 0x7).count();
    eprintln!("300 open streams: {refused} refused, goaway {:?}", r.goaway);
    assert!(refused >= 300 - 128 || !r.goaway.is_empty(), "{r:?}");
    // Finishing the accepted streams still works on this connection.
    s.write_all(&frame(DATA, END_STREAM, 1, b"")).await.unwrap();
    still_serves(&p).await;
}
