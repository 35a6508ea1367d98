//! `fairchance-intake`: the intake service on its own, as deployed.

fn main() -> std::process::ExitCode {
    runtime::service::main::<intake::IntakeService>()
}
