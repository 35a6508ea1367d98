//! Tests of the enrolment rules, each on a small playbook with round numbers.

use jiff::SignedDuration;
use runtime::playbook::parse;

use super::*;

const PLAYBOOK: &str = r#"[followup]
timezone = "Europe/Berlin"
business_hours = "mon-fri 09:00-17:00"
unanswered_before_change = 2
default_cadence = "basic"

[followup.frequency_cap]
touches = 3
window = "7d"

[followup.attempt_caps]
call = 6
email = 6
sms = 3
linkedin = 3

[followup.momentum]
half_life = "2d"
threshold = 0.25

[followup.nurture]
after_cadence = "2d"
interval = "30d"
touches = 3
channel = "email"
template = "nurture"
strategy = "value"

[[followup.cadences]]
id = "basic"
default_template = "proof-generic"
on_silence = [{ strategy = "peer_story", channel = "call", template = "peer-call" }]
steps = [
  { delay = "0m", channel = "email", strategy = "value", template = "intro" },
  { delay = "1d", channel = "email", strategy = "value", template = "value-2" },
  { delay = "1d", channel = "call", strategy = "proof", template = "proof-call" },
  { delay = "1d", channel = "email", strategy = "break_up", template = "bye" },
]

[[followup.cadences]]
id = "calls"
on_silence = [{ strategy = "urgency" }, { channel = "sms", strategy = "check_in" }]
steps = [
  { delay = "0m", channel = "call", strategy = "value", template = "call-1" },
  { delay = "1d", channel = "call", strategy = "value", template = "call-2" },
  { delay = "1d", channel = "call", strategy = "value", template = "call-3" },
  { delay = "1d", channel = "call", strategy = "value", template = "call-4" },
  { delay = "1d", channel = "call", strategy = "value", template = "call-5" },
  { delay = "1d", channel = "call", strategy = "value", template = "call-6" },
]

[[followup.cadences]]
id = "business"
steps = [
  { delay = "0m", channel = "call", strategy = "value", template = "b-1" },
  { delay = "4 business hours", channel = "email", strategy = "value", template = "b-2" },
  { delay = "1 business day", channel = "call", strategy = "proof", template = "b-3" },
]

[[followup.cadences]]
id = "owner-time"
timezone = "owner"
steps = [
  { delay = "0m", channel = "call", strategy = "value", template = "o-1" },
  { delay = "4 business hours", channel = "email", strategy = "value", template = "o-2" },
]

[[followup.cadences]]
id = "slow"
steps = [
  { delay = "0m", channel = "email", strategy = "value", template = "s-1" },
  { delay = "10d", channel = "email", strategy = "value", template = "s-2" },
]
"#;

fn playbook() -> FollowupPlaybook {
    parse("test.toml", PLAYBOOK).unwrap_or_else(|e| panic!("{e}"))
}

/// The test playbook with `from` replaced by `to`.
fn playbook_with(from: &str, to: &str) -> FollowupPlaybook {
    assert_eq!(PLAYBOOK.matches(from).count(), 1, "{from:?}");
    parse("test.toml", &PLAYBOOK.replace(from, to)).unwrap_or_else(|e| panic!("{e}"))
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// Monday 2026-03-02 10:00 in Berlin.
const T0: &str = "2026-03-02T09:00:00Z";

fn t0() -> Timestamp {
    ts(T0)
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

fn facts() -> LeadFacts {
    LeadFacts {
        lead: Uuid::from_u128(0x0195_0000_0000_7000_8000_0000_0000_0001),
        owner_id: "olga".into(),
        manager_id: Some("mia".into()),
        intent_kind: "demo_request".into(),
        source: "website".into(),
        segment: "mid-market".into(),
        icp_tier: "A".into(),
        lead_timezone: Some("Europe/Berlin".into()),
        owner_timezone: Some("Europe/Berlin".into()),
        has_email: true,
        has_phone: true,
        email: Some("lena@example.com".into()),
        phone: Some("+4930123456".into()),
    }
}

fn enrol_with(
    pb: &FollowupPlaybook,
    cadence: &str,
    facts: LeadFacts,
    now: Timestamp,
) -> Enrollment {
    let plan = pb.cadence(cadence).expect("cadence").plan();
    Enrollment::enroll_in(pb, plan, facts, now).unwrap().0
}

fn enrol(pb: &FollowupPlaybook, cadence: &str) -> Enrollment {
    enrol_with(pb, cadence, facts(), t0())
}

/// Fires whatever is due at `now`, with no other touches of the contact.
fn tick(e: &mut Enrollment, pb: &FollowupPlaybook, now: Timestamp) -> Vec<Change> {
    e.on_due(pb, now, &[], None)
}

fn fired(changes: &[Change]) -> Vec<Task> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::FollowUpDue { task, .. } => Some(task.clone()),
            _ => None,
        })
        .collect()
}

fn kinds(changes: &[Change]) -> Vec<&'static str> {
    changes.iter().map(Change::event_type).collect()
}

fn has(changes: &[Change], kind: &str) -> bool {
    kinds(changes).contains(&kind)
}

/// Fires the first step and marks it sent.
fn first_email_sent(pb: &FollowupPlaybook) -> Enrollment {
    let mut e = enrol(pb, "basic");
    let changes = tick(&mut e, pb, t0());
    assert_eq!(fired(&changes).len(), 1, "{changes:?}");
    e.complete_task(pb, 1, TaskOutcome::Done, t0() + hours(1))
        .unwrap();
    e
}

