//! The `portico` binary: parses the command line, installs logging, and wires a source, the
//! publisher and the data plane together.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use portico_controller::admin_ext::AdminExtension;
use portico_controller::cli::{self, Cli, Command, RunArgs};
use portico_controller::inputs::Inputs;
use portico_controller::publish::Report;
use portico_controller::{
    echo, events, leader, logging, migrate, policy_status, publish, quickstart, routes_cmd, source,
    status, translate, webhook,
};
use portico_proxy::{
    access_log, admin, trace_context, Drain, Proxy, ProxyConfig, TlsCertificate, TrustedProxies,
};
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
        Some(Command::MigrateCheck(args)) => {
            logging::init(cli::LogFormat::Text);
            // Exit 0: behaviour kept; 1: it would change; 2: the check could not run.
            let client = match &args.manifests {
                Some(_) => None,
                None => match kube_client(args.kubeconfig.as_deref()).await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        eprintln!("migrate-check: {e:#}");
                        std::process::exit(2)
                    }
                },
            };
            match migrate::run(&args, client).await {
                Ok(code) => std::process::exit(code),
                Err(e) => {
                    eprintln!("migrate-check: {e}");
                    std::process::exit(2)
                }
            }
        }
        Some(Command::Routes(args)) => {
            print!("{}", routes_cmd::run(&args).await?);
            Ok(())
        }
        Some(Command::Echo { listen, log_format }) => {
            logging::init(log_format);
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
            let logs = logging::init(q.run.log_format);
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
            serve(run, logs).await
        }
        None => {
            let logs = logging::init(cli.run.log_format);
            serve(cli.run, logs).await
        }
    }
}

async fn serve(args: RunArgs, logs: logging::LogControl) -> anyhow::Result<()> {
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

    #[cfg(feature = "otlp")]
    let tracing = match &args.otlp_endpoint {
        Some(endpoint) => {
            let exporter = portico_controller::otlp::start(endpoint, &args.otlp_service_name)
                .map_err(|e| anyhow::anyhow!(e))?;
            info!(%endpoint, sample_ratio = args.otlp_sample_ratio, "exporting spans");
            trace_context::Tracing {
                sample_new: args.otlp_sample_ratio,
                sink: Some(exporter),
            }
        }
        None => trace_context::Tracing::default(),
    };
    #[cfg(not(feature = "otlp"))]
    let tracing = trace_context::Tracing::default();
    let auth_url_allowed =
        portico_proxy::access::external::AuthUrlPolicy::parse(&args.auth_url_allowed)
            .map_err(|e| anyhow::anyhow!("--auth-url-allowed: {e}"))?;
    let proxy = Proxy::new(ProxyConfig {
        trusted_proxies: trusted,
        https_redirect_port: args.https_redirect_port,
        allow_external_name: args.allow_external_name,
        client_header_timeout: args.client_header_timeout,
        client_body_timeout: args.client_body_timeout,
        idle_timeout: args.idle_timeout,
        upstream_connect_timeout: args.upstream_connect_timeout,
        upstream_response_timeout: args.upstream_response_timeout,
        upstream_idle_timeout: args.upstream_idle_timeout,
        proxy_protocol: args.proxy_protocol,
        max_connections: args.max_connections,
        access_log: !args.no_access_log,
        access_log_options: access_log::Options {
            format: args.access_log_format.into(),
            exclude_paths: args.access_log_exclude_paths.clone(),
            exclude_user_agents: args.access_log_exclude_user_agents.clone(),
            sample: args.access_log_sample,
        },
        tracing,
        auth_url_allowed: auth_url_allowed.clone(),
        auth_timeouts: portico_proxy::access::external::AuthTimeouts {
            connect: args.auth_connect_timeout,
            total: args.auth_timeout,
        },
        ..ProxyConfig::default()
    })?;
    let admin_token = match &args.admin_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("reading --admin-token-file {}", path.display()))?;
            let token = token.trim().to_string();
            anyhow::ensure!(
                !token.is_empty(),
                "--admin-token-file {} is empty",
                path.display()
            );
            Some(token)
        }
        None => None,
    };
    let listeners = Proxy::bind(Some(args.http_addr), Some(args.https_addr))?;
    let admin_listener = admin::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding the admin listener {}", args.admin_addr))?;

    let mut options = translate::Options {
        serve_classless: true,
        ingress_class: args.ingress_class.clone(),
        controller_name: args.controller_name.clone(),
        default_certificate,
        default_backend_service,
        allow_external_name: args.allow_external_name,
        auth_url_allowed,
        shared_certificate_namespaces: args.shared_certificate_namespaces.clone(),
        exclusive_host_namespaces: !args.allow_shared_hosts,
        enable_ssl_passthrough: args.enable_ssl_passthrough,
        ..translate::Options::new(Arc::new(TlsCertificate::self_signed(&["portico.invalid"])?))
    };
    let (tx, rx) = watch::channel(Arc::new(Inputs::default()));
    let (reports_tx, reports_rx) = watch::channel(Arc::new(Report::default()));
    tokio::spawn(admin::serve(
        admin_listener,
        proxy.clone(),
        admin::AdminConfig {
            token: admin_token,
            extension: Some(Arc::new(AdminExtension {
                proxy: proxy.clone(),
                reports: reports_rx.clone(),
                logs: Some(logs),
            })),
        },
    ));
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
    if let (Some(addr), Some(cert_file), Some(key_file)) = (
        args.webhook_addr,
        args.webhook_cert_file.clone(),
        args.webhook_key_file.clone(),
    ) {
        let config = webhook::server::Config {
            addr,
            cert_file,
            key_file,
        };
        let settings = webhook::Settings {
            options: options.clone(),
            watch_namespaces: match args.manifests {
                Some(_) => Vec::new(),
                None => args.watch_namespaces.clone(),
            },
        };
        webhook::server::spawn(config, rx.clone(), settings)
            .await
            .context("starting the admission webhook")?;
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
