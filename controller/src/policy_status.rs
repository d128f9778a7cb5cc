//! RoutePolicy status: the leader writes which targets each RoutePolicy applies to and an
//! `Accepted` condition, only when they differ from what the object already says.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use portico_crds::{RoutePolicy, RoutePolicyStatus};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::publish::{Report, RoutePolicyInfo};

/// Keeps every RoutePolicy's status in line with the reports, while this replica leads.
pub async fn run(
    client: Client,
    mut reports: watch::Receiver<Arc<Report>>,
    mut leader: watch::Receiver<bool>,
) {
    loop {
        if *leader.borrow() {
            let report = reports.borrow().clone();
            for ((ns, name), info) in &report.route_policies {
                if let Err(e) = sync(&client, ns, name, info).await {
                    warn!(route_policy = %format_args!("{ns}/{name}"), error = %e, "updating RoutePolicy status failed");
                }
            }
        }
        tokio::select! {
            r = reports.changed() => if r.is_err() { return },
            l = leader.changed() => if l.is_err() { return },
        }
    }
}

/// The status a RoutePolicy should have (its condition's time is `now` only when it changes).
pub fn desired(info: &RoutePolicyInfo, now: Time) -> RoutePolicyStatus {
    let accepted = info.targets.iter().any(|t| t.accepted);
    let (status, reason, message) = if !info.problems.is_empty() {
        ("False", "InvalidFields", info.problems.join("; "))
    } else if accepted {
        (
            "True",
            "Accepted",
            "applied to the Ingresses it targets that Portico serves".to_string(),
        )
    } else {
        (
            "False",
            "NoServedTarget",
            "none of its targets is an Ingress Portico serves".to_string(),
        )
    };
    let previous = info
        .current
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Accepted"));
    let unchanged = previous.is_some_and(|c| c.status == status && c.reason == reason);
    RoutePolicyStatus {
        observed_generation: info.generation,
        conditions: vec![Condition {
            type_: "Accepted".into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: info.generation,
            last_transition_time: match previous {
                Some(c) if unchanged => c.last_transition_time.clone(),
                _ => now,
            },
        }],
        targets: info.targets.clone(),
    }
}

async fn sync(
    client: &Client,
    ns: &str,
    name: &str,
    info: &RoutePolicyInfo,
) -> Result<(), kube::Error> {
    let now = Time(Timestamp::now());
    let want = desired(info, now);
    if info.current.as_ref() == Some(&want) {
        return Ok(());
    }
    let api: Api<RoutePolicy> = Api::namespaced(client.clone(), ns);
    let body = serde_json::json!({ "status": want });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => {
            info!(route_policy = %format_args!("{ns}/{name}"), "status updated");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {
            debug!(route_policy = %format_args!("{ns}/{name}"), "gone before its status was written");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
