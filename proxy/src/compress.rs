//! Response compression (`use-gzip`, `enable-brotli`): gzip or brotli, chosen from the
//! client's `Accept-Encoding`, applied as the body streams (each chunk is compressed and
//! flushed, so streaming answers keep streaming).

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::body::BodyError;

/// A route's compression settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compression {
    pub gzip: bool,
    pub brotli: bool,
    /// gzip level 1-9 (ingress-nginx's `gzip-level`, default 1).
    pub gzip_level: u32,
    /// brotli quality 0-11 (ingress-nginx's `brotli-level`, default 4).
    pub brotli_level: u32,
    /// Answers with a known length below this are sent as they are (default 256).
    pub min_length: u64,
    /// Media types compressed (without parameters, lowercase).
    pub types: Vec<String>,
}

/// ingress-nginx's `gzip-types`.
pub const DEFAULT_TYPES: [&str; 14] = [
    "application/atom+xml",
    "application/javascript",
    "application/x-javascript",
    "application/json",
    "application/rss+xml",
    "application/vnd.ms-fontobject",
    "application/x-font-ttf",
    "application/x-web-app-manifest+json",
    "application/xhtml+xml",
    "application/xml",
    "font/opentype",
    "image/svg+xml",
    "text/css",
    "text/plain",
];

impl Default for Compression {
    fn default() -> Self {
        Compression {
            gzip: false,
            brotli: false,
            gzip_level: 1,
            brotli_level: 4,
            min_length: 256,
            types: DEFAULT_TYPES
                .iter()
                .map(|t| t.to_string())
                .chain(["text/javascript".to_string(), "text/html".to_string()])
                .collect(),
        }
    }
}

/// The encoding chosen for one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Brotli,
}

impl Compression {
    /// The encoding for an answer, if it should be compressed: the client accepts it, the
    /// answer is not already encoded, has a body of a listed type and is not too short.
    pub fn choose(
        &self,
        method: &Method,
        accept: &[HeaderValue],
        status: StatusCode,
        response: &HeaderMap,
    ) -> Option<Encoding> {
        if method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status.is_informational()
            || response.contains_key(CONTENT_ENCODING)
        {
            return None;
        }
        let media = response
            .get(CONTENT_TYPE)?
            .to_str()
            .ok()?
            .split(';')
            .next()?
            .trim()
            .to_ascii_lowercase();
        if !self.types.contains(&media) {
            return None;
        }
        let length = response
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if length.is_some_and(|l| l < self.min_length) {
            return None;
        }
        let (mut br, mut gz) = (false, false);
        for value in accept {
            for item in value.to_str().unwrap_or("").split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim();
                let refused = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
                });
                if refused {
                    continue;
                }
                br |= coding.eq_ignore_ascii_case("br");
                gz |= coding.eq_ignore_ascii_case("gzip");
            }
        }
        if self.brotli && br {
            Some(Encoding::Brotli)
        } else if self.gzip && gz {
            Some(Encoding::Gzip)
        } else {
            None
        }
    }

    /// Sets the answer's headers for `encoding` and wraps its body.
    pub fn apply<B>(&self, encoding: Encoding, headers: &mut HeaderMap, body: B) -> Compressed<B> {
        headers.remove(CONTENT_LENGTH);
        headers.insert(
            CONTENT_ENCODING,
            HeaderValue::from_static(match encoding {
                Encoding::Gzip => "gzip",
                Encoding::Brotli => "br",
            }),
        );
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
        let encoder = match encoding {
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(self.gzip_level.min(9)),
            )),
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                self.brotli_level.min(11),
                22,
            ))),
        };
        Compressed {
            inner: body,
            encoder: Some(encoder),
            trailers: None,
        }
    }
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    /// Compresses `data` and returns what is ready (flushed, so the client can use it now).
    fn push(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(Bytes::from(std::mem::take(e.get_mut())))
            }
            Encoder::Brotli(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(Bytes::from(std::mem::take(e.get_mut())))
            }
        }
    }

    fn finish(self) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => e.finish().map(Bytes::from),
            Encoder::Brotli(e) => Ok(Bytes::from(e.into_inner())),
        }
    }
}

