//! Client certificates (mutual TLS) per host, chosen by SNI.
//!
//! As ingress-nginx (nginx's `ssl_verify_client`), a host that asks for client certificates
//! does not fail the handshake: the certificate is requested, its possession proved during the
//! handshake (the CertificateVerify signature), and its chain checked once the handshake is
//! done. Requests then get `400 No required SSL certificate was sent` / `400 The SSL
//! certificate error` (or a redirect to the host's error page), or pass with the
//! `ssl-client-*` headers ingress-nginx sends upstream.
//!
//! Everything is built with the snapshot (roots, verifiers, header names); a handshake only
//! looks a host up, and a connection checks its chain once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::error::CertError;
use crate::routing::HostPattern;

/// `auth-tls-verify-client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerifyMode {
    /// A valid certificate is required.
    On,
    /// A certificate is optional; one that is sent must be valid.
    Optional,
    /// A certificate is optional and not required to be valid (the verdict goes upstream).
    OptionalNoCa,
}

impl VerifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::On => "on",
            VerifyMode::Optional => "optional",
            VerifyMode::OptionalNoCa => "optional_no_ca",
        }
    }
}

/// The client-certificate settings of one host.
pub struct ClientAuth {
    pub mode: VerifyMode,
    /// `auth-tls-verify-depth`: certificates above the client's one, up to and including the
    /// trusted CA (1: the client certificate is issued by a CA of the bundle).
    pub depth: u8,
    /// `auth-tls-pass-certificate-to-upstream`: send the PEM in `ssl-client-cert`.
    pub pass_certificate: bool,
    /// `auth-tls-error-page`: where refused requests are redirected instead of a 400.
    pub error_page: Option<HeaderValue>,
    /// The chain check; `None` when the CA bundle is unusable: the host refuses everything.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// What identifies these settings (the CA bundle's content, mode, depth, …): connections
    /// are only good for hosts whose settings have the same key.
    pub key: Arc<str>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("mode", &self.mode)
            .field("depth", &self.depth)
            .field("pass_certificate", &self.pass_certificate)
            .field("usable", &self.verifier.is_some())
            .field("key", &self.key)
            .finish()
    }
}

impl ClientAuth {
    /// Settings checking chains against `roots` (the CA bundle, DER).
    pub fn new(
        mode: VerifyMode,
        depth: u8,
        pass_certificate: bool,
        error_page: Option<HeaderValue>,
        roots: &[CertificateDer<'static>],
        key: impl Into<Arc<str>>,
    ) -> Result<Self, CertError> {
        let mut store = RootCertStore::empty();
        for root in roots {
            store
                .add(root.clone())
                .map_err(|e| CertError::Parse(format!("CA certificate: {e}")))?;
        }
        if store.is_empty() {
            return Err(CertError::NoCertificate);
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(store), crate::tls::provider())
                .build()
                .map_err(|e| CertError::Parse(e.to_string()))?;
        Ok(ClientAuth {
            mode,
            depth: depth.max(1),
            pass_certificate,
            error_page,
            verifier: Some(verifier),
            key: key.into(),
        })
    }

    /// Settings whose CA bundle could not be loaded: every request is refused (fail closed).
    pub fn unusable(key: impl Into<Arc<str>>) -> Self {
        ClientAuth {
            mode: VerifyMode::On,
            depth: 1,
            pass_certificate: false,
            error_page: None,
            verifier: None,
            key: key.into(),
        }
    }

    pub fn usable(&self) -> bool {
        self.verifier.is_some()
    }

    /// The handshake-time verifier: asks for a certificate, proves its possession, and leaves
    /// the chain to [`ClientAuth::verdict`]. `None` for unusable settings (no certificate is
    /// requested; requests are refused anyway).
    pub fn handshake_verifier(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.verifier
            .as_ref()
            .map(|inner| Arc::new(Deferred(inner.clone())) as Arc<dyn ClientCertVerifier>)
    }

    /// Checks the chain a client presented (leaf first), once per connection.
    pub fn verdict(&self, chain: Option<&[CertificateDer<'static>]>) -> Verdict {
        self.verdict_at(chain, UnixTime::now())
    }

    pub fn verdict_at(&self, chain: Option<&[CertificateDer<'static>]>, now: UnixTime) -> Verdict {
        let Some((leaf, rest)) = chain.and_then(|c| c.split_first()) else {
            return Verdict::none();
        };
        let Some(verifier) = &self.verifier else {
            return Verdict::failed("no usable CA", leaf, false);
        };
        // Depth 1: the leaf's issuer is a CA of the bundle; each level more allows one
        // intermediate the client sends.
        let intermediates = &rest[..rest.len().min(usize::from(self.depth) - 1)];
        match verifier.verify_client_cert(leaf, intermediates, now) {
            Ok(_) => Verdict::success(leaf, self.pass_certificate),
            Err(e) => Verdict::failed(failure_text(&e), leaf, self.pass_certificate),
        }
    }

    /// What a request under these settings gets, given its connection's verdict.
    pub fn decide(&self, verdict: &Verdict) -> Decision {
        if !self.usable() {
            return Decision::Unavailable;
        }
        let refused = match (self.mode, &verdict.status) {
            (_, Status::Success) => None,
            (VerifyMode::OptionalNoCa, _) => None,
            (VerifyMode::Optional, Status::None) => None,
            (VerifyMode::On, Status::None) => Some(Refusal::NoCertificate),
            (VerifyMode::On | VerifyMode::Optional, Status::Failed) => {
                Some(Refusal::InvalidCertificate)
            }
        };
        match (refused, &self.error_page) {
            (None, _) => Decision::Pass,
            (Some(_), Some(page)) => Decision::Redirect(page.clone()),
            (Some(r), None) => Decision::Refuse(r),
        }
    }
}

/// What a request to a host with client authentication gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Pass,
    Refuse(Refusal),
    /// `auth-tls-error-page`.
    Redirect(HeaderValue),
    /// The host's CA bundle is unusable: 503, as ingress-nginx for auth it cannot apply.
    Unavailable,
}

/// Why a request was refused (nginx's 496 and 495, answered as 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NoCertificate,
    InvalidCertificate,
}

impl Refusal {
    /// nginx's page text.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::NoCertificate => "400 No required SSL certificate was sent\n",
            Refusal::InvalidCertificate => "400 The SSL certificate error\n",
        }
    }
}

