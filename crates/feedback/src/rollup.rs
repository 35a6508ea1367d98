//! Rollups of the report's figures over settled leads: per grain of [`GRAIN_MICROS`] of
//! received time, group keys and verdict, the sums [`Store::report`] would otherwise aggregate
//! from every lead's row, and the times of activation counted by percentile bucket. A report
//! over a long period reads the whole grains it spans from here and only the rest from rows:
//! the partial grains at its edges and the leads not in the rollups.
//!
//! A lead is *settled* when its verdict no longer depends on the moment it is read (see
//! [`settled_sql`]); only settled leads are folded in, because a lead settles by the passage
//! of time, not by an event. The service folds them in the background ([`Store::fold_step`]),
//! in chunks of [`FOLD_CHUNK`] leads, each its own short transaction that marks the rows it
//! adds, so a report between chunks reads the rest from rows and stays exact; a report folds at
//! most one chunk itself. Its row keeps the code
//! it was folded with (verdict, and the two figures that depend on the playbook), so when its
//! fact changes [`take_back`] subtracts exactly what was added, without knowing the rule, and
//! the lead is a row again until the next fold. The rollups are append-only between
//! compactions: writers never wait on one another for a shared total, and PostgreSQL's folds
//! skip rows a writer holds rather than wait for them.
//!
//! The rollups are a function of the rule: folded under another rule's fingerprint they are
//! rebuilt, one grain per transaction in order, the progress in `lead_rollup_state`, so an
//! interrupted rebuild resumes where it was and a report reads the grains it has not reached
//! from rows. And they are as of the latest fold: a report as of an earlier moment reads rows.

use runtime::db::{Backend, DbError, Tx, to_micros};
use sqlx::Row;

use crate::queries::{BUCKET_MICROS, ReportRules, settled_sql, targeting_sql, verdict_sql};
use crate::store::Store;

/// The width of a rollup grain, 8 days. Its rows are as many as the grains, group keys and
/// distinct buckets of activation time they hold, so the grain must hold enough leads per
/// group to be much smaller than the rows (at a day, a year of a million leads in 48 groups
/// has about as many bucket counts as leads); the cost is the edges of a period that is not
/// aligned, up to two grains, read from rows.
pub const GRAIN_MICROS: i64 = 8 * 86_400_000_000;

/// The summable figures of the rollup, each as one lead row's contribution, over the row's
/// columns and `c`, the code it is folded with (see [`code_sql`]).
pub(crate) const FIGURES: [(&str, &str); 15] = [
    ("accepted", "1"),
    ("reviewed", "CASE WHEN review_of IS NULL THEN 0 ELSE 1 END"),
    ("contactable", "may_contact"),
    ("in_sla", "may_contact * in_sla"),
    ("ignored", "may_contact * (1 - activated)"),
    ("tbr_total", "COALESCE(touches_before_response, 0)"),
    (
        "tbr_count",
        "CASE WHEN touches_before_response IS NULL THEN 0 ELSE 1 END",
    ),
    ("persisted", "(c / 4) % 2"),
    ("persisted_met", "(c / 4) % 2 * reached_meeting"),
    ("met", "reached_meeting"),
    ("handed_off", "handed_off"),
    ("with_debt", "with_debt"),
    ("missing_stages", "missing_stages"),
    ("lost", "lost"),
    ("lost_targeted", "c / 8"),
];

/// What the rollups depend on besides the leads: the rule, the persistence threshold and the
/// targeting reasons, with a version of the rollups' own derivation.
fn fingerprint(rules: &ReportRules) -> Result<String, DbError> {
    let rule = serde_json::to_string(&rules.fair_chance).map_err(DbError::corrupt)?;
    let targeting: Vec<&str> = rules.targeting.iter().map(|r| r.as_str()).collect();
    Ok(format!(
        "1 {rule} {} {}",
        rules.persistence_touches,
        targeting.join(",")
    ))
}

/// The code a lead is folded with: its verdict, plus 4 when it persisted to the playbook's
/// number of touches, plus 8 when it was lost on a targeting reason.
fn code_sql(rules: &ReportRules) -> String {
    format!(
        "(({}) + 4 * (CASE WHEN persisted_touches >= {} THEN 1 ELSE 0 END) \
         + 8 * (CASE WHEN lost = 1 AND {} THEN 1 ELSE 0 END))",
        verdict_sql(&rules.fair_chance, rules.now),
        rules.persistence_touches,
        targeting_sql(&rules.targeting)
    )
}

