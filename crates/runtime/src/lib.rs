//! The shared runtime every fairchance service stands on: configuration, telemetry, the gRPC
//! server bootstrap, storage over SQLite and PostgreSQL, the transactional event log and its
//! consumers, durable timers, idempotency records, Prometheus metrics, the injected clock and
//! the playbook file.
//!
//! Written once here so the five services differ only in their domain.

pub mod clock;
pub mod config;
pub mod consumer;
pub mod db;
pub mod eventlog;
pub mod grpc;
pub mod hours;
pub mod idempotency;
pub mod metrics;
pub mod playbook;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod timers;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use db::{Backend, Db, DbError, Migrations, Tx};
pub use eventlog::{Cursor, EventLog, NewEvent, StoredEvent};
