//! Intake's persistence: leads, touches, the contact index duplicates are found by, the
//! suppression list and the review queue. Portable SQL for SQLite and PostgreSQL; writes take
//! the caller's transaction so state and events commit together.

use jiff::Timestamp;
use runtime::db::{Db, DbError, Tx, from_micros, to_micros};
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

/// The lead a contact key currently points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    pub lead_id: LeadId,
    pub first_received_at: Timestamp,
}

fn corrupt(e: impl std::error::Error + Send + Sync + 'static) -> DbError {
    DbError::Sqlx(sqlx::Error::Decode(Box::new(e)))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(corrupt)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(corrupt)
}

fn parse_id<T: std::str::FromStr<Err = uuid::Error>>(text: &str) -> Result<T, DbError> {
    text.parse().map_err(corrupt)
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

    /// Finds the contact's current lead, or makes `candidate` its lead if it has none. On
    /// PostgreSQL the row stays locked until the transaction ends, so concurrent submissions of
    /// one contact decide one after the other.
    pub async fn claim_contact(
        tx: &mut Tx,
        key: &str,
        candidate: LeadId,
        now: Timestamp,
    ) -> Result<ContactRow, DbError> {
        let row = sqlx::query(
            "INSERT INTO contacts (contact_key, lead_id, first_received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (contact_key) DO UPDATE SET contact_key = excluded.contact_key \
             RETURNING lead_id, first_received_at",
        )
        .bind(key)
        .bind(candidate.to_string())
        .bind(to_micros(now))
        .fetch_one(&mut **tx)
        .await?;
        Ok(ContactRow {
            lead_id: parse_id(&row.try_get::<String, _>("lead_id")?)?,
            first_received_at: from_micros(row.try_get("first_received_at")?),
        })
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

    /// Whether any of the keys is on the suppression list.
    pub async fn is_suppressed(tx: &mut Tx, keys: &[String]) -> Result<bool, DbError> {
        for key in keys {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM suppressions WHERE contact_key = $1")
                    .bind(key)
                    .fetch_optional(&mut **tx)
                    .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn insert_lead(tx: &mut Tx, lead: &Lead, contact_key: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO leads (lead_id, contact_key, email, phone, source, received_at, completeness, icp_tier, \
             do_not_contact, input) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(lead.id.to_string())
        .bind(contact_key)
        .bind(lead.input.contact.email.clone())
        .bind(lead.input.contact.phone.clone())
        .bind(lead.input.source.source.clone())
        .bind(to_micros(lead.received_at))
        .bind(i64::from(lead.completeness_score))
        .bind(tier_name(lead.icp_tier))
        .bind(i64::from(lead.do_not_contact))
        .bind(json(&lead.input)?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Adds a touch to a lead; a suppressed contact makes the lead do-not-contact.
    pub async fn insert_touch(
        tx: &mut Tx,
        lead: LeadId,
        touch: &Touch,
        do_not_contact: bool,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO touches (touch_id, lead_id, received_at, input) VALUES ($1, $2, $3, $4)",
        )
        .bind(touch.id.to_string())
        .bind(lead.to_string())
        .bind(to_micros(touch.received_at))
        .bind(json(&touch.input)?)
        .execute(&mut **tx)
        .await?;
        if do_not_contact {
            sqlx::query("UPDATE leads SET do_not_contact = 1 WHERE lead_id = $1")
                .bind(lead.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
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
