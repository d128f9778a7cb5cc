//! The `portico` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::echo::EchoEndpoint;

#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "Portico: a Kubernetes ingress controller"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the quickstart: demo backends plus Portico serving example manifests.
    Quickstart(Box<QuickstartArgs>),
    /// Run demo echo backends (`ADDR=SERVICE`, repeatable).
    Echo {
        #[arg(long = "listen", required = true)]
        listen: Vec<EchoEndpoint>,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Serving flags, shared by the main command and the quickstart.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Serve the Kubernetes manifests in this directory (watched for changes) instead of a
    /// cluster.
    #[arg(long, env = "PORTICO_MANIFESTS")]
    pub manifests: Option<PathBuf>,
    /// Kubeconfig file for cluster mode (default: in-cluster configuration, or $KUBECONFIG).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The class name matched by the legacy `kubernetes.io/ingress.class` annotation.
    #[arg(long, default_value = "portico")]
    pub ingress_class: String,
    /// `spec.controller` of the IngressClasses that are Portico's.
    #[arg(long, default_value = "portico.dev/ingress-controller")]
    pub controller_name: String,
    /// In cluster mode, also serve Ingresses that name no class.
    #[arg(long)]
    pub watch_ingress_without_class: bool,
    /// Watch only this namespace (repeatable; default: the whole cluster).
    #[arg(long = "watch-namespace")]
    pub watch_namespaces: Vec<String>,
    /// A namespace whose labelled certificate Secrets (`portico.dev/certificate: "true"`) any
    /// Ingress may be served with (repeatable; an Ingress's own namespace always counts).
    #[arg(long = "shared-certificate-namespace")]
    pub shared_certificate_namespaces: Vec<String>,
    /// The Service (NAMESPACE/NAME) whose address is written into Ingress status.
    #[arg(long)]
    pub publish_service: Option<String>,
    /// Addresses written into Ingress status (comma-separated IPs or host names).
    #[arg(long, value_delimiter = ',')]
    pub publish_status_address: Vec<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "portico-leader")]
    pub election_id: String,
    /// Namespace of the leader-election Lease (Portico's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub pod_namespace: String,
    /// This replica's name in the leader election.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Plain HTTP listener.
    #[arg(long, default_value = "[::]:8080")]
    pub http_addr: SocketAddr,
    /// HTTPS listener.
    #[arg(long, default_value = "[::]:8443")]
    pub https_addr: SocketAddr,
    /// Admin listener: /healthz, /readyz, /metrics.
    #[arg(long, default_value = "[::]:10254")]
    pub admin_addr: SocketAddr,
    /// Peers whose X-Forwarded-* headers are trusted (CIDR[,CIDR…]).
    #[arg(long, default_value = "")]
    pub trusted_proxies: String,
    /// The Secret (NAMESPACE/NAME, type kubernetes.io/tls) served when no other certificate
    /// matches; a self-signed one is generated when absent.
    #[arg(long)]
    pub default_certificate: Option<String>,
    /// The Service (NAMESPACE/NAME) that takes requests no rule matches (first port).
    #[arg(long)]
    pub default_backend_service: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Port written into HTTP→HTTPS redirects (left out when 443).
    #[arg(long, default_value_t = 443)]
    pub https_redirect_port: u16,
    /// Forward to ExternalName Services (resolved per request; loopback, link-local and
    /// metadata addresses are refused).
    #[arg(long)]
    pub allow_external_name: bool,
    /// Let Ingresses in several namespaces share a host (off: the first namespace owns it).
    #[arg(long)]
    pub allow_shared_hosts: bool,
    /// Longest time a client may take to send a request head (also the HTTP/1.1 idle limit).
    #[arg(long, default_value = "60s", value_parser = crate::duration::parse)]
    pub client_header_timeout: Duration,
    /// HTTP/2 keep-alive: ping interval is a third of this.
    #[arg(long, default_value = "75s", value_parser = crate::duration::parse)]
    pub idle_timeout: Duration,
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse)]
    pub upstream_connect_timeout: Duration,
    #[arg(long, default_value = "60s", value_parser = crate::duration::parse)]
    pub upstream_response_timeout: Duration,
    /// Pooled upstream connections unused this long are closed.
    #[arg(long, default_value = "30s", value_parser = crate::duration::parse)]
    pub upstream_idle_timeout: Duration,
    /// After SIGTERM: time unready before the listeners close.
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse)]
    pub shutdown_delay: Duration,
    /// After the listeners close: time in-flight requests get to finish.
    #[arg(long, default_value = "30s", value_parser = crate::duration::parse)]
    pub shutdown_grace: Duration,
    /// Most connections open at once per listener (0: unlimited); more are closed at once.
    #[arg(long, default_value_t = 16384)]
    pub max_connections: usize,
    /// Expect a PROXY protocol (v1 or v2) header on connections from --trusted-proxies (a load
    /// balancer that sends it); other peers are served as they are.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Turn the access log off.
    #[arg(long)]
    pub no_access_log: bool,
    /// Worker threads of the runtime (default: one per core; 1 runs everything on one thread).
    #[arg(long)]
    pub workers: Option<usize>,
}

#[derive(Clone, Debug, Args)]
pub struct QuickstartArgs {
    /// Serve this directory instead of a fresh copy of the embedded example manifests.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Parses `NAMESPACE/NAME` (a bare `NAME` is in `default`).
pub fn object_key(s: &str) -> Result<(String, String), String> {
    let (ns, name) = s.split_once('/').unwrap_or(("default", s));
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        return Err(format!("{s:?}: expected NAMESPACE/NAME"));
    }
    Ok((ns.to_string(), name.to_string()))
}
