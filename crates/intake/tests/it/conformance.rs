//! The intake store conformance suite, instantiated per backend.

use std::sync::Arc;

use futures::StreamExt;
use intake::domain::{ConsentBasis, IcpTier, LeadInput, RejectionState};
use intake::playbook::IntakePlaybook;
use intake::service::{Intake, IntakeError, ReviewAction, Submitted};
use intake::store::{MIGRATIONS, Store};
use jiff::{SignedDuration, Timestamp};
use prost::Message;
use proto::events::v1::SubscribeFrom;
use runtime::playbook::Playbook;
use runtime::{Db, EventLog, ManualClock};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;

pub const PLAYBOOK: &str = r#"
[intake]
duplicate_window = "30d"
blocked_email_domains = ["mailinator.com"]

[intake.sources.event-badge-scan]
required = ["contact.company", "contact.email|contact.phone"]

[[intake.icp]]
tier = "A"
when = [{ field = "attributes.employees", min = 200, max = 5000 }, { field = "contact.country", any_of = ["DE", "GB"] }]
"#;

pub struct Fixture {
    pub intake: Intake,
    pub clock: ManualClock,
    pub db: Db,
    _test_db: TestDb,
}

pub async fn fixture(test_db: TestDb) -> Fixture {
    let db = test_db.connect(&MIGRATIONS).await;
    let playbook: IntakePlaybook = runtime::playbook::parse("test.toml", PLAYBOOK).unwrap();
    let clock = ManualClock::new("2026-11-02T09:00:00Z".parse().unwrap());
    let intake = Intake::new(
        Store::new(db.clone()),
        EventLog::new(db.clone(), "intake"),
        Playbook::fixed(playbook),
        Arc::new(clock.clone()),
    );
    Fixture {
        intake,
        clock,
        db,
        _test_db: test_db,
    }
}

pub fn lead(email: &str) -> LeadInput {
    let mut input = LeadInput::default();
    input.contact.name = "Ada Lovelace".into();
    input.contact.email = email.into();
    input.contact.company = "Analytical Engines".into();
    input.contact.country = "GB".into();
    input.source.source = "website-demo-form".into();
    input.source.campaign = "q4-demo".into();
    input.source.message = "Can we see routing for 40 reps?".into();
    input.attributes.insert("employees".into(), "450".into());
    input
}

/// Event types on the log, in order (waits until `n` are readable).
async fn event_types(intake: &Intake, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let events = intake
            .log()
            .read_after(Default::default(), 1000)
            .await
            .unwrap();
        if events.len() >= n {
            return events.iter().map(|e| e.short_type().to_owned()).collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} events");
}

pub async fn accepts_and_preserves_everything(f: Fixture) {
    let mut input = lead("  Ada@Example.COM ");
    input.contact.phone = "+44 20 7946 0958".into();
    input.source.utm.source = "google".into();
    input.consent.basis = ConsentBasis::OptIn;
    let Submitted::Accepted(lead) = f.intake.submit(input.clone(), None).await.unwrap() else {
        panic!("not accepted")
    };
    assert_eq!(lead.input.contact.email, "ada@example.com");
    assert_eq!(lead.input.contact.phone, "+442079460958");
    assert_eq!(lead.icp_tier, IcpTier::A);
    assert!(lead.completeness_score > 50);
    assert!(!lead.do_not_contact);
    let read = f.intake.lead(lead.id).await.unwrap();
    assert_eq!(read, lead);
    assert_eq!(read.input.source.message, input.source.message);
    assert_eq!(read.input.attributes, input.attributes);
    assert_eq!(event_types(&f.intake, 1).await, ["LeadAccepted"]);
}

