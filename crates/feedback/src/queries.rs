//! The reports as SQL: the source report, the funnel and the verdict listing aggregated by
//! the database over the figure columns [`Store::save_fact`] writes beside each fact (see
//! [`LeadFigures`]), so a report never loads a fact (the verdict listing loads only the facts
//! of the page it returns). Over long periods the source report reads most leads' sums from
//! the rollups of [`crate::rollup`] and only the rest from rows, to the same figures.
//!
//! The fair-chance verdict is evaluated in SQL from its inputs rather than stored: it depends
//! on the playbook's rule, which can change while the service runs, and on the time it is read
//! (a lead still inside its SLA or enrolment window is undetermined until it is not), so a
//! stored verdict would go stale without any event touching its row. [`verdict_sql`] mirrors
//! [`crate::domain::verdict`] clause by clause; the replay test holds both to the same
//! hand-computed tables.
//!
//! Percentiles are nearest-rank ([`crate::domain::nearest_rank`]) on both backends, found by
//! the same two steps on each (see [`Store::percentiles`]): counts by bucket (from rows and
//! rollups) locate the rank, then only the distinct times of the buckets that hold it are read.
//!
//! The verdict listing pages by keyset: a page starts after the (received, id) of the last
//! lead of the one before, so a page deep in a year costs what the first one does and leads
//! added between pages are neither skipped nor repeated.

use std::collections::BTreeMap;

use jiff::Timestamp;
use runtime::db::{Backend, DbError, Tx, to_micros};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::{
    Checkpoint, FairChanceRule, Filter, Funnel, FunnelStage, GroupBy, GroupReport, LeadFact,
    OutcomeReason, Period, Report, funnel_of_counts, nearest_rank_of, verdict::enrolment_grace,
};
use crate::rollup::{GRAIN_MICROS, whole_grains};
use crate::store::Store;

/// What a report applies to the stored figures when it is read.
#[derive(Debug, Clone)]
pub struct ReportRules {
    pub fair_chance: FairChanceRule,
    pub targeting: Vec<OutcomeReason>,
    pub persistence_touches: u32,
    /// The moment the report is as of.
    pub now: Timestamp,
}

/// Where a verdict listing continues: after the lead received at `received_at` with the id
/// `lead`, in the listing's order (received, then id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictCursor {
    pub received_at: Timestamp,
    pub lead: uuid::Uuid,
}

/// A verdict as [`verdict_sql`] codes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictCode {
    Fair = 0,
    NotFair = 1,
    Undetermined = 2,
}

fn group_column(by: GroupBy) -> &'static str {
    match by {
        GroupBy::Source => "source",
        GroupBy::Campaign => "campaign",
        GroupBy::Channel => "channel",
    }
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

/// The verdict of a `lead_figures` row as a SQL expression of [`VerdictCode`]s, mirroring
/// [`crate::domain::verdict`]: not the system's to work → undetermined; any shortfall that
/// can no longer be repaired → not fair; any that still can → undetermined; else fair.
///
/// The rule's numbers are written into the SQL text: they come from the typed playbook (and
/// the clock), never from a request, and this keeps one text for both backends' parameter
/// styles.
pub fn verdict_sql(rule: &FairChanceRule, now: Timestamp) -> String {
    let min_span = i64::try_from(rule.min_span.as_micros()).unwrap_or(i64::MAX);
    let open_after = open_after(rule, now);
    // Persistence matters unless the buyer answered and the rule lets an answer count.
    let persistence_matters = if rule.engaged_earlier_counts {
        "answered = 0"
    } else {
        "1 = 1"
    };
    let short_of_persistence = format!(
        "({persistence_matters} AND (touches < {min} OR touch_span < {min_span}))",
        min = rule.min_touches
    );
    let still_open = format!(
        "(follow_up_closed = 0 AND (enrolled = 1 OR grace_from IS NULL OR grace_from > {open_after}))"
    );
    let proof = flag(rule.proof_for_objections);
    let sla = flag(rule.require_within_sla);
    format!(
        "CASE WHEN may_contact = 0 THEN 2 \
         WHEN (activated = 0 AND (ended = 1 OR breaches > 0)) \
           OR ({sla} = 1 AND late = 1) \
           OR ({short_of_persistence} AND NOT {still_open}) \
           OR ({proof} = 1 AND unproven_objections > 0 AND ended = 1) THEN 1 \
         WHEN activated = 0 OR {short_of_persistence} \
           OR ({proof} = 1 AND unproven_objections > 0) THEN 2 \
         ELSE 0 END"
    )
}

/// The moment after which a lead's enrolment grace (see [`verdict_sql`]'s `still_open`) is
/// still running at `now`.
fn open_after(rule: &FairChanceRule, now: Timestamp) -> i64 {
    let grace = i64::try_from(enrolment_grace(rule).as_micros()).unwrap_or(i64::MAX);
    to_micros(now).saturating_sub(grace)
}

/// Whether a `lead_figures` row's [`verdict_sql`] is the same at `now` and at every later
/// moment: `now` enters the verdict only through the enrolment grace of a lead neither closed
/// nor enrolled, which runs out and never starts again unless the fact changes.
pub(crate) fn settled_sql(rule: &FairChanceRule, now: Timestamp) -> String {
    format!(
        "(follow_up_closed = 1 OR enrolled = 1 OR grace_from IS NULL OR grace_from <= {})",
        open_after(rule, now)
    )
}

/// `reason IN (...)` over the targeting reasons, or false when there are none. The reasons
/// are the playbook's typed values, written as their fixed names.
pub(crate) fn targeting_sql(targeting: &[OutcomeReason]) -> String {
    if targeting.is_empty() {
        return "1 = 0".into();
    }
    let names: Vec<String> = targeting
        .iter()
        .map(|r| format!("'{}'", r.as_str()))
        .collect();
    format!("loss_reason IN ({})", names.join(", "))
}

fn get(row: &AnyRow, column: &str) -> Result<u64, DbError> {
    let n: i64 = row.try_get(column)?;
    u64::try_from(n).map_err(DbError::corrupt)
}

fn micros_duration(micros: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_micros(micros)
}

/// Adds the additive figures of `g` (everything but the percentiles) into `total`.
fn add_into(total: &mut GroupReport, g: &GroupReport) {
    total.received += g.received;
    total.rejected += g.rejected;
    total.accepted += g.accepted;
    total.accepted_after_review += g.accepted_after_review;
    total.contactable += g.contactable;
    let share = |t: &mut crate::domain::Share, s: crate::domain::Share| {
        t.count += s.count;
        t.of += s.of;
    };
    share(&mut total.activated_within_sla, g.activated_within_sla);
    share(&mut total.never_activated, g.never_activated);
    share(
        &mut total.converted_after_persistence,
        g.converted_after_persistence,
    );
    share(&mut total.fair_chance_conversion, g.fair_chance_conversion);
    share(&mut total.not_fair_conversion, g.not_fair_conversion);
    share(&mut total.belief_debt.with_debt, g.belief_debt.with_debt);
    total.touches_before_first_response.total += g.touches_before_first_response.total;
    total.touches_before_first_response.count += g.touches_before_first_response.count;
    total.belief_debt.handed_off += g.belief_debt.handed_off;
    total.belief_debt.missing_stages.total += g.belief_debt.missing_stages.total;
    total.belief_debt.missing_stages.count += g.belief_debt.missing_stages.count;
    total.verdicts.fair += g.verdicts.fair;
    total.verdicts.not_fair += g.verdicts.not_fair;
    total.verdicts.undetermined += g.verdicts.undetermined;
    total.attribution.lead_quality += g.attribution.lead_quality;
    total.attribution.system_failure += g.attribution.system_failure;
    total.attribution.undetermined += g.attribution.undetermined;
}

