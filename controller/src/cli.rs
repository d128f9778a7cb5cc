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
    /// Check what ingress-nginx Ingresses and its ConfigMap become under Portico (exit 1 when
    /// switching would change behaviour).
    MigrateCheck(MigrateCheckArgs),
    /// Run demo echo backends (`ADDR=SERVICE`, repeatable).
    Echo {
        #[arg(long = "listen", required = true)]
        listen: Vec<EchoEndpoint>,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Print the live routing table of a running instance (from its admin listener).
    Routes(RoutesArgs),
}

/// `portico routes`.
#[derive(Clone, Debug, Args)]
pub struct RoutesArgs {
    /// The running instance's admin listener, HOST:PORT.
    #[arg(long, env = "PORTICO_ADMIN_ADDR", default_value = "127.0.0.1:10254")]
    pub admin_addr: String,
    /// Show only the host table a request for this host is served from (exact, then
    /// wildcard, then rules without a host), plus the default backend.
    #[arg(long)]
    pub host: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = RoutesOutput::Table)]
    pub output: RoutesOutput,
    /// File holding the admin bearer token (needed from other hosts than localhost).
    #[arg(long, env = "PORTICO_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoutesOutput {
    Table,
    Json,
}

/// Access-log line formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccessLogFormat {
    /// One JSON object per request.
    Json,
    /// A combined-style line, like ingress-nginx's default.
    Text,
}

impl From<AccessLogFormat> for portico_proxy::access_log::Format {
    fn from(f: AccessLogFormat) -> Self {
        match f {
            AccessLogFormat::Json => portico_proxy::access_log::Format::Json,
            AccessLogFormat::Text => portico_proxy::access_log::Format::Text,
        }
    }
}

/// A sampling rate between 0 and 1.
fn sample_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number between 0 and 1"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is not between 0 and 1"))
    }
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
    /// Admin listener: /healthz, /readyz and /metrics for anyone; /status, /api/routes and
    /// /api/log-level for localhost, or with --admin-token-file's bearer token.
    #[arg(long, default_value = "[::]:10254")]
    pub admin_addr: SocketAddr,
    /// File holding a bearer token that opens /status, /api/routes and /api/log-level to
    /// peers other than localhost.
    #[arg(long, env = "PORTICO_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Peers whose X-Forwarded-* headers are trusted (CIDR[,CIDR…]); `trustedProxies` of the
    /// --ingress-class class's IngressClassParameters adds to them.
    #[arg(long, default_value = "")]
    pub trusted_proxies: String,
    /// The Secret (NAMESPACE/NAME, type kubernetes.io/tls) served when no other certificate
    /// matches (a class's IngressClassParameters may set its own for its TLS hosts); a
    /// self-signed one is generated when absent.
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
    /// Serve `ssl-passthrough` Ingresses: TLS connections for their hosts go, unterminated, to
    /// their backend (chosen by SNI on the HTTPS port). Off: the annotation is reported and the
    /// Ingress is served with TLS terminated.
    #[arg(long)]
    pub enable_ssl_passthrough: bool,
    /// Where `auth-url` sub-requests may go: CIDRs and host names, comma-separated. Empty:
    /// anywhere but loopback, link-local (cloud metadata), unspecified and multicast
    /// addresses; set: only what it lists (a CIDR may open a loopback auth service).
    #[arg(long, default_value = "")]
    pub auth_url_allowed: String,
    /// Connect timeout of `auth-url` sub-requests.
    #[arg(long, default_value = "2s", value_parser = crate::duration::parse)]
    pub auth_connect_timeout: Duration,
    /// Longest wait for an `auth-url` answer; past it the request gets 500.
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse)]
    pub auth_timeout: Duration,
    /// Let Ingresses in several namespaces share a host (off: the first namespace owns it).
    #[arg(long)]
    pub allow_shared_hosts: bool,
    /// Longest time a client may take to send a request head (also the HTTP/1.1 idle limit).
    #[arg(long, default_value = "60s", value_parser = crate::duration::parse)]
    pub client_header_timeout: Duration,
    /// Longest pause between two reads of a request body (nginx's `client_body_timeout`);
    /// a client stalling longer gets 408 and its upstream request is abandoned.
    #[arg(long, default_value = "60s", value_parser = crate::duration::parse)]
    pub client_body_timeout: Duration,
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
    /// Access-log format (written on stdout; other logs go to stderr); `accessLog.format` of
    /// the --ingress-class class's IngressClassParameters overrides it.
    #[arg(long, value_enum, default_value_t = AccessLogFormat::Text)]
    pub access_log_format: AccessLogFormat,
    /// Leave requests for this exact path out of the access log (repeatable; health checks).
    #[arg(long = "access-log-exclude-path")]
    pub access_log_exclude_paths: Vec<String>,
    /// Leave requests whose User-Agent contains this out of the access log (repeatable; e.g.
    /// kube-probe/).
    #[arg(long = "access-log-exclude-user-agent")]
    pub access_log_exclude_user_agents: Vec<String>,
    /// Fraction of requests written to the access log, 0 to 1 (5xx answers always are).
    #[arg(long, default_value = "1", value_parser = sample_rate)]
    pub access_log_sample: f64,
    /// Export one span per sampled request to this OTLP/HTTP collector
    /// (`http://HOST:4318/v1/traces`, JSON encoding).
    #[cfg(feature = "otlp")]
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Probability that a request without a sampled parent `traceparent` starts a sampled
    /// trace (requests whose parent is sampled always are).
    #[cfg(feature = "otlp")]
    #[arg(long, default_value = "0.01", value_parser = sample_rate)]
    pub otlp_sample_ratio: f64,
    /// `service.name` of the exported spans.
    #[cfg(feature = "otlp")]
    #[arg(long, default_value = "portico")]
    pub otlp_service_name: String,
    /// Worker threads of the runtime (default: one per core; 1 runs everything on one thread).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Serve the validating admission webhook (HTTPS, `POST /validate`) on this address, its
    /// own port; off when absent. Needs --webhook-cert-file and --webhook-key-file.
    #[arg(long, requires_all = ["webhook_cert_file", "webhook_key_file"])]
    pub webhook_addr: Option<SocketAddr>,
    /// PEM certificate chain of the webhook (re-read when the file changes).
    #[arg(long, requires = "webhook_addr")]
    pub webhook_cert_file: Option<PathBuf>,
    /// PEM private key of the webhook (re-read when the file changes).
    #[arg(long, requires = "webhook_addr")]
    pub webhook_key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Args)]
pub struct MigrateCheckArgs {
    /// Read the Ingresses and ConfigMap from this directory of manifests instead of the cluster.
    #[arg(long)]
    pub manifests: Option<PathBuf>,
    /// Kubeconfig file (default: in-cluster configuration, or $KUBECONFIG).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// ingress-nginx's controller ConfigMap (NAMESPACE/NAME; a bare NAME matches any namespace
    /// in a directory).
    #[arg(long, default_value = crate::migrate::load::DEFAULT_CONFIG_MAP)]
    pub configmap: String,
    /// Check only Ingresses of this class (`spec.ingressClassName` or the legacy annotation).
    #[arg(long)]
    pub class: Option<String>,
    /// Name of the suggested IngressClassParameters.
    #[arg(long, default_value = "portico")]
    pub parameters_name: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
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
