//! fairchance intake: where every lead enters. It validates and normalises submissions, keeps
//! their context, merges duplicates, honours opt-outs, scores completeness and ICP fit, and
//! sends leads that fail data-quality rules to a review queue instead of dropping them.
//!
//! Read top-down: [`domain`] (the rules, pure), [`playbook`] (the operator's rules file),
//! [`store`] (SQL), [`service`] (use cases in transactions), [`grpc`] (the API edge).

pub mod convert;
pub mod domain;
pub mod grpc;
pub mod playbook;
pub mod scopes;
pub mod service;
pub mod store;

use runtime::server::HealthTarget;
use runtime::service::{ServiceContext, ServiceSpec, StartError};
use runtime::{EventLog, Migrations};
use tonic::service::RoutesBuilder;

/// The intake service, as deployed.
#[derive(Debug)]
pub struct IntakeService;

impl ServiceSpec for IntakeService {
    const NAME: &'static str = "intake";
    const DEFAULT_PORT: u16 = 50051;
    type Playbook = playbook::IntakePlaybook;

    fn migrations() -> &'static Migrations {
        &store::MIGRATIONS
    }

    async fn start(
        ctx: ServiceContext,
        routes: &mut RoutesBuilder,
    ) -> Result<Vec<HealthTarget>, StartError> {
        let playbook = ctx.playbook::<playbook::IntakePlaybook>()?;
        tokio::task::spawn_blocking(domain::validate::warm_up)
            .await
            .map_err(|e| StartError::Other(e.to_string()))?;
        let log = EventLog::new(ctx.db.clone(), Self::NAME);
        log.spawn_listener(ctx.shutdown.clone());
        let intake = service::Intake::new(
            store::Store::new(ctx.db.clone()),
            log,
            playbook,
            ctx.clock.clone(),
        );
        let api = grpc::IntakeApi::new(intake, ctx.shutdown.clone());
        routes.add_service(api.into_server(ctx.config.server.max_message_bytes));
        Ok(vec![HealthTarget {
            service: grpc::SERVICE_NAME,
            db: ctx.db,
            scopes: scopes::SCOPES,
        }])
    }
}
