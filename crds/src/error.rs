//! Errors of the CRD generator.

/// Why a CRD could not be rendered for the chart.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("serializing CRD {name}: {source}")]
    Json {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// Helm would read `{{` in the generated text as a template action.
    #[error("CRD {name} contains {{{{, which Helm would read as a template action")]
    TemplateSyntax { name: String },
    #[error("CRD without metadata.name")]
    Unnamed,
}