/// Sorts counts most first, ties by name, as the report lists them.
fn most_first<K: Ord>(counts: BTreeMap<K, u64>, name: impl Fn(&K) -> String) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| name(&a.0).cmp(&name(&b.0))));
    v
}

/// The width of the buckets [`Store::percentiles`] first counts times of activation in,
/// about 67 s: coarse enough that a year of leads has a few thousand buckets per group, fine
/// enough that the buckets holding a median or a p90 hold few distinct times. Any width gives
/// the same exact result; this one only sets the cost of each pass.
pub(crate) const BUCKET_MICROS: i64 = 1 << 26;

/// Where a rank falls: the bucket that holds it, and its 1-based rank within that bucket.
type RankAt = (i64, u64);

/// The bucket that holds the `p`-th percentile by nearest rank of the values counted in
/// `histogram` (counts by bucket, buckets in the order of their values), and the 1-based rank
/// of that value within its bucket. `None` when there are no values.
fn locate_rank(histogram: &BTreeMap<i64, u64>, p: u32) -> Option<RankAt> {
    let n: u64 = histogram.values().sum();
    if n == 0 {
        return None;
    }
    let rank = nearest_rank_of(n, p);
    let mut below = 0;
    for (bucket, count) in histogram {
        if below + count >= rank {
            return Some((*bucket, rank - below));
        }
        below += count;
    }
    None
}

/// The value at the 1-based `rank` of `counted` (distinct values ascending, each with its
/// count).
fn value_of_rank(counted: &[(i64, u64)], rank: u64) -> Option<i64> {
    let mut seen = 0;
    for (value, count) in counted {
        seen += count;
        if seen >= rank {
            return Some(*value);
        }
    }
    None
}

/// The least and greatest time (inclusive) of bucket `b`, as SQL's and Rust's division,
/// which truncate toward zero, count it: bucket 0 holds the times either side of zero.
fn bucket_bounds(b: i64) -> (i64, i64) {
    let w = BUCKET_MICROS;
    let start = b.saturating_mul(w);
    match b.signum() {
        1 => (start, start.saturating_add(w - 1)),
        -1 => (start.saturating_sub(w - 1), start),
        _ => (-(w - 1), w - 1),
    }
}

/// Runs `sql` over `[from, to)` (bound as `$1`, `$2`) in `tx`.
async fn fetch(tx: &mut Tx, sql: &str, from: i64, to: i64) -> Result<Vec<AnyRow>, DbError> {
    Ok(sqlx::query(sql)
        .bind(from)
        .bind(to)
        .fetch_all(&mut **tx)
        .await?)
}

/// A group's key (`None`: all leads), median and p90.
type Percentiles = (Option<String>, Option<i64>, Option<i64>);

/// Per group: objections counted by checkpoint, and rejections by reason code.
#[derive(Default)]
struct Tallies {
    objections: BTreeMap<Checkpoint, u64>,
    reasons: BTreeMap<String, u64>,
}

impl Store {
    fn period_sql(column: &str) -> String {
        format!("{column} >= $1 AND {column} < $2")
    }

