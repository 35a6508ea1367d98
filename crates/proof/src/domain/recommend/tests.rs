//! Tests of NextProof: gating, focus, matching, spacing, "nothing fits", and a seeded
//! simulation of the learning loop.

use rand::SeedableRng;
use rand::rngs::StdRng;
use runtime::playbook::parse;

use super::*;
use crate::domain::testing::{asset, at, day, playbook, state};
use crate::domain::{LeadProfile, Scoreboard, Sentiment, Signal};

fn rng() -> StdRng {
    StdRng::seed_from_u64(42)
}

/// No deliveries anywhere yet.
fn untried(_: &str, _: Stage, _: Option<Checkpoint>) -> Effectiveness {
    Effectiveness::default()
}

/// So much even evidence that draws barely vary: ranking is then decided by tags.
fn settled(_: &str, _: Stage, _: Option<Checkpoint>) -> Effectiveness {
    Effectiveness {
        successes: 5000,
        failures: 5000,
    }
}

/// The chosen asset's id, or a panic with what came instead.
#[track_caller]
fn chosen(r: &Recommendation) -> &str {
    match r {
        Recommendation::Asset { asset, .. } => &asset.id,
        other => panic!("expected an asset, got {other:#?}"),
    }
}

#[track_caller]
fn reason(r: &Recommendation) -> &str {
    match r {
        Recommendation::Asset { reason, .. }
        | Recommendation::Wait { reason, .. }
        | Recommendation::Nothing { reason, .. } => reason,
    }
}

/// Why each asset was passed over, by id.
#[track_caller]
fn passed(r: &Recommendation) -> Vec<(&str, &PassReason)> {
    match r {
        Recommendation::Asset { passed_over, .. } | Recommendation::Nothing { passed_over, .. } => {
            passed_over
                .iter()
                .map(|p| (p.asset.as_str(), &p.why))
                .collect()
        }
        Recommendation::Wait { .. } => panic!("a wait passes nothing over: {r:#?}"),
    }
}

fn three_stages() -> Vec<Asset> {
    vec![
        asset("trust", Stage::CapabilityTrust, &[]),
        asset("mechanism", Stage::MechanismUnderstanding, &[]),
        asset("aware", Stage::ProblemAwareness, &[]),
    ]
}

#[test]
fn proof_never_runs_ahead_of_belief() {
    let pb = playbook();
    let catalog = three_stages();
    let mut s = state();

    // Nothing installed: only problem-awareness proof.
    let r = s.next_proof(&catalog, untried, &pb, at("09:00"), &mut rng());
    assert_eq!(chosen(&r), "aware");
    assert_eq!(
        passed(&r),
        [
            (
                "trust",
                &PassReason::StageGated {
                    stage: Stage::CapabilityTrust,
                    frontier: Stage::ProblemAwareness
                }
            ),
            (
                "mechanism",
                &PassReason::StageGated {
                    stage: Stage::MechanismUnderstanding,
                    frontier: Stage::ProblemAwareness
                }
            ),
        ]
    );
    assert_eq!(
        reason(&r),
        "builds problem_awareness, the stage this lead is working toward (nothing installed \
         yet); untagged, fits every lead; the only candidate (not yet tried in this context)"
    );
    let Recommendation::Asset { context, .. } = &r else {
        unreachable!()
    };
    assert_eq!(
        *context,
        Context {
            stage: Stage::ProblemAwareness,
            checkpoint: None
        }
    );

    // Problem awareness installed: mechanism proof, still no capability proof.
    s.record_signal(
        Signal::Reply {
            sentiment: Sentiment::Positive,
        },
        at("10:00"),
    );
    let r = s.next_proof(&catalog, untried, &pb, at("11:00"), &mut rng());
    assert_eq!(chosen(&r), "mechanism");
    assert_eq!(
        passed(&r),
        [
            (
                "trust",
                &PassReason::StageGated {
                    stage: Stage::CapabilityTrust,
                    frontier: Stage::MechanismUnderstanding
                }
            ),
            (
                "aware",
                &PassReason::StageInstalled {
                    stage: Stage::ProblemAwareness,
                    frontier: Stage::MechanismUnderstanding
                }
            ),
        ]
    );

    // Mechanism understood: capability proof at last.
    s.record_signal(
        Signal::Note {
            shows: Some(Stage::MechanismUnderstanding),
        },
        at("12:00"),
    );
    let r = s.next_proof(&catalog, untried, &pb, at("12:00"), &mut rng());
    assert_eq!(chosen(&r), "trust");
    assert!(
        reason(&r).contains("(mechanism_understanding installed)"),
        "{}",
        reason(&r)
    );
}

