//! The command line every service binary shares, and running until a shutdown signal.

use crate::offline::{run_offline_with, Offline};
use crate::settings::CommonArgs;

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use eventlog::domain::Domain;

/// Resolves when SIGINT or SIGTERM arrives, then cancels `token`.
pub async fn shutdown_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        _ = term => tracing::info!("SIGTERM received; shutting down"),
        _ = token.cancelled() => {}
    }
    token.cancel();
}

/// The command line of a service without settings of its own.
#[derive(Debug, clap::Parser)]
pub struct ServiceCli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<ServiceCommand>,
    /// Settings shared by every service.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `serve` or an offline log command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ServiceCommand {
    /// Run the service (the default).
    Serve,
    /// Offline log commands.
    #[command(flatten)]
    Offline(Offline),
}

/// A binary's whole life: offline commands run and exit; `serve` starts the app, stops it on
/// SIGINT/SIGTERM and reports how it ended. Returns the process exit code.
pub async fn run_binary<D: Domain, F, Fut>(
    domain: &'static str,
    command: Option<ServiceCommand>,
    common: &CommonArgs,
    render_state: impl Fn(&D::State) -> serde_json::Value,
    serve: F,
) -> std::result::Result<i32, String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<crate::app::App>>,
{
    match command.unwrap_or(ServiceCommand::Serve) {
        ServiceCommand::Offline(offline) => {
            run_offline_with::<D>(domain, &common.store_config(domain), &offline, render_state)
        }
        ServiceCommand::Serve => {
            let app = serve()
                .await
                .map_err(|e| format!("starting the {domain} service: {e}"))?;
            tokio::spawn(shutdown_on_signal(app.shutdown_token()));
            app.wait()
                .await
                .map_err(|e| format!("{domain} service: {e}"))?;
            Ok(0)
        }
    }
}
