//! The operator's playbook file: TOML parsing plus each service's validation, which reports
//! problems with line and column. Arbitrary text must yield a playbook or located errors.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::playbook::parse;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = parse::<intake::playbook::IntakePlaybook>("fuzz.toml", text);
    let _ = parse::<activation::playbook::ActivationPlaybook>("fuzz.toml", text);
    let _ = parse::<followup::playbook::FollowupPlaybook>("fuzz.toml", text);
    let _ = parse::<proof::playbook::ProofPlaybook>("fuzz.toml", text);
    let _ = parse::<feedback::playbook::FeedbackPlaybook>("fuzz.toml", text);
});
