//! Reading a TLS ClientHello's server name without consuming it: the listener decides between
//! TLS passthrough and termination, then replays the bytes it read.
//!
//! Bounded: at most [`MAX_HELLO`] bytes of handshake data are read; the caller bounds the time.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The largest ClientHello accepted (rustls accepts up to 64 KiB of handshake message, but
/// real ClientHellos, even with post-quantum key shares, stay far below this).
pub const MAX_HELLO: usize = 16 * 1024;

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// A complete ClientHello, with its server name (lowercase) if it has one.
    Hello(Option<String>),
    /// More bytes are needed.
    Incomplete,
    /// Not a TLS ClientHello (or a malformed one): leave it to the TLS stack to refuse.
    NotHello,
}

/// Parses the TLS records in `buf` as far as the ClientHello goes.
pub fn peek(buf: &[u8]) -> Peek {
    // Reassemble the handshake message from consecutive handshake records.
    let mut message: Vec<u8> = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Peek::Incomplete;
        }
        if rest[0] != 0x16 || rest[1] != 0x03 {
            return Peek::NotHello;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > 16 * 1024 + 256 {
            return Peek::NotHello;
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            return Peek::Incomplete;
        };
        message.extend_from_slice(fragment);
        rest = &rest[5 + len..];
        if message.len() < 4 {
            continue;
        }
        if message[0] != 0x01 {
            return Peek::NotHello;
        }
        let body_len = (usize::from(message[1]) << 16)
            | (usize::from(message[2]) << 8)
            | usize::from(message[3]);
        if body_len > MAX_HELLO {
            return Peek::NotHello;
        }
        if message.len() >= 4 + body_len {
            return match server_name(&message[4..4 + body_len]) {
                Some(name) => Peek::Hello(name),
                None => Peek::NotHello,
            };
        }
    }
}

/// A cursor over a byte slice that fails instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// The ClientHello body's `server_name` extension: `Some(None)` when absent, `None` when
/// the message is malformed.
fn server_name(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Some(None);
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type != 0 {
                continue;
            }
            let valid = !name.is_empty()
                && name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !valid {
                return None;
            }
            let name = std::str::from_utf8(name).ok()?;
            let name = name.strip_suffix('.').unwrap_or(name);
            return Some(Some(name.to_ascii_lowercase()));
        }
        return Some(None);
    }
    Some(None)
}

/// Reads from `stream` until `peek` decides, keeping every byte read.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<(Peek, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        match peek(&buf) {
            Peek::Incomplete => {}
            decided => return Ok((decided, buf)),
        }
        if buf.len() >= MAX_HELLO + 1024 {
            return Ok((Peek::NotHello, buf));
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A stream that first replays bytes already read from it.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello from rustls for `sni`.
    fn hello(sni: Option<&str>) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut config = config;
        config.enable_sni = sni.is_some();
        let name =
            rustls_pki_types::ServerName::try_from(sni.unwrap_or("x.invalid").to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_server_name() {
        let h = hello(Some("Pass.Example.com"));
        assert_eq!(peek(&h), Peek::Hello(Some("pass.example.com".into())));
        assert_eq!(peek(&hello(None)), Peek::Hello(None));
        for cut in [0, 3, 5, 40, h.len() - 1] {
            assert_eq!(peek(&h[..cut]), Peek::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn reassembles_split_records() {
        let h = hello(Some("a.test"));
        let body = &h[5..];
        let (one, two) = body.split_at(30);
        let mut split = Vec::new();
        for part in [one, two] {
            split.extend_from_slice(&[0x16, 0x03, 0x01]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(peek(&split), Peek::Hello(Some("a.test".into())));
    }

    #[test]
    fn hostile_input() {
        assert_eq!(peek(b"GET / HTTP/1.1\r\n\r\n"), Peek::NotHello);
        assert_eq!(peek(&[0x16, 0x03, 0x01, 0, 0]), Peek::NotHello);
        // A handshake that is not a ClientHello.
        assert_eq!(peek(&[0x16, 0x03, 0x01, 0, 4, 2, 0, 0, 0]), Peek::NotHello);
        // A ClientHello claiming 16 MiB.
        assert_eq!(
            peek(&[0x16, 0x03, 0x01, 0, 4, 1, 0xff, 0xff, 0xff]),
            Peek::NotHello
        );
        // A truncated body (length says 3, content is garbage).
        assert_eq!(
            peek(&[0x16, 0x03, 0x01, 0, 7, 1, 0, 0, 3, 3, 3, 0]),
            Peek::NotHello
        );
        // A server name with bytes no host has.
        let mut h = hello(Some("abc.test"));
        let at = h.windows(8).position(|w| w == b"abc.test").unwrap();
        h[at] = b'/';
        assert_eq!(peek(&h), Peek::NotHello);
        // Every truncation and every single-byte corruption: no panic, and a decision or a
        // request for more.
        let h = hello(Some("fuzz.test"));
        for i in 0..h.len() {
            let _ = peek(&h[..i]);
            let mut c = h.clone();
            c[i] ^= 0xff;
            let _ = peek(&c);
        }
    }

    #[tokio::test]
    async fn rewind_replays_then_reads_on() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"world")
            .await
            .unwrap();
        drop(a);
        let mut r = Rewind::new(b"hello ".to_vec(), b);
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
    }
}
