//! A `SubmitLead` request straight off the wire: protobuf decoding, conversion to the domain,
//! structural validation and normalisation, then the playbook's data-quality, completeness
//! and ICP rules. Any input must produce a result or a list of problems, never a panic.

#![no_main]

use std::sync::OnceLock;

use intake::playbook::IntakePlaybook;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use proto::intake::v1 as pb;

const PLAYBOOK: &str = include_str!("../../../deploy/playbook.toml");

fn playbook() -> &'static IntakePlaybook {
    static PARSED: OnceLock<IntakePlaybook> = OnceLock::new();
    PARSED.get_or_init(|| {
        runtime::playbook::parse("deploy/playbook.toml", PLAYBOOK).expect("the sample playbook")
    })
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(request) = pb::SubmitLeadRequest::decode(bytes) else {
        return;
    };
    let Some(input) = request.lead else {
        return;
    };
    let input = intake::convert::lead_input_from_proto(input);
    if let Ok(lead) = intake::domain::validate::normalize(input) {
        let playbook = playbook();
        let _ = intake::domain::quality::quality_problems(&lead, playbook);
        let _ = intake::domain::quality::completeness_score(&lead, playbook);
        let _ = intake::domain::quality::icp_tier(&lead, playbook);
        // A normalised lead is a fixed point: normalising it again changes nothing.
        let again = intake::domain::validate::normalize(lead.clone());
        assert!(
            again.is_ok_and(|twice| twice == lead),
            "normalize is not idempotent"
        );
    }
});
