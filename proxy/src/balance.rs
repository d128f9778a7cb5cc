//! How a route chooses among a backend's endpoints: round robin, EWMA (power of two choices
//! over latency × load), consistent hashing of a request key (`upstream-hash-by`), or a
//! session cookie (`affinity: cookie`).
//!
//! Every strategy only picks the first endpoint to try; the others follow in order as
//! alternatives after a failure. The per-endpoint state (latency, requests in flight) lives
//! in the backend, so every route to a Service shares it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderValue, HOST};
use http::Uri;

use crate::canary::cookie;

/// A route's strategy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    #[default]
    RoundRobin,
    Ewma,
    Hash(HashKey),
    Cookie(CookieAffinity),
}

/// `upstream-hash-by`: text and request variables, concatenated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashKey(pub Vec<KeyPart>);

/// One piece of a hash key (nginx variable names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPart {
    Text(String),
    /// `$request_uri`: path and query.
    RequestUri,
    /// `$uri`: the path.
    Path,
    /// `$args`, `$query_string`.
    Query,
    /// `$host`.
    Host,
    /// `$remote_addr`, `$binary_remote_addr`: the client address.
    ClientIp,
    /// `$http_<name>`.
    Header(http::header::HeaderName),
    /// `$cookie_<name>`.
    Cookie(String),
    /// `$arg_<name>`.
    Arg(String),
}

/// `affinity: cookie` and its `session-cookie-*` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieAffinity {
    pub name: String,
    /// `persistent`: the cookie names an endpoint, kept while that endpoint exists.
    /// `balanced` (false): the cookie holds a session token placed by consistent hashing, so
    /// a scale-up moves only the sessions the new endpoints take over.
    pub persistent: bool,
    pub path: String,
    pub max_age: Option<u64>,
    pub expires: Option<u64>,
    pub same_site: Option<&'static str>,
    pub secure: bool,
}

/// Per-endpoint load and latency, for EWMA.
#[derive(Debug, Default)]
pub struct EndpointLoad {
    /// Smoothed response time in microseconds.
    latency_us: AtomicU64,
    in_flight: AtomicU32,
}

/// Time constant of the latency average.
const DECAY: f64 = 0.3;

impl EndpointLoad {
    fn score(&self) -> u64 {
        let latency = self.latency_us.load(Ordering::Relaxed).max(1);
        latency.saturating_mul(u64::from(self.in_flight.load(Ordering::Relaxed)) + 1)
    }

    pub fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// One request finished after `elapsed` (time to the response head, or to a failure).
    pub fn finish(&self, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let sample = elapsed.as_micros().min(u128::from(u32::MAX)) as f64;
        let old = self.latency_us.load(Ordering::Relaxed) as f64;
        let new = if old == 0.0 {
            sample
        } else {
            old + DECAY * (sample - old)
        };
        self.latency_us.store(new as u64, Ordering::Relaxed);
    }
}

/// What the request offers to the strategies.
pub struct RequestKey<'a> {
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub client: IpAddr,
}

/// The first endpoint to try, and a cookie to set when the strategy placed a new session.
pub struct Choice {
    pub first: usize,
    pub set_cookie: Option<HeaderValue>,
}

/// 64-bit FNV-1a, stable across runs and builds (keys must map the same way on every replica).
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Final mix, so that similar keys spread.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// Rendezvous hashing: the endpoint with the highest score for `key`. Adding an endpoint moves
/// only the keys it wins; removing one moves only its keys.
pub fn rendezvous(key: &[u8], ids: &[Vec<u8>]) -> usize {
    let mut best = (0u64, 0usize);
    for (i, id) in ids.iter().enumerate() {
        let score = stable_hash(&[key, id]);
        if i == 0 || score > best.0 {
            best = (score, i);
        }
    }
    best.1
}

