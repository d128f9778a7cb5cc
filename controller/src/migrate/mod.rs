//! `portico migrate-check`: what becomes of an ingress-nginx installation's Ingresses and
//! controller ConfigMap under Portico, before the IngressClass is switched.
//!
//! Per Ingress and annotation, a [`Verdict`]: read as in ingress-nginx, read with a stated
//! difference, accepted with no effect on traffic, not read, refused as unsafe, or a value
//! Portico's strict grammar rejects. The verdicts come from the annotation front-end that
//! serves traffic ([`crate::translate::policy::from_annotations`]), so the check cannot claim
//! support the data plane lacks. The ConfigMap is mapped onto an `IngressClassParameters`.

pub mod catalog;
pub mod configmap;
pub mod load;
pub mod render;

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use serde::Serialize;

use crate::problem::{ObjectRef, Problem, Reason};
use crate::translate::policy::{canary_of, from_annotations, NGINX_PREFIX, PORTICO_PREFIX};

/// What Portico does with one setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Read with ingress-nginx's meaning.
    Supported,
    /// Read, with a difference stated in the detail.
    Difference,
    /// Accepted; it changes nothing clients or backends see (buffering, logs).
    NoEffect,
    /// Not read: the behaviour it asks for is not there.
    NotRead,
    /// Refused as unsafe (configuration text).
    Refused,
    /// The value does not parse under Portico's grammar; the setting is ignored.
    Invalid,
}

impl Verdict {
    /// Would switching to Portico change what clients or backends see?
    pub fn changes_behaviour(self) -> bool {
        matches!(self, Verdict::NotRead | Verdict::Refused | Verdict::Invalid)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::Difference => "difference",
            Verdict::NoEffect => "no-effect",
            Verdict::NotRead => "not-read",
            Verdict::Refused => "refused",
            Verdict::Invalid => "invalid",
        }
    }
}

/// One annotation (or ConfigMap key) and what Portico does with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub key: String,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The findings of one Ingress.
#[derive(Clone, Debug, Serialize)]
pub struct IngressReport {
    pub namespace: String,
    pub name: String,
    pub annotations: Vec<Finding>,
}

/// Everything `migrate-check` found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub ingresses: Vec<IngressReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map: Option<configmap::ConfigMapReport>,
    pub summary: BTreeMap<&'static str, usize>,
    pub changes_behaviour: bool,
}

impl Report {
    pub fn new(
        ingresses: Vec<IngressReport>,
        config_map: Option<configmap::ConfigMapReport>,
    ) -> Self {
        let mut summary = BTreeMap::new();
        let all = ingresses
            .iter()
            .flat_map(|i| i.annotations.iter())
            .chain(config_map.iter().flat_map(|c| c.keys.iter()));
        let mut changes_behaviour = false;
        for f in all {
            *summary.entry(f.verdict.as_str()).or_insert(0) += 1;
            changes_behaviour |= f.verdict.changes_behaviour();
        }
        Report {
            ingresses,
            config_map,
            summary,
            changes_behaviour,
        }
    }
}

/// The findings for one Ingress's `nginx.ingress.kubernetes.io/` and `portico.dev/`
/// annotations, in key order.
pub fn check_ingress(ingress: &Ingress) -> IngressReport {
    let namespace = ingress
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = ingress.metadata.name.clone().unwrap_or_default();
    let object = ObjectRef::new("Ingress", &namespace, &name);
    let annotations = ingress.metadata.annotations.as_ref();

    let mut problems: Vec<Problem> = Vec::new();
    from_annotations(annotations, &object, &mut problems);
    canary_of(annotations, &object, &mut problems);

    let mut findings = Vec::new();
    for key in annotations.into_iter().flat_map(|a| a.keys()) {
        let Some(short) = key
            .strip_prefix(NGINX_PREFIX)
            .or_else(|| key.strip_prefix(PORTICO_PREFIX))
        else {
            continue;
        };
        findings.push(finding_for(key, short, &problems));
    }
    IngressReport {
        namespace,
        name,
        annotations: findings,
    }
}

