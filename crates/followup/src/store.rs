//! Followup's persistence: one row per enrolled lead (the enrolment as JSON, with the columns
//! lookups need), the owners' open tasks, every touch per contact for the frequency cap, and
//! the contacts that opted out. Writes take the caller's transaction so the enrolment, its
//! timer, its tasks and its events commit together.

use jiff::Timestamp;
use runtime::db::{Backend, Db, DbError, Tx, from_micros, to_micros};
use runtime::pii::Pii;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::Enrollment;

/// Migrations of followup's own tables.
pub static MIGRATIONS: runtime::Migrations = runtime::Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

/// The identity caps and opt-outs apply to: the person, across all their leads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactKeys {
    /// `email:<address>`, or `phone:<E.164>` when there is no email; empty when neither.
    pub contact: Pii,
    /// `phone:<E.164>` when there is a phone.
    pub phone: Pii,
}

impl ContactKeys {
    pub fn new(email: Option<&str>, phone: Option<&str>) -> Self {
        let email = email.map(str::trim).filter(|e| !e.is_empty());
        let phone = phone.map(str::trim).filter(|p| !p.is_empty());
        let phone_key = phone.map(phone_key).unwrap_or_default();
        Self {
            contact: email.map_or_else(|| phone_key.clone(), email_key).into(),
            phone: phone_key.into(),
        }
    }

    /// The keys an opt-out of this contact suppresses.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        [self.contact.as_str(), self.phone.as_str()]
            .into_iter()
            .filter(|k| !k.is_empty())
    }
}

/// The key of a normalised email address (intake normalises them: lower-case, trimmed).
pub fn email_key(email: &str) -> String {
    format!("email:{}", email.trim().to_lowercase())
}

/// The key of an E.164 phone number.
pub fn phone_key(phone: &str) -> String {
    format!("phone:{}", phone.trim())
}

/// An open task as the to-do list indexes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskKey {
    pub due_at: Timestamp,
    pub lead: Uuid,
    pub task: u32,
}

