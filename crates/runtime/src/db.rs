//! Storage: one handle over SQLite (the embedded default) and PostgreSQL (production),
//! chosen by the database URL, with versioned migrations.
//!
//! Services write portable SQL (`$1` placeholders work on both) through [`Db`]; the few places
//! where the dialects must differ ask [`Db::backend`]. Timestamps are stored as Unix
//! microseconds (`BIGINT`), ids and JSON as `TEXT`, so one query serves both backends.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor};

/// A database transaction.
pub type Tx = sqlx::Transaction<'static, Any>;

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a URL names, or why the URL is not usable.
    pub fn of_url(url: &str) -> Result<Self, String> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err("expected sqlite://PATH or postgres://USER@HOST/DB".into())
        }
    }
}

/// Storage failures. Callers map them to UNAVAILABLE / INTERNAL; the cause is logged, not sent.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database url: {0}")]
    Url(String),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl DbError {
    /// A stored value that does not decode (JSON, an id): the data, not the connection, is bad.
    pub fn corrupt(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Sqlx(sqlx::Error::Decode(Box::new(e)))
    }

    /// True when the error is a unique-constraint violation (a lost race on an insert).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// The migrations of one component, per backend (see [`sqlx::migrate!`]).
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// The runtime's own tables (event log, consumer cursors, idempotency records). Their
/// versions are below 1000; services number theirs from 1000, so both share one history.
pub static RUNTIME_MIGRATIONS: Migrations = Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

/// A pooled connection to one service's database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    /// Reads that need no transaction. On SQLite a separate pool, so readers (subscribers,
    /// lookups) run beside the single writer under WAL; on PostgreSQL the same pool.
    reader: AnyPool,
    backend: Backend,
    url: String,
}

impl Db {
    /// Connects (creating a SQLite file and its directory if needed). Does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).map_err(DbError::Url)?;
        let (url, max_connections) = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(url)?;
                create_sqlite_dir(&url)?;
                // SQLite has one writer; a single connection serialises writers in the pool
                // instead of failing them with SQLITE_BUSY. It is the embedded dev default.
                (url, 1)
            }
            Backend::Postgres => (url.to_owned(), max_connections),
        };
        let pool = open_pool(backend, &url, max_connections).await?;
        let reader = match backend {
            Backend::Sqlite => open_pool(backend, &url, 4).await?,
            Backend::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            reader,
            backend,
            url,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for writes and transactions.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for reads outside a transaction; never use it while holding a transaction
    /// on SQLite expecting to see that transaction's writes.
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// The URL this handle connected with (LISTEN needs its own connection).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(self.pool.begin().await?)
    }

    /// Applies the runtime's migrations and then the service's own.
    pub async fn migrate(&self, service: &Migrations) -> Result<(), DbError> {
        for set in [&RUNTIME_MIGRATIONS, service] {
            let source = match self.backend {
                Backend::Sqlite => set.sqlite,
                Backend::Postgres => set.postgres,
            };
            // Runtime and service migrations share one history table; each set must ignore
            // the versions the other applied.
            let migrator = Migrator {
                ignore_missing: true,
                ..clone_migrator(source)
            };
            migrator.run(&self.pool).await?;
        }
        Ok(())
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.reader.close().await;
    }
}

async fn open_pool(backend: Backend, url: &str, max_connections: u32) -> Result<AnyPool, DbError> {
    let options = AnyConnectOptions::from_str(url)?;
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

fn clone_migrator(m: &Migrator) -> Migrator {
    Migrator {
        migrations: m.migrations.clone(),
        ignore_missing: m.ignore_missing,
        locking: m.locking,
        no_tx: m.no_tx,
    }
}

/// Creates the directory of a SQLite database file.
fn create_sqlite_dir(url: &str) -> Result<(), DbError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbError::Url(format!("cannot create directory {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Makes a SQLite URL create its file when missing.
fn sqlite_url(url: &str) -> Result<String, DbError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(DbError::Url(
            "sqlite needs a file path (an in-memory database would vanish with each pooled connection)".into(),
        ));
    }
    let mode = if query.contains("mode=") {
        String::new()
    } else {
        "mode=rwc".to_owned()
    };
    let query = [query, mode.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("&");
    Ok(format!("sqlite://{path}?{query}"))
}

/// A value bound to a [`Batch`] statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Bytes(Cow<'a, [u8]>),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Self {
        Self::Text(Cow::Borrowed(text))
    }
}

