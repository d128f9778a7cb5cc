//! Status of Portico's resources, written by the leader only when it differs from what the
//! object already says: which targets each RoutePolicy applies to and its `Accepted`
//! condition; whether each IngressClassParameters is valid and used (`Accepted`).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use portico_crds::{
    IngressClassParameters, IngressClassParametersStatus, RoutePolicy, RoutePolicyStatus,
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::publish::{ClassParametersInfo, Report, RoutePolicyInfo};

/// Keeps every RoutePolicy's and IngressClassParameters' status in line with the reports,
/// while this replica leads.
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
            for (name, info) in report.class_parameters.iter().filter(|(_, i)| !i.foreign) {
                if let Err(e) = sync_class(&client, name, info).await {
                    warn!(ingress_class_parameters = %name, error = %e, "updating IngressClassParameters status failed");
                }
            }
        }
        tokio::select! {
            r = reports.changed() => if r.is_err() { return },
            l = leader.changed() => if l.is_err() { return },
        }
    }
}

/// The status a RoutePolicy should have (a condition's time is `now` only when it changes):
/// `Accepted`, and `Conflicted` True when an older RoutePolicy sets one of its fields for the
/// same route (the message names each field and the winner).
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
    let previous = |type_: &str| {
        info.current
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
    };
    let (conflicted, conflict_reason, conflict_message) = if info.conflicts.is_empty() {
        (
            "False",
            "NoConflict",
            "no older RoutePolicy sets its fields for the same routes".to_string(),
        )
    } else {
        ("True", "FieldSetByOlderPolicy", info.conflicts.join("; "))
    };
    RoutePolicyStatus {
        observed_generation: info.generation,
        conditions: vec![
            condition(
                "Accepted",
                status,
                reason,
                message,
                info.generation,
                previous("Accepted"),
                now.clone(),
            ),
            condition(
                "Conflicted",
                conflicted,
                conflict_reason,
                conflict_message,
                info.generation,
                previous("Conflicted"),
                now,
            ),
        ],
        targets: info.targets.clone(),
    }
}

/// The status an IngressClassParameters should have: `Accepted` False with the invalid
/// fields, False when none of Portico's IngressClasses names it, else True.
pub fn desired_class(info: &ClassParametersInfo, now: Time) -> IngressClassParametersStatus {
    let (status, reason, message) = if !info.problems.is_empty() {
        ("False", "InvalidFields", info.problems.join("; "))
    } else if info.classes.is_empty() {
        (
            "False",
            "NotReferenced",
            "no IngressClass of Portico names it in spec.parameters".to_string(),
        )
    } else {
        (
            "True",
            "Accepted",
            format!("in use by IngressClass {}", info.classes.join(", ")),
        )
    };
    let previous = info
        .current
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Accepted"));
    IngressClassParametersStatus {
        observed_generation: info.generation,
        conditions: vec![condition(
            "Accepted",
            status,
            reason,
            message,
            info.generation,
            previous,
            now,
        )],
    }
}

/// A condition whose transition time moves only when its status or reason changes.
fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: Option<&Condition>,
    now: Time,
) -> Condition {
    let unchanged = previous.is_some_and(|c| c.status == status && c.reason == reason);
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: match previous {
            Some(c) if unchanged => c.last_transition_time.clone(),
            _ => now,
        },
    }
}

async fn sync_class(
    client: &Client,
    name: &str,
    info: &ClassParametersInfo,
) -> Result<(), kube::Error> {
    let want = desired_class(info, Time(Timestamp::now()));
    if info.current.as_ref() == Some(&want) {
        return Ok(());
    }
    let api: Api<IngressClassParameters> = Api::all(client.clone());
    let body = serde_json::json!({ "status": want });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => {
            info!(ingress_class_parameters = %name, "status updated");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {
            debug!(ingress_class_parameters = %name, "gone before its status was written");
            Ok(())
        }
        Err(e) => Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    #[test]
    fn class_parameters_status_names_invalid_fields_and_keeps_its_transition_time() {
        let mut info = ClassParametersInfo {
            generation: Some(3),
            problems: vec!["field proxyProtocol.trustedCidrs: \"x\" is not a CIDR".into()],
            classes: vec!["portico".into()],
            ..Default::default()
        };
        let bad = desired_class(&info, at(10));
        let c = &bad.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("Accepted", "False", "InvalidFields")
        );
        assert!(
            c.message.contains("proxyProtocol.trustedCidrs"),
            "{}",
            c.message
        );
        assert_eq!(bad.observed_generation, Some(3));
        assert_eq!(c.observed_generation, Some(3));

        info.problems.clear();
        info.current = Some(bad.clone());
        let good = desired_class(&info, at(20));
        let c = &good.conditions[0];
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Accepted"));
        assert_eq!(c.last_transition_time, at(20));
        assert!(c.message.contains("portico"));

        // Nothing changed: the same status, so nothing is written.
        info.current = Some(good.clone());
        assert_eq!(desired_class(&info, at(30)), good);

        info.classes.clear();
        let unused = desired_class(&info, at(40));
        assert_eq!(unused.conditions[0].reason, "NotReferenced");
        assert_eq!(unused.conditions[0].status, "False");
    }

    #[test]
    fn a_route_policy_losing_a_field_is_conflicted_naming_field_and_winner() {
        let mut info = RoutePolicyInfo {
            generation: Some(2),
            targets: vec![portico_crds::TargetStatus {
                name: "app".into(),
                accepted: true,
                reason: "Accepted".into(),
                message: String::new(),
            }],
            conflicts: vec![
                "field timeouts.read for Ingress app: RoutePolicy default/older is older and wins"
                    .into(),
            ],
            ..Default::default()
        };
        let s = desired(&info, at(10));
        let types: Vec<(&str, &str, &str)> = s
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("Accepted", "True", "Accepted"),
                ("Conflicted", "True", "FieldSetByOlderPolicy")
            ]
        );
        assert!(s.conditions[1].message.contains("default/older"));
        info.conflicts.clear();
        info.current = Some(s);
        let s = desired(&info, at(20));
        assert_eq!(
            (
                s.conditions[1].status.as_str(),
                s.conditions[1].reason.as_str()
            ),
            ("False", "NoConflict")
        );
        assert_eq!(s.conditions[1].last_transition_time, at(20));
        assert_eq!(
            s.conditions[0].last_transition_time,
            at(10),
            "Accepted did not change"
        );
    }
}
