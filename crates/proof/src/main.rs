//! `fairchance-proof`: the proof service on its own, as deployed.

fn main() -> std::process::ExitCode {
    runtime::service::main::<proof::ProofService>()
}
