//! `fairchance-followup`: the followup service on its own, as deployed.

fn main() -> std::process::ExitCode {
    runtime::service::main::<followup::FollowupService>()
}