    /// The source report for `period`, grouped `by`, aggregated in SQL.
    pub async fn report(
        &self,
        period: Period,
        by: GroupBy,
        rules: &ReportRules,
    ) -> Result<Report, DbError> {
        let key = group_column(by);
        let from = to_micros(period.from());
        let to = to_micros(period.to());
        let leads = Self::period_sql("received_at");
        let verdict = verdict_sql(&rules.fair_chance, rules.now);
        let targeting = targeting_sql(&rules.targeting);
        let persisted = rules.persistence_touches;
        // Grouped by verdict as well as by key, so the verdict (the costliest expression) is
        // evaluated once per row; the figures that depend on it are split out in Rust. Read
        // over the rows of `$1..$2` that `filter` selects from `table`.
        let lead_sql = |table: &str, filter: &str| {
            format!(
                "SELECT {key} AS k, CAST({verdict} AS BIGINT) AS v, COUNT(*) AS accepted, \
                 COUNT(review_of) AS reviewed, \
                 COALESCE(SUM(may_contact), 0) AS contactable, \
                 COALESCE(SUM(may_contact * in_sla), 0) AS in_sla, \
                 COALESCE(SUM(may_contact * (1 - activated)), 0) AS ignored, \
                 COALESCE(SUM(touches_before_response), 0) AS tbr_total, \
                 COUNT(touches_before_response) AS tbr_count, \
                 COALESCE(SUM(CASE WHEN persisted_touches >= {persisted} THEN 1 ELSE 0 END), 0) AS persisted, \
                 COALESCE(SUM(CASE WHEN persisted_touches >= {persisted} THEN reached_meeting ELSE 0 END), 0) AS persisted_met, \
                 COALESCE(SUM(reached_meeting), 0) AS met, \
                 COALESCE(SUM(handed_off), 0) AS handed_off, \
                 COALESCE(SUM(with_debt), 0) AS with_debt, \
                 COALESCE(SUM(missing_stages), 0) AS missing_stages, \
                 COALESCE(SUM(lost), 0) AS lost, \
                 COALESCE(SUM(CASE WHEN lost = 1 AND {targeting} THEN 1 ELSE 0 END), 0) AS lost_targeted \
                 FROM {table} WHERE accepted = 1 AND {filter} \
                 GROUP BY {key}, {verdict}"
            )
        };
        let rejections = Self::period_sql("r.received_at");
        let rejections_sql = format!(
            "SELECT r.{key} AS k, COUNT(*) AS rejected, COALESCE(SUM(CASE WHEN NOT EXISTS \
             (SELECT 1 FROM lead_figures l WHERE l.review_of = r.rejection_id) THEN 1 ELSE 0 END), 0) \
             AS unreviewed FROM rejection_facts r WHERE {rejections} GROUP BY r.{key}"
        );
        let (objections, reasons) = match self.db().backend() {
            Backend::Postgres => (
                format!(
                    "SELECT {key} AS k, e.key AS item, CAST(SUM(CAST(e.value AS INTEGER)) AS BIGINT) AS n \
                     FROM lead_figures, json_each_text(CAST(objections AS JSON)) e \
                     WHERE accepted = 1 AND objections IS NOT NULL AND {leads} GROUP BY {key}, e.key"
                ),
                format!(
                    "SELECT r.{key} AS k, e.code AS item, COUNT(*) AS n FROM rejection_facts r, \
                     json_array_elements_text(CAST(r.fact AS JSON) -> 'reasons') AS e(code) \
                     WHERE {rejections} GROUP BY r.{key}, e.code"
                ),
            ),
            Backend::Sqlite => (
                format!(
                    "SELECT {key} AS k, e.key AS item, SUM(e.value) AS n \
                     FROM lead_figures, json_each(lead_figures.objections) e \
                     WHERE accepted = 1 AND objections IS NOT NULL AND {leads} GROUP BY {key}, e.key"
                ),
                format!(
                    "SELECT r.{key} AS k, e.value AS item, COUNT(*) AS n FROM rejection_facts r, \
                     json_each(r.fact, '$.reasons') e WHERE {rejections} GROUP BY r.{key}, e.value"
                ),
            ),
        };
        // The four reads are independent: run them side by side.
        let ((lead_rows, percentiles), rejection_rows, objection_rows, reason_rows) = futures::try_join!(
            self.lead_figures(key, rules, from, to, lead_sql),
            self.fetch_period(&rejections_sql, from, to),
            self.fetch_period(&objections, from, to),
            self.fetch_period(&reasons, from, to),
        )?;
        let mut groups: BTreeMap<String, GroupReport> = BTreeMap::new();
        for row in &lead_rows {
            let key: String = row.try_get("k")?;
            let g = groups.entry(key.clone()).or_insert_with(|| GroupReport {
                key,
                ..GroupReport::default()
            });
            let n = get(row, "accepted")?;
            let met = get(row, "met")?;
            let lost = get(row, "lost")?;
            let lost_targeted = get(row, "lost_targeted")?;
            g.accepted += n;
            g.received += n;
            g.accepted_after_review += get(row, "reviewed")?;
            let contactable = get(row, "contactable")?;
            g.contactable += contactable;
            g.activated_within_sla.count += get(row, "in_sla")?;
            g.activated_within_sla.of += contactable;
            g.never_activated.count += get(row, "ignored")?;
            g.never_activated.of += contactable;
            g.touches_before_first_response.total += get(row, "tbr_total")?;
            g.touches_before_first_response.count += get(row, "tbr_count")?;
            g.converted_after_persistence.of += get(row, "persisted")?;
            g.converted_after_persistence.count += get(row, "persisted_met")?;
            let handed_off = get(row, "handed_off")?;
            g.belief_debt.handed_off += handed_off;
            g.belief_debt.with_debt.of += handed_off;
            g.belief_debt.with_debt.count += get(row, "with_debt")?;
            g.belief_debt.missing_stages.count += handed_off;
            g.belief_debt.missing_stages.total += get(row, "missing_stages")?;
            // A lost lead is lead quality when fair and lost on targeting, a system failure
            // when not fair, and undetermined otherwise.
            match get(row, "v")? {
                v if v == VerdictCode::Fair as u64 => {
                    g.verdicts.fair += n;
                    g.fair_chance_conversion.of += n;
                    g.fair_chance_conversion.count += met;
                    g.attribution.lead_quality += lost_targeted;
                    g.attribution.undetermined += lost.saturating_sub(lost_targeted);
                }
                v if v == VerdictCode::NotFair as u64 => {
                    g.verdicts.not_fair += n;
                    g.not_fair_conversion.of += n;
                    g.not_fair_conversion.count += met;
                    g.attribution.system_failure += lost;
                }
                v if v == VerdictCode::Undetermined as u64 => {
                    g.verdicts.undetermined += n;
                    g.attribution.undetermined += lost;
                }
                v => {
                    return Err(DbError::corrupt(std::io::Error::other(format!(
                        "verdict code {v}"
                    ))));
                }
            }
        }

        for row in &rejection_rows {
            let key: String = row.try_get("k")?;
            let g = groups.entry(key.clone()).or_insert_with(|| GroupReport {
                key,
                ..GroupReport::default()
            });
            g.rejected = get(row, "rejected")?;
            g.received += get(row, "unreviewed")?;
        }

        let mut tallies: BTreeMap<String, Tallies> = BTreeMap::new();
        for row in objection_rows {
            let key: String = row.try_get("k")?;
            let item: String = row.try_get("item")?;
            let checkpoint: Checkpoint = item.parse().map_err(DbError::corrupt)?;
            *tallies
                .entry(key)
                .or_default()
                .objections
                .entry(checkpoint)
                .or_default() += get(&row, "n")?;
        }
        for row in reason_rows {
            let key: String = row.try_get("k")?;
            let item: String = row.try_get("item")?;
            *tallies
                .entry(key)
                .or_default()
                .reasons
                .entry(item)
                .or_default() += get(&row, "n")?;
        }

        let mut total = GroupReport::default();
        for (key, p50, p90) in percentiles {
            let g = match key {
                Some(key) => match groups.get_mut(&key) {
                    Some(g) => g,
                    None => continue,
                },
                None => &mut total,
            };
            g.median_time_to_activation = p50.map(micros_duration);
            g.p90_time_to_activation = p90.map(micros_duration);
        }

        let mut all = Tallies::default();
        for g in groups.values_mut() {
            add_into(&mut total, g);
            if let Some(t) = tallies.remove(&g.key) {
                for (c, n) in &t.objections {
                    *all.objections.entry(*c).or_default() += n;
                }
                for (r, n) in &t.reasons {
                    *all.reasons.entry(r.clone()).or_default() += n;
                }
                g.top_objections = most_first(t.objections, |c| c.as_str().to_owned());
                g.rejections_by_reason = most_first(t.reasons, Clone::clone);
            }
        }
        total.top_objections = most_first(all.objections, |c| c.as_str().to_owned());
        total.rejections_by_reason = most_first(all.reasons, Clone::clone);
        Ok(Report {
            period,
            group_by: by,
            groups: groups.into_values().collect(),
            total,
        })
    }

