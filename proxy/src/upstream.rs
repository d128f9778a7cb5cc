//! Upstream HTTP clients: one per distinct connection setting, shared across snapshots so
//! their connection pools survive configuration swaps.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ProxyBody;
use crate::config::ProxyConfig;
use crate::snapshot::Snapshot;

pub type UpstreamClient = Client<HttpConnector, ProxyBody>;

/// What makes two routes need different clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    connect_timeout: Duration,
}

/// The default client and the ones routes asked for.
pub(crate) struct Upstreams {
    pub(crate) default: UpstreamClient,
    default_key: ClientKey,
    idle_timeout: Duration,
    others: Mutex<HashMap<ClientKey, UpstreamClient>>,
}

impl Upstreams {
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        let default_key = ClientKey {
            connect_timeout: config.upstream_connect_timeout,
        };
        Upstreams {
            default: build(default_key, config.upstream_idle_timeout),
            default_key,
            idle_timeout: config.upstream_idle_timeout,
            others: Mutex::new(HashMap::new()),
        }
    }

    /// Gives every route policy that needs a client of its own that client (at publish time,
    /// never on the request path). Clients no snapshot uses any more are dropped.
    pub(crate) fn attach(&self, snapshot: &Snapshot) {
        let Ok(mut others) = self.others.lock() else {
            return;
        };
        let mut used = HashMap::new();
        for target in snapshot.targets() {
            let policy = &target.policy;
            let key = ClientKey {
                connect_timeout: policy
                    .timeouts
                    .connect
                    .unwrap_or(self.default_key.connect_timeout),
            };
            if key == self.default_key {
                continue;
            }
            let client = others
                .entry(key)
                .or_insert_with(|| build(key, self.idle_timeout))
                .clone();
            let _ = policy.client.set(client.clone());
            used.insert(key, client);
        }
        *others = used;
    }
}

fn build(key: ClientKey, idle_timeout: Duration) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(key.connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .pool_max_idle_per_host(256)
        .retry_canceled_requests(true)
        .set_host(false)
        .build(connector)
}
