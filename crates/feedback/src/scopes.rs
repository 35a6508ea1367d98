//! The scope each of feedback's RPCs needs, in one place: the server refuses to start while an
//! RPC is missing here, so a new one cannot be left open by accident.

use runtime::auth::RpcScopes;

/// RPC name → scope a caller's token must hold.
pub const SCOPES: RpcScopes = &[
    ("RecordOutcome", "feedback.record"),
    ("GetSourceReport", "feedback.read"),
    ("GetFunnel", "feedback.read"),
    ("ListVerdicts", "feedback.read"),
    ("GetLeadTimeline", "feedback.read"),
];
