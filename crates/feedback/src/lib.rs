//! fairchance feedback: execution data back to marketing. Every other service's event stream
//! is projected into one fact per lead; CRM outcomes join them; reports by source, campaign or
//! channel show what actually happened to leads, and every lead gets a fair-chance verdict, so
//! a lost lead is attributed to lead quality or to the system that failed it. Read top-down:
//! [`domain`] (the rules, pure), [`playbook`] (the fair-chance rule), [`store`]
//! (persistence), [`queries`] (the reports in SQL), [`rollup`] (their sums over settled leads), [`service`] (use cases), [`convert`] and [`grpc`] (the wire).

pub mod convert;
pub mod domain;
pub mod grpc;
pub mod playbook;
pub mod queries;
pub mod rollup;
pub mod scopes;
pub mod service;
pub mod store;

use runtime::Migrations;
use runtime::consumer::Upstream;
use runtime::server::HealthTarget;
use runtime::service::{ServiceContext, ServiceSpec, StartError};
use tonic::service::RoutesBuilder;

/// Every stream feedback projects, with the consumer name its cursor is stored under.
const SOURCES: [(&str, &str, &str); 4] = [
    (
        "intake",
        "fairchance.intake.v1.IntakeService",
        "feedback.intake",
    ),
    (
        "activation",
        "fairchance.activation.v1.ActivationService",
        "feedback.activation",
    ),
    (
        "followup",
        "fairchance.followup.v1.FollowupService",
        "feedback.followup",
    ),
    (
        "proof",
        "fairchance.proof.v1.ProofService",
        "feedback.proof",
    ),
];

/// How often the background fold looks for leads settled since its last pass. A report reads
/// the ones it has not folded yet from their rows, so this bounds its work, not its figures.
const FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// How long the background fold waits between two of its transactions.
const FOLD_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// The feedback service, as deployed.
#[derive(Debug)]
pub struct FeedbackService;

impl ServiceSpec for FeedbackService {
    const NAME: &'static str = "feedback";
    const DEFAULT_PORT: u16 = 50055;
    type Playbook = playbook::FeedbackPlaybook;

    fn migrations() -> &'static Migrations {
        &store::MIGRATIONS
    }

    async fn start(
        ctx: ServiceContext,
        routes: &mut RoutesBuilder,
    ) -> Result<Vec<HealthTarget>, StartError> {
        let connector = runtime::client::Connector::from_config(&ctx.config);
        let mut upstreams = Vec::new();
        for (name, service, consumer) in SOURCES {
            let client = connector
                .upstream(name)
                .map_err(|e| StartError::Other(e.to_string()))?;
            upstreams.push((
                consumer,
                Upstream {
                    client,
                    service,
                    event_types: Vec::new(),
                },
            ));
        }
        let playbook = ctx.playbook::<playbook::FeedbackPlaybook>()?;
        let store = store::Store::new(ctx.db.clone());
        // Facts written before the figure columns existed (or by an older derivation) get
        // their figures before any report or consumer reads or writes them.
        let refreshed = store
            .refresh_figures()
            .await
            .map_err(|e| StartError::Other(format!("refreshing feedback's report figures: {e}")))?;
        if refreshed > 0 {
            tracing::info!(refreshed, "recomputed report figures of stored lead facts");
        }
        let feedback = service::Feedback::new(store, playbook, ctx.clock.clone());
        for (consumer, source) in upstreams {
            tokio::spawn(runtime::consumer::run(
                ctx.db.clone(),
                consumer.to_owned(),
                move |after_cursor| {
                    let source = source.clone();
                    async move { source.subscribe(after_cursor).await }
                },
                feedback.clone(),
                ctx.shutdown.clone(),
            ));
        }
        tokio::spawn({
            let (feedback, stop) = (feedback.clone(), ctx.shutdown.clone());
            async move {
                loop {
                    // Step by step, each a short transaction, until nothing is left; then
                    // wait for more leads to settle.
                    while !stop.is_cancelled() {
                        match feedback.fold_rollups().await {
                            // A pause between steps lets consumers' saves take the rows (on
                            // SQLite, the writer) in between, and keeps a grain whose rows a
                            // writer holds from being retried in a tight loop.
                            Ok(true) => tokio::time::sleep(FOLD_PAUSE).await,
                            Ok(false) => break,
                            Err(error) => {
                                tracing::warn!(%error, "folding report rollups failed; retried later");
                                break;
                            }
                        }
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(FOLD_EVERY) => {}
                    }
                }
            }
        });
        let api = grpc::FeedbackApi::new(feedback);
        routes.add_service(api.into_server(ctx.config.server.max_message_bytes));
        Ok(vec![HealthTarget {
            service: grpc::SERVICE_NAME,
            db: ctx.db,
            scopes: scopes::SCOPES,
        }])
    }
}
