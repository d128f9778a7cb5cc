//! The process's logging: diagnostics on stderr (`--log-format`), the access log on stdout
//! (`--access-log-format`, or `accessLog.format` of the class's parameters, line by line), one filter for both that the admin listener can change at runtime.

use std::sync::Arc;

use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, reload, Layer as _, Registry};

use crate::cli::LogFormat;
use portico_proxy::access_log;

/// The filter used when `PORTICO_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

type Handle = reload::Handle<EnvFilter, Registry>;

/// Reads and replaces the live log filter.
#[derive(Clone)]
pub struct LogControl {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("filter", &self.current())
            .finish()
    }
}

impl LogControl {
    /// The filter now, as directives.
    pub fn current(&self) -> String {
        self.handle
            .with_current(|f| f.to_string())
            .unwrap_or_default()
    }

    /// Replaces the filter with `directives` (`EnvFilter` syntax: `debug`,
    /// `info,portico::access=off`, …). Refuses an empty or invalid filter.
    pub fn set(&self, directives: &str) -> Result<String, String> {
        if directives.trim().is_empty() {
            return Err("empty log filter (example: info,portico::access=off)".into());
        }
        let filter = EnvFilter::builder()
            .parse(directives)
            .map_err(|e| format!("invalid log filter {directives:?}: {e}"))?;
        self.handle
            .reload(filter)
            .map_err(|e| format!("the log filter could not be changed: {e}"))?;
        Ok(self.current())
    }
}

/// Installs the global subscriber. The initial filter is `PORTICO_LOG`, else `info`.
pub fn init(format: LogFormat) -> LogControl {
    let initial = std::env::var("PORTICO_LOG").ok();
    let filter = initial
        .as_deref()
        .and_then(|d| EnvFilter::builder().parse(d).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let is_access = |m: &tracing::Metadata<'_>| m.target() == access_log::TARGET;

    let diagnostics = match format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter_fn(move |m| !is_access(m)));
    // Each access-log line carries its own format (`--access-log-format`, or the class's
    // `accessLog.format`): a JSON line has fields, a text line only its message.
    let json_line = |m: &tracing::Metadata<'_>| m.fields().field("status").is_some();
    // One JSON object per request, with a timestamp and the fields.
    let access_json = fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::io::stdout)
        .with_filter(filter_fn(move |m| is_access(m) && json_line(m)));
    // The line alone, as ingress-nginx writes it.
    let access_text = fmt::layer()
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .with_filter(filter_fn(move |m| is_access(m) && !json_line(m)));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(diagnostics)
        .with(access_json)
        .with(access_text)
        .try_init();
    if let Some(bad) = initial.filter(|d| EnvFilter::builder().parse(d).is_err()) {
        tracing::warn!(filter = %bad, "PORTICO_LOG is not a valid filter; using info");
    }
    LogControl {
        handle: Arc::new(handle),
    }
}
