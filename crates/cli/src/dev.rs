//! `fairchance dev`: every service in one process, listening on one port, each on its own
//! database (a SQLite file per service, or a PostgreSQL schema per service), calling each
//! other over gRPC exactly as in production.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use runtime::config::{Defaults, ServiceConfig, Sources};
use runtime::server::HealthTarget;
use runtime::service::{EXIT_CONFIG, ServiceContext, ServiceSpec};
use runtime::{Backend, Db, SystemClock};
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

/// The sample playbook, written to the data directory on first start.
const SAMPLE_PLAYBOOK: &str = include_str!("../../../deploy/playbook.toml");

/// The demo playbook (`--demo`): the sample's rules with windows and delays in seconds.
pub const DEMO_PLAYBOOK: &str = include_str!("../demo/playbook.toml");

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "FAIRCHANCE_LISTEN_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    listen: SocketAddr,
    /// Where the SQLite files (one per service) and the sample playbook live [default: data,
    /// with --demo data/demo].
    #[arg(long, env = "FAIRCHANCE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Use this PostgreSQL database instead of SQLite; each service gets its own schema.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Playbook file (default: DATA_DIR/playbook.toml, created from the sample).
    #[arg(long, env = "FAIRCHANCE_PLAYBOOK", conflicts_with = "demo")]
    playbook: Option<PathBuf>,
    /// Run with the demo playbook (SLA windows and cadence delays of seconds), in its own data
    /// directory, for `fairchance demo` to drive.
    #[arg(long)]
    demo: bool,
}

impl DevArgs {
    fn data_dir(&self) -> PathBuf {
        match &self.data_dir {
            Some(dir) => dir.clone(),
            // Its own directory, so the demo's leads never mix with a normal dev data set.
            None if self.demo => PathBuf::from("data").join("demo"),
            None => PathBuf::from("data"),
        }
    }
}

