//! Sources: where objects come from. Each ends in the same [`crate::inputs::Inputs`].

pub mod cluster;
pub mod manifests;
pub mod secret_certificates;
pub mod watch_store;
