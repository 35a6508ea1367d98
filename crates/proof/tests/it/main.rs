//! Proof's service against real databases (one suite for SQLite and PostgreSQL), driven by an
//! injected clock and activation and followup events, with timers fired as the scheduler
//! would.

mod grpc;
mod service;
