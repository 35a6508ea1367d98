//! The build script of every crate with migrations (the others name it with `build = ...`).
//!
//! `sqlx::migrate!` embeds `migrations/` at compile time, but on stable Rust it cannot tell
//! Cargo to watch that directory: without this, a migration added to it would be missing from
//! the next build until some source file of the crate changed. A build script runs in its own
//! crate's directory, so the relative path is each crate's own `migrations/`.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
