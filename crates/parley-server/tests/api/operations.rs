use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    for (path, needle) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let r = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("text"), needle);
    }
    // Make one API call so request metrics exist.
    let _ = app
        .http
        .get(format!("{}/api/v1/phone-numbers", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("get");
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("parley_http_requests_total"), "{metrics}");
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .http
        .get(format!("{}/api/openapi.json", app.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/v1/messages",
        "/api/v1/messages/{id}",
        "/api/v1/phone-numbers",
        "/webhooks/whatsapp",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from OpenAPI");
    }
    assert!(doc["paths"]["/api/v1/messages"]["post"]["responses"]["422"].is_object());
    let docs = app
        .http
        .get(format!("{}/api/docs", app.url))
        .send()
        .await
        .expect("get");
    assert_eq!(docs.status(), 200);
}

#[tokio::test]
async fn phone_numbers_show_the_connected_number() {
    let app = spawn_app().await;
    let v: Value = app
        .http
        .get(format!("{}/api/v1/phone-numbers", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let n = &v["data"][0];
    assert_eq!(
        n["phone_number_id"],
        parley_sandbox::demo_ids::PHONE_NUMBER_ID
    );
    assert_eq!(n["throughput_mps"], 80);
    assert_eq!(n["messaging_limit"], "TIER_250");
}
