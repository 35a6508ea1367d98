//! Proof's persistence: one belief state per lead (JSON), the assets added at run time, and
//! each asset's effectiveness counts per stage and checkpoint. Writes take the caller's
//! transaction so a state, its timer and its events commit together.

use runtime::db::{Backend, Db, DbError, Tx};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{Asset, BeliefState, Checkpoint, Context, Effectiveness, Outcome, Stage};

/// Migrations of proof's own tables.
pub static MIGRATIONS: runtime::Migrations = runtime::Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

/// Proof's tables.
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

    /// Inserts or replaces a lead's belief state.
    pub async fn save(tx: &mut Tx, state: &BeliefState) -> Result<(), DbError> {
        let json = serde_json::to_string(state).map_err(DbError::corrupt)?;
        sqlx::query(
            "INSERT INTO belief_states (lead_id, state) VALUES ($1, $2) \
             ON CONFLICT (lead_id) DO UPDATE SET state = excluded.state",
        )
        .bind(state.lead.to_string())
        .bind(json)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A lead's belief state, locked until the transaction ends on PostgreSQL.
    pub async fn load_for_update(
        tx: &mut Tx,
        backend: Backend,
        lead: Uuid,
    ) -> Result<Option<BeliefState>, DbError> {
        let lock = if backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!("SELECT state FROM belief_states WHERE lead_id = $1{lock}");
        let row = sqlx::query(&sql)
            .bind(lead.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|row| decode_json(&row, "state")).transpose()
    }

    /// A lead's belief state.
    pub async fn load(&self, lead: Uuid) -> Result<Option<BeliefState>, DbError> {
        let row = sqlx::query("SELECT state FROM belief_states WHERE lead_id = $1")
            .bind(lead.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        row.map(|row| decode_json(&row, "state")).transpose()
    }

    /// Inserts or replaces a run-time asset; true when it was new.
    pub async fn upsert_asset(&self, asset: &Asset) -> Result<bool, DbError> {
        let json = serde_json::to_string(asset).map_err(DbError::corrupt)?;
        let mut tx = self.db.begin().await?;
        let existed = sqlx::query("SELECT 1 AS one FROM assets WHERE asset_id = $1")
            .bind(&asset.id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query(
            "INSERT INTO assets (asset_id, asset) VALUES ($1, $2) \
             ON CONFLICT (asset_id) DO UPDATE SET asset = excluded.asset",
        )
        .bind(&asset.id)
        .bind(json)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(!existed)
    }

    /// The assets added at run time.
    pub async fn assets(&self) -> Result<Vec<Asset>, DbError> {
        let rows = sqlx::query("SELECT asset FROM assets ORDER BY asset_id")
            .fetch_all(self.db.reader())
            .await?;
        rows.iter().map(|row| decode_json(row, "asset")).collect()
    }

    /// Counts settled deliveries toward their assets' effectiveness, in place.
    pub async fn record_outcomes(tx: &mut Tx, outcomes: &[Outcome]) -> Result<(), DbError> {
        for outcome in outcomes {
            let (successes, failures) = if outcome.success { (1, 0) } else { (0, 1) };
            sqlx::query(
                "INSERT INTO effectiveness (asset_id, stage, checkpoint, successes, failures) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (asset_id, stage, checkpoint) DO UPDATE SET \
                 successes = effectiveness.successes + excluded.successes, \
                 failures = effectiveness.failures + excluded.failures",
            )
            .bind(&outcome.asset)
            .bind(outcome.context.stage.as_str())
            .bind(outcome.context.checkpoint.map_or("", Checkpoint::as_str))
            .bind(successes)
            .bind(failures)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Every asset's effectiveness per context.
    pub async fn effectiveness(&self) -> Result<Vec<(String, Context, Effectiveness)>, DbError> {
        let rows = sqlx::query(
            "SELECT asset_id, stage, checkpoint, successes, failures FROM effectiveness \
             ORDER BY asset_id, stage, checkpoint",
        )
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|row| {
                let stage: Stage = row
                    .try_get::<String, _>("stage")?
                    .parse()
                    .map_err(DbError::corrupt)?;
                let checkpoint: String = row.try_get("checkpoint")?;
                let checkpoint = if checkpoint.is_empty() {
                    None
                } else {
                    Some(checkpoint.parse().map_err(DbError::corrupt)?)
                };
                let count = |column: &str| -> Result<u32, DbError> {
                    u32::try_from(row.try_get::<i64, _>(column)?).map_err(DbError::corrupt)
                };
                Ok((
                    row.try_get("asset_id")?,
                    Context { stage, checkpoint },
                    Effectiveness {
                        successes: count("successes")?,
                        failures: count("failures")?,
                    },
                ))
            })
            .collect()
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(
    row: &sqlx::any::AnyRow,
    column: &str,
) -> Result<T, DbError> {
    serde_json::from_str(&row.try_get::<String, _>(column)?).map_err(DbError::corrupt)
}
