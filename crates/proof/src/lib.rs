//! fairchance proof: the right proof at the buyer's fear checkpoint, not before and not too
//! late. A belief state per lead (stages installed, objections open, proof delivered) is built
//! from activation's and followup's events and from what people record; `NextProof` picks
//! the asset for where the lead is now, and every delivery's outcome teaches the ranking which
//! proof works. Read top-down: [`domain`] (the rules, pure), [`playbook`] (the catalog and
//! settings), [`store`] (persistence), [`service`] (use cases in transactions), [`convert`]
//! and [`grpc`] (the wire).

pub mod convert;
pub mod domain;
pub mod grpc;
pub mod playbook;
pub mod scopes;
pub mod service;
pub mod store;

use runtime::consumer::Upstream;
use runtime::server::HealthTarget;
use runtime::service::{ServiceContext, ServiceSpec, StartError};
use runtime::timers::Timers;
use runtime::{EventLog, Migrations};
use tonic::service::RoutesBuilder;

/// The consumer name proof's cursor on activation's stream is stored under.
const ACTIVATION_CONSUMER: &str = "proof.activation";
/// The consumer name proof's cursor on followup's stream is stored under.
const FOLLOWUP_CONSUMER: &str = "proof.followup";

/// The proof service, as deployed.
#[derive(Debug)]
pub struct ProofService;

impl ServiceSpec for ProofService {
    const NAME: &'static str = "proof";
    const DEFAULT_PORT: u16 = 50054;
    type Playbook = playbook::ProofPlaybook;

    fn migrations() -> &'static Migrations {
        &store::MIGRATIONS
    }

    async fn start(
        ctx: ServiceContext,
        routes: &mut RoutesBuilder,
    ) -> Result<Vec<HealthTarget>, StartError> {
        let connector = runtime::client::Connector::from_config(&ctx.config);
        let upstream = |name: &str| {
            connector
                .upstream(name)
                .map_err(|e| StartError::Other(e.to_string()))
        };
        let activation = upstream("activation")?;
        let followup = upstream("followup")?;
        let playbook = ctx.playbook::<playbook::ProofPlaybook>()?;
        let log = EventLog::new(ctx.db.clone(), Self::NAME);
        let timers = Timers::new(ctx.db.clone());
        let proof = service::Proof::new(
            store::Store::new(ctx.db.clone()),
            log.clone(),
            timers.clone(),
            playbook,
            ctx.clock.clone(),
        );
        log.spawn_listener(ctx.shutdown.clone());
        tokio::spawn(runtime::idempotency::prune_loop(
            ctx.db.clone(),
            ctx.clock.clone(),
            service::NEXT_PROOF_SCOPE,
            service::NEXT_PROOF_KEEP,
            std::time::Duration::from_secs(3600),
            ctx.shutdown.clone(),
        ));
        // One scheduler: an outcome window settles once per lead, far below what one keeps up with.
        timers.spawn(1, ctx.clock.clone(), ctx.shutdown.clone(), {
            let proof = proof.clone();
            move || proof.clone()
        });
        let sources = [
            (
                ACTIVATION_CONSUMER,
                Upstream {
                    client: activation,
                    service: "fairchance.activation.v1.ActivationService",
                    event_types: vec!["LeadActivated".into(), "LeadErased".into()],
                },
            ),
            (
                FOLLOWUP_CONSUMER,
                Upstream {
                    client: followup,
                    service: "fairchance.followup.v1.FollowupService",
                    event_types: ["EngagementRecorded", "CadenceStopped", "TaskCompleted"]
                        .map(String::from)
                        .to_vec(),
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
                proof.clone(),
                ctx.shutdown.clone(),
            ));
        }
        let api = grpc::ProofApi::new(proof, ctx.shutdown.clone());
        routes.add_service(api.into_server(ctx.config.server.max_message_bytes));
        Ok(vec![HealthTarget {
            service: grpc::SERVICE_NAME,
            db: ctx.db,
            scopes: scopes::SCOPES,
        }])
    }
}
