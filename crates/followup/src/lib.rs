//! fairchance followup: every activated lead is enrolled in a cadence of scheduled steps that
//! become tasks for its owner; engagement stops, pauses or redirects the cadence, silence
//! changes the angle, lost momentum escalates, and a cadence that ends unanswered recycles the
//! lead into long-term nurture instead of closing it. Read top-down: [`domain`] (the rules,
//! pure), [`playbook`] (the operator's rules file), [`store`] (persistence), [`service`] (use
//! cases in transactions), [`convert`] and [`grpc`] (the wire).

pub mod convert;
pub mod domain;
pub mod grpc;
pub mod playbook;
pub mod scopes;
pub mod service;
pub mod store;

use std::time::Duration;

use runtime::consumer::Upstream;
use runtime::server::HealthTarget;
use runtime::service::{ServiceContext, ServiceSpec, StartError};
use runtime::timers::Timers;
use runtime::{EventLog, Migrations};
use tonic::service::RoutesBuilder;

/// The consumer name followup's cursor on activation's stream is stored under.
const ACTIVATION_CONSUMER: &str = "followup.activation";
/// The consumer name followup's cursor on intake's stream (opt-outs) is stored under.
const INTAKE_CONSUMER: &str = "followup.intake";
/// How often touches too old for the frequency cap are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The followup service, as deployed.
#[derive(Debug)]
pub struct FollowupService;

impl ServiceSpec for FollowupService {
    const NAME: &'static str = "followup";
    const DEFAULT_PORT: u16 = 50053;
    type Playbook = playbook::FollowupPlaybook;

    fn migrations() -> &'static Migrations {
        &store::MIGRATIONS
    }

    async fn start(
        ctx: ServiceContext,
        routes: &mut RoutesBuilder,
    ) -> Result<Vec<HealthTarget>, StartError> {
        // Cadences come only from the playbook: without one, no lead could be enrolled.
        if ctx.config.playbook.is_none() {
            return Err(StartError::Other(
                "FAIRCHANCE_PLAYBOOK: required: followup needs the playbook's cadences".into(),
            ));
        }
        let connector = runtime::client::Connector::from_config(&ctx.config);
        let upstream = |name: &str| {
            connector
                .upstream(name)
                .map_err(|e| StartError::Other(e.to_string()))
        };
        let activation = upstream("activation")?;
        let intake = upstream("intake")?;
        // Proof is optional: without it, proof steps go out with the cadence's default
        // template and say so.
        let proof = connector
            .optional_upstream("proof")
            .map_err(|e| StartError::Other(e.to_string()))?;
        let playbook = ctx.playbook::<playbook::FollowupPlaybook>()?;
        let log = EventLog::new(ctx.db.clone(), Self::NAME);
        let timers = Timers::new(ctx.db.clone());
        let followup = service::Followup::new(
            store::Store::new(ctx.db.clone()),
            log.clone(),
            timers.clone(),
            playbook,
            ctx.clock.clone(),
            intake.clone(),
            proof,
        );
        log.spawn_listener(ctx.shutdown.clone());
        let workers = runtime::timers::workers(
            ctx.config.timer_workers,
            ctx.db.backend(),
            ctx.config.db_max_connections,
        );
        timers.spawn(workers, ctx.clock.clone(), ctx.shutdown.clone(), || {
            followup.scheduler()
        });
        let sources = [
            (
                ACTIVATION_CONSUMER,
                Upstream {
                    client: activation,
                    service: "fairchance.activation.v1.ActivationService",
                    event_types: [
                        "LeadActivated",
                        "LeadReassigned",
                        "EscalationRaised",
                        "LeadErased",
                    ]
                    .map(String::from)
                    .to_vec(),
                },
            ),
            (
                INTAKE_CONSUMER,
                Upstream {
                    client: intake,
                    service: "fairchance.intake.v1.IntakeService",
                    event_types: vec!["ContactOptedOut".into()],
                },
            ),
        ];
        for (consumer, source) in sources {
            tokio::spawn(runtime::consumer::run(
                ctx.db.clone(),
                consumer.to_owned(),
                move |after_cursor| {
                    let source = source.clone();
                    async move { source.subscribe(after_cursor).await }
                },
                followup.clone(),
                ctx.shutdown.clone(),
            ));
        }
        tokio::spawn({
            let (followup, stop) = (followup.clone(), ctx.shutdown.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(PRUNE_EVERY) => {}
                    }
                    if let Err(error) = followup.prune_touches().await {
                        tracing::warn!(%error, "pruning old touches failed; retried later");
                    }
                }
            }
        });
        let api = grpc::FollowupApi::new(followup, ctx.shutdown.clone());
        routes.add_service(api.into_server(ctx.config.server.max_message_bytes));
        Ok(vec![HealthTarget {
            service: grpc::SERVICE_NAME,
            db: ctx.db,
            scopes: scopes::SCOPES,
        }])
    }
}
