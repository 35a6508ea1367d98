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
pub mod service;
pub mod store;

use std::time::Duration;

use futures::StreamExt;
use proto::events::v1::SubscribeFrom;
use proto::intake::v1::SubscribeRequest;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
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
        let intake_url = ctx
            .config
            .upstream("intake")
            .map_err(|e| StartError::Other(e.to_string()))?
            .to_owned();
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
        tokio::spawn({
            let (timers, activation, clock, stop) = (
                timers,
                activation.clone(),
                ctx.clock.clone(),
                ctx.shutdown.clone(),
            );
            async move { timers.run(clock, activation, stop).await }
        });
        tokio::spawn(runtime::consumer::run(
            ctx.db.clone(),
            INTAKE_CONSUMER.to_owned(),
            move |after_cursor| subscribe_intake(intake_url.clone(), after_cursor),
            activation.clone(),
            ctx.shutdown.clone(),
        ));
        let api = grpc::ActivationApi::new(activation, ctx.shutdown.clone());
        routes.add_service(api.into_server(ctx.config.server.max_message_bytes));
        Ok(vec![HealthTarget {
            service: grpc::SERVICE_NAME,
            db: ctx.db,
        }])
    }
}

type IntakeEvents = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<proto::events::v1::Event, tonic::Status>> + Send>,
>;

/// Opens intake's event stream after `after_cursor`.
async fn subscribe_intake(
    url: String,
    after_cursor: String,
) -> Result<IntakeEvents, tonic::Status> {
    let endpoint = tonic::transport::Endpoint::from_shared(url)
        .map_err(|e| tonic::Status::invalid_argument(format!("FAIRCHANCE_INTAKE_URL: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("intake unreachable: {e}")))?;
    let from = SubscribeFrom {
        after_cursor,
        ..Default::default()
    };
    let stream = IntakeServiceClient::new(channel)
        .subscribe(SubscribeRequest { from: Some(from) })
        .await?
        .into_inner();
    Ok(Box::pin(stream.map(|item| {
        item.and_then(|response| {
            response
                .event
                .ok_or_else(|| tonic::Status::internal("intake sent an empty event"))
        })
    })))
}
