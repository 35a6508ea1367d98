//! Intake with `FAIRCHANCE_AUTH=required`: no or an unknown token is UNAUTHENTICATED, a token
//! without the RPC's scope PERMISSION_DENIED, the right scope gets through, and health and
//! reflection stay open without a token.

use std::sync::Arc;

use proto::intake::v1 as pb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use runtime::auth::{AuthMode, Tokens, token_digest};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::Code;

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn tokens_and_scopes_are_checked_per_rpc_and_health_stays_open() {
    let test_db = TestDb::new().await;
    let db = test_db.connect(&intake::store::MIGRATIONS).await;
    let tokens = Tokens::parse(
        "tokens.toml",
        &format!(
            "[[caller]]\nname = \"web-forms\"\ntoken_sha256 = \"{}\"\nscopes = [\"intake.submit\"]\n\n\
             [[caller]]\nname = \"crm\"\ntoken_sha256 = \"{}\"\nscopes = [\"intake.read\"]\n",
            token_digest("forms-secret"),
            token_digest("crm-secret"),
        ),
    )
    .unwrap();
    let mut config = testkit::config("intake");
    config.server.auth = AuthMode::Required(Arc::new(tokens));
    let stop = CancellationToken::new();
    let (channel, _) = testkit::serve::<intake::IntakeService>(db, config, stop.clone()).await;
    let mut client = IntakeServiceClient::new(channel.clone());
    let get = || pb::GetLeadRequest {
        lead_id: uuid::Uuid::now_v7().to_string(),
    };

    let none = client.get_lead(get()).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    let unknown = client
        .get_lead(with_token(get(), "guessed"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    let wrong_scope = client
        .get_lead(with_token(get(), "forms-secret"))
        .await
        .unwrap_err();
    assert_eq!(
        wrong_scope.code(),
        Code::PermissionDenied,
        "{wrong_scope:?}"
    );
    assert!(
        wrong_scope.message().contains("intake.read"),
        "{wrong_scope:?}"
    );
    // The right scope reaches the service, which answers for itself.
    let through = client
        .get_lead(with_token(get(), "crm-secret"))
        .await
        .unwrap_err();
    assert_eq!(through.code(), Code::NotFound, "{through:?}");

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no token");
    stop.cancel();
}
