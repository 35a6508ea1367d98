//! Intake's persistence: leads, touches, the contact index duplicates are found by, the
//! suppression list and the review queue. Portable SQL for SQLite and PostgreSQL; writes take
//! the caller's transaction so state and events commit together.

use jiff::Timestamp;
use std::collections::HashMap;

use runtime::db::{
    Backend, Batch, Db, DbError, Tx, Value, from_micros, list_placeholders, to_micros,
    values_placeholders,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::domain::{
    IcpTier, Lead, LeadId, LeadInput, Problem, Rejection, RejectionId, RejectionState, Touch,
};

/// Migrations of intake's own tables.
pub static MIGRATIONS: runtime::Migrations = runtime::Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

/// Rows per multi-row statement: well under both backends' parameter limits.
const CHUNK: usize = 256;

/// A contact key's row: its current lead (`None` when it has none, e.g. a lead's second
/// channel, or a contact that opted out before its first lead) and its opt-out mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    pub lead_id: Option<LeadId>,
    pub first_received_at: Timestamp,
    /// The contact opted out.
    pub suppressed: bool,
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(DbError::corrupt)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(DbError::corrupt)
}

fn parse_id<T: std::str::FromStr<Err = uuid::Error>>(text: &str) -> Result<T, DbError> {
    text.parse().map_err(DbError::corrupt)
}

fn tier_name(tier: IcpTier) -> &'static str {
    match tier {
        IcpTier::A => "A",
        IcpTier::B => "B",
        IcpTier::C => "C",
        IcpTier::Outside => "outside",
    }
}

fn tier_from_name(name: &str) -> IcpTier {
    match name {
        "A" => IcpTier::A,
        "B" => IcpTier::B,
        "C" => IcpTier::C,
        _ => IcpTier::Outside,
    }
}

fn state_name(state: RejectionState) -> &'static str {
    match state {
        RejectionState::Pending => "pending",
        RejectionState::Accepted => "accepted",
        RejectionState::Dismissed => "dismissed",
    }
}

fn state_from_name(name: &str) -> RejectionState {
    match name {
        "accepted" => RejectionState::Accepted,
        "dismissed" => RejectionState::Dismissed,
        _ => RejectionState::Pending,
    }
}

