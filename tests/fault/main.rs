//! Fault tolerance, proven: every service as its own process on its own PostgreSQL database
//! (reached through a proxy the test can cut), two replicas of activation and of followup,
//! a steady stream of leads, and faults injected while it runs. Afterwards the logs are
//! checked the way Jepsen's total-queue checker does it: every acknowledged call is
//! recorded, the system is drained, and lost, duplicated and unexpected items are counted.
//!
//! The target has its own `main` (`harness = false`): started with [`procs::SERVE_VAR`] set,
//! this executable is that service, running the same `runtime::service::main` as its
//! `fairchance-<service>` binary. Cargo builds a package's binaries only for that package's
//! own tests, and building them from inside a test resolves features differently and
//! rebuilds half the workspace each time; re-executing this binary needs no build at all.

mod events;
mod procs;
mod proxy;
mod scenario;

use std::process::ExitCode;

const TEST: &str = "scenario::the_suite_loses_and_duplicates_nothing_under_faults";

fn main() -> ExitCode {
    if let Ok(service) = std::env::var(procs::SERVE_VAR) {
        return match service.as_str() {
            "intake" => runtime::service::main::<intake::IntakeService>(),
            "activation" => runtime::service::main::<activation::ActivationService>(),
            "followup" => runtime::service::main::<followup::FollowupService>(),
            "proof" => runtime::service::main::<proof::ProofService>(),
            "feedback" => runtime::service::main::<feedback::FeedbackService>(),
            other => {
                eprintln!("{}: unknown service {other:?}", procs::SERVE_VAR);
                ExitCode::from(64)
            }
        };
    }
    // The parts of libtest's command line Cargo and people use: `--list`, `--skip NAME` and
    // name filters; other flags (`--nocapture`, `--test-threads`) change nothing here.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST}: test");
        return ExitCode::SUCCESS;
    }
    let mut filters = Vec::new();
    let mut skipped = false;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--skip" {
            skipped |= words
                .next()
                .is_some_and(|name| TEST.contains(name.as_str()));
        } else if !word.starts_with('-') {
            filters.push(word);
        }
    }
    if skipped || (!filters.is_empty() && !filters.iter().any(|f| TEST.contains(f.as_str()))) {
        println!("running 0 tests (filtered out)");
        return ExitCode::SUCCESS;
    }
    println!("running 1 test");
    scenario::checker_sees_faults();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if runtime.block_on(scenario::the_suite_loses_and_duplicates_nothing_under_faults()) {
        println!("test {TEST} ... ok");
    } else {
        println!("test {TEST} ... skipped (PostgreSQL unreachable)");
    }
    ExitCode::SUCCESS
}