/// Adds `sign` times the contributions of the rows of `from` (lead rows with their code as
/// `c`) to both rollups.
fn add_sql(from: &str, sign: i64) -> [String; 2] {
    let columns: Vec<&str> = FIGURES.iter().map(|(c, _)| *c).collect();
    let sums: Vec<String> = FIGURES
        .iter()
        .map(|(_, e)| format!("SUM({sign} * ({e}))"))
        .collect();
    let keys = format!("received_at / {GRAIN_MICROS}, source, campaign, channel");
    [
        format!(
            "INSERT INTO lead_rollup (grain, source, campaign, channel, verdict, {}) \
             SELECT {keys}, c % 4, {} FROM {from} GROUP BY {keys}, c % 4",
            columns.join(", "),
            sums.join(", ")
        ),
        format!(
            "INSERT INTO lead_rollup_times (grain, source, campaign, channel, bucket, n) \
             SELECT {keys}, activation_micros / {BUCKET_MICROS}, {sign} * COUNT(*) FROM {from} \
             WHERE activation_micros IS NOT NULL \
             GROUP BY {keys}, activation_micros / {BUCKET_MICROS}"
        ),
    ]
}

/// Takes a lead's contribution back out of the rollups if it is in them, before its row is
/// replaced (which leaves it out until the next fold). The row is locked first on PostgreSQL,
/// so a fold cannot fold it in between.
pub(crate) async fn take_back(tx: &mut Tx, backend: Backend, lead: &str) -> Result<(), DbError> {
    let lock = if backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let rolled: Option<Option<i64>> = sqlx::query(&format!(
        "SELECT CAST(rolled AS BIGINT) AS rolled FROM lead_figures WHERE lead_id = $1{lock}"
    ))
    .bind(lead)
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| r.try_get("rolled"))
    .transpose()?;
    if rolled.flatten().is_none() {
        return Ok(());
    }
    let from = "(SELECT lead_figures.*, rolled AS c FROM lead_figures \
                WHERE lead_id = $1 AND rolled IS NOT NULL) x";
    for sql in add_sql(from, -1) {
        sqlx::query(&sql).bind(lead).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The whole grains of `[from, to)` as a range of received times `[a, b)`, when there are any.
pub(crate) fn whole_grains(from: i64, to: i64) -> Option<(i64, i64)> {
    let first = from.div_euclid(GRAIN_MICROS) + i64::from(from.rem_euclid(GRAIN_MICROS) != 0);
    let first = first.max(0);
    let end = to.div_euclid(GRAIN_MICROS);
    (first < end).then(|| (first * GRAIN_MICROS, end * GRAIN_MICROS))
}

/// How many settled leads a fold step folds in one transaction, so that it holds the rows it
/// marks (and SQLite's one writer) for a short while, however many leads have settled.
pub const FOLD_CHUNK: i64 = 4_000;

/// The rollups' state row: the rule they are folded under, the latest moment a fold was as
/// of, and while a rebuild is under way the grain it has reached.
struct State {
    fingerprint: String,
    watermark: i64,
    rebuilt_to: Option<i64>,
}

async fn state(tx: &mut Tx, backend: Backend, lock: bool) -> Result<State, DbError> {
    // The state row's lock serialises folds on PostgreSQL (SQLite has one writer).
    let lock = if lock && backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = sqlx::query(&format!(
        "SELECT fingerprint, watermark, rebuilt_to FROM lead_rollup_state WHERE singleton = 1{lock}"
    ))
    .fetch_one(&mut **tx)
    .await?;
    Ok(State {
        fingerprint: row.try_get("fingerprint")?,
        watermark: row.try_get("watermark")?,
        rebuilt_to: row.try_get("rebuilt_to")?,
    })
}

async fn set_state(tx: &mut Tx, state: &State) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE lead_rollup_state SET fingerprint = $1, watermark = $2, rebuilt_to = $3 \
         WHERE singleton = 1",
    )
    .bind(&state.fingerprint)
    .bind(state.watermark)
    .bind(state.rebuilt_to)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The first grain after `after` (from the first, when `None`) that holds leads or rollup
