//! The `portico` binary: parses the command line, installs logging, and wires a source, the
//! publisher and the data plane together.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use portico_controller::cli::{self, Cli, Command, LogFormat, RunArgs};
use portico_controller::inputs::Inputs;
use portico_controller::publish::Report;
use portico_controller::{
    echo, events, leader, policy_status, publish, quickstart, source, status, translate,
};
use portico_proxy::{admin, Drain, Proxy, ProxyConfig, TlsCertificate, TrustedProxies};
use tokio::sync::watch;
use tracing::info;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let workers = match &cli.command {
        Some(Command::Quickstart(q)) => q.run.workers,
        _ => cli.run.workers,
    };
    // One worker: a current-thread runtime, with no cross-thread wake-ups on the request path.
    let mut runtime = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all();
    if let Some(n) = workers.filter(|n| *n > 1) {
        runtime.worker_threads(n);
    }
    runtime.build()?.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Echo { listen, log_format }) => {
            init_logging(log_format);
            let tasks: Vec<_> = listen
                .into_iter()
                .map(|e| tokio::spawn(echo::serve(e)))
                .collect();
            for t in tasks {
                t.await??;
            }
            Ok(())
        }
        Some(Command::Quickstart(q)) => {
            init_logging(q.run.log_format);
            let dir = quickstart::prepare(q.dir.as_deref()).context("preparing the quickstart")?;
            for backend in quickstart::backends() {
                let listener = tokio::net::TcpListener::bind(backend.addr)
                    .await
                    .with_context(|| format!("binding demo backend {}", backend.addr))?;
                tokio::spawn(echo::serve_listener(listener, backend.service));
            }
            let mut run = q.run;
            if run.https_redirect_port == 443 {
                run.https_redirect_port = run.https_addr.port();
            }
            run.manifests = Some(dir.clone());
            info!(
                dir = %dir.display(),
                "quickstart: serving these manifests; edit them and changes go live"
            );
            println!(
                "\nPortico quickstart — manifests in {dir}\n\
                 Try:\n  curl --resolve http.portico.test:{http}:127.0.0.1 http://http.portico.test:{http}/\n  \
                 curl -i --resolve demo.portico.test:{http}:127.0.0.1 http://demo.portico.test:{http}/\n  \
                 curl -k --resolve demo.portico.test:{https}:127.0.0.1 https://demo.portico.test:{https}/api/hello\n  \
                 curl -k --http2 --resolve demo.portico.test:{https}:127.0.0.1 https://demo.portico.test:{https}/\n  \
                 curl --http2-prior-knowledge --resolve http.portico.test:{http}:127.0.0.1 http://http.portico.test:{http}/\n",
                dir = dir.display(),
                http = run.http_addr.port(),
                https = run.https_addr.port(),
            );
            serve(run).await
        }
        None => {
            init_logging(cli.run.log_format);
            serve(cli.run).await
        }
    }
}

async fn serve(args: RunArgs) -> anyhow::Result<()> {
    let trusted = TrustedProxies::parse(&args.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?;
    let default_certificate = args
        .default_certificate
        .as_deref()
        .map(cli::object_key)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--default-certificate: {e}"))?;
    let default_backend_service = args
        .default_backend_service
        .as_deref()
        .map(cli::object_key)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--default-backend-service: {e}"))?;

    let proxy = Proxy::new(ProxyConfig {
        trusted_proxies: trusted,
        https_redirect_port: args.https_redirect_port,
        allow_external_name: args.allow_external_name,
        client_header_timeout: args.client_header_timeout,
        idle_timeout: args.idle_timeout,
        upstream_connect_timeout: args.upstream_connect_timeout,
        upstream_response_timeout: args.upstream_response_timeout,
        upstream_idle_timeout: args.upstream_idle_timeout,
        proxy_protocol: args.proxy_protocol,
        max_connections: args.max_connections,
        access_log: !args.no_access_log,
        ..ProxyConfig::default()
    })?;
    let listeners = Proxy::bind(Some(args.http_addr), Some(args.https_addr))?;
    let admin_listener = admin::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding the admin listener {}", args.admin_addr))?;
    tokio::spawn(admin::serve(admin_listener, proxy.clone()));

    let mut options = translate::Options {
        serve_classless: true,
        ingress_class: args.ingress_class.clone(),
        controller_name: args.controller_name.clone(),
        default_certificate,
        default_backend_service,
        allow_external_name: args.allow_external_name,
        shared_certificate_namespaces: args.shared_certificate_namespaces.clone(),
        exclusive_host_namespaces: !args.allow_shared_hosts,
        ..translate::Options::new(Arc::new(TlsCertificate::self_signed(&["portico.invalid"])?))
    };
    let (tx, rx) = watch::channel(Arc::new(Inputs::default()));
    let (reports_tx, reports_rx) = watch::channel(Arc::new(Report::default()));
    let mut lease = None;
    match args.manifests.clone() {
        Some(dir) => {
            tokio::spawn(async move {
                if let Err(e) = source::manifests::run(dir, tx).await {
                    tracing::error!(error = %e, "the manifest source stopped; the last configuration keeps serving");
                }
            });
        }
        None => {
            options.serve_classless = args.watch_ingress_without_class;
            let client = kube_client(args.kubeconfig.as_deref()).await?;
            let scope = source::cluster::WatchScope {
                namespaces: args.watch_namespaces.clone(),
            };
            tokio::spawn(source::cluster::run(client.clone(), scope, tx));

            let identity = args
                .pod_name
                .clone()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| format!("portico-{}", std::process::id()));
            let config =
                leader::LeaseConfig::new(&args.pod_namespace, &args.election_id, &identity);
            let (leader_tx, leader_rx) = watch::channel(false);
            tokio::spawn(leader::run(client.clone(), config.clone(), leader_tx));
            let status = status::StatusConfig {
                publish_service: args
                    .publish_service
                    .as_deref()
                    .map(cli::object_key)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--publish-service: {e}"))?,
                publish_addresses: args.publish_status_address.clone(),
            };
            tokio::spawn(status::run(
                client.clone(),
                status,
                reports_rx.clone(),
                leader_rx.clone(),
            ));
            tokio::spawn(policy_status::run(
                client.clone(),
                reports_rx.clone(),
                leader_rx.clone(),
            ));
            tokio::spawn(events::run(client.clone(), identity, reports_rx, leader_rx));
            lease = Some((client, config));
        }
    }
    tokio::spawn(publish::run(proxy.clone(), rx, options, reports_tx));

    info!(
        http = %args.http_addr,
        https = %args.https_addr,
        admin = %args.admin_addr,
        "portico serving"
    );
    proxy
        .serve(
            listeners,
            shutdown_signal(),
            Drain {
                delay: args.shutdown_delay,
                grace: args.shutdown_grace,
            },
        )
        .await;
    if let Some((client, config)) = lease {
        leader::release(client, &config).await;
    }
    info!("portico stopped");
    Ok(())
}

/// A client from `--kubeconfig`, else the in-cluster configuration or $KUBECONFIG.
async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await.context(
            "no cluster configuration: run in a cluster, set KUBECONFIG or pass --manifests DIR",
        )?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("interrupt received"),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTICO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
