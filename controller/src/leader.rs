//! Leader election on a `coordination.k8s.io` Lease: every replica serves traffic; only the
//! leader writes Ingress status and Events.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name (the Pod name).
    pub identity: String,
    /// A holder that has not renewed for this long has lost the lease.
    pub duration: Duration,
    /// How often the holder renews and the others check.
    pub renew_every: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
        }
    }
}

/// Campaigns forever; `leader` says whether this replica holds the lease now.
pub async fn run(client: Client, config: LeaseConfig, leader: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewed: Option<std::time::Instant> = None;
    crate::telemetry::TELEMETRY.set_leader(&config.name, *leader.borrow());
    loop {
        let held = match try_acquire(&api, &config).await {
            Ok(held) => {
                if held {
                    last_renewed = Some(std::time::Instant::now());
                }
                held
            }
            Err(e) => {
                debug!(error = %e, "lease update failed");
                // Keep leading only while the lease we last renewed is still ours.
                last_renewed.is_some_and(|t| t.elapsed() < config.duration) && *leader.borrow()
            }
        };
        if held != *leader.borrow() {
            if held {
                info!(lease = %config.name, identity = %config.identity, "became the leader");
            } else {
                warn!(lease = %config.name, identity = %config.identity, "not the leader any more");
            }
            crate::telemetry::TELEMETRY.set_leader(&config.name, held);
            let _ = leader.send(held);
        }
        tokio::time::sleep(config.renew_every).await;
    }
}

async fn try_acquire(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let duration_secs = config.duration.as_secs() as i32;
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let mine = spec.holder_identity.as_deref() == Some(config.identity.as_str());
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(MicroTime(renewed)), Some(d)) => {
            now.as_millisecond() - renewed.as_millisecond() > i64::from(d) * 1000
        }
        _ => true,
    };
    let vacant = spec.holder_identity.as_deref().unwrap_or("").is_empty();
    if !mine && !expired && !vacant {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(duration_secs);
    // The resourceVersion in `lease` makes this a compare-and-swap: two replicas racing for an
    // expired lease cannot both win.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the lease up (on shutdown) so another replica takes over at once.
pub async fn release(client: Client, config: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    if let Err(e) = api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        debug!(error = %e, "releasing the lease failed");
    }
}
