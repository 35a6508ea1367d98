//! `fairchance`: the all-in-one dev server (every service in one process, one port, SQLite
//! files under a data directory or PostgreSQL schemas) and the client commands people use from
//! a terminal: submit and import leads, watch activations, read the feedback reports.

mod client;
mod columns;
mod csv;
mod demo;
mod dev;
mod lead;
mod report;
mod table;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "fairchance",
    version,
    about = "fairchance: every lead gets a fair chance",
    long_about = None,
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const AFTER_HELP: &str = concat!(
    "Examples:\n  \
    fairchance dev                                          # the whole suite on 127.0.0.1:50051\n  \
    fairchance lead import scans.csv --source event-badge-scan\n  \
    fairchance watch --team sales\n  \
    fairchance report sources --from 7d\n  \
    fairchance dev --demo; fairchance demo                  # (two terminals) the product in two minutes\n\n\
    Client commands take --addr (FAIRCHANCE_ADDR, default http://127.0.0.1:50051), --token\n  \
    (FAIRCHANCE_TOKEN), --connect-timeout and --timeout.\n\n",
    client::exit_codes_help!()
);

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole suite in one process on one port, on SQLite files (no setup) or PostgreSQL.
    #[command(
        after_help = "Examples:\n  fairchance dev\n  fairchance dev --listen 127.0.0.1:6000 --data-dir /tmp/fc\n  \
                            fairchance dev --postgres postgres://postgres@127.0.0.1/fairchance\n  \
                            fairchance dev --demo                # the demo playbook, data in data/demo"
    )]
    Dev(dev::DevArgs),
    /// Submit one lead, or import many from a CSV file.
    Lead(Box<lead::LeadArgs>),
    /// Watch activation status live: assignments, SLA countdowns, breaches, escalations.
    #[command(after_help = watch::HELP)]
    Watch(watch::WatchArgs),
    /// Feedback reports: by source, the funnel, fair-chance verdicts, one lead's timeline.
    Report(report::ReportArgs),
    /// Drive a running suite (`fairchance dev --demo`) with a realistic synthetic stream of
    /// leads, then show which sources were let down by execution rather than lead quality.
    #[command(after_help = demo::HELP)]
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are not errors; every usage error exits 64 (EX_USAGE),
            // like a bad flag value found later.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(client::exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Dev(args) => dev::main(args),
        Command::Lead(args) => lead::main(*args),
        Command::Watch(args) => watch::main(args),
        Command::Report(args) => report::main(args),
        Command::Demo(args) => demo::main(args),
    }
}