/// rows: where a rebuild goes next, `None` when it is done.
async fn next_grain(tx: &mut Tx, after: Option<i64>) -> Result<Option<i64>, DbError> {
    let grain = after.map_or(0, |g| g.saturating_add(1));
    let mut next: Option<i64> = None;
    for (sql, bound) in [
        (
            "SELECT MIN(received_at) AS m FROM lead_figures WHERE received_at >= $1",
            grain.saturating_mul(GRAIN_MICROS),
        ),
        (
            "SELECT MIN(grain) AS m FROM lead_rollup WHERE grain >= $1",
            grain,
        ),
        (
            "SELECT MIN(grain) AS m FROM lead_rollup_times WHERE grain >= $1",
            grain,
        ),
    ] {
        let m: Option<i64> = sqlx::query(sql)
            .bind(bound)
            .fetch_one(&mut **tx)
            .await?
            .try_get("m")?;
        let m = if sql.contains("received_at") {
            m.map(|t| t.div_euclid(GRAIN_MICROS))
        } else {
            m
        };
        next = match (next, m) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// Folds in the leads of `due` (a filter over lead rows that only settled leads not in the
/// rollups pass), at most the first `limit` by received time (a few more when times tie).
/// Returns how many it folded.
async fn fold_due(
    tx: &mut Tx,
    backend: Backend,
    rules: &ReportRules,
    due: &str,
    limit: Option<i64>,
) -> Result<i64, DbError> {
    let code = code_sql(rules);
    match backend {
        Backend::Postgres => {
            // One statement, so what is added is what is marked; rows a writer holds are
            // skipped (they are read as rows) rather than waited for.
            let [figures, times] = add_sql("m", 1);
            let limit = limit.map_or(String::new(), |n| {
                format!(" ORDER BY received_at LIMIT {n}")
            });
            let sql = format!(
                "WITH due AS (SELECT lead_id FROM lead_figures WHERE {due}{limit} \
                 FOR UPDATE SKIP LOCKED), \
                 m AS (UPDATE lead_figures g SET rolled = {code} FROM due \
                 WHERE g.lead_id = due.lead_id RETURNING g.*, g.rolled AS c), \
                 t AS ({times}), f AS ({figures}) SELECT COUNT(*) AS n FROM m"
            );
            Ok(sqlx::query(&sql).fetch_one(&mut **tx).await?.try_get("n")?)
        }
        Backend::Sqlite => {
            // The chunk is bounded by the received time of its last lead rather than by a
            // list, so the three statements read the same leads through the index of the
            // leads not in the rollups (the listing's index would walk the folded ones too).
            let table = "lead_figures INDEXED BY lead_figures_unrolled";
            let mut due = due.to_owned();
            if let Some(n) = limit {
                let last: Option<i64> = sqlx::query(&format!(
                    "SELECT received_at FROM {table} WHERE {due} ORDER BY received_at \
                     LIMIT 1 OFFSET {}",
                    n - 1
                ))
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| r.try_get("received_at"))
                .transpose()?;
                if let Some(last) = last {
                    due = format!("{due} AND received_at <= {last}");
                }
            }
            // The one writer holds the database from the first statement, so the three
            // see the same due rows.
            let from = format!("(SELECT lead_figures.*, {code} AS c FROM {table} WHERE {due}) x");
            for sql in add_sql(&from, 1) {
                sqlx::query(&sql).execute(&mut **tx).await?;
            }
            let marked = sqlx::query(&format!("UPDATE {table} SET rolled = {code} WHERE {due}"))
                .execute(&mut **tx)
                .await?
                .rows_affected();
            i64::try_from(marked).map_err(DbError::corrupt)
        }
    }
}

/// Rebuilds grain `grain` under `rules`: takes every lead of it out of the rollups and folds
/// in those settled. Returns false, having changed nothing, when a writer held one of the
/// grain's folded rows on PostgreSQL: the caller tries again in a moment.
async fn rebuild_grain(
    tx: &mut Tx,
    backend: Backend,
    rules: &ReportRules,
    grain: i64,
) -> Result<bool, DbError> {
    let lo = grain.saturating_mul(GRAIN_MICROS);
    let hi = lo.saturating_add(GRAIN_MICROS);
    let in_grain = format!("received_at >= {lo} AND received_at < {hi}");
    if backend == Backend::Postgres {
        // Once the grain's folded rows are locked no writer can take one back until this
        // commits, and the take-backs committed before are seen by the deletes below (each
        // statement reads what was committed before it). Rows a writer holds are skipped, not
        // waited for, so a writer saving several leads cannot deadlock with the rebuild: when
        // any were skipped the grain is left for the next step.
        let locked: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM (SELECT lead_id FROM lead_figures \
             WHERE {in_grain} AND rolled IS NOT NULL FOR UPDATE SKIP LOCKED) x"
        ))
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
        let folded: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM lead_figures WHERE {in_grain} AND rolled IS NOT NULL"
        ))
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
        if locked != folded {
            return Ok(false);
        }
    }
    for sql in [
        format!("UPDATE lead_figures SET rolled = NULL WHERE {in_grain} AND rolled IS NOT NULL"),
        format!("DELETE FROM lead_rollup WHERE grain = {grain}"),
        format!("DELETE FROM lead_rollup_times WHERE grain = {grain}"),
    ] {
        sqlx::query(&sql).execute(&mut **tx).await?;
    }
    let due = format!("{} AND {in_grain}", due_sql(rules));
    fold_due(tx, backend, rules, &due, None).await?;
    Ok(true)
}

