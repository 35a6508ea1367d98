//! The scope each of proof's RPCs needs, in one place: the server refuses to start while an
//! RPC is missing here, so a new one cannot be left open by accident.

use runtime::auth::RpcScopes;

/// RPC name → scope a caller's token must hold.
pub const SCOPES: RpcScopes = &[
    ("ListAssets", "proof.read"),
    ("GetBeliefState", "proof.read"),
    ("UpsertAsset", "proof.manage"),
    // Emits ProofRecommended, so it is more than a read; followup's proof steps call it.
    ("NextProof", "proof.recommend"),
    ("RecordObjection", "proof.record"),
    ("RecordBeliefSignal", "proof.record"),
    ("RecordProofDelivered", "proof.record"),
    ("Subscribe", "proof.subscribe"),
];
