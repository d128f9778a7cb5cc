//! Errors of the controller's sources.

use std::path::PathBuf;

/// Why a source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("watching {dir}: {source}")]
    Watch { dir: PathBuf, source: notify::Error },
    #[error("the inputs channel closed")]
    Closed,
    #[error("the manifest reader failed: {0}")]
    Reader(String),
}