pub fn main(args: DevArgs) -> ExitCode {
    let config = match dev_config(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("fairchance dev: {error:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let telemetry = config.telemetry.clone();
    runtime::service::run_process("fairchance dev", &telemetry, async move {
        match serve(args, config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("fairchance dev: {error:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Shared settings from the environment (limits, logging), with dev defaults.
fn dev_config(args: &DevArgs) -> anyhow::Result<ServiceConfig> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.entry("FAIRCHANCE_LOG_FORMAT".into())
        .or_insert_with(|| "pretty".into());
    env.entry("FAIRCHANCE_LOG".into())
        .or_insert_with(|| "info,sqlx=warn".into());
    let sources = Sources::from_map(env)?;
    let defaults = Defaults {
        service_name: "dev",
        listen_addr: args.listen,
        database_url: "sqlite://unused.db".into(),
    };
    let mut config = ServiceConfig::load(&sources, &defaults)?;
    config.listen_addr = args.listen;
    let data_dir = args.data_dir();
    let playbook = match &args.playbook {
        Some(path) => path.clone(),
        None => {
            let path = data_dir.join("playbook.toml");
            if !path.exists() {
                std::fs::create_dir_all(&data_dir).with_context(|| {
                    format!("cannot create data directory {}", data_dir.display())
                })?;
                let sample = if args.demo {
                    DEMO_PLAYBOOK
                } else {
                    SAMPLE_PLAYBOOK
                };
                std::fs::write(&path, sample)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            path
        }
    };
    anyhow::ensure!(
        playbook.is_file(),
        "playbook {} is not a readable file",
        playbook.display()
    );
    config.playbook = Some(playbook);
    Ok(config)
}

/// The database URL of one service: its own SQLite file, or its own PostgreSQL schema.
async fn service_db(args: &DevArgs, service: &str, max_connections: u32) -> anyhow::Result<Db> {
    let url = match &args.postgres {
        None => format!(
            "sqlite://{}",
            args.data_dir().join(format!("{service}.db")).display()
        ),
        Some(base) => {
            anyhow::ensure!(
                Backend::of_url(base) == Ok(Backend::Postgres),
                "--postgres expects a postgres:// URL, got {base:?}"
            );
            let admin = Db::connect(base, 1)
                .await
                .with_context(|| format!("cannot connect to {base}"))?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {service}"))
                .execute(admin.pool())
                .await?;
            admin.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{service}")
        }
    };
    Db::connect(&url, max_connections)
        .await
        .with_context(|| format!("cannot open the {service} database"))
}

async fn start<S: ServiceSpec>(
    args: &DevArgs,
    config: &ServiceConfig,
    shutdown: &CancellationToken,
    routes: &mut RoutesBuilder,
) -> anyhow::Result<(Db, Vec<HealthTarget>)> {
    let db = service_db(args, S::NAME, config.db_max_connections).await?;
    db.migrate(S::migrations())
        .await
        .with_context(|| format!("migrating {}", S::NAME))?;
    let ctx = ServiceContext {
        db: db.clone(),
        config: config.clone(),
        clock: Arc::new(SystemClock),
        shutdown: shutdown.clone(),
    };
    let health = S::start(ctx, routes)
        .await
        .with_context(|| format!("starting {}", S::NAME))?;
    Ok((db, health))
}

async fn serve(args: DevArgs, config: ServiceConfig) -> anyhow::Result<()> {
    let shutdown = runtime::server::shutdown_on_signal();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut routes = RoutesBuilder::default();
    let mut dbs = Vec::new();
    let mut health = Vec::new();

    // The services call each other over gRPC on this very address, as in production.
    let mut config = config;
    for service in ["intake", "activation", "followup", "proof"] {
        config.upstreams.insert(service, format!("http://{addr}"));
    }
    let (db, h) = start::<intake::IntakeService>(&args, &config, &shutdown, &mut routes).await?;
    dbs.push(db);
    health.extend(h);
    let (db, h) =
        start::<activation::ActivationService>(&args, &config, &shutdown, &mut routes).await?;
    dbs.push(db);
    health.extend(h);
    let (db, h) =
        start::<followup::FollowupService>(&args, &config, &shutdown, &mut routes).await?;
    dbs.push(db);
    health.extend(h);
    let (db, h) = start::<proof::ProofService>(&args, &config, &shutdown, &mut routes).await?;
    dbs.push(db);
    health.extend(h);
    let (db, h) =
        start::<feedback::FeedbackService>(&args, &config, &shutdown, &mut routes).await?;
    dbs.push(db);
    health.extend(h);

    // One endpoint for all five services (they share the registry). Best effort on the
    // default: several dev servers on one machine must not fail over a metrics port.
    let metrics_addr = if config.metrics_addr_explicit {
        config.metrics_addr
    } else {
        Some(SocketAddr::from(([127, 0, 0, 1], 9090)))
    };
    let metrics = match runtime::service::start_metrics(metrics_addr, &shutdown).await {
        Ok(addr) => addr,
        Err(error) if config.metrics_addr_explicit => return Err(error.into()),
        Err(error) => {
            tracing::warn!(%error, "running without a metrics endpoint");
            None
        }
    };

    print_banner(&args, &config, addr, metrics);
    runtime::server::serve(listener, routes, health, &config.server, shutdown).await?;
    for db in dbs {
        db.close().await;
    }
    Ok(())
}

fn print_banner(
    args: &DevArgs,
    config: &ServiceConfig,
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
) {
    let storage = match &args.postgres {
        Some(url) => format!(
            "PostgreSQL {} (a schema per service)",
            url.split('@').next_back().unwrap_or(url)
        ),
        None => format!("SQLite files in {}/", args.data_dir().display()),
    };
    let playbook = config
        .playbook
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let metrics = metrics.map_or_else(|| "off".to_owned(), |m| format!("http://{m}/metrics"));
    // The address ends its line: scripts and the e2e harness read it from there.
    if args.demo {
        println!(
            "\nfairchance dev is serving on {addr}\n  \
             with the demo playbook: run `fairchance demo` against it\n  \
             services: intake, activation, followup, proof, feedback\n  \
             storage:  {storage}\n  \
             metrics:  {metrics}\n  \
             playbook: {playbook} (SLA windows and cadence delays of seconds)\n\n\
             Start the demo driver in another terminal (about two minutes, then the report):\n  \
             fairchance demo --addr http://{addr}\n\
             and watch the activations live in a third:\n  \
             fairchance watch --addr http://{addr}\n\n\
             Stop with ctrl-c.\n"
        );
        return;
    }
    println!(
        "\nfairchance dev is serving on {addr}\n  \
         services: intake, activation, followup, proof, feedback\n  \
         storage:  {storage}\n  \
         metrics:  {metrics}\n  \
         playbook: {playbook} (edit it: changes apply within seconds)\n\n\
         Try it (grpcurl uses server reflection, no .proto files needed):\n  \
         grpcurl -plaintext {addr} list\n  \
         grpcurl -plaintext -d '{{\"lead\": {{\"contact\": {{\"name\": \"Ada Lovelace\", \"email\": \"ada@example.com\", \"company\": \"Analytical Engines\", \"country\": \"GB\"}}, \"source\": {{\"source\": \"website-demo-form\", \"campaign\": \"q4-demo\", \"message\": \"Can we see routing?\"}}, \"intent\": {{\"kind\": \"INTENT_KIND_DEMO_REQUEST\", \"strength\": \"INTENT_STRENGTH_HIGH\"}}}}}}' \\\n    \
         {addr} fairchance.intake.v1.IntakeService/SubmitLead\n  \
         grpcurl -plaintext -d '{{\"from\": {{\"replay_only\": true}}}}' {addr} fairchance.intake.v1.IntakeService/Subscribe\n  \
         grpcurl -plaintext -d '{{}}' {addr} fairchance.activation.v1.ActivationService/WatchActivations\n  \
         grpcurl -plaintext -d '{{\"owner_id\": \"lena\"}}' {addr} fairchance.followup.v1.FollowupService/ListDueTasks\n  \
         grpcurl -plaintext -d '{{}}' {addr} fairchance.proof.v1.ProofService/ListAssets\n  \
         grpcurl -plaintext -d '{{\"from\": \"2026-01-01T00:00:00Z\"}}' {addr} fairchance.feedback.v1.FeedbackService/GetSourceReport\n\n\
         Stop with ctrl-c.\n"
    );
}