#[test]
fn with_no_proof_for_the_frontier_an_installed_stage_is_reinforced() {
    let pb = playbook();
    let catalog = vec![
        asset("aware", Stage::ProblemAwareness, &[]),
        asset("trust", Stage::CapabilityTrust, &[]),
    ];
    let mut s = state();
    s.record_signal(
        Signal::Reply {
            sentiment: Sentiment::Positive,
        },
        at("10:00"),
    );
    let r = s.next_proof(&catalog, untried, &pb, at("11:00"), &mut rng());
    assert_eq!(chosen(&r), "aware");
    assert!(
        reason(&r).starts_with(
            "no proof for mechanism_understanding fits this lead yet; reinforces \
             problem_awareness, already installed"
        ),
        "{}",
        reason(&r)
    );
}

fn security_pack_withdrawn() -> Asset {
    let mut pack = asset(
        "security-pack",
        Stage::CapabilityTrust,
        &[Checkpoint::SecurityCompliance],
    );
    pack.active = false;
    pack
}

#[test]
fn an_objection_is_answered_by_proof_from_any_stage_once_the_problem_is_seen() {
    let pb = playbook();
    let catalog = vec![
        asset("demo", Stage::MechanismUnderstanding, &[]),
        asset(
            "security-pack",
            Stage::CapabilityTrust,
            &[Checkpoint::SecurityCompliance],
        ),
    ];
    let mut s = state();
    // Without the objection, capability proof stays behind the frontier.
    s.record_signal(
        Signal::Reply {
            sentiment: Sentiment::Positive,
        },
        at("09:00"),
    );
    let r = s.next_proof(&catalog, untried, &pb, at("09:10"), &mut rng());
    assert_eq!(chosen(&r), "demo");
    // The buyer asks about security: the security pack answers it now.
    s.record_objection(Checkpoint::SecurityCompliance, "SOC 2?", at("09:20"));
    let r = s.next_proof(&catalog, untried, &pb, at("09:30"), &mut rng());
    assert_eq!(chosen(&r), "security-pack");
}

#[test]
fn an_open_objection_comes_first() {
    let pb = playbook();
    let catalog = vec![
        asset("demo", Stage::MechanismUnderstanding, &[]),
        asset("roi", Stage::MechanismUnderstanding, &[Checkpoint::Price]),
        security_pack_withdrawn(),
        asset("aware", Stage::ProblemAwareness, &[]),
    ];
    let mut s = state();
    s.record_signal(
        Signal::Reply {
            sentiment: Sentiment::Positive,
        },
        at("09:00"),
    );
    // Before any objection, the demo wins on this seed; the ROI calculator is a candidate too.
    let before = s.next_proof(&catalog, untried, &pb, at("09:30"), &mut rng());
    assert!(
        passed(&before)
            .iter()
            .all(|(_, why)| why.code() != "not_for_objection")
    );

    // A security objection first (nothing may answer it: the pack is withdrawn), then a
    // price objection.
    s.record_objection(
        Checkpoint::SecurityCompliance,
        "Legal needs your SOC 2 report",
        at("10:00"),
    );
    s.record_objection(
        Checkpoint::Price,
        "This is more than we pay for the CRM",
        at("10:05"),
    );
    let r = s.next_proof(&catalog, untried, &pb, at("10:10"), &mut rng());
    assert_eq!(chosen(&r), "roi");
    assert_eq!(
        passed(&r),
        [
            (
                "demo",
                &PassReason::NotForObjection {
                    checkpoint: Checkpoint::Price
                }
            ),
            ("security-pack", &PassReason::Inactive),
            (
                "aware",
                &PassReason::NotForObjection {
                    checkpoint: Checkpoint::Price
                }
            ),
        ]
    );
    assert_eq!(
        reason(&r),
        "answers the open price objection raised at 2025-03-03T10:05:00Z (\"This is more than \
         we pay for the CRM\"); no eligible proof answers the earlier open security_compliance \
         objection yet; untagged, fits every lead; the only candidate (not yet tried in this \
         context)"
    );
    let Recommendation::Asset { context, .. } = &r else {
        unreachable!()
    };
    assert_eq!(
        *context,
        Context {
            stage: Stage::MechanismUnderstanding,
            checkpoint: Some(Checkpoint::Price)
        }
    );
    assert_eq!(
        r.change(),
        Some(Change::ProofRecommended {
            asset: "roi".into(),
            context: *context,
            reason: reason(&r).into(),
        })
    );

    // The ROI calculator goes out and answers it; once the security pack is back in use,
    // the security objection's answer comes first.
    let roi = catalog[1].clone();
    s.record_delivery(&roi, at("10:15")).unwrap();
    let mut catalog = catalog;
    catalog[2].active = true;
    let r = s.next_proof(&catalog, untried, &pb, day(6, "09:00"), &mut rng());
    assert_eq!(chosen(&r), "security-pack");
    assert!(
        reason(&r).starts_with("answers the open security_compliance objection"),
        "{}",
        reason(&r)
    );
}

