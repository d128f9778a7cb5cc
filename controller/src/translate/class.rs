//! Which Ingresses are Portico's: IngressClass selection.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// Annotation of the pre-IngressClass era, still honoured.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Marks the cluster's default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Decides class membership for a set of IngressClasses.
pub struct ClassFilter {
    ours: BTreeMap<String, bool>,
    legacy_name: String,
    take_classless: bool,
    /// Our classes' `spec.parameters` naming an IngressClassParameters: class → its name.
    params: BTreeMap<String, String>,
    /// Our class marked as the cluster default, if any.
    default_class: Option<String>,
}

impl ClassFilter {
    pub fn new(
        classes: &[Arc<IngressClass>],
        controller: &str,
        legacy_name: &str,
        serve_classless: bool,
    ) -> Self {
        let mut ours = BTreeMap::new();
        let mut params = BTreeMap::new();
        let mut default_class = None;
        let mut default_is_ours = false;
        for c in classes {
            let name = c.metadata.name.clone().unwrap_or_default();
            let is_ours = c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(controller);
            let is_default = c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
            default_is_ours |= is_ours && is_default;
            if is_ours && is_default && default_class.is_none() {
                default_class = Some(name.clone());
            }
            if let Some(p) = c.spec.as_ref().and_then(|s| s.parameters.as_ref()) {
                if is_ours
                    && p.api_group.as_deref() == Some(portico_crds::GROUP)
                    && p.kind == "IngressClassParameters"
                    && p.scope.as_deref().unwrap_or("Cluster") == "Cluster"
                {
                    params.insert(name.clone(), p.name.clone());
                }
            }
            ours.insert(name, is_ours);
        }
        ClassFilter {
            ours,
            legacy_name: legacy_name.to_string(),
            take_classless: serve_classless || default_is_ours,
            params,
            default_class,
        }
    }

    /// The IngressClassParameters that apply to an accepted Ingress: those of the class it
    /// names, else (legacy annotation, no class) those of the default class or of the class
    /// named like `--ingress-class`.
    pub fn parameters_of(&self, ingress: &Ingress) -> Option<&str> {
        let class = match Self::class_of(ingress) {
            Some(c) if self.ours.get(c).copied().unwrap_or(false) => c,
            _ => self
                .default_class
                .as_deref()
                .unwrap_or(self.legacy_name.as_str()),
        };
        self.params.get(class).map(String::as_str)
    }

    /// Each IngressClassParameters named by one of our classes, with those classes (sorted).
    pub fn parameter_users(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (class, params) in &self.params {
            out.entry(params.clone()).or_default().push(class.clone());
        }
        out
    }

    /// The IngressClassParameters of the class named like `--ingress-class` (listener-wide
    /// settings: minimum TLS version, PROXY protocol).
    pub fn primary_parameters(&self) -> Option<&str> {
        self.params.get(&self.legacy_name).map(String::as_str)
    }

    /// The class an Ingress names (`spec.ingressClassName`, else the legacy annotation).
    pub fn class_of(ingress: &Ingress) -> Option<&str> {
        ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .or_else(|| {
                ingress
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                    .map(String::as_str)
            })
            .filter(|c| !c.is_empty())
    }

    /// Is this Ingress Portico's to serve? A class named in `spec` must be an IngressClass of
    /// ours; the legacy annotation may also carry our class name (`--ingress-class`).
    pub fn accepts(&self, ingress: &Ingress) -> bool {
        let named = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .filter(|c| !c.is_empty());
        match (named, Self::class_of(ingress)) {
            (Some(class), _) => self.ours.get(class).copied().unwrap_or(false),
            (None, Some(class)) => {
                class == self.legacy_name || self.ours.get(class).copied().unwrap_or(false)
            }
            (None, None) => self.take_classless,
        }
    }
}