pub async fn merges_duplicates_within_the_window_only(f: Fixture) {
    let Submitted::Accepted(first) = f
        .intake
        .submit(lead("ada@example.com"), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    f.clock.advance(SignedDuration::from_hours(24 * 10));
    let mut again = lead("ADA@example.com");
    again.source.source = "webinar".into();
    again.source.campaign = "webinar-nov".into();
    let Submitted::Merged(merged) = f.intake.submit(again, None).await.unwrap() else {
        panic!("not merged")
    };
    assert_eq!(merged.id, first.id);
    assert_eq!(merged.touches.len(), 1);
    assert_eq!(merged.touches[0].input.source.campaign, "webinar-nov");
    // The lead keeps its first context; the touch carries the new one.
    assert_eq!(merged.input.source.campaign, "q4-demo");

    // Beyond the window the contact becomes a new lead.
    f.clock.advance(SignedDuration::from_hours(24 * 25));
    let Submitted::Accepted(later) = f
        .intake
        .submit(lead("ada@example.com"), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_ne!(later.id, first.id);
    // ...and later duplicates merge into the new one.
    let Submitted::Merged(m) = f
        .intake
        .submit(lead("ada@example.com"), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m.id, later.id);
    assert_eq!(
        event_types(&f.intake, 4).await,
        ["LeadAccepted", "LeadMerged", "LeadAccepted", "LeadMerged"]
    );
}

pub async fn retries_with_the_same_key_get_the_original_answer(f: Fixture) {
    let first = f
        .intake
        .submit(lead("grace@example.com"), Some("form-123"))
        .await
        .unwrap();
    f.clock.advance(SignedDuration::from_mins(1));
    let retry = f
        .intake
        .submit(lead("grace@example.com"), Some("form-123"))
        .await
        .unwrap();
    assert_eq!(retry, first);
    let conflict = f
        .intake
        .submit(lead("other@example.com"), Some("form-123"))
        .await
        .unwrap_err();
    assert!(matches!(conflict, IntakeError::IdempotencyConflict));
    // One lead, one event: the retry changed nothing.
    assert_eq!(event_types(&f.intake, 1).await, ["LeadAccepted"]);
    assert_eq!(f.intake.log().count().await.unwrap(), 1);
}

pub async fn malformed_leads_are_refused_and_leave_nothing(f: Fixture) {
    let mut bad = lead("not-an-email");
    bad.contact.phone = "12".into();
    let IntakeError::Invalid(problems) = f.intake.submit(bad, Some("k")).await.unwrap_err() else {
        panic!()
    };
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"contact.email"), "{fields:?}");
    assert!(fields.contains(&"contact.phone"), "{fields:?}");
    assert_eq!(f.intake.log().count().await.unwrap(), 0);
    // The key was not consumed by the refused request.
    assert!(matches!(
        f.intake
            .submit(lead("ok@example.com"), Some("k"))
            .await
            .unwrap(),
        Submitted::Accepted(_)
    ));
}

pub async fn rejections_wait_for_review_and_can_be_reconsidered(f: Fixture) {
    let mut scan = lead("lin@example.com");
    scan.source.source = "event-badge-scan".into();
    scan.contact.company = String::new();
    let Submitted::Rejected(rejection) = f.intake.submit(scan.clone(), None).await.unwrap() else {
        panic!()
    };
    assert_eq!(rejection.problems[0].code, "missing_required_field");
    assert_eq!(rejection.problems[0].field, "contact.company");
    let mut blocked = lead("bot@mailinator.com");
    blocked.source.campaign = "spam".into();
    let Submitted::Rejected(second) = f.intake.submit(blocked, None).await.unwrap() else {
        panic!()
    };

    let pending = f
        .intake
        .rejections(RejectionState::Pending, "", None, 10)
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|r| r.id).collect::<Vec<_>>(),
        [second.id, rejection.id]
    );
    let page = f
        .intake
        .rejections(RejectionState::Pending, "", Some(second.id), 10)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rejection.id]
    );
    let by_source = f
        .intake
        .rejections(RejectionState::Pending, "event-badge-scan", None, 10)
        .await
        .unwrap();
    assert_eq!(by_source.len(), 1);

    // Re-evaluating unchanged still fails and stays pending.
    let (still, lead_made) = f
        .intake
        .reconsider(rejection.id, None, ReviewAction::Reevaluate, "")
        .await
        .unwrap();
    assert!(lead_made.is_none());
    assert_eq!(still.state, RejectionState::Pending);

    // With the correction it becomes a lead.
    scan.contact.company = "Lin Labs".into();
    let (done, made) = f
        .intake
        .reconsider(
            rejection.id,
            Some(scan),
            ReviewAction::Reevaluate,
            "fixed company",
        )
        .await
        .unwrap();
    let Some(Submitted::Accepted(lead)) = made else {
        panic!("not accepted")
    };
    assert_eq!(done.state, RejectionState::Accepted);
    assert_eq!(done.lead_id, Some(lead.id));
    assert_eq!(lead.input.contact.company, "Lin Labs");
    let again = f
        .intake
        .reconsider(rejection.id, None, ReviewAction::AcceptAsIs, "")
        .await
        .unwrap_err();
    assert!(matches!(again, IntakeError::AlreadyReviewed));

    let (dismissed, none) = f
        .intake
        .reconsider(second.id, None, ReviewAction::Dismiss, "spam")
        .await
        .unwrap();
    assert!(none.is_none());
    assert_eq!(dismissed.state, RejectionState::Dismissed);
    assert!(
        f.intake
            .rejections(RejectionState::Pending, "", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        event_types(&f.intake, 3).await,
        ["LeadRejected", "LeadRejected", "LeadAccepted"]
    );
    // The lead accepted on review names the submission it was, so reports count it once.
    let events = f
        .intake
        .log()
        .read_after(Default::default(), 10)
        .await
        .unwrap();
    let accepted = proto::intake::v1::LeadAccepted::decode(events[2].payload.as_slice()).unwrap();
    assert_eq!(accepted.from_rejection_id, rejection.id.to_string());
    assert!(!accepted.rejection_codes.is_empty());
}