#[test]
fn enrolment_picks_the_cadence_by_the_rules() {
    let pb = crate::playbook::tests::example();
    let mut lead = facts();
    let (e, changes) = Enrollment::enroll(&pb, lead.clone(), t0()).unwrap();
    assert_eq!(e.cadence.id, "hot-demo");
    assert_eq!(
        changes,
        [Change::Enrolled {
            cadence: "hot-demo".into(),
            first_due: t0()
        }]
    );
    lead.icp_tier = "C".into();
    let (e, _) = Enrollment::enroll(&pb, lead.clone(), t0()).unwrap();
    assert_eq!(e.cadence.id, "standard");
    assert_eq!(
        Enrollment::enroll(&FollowupPlaybook::default(), lead, t0()).unwrap_err(),
        FollowupError::NoCadence
    );
}

#[test]
fn steps_fire_in_order_at_their_delays() {
    let pb = playbook();
    let mut e = enrol(&pb, "basic");
    assert_eq!(e.wake_at(&pb), Some(t0()));
    // nothing before its time
    assert!(tick(&mut e, &pb, t0() - hours(1)).is_empty());
    let changes = tick(&mut e, &pb, t0());
    let tasks = fired(&changes);
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(
        (
            task.task,
            task.item,
            task.channel,
            task.strategy,
            task.template.as_str()
        ),
        (
            1,
            Item::Step { index: 0 },
            Channel::Email,
            Strategy::Value,
            "intro"
        )
    );
    assert_eq!(
        (task.owner.as_str(), task.fired_at, task.due_at),
        ("olga", t0(), t0())
    );
    assert_eq!(e.next.as_ref().unwrap().due_at, t0() + days(1));
    // the same instant again fires nothing more
    assert!(fired(&tick(&mut e, &pb, t0())).is_empty());
}

#[test]
fn business_delays_land_in_the_leads_working_hours_across_time_zones() {
    let pb = playbook();
    let in_zone = |zone: &str| LeadFacts {
        lead_timezone: Some(zone.into()),
        owner_timezone: None,
        ..facts()
    };
    // Friday 2026-03-13 14:00Z: 15:00 in Berlin (CET), 10:00 in New York (EDT since 03-08).
    let friday = ts("2026-03-13T14:00:00Z");
    let cases = [
        // Berlin: two business hours left on Friday, two on Monday -> Mon 11:00 CET
        ("Europe/Berlin", friday, "2026-03-16T10:00:00Z"),
        // New York: the same instant is Friday morning -> Fri 14:00 EDT
        ("America/New_York", friday, "2026-03-13T18:00:00Z"),
        // New York on Friday afternoon (16:00 EDT): one hour Friday, three Monday
        (
            "America/New_York",
            ts("2026-03-13T20:00:00Z"),
            "2026-03-16T16:00:00Z",
        ),
    ];
    for (zone, start, want) in cases {
        let mut e = enrol_with(&pb, "business", in_zone(zone), start);
        assert_eq!(fired(&tick(&mut e, &pb, start)).len(), 1);
        assert_eq!(e.wake_at(&pb), Some(ts(want)), "{zone} from {start}");
    }
}

#[test]
fn a_business_day_keeps_the_local_time_across_a_dst_change() {
    let pb = playbook();
    let mut e = enrol_with(&pb, "business", facts(), ts("2026-03-27T14:00:00Z"));
    tick(&mut e, &pb, ts("2026-03-27T14:00:00Z"));
    e.complete_task(&pb, 1, TaskOutcome::NoAnswer, ts("2026-03-27T14:10:00Z"))
        .unwrap();
    // step 2: four business hours from Friday 15:00 CET -> Monday 11:00 CEST (09:00Z)
    let monday = ts("2026-03-30T09:00:00Z");
    assert_eq!(e.wake_at(&pb), Some(monday));
    tick(&mut e, &pb, monday);
    // step 3: one business day from Monday 11:00 CEST -> Tuesday 11:00 CEST
    assert_eq!(e.wake_at(&pb), Some(ts("2026-03-31T09:00:00Z")));
}

#[test]
fn the_time_zone_falls_back_from_lead_to_owner_to_playbook() {
    let pb = playbook();
    let friday = ts("2026-03-13T14:00:00Z");
    let berlin_due = ts("2026-03-16T10:00:00Z");
    let new_york_due = ts("2026-03-13T18:00:00Z");
    let cases = [
        // lead cadence: the lead's zone wins
        (
            "business",
            Some("America/New_York"),
            Some("Europe/Berlin"),
            new_york_due,
        ),
        // no (or a bad) lead zone: the owner's
        ("business", None, Some("America/New_York"), new_york_due),
        (
            "business",
            Some("Mars/Olympus"),
            Some("America/New_York"),
            new_york_due,
        ),
        // neither: the playbook's (Berlin)
        ("business", None, None, berlin_due),
        // owner cadence: the owner's even when the lead's is known
        (
            "owner-time",
            Some("America/New_York"),
            Some("Europe/Berlin"),
            berlin_due,
        ),
        (
            "owner-time",
            Some("Europe/Berlin"),
            Some("America/New_York"),
            new_york_due,
        ),
    ];
    for (cadence, lead, owner, want) in cases {
        let lead_facts = LeadFacts {
            lead_timezone: lead.map(Into::into),
            owner_timezone: owner.map(Into::into),
            ..facts()
        };
        let mut e = enrol_with(&pb, cadence, lead_facts, friday);
        tick(&mut e, &pb, friday);
        assert_eq!(e.wake_at(&pb), Some(want), "{cadence} {lead:?} {owner:?}");
    }
}

