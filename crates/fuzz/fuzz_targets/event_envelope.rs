//! An event envelope as a subscriber receives it from an upstream `Subscribe` stream, decoded
//! the way feedback reads every service's events (the widest decoder: all five streams).
//! Also tries each known payload type with arbitrary bytes, since a type URL is only a claim.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use proto::events::v1::Event;

const TYPES: &[&str] = &[
    "fairchance.intake.v1.LeadAccepted",
    "fairchance.intake.v1.LeadRejected",
    "fairchance.intake.v1.LeadMerged",
    "fairchance.intake.v1.ContactOptedOut",
    "fairchance.activation.v1.LeadAssigned",
    "fairchance.activation.v1.LeadActivated",
    "fairchance.activation.v1.SlaBreached",
    "fairchance.activation.v1.EscalationRaised",
    "fairchance.activation.v1.LeadReassigned",
    "fairchance.followup.v1.FollowUpDue",
    "fairchance.followup.v1.CadenceStopped",
    "fairchance.proof.v1.ProofDelivered",
    "fairchance.proof.v1.BeliefAdvanced",
];

fuzz_target!(|bytes: &[u8]| {
    if let Ok(event) = Event::decode(bytes) {
        let _ = feedback::convert::decode(&event);
    }
    // The first byte picks a claimed type; the rest is its payload.
    if let Some((&pick, payload)) = bytes.split_first() {
        let type_url = format!(
            "type.googleapis.com/{}",
            TYPES[usize::from(pick) % TYPES.len()]
        );
        let event = Event {
            event_id: "0190a5e0-0000-7000-8000-000000000000".into(),
            event_type: type_url.rsplit('.').next().unwrap_or_default().into(),
            payload: Some(prost_types::Any {
                type_url,
                value: payload.to_vec(),
            }),
            ..Event::default()
        };
        let _ = feedback::convert::decode(&event);
    }
});
