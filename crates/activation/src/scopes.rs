//! The scope each of activation's RPCs needs, in one place: the server refuses to start while
//! an RPC is missing here, so a new one cannot be left open by accident.

use runtime::auth::RpcScopes;

/// RPC name → scope a caller's token must hold.
pub const SCOPES: RpcScopes = &[
    ("GetActivation", "activation.read"),
    ("ListQueue", "activation.read"),
    ("WatchActivations", "activation.read"),
    ("RecordFirstAction", "activation.act"),
    ("SetOwnerAvailability", "activation.manage"),
    ("UpsertAccount", "activation.manage"),
    ("Subscribe", "activation.subscribe"),
];
