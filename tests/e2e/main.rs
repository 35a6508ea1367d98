//! End-to-end tests: start the real `fairchance` binary and talk to it over gRPC only, as a
//! client team would. `traces` runs the services in this process instead, to read their
//! spans from an in-memory exporter.

mod activation;
mod cli;
mod demo;
mod feedback;
mod followup;
mod intake;
mod pii;
mod proof;
mod support;
mod traces;
mod watch;
