//! The `portico` binary: parses the command line, installs logging, and wires a source, the
//! publisher and the data plane together.

use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Parser as _;
use portico_controller::cli::{self, Cli, Command, LogFormat, RunArgs};
use portico_controller::inputs::Inputs;
use portico_controller::{echo, publish, quickstart, source, translate};
use portico_proxy::{admin, Drain, Proxy, ProxyConfig, TlsCertificate, TrustedProxies};
use tokio::sync::watch;
use tracing::info;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let workers = match &cli.command {
        Some(Command::Quickstart(q)) => q.run.workers,
        _ => cli.run.workers,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = workers {
        runtime.worker_threads(n.max(1));
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
    let Some(dir) = args.manifests.clone() else {
        bail!("no source: pass --manifests DIR (cluster mode is not available in this build yet)");
    };
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
        access_log: !args.no_access_log,
        ..ProxyConfig::default()
    })?;
    let listeners = Proxy::bind(Some(args.http_addr), Some(args.https_addr))?;
    let admin_listener = admin::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding the admin listener {}", args.admin_addr))?;
    tokio::spawn(admin::serve(admin_listener, proxy.clone()));

    let options = translate::Options {
        serve_classless: true,
        default_certificate,
        default_backend_service,
        allow_external_name: args.allow_external_name,
        exclusive_host_namespaces: !args.allow_shared_hosts,
        ..translate::Options::new(Arc::new(TlsCertificate::self_signed(&["portico.invalid"])?))
    };
    let (tx, rx) = watch::channel(Arc::new(Inputs::default()));
    tokio::spawn(async move {
        if let Err(e) = source::manifests::run(dir, tx).await {
            tracing::error!(error = %e, "the manifest source stopped; the last configuration keeps serving");
        }
    });
    tokio::spawn(publish::run(proxy.clone(), rx, options));

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
    info!("portico stopped");
    Ok(())
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