#[test]
fn a_positive_or_neutral_reply_or_a_meeting_hands_the_lead_on() {
    let pb = playbook();
    let cases = [
        (
            Engagement::Reply {
                sentiment: ReplySentiment::Positive,
            },
            StopReason::PositiveReply,
        ),
        (
            Engagement::Reply {
                sentiment: ReplySentiment::Neutral,
            },
            StopReason::NeutralReply,
        ),
        (Engagement::MeetingBooked, StopReason::MeetingBooked),
    ];
    for (engagement, reason) in cases {
        let mut e = enrol(&pb, "basic");
        tick(&mut e, &pb, t0());
        let changes = e.record_engagement(&pb, engagement, t0() + hours(2));
        assert_eq!(
            changes,
            [
                Change::TasksCancelled { tasks: vec![1] },
                Change::CadenceStopped {
                    reason,
                    hand_off: true
                }
            ]
        );
        assert_eq!(
            e.status,
            Status::Stopped {
                reason,
                at: t0() + hours(2)
            }
        );
        assert_eq!(e.wake_at(&pb), None);
        assert!(tick(&mut e, &pb, t0() + days(30)).is_empty());
        assert_eq!(
            e.complete_task(&pb, 1, TaskOutcome::Done, t0() + hours(3)),
            Err(FollowupError::TaskCancelled { task: 1 })
        );
    }
}

#[test]
fn a_negative_reply_stops_without_nurture_or_suppression() {
    let pb = playbook();
    let mut e = first_email_sent(&pb);
    let changes = e.record_engagement(
        &pb,
        Engagement::Reply {
            sentiment: ReplySentiment::Negative,
        },
        t0() + hours(5),
    );
    assert_eq!(
        changes,
        [Change::CadenceStopped {
            reason: StopReason::NegativeReply,
            hand_off: false
        }]
    );
    assert!(tick(&mut e, &pb, t0() + days(60)).is_empty());
    assert_eq!(
        e.pause(&pb, None, "x".into(), t0() + days(1)),
        Err(FollowupError::CadenceStopped {
            reason: StopReason::NegativeReply
        })
    );
}

#[test]
fn unsubscribe_and_remove_me_opt_out_and_nothing_fires_ever_after() {
    let pb = playbook();
    for engagement in [
        Engagement::Unsubscribe,
        Engagement::Reply {
            sentiment: ReplySentiment::RemoveMe,
        },
    ] {
        let mut e = enrol(&pb, "basic");
        tick(&mut e, &pb, t0());
        let changes = e.record_engagement(&pb, engagement.clone(), t0() + hours(1));
        assert_eq!(
            changes,
            [
                Change::TasksCancelled { tasks: vec![1] },
                Change::CadenceStopped {
                    reason: StopReason::OptedOut,
                    hand_off: false
                },
                Change::OptOutRequired {
                    email: Some("lena@example.com".into()),
                    phone: Some("+4930123456".into())
                }
            ]
        );
        assert_eq!(e.wake_at(&pb), None);
        for later in [1, 2, 3, 40, 400] {
            assert!(tick(&mut e, &pb, t0() + days(later)).is_empty());
        }
        // a second opt-out, or any engagement, changes nothing
        assert!(e.opt_out(t0() + days(2)).is_empty());
        assert!(
            e.record_engagement(&pb, engagement, t0() + days(2))
                .is_empty()
        );
        assert!(
            e.record_engagement(&pb, Engagement::Click, t0() + days(2))
                .is_empty()
        );
        assert!(e.resume(&pb, t0() + days(2)).is_err());
    }
}

#[test]
fn an_opt_out_before_the_due_time_wins_the_race() {
    let pb = playbook();
    let mut e = first_email_sent(&pb);
    let due = e.wake_at(&pb).unwrap();
    assert_eq!(due, t0() + days(1));
    // the service's timer is already set for `due`; the opt-out lands a second before
    let changes = e.opt_out(due - SignedDuration::from_secs(1));
    assert!(has(&changes, "OptOutRequired"));
    assert!(!e.due_is_proof(&pb, due, &[]));
    let changes = e.on_due(&pb, due, &[], None);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(e.tasks.len(), 1);
}

#[test]
fn an_opt_out_after_a_stop_still_requires_suppression() {
    let pb = playbook();
    let mut e = first_email_sent(&pb);
    e.record_engagement(&pb, Engagement::MeetingBooked, t0() + hours(2));
    let changes = e.record_engagement(&pb, Engagement::Unsubscribe, t0() + hours(3));
    assert!(has(&changes, "OptOutRequired"), "{changes:?}");
    assert!(matches!(
        e.status,
        Status::Stopped {
            reason: StopReason::OptedOut,
            ..
        }
    ));
}

