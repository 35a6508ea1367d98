//! The reports as SQL: the source report, the funnel and the verdict listing aggregated by
//! the database over the figure columns [`Store::save_fact`] writes beside each fact (see
//! [`LeadFigures`]), so a report costs one pass over the period's rows and never loads a fact
//! (the verdict listing loads only the facts of the page it returns).
//!
//! The fair-chance verdict is evaluated in SQL from its inputs rather than stored: it depends
//! on the playbook's rule, which can change while the service runs, and on the time it is read
//! (a lead still inside its SLA or enrolment window is undetermined until it is not), so a
//! stored verdict would go stale without any event touching its row. [`verdict_sql`] mirrors
//! [`crate::domain::verdict`] clause by clause; the replay test holds both to the same
//! hand-computed tables.
//!
//! Percentiles are nearest-rank ([`crate::domain::nearest_rank`]) on both backends: a window
//! numbers each group's activation times in order and the rows at rank ⌈p·n/100⌉ are kept
//! on SQLite, which has no percentile function; PostgreSQL's `percentile_disc` is the same
//! method, given a fraction that survives its floating-point arithmetic.

use std::collections::BTreeMap;

use jiff::Timestamp;
use runtime::db::{Backend, DbError, to_micros};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::{
    Checkpoint, FairChanceRule, Filter, Funnel, FunnelStage, GroupBy, GroupReport, LeadFact,
    OutcomeReason, Period, Report, funnel_of_counts, nearest_rank_of, verdict::enrolment_grace,
};
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
    let grace = i64::try_from(enrolment_grace(rule).as_micros()).unwrap_or(i64::MAX);
    let open_after = to_micros(now).saturating_sub(grace);
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

