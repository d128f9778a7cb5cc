//! Basic authentication (`auth-type: basic`): htpasswd entries parsed once when the snapshot
//! is built, checked in constant time on the request path.
//!
//! Hashes: bcrypt (`$2y$`, `$2a$`, `$2b$`), Apache's MD5 (`$apr1$`) and `{SHA}` (SHA-1),
//! the ones `htpasswd` writes. bcrypt is slow on purpose: it runs on tokio's blocking pool,
//! and a successful check is remembered for a short while (by a hash of user, password and
//! entry) so a client sending the same credentials on every request pays it once.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The highest bcrypt cost accepted: each step doubles the work, and cost 31 would take
/// minutes per request.
pub const MAX_BCRYPT_COST: u32 = 14;

/// bcrypt checks running at once, process-wide.
pub const BCRYPT_CONCURRENCY: usize = 4;
static BCRYPT_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(BCRYPT_CONCURRENCY);

/// How long a successful bcrypt check is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// How many successful bcrypt checks are remembered per route.
pub const CACHE_ENTRIES: usize = 256;

/// One user's stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A whole bcrypt hash (`$2y$10$...`).
    Bcrypt(String),
    /// Apache MD5: the salt and the whole `$apr1$salt$hash` string.
    Apr1 { salt: String, full: String },
    /// SHA-1 of the password.
    Sha1([u8; 20]),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Bcrypt(_) => "Bcrypt(..)",
            Credential::Apr1 { .. } => "Apr1(..)",
            Credential::Sha1(_) => "Sha1(..)",
        })
    }
}

impl Credential {
    /// Parses a stored hash as htpasswd writes it.
    pub fn parse(hash: &str) -> Result<Credential, String> {
        let hash = hash.trim();
        if let Some(b64) = hash.strip_prefix("{SHA}") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| "the {SHA} hash is not base64".to_string())?;
            let digest: [u8; 20] = bytes
                .try_into()
                .map_err(|_| "the {SHA} hash is not 20 bytes".to_string())?;
            return Ok(Credential::Sha1(digest));
        }
        if let Some(rest) = hash.strip_prefix("$apr1$") {
            let (salt, encoded) = rest
                .split_once('$')
                .ok_or_else(|| "an $apr1$ hash needs a salt and a hash".to_string())?;
            if salt.is_empty() || salt.len() > 8 || !salt.bytes().all(is_crypt64) {
                return Err("the $apr1$ salt must be 1 to 8 characters of [./0-9A-Za-z]".into());
            }
            if encoded.len() != 22 || !encoded.bytes().all(is_crypt64) {
                return Err("the $apr1$ hash must be 22 characters of [./0-9A-Za-z]".into());
            }
            return Ok(Credential::Apr1 {
                salt: salt.to_string(),
                full: hash.to_string(),
            });
        }
        if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
            let parts: bcrypt::HashParts = hash
                .parse()
                .map_err(|e| format!("not a valid bcrypt hash: {e}"))?;
            if parts.get_cost() > MAX_BCRYPT_COST {
                return Err(format!(
                    "bcrypt cost {} is above {MAX_BCRYPT_COST} (too slow to check per request)",
                    parts.get_cost()
                ));
            }
            return Ok(Credential::Bcrypt(hash.to_string()));
        }
        if hash.starts_with("$1$") || hash.starts_with("$5$") || hash.starts_with("$6$") {
            return Err(
                "crypt(3) hashes ($1$, $5$, $6$) are not supported; use bcrypt (htpasswd -B)"
                    .into(),
            );
        }
        if hash.starts_with("{SSHA}") || hash.starts_with("{PLAIN}") {
            return Err(
                "only {SHA} of the {scheme} hashes is supported; use bcrypt (htpasswd -B)".into(),
            );
        }
        Err("unknown hash: expected bcrypt ($2y$), $apr1$ or {SHA} (plain text and DES crypt are refused)".into())
    }

    fn cheap_check(&self, password: &[u8]) -> Option<bool> {
        match self {
            Credential::Sha1(digest) => {
                let got: [u8; 20] = Sha1::digest(password).into();
                Some(bool::from(got.ct_eq(digest)))
            }
            Credential::Apr1 { salt, full } => {
                let got = apr1(password, salt.as_bytes());
                Some(bool::from(got.as_bytes().ct_eq(full.as_bytes())))
            }
            Credential::Bcrypt(_) => None,
        }
    }
}

fn is_crypt64(b: u8) -> bool {
    b == b'.' || b == b'/' || b.is_ascii_alphanumeric()
}

/// A line of an htpasswd file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub why: String,
}

