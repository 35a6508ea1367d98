//! The shared runtime every fairchance service stands on: configuration, telemetry, the gRPC
//! server bootstrap and the client for calls between services, storage over SQLite and
//! PostgreSQL, the transactional event log and its consumers, durable timers, idempotency
//! records, erasure, Prometheus metrics, the injected clock, the playbook file, and who may
//! call what (bearer tokens, scopes, TLS).
//!
//! Written once here so the five services differ only in their domain.

pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod db;
pub mod erasure;
pub mod eventlog;
pub mod grpc;
pub mod hours;
pub mod idempotency;
pub mod metrics;
pub mod pii;
pub mod playbook;
mod reload;
pub mod server;
pub mod service;
pub mod streams;
pub mod telemetry;
pub mod timers;
pub mod tls;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use db::{Backend, Db, DbError, Migrations, Tx};
pub use eventlog::{Cursor, EventLog, NewEvent, StoredEvent};

/// Implements the wire form of a snake_case enum: `ALL`, `as_str`, `Display` and a trimmed,
/// case-insensitive `FromStr` whose error (`$error::UnknownValue { what, value, expected }`)
/// lists the accepted values. Services spell enum values the same way in the playbook, on the
/// wire and in their stored JSON, so one definition serves all three.
#[macro_export]
macro_rules! wire_enum {
    ($name:ident, $what:literal, $error:path, [$($variant:ident => $text:literal),+ $(,)?]) => {
        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            /// The snake_case name, as the playbook and the wire write it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $error;

            fn from_str(text: &str) -> Result<Self, $error> {
                use $error as Error;
                let wanted = text.trim();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(wanted))
                    .ok_or_else(|| Error::UnknownValue {
                        what: $what,
                        value: text.to_owned(),
                        expected: Self::ALL
                            .iter()
                            .map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            }
        }
    };
}
