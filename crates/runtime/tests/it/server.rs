//! The server bootstrap: health follows the database, reflection answers, load is shed
//! beyond the concurrency limit, and shutdown ends streams and returns.

use std::time::Duration;

use runtime::config::ServerConfig;
use runtime::server::{HealthTarget, serve};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn health_reflects_the_database_and_shutdown_returns() {
    let test_db = TestDb::sqlite();
    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
    let (listener, addr) = testkit::bind_local().await;
    let stop = CancellationToken::new();
    let config = ServerConfig {
        health_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let server = tokio::spawn({
        let stop = stop.clone();
        let db = db.clone();
        async move {
            let target = HealthTarget {
                service: "fairchance.test.v1.TestService",
                db,
                scopes: &[],
            };
            serve(
                listener,
                RoutesBuilder::default(),
                vec![target],
                &config,
                stop,
            )
            .await
        }
    });
    let mut health = HealthClient::new(testkit::channel(addr).await);
    let status = |service: &str| HealthCheckRequest {
        service: service.to_owned(),
    };

    let mut serving = false;
    for _ in 0..100 {
        let r = health
            .check(status("fairchance.test.v1.TestService"))
            .await
            .unwrap()
            .into_inner();
        if r.status == ServingStatus::Serving as i32 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serving, "service never became SERVING");

    // The database goes away: health follows.
    db.close().await;
    let mut not_serving = false;
    for _ in 0..100 {
        let r = health.check(status("")).await.unwrap().into_inner();
        if r.status == ServingStatus::NotServing as i32 {
            not_serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        not_serving,
        "health stayed SERVING with the database closed"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}
