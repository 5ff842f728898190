//! The messaging-limit ledger counts people, not addresses: a customer reached first by their
//! business-scoped user id (BSUID) and, once Meta told Parley their phone, by phone takes one
//! slot in the rolling 24 h, as Meta counts one user (the sandbox counts by user too).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const PERSON: &str = "+4915177770001";

async fn bsuid_of(app: &TestApp, phone: &str) -> String {
    let v: Value = app
        .http
        .get(format!("{}/sandbox/users/{phone}", app.sandbox_url))
        .send()
        .await
        .expect("sandbox user")
        .json()
        .await
        .expect("json");
    v["bsuids"][parley_sandbox::demo_ids::BUSINESS_ID]
        .as_str()
        .expect("a BSUID")
        .to_owned()
}

/// Unique contacts the number's scope counts now (a draft campaign's plan reads the ledger).
async fn used(app: &TestApp, campaign: &str) -> u64 {
    let (status, v) = app
        .api_call(
            Method::GET,
            &format!("/api/v1/campaigns/{campaign}/plan"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    v["quota"]["used"].as_u64().expect("quota.used")
}

fn welcome(to: &str) -> Value {
    json!({"to": to, "template": {"name": "welcome", "language": "en",
        "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}}})
}

#[tokio::test]
async fn one_person_reached_by_bsuid_then_by_phone_takes_one_slot() {
    let app = spawn_app().await;
    let (status, draft) = app
        .api_call(
            Method::POST,
            "/api/v1/campaigns",
            Some(&json!({"name": "probe", "type": "transactional",
                "template": {"name": "welcome", "language": "en",
                             "variables": {"first_name": "x"}},
                "audience": {"filter": "cohort = \"nobody\""}})),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    let draft = draft["id"].as_str().expect("id").to_owned();
    let before = used(&app, &draft).await;

    // Known by BSUID only: the first send goes by `recipient`.
    let bsuid = bsuid_of(&app, PERSON).await;
    let (status, created) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{bsuid}"),
            Some(&json!({"name": "Pablo"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let first = app.send(&welcome(&bsuid)).await;
    app.wait_for_message(&first, "delivered and accepted", |m| {
        matches!(m["state"].as_str(), Some("delivered" | "read"))
            && !m["timestamps"]["accepted"].is_null()
    })
    .await;
    // Meta's status named the phone: the same contact now has it.
    app.wait_contact(&bsuid, "the phone from a status", |c| c["phone"] == PERSON)
        .await;
    assert_eq!(used(&app, &draft).await, before + 1);

    // The second send goes by phone: the same person, no second slot.
    let second = app.send(&welcome(&bsuid)).await;
    let m = app
        .wait_for_message(&second, "accepted", |m| {
            !m["timestamps"]["accepted"].is_null()
        })
        .await;
    assert_eq!(m["to"], PERSON, "{m}");
    assert_eq!(
        used(&app, &draft).await,
        before + 1,
        "one person, one slot in the rolling 24 h"
    );
}