/// The leads a fold as of `rules.now` folds in: accepted, settled, not in the rollups.
fn due_sql(rules: &ReportRules) -> String {
    format!(
        "rolled IS NULL AND accepted = 1 AND received_at >= 0 AND {}",
        settled_sql(&rules.fair_chance, rules.now)
    )
}

impl Store {
    /// The grains whose rollups a report with `rules` can read, as the open transaction `tx`
    /// sees them: those before the returned one (all, as `i64::MAX`, unless a rebuild is
    /// under way), or none.
    pub(crate) async fn rollup_usable(
        tx: &mut Tx,
        backend: Backend,
        rules: &ReportRules,
    ) -> Result<Option<i64>, DbError> {
        let state = state(tx, backend, false).await?;
        Ok(
            (state.fingerprint == fingerprint(rules)? && state.watermark <= to_micros(rules.now))
                .then(|| state.rebuilt_to.unwrap_or(i64::MAX)),
        )
    }

    /// One step towards rollups of `rules`, each its own short transaction. Under another
    /// rule it starts a rebuild; during one it rebuilds the next grain (when `rebuild`; a
    /// report leaves that to [`Store::fold`]'s caller and reads those grains from rows);
    /// otherwise it folds in at most `chunk` of the leads settled as of `rules.now`, the
    /// earliest received first, and compacts after the last. A report between steps reads
    /// exact figures: a lead is in the rollups with the mark of its row, committed together.
    /// As of a moment before the latest fold it changes nothing (and the rollups are not
    /// used). Returns whether there is more to do.
    pub async fn fold_step(
        &self,
        rules: &ReportRules,
        chunk: i64,
        rebuild: bool,
    ) -> Result<bool, DbError> {
        let backend = self.db().backend();
        let fingerprint = fingerprint(rules)?;
        let now = to_micros(rules.now);
        // A chunk of none would never finish.
        let chunk = chunk.max(1);
        let mut tx = self.db().begin().await?;
        let mut state = state(&mut tx, backend, true).await?;
        if state.fingerprint != fingerprint {
            // Nothing is folded under the new rule yet: every grain is read from rows until
            // the rebuild reaches it.
            state = State {
                fingerprint,
                watermark: now,
                rebuilt_to: next_grain(&mut tx, None).await?,
            };
            set_state(&mut tx, &state).await?;
            tx.commit().await?;
            return Ok(rebuild);
        }
        if let Some(grain) = state.rebuilt_to {
            if !rebuild {
                tx.rollback().await?;
                return Ok(false);
            }
            if !rebuild_grain(&mut tx, backend, rules, grain).await? {
                tx.rollback().await?;
                return Ok(true);
            }
            state.rebuilt_to = next_grain(&mut tx, Some(grain)).await?;
            state.watermark = state.watermark.max(now);
            set_state(&mut tx, &state).await?;
            tx.commit().await?;
            if state.rebuilt_to.is_none() && backend == Backend::Postgres {
                // A rebuild marks most rows: the planner's statistics would still say every
                // row is outside the rollups, and plan the next reports as scans.
                sqlx::query("ANALYZE lead_figures")
                    .execute(self.db().pool())
                    .await?;
            }
            // Leads of the rebuilt grains may have settled meanwhile.
            return Ok(true);
        }
        if now < state.watermark {
            tx.rollback().await?;
            return Ok(false);
        }
        let folded = fold_due(&mut tx, backend, rules, &due_sql(rules), Some(chunk)).await?;
        let more = folded >= chunk;
        if !more {
            compact(&mut tx, backend).await?;
        }
        state.watermark = now;
        set_state(&mut tx, &state).await?;
        tx.commit().await?;
        Ok(more)
    }