/// Parses an htpasswd file (`user:hash` per line; blank lines and `#` comments skipped).
/// Lines that cannot be used are returned as errors; the others still work.
pub fn parse_htpasswd(text: &str) -> (Vec<(String, Credential)>, Vec<LineError>) {
    let mut users = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |why: String| LineError { line: i + 1, why };
        let Some((user, hash)) = line.split_once(':') else {
            errors.push(err("expected user:hash".into()));
            continue;
        };
        match check_user(user).and_then(|()| Credential::parse(hash)) {
            Ok(c) => users.push((user.to_string(), c)),
            Err(why) => errors.push(err(why)),
        }
    }
    (users, errors)
}

/// A user name usable in Basic credentials: not empty, no `:` and no control characters.
pub fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("empty user name".into());
    }
    if user.len() > 256 {
        return Err("user name longer than 256 bytes".into());
    }
    if user.contains(':') || user.chars().any(char::is_control) {
        return Err("user names cannot hold ':' or control characters".into());
    }
    Ok(())
}

/// The users of one route and their hashes, with the challenge sent on 401.
pub struct BasicAuth {
    /// `Basic realm="..."`.
    pub challenge: HeaderValue,
    users: HashMap<String, Credential>,
    cache: Mutex<HashMap<[u8; 32], Instant>>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("challenge", &self.challenge)
            .field("users", &self.users.len())
            .finish()
    }
}

/// What a request's credentials are worth.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Missing or wrong credentials: 401 with the challenge.
    Deny,
}

impl BasicAuth {
    /// `realm` is sanitised: quotes, backslashes and control characters are dropped.
    pub fn new(realm: &str, users: Vec<(String, Credential)>) -> BasicAuth {
        let clean: String = realm
            .chars()
            .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
            .take(128)
            .collect();
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{clean}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"\""));
        BasicAuth {
            challenge,
            users: users.into_iter().collect(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Checks the request's `Authorization` header.
    pub async fn check(&self, headers: &HeaderMap) -> Verdict {
        let Some((user, password)) = credentials(headers) else {
            return Verdict::Deny;
        };
        let Some(cred) = self.users.get(&user) else {
            // Spend about what a cheap check costs, so unknown users are not told apart by
            // timing from known users with cheap hashes.
            let _ = Credential::Sha1([0; 20]).cheap_check(&password);
            return Verdict::Deny;
        };
        if let Some(ok) = cred.cheap_check(&password) {
            return if ok { Verdict::Allow } else { Verdict::Deny };
        }
        let Credential::Bcrypt(hash) = cred else {
            return Verdict::Deny;
        };
        let key = cache_key(&user, &password, hash);
        if self.remembered(&key) {
            return Verdict::Allow;
        }
        // At most a few bcrypt checks at once, process-wide: a flood of wrong passwords
        // queues here instead of filling the blocking pool and every core.
        let Ok(_slot) = BCRYPT_SLOTS.acquire().await else {
            return Verdict::Deny;
        };
        let hash = hash.clone();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if !ok {
            return Verdict::Deny;
        }
        self.remember(key);
        Verdict::Allow
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        let Ok(cache) = self.cache.lock() else {
            return false;
        };
        cache.get(key).is_some_and(|t| t.elapsed() < CACHE_TTL)
    }

    fn remember(&self, key: [u8; 32]) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, t| t.elapsed() < CACHE_TTL);
        }
        if cache.len() >= CACHE_ENTRIES {
            // Still full of fresh entries: drop the oldest.
            if let Some(oldest) = cache.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                cache.remove(&oldest);
            }
        }
        cache.insert(key, Instant::now());
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

