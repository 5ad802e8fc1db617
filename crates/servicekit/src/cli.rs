//! The command line every service binary shares, and its one entry point: [`main_for`] parses
//! it, runs an offline command or serves until SIGINT/SIGTERM, and returns the exit code.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::app::{start_participant, App};
use crate::error::Result;
use crate::http::DomainApi;
use crate::offline::{run_offline, Offline};
use crate::participant::{Simple, SimpleParticipant};
use crate::settings::CommonArgs;
use crate::telemetry::init_telemetry;
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

/// The command line of a service: a subcommand, the settings every service takes, and the
/// service's own flags `A` ([`NoArgs`] for a service without any).
#[derive(Debug, clap::Parser)]
pub struct Cli<A: clap::Args> {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<ServiceCommand>,
    /// Settings shared by every service.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The service's own settings.
    #[command(flatten)]
    pub service: A,
}

impl<A: clap::Args> Cli<A> {
    /// Parses the process's arguments, under the binary's name and description.
    pub fn parse_for(name: &'static str, about: &'static str) -> Self {
        let mut command = <Self as clap::CommandFactory>::command()
            .name(name)
            .bin_name(name)
            .about(about);
        let matches = command.get_matches_mut();
        <Self as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| {
            e.format(&mut command).exit();
        })
    }
}

/// The flags of a service that has none of its own.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct NoArgs {}

/// `serve` or an offline log command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ServiceCommand {
    /// Run the service (the default).
    Serve,
    /// Offline log commands.
    #[command(flatten)]
    Offline(Offline),
}

/// What a service binary is made of: its domain, its name, its own flags, how `replay` shows
/// its state and how it starts. [`main_for`] is the whole `main` of a binary.
pub trait Service: Send + 'static {
    /// The domain core whose log the service keeps.
    type D: Domain;
    /// The service's own flags.
    type Args: clap::Args + std::fmt::Debug + Send;
    /// The domain's (and the binary's) name.
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;

    /// The state as `replay` prints it.
    fn render_state(state: &<Self::D as Domain>::State) -> serde_json::Value;

    /// Starts the service (log, state, NATS, relay, consumers, HTTP).
    fn start(
        common: &CommonArgs,
        args: Self::Args,
    ) -> impl std::future::Future<Output = Result<App>> + Send;
}

impl<P: SimpleParticipant> Service for Simple<P> {
    type D = P;
    type Args = NoArgs;
    const NAME: &'static str = P::PARTICIPANT.name();
    const ABOUT: &'static str = "Saga participant service";

    fn render_state(state: &P::State) -> serde_json::Value {
        P::render_state(state)
    }

    async fn start(common: &CommonArgs, _: NoArgs) -> Result<App> {
        let config = common.service_config(Self::NAME, P::PARTICIPANT.default_http_addr());
        let admin_token = common.admin_token.clone();
        start_participant(config, Self::default(), |live| {
            P::routes().with_state(DomainApi {
                live: live.clone(),
                admin_token,
            })
        })
        .await
    }
}

/// The whole `main` of a service binary: telemetry, the command line, then [`run`] on a
/// multi-threaded runtime.
pub fn main_for<S: Service>() -> ExitCode {
    init_telemetry();
    let cli = Cli::<S::Args>::parse_for(S::NAME, S::ABOUT);
    block_on(run::<S>(cli.command, cli.common, cli.service))
}

/// Runs a binary's future on a multi-threaded runtime, transparent huge pages off (see
/// [`crate::alloc::disable_transparent_huge_pages`]); a runtime that cannot start fails the
/// process.
pub fn block_on(main: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    crate::alloc::disable_transparent_huge_pages();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(main),
        Err(err) => report(Err(format!("starting the runtime: {err}"))),
    }
}

/// A binary's whole life: offline commands run and exit; `serve` starts the app, stops it on
/// SIGINT/SIGTERM and reports how it ended.
pub async fn run<S: Service>(
    command: Option<ServiceCommand>,
    common: CommonArgs,
    args: S::Args,
) -> ExitCode {
    let name = S::NAME;
    match command.unwrap_or(ServiceCommand::Serve) {
        ServiceCommand::Offline(offline) => report(run_offline::<S::D>(
            name,
            common.store_config(name),
            &offline,
            S::render_state,
        )),
        ServiceCommand::Serve => {
            let app = match S::start(&common, args).await {
                Ok(app) => app,
                Err(err) => return report(Err(format!("starting the {name} service: {err}"))),
            };
            tokio::spawn(shutdown_on_signal(app.shutdown_token()));
            let ended = app.wait().await;
            crate::telemetry::shutdown_telemetry();
            report(
                ended
                    .map(|()| 0)
                    .map_err(|e| format!("{name} service: {e}")),
            )
        }
    }
}

/// The exit code of a command's outcome; an error is printed to stderr first.
pub fn report(outcome: std::result::Result<u8, String>) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("Error: {err}");
            ExitCode::FAILURE
        }
    }
}
