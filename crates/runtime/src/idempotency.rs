//! Idempotency records: a request that carries a client-chosen key is answered once; a retry
//! gets the stored answer, and reusing the key for a different request is refused.
//!
//! The claim is made inside the request's own transaction, so the answer is stored exactly
//! when its effects commit. On PostgreSQL a concurrent duplicate waits on the key's row and
//! then sees the committed answer.

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{DbError, Tx, to_micros};

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time this key is seen: do the work, then [`store`] the answer.
    New,
    /// Seen before with the same request: here is the original answer.
    Replay(Vec<u8>),
    /// Seen before with a different request.
    Conflict,
}

/// Fingerprint of a request body.
pub fn request_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Claims `key` in `scope` (e.g. the RPC name) for a request with fingerprint `hash`.
pub async fn claim(
    tx: &mut Tx,
    scope: &str,
    key: &str,
    hash: &str,
    now: jiff::Timestamp,
) -> Result<Claim, DbError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(hash)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let row = sqlx::query(
        "SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_one(&mut **tx)
    .await?;
    let stored_hash: String = row.try_get("request_hash")?;
    let response: Option<Vec<u8>> = row.try_get("response")?;
    Ok(match response {
        Some(response) if stored_hash == hash => Claim::Replay(response),
        _ => Claim::Conflict,
    })
}

/// Deletes the records of `scope` created before `before`; returns how many. For scopes whose
/// keys only guard a caller's retries (the `idempotency-key` metadata every inter-service call
/// carries): they matter for the seconds a retry takes, and would otherwise grow without
/// bound, one row per call.
pub async fn prune(db: &crate::Db, scope: &str, before: jiff::Timestamp) -> Result<u64, DbError> {
    let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND created_at < $2")
        .bind(scope)
        .bind(to_micros(before))
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(deleted)
}

/// Prunes `scope`'s records older than `keep` every `every`, until `stop`. Every replica may
/// run it: the deletes are idempotent.
pub async fn prune_loop(
    db: crate::Db,
    clock: crate::clock::SharedClock,
    scope: &'static str,
    keep: jiff::SignedDuration,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let before = clock.now().checked_sub(keep).unwrap_or(clock.now());
        match prune(&db, scope, before).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(scope, deleted, "pruned idempotency records"),
            Err(error) => tracing::warn!(scope, %error, "pruning idempotency records failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Stores the answer to a claimed key, in the same transaction as the work.
pub async fn store(tx: &mut Tx, scope: &str, key: &str, response: &[u8]) -> Result<(), DbError> {
    sqlx::query("UPDATE idempotency_keys SET response = $1 WHERE scope = $2 AND key = $3")
        .bind(response.to_vec())
        .bind(scope)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
