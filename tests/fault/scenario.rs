//! The run: start the suite, stream leads, inject faults, drain, check.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::activation::v1 as apb;
use proto::events::v1::Event;
use proto::followup::v1 as fpb;
use proto::intake::v1 as ipb;
use proto::proof::v1 as ppb;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::events::{LiveReader, Source, payload, replay};
use crate::procs::Service;
use crate::proxy::Proxy;

/// Everyone works around the clock; every lead has 3 s for its first action, then goes to
/// the next owner once, then to the manager.
const PLAYBOOK: &str = r#"
[intake]

[activation]
default_team = "sales"

[activation.escalation]
max_reassignments = 1
routing_delay = "1m"

[[activation.teams]]
id = "sales"
name = "Sales"
manager = "mia"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"

[[activation.teams]]
id = "leadership"
name = "Leadership"
manager = "mia"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"

[[activation.owners]]
id = "anna"
name = "Anna"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100000

[[activation.owners]]
id = "ben"
name = "Ben"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100000

[[activation.owners]]
id = "mia"
name = "Mia"
team = "leadership"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100000

[[activation.sla]]
name = "fast"
window = "3s"

[[activation.plans]]
name = "call"
channel = "call"
template = "opener"
alternatives = ["email"]

[followup]
timezone = "UTC"
business_hours = "mon-sun 00:00-24:00"
default_cadence = "quick"

[followup.frequency_cap]
touches = 100
window = "1h"

[[followup.cadences]]
id = "quick"
default_template = "case-study"
steps = [
  { delay = "2s", channel = "email", strategy = "value", template = "intro" },
  { delay = "2s", channel = "call", strategy = "proof", template = "proof-call" },
]
"#;

/// Leads per second and how long they are sent.
const RATE: u32 = 25;
const STREAM: Duration = Duration::from_secs(40);

/// What became of one SubmitLead: acknowledged with the lead's id, or unknown (it failed or
/// timed out, so it may or may not have happened).
#[derive(Debug, Clone)]
enum Outcome {
    Acked(String),
    Maybe,
}

/// The whole suite as processes.
struct Suite {
    intake: Service,
    activation: [Service; 2],
    followup: [Service; 2],
    proof: Service,
    feedback: Service,
}

