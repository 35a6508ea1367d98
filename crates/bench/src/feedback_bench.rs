//! Feedback: the reports over a year of lead facts (1,000,000 by default, `--feedback-leads`),
//! each next to a plain `SELECT count(*) ... GROUP BY source` over the same rows, the least any
//! report over the period must do. The facts are built the way the service builds them, by
//! applying observations (accepted, activated in time or late or never, followed up, answered,
//! objections and proof, hand-off debt, CRM outcomes) to [`LeadFact`]s, with six sources,
//! twelve campaigns and four channels, and stored with [`Store::save_fact`], so every figure
//! column is the one the service would write. Runs on PostgreSQL, then on SQLite.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use feedback::domain::{
    BeliefStage, Checkpoint, EngagementKind, FailureCause, GroupBy, IcpTier, LeadFact, Observation,
    OutcomeReason, OutcomeStage, RejectionFact, Strategy, TouchChannel,
};
use feedback::playbook::FeedbackPlaybook;
use feedback::queries::VerdictCode;
use feedback::service::Feedback;
use feedback::store::{MIGRATIONS, Store};
use jiff::{SignedDuration, Timestamp};
use runtime::playbook::Playbook;
use runtime::{Backend, Db, ManualClock};
use testkit::Rng;
use uuid::Uuid;

use crate::{Args, BenchDb, Row};

/// Runs of each query; the median is reported (after one warm-up run).
const RUNS: usize = 5;
/// Facts per loading transaction.
const BATCH: usize = 2_000;

const SOURCES: [(&str, [&str; 2]); 6] = [
    ("website-demo-form", ["q4-demo", "always-on"]),
    ("webinar", ["webinar-series", "product-launch"]),
    ("event-scan", ["summit", "roadshow"]),
    ("partner-referral", ["partner-q1", "partner-q3"]),
    ("content-download", ["ebook", "benchmark-report"]),
    ("list-import", ["trade-list", "data-vendor"]),
];
const CHANNELS: [&str; 4] = ["paid_search", "organic", "event", "partner"];