impl HashKey {
    fn render(&self, r: &RequestKey<'_>, out: &mut Vec<u8>) {
        for part in &self.0 {
            match part {
                KeyPart::Text(t) => out.extend_from_slice(t.as_bytes()),
                KeyPart::RequestUri => out.extend_from_slice(
                    r.uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .as_bytes(),
                ),
                KeyPart::Path => out.extend_from_slice(r.uri.path().as_bytes()),
                KeyPart::Query => out.extend_from_slice(r.uri.query().unwrap_or("").as_bytes()),
                KeyPart::Host => {
                    let host = r
                        .uri
                        .authority()
                        .map(|a| a.as_str().as_bytes())
                        .or_else(|| r.headers.get(HOST).map(HeaderValue::as_bytes));
                    out.extend_from_slice(host.unwrap_or_default());
                }
                KeyPart::ClientIp => out.extend_from_slice(r.client.to_string().as_bytes()),
                KeyPart::Header(name) => {
                    if let Some(v) = r.headers.get(name) {
                        out.extend_from_slice(v.as_bytes());
                    }
                }
                KeyPart::Cookie(name) => {
                    if let Some(v) = cookie(r.headers, name) {
                        out.extend_from_slice(v);
                    }
                }
                KeyPart::Arg(name) => {
                    if let Some(v) = query_arg(r.uri.query().unwrap_or(""), name) {
                        out.extend_from_slice(v.as_bytes());
                    }
                }
            }
        }
    }
}

fn query_arg<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl CookieAffinity {
    fn set_cookie(&self, value: &str) -> Option<HeaderValue> {
        let mut s = format!("{}={value}; Path={}; HttpOnly", self.name, self.path);
        if let Some(age) = self.max_age {
            s.push_str(&format!("; Max-Age={age}"));
        }
        if let Some(secs) = self.expires {
            let at = SystemTime::now() + Duration::from_secs(secs);
            s.push_str(&format!("; Expires={}", httpdate::fmt_http_date(at)));
        }
        if let Some(same_site) = self.same_site {
            s.push_str(&format!("; SameSite={same_site}"));
        }
        if self.secure {
            s.push_str("; Secure");
        }
        HeaderValue::from_str(&s).ok()
    }
}

/// The identity of an endpoint in cookies and hashes: its address's text.
pub fn endpoint_id(addr: &std::net::SocketAddr) -> Vec<u8> {
    addr.to_string().into_bytes()
}

/// A short, stable cookie value naming an endpoint.
fn endpoint_token(id: &[u8]) -> String {
    format!("{:016x}", stable_hash(&[b"portico-endpoint", id]))
}

impl Balance {
    /// The first endpoint for this request among `ids` (not empty), given the round-robin
    /// counter's next value and the endpoints' load.
    pub fn choose(
        &self,
        ids: &[Vec<u8>],
        loads: &[EndpointLoad],
        next_rr: impl FnOnce() -> usize,
        req: &RequestKey<'_>,
    ) -> Choice {
        let n = ids.len();
        let first = match self {
            Balance::RoundRobin => next_rr() % n,
            Balance::Ewma => {
                if n == 1 || loads.len() != n {
                    0
                } else {
                    let a = fastrand::usize(..n);
                    let mut b = fastrand::usize(..n - 1);
                    if b >= a {
                        b += 1;
                    }
                    if loads[b].score() < loads[a].score() {
                        b
                    } else {
                        a
                    }
                }
            }
            Balance::Hash(key) => {
                let mut buf = Vec::with_capacity(64);
                key.render(req, &mut buf);
                rendezvous(&buf, ids)
            }
            Balance::Cookie(c) => return c.choose(ids, next_rr, req),
        };
        Choice {
            first,
            set_cookie: None,
        }
    }
}

