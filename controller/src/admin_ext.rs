//! What the controller adds to the data plane's admin listener: control-plane metrics, the
//! readiness detail, the status page, the routes API and the runtime log level.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use portico_proxy::admin::Extension;
use portico_proxy::Proxy;
use tokio::sync::watch;

use crate::logging::LogControl;
use crate::publish::Report;
use crate::status_page;
use crate::telemetry::TELEMETRY;

/// The admin extension of the `portico` binary.
pub struct AdminExtension {
    pub proxy: Proxy,
    pub reports: watch::Receiver<Arc<Report>>,
    pub logs: Option<LogControl>,
}

impl Extension for AdminExtension {
    fn metrics(&self, out: &mut String) {
        TELEMETRY.render(out);
    }

    fn not_ready(&self) -> Option<String> {
        TELEMETRY.not_ready()
    }

    fn status_page(&self) -> String {
        let report = self.reports.borrow().clone();
        let live = self.proxy.live();
        status_page::render(live.as_deref(), &report, TELEMETRY.leader(), now())
    }

    fn routes(&self, host: Option<&str>) -> String {
        let report = self.reports.borrow().clone();
        let live = self.proxy.live();
        let view = status_page::routes(live.as_deref(), &report, host);
        serde_json::to_string_pretty(&view).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    fn log_level(&self) -> String {
        match &self.logs {
            Some(l) => l.current(),
            None => String::new(),
        }
    }

    fn set_log_level(&self, directives: &str) -> Result<String, String> {
        match &self.logs {
            Some(l) => l.set(directives),
            None => Err("logging is not reloadable in this process".into()),
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
