//! `fairchance demo`: drives a running suite (best `fairchance dev --demo`) with a synthetic
//! but realistic stream of leads, through the public gRPC APIs only, and ends with the
//! fair-chance report by source: which sources were let down by execution rather than by the
//! quality of their leads.
//!
//! Each lead is a story played out in real time against the demo playbook's windows of
//! seconds: submitted by its source (some rows fail intake's rules), assigned by activation,
//! acted on by its owner after a delay (or never, for the field team), followed up until it
//! replies or the cadence ends, an objection on a call answered with proof, and an outcome
//! from the CRM. The seed fixes every lead and every choice; only the clock is real.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proto::activation::v1 as apb;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::feedback::v1 as fbpb;
use proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use proto::followup::v1 as fpb;
use proto::followup::v1::followup_service_client::FollowupServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use proto::proof::v1 as ppb;
use proto::proof::v1::proof_service_client::ProofServiceClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};
use tonic::{Code, Status};

use crate::client::{CliError, ClientArgs, Conn, exit, parse_duration};
use crate::report::{Period, sources_table, sources_text};

pub const HELP: &str = concat!(
    "Examples:\n  \
    fairchance dev --demo                        # in one terminal: the suite with the demo playbook\n  \
    fairchance demo                              # in another: two minutes of leads, then the report\n  \
    fairchance demo --duration 30s --seed 7      # a short run; the same seed gives the same leads\n  \
    fairchance demo --rate 3                     # three new leads a second\n\n\
    The demo is written for the demo playbook (`fairchance dev --demo`): its sources, teams and\n\
    windows of seconds. New leads arrive for --duration; the demo then lets the last leads'\n\
    stories play out (at most a minute) and prints the fair-chance report of the leads it sent.\n\n",
    crate::client::exit_codes_help!()
);

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// How long new leads keep arriving, e.g. 2m, 45s.
    #[arg(long, default_value = "2m", value_parser = parse_period)]
    duration: Duration,
    /// Seed of the synthetic stream: the same seed gives the same leads and the same choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// New leads per second (0.1 to 20).
    #[arg(long, default_value_t = 1.0, value_parser = parse_rate)]
    rate: f64,
}

fn parse_period(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
        return Err(format!("{text:?} is out of range; use 1s to 1h"));
    }
    Ok(d)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if (0.1..=20.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate from 0.1 to 20 leads per second"
        )),
    }
}

/// How long the stories of the last leads may run after arrivals stop.
const WIND_DOWN: Duration = Duration::from_secs(60);
/// How long to wait for a service to catch up with events (a lead not known yet).
const CATCH_UP: Duration = Duration::from_secs(20);
/// How often a story looks at its lead again.
const POLL: Duration = Duration::from_millis(300);
/// How often progress is printed.
const PROGRESS: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The synthetic world
// ---------------------------------------------------------------------------------------------

/// How a lead of a source ends, once it has been worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Won,
    /// Lost or disqualified for a reason the CRM gives.
    Lost(fbpb::OutcomeStage, fbpb::OutcomeReason),
}

/// A lead source: what it sends, how clean its data is, and how its leads behave.
#[derive(Debug)]
struct Profile {
    source: &'static str,
    campaign: &'static str,
    channel: &'static str,
    landing_page: &'static str,
    /// Relative share of the stream.
    weight: u32,
    intents: &'static [(ipb::IntentKind, ipb::IntentStrength, u32)],
    messages: &'static [&'static str],
    employees: (u32, u32),
    /// Share of rows intake's rules reject (private mailbox, no company).
    invalid: f64,
    /// Whether the team that owns the source acts on its leads at all.
    worked: bool,
    /// How long owners take to act, in seconds (within the demo playbook's windows).
    first_action: (f64, f64),
    /// Share of leads that answer, and after how many follow-up touches.
    reply: f64,
    reply_after: (u32, u32),
    /// Share of answering leads that raise an objection on a call.
    objection: f64,
    /// Endings of answering leads, weighted.
    endings: &'static [(Ending, u32)],
    /// What the CRM says of leads nobody worked, weighted.
    unworked_endings: &'static [(Ending, u32)],
}

use fbpb::OutcomeReason as R;
use fbpb::OutcomeStage as S;
use ipb::IntentKind as K;
use ipb::IntentStrength as I;