#[test]
fn proof_sent_before_the_concern_may_be_sent_again_to_answer_it() {
    let pb = playbook();
    let catalog = vec![asset("roi", Stage::ProblemAwareness, &[Checkpoint::Price])];
    let mut s = state();
    s.record_delivery(&catalog[0], day(1, "09:00")).unwrap();
    let r = s.next_proof(&catalog, untried, &pb, day(4, "09:00"), &mut rng());
    assert!(matches!(r, Recommendation::Nothing { .. }), "{r:#?}");

    s.record_objection(Checkpoint::Price, "too dear", day(4, "10:00"));
    let r = s.next_proof(&catalog, untried, &pb, day(4, "10:00"), &mut rng());
    assert_eq!(chosen(&r), "roi");
    assert!(
        reason(&r).contains("sent again: it went out before the concern was raised"),
        "{}",
        reason(&r)
    );
}

#[test]
fn assets_match_the_lead_by_segment_industry_and_persona() {
    let pb = playbook();
    let tagged = |id: &str, segments: &[&str], industries: &[&str], personas: &[&str]| Asset {
        segments: segments.iter().map(|s| s.to_string()).collect(),
        industries: industries.iter().map(|s| s.to_string()).collect(),
        personas: personas.iter().map(|s| s.to_string()).collect(),
        ..asset(id, Stage::ProblemAwareness, &[])
    };
    let catalog = vec![
        tagged("generic", &[], &[], &[]),
        tagged("smb-only", &["smb"], &[], &[]),
        tagged("enterprise", &["enterprise", "mid_market"], &[], &[]),
        tagged("logistics-cfo", &[], &["Logistics"], &["cfo"]),
        tagged("healthcare", &[], &["healthcare"], &[]),
        tagged("it-security", &[], &[], &["ciso"]),
    ];
    let mut s = state();
    s.profile = LeadProfile::new("Enterprise", "logistics ", "");

    // The CFO asset is for a persona we do not know: it does not fit.
    let r = s.next_proof(&catalog, settled, &pb, at("09:00"), &mut rng());
    assert_eq!(chosen(&r), "enterprise");
    let why = passed(&r);
    assert_eq!(why[1].0, "smb-only");
    assert_eq!(why[1].1.to_string(), "for segment smb, not Enterprise");
    assert_eq!(
        why[2],
        (
            "logistics-cfo",
            &PassReason::TagMismatch {
                tag: Tag::Persona,
                wanted: vec!["cfo".into()],
                lead: String::new()
            }
        )
    );
    assert_eq!(
        why[2].1.to_string(),
        "for persona cfo, and the lead's persona is unknown"
    );
    assert_eq!(
        why[3].1.to_string(),
        "for industry healthcare, not logistics"
    );
    assert_eq!(why[0].1.code(), "ranked_lower");
    assert!(
        reason(&r).contains("matches 1 of the lead's tags"),
        "{}",
        reason(&r)
    );

    // Known as a CFO now: the asset naming two of the lead's tags outranks the one naming
    // one, which outranks the untagged one.
    s.update_profile(&LeadProfile::new("", "", "CFO"));
    let r = s.next_proof(&catalog, settled, &pb, at("09:00"), &mut rng());
    assert_eq!(chosen(&r), "logistics-cfo");
    let score = |id: &str| match passed(&r).iter().find(|(a, _)| *a == id).unwrap().1 {
        PassReason::RankedLower { score, .. } => *score,
        other => panic!("{id}: {other:?}"),
    };
    assert!(score("enterprise") > score("generic") + 0.05);
    assert!(
        reason(&r).contains("matches 2 of the lead's tags; ranked first of 3"),
        "{}",
        reason(&r)
    );
}

