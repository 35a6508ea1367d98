//! Activation's service against real databases: one suite for SQLite and PostgreSQL, driven by
//! an injected clock and intake events, with timers fired as the scheduler would.

mod grpc;
mod service;
mod upstream_auth;