const PROFILES: &[Profile] = &[
    Profile {
        source: "website-demo-form",
        campaign: "q4-demo",
        channel: "paid_search",
        landing_page: "https://example.com/demo",
        weight: 3,
        intents: &[(K::DemoRequest, I::High, 7), (K::ContactSales, I::High, 3)],
        messages: &[
            "We route 300 inbound leads a month by hand. Can we see routing?",
            "Looking to replace our round-robin spreadsheet before Q1.",
            "Need SLA tracking for a 40-rep team.",
        ],
        employees: (150, 1800),
        invalid: 0.0,
        worked: true,
        first_action: (0.5, 3.0),
        reply: 0.85,
        reply_after: (1, 2),
        objection: 0.5,
        endings: &[
            (Ending::Won, 6),
            (Ending::Lost(S::Lost, R::Competitor), 3),
            (Ending::Lost(S::Lost, R::NoBudget), 1),
        ],
        unworked_endings: &[],
    },
    Profile {
        source: "webinar",
        campaign: "routing-masterclass",
        channel: "organic",
        landing_page: "https://example.com/webinars/routing",
        weight: 3,
        intents: &[(K::Webinar, I::Medium, 7), (K::PricingPage, I::Medium, 3)],
        messages: &[
            "Attended live, asked about territories.",
            "Watched the recording.",
            "Asked a question about CRM sync.",
        ],
        employees: (5, 400),
        invalid: 0.0,
        worked: true,
        first_action: (1.0, 4.0),
        reply: 0.75,
        reply_after: (2, 3),
        objection: 0.4,
        endings: &[
            (Ending::Won, 1),
            (Ending::Lost(S::Disqualified, R::NotIcp), 4),
            (Ending::Lost(S::Lost, R::NoBudget), 3),
            (Ending::Lost(S::Disqualified, R::NoAuthority), 1),
        ],
        unworked_endings: &[],
    },
    Profile {
        source: "content-download",
        campaign: "buyers-guide",
        channel: "paid_social",
        landing_page: "https://example.com/guides/lead-routing",
        weight: 2,
        intents: &[(K::ContentDownload, I::Low, 1)],
        messages: &["Downloaded: The buyer's guide to lead routing"],
        employees: (10, 900),
        invalid: 0.4,
        worked: true,
        first_action: (1.5, 5.0),
        reply: 0.4,
        reply_after: (2, 4),
        objection: 0.2,
        endings: &[
            (Ending::Won, 1),
            (Ending::Lost(S::Lost, R::NoNeed), 3),
            (Ending::Lost(S::Lost, R::Timing), 2),
        ],
        unworked_endings: &[],
    },
    Profile {
        source: "event-badge-scan",
        campaign: "saas-summit",
        channel: "event",
        landing_page: "",
        weight: 3,
        intents: &[(K::EventBadgeScan, I::Medium, 1)],
        messages: &[
            "Stopped by the booth, wants pricing for 60 reps.",
            "Talked about replacing their router; asked for a demo.",
            "Scanned at the keynote.",
        ],
        employees: (100, 2000),
        invalid: 0.0,
        worked: false,
        first_action: (0.0, 0.0),
        reply: 0.0,
        reply_after: (0, 0),
        objection: 0.0,
        endings: &[],
        // The CRM blames the leads; the verdict will not.
        unworked_endings: &[
            (Ending::Lost(S::Lost, R::NoResponse), 3),
            (Ending::Lost(S::Disqualified, R::NotIcp), 2),
        ],
    },
];

const FIRST_NAMES: &[&str] = &[
    "Ada", "Grace", "Alan", "Hedy", "Linus", "Margaret", "Tim", "Barbara", "Ken", "Radia",
    "Dennis", "Frances", "Edsger", "Shafi", "Donald", "Sophie", "Yuki", "Amara", "Lars", "Ines",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Lamarr",
    "Torvalds",
    "Hamilton",
    "Lee",
    "Liskov",
    "Thompson",
    "Perlman",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Goldwasser",
    "Knuth",
    "Wilson",
    "Tanaka",
    "Okafor",
    "Berg",
    "Moreno",
];
const COMPANIES: &[(&str, &str, &str)] = &[
    ("Acme Freight", "acmefreight.example", "logistics"),
    ("Northwind Traders", "northwind.example", "retail"),
    ("Globex", "globex.example", "manufacturing"),
    ("Initech", "initech.example", "software"),
    ("Umbrella Health", "umbrella-health.example", "healthcare"),
    ("Stark Components", "stark.example", "manufacturing"),
    ("Wayne Logistics", "wayne-logistics.example", "logistics"),
    ("Tyrell Systems", "tyrell.example", "software"),
    (
        "Cyberdyne Finance",
        "cyberdyne.example",
        "financial_services",
    ),
    ("Soylent Foods", "soylent.example", "retail"),
    ("Hooli", "hooli.example", "software"),
    ("Vandelay Industries", "vandelay.example", "manufacturing"),
];
const TITLES: &[&str] = &[
    "Head of Sales",
    "VP Revenue Operations",
    "Sales Director",
    "Marketing Manager",
    "Account Executive",
    "Founder",
    "Sales Operations Analyst",
];
const COUNTRIES: &[&str] = &["DE", "GB", "US", "AT", "CH", "FR"];
const PRIVATE_DOMAINS: &[&str] = &["gmail.com", "yahoo.com", "hotmail.com"];
const OBJECTIONS: &[(ppb::Checkpoint, &str)] = &[
    (
        ppb::Checkpoint::Price,
        "Licences for 40 reps is more than our tooling budget.",
    ),
    (
        ppb::Checkpoint::SecurityCompliance,
        "Our security team will ask where lead data is stored.",
    ),
    (
        ppb::Checkpoint::ImplementationEffort,
        "We have no one to set this up this quarter.",
    ),
    (
        ppb::Checkpoint::InternalBuyIn,
        "I'd need to convince our CFO and IT.",
    ),
];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn weighted<'a, T>(rng: &mut StdRng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for (item, weight) in items {
        if roll < *weight {
            return item;
        }
        roll -= weight;
    }
    &items[items.len() - 1].0
}