pub async fn opt_out_flags_existing_and_future_leads(f: Fixture) {
    let Submitted::Accepted(before) = f
        .intake
        .submit(lead("kim@example.com"), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    let opted = f
        .intake
        .opt_out(" KIM@example.com", "", "unsubscribe link")
        .await
        .unwrap();
    assert_eq!(opted.lead_ids, [before.id]);
    assert!(opted.newly_suppressed);
    assert!(f.intake.lead(before.id).await.unwrap().do_not_contact);
    assert!(
        !f.intake
            .opt_out("kim@example.com", "", "again")
            .await
            .unwrap()
            .newly_suppressed
    );

    // A later submission (beyond the window) is a new lead, do-not-contact from the start.
    f.clock.advance(SignedDuration::from_hours(24 * 40));
    let Submitted::Accepted(after) = f
        .intake
        .submit(lead("kim@example.com"), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(after.do_not_contact);
    // So is a lead that gave no consent.
    let mut no_consent = lead("lee@example.com");
    no_consent.consent.basis = ConsentBasis::None;
    let Submitted::Accepted(nc) = f.intake.submit(no_consent, None).await.unwrap() else {
        panic!()
    };
    assert!(nc.do_not_contact);
    let IntakeError::Invalid(p) = f.intake.opt_out("nope", "", "").await.unwrap_err() else {
        panic!()
    };
    assert_eq!(p[0].field, "email");
    assert_eq!(
        event_types(&f.intake, 4).await,
        [
            "LeadAccepted",
            "ContactOptedOut",
            "LeadAccepted",
            "LeadAccepted"
        ]
    );
}

pub async fn opt_out_before_the_first_lead_still_applies(f: Fixture) {
    let opted = f
        .intake
        .opt_out("new@example.com", "", "asked at the booth")
        .await
        .unwrap();
    assert!(opted.lead_ids.is_empty());
    let Submitted::Accepted(first) = f
        .intake
        .submit(lead("new@example.com"), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(first.do_not_contact);
    // The contact now points at that lead: a duplicate merges into it.
    let Submitted::Merged(merged) = f
        .intake
        .submit(lead("new@example.com"), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(merged.id, first.id);
}

pub async fn bulk_submit_gives_every_item_its_own_result(f: Fixture) {
    let mut items = Vec::new();
    for n in 0..600 {
        let mut input = lead(&format!("person{n}@example.com"));
        if n % 100 == 7 {
            input.contact.email = "broken".into();
        }
        if n % 100 == 9 {
            *input.contact.email = format!("bot{n}@mailinator.com");
        }
        items.push((input, None));
    }
    items.push((lead("person1@example.com"), None));
    let results = f.intake.submit_many(items).await.unwrap();
    assert_eq!(results.len(), 601);
    let invalid = results
        .iter()
        .filter(|r| matches!(r, Err(IntakeError::Invalid(_))))
        .count();
    let rejected = results
        .iter()
        .filter(|r| matches!(r, Ok(Submitted::Rejected(_))))
        .count();
    let merged = results
        .iter()
        .filter(|r| matches!(r, Ok(Submitted::Merged(_))))
        .count();
    let accepted = results
        .iter()
        .filter(|r| matches!(r, Ok(Submitted::Accepted(_))))
        .count();
    assert_eq!((accepted, merged, rejected, invalid), (588, 1, 6, 6));
    assert!(matches!(results[7], Err(IntakeError::Invalid(_))));
    assert_eq!(f.intake.log().count().await.unwrap(), 595);
}

pub async fn one_batch_with_repeats_decides_like_separate_calls(f: Fixture) {
    let items = vec![
        (lead("dup@example.com"), Some("k1".to_owned())),
        (lead("dup@example.com"), Some("k1".to_owned())),
        (lead("DUP@example.com"), None),
        (lead("other@example.com"), Some("k1".to_owned())),
    ];
    let results = f.intake.submit_many(items).await.unwrap();
    let Ok(Submitted::Accepted(first)) = &results[0] else {
        panic!("{:?}", results[0])
    };
    assert_eq!(
        results[1].as_ref().unwrap(),
        &Submitted::Accepted(first.clone()),
        "a repeated key is a retry"
    );
    let Ok(Submitted::Merged(merged)) = &results[2] else {
        panic!("{:?}", results[2])
    };
    assert_eq!(merged.id, first.id);
    assert_eq!(merged.touches.len(), 1);
    assert!(matches!(results[3], Err(IntakeError::IdempotencyConflict)));
    // The stored answer of the key is the first item's.
    let retry = f
        .intake
        .submit(lead("dup@example.com"), Some("k1"))
        .await
        .unwrap();
    assert_eq!(retry, Submitted::Accepted(first.clone()));
    assert_eq!(
        event_types(&f.intake, 2).await,
        ["LeadAccepted", "LeadMerged"]
    );
}

/// A batch answers each merge with its lead as the batch leaves it (every touch of the batch,
/// flagged by a touch without consent), and stores exactly what it answered, whether the
/// lead was stored before the batch or created by it.
pub async fn a_batch_answers_what_it_stores(f: Fixture) {
    let Submitted::Accepted(stored) = f
        .intake
        .submit(lead("kept@example.com"), None)
        .await
        .unwrap()
    else {
        panic!("accepted")
    };
    let mut no_consent = lead("kept@example.com");
    no_consent.consent.basis = ConsentBasis::None;
    let mut new_without_consent = lead("fresh@example.com");
    new_without_consent.consent.basis = ConsentBasis::None;
    let items = vec![
        (no_consent, None),
        (lead("fresh@example.com"), None),
        (new_without_consent, None),
        (lead("kept@example.com"), None),
    ];
    let results = f.intake.submit_many(items).await.unwrap();
    let answered = |i: usize| match &results[i] {
        Ok(Submitted::Accepted(lead) | Submitted::Merged(lead)) => lead.clone(),
        other => panic!("item {i}: {other:?}"),
    };
    let (kept, fresh) = (answered(0), answered(1));
    assert_eq!(kept.id, stored.id);
    assert!(matches!(results[0], Ok(Submitted::Merged(_))));
    assert!(matches!(results[1], Ok(Submitted::Accepted(_))));
    assert!(
        kept.do_not_contact,
        "a touch without consent flags the lead"
    );
    assert_eq!(kept.touches.len(), 2, "both of the batch's touches");
    assert_eq!(answered(3), kept);
    assert_eq!(answered(2).id, fresh.id);
    assert!(answered(2).do_not_contact && fresh.do_not_contact);
    assert_eq!(answered(2).touches.len(), 1);
    assert_eq!(f.intake.lead(kept.id).await.unwrap(), kept);
    assert_eq!(f.intake.lead(fresh.id).await.unwrap(), answered(2));
    let _ = f.db;
}

pub async fn subscribe_streams_intake_events(f: Fixture) {
    f.intake
        .submit(lead("sam@example.com"), None)
        .await
        .unwrap();
    event_types(&f.intake, 1).await;
    let stop = CancellationToken::new();
    let mut stream = f
        .intake
        .log()
        .subscribe(SubscribeFrom::default(), stop.clone())
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.event_type, "LeadAccepted");
    assert_eq!(first.source_service, "intake");
    f.intake
        .opt_out("sam@example.com", "", "asked on call")
        .await
        .unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.event_type, "ContactOptedOut");
    stop.cancel();
    let _ = f.db;
}

/// An erased person leaves no trace in any table or event of intake: their accepted lead,
/// a merged re-submission, a rejected submission and an idempotent retry record are blanked
/// or dropped, the ids and counts stay, the erasure is on the audit trail and announced with
/// ids only, and repeating it finds nothing more. Another person's data is untouched.
pub async fn erasure_leaves_no_trace_and_keeps_the_counts(f: Fixture) {
    const EMAIL: &str = "canary.erasure@example.com";
    const PHONE: &str = "+44 20 7946 0321";
    const PHONE_E164: &str = "+442079460321";
    const NAME: &str = "Canaryname Erasure";
    const WORDS: &str = "canary words about routing";
    let mut first = lead(EMAIL);
    first.contact.name = NAME.into();
    *first.contact.phone = PHONE.to_owned();
    first.source.message = WORDS.into();
    let Submitted::Accepted(accepted) = f
        .intake
        .submit(first.clone(), Some("canary-key"))
        .await
        .unwrap()
    else {
        panic!("accepted")
    };
    let Submitted::Merged(_) = f.intake.submit(first.clone(), None).await.unwrap() else {
        panic!("merged")
    };
    let mut scan = first.clone();
    scan.source.source = "event-badge-scan".into();
    scan.contact.company = String::new();
    let Submitted::Rejected(rejection) = f.intake.submit(scan, None).await.unwrap() else {
        panic!("rejected")
    };
    let Submitted::Accepted(other) = f
        .intake
        .submit(lead("other@example.com"), None)
        .await
        .unwrap()
    else {
        panic!("accepted")
    };
    let needles = [EMAIL, PHONE_E164, NAME, WORDS];
    assert!(
        !testkit::scan::find_values(&f.db, &needles).await.is_empty(),
        "the search finds the canaries before the erasure"
    );

    let erased = f
        .intake
        .erase_contact(" Canary.Erasure@example.com", "", "DSR-1")
        .await
        .unwrap();
    assert_eq!(erased.lead_ids, [accepted.id]);
    assert_eq!(erased.rejection_ids, [rejection.id]);
    assert!(erased.events_rewritten >= 3, "{erased:?}");
    assert_eq!(testkit::scan::find_values(&f.db, &needles).await, []);

    // The ids and what reports count by stay; the person does not.
    let kept = f.intake.lead(accepted.id).await.unwrap();
    assert_eq!(kept.input.source.source, "website-demo-form");
    assert_eq!(kept.input.contact.company, "Analytical Engines");
    assert!(kept.input.contact.email.is_empty() && kept.input.contact.name.is_empty());
    assert_eq!(kept.touches.len(), 1);
    let untouched = f.intake.lead(other.id).await.unwrap();
    assert_eq!(untouched.input.contact.email, "other@example.com");

    let types = event_types(&f.intake, 5).await;
    assert_eq!(types.last().map(String::as_str), Some("ContactErased"));
    let events = f
        .intake
        .log()
        .read_after(Default::default(), 100)
        .await
        .unwrap();
    let announced =
        proto::intake::v1::ContactErased::decode(events.last().unwrap().payload.as_slice())
            .unwrap();
    assert_eq!(announced.erasure_id, erased.erasure_id.to_string());
    assert_eq!(announced.lead_ids, [accepted.id.to_string()]);
    let audit: (String, String) =
        sqlx::query_as("SELECT reference, lead_ids FROM erasures WHERE erasure_id = $1")
            .bind(erased.erasure_id.to_string())
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert_eq!(audit.0, "DSR-1");
    assert!(audit.1.contains(&accepted.id.to_string()));

    // A retry of the erased submission's key runs again instead of replaying erased data.
    let Submitted::Accepted(again) = f.intake.submit(first, Some("canary-key")).await.unwrap()
    else {
        panic!("a new lead: the person submitted again after the erasure")
    };
    assert_ne!(again.id, accepted.id);

    // Repeating the erasure is safe and, once the new lead is erased too, finds nothing.
    let second = f.intake.erase_contact(EMAIL, "", "DSR-1").await.unwrap();
    assert_eq!(second.lead_ids, [again.id]);
    let third = f.intake.erase_contact(EMAIL, "", "DSR-1").await.unwrap();
    assert!(third.lead_ids.is_empty() && third.rejection_ids.is_empty());
    assert_eq!(testkit::scan::find_values(&f.db, &needles).await, []);

    let refused = f.intake.erase_contact(EMAIL, "", " ").await.unwrap_err();
    assert!(matches!(refused, IntakeError::Invalid(p) if p[0].field == "reference"));
}

/// An opt-out outlives the erasure of the person: it is the record needed to honour it.
pub async fn an_erased_contact_stays_opted_out(f: Fixture) {
    f.intake
        .submit(lead("gone@example.com"), None)
        .await
        .unwrap();
    f.intake
        .opt_out("gone@example.com", "", "unsubscribe link")
        .await
        .unwrap();
    let erased = f
        .intake
        .erase_contact("gone@example.com", "", "DSR-2")
        .await
        .unwrap();
    assert_eq!(erased.lead_ids.len(), 1);
    let Submitted::Accepted(back) = f
        .intake
        .submit(lead("gone@example.com"), None)
        .await
        .unwrap()
    else {
        panic!("accepted")
    };
    assert!(
        back.do_not_contact,
        "the opt-out still applies to a new lead"
    );
}

/// Instantiates every scenario above as a test on one backend.
macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            async fn make() -> Option<Fixture> {
                let test_db: Option<TestDb> = $make;
                Some(fixture(test_db?).await)
            }

            conformance!(@tests accepts_and_preserves_everything, merges_duplicates_within_the_window_only, retries_with_the_same_key_get_the_original_answer, malformed_leads_are_refused_and_leave_nothing, rejections_wait_for_review_and_can_be_reconsidered, opt_out_flags_existing_and_future_leads, opt_out_before_the_first_lead_still_applies, bulk_submit_gives_every_item_its_own_result, one_batch_with_repeats_decides_like_separate_calls, a_batch_answers_what_it_stores, subscribe_streams_intake_events, erasure_leaves_no_trace_and_keeps_the_counts, an_erased_contact_stays_opted_out);
        }
    };
    (@tests $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(f) = make().await else { return };
                super::$name(f).await;
            }
        )*
    };
}

