//! Integration tests of the shared runtime against real databases.

mod auth;
mod eventlog;
mod gapfree;
mod metrics;
mod server;
mod timers;
mod tls;

use runtime::db::Migrations;

/// The runtime's tables are all these tests need; services add theirs on top.
pub static NO_SERVICE_MIGRATIONS: Migrations = runtime::db::RUNTIME_MIGRATIONS;