#[test]
fn a_hard_bounce_blocks_the_channel_for_good() {
    let pb = playbook();
    let mut e = first_email_sent(&pb);
    let changes = e.record_engagement(
        &pb,
        Engagement::Bounce {
            channel: Channel::Email,
            hard: true,
        },
        t0() + hours(2),
    );
    assert_eq!(
        changes[0],
        Change::ChannelBlocked {
            channel: Channel::Email,
            cause: Cause::HardBounce
        }
    );
    assert_eq!(
        changes[1],
        Change::SilenceRead {
            silence: Silence::Bounced,
            response: SilenceMove::SwitchChannel,
            task: Some(1)
        }
    );
    assert!(matches!(
        &changes[2],
        Change::StrategyChanged { from, to, cause: Cause::Silence { silence: Silence::Bounced }, .. }
            if from.channel == Channel::Email && to.channel == Channel::Call
    ));
    // every later touch, cadence and nurture, avoids email
    let mut channels = Vec::new();
    let mut now = t0() + days(1);
    while let Some(at) = e.wake_at(&pb) {
        now = now.max(at);
        let changes = tick(&mut e, &pb, now);
        for task in fired(&changes) {
            channels.push(task.channel);
            let outcome = if task.channel == Channel::Call {
                TaskOutcome::NoAnswer
            } else {
                TaskOutcome::Done
            };
            e.complete_task(&pb, task.task, outcome, now).unwrap();
        }
    }
    assert_eq!(
        channels.len(),
        3 + 3,
        "three steps left, three nurture touches"
    );
    assert!(!channels.contains(&Channel::Email), "{channels:?}");
    assert_eq!(e.status, Status::Finished);
    // the break-up email moved off email because the channel is blocked
    let bye = &e.tasks[3];
    assert_eq!(
        bye.redirects[0].cause,
        Cause::ChannelBlocked {
            channel: Channel::Email
        }
    );
}

#[test]
fn each_kind_of_silence_gets_its_own_move() {
    let pb = playbook();
    let step2 = t0() + days(1);

    // No open: the next email goes out on another channel.
    let mut e = first_email_sent(&pb);
    let changes = tick(&mut e, &pb, step2);
    assert!(changes.contains(&Change::SilenceRead {
        silence: Silence::NoOpen,
        response: SilenceMove::SwitchChannel,
        task: Some(1)
    }));
    let task = &fired(&changes)[0];
    assert_eq!(
        (task.channel, task.strategy),
        (Channel::Call, Strategy::Value)
    );
    assert_eq!(task.planned.channel, Channel::Email);

    // Opened, no reply: same channel, another angle.
    let mut e = first_email_sent(&pb);
    e.record_engagement(&pb, Engagement::Open, t0() + hours(2));
    let changes = tick(&mut e, &pb, step2);
    assert!(changes.contains(&Change::SilenceRead {
        silence: Silence::OpenedNoReply,
        response: SilenceMove::ChangeAngle,
        task: Some(1)
    }));
    let task = &fired(&changes)[0];
    assert_eq!(
        (task.channel, task.strategy),
        (Channel::Email, Strategy::PeerStory)
    );

    // Clicked: the next step comes forward to now, as a call.
    let mut e = first_email_sent(&pb);
    let click = t0() + hours(2);
    let changes = e.record_engagement(&pb, Engagement::Click, click);
    assert!(changes.contains(&Change::StepBroughtForward {
        item: Item::Step { index: 1 },
        from: step2,
        to: click,
        channel: Channel::Call
    }));
    assert_eq!(e.wake_at(&pb), Some(click));
    let task = &fired(&tick(&mut e, &pb, click))[0];
    assert_eq!(
        (task.channel, task.strategy),
        (Channel::Call, Strategy::Value)
    );
    // a click at night brings it to the next opening, not to the middle of the night
    let mut e = first_email_sent(&pb);
    e.record_engagement(&pb, Engagement::Click, ts("2026-03-02T21:00:00Z"));
    assert_eq!(e.wake_at(&pb), Some(ts("2026-03-03T08:00:00Z")));

    // Out of office: pause until the return date, then resume from it.
    let mut e = first_email_sent(&pb);
    let back = t0() + days(5);
    let changes = e.record_engagement(
        &pb,
        Engagement::OutOfOffice { until: Some(back) },
        t0() + hours(2),
    );
    assert_eq!(
        changes[1],
        Change::Paused {
            until: Some(back),
            cause: PauseCause::OutOfOffice
        }
    );
    assert_eq!(e.wake_at(&pb), Some(back));
    assert!(
        tick(&mut e, &pb, step2).is_empty(),
        "paused at the step's old time"
    );
    let changes = tick(&mut e, &pb, back);
    assert_eq!(
        changes,
        [Change::Resumed {
            next_due: Some(back + days(1))
        }]
    );
    assert_eq!(e.status, Status::Active);
    let task = &fired(&tick(&mut e, &pb, back + days(1)))[0];
    assert_eq!(
        task.channel,
        Channel::Email,
        "the out-of-office is not a no-open"
    );

    // Soft bounce: the next step avoids the bounced channel, which is not blocked.
    let mut e = first_email_sent(&pb);
    let changes = e.record_engagement(
        &pb,
        Engagement::Bounce {
            channel: Channel::Email,
            hard: false,
        },
        t0() + hours(2),
    );
    assert!(!has(&changes, "ChannelBlocked"));
    let task = &fired(&tick(&mut e, &pb, step2))[0];
    assert_eq!(task.channel, Channel::Call);
    assert!(e.blocked.is_empty());
}

#[test]
fn out_of_office_without_a_date_pauses_for_the_playbook_default() {
    let pb = playbook();
    let mut e = first_email_sent(&pb);
    // Monday 11:00 CET + 5 business days -> Monday 11:00 CET a week later
    e.record_engagement(
        &pb,
        Engagement::OutOfOffice { until: None },
        t0() + hours(1),
    );
    assert_eq!(e.wake_at(&pb), Some(t0() + hours(1) + days(7)));
}