/// The outcome of the chain check, as nginx's `$ssl_client_verify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    None,
    Success,
    Failed,
}

/// A connection's client certificate, checked, with the header values sent upstream.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub status: Status,
    /// `ssl-client-verify`: `SUCCESS`, `NONE` or `FAILED:<reason>`.
    pub verify: HeaderValue,
    /// `ssl-client-subject-dn` and `ssl-client-issuer-dn` (RFC 2253, as nginx).
    pub subject: Option<HeaderValue>,
    pub issuer: Option<HeaderValue>,
    /// `ssl-client-cert`: the URL-encoded PEM, when the host passes it on.
    pub cert: Option<HeaderValue>,
}

impl Verdict {
    fn none() -> Self {
        Verdict {
            status: Status::None,
            verify: HeaderValue::from_static("NONE"),
            subject: None,
            issuer: None,
            cert: None,
        }
    }

    fn with_leaf(
        status: Status,
        verify: HeaderValue,
        leaf: &CertificateDer<'_>,
        pass: bool,
    ) -> Self {
        let (subject, issuer) = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
            Ok((_, x509)) => (
                HeaderValue::from_str(&rfc2253(x509.subject())).ok(),
                HeaderValue::from_str(&rfc2253(x509.issuer())).ok(),
            ),
            Err(_) => (None, None),
        };
        Verdict {
            status,
            verify,
            subject,
            issuer,
            cert: pass.then(|| escaped_pem(leaf)).flatten(),
        }
    }

    fn success(leaf: &CertificateDer<'_>, pass: bool) -> Self {
        Self::with_leaf(
            Status::Success,
            HeaderValue::from_static("SUCCESS"),
            leaf,
            pass,
        )
    }

    fn failed(reason: &str, leaf: &CertificateDer<'_>, pass: bool) -> Self {
        let verify = HeaderValue::from_str(&format!("FAILED:{reason}"))
            .unwrap_or_else(|_| HeaderValue::from_static("FAILED"));
        Self::with_leaf(Status::Failed, verify, leaf, pass)
    }
}

/// The request headers of client authentication (client-sent copies are removed).
pub static SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
pub static SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
pub static SSL_CLIENT_ISSUER_DN: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
pub static SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

impl Verdict {
    /// Replaces any client-sent `ssl-client-*` headers with this verdict's.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in [
            &SSL_CLIENT_VERIFY,
            &SSL_CLIENT_SUBJECT_DN,
            &SSL_CLIENT_ISSUER_DN,
            &SSL_CLIENT_CERT,
        ] {
            headers.remove(name);
        }
        headers.insert(SSL_CLIENT_VERIFY.clone(), self.verify.clone());
        for (name, value) in [
            (&SSL_CLIENT_SUBJECT_DN, &self.subject),
            (&SSL_CLIENT_ISSUER_DN, &self.issuer),
            (&SSL_CLIENT_CERT, &self.cert),
        ] {
            if let Some(v) = value {
                headers.insert(name.clone(), v.clone());
            }
        }
    }
}

