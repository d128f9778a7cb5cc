//! Kubernetes Events for problems: one Warning per problem of an Ingress or an
//! IngressClassParameters when it first appears (the latter, cluster-scoped, in the `default`
//! namespace), and one Normal event when an Ingress is first served. Written by the leader only, capped per
//! configuration so a bad rollout cannot flood the API server.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::problem::Problem;
use crate::publish::Report;

/// Most events written for one configuration change.
pub const MAX_EVENTS_PER_CHANGE: usize = 50;

/// Writes events for each new report while this replica leads.
pub async fn run(
    client: Client,
    instance: String,
    mut reports: watch::Receiver<Arc<Report>>,
    mut leader: watch::Receiver<bool>,
) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "portico".into(),
            instance: Some(instance),
        },
    );
    let mut seen_problems: BTreeSet<Problem> = BTreeSet::new();
    // The report whose served Ingresses have had their event.
    let mut seen_served: Option<Arc<Report>> = None;
    loop {
        tokio::select! {
            r = reports.changed() => if r.is_err() { return },
            l = leader.changed() => if l.is_err() { return },
        }
        let report = reports.borrow().clone();
        if !*leader.borrow() || report.generation == 0 {
            continue;
        }
        let mut budget = MAX_EVENTS_PER_CHANGE;
        // A problem counts as reported once its event was written; a failed write (API server
        // away) is tried again with the next configuration.
        let mut reported = BTreeSet::new();
        for p in &report.problems {
            if seen_problems.contains(p) {
                reported.insert(p.clone());
                continue;
            }
            let Some(reference) = reference_of(p, &report) else {
                continue;
            };
            if budget == 0 {
                warn!("more problems than events allowed for one change; see the log");
                break;
            }
            budget -= 1;
            if publish(
                &recorder,
                EventType::Warning,
                p.reason.code(),
                &p.reason.to_string(),
                reference,
            )
            .await
            {
                reported.insert(p.clone());
            }
        }
        seen_problems = reported;

        if let Some(before) = &seen_served {
            let new = newly_served(&before.served, &report.served);
            for (ns, name) in new.take(budget) {
                let uid = report
                    .served_ingress(ns, name)
                    .and_then(|i| i.metadata.uid.clone());
                publish(
                    &recorder,
                    EventType::Normal,
                    "Served",
                    "Portico serves this Ingress",
                    ingress_reference(ns, name, uid),
                )
                .await;
            }
        }
        seen_served = Some(report);
    }
}

/// The keys of `now` that `before` lacks (both sets are sorted: one walk, no copy).
fn newly_served<'a, K: Ord>(
    before: &'a BTreeSet<K>,
    now: &'a BTreeSet<K>,
) -> impl Iterator<Item = &'a K> {
    let mut old = before.iter().peekable();
    now.iter().filter(move |k| {
        while old.next_if(|o| *o < *k).is_some() {}
        old.peek() != Some(k)
    })
}

fn ingress_reference(namespace: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid,
        ..ObjectReference::default()
    }
}

/// The object a problem's event is about, for the kinds that get events.
fn reference_of(p: &Problem, report: &Report) -> Option<ObjectReference> {
    match p.object.kind {
        "Ingress" => {
            let uid = report
                .served_ingress(&p.object.namespace, &p.object.name)
                .and_then(|i| i.metadata.uid.clone());
            Some(ingress_reference(&p.object.namespace, &p.object.name, uid))
        }
        "IngressClassParameters" => {
            // Only other controllers' IngressClasses name it: theirs to report.
            let info = report.class_parameters.get(&p.object.name);
            if info.is_some_and(|i| i.foreign) {
                return None;
            }
            Some(ObjectReference {
                api_version: Some(format!("{}/v1alpha1", portico_crds::GROUP)),
                kind: Some("IngressClassParameters".into()),
                name: Some(p.object.name.clone()),
                uid: info.and_then(|i| i.uid.clone()),
                ..ObjectReference::default()
            })
        }
        _ => None,
    }
}

async fn publish(
    recorder: &Recorder,
    type_: EventType,
    reason: &str,
    note: &str,
    reference: ObjectReference,
) -> bool {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Configure".into(),
        secondary: None,
    };
    match recorder.publish(&event, &reference).await {
        Ok(()) => true,
        Err(e) => {
            debug!(
                error = %e,
                kind = reference.kind.as_deref().unwrap_or_default(),
                object = %format_args!(
                    "{}/{}",
                    reference.namespace.as_deref().unwrap_or_default(),
                    reference.name.as_deref().unwrap_or_default()
                ),
                "writing an event failed"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newly_served_are_the_keys_the_last_report_lacked() {
        let before = BTreeSet::from([1, 3, 5]);
        let now = BTreeSet::from([0, 1, 2, 5, 6]);
        let new: Vec<_> = newly_served(&before, &now).copied().collect();
        assert_eq!(new, [0, 2, 6]);
        assert_eq!(newly_served(&now, &now).count(), 0);
    }
}
