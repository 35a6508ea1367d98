//! Rollups of the report's figures over settled leads: per grain of [`GRAIN_MICROS`] of
//! received time, group keys and verdict, the sums [`Store::report`] would otherwise aggregate
//! from every lead's row, and the times of activation counted by percentile bucket. A report
//! over a long period reads the whole grains it spans from here and only the rest from rows:
//! the partial grains at its edges and the leads not in the rollups.
//!
//! A lead is *settled* when its verdict no longer depends on the moment it is read (see
//! [`settled_sql`]); only settled leads are folded in, by [`Store::fold`] when a report is
//! read, because a lead settles by the passage of time, not by an event. Its row keeps the code
//! it was folded with (verdict, and the two figures that depend on the playbook), so when its
//! fact changes [`take_back`] subtracts exactly what was added, without knowing the rule, and
//! the lead is a row again until the next fold. The rollups are append-only between
//! compactions: writers never wait on one another for a shared total, and PostgreSQL's folds
//! skip rows a writer holds rather than wait for them.
//!
//! The rollups are a function of the rule: folded under another rule's fingerprint they are
//! rebuilt. And they are as of the latest fold: a report as of an earlier moment reads rows.

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

impl Store {
    /// Whether the rollups, as the open transaction `tx` sees them, are those of `rules`.
    pub(crate) async fn rollup_usable(tx: &mut Tx, rules: &ReportRules) -> Result<bool, DbError> {
        let row =
            sqlx::query("SELECT fingerprint, watermark FROM lead_rollup_state WHERE singleton = 1")
                .fetch_one(&mut **tx)
                .await?;
        let folded: String = row.try_get("fingerprint")?;
        let watermark: i64 = row.try_get("watermark")?;
        Ok(folded == fingerprint(rules)? && watermark <= to_micros(rules.now))
    }

    /// Brings the rollups to `rules`: rebuilt when they were folded under another rule, then
    /// every lead settled as of `rules.now` and not in them folded in. As of a moment before
    /// the latest fold it changes nothing (and the rollups are not used).
    pub async fn fold(&self, rules: &ReportRules) -> Result<(), DbError> {
        let backend = self.db().backend();
        let fingerprint = fingerprint(rules)?;
        let now = to_micros(rules.now);
        let mut tx = self.db().begin().await?;
        // The state row's lock serialises folds on PostgreSQL (SQLite has one writer).
        let lock = if backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let row = sqlx::query(&format!(
            "SELECT fingerprint, watermark FROM lead_rollup_state WHERE singleton = 1{lock}"
        ))
        .fetch_one(&mut *tx)
        .await?;
        let folded: String = row.try_get("fingerprint")?;
        let watermark: i64 = row.try_get("watermark")?;
        if folded != fingerprint {
            for sql in [
                "DELETE FROM lead_rollup",
                "DELETE FROM lead_rollup_times",
                "UPDATE lead_figures SET rolled = NULL WHERE rolled IS NOT NULL",
            ] {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
        } else if now < watermark {
            tx.rollback().await?;
            return Ok(());
        }
        let due = format!(
            "rolled IS NULL AND accepted = 1 AND received_at >= 0 AND {}",
            settled_sql(&rules.fair_chance, rules.now)
        );
        let code = code_sql(rules);
        match backend {
            Backend::Postgres => {
                // One statement, so what is added is what is marked; rows a writer holds are
                // skipped (they are read as rows) rather than waited for.
                let [figures, times] = add_sql("m", 1);
                let sql = format!(
                    "WITH due AS (SELECT lead_id FROM lead_figures WHERE {due} \
                     FOR UPDATE SKIP LOCKED), \
                     m AS (UPDATE lead_figures g SET rolled = {code} FROM due \
                     WHERE g.lead_id = due.lead_id RETURNING g.*, g.rolled AS c), \
                     t AS ({times}) {figures}"
                );
                sqlx::query(&sql).execute(&mut *tx).await?;
            }
            Backend::Sqlite => {
                // The one writer holds the database from the first statement, so the three
                // see the same due rows.
                let from =
                    format!("(SELECT lead_figures.*, {code} AS c FROM lead_figures WHERE {due}) x");
                for sql in add_sql(&from, 1) {
                    sqlx::query(&sql).execute(&mut *tx).await?;
                }
                sqlx::query(&format!(
                    "UPDATE lead_figures SET rolled = {code} WHERE {due}"
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
        compact(&mut tx, backend).await?;
        if folded != fingerprint && backend == Backend::Postgres {
            // A rebuild marks most rows at once: the planner's statistics would still say
            // every row is outside the rollups, and plan the next reports as scans.
            sqlx::query("ANALYZE lead_figures")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE lead_rollup_state SET fingerprint = $1, watermark = $2 WHERE singleton = 1",
        )
        .bind(&fingerprint)
        .bind(if folded == fingerprint {
            now.max(watermark)
        } else {
            now
        })
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
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
