//! Portico's controller: sources → translate → publish.
//!
//! A source (the manifest directory, or Kubernetes watches) produces [`inputs::Inputs`]; the
//! pure [`translate::translate`] turns them into one `portico_proxy::Snapshot` plus a list of
//! per-object problems; [`publish`] makes the snapshot live in the embedded data plane.
//!
//! - [`source`]: [`source::manifests`] reads and watches a directory of manifests;
//!   `source::cluster` watches the API server. Both parse a Secret's PEM as it arrives, once
//!   per content, and keep only its digest (`source::secret_certificates`).
//! - [`inputs`]: plain `Vec<Arc<K>>` per kind plus parsed certificates.
//! - [`translate`]: classes, hosts, paths, conflicts, host ownership, backends, TLS; no I/O.
//! - [`problem`]: every reason an object (or a manifest file) is not used as written.
//! - [`error`]: why a source stopped.
//! - [`webhook`]: the validating admission webhook (translate run on a submitted object).

pub mod admin_ext;
pub mod cli;
pub mod duration;
pub mod echo;
pub mod error;
pub mod events;
pub mod inputs;
pub mod leader;
pub mod logging;
pub mod migrate;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod policy_status;
pub mod problem;
pub mod publish;
pub mod quickstart;
pub mod rbac;
pub mod routes_cmd;
pub mod source;
pub mod status;
pub mod status_page;
pub mod telemetry;
pub mod translate;
pub mod webhook;
