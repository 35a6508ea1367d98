//! `fairchance`: the all-in-one dev server (every service in one process, one port, SQLite
//! files under a data directory or PostgreSQL schemas) and operator tools.

mod dev;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "fairchance", version, about = "fairchance: every lead gets a fair chance", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole suite in one process on one port, on SQLite files (no setup) or PostgreSQL.
    #[command(
        after_help = "Examples:\n  fairchance dev\n  fairchance dev --listen 127.0.0.1:6000 --data-dir /tmp/fc\n  \
                            fairchance dev --postgres postgres://postgres@127.0.0.1/fairchance"
    )]
    Dev(dev::DevArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => dev::main(args),
    }
}
