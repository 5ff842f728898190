//! Parley's Graph client against the sandbox on the oldest and the current Graph API version:
//! every read Parley makes asks only for fields Meta has (the sandbox refuses others with
//! `(#100) Tried accessing nonexisting field`), on any supported version.

use parley_meta::{DEFAULT_GRAPH_VERSION, GraphClient, GraphError};
use parley_sandbox::{Sandbox, SandboxConfig, demo_ids};
use tokio_util::sync::CancellationToken;

async fn sandbox() -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    tokio::spawn(Sandbox::new(SandboxConfig::demo()).serve(listener, shutdown.clone()));
    (url, shutdown)
}

#[tokio::test]
async fn every_graph_read_works_on_v21_and_v27() {
    let (url, shutdown) = sandbox().await;
    assert_eq!(DEFAULT_GRAPH_VERSION, "v27.0");
    let token = demo_ids::ACCESS_TOKEN;
    for version in ["v21.0", DEFAULT_GRAPH_VERSION] {
        let client = GraphClient::new(&url, version);
        let number = client
            .get_phone_number(token, demo_ids::PHONE_NUMBER_ID)
            .await
            .unwrap_or_else(|e| panic!("{version} phone number: {e}"));
        assert_eq!(number.verified_name.as_deref(), Some("Parley Demo Shop"));
        assert_eq!(
            number.whatsapp_business_manager_messaging_limit.as_deref(),
            Some("TIER_250")
        );
        assert_eq!(
            number.throughput.and_then(|t| t.level).as_deref(),
            Some("STANDARD")
        );
        let numbers = client
            .list_phone_numbers(token, demo_ids::WABA_ID)
            .await
            .unwrap_or_else(|e| panic!("{version} phone numbers: {e}"));
        assert_eq!(numbers.len(), 1);
        let waba = client
            .get_waba(token, demo_ids::WABA_ID)
            .await
            .unwrap_or_else(|e| panic!("{version} waba: {e}"));
        assert_eq!(waba.currency.as_deref(), Some("EUR"));
        let templates = client
            .all_templates(token, demo_ids::WABA_ID)
            .await
            .unwrap_or_else(|e| panic!("{version} templates: {e}"));
        assert_eq!(templates.len(), 3);
        let business = client
            .get_business(token, demo_ids::BUSINESS_ID)
            .await
            .unwrap_or_else(|e| panic!("{version} business: {e}"));
        assert_eq!(business.name.as_deref(), Some("Parley Demo Shop"));
        let profile = client
            .get_business_profile(token, demo_ids::PHONE_NUMBER_ID)
            .await
            .unwrap_or_else(|e| panic!("{version} profile: {e}"));
        assert_eq!(profile["vertical"], "OTHER");
    }
    // A version Meta removed is Meta's error 100, not a silent success.
    let old = GraphClient::new(&url, "v20.0");
    match old.get_phone_number(token, demo_ids::PHONE_NUMBER_ID).await {
        Err(e @ GraphError::Api { .. }) => assert_eq!(e.code(), Some(100), "{e}"),
        other => panic!("v20.0 must be refused, got {other:?}"),
    }
    shutdown.cancel();
}
