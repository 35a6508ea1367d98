//! Followup's persistence: one row per enrolled lead (the enrolment as JSON, with the columns
//! lookups need), the owners' open tasks, every touch per contact for the frequency cap, and
//! the contacts that opted out. Writes take the caller's transaction so the enrolment, its
//! timer, its tasks and its events commit together.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use runtime::db::{
    Backend, Batch, Db, DbError, Tx, Value, from_micros, to_micros, values_placeholders,
};
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

/// Rows per multi-row statement: far below either backend's limit on bound parameters.
const ROWS_PER_STATEMENT: usize = 256;

/// `$first, $first+1, ...`: `n` placeholders for an `IN (...)` list.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The distinct non-empty keys among `keys`, sorted: what the statements over contact keys
/// bind, in the order locks are taken.
fn distinct_keys(keys: &[String]) -> Vec<&str> {
    let mut keys: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|k| !k.is_empty())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// An enrolment as [`Writes`] saves it.
struct EnrollmentRow {
    lead: String,
    owner: String,
    contact: String,
    phone: String,
    status: &'static str,
    record: String,
    context: Vec<u8>,
    /// The trace a new enrolment keeps (see [`Store::lead_trace`]); ignored for an existing one.
    trace: String,
    /// Open tasks: number, owner, due time.
    tasks: Vec<(i64, String, i64)>,
}

/// Saves of enrolments and touches gathered from several use cases of one transaction, written
/// together with one multi-row statement per table (a chunk of due steps costs a few round
/// trips instead of several per step).
#[derive(Default)]
pub struct Writes {
    enrollments: Vec<EnrollmentRow>,
    /// Where a lead's row is in `enrollments`: a later save of the same lead replaces it.
    index: HashMap<String, usize>,
    touches: Vec<(String, String, i64)>,
}

/// Counts only: the rows hold personal data.
impl std::fmt::Debug for Writes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writes")
            .field("enrollments", &self.enrollments.len())
            .field("touches", &self.touches.len())
            .finish()
    }
}

impl Writes {
    /// [`Store::save`], deferred to [`Writes::write`]. `trace` is the W3C trace context an
    /// enrolment created now keeps as the lead's; an existing enrolment keeps its own.
    pub fn save(
        &mut self,
        enrollment: &Enrollment,
        keys: &ContactKeys,
        context: &[u8],
        trace: &BTreeMap<String, String>,
    ) -> Result<(), DbError> {
        let row = EnrollmentRow {
            lead: enrollment.lead.to_string(),
            owner: enrollment.owner().to_owned(),
            contact: keys.contact.as_str().to_owned(),
            phone: keys.phone.as_str().to_owned(),
            status: status_name(enrollment),
            record: serde_json::to_string(enrollment).map_err(DbError::corrupt)?,
            context: context.to_vec(),
            trace: runtime::telemetry::encode_trace_context(trace),
            tasks: enrollment
                .tasks
                .iter()
                .filter(|t| t.is_open())
                .map(|t| (i64::from(t.task), t.owner.clone(), to_micros(t.fired_at)))
                .collect(),
        };
        match self.index.get(&row.lead) {
            Some(&at) => self.enrollments[at] = row,
            None => {
                self.index.insert(row.lead.clone(), self.enrollments.len());
                self.enrollments.push(row);
            }
        }
        Ok(())
    }

    /// [`Store::add_touch`], deferred to [`Writes::write`].
    pub fn add_touch(&mut self, contact: &str, lead: Uuid, at: Timestamp) {
        self.touches
            .push((contact.to_owned(), lead.to_string(), to_micros(at)));
    }