fn cache_key(user: &str, password: &[u8], entry: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [user.as_bytes(), password, entry.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The user and password of a `Basic` `Authorization` header.
pub fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let encoded = rest.trim_ascii();
    if encoded.len() > 4096 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_string();
    Some((user, decoded[colon + 1..].to_vec()))
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Apache's MD5-based crypt: `$apr1$salt$hash`.
pub fn apr1(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let salt = &salt[..salt.len().min(8)];
    let alt: [u8; 16] = {
        let mut h = Md5::new();
        h.update(password);
        h.update(salt);
        h.update(password);
        h.finalize().into()
    };
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin: [u8; 16] = ctx.finalize().into();
    for round in 0..1000 {
        let mut h = Md5::new();
        if round & 1 == 1 {
            h.update(password);
        } else {
            h.update(fin);
        }
        if round % 3 != 0 {
            h.update(salt);
        }
        if round % 7 != 0 {
            h.update(password);
        }
        if round & 1 == 1 {
            h.update(fin);
        } else {
            h.update(password);
        }
        fin = h.finalize().into();
    }
    let mut out = String::with_capacity(37);
    out.push_str("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut push = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push(
            (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]),
            4,
        );
    }
    push(u32::from(fin[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    #[test]
    fn apr1_matches_openssl() {
        // `openssl passwd -apr1 -salt xxxxxxxx password`
        assert_eq!(
            apr1(b"password", b"xxxxxxxx"),
            "$apr1$xxxxxxxx$dxHfLAsjHkDRmG83UXe8K0"
        );
    }

    #[tokio::test]
    async fn each_hash_type_checks() {
        let sha = format!(
            "{{SHA}}{}",
            base64::engine::general_purpose::STANDARD.encode(Sha1::digest(b"s3cret"))
        );
        let bcrypt = bcrypt::hash("b-pass", 4).unwrap();
        let file = format!(
            "# comment\n\napr:{}\nsha:{sha}\r\nbc:{bcrypt}\n",
            apr1(b"a-pass", b"salt1234")
        );
        let (users, errors) = parse_htpasswd(&file);
        assert!(errors.is_empty(), "{errors:?}");
        let auth = BasicAuth::new("Area \"51\"\n", users);
        assert_eq!(auth.challenge, "Basic realm=\"Area 51\"");
        assert_eq!(auth.check(&basic("apr", "a-pass")).await, Verdict::Allow);
        assert_eq!(auth.check(&basic("apr", "a-pasS")).await, Verdict::Deny);
        assert_eq!(auth.check(&basic("sha", "s3cret")).await, Verdict::Allow);
        assert_eq!(auth.check(&basic("sha", "")).await, Verdict::Deny);
        assert_eq!(auth.check(&basic("bc", "wrong")).await, Verdict::Deny);
        assert_eq!(auth.cached(), 0, "failures are not remembered");
        assert_eq!(auth.check(&basic("bc", "b-pass")).await, Verdict::Allow);
        assert_eq!(auth.cached(), 1);
        assert_eq!(auth.check(&basic("bc", "b-pass")).await, Verdict::Allow);
        assert_eq!(auth.check(&basic("nobody", "b-pass")).await, Verdict::Deny);
        assert_eq!(auth.check(&HeaderMap::new()).await, Verdict::Deny);
    }

    #[test]
    fn hostile_htpasswd_lines() {
        let long_cost = "$2y$31$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234";
        let file = format!(
            "no-colon\n:$apr1$a$0123456789012345678901\nplain:password\ndes:abJnggxhB/yWI\n\
             md5:$1$salt$hash\nshort:$apr1$salt$tooshort\nbadsalt:$apr1$toolongsalt$0123456789012345678901\n\
             sha:{{SHA}}not-base64!!\nsha20:{{SHA}}AAAA\nbc:$2y$10$nothash\nslow:{long_cost}\n\
             ok:{{SHA}}{}\n",
            base64::engine::general_purpose::STANDARD.encode([7u8; 20])
        );
        let (users, errors) = parse_htpasswd(&file);
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].0, "ok");
        assert_eq!(
            errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            (1..=11).collect::<Vec<_>>(),
            "{errors:?}"
        );
        assert!(errors[10].why.contains("cost"), "{errors:?}");
        // No error message repeats the hash (they end up in events).
        for e in &errors {
            assert!(!e.why.contains("abJnggxhB"), "{e:?}");
        }
    }

    #[test]
    fn hostile_authorization_headers() {
        let mut h = HeaderMap::new();
        for v in [
            "Basic",
            "Basic !!!",
            "Bearer abc",
            "Basic dXNlcg==", // "user", no colon
            "basic",
        ] {
            h.insert(AUTHORIZATION, HeaderValue::from_static(v));
            assert_eq!(credentials(&h), None, "{v}");
        }
        h.insert(AUTHORIZATION, HeaderValue::from_static("bAsIc dTpwOnc="));
        assert_eq!(credentials(&h), Some(("u".into(), b"p:w".to_vec())));
    }

    #[test]
    fn the_cache_is_bounded() {
        let auth = BasicAuth::new("r", Vec::new());
        for i in 0..(CACHE_ENTRIES * 3) {
            auth.remember(cache_key(&i.to_string(), b"p", "e"));
        }
        assert!(auth.cached() <= CACHE_ENTRIES);
    }

    #[test]
    fn debug_hides_hashes() {
        let c = Credential::parse("$apr1$salt1234$0123456789012345678901").unwrap();
        assert_eq!(format!("{c:?}"), "Apr1(..)");
    }
}