/// Followup's tables.
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

    /// Inserts or replaces a lead's enrolment, and makes its open tasks what the enrolment
    /// says they are.
    pub async fn save(
        tx: &mut Tx,
        enrollment: &Enrollment,
        keys: &ContactKeys,
        context: &[u8],
    ) -> Result<(), DbError> {
        let json = serde_json::to_string(enrollment).map_err(DbError::corrupt)?;
        let lead = enrollment.lead.to_string();
        sqlx::query(
            "INSERT INTO enrollments (lead_id, owner_id, contact_key, phone_key, status, record, context) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (lead_id) DO UPDATE SET owner_id = excluded.owner_id, \
             status = excluded.status, record = excluded.record, context = excluded.context",
        )
        .bind(&lead)
        .bind(enrollment.owner())
        .bind(&keys.contact)
        .bind(&keys.phone)
        .bind(status_name(enrollment))
        .bind(json)
        .bind(context.to_vec())
        .execute(&mut **tx)
        .await?;
        // Few tasks are open per lead (normally one), so rewriting them is cheaper than diffing.
        sqlx::query("DELETE FROM open_tasks WHERE lead_id = $1")
            .bind(&lead)
            .execute(&mut **tx)
            .await?;
        for task in enrollment.tasks.iter().filter(|t| t.is_open()) {
            sqlx::query(
                "INSERT INTO open_tasks (lead_id, step_index, owner_id, due_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&lead)
            .bind(i64::from(task.task))
            .bind(&task.owner)
            .bind(to_micros(task.fired_at))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// A lead's enrolment and context packet, locked until the transaction ends on PostgreSQL.
    pub async fn load_for_update(
        tx: &mut Tx,
        backend: Backend,
        lead: Uuid,
    ) -> Result<Option<(Enrollment, ContactKeys, Vec<u8>)>, DbError> {
        let lock = if backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!(
            "SELECT record, contact_key, phone_key, context FROM enrollments WHERE lead_id = $1{lock}"
        );
        let row = sqlx::query(&sql)
            .bind(lead.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|row| decode(&row)).transpose()
    }

    /// A lead's enrolment and context packet.
    pub async fn load(
        &self,
        lead: Uuid,
    ) -> Result<Option<(Enrollment, ContactKeys, Vec<u8>)>, DbError> {
        let row = sqlx::query(
            "SELECT record, contact_key, phone_key, context FROM enrollments WHERE lead_id = $1",
        )
        .bind(lead.to_string())
        .fetch_optional(self.db.reader())
        .await?;
        row.map(|row| decode(&row)).transpose()
    }

    /// Leads enrolled for any of these contact keys (email or phone).
    pub async fn leads_of_contact(tx: &mut Tx, keys: &[String]) -> Result<Vec<Uuid>, DbError> {
        let mut leads = Vec::new();
        for key in keys.iter().filter(|k| !k.is_empty()) {
            let rows = sqlx::query(
                "SELECT lead_id FROM enrollments WHERE contact_key = $1 OR phone_key = $1",
            )
            .bind(key)
            .fetch_all(&mut **tx)
            .await?;
            for row in rows {
                let lead = parse_uuid(&row.try_get::<String, _>("lead_id")?)?;
                if !leads.contains(&lead) {
                    leads.push(lead);
                }
            }
        }
        Ok(leads)
    }

    /// An owner's open tasks, oldest due first, after `after`.
    pub async fn open_tasks(
        &self,
        owner: &str,
        after: Option<TaskKey>,
        limit: i64,
    ) -> Result<Vec<TaskKey>, DbError> {
        let (due, lead, task) = after.map_or((i64::MIN, String::new(), 0), |k| {
            (to_micros(k.due_at), k.lead.to_string(), i64::from(k.task))
        });
        let rows = sqlx::query(
            "SELECT due_at, lead_id, step_index FROM open_tasks WHERE owner_id = $1 \
             AND (due_at > $2 OR (due_at = $2 AND (lead_id > $3 OR (lead_id = $3 AND step_index > $4)))) \
             ORDER BY due_at, lead_id, step_index LIMIT $5",
        )
        .bind(owner)
        .bind(due)
        .bind(lead)
        .bind(task)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TaskKey {
                    due_at: from_micros(row.try_get("due_at")?),
                    lead: parse_uuid(&row.try_get::<String, _>("lead_id")?)?,
                    task: u32::try_from(row.try_get::<i64, _>("step_index")?)
                        .map_err(DbError::corrupt)?,
                })
            })
            .collect()
    }

    /// Touches of a contact since `since`, oldest first.
    pub async fn touches_since(
        tx: &mut Tx,
        contact: &str,
        since: Timestamp,
    ) -> Result<Vec<Timestamp>, DbError> {
        let rows = sqlx::query(
            "SELECT fired_at FROM touches WHERE contact_key = $1 AND fired_at >= $2 ORDER BY fired_at",
        )
        .bind(contact)
        .bind(to_micros(since))
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|row| Ok(from_micros(row.try_get("fired_at")?)))
            .collect()
    }

    /// Gives an erased lead `keys` (a key of its own instead of the person's), on its enrolment
    /// and on its touches, so its caps still count what was sent without naming anyone.
    pub async fn rekey_erased(tx: &mut Tx, lead: Uuid, keys: &ContactKeys) -> Result<(), DbError> {
        let lead = lead.to_string();
        sqlx::query("UPDATE enrollments SET contact_key = $1, phone_key = $2 WHERE lead_id = $3")
            .bind(&keys.contact)
            .bind(&keys.phone)
            .bind(&lead)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE touches SET contact_key = $1 WHERE lead_id = $2")
            .bind(&keys.contact)
            .bind(&lead)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Records a touch of a contact.
    pub async fn add_touch(
        tx: &mut Tx,
        contact: &str,
        lead: Uuid,
        at: Timestamp,
    ) -> Result<(), DbError> {
        sqlx::query("INSERT INTO touches (contact_key, fired_at, lead_id) VALUES ($1, $2, $3)")
            .bind(contact)
            .bind(to_micros(at))
            .bind(lead.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Forgets touches older than `before`: the cap never looks that far back.
    pub async fn prune_touches(&self, before: Timestamp) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM touches WHERE fired_at < $1")
            .bind(to_micros(before))
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Records that these contact keys opted out; true if any was new.
    pub async fn add_opt_out(
        tx: &mut Tx,
        keys: &[String],
        at: Timestamp,
        reason: &str,
    ) -> Result<bool, DbError> {
        let mut new = false;
        for key in keys.iter().filter(|k| !k.is_empty()) {
            let done = sqlx::query(
                "INSERT INTO opted_out (contact_key, opted_at, reason) VALUES ($1, $2, $3) \
                 ON CONFLICT (contact_key) DO NOTHING",
            )
            .bind(key)
            .bind(to_micros(at))
            .bind(reason)
            .execute(&mut **tx)
            .await?;
            new |= done.rows_affected() > 0;
        }
        Ok(new)
    }

    /// Whether any of the contact's keys opted out.
    pub async fn is_opted_out(tx: &mut Tx, keys: &ContactKeys) -> Result<bool, DbError> {
        for key in keys.all() {
            let row = sqlx::query("SELECT 1 AS one FROM opted_out WHERE contact_key = $1")
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
            if row.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The status column: what an operator filters enrolments by.
fn status_name(enrollment: &Enrollment) -> &'static str {
    use crate::domain::Status;
    match &enrollment.status {
        Status::Active => "active",
        Status::Paused { .. } => "paused",
        Status::Stopped { .. } => "stopped",
        Status::Nurture => "nurture",
        Status::Finished => "finished",
    }
}

fn parse_uuid(text: &str) -> Result<Uuid, DbError> {
    text.parse().map_err(DbError::corrupt)
}

fn decode(row: &sqlx::any::AnyRow) -> Result<(Enrollment, ContactKeys, Vec<u8>), DbError> {
    let enrollment: Enrollment =
        serde_json::from_str(&row.try_get::<String, _>("record")?).map_err(DbError::corrupt)?;
    let keys = ContactKeys {
        contact: row.try_get("contact_key")?,
        phone: row.try_get("phone_key")?,
    };
    Ok((enrollment, keys, row.try_get("context")?))
}