/// A body compressed as it streams.
pub struct Compressed<B> {
    inner: B,
    encoder: Option<Encoder>,
    trailers: Option<HeaderMap>,
}

impl<B> std::fmt::Debug for Compressed<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compressed")
    }
}

impl<B> Body for Compressed<B>
where
    B: Body<Data = Bytes, Error = BodyError> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => match encoder.push(&data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => return Poll::Ready(Some(Err(BodyError::Compress(e)))),
                    },
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                    }
                },
                Poll::Ready(None) => {
                    let Some(encoder) = this.encoder.take() else {
                        continue;
                    };
                    match encoder.finish() {
                        Ok(out) if !out.is_empty() => {
                            return Poll::Ready(Some(Ok(Frame::data(out))))
                        }
                        Ok(_) => continue,
                        Err(e) => return Poll::Ready(Some(Err(BodyError::Compress(e)))),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn on() -> Compression {
        Compression {
            gzip: true,
            brotli: true,
            ..Compression::default()
        }
    }

    #[test]
    fn choice_follows_accept_encoding_type_and_length() {
        let c = on();
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        let ok = StatusCode::OK;
        let get = Method::GET;
        let ask = |ae: &str| vec![HeaderValue::from_str(ae).unwrap()];
        assert_eq!(
            c.choose(&get, &ask("gzip, br"), ok, &json),
            Some(Encoding::Brotli)
        );
        assert_eq!(
            c.choose(&get, &ask("gzip"), ok, &json),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            c.choose(&get, &ask("br;q=0, gzip"), ok, &json),
            Some(Encoding::Gzip)
        );
        assert_eq!(c.choose(&get, &ask("identity"), ok, &json), None);
        assert_eq!(c.choose(&Method::HEAD, &ask("gzip"), ok, &json), None);
        let png = headers(&[("content-type", "image/png")]);
        assert_eq!(c.choose(&get, &ask("gzip"), ok, &png), None);
        let short = headers(&[("content-type", "text/plain"), ("content-length", "10")]);
        assert_eq!(c.choose(&get, &ask("gzip"), ok, &short), None);
        let done = headers(&[("content-type", "text/plain"), ("content-encoding", "gzip")]);
        assert_eq!(c.choose(&get, &ask("gzip"), ok, &done), None);
    }

    #[test]
    fn streamed_chunks_compress_and_decompress() {
        for encoding in [Encoding::Gzip, Encoding::Brotli] {
            let mut enc = match encoding {
                Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                    Vec::new(),
                    flate2::Compression::new(1),
                )),
                Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                    Vec::new(),
                    4096,
                    4,
                    22,
                ))),
            };
            let mut wire = Vec::new();
            for i in 0..20 {
                let chunk = format!("chunk {i}: {}\n", "portico ".repeat(50));
                let out = enc.push(chunk.as_bytes()).unwrap();
                assert!(!out.is_empty(), "each chunk is flushed");
                wire.extend_from_slice(&out);
            }
            wire.extend_from_slice(&enc.finish().unwrap());
            let mut plain = String::new();
            match encoding {
                Encoding::Gzip => {
                    flate2::read::GzDecoder::new(&wire[..])
                        .read_to_string(&mut plain)
                        .unwrap();
                }
                Encoding::Brotli => {
                    brotli::Decompressor::new(&wire[..], 4096)
                        .read_to_string(&mut plain)
                        .unwrap();
                }
            }
            assert_eq!(plain.lines().count(), 20);
            assert!(
                wire.len() < plain.len() / 4,
                "{} of {}",
                wire.len(),
                plain.len()
            );
        }
    }
}
