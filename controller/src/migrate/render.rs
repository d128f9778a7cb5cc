//! `migrate-check` output: an aligned table for people, JSON for scripts.

use std::fmt::Write as _;

use portico_crds::class_parameters::IngressClassParameters;

use super::{Finding, Report};

/// The suggested `IngressClassParameters` object, as YAML.
pub fn class_parameters_yaml(report: &Report, class: &str) -> Option<String> {
    let cm = report.config_map.as_ref()?;
    let object = IngressClassParameters::new(class, cm.class_parameters.clone());
    serde_yaml::to_string(&object).ok()
}

fn rows(out: &mut String, findings: &[Finding]) {
    let key_width = findings.iter().map(|f| f.key.len()).max().unwrap_or(0);
    let verdict_width = findings
        .iter()
        .map(|f| f.verdict.as_str().len())
        .max()
        .unwrap_or(0);
    for f in findings {
        let line = format!(
            "  {:key_width$}  {:verdict_width$}  {}",
            f.key,
            f.verdict.as_str(),
            f.detail
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// The report as a table.
pub fn table(report: &Report, class: &str) -> String {
    let mut out = String::new();
    for ingress in &report.ingresses {
        let _ = writeln!(out, "Ingress {}/{}", ingress.namespace, ingress.name);
        if ingress.annotations.is_empty() {
            let _ = writeln!(out, "  (no ingress-nginx or Portico annotations)");
        }
        rows(&mut out, &ingress.annotations);
        out.push('\n');
    }
    if let Some(cm) = &report.config_map {
        let _ = writeln!(out, "ConfigMap {}/{}", cm.namespace, cm.name);
        rows(&mut out, &cm.keys);
        out.push('\n');
        if let Some(yaml) = class_parameters_yaml(report, class) {
            let _ = writeln!(
                out,
                "Suggested IngressClassParameters (name it in the IngressClass's spec.parameters):"
            );
            for line in yaml.lines() {
                let _ = writeln!(out, "  {line}");
            }
            out.push('\n');
        }
        if !cm.flags.is_empty() {
            let _ = writeln!(out, "Controller flags: {}", cm.flags.join(" "));
            out.push('\n');
        }
    }
    let summary: Vec<String> = report
        .summary
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let _ = writeln!(
        out,
        "{} Ingress(es): {}",
        report.ingresses.len(),
        if summary.is_empty() {
            "nothing to check".to_string()
        } else {
            summary.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "{}",
        if report.changes_behaviour {
            "Switching to Portico changes behaviour: see the not-read, refused and invalid rows."
        } else {
            "Switching to Portico keeps behaviour (read the difference rows)."
        }
    );
    out
}

/// The report as JSON.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
