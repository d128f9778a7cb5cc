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
}

impl ClassFilter {
    pub fn new(
        classes: &[Arc<IngressClass>],
        controller: &str,
        legacy_name: &str,
        serve_classless: bool,
    ) -> Self {
        let mut ours = BTreeMap::new();
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
            ours.insert(name, is_ours);
        }
        ClassFilter {
            ours,
            legacy_name: legacy_name.to_string(),
            take_classless: serve_classless || default_is_ours,
        }
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
