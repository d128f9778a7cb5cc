//! The benchmark backend: answers every HTTP/1.1 request with a small fixed body, on one
//! thread, with as little work as possible so that it is never the bottleneck.
//!
//! `backend ADDR` (e.g. `backend 127.0.0.1:18001`). Requests must not have bodies.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n";

async fn serve(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(1024);
    loop {
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        // Answer every complete request head in the buffer (pipelining included).
        let mut start = 0;
        while let Some(end) = buf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            out.extend_from_slice(RESPONSE);
            start += end + 4;
        }
        buf.drain(..start);
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8192);
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| std::io::Error::other("usage: backend ADDR"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (s, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = serve(s).await;
            });
        }
    })
}
