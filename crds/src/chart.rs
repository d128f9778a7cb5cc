//! The chart's CRD templates: the generated CRD, wrapped so that `crds.enabled` gates it,
//! `crds.keep` keeps it on uninstall, and it carries the chart's labels. They live under
//! `templates/` (not Helm's `crds/` directory) so that `helm upgrade` updates them.
//!
//! The YAML is written here rather than by `serde_yaml`: Helm and kubectl read YAML 1.1, where
//! a plain `off` or `yes` is a boolean, so every string that is not plainly a string is quoted.

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use crate::Error;

/// The template's path under `charts/portico/templates/crds/`: `<plural>.yaml`.
pub fn chart_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.spec.names.plural)
}

/// The chart template of one CRD.
pub fn chart_template(crd: &CustomResourceDefinition) -> Result<String, Error> {
    let name = crd.metadata.name.clone().ok_or(Error::Unnamed)?;
    let spec = serde_json::to_value(&crd.spec).map_err(|source| Error::Json {
        name: name.clone(),
        source,
    })?;
    let mut body = String::new();
    yaml(&mut body, &spec, 2);
    if body.contains("{{") || body.contains("}}") {
        return Err(Error::TemplateSyntax { name });
    }
    Ok(format!(
        "{{{{- if .Values.crds.enabled }}}}\n\
         # Generated from the Rust types in crds/src; do not edit by hand.\n\
         # Regenerate: PORTICO_UPDATE_CHART=1 cargo test -p portico-crds\n\
         apiVersion: apiextensions.k8s.io/v1\n\
         kind: CustomResourceDefinition\n\
         metadata:\n\
         \x20 name: {name}\n\
         \x20 labels:\n\
         \x20   {{{{- include \"portico.labels\" . | nindent 4 }}}}\n\
         \x20 {{{{- if .Values.crds.keep }}}}\n\
         \x20 annotations:\n\
         \x20   helm.sh/resource-policy: keep\n\
         \x20 {{{{- end }}}}\n\
         spec:\n\
         {body}\
         {{{{- end }}}}\n"
    ))
}

/// One CRD as a plain YAML document (for `kubectl apply` without Helm).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, Error> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let v = serde_json::to_value(crd).map_err(|source| Error::Json { name, source })?;
    let mut out = String::new();
    yaml(&mut out, &v, 0);
    Ok(out)
}

/// Block-style YAML of `v` (an object or array) at `indent` spaces.
fn yaml(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let _ = write!(out, "{pad}{}:", scalar_str(k));
                value_after_key(out, v, indent);
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key shares the line with the dash.
                        let mut inner = String::new();
                        yaml(&mut inner, item, indent + 2);
                        let _ = write!(out, "{pad}- {}", inner.trim_start_matches(' '));
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let _ = writeln!(out, "{pad}-");
                        yaml(out, item, indent + 2);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}- {}", scalar(item));
                    }
                }
            }
        }
        _ => {
            let _ = writeln!(out, "{pad}{}", scalar(v));
        }
    }
}

fn value_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml(out, v, indent + 2);
        }
        // Lists sit at their key's indentation, as kubectl writes them.
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml(out, v, indent);
        }
        _ => {
            let _ = writeln!(out, " {}", scalar(v));
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            // schemars writes bounds as floats (`599.0`); integral ones read better as integers.
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 1e15 => {
                format!("{}", f as i64)
            }
            _ => n.to_string(),
        },
        Value::String(s) => scalar_str(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string plain when it cannot be read as anything else in YAML 1.1 or 1.2, else quoted.
fn scalar_str(s: &str) -> String {
    const SPECIAL: &[&str] = &[
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "nan", "inf",
    ];
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && !s.ends_with(' ')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '/' | '-'))
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        // A JSON string is a valid double-quoted YAML scalar.
        Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn the_yaml_reads_back_as_the_same_value() {
        let v = json!({
            "a": "off", "b": "1.2", "c": "multi\nline 'quoted' `tick`", "d": 599.0, "e": -1,
            "f": [], "g": {}, "h": [{"x": 1, "y": [{"z": true}]}, "s", [1, 2]],
            "i": null, "j": "{not a template", "k": "plain words/and-dots.x", "No": "Yes"
        });
        let mut out = String::new();
        yaml(&mut out, &v, 0);
        let back: Value = serde_yaml::from_str(&out).unwrap();
        let mut want = v.clone();
        want["d"] = json!(599);
        assert_eq!(back, want, "{out}");
        // YAML 1.1 readers (Helm) would turn these into booleans or numbers if plain.
        assert!(
            out.contains("a: \"off\"") && out.contains("b: \"1.2\""),
            "{out}"
        );
        assert!(out.contains("\"No\": \"Yes\""), "{out}");
    }
}