    /// Adds everything gathered to `batch`, to be written with the rest of the transaction's
    /// writes; [`Writes::clear`] forgets it once written.
    pub fn push_into<'a>(&'a self, batch: &mut Batch<'a>) {
        for chunk in self.enrollments.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO enrollments (lead_id, owner_id, contact_key, phone_key, status, record, context, trace_context) \
                 VALUES {} ON CONFLICT (lead_id) DO UPDATE SET owner_id = excluded.owner_id, \
                 status = excluded.status, record = excluded.record, context = excluded.context",
                values_placeholders(chunk.len(), 8)
            );
            let mut values: Vec<Value<'a>> = Vec::with_capacity(chunk.len() * 8);
            for row in chunk {
                values.extend([
                    row.lead.as_str().into(),
                    row.owner.as_str().into(),
                    row.contact.as_str().into(),
                    row.phone.as_str().into(),
                    row.status.into(),
                    row.record.as_str().into(),
                    row.context.as_slice().into(),
                    row.trace.as_str().into(),
                ]);
            }
            batch.push(sql, values);
            Self::push_tasks(chunk, batch);
        }
        for chunk in self.touches.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO touches (contact_key, fired_at, lead_id) VALUES {}",
                values_placeholders(chunk.len(), 3)
            );
            let mut values: Vec<Value<'a>> = Vec::with_capacity(chunk.len() * 3);
            for (contact, lead, at) in chunk {
                values.extend([contact.as_str().into(), (*at).into(), lead.as_str().into()]);
            }
            batch.push(sql, values);
        }
    }

    /// Makes the open tasks of `rows`' leads what the rows say: deletes the others, and
    /// inserts or updates these. The two statements touch different rows, so they may run as
    /// one; a task that did not change is not written at all (it is most of them: a step
    /// opens one task and leaves the lead's others as they were).
    fn push_tasks<'a>(rows: &'a [EnrollmentRow], batch: &mut Batch<'a>) {
        let tasks: Vec<(&'a str, &'a (i64, String, i64))> = rows
            .iter()
            .flat_map(|row| row.tasks.iter().map(|t| (row.lead.as_str(), t)))
            .collect();
        let kept = if tasks.is_empty() {
            String::new()
        } else {
            format!(
                " AND (lead_id, step_index) NOT IN (VALUES {})",
                offset_values(rows.len(), tasks.len(), 2)
            )
        };
        let sql = format!(
            "DELETE FROM open_tasks WHERE lead_id IN ({}){kept}",
            placeholders(1, rows.len())
        );
        let values = rows
            .iter()
            .map(|row| row.lead.as_str().into())
            .chain(
                tasks
                    .iter()
                    .flat_map(|(lead, (task, _, _))| [(*lead).into(), (*task).into()]),
            )
            .collect();
        batch.push(sql, values);
        for tasks in tasks.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO open_tasks (lead_id, step_index, owner_id, due_at) VALUES {} \
                 ON CONFLICT (lead_id, step_index) DO UPDATE SET owner_id = excluded.owner_id, \
                 due_at = excluded.due_at \
                 WHERE open_tasks.owner_id <> excluded.owner_id OR open_tasks.due_at <> excluded.due_at",
                values_placeholders(tasks.len(), 4)
            );
            let mut values: Vec<Value<'a>> = Vec::with_capacity(tasks.len() * 4);
            for (lead, (task, owner, due)) in tasks {
                values.extend([
                    (*lead).into(),
                    (*task).into(),
                    owner.as_str().into(),
                    (*due).into(),
                ]);
            }
            batch.push(sql, values);
        }
    }

    /// Forgets everything gathered.
    pub fn clear(&mut self) {
        self.enrollments.clear();
        self.index.clear();
        self.touches.clear();
    }
}