fn seconds(rng: &mut StdRng, (low, high): (f64, f64)) -> Duration {
    Duration::from_secs_f64(if high > low {
        rng.random_range(low..high)
    } else {
        low
    })
}

/// One lead's story, decided up front from the seed.
#[derive(Debug, Clone)]
struct Story {
    /// When it arrives, from the start of the run.
    at: Duration,
    profile: &'static Profile,
    input: ipb::LeadInput,
    idempotency_key: String,
    first_action_after: Duration,
    /// Follow-up touches before it answers; `None`: it never does.
    reply_after: Option<u32>,
    objection: Option<(ppb::Checkpoint, &'static str)>,
    /// For answering or unworked leads; silent worked leads are lost for no response.
    ending: Option<Ending>,
    /// How long the CRM takes to record what happened.
    crm_delay: Duration,
}

/// The stream of a run: `count` leads `1 / rate` seconds apart (jittered), all decided by
/// `seed`. `run` keeps addresses and idempotency keys of different runs apart, so a second
/// run with the same seed gets the same leads instead of merging into the first run's.
fn stories(seed: u64, count: u64, rate: f64, run: &str) -> Vec<Story> {
    let mut rng = StdRng::seed_from_u64(seed);
    let profiles: Vec<(&'static Profile, u32)> = PROFILES.iter().map(|p| (p, p.weight)).collect();
    (0..count)
        .map(|number| {
            let profile = *weighted(&mut rng, &profiles);
            let jitter = rng.random_range(0.0..0.5);
            let at = Duration::from_secs_f64((number as f64 + jitter) / rate);
            let first = pick(&mut rng, FIRST_NAMES);
            let last = pick(&mut rng, LAST_NAMES);
            let (company, domain, industry) = *pick(&mut rng, COMPANIES);
            let local = format!(
                "{}.{}.{run}{number}",
                first.to_ascii_lowercase(),
                last.to_ascii_lowercase()
            );
            let mut email = format!("{local}@{domain}");
            let mut company = company.to_owned();
            if rng.random_bool(profile.invalid) {
                // Bad rows: a private mailbox, or no company.
                if rng.random_bool(0.5) {
                    email = format!("{local}@{}", pick(&mut rng, PRIVATE_DOMAINS));
                } else {
                    company.clear();
                }
            }
            let (kind, strength, _) = {
                let weights: Vec<_> = profile
                    .intents
                    .iter()
                    .map(|&(k, s, w)| ((k, s, w), w))
                    .collect();
                *weighted(&mut rng, &weights)
            };
            let employees = rng.random_range(profile.employees.0..=profile.employees.1);
            let input = ipb::LeadInput {
                contact: Some(ipb::Contact {
                    name: format!("{first} {last}"),
                    email,
                    company,
                    title: (*pick(&mut rng, TITLES)).to_owned(),
                    country: (*pick(&mut rng, COUNTRIES)).to_owned(),
                    ..Default::default()
                }),
                source: Some(ipb::SourceContext {
                    source: profile.source.into(),
                    channel: profile.channel.into(),
                    campaign: profile.campaign.into(),
                    landing_page: profile.landing_page.into(),
                    message: (*pick(&mut rng, profile.messages)).to_owned(),
                    ..Default::default()
                }),
                intent: Some(ipb::IntentSignal {
                    kind: kind as i32,
                    strength: strength as i32,
                    detail: String::new(),
                }),
                consent: Some(ipb::Consent {
                    basis: ipb::ConsentBasis::LegitimateInterest as i32,
                    ..Default::default()
                }),
                attributes: [
                    ("employees".to_owned(), employees.to_string()),
                    ("industry".to_owned(), industry.to_owned()),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            };
            let first_action_after = seconds(&mut rng, profile.first_action);
            let replies = profile.worked && rng.random_bool(profile.reply);
            let reply_after =
                replies.then(|| rng.random_range(profile.reply_after.0..=profile.reply_after.1));
            let objection = (replies && rng.random_bool(profile.objection))
                .then(|| *pick(&mut rng, OBJECTIONS));
            let ending = if !profile.worked {
                Some(*weighted(&mut rng, profile.unworked_endings))
            } else if replies {
                Some(*weighted(&mut rng, profile.endings))
            } else {
                None
            };
            Story {
                at,
                profile,
                input,
                idempotency_key: format!("demo-{run}-{seed}-{number}"),
                first_action_after,
                reply_after,
                objection,
                ending,
                crm_delay: seconds(&mut rng, (0.5, 2.0)),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Driving the suite
// ---------------------------------------------------------------------------------------------

/// The five services' clients on one connection.
#[derive(Clone)]
struct Api {
    args: Arc<ClientArgs>,
    intake: IntakeServiceClient<Conn>,
    activation: ActivationServiceClient<Conn>,
    followup: FollowupServiceClient<Conn>,
    proof: ProofServiceClient<Conn>,
    feedback: FeedbackServiceClient<Conn>,
}

/// What happened so far, for the progress line and the final tally.
#[derive(Debug, Default)]
struct Stats {
    submitted: AtomicU64,
    rejected: AtomicU64,
    accepted: AtomicU64,
    activated: AtomicU64,
    breached: AtomicU64,
    escalated: AtomicU64,
    touches: AtomicU64,
    replies: AtomicU64,
    objections: AtomicU64,
    proofs: AtomicU64,
    meetings: AtomicU64,
    won: AtomicU64,
    lost: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Stats {
    fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs();
        format!(
            "{:>2}:{:02}  leads {} ({} rejected)  activated {}  SLA breached {}  escalated {}  \
             touches {}  replies {}  objections {} / proof {}  meetings {}  won {}  lost {}",
            secs / 60,
            secs % 60,
            get(&self.submitted),
            get(&self.rejected),
            get(&self.activated),
            get(&self.breached),
            get(&self.escalated),
            get(&self.touches),
            get(&self.replies),
            get(&self.objections),
            get(&self.proofs),
            get(&self.meetings),
            get(&self.won),
            get(&self.lost),
        )
    }
}

/// Calls `rpc` until it answers, waiting while the service does not know the lead yet
/// (services learn of leads from each other's events, a moment after the fact).
async fn patiently<T, F, Fut>(args: &ClientArgs, what: &str, mut rpc: F) -> Result<T, CliError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let give_up = Instant::now() + CATCH_UP;
    loop {
        match tokio::time::timeout(args.timeout, rpc()).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) if status.code() == Code::NotFound && Instant::now() < give_up => {
                sleep(POLL).await;
            }
            Ok(Err(status)) => return Err(CliError::from_status(what, &status)),
            Err(_) => {
                return Err(CliError::new(
                    exit::UNAVAILABLE,
                    format!("{what}: no answer within {:?}", args.timeout),
                    "the suite is slow or overloaded; lower --rate, or raise --timeout",
                ));
            }
        }
    }
}

/// `api.client.method(message)`, patiently, with the command's deadline on each try.
macro_rules! rpc {
    ($api:expr, $client:ident . $method:ident ($message:expr), $what:expr) => {
        async {
            let message = $message;
            patiently(&$api.args, $what, || {
                let mut client = $api.$client.clone();
                let request = $api.args.request(message.clone());
                async move { client.$method(request).await }
            })
            .await
        }
    };
}

async fn activation_of(api: &Api, lead_id: &str) -> Result<apb::Activation, CliError> {
    let found = rpc!(
        api,
        activation.get_activation(apb::GetActivationRequest {
            lead_id: lead_id.to_owned(),
        }),
        "cannot get an activation"
    )
    .await?;
    found.activation.ok_or_else(|| {
        CliError::new(
            exit::INTERNAL,
            format!("activation answered without the activation of lead {lead_id}"),
            "check the server's logs",
        )
    })
}

/// Plays one lead's story; `Ok(())` also when the suite took a turn the story did not plan
/// for (it is then simply over).
async fn play(api: Api, stats: Arc<Stats>, story: Story) -> Result<(), CliError> {
    let answer = rpc!(
        api,
        intake.submit_lead(ipb::SubmitLeadRequest {
            lead: Some(story.input.clone()),
            idempotency_key: story.idempotency_key.clone(),
        }),
        "cannot submit a lead"
    )
    .await?;
    bump(&stats.submitted);
    let Some(lead) = answer.lead else {
        bump(&stats.rejected);
        return Ok(());
    };
    bump(&stats.accepted);
    let lead_id = lead.lead_id;

    // The owner: assigned at once (the demo playbook has someone working at every hour).
    let give_up = Instant::now() + CATCH_UP;
    let mut activation = activation_of(&api, &lead_id).await?;
    while activation.owner_id.is_empty() && Instant::now() < give_up {
        sleep(POLL).await;
        activation = activation_of(&api, &lead_id).await?;
    }

    if !story.profile.worked {
        return neglected(&api, &stats, &story, &lead_id).await;
    }

    sleep(story.first_action_after).await;
    if !first_action(&api, &stats, &lead_id).await? {
        return Ok(());
    }
    let replied = follow_up(&api, &stats, &story, &lead_id).await?;
    if !replied {
        sleep(story.crm_delay).await;
        return outcome(&api, &stats, &lead_id, S::Lost, R::NoResponse).await;
    }
    let ending = story.ending.unwrap_or(Ending::Lost(S::Lost, R::Other));
    let sentiment = match ending {
        Ending::Won => fpb::ReplySentiment::Positive,
        Ending::Lost(_, R::NotIcp | R::NoBudget | R::NoAuthority | R::NoNeed) => {
            fpb::ReplySentiment::Negative
        }
        Ending::Lost(..) => fpb::ReplySentiment::Neutral,
    };
    engage(&api, &lead_id, fpb::EngagementKind::Reply, sentiment).await?;
    bump(&stats.replies);

    if let Some((checkpoint, verbatim)) = story.objection {
        // Raised on the discovery call that follows the reply.
        sleep(Duration::from_millis(800)).await;
        object_and_prove(&api, &stats, &lead_id, checkpoint, verbatim).await?;
    }

    sleep(story.crm_delay).await;
    match ending {
        Ending::Won => {
            engage(
                &api,
                &lead_id,
                fpb::EngagementKind::MeetingBooked,
                fpb::ReplySentiment::Unspecified,
            )
            .await?;
            bump(&stats.meetings);
            outcome(&api, &stats, &lead_id, S::Opportunity, R::Unspecified).await?;
            sleep(story.crm_delay).await;
            outcome(&api, &stats, &lead_id, S::Won, R::Unspecified).await
        }
        Ending::Lost(stage, reason) => outcome(&api, &stats, &lead_id, stage, reason).await,
    }
}

/// A lead of a team that never acts: its SLA breaches, it is reassigned and breaches again,
/// its manager is alerted; the CRM closes it later, blaming the lead.
async fn neglected(api: &Api, stats: &Stats, story: &Story, lead_id: &str) -> Result<(), CliError> {
    let give_up = Instant::now() + WIND_DOWN;
    let mut breaches = 0;
    loop {
        let activation = activation_of(api, lead_id).await?;
        for _ in breaches..activation.breaches {
            bump(&stats.breached);
        }
        breaches = breaches.max(activation.breaches);
        if activation.state == apb::ActivationState::Escalated as i32 {
            bump(&stats.escalated);
            break;
        }
        if activation.state == apb::ActivationState::Activated as i32 || Instant::now() >= give_up {
            break;
        }
        sleep(POLL).await;
    }
    sleep(story.crm_delay).await;
    let (stage, reason) = match story.ending {
        Some(Ending::Lost(stage, reason)) => (stage, reason),
        _ => (S::Lost, R::NoResponse),
    };
    outcome(api, stats, lead_id, stage, reason).await
}

/// The owner's first action, on the plan's channel with its template. `false` when the lead
/// could not be activated (it went to someone else, or may not be contacted).
async fn first_action(api: &Api, stats: &Stats, lead_id: &str) -> Result<bool, CliError> {
    for _ in 0..3 {
        let activation = activation_of(api, lead_id).await?;
        if activation.state != apb::ActivationState::Assigned as i32 {
            return Ok(activation.state == apb::ActivationState::Activated as i32);
        }
        let plan = activation.plan.unwrap_or_default();
        let request = api.args.request(apb::RecordFirstActionRequest {
            lead_id: lead_id.to_owned(),
            owner_id: activation.owner_id.clone(),
            channel: plan.channel,
            template_id: plan.template_id.clone(),
            ..Default::default()
        });
        match api.activation.clone().record_first_action(request).await {
            Ok(_) => {
                bump(&stats.activated);
                return Ok(true);
            }
            // Reassigned in the meantime: the new owner acts instead.
            Err(status) if status.code() == Code::FailedPrecondition => sleep(POLL).await,
            Err(status) => {
                return Err(CliError::from_status(
                    "cannot record a first action",
                    &status,
                ));
            }
        }
    }
    Ok(false)
}

/// Works the cadence: completes each task as it comes due, until the lead answers (after its
/// planned number of touches) or follow-up ends. Whether it answered.
async fn follow_up(
    api: &Api,
    stats: &Stats,
    story: &Story,
    lead_id: &str,
) -> Result<bool, CliError> {
    let give_up = Instant::now() + WIND_DOWN;
    let mut seen = 0;
    while Instant::now() < give_up {
        let plan = rpc!(
            api,
            followup.get_plan(fpb::GetPlanRequest {
                lead_id: lead_id.to_owned(),
            }),
            "cannot get a follow-up plan"
        )
        .await?
        .plan
        .unwrap_or_default();
        for step in &plan.steps_done {
            if step.task_number == 0
                || step.cancelled
                || step.outcome != fpb::TaskOutcome::Unspecified as i32
            {
                continue;
            }
            let outcome = if step.channel == apb::Channel::Call as i32 {
                if step.task_number % 2 == 0 {
                    fpb::TaskOutcome::LeftVoicemail
                } else {
                    fpb::TaskOutcome::NoAnswer
                }
            } else {
                fpb::TaskOutcome::Done
            };
            let request = api.args.request(fpb::CompleteTaskRequest {
                task_id: format!("{lead_id}/{}", step.task_number),
                owner_id: plan.owner_id.clone(),
                outcome: outcome as i32,
                ..Default::default()
            });
            match api.followup.clone().complete_task(request).await {
                // Already completed, or no longer this owner's: nothing left to do.
                Ok(_) => {}
                Err(status) if status.code() == Code::FailedPrecondition => {}
                Err(status) => {
                    return Err(CliError::from_status("cannot complete a task", &status));
                }
            }
        }
        let touches = u32::try_from(plan.steps_done.len()).unwrap_or(u32::MAX);
        for _ in seen..touches {
            bump(&stats.touches);
        }
        seen = seen.max(touches);
        if story.reply_after.is_some_and(|after| touches >= after) {
            return Ok(true);
        }
        let over = [
            fpb::PlanStatus::Nurture,
            fpb::PlanStatus::Finished,
            fpb::PlanStatus::Stopped,
            fpb::PlanStatus::OptedOut,
        ]
        .iter()
        .any(|s| *s as i32 == plan.status);
        if over {
            return Ok(false);
        }
        sleep(POLL).await;
    }
    Ok(false)
}

async fn engage(
    api: &Api,
    lead_id: &str,
    kind: fpb::EngagementKind,
    sentiment: fpb::ReplySentiment,
) -> Result<(), CliError> {
    rpc!(
        api,
        followup.record_engagement(fpb::RecordEngagementRequest {
            lead_id: lead_id.to_owned(),
            kind: kind as i32,
            sentiment: sentiment as i32,
            ..Default::default()
        }),
        "cannot record an engagement"
    )
    .await
    .map(drop)
}

/// An objection on a call, and the proof the proof service picks for it, delivered.
async fn object_and_prove(
    api: &Api,
    stats: &Stats,
    lead_id: &str,
    checkpoint: ppb::Checkpoint,
    verbatim: &str,
) -> Result<(), CliError> {
    rpc!(
        api,
        proof.record_objection(ppb::RecordObjectionRequest {
            lead_id: lead_id.to_owned(),
            checkpoint: checkpoint as i32,
            verbatim: verbatim.to_owned(),
            ..Default::default()
        }),
        "cannot record an objection"
    )
    .await?;
    bump(&stats.objections);
    for _ in 0..3 {
        let next = rpc!(
            api,
            proof.next_proof(ppb::NextProofRequest {
                lead_id: lead_id.to_owned(),
            }),
            "cannot get the next proof"
        )
        .await?;
        match (next.verdict(), next.asset) {
            (ppb::Verdict::Recommended, Some(asset)) => {
                rpc!(
                    api,
                    proof.record_proof_delivered(ppb::RecordProofDeliveredRequest {
                        lead_id: lead_id.to_owned(),
                        asset_id: asset.asset_id.clone(),
                        ..Default::default()
                    }),
                    "cannot record a proof delivery"
                )
                .await?;
                bump(&stats.proofs);
                // The buyer reads it: evidence for the stage the asset serves.
                rpc!(
                    api,
                    proof.record_belief_signal(ppb::RecordBeliefSignalRequest {
                        lead_id: lead_id.to_owned(),
                        kind: ppb::SignalKind::AssetConsumed as i32,
                        asset_id: asset.asset_id.clone(),
                        stage: asset.stage,
                        ..Default::default()
                    }),
                    "cannot record a belief signal"
                )
                .await?;
                return Ok(());
            }
            (ppb::Verdict::Wait, _) => {
                let wait = crate::table::from_proto_time(next.wait_until.as_ref())
                    .map(|until| jiff::Timestamp::now().duration_until(until))
                    .and_then(|d| Duration::try_from(d).ok())
                    .unwrap_or(POLL);
                sleep(wait.min(Duration::from_secs(10))).await;
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

async fn outcome(
    api: &Api,
    stats: &Stats,
    lead_id: &str,
    stage: fbpb::OutcomeStage,
    reason: fbpb::OutcomeReason,
) -> Result<(), CliError> {
    rpc!(
        api,
        feedback.record_outcome(fbpb::RecordOutcomeRequest {
            lead_id: lead_id.to_owned(),
            stage: stage as i32,
            reason: reason as i32,
            note: "from the demo CRM".into(),
            ..Default::default()
        }),
        "cannot record an outcome"
    )
    .await?;
    match stage {
        S::Won => bump(&stats.won),
        S::Lost | S::Disqualified => bump(&stats.lost),
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

pub fn main(args: DemoArgs) -> ExitCode {
    crate::client::run(run(args))
}

async fn run(args: DemoArgs) -> Result<ExitCode, CliError> {
    let conn = args.client.connect().await?;
    let api = Api {
        args: Arc::new(args.client.clone()),
        intake: IntakeServiceClient::new(conn.clone()),
        activation: ActivationServiceClient::new(conn.clone()),
        followup: FollowupServiceClient::new(conn.clone()),
        proof: ProofServiceClient::new(conn.clone()),
        feedback: FeedbackServiceClient::new(conn),
    };
    // Leads are counted from a little before the first, so the report shows this run only.
    let started_at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(2);
    let run_tag = format!("r{:x}", started_at.as_second() % 0x10_0000);
    let count = ((args.duration.as_secs_f64() * args.rate).round() as u64).max(1);
    let plan = stories(args.seed, count, args.rate, &run_tag);
    println!(
        "fairchance demo: {count} leads over {} from {} sources (seed {}), against {}\n",
        crate::table::duration_text(args.duration),
        PROFILES.len(),
        args.seed,
        args.client.addr
    );
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let mut running: JoinSet<Result<(), CliError>> = JoinSet::new();
    let mut pending = plan.into_iter().peekable();
    let mut progress = tokio::time::interval_at(start + PROGRESS, PROGRESS);
    let mut wind_down: Option<Instant> = None;
    loop {
        if pending.peek().is_none() && wind_down.is_none() {
            wind_down = Some(Instant::now() + WIND_DOWN);
        }
        if pending.peek().is_none() && running.is_empty() {
            break;
        }
        let next_at = pending.peek().map(|s| start + s.at);
        tokio::select! {
            () = sleep_until_some(next_at) => {
                if let Some(story) = pending.next() {
                    running.spawn(play(api.clone(), Arc::clone(&stats), story));
                }
            }
            Some(joined) = running.join_next() => {
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        running.abort_all();
                        return Err(error);
                    }
                    Err(error) => {
                        running.abort_all();
                        return Err(CliError::new(
                            exit::INTERNAL,
                            format!("a lead's story failed ({error})"),
                            "this is a bug in the demo; please report it",
                        ));
                    }
                }
            }
            _ = progress.tick() => println!("{}", stats.line(start.elapsed())),
            () = sleep_until_some(wind_down) => {
                let cut = running.len();
                running.abort_all();
                println!("{cut} stories still running after the wind-down were cut short");
                break;
            }
        }
    }
    println!("{}", stats.line(start.elapsed()));
    println!("\nAll leads played out; waiting for feedback to catch up...\n");

    let report = settled_report(&api, started_at, &stats).await?;
    let period = Period {
        from: Some(started_at),
        to: None,
    };
    print!(
        "{}",
        sources_text(&sources_table(&report), "source", &period)
    );
    println!("\n{}", summary(&report));
    Ok(ExitCode::SUCCESS)
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The source report once feedback has every lead and outcome of this run and two reads in a
/// row agree (events arrive a moment after the calls that caused them); the latest after
/// `CATCH_UP` otherwise.
async fn settled_report(
    api: &Api,
    from: jiff::Timestamp,
    stats: &Stats,
) -> Result<fbpb::GetSourceReportResponse, CliError> {
    let give_up = Instant::now() + CATCH_UP;
    let mut previous: Option<fbpb::GetSourceReportResponse> = None;
    loop {
        let report = rpc!(
            api,
            feedback.get_source_report(fbpb::GetSourceReportRequest {
                from: Some(runtime::grpc::to_proto_timestamp(from)),
                to: None,
                group_by: fbpb::GroupBy::Source as i32,
            }),
            "cannot get the source report"
        )
        .await?;
        let total = report.total.clone().unwrap_or_default();
        let losses =
            total.lead_quality_losses + total.system_failure_losses + total.undetermined_losses;
        let complete = total.accepted >= get(&stats.accepted)
            && total.rejected >= get(&stats.rejected)
            && losses >= get(&stats.lost);
        if (complete && previous.as_ref() == Some(&report)) || Instant::now() >= give_up {
            return Ok(report);
        }
        previous = Some(report);
        sleep(Duration::from_secs(1)).await;
    }
}

/// One paragraph: which sources were let down by execution, and which lost leads to quality.
fn summary(report: &fbpb::GetSourceReportResponse) -> String {
    let mut by_execution = BTreeMap::new();
    let mut by_quality = BTreeMap::new();
    for g in &report.groups {
        let name = if g.group.is_empty() {
            "(none)"
        } else {
            &g.group
        };
        if g.system_failure_losses > 0 && g.system_failure_losses >= g.lead_quality_losses {
            by_execution.insert(name.to_owned(), g);
        } else if g.lead_quality_losses > 0 {
            by_quality.insert(name.to_owned(), g);
        }
    }
    let total = report.total.clone().unwrap_or_default();
    let lost = total.lead_quality_losses + total.system_failure_losses + total.undetermined_losses;
    let mut out = format!(
        "Summary: {lost} leads were lost or disqualified; {} never had a fair chance (system \
         failure), {} had one and failed on targeting (lead quality), {} cannot be blamed \
         either way.",
        total.system_failure_losses, total.lead_quality_losses, total.undetermined_losses
    );
    if by_execution.is_empty() {
        out.push_str(" No source was let down by execution.");
    } else {
        let names: Vec<String> = by_execution
            .iter()
            .map(|(name, g)| {
                format!(
                    "{name} ({} of {} losses system failures, {} never activated)",
                    g.system_failure_losses,
                    g.lead_quality_losses + g.system_failure_losses + g.undetermined_losses,
                    crate::table::percent(g.never_activated_share)
                )
            })
            .collect();
        out.push_str(&format!(
            " Let down by execution rather than lead quality: {}. Whatever the CRM says about \
             these leads, they never got a fair chance, so judging the source by them would \
             blame marketing for a sales problem: fix the follow-through first.",
            names.join(", ")
        ));
    }
    if !by_quality.is_empty() {
        let names: Vec<String> = by_quality
            .iter()
            .map(|(name, g)| format!("{name} ({} lead-quality losses)", g.lead_quality_losses))
            .collect();
        out.push_str(&format!(
            " Lost to lead quality after a fair chance: {}: a targeting question for marketing.",
            names.join(", ")
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a = stories(7, 40, 2.0, "x");
        let b = stories(7, 40, 2.0, "x");
        let c = stories(8, 40, 2.0, "x");
        let key = |s: &[Story]| {
            s.iter()
                .map(|s| (s.profile.source, s.input.clone(), s.reply_after, s.ending))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        // Arrivals keep the rate, and every source shows up in a stream this long.
        assert!(a.windows(2).all(|w| w[0].at < w[1].at));
        assert!(a[39].at < Duration::from_secs(20));
        for profile in PROFILES {
            assert!(a.iter().any(|s| s.profile.source == profile.source));
        }
    }

    #[test]
    fn only_the_content_source_sends_rows_intake_rejects() {
        let stream = stories(3, 200, 5.0, "x");
        let bad = |s: &Story| {
            let c = s.input.contact.as_ref().unwrap();
            c.company.is_empty() || PRIVATE_DOMAINS.iter().any(|d| c.email.ends_with(d))
        };
        assert!(stream.iter().any(bad));
        assert!(
            stream
                .iter()
                .filter(|s| bad(s))
                .all(|s| s.profile.source == "content-download")
        );
        // Nobody works the badge scans, so none of them replies; they all end lost.
        for s in stream.iter().filter(|s| !s.profile.worked) {
            assert_eq!(s.reply_after, None);
            assert!(matches!(s.ending, Some(Ending::Lost(..))));
        }
    }

    #[test]
    fn the_summary_names_sources_let_down_by_execution() {
        let group = |name: &str, lq, sf| fbpb::GroupReport {
            group: name.into(),
            lead_quality_losses: lq,
            system_failure_losses: sf,
            never_activated_share: if sf > 0 { 1.0 } else { 0.0 },
            ..Default::default()
        };
        let report = fbpb::GetSourceReportResponse {
            groups: vec![group("event-badge-scan", 0, 5), group("webinar", 3, 0)],
            total: Some(group("", 3, 5)),
        };
        let text = summary(&report);
        assert!(
            text.contains("Let down by execution rather than lead quality: event-badge-scan (5 of 5 losses system failures, 100% never activated)"),
            "{text}"
        );
        assert!(
            text.contains("Lost to lead quality after a fair chance: webinar (3"),
            "{text}"
        );
        let quiet = fbpb::GetSourceReportResponse {
            groups: vec![group("webinar", 3, 0)],
            total: Some(group("", 3, 0)),
        };
        assert!(summary(&quiet).contains("No source was let down by execution"));
    }

    #[test]
    fn rates_and_periods_are_checked() {
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_period("0s").is_err());
        assert_eq!(parse_period("2m"), Ok(Duration::from_secs(120)));
    }

    /// Every service accepts the demo playbook, and its windows and delays are seconds.
    #[test]
    fn the_demo_playbook_is_valid_for_every_service() {
        use runtime::playbook::parse;
        let text = crate::dev::DEMO_PLAYBOOK;
        let origin = "crates/cli/demo/playbook.toml";
        parse::<intake::playbook::IntakePlaybook>(origin, text).unwrap_or_else(|e| panic!("{e}"));
        parse::<activation::playbook::ActivationPlaybook>(origin, text)
            .unwrap_or_else(|e| panic!("{e}"));
        parse::<followup::playbook::FollowupPlaybook>(origin, text)
            .unwrap_or_else(|e| panic!("{e}"));
        let proof =
            parse::<proof::playbook::ProofPlaybook>(origin, text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(proof.spacing(), jiff::SignedDuration::from_secs(5));
        let feedback = parse::<feedback::playbook::FeedbackPlaybook>(origin, text)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            feedback.fair_chance().min_span,
            jiff::SignedDuration::from_secs(6)
        );
        // Every objection the demo raises has proof in the demo catalog.
        for (checkpoint, _) in OBJECTIONS {
            let name = checkpoint
                .as_str_name()
                .trim_start_matches("CHECKPOINT_")
                .to_ascii_lowercase();
            assert!(text.contains(&format!("\"{name}\"")), "{name}");
        }
    }
}
