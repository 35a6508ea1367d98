//! Followup's service against real databases (one suite for SQLite and PostgreSQL), driven by
//! an injected clock and activation and intake events, with timers fired as the scheduler
//! would, and a real intake answering contactability checks.

mod grpc;
mod replicas;
mod service;
