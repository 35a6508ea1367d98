//! fairchance activation: every accepted lead gets an owner, a relevant first action and a
//! visible SLA timer; a lead not activated in time is the system's failure, escalated and
//! reassigned. Read top-down: [`domain`] (the rules, pure), [`playbook`] (the operator's
//! rules file), [`record`] and [`store`] (persistence), [`service`] (use cases in
//! transactions), [`intake_events`] and [`convert`] (the wire).

pub mod convert;
pub mod domain;
pub mod grpc;
pub mod intake_events;
pub mod playbook;
pub mod record;
pub mod scopes;
pub mod service;
pub mod store;

use runtime::consumer::Upstream;
use runtime::server::HealthTarget;
use runtime::service::{ServiceContext, ServiceSpec, StartError};
use runtime::timers::Timers;
use runtime::{EventLog, Migrations};
use tonic::service::RoutesBuilder;

/// The consumer name activation's cursor on intake's stream is stored under.
const INTAKE_CONSUMER: &str = "activation.intake";

/// The activation service, as deployed.
#[derive(Debug)]
pub struct ActivationService;

impl ServiceSpec for ActivationService {
    const NAME: &'static str = "activation";
    const DEFAULT_PORT: u16 = 50052;
    type Playbook = playbook::ActivationPlaybook;

    fn migrations() -> &'static Migrations {
        &store::MIGRATIONS
    }

    async fn start(
        ctx: ServiceContext,
        routes: &mut RoutesBuilder,
    ) -> Result<Vec<HealthTarget>, StartError> {
        // Owners, teams and routes come only from the playbook: without one, no lead could
        // ever be assigned.
        if ctx.config.playbook.is_none() {
            return Err(StartError::Other(
                "FAIRCHANCE_PLAYBOOK: required: activation needs the playbook's teams, owners and routes".into(),
            ));
        }
        let intake_client = runtime::client::Connector::from_config(&ctx.config)
            .upstream("intake")
            .map_err(|e| StartError::Other(e.to_string()))?;
        let playbook = ctx.playbook::<playbook::ActivationPlaybook>()?;
        let log = EventLog::new(ctx.db.clone(), Self::NAME);
        let timers = Timers::new(ctx.db.clone());
        let activation = service::Activation::new(
            store::Store::new(ctx.db.clone()),
            log.clone(),
            timers.clone(),
            playbook,
            ctx.clock.clone(),
        );
        log.spawn_listener(ctx.shutdown.clone());
        // One scheduler: SLA deadlines come one per lead, and a breach locks the team's owners,
        // which a second scheduler would only wait for.
        timers.spawn(1, ctx.clock.clone(), ctx.shutdown.clone(), {
            let activation = activation.clone();
            move || activation.clone()
        });
        let intake = Upstream {
            client: intake_client,
            service: "fairchance.intake.v1.IntakeService",
            event_types: Vec::new(),
        };
        tokio::spawn(runtime::consumer::run(
            ctx.db.clone(),
            INTAKE_CONSUMER.to_owned(),
            move |after_cursor| {
                let intake = intake.clone();
                async move { intake.subscribe(after_cursor).await }
            },
            activation.clone(),
            ctx.shutdown.clone(),
        ));
        let api = grpc::ActivationApi::new(activation, ctx.shutdown.clone());
        routes.add_service(api.into_server(ctx.config.server.max_message_bytes));
        Ok(vec![HealthTarget {
            service: grpc::SERVICE_NAME,
            db: ctx.db,
            scopes: scopes::SCOPES,
        }])
    }
}