/// OpenSSL's wording for the common failures (what nginx puts after `FAILED:`).
fn failure_text(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate is not yet valid",
            C::UnknownIssuer => "unable to get local issuer certificate",
            C::BadSignature => "certificate signature failure",
            C::Revoked => "certificate revoked",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "unsupported certificate purpose"
            }
            C::BadEncoding => "unable to decode certificate",
            _ => "certificate verify error",
        },
        _ => "certificate verify error",
    }
}

/// A distinguished name as RFC 2253 writes it (last RDN first, `,` between RDNs, `+` within
/// one); non-printable and non-ASCII bytes escaped as `\XX`, as OpenSSL does for nginx.
pub fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            let short = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.9" => "street",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.5" => "serialNumber",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                "1.2.840.113549.1.9.1" => "emailAddress",
                other => other,
            };
            out.push_str(short);
            out.push('=');
            match attr.as_str() {
                Ok(value) => escape_dn_value(value, &mut out),
                Err(_) => {
                    // Not a string type: the DER, in hex (RFC 2253 section 2.4).
                    out.push('#');
                    for b in attr.attr_value().data.iter() {
                        let _ = write!(out, "{b:02X}");
                    }
                }
            }
        }
    }
    out
}

fn escape_dn_value(value: &str, out: &mut String) {
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let special = matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';')
            || (i == 0 && (b == b'#' || b == b' '))
            || (i + 1 == bytes.len() && b == b' ');
        if special {
            out.push('\\');
            out.push(char::from(b));
        } else if !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// The certificate as PEM, URL-encoded (nginx's `$ssl_client_escaped_cert`).
