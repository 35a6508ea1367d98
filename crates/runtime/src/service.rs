//! What a service binary is: a [`ServiceSpec`] plus [`main`], which parses the command line,
//! loads and validates configuration (exiting 64 with every problem named before anything
//! starts), installs telemetry, connects and migrates the database, starts the service, its
//! metrics endpoint ([`start_metrics`]) and serves it until SIGTERM, then drains and flushes.
//!
//! The all-in-one dev server starts several specs in one process, and at most one metrics
//! endpoint for all of them.

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Defaults, ServiceConfig, Sources};
use crate::db::{Db, Migrations};
use crate::playbook::{Playbook, PlaybookError, Section};
use crate::server::HealthTarget;

/// Exit code for configuration errors (EX_USAGE / EX_CONFIG family, as linkerd uses).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code when the service failed while running (EX_SOFTWARE).
pub const EXIT_FAILURE: u8 = 70;
/// Exit code when a dependency (the database) is unavailable at start (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// What a service needs to start.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    pub db: Db,
    pub config: ServiceConfig,
    pub clock: SharedClock,
    /// Cancelled when the process shuts down; background tasks and streams end on it.
    pub shutdown: CancellationToken,
}

impl ServiceContext {
    /// The service's playbook section: watched from the configured file, or the built-in
    /// defaults when no playbook is configured.
    pub fn playbook<S: Section + std::fmt::Debug>(&self) -> Result<Playbook<S>, PlaybookError> {
        match &self.config.playbook {
            Some(path) => Playbook::watch(path.clone(), self.shutdown.clone()),
            None => Ok(Playbook::fixed(S::default())),
        }
    }
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    #[error("{0}")]
    Other(String),
}

/// A deployable service.
pub trait ServiceSpec {
    /// Short name: `intake`, `activation`, ...
    const NAME: &'static str;
    /// Default gRPC port of the service binary.
    const DEFAULT_PORT: u16;
    /// The service's section of the playbook.
    type Playbook: Section + std::fmt::Debug;

    fn migrations() -> &'static Migrations;

    /// Adds the service's gRPC services to `routes`, starts its background tasks, and returns
    /// the health targets that follow its database.
    fn start(
        ctx: ServiceContext,
        routes: &mut RoutesBuilder,
    ) -> impl Future<Output = Result<Vec<HealthTarget>, StartError>> + Send;
}

#[derive(Debug, clap::Parser)]
#[command(
    about = "A fairchance service. Configured by environment variables (see README: Configuration) \
             and an optional TOML file named by FAIRCHANCE_CONFIG."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate configuration and the playbook, then exit (0 when valid).
    Check,
}

/// Runs a service binary; returns the process exit code.
pub fn main<S: ServiceSpec>() -> ExitCode {
    use clap::Parser;
    let cli = Cli::parse();
    let defaults = Defaults::service(S::NAME, S::DEFAULT_PORT);
    let config =
        match Sources::from_env().and_then(|sources| ServiceConfig::load(&sources, &defaults)) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("fairchance-{}: {error}", S::NAME);
                return ExitCode::from(EXIT_CONFIG);
            }
        };
    let name = format!("fairchance-{}", S::NAME);
    let command = cli.command.unwrap_or(Command::Serve);
    run_process(&name, &config.telemetry.clone(), run::<S>(command, config))
}

/// Runs `body` on a multi-threaded runtime with telemetry installed, and flushes telemetry
/// after it; `body` returns the process exit code. `name` prefixes errors on stderr.
pub fn run_process(
    name: &str,
    telemetry: &crate::config::TelemetryConfig,
    body: impl Future<Output = ExitCode>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("{name}: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        let mut guard = match crate::telemetry::init(telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("{name}: {error}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let code = body.await;
        guard.shutdown();
        code
    })
}

/// Starts the Prometheus endpoint at `addr` (`FAIRCHANCE_METRICS_ADDR`; `None` is off) until
/// `shutdown`; returns the bound address. [`main`] calls it for a service binary; a process
/// running several services (the all-in-one dev server) calls it once for all of them, as
/// they share one registry.
pub async fn start_metrics(
    addr: Option<std::net::SocketAddr>,
    shutdown: &CancellationToken,
) -> Result<Option<std::net::SocketAddr>, crate::metrics::EndpointError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let bound = crate::metrics::spawn_endpoint(addr, shutdown.clone()).await?;
    tracing::info!(addr = %bound, "serving metrics on /metrics");
    Ok(Some(bound))
}

async fn run<S: ServiceSpec>(command: Command, config: ServiceConfig) -> ExitCode {
    if let Command::Check = command {
        return match &config.playbook {
            Some(path) => match crate::playbook::load::<S::Playbook>(path) {
                Ok(_) => {
                    println!("configuration and playbook are valid");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("{error}");
                    ExitCode::from(EXIT_CONFIG)
                }
            },
            None => {
                println!("configuration is valid (no playbook configured)");
                ExitCode::SUCCESS
            }
        };
    }
    let db = match Db::connect(&config.database_url, config.db_max_connections).await {
        Ok(db) => db,
        Err(error) => {
            tracing::error!(%error, "cannot connect to the database");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    if matches!(command, Command::Migrate) || config.migrate_on_start {
        if let Err(error) = db.migrate(S::migrations()).await {
            tracing::error!(%error, "migrations failed");
            return ExitCode::from(EXIT_FAILURE);
        }
        tracing::info!(service = S::NAME, "migrations applied");
        if matches!(command, Command::Migrate) {
            return ExitCode::SUCCESS;
        }
    }
    let shutdown = crate::server::shutdown_on_signal();
    let listener = match tokio::net::TcpListener::bind(config.listen_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, addr = %config.listen_addr, "cannot listen");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let ctx = ServiceContext {
        db: db.clone(),
        config: config.clone(),
        clock: std::sync::Arc::new(SystemClock),
        shutdown: shutdown.clone(),
    };
    let mut routes = RoutesBuilder::default();
    let health = match S::start(ctx, &mut routes).await {
        Ok(health) => health,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            eprintln!("fairchance-{}: {error}", S::NAME);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match start_metrics(config.metrics_addr, &shutdown).await {
        Ok(_) => {}
        Err(error) if config.metrics_addr_explicit => {
            tracing::error!(%error, "cannot serve metrics");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
        // The default port may be taken by another service on the same machine.
        Err(error) => tracing::warn!(%error, "running without a metrics endpoint"),
    }
    let addr = listener.local_addr().unwrap_or(config.listen_addr);
    tracing::info!(service = S::NAME, %addr, "serving gRPC");
    let result = crate::server::serve(listener, routes, health, &config.server, shutdown).await;
    db.close().await;
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