/// Intake's tables.
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

    /// Locks the contact rows of `claims` until the transaction ends and returns them, in one
    /// statement. A key with a candidate lead id becomes that lead's contact if it has no row
    /// yet; a key without one (a lead's second channel) gets a lead-less row. Keys are locked
    /// in sorted order so concurrent batches cannot deadlock. Keys must be distinct.
    ///
    /// The returned `suppressed` is current even when the call waited for an opt-out holding
    /// the row: the conflict path returns the latest committed version of the row.
    pub async fn claim_contacts(
        tx: &mut Tx,
        claims: &[(String, Option<LeadId>)],
        now: Timestamp,
    ) -> Result<HashMap<String, ContactRow>, DbError> {
        let mut sorted: Vec<&(String, Option<LeadId>)> = claims.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut found = HashMap::with_capacity(claims.len());
        for chunk in sorted.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO contacts (contact_key, lead_id, first_received_at) VALUES {} \
                 ON CONFLICT (contact_key) DO UPDATE SET contact_key = excluded.contact_key \
                 RETURNING contact_key, lead_id, first_received_at, suppressed",
                values_placeholders(chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for (key, candidate) in chunk {
                query = query
                    .bind(key.as_str())
                    .bind(candidate.map(|id| id.to_string()).unwrap_or_default())
                    .bind(if candidate.is_some() {
                        to_micros(now)
                    } else {
                        0
                    });
            }
            for row in query.fetch_all(&mut **tx).await? {
                let key: String = row.try_get("contact_key")?;
                let lead_id: String = row.try_get("lead_id")?;
                let current = ContactRow {
                    lead_id: if lead_id.is_empty() {
                        None
                    } else {
                        Some(parse_id(&lead_id)?)
                    },
                    first_received_at: from_micros(row.try_get("first_received_at")?),
                    suppressed: row.try_get::<i64, _>("suppressed")? != 0,
                };
                found.insert(key, current);
            }
        }
        Ok(found)
    }

    /// Marks contact keys opted out on their (locked) rows, creating lead-less rows where the
    /// contact has none. Submissions read the mark while holding the same rows.
    pub async fn suppress_contacts(tx: &mut Tx, keys: &[String]) -> Result<(), DbError> {
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort();
        sorted.dedup();
        for chunk in sorted.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO contacts (contact_key, lead_id, first_received_at, suppressed) VALUES {} \
                 ON CONFLICT (contact_key) DO UPDATE SET suppressed = 1",
                values_placeholders(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for key in chunk {
                query = query.bind(key.as_str()).bind("").bind(0_i64).bind(1_i64);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Points a contact at a new lead (its previous lead fell outside the duplicate window).
    pub async fn repoint_contact(
        tx: &mut Tx,
        key: &str,
        lead: LeadId,
        now: Timestamp,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE contacts SET lead_id = $1, first_received_at = $2 WHERE contact_key = $3",
        )
        .bind(lead.to_string())
        .bind(to_micros(now))
        .bind(key)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Inserts new leads, each with its contact key, as statements of `batch`.
    pub fn insert_leads(batch: &mut Batch<'_>, leads: &[(&Lead, &str)]) -> Result<(), DbError> {
        for chunk in leads.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO leads (lead_id, contact_key, email, phone, source, received_at, completeness, icp_tier, \
                 do_not_contact, input) VALUES {}",
                values_placeholders(chunk.len(), 10)
            );
            let mut values = Vec::with_capacity(chunk.len() * 10);
            for (lead, contact_key) in chunk {
                values.extend([
                    Value::from(lead.id.to_string()),
                    Value::from((*contact_key).to_owned()),
                    Value::from(lead.input.contact.email.as_str().to_owned()),
                    Value::from(lead.input.contact.phone.as_str().to_owned()),
                    Value::from(lead.input.source.source.clone()),
                    Value::from(to_micros(lead.received_at)),
                    Value::from(i64::from(lead.completeness_score)),
                    Value::from(tier_name(lead.icp_tier)),
                    Value::from(i64::from(lead.do_not_contact)),
                    Value::from(json(&lead.input)?),
                ]);
            }
            batch.push(sql, values);
        }
        Ok(())
    }

    /// Adds touches to their leads, as statements of `batch`.
    pub fn insert_touches(
        batch: &mut Batch<'_>,
        touches: &[(LeadId, &Touch)],
    ) -> Result<(), DbError> {
        for chunk in touches.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO touches (touch_id, lead_id, received_at, input) VALUES {}",
                values_placeholders(chunk.len(), 4)
            );
            let mut values = Vec::with_capacity(chunk.len() * 4);
            for (lead, touch) in chunk {
                values.extend([
                    Value::from(touch.id.to_string()),
                    Value::from(lead.to_string()),
                    Value::from(to_micros(touch.received_at)),
                    Value::from(json(&touch.input)?),
                ]);
            }
            batch.push(sql, values);
        }
        Ok(())
    }

    /// Flags stored leads do-not-contact (a touch came from a suppressed or non-consenting
    /// contact), as statements of `batch`. Leads inserted by the same batch are flagged in
    /// their rows instead: a batch's statements do not see each other's writes.
    pub fn flag_leads_do_not_contact(batch: &mut Batch<'_>, leads: &[LeadId]) {
        for chunk in leads.chunks(CHUNK) {
            let sql = format!(
                "UPDATE leads SET do_not_contact = 1 WHERE lead_id IN ({})",
                list_placeholders(0, chunk.len())
            );
            let values = chunk.iter().map(|id| Value::from(id.to_string())).collect();
            batch.push(sql, values);
        }
    }

    /// A lead with its touches, read inside a transaction (sees its own writes).
    pub async fn lead_in(tx: &mut Tx, id: LeadId) -> Result<Option<Lead>, DbError> {
        read_lead(tx, id).await
    }

    /// A lead with its touches.
    pub async fn lead(&self, id: LeadId) -> Result<Option<Lead>, DbError> {
        let mut conn = self.db.reader().acquire().await?;
        read_lead(&mut conn, id).await
    }

    /// Of `ids`, the leads that exist, each with whether it is do-not-contact now.
    pub async fn contactability(&self, ids: &[LeadId]) -> Result<Vec<(LeadId, bool)>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT lead_id, do_not_contact FROM leads WHERE lead_id IN ({})",
            list_placeholders(0, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id.to_string());
        }
        let rows = query.fetch_all(self.db.reader()).await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_id(&row.try_get::<String, _>("lead_id")?)?,
                    row.try_get::<i64, _>("do_not_contact")? != 0,
                ))
            })
            .collect()
    }

    /// Adds contact keys to the suppression list; true if any was new.
    pub async fn suppress(
        tx: &mut Tx,
        keys: &[String],
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, DbError> {
        let mut newly = false;
        for key in keys {
            let inserted = sqlx::query(
                "INSERT INTO suppressions (contact_key, reason, opted_out_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (contact_key) DO NOTHING",
            )
            .bind(key)
            .bind(reason)
            .bind(to_micros(now))
            .execute(&mut **tx)
            .await?
            .rows_affected();
            newly |= inserted > 0;
        }
        Ok(newly)
    }

    /// Flags every lead of this email or phone do-not-contact; returns them, oldest first.
    pub async fn flag_do_not_contact(
        tx: &mut Tx,
        email: &str,
        phone: &str,
    ) -> Result<Vec<LeadId>, DbError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE leads SET do_not_contact = 1 \
             WHERE ($1 <> '' AND email = $1) OR ($2 <> '' AND phone = $2) RETURNING lead_id",
        )
        .bind(email)
        .bind(phone)
        .fetch_all(&mut **tx)
        .await?;
        let mut ids = ids
            .iter()
            .map(|s| parse_id(s))
            .collect::<Result<Vec<LeadId>, _>>()?;
        ids.sort();
        Ok(ids)
    }

    pub async fn insert_rejection(tx: &mut Tx, rejection: &Rejection) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO rejections (rejection_id, source, received_at, state, problems, input, lead_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(rejection.id.to_string())
        .bind(rejection.input.source.source.clone())
        .bind(to_micros(rejection.received_at))
        .bind(state_name(rejection.state))
        .bind(json(&rejection.problems)?)
        .bind(json(&rejection.input)?)
        .bind(rejection.lead_id.map(|id| id.to_string()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Records a review decision on a rejection.
    pub async fn update_rejection(
        tx: &mut Tx,
        rejection: &Rejection,
        note: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE rejections SET state = $1, problems = $2, input = $3, lead_id = $4, note = $5 \
             WHERE rejection_id = $6",
        )
        .bind(state_name(rejection.state))
        .bind(json(&rejection.problems)?)
        .bind(json(&rejection.input)?)
        .bind(rejection.lead_id.map(|id| id.to_string()))
        .bind(note)
        .bind(rejection.id.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A rejection, read (and on PostgreSQL locked) inside a transaction.
    pub async fn rejection_for_update(
        tx: &mut Tx,
        id: RejectionId,
        lock: bool,
    ) -> Result<Option<Rejection>, DbError> {
        let sql = if lock {
            "SELECT rejection_id, received_at, state, problems, input, lead_id FROM rejections \
             WHERE rejection_id = $1 FOR UPDATE"
        } else {
            "SELECT rejection_id, received_at, state, problems, input, lead_id FROM rejections WHERE rejection_id = $1"
        };
        let row = sqlx::query(sql)
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(rejection_from_row).transpose()
    }

    /// Rejections in `state`, newest first, optionally of one source, after the page token
    /// (the last rejection id of the previous page; ids are time-ordered UUIDv7s).
    pub async fn list_rejections(
        &self,
        state: RejectionState,
        source: &str,
        before: Option<RejectionId>,
        limit: i64,
    ) -> Result<Vec<Rejection>, DbError> {
        let rows = sqlx::query(
            "SELECT rejection_id, received_at, state, problems, input, lead_id FROM rejections \
             WHERE state = $1 AND ($2 = '' OR source = $2) AND ($3 = '' OR rejection_id < $3) \
             ORDER BY rejection_id DESC LIMIT $4",
        )
        .bind(state_name(state))
        .bind(source)
        .bind(before.map(|id| id.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(rejection_from_row).collect()
    }
}

/// What an erasure found and blanked in intake's tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasedRows {
    pub lead_ids: Vec<LeadId>,
    pub rejection_ids: Vec<RejectionId>,
    /// Every email and phone the erased leads carried (the person may have been found by one
    /// and given both): what else must be searched for and forgotten.
    pub values: Vec<String>,
}

impl Store {
    /// Blanks the personal data of every lead, merged submission and rejected submission of
    /// the contact with this (normalised) email or phone, and forgets the contact's index rows
    /// unless it opted out: an opt-out is kept, as the one record needed to honour it.
    pub async fn erase_contact(
        tx: &mut Tx,
        backend: Backend,
        email: &str,
        phone: &str,
    ) -> Result<ErasedRows, DbError> {
        let mut erased = ErasedRows::default();
        let leads = sqlx::query(
            "SELECT lead_id, email, phone, input FROM leads \
             WHERE ($1 <> '' AND email = $1) OR ($2 <> '' AND phone = $2) ORDER BY lead_id",
        )
        .bind(email)
        .bind(phone)
        .fetch_all(&mut **tx)
        .await?;
        erased.values = [email, phone]
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect();
        for row in leads {
            let id: String = row.try_get("lead_id")?;
            for column in ["email", "phone"] {
                let value: String = row.try_get(column)?;
                if !value.is_empty() && !erased.values.contains(&value) {
                    erased.values.push(value);
                }
            }
            let mut input: LeadInput = from_json(&row.try_get::<String, _>("input")?)?;
            input.erase_personal_data();
            sqlx::query(
                "UPDATE leads SET email = '', phone = '', contact_key = '', input = $1 WHERE lead_id = $2",
            )
            .bind(json(&input)?)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
            let touches = sqlx::query("SELECT touch_id, input FROM touches WHERE lead_id = $1")
                .bind(&id)
                .fetch_all(&mut **tx)
                .await?;
            for touch in touches {
                let mut input: LeadInput = from_json(&touch.try_get::<String, _>("input")?)?;
                input.erase_personal_data();
                sqlx::query("UPDATE touches SET input = $1 WHERE touch_id = $2")
                    .bind(json(&input)?)
                    .bind(touch.try_get::<String, _>("touch_id")?)
                    .execute(&mut **tx)
                    .await?;
            }
            erased.lead_ids.push(parse_id(&id)?);
        }

        // A rejected submission has no contact columns; its stored JSON is searched for the
        // address instead (normalised values are stored verbatim, so a substring match finds
        // them), then each candidate is checked on the decoded contact.
        let contains = match backend {
            Backend::Sqlite => "instr(input, $1) > 0",
            Backend::Postgres => "strpos(input, $1) > 0",
        };
        for value in &erased.values {
            let sql = format!("SELECT rejection_id, input FROM rejections WHERE {contains}");
            let rows = sqlx::query(&sql).bind(value).fetch_all(&mut **tx).await?;
            for row in rows {
                let id: String = row.try_get("rejection_id")?;
                let mut input: LeadInput = from_json(&row.try_get::<String, _>("input")?)?;
                let contact = &input.contact;
                if *contact.email != *value && *contact.phone != *value {
                    continue;
                }
                input.erase_personal_data();
                sqlx::query("UPDATE rejections SET input = $1 WHERE rejection_id = $2")
                    .bind(json(&input)?)
                    .bind(&id)
                    .execute(&mut **tx)
                    .await?;
                erased.rejection_ids.push(parse_id(&id)?);
            }
        }
        erased.rejection_ids.sort();
        erased.rejection_ids.dedup();

        // The index rows of every address given or found (a claim may have left one without a
        // lead); the given ones are among the values, so their keys are too.
        let mut keys: Vec<String> = Vec::new();
        for value in &erased.values {
            for prefix in ["email:", "phone:"] {
                let key = format!("{prefix}{value}");
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        let contact_keys = &keys;
        if !contact_keys.is_empty() {
            let sql = format!(
                "DELETE FROM contacts WHERE suppressed = 0 AND contact_key IN ({})",
                list_placeholders(0, contact_keys.len())
            );
            let mut query = sqlx::query(&sql);
            for key in contact_keys {
                query = query.bind(key);
            }
            query.execute(&mut **tx).await?;
            // A suppressed contact's row stays (it is the opt-out), without its lead.
            let sql = format!(
                "UPDATE contacts SET lead_id = '' WHERE contact_key IN ({})",
                list_placeholders(0, contact_keys.len())
            );
            let mut query = sqlx::query(&sql);
            for key in contact_keys {
                query = query.bind(key);
            }
            query.execute(&mut **tx).await?;
        }
        // The erased leads' other keys (found by email, the lead's phone is indexed too).
        let ids: Vec<String> = erased.lead_ids.iter().map(ToString::to_string).collect();
        for chunk in ids.chunks(500) {
            let list = list_placeholders(0, chunk.len());
            for sql in [
                format!("DELETE FROM contacts WHERE suppressed = 0 AND lead_id IN ({list})"),
                format!("UPDATE contacts SET lead_id = '' WHERE lead_id IN ({list})"),
            ] {
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(id);
                }
                query.execute(&mut **tx).await?;
            }
        }
        Ok(erased)
    }

    /// Records an erasure in the audit trail: when, under which reference, which ids. The
    /// trail names no personal data, so it outlives the erasure it proves.
    pub async fn record_erasure(
        tx: &mut Tx,
        erasure_id: Uuid,
        reference: &str,
        erased: &ErasedRows,
        events_rewritten: usize,
        at: Timestamp,
    ) -> Result<(), DbError> {
        let lead_ids: Vec<String> = erased.lead_ids.iter().map(ToString::to_string).collect();
        let rejection_ids: Vec<String> = erased
            .rejection_ids
            .iter()
            .map(ToString::to_string)
            .collect();
        sqlx::query(
            "INSERT INTO erasures (erasure_id, reference, erased_at, lead_ids, rejection_ids, events_rewritten) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(erasure_id.to_string())
        .bind(reference)
        .bind(to_micros(at))
        .bind(json(&lead_ids)?)
        .bind(json(&rejection_ids)?)
        .bind(i64::try_from(events_rewritten).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

async fn read_lead(conn: &mut AnyConnection, id: LeadId) -> Result<Option<Lead>, DbError> {
    let Some(row) = sqlx::query(
        "SELECT lead_id, received_at, completeness, icp_tier, do_not_contact, input FROM leads WHERE lead_id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let touches = sqlx::query("SELECT touch_id, received_at, input FROM touches WHERE lead_id = $1 ORDER BY received_at, touch_id")
        .bind(id.to_string())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|t| {
            Ok(Touch {
                id: parse_id::<Uuid>(&t.try_get::<String, _>("touch_id")?)?,
                received_at: from_micros(t.try_get("received_at")?),
                input: from_json::<LeadInput>(&t.try_get::<String, _>("input")?)?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Some(Lead {
        id,
        input: from_json(&row.try_get::<String, _>("input")?)?,
        received_at: from_micros(row.try_get("received_at")?),
        completeness_score: u32::try_from(row.try_get::<i64, _>("completeness")?).unwrap_or(0),
        icp_tier: tier_from_name(&row.try_get::<String, _>("icp_tier")?),
        do_not_contact: row.try_get::<i64, _>("do_not_contact")? != 0,
        touches,
    }))
}

fn rejection_from_row(row: &AnyRow) -> Result<Rejection, DbError> {
    Ok(Rejection {
        id: parse_id(&row.try_get::<String, _>("rejection_id")?)?,
        input: from_json(&row.try_get::<String, _>("input")?)?,
        received_at: from_micros(row.try_get("received_at")?),
        problems: from_json::<Vec<Problem>>(&row.try_get::<String, _>("problems")?)?,
        state: state_from_name(&row.try_get::<String, _>("state")?),
        lead_id: row
            .try_get::<Option<String>, _>("lead_id")?
            .map(|s| parse_id(&s))
            .transpose()?,
    })
}