fn year_start() -> Timestamp {
    "2025-01-01T00:00:00Z"
        .parse()
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn mins(m: u64) -> SignedDuration {
    SignedDuration::from_mins(i64::try_from(m).unwrap_or(0))
}

/// Lead `n` of the year, built from the observations the service would see.
fn lead(n: u64) -> LeadFact {
    let mut rng = Rng(n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
    let id = Uuid::from_u64_pair(0xFEED, n);
    let mut fact = LeadFact::new(id);
    let (source, campaigns) = rng.pick(&SOURCES);
    let received = year_start() + mins(rng.below(365 * 24 * 60));
    let dnc = rng.chance(3);
    let mut apply = |o: Observation| {
        fact.apply(&o);
    };
    apply(Observation::LeadAccepted {
        lead: id,
        source: source.into(),
        campaign: rng.pick(&campaigns).into(),
        channel: rng.pick(&CHANNELS).into(),
        received_at: received,
        icp_tier: rng.pick(&[IcpTier::A, IcpTier::B, IcpTier::C, IcpTier::Outside]),
        do_not_contact: dnc,
        review: None,
    });
    if dnc {
        return fact;
    }
    apply(Observation::LeadAssigned {
        lead: id,
        owner: format!("rep-{}", rng.below(40)),
        at: received + mins(1),
    });
    let roll = rng.below(100);
    let activated = if roll < 78 {
        let tta = mins(1 + rng.below(55));
        Some((received + tta, true, tta))
    } else if roll < 90 {
        apply(Observation::SlaBreached {
            lead: id,
            at: received + mins(60),
            cause: FailureCause::OwnerLate,
        });
        let tta = mins(61 + rng.below(600));
        Some((received + tta, false, tta))
    } else {
        apply(Observation::SlaBreached {
            lead: id,
            at: received + mins(60),
            cause: FailureCause::NoOwnerWorking,
        });
        None
    };
    let Some((activated_at, within_sla, tta)) = activated else {
        if rng.chance(40) {
            apply(Observation::OutcomeRecorded {
                lead: id,
                stage: OutcomeStage::Disqualified,
                reason: Some(OutcomeReason::NoResponse),
                at: received + SignedDuration::from_hours(24 * 20),
            });
        }
        return fact;
    };
    apply(Observation::LeadActivated {
        lead: id,
        owner: "rep".into(),
        at: activated_at,
        within_sla,
        time_to_activation: tta,
    });
    apply(Observation::LeadEnrolled {
        lead: id,
        cadence: "standard".into(),
        at: activated_at,
    });
    let day =
        |d: u64| activated_at + SignedDuration::from_hours(i64::try_from(d * 24).unwrap_or(0));
    let touches = rng.below(10);
    let answer_after = rng.chance(35).then(|| rng.below(touches + 1));
    let mut last = activated_at;
    for t in 0..touches {
        if answer_after == Some(t) {
            break;
        }
        last = day(1 + 2 * t);
        apply(Observation::FollowUpDue {
            lead: id,
            channel: rng.pick(&[
                TouchChannel::Email,
                TouchChannel::Call,
                TouchChannel::Linkedin,
            ]),
            strategy: rng.pick(&[Strategy::Value, Strategy::Proof, Strategy::PeerStory]),
            at: last,
        });
        if rng.chance(20) {
            apply(Observation::EngagementRecorded {
                lead: id,
                kind: EngagementKind::Open,
                at: last + mins(90),
            });
        }
    }
    let answered = last + mins(240);
    let meeting = answer_after.is_some() && rng.chance(45);
    match answer_after {
        Some(_) => {
            apply(Observation::EngagementRecorded {
                lead: id,
                kind: if meeting {
                    EngagementKind::MeetingBooked
                } else {
                    rng.pick(&[EngagementKind::ReplyPositive, EngagementKind::ReplyNeutral])
                },
                at: answered,
            });
            apply(Observation::CadenceStopped {
                lead: id,
                reason: "positive_reply".into(),
                at: answered,
            });
        }
        None if touches > 0 => apply(Observation::RecycledToNurture {
            lead: id,
            reason: "cadence_finished".into(),
            at: last + SignedDuration::from_hours(24),
        }),
        None => {}
    }
    if answer_after.is_some() && rng.chance(30) {
        let checkpoint = rng.pick(&[
            Checkpoint::Price,
            Checkpoint::SecurityCompliance,
            Checkpoint::InternalBuyIn,
        ]);
        apply(Observation::ObjectionRaised {
            lead: id,
            checkpoint,
            at: answered + mins(10),
        });
        if rng.chance(70) {
            apply(Observation::ProofDelivered {
                lead: id,
                asset: "case-study".into(),
                at: answered + mins(600),
                answers: vec![checkpoint],
            });
        }
    }
    let later = |h: i64| answered + SignedDuration::from_hours(h);
    if meeting {
        let missing: Vec<BeliefStage> = if rng.chance(40) {
            vec![BeliefStage::CapabilityTrust]
        } else {
            Vec::new()
        };
        apply(Observation::BeliefDebtRecorded {
            lead: id,
            at: later(24),
            missing_stages: missing,
            unanswered_objections: Vec::new(),
        });
        apply(Observation::OutcomeRecorded {
            lead: id,
            stage: OutcomeStage::Meeting,
            reason: None,
            at: later(48),
        });
        if rng.chance(50) {
            apply(Observation::OutcomeRecorded {
                lead: id,
                stage: OutcomeStage::Opportunity,
                reason: None,
                at: later(24 * 7),
            });
            let won = rng.chance(40);
            apply(Observation::OutcomeRecorded {
                lead: id,
                stage: if won {
                    OutcomeStage::Won
                } else {
                    OutcomeStage::Lost
                },
                reason: (!won).then(|| {
                    rng.pick(&[
                        OutcomeReason::Competitor,
                        OutcomeReason::NoBudget,
                        OutcomeReason::Timing,
                    ])
                }),
                at: later(24 * 30),
            });
        }
    } else if rng.chance(30) {
        apply(Observation::OutcomeRecorded {
            lead: id,
            stage: rng.pick(&[OutcomeStage::Lost, OutcomeStage::Disqualified]),
            reason: Some(rng.pick(&[
                OutcomeReason::NotIcp,
                OutcomeReason::NoBudget,
                OutcomeReason::NoNeed,
                OutcomeReason::NoResponse,
                OutcomeReason::Timing,
            ])),
            at: later(24 * 25),
        });
    }
    fact
}

/// Rejected submission `n`: one for every twenty leads.
fn rejection(n: u64) -> RejectionFact {
    let mut rng = Rng(n ^ 0x0BAD_5EED);
    let (source, campaigns) = rng.pick(&SOURCES);
    let mut reasons: BTreeSet<String> = BTreeSet::new();
    reasons.insert(
        rng.pick(&[
            "invalid_email",
            "missing_required_field",
            "disposable_domain",
        ])
        .into(),
    );
    if rng.chance(30) {
        reasons.insert("missing_required_field".into());
    }
    RejectionFact {
        version: RejectionFact::VERSION,
        rejection: Uuid::from_u64_pair(0xBAD, n),
        source: source.into(),
        campaign: rng.pick(&campaigns).into(),
        channel: rng.pick(&CHANNELS).into(),
        received_at: year_start() + mins(rng.below(365 * 24 * 60)),
        reasons: reasons.into_iter().collect(),
    }
}

/// Stores `leads` facts and a rejection per twenty, from two loaders.
async fn load(db: &Db, leads: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let loaders = 2u64;
    let mut handles = Vec::new();
    for loader in 0..loaders {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            let mut n = loader * BATCH as u64;
            while n < leads {
                let end = (n + BATCH as u64).min(leads);
                let mut tx = db.begin().await?;
                for i in n..end {
                    Store::save_fact(&mut tx, &lead(i), None).await?;
                    if i % 20 == 0 {
                        Store::save_rejection(&mut tx, &rejection(i)).await?;
                    }
                }
                tx.commit().await?;
                n += loaders * BATCH as u64;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    // What autovacuum would have done by the time anyone reads a year of leads: statistics
    // for the planner, and hint bits and the visibility map set on the freshly written pages.
    if db.backend() == Backend::Postgres {
        for table in ["lead_facts", "lead_figures", "rejection_facts"] {
            sqlx::query(&format!("VACUUM ANALYZE {table}"))
                .execute(db.reader())
                .await?;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The median of `RUNS` timed runs of `work` in milliseconds, after one warm-up.
async fn median_ms<F, Fut>(work: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    work().await?;
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        work().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

async fn baseline(db: &Db, from: Timestamp, to: Timestamp) -> anyhow::Result<f64> {
    median_ms(|| async {
        sqlx::query(
            "SELECT source, COUNT(*) FROM lead_facts WHERE received_at >= $1 AND received_at < $2 \
             GROUP BY source",
        )
        .bind(runtime::db::to_micros(from))
        .bind(runtime::db::to_micros(to))
        .fetch_all(db.reader())
        .await?;
        Ok(())
    })
    .await
}

async fn measure(db: Db, label: &str, leads: u64) -> anyhow::Result<Vec<Row>> {
    db.migrate(&MIGRATIONS).await?;
    let load_s = load(&db, leads).await?;
    println!("feedback ({label}): {leads} lead facts stored in {load_s:.0} s");
    let clock = ManualClock::new("2026-01-15T00:00:00Z".parse()?);
    let svc = Feedback::new(
        Store::new(db.clone()),
        Playbook::fixed(FeedbackPlaybook::default()),
        Arc::new(clock),
    );
    let year = (year_start(), "2026-01-01T00:00:00Z".parse::<Timestamp>()?);
    let month = (
        "2025-06-01T00:00:00Z".parse::<Timestamp>()?,
        "2025-07-01T00:00:00Z".parse::<Timestamp>()?,
    );
    let base_year = baseline(&db, year.0, year.1).await?;
    let base_month = baseline(&db, month.0, month.1).await?;
    let mut rows = Vec::new();
    let mut row = |name: String, value: f64, base_name: &str, base: f64, note: String| {
        rows.push(Row {
            name: format!("feedback {name} ({label}, {leads} leads)"),
            value,
            unit: "ms".into(),
            baseline_name: format!("{base_name} ({label})"),
            baseline: base,
            ratio: value / base,
            note,
        });
    };
    // The first report finds no rollups of the playbook's rule: it starts their rebuild and
    // reads every lead from rows. The background fold then rebuilds them one grain per
    // transaction and folds the rest in chunks; its longest transaction is how long it holds
    // the figure rows (and SQLite's one writer) at a time.
    let started = Instant::now();
    svc.report(year.0, Some(year.1), GroupBy::Source).await?;
    let first_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let (mut steps, mut longest_ms) = (0u32, 0f64);
    loop {
        let step = Instant::now();
        let more = svc.fold_rollups().await?;
        longest_ms = longest_ms.max(step.elapsed().as_secs_f64() * 1000.0);
        steps += 1;
        if !more {
            break;
        }
    }
    let fold_s = started.elapsed().as_secs_f64();
    // The fold rewrote every figure row: what autovacuum would have done before long, as
    // after loading.
    if db.backend() == Backend::Postgres {
        for table in ["lead_figures", "lead_rollup", "lead_rollup_times"] {
            sqlx::query(&format!("VACUUM ANALYZE {table}"))
                .execute(db.reader())
                .await?;
        }
    }
    row(
        "first source report of the year, before any fold".into(),
        first_ms,
        "count(*) GROUP BY source, the year",
        base_year,
        "once per store (and per change of the playbook's rule): every lead from rows".into(),
    );
    row(
        "background fold, longest transaction".into(),
        longest_ms,
        "count(*) GROUP BY source, the year",
        base_year,
        format!("{steps} steps in {fold_s:.1} s, off the report path"),
    );
    let source_month = median_ms(|| async {
        svc.report(month.0, Some(month.1), GroupBy::Source).await?;
        Ok(())
    })
    .await?;
    row(
        "source report, a month".into(),
        source_month,
        "count(*) GROUP BY source, a month",
        base_month,
        String::new(),
    );
    let report = svc.report(year.0, Some(year.1), GroupBy::Source).await?;
    let source_year = median_ms(|| async {
        svc.report(year.0, Some(year.1), GroupBy::Source).await?;
        Ok(())
    })
    .await?;
    row(
        "source report, the year".into(),
        source_year,
        "count(*) GROUP BY source, the year",
        base_year,
        format!(
            "target < 1000 ms; {} leads in {} groups: {} fair, {} not fair, {} undetermined",
            report.total.accepted,
            report.groups.len(),
            report.total.verdicts.fair,
            report.total.verdicts.not_fair,
            report.total.verdicts.undetermined
        ),
    );
    let campaign_year = median_ms(|| async {
        svc.report(year.0, Some(year.1), GroupBy::Campaign).await?;
        Ok(())
    })
    .await?;
    row(
        "campaign report, the year".into(),
        campaign_year,
        "count(*) GROUP BY source, the year",
        base_year,
        "target < 1000 ms".into(),
    );
    let funnel_year = median_ms(|| async {
        svc.funnel(year.0, Some(year.1), None).await?;
        Ok(())
    })
    .await?;
    row(
        "funnel, the year".into(),
        funnel_year,
        "count(*) GROUP BY source, the year",
        base_year,
        "target < 1000 ms".into(),
    );
    let fair_year = median_ms(|| async {
        svc.verdicts(year.0, Some(year.1), Some(VerdictCode::NotFair), None, 100)
            .await?;
        Ok(())
    })
    .await?;
    row(
        "fair-chance listing (not fair, first 100), the year".into(),
        fair_year,
        "count(*) GROUP BY source, the year",
        base_year,
        "target < 1000 ms".into(),
    );
    // The cursor after the 50,000th not-fair lead, as a client paging there would hold it.
    let deep = svc
        .verdicts(
            year.0,
            Some(year.1),
            Some(VerdictCode::NotFair),
            None,
            50_000,
        )
        .await?
        .next;
    let fair_deep = median_ms(|| async {
        svc.verdicts(year.0, Some(year.1), Some(VerdictCode::NotFair), deep, 100)
            .await?;
        Ok(())
    })
    .await?;
    row(
        "fair-chance listing (not fair, page after 50,000), the year".into(),
        fair_deep,
        "count(*) GROUP BY source, the year",
        base_year,
        format!(
            "keyset paging{}",
            if deep.is_some() {
                ""
            } else {
                ": fewer than 50,000 not fair, so the first page"
            }
        ),
    );
    Ok(rows)
}

pub async fn run(args: &Args) -> anyhow::Result<Vec<Row>> {
    let leads = args.feedback_leads;
    let bench_db = BenchDb::create(&args.postgres).await?;
    let db = Db::connect(&bench_db.url, args.pool).await?;
    let postgres = measure(db, "PostgreSQL", leads).await;
    bench_db.drop().await;
    let mut rows = postgres?;
    if args.feedback_sqlite {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("feedback.db").display());
        let db = Db::connect(&url, args.pool).await?;
        rows.extend(measure(db, "SQLite", leads).await?);
    }
    Ok(rows)
}