fn escaped_pem(leaf: &CertificateDer<'_>) -> Option<HeaderValue> {
    let b64 = base64(leaf.as_ref());
    let mut pem = String::with_capacity(b64.len() + 80);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).ok()?);
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    HeaderValue::from_str(&url_encode(&pem)).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Requests a certificate without requiring one; proves possession; defers the chain check.
#[derive(Debug)]
struct Deferred(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Deferred {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Checked after the handshake (ClientAuth::verdict), so that a missing or bad
        // certificate gets nginx's HTTP answer instead of a failed handshake.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The request-level checks of client authentication, before a request is routed: a request
/// for a host asking for client certificates must come on a TLS connection opened for that
/// very host (SNI = Host, same settings), else 421 — HTTP/2 connection reuse and a Host that
/// differs from the SNI never bypass the certificate check. Then the host's verdict: refused
/// (400, a redirect to its error page, or 503 when its CA is unusable), or passed with the
/// `ssl-client-*` headers (client-sent copies replaced). `None`: go on and forward.
pub(crate) fn guard(
    shared: &crate::server::Shared,
    conn: &crate::forward::ConnInfo,
    session: Option<&crate::server::TlsSession>,
    req: &mut http::Request<hyper::body::Incoming>,
) -> Option<http::Response<crate::access_log::LoggedBody>> {
    use http::StatusCode;

    let live = shared.live.load();
    let live = live.as_ref()?;
    let table = &live.snapshot.client_auth;
    if table.is_empty() {
        return None;
    }
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(http::header::HOST)?.to_str().ok()?,
    };
    let host = crate::routing::normalize_host(raw);
    let auth = table.lookup(&host)?;
    let resp = match session {
        None => {
            // Plain HTTP: to HTTPS (ACME HTTP-01 challenges excepted), never served without
            // the certificate check.
            if req.uri().path().starts_with("/.well-known/acme-challenge/") {
                return None;
            }
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            match crate::respond::https_location(&host, shared.config.https_redirect_port, pq) {
                Some(loc) => crate::respond::redirect(StatusCode::PERMANENT_REDIRECT, loc),
                None => crate::respond::status_page(StatusCode::BAD_REQUEST),
            }
        }
        Some(session) => {
            let same = session.sni.as_deref() == Some(&*host);
            match &session.client {
                Some((opened, verdict)) if same && opened.key == auth.key => {
                    match auth.decide(verdict) {
                        Decision::Pass => {
                            verdict.apply(req.headers_mut());
                            return None;
                        }
                        Decision::Refuse(r) => {
                            let mut resp = crate::respond::status_page(StatusCode::BAD_REQUEST);
                            *resp.body_mut() = crate::body::ProxyBody::text(r.text().to_string());
                            resp
                        }
                        Decision::Redirect(page) => {
                            crate::respond::redirect(StatusCode::FOUND, page)
                        }
                        Decision::Unavailable => {
                            crate::respond::status_page(StatusCode::SERVICE_UNAVAILABLE)
                        }
                    }
                }
                _ => crate::respond::status_page(StatusCode::MISDIRECTED_REQUEST),
            }
        }
    };
    // Answered here: logged and counted as every other answer (no route, no upstream).
    let tracing = &shared.config.tracing;
    let trace = crate::trace_context::apply(req.headers_mut(), tracing.sample_new);
    let log = &*conn.access_log;
    let head = crate::access_log::Head::capture(
        shared.config.access_log,
        log,
        tracing,
        req,
        std::time::Instant::now(),
        trace,
    );
    let outcome = crate::access_log::Outcome {
        status: resp.status().as_u16(),
        client: crate::client_addr::client_ip(conn.peer.ip(), req.headers(), &conn.trusted),
        target: None,
        upstream: None,
        request_id: crate::headers::request_id(req.headers()),
        tls: conn.tls,
    };
    let (parts, body) = resp.into_parts();
    Some(http::Response::from_parts(
        parts,
        head.respond(&shared.metrics, log, body, outcome),
    ))
}

/// Hosts with client authentication: exact names, then wildcards.
#[derive(Clone, Debug, Default)]
pub struct ClientAuthTable {
    exact: HashMap<String, Arc<ClientAuth>>,
    wildcard: HashMap<String, Arc<ClientAuth>>,
}

impl ClientAuthTable {
    /// Is there an entry for exactly `pattern`?
    pub fn contains(&self, pattern: &HostPattern) -> bool {
        match pattern {
            HostPattern::Exact(h) => self.exact.contains_key(h),
            HostPattern::Wildcard(s) => self.wildcard.contains_key(s),
            HostPattern::Any => false,
        }
    }

    pub fn new(entries: impl IntoIterator<Item = (HostPattern, Arc<ClientAuth>)>) -> Self {
        let mut table = ClientAuthTable::default();
        for (pattern, auth) in entries {
            match pattern {
                HostPattern::Exact(h) => {
                    table.exact.insert(h, auth);
                }
                HostPattern::Wildcard(s) => {
                    table.wildcard.insert(s, auth);
                }
                HostPattern::Any => {}
            }
        }
        table
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The settings of a host (lowercase, without port), if it asks for client certificates.
    #[inline]
    pub fn lookup(&self, host: &str) -> Option<&Arc<ClientAuth>> {
        if self.is_empty() {
            return None;
        }
        if let Some(a) = self.exact.get(host) {
            return Some(a);
        }
        let (first, suffix) = host.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.wildcard.get(suffix)
    }

    /// Every host's settings, sorted by host.
    pub fn hosts(&self) -> Vec<(HostPattern, &Arc<ClientAuth>)> {
        let mut out: Vec<_> = self
            .exact
            .iter()
            .map(|(h, a)| (HostPattern::Exact(h.clone()), a))
            .chain(
                self.wildcard
                    .iter()
                    .map(|(h, a)| (HostPattern::Wildcard(h.clone()), a)),
            )
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        ca: rcgen::Certificate,
        params: rcgen::CertificateParams,
        ca_key: rcgen::KeyPair,
    }

    fn ca(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        Pki {
            ca: params.self_signed(&key).unwrap(),
            params,
            ca_key: key,
        }
    }

    fn client(pki: &Pki, cn: &str, expired: bool) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc");
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&pki.params, &pki.ca_key);
        params.signed_by(&key, &issuer).unwrap().der().clone()
    }

    fn auth(pki: &Pki, mode: VerifyMode) -> ClientAuth {
        ClientAuth::new(mode, 1, true, None, &[pki.ca.der().clone()], "k").unwrap()
    }

    #[test]
    fn verdicts_and_decisions() {
        let pki = ca("Test CA");
        let other = ca("Other CA");
        let on = auth(&pki, VerifyMode::On);
        let good = [client(&pki, "alice", false)];
        let v = on.verdict(Some(&good));
        assert_eq!(v.status, Status::Success);
        assert_eq!(v.verify, "SUCCESS");
        assert_eq!(v.subject.as_ref().unwrap(), "O=Acme\\, Inc,CN=alice");
        assert_eq!(v.issuer.as_ref().unwrap(), "CN=Test CA");
        let pem = v.cert.as_ref().unwrap().to_str().unwrap();
        assert!(pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{pem}");
        assert_eq!(on.decide(&v), Decision::Pass);

        let expired = [client(&pki, "old", true)];
        let v = on.verdict(Some(&expired));
        assert_eq!(v.verify, "FAILED:certificate has expired");
        assert_eq!(on.decide(&v), Decision::Refuse(Refusal::InvalidCertificate));

        let foreign = [client(&other, "mallory", false)];
        let v = on.verdict(Some(&foreign));
        assert_eq!(v.verify, "FAILED:unable to get local issuer certificate");
        let none = on.verdict(None);
        assert_eq!(none.verify, "NONE");
        assert_eq!(on.decide(&none), Decision::Refuse(Refusal::NoCertificate));

        let optional = auth(&pki, VerifyMode::Optional);
        assert_eq!(optional.decide(&none), Decision::Pass);
        assert_eq!(
            optional.decide(&optional.verdict(Some(&foreign))),
            Decision::Refuse(Refusal::InvalidCertificate)
        );
        let no_ca = auth(&pki, VerifyMode::OptionalNoCa);
        assert_eq!(no_ca.decide(&no_ca.verdict(Some(&foreign))), Decision::Pass);

        let mut paged = auth(&pki, VerifyMode::On);
        paged.error_page = Some(HeaderValue::from_static("https://err.example/"));
        assert!(matches!(paged.decide(&none), Decision::Redirect(_)));
        assert_eq!(
            ClientAuth::unusable("x").decide(&v),
            Decision::Unavailable,
            "an unusable CA refuses even valid certificates"
        );
    }

    #[test]
    fn depth_limits_intermediates() {
        let root = ca("Root");
        // An intermediate CA signed by the root.
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Intermediate");
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&root.params, &root.ca_key);
        let inter = Pki {
            ca: params.signed_by(&key, &issuer).unwrap(),
            params,
            ca_key: key,
        };
        let chain = [client(&inter, "bob", false), inter.ca.der().clone()];
        let shallow = auth(&root, VerifyMode::On);
        assert_eq!(shallow.verdict(Some(&chain)).status, Status::Failed);
        let deep = ClientAuth::new(
            VerifyMode::On,
            2,
            false,
            None,
            &[root.ca.der().clone()],
            "k",
        )
        .unwrap();
        let v = deep.verdict(Some(&chain));
        assert_eq!(v.status, Status::Success);
        assert!(v.cert.is_none());
    }

    #[test]
    fn headers_replace_client_copies() {
        let pki = ca("Test CA");
        let on = auth(&pki, VerifyMode::Optional);
        let mut h = http::HeaderMap::new();
        h.insert("ssl-client-verify", HeaderValue::from_static("SUCCESS"));
        h.insert(
            "ssl-client-subject-dn",
            HeaderValue::from_static("CN=admin"),
        );
        h.insert("ssl-client-cert", HeaderValue::from_static("forged"));
        on.verdict(None).apply(&mut h);
        assert_eq!(h.get("ssl-client-verify").unwrap(), "NONE");
        assert!(h.get("ssl-client-subject-dn").is_none());
        assert!(h.get("ssl-client-cert").is_none());
    }

    #[test]
    fn encoders() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(url_encode("a b+/=\n-_.~"), "a%20b%2B%2F%3D%0A-_.~");
        let mut s = String::new();
        escape_dn_value(" #a,b\u{e9}\n ", &mut s);
        assert_eq!(s, "\\ #a\\,b\\C3\\A9\\0A\\ ");
    }

    #[test]
    fn unusable_bundles_are_errors() {
        assert!(ClientAuth::new(VerifyMode::On, 1, false, None, &[], "k").is_err());
        let junk = CertificateDer::from(vec![1u8, 2, 3]);
        assert!(ClientAuth::new(VerifyMode::On, 1, false, None, &[junk], "k").is_err());
    }

    #[test]
    fn table_lookup() {
        let a = Arc::new(ClientAuth::unusable("a"));
        let w = Arc::new(ClientAuth::unusable("w"));
        let t = ClientAuthTable::new([
            (HostPattern::parse(Some("a.foo.com")), a.clone()),
            (HostPattern::parse(Some("*.foo.com")), w.clone()),
        ]);
        assert!(Arc::ptr_eq(t.lookup("a.foo.com").unwrap(), &a));
        assert!(Arc::ptr_eq(t.lookup("b.foo.com").unwrap(), &w));
        assert!(t.lookup("foo.com").is_none());
        assert!(t.lookup("x.b.foo.com").is_none());
    }
}