impl Suite {
    async fn start(dir: &std::path::Path, urls: &BTreeMap<&str, String>) -> Self {
        let playbook = dir.join("playbook.toml");
        std::fs::write(&playbook, PLAYBOOK).expect("write playbook");
        let base = |service: &str| -> Vec<(&'static str, String)> {
            vec![
                ("DATABASE_URL", urls[service].clone()),
                ("FAIRCHANCE_PLAYBOOK", playbook.display().to_string()),
                ("FAIRCHANCE_HEALTH_INTERVAL", "250ms".into()),
                ("FAIRCHANCE_DB_MAX_CONNECTIONS", "4".into()),
            ]
        };
        let with = |service: &str, extra: &[(&'static str, String)]| {
            let mut env = base(service);
            env.extend(extra.iter().cloned());
            env
        };
        let mut intake = Service::start("intake", "intake", dir, &base("intake"));
        intake.wait_serving(Duration::from_secs(60)).await;
        let intake_url = ("FAIRCHANCE_INTAKE_URL", intake.url());
        let mut activation = [1, 2].map(|n| {
            Service::start(
                "activation",
                &format!("activation-{n}"),
                dir,
                &with("activation", std::slice::from_ref(&intake_url)),
            )
        });
        for replica in &mut activation {
            replica.wait_serving(Duration::from_secs(60)).await;
        }
        // Proof listens before followup, which calls it, starts; it subscribes to followup
        // and activation lazily, so the order among them does not matter for correctness.
        let proof_addr = free_addr();
        let proof_url = format!("http://{proof_addr}");
        // Each followup replica follows its own activation replica, so killing one
        // activation replica breaks one followup replica's subscription.
        let mut followup = [0, 1].map(|i| {
            Service::start(
                "followup",
                &format!("followup-{}", i + 1),
                dir,
                &with(
                    "followup",
                    &[
                        intake_url.clone(),
                        ("FAIRCHANCE_ACTIVATION_URL", activation[i].url()),
                        ("FAIRCHANCE_PROOF_URL", proof_url.clone()),
                    ],
                ),
            )
        });
        for replica in &mut followup {
            replica.wait_serving(Duration::from_secs(60)).await;
        }
        let mut proof = Service::start_at(
            "proof",
            "proof",
            dir,
            proof_addr,
            &with(
                "proof",
                &[
                    ("FAIRCHANCE_ACTIVATION_URL", activation[0].url()),
                    ("FAIRCHANCE_FOLLOWUP_URL", followup[0].url()),
                ],
            ),
        );
        proof.wait_serving(Duration::from_secs(60)).await;
        let mut feedback = Service::start(
            "feedback",
            "feedback",
            dir,
            &with(
                "feedback",
                &[
                    intake_url.clone(),
                    ("FAIRCHANCE_ACTIVATION_URL", activation[0].url()),
                    ("FAIRCHANCE_FOLLOWUP_URL", followup[0].url()),
                    ("FAIRCHANCE_PROOF_URL", proof.url()),
                ],
            ),
        );
        feedback.wait_serving(Duration::from_secs(60)).await;
        Self {
            intake,
            activation,
            followup,
            proof,
            feedback,
        }
    }
}

impl Suite {
    fn all(&mut self) -> impl Iterator<Item = &mut Service> {
        [&mut self.intake, &mut self.proof, &mut self.feedback]
            .into_iter()
            .chain(self.activation.iter_mut())
            .chain(self.followup.iter_mut())
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("database url scheme");
    let (user, rest) = match rest.split_once('@') {
        Some((user, rest)) => (format!("{user}@"), rest),
        None => (String::new(), rest),
    };
    let (_, path) = rest.split_once('/').expect("database url path");
    format!("{scheme}://{user}{addr}/{path}")
}

/// The host and port of a PostgreSQL URL.
fn server_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("scheme").1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split('/').next().expect("authority");
    use std::net::ToSocketAddrs;
    authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve {authority}"))
}

fn submission(n: u32) -> ipb::SubmitLeadRequest {
    ipb::SubmitLeadRequest {
        lead: Some(ipb::LeadInput {
            contact: Some(ipb::Contact {
                name: format!("Lead {n}"),
                email: email(n),
                company: "Engines".into(),
                ..Default::default()
            }),
            source: Some(ipb::SourceContext {
                source: "website-demo-form".into(),
                campaign: "fault".into(),
                message: "Can we see routing for 40 reps?".into(),
                ..Default::default()
            }),
            intent: Some(ipb::IntentSignal {
                kind: ipb::IntentKind::DemoRequest as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        idempotency_key: format!("fault-{n}"),
    }
}

fn email(n: u32) -> String {
    format!("lead-{n}@fault.example")
}

/// Submits lead `n`, retrying with the same idempotency key for up to 10 s.
async fn submit(channel: Channel, n: u32) -> Outcome {
    let mut client = ipb::intake_service_client::IntakeServiceClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let call = client.submit_lead(submission(n));
        if let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(3), call).await
            && let Some(lead) = answer.into_inner().lead
        {
            return Outcome::Acked(lead.lead_id);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Outcome::Maybe
}

/// Owners act on some leads: those whose id ends in an even hex digit get a first action as
/// soon as they are assigned; the rest breach.
fn acts_on(lead_id: &str) -> bool {
    lead_id
        .chars()
        .last()
        .and_then(|c| c.to_digit(16))
        .is_some_and(|d| d % 2 == 0)
}

/// The owner's first action; on some leads the contact then objects to the price, which
/// proof records (so proof's log has events to check; proof may be away, then it is not).
async fn first_action(channels: [Channel; 2], proof: Channel, lead_id: String, owner_id: String) {
    for attempt in 0..10 {
        let mut client = apb::activation_service_client::ActivationServiceClient::new(
            channels[attempt % 2].clone(),
        );
        let call = client.record_first_action(apb::RecordFirstActionRequest {
            lead_id: lead_id.clone(),
            owner_id: owner_id.clone(),
            channel: apb::Channel::Call as i32,
            template_id: "opener".into(),
            ..Default::default()
        });
        match tokio::time::timeout(Duration::from_secs(3), call).await {
            Ok(Ok(_)) => {
                if lead_id.ends_with(['0', '4', '8']) {
                    let mut proof = ppb::proof_service_client::ProofServiceClient::new(proof);
                    let _ = proof
                        .record_objection(ppb::RecordObjectionRequest {
                            lead_id,
                            checkpoint: ppb::Checkpoint::Price as i32,
                            verbatim: "It costs too much".into(),
                            occurred_at: None,
                        })
                        .await;
                }
                return;
            }
            // Refused for a reason (the lead breached first): the owner gives up.
            Ok(Err(status))
                if !matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Unknown
                        | tonic::Code::Internal
                        | tonic::Code::Cancelled
                ) =>
            {
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Polls `condition` every 500 ms until it holds or `timeout` passes; whether it held.
async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the services said about their health while the database was away.
struct Outage {
    /// Processes that never reported NOT_SERVING while it was away.
    never_down: Vec<String>,
    /// Processes that did not report SERVING again after it came back.
    never_up: Vec<String>,
    /// Processes that were restarted or exited meanwhile (they must recover in place).
    restarted: Vec<String>,
}

impl Outage {
    fn report(&self) -> String {
        format!(
            "health during the database outage: never NOT_SERVING {:?}, not SERVING again {:?}, restarted {:?}",
            self.never_down, self.never_up, self.restarted
        )
    }

    fn is_clean(&self) -> bool {
        self.never_down.is_empty() && self.never_up.is_empty() && self.restarted.is_empty()
    }
}

/// The overall health of every process, by name.
async fn health_of(addrs: &[(String, SocketAddr)]) -> BTreeMap<String, Option<ServingStatus>> {
    let checks = addrs
        .iter()
        .map(|(name, addr)| async move { (name.clone(), crate::procs::health(*addr).await) });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .collect()
}

/// Polls every process's health until each has reported `status` at least once, or
/// `timeout` passes; the processes that did.
async fn until_all(
    addrs: &[(String, SocketAddr)],
    status: ServingStatus,
    timeout: Duration,
) -> BTreeSet<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = BTreeSet::new();
    while seen.len() < addrs.len() && Instant::now() < deadline {
        for (name, reported) in health_of(addrs).await {
            if reported == Some(status) {
                seen.insert(name);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

/// Cuts the database away for 4 s, watching every process's gRPC health: each must report
/// NOT_SERVING while it is away and SERVING again afterwards, as the same process.
async fn database_outage(suite: &mut Suite, proxy: &Proxy) -> Outage {
    let addrs: Vec<(String, SocketAddr)> = suite.all().map(|s| (s.name.clone(), s.addr)).collect();
    let pids: Vec<Option<u32>> = suite.all().map(|s| s.pid()).collect();
    eprintln!("fault: database cut");
    proxy.cut();
    let cut_at = Instant::now();
    let seen_down = until_all(&addrs, ServingStatus::NotServing, Duration::from_secs(15)).await;
    tokio::time::sleep_until((cut_at + Duration::from_secs(4)).into()).await;
    proxy.restore();
    eprintln!("fault: database restored after {:?}", cut_at.elapsed());
    let seen_up = until_all(&addrs, ServingStatus::Serving, Duration::from_secs(30)).await;
    let mut restarted = Vec::new();
    for (service, pid) in suite.all().zip(pids) {
        if service.pid() != pid || !service.running() {
            restarted.push(service.name.clone());
        }
    }
    let missing = |seen: &BTreeSet<String>| {
        addrs
            .iter()
            .filter(|(name, _)| !seen.contains(name))
            .map(|(name, _)| name.clone())
            .collect()
    };
    Outage {
        never_down: missing(&seen_down),
        never_up: missing(&seen_up),
        restarted,
    }
}

/// A live reader's events against the log: `before` is a replay taken once it had caught up
/// (it must hold all of it), `after` one taken after its snapshot (it must hold nothing
/// else). Lost, duplicated and unexpected events by id, and whether the order is the log's.
fn compare(seen: &[Event], before: &[Event], after: &[Event]) -> (Tally, bool) {
    let mut tally = Tally::default();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for event in seen {
        *counts.entry(&event.event_id).or_default() += 1;
    }
    let logged: BTreeSet<&str> = after.iter().map(|e| e.event_id.as_str()).collect();
    for event in before {
        match counts.get(event.event_id.as_str()) {
            None => tally.lost.push(event.event_id.clone()),
            Some(1) => tally.ok += 1,
            Some(_) => tally.duplicated.push(event.event_id.clone()),
        }
    }
    tally.unexpected = counts
        .keys()
        .filter(|id| !logged.contains(*id))
        .map(|id| (*id).to_owned())
        .collect();
    let in_order = seen.len() <= after.len()
        && seen
            .iter()
            .zip(after)
            .all(|(live, logged)| live.event_id == logged.event_id);
    (tally, in_order)
}

/// The stream checker on made-up logs, so a checker that cannot see a fault fails the run
/// rather than passing it.
pub fn checker_sees_faults() {
    let event = |id: &str| Event {
        event_id: id.to_owned(),
        ..Default::default()
    };
    let log: Vec<Event> = ["a", "b", "c"].into_iter().map(event).collect();
    let (tally, in_order) = compare(&log, &log, &log);
    assert!(tally.is_clean() && in_order && tally.ok == 3, "{tally:?}");
    let cases: [(&[&str], &str); 4] = [
        (&["a", "c"], "lost"),
        (&["a", "b", "b", "c"], "duplicated"),
        (&["a", "b", "x", "c"], "unexpected"),
        (&["a", "c", "b"], "out of order"),
    ];
    for (seen, fault) in cases {
        let seen: Vec<Event> = seen.iter().copied().map(event).collect();
        let (tally, in_order) = compare(&seen, &log, &log);
        let found = match fault {
            "lost" => !tally.lost.is_empty(),
            "duplicated" => !tally.duplicated.is_empty(),
            "unexpected" => !tally.unexpected.is_empty(),
            _ => !in_order,
        };
        assert!(found, "the checker missed a {fault} event: {tally:?}");
    }
}

/// The cadence's steps, as `Step.item` names them.
const STEPS: [&str; 2] = ["step 1", "step 2"];

/// Followup's log, counted: enrolments per lead, and FollowUpDue per lead and step.
struct Followups {
    enrolled: BTreeMap<String, usize>,
    fired: BTreeMap<(String, String), usize>,
}

impl Followups {
    fn of(log: &[Event]) -> Self {
        let mut enrolled = BTreeMap::new();
        let mut fired = BTreeMap::new();
        for event in log {
            if let Some(plan) = payload::<fpb::LeadEnrolled>(event).and_then(|e| e.plan) {
                *enrolled.entry(plan.lead_id).or_default() += 1;
            } else if let Some(task) = payload::<fpb::FollowUpDue>(event).and_then(|e| e.task) {
                let item = task.step.map(|s| s.item).unwrap_or_default();
                *fired.entry((task.lead_id, item)).or_default() += 1;
            }
        }
        Self { enrolled, fired }
    }
}

/// Lost, duplicated and unexpected items of one check, printed and asserted together.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    lost: Vec<String>,
    duplicated: Vec<String>,
    unexpected: Vec<String>,
}

impl Tally {
    fn report(&self, what: &str) -> String {
        format!(
            "{what}: ok {}, lost {}, duplicated {}, unexpected {}{}",
            self.ok,
            self.lost.len(),
            self.duplicated.len(),
            self.unexpected.len(),
            if self.is_clean() {
                String::new()
            } else {
                format!(
                    " (lost {:?}, duplicated {:?}, unexpected {:?})",
                    first(&self.lost),
                    first(&self.duplicated),
                    first(&self.unexpected)
                )
            }
        )
    }

    fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.unexpected.is_empty()
    }
}

fn first(items: &[String]) -> &[String] {
    &items[..items.len().min(5)]
}

/// The run; false when it was skipped (PostgreSQL unreachable outside CI).
pub async fn the_suite_loses_and_duplicates_nothing_under_faults() -> bool {
    let dbs = ["intake", "activation", "followup", "proof", "feedback"];
    let mut test_dbs = Vec::new();
    for _ in dbs {
        let Some(db) = testkit::TestDb::postgres().await else {
            return false;
        };
        test_dbs.push(db);
    }
    let proxy = Proxy::start(server_of(&test_dbs[0].url)).await;
    let urls: BTreeMap<&str, String> = dbs
        .iter()
        .zip(&test_dbs)
        .map(|(name, db)| (*name, through(&db.url, proxy.addr)))
        .collect();
    // Under target/tmp, removed only after a passing run: a failure leaves every process's
    // log behind to read.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fault-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("log directory");
    let begun = Instant::now();
    let mut suite = Suite::start(&dir, &urls).await;
    eprintln!(
        "fault: suite up after {:?}, logs in {}",
        begun.elapsed(),
        dir.display()
    );

    let intake = suite.intake.channel();
    let activation = [suite.activation[0].channel(), suite.activation[1].channel()];

    // Subscribers reading every log live for the whole run, one of them on each replica
    // that is killed; the first activation reader is also the owners (below).
    let live = vec![
        ("intake", Source::Intake, suite.intake.stream_channel()),
        (
            "activation-2",
            Source::Activation,
            suite.activation[1].stream_channel(),
        ),
        (
            "followup-1",
            Source::Followup,
            suite.followup[0].stream_channel(),
        ),
        (
            "followup-2",
            Source::Followup,
            suite.followup[1].stream_channel(),
        ),
        ("proof", Source::Proof, suite.proof.stream_channel()),
    ]
    .into_iter()
    .map(|(name, source, channel)| (name, source, LiveReader::start(source, channel, |_| {})))
    .collect::<Vec<_>>();

    // The owners: watch activation live and act on some assigned leads.
    let owners = {
        let channels = activation.clone();
        let proof = suite.proof.channel();
        LiveReader::start(
            Source::Activation,
            suite.activation[0].stream_channel(),
            move |event| {
                if event.event_type != "LeadAssigned" {
                    return;
                }
                let Some(assigned) = payload::<apb::LeadAssigned>(event).and_then(|e| e.activation)
                else {
                    return;
                };
                if acts_on(&assigned.lead_id) {
                    tokio::spawn(first_action(
                        channels.clone(),
                        proof.clone(),
                        assigned.lead_id,
                        assigned.owner_id,
                    ));
                }
            },
        )
    };

    // The lead stream, and the faults while it runs.
    let outcomes: Arc<Mutex<BTreeMap<u32, Outcome>>> = Arc::default();
    let stream = {
        let (intake, outcomes) = (intake.clone(), Arc::clone(&outcomes));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
            let mut calls = Vec::new();
            let started = Instant::now();
            let mut n = 0;
            while started.elapsed() < STREAM {
                tick.tick().await;
                let (intake, outcomes) = (intake.clone(), Arc::clone(&outcomes));
                calls.push(tokio::spawn(async move {
                    let outcome = submit(intake, n).await;
                    outcomes.lock().expect("outcomes").insert(n, outcome);
                }));
                n += 1;
            }
            for call in calls {
                call.await.expect("submit task");
            }
        })
    };
    let since = Instant::now();
    let at = |secs: u64| tokio::time::sleep_until((since + Duration::from_secs(secs)).into());

    at(5).await;
    eprintln!("fault: SIGKILL activation-2");
    suite.activation[1].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    suite.activation[1].restart();
    suite.activation[1]
        .wait_serving(Duration::from_secs(60))
        .await;
    eprintln!("fault: activation-2 back after {:?}", since.elapsed());

    at(12).await;
    let outage = database_outage(&mut suite, &proxy).await;
    eprintln!(
        "fault: database back, services serving after {:?}",
        since.elapsed()
    );

    at(20).await;
    eprintln!("fault: SIGKILL followup-2");
    suite.followup[1].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    suite.followup[1].restart();
    suite.followup[1]
        .wait_serving(Duration::from_secs(60))
        .await;
    eprintln!("fault: followup-2 back after {:?}", since.elapsed());

    at(24).await;
    eprintln!("fault: proof stopped");
    suite.proof.kill();
    at(30).await;
    suite.proof.restart();
    suite.proof.wait_serving(Duration::from_secs(60)).await;
    eprintln!("fault: proof back after {:?}", since.elapsed());

    stream.await.expect("lead stream");
    let outcomes = outcomes.lock().expect("outcomes").clone();
    let acked: BTreeMap<String, u32> = outcomes
        .iter()
        .filter_map(|(n, o)| match o {
            Outcome::Acked(id) => Some((id.clone(), *n)),
            Outcome::Maybe => None,
        })
        .collect();
    let maybe: BTreeSet<u32> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Maybe))
        .map(|(n, _)| *n)
        .collect();
    eprintln!(
        "fault: {} submitted, {} acknowledged, {} maybe",
        outcomes.len(),
        acked.len(),
        maybe.len()
    );

    // Drain: every acknowledged lead assigned and then activated or flagged.
    // Drained: every acknowledged lead assigned and then activated or flagged, every
    // activated lead enrolled, and every enrolled lead's steps fired.
    let settled = |activation_log: &[Event], followup_log: &[Event]| {
        let mut assigned = BTreeSet::new();
        let mut decided = BTreeSet::new();
        let mut activated = BTreeSet::new();
        for event in activation_log {
            match event.event_type.as_str() {
                "LeadAssigned" => {
                    assigned.insert(event.aggregate_id.clone());
                }
                "LeadActivated" => {
                    decided.insert(event.aggregate_id.clone());
                    activated.insert(event.aggregate_id.clone());
                }
                "SlaBreached" => {
                    decided.insert(event.aggregate_id.clone());
                }
                _ => {}
            }
        }
        let followups = Followups::of(followup_log);
        acked
            .keys()
            .all(|id| assigned.contains(id) && decided.contains(id))
            && activated
                .iter()
                .all(|id| followups.enrolled.contains_key(id))
            && followups.enrolled.keys().all(|id| {
                STEPS.iter().all(|step| {
                    followups
                        .fired
                        .contains_key(&(id.clone(), (*step).to_owned()))
                })
            })
    };
    let drain_started = Instant::now();
    let followup = [suite.followup[0].channel(), suite.followup[1].channel()];
    let drained = eventually(Duration::from_secs(90), || {
        let (activation, followup) = (activation[0].clone(), followup[0].clone());
        async move {
            settled(
                &replay(Source::Activation, &activation).await,
                &replay(Source::Followup, &followup).await,
            )
        }
    })
    .await;

    eprintln!("fault: drained in {:?}", drain_started.elapsed());

    // The checks, on full replays.
    let intake_log = replay(Source::Intake, &intake).await;
    let activation_log = replay(Source::Activation, &activation[0]).await;
    let followup_log = replay(Source::Followup, &followup[0]).await;
    // Leads intake accepted, by the submission they came from (a "maybe" is known here).
    let mut lead_of: BTreeMap<String, u32> = BTreeMap::new();
    for event in &intake_log {
        if let Some(accepted) = payload::<ipb::LeadAccepted>(event)
            && let Some(lead) = accepted.lead
            && let Some(n) = lead
                .input
                .as_ref()
                .and_then(|i| i.contact.as_ref())
                .and_then(|c| c.email.strip_prefix("lead-"))
                .and_then(|rest| rest.strip_suffix("@fault.example"))
                .and_then(|n| n.parse::<u32>().ok())
        {
            lead_of.insert(lead.lead_id, n);
        }
    }
    let mut assignments: BTreeMap<String, usize> = BTreeMap::new();
    let mut decided = BTreeSet::new();
    let mut activated = BTreeSet::new();
    for event in &activation_log {
        match event.event_type.as_str() {
            "LeadAssigned" => *assignments.entry(event.aggregate_id.clone()).or_default() += 1,
            "LeadActivated" => {
                decided.insert(event.aggregate_id.clone());
                activated.insert(event.aggregate_id.clone());
            }
            "SlaBreached" => {
                decided.insert(event.aggregate_id.clone());
            }
            _ => {}
        }
    }
    let followups = Followups::of(&followup_log);
    // Every activated lead enrolled once; nobody else.
    let mut enrolled_once = Tally::default();
    for id in &activated {
        match followups.enrolled.get(id).copied().unwrap_or(0) {
            0 => enrolled_once.lost.push(id.clone()),
            1 => enrolled_once.ok += 1,
            _ => enrolled_once.duplicated.push(id.clone()),
        }
    }
    enrolled_once.unexpected = followups
        .enrolled
        .keys()
        .filter(|id| !activated.contains(*id))
        .cloned()
        .collect();
    // Every step of every enrolment fired exactly once; no step of anyone else.
    let mut fired_once = Tally::default();
    for id in followups.enrolled.keys() {
        for step in STEPS {
            let key = (id.clone(), step.to_owned());
            match followups.fired.get(&key).copied().unwrap_or(0) {
                0 => fired_once.lost.push(format!("{id} {step}")),
                1 => fired_once.ok += 1,
                _ => fired_once.duplicated.push(format!("{id} {step}")),
            }
        }
    }
    fired_once.unexpected = followups
        .fired
        .iter()
        .filter(|((id, step), _)| {
            !followups.enrolled.contains_key(id) || !STEPS.contains(&step.as_str())
        })
        .map(|((id, step), count)| format!("{id} {step} x{count}"))
        .collect();
    let mut assigned_once = Tally::default();
    for id in acked.keys() {
        match assignments.get(id).copied().unwrap_or(0) {
            0 => assigned_once.lost.push(id.clone()),
            1 => assigned_once.ok += 1,
            _ => assigned_once.duplicated.push(id.clone()),
        }
    }
    for (id, count) in &assignments {
        if acked.contains_key(id) {
            continue;
        }
        match lead_of.get(id) {
            Some(n) if maybe.contains(n) && *count == 1 => assigned_once.ok += 1,
            Some(n) if maybe.contains(n) => assigned_once.duplicated.push(id.clone()),
            _ => assigned_once.unexpected.push(id.clone()),
        }
    }
    let mut activated_or_flagged = Tally::default();
    for id in acked.keys() {
        if decided.contains(id) {
            activated_or_flagged.ok += 1;
        } else {
            activated_or_flagged.lost.push(id.clone());
        }
    }
    // Each live subscriber saw its log complete, in order and without duplicates.
    let mut streams = Vec::new();
    let owners_entry = ("activation-1", Source::Activation, owners);
    for (name, source, reader) in live.iter().chain(std::iter::once(&owners_entry)) {
        let channel = match *source {
            Source::Intake => intake.clone(),
            Source::Activation => activation[0].clone(),
            Source::Followup => followup[0].clone(),
            Source::Proof => suite.proof.channel(),
        };
        let before = replay(*source, &channel).await;
        eventually(Duration::from_secs(30), || {
            let seen = reader.len();
            let want = before.len();
            async move { seen >= want }
        })
        .await;
        let seen = reader.snapshot();
        let after = replay(*source, &channel).await;
        let (tally, in_order) = compare(&seen, &before, &after);
        let resumes = *reader.resumes.lock().expect("resumes");
        streams.push((
            tally.is_clean() && in_order,
            format!(
                "{} (resubscribed {resumes} times, {}in order)",
                tally.report(&format!("live Subscribe on {name} vs replay")),
                if in_order { "" } else { "NOT " }
            ),
        ));
    }

    let mut reports = vec![
        assigned_once.report("assigned exactly once"),
        activated_or_flagged.report("activated or flagged"),
        enrolled_once.report("activated leads enrolled exactly once"),
        fired_once.report("follow-up steps fired exactly once (FollowUpDue per lead and step)"),
        outage.report(),
    ];
    reports.extend(streams.iter().map(|(_, line)| line.clone()));
    for line in &reports {
        eprintln!("fault: {line}");
    }
    assert!(
        drained,
        "not drained within 90 s after the stream: {reports:#?}"
    );
    assert!(
        assigned_once.is_clean()
            && activated_or_flagged.is_clean()
            && enrolled_once.is_clean()
            && fired_once.is_clean()
            && outage.is_clean()
            && streams.iter().all(|(clean, _)| *clean),
        "{reports:#?}"
    );
    assert!(
        acked.len() as f64 >= 0.5 * outcomes.len() as f64,
        "most leads must be acknowledged: {} of {}",
        acked.len(),
        outcomes.len()
    );
    for service in suite.all() {
        assert!(
            service.running(),
            "{} exited:\n{}",
            service.name,
            service.log_tail()
        );
    }
    drop(live);
    drop(owners_entry);
    drop(proxy);
    drop(suite);
    let _ = std::fs::remove_dir_all(&dir);
    true
}
