//! The PROXY protocol (v1 text and v2 binary) in front of a connection: how a load balancer
//! tells Portico the real client address. Only read from trusted peers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

const V2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];
/// The longest v1 line, CRLF included (the specification's limit).
const V1_MAX: usize = 107;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Reads a PROXY header; returns the source address it carries, or `None` for `UNKNOWN`/`LOCAL`
/// (health checks from the balancer itself), in which case the TCP peer stands.
pub async fn read_header<R: AsyncRead + Unpin>(
    io: &mut R,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut start = [0u8; 12];
    io.read_exact(&mut start[..6]).await?;
    if &start[..6] == b"PROXY " {
        return read_v1(io).await;
    }
    if start[..6] != V2_SIGNATURE[..6] {
        return Err(ProxyHeaderError::Missing);
    }
    io.read_exact(&mut start[6..]).await?;
    if start != V2_SIGNATURE {
        return Err(ProxyHeaderError::Missing);
    }
    read_v2(io).await
}

async fn read_v1<R: AsyncRead + Unpin>(io: &mut R) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut line = Vec::with_capacity(V1_MAX);
    loop {
        let b = io.read_u8().await?;
        line.push(b);
        if line.ends_with(b"\r\n") {
            break;
        }
        if line.len() + 6 > V1_MAX {
            return Err(ProxyHeaderError::Malformed("v1 line too long"));
        }
    }
    let text = std::str::from_utf8(&line[..line.len() - 2])
        .map_err(|_| ProxyHeaderError::Malformed("v1 line is not text"))?;
    parse_v1(text)
}

/// Parses what follows `PROXY ` on a v1 line (without CRLF).
pub fn parse_v1(text: &str) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut parts = text.split(' ');
    let family = parts.next().unwrap_or("");
    if family == "UNKNOWN" {
        return Ok(None);
    }
    let fields: Vec<&str> = parts.collect();
    let [src, _dst, sport, _dport] = fields[..] else {
        return Err(ProxyHeaderError::Malformed("v1 needs four fields"));
    };
    let ip: IpAddr = match family {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ProxyHeaderError::Malformed("v1 source is not IPv4"))?,
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ProxyHeaderError::Malformed("v1 source is not IPv6"))?,
        _ => return Err(ProxyHeaderError::Malformed("v1 family")),
    };
    let port: u16 = sport
        .parse()
        .map_err(|_| ProxyHeaderError::Malformed("v1 source port"))?;
    Ok(Some(SocketAddr::new(ip, port)))
}

async fn read_v2<R: AsyncRead + Unpin>(io: &mut R) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut head = [0u8; 4];
    io.read_exact(&mut head).await?;
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    parse_v2(head[0], head[1], &body)
}

/// Parses a v2 header after its signature: version/command, family/protocol, address block.
pub fn parse_v2(
    ver_cmd: u8,
    family: u8,
    body: &[u8],
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("v2 version"));
    }
    match ver_cmd & 0x0f {
        0 => return Ok(None), // LOCAL
        1 => {}
        _ => return Err(ProxyHeaderError::Malformed("v2 command")),
    }
    match family {
        0x11 | 0x12 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        0x21 | 0x22 if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        0x00 => Ok(None),
        _ => Err(ProxyHeaderError::Malformed(
            "v2 family or short address block",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_v1() {
        let mut input = &b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n"[..];
        let addr = read_header(&mut input).await.unwrap();
        assert_eq!(addr, Some("203.0.113.7:51234".parse().unwrap()));
        assert_eq!(
            input, b"GET / HTTP/1.1\r\n",
            "nothing past the header is consumed"
        );
        let mut unknown = &b"PROXY UNKNOWN\r\n"[..];
        assert_eq!(read_header(&mut unknown).await.unwrap(), None);
        let mut v6 = &b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"[..];
        assert_eq!(
            read_header(&mut v6).await.unwrap(),
            Some("[2001:db8::1]:1".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn reads_v2() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([0x21, 0x11, 0, 12]);
        h.extend([198, 51, 100, 9, 10, 0, 0, 1]);
        h.extend(4000u16.to_be_bytes());
        h.extend(443u16.to_be_bytes());
        h.extend(b"rest");
        let mut input = &h[..];
        let addr = read_header(&mut input).await.unwrap();
        assert_eq!(addr, Some("198.51.100.9:4000".parse().unwrap()));
        assert_eq!(input, b"rest");
    }

    #[tokio::test]
    async fn refuses_garbage() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 1.2.3.4\r\n",
            b"PROXY TCP4 x y 1 2\r\n",
        ] {
            let mut input = bad;
            assert!(
                read_header(&mut input).await.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("PROXY {}\r\n", "1".repeat(200));
        let mut input = long.as_bytes();
        assert!(read_header(&mut input).await.is_err());
    }
}
