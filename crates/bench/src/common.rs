//! What the benchmark parts share: a service binary run as a child process (its memory read
//! from `/proc`), intake served in this process, percentiles, table statistics, and the raw
//! `FOR UPDATE SKIP LOCKED` claim-and-complete loop every dispatch figure is compared to.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use runtime::db::to_micros;
use runtime::service::{ServiceContext, ServiceSpec};
use runtime::{Db, SystemClock};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::Args;

pub fn ms(d: SignedDuration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p` quantile (0 to 1) of sorted values; NaN when there are none.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// An RFC 3339 UTC timestamp with microseconds from a microsecond column, as jiff reads it.
pub fn iso(column: &str) -> String {
    format!(
        "to_char((timestamptz 'epoch' + {column} * interval '1 microsecond') AT TIME ZONE 'UTC', \
         'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    )
}

/// Where each occurrence of `needle` starts in `haystack`, 1-based (as SQL's `overlay` counts).
pub fn positions(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i + 1)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Intake, in this process
// ---------------------------------------------------------------------------------------

/// Intake, served in this process: the services under test subscribe to its stream, and
/// followup asks it whether leads may be contacted.
pub struct Intake {
    pub url: String,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), runtime::server::ServerError>>,
    db: Db,
}

impl Intake {
    pub async fn start(args: &Args, url: &str, playbook: &Path) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let (listener, addr) = testkit::bind_local().await;
        let mut config = runtime::config::ServiceConfig::load(
            &runtime::config::Sources::default(),
            &runtime::config::Defaults::service("bench", 0),
        )?;
        config.playbook = Some(playbook.to_owned());
        let db = Db::connect(url, args.pool.min(4)).await?;
        db.migrate(intake::IntakeService::migrations()).await?;
        let ctx = ServiceContext {
            db: db.clone(),
            config: config.clone(),
            clock: Arc::new(SystemClock),
            shutdown: stop.clone(),
        };
        let mut routes = tonic::service::RoutesBuilder::default();
        let health = intake::IntakeService::start(ctx, &mut routes).await?;
        let server_stop = stop.clone();
        let server = tokio::spawn(async move {
            runtime::server::serve(listener, routes, health, &config.server, server_stop).await
        });
        Ok(Self {
            url: format!("http://{addr}"),
            stop,
            server,
            db,
        })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.server.await;
        self.db.close().await;
    }
}

// ---------------------------------------------------------------------------------------
// A service binary as a child process
// ---------------------------------------------------------------------------------------

/// Memory of a child process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_mb: f64,
    pub hwm_mb: f64,
    pub up_ms: f64,
}

/// `sysconf(_SC_CLK_TCK)` on every Linux this runs on.
const CLOCK_TICKS: f64 = 100.0;

/// Busy and total CPU time of the whole machine so far, in seconds (from `/proc/stat`).
pub fn machine_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<f64> = cpu
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0.0);
    let total: f64 = v.iter().take(8).sum();
    Some(((total - idle) / CLOCK_TICKS, total / CLOCK_TICKS))
}

/// Which service a child is, for the call that tells it is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Intake,
    Activation,
    Followup,
}

impl Kind {
    pub fn binary(self) -> &'static str {
        match self {
            Self::Intake => "fairchance-intake",
            Self::Activation => "fairchance-activation",
            Self::Followup => "fairchance-followup",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Self::Intake => "intake",
            Self::Activation => "activation",
            Self::Followup => "followup",
        }
    }

    /// True when a gRPC call to the service at `url` is answered.
    async fn serving(self, url: &str) -> bool {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_owned()) else {
            return false;
        };
        let Ok(channel) = endpoint
            .connect_timeout(Duration::from_millis(200))
            .connect()
            .await
        else {
            return false;
        };
        let nil = uuid::Uuid::nil().to_string();
        // Any answer (NOT_FOUND for a lead nobody has) means the service is serving.
        let answer = match self {
            Self::Intake => {
                use proto::intake::v1::GetLeadRequest;
                use proto::intake::v1::intake_service_client::IntakeServiceClient;
                let mut client = IntakeServiceClient::new(channel);
                tokio::time::timeout(
                    Duration::from_secs(2),
                    client.get_lead(GetLeadRequest { lead_id: nil }),
                )
                .await
                .map(|r| r.map(drop))
            }
            Self::Activation => {
                use proto::activation::v1::GetActivationRequest;
                use proto::activation::v1::activation_service_client::ActivationServiceClient;
                let mut client = ActivationServiceClient::new(channel);
                tokio::time::timeout(
                    Duration::from_secs(2),
                    client.get_activation(GetActivationRequest { lead_id: nil }),
                )
                .await
                .map(|r| r.map(drop))
            }
            Self::Followup => {
                use proto::followup::v1::GetPlanRequest;
                use proto::followup::v1::followup_service_client::FollowupServiceClient;
                let mut client = FollowupServiceClient::new(channel);
                tokio::time::timeout(
                    Duration::from_secs(2),
                    client.get_plan(GetPlanRequest { lead_id: nil }),
                )
                .await
                .map(|r| r.map(drop))
            }
        };
        match answer {
            Ok(Ok(())) => true,
            Ok(Err(status)) => status.code() == tonic::Code::NotFound,
            Err(_) => false,
        }
    }

    /// The binary: `given`, or the one beside this benchmark's binary, rebuilt first when this
    /// runs from a cargo release build. It is built together with the bench package, so cargo
    /// resolves the same features and reuses the artifacts this binary was built from.
    pub fn locate(self, given: Option<&Path>, part: &str) -> anyhow::Result<PathBuf> {
        if let Some(bin) = given {
            return Ok(bin.to_owned());
        }
        let exe = std::env::current_exe()?;
        let bin = exe.with_file_name(format!("{}{}", self.binary(), std::env::consts::EXE_SUFFIX));
        let release = exe
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "release");
        if release {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
            let build = [
                "build",
                "--release",
                "-p",
                "bench",
                "-p",
                self.package(),
                "--bin",
                self.binary(),
            ];
            eprintln!("{part}: cargo {} ...", build.join(" "));
            let built = Command::new(cargo)
                .args(build)
                .arg("--manifest-path")
                .arg(&manifest)
                .status();
            if !matches!(built, Ok(s) if s.success()) {
                eprintln!(
                    "{part}: warning: building {} failed; using the binary there is",
                    self.binary()
                );
            }
        }
        anyhow::ensure!(
            bin.is_file(),
            "{} not found: build it with `cargo build --release -p {}` or pass its path",
            bin.display(),
            self.package()
        );
        Ok(bin)
    }
}

/// A service binary running as a child process, logging to files in a directory.
pub struct Service {
    kind: Kind,
    child: Child,
    addr: std::net::SocketAddr,
    log: PathBuf,
    up_ms: f64,
}

impl Service {
    /// Starts `bin` on `database_url` with `env` on top of the settings every service gets
    /// (listen address, pool size, warn-level JSON logs to `<dir>/<binary>-<label>.log`).
    pub fn spawn(
        args: &Args,
        kind: Kind,
        bin: &Path,
        dir: &Path,
        label: &str,
        database_url: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::spawn_on(None, args, kind, bin, dir, label, database_url, env)
    }

    /// [`Service::spawn`], confined to `cpus` (a `taskset` list such as `1` or `1-3`) when
    /// given, from its first instruction on, so every thread it starts stays there.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_on(
        cpus: Option<&str>,
        args: &Args,
        kind: Kind,
        bin: &Path,
        dir: &Path,
        label: &str,
        database_url: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = dir.join(format!("{}-{label}.log", kind.binary()));
        let mut command = match cpus {
            // taskset execs the binary: the child's pid (memory, CPU time) is the service's.
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.arg("--cpu-list").arg(cpus).arg(bin);
                command
            }
            None => Command::new(bin),
        };
        command
            .env_remove("FAIRCHANCE_CONFIG")
            .env("DATABASE_URL", database_url)
            .env("FAIRCHANCE_LISTEN_ADDR", addr.to_string())
            .env("FAIRCHANCE_DB_MAX_CONNECTIONS", args.pool.to_string())
            .env("FAIRCHANCE_LOG", "warn")
            .env("FAIRCHANCE_LOG_FORMAT", "json")
            // Several services on one machine: their metrics ports would collide.
            .env("FAIRCHANCE_METRICS_ADDR", "off");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(log.with_extension("err"))?)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        Ok(Self {
            kind,
            child,
            addr,
            log,
            up_ms: 0.0,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Waits until the service answers gRPC; how long it took.
    pub async fn wait_ready(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let name = self.kind.binary();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let err =
                    std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
                let out = std::fs::read_to_string(&self.log).unwrap_or_default();
                anyhow::bail!("{name} exited with {status}:\n{out}\n{err}");
            }
            if started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("{name} not serving after 60 s");
            }
            if self.kind.serving(&self.url()).await {
                let up = started.elapsed();
                self.up_ms = up.as_secs_f64() * 1e3;
                return Ok(up);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("read /proc/<pid>/status (Linux only)")?;
        let field = |key: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        Ok(Memory {
            rss_mb: field("VmRSS:"),
            hwm_mb: field("VmHWM:"),
            up_ms: self.up_ms,
        })
    }

    /// CPU time the process has used so far (user and system), in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .context("read /proc/<pid>/stat (Linux only)")?;
        // The fields after the command name (which may hold spaces) in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        match (ticks(11), ticks(12)) {
            (Some(user), Some(system)) => Ok((user + system) / CLOCK_TICKS),
            _ => anyhow::bail!("unexpected /proc/<pid>/stat: {stat}"),
        }
    }

    /// How many log lines (warn level and above) the service wrote so far, and the first few
    /// distinct messages among them.
    pub fn warnings(&self) -> (usize, Vec<String>) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut distinct: Vec<String> = Vec::new();
        for line in &lines {
            let message = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| {
                    ["/message", "/fields/message"]
                        .iter()
                        .find_map(|p| v.pointer(p).and_then(|m| m.as_str()))
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| line.chars().take(120).collect());
            if distinct.len() < 3 && !distinct.contains(&message) {
                distinct.push(message);
            }
        }
        (lines.len(), distinct)
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 10 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// CPU split
// ---------------------------------------------------------------------------------------

/// The machine's CPUs split between a service under test with the PostgreSQL server it
/// writes to, and the load generator (this process), so that the generator's work cannot take
/// the CPU the service needs: the arrangement a load test from another machine gives, on one
/// machine. The generator gets CPU 0, the service and PostgreSQL the others. Linux only; it
/// sets the affinity of every running `postgres` process (and the postmaster's children
/// inherit it), which needs root or the postgres user. Every affinity it changed is restored
/// when it is dropped.
#[derive(Debug)]
pub struct CpuSplit {
    service: String,
    all: String,
}

impl CpuSplit {
    pub fn new() -> anyhow::Result<Self> {
        let cpus = std::thread::available_parallelism()?.get();
        anyhow::ensure!(
            cpus >= 2,
            "splitting CPUs between service and load generator needs at least 2, this process may use {cpus}"
        );
        let split = Self {
            service: if cpus == 2 {
                "1".to_owned()
            } else {
                format!("1-{}", cpus - 1)
            },
            all: format!("0-{}", cpus - 1),
        };
        split
            .pin(std::process::id(), "0")
            .context("pin the load generator (this process) to CPU 0")?;
        for pid in postgres_pids()? {
            split.pin(pid, &split.service).with_context(|| {
                format!(
                    "pin PostgreSQL (pid {pid}) to CPUs {}; this needs root or the postgres user",
                    split.service
                )
            })?;
        }
        Ok(split)
    }

    /// The CPUs the service gets, as a `taskset` list for [`Service::spawn_on`].
    pub fn service_cpus(&self) -> &str {
        &self.service
    }

    /// Sets the affinity of every thread of `pid`.
    fn pin(&self, pid: u32, cpus: &str) -> anyhow::Result<()> {
        let output = Command::new("taskset")
            .args(["--all-tasks", "--pid", "--cpu-list", cpus, &pid.to_string()])
            .output()
            .context("run taskset (util-linux)")?;
        anyhow::ensure!(
            output.status.success(),
            "taskset: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(())
    }
}

impl Drop for CpuSplit {
    fn drop(&mut self) {
        let mut pids = postgres_pids().unwrap_or_default();
        pids.push(std::process::id());
        for pid in pids {
            // A backend may have exited since it was listed.
            if let Err(error) = self.pin(pid, &self.all) {
                eprintln!("could not restore the affinity of pid {pid}: {error:#}");
            }
        }
    }
}

/// The processes named `postgres` (the postmaster, its workers and backends).
fn postgres_pids() -> anyhow::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").context("read /proc (Linux only)")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "postgres" {
            pids.push(pid);
        }
    }
    Ok(pids)
}

// ---------------------------------------------------------------------------------------
// Table statistics
// ---------------------------------------------------------------------------------------

/// What `pg_stat_user_tables` says of a table, and its total size (with indexes and TOAST).
/// Close the pools that wrote to it first: a backend reports its statistics when idle for a
/// while or when it exits.
pub async fn table_stats(url: &str, table: &str) -> anyhow::Result<TableStats> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = PgConnection::connect(url).await?;
    let stats = table_stats_on(&mut conn, table).await;
    conn.close().await?;
    stats
}

/// [`table_stats`] on an open connection, without waiting.
pub async fn table_stats_on(conn: &mut PgConnection, table: &str) -> anyhow::Result<TableStats> {
    let (live, dead, inserted, updated, hot, deleted, autovacuums, size): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, \
                autovacuum_count, pg_total_relation_size(relid) \
         FROM pg_stat_user_tables WHERE relname = $1",
    )
    .bind(table)
    .fetch_one(conn)
    .await
    .with_context(|| format!("statistics of table {table}"))?;
    Ok(TableStats {
        live,
        dead,
        inserted,
        updated,
        hot,
        deleted,
        autovacuums,
        size,
    })
}

#[derive(Debug, Clone, Copy, Default)]
pub struct TableStats {
    pub live: i64,
    pub dead: i64,
    pub inserted: i64,
    pub updated: i64,
    pub hot: i64,
    pub deleted: i64,
    pub autovacuums: i64,
    pub size: i64,
}

impl TableStats {
    pub fn mb(&self) -> f64 {
        self.size as f64 / (1024.0 * 1024.0)
    }
}

impl std::fmt::Display for TableStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n_dead_tup {}, {} updates ({} HOT), {:.1} MB",
            self.dead,
            self.updated,
            self.hot,
            self.mb()
        )
    }
}

// ---------------------------------------------------------------------------------------
// The raw SKIP LOCKED claim-and-complete loop
// ---------------------------------------------------------------------------------------

/// Rows per raw claim-and-complete statement.
pub const RAW_BATCH: i64 = 500;

/// The timers table's shape, for the raw loop (it only ever deletes).
const RAW_TABLE: &str = "CREATE TABLE raw_timers ( \
    timer_id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, due_at BIGINT NOT NULL, \
    payload BYTEA NOT NULL, claimed_by TEXT NOT NULL DEFAULT '', claimed_until BIGINT NOT NULL DEFAULT 0, \
    attempts BIGINT NOT NULL DEFAULT 0, UNIQUE (kind, subject))";

/// Claims up to `$2` due rows and deletes them, in one statement: the rows come back to the
/// dispatcher.
pub const RAW_CLAIM_COMPLETE: &str = "WITH c AS (SELECT timer_id FROM raw_timers WHERE due_at <= $1 \
     ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
     DELETE FROM raw_timers t USING c WHERE t.timer_id = c.timer_id RETURNING t.timer_id, t.subject";

/// Creates `raw_timers` (the timers table's shape) with its due-time index.
pub async fn create_raw_table(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(RAW_TABLE).execute(pool).await?;
    sqlx::query("CREATE INDEX raw_timers_due ON raw_timers (due_at)")
        .execute(pool)
        .await?;
    Ok(())
}

/// Fills `raw_timers` with `n` due rows.
pub async fn seed_raw(pool: &PgPool, n: usize) -> anyhow::Result<()> {
    let now = to_micros(Timestamp::now());
    sqlx::query(
        "INSERT INTO raw_timers (timer_id, kind, subject, due_at, payload) \
         SELECT gen_random_uuid()::text, 'bench_step', 's' || g, $1 - g, ''::bytea \
         FROM generate_series(1, $2) g",
    )
    .bind(now)
    .bind(n as i64)
    .execute(pool)
    .await?;
    sqlx::query("VACUUM ANALYZE raw_timers")
        .execute(pool)
        .await?;
    Ok(())
}

/// Claims up to `$3` rows due at `$2` for worker `$1` under a 30 s lease, as a worker that
/// does each row's work after its claim committed must: the first half of
/// [`raw_claim_then_complete_loop`].
const RAW_CLAIM: &str = "UPDATE raw_timers SET claimed_by = $1, claimed_until = $2 + 30000000, attempts = attempts + 1 \
     WHERE timer_id IN (SELECT timer_id FROM raw_timers WHERE due_at <= $2 AND claimed_until <= $2 \
     ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING timer_id";

/// Deletes the claimed rows `$2` still held by worker `$1`: the second half.
const RAW_COMPLETE: &str = "DELETE FROM raw_timers WHERE claimed_by = $1 AND timer_id = ANY($2)";

/// `k` workers each claim a batch of due rows in one statement and transaction (the claim
/// committed, as durable dispatch needs when work happens between claim and completion), then
/// complete the batch with a second, until nothing is due: the "claim and complete in
/// batches" loop of issue 4, where the one-statement [`RAW_CLAIM_COMPLETE`] is a plain
/// dequeue. Rows done and rows per second.
pub async fn raw_claim_then_complete_loop(url: &str, k: usize) -> anyhow::Result<(u64, f64)> {
    let pool = PgPoolOptions::new()
        .max_connections(k as u32)
        .connect(url)
        .await?;
    let result = drain(k, |w| {
        let (pool, me) = (pool.clone(), format!("raw-worker-{w}"));
        move || {
            let (pool, me) = (pool.clone(), me.clone());
            async move {
                let claimed: Vec<String> = sqlx::query_scalar(RAW_CLAIM)
                    .bind(&me)
                    .bind(to_micros(Timestamp::now()))
                    .bind(RAW_BATCH)
                    .fetch_all(&pool)
                    .await?;
                if claimed.is_empty() {
                    return Ok(0);
                }
                Ok(sqlx::query(RAW_COMPLETE)
                    .bind(&me)
                    .bind(&claimed)
                    .execute(&pool)
                    .await?
                    .rows_affected())
            }
        }
    })
    .await;
    pool.close().await;
    result
}

/// Runs `k` workers side by side, worker `w` repeating the round `worker(w)` makes until a
/// round does nothing; rows done by all, and rows per second.
pub async fn drain<W, R, F>(k: usize, worker: W) -> anyhow::Result<(u64, f64)>
where
    W: Fn(usize) -> R,
    R: Fn() -> F + Send + 'static,
    F: Future<Output = anyhow::Result<u64>> + Send,
{
    let started = Instant::now();
    let workers: Vec<_> = (0..k)
        .map(|w| {
            let round = worker(w);
            tokio::spawn(async move {
                let mut done = 0u64;
                loop {
                    let n = round().await?;
                    if n == 0 {
                        return anyhow::Ok(done);
                    }
                    done += n;
                }
            })
        })
        .collect();
    let mut done = 0;
    for w in workers {
        done += w.await??;
    }
    Ok((done, done as f64 / started.elapsed().as_secs_f64()))
}

/// `k` workers run `sql` (bound to now and the batch size) until it finds nothing due; rows
/// done and rows per second.
pub async fn raw_loop(url: &str, k: usize, sql: &'static str) -> anyhow::Result<(u64, f64)> {
    let pool = PgPoolOptions::new()
        .max_connections(k as u32)
        .connect(url)
        .await?;
    let result = drain(k, |_| {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            async move {
                Ok(sqlx::query(sql)
                    .bind(to_micros(Timestamp::now()))
                    .bind(RAW_BATCH)
                    .execute(&pool)
                    .await?
                    .rows_affected())
            }
        }
    })
    .await;
    // Backends report their statistics when they exit.
    pool.close().await;
    result
}
