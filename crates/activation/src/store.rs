//! Activation's persistence: one row per lead (indexed state, team, owner and deadline, the
//! rest as JSON), owners' availability, the round-robin state per team, and run-time
//! accounts. Writes take the caller's transaction so state, timers and events commit together.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use runtime::db::{Backend, Db, DbError, Tx, from_micros, list_placeholders, to_micros};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::assign::{OwnerState, RoundRobin};
use crate::domain::{OwnerId, TeamId};
use crate::record::{ActivationRecord, State};

/// Migrations of activation's own tables.
pub static MIGRATIONS: runtime::Migrations = runtime::Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

/// Activation's tables.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Inserts or replaces a lead's activation. `lead_trace` is kept only from the insert:
    /// the lead's trace is the one it arrived in (see [`Store::lead_trace`]).
    pub async fn save(
        tx: &mut Tx,
        record: &ActivationRecord,
        context: &[u8],
        lead_trace: &BTreeMap<String, String>,
    ) -> Result<(), DbError> {
        let json = serde_json::to_string(record).map_err(DbError::corrupt)?;
        sqlx::query(
            "INSERT INTO activations (lead_id, state, team_id, owner_id, deadline, received_at, record, context, trace_context) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (lead_id) DO UPDATE SET state = excluded.state, team_id = excluded.team_id, \
             owner_id = excluded.owner_id, deadline = excluded.deadline, record = excluded.record, \
             context = excluded.context",
        )
        .bind(record.lead.to_string())
        .bind(record.state.as_str())
        .bind(record.team.as_str())
        .bind(record.owner.as_ref().map(OwnerId::as_str).unwrap_or(""))
        .bind(to_micros(record.deadline))
        .bind(to_micros(record.received_at))
        .bind(json)
        .bind(context.to_vec())
        .bind(runtime::telemetry::encode_trace_context(lead_trace))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The W3C trace context the lead arrived in (empty if none was recorded), read in the
    /// transaction that holds its row.
    pub async fn lead_trace(tx: &mut Tx, lead: Uuid) -> Result<BTreeMap<String, String>, DbError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT trace_context FROM activations WHERE lead_id = $1")
                .bind(lead.to_string())
                .fetch_optional(&mut **tx)
                .await?;
        Ok(runtime::telemetry::decode_trace_context(
            &text.unwrap_or_default(),
        ))
    }

    /// Which of `leads` have an activation.
    pub async fn existing(tx: &mut Tx, leads: &[Uuid]) -> Result<HashSet<Uuid>, DbError> {
        if leads.is_empty() {
            return Ok(HashSet::new());
        }
        let sql = format!(
            "SELECT lead_id FROM activations WHERE lead_id IN ({})",
            list_placeholders(0, leads.len())
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for lead in leads {
            query = query.bind(lead.to_string());
        }
        query
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|id| id.parse().map_err(DbError::corrupt))
            .collect()
    }

    /// A lead's activation and context packet, locked until the transaction ends on PostgreSQL.
    pub async fn load_for_update(
        tx: &mut Tx,
        backend: Backend,
        lead: Uuid,
    ) -> Result<Option<(ActivationRecord, Vec<u8>)>, DbError> {
        let lock = if backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!("SELECT record, context FROM activations WHERE lead_id = $1{lock}");
        let row = sqlx::query(&sql)
            .bind(lead.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|row| decode(&row)).transpose()
    }

    /// A lead's activation and context packet.
    pub async fn load(&self, lead: Uuid) -> Result<Option<(ActivationRecord, Vec<u8>)>, DbError> {
        let row = sqlx::query("SELECT record, context FROM activations WHERE lead_id = $1")
            .bind(lead.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        row.map(|row| decode(&row)).transpose()
    }

    /// An owner's open leads, earliest deadline first, after `after` (deadline, lead id).
    pub async fn queue(
        &self,
        owner: &OwnerId,
        after: Option<(Timestamp, Uuid)>,
        limit: i64,
    ) -> Result<Vec<(ActivationRecord, Vec<u8>)>, DbError> {
        let (deadline, lead) = after.map_or((i64::MIN, String::new()), |(d, l)| {
            (to_micros(d), l.to_string())
        });
        let rows = sqlx::query(
            "SELECT record, context FROM activations WHERE owner_id = $1 AND state = $2 \
             AND (deadline > $3 OR (deadline = $3 AND lead_id > $4)) ORDER BY deadline, lead_id LIMIT $5",
        )
        .bind(owner.as_str())
        .bind(State::Assigned.as_str())
        .bind(deadline)
        .bind(lead)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// Open lead counts and availability of the given owners, read in the transaction (two
    /// queries whatever the team size).
    pub async fn owner_states(
        tx: &mut Tx,
        owners: &[OwnerId],
    ) -> Result<BTreeMap<OwnerId, OwnerState>, DbError> {
        let mut states: BTreeMap<OwnerId, OwnerState> = owners
            .iter()
            .map(|o| (o.clone(), OwnerState::default()))
            .collect();
        if owners.is_empty() {
            return Ok(states);
        }
        let sql = format!(
            "SELECT owner_id, open FROM owner_load WHERE owner_id IN ({})",
            list_placeholders(0, owners.len())
        );
        let mut query = sqlx::query(&sql);
        for owner in owners {
            query = query.bind(owner.as_str());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let owner = OwnerId(row.try_get("owner_id")?);
            let open: i64 = row.try_get("open")?;
            if let Some(state) = states.get_mut(&owner) {
                state.open_unactivated = u32::try_from(open.max(0)).unwrap_or(u32::MAX);
            }
        }
        let sql = format!(
            "SELECT owner_id, unavailable_until FROM owner_availability WHERE owner_id IN ({})",
            list_placeholders(0, owners.len())
        );
        let mut query = sqlx::query(&sql);
        for owner in owners {
            query = query.bind(owner.as_str());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let owner = OwnerId(row.try_get("owner_id")?);
            if let Some(state) = states.get_mut(&owner) {
                state.unavailable_until = Some(from_micros(row.try_get("unavailable_until")?));
            }
        }
        Ok(states)
    }

    /// Records when an owner is out of office (`None`: available).
    pub async fn set_availability(
        tx: &mut Tx,
        owner: &OwnerId,
        until: Option<Timestamp>,
        reason: &str,
    ) -> Result<(), DbError> {
        match until {
            Some(until) => {
                sqlx::query(
                    "INSERT INTO owner_availability (owner_id, unavailable_until, reason) VALUES ($1, $2, $3) \
                     ON CONFLICT (owner_id) DO UPDATE SET unavailable_until = excluded.unavailable_until, \
                     reason = excluded.reason",
                )
                .bind(owner.as_str())
                .bind(to_micros(until))
                .bind(reason)
                .execute(&mut **tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM owner_availability WHERE owner_id = $1")
                    .bind(owner.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Lead ids an owner holds open.
    pub async fn open_leads_of(tx: &mut Tx, owner: &OwnerId) -> Result<Vec<Uuid>, DbError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT lead_id FROM activations WHERE owner_id = $1 AND state = $2 ORDER BY deadline",
        )
        .bind(owner.as_str())
        .bind(State::Assigned.as_str())
        .fetch_all(&mut **tx)
        .await?;
        ids.iter()
            .map(|id| id.parse().map_err(DbError::corrupt))
            .collect()
    }

    /// The team's round-robin state, locked until the transaction ends, so concurrent
    /// assignments in one team take turns instead of picking the same owner.
    pub async fn round_robin(tx: &mut Tx, team: &TeamId) -> Result<RoundRobin, DbError> {
        let row: String = sqlx::query_scalar(
            "INSERT INTO round_robin (team_id, weights) VALUES ($1, '{}') \
             ON CONFLICT (team_id) DO UPDATE SET team_id = excluded.team_id RETURNING weights",
        )
        .bind(team.as_str())
        .fetch_one(&mut **tx)
        .await?;
        serde_json::from_str(&row).map_err(DbError::corrupt)
    }

    pub async fn save_round_robin(
        tx: &mut Tx,
        team: &TeamId,
        rr: &RoundRobin,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE round_robin SET weights = $1 WHERE team_id = $2")
            .bind(serde_json::to_string(rr).map_err(DbError::corrupt)?)
            .bind(team.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Run-time account domains (domain → owner).
    pub async fn accounts(tx: &mut Tx) -> Result<BTreeMap<String, OwnerId>, DbError> {
        let rows = sqlx::query("SELECT domain, owner_id FROM account_domains")
            .fetch_all(&mut **tx)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("domain")?,
                    OwnerId(r.try_get::<String, _>("owner_id")?),
                ))
            })
            .collect()
    }

    /// Replaces an account's domains and owner; true when it did not exist.
    pub async fn upsert_account(
        tx: &mut Tx,
        account: &str,
        name: &str,
        owner: &OwnerId,
        domains: &[String],
    ) -> Result<bool, DbError> {
        let existed = sqlx::query("DELETE FROM account_domains WHERE account_id = $1")
            .bind(account)
            .execute(&mut **tx)
            .await?
            .rows_affected()
            > 0;
        for domain in domains {
            sqlx::query(
                "INSERT INTO account_domains (domain, account_id, name, owner_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (domain) DO UPDATE SET account_id = excluded.account_id, name = excluded.name, \
                 owner_id = excluded.owner_id",
            )
            .bind(domain.as_str())
            .bind(account)
            .bind(name)
            .bind(owner.as_str())
            .execute(&mut **tx)
            .await?;
        }
        Ok(!existed)
    }
}

fn decode(row: &sqlx::any::AnyRow) -> Result<(ActivationRecord, Vec<u8>), DbError> {
    let record: String = row.try_get("record")?;
    let context: Vec<u8> = row.try_get("context")?;
    Ok((
        serde_json::from_str(&record).map_err(DbError::corrupt)?,
        context,
    ))
}
