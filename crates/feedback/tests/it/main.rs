//! Feedback's service against real databases (one suite for SQLite and PostgreSQL): real
//! upstream events in, projections, reports, verdicts and timelines out, and a rebuild that
//! reproduces every figure.

mod grpc;
mod service;
