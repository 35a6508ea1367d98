//! `fairchance-feedback`: the feedback service on its own, as deployed.

fn main() -> std::process::ExitCode {
    runtime::service::main::<feedback::FeedbackService>()
}