/// The verdict on `key` (`short` without its prefix), from the problems the annotation
/// front-end reported for the Ingress.
fn finding_for(key: &str, short: &str, problems: &[Problem]) -> Finding {
    let mut invalid = Vec::new();
    for p in problems {
        let (verdict, detail) = match &p.reason {
            Reason::InvalidAnnotation { key: k, why } if k == key => {
                if !invalid.contains(why) {
                    invalid.push(why.clone());
                }
                continue;
            }
            Reason::SnippetIgnored { key: k } if k == key => (
                Verdict::Refused,
                "configuration text from Ingresses is never executed (the class of bug behind CVE-2021-25742, CVE-2023-5043/5044, CVE-2025-1974)".to_string(),
            ),
            Reason::UnsupportedAccessControl { key: k } if k == key => (
                Verdict::NotRead,
                "access control Portico does not apply: the Ingress's routes answer 503 rather than serve unprotected".to_string(),
            ),
            Reason::UnsupportedAnnotation { key: k } if k == key => {
                let why = catalog::not_read(short).unwrap_or("not supported by Portico");
                let verdict = if catalog::no_traffic_effect(short) {
                    Verdict::NoEffect
                } else {
                    Verdict::NotRead
                };
                (verdict, why.to_string())
            }
            Reason::AnnotationNoEffect { key: k, why } if k == key => {
                let verdict = if catalog::no_traffic_effect(short) {
                    Verdict::NoEffect
                } else {
                    Verdict::NotRead
                };
                (verdict, (*why).to_string())
            }
            _ => continue,
        };
        return Finding {
            key: key.to_string(),
            verdict,
            detail,
        };
    }
    if !invalid.is_empty() {
        return Finding {
            key: key.to_string(),
            verdict: Verdict::Invalid,
            detail: format!("{}; the setting is ignored", invalid.join("; ")),
        };
    }
    match catalog::difference(short) {
        Some(d) => Finding {
            key: key.to_string(),
            verdict: Verdict::Difference,
            detail: d.to_string(),
        },
        None => Finding {
            key: key.to_string(),
            verdict: Verdict::Supported,
            detail: String::new(),
        },
    }
}

/// Runs the check from `args` (a directory, or the cluster through `client`), prints the
/// report, and returns the exit code: 0 when behaviour is kept, 1 when it would change.
pub async fn run(
    args: &crate::cli::MigrateCheckArgs,
    client: Option<kube::Client>,
) -> Result<i32, String> {
    let cm_ref = load::ConfigMapRef::parse(&args.configmap);
    let objects = match (&args.manifests, client) {
        (Some(dir), _) => load::from_dir(dir, &cm_ref)?,
        (None, Some(client)) => load::from_cluster(client, &cm_ref)
            .await
            .map_err(|e| format!("reading the cluster: {e}"))?,
        (None, None) => return Err("no manifests directory and no cluster client".into()),
    };
    let report = check(&objects, args.class.as_deref());
    let text = match args.output {
        crate::cli::OutputFormat::Table => render::table(&report, &args.parameters_name),
        crate::cli::OutputFormat::Json => render::json(&report),
    };
    println!("{}", text.trim_end());
    Ok(i32::from(report.changes_behaviour))
}

/// The report for what was read: Ingresses (of `class`, when given) in namespace/name order.
pub fn check(objects: &load::Objects, class: Option<&str>) -> Report {
    let mut ingresses: Vec<IngressReport> = objects
        .ingresses
        .iter()
        .filter(|i| class.is_none_or(|c| load::in_class(i, c)))
        .map(check_ingress)
        .collect();
    ingresses.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let config_map = objects
        .config_map
        .as_ref()
        .map(|(ns, name, data)| configmap::check(ns, name, data));
    Report::new(ingresses, config_map)
}

#[cfg(test)]
mod tests;
