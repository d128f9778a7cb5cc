//! Ingress status: the leader writes `status.loadBalancer` of every Ingress Portico serves,
//! only when it differs, and clears it from Ingresses that stopped being Portico's. It never
//! clears status on shutdown or rollout (DNS automation would delete records).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{
    Ingress, IngressLoadBalancerIngress, IngressLoadBalancerStatus,
};
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::inputs::ObjectKey;
use crate::publish::{key_of, load_balancer, Report};

/// Where the address written into status comes from.
#[derive(Clone, Debug, Default)]
pub struct StatusConfig {
    /// `--publish-service`: the Service in front of Portico.
    pub publish_service: Option<ObjectKey>,
    /// `--publish-status-address`: fixed addresses (IPs or host names).
    pub publish_addresses: Vec<String>,
}

impl StatusConfig {
    pub fn enabled(&self) -> bool {
        self.publish_service.is_some() || !self.publish_addresses.is_empty()
    }
}

/// Keeps status in line with every report, while this replica leads.
pub async fn run(
    client: Client,
    config: StatusConfig,
    mut reports: watch::Receiver<Arc<Report>>,
    mut leader: watch::Receiver<bool>,
) {
    if !config.enabled() {
        info!("no --publish-service or --publish-status-address: Ingress status is not written");
        return;
    }
    let mut written = Written::default();
    loop {
        if *leader.borrow() {
            let report = reports.borrow().clone();
            if let Err(e) = sync(&client, &config, &report, &mut written).await {
                warn!(error = %e, "updating Ingress status failed; retrying");
            }
        }
        tokio::select! {
            r = reports.changed() => if r.is_err() { return },
            l = leader.changed() => if l.is_err() { return },
            // The published Service's address can change without any Ingress changing.
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// What this replica wrote, by Ingress: its uid, the status, and the generation of the report
/// it acted on. A status update does not rebuild the configuration (translate never reads
/// status), so until the next report the report still shows the status from before the
/// write; this keeps the periodic resync from writing the same status again meanwhile.
type Written = HashMap<ObjectKey, (Option<String>, IngressLoadBalancerStatus, u64)>;

async fn sync(
    client: &Client,
    config: &StatusConfig,
    report: &Report,
    written: &mut Written,
) -> Result<(), kube::Error> {
    let desired = desired_status(client, config).await?;
    written.retain(|key, _| report.served.contains(key));
    for ingress in report.served_ingresses() {
        if same(load_balancer(ingress), &desired) {
            continue;
        }
        let (ns, name) = key_of(ingress);
        let key = (ns.to_string(), name.to_string());
        let uid = &ingress.metadata.uid;
        if written.get(&key).is_some_and(|(u, status, generation)| {
            u == uid && same(Some(status), &desired) && *generation == report.generation
        }) {
            continue;
        }
        patch(client, ns, name, &desired).await?;
        written.insert(key, (uid.clone(), desired.clone(), report.generation));
        info!(ingress = %format_args!("{ns}/{name}"), "status updated");
    }
    let empty = IngressLoadBalancerStatus::default();
    if desired.ingress.as_ref().is_some_and(|v| !v.is_empty()) {
        for ingress in report.other_ingresses() {
            if same(load_balancer(ingress), &desired) {
                let (ns, name) = key_of(ingress);
                patch(client, ns, name, &empty).await?;
                info!(ingress = %format_args!("{ns}/{name}"), "status cleared: not served by Portico any more");
            }
        }
    }
    Ok(())
}

async fn patch(
    client: &Client,
    ns: &str,
    name: &str,
    status: &IngressLoadBalancerStatus,
) -> Result<(), kube::Error> {
    let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let body = serde_json::json!({ "status": { "loadBalancer": status } });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to do.
        Err(kube::Error::Api(s)) if s.code == 404 => {
            debug!(ingress = %format_args!("{ns}/{name}"), "gone before its status was written");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn same(current: Option<&IngressLoadBalancerStatus>, desired: &IngressLoadBalancerStatus) -> bool {
    let cur = current
        .and_then(|c| c.ingress.as_deref())
        .unwrap_or_default();
    let want = desired.ingress.as_deref().unwrap_or_default();
    cur == want
}

/// The address to publish: fixed addresses, else the Service's load balancer, external IPs
/// or cluster IP.
pub async fn desired_status(
    client: &Client,
    config: &StatusConfig,
) -> Result<IngressLoadBalancerStatus, kube::Error> {
    let addresses: Vec<String> = if !config.publish_addresses.is_empty() {
        config.publish_addresses.clone()
    } else if let Some((ns, name)) = &config.publish_service {
        let svc = Api::<Service>::namespaced(client.clone(), ns)
            .get(name)
            .await?;
        let lb: Vec<String> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|v| {
                v.iter()
                    .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let spec = svc.spec.unwrap_or_default();
        if !lb.is_empty() {
            lb
        } else if let Some(ips) = spec.external_ips.filter(|v| !v.is_empty()) {
            ips
        } else {
            spec.cluster_ip
                .filter(|ip| !ip.is_empty() && ip != "None")
                .into_iter()
                .collect()
        }
    } else {
        Vec::new()
    };
    Ok(IngressLoadBalancerStatus {
        ingress: Some(
            addresses
                .into_iter()
                .map(|a| match a.parse::<IpAddr>() {
                    Ok(_) => IngressLoadBalancerIngress {
                        ip: Some(a),
                        ..Default::default()
                    },
                    Err(_) => IngressLoadBalancerIngress {
                        hostname: Some(a),
                        ..Default::default()
                    },
                })
                .collect(),
        ),
    })
}