#[test]
fn silence_moves_follow_the_playbook() {
    let pb = playbook_with(
        "[followup.nurture]",
        "[followup.silence]\nno_open = \"continue\"\nclicked = \"change_angle\"\n\n[followup.nurture]",
    );
    let mut e = first_email_sent(&pb);
    let task = &fired(&tick(&mut e, &pb, t0() + days(1)))[0];
    assert_eq!(
        task.channel,
        Channel::Email,
        "no switch when told to continue"
    );
    let mut e = first_email_sent(&pb);
    let changes = e.record_engagement(&pb, Engagement::Click, t0() + hours(2));
    assert!(!has(&changes, "StepBroughtForward"));
    assert_eq!(e.wake_at(&pb), Some(t0() + days(1)));
    let task = &fired(&tick(&mut e, &pb, t0() + days(1)))[0];
    assert_eq!(task.strategy, Strategy::PeerStory);
}

#[test]
fn unanswered_steps_change_the_strategy() {
    let pb = playbook();
    let mut e = enrol(&pb, "calls");
    let mut strategy_changes = Vec::new();
    let outcomes = [
        TaskOutcome::NoAnswer,
        TaskOutcome::LeftVoicemail,
        TaskOutcome::Connected,
        TaskOutcome::NoAnswer,
        TaskOutcome::NoAnswer,
        TaskOutcome::NoAnswer,
    ];
    let mut tasks = Vec::new();
    for (day, outcome) in outcomes.into_iter().enumerate() {
        let now = t0() + days(day as i64);
        let changes = tick(&mut e, &pb, now);
        for change in &changes {
            if let Change::StrategyChanged {
                from, to, cause, ..
            } = change
            {
                strategy_changes.push((day, from.clone(), to.clone(), *cause));
            }
        }
        let task = fired(&changes).pop().unwrap();
        let outcome = if task.channel == Channel::Call {
            outcome
        } else {
            TaskOutcome::Done
        };
        e.complete_task(&pb, task.task, outcome, now + hours(1))
            .unwrap();
        tasks.push(task);
    }
    let approach = |channel, strategy, template: &str| Approach {
        channel,
        strategy,
        template: template.into(),
    };
    assert_eq!(
        strategy_changes,
        [
            // two unanswered calls: the first on_silence approach
            (
                2,
                approach(Channel::Call, Strategy::Value, "call-3"),
                approach(Channel::Call, Strategy::Urgency, "call-3"),
                Cause::Unanswered { steps: 2 }
            ),
            // the connected call reset the streak: two more unanswered before the next
            (
                5,
                approach(Channel::Call, Strategy::Urgency, "call-6"),
                approach(Channel::Sms, Strategy::CheckIn, "call-6"),
                Cause::Unanswered { steps: 2 }
            ),
        ]
    );
    let strategies: Vec<Strategy> = tasks.iter().map(|t| t.strategy).collect();
    assert_eq!(
        strategies,
        [
            Strategy::Value,
            Strategy::Value,
            Strategy::Urgency,
            Strategy::Urgency,
            Strategy::Urgency,
            Strategy::CheckIn
        ]
    );
    assert_eq!(tasks[5].channel, Channel::Sms);
}

#[test]
fn momentum_decays_and_escalates_once_at_the_predicted_instant() {
    let pb = playbook();
    let mut e = enrol(&pb, "slow");
    tick(&mut e, &pb, t0());
    assert_eq!(e.momentum(&pb, t0()), 1.0);
    assert!((e.momentum(&pb, t0() + days(2)) - 0.5).abs() < 1e-9);
    // 1.0 halves every 2 days: 0.25 after 4 days, before the next step (10 days)
    let crossing = t0() + days(4);
    assert_eq!(e.wake_at(&pb), Some(crossing));
    assert!(tick(&mut e, &pb, crossing - SignedDuration::from_secs(1)).is_empty());
    let changes = tick(&mut e, &pb, crossing);
    assert_eq!(
        changes,
        [Change::MomentumEscalated {
            score: 0.25,
            threshold: 0.25,
            owner: "olga".into(),
            manager: Some("mia".into())
        }]
    );
    // once: the timer moves on to the step, and nothing escalates again
    assert_eq!(e.wake_at(&pb), Some(t0() + days(10)));
    assert!(tick(&mut e, &pb, crossing + hours(1)).is_empty());
    e.record_engagement(&pb, Engagement::Click, t0() + days(5));
    assert!(e.momentum(&pb, t0() + days(5)) > 1.0);
    let later = tick(&mut e, &pb, t0() + days(10));
    assert!(!has(&later, "MomentumEscalated"), "{later:?}");
}

#[test]
fn engagement_moves_the_crossing_later() {
    let pb = playbook();
    let mut e = enrol(&pb, "slow");
    tick(&mut e, &pb, t0());
    // a meeting-sized bump would stop the cadence; an open adds 0.3 instead
    e.record_engagement(&pb, Engagement::Open, t0() + days(2));
    // at day 2: 0.5 + 0.3 = 0.8, which falls to 0.25 after 2·log2(3.2) days
    let want = 2.0 * 86_400.0 * (0.8f64 / 0.25).log2();
    let crossing = e.wake_at(&pb).unwrap();
    let secs = crossing.duration_since(t0() + days(2)).as_secs_f64();
    assert!((secs - want).abs() < 0.01, "{secs} vs {want}");
    assert!(has(&tick(&mut e, &pb, crossing), "MomentumEscalated"));
}

