//! Canaries: alternative backends for a route, chosen per request by header, cookie or weight.
//!
//! ingress-nginx's precedence, per canary: a header decides first (`always`/`never`, an exact
//! value or a pattern), then a cookie (`always`/`never`), then the weight. Unlike
//! ingress-nginx, a route may have several canaries: forced ones are taken in order (oldest
//! Ingress first), and the weights share one draw so that their fractions add up.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE};
use regex::Regex;

use crate::backend::Target;

/// One canary of a route.
#[derive(Debug)]
pub struct Canary {
    pub target: Arc<Target>,
    pub header: Option<CanaryHeader>,
    /// A cookie whose value `always` or `never` decides.
    pub cookie: Option<String>,
    /// `weight` out of `total` requests, for requests no header or cookie decided.
    pub weight: u32,
    pub total: u32,
}

/// A request header that routes to the canary.
#[derive(Debug)]
pub struct CanaryHeader {
    pub name: HeaderName,
    pub matches: HeaderMatch,
}

/// How the canary header's value is read.
#[derive(Debug)]
pub enum HeaderMatch {
    /// `always` routes to the canary, `never` away from it; other values fall through.
    AlwaysNever,
    /// This exact value routes to the canary; others fall through.
    Value(HeaderValue),
    /// A value matching this regex routes to the canary; others fall through.
    Pattern(Regex),
}

impl Canary {
    /// `Some(true)`: this request goes to the canary; `Some(false)`: it must not;
    /// `None`: the weight decides.
    fn forced(&self, headers: &HeaderMap) -> Option<bool> {
        if let Some(h) = &self.header {
            if let Some(v) = headers.get(&h.name) {
                match &h.matches {
                    HeaderMatch::Value(want) if v == want => return Some(true),
                    HeaderMatch::Pattern(re) if v.to_str().is_ok_and(|s| re.is_match(s)) => {
                        return Some(true)
                    }
                    HeaderMatch::AlwaysNever if v == "always" => return Some(true),
                    HeaderMatch::AlwaysNever if v == "never" => return Some(false),
                    _ => {}
                }
            }
        }
        if let Some(name) = &self.cookie {
            match cookie(headers, name) {
                Some(b"always") => return Some(true),
                Some(b"never") => return Some(false),
                _ => {}
            }
        }
        None
    }
}

/// The target for one request: a canary, or `primary`.
#[inline]
pub fn choose<'a>(
    primary: &'a Arc<Target>,
    canaries: &'a [Canary],
    headers: &HeaderMap,
) -> &'a Arc<Target> {
    if canaries.is_empty() {
        return primary;
    }
    let mut weighted = false;
    for c in canaries {
        match c.forced(headers) {
            Some(true) => return &c.target,
            Some(false) => {}
            None => weighted |= c.weight > 0,
        }
    }
    if !weighted {
        return primary;
    }
    let draw = fastrand::f64();
    let mut upto = 0.0;
    for c in canaries {
        if c.weight == 0 || c.total == 0 || c.forced(headers) == Some(false) {
            continue;
        }
        upto += f64::from(c.weight) / f64::from(c.total);
        if draw < upto {
            return &c.target;
        }
    }
    primary
}

/// The value of cookie `name`, from any `Cookie` header.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    for h in headers.get_all(COOKIE) {
        for pair in h.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            if let Some(rest) = pair.strip_prefix(name.as_bytes()) {
                if let Some(value) = rest.strip_prefix(b"=") {
                    return Some(value);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::testing::target;

    fn canary(name: &str, header: Option<HeaderMatch>, cookie: bool, weight: u32) -> Canary {
        Canary {
            target: target(name),
            header: header.map(|matches| CanaryHeader {
                name: HeaderName::from_static("x-canary"),
                matches,
            }),
            cookie: cookie.then(|| "canary".to_string()),
            weight,
            total: 100,
        }
    }

    fn pick(primary: &Arc<Target>, canaries: &[Canary], headers: &[(&str, &str)]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        choose(primary, canaries, &h).service.clone()
    }

    #[test]
    fn header_then_cookie_then_weight() {
        let p = target("primary");
        let c = [canary("canary", Some(HeaderMatch::AlwaysNever), true, 100)];
        assert_eq!(pick(&p, &c, &[("x-canary", "never")]), "primary");
        assert_eq!(
            pick(
                &p,
                &c,
                &[("x-canary", "never"), ("cookie", "canary=always")]
            ),
            "primary"
        );
        assert_eq!(
            pick(&p, &c, &[("x-canary", "other"), ("cookie", "canary=never")]),
            "primary"
        );
        assert_eq!(pick(&p, &c, &[("x-canary", "other")]), "canary");
        let c = [canary("canary", Some(HeaderMatch::AlwaysNever), true, 0)];
        assert_eq!(pick(&p, &c, &[]), "primary");
        assert_eq!(pick(&p, &c, &[("cookie", "a=b; canary=always")]), "canary");
    }

    #[test]
    fn header_value_and_pattern() {
        let p = target("primary");
        let v = [canary(
            "v",
            Some(HeaderMatch::Value(HeaderValue::from_static("beta"))),
            false,
            0,
        )];
        assert_eq!(pick(&p, &v, &[("x-canary", "beta")]), "v");
        assert_eq!(pick(&p, &v, &[("x-canary", "always")]), "primary");
        let re = Regex::new("^(?:be.*)$").unwrap();
        let pat = [canary("pat", Some(HeaderMatch::Pattern(re)), false, 0)];
        assert_eq!(pick(&p, &pat, &[("x-canary", "better")]), "pat");
        assert_eq!(pick(&p, &pat, &[("x-canary", "alpha")]), "primary");
    }

    #[test]
    fn several_canaries_share_one_draw() {
        let p = target("primary");
        let c = [canary("a", None, false, 20), canary("b", None, false, 30)];
        let mut counts = std::collections::HashMap::new();
        for _ in 0..10_000 {
            *counts.entry(pick(&p, &c, &[])).or_insert(0) += 1;
        }
        let share = |n: &str| f64::from(counts[n]) / 10_000.0;
        assert!((share("a") - 0.2).abs() < 0.03, "{counts:?}");
        assert!((share("b") - 0.3).abs() < 0.03, "{counts:?}");
        assert!((share("primary") - 0.5).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn a_weight_of_20_percent_lands_within_three_sigma() {
        let p = target("primary");
        let c = [canary("c", None, false, 20)];
        let n = 2000.0;
        let hits = (0..2000).filter(|_| pick(&p, &c, &[]) == "c").count() as f64;
        let sigma = (n * 0.2 * 0.8_f64).sqrt();
        assert!((hits - n * 0.2).abs() <= 3.0 * sigma, "{hits} of {n}");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("canaryx=always; canary=never"),
        );
        assert_eq!(cookie(&h, "canary"), Some(&b"never"[..]));
        assert_eq!(cookie(&h, "other"), None);
    }
}
