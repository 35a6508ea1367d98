//! The scope each of followup's RPCs needs, in one place: the server refuses to start while an
//! RPC is missing here, so a new one cannot be left open by accident.

use runtime::auth::RpcScopes;

/// RPC name → scope a caller's token must hold.
pub const SCOPES: RpcScopes = &[
    ("GetPlan", "followup.read"),
    ("ListDueTasks", "followup.read"),
    ("CompleteTask", "followup.act"),
    ("RecordEngagement", "followup.act"),
    ("PauseCadence", "followup.manage"),
    ("ResumeCadence", "followup.manage"),
    ("Subscribe", "followup.subscribe"),
];
