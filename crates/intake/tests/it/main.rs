//! Intake against real databases: one conformance suite for SQLite and PostgreSQL, run
//! through the service layer so store, events and idempotency are checked together.

mod auth;
mod binary;
mod client;
mod conformance;
mod grpc;
