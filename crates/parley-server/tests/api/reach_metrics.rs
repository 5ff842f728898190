//! Conversations opened by the business or the customer, and unique contacts reached outside
//! the service window (#16 item 1): exact through duplicated and reordered webhooks, a
//! repeated acceptance and a moving 24 h, equal to a recount from the raw rows, with the
//! messaging-limit use over time, in JSON and CSV.

use std::time::Duration;

use parley_domain::MessageId;
use parley_domain::quota::Reach;
use serde_json::{Value, json};

use crate::helpers::{Cohort, TestApp, cohort_campaign, spawn_app, text_webhook};

const HOUR: u64 = 3_600_000;

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, v) = app.api_call(reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

async fn run_campaign(app: &TestApp, name: &str) -> String {
    let template =
        json!({"name": "welcome", "language": "en", "variables": {"first_name": "there"}});
    let body = cohort_campaign(name, "reach", template, "transactional", json!({}));
    let id = app.start_campaign(&body).await;
    app.wait_stats(&id, "completed", |s| s["state"] == "completed")
        .await;
    id
}

fn inbound(from: &str, wamid: &str, at_secs: i64) -> Vec<u8> {
    text_webhook(from, wamid, at_secs, "hello")
}

/// The totals once `ok` holds (bounded re-reads): the sandbox may still have a campaign's
/// status webhooks on their way after `webhooks_processed()` found none pending.
async fn totals_when(app: &TestApp, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut v = get(app, path).await;
    for _ in 0..100 {
        if ok(&v) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        v = get(app, path).await;
    }
    v
}

#[tokio::test]
async fn conversations_and_unique_contacts_outside_the_window_are_exact_and_recounted() {
    let app = spawn_app().await;
    let phones = Cohort::numbered("reach", "+49152", 80_000_000, 5)
        .seed(&app)
        .await;
    let t0 = app.now_ms();

    // The first contact writes (its window opens): the message posted twice, then an older
    // one from the same contact arriving late. One conversation opened by the customer.
    let from = phones[0].trim_start_matches('+').to_owned();
    let newer = inbound(
        &from,
        "wamid.HBgLNDkxNTI4MDAwMDAwMBUCABIYFDNBQUFBQUFBQUFBQUFBQUFBQUFBAA==",
        t0 / 1000,
    );
    let older = inbound(
        &from,
        "wamid.HBgLNDkxNTI4MDAwMDAwMBUCABIYFDNCQkJCQkJCQkJCQkJCQkJCQkJCAA==",
        t0 / 1000 - 120,
    );
    for body in [&newer, &newer, &older] {
        assert_eq!(app.post_webhook(body, Some(&app.sign(body))).await, 200);
    }
    app.webhooks_processed().await;

    // Two campaigns to the five, through duplicated and reordered status webhooks: the four
    // outside their window are reached twice (8 business-initiated messages) but count once
    // against the limit; the one inside its window is not business-initiated.
    app.sandbox_post(
        "/sandbox/faults",
        &json!({"fail_next": [130429], "duplicate_webhooks": 0.5, "reorder_webhooks": true}),
    )
    .await;
    let first = run_campaign(&app, "Reach 1").await;
    run_campaign(&app, "Reach 2").await;
    app.webhooks_processed().await;

    let path = "/api/v1/stats?interval=day";
    // The sandbox's reordered webhooks may still be on their way: wait until every read came
    // too (the repeated acceptance below must then change nothing at all).
    let v = totals_when(&app, path, |v| {
        v["totals"]["metrics"]["conversations_by_business"] == 8
            && v["totals"]["metrics"]["read"] == 10
    })
    .await;
    let m = &v["totals"]["metrics"];
    assert_eq!(m["conversations_by_customer"], 1, "{m}");
    assert_eq!(m["conversations_by_business"], 8, "{m}");
    assert_eq!(m["unique_contacts_outside_window"], 4, "{m}");
    let scopes = v["totals"]["breakdown"]["unique_contacts_outside_window_by_scope"]
        .as_object()
        .expect("by scope")
        .clone();
    assert_eq!(scopes.len(), 1, "{scopes:?}");
    let (scope, n) = scopes.iter().next().expect("one scope");
    assert_eq!(n, 4);
    // Grouped by campaign: the first campaign took the four slots, both sent four.
    let by = get(&app, "/api/v1/stats?interval=month&group_by=campaign").await;
    let row = by["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["group"] == first.as_str())
        .expect("first campaign");
    assert_eq!(row["metrics"]["unique_contacts_outside_window"], 4, "{by}");
    assert_eq!(row["metrics"]["conversations_by_business"], 4, "{by}");

    // A repeated acceptance of a message already counted adds nothing.
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let sent = app
        .store
        .messages(&application, None, 100)
        .await
        .expect("messages");
    let m1 = sent
        .iter()
        .find(|m| m.contact_id.is_some() && m.to_phone.trim_start_matches('+') != from)
        .expect("a business-initiated message");
    let contact = m1.contact_id.as_ref().unwrap().as_str().to_owned();
    let id: MessageId = m1.id.clone();
    for _ in 0..2 {
        app.store
            .confirm_quota(scope, &contact, &id, Reach::AlreadyCounted, app.now_ms())
            .await
            .expect("confirm again");
    }
    let again = get(&app, path).await;
    assert_eq!(again["totals"], v["totals"]);
    let diff = app.engine.recount_stats(false).await.expect("recount");
    assert!(
        diff.is_empty(),
        "counters differ from the recount: {diff:#?}"
    );

    // A day later: every slot has freed up and the first contact's window has closed, so a
    // third campaign reaches all five business-initiated, each a new unique contact.
    app.advance(Duration::from_millis(26 * HOUR)).await;
    run_campaign(&app, "Reach 3").await;
    app.webhooks_processed().await;
    let t1 = app.now_ms();
    let hourly = format!(
        "/api/v1/stats?interval=hour&from={}&to={}",
        rfc3339(t0 - 2 * HOUR as i64),
        rfc3339(t1 + 1)
    );
    let v = totals_when(&app, &hourly, |v| {
        v["totals"]["metrics"]["conversations_by_business"] == 13
    })
    .await;
    let m = &v["totals"]["metrics"];
    assert_eq!(m["conversations_by_business"], 13, "{m}");
    assert_eq!(m["unique_contacts_outside_window"], 9, "{m}");
    assert_eq!(m["conversations_by_customer"], 1, "{m}");

    // The use over time: 4 at the end of the first hours, 0 once their day has passed, 5 now.
    let data = v["data"].as_array().expect("data");
    let series = v["messaging_limit"].as_array().expect("messaging_limit");
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["scope"], scope.as_str());
    let used: Vec<i64> = series[0]["used"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_i64().unwrap())
        .collect();
    assert_eq!(used.len(), data.len(), "one value per bucket");
    let at = |t: i64| -> i64 {
        let i = data
            .iter()
            .rposition(|b| parse(b["start"].as_str().unwrap()) <= t)
            .expect("a bucket");
        used[i]
    };
    assert_eq!(at(t0 - 2 * HOUR as i64), 0, "{used:?}");
    assert_eq!(at(t0 + 2 * HOUR as i64), 4, "{used:?}");
    assert_eq!(at(t0 + 24 * HOUR as i64 + HOUR as i64 / 2), 0, "{used:?}");
    assert_eq!(*used.last().unwrap(), 5, "{used:?}");
    // The same numbers in the CSV export of the view.
    let csv = app
        .http
        .get(format!(
            "{}{}",
            app.url,
            hourly.replace("/stats?", "/stats/export?")
        ))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("body");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let use_col = col(&format!("messaging_limit_use:{scope}"));
    let last: Vec<&str> = lines.last().unwrap().split(',').collect();
    assert_eq!(last[use_col], "5", "{csv}");
    let sum = |name: &str| -> u64 {
        lines[1..]
            .iter()
            .map(|l| l.split(',').nth(col(name)).unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(sum("conversations_by_business"), 13);
    assert_eq!(sum("unique_contacts_outside_window"), 9);
    assert_eq!(sum("conversations_by_customer"), 1);

    let diff = app.engine.recount_stats(false).await.expect("recount");
    assert!(
        diff.is_empty(),
        "counters differ from the recount: {diff:#?}"
    );
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn parse(s: &str) -> i64 {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}