impl From<String> for Value<'_> {
    fn from(text: String) -> Self {
        Self::Text(Cow::Owned(text))
    }
}

impl From<i64> for Value<'_> {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self::Bytes(Cow::Borrowed(bytes))
    }
}

impl<'a> From<Cow<'a, str>> for Value<'a> {
    fn from(text: Cow<'a, str>) -> Self {
        Self::Text(text)
    }
}

impl From<Vec<u8>> for Value<'_> {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(Cow::Owned(bytes))
    }
}

/// Most parameters one combined statement binds: half of PostgreSQL's limit (65,535), so a
/// statement added to a nearly full one never crosses it.
const BATCH_PARAMETERS: usize = 32_000;

/// Write statements of one transaction, sent together. On PostgreSQL they go out as one
/// statement of data-modifying CTEs, `WITH s0 AS (...), s1 AS (...) ...`: one round trip
/// however many tables a use case writes, where a round trip costs more than most of the
/// statements. On SQLite, in process, they run one by one.
///
/// The statements of a batch must not touch the same rows, nor read what another writes:
/// PostgreSQL runs a statement's parts against one snapshot, in no set order. Each statement
/// numbers its own placeholders from `$1`, and has no `$` in a literal.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    statements: Vec<Statement<'a>>,
    /// Whether the next statement pushed starts a new group (see [`Batch::fence`]).
    fenced: bool,
}

#[derive(Debug)]
struct Statement<'a> {
    sql: String,
    values: Vec<Value<'a>>,
    /// Runs after everything pushed before it, not together with it.
    after_fence: bool,
}

impl<'a> Batch<'a> {
    /// Adds an `INSERT`, `UPDATE` or `DELETE` (without `RETURNING`) binding `values` to its
    /// `$1`, `$2`, ...
    pub fn push(&mut self, sql: String, values: Vec<Value<'a>>) {
        debug_assert!(
            values.len() <= BATCH_PARAMETERS,
            "a statement binds too many values"
        );
        let after_fence = std::mem::take(&mut self.fenced);
        self.statements.push(Statement {
            sql,
            values,
            after_fence,
        });
    }

