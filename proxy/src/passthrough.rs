//! TLS passthrough (`ssl-passthrough`): connections whose ClientHello names a passthrough host
//! go, unterminated, to the host's backend; the bytes already read are replayed first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::backend::Backend;
use crate::routing::HostPattern;

/// A passthrough host's backend, and who configured it.
#[derive(Debug)]
pub struct PassthroughTarget {
    pub backend: Arc<Backend>,
    /// `namespace/ingress`, for logs.
    pub ingress: String,
}

/// Passthrough hosts: exact names, then single-label wildcards.
#[derive(Clone, Debug, Default)]
pub struct PassthroughTable {
    exact: HashMap<String, Arc<PassthroughTarget>>,
    wildcard: HashMap<String, Arc<PassthroughTarget>>,
}

impl PassthroughTable {
    /// Is there an entry for exactly `pattern`?
    pub fn contains(&self, pattern: &HostPattern) -> bool {
        match pattern {
            HostPattern::Exact(h) => self.exact.contains_key(h),
            HostPattern::Wildcard(s) => self.wildcard.contains_key(s),
            HostPattern::Any => false,
        }
    }

    pub fn new(entries: impl IntoIterator<Item = (HostPattern, Arc<PassthroughTarget>)>) -> Self {
        let mut table = PassthroughTable::default();
        for (pattern, target) in entries {
            match pattern {
                HostPattern::Exact(h) => {
                    table.exact.insert(h, target);
                }
                HostPattern::Wildcard(s) => {
                    table.wildcard.insert(s, target);
                }
                HostPattern::Any => {}
            }
        }
        table
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The target of a server name (lowercase).
    pub fn lookup(&self, sni: &str) -> Option<&Arc<PassthroughTarget>> {
        if let Some(t) = self.exact.get(sni) {
            return Some(t);
        }
        let (first, suffix) = sni.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.wildcard.get(suffix)
    }

    /// Every passthrough host, sorted.
    pub fn hosts(&self) -> Vec<(HostPattern, &Arc<PassthroughTarget>)> {
        let mut out: Vec<_> = self
            .exact
            .iter()
            .map(|(h, t)| (HostPattern::Exact(h.clone()), t))
            .chain(
                self.wildcard
                    .iter()
                    .map(|(h, t)| (HostPattern::Wildcard(h.clone()), t)),
            )
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Connects to the target's endpoints in balancing order and splices the client to the first
/// that answers; `hello` (the bytes already read from the client) goes first.
pub async fn splice<S>(
    mut client: S,
    hello: Vec<u8>,
    target: &PassthroughTarget,
    sni: &str,
    peer: SocketAddr,
    connect_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut upstream = None;
    for (_, addr, _) in target.backend.pick() {
        match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                upstream = Some((s, addr));
                break;
            }
            Ok(Err(e)) => debug!(%addr, error = %e, "passthrough connect failed"),
            Err(_) => debug!(%addr, "passthrough connect timed out"),
        }
    }
    let Some((mut server, addr)) = upstream else {
        info!(%peer, sni, backend = %target.backend.name, ingress = %target.ingress,
            "passthrough: no endpoint answered; closing");
        return;
    };
    let result = async {
        server.write_all(&hello).await?;
        tokio::io::copy_bidirectional(&mut client, &mut server).await
    }
    .await;
    match result {
        Ok((up, down)) => info!(%peer, sni, upstream = %addr, ingress = %target.ingress,
            bytes_in = up + hello.len() as u64, bytes_out = down, "passthrough connection"),
        Err(e) => info!(%peer, sni, upstream = %addr, ingress = %target.ingress, error = %e,
            "passthrough connection ended with an error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Endpoints;

    #[test]
    fn lookup_exact_then_wildcard() {
        let t = |name: &str| {
            Arc::new(PassthroughTarget {
                backend: Arc::new(Backend::new(name, Endpoints::Static(vec![]))),
                ingress: "ns/i".into(),
            })
        };
        let table = PassthroughTable::new([
            (HostPattern::parse(Some("a.foo.com")), t("a")),
            (HostPattern::parse(Some("*.foo.com")), t("w")),
        ]);
        assert_eq!(table.lookup("a.foo.com").unwrap().backend.name, "a");
        assert_eq!(table.lookup("b.foo.com").unwrap().backend.name, "w");
        assert!(table.lookup("foo.com").is_none());
        assert!(table.lookup("x.y.foo.com").is_none());
        assert!(!table.is_empty());
    }
}