#[test]
fn the_frequency_cap_defers_a_step_to_the_earliest_allowed_time() {
    let pb = playbook();
    let mut e = first_email_sent(&pb);
    let due = t0() + days(1);
    // three touches in the last week (one of them this enrolment's): cap reached
    let touches = [t0() - days(5), t0() - days(2), t0()];
    let changes = e.on_due(&pb, due, &touches, None);
    let until = t0() - days(5) + days(7);
    assert!(fired(&changes).is_empty());
    assert!(changes.contains(&Change::StepDeferred {
        item: Item::Step { index: 1 },
        cause: Cause::FrequencyCap,
        from: due,
        until
    }));
    // the silence before the step was read once, when it was first due
    assert!(has(&changes, "SilenceRead"));
    assert_eq!(e.wake_at(&pb), Some(until));
    assert!(fired(&e.on_due(&pb, until - hours(1), &touches, None)).is_empty());
    let changes = e.on_due(&pb, until, &touches, None);
    assert!(!has(&changes, "SilenceRead"), "{changes:?}");
    let task = &fired(&changes)[0];
    assert_eq!(task.task, 2);
    assert_eq!((task.due_at, task.fired_at), (due, until));
    assert_eq!(
        task.deferrals,
        [Deferral {
            cause: Cause::FrequencyCap,
            from: due,
            until
        }]
    );
}

#[test]
fn a_deferred_business_step_waits_for_business_hours() {
    let pb = playbook();
    let start = ts("2026-03-13T14:00:00Z"); // Friday 15:00 CET
    let mut e = enrol_with(&pb, "business", facts(), start);
    tick(&mut e, &pb, start);
    let due = e.wake_at(&pb).unwrap();
    assert_eq!(due, ts("2026-03-16T10:00:00Z")); // Monday 11:00 CET
    // the cap allows the next touch a week after 03-09 20:00Z: Monday 21:00 CET, after
    // closing, so the business step waits for Tuesday's opening
    let touches = [
        ts("2026-03-09T20:00:00Z"),
        ts("2026-03-12T10:00:00Z"),
        ts("2026-03-13T14:00:00Z"),
    ];
    let changes = e.on_due(&pb, due, &touches, None);
    let tuesday = ts("2026-03-17T08:00:00Z");
    assert!(changes.contains(&Change::StepDeferred {
        item: Item::Step { index: 1 },
        cause: Cause::FrequencyCap,
        from: due,
        until: tuesday
    }));
    assert_eq!(e.wake_at(&pb), Some(tuesday));
    assert_eq!(fired(&e.on_due(&pb, tuesday, &touches, None)).len(), 1);
}

#[test]
fn the_attempt_cap_moves_the_channel_and_then_defers_into_nurture() {
    let pb = playbook_with(
        "call = 6\nemail = 6\nsms = 3\nlinkedin = 3",
        "call = 2\nemail = 1\nsms = 1\nlinkedin = 1",
    );
    let lead = LeadFacts {
        has_email: false,
        email: None,
        ..facts()
    };
    let mut e = enrol_with(&pb, "calls", lead, t0());
    let mut channels = Vec::new();
    for day in 0..5 {
        let now = t0() + days(day);
        let changes = tick(&mut e, &pb, now);
        for task in fired(&changes) {
            channels.push(task.channel);
            let outcome = if task.channel == Channel::Call {
                TaskOutcome::NoAnswer
            } else {
                TaskOutcome::Done
            };
            e.complete_task(&pb, task.task, outcome, now).unwrap();
        }
        if day == 2 {
            // calls used up: the cadence's own on_silence channel first
            assert!(changes.iter().any(|c| matches!(
                c,
                Change::StrategyChanged { cause: Cause::AttemptCap { channel: Channel::Call }, to, .. }
                    if to.channel == Channel::Sms
            )));
        }
        if day == 4 {
            // no channel left: deferred into nurture, not dropped
            let first_touch = now + days(30);
            assert!(changes.contains(&Change::StepDeferred {
                item: Item::Step { index: 4 },
                cause: Cause::AttemptCap {
                    channel: Channel::Sms
                },
                from: now,
                until: first_touch
            }));
            assert!(changes.contains(&Change::RecycledToNurture {
                cause: Cause::NoChannelLeft,
                touches: 3,
                first_touch_at: first_touch
            }));
        }
    }
    // two calls, a text, then LinkedIn (email is unreachable); on day 4 the second
    // on_silence approach wants a text again, and every channel is used up
    assert_eq!(
        channels,
        [
            Channel::Call,
            Channel::Call,
            Channel::Sms,
            Channel::Linkedin
        ]
    );
    assert_eq!(e.status, Status::Nurture);
    assert_eq!(e.unfired.len(), 1);
    assert_eq!(e.unfired[0].item, Item::Step { index: 4 });
    // nurture has no attempt cap; its email channel is unreachable, so it takes the
    // cadence's on_silence channel
    let touch = &fired(&tick(&mut e, &pb, t0() + days(34)))[0];
    assert_eq!(
        (touch.item, touch.channel),
        (Item::Nurture { touch: 1 }, Channel::Sms)
    );
}

