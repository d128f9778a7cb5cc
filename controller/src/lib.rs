//! Portico's controller: sources → translate → publish.
//!
//! A source (the manifest directory, or Kubernetes watches) produces [`inputs::Inputs`]; the
//! pure [`translate::translate`] turns them into one `portico_proxy::Snapshot` plus a list of
//! per-object problems; [`publish`] makes the snapshot live in the embedded data plane.

pub mod cli;
pub mod duration;
pub mod echo;
pub mod error;
pub mod events;
pub mod inputs;
pub mod leader;
pub mod problem;
pub mod publish;
pub mod quickstart;
pub mod rbac;
pub mod source;
pub mod status;
pub mod translate;
