//! The scope each of intake's RPCs needs, in one place: the server refuses to start while an
//! RPC is missing here, so a new one cannot be left open by accident.

use runtime::auth::RpcScopes;

/// RPC name → scope a caller's token must hold.
pub const SCOPES: RpcScopes = &[
    ("SubmitLead", "intake.submit"),
    ("SubmitLeads", "intake.submit"),
    ("GetLead", "intake.read"),
    // Followup asks before every batch of steps.
    ("CheckContactable", "intake.read"),
    ("ListRejections", "intake.review"),
    ("ReconsiderRejection", "intake.review"),
    // Followup forwards unsubscribes recorded there.
    ("OptOut", "intake.opt_out"),
    // A data-subject request: rare, audited, and for the privacy team's tooling only.
    ("EraseContact", "intake.erase"),
    ("Subscribe", "intake.subscribe"),
];
