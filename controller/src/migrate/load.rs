//! Where `migrate-check` reads from: a directory of manifests, or the cluster.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::Ingress;
use serde::Deserialize;

use crate::translate::LEGACY_CLASS_ANNOTATION;

/// What was read: Ingresses and (at most) one ingress-nginx controller ConfigMap.
#[derive(Debug, Default)]
pub struct Objects {
    pub ingresses: Vec<Ingress>,
    /// `(namespace, name, data)`.
    pub config_map: Option<(String, String, BTreeMap<String, String>)>,
}

/// The ConfigMap ingress-nginx's chart installs.
pub const DEFAULT_CONFIG_MAP: &str = "ingress-nginx/ingress-nginx-controller";

/// `namespace/name` (or `name`, read as any namespace in a directory) of the ConfigMap.
pub struct ConfigMapRef<'a> {
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl<'a> ConfigMapRef<'a> {
    pub fn parse(v: &'a str) -> Self {
        match v.split_once('/') {
            Some((ns, name)) => ConfigMapRef {
                namespace: Some(ns),
                name,
            },
            None => ConfigMapRef {
                namespace: None,
                name: v,
            },
        }
    }

    fn matches(&self, namespace: &str, name: &str) -> bool {
        self.name == name && self.namespace.is_none_or(|ns| ns == namespace)
    }
}

/// Does the Ingress belong to `class` (by `spec.ingressClassName` or the legacy annotation)?
pub fn in_class(ingress: &Ingress, class: &str) -> bool {
    let by_spec = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref());
    let by_annotation = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
        .map(String::as_str);
    by_spec.or(by_annotation) == Some(class)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Reads every `*.yaml`/`*.yml` file of `dir` (not recursing, as manifest mode does). A
/// document that does not decode is an error naming the file: a check that skipped an
/// Ingress would promise too much.
pub fn from_dir(dir: &Path, config_map: &ConfigMapRef<'_>) -> Result<Objects, String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
        })
        .collect();
    paths.sort();
    let mut out = Objects::default();
    for path in paths {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let where_ = || format!("{} (document {})", path.display(), i + 1);
            let value =
                serde_yaml::Value::deserialize(doc).map_err(|e| format!("{}: {e}", where_()))?;
            if value.is_null() {
                continue;
            }
            let meta: TypeMeta =
                serde_yaml::from_value(value.clone()).map_err(|e| format!("{}: {e}", where_()))?;
            match (meta.api_version.as_str(), meta.kind.as_str()) {
                ("networking.k8s.io/v1", "Ingress") => {
                    let mut ingress: Ingress =
                        serde_yaml::from_value(value).map_err(|e| format!("{}: {e}", where_()))?;
                    if ingress.metadata.namespace.is_none() {
                        ingress.metadata.namespace = Some("default".into());
                    }
                    out.ingresses.push(ingress);
                }
                ("v1", "ConfigMap") => {
                    let cm: ConfigMap =
                        serde_yaml::from_value(value).map_err(|e| format!("{}: {e}", where_()))?;
                    let ns = cm
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    let name = cm.metadata.name.clone().unwrap_or_default();
                    if config_map.matches(&ns, &name) {
                        out.config_map = Some((ns, name, cm.data.unwrap_or_default()));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Reads every Ingress of the cluster and the named ConfigMap (absent is not an error).
pub async fn from_cluster(
    client: kube::Client,
    config_map: &ConfigMapRef<'_>,
) -> Result<Objects, kube::Error> {
    use kube::api::{Api, ListParams};
    let ingresses = Api::<Ingress>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let namespace = config_map.namespace.unwrap_or("ingress-nginx");
    let cm = Api::<ConfigMap>::namespaced(client, namespace)
        .get_opt(config_map.name)
        .await?;
    Ok(Objects {
        ingresses,
        config_map: cm.map(|cm| {
            (
                namespace.to_string(),
                config_map.name.to_string(),
                cm.data.unwrap_or_default(),
            )
        }),
    })
}