    /// The figures table as the aggregate reports read it. SQLite's planner takes the
    /// `received_at` index for any range and then fetches every row by its rowid, which over a
    /// year of leads costs two to three times a plain scan, while a scan passes over the rows
    /// outside the period for about 0.1 s a million; PostgreSQL costs both ways itself.
    fn scan_table(&self) -> &'static str {
        match self.db().backend() {
            Backend::Postgres => "lead_figures",
            Backend::Sqlite => "lead_figures NOT INDEXED",
        }
    }

    /// A read transaction for a report. On PostgreSQL it is one snapshot (as a SQLite read
    /// transaction is), so the rollups, the leads not in them and the rollups' state agree;
    /// and it has room to hash a year of leads in memory rather than spilling to disk (the
    /// server's default `work_mem` is sized for many small queries), without JIT: compiling
    /// the report's expressions took about 0.5 s of a 0.9 s query over 1,000,000 rows, more
    /// than the compiled code saved.
    async fn read_tx(&self) -> Result<Tx, DbError> {
        let mut tx = self.db().reader().begin().await?;
        if self.db().backend() == Backend::Postgres {
            for sql in [
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "SET LOCAL work_mem = '128MB'",
                "SET LOCAL jit = off",
            ] {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
        }
        Ok(tx)
    }

    /// Runs a report query over `[from, to)` (bound as `$1`, `$2`) in its own read
    /// transaction.
    async fn fetch_period(&self, sql: &str, from: i64, to: i64) -> Result<Vec<AnyRow>, DbError> {
        let mut tx = self.read_tx().await?;
        let rows = fetch(&mut tx, sql, from, to).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The report's figures of the leads received in `[from, to)`, as rows of sums by key and
    /// verdict (each from `lead_sql(table, filter)` over rows, or from the rollup, in the same
    /// columns), and the percentiles of [`Store::percentiles`].
    ///
    /// A step of folding comes first ([`Store::fold_step`], a chunk of settled leads at
    /// most: the bulk is the background fold's); then the whole grains of the period are read
    /// from the rollups and only the leads not in them from rows, with the period's partial
    /// grains at its edges and the grains a rebuild has not reached. When the rollups cannot
    /// be used (another rule's, or a report as of a moment before their latest fold) every
    /// lead is read from rows.
    async fn lead_figures(
        &self,
        key: &str,
        rules: &ReportRules,
        from: i64,
        to: i64,
        lead_sql: impl Fn(&str, &str) -> String,
    ) -> Result<(Vec<AnyRow>, Vec<Percentiles>), DbError> {
        self.fold_step(rules, self.fold_chunk(), false).await?;
        let mut tx = self.read_tx().await?;
        let whole = match Self::rollup_usable(&mut tx, self.db().backend(), rules).await? {
            // During a rebuild only the grains it has reached are read from the rollups.
            Some(usable) => whole_grains(from, to).and_then(|(a, b)| {
                let b = b.min(usable.saturating_mul(GRAIN_MICROS));
                (a < b).then_some((a, b))
            }),
            None => None,
        };
        let period = Self::period_sql("received_at");
        // What is read from rows: (table, filter, from, to).
        let mut ranges: Vec<(&str, String, i64, i64)> = Vec::new();
        match whole {
            None => ranges.push((self.scan_table(), period.clone(), from, to)),
            Some((a, b)) => {
                ranges.push(("lead_figures", format!("rolled IS NULL AND {period}"), a, b));
                for (x, y) in [(from, a), (b, to)] {
                    if x < y {
                        ranges.push(("lead_figures", period.clone(), x, y));
                    }
                }
            }
        }
        let mut rows = Vec::new();
        let mut histogram_rows = Vec::new();
        let bucket = format!("activation_micros / {BUCKET_MICROS}");
        for (table, filter, x, y) in &ranges {
            rows.extend(fetch(&mut tx, &lead_sql(table, filter), *x, *y).await?);
            let sql = format!(
                "SELECT {key} AS k, CAST({bucket} AS BIGINT) AS b, COUNT(*) AS n FROM {table} \
                 WHERE accepted = 1 AND activation_micros IS NOT NULL AND {filter} \
                 GROUP BY {key}, {bucket}"
            );
            histogram_rows.extend(fetch(&mut tx, &sql, *x, *y).await?);
        }
        if let Some((a, b)) = whole {
            let figures: Vec<String> = crate::rollup::FIGURES
                .iter()
                .map(|(c, _)| format!("CAST(SUM({c}) AS BIGINT) AS {c}"))
                .collect();
            let sql = format!(
                "SELECT {key} AS k, CAST(verdict AS BIGINT) AS v, {} FROM lead_rollup \
                 WHERE grain >= $1 AND grain < $2 GROUP BY {key}, verdict \
                 HAVING SUM(accepted) <> 0",
                figures.join(", ")
            );
            let grains = (a / GRAIN_MICROS, b / GRAIN_MICROS);
            rows.extend(fetch(&mut tx, &sql, grains.0, grains.1).await?);
            let sql = format!(
                "SELECT {key} AS k, bucket AS b, CAST(SUM(n) AS BIGINT) AS n \
                 FROM lead_rollup_times WHERE grain >= $1 AND grain < $2 \
                 GROUP BY {key}, bucket HAVING SUM(n) <> 0"
            );
            histogram_rows.extend(fetch(&mut tx, &sql, grains.0, grains.1).await?);
        }
        let percentiles = self
            .percentiles(&mut tx, key, &histogram_rows, from, to)
            .await?;
        tx.commit().await?;
        Ok((rows, percentiles))
    }

    /// The nearest-rank median and p90 of the time to activation per group (`Some` key) and
    /// over all leads of the period (`None`), in microseconds, from `histogram_rows`: the
    /// period's times counted by group (`k`) and bucket of [`BUCKET_MICROS`] (`b`), in parts
    /// that add up.
    ///
    /// Exact without sorting the period: the counts by bucket say in which bucket each wanted
    /// rank falls and at which rank within it; then only the distinct times of those buckets
    /// are read, from rows through the index on the time. Sorting every time once per group
    /// and once for the total cost more than the rest of the report together.
    async fn percentiles(
        &self,
        tx: &mut Tx,
        key: &str,
        histogram_rows: &[AnyRow],
        from: i64,
        to: i64,
    ) -> Result<Vec<Percentiles>, DbError> {
        let mut histograms: BTreeMap<Option<String>, BTreeMap<i64, u64>> = BTreeMap::new();
        for row in histogram_rows {
            let key: String = row.try_get("k")?;
            let b: i64 = row.try_get("b")?;
            let n: i64 = row.try_get("n")?;
            for k in [Some(key), None] {
                let count = histograms.entry(k).or_default().entry(b).or_insert(0);
                *count = count.checked_add_signed(n).ok_or_else(|| {
                    DbError::corrupt(std::io::Error::other(format!("bucket count {n}")))
                })?;
            }
        }
        // Where each group's (and the total's) median and p90 fall.
        let located: Vec<(Option<String>, [Option<RankAt>; 2])> = histograms
            .iter()
            .map(|(k, h)| (k.clone(), [locate_rank(h, 50), locate_rank(h, 90)]))
            .collect();
        let wanted: std::collections::BTreeSet<i64> = located
            .iter()
            .flat_map(|(_, at)| at.iter().flatten().map(|(b, _)| *b))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let table = match self.db().backend() {
            Backend::Postgres => "lead_figures",
            // SQLite's planner would rather walk the period's range, every row of a year.
            Backend::Sqlite => "lead_figures INDEXED BY lead_figures_activation",
        };
        let selects: Vec<String> = wanted
            .iter()
            .map(|b| {
                let (lo, hi) = bucket_bounds(*b);
                format!(
                    "SELECT {key} AS k, activation_micros AS m, COUNT(*) AS n FROM {table} \
                     WHERE activation_micros >= {lo} AND activation_micros <= {hi} \
                     AND accepted = 1 AND received_at >= $1 AND received_at < $2 \
                     GROUP BY {key}, activation_micros"
                )
            })
            .collect();
        // The distinct times of each wanted bucket, with their group and count.
        let mut values: BTreeMap<i64, Vec<(String, i64, u64)>> = BTreeMap::new();
        for row in fetch(tx, &selects.join(" UNION ALL "), from, to).await? {
            let m: i64 = row.try_get("m")?;
            values.entry(m / BUCKET_MICROS).or_default().push((
                row.try_get("k")?,
                m,
                get(&row, "n")?,
            ));
        }
        let value_at = |key: &Option<String>, at: Option<(i64, u64)>| -> Option<i64> {
            let (b, rank) = at?;
            let mut in_bucket: Vec<(i64, u64)> = values
                .get(&b)?
                .iter()
                .filter(|(k, _, _)| key.as_ref().is_none_or(|key| key == k))
                .map(|(_, m, n)| (*m, *n))
                .collect();
            in_bucket.sort_unstable();
            value_of_rank(&in_bucket, rank)
        };
        Ok(located
            .iter()
            .map(|(key, [p50, p90])| (key.clone(), value_at(key, *p50), value_at(key, *p90)))
            .collect())
    }

    /// The funnel for `period`, optionally of one source, campaign or channel.
    pub async fn funnel(&self, period: Period, filter: Option<&Filter>) -> Result<Funnel, DbError> {
        let from = to_micros(period.from());
        let to = to_micros(period.to());
        let (lead_filter, rejection_filter) = match filter {
            Some(f) => {
                let key = group_column(f.by);
                (format!(" AND {key} = $3"), format!(" AND r.{key} = $3"))
            }
            None => (String::new(), String::new()),
        };
        let value = filter
            .map(|f| f.value.trim().to_owned())
            .unwrap_or_default();
        let leads = Self::period_sql("received_at");
        let sql = format!(
            "SELECT CAST(funnel_stage AS BIGINT) AS stage, COUNT(*) AS n FROM {} \
             WHERE accepted = 1 AND {leads}{lead_filter} GROUP BY funnel_stage",
            self.scan_table()
        );
        let mut reached: BTreeMap<FunnelStage, u64> = BTreeMap::new();
        let mut query = sqlx::query(&sql).bind(from).bind(to);
        if filter.is_some() {
            query = query.bind(&value);
        }
        for row in query.fetch_all(self.db().reader()).await? {
            let position = usize::try_from(get(&row, "stage")?).map_err(DbError::corrupt)?;
            let stage = FunnelStage::ALL.get(position).copied().ok_or_else(|| {
                DbError::corrupt(std::io::Error::other(format!("funnel stage {position}")))
            })?;
            *reached.entry(stage).or_default() += get(&row, "n")?;
        }
        let rejections = Self::period_sql("r.received_at");
        let sql = format!(
            "SELECT COUNT(*) AS n FROM rejection_facts r WHERE {rejections}{rejection_filter} \
             AND NOT EXISTS (SELECT 1 FROM lead_figures l WHERE l.review_of = r.rejection_id)"
        );
        let mut query = sqlx::query(&sql).bind(from).bind(to);
        if filter.is_some() {
            query = query.bind(&value);
        }
        let row = query.fetch_one(self.db().reader()).await?;
        *reached.entry(FunnelStage::Received).or_default() += get(&row, "n")?;
        Ok(funnel_of_counts(&reached, period, filter))
    }

    /// One page of the facts of the leads received in `period` in the listing's order
    /// (received, then id), only those with the verdict `wanted` when given: the first `limit`
    /// after `after`, each with the cursor that continues after it.
    pub async fn verdict_page(
        &self,
        period: Period,
        rule: &FairChanceRule,
        now: Timestamp,
        wanted: Option<VerdictCode>,
        after: Option<VerdictCursor>,
        limit: u64,
    ) -> Result<Vec<(VerdictCursor, LeadFact)>, DbError> {
        let leads = Self::period_sql("g.received_at");
        let only = match wanted {
            Some(code) => format!(" AND ({}) = {}", verdict_sql(rule, now), code as u8),
            None => String::new(),
        };
        // A row comparison, so both backends walk the (received_at, lead_id) index from the
        // cursor on.
        let from_cursor = if after.is_some() {
            " AND (g.received_at, g.lead_id) > ($3, $4)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT g.received_at, f.fact FROM lead_figures g \
             JOIN lead_facts f ON f.lead_id = g.lead_id \
             WHERE g.accepted = 1 AND {leads}{only}{from_cursor} \
             ORDER BY g.received_at, g.lead_id LIMIT {limit}"
        );
        let mut query = sqlx::query(&sql)
            .bind(to_micros(period.from()))
            .bind(to_micros(period.to()));
        if let Some(cursor) = after {
            query = query
                .bind(to_micros(cursor.received_at))
                .bind(cursor.lead.to_string());
        }
        let rows = query.fetch_all(self.db().reader()).await?;
        rows.iter()
            .map(|r| {
                let fact: LeadFact = crate::store::from_json(&r.try_get::<String, _>("fact")?)?;
                let cursor = VerdictCursor {
                    received_at: runtime::db::from_micros(r.try_get("received_at")?),
                    lead: fact.lead,
                };
                Ok((cursor, fact))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! The SQL reports against the in-memory ones over the replay test's month, whose every
    //! figure the replay test checks against tables worked out by hand: equal reports prove
    //! the SQL right, on each backend.

    use testkit::TestDb;
    use uuid::Uuid;

    use super::*;
    use crate::domain::replay::{now, period, projection};
    use crate::domain::{funnel, report, verdict};
    use crate::playbook::FeedbackPlaybook;
    use crate::store::MIGRATIONS;

    async fn stored(test_db: &TestDb) -> Store {
        let store = Store::new(test_db.connect(&MIGRATIONS).await);
        let p = projection();
        let mut tx = store.db().begin().await.unwrap();
        for fact in p.lead_facts() {
            Store::save_fact(&mut tx, &fact, None).await.unwrap();
        }
        for rejection in p.rejection_facts() {
            Store::save_rejection(&mut tx, &rejection).await.unwrap();
        }
        tx.commit().await.unwrap();
        store
    }

    fn rules(playbook: &FeedbackPlaybook, now: Timestamp) -> ReportRules {
        ReportRules {
            fair_chance: playbook.fair_chance(),
            targeting: playbook.targeting_reasons(),
            persistence_touches: playbook.persistence_touches(),
            now,
        }
    }

    /// The default playbook and others that flip every part of the rule, so each clause of
    /// [`verdict_sql`] is exercised both ways.
    fn playbooks() -> Vec<FeedbackPlaybook> {
        let other = |text: &str| {
            runtime::playbook::parse::<FeedbackPlaybook>("t.toml", text)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        vec![
            FeedbackPlaybook::default(),
            other(
                "[feedback]\npersistence_touches = 2\ntargeting_reasons = [\"competitor\"]\n\
                 [feedback.fair_chance]\nrequire_within_sla = false\nmin_touches = 3\n\
                 min_days = \"2d\"\nengaged_earlier_counts = false\nproof_for_objections = false\n",
            ),
            other(
                "[feedback]\ntargeting_reasons = []\n[feedback.fair_chance]\nmin_touches = 9\n\
                 min_days = \"20d\"\n",
            ),
        ]
    }

    async fn the_sql_reports_equal_the_hand_checked_ones(test_db: TestDb) {
        let store = stored(&test_db).await;
        let p = projection();
        let (leads, rejections) = (p.lead_facts(), p.rejection_facts());
        // Read at the end of April (the replay test's moment), and mid-March, when many
        // leads are still inside their SLA or enrolment windows.
        let moments = [
            now(),
            period().from() + jiff::SignedDuration::from_hours(15 * 24),
        ];
        for playbook in playbooks() {
            for at in moments {
                for by in [GroupBy::Source, GroupBy::Campaign, GroupBy::Channel] {
                    let sql = store
                        .report(period(), by, &rules(&playbook, at))
                        .await
                        .unwrap();
                    let expected = report(&leads, &rejections, period(), by, &playbook, at);
                    assert_eq!(sql, expected, "{by:?} at {at} with {playbook:?}");
                }
            }
        }

        let mut filters = vec![None];
        for source in ["demo-form", "webinar", "event-scan", "nobody"] {
            filters.push(Some(Filter {
                by: GroupBy::Source,
                value: format!(" {source} "),
            }));
        }
        for filter in &filters {
            assert_eq!(
                store.funnel(period(), filter.as_ref()).await.unwrap(),
                funnel(&leads, &rejections, period(), filter.as_ref()),
                "{filter:?}"
            );
        }

        // Every lead's verdict in SQL is the one the domain gives, and pages follow the
        // period's order (received, then id).
        let mut in_order: Vec<&LeadFact> = leads
            .iter()
            .filter(|f| f.received_at.is_some_and(|t| period().contains(t)))
            .collect();
        in_order.sort_by_key(|f| (f.received_at, f.lead.to_string()));
        for playbook in playbooks() {
            let rule = playbook.fair_chance();
            for at in moments {
                for code in [
                    VerdictCode::Fair,
                    VerdictCode::NotFair,
                    VerdictCode::Undetermined,
                ] {
                    let expected: Vec<Uuid> = in_order
                        .iter()
                        .filter(|f| {
                            let v = verdict(f, &rule, at);
                            let c = if v.is_fair() {
                                VerdictCode::Fair
                            } else if v.is_not_fair() {
                                VerdictCode::NotFair
                            } else {
                                VerdictCode::Undetermined
                            };
                            c == code
                        })
                        .map(|f| f.lead)
                        .collect();
                    let got: Vec<Uuid> = store
                        .verdict_page(period(), &rule, at, Some(code), None, 1000)
                        .await
                        .unwrap()
                        .iter()
                        .map(|(_, f)| f.lead)
                        .collect();
                    assert_eq!(got, expected, "{code:?} at {at}");
                }
            }
        }
        // Figures written by an older derivation are recomputed from the facts.
        let mut tx = store.db().begin().await.unwrap();
        sqlx::query(
            "UPDATE lead_figures SET figures_version = 0, accepted = 0, activation_micros = NULL",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("DELETE FROM lead_figures WHERE funnel_stage = 2")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store
                .report(
                    period(),
                    GroupBy::Source,
                    &rules(&FeedbackPlaybook::default(), now())
                )
                .await
                .unwrap()
                .total
                .accepted,
            0
        );
        assert_eq!(store.refresh_figures().await.unwrap(), leads.len() as u64);
        assert_eq!(store.refresh_figures().await.unwrap(), 0);
        let playbook = FeedbackPlaybook::default();
        assert_eq!(
            store
                .report(period(), GroupBy::Source, &rules(&playbook, now()))
                .await
                .unwrap(),
            report(
                &leads,
                &rejections,
                period(),
                GroupBy::Source,
                &playbook,
                now()
            )
        );
    }

    #[test]
    fn bucketed_percentiles_are_the_nearest_rank() {
        // Values spread over many buckets, bunched in one, negative, repeated, or alone.
        let w = BUCKET_MICROS;
        let mut sets: Vec<Vec<i64>> = vec![
            vec![7],
            vec![5; 10],
            vec![-3 * w, -w + 1, -1, 0, 1, w - 1, w, w + 1, 3 * w],
            (0..1000).map(|i| i * 7_919 % 100_003 * 4_000).collect(),
            (0..997).map(|i| (i % 13) * w / 3 + i % 5).collect(),
        ];
        sets.push((1..=1500).collect());
        for values in sets {
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let mut histogram: BTreeMap<i64, u64> = BTreeMap::new();
            for v in &values {
                *histogram.entry(v / w).or_default() += 1;
            }
            for p in [1, 50, 90, 99, 100] {
                let (bucket, rank) = locate_rank(&histogram, p).unwrap();
                let mut counted: BTreeMap<i64, u64> = BTreeMap::new();
                for v in values.iter().filter(|v| *v / w == bucket) {
                    *counted.entry(*v).or_default() += 1;
                }
                let counted: Vec<(i64, u64)> = counted.into_iter().collect();
                assert_eq!(
                    value_of_rank(&counted, rank),
                    crate::domain::nearest_rank(&sorted, p),
                    "p{p} of {} values",
                    values.len()
                );
            }
        }
        assert_eq!(locate_rank(&BTreeMap::new(), 50), None);
    }

    /// Many leads with times of activation spread over many buckets (and leads outside the
    /// period that must not count): the report's median and p90, per group and in total, are
    /// the nearest-rank ones.
    async fn report_percentiles_are_exact_over_many_buckets(test_db: TestDb) {
        let store = Store::new(test_db.connect(&MIGRATIONS).await);
        let start = period().from();
        let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut tx = store.db().begin().await.unwrap();
        for i in 0..600_i64 {
            let mut fact = LeadFact::new(Uuid::from_u64_pair(7, i as u64));
            let outside = i % 10 == 9;
            let received = if outside {
                period().to() + jiff::SignedDuration::from_hours(i)
            } else {
                start + jiff::SignedDuration::from_mins(i)
            };
            let source = ["a", "b", "c"][(i % 3) as usize];
            // Minutes to days, with repeats.
            let tta = jiff::SignedDuration::from_secs((i * 7_919 % 4_001) * 37 + (i % 4) * 30);
            fact.apply(&crate::domain::Observation::LeadAccepted {
                lead: fact.lead,
                source: source.into(),
                campaign: "c".into(),
                channel: "web".into(),
                received_at: received,
                icp_tier: crate::domain::IcpTier::A,
                do_not_contact: false,
                review: None,
            });
            fact.apply(&crate::domain::Observation::LeadActivated {
                lead: fact.lead,
                owner: "rep".into(),
                at: received + tta,
                within_sla: true,
                time_to_activation: tta,
            });
            Store::save_fact(&mut tx, &fact, None).await.unwrap();
            if !outside {
                let micros = i64::try_from(tta.as_micros()).unwrap();
                times.entry(source.into()).or_default().push(micros);
                times.entry(String::new()).or_default().push(micros);
            }
        }
        tx.commit().await.unwrap();
        let report = store
            .report(
                period(),
                GroupBy::Source,
                &rules(&FeedbackPlaybook::default(), now()),
            )
            .await
            .unwrap();
        let mut checked = 0;
        for g in report.groups.iter().chain([&report.total]) {
            let mut sorted = times[&g.key].clone();
            sorted.sort_unstable();
            let expect = |p| crate::domain::nearest_rank(&sorted, p).map(micros_duration);
            assert_eq!(g.median_time_to_activation, expect(50), "{:?}", g.key);
            assert_eq!(g.p90_time_to_activation, expect(90), "{:?}", g.key);
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    #[tokio::test]
    async fn report_percentiles_are_exact_over_many_buckets_on_sqlite() {
        report_percentiles_are_exact_over_many_buckets(TestDb::sqlite()).await;
    }

    #[tokio::test]
    async fn report_percentiles_are_exact_over_many_buckets_on_postgres() {
        if let Some(db) = TestDb::postgres().await {
            report_percentiles_are_exact_over_many_buckets(db).await;
        }
    }

    /// Pages smaller than the listing return every lead once, in order, and leads stored
    /// between pages appear once if they sort after the page already read (and are not
    /// repeated if they sort before it), unlike OFFSET paging.
    async fn pages_return_every_lead_once_in_order(test_db: TestDb) {
        let store = stored(&test_db).await;
        let rule = &FairChanceRule::default();
        let all = |store: Store| async move {
            store
                .verdict_page(period(), rule, now(), None, None, 10_000)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, f)| f.lead)
                .collect::<Vec<Uuid>>()
        };
        let before = all(store.clone()).await;
        assert!(before.len() > 9, "{} leads", before.len());
        let mut seen: Vec<Uuid> = Vec::new();
        let mut after = None;
        let mut pages = 0;
        let mut added = Vec::new();
        loop {
            let page = store
                .verdict_page(period(), rule, now(), None, after, 4)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 4);
            seen.extend(page.iter().map(|(_, f)| f.lead));
            after = page.last().map(|(c, _)| *c);
            pages += 1;
            if pages == 2 {
                // One lead received before the cursor, one at the very start, one at its
                // moment (ordered by id), one at the end of the period.
                let cursor = after.unwrap();
                let mut tx = store.db().begin().await.unwrap();
                for (n, at) in [
                    (1, cursor.received_at - jiff::SignedDuration::from_secs(1)),
                    (2, period().from()),
                    (3, cursor.received_at),
                    (4, period().to() - jiff::SignedDuration::from_secs(1)),
                ] {
                    let mut fact = LeadFact::new(Uuid::from_u64_pair(9, n));
                    fact.apply(&crate::domain::Observation::LeadAccepted {
                        lead: fact.lead,
                        source: "late".into(),
                        campaign: "c".into(),
                        channel: "web".into(),
                        received_at: at,
                        icp_tier: crate::domain::IcpTier::A,
                        do_not_contact: false,
                        review: None,
                    });
                    Store::save_fact(&mut tx, &fact, None).await.unwrap();
                    added.push(fact.lead);
                }
                tx.commit().await.unwrap();
            }
        }
        let now_all = all(store.clone()).await;
        assert_eq!(now_all.len(), before.len() + added.len());
        // What paging returned is the final order minus the leads added behind the cursor.
        let cursor_at_add = seen[7];
        let position = |l: &Uuid| now_all.iter().position(|x| x == l).unwrap();
        let expected: Vec<Uuid> = now_all
            .iter()
            .filter(|l| !added.contains(l) || position(l) > position(&cursor_at_add))
            .copied()
            .collect();
        assert_eq!(seen, expected);
        assert!(seen.contains(&Uuid::from_u64_pair(9, 4)));
        assert!(!seen.contains(&Uuid::from_u64_pair(9, 1)));
        assert!(!seen.contains(&Uuid::from_u64_pair(9, 2)));
    }

    #[tokio::test]
    async fn pages_return_every_lead_once_in_order_on_sqlite() {
        pages_return_every_lead_once_in_order(TestDb::sqlite()).await;
    }

    #[tokio::test]
    async fn pages_return_every_lead_once_in_order_on_postgres() {
        if let Some(db) = TestDb::postgres().await {
            pages_return_every_lead_once_in_order(db).await;
        }
    }

    use testkit::Rng;

    /// Up to `n` minutes, at random.
    fn mins(rng: &mut Rng, n: u64) -> jiff::SignedDuration {
        jiff::SignedDuration::from_mins(rng.below(n) as i64)
    }

    /// Where the random histories start: not on a rollup grain.
    fn history_start() -> Timestamp {
        "2025-03-05T07:00:00Z".parse().unwrap()
    }

    /// The days the random histories' leads arrive over: several rollup grains.
    const HISTORY_DAYS: u64 = 40;

    /// A lead with a random history: accepted at a random time, activated in time, late or
    /// not at all, enrolled or not (so inside its enrolment grace for a while), touched,
    /// answered, objecting, with outcomes.
    fn random_lead(rng: &mut Rng, n: u64) -> LeadFact {
        use crate::domain::{
            Checkpoint, EngagementKind, IcpTier, Observation, OutcomeStage, Strategy, TouchChannel,
        };
        let lead = Uuid::from_u64_pair(0x5EED, n);
        let mut fact = LeadFact::new(lead);
        let received = history_start() + mins(rng, HISTORY_DAYS * 24 * 60);
        fact.apply(&Observation::LeadAccepted {
            lead,
            source: rng.pick(&["ads", "webinar", "event-scan"]).into(),
            campaign: rng.pick(&["spring", "summer"]).into(),
            channel: rng.pick(&["web", "event"]).into(),
            received_at: received,
            icp_tier: rng.pick(&[IcpTier::A, IcpTier::B, IcpTier::Outside]),
            do_not_contact: rng.chance(5),
            review: None,
        });
        let roll = rng.below(100);
        if roll >= 85 {
            return fact;
        }
        if roll >= 70 {
            fact.apply(&Observation::SlaBreached {
                lead,
                at: received + jiff::SignedDuration::from_hours(1),
                cause: crate::domain::FailureCause::OwnerLate,
            });
            return fact;
        }
        // Repeated times of activation, so ranks fall among equal values.
        let tta = jiff::SignedDuration::from_mins(1 + rng.below(90) as i64);
        let at = received + tta;
        fact.apply(&Observation::LeadActivated {
            lead,
            owner: "rep".into(),
            at,
            within_sla: tta.as_mins() < 60,
            time_to_activation: tta,
        });
        if rng.chance(60) {
            fact.apply(&Observation::LeadEnrolled {
                lead,
                cadence: "standard".into(),
                at,
            });
        }
        let mut last = at;
        for t in 0..rng.below(7) {
            last = at + jiff::SignedDuration::from_hours(24 * (1 + 2 * t as i64));
            fact.apply(&Observation::FollowUpDue {
                lead,
                channel: rng.pick(&[TouchChannel::Email, TouchChannel::Call]),
                strategy: rng.pick(&[Strategy::Value, Strategy::Proof]),
                at: last,
            });
        }
        if rng.chance(35) {
            let meeting = rng.chance(40);
            fact.apply(&Observation::EngagementRecorded {
                lead,
                kind: if meeting {
                    EngagementKind::MeetingBooked
                } else {
                    EngagementKind::ReplyNeutral
                },
                at: last + jiff::SignedDuration::from_hours(3),
            });
            if rng.chance(30) {
                fact.apply(&Observation::ObjectionRaised {
                    lead,
                    checkpoint: rng.pick(&[Checkpoint::Price, Checkpoint::InternalBuyIn]),
                    at: last + jiff::SignedDuration::from_hours(4),
                });
            }
            if meeting {
                fact.apply(&Observation::OutcomeRecorded {
                    lead,
                    stage: OutcomeStage::Meeting,
                    reason: None,
                    at: last + jiff::SignedDuration::from_hours(48),
                });
            }
        }
        if rng.chance(25) {
            random_outcome(
                rng,
                &mut fact,
                last + jiff::SignedDuration::from_hours(24 * 9),
            );
        }
        fact
    }

    /// A final outcome from the CRM, on a reason the playbooks' targeting may or may not name.
    fn random_outcome(rng: &mut Rng, fact: &mut LeadFact, at: Timestamp) {
        use crate::domain::{Observation, OutcomeStage};
        let won = rng.chance(30);
        fact.apply(&Observation::OutcomeRecorded {
            lead: fact.lead,
            stage: if won {
                OutcomeStage::Won
            } else {
                rng.pick(&[OutcomeStage::Lost, OutcomeStage::Disqualified])
            },
            reason: (!won).then(|| {
                rng.pick(&[
                    OutcomeReason::Competitor,
                    OutcomeReason::NotIcp,
                    OutcomeReason::NoResponse,
                    OutcomeReason::Timing,
                ])
            }),
            at,
        });
    }

    /// A later event for a lead that may already be in the rollups: enrolled at last, touched
    /// again, answered, closed by the CRM, or accepted again into another group.
    fn random_update(rng: &mut Rng, fact: &mut LeadFact, at: Timestamp) {
        use crate::domain::{EngagementKind, Observation, Strategy, TouchChannel};
        let lead = fact.lead;
        match rng.below(5) {
            // Intake's event again, moving the lead to another group and grain.
            4 => {
                fact.apply(&Observation::LeadAccepted {
                    lead,
                    source: rng.pick(&["ads", "webinar", "partner"]).into(),
                    campaign: rng.pick(&["spring", "autumn"]).into(),
                    channel: "web".into(),
                    received_at: history_start() + mins(rng, HISTORY_DAYS * 24 * 60),
                    icp_tier: crate::domain::IcpTier::A,
                    do_not_contact: false,
                    review: None,
                });
            }
            0 => {
                fact.apply(&Observation::LeadEnrolled {
                    lead,
                    cadence: "late".into(),
                    at,
                });
            }
            1 => {
                fact.apply(&Observation::FollowUpDue {
                    lead,
                    channel: TouchChannel::Linkedin,
                    strategy: Strategy::PeerStory,
                    at,
                });
            }
            2 => {
                fact.apply(&Observation::EngagementRecorded {
                    lead,
                    kind: EngagementKind::ReplyPositive,
                    at,
                });
            }
            _ => random_outcome(rng, fact, at),
        }
    }

    /// A random period over the histories: whole grains, partial ones at either edge, inside
    /// one grain, or all of it.
    fn random_period(rng: &mut Rng) -> Period {
        let g = GRAIN_MICROS;
        let start = to_micros(history_start());
        let span = i64::try_from(HISTORY_DAYS).unwrap() * 86_400_000_000;
        let point =
            |rng: &mut Rng| start - g + i64::try_from(rng.below((span + 2 * g) as u64)).unwrap();
        let (mut a, mut b) = (point(rng), point(rng));
        if rng.chance(30) {
            a = a.div_euclid(g) * g;
            b = b.div_euclid(g) * g;
        }
        if rng.chance(10) {
            (a, b) = (start - g, start + span + g);
        }
        if a > b {
            (a, b) = (b, a);
        }
        Period::new(runtime::db::from_micros(a), runtime::db::from_micros(b + 1)).unwrap()
    }

    /// Random histories read as time passes: every report the store gives, whatever of it
    /// comes from the rollups, equals the one computed from the facts in memory, as leads
    /// settle, facts change after being folded in (and leave their group or verdict), the
    /// playbook's rule changes, reports are read as of an earlier moment than the last, and
    /// periods end inside grains. The folds go in chunks of a few leads (a report's too), a
    /// few steps at a time between saves and reports, so reports read rollups half folded
    /// and half rebuilt, and saves change leads between a fold's chunks.
    async fn rollup_reports_equal_the_facts_over_random_histories(test_db: TestDb, seed: u64) {
        const CHUNK: i64 = 7;
        let store = Store::new(test_db.connect(&MIGRATIONS).await).with_fold_chunk(CHUNK);
        let mut rng = Rng(seed);
        let mut leads: Vec<LeadFact> = (0..400).map(|n| random_lead(&mut rng, n)).collect();
        let rejections = projection().rejection_facts();
        let mut tx = store.db().begin().await.unwrap();
        for fact in &leads {
            Store::save_fact(&mut tx, fact, None).await.unwrap();
        }
        for rejection in &rejections {
            Store::save_rejection(&mut tx, rejection).await.unwrap();
        }
        tx.commit().await.unwrap();
        let playbooks = playbooks();
        let mut playbook = 0;
        let mut at = history_start();
        let mut reports_mid_rebuild = 0;
        for step in 0..40 {
            // Mostly forward, by hours to weeks; now and then back before the last fold.
            if rng.chance(10) {
                at -= jiff::SignedDuration::from_hours(1 + rng.below(24 * 5) as i64);
            } else {
                at += jiff::SignedDuration::from_hours(1 + rng.below(24 * 6) as i64);
            }
            if rng.chance(15) {
                playbook = rng.below(playbooks.len() as u64) as usize;
            }
            let p = &playbooks[playbook];
            for _ in 0..rng.below(30) {
                // The background fold's steps, between saves.
                if rng.chance(30) {
                    store.fold_step(&rules(p, at), CHUNK, true).await.unwrap();
                }
                let i = rng.below(leads.len() as u64) as usize;
                let when = at - jiff::SignedDuration::from_mins(rng.below(600) as i64);
                random_update(&mut rng, &mut leads[i], when);
                let mut tx = store.db().begin().await.unwrap();
                Store::save_fact(&mut tx, &leads[i], None).await.unwrap();
                tx.commit().await.unwrap();
            }
            for _ in 0..3 {
                let period = random_period(&mut rng);
                let by = rng.pick(&[GroupBy::Source, GroupBy::Campaign, GroupBy::Channel]);
                let state = sqlx::query(
                    "SELECT rebuilt_to, (SELECT COUNT(*) FROM lead_figures WHERE rolled IS NOT NULL) AS n \
                     FROM lead_rollup_state",
                )
                .fetch_one(store.db().reader())
                .await
                .unwrap();
                let rebuilding: Option<i64> = state.try_get("rebuilt_to").unwrap();
                if rebuilding.is_some() && get(&state, "n").unwrap() > 0 {
                    reports_mid_rebuild += 1;
                }
                let got = store.report(period, by, &rules(p, at)).await.unwrap();
                let expected = report(&leads, &rejections, period, by, p, at);
                assert_eq!(
                    got, expected,
                    "step {step}, seed {seed}: {by:?} over {period:?} at {at}, playbook {playbook}"
                );
            }
        }
        // Long after: everything settled, the taken-back contributions compacted away, and
        // the rollups held most of it (the test is of them, not of the rows alone).
        let p = &playbooks[playbook];
        let later = at + jiff::SignedDuration::from_hours(24 * 60);
        store.fold(&rules(p, later), CHUNK).await.unwrap();
        let whole = Period::new(history_start(), later).unwrap();
        assert_eq!(
            store
                .report(whole, GroupBy::Source, &rules(p, later))
                .await
                .unwrap(),
            report(&leads, &rejections, whole, GroupBy::Source, p, later)
        );
        assert!(
            reports_mid_rebuild > 0,
            "seed {seed}: no report read a rebuild half done"
        );
        let count = |sql: &'static str| {
            let store = store.clone();
            async move {
                let row = sqlx::query(sql)
                    .fetch_one(store.db().reader())
                    .await
                    .unwrap();
                get(&row, "n").unwrap()
            }
        };
        let rolled = count("SELECT COUNT(*) AS n FROM lead_figures WHERE rolled IS NOT NULL").await;
        let accepted = count("SELECT COUNT(*) AS n FROM lead_figures WHERE accepted = 1").await;
        assert_eq!(rolled, accepted);
        assert_eq!(
            count("SELECT COUNT(*) AS n FROM lead_rollup WHERE accepted < 0").await,
            0
        );
        assert_eq!(
            count("SELECT COUNT(*) AS n FROM lead_rollup_times WHERE n < 0").await,
            0
        );
    }

    #[tokio::test]
    async fn rollup_reports_equal_the_facts_over_random_histories_on_sqlite() {
        for seed in [1, 2, 3] {
            rollup_reports_equal_the_facts_over_random_histories(TestDb::sqlite(), seed).await;
        }
    }

    #[tokio::test]
    async fn rollup_reports_equal_the_facts_over_random_histories_on_postgres() {
        for seed in [1, 2, 3] {
            if let Some(db) = TestDb::postgres().await {
                rollup_reports_equal_the_facts_over_random_histories(db, seed).await;
            }
        }
    }

    #[tokio::test]
    async fn sql_reports_equal_the_hand_checked_ones_on_sqlite() {
        the_sql_reports_equal_the_hand_checked_ones(TestDb::sqlite()).await;
    }

    #[tokio::test]
    async fn sql_reports_equal_the_hand_checked_ones_on_postgres() {
        if let Some(db) = TestDb::postgres().await {
            the_sql_reports_equal_the_hand_checked_ones(db).await;
        }
    }
}