    /// Makes the statements pushed from now on run after those pushed before, never
    /// together with them: for writes whose order shows (rows numbered by a sequence).
    pub fn fence(&mut self) {
        self.fenced = !self.statements.is_empty();
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Runs the statements inside `tx`, in the order they were pushed where they do not go
    /// together, and empties the batch.
    pub async fn execute(&mut self, tx: &mut Tx) -> Result<(), DbError> {
        let statements = std::mem::take(&mut self.statements);
        if backend_of(tx) == Backend::Sqlite {
            for statement in &statements {
                bind_all(sqlx::query(&statement.sql), &statement.values)
                    .execute(&mut **tx)
                    .await?;
            }
            return Ok(());
        }
        let mut rest = statements.as_slice();
        while !rest.is_empty() {
            let mut taken = 0;
            let mut parameters = 0;
            while let Some(next) = rest.get(taken) {
                if taken > 0
                    && (next.after_fence || parameters + next.values.len() > BATCH_PARAMETERS)
                {
                    break;
                }
                parameters += next.values.len();
                taken += 1;
            }
            let (group, after) = rest.split_at(taken);
            rest = after;
            let sql = combine(group.iter().map(|s| (s.sql.as_str(), s.values.len())));
            let query = group
                .iter()
                .fold(sqlx::query(&sql), |query, s| bind_all(query, &s.values));
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// The backend a transaction runs on.
pub fn backend_of(tx: &Tx) -> Backend {
    if tx.backend_name() == "PostgreSQL" {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

fn bind_all<'q>(mut query: AnyQuery<'q>, values: &'q [Value<'_>]) -> AnyQuery<'q> {
    for value in values {
        query = match value {
            Value::Text(text) => query.bind(text.as_ref()),
            Value::Int(n) => query.bind(*n),
            Value::Bytes(bytes) => query.bind(bytes.as_ref()),
        };
    }
    query
}

/// One statement of `statements` (each with its number of parameters): all but the last as
/// CTEs of the last, their placeholders renumbered to follow one another.
fn combine<'s>(statements: impl ExactSizeIterator<Item = (&'s str, usize)>) -> String {
    let last = statements.len().saturating_sub(1);
    let mut sql = String::new();
    let mut offset = 0;
    for (i, (statement, parameters)) in statements.enumerate() {
        if i < last {
            sql.push_str(if i == 0 { "WITH " } else { ", " });
            sql.push_str(&format!("s{i} AS ("));
            renumber(statement, offset, &mut sql);
            sql.push(')');
        } else {
            if i > 0 {
                sql.push(' ');
            }
            renumber(statement, offset, &mut sql);
        }
        offset += parameters;
    }
    sql
}

/// Appends `statement` to `out` with each placeholder `$n` made `$(n + offset)`.
fn renumber(statement: &str, offset: usize, out: &mut String) {
    let mut rest = statement;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

/// `($1,$2),($3,$4),...`: the VALUES of a multi-row statement, `rows` tuples of `cols`.
/// Multi-row statements keep bulk writes to a few round trips on both backends.
pub fn values_placeholders(rows: usize, cols: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&(r * cols + c + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

/// `$1,$2,...,$n` starting after `offset` parameters: the list of an `IN (...)`.
pub fn list_placeholders(offset: usize, n: usize) -> String {
    (offset + 1..=offset + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Microseconds since the Unix epoch, the storage form of a timestamp.
pub fn to_micros(ts: jiff::Timestamp) -> i64 {
    ts.as_microsecond()
}

/// The timestamp stored as Unix microseconds.
pub fn from_micros(micros: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(micros).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend() {
        assert_eq!(Backend::of_url("sqlite://x.db"), Ok(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgres://u@h/db"), Ok(Backend::Postgres));
        assert_eq!(
            Backend::of_url("postgresql://u@h/db"),
            Ok(Backend::Postgres)
        );
        assert!(Backend::of_url("mysql://h/db").is_err());
    }

    #[test]
    fn sqlite_urls_create_their_file() {
        assert_eq!(
            sqlite_url("sqlite://a/b.db").unwrap(),
            "sqlite://a/b.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:b.db?mode=ro").unwrap(),
            "sqlite://b.db?mode=ro"
        );
        assert!(sqlite_url("sqlite::memory:").is_err());
    }

    #[test]
    fn placeholders_number_every_parameter() {
        assert_eq!(values_placeholders(2, 3), "($1,$2,$3),($4,$5,$6)");
        assert_eq!(list_placeholders(2, 3), "$3,$4,$5");
    }

    #[test]
    fn batches_become_one_statement_with_placeholders_in_sequence() {
        let sql = combine(
            [
                ("INSERT INTO a VALUES ($1, $2)", 2),
                ("DELETE FROM b WHERE x IN ($1)", 1),
                ("INSERT INTO c VALUES ($1,$2),($3,$4)", 4),
            ]
            .into_iter(),
        );
        assert_eq!(
            sql,
            "WITH s0 AS (INSERT INTO a VALUES ($1, $2)), s1 AS (DELETE FROM b WHERE x IN ($3)) \
             INSERT INTO c VALUES ($4,$5),($6,$7)"
        );
        assert_eq!(combine([("DELETE FROM b", 0)].into_iter()), "DELETE FROM b");
        // Past nine, and a `$` with no number after it, stay what they were.
        let mut out = String::new();
        renumber("$9, $10, $, x$1y", 10, &mut out);
        assert_eq!(out, "$19, $20, $, x$11y");
    }

    #[test]
    fn micros_round_trip() {
        let ts: jiff::Timestamp = "2026-11-23T10:00:00.123456Z".parse().unwrap();
        assert_eq!(from_micros(to_micros(ts)), ts);
    }
}