#[test]
fn a_finished_cadence_recycles_into_nurture_then_finishes() {
    // a low threshold keeps momentum out of the way: it crosses after about 13 days
    let pb = playbook_with("threshold = 0.25", "threshold = 0.01");
    let mut e = first_email_sent(&pb);
    for day in 1..4 {
        let changes = tick(&mut e, &pb, t0() + days(day));
        assert_eq!(fired(&changes).len(), 1, "day {day}");
    }
    // the break-up email (step 4) is open and nobody answered
    let last = t0() + days(3);
    assert_eq!(e.wake_at(&pb), Some(last + days(2)));
    let changes = tick(&mut e, &pb, last + days(2));
    let recycled = last + days(2);
    assert_eq!(
        changes,
        [
            Change::TaskMissed {
                task: 4,
                owner: "olga".into()
            },
            Change::RecycledToNurture {
                cause: Cause::CadenceFinished,
                touches: 3,
                first_touch_at: recycled + days(30)
            }
        ]
    );
    assert_eq!(e.status, Status::Nurture);
    // three touches, 30 days apart, on the nurture channel and template
    let mut at = recycled;
    for touch in 1..=3 {
        at += days(30);
        assert_eq!(e.wake_at(&pb), Some(at));
        let changes = tick(&mut e, &pb, at);
        let task = &fired(&changes)[0];
        assert_eq!(
            (
                task.item,
                task.channel,
                task.template.as_str(),
                task.strategy
            ),
            (
                Item::Nurture { touch },
                Channel::Email,
                "nurture",
                Strategy::Value
            )
        );
        e.complete_task(&pb, task.task, TaskOutcome::Done, at)
            .unwrap();
        if touch == 3 {
            assert!(changes.contains(&Change::NurtureFinished { touches: 3 }));
        }
    }
    assert_eq!(e.status, Status::Finished);
    assert_eq!(e.nurture_touches, 3);
    assert_eq!(e.wake_at(&pb), None);
    assert!(tick(&mut e, &pb, at + days(60)).is_empty());
    // momentum never escalates a recycled lead
    assert_eq!(e.escalated_at, None);
    // a late reply still hands the lead on
    let changes = e.record_engagement(
        &pb,
        Engagement::Reply {
            sentiment: ReplySentiment::Positive,
        },
        at + days(61),
    );
    assert!(changes.contains(&Change::CadenceStopped {
        reason: StopReason::PositiveReply,
        hand_off: true
    }));
}

#[test]
fn pause_and_resume() {
    let pb = playbook();
    let mut e = first_email_sent(&pb);
    let paused_at = t0() + hours(3);
    assert_eq!(
        e.pause(&pb, Some(paused_at), "x".into(), paused_at),
        Err(FollowupError::PauseEndsInThePast)
    );
    assert_eq!(e.resume(&pb, paused_at), Err(FollowupError::NotPaused));
    let changes = e
        .pause(&pb, None, "lead asked to wait".into(), paused_at)
        .unwrap();
    assert_eq!(
        changes,
        [Change::Paused {
            until: None,
            cause: PauseCause::Requested {
                reason: "lead asked to wait".into()
            }
        }]
    );
    assert_eq!(
        e.pause(&pb, None, "again".into(), paused_at),
        Err(FollowupError::AlreadyPaused)
    );
    // nothing fires, and momentum does not decay, while paused
    assert_eq!(e.wake_at(&pb), None);
    assert!(tick(&mut e, &pb, t0() + days(20)).is_empty());
    let frozen = e.momentum(&pb, paused_at);
    assert_eq!(e.momentum(&pb, t0() + days(20)), frozen);
    // resuming counts the step's delay from the resume
    let resumed = t0() + days(20);
    let changes = e.resume(&pb, resumed).unwrap();
    assert_eq!(
        changes,
        [Change::Resumed {
            next_due: Some(resumed + days(1))
        }]
    );
    assert_eq!(e.momentum(&pb, resumed), frozen);
    let task = &fired(&tick(&mut e, &pb, resumed + days(1)))[0];
    assert_eq!(task.item, Item::Step { index: 1 });
}

#[test]
fn a_timed_pause_resumes_by_itself() {
    let pb = playbook();
    let mut e = first_email_sent(&pb);
    let until = t0() + days(3);
    e.pause(&pb, Some(until), "holiday".into(), t0() + hours(2))
        .unwrap();
    assert_eq!(e.wake_at(&pb), Some(until));
    let changes = tick(&mut e, &pb, until);
    assert_eq!(
        changes,
        [Change::Resumed {
            next_due: Some(until + days(1))
        }]
    );
}

#[test]
fn an_open_task_is_missed_when_the_next_one_fires() {
    let pb = playbook();
    let mut e = enrol(&pb, "calls");
    tick(&mut e, &pb, t0());
    let changes = tick(&mut e, &pb, t0() + days(1));
    assert_eq!(
        changes[0],
        Change::TaskMissed {
            task: 1,
            owner: "olga".into()
        }
    );
    assert!(e.tasks[0].missed);
    // it may still be completed late; it stays missed, and an unmade call is not the lead's
    // silence
    e.complete_task(&pb, 1, TaskOutcome::NoAnswer, t0() + days(1) + hours(1))
        .unwrap();
    assert!(e.tasks[0].missed && e.tasks[0].outcome.is_some());
}

