//! `fairchance-activation`: the activation service on its own, as deployed.

fn main() -> std::process::ExitCode {
    runtime::service::main::<activation::ActivationService>()
}
