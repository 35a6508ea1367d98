//! `sqlx::migrate!` embeds `migrations/` at compile time, but on stable Rust it cannot tell
//! Cargo to watch that directory: without this, a migration added to it would be missing from
//! the next build until some source file of the crate changed.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