#[test]
fn completing_a_task_is_checked() {
    let pb = playbook();
    let mut e = enrol(&pb, "basic");
    tick(&mut e, &pb, t0());
    let cases = [
        (
            0,
            TaskOutcome::Done,
            FollowupError::UnknownTask { task: 0, tasks: 1 },
        ),
        (
            2,
            TaskOutcome::Done,
            FollowupError::UnknownTask { task: 2, tasks: 1 },
        ),
        (
            1,
            TaskOutcome::Connected,
            FollowupError::OutcomeNotForChannel {
                outcome: TaskOutcome::Connected,
                channel: Channel::Email,
            },
        ),
    ];
    for (task, outcome, want) in cases {
        assert_eq!(e.complete_task(&pb, task, outcome, t0()), Err(want));
    }
    assert_eq!(
        e.complete_task(&pb, 1, TaskOutcome::Done, t0()),
        Ok(vec![Change::TaskCompleted {
            task: 1,
            outcome: TaskOutcome::Done
        }])
    );
    let err = e
        .complete_task(&pb, 1, TaskOutcome::Done, t0())
        .unwrap_err();
    assert_eq!(
        err,
        FollowupError::TaskAlreadyCompleted {
            task: 1,
            outcome: TaskOutcome::Done
        }
    );
    assert_eq!(
        err.to_string(),
        "task 1 was completed already (outcome done)"
    );
}

#[test]
fn a_wrong_number_blocks_calls_and_texts() {
    let pb = playbook();
    let mut e = enrol(&pb, "calls");
    tick(&mut e, &pb, t0());
    let changes = e
        .complete_task(&pb, 1, TaskOutcome::WrongNumber, t0() + hours(1))
        .unwrap();
    assert_eq!(
        kinds(&changes),
        ["TaskCompleted", "ChannelBlocked", "ChannelBlocked"]
    );
    let task = &fired(&tick(&mut e, &pb, t0() + days(1)))[0];
    assert_eq!(task.channel, Channel::Email);
}

#[test]
fn reassignment_moves_open_tasks_and_escalations() {
    let pb = playbook();
    let mut e = enrol(&pb, "slow");
    tick(&mut e, &pb, t0());
    let changes = e.reassign("piet", Some("max"), Some("America/New_York"));
    assert_eq!(
        changes,
        [Change::TasksReassigned {
            from: "olga".into(),
            to: "piet".into(),
            tasks: vec![1]
        }]
    );
    assert_eq!(e.tasks[0].owner, "piet");
    let changes = tick(&mut e, &pb, t0() + days(4));
    assert!(matches!(
        &changes[..],
        [Change::MomentumEscalated { owner, manager: Some(manager), .. }]
            if owner == "piet" && manager == "max"
    ));
    let task = &fired(&tick(&mut e, &pb, t0() + days(10)))[0];
    assert_eq!(task.owner, "piet");
    assert!(e.reassign("piet", Some("max"), None).is_empty());
}

#[test]
fn a_proof_step_carries_the_asset_or_says_there_was_none() {
    let pb = playbook();
    let proof_day = t0() + days(2);
    let run = |pick: Option<ProofPick>| {
        let mut e = enrol(&pb, "basic");
        tick(&mut e, &pb, t0());
        tick(&mut e, &pb, t0() + days(1));
        assert!(e.due_is_proof(&pb, proof_day, &[]));
        assert!(!e.due_is_proof(&pb, proof_day - hours(1), &[]));
        fired(&e.on_due(&pb, proof_day, &[], pick)).remove(0)
    };
    let task = run(Some(ProofPick {
        asset_id: "case-acme".into(),
        note: Some("same industry".into()),
    }));
    assert_eq!(task.strategy, Strategy::Proof);
    assert_eq!(
        task.proof,
        Some(ProofSlot::Asset {
            asset_id: "case-acme".into(),
            note: Some("same industry".into())
        })
    );
    assert_eq!(task.template, "proof-call");
    let task = run(None);
    assert_eq!(task.proof, Some(ProofSlot::Unavailable));
    assert_eq!(task.template, "proof-generic");
    // not a proof step: no slot, and a pick is ignored
    let mut e = enrol(&pb, "basic");
    let task = fired(&e.on_due(
        &pb,
        t0(),
        &[],
        Some(ProofPick {
            asset_id: "x".into(),
            note: None,
        }),
    ))
    .remove(0);
    assert_eq!(task.proof, None);
}

#[test]
fn an_enrolment_round_trips_through_json() {
    let pb = playbook();
    let mut e = first_email_sent(&pb);
    e.record_engagement(&pb, Engagement::Open, t0() + hours(2));
    e.record_engagement(
        &pb,
        Engagement::Bounce {
            channel: Channel::Email,
            hard: true,
        },
        t0() + hours(3),
    );
    tick(&mut e, &pb, t0() + days(1));
    e.pause(
        &pb,
        Some(t0() + days(9)),
        "holiday".into(),
        t0() + days(1) + hours(1),
    )
    .unwrap();
    let json = serde_json::to_string_pretty(&e).unwrap();
    let back: Enrollment = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
    assert_eq!(serde_json::to_string_pretty(&back).unwrap(), json);
    // it reads like the playbook
    for needle in [
        "\"version\": 1",
        "\"delay\": \"1d\"",
        "\"state\": \"paused\"",
        "\"kind\": \"hard_bounce\"",
        "\"channel\": \"call\"",
    ] {
        assert!(json.contains(needle), "{needle}: {json}");
    }
    let plan = back.plan(&pb, t0() + days(2));
    assert_eq!(plan.cadence, "basic");
    assert_eq!(plan.tasks.len(), 2);
    assert_eq!(plan.wake_at, Some(t0() + days(9)));
    assert_eq!(
        plan.next_approach.map(|a| a.strategy),
        Some(Strategy::Proof)
    );
}
