//! The server bootstrap: health follows the database, reflection answers, load is shed
//! beyond the concurrency limit, and shutdown ends streams and returns.

use std::time::Duration;

use runtime::config::ServerConfig;
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
    let server = crate::spawn_server(
        listener,
        RoutesBuilder::default(),
        crate::test_target(db.clone()),
        config,
        stop.clone(),
    );
    let health = HealthClient::new(testkit::channel(addr).await);
    assert!(
        crate::wait_for_status(&health, crate::TEST_SERVICE, ServingStatus::Serving).await,
        "service never became SERVING"
    );

    // The database goes away: health follows.
    db.close().await;
    assert!(
        crate::wait_for_status(&health, "", ServingStatus::NotServing).await,
        "health stayed SERVING with the database closed"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

/// A unary RPC that takes [`SLOW_CALL`] to answer: an in-flight call for the drain to wait on.
#[derive(Debug, Clone)]
struct Slow;

const SLOW_CALL: Duration = Duration::from_millis(1500);
const SLOW_PATH: &str = "/fairchance.test.v1.Slow/Wait";

impl tonic::server::NamedService for Slow {
    const NAME: &'static str = "fairchance.test.v1.Slow";
}

impl tower::Service<tonic::codegen::http::Request<tonic::body::Body>> for Slow {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        struct Wait;
        impl tonic::server::UnaryService<()> for Wait {
            type Response = ();
            type Future = tonic::codegen::BoxFuture<tonic::Response<()>, tonic::Status>;
            fn call(&mut self, _: tonic::Request<()>) -> Self::Future {
                Box::pin(async {
                    tokio::time::sleep(SLOW_CALL).await;
                    Ok(tonic::Response::new(()))
                })
            }
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(Wait, request).await)
        })
    }
}

/// Shutdown, as the kubelet sees it: the moment it starts, the plaintext health port reports
/// NOT_SERVING (so the pod leaves the Service's endpoints), while a call already in flight
/// still completes; the server returns once it has.
#[tokio::test]
async fn health_is_not_serving_while_in_flight_calls_drain() {
    let test_db = TestDb::sqlite();
    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
    let (listener, addr) = testkit::bind_local().await;
    let health_addr = testkit::free_local_addr();
    let stop = CancellationToken::new();
    let config = ServerConfig {
        health_interval: Duration::from_millis(100),
        health_addr: Some(health_addr),
        drain_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let mut routes = RoutesBuilder::default();
    routes.add_service(Slow);
    let server = crate::spawn_server(
        listener,
        routes,
        crate::test_target(db),
        config,
        stop.clone(),
    );
    let health = HealthClient::new(testkit::channel(health_addr).await);
    let status = || async {
        health
            .clone()
            .check(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner()
            .status
    };
    assert!(
        crate::wait_for_status(&health, "", ServingStatus::Serving).await,
        "service never became SERVING"
    );

    let channel = testkit::channel(addr).await;
    let call = tokio::spawn(async move {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        grpc.unary(
            tonic::Request::new(()),
            tonic::codegen::http::uri::PathAndQuery::from_static(SLOW_PATH),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
    });
    // Let the call reach the server before the shutdown starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();

    let mut flipped = false;
    for _ in 0..40 {
        if status().await == ServingStatus::NotServing as i32 {
            flipped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(flipped, "health stayed SERVING after shutdown began");
    assert!(
        !call.is_finished(),
        "the call finished before the drain could be observed; make SLOW_CALL longer"
    );

    call.await
        .unwrap()
        .expect("the in-flight call completes during the drain");
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server stops after the drain")
        .unwrap()
        .unwrap();
}
