//! Integration tests of the shared runtime against real databases.

/// Runs each named scenario (`async fn(Db)` in the invoking module) as a test on SQLite and
/// one on PostgreSQL, each on a fresh database with the runtime's tables.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        on_both_backends!(@backend sqlite, Some(testkit::TestDb::sqlite()), $($name),*);
        on_both_backends!(@backend postgres, testkit::TestDb::postgres().await, $($name),*);
    };
    (@backend $backend:ident, $make:expr, $($name:ident),*) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(test_db) = $make else { return };
                    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
                    super::$name(db).await;
                }
            )*
        }
    };
}

mod auth;
mod batch;
mod eventlog;
mod gapfree;
mod metrics;
mod server;
mod timers;
mod tls;

use runtime::db::Migrations;

/// The runtime's tables are all these tests need; services add theirs on top.
pub static NO_SERVICE_MIGRATIONS: Migrations = runtime::db::RUNTIME_MIGRATIONS;

use std::time::Duration;

use runtime::Db;
use runtime::config::ServerConfig;
use runtime::server::{HealthTarget, ServerError, serve};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The service the test servers report their database's health under.
pub const TEST_SERVICE: &str = "fairchance.test.v1.TestService";

/// [`TEST_SERVICE`] over `db`, with no RPCs of its own.
pub fn test_target(db: Db) -> HealthTarget {
    HealthTarget {
        service: TEST_SERVICE,
        db,
        scopes: &[],
    }
}

/// Runs the shared server bootstrap on `listener` until `stop` is cancelled.
pub fn spawn_server(
    listener: TcpListener,
    routes: RoutesBuilder,
    target: HealthTarget,
    config: ServerConfig,
    stop: CancellationToken,
) -> JoinHandle<Result<(), ServerError>> {
    tokio::spawn(async move { serve(listener, routes, vec![target], &config, stop).await })
}

/// Asks `health` about `service` until it reports `wanted`, for up to 5 s; true if it did.
pub async fn wait_for_status(
    health: &HealthClient<tonic::transport::Channel>,
    service: &str,
    wanted: ServingStatus,
) -> bool {
    for _ in 0..100 {
        let answer = health
            .clone()
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health answers")
            .into_inner();
        if answer.status == wanted as i32 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
