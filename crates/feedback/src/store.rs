//! Feedback's persistence: the projections (one fact per lead, one per rejected submission),
//! each lead's timeline and preserved context. Writes take the caller's transaction so a
//! projection and the consumer cursor that produced it commit together.

use jiff::Timestamp;
use runtime::db::{Backend, Db, DbError, Tx, from_micros, to_micros};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::timeline::erase_personal_context;
use crate::domain::{
    FunnelStage, LeadFact, LeadFigures, OutcomeReason, OutcomeStage, RejectionFact, TimelineEntry,
};

/// An outcome as the CRM reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOutcome {
    pub lead: Uuid,
    pub stage: OutcomeStage,
    pub reason: Option<OutcomeReason>,
    pub note: String,
    pub at: Timestamp,
}

/// Migrations of feedback's own tables.
pub static MIGRATIONS: runtime::Migrations = runtime::Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

/// The consumers whose cursors a rebuild resets: every projection is theirs.
pub const CONSUMER_PREFIX: &str = "feedback.";

/// Feedback's tables.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    /// How many settled leads a report folds in before reading (see [`Store::fold_step`]).
    fold_chunk: i64,
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(DbError::corrupt)
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(DbError::corrupt)
}

/// The figure columns of `lead_facts`, in the order [`bind_figures`] binds them.
const FIGURE_COLUMNS: [&str; 32] = [
    "lead_id",
    "figures_version",
    "received_at",
    "source",
    "campaign",
    "channel",
    "accepted",
    "review_of",
    "may_contact",
    "activated",
    "in_sla",
    "late",
    "activation_micros",
    "breaches",
    "touches_before_response",
    "persisted_touches",
    "reached_meeting",
    "answered",
    "touches",
    "touch_span",
    "follow_up_closed",
    "enrolled",
    "grace_from",
    "unproven_objections",
    "ended",
    "lost",
    "loss_reason",
    "handed_off",
    "with_debt",
    "missing_stages",
    "objections",
    "funnel_stage",
];

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds the figures of `fact` in the order of [`FIGURE_COLUMNS`].
fn bind_figures<'q>(query: AnyQuery<'q>, fact: &LeadFact) -> Result<AnyQuery<'q>, DbError> {
    let f = LeadFigures::of(fact);
    let flag = |b: bool| i32::from(b);
    let int = |n: u32| i64::from(n);
    let objections = if f.objections.is_empty() {
        None
    } else {
        let counts: std::collections::BTreeMap<&str, u32> =
            f.objections.iter().map(|(c, n)| (c.as_str(), *n)).collect();
        Some(json(&counts)?)
    };
    let stage = FunnelStage::ALL
        .iter()
        .position(|s| *s == f.funnel_stage)
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(0);
    Ok(query
        .bind(fact.lead.to_string())
        .bind(LeadFigures::VERSION)
        .bind(fact.received_at.map_or(0, to_micros))
        .bind(fact.source.clone())
        .bind(fact.campaign.clone())
        .bind(fact.channel.clone())
        .bind(flag(f.accepted))
        .bind(f.review_of.clone())
        .bind(flag(f.may_contact))
        .bind(flag(f.activated))
        .bind(flag(f.in_sla))
        .bind(flag(f.late))
        .bind(f.activation_micros)
        .bind(int(f.breaches))
        .bind(f.touches_before_response.map(int))
        .bind(int(f.persisted_touches))
        .bind(flag(f.reached_meeting))
        .bind(flag(f.answered))
        .bind(int(f.touches))
        .bind(f.touch_span_micros)
        .bind(flag(f.follow_up_closed))
        .bind(flag(f.enrolled))
        .bind(f.grace_from)
        .bind(int(f.unproven_objections))
        .bind(flag(f.ended))
        .bind(flag(f.lost))
        .bind(f.loss_reason.map(|r| r.as_str().to_owned()))
        .bind(flag(f.handed_off))
        .bind(flag(f.with_debt))
        .bind(int(f.missing_stages))
        .bind(objections)
        .bind(stage))
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            fold_chunk: crate::rollup::FOLD_CHUNK,
        }
    }

    /// The same store folding `chunk` leads per step, so a test sees folds half done.
    pub fn with_fold_chunk(self, chunk: i64) -> Self {
        Self {
            fold_chunk: chunk,
            ..self
        }
    }

    /// How many settled leads a step of folding folds in.
    pub fn fold_chunk(&self) -> i64 {
        self.fold_chunk
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A lead's fact, locked until the transaction ends on PostgreSQL.
    pub async fn fact_for_update(
        tx: &mut Tx,
        backend: Backend,
        lead: Uuid,
    ) -> Result<Option<LeadFact>, DbError> {
        let lock = if backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!("SELECT fact FROM lead_facts WHERE lead_id = $1{lock}");
        let row = sqlx::query(&sql)
            .bind(lead.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|r| from_json(&r.try_get::<String, _>("fact")?))
            .transpose()
    }

    /// Inserts or replaces a lead's fact, and its row of the figures reports aggregate (see
    /// [`LeadFigures`]); `context` replaces the stored context when given.
    pub async fn save_fact(
        tx: &mut Tx,
        fact: &LeadFact,
        context: Option<&[(String, String)]>,
    ) -> Result<(), DbError> {
        let context = json(&context.unwrap_or_default())?;
        let keep_context = if context == "[]" {
            "lead_facts.context"
        } else {
            "excluded.context"
        };
        let sql = format!(
            "INSERT INTO lead_facts (lead_id, source, campaign, channel, received_at, fact, context) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (lead_id) DO UPDATE SET source = excluded.source, \
             campaign = excluded.campaign, channel = excluded.channel, \
             received_at = excluded.received_at, fact = excluded.fact, context = {keep_context}"
        );
        sqlx::query(&sql)
            .bind(fact.lead.to_string())
            .bind(&fact.source)
            .bind(&fact.campaign)
            .bind(&fact.channel)
            .bind(fact.received_at.map_or(0, to_micros))
            .bind(json(fact)?)
            .bind(context)
            .execute(&mut **tx)
            .await?;
        Self::save_figures(tx, fact).await
    }

    /// Inserts or replaces the figures row of `fact`, taking its old figures out of the
    /// rollups first if they are in them (see [`crate::rollup`]).
    async fn save_figures(tx: &mut Tx, fact: &LeadFact) -> Result<(), DbError> {
        let backend = if tx.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        crate::rollup::take_back(tx, backend, &fact.lead.to_string()).await?;
        let columns = FIGURE_COLUMNS.join(", ");
        let placeholders: Vec<String> = (1..=FIGURE_COLUMNS.len())
            .map(|i| format!("${i}"))
            .collect();
        let updates: Vec<String> = FIGURE_COLUMNS[1..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .chain(["rolled = NULL".to_owned()])
            .collect();
        let sql = format!(
            "INSERT INTO lead_figures ({columns}) VALUES ({}) \
             ON CONFLICT (lead_id) DO UPDATE SET {}",
            placeholders.join(", "),
            updates.join(", "),
        );
        bind_figures(sqlx::query(&sql), fact)?
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Recomputes the figures of every fact written by an older derivation (or before the
    /// figure columns existed) from the fact itself, in batches. Run on start, before the
    /// consumers, so every report reads current figures.
    pub async fn refresh_figures(&self) -> Result<u64, DbError> {
        const BATCH: i64 = 1000;
        let mut refreshed = 0;
        loop {
            let mut tx = self.db.begin().await?;
            let rows = sqlx::query(
                "SELECT f.fact FROM lead_facts f LEFT JOIN lead_figures g ON g.lead_id = f.lead_id \
                 WHERE g.lead_id IS NULL OR g.figures_version < $1 ORDER BY f.lead_id LIMIT $2",
            )
            .bind(LeadFigures::VERSION)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                return Ok(refreshed);
            }
            for row in &rows {
                let fact: LeadFact = from_json(&row.try_get::<String, _>("fact")?)?;
                Self::save_figures(&mut tx, &fact).await?;
                refreshed += 1;
            }
            tx.commit().await?;
        }
    }

    /// Inserts or replaces a rejected submission's fact.
    pub async fn save_rejection(tx: &mut Tx, fact: &RejectionFact) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO rejection_facts (rejection_id, received_at, fact, source, campaign, channel) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (rejection_id) DO UPDATE SET received_at = excluded.received_at, \
             fact = excluded.fact, source = excluded.source, campaign = excluded.campaign, \
             channel = excluded.channel",
        )
        .bind(fact.rejection.to_string())
        .bind(to_micros(fact.received_at))
        .bind(json(fact)?)
        .bind(&fact.source)
        .bind(&fact.campaign)
        .bind(&fact.channel)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Adds a line to a lead's timeline.
    /// Removes the person's own words from a lead: the message in its preserved context and
    /// the notes of its outcomes.
    pub async fn erase_personal_data(tx: &mut Tx, lead: Uuid) -> Result<(), DbError> {
        let id = lead.to_string();
        let row = sqlx::query("SELECT context FROM lead_facts WHERE lead_id = $1")
            .bind(&id)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(row) = row {
            let mut context: Vec<(String, String)> = from_json(&row.try_get::<String, _>(0)?)?;
            erase_personal_context(&mut context);
            sqlx::query("UPDATE lead_facts SET context = $1 WHERE lead_id = $2")
                .bind(json(&context)?)
                .bind(&id)
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("UPDATE outcomes SET note = '' WHERE lead_id = $1")
            .bind(&id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn add_timeline(
        tx: &mut Tx,
        lead: Uuid,
        entry: &TimelineEntry,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO timeline (lead_id, at, entry_id, service, event_type, summary) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(lead.to_string())
        .bind(to_micros(entry.at))
        .bind(Uuid::now_v7().to_string())
        .bind(&entry.service)
        .bind(&entry.event_type)
        .bind(&entry.summary)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A lead's fact and preserved context.
    pub async fn fact(
        &self,
        lead: Uuid,
    ) -> Result<Option<(LeadFact, Vec<(String, String)>)>, DbError> {
        let row = sqlx::query("SELECT fact, context FROM lead_facts WHERE lead_id = $1")
            .bind(lead.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        row.map(|r| {
            Ok((
                from_json(&r.try_get::<String, _>("fact")?)?,
                from_json(&r.try_get::<String, _>("context")?)?,
            ))
        })
        .transpose()
    }

    /// A lead's timeline entries in the order they were recorded.
    pub async fn timeline(&self, lead: Uuid) -> Result<Vec<TimelineEntry>, DbError> {
        let rows = sqlx::query(
            "SELECT at, service, event_type, summary FROM timeline WHERE lead_id = $1 \
             ORDER BY at, entry_id",
        )
        .bind(lead.to_string())
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TimelineEntry {
                    at: from_micros(r.try_get("at")?),
                    service: r.try_get("service")?,
                    event_type: r.try_get("event_type")?,
                    summary: r.try_get("summary")?,
                })
            })
            .collect()
    }

    /// Records an outcome from the CRM.
    pub async fn add_outcome(tx: &mut Tx, outcome: &StoredOutcome) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO outcomes (outcome_id, lead_id, stage, reason, note, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(outcome.lead.to_string())
        .bind(outcome.stage.as_str())
        .bind(outcome.reason.map_or("", OutcomeReason::as_str))
        .bind(&outcome.note)
        .bind(to_micros(outcome.at))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Every outcome recorded, in the order recorded.
    pub async fn outcomes(tx: &mut Tx) -> Result<Vec<StoredOutcome>, DbError> {
        let rows = sqlx::query(
            "SELECT lead_id, stage, reason, note, at FROM outcomes ORDER BY outcome_id",
        )
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| {
                let reason: String = r.try_get("reason")?;
                Ok(StoredOutcome {
                    lead: r
                        .try_get::<String, _>("lead_id")?
                        .parse()
                        .map_err(DbError::corrupt)?,
                    stage: r
                        .try_get::<String, _>("stage")?
                        .parse()
                        .map_err(DbError::corrupt)?,
                    reason: if reason.is_empty() {
                        None
                    } else {
                        Some(reason.parse().map_err(DbError::corrupt)?)
                    },
                    note: r.try_get("note")?,
                    at: from_micros(r.try_get("at")?),
                })
            })
            .collect()
    }

    /// Drops every projection and resets feedback's consumer cursors, so the consumers
    /// replay every upstream stream from the start and rebuild them. Returns the open
    /// transaction, for the caller to re-apply the outcomes feedback owns before committing.
    pub async fn clear_projections(&self) -> Result<Tx, DbError> {
        let mut tx = self.db.begin().await?;
        for table in [
            "lead_facts",
            "lead_figures",
            "lead_rollup",
            "lead_rollup_times",
            "rejection_facts",
            "timeline",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM consumer_cursors WHERE consumer LIKE $1")
            .bind(format!("{CONSUMER_PREFIX}%"))
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}