#[test]
fn an_asset_is_not_repeated_and_inactive_ones_are_skipped() {
    let pb = playbook();
    let mut retired = asset("retired", Stage::ProblemAwareness, &[]);
    retired.active = false;
    let catalog = vec![
        asset("first", Stage::ProblemAwareness, &[]),
        retired,
        asset("second", Stage::ProblemAwareness, &[]),
    ];
    let mut s = state();
    let mut sent = Vec::new();
    for d in [1, 4] {
        let r = s.next_proof(&catalog, untried, &pb, day(d, "09:00"), &mut rng());
        let id = chosen(&r).to_owned();
        assert!(passed(&r).contains(&("retired", &PassReason::Inactive)));
        let asset = catalog.iter().find(|a| a.id == id).unwrap();
        s.record_delivery(asset, day(d, "09:00")).unwrap();
        sent.push(id);
    }
    sent.sort();
    assert_eq!(sent, ["first", "second"]);

    let r = s.next_proof(&catalog, untried, &pb, day(8, "09:00"), &mut rng());
    assert_eq!(
        r,
        Recommendation::Nothing {
            reason: "no proof fits this lead now: of 3 assets, 2 already delivered, 1 inactive"
                .into(),
            passed_over: vec![
                PassedOver {
                    asset: "first".into(),
                    why: PassReason::AlreadyDelivered {
                        at: s.delivered_at("first").unwrap()
                    },
                },
                PassedOver {
                    asset: "retired".into(),
                    why: PassReason::Inactive
                },
                PassedOver {
                    asset: "second".into(),
                    why: PassReason::AlreadyDelivered {
                        at: s.delivered_at("second").unwrap()
                    },
                },
            ],
        }
    );
}

#[test]
fn proof_waits_for_the_spacing_unless_the_buyer_asked() {
    // The test playbook spaces deliveries 2 days apart.
    let pb = playbook();
    let catalog = vec![
        asset("a", Stage::ProblemAwareness, &[]),
        asset("b", Stage::ProblemAwareness, &[]),
        asset("roi", Stage::MechanismUnderstanding, &[Checkpoint::Price]),
    ];
    let mut s = state();
    s.record_delivery(&catalog[0], day(3, "09:00")).unwrap();

    let r = s.next_proof(&catalog, untried, &pb, day(4, "15:00"), &mut rng());
    assert_eq!(
        r,
        Recommendation::Wait {
            until: day(5, "09:00"),
            reason: "the last proof (a) went out at 2025-03-03T09:00:00Z; proof to one lead is \
                     spaced 48h apart, so the next can go at 2025-03-05T09:00:00Z"
                .into(),
        }
    );
    assert_eq!(
        chosen(&s.next_proof(&catalog, untried, &pb, day(5, "09:00"), &mut rng())),
        "b"
    );

    // An objection raised since the last delivery is answered at once.
    s.record_objection(Checkpoint::Price, "pricey", day(3, "11:00"));
    let r = s.next_proof(&catalog, untried, &pb, day(3, "11:30"), &mut rng());
    assert_eq!(chosen(&r), "roi");

    // One raised before it waits like any other proof.
    let mut s = state();
    s.record_objection(Checkpoint::Price, "pricey", day(3, "08:00"));
    s.record_delivery(&catalog[0], day(3, "09:00")).unwrap();
    let r = s.next_proof(&catalog, untried, &pb, day(3, "11:30"), &mut rng());
    assert!(
        matches!(r, Recommendation::Wait { until, .. } if until == day(5, "09:00")),
        "{r:#?}"
    );
}

#[test]
fn nothing_fits_says_why() {
    let pb = playbook();
    let mut s = state();
    let r = s.next_proof(&[], untried, &pb, at("09:00"), &mut rng());
    assert_eq!(
        r,
        Recommendation::Nothing {
            reason: "the catalog has no assets; add them to the playbook's [[proof.assets]] or \
                     with UpsertAsset"
                .into(),
            passed_over: vec![],
        }
    );

    let mut smb = asset("smb-case", Stage::ProblemAwareness, &[]);
    smb.segments = vec!["smb".into()];
    let catalog = vec![
        asset(
            "security-pack",
            Stage::CapabilityTrust,
            &[Checkpoint::SecurityCompliance],
        ),
        asset(
            "reference",
            Stage::CapabilityTrust,
            &[Checkpoint::RiskOfFailure],
        ),
        smb,
    ];
    s.profile = LeadProfile::new("enterprise", "", "");
    s.record_objection(
        Checkpoint::SwitchingCost,
        "Moving off our CRM?",
        at("09:00"),
    );
    let r = s.next_proof(&catalog, untried, &pb, at("09:30"), &mut rng());
    assert_eq!(
        reason(&r),
        "no proof fits this lead now: of 3 assets, 2 serve a stage beyond \
         mechanism_understanding (problem_awareness installed), 1 for other segments, \
         industries or personas; nothing eligible answers the open switching_cost objection"
    );
    assert_eq!(r.change(), None);
}