impl CookieAffinity {
    fn choose(
        &self,
        ids: &[Vec<u8>],
        next_rr: impl FnOnce() -> usize,
        req: &RequestKey<'_>,
    ) -> Choice {
        let sent = cookie(req.headers, &self.name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit()));
        if self.persistent {
            if let Some(v) = sent {
                if let Some(i) = ids.iter().position(|id| endpoint_token(id) == v) {
                    return Choice {
                        first: i,
                        set_cookie: None,
                    };
                }
            }
            let first = next_rr() % ids.len();
            return Choice {
                first,
                set_cookie: self.set_cookie(&endpoint_token(&ids[first])),
            };
        }
        match sent {
            Some(token) => Choice {
                first: rendezvous(token.as_bytes(), ids),
                set_cookie: None,
            },
            None => {
                let token = format!("{:016x}", fastrand::u64(..));
                Choice {
                    first: rendezvous(token.as_bytes(), ids),
                    set_cookie: self.set_cookie(&token),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<Vec<u8>> {
        (1..=n)
            .map(|i| endpoint_id(&std::net::SocketAddr::from(([10, 0, 0, i], 80))))
            .collect()
    }

    fn req<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> RequestKey<'a> {
        RequestKey {
            uri,
            headers,
            client: "192.0.2.1".parse().unwrap(),
        }
    }

    #[test]
    fn hashing_is_sticky_and_moves_few_keys_on_scale_up() {
        let key = HashKey(vec![KeyPart::RequestUri]);
        let headers = HeaderMap::new();
        let (four, five) = (ids(4), ids(5));
        let mut moved = 0;
        for i in 0..1000 {
            let uri: Uri = format!("/item/{i}").parse().unwrap();
            let b = Balance::Hash(HashKey(vec![KeyPart::RequestUri]));
            let a = b.choose(&four, &[], || 0, &req(&uri, &headers)).first;
            let again = b.choose(&four, &[], || 7, &req(&uri, &headers)).first;
            assert_eq!(a, again);
            let after = Balance::Hash(HashKey(vec![KeyPart::RequestUri]))
                .choose(&five, &[], || 0, &req(&uri, &headers))
                .first;
            if after != a {
                assert_eq!(after, 4, "keys only move to the new endpoint");
                moved += 1;
            }
        }
        assert!((120..280).contains(&moved), "{moved} of 1000 moved");
        drop(key);
    }

    #[test]
    fn removing_one_of_n_endpoints_moves_about_one_nth_of_keys() {
        let (five, four) = (ids(5), ids(4));
        let headers = HeaderMap::new();
        let mut moved = 0;
        for i in 0..2000 {
            let uri: Uri = format!("/k/{i}").parse().unwrap();
            let b = Balance::Hash(HashKey(vec![KeyPart::RequestUri]));
            let before = b.choose(&five, &[], || 0, &req(&uri, &headers)).first;
            let after = b.choose(&four, &[], || 0, &req(&uri, &headers)).first;
            if before != after {
                assert_eq!(before, 4, "only keys of the removed endpoint move");
                moved += 1;
            }
        }
        // 1/5 of 2000 = 400, within 3σ.
        assert!((340..=460).contains(&moved), "{moved}");
    }

    #[test]
    fn ewma_prefers_the_faster_endpoint() {
        let loads: Vec<EndpointLoad> = (0..2).map(|_| EndpointLoad::default()).collect();
        for _ in 0..10 {
            loads[0].start();
            loads[0].finish(Duration::from_millis(50));
            loads[1].start();
            loads[1].finish(Duration::from_millis(1));
        }
        let uri: Uri = "/".parse().unwrap();
        let headers = HeaderMap::new();
        let picks = (0..100)
            .filter(|_| {
                Balance::Ewma
                    .choose(&ids(2), &loads, || 0, &req(&uri, &headers))
                    .first
                    == 1
            })
            .count();
        assert_eq!(
            picks, 100,
            "with two endpoints, both are compared every time"
        );
    }

    #[test]
    fn cookie_affinity_sets_then_follows_the_cookie() {
        for persistent in [true, false] {
            let c = Balance::Cookie(CookieAffinity {
                name: "route".into(),
                persistent,
                path: "/".into(),
                max_age: Some(60),
                expires: None,
                same_site: Some("Lax"),
                secure: true,
            });
            let uri: Uri = "/".parse().unwrap();
            let mut headers = HeaderMap::new();
            let first = c.choose(&ids(3), &[], || 1, &req(&uri, &headers));
            let set = first.set_cookie.unwrap();
            let text = set.to_str().unwrap();
            assert!(text.starts_with("route="), "{text}");
            assert!(
                text.contains("Max-Age=60")
                    && text.contains("SameSite=Lax")
                    && text.contains("Secure")
            );
            let value = text.split(';').next().unwrap();
            headers.insert(http::header::COOKIE, HeaderValue::from_str(value).unwrap());
            for rr in 0..5 {
                let again = c.choose(&ids(3), &[], || rr, &req(&uri, &headers));
                assert_eq!(again.first, first.first);
                assert!(again.set_cookie.is_none());
            }
        }
    }

    #[test]
    fn hash_keys_render_variables() {
        let key = HashKey(vec![
            KeyPart::Host,
            KeyPart::Text("|".into()),
            KeyPart::Arg("user".into()),
            KeyPart::Header(http::header::HeaderName::from_static("x-tenant")),
        ]);
        let uri: Uri = "http://h.com/p?a=1&user=bob".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", HeaderValue::from_static("t1"));
        let mut out = Vec::new();
        key.render(&req(&uri, &headers), &mut out);
        assert_eq!(out, b"h.com|bobt1");
    }
}
