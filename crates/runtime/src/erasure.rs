//! Erasure of a person's data, the part every service shares: rewriting the events already in
//! a service's own log so that replays and new subscribers never see the erased values, and
//! dropping idempotency records whose stored response holds them.
//!
//! An erased event keeps its id, type, aggregate, time and position: consumers' cursors and
//! every count derived from the log stay valid; only the personal fields inside the payload
//! are blanked (by the service, which knows its payload types).

use sqlx::Row;

use crate::db::{Backend, DbError, Tx, list_placeholders};

/// Rewrites the payloads of the events about `aggregates`: `redact(type_name, payload)`
/// returns the payload with personal fields blanked, or `None` to leave the event as is.
/// Returns how many events were rewritten.
pub async fn rewrite_events<F>(
    tx: &mut Tx,
    aggregates: &[String],
    mut redact: F,
) -> Result<usize, DbError>
where
    F: FnMut(&str, &[u8]) -> Option<Vec<u8>>,
{
    let mut rewritten = 0;
    // Bounded IN lists: a contact with thousands of leads must not build one huge statement.
    for chunk in aggregates.chunks(500) {
        let sql = format!(
            "SELECT seq, event_type, payload FROM event_log WHERE aggregate_id IN ({}) ORDER BY seq",
            list_placeholders(0, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for aggregate in chunk {
            query = query.bind(aggregate);
        }
        let rows = query.fetch_all(&mut **tx).await?;
        for row in rows {
            let seq: i64 = row.try_get("seq")?;
            let type_name: String = row.try_get("event_type")?;
            let payload: Vec<u8> = row.try_get("payload")?;
            if let Some(blanked) = redact(&type_name, &payload)
                && blanked != payload
            {
                sqlx::query("UPDATE event_log SET payload = $1 WHERE seq = $2")
                    .bind(blanked)
                    .bind(seq)
                    .execute(&mut **tx)
                    .await?;
                rewritten += 1;
            }
        }
    }
    Ok(rewritten)
}

/// Deletes the idempotency records of `scope` whose stored response contains any of `values`
/// (a retry after the erasure then runs the call again instead of replaying erased data).
pub async fn forget_idempotent_responses(
    tx: &mut Tx,
    backend: Backend,
    scope: &str,
    values: &[&str],
) -> Result<u64, DbError> {
    let contains = match backend {
        Backend::Sqlite => "instr(response, CAST($2 AS BLOB)) > 0",
        Backend::Postgres => "position(convert_to($2, 'UTF8') in response) > 0",
    };
    let sql = format!("DELETE FROM idempotency_keys WHERE scope = $1 AND {contains}");
    let mut deleted = 0;
    for value in values.iter().filter(|v| !v.is_empty()) {
        deleted += sqlx::query(&sql)
            .bind(scope)
            .bind(*value)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    Ok(deleted)
}