/// `reason IN (...)` over the targeting reasons, or false when there are none. The reasons
/// are the playbook's typed values, written as their fixed names.
fn targeting_sql(targeting: &[OutcomeReason]) -> String {
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

/// The fraction for PostgreSQL's `percentile_disc` that picks the `p`-th percentile by
/// nearest rank. It is nudged below p/100 so that PostgreSQL's ⌈fraction·n⌉ (in floating point)
/// is the exact ⌈p·n/100⌉: p·n/100 is a whole number or at least 0.01 above one, and the nudge
/// times n stays far below that for any n under 10^9, and far above the rounding error of the
/// product (0.9·70 is 63.00000000000001 in binary floating point).
fn percentile_fraction(p: u32) -> String {
    format!("{:.15}", f64::from(p) / 100.0 - 1e-12)
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
        let sql = format!(
            "SELECT k, COUNT(*) AS accepted, \
             COALESCE(SUM(CASE WHEN review_of IS NOT NULL THEN 1 ELSE 0 END), 0) AS reviewed, \
             COALESCE(SUM(may_contact), 0) AS contactable, \
             COALESCE(SUM(CASE WHEN may_contact = 1 AND in_sla = 1 THEN 1 ELSE 0 END), 0) AS in_sla, \
             COALESCE(SUM(CASE WHEN may_contact = 1 AND activated = 0 THEN 1 ELSE 0 END), 0) AS ignored, \
             COALESCE(SUM(touches_before_response), 0) AS tbr_total, \
             COUNT(touches_before_response) AS tbr_count, \
             COALESCE(SUM(CASE WHEN persisted_touches >= {persisted} THEN 1 ELSE 0 END), 0) AS persisted, \
             COALESCE(SUM(CASE WHEN persisted_touches >= {persisted} AND reached_meeting = 1 THEN 1 ELSE 0 END), 0) AS persisted_met, \
             COALESCE(SUM(CASE WHEN v = 0 THEN 1 ELSE 0 END), 0) AS fair, \
             COALESCE(SUM(CASE WHEN v = 1 THEN 1 ELSE 0 END), 0) AS not_fair, \
             COALESCE(SUM(CASE WHEN v = 2 THEN 1 ELSE 0 END), 0) AS undetermined, \
             COALESCE(SUM(CASE WHEN v = 0 AND reached_meeting = 1 THEN 1 ELSE 0 END), 0) AS fair_met, \
             COALESCE(SUM(CASE WHEN v = 1 AND reached_meeting = 1 THEN 1 ELSE 0 END), 0) AS not_fair_met, \
             COALESCE(SUM(handed_off), 0) AS handed_off, \
             COALESCE(SUM(with_debt), 0) AS with_debt, \
             COALESCE(SUM(missing_stages), 0) AS missing_stages, \
             COALESCE(SUM(CASE WHEN lost = 1 AND v = 0 AND {targeting} THEN 1 ELSE 0 END), 0) AS lead_quality, \
             COALESCE(SUM(CASE WHEN lost = 1 AND v = 1 THEN 1 ELSE 0 END), 0) AS system_failure, \
             COALESCE(SUM(CASE WHEN lost = 1 AND NOT (v = 1 OR (v = 0 AND {targeting})) THEN 1 ELSE 0 END), 0) AS lost_undetermined \
             FROM (SELECT {key} AS k, review_of, may_contact, in_sla, activated, \
                   touches_before_response, persisted_touches, reached_meeting, handed_off, \
                   with_debt, missing_stages, lost, loss_reason, {verdict} AS v \
                   FROM lead_figures WHERE accepted = 1 AND {leads}) j \
             GROUP BY k"
        );
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
        // The five queries are independent: run them side by side.
        let (lead_rows, rejection_rows, objection_rows, reason_rows, percentiles) = futures::try_join!(
            self.fetch_period(&sql, from, to),
            self.fetch_period(&rejections_sql, from, to),
            self.fetch_period(&objections, from, to),
            self.fetch_period(&reasons, from, to),
            self.percentiles(key, &leads, from, to),
        )?;
        let mut groups: BTreeMap<String, GroupReport> = BTreeMap::new();
        for row in &lead_rows {
            let key: String = row.try_get("k")?;
            let g = groups.entry(key.clone()).or_insert_with(|| GroupReport {
                key,
                ..GroupReport::default()
            });
            g.accepted = get(row, "accepted")?;
            g.received += g.accepted;
            g.accepted_after_review = get(row, "reviewed")?;
            g.contactable = get(row, "contactable")?;
            g.activated_within_sla.count = get(row, "in_sla")?;
            g.activated_within_sla.of = g.contactable;
            g.never_activated.count = get(row, "ignored")?;
            g.never_activated.of = g.contactable;
            g.touches_before_first_response.total = get(row, "tbr_total")?;
            g.touches_before_first_response.count = get(row, "tbr_count")?;
            g.converted_after_persistence.of = get(row, "persisted")?;
            g.converted_after_persistence.count = get(row, "persisted_met")?;
            g.verdicts.fair = get(row, "fair")?;
            g.verdicts.not_fair = get(row, "not_fair")?;
            g.verdicts.undetermined = get(row, "undetermined")?;
            g.fair_chance_conversion.of = g.verdicts.fair;
            g.fair_chance_conversion.count = get(row, "fair_met")?;
            g.not_fair_conversion.of = g.verdicts.not_fair;
            g.not_fair_conversion.count = get(row, "not_fair_met")?;
            g.belief_debt.handed_off = get(row, "handed_off")?;
            g.belief_debt.with_debt.of = g.belief_debt.handed_off;
            g.belief_debt.with_debt.count = get(row, "with_debt")?;
            g.belief_debt.missing_stages.count = g.belief_debt.handed_off;
            g.belief_debt.missing_stages.total = get(row, "missing_stages")?;
            g.attribution.lead_quality = get(row, "lead_quality")?;
            g.attribution.system_failure = get(row, "system_failure")?;
            g.attribution.undetermined = get(row, "lost_undetermined")?;
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

    /// Runs a report query over `[from, to)` (bound as `$1`, `$2`). On PostgreSQL it runs in
    /// its own read transaction with room to sort and hash a year of leads in memory rather
    /// than spilling to disk (the server's default `work_mem` is sized for many small queries;
    /// the percentiles of a year of 1,000,000 leads sort about 80 MB).
    async fn fetch_period(&self, sql: &str, from: i64, to: i64) -> Result<Vec<AnyRow>, DbError> {
        let mut tx = self.db().reader().begin().await?;
        if self.db().backend() == Backend::Postgres {
            sqlx::query("SET LOCAL work_mem = '128MB'")
                .execute(&mut *tx)
                .await?;
        }
        let rows = sqlx::query(sql)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The nearest-rank median and p90 of the time to activation per group (`Some` key) and
    /// over all leads of the period (`None`), in microseconds.
    async fn percentiles(
        &self,
        key: &str,
        leads: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Percentiles>, DbError> {
        let activated = format!(
            "FROM lead_figures WHERE accepted = 1 AND activation_micros IS NOT NULL AND {leads}"
        );
        let mut out = Vec::new();
        match self.db().backend() {
            Backend::Postgres => {
                // One pass: an ordered-set aggregate per group and for the total.
                let fraction = percentile_fraction;
                let sql = format!(
                    "SELECT {key} AS k, GROUPING({key}) AS whole, \
                     percentile_disc({p50}) WITHIN GROUP (ORDER BY activation_micros) AS p50, \
                     percentile_disc({p90}) WITHIN GROUP (ORDER BY activation_micros) AS p90 \
                     {activated} GROUP BY GROUPING SETS (({key}), ())",
                    p50 = fraction(50),
                    p90 = fraction(90),
                );
                for row in self.fetch_period(&sql, from, to).await? {
                    let whole: i32 = row.try_get("whole")?;
                    let key: Option<String> = row.try_get("k")?;
                    out.push((
                        key.filter(|_| whole == 0),
                        row.try_get("p50")?,
                        row.try_get("p90")?,
                    ));
                }
            }
            Backend::Sqlite => {
                // No percentile function: number each group's times in order and keep the rows
                // at the wanted ranks.
                let ranks = "WHERE rn = (50 * n + 99) / 100 OR rn = (90 * n + 99) / 100";
                let sql = format!(
                    "SELECT k, rn, n, m FROM (SELECT {key} AS k, activation_micros AS m, \
                       ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY activation_micros) AS rn, \
                       COUNT(*) OVER (PARTITION BY {key}) AS n {activated}) t {ranks} \
                     UNION ALL \
                     SELECT NULL AS k, rn, n, m FROM (SELECT activation_micros AS m, \
                       ROW_NUMBER() OVER (ORDER BY activation_micros) AS rn, \
                       COUNT(*) OVER () AS n {activated}) t {ranks}"
                );
                let mut found: BTreeMap<Option<String>, (Option<i64>, Option<i64>)> =
                    BTreeMap::new();
                for row in self.fetch_period(&sql, from, to).await? {
                    let key: Option<String> = row.try_get("k")?;
                    let rank = get(&row, "rn")?;
                    let n = get(&row, "n")?;
                    let value: i64 = row.try_get("m")?;
                    let slot = found.entry(key).or_default();
                    if rank == nearest_rank_of(n, 50) {
                        slot.0 = Some(value);
                    }
                    if rank == nearest_rank_of(n, 90) {
                        slot.1 = Some(value);
                    }
                }
                out.extend(found.into_iter().map(|(k, (p50, p90))| (k, p50, p90)));
            }
        }
        Ok(out)
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
            "SELECT CAST(funnel_stage AS BIGINT) AS stage, COUNT(*) AS n FROM lead_figures \
             WHERE accepted = 1 AND {leads}{lead_filter} GROUP BY funnel_stage"
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

    /// One page of the facts of the leads received in `period` (oldest first), only those
    /// with the verdict `wanted` when given: `limit` of them after skipping `offset`.
    pub async fn verdict_page(
        &self,
        period: Period,
        rule: &FairChanceRule,
        now: Timestamp,
        wanted: Option<VerdictCode>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<LeadFact>, DbError> {
        let leads = Self::period_sql("g.received_at");
        let only = match wanted {
            Some(code) => format!(" AND ({}) = {}", verdict_sql(rule, now), code as u8),
            None => String::new(),
        };
        let sql = format!(
            "SELECT f.fact FROM lead_figures g JOIN lead_facts f ON f.lead_id = g.lead_id \
             WHERE g.accepted = 1 AND {leads}{only} \
             ORDER BY g.received_at, g.lead_id LIMIT {limit} OFFSET {offset}"
        );
        let rows = sqlx::query(&sql)
            .bind(to_micros(period.from()))
            .bind(to_micros(period.to()))
            .fetch_all(self.db().reader())
            .await?;
        rows.iter()
            .map(|r| crate::store::from_json(&r.try_get::<String, _>("fact")?))
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
                        .verdict_page(period(), &rule, at, Some(code), 0, 1000)
                        .await
                        .unwrap()
                        .iter()
                        .map(|f| f.lead)
                        .collect();
                    assert_eq!(got, expected, "{code:?} at {at}");
                }
            }
        }
        let all: Vec<Uuid> = in_order.iter().map(|f| f.lead).collect();
        let page = store
            .verdict_page(period(), &FairChanceRule::default(), now(), None, 5, 10)
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|f| f.lead).collect::<Vec<_>>(),
            all[5..15].to_vec()
        );

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

    #[tokio::test]
    async fn postgres_percentile_disc_is_the_nearest_rank() {
        let Some(test_db) = TestDb::postgres().await else {
            return;
        };
        let db = test_db.connect(&MIGRATIONS).await;
        let sql = format!(
            "SELECT CAST(n AS BIGINT) AS n, \
             percentile_disc({}) WITHIN GROUP (ORDER BY x) AS p50, \
             percentile_disc({}) WITHIN GROUP (ORDER BY x) AS p90 \
             FROM generate_series(1, 1500) n, generate_series(CAST(1 AS BIGINT), n) x GROUP BY n",
            percentile_fraction(50),
            percentile_fraction(90)
        );
        let rows = sqlx::query(&sql).fetch_all(db.reader()).await.unwrap();
        assert_eq!(rows.len(), 1500);
        for row in rows {
            let n: i64 = row.try_get("n").unwrap();
            let n = u64::try_from(n).unwrap();
            for (p, column) in [(50, "p50"), (90, "p90")] {
                let got: i64 = row.try_get(column).unwrap();
                assert_eq!(
                    u64::try_from(got).unwrap(),
                    nearest_rank_of(n, p),
                    "p{p} of {n}"
                );
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
