//! Who the client is: the TCP peer, or, behind trusted proxies, the right-most untrusted
//! address of `X-Forwarded-For`.

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;
use ipnet::IpNet;

/// Networks whose forwarding headers are believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// Parses `CIDR[,CIDR…]`; a bare address means that one host.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(format!("{item:?} is not a CIDR or IP address")),
                },
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        !self.0.is_empty() && self.0.iter().any(|n| n.contains(&ip))
    }

    /// The peers of both lists.
    pub fn union(&self, other: &TrustedProxies) -> TrustedProxies {
        TrustedProxies(self.0.iter().chain(&other.0).copied().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `::ffff:a.b.c.d` becomes `a.b.c.d`, so IPv4 rules apply to dual-stack sockets.
#[inline]
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The client address of a request arriving from `peer` (already normalized).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    if !trusted.contains(peer) {
        return peer;
    }
    let mut client = peer;
    // Walk X-Forwarded-For from the right: each hop appended the address it saw.
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for value in values.iter().rev() {
        for item in value.rsplit(',') {
            let Some(ip) = parse_forwarded_ip(item.trim()) else {
                return client;
            };
            let ip = normalize(ip);
            client = ip;
            if !trusted.contains(ip) {
                return ip;
            }
        }
    }
    client
}

/// Parses `1.2.3.4`, `1.2.3.4:5`, `::1` or `[::1]:5`.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest
            .split_once(']')?
            .0
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6);
    }
    let (ip, _port) = s.rsplit_once(':')?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_ip(peer, &headers("1.1.1.1"), &t), peer);
    }

    #[test]
    fn trusted_peer_yields_rightmost_untrusted() {
        let t = TrustedProxies::parse("10.0.0.0/8, 192.168.0.1").unwrap();
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let h = headers("6.6.6.6, 203.0.113.9, 10.2.2.2, 192.168.0.1");
        assert_eq!(
            client_ip(peer, &h, &t),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn all_trusted_yields_leftmost() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let h = headers("10.3.3.3, 10.2.2.2");
        assert_eq!(
            client_ip(peer, &h, &t),
            "10.3.3.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn garbage_stops_the_walk() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        assert_eq!(client_ip(peer, &headers("nonsense"), &t), peer);
    }

    #[test]
    fn mapped_addresses_are_normalized() {
        let mapped: IpAddr = "::ffff:10.1.1.1".parse().unwrap();
        assert_eq!(normalize(mapped), "10.1.1.1".parse::<IpAddr>().unwrap());
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert!(t.contains(normalize(mapped)));
    }

    #[test]
    fn rejects_bad_lists() {
        assert!(TrustedProxies::parse("10.0.0.0/8,bogus").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse("[::1]/128").is_err());
        assert!(TrustedProxies::parse("::1/128").is_ok());
    }
}