/// `($k,$k+1),...` for `rows` tuples of `cols`, numbered after `offset` parameters.
fn offset_values(offset: usize, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(offset + 1 + r * cols, cols)))
        .collect::<Vec<_>>()
        .join(", ")
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

    /// The lead's own trace, kept when it was enrolled; empty if unknown.
    pub async fn lead_trace(tx: &mut Tx, lead: Uuid) -> Result<BTreeMap<String, String>, DbError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT trace_context FROM enrollments WHERE lead_id = $1")
                .bind(lead.to_string())
                .fetch_optional(&mut **tx)
                .await?;
        Ok(stored
            .map(|text| runtime::telemetry::decode_trace_context(&text))
            .unwrap_or_default())
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

    /// The enrolments and context packets of `leads` (those enrolled), locked until the
    /// transaction ends on PostgreSQL. Locked in the order of their ids, as every caller that
    /// locks several does, so two such calls wait for each other instead of deadlocking.
    pub async fn load_all_for_update(
        tx: &mut Tx,
        backend: Backend,
        leads: &[Uuid],
    ) -> Result<HashMap<Uuid, (Enrollment, ContactKeys, Vec<u8>)>, DbError> {
        let lock = if backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let mut found = HashMap::with_capacity(leads.len());
        let mut ids: Vec<String> = leads.iter().map(Uuid::to_string).collect();
        ids.sort();
        ids.dedup();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT lead_id, record, contact_key, phone_key, context FROM enrollments \
                 WHERE lead_id IN ({}) ORDER BY lead_id{lock}",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&mut **tx).await? {
                let lead = parse_uuid(&row.try_get::<String, _>("lead_id")?)?;
                found.insert(lead, decode(&row)?);
            }
        }
        Ok(found)
    }

    /// Holds the frequency cap of each of `contacts` until the transaction ends, on
    /// PostgreSQL: two transactions firing steps of one person (two leads of the same contact,
    /// fired by two schedulers or replicas) would otherwise each count the touches before the
    /// other's committed, and together break the cap. Call it before reading their touches.
    /// Taken in one order, so such transactions wait for each other instead of deadlocking;
    /// SQLite's single writer serialises them already.
    pub async fn lock_contacts(
        tx: &mut Tx,
        backend: Backend,
        contacts: &[String],
    ) -> Result<(), DbError> {
        if backend != Backend::Postgres {
            return Ok(());
        }
        let contacts = distinct_keys(contacts);
        for chunk in contacts.chunks(ROWS_PER_STATEMENT) {
            // The sort runs before the locks are taken (PostgreSQL evaluates a volatile
            // select list after ORDER BY), so every transaction takes them in the same order.
            let values = (1..=chunk.len())
                .map(|i| format!("(hashtextextended(${i}, 0))"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT pg_advisory_xact_lock(h) FROM (VALUES {values}) AS keys (h) ORDER BY h"
            );
            let mut query = sqlx::query(&sql);
            for key in chunk {
                query = query.bind(*key);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Which of `keys` opted out.
    pub async fn opted_out_among(tx: &mut Tx, keys: &[String]) -> Result<HashSet<String>, DbError> {
        let keys = distinct_keys(keys);
        let mut found = HashSet::new();
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT contact_key FROM opted_out WHERE contact_key IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for key in chunk {
                query = query.bind(*key);
            }
            found.extend(query.fetch_all(&mut **tx).await?);
        }
        Ok(found)
    }

    /// Touches of each of `contacts` since `since`, oldest first (contacts without any are
    /// left out).
    pub async fn touches_of(
        tx: &mut Tx,
        contacts: &[String],
        since: Timestamp,
    ) -> Result<HashMap<String, Vec<Timestamp>>, DbError> {
        let contacts = distinct_keys(contacts);
        let mut found: HashMap<String, Vec<Timestamp>> = HashMap::new();
        for chunk in contacts.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT contact_key, fired_at FROM touches WHERE fired_at >= $1 AND contact_key IN ({}) \
                 ORDER BY contact_key, fired_at",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(to_micros(since));
            for key in chunk {
                query = query.bind(*key);
            }
            for row in query.fetch_all(&mut **tx).await? {
                found
                    .entry(row.try_get("contact_key")?)
                    .or_default()
                    .push(from_micros(row.try_get("fired_at")?));
            }
        }
        Ok(found)
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