    /// Brings the rollups to `rules` in steps of [`Store::fold_step`] of `chunk` leads: the
    /// background fold's work, and a test's.
    pub async fn fold(&self, rules: &ReportRules, chunk: i64) -> Result<(), DbError> {
        while self.fold_step(rules, chunk, true).await? {}
        Ok(())
    }
}

/// Rewrites the grains that hold taken-back contributions as one row per key, so the rollups
/// stay as small as their keys however often settled leads change.
async fn compact(tx: &mut Tx, backend: Backend) -> Result<(), DbError> {
    let figures: Vec<&str> = FIGURES.iter().map(|(c, _)| *c).collect();
    let sums: Vec<String> = figures.iter().map(|c| format!("SUM({c})")).collect();
    let tables = [
        (
            "lead_rollup",
            "accepted < 0",
            format!("verdict, {}", figures.join(", ")),
            format!("verdict, {}", sums.join(", ")),
            "verdict",
            "SUM(accepted)",
        ),
        (
            "lead_rollup_times",
            "n < 0",
            "bucket, n".to_owned(),
            "bucket, SUM(n)".to_owned(),
            "bucket",
            "SUM(n)",
        ),
    ];
    for (table, taken_back, columns, sums, extra_key, count) in tables {
        let grains: Vec<i64> = sqlx::query(&format!(
            "SELECT DISTINCT grain FROM {table} WHERE {taken_back}"
        ))
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get("grain"))
        .collect::<Result<_, _>>()?;
        if grains.is_empty() {
            continue;
        }
        let list: Vec<String> = grains.iter().map(i64::to_string).collect();
        let list = list.join(", ");
        let keys = format!("grain, source, campaign, channel, {extra_key}");
        let insert = format!("INSERT INTO {table} (grain, source, campaign, channel, {columns})");
        let select = format!("SELECT grain, source, campaign, channel, {sums}");
        match backend {
            Backend::Postgres => {
                // One statement: a contribution taken back by a writer committing meanwhile is
                // either in what is deleted and summed or in neither.
                let sql = format!(
                    "WITH d AS (DELETE FROM {table} WHERE grain IN ({list}) RETURNING *) \
                     {insert} {select} FROM d GROUP BY {keys} HAVING {count} <> 0"
                );
                sqlx::query(&sql).execute(&mut **tx).await?;
            }
            Backend::Sqlite => {
                let last: Option<i64> =
                    sqlx::query(&format!("SELECT MAX(rowid) AS m FROM {table}"))
                        .fetch_one(&mut **tx)
                        .await?
                        .try_get("m")?;
                let last = last.unwrap_or(0);
                let old = format!("grain IN ({list}) AND rowid <= {last}");
                sqlx::query(&format!(
                    "{insert} {select} FROM {table} WHERE {old} GROUP BY {keys} HAVING {count} <> 0"
                ))
                .execute(&mut **tx)
                .await?;
                sqlx::query(&format!("DELETE FROM {table} WHERE {old}"))
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_grains_are_those_inside_the_period() {
        let g = GRAIN_MICROS;
        assert_eq!(whole_grains(0, g), Some((0, g)));
        assert_eq!(whole_grains(1, g), None);
        assert_eq!(whole_grains(0, g - 1), None);
        assert_eq!(whole_grains(1, 3 * g - 1), Some((g, 2 * g)));
        assert_eq!(whole_grains(g, 3 * g), Some((g, 3 * g)));
        // Before 1970 nothing is rolled up.
        assert_eq!(whole_grains(-3 * g, 2 * g), Some((0, 2 * g)));
        assert_eq!(whole_grains(-3 * g, -g), None);
    }
}