#[test]
fn without_deviation_the_best_record_wins() {
    let pb: ProofPlaybook = parse(
        "p.toml",
        "[proof]\n[proof.exploration]\nmax_deviation = 0.0\n",
    )
    .unwrap();
    let catalog = vec![
        asset("new", Stage::ProblemAwareness, &[]),
        asset("proven", Stage::ProblemAwareness, &[]),
        asset("weak", Stage::ProblemAwareness, &[]),
    ];
    let record = |id: &str, _: Stage, _: Option<Checkpoint>| match id {
        "proven" => Effectiveness {
            successes: 12,
            failures: 8,
        },
        "weak" => Effectiveness {
            successes: 1,
            failures: 9,
        },
        _ => Effectiveness::default(),
    };
    let mut rng = rng();
    for _ in 0..20 {
        // Means: new 0.5 (the prior), proven 13/22, weak 2/12.
        let r = state().next_proof(&catalog, record, &pb, at("09:00"), &mut rng);
        assert_eq!(chosen(&r), "proven");
        assert!(
            reason(&r)
                .contains("ranked first of 3 at 0.59 (12 of 20 deliveries in this context worked)"),
            "{}",
            reason(&r)
        );
    }
}

/// The learning loop end to end: four assets fit every lead; one truly works 40% of the
/// time, the others 10%. Leads arrive one after another; each gets the recommended asset,
/// the world answers at the true rate, the outcome settles and is counted. Thompson sampling
/// must find the strong asset and still have tried every asset.
#[test]
fn thompson_sampling_learns_which_proof_works() {
    const ROUNDS: usize = 300;
    const TAIL: usize = 100;
    let pb = playbook();
    let catalog = vec![
        asset("weak-a", Stage::ProblemAwareness, &[]),
        asset("weak-b", Stage::ProblemAwareness, &[]),
        asset("strong", Stage::ProblemAwareness, &[]),
        asset("weak-c", Stage::ProblemAwareness, &[]),
    ];
    let true_rate = |id: &str| if id == "strong" { 0.4 } else { 0.1 };
    let mut board = Scoreboard::default();
    let mut choose_rng = StdRng::seed_from_u64(2025);
    let mut world = StdRng::seed_from_u64(7);
    let mut picks = Vec::new();
    for round in 0..ROUNDS {
        let mut lead = state();
        let now = day(1, "09:00") + jiff::SignedDuration::from_mins(round as i64);
        let r = lead.next_proof(
            &catalog,
            |a, s, c| board.get(a, s, c),
            &pb,
            now,
            &mut choose_rng,
        );
        let id = chosen(&r).to_owned();
        let asset = catalog.iter().find(|a| a.id == id).unwrap();
        lead.record_delivery(asset, now).unwrap();
        if world.random::<f64>() < true_rate(&id) {
            lead.record_signal(
                Signal::Reply {
                    sentiment: Sentiment::Positive,
                },
                now + jiff::SignedDuration::from_hours(20),
            );
        }
        let outcomes = lead.settle_outcomes(now + jiff::SignedDuration::from_hours(24 * 8), &pb);
        assert_eq!(outcomes.len(), 1, "each delivery settles once");
        board.record(&outcomes[0]);
        picks.push(id);
    }
    let tried = |id: &str| picks.iter().filter(|p| *p == id).count();
    let strong_in_tail = picks[ROUNDS - TAIL..]
        .iter()
        .filter(|p| *p == "strong")
        .count();
    let counts: Vec<_> = catalog
        .iter()
        .map(|a| (a.id.as_str(), tried(&a.id)))
        .collect();
    assert!(
        strong_in_tail >= 80,
        "the strong asset won {strong_in_tail} of the last {TAIL}; picks {counts:?}"
    );
    for asset in &catalog {
        assert!(
            tried(&asset.id) >= 5,
            "{} tried {} times: {counts:?}",
            asset.id,
            tried(&asset.id)
        );
    }
}
