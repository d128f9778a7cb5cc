//! Finding the end of a chunked body (RFC 9112 §7.1) without changing it: Portico's own
//! HTTP/1.1 path passes a backend's chunks to the client as they are, and only needs to know
//! where the message stops and how many bytes of data it carried.

/// Where the walk through a chunked body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    /// Whitespace after the size (RFC 9112 §7.1.1 allows it before an extension).
    SizeSpace,
    /// A chunk extension, up to its CR.
    Extension,
    /// The LF ending a size line.
    SizeLf,
    /// Data bytes of a chunk.
    Data,
    /// The CR after a chunk's data.
    DataCr,
    /// The LF after a chunk's data.
    DataLf,
    /// The start of a trailer line, or the final CR.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// The LF ending a trailer line.
    TrailerLf,
    /// The final LF.
    EndLf,
    Done,
}

/// A malformed chunked body.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct Malformed(&'static str);

/// Walks a chunked body fed in pieces.
#[derive(Debug)]
pub struct ChunkedEnd {
    state: State,
    /// While in `Size`: the size so far; in `Data`: the bytes of the chunk still to come.
    size: u64,
    digits: u8,
    /// Data bytes seen, framing left out.
    data: u64,
}

impl Default for ChunkedEnd {
    fn default() -> Self {
        ChunkedEnd {
            state: State::Size,
            size: 0,
            digits: 0,
            data: 0,
        }
    }
}

impl ChunkedEnd {
    /// Takes the next bytes of the body; returns how many of them belong to it: all of
    /// `input`, or fewer when the body ends inside it.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Done {
                break;
            }
            if self.state == State::Data {
                let take = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                i += take;
                self.size -= take as u64;
                self.data += take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::Size, b) if b.is_ascii_hexdigit() => {
                    if self.digits == 16 {
                        return Err(Malformed("chunk size too large"));
                    }
                    self.digits += 1;
                    let digit = (b as char).to_digit(16).map_or(0, u64::from);
                    self.size = self.size << 4 | digit;
                    State::Size
                }
                (State::Size, b';') if self.digits > 0 => State::Extension,
                (State::Size, b'\r') if self.digits > 0 => State::SizeLf,
                (State::Size, b' ' | b'\t') if self.digits > 0 => State::SizeSpace,
                (State::Size, _) => return Err(Malformed("invalid chunk size")),
                (State::SizeSpace, b' ' | b'\t') => State::SizeSpace,
                (State::SizeSpace, b';') => State::Extension,
                (State::SizeSpace, b'\r') => State::SizeLf,
                (State::SizeSpace, _) => return Err(Malformed("invalid chunk size")),
                (State::Extension, b'\r') => State::SizeLf,
                (State::Extension, b'\n') => return Err(Malformed("bare LF in a chunk extension")),
                (State::Extension, _) => State::Extension,
                (State::SizeLf, b'\n') if self.size == 0 => State::TrailerStart,
                (State::SizeLf, b'\n') => State::Data,
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => {
                    self.size = 0;
                    self.digits = 0;
                    State::Size
                }
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::TrailerStart | State::Trailer, b'\n') => {
                    return Err(Malformed("bare LF in the trailer section"))
                }
                (State::Trailer, b'\r') => State::TrailerLf,
                (State::TrailerStart | State::Trailer, _) => State::Trailer,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => State::Done,
                _ => return Err(Malformed("missing CRLF")),
            };
        }
        Ok(i)
    }

    /// Has the last chunk and its trailer section been seen?
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes seen so far.
    pub fn data(&self) -> u64 {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` cut at `cut`, returns bytes taken and data seen, or the error.
    fn walk(body: &[u8], cut: usize) -> Result<(usize, u64, bool), Malformed> {
        let mut c = ChunkedEnd::default();
        let a = c.feed(&body[..cut])?;
        let b = if c.done() { 0 } else { c.feed(&body[cut..])? };
        Ok((a + b, c.data(), c.done()))
    }

    #[test]
    fn the_end_is_found_wherever_the_body_is_cut() {
        let body =
            b"5\r\nhello\r\n1 ;ext=\"x\"\r\n!\r\nA \r\n0123456789\r\n0\r\nx-sum: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for cut in 0..=body.len() {
            assert_eq!(walk(body, cut), Ok((end, 16, true)), "cut at {cut}");
        }
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let body = b"5\r\nhel";
        assert_eq!(walk(body, 2), Ok((body.len(), 3, false)));
        let body = b"0\r\n";
        assert_eq!(walk(body, 1), Ok((body.len(), 0, false)));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"2\r\nab\n",
            b"0\r\nx: 1\n\r\n",
            b"0\r\n\rX",
            b"11111111111111111\r\n",
            b"5;a\nb\r\n",
            b" 5\r\n",
            b"5 x\r\n",
            b"5 5\r\n",
        ] {
            let mut c = ChunkedEnd::default();
            assert!(c.feed(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_sixteen_digit_size_fits() {
        let mut c = ChunkedEnd::default();
        assert_eq!(c.feed(b"000000000000000f\r\nabc"), Ok(21));
        assert_eq!(c.data(), 3);
    }
}