conformance!(sqlite, Some(TestDb::sqlite()));
conformance!(postgres, TestDb::postgres().await);

/// Concurrent submissions of one new contact make one lead, the rest merge into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_make_one_lead_on_postgres() {
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let f = fixture(test_db).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let intake = f.intake.clone();
            tokio::spawn(
                async move { intake.submit(lead("race@example.com"), None).await.unwrap() },
            )
        })
        .collect();
    let mut accepted = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            Submitted::Accepted(l) => {
                accepted += 1;
                ids.insert(l.id);
            }
            Submitted::Merged(l) => {
                ids.insert(l.id);
            }
            Submitted::Rejected(_) => panic!("rejected"),
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(ids.len(), 1);
    let _ = Timestamp::now();
}

/// An opt-out racing the contact's first submission never leaves an unflagged lead, whether
/// it names the channel the lead is keyed by (email) or its other one (phone).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opt_out_racing_a_submission_never_leaves_the_lead_contactable() {
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let f = fixture(test_db).await;
    for n in 0..40 {
        let email = format!("racer{n}@example.com");
        let phone = format!("+44 20 7946 0{n:03}");
        let mut input = lead(&email);
        *input.contact.phone = phone.clone();
        let (a, b) = (f.intake.clone(), f.intake.clone());
        let by_phone = n % 2 == 1;
        let (opt_email, opt_phone) = if by_phone {
            (String::new(), phone)
        } else {
            (email.clone(), String::new())
        };
        let submit = tokio::spawn(async move { a.submit(input, None).await.unwrap() });
        let opt_out =
            tokio::spawn(async move { b.opt_out(&opt_email, &opt_phone, "race").await.unwrap() });
        let Submitted::Accepted(accepted) = submit.await.unwrap() else {
            panic!("not accepted")
        };
        opt_out.await.unwrap();
        let stored = f.intake.lead(accepted.id).await.unwrap();
        assert!(
            stored.do_not_contact,
            "lead of {email} is contactable (opt-out by phone: {by_phone})"
        );
    }
}
