//! `RoutePolicy`: a [`PolicySpec`] attached to Ingresses of its own namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::PolicySpec;

/// Routing policy for the Ingresses it targets, in its own namespace.
// Two printer columns share `type_ = "string"`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "RoutePolicy",
    plural = "routepolicies",
    shortname = "rp",
    category = "portico",
    namespaced,
    status = "RoutePolicyStatus",
    derive = "PartialEq",
    doc = "Routing policy (redirects, rewrites, timeouts, retries, affinity, headers…) for the paths of the Ingresses it targets.",
    printcolumn(
        name = "Targets",
        type_ = "string",
        json_path = ".spec.targetRefs[*].name"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Conflicted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Conflicted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RoutePolicySpec {
    /// The Ingresses of this namespace the policy applies to, each optionally narrowed to a
    /// rule host and/or a path. Two policies setting the same field for the same route: the
    /// older wins, the younger is marked Conflicted.
    #[schemars(length(min = 1, max = 16))]
    pub target_refs: Vec<TargetRef>,
    /// The policy.
    #[serde(flatten)]
    pub policy: PolicySpec,
}

/// An object a policy applies to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// The API group (default `networking.k8s.io`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "networking.k8s.io", "enum" = ["networking.k8s.io"]))]
    pub group: Option<String>,
    /// The kind: `Ingress`.
    #[schemars(extend("enum" = ["Ingress"]))]
    pub kind: String,
    /// The object's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Only the routes of the Ingress's rule for this host (as the rule writes it, e.g.
    /// `*.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,
    /// Only the Ingress's paths written exactly so (e.g. `/api`), in every rule or in the
    /// rule of `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub path: Option<String>,
}

/// What the controller made of a `RoutePolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutePolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (the policy is valid and applied to at least one target) and `Conflicted`
    /// (an older RoutePolicy sets one of its fields for the same route, and wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// One entry per target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
}

/// Whether one target takes the policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// The target's name.
    pub name: String,
    /// Whether the policy applies to it.
    pub accepted: bool,
    /// Why (CamelCase).
    pub reason: String,
    /// Details for people.
    pub message: String,
}
