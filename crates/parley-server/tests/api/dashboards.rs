//! Dashboards (#16 item 3) in a real browser: after a demo campaign (one permanent failure,
//! one reply), the overview and the campaign's dashboard show non-empty SVG charts whose
//! numbers, read from the charts' `data-value` attributes, equal `GET /api/v1/stats` for the
//! same range; the messaging-limit chart starts at the plan's count; a range over the API's
//! limit shows the API's error code.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::helpers::{CONTACTS, TestApp, spawn_app};

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, v) = app.api_call(Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// Runs a campaign to the demo audience with one send failing for good, then posts a reply
/// from a recipient. Returns the campaign's id.
async fn demo_campaign(app: &TestApp) -> String {
    app.sandbox_post("/sandbox/faults", &json!({"fail_next": [131026]}))
        .await;
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/campaigns",
            Some(&json!({
                "name": "Dashboard <demo>",
                "template": {"name": "welcome", "language": "en",
                             "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}},
                "audience": {"filter": "exists(first_name)"},
                "type": "transactional"
            })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    let (status, v) = app
        .api_call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert!(status < 300, "{v}");
    let mut last = Value::Null;
    for _ in 0..900 {
        last = get(app, &format!("/api/v1/campaigns/{id}/stats")).await;
        let done = last["read"].as_u64().unwrap_or(0) + last["failed"].as_u64().unwrap_or(0);
        if last["state"] == "completed" && done == CONTACTS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["state"], "completed", "{last}");
    assert_eq!(last["failed"], 1, "{last}");
    // A reply from a recipient Meta accepted (the refused one is not in the sandbox's list).
    let accepted = app.sandbox_messages().await;
    let from = accepted.last().expect("an accepted send")["to"]
        .as_str()
        .expect("to")
        .trim_start_matches('+')
        .to_owned();
    let timestamp = {
        use parley_engine::Clock;
        (app.clock.now_millis() / 1000 + 1).to_string()
    };
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": parley_sandbox::demo_ids::WABA_ID, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100100", "phone_number_id": parley_sandbox::demo_ids::PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": from}],
        "messages": [{"from": from, "id": "wamid.HBgLNDkxNTIwNzAwMDAwMDAVAgASGBQzREFTSEJPQVJEUkVQTFkAAA==", "timestamp": timestamp, "type": "text", "text": {"body": "thanks!"}}]
    }}]}]});
    let body = serde_json::to_vec(&body).expect("json");
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    app.webhooks_processed().await;
    id
}

/// What the dashboard on the page shows: its API query, the funnel's steps, each time
/// chart's series (bucket start → value), each bar chart's bars, the figures, and the
/// charts drawn empty.
async fn read_dashboard(browser: &Browser) -> Value {
    browser.wait_css("#chart-funnel svg").await;
    browser
        .client
        .execute(
            r#"
            const dash = document.getElementById('dashboard');
            const bars = (id) => Object.fromEntries([...document.querySelectorAll('#' + id + ' [data-key]')]
                .map(g => [g.dataset.key, Number(g.dataset.value)]));
            const series = (fig) => Object.fromEntries([...fig.querySelectorAll('[data-series]')]
                .map(g => [g.dataset.series, [...g.querySelectorAll('circle')].map(c => [c.dataset.x, Number(c.dataset.value)])]));
            const times = {};
            document.querySelectorAll('figure[data-chart=time]').forEach(f => times[f.id] = series(f));
            return {
                query: dash.dataset.apiQuery,
                funnel: bars('chart-funnel'),
                failures: bars('chart-failures'),
                spend: bars('chart-spend'),
                times: times,
                figures: Object.fromEntries([...document.querySelectorAll('[data-figure]')]
                    .map(d => [d.dataset.figure, Number(d.dataset.value)])),
                empty: [...document.querySelectorAll('figure.chart')]
                    .filter(f => f.querySelector('.empty')).map(f => f.id),
                subject: document.getElementById('dashboard-subject').textContent,
            };
            "#,
            vec![],
        )
        .await
        .expect("script")
}

/// Every number of the dashboard equals the API's answer for its query.
fn assert_same_numbers(page: &Value, api: &Value) {
    let totals = &api["totals"];
    let m = |k: &str| totals["metrics"][k].as_i64().expect(k);
    for k in ["sent", "delivered", "read", "replied"] {
        assert_eq!(page["funnel"][k], m(k), "funnel {k}: {page} vs {api}");
    }
    for k in [
        "sent",
        "delivered",
        "read",
        "replied",
        "failed",
        "button_clicks",
        "opt_outs",
        "charged",
    ] {
        assert_eq!(page["figures"][k], m(k), "figure {k}: {page} vs {api}");
    }
    let data = api["data"].as_array().expect("data");
    for (chart, metrics) in [
        (
            "chart-timeline",
            &["sent", "delivered", "read", "failed"][..],
        ),
        (
            "chart-engagement",
            &["replied", "button_clicks", "opt_outs"][..],
        ),
    ] {
        for k in metrics {
            let drawn = page["times"][chart][*k].as_array().expect("series");
            let expected: Vec<Value> = data
                .iter()
                .map(|b| json!([b["start"], b["metrics"][*k]]))
                .collect();
            assert_eq!(drawn, &expected, "{chart} {k}");
        }
    }
    let mut failures = serde_json::Map::new();
    for (name, detail) in [
        ("failed_by_code", "failed_by_code"),
        ("skipped_by_reason", "skipped_by_reason"),
    ] {
        for (d, n) in totals["breakdown"][detail].as_object().expect("breakdown") {
            failures.insert(format!("{name}:{d}"), n.clone());
        }
    }
    assert_eq!(page["failures"], Value::Object(failures), "{page} vs {api}");
    let mut spend = serde_json::Map::new();
    for (d, n) in totals["breakdown"]["charged_by_category"]
        .as_object()
        .expect("charged")
    {
        spend.insert(format!("charged_by_category:{d}"), n.clone());
    }
    assert_eq!(page["spend"], Value::Object(spend), "{page} vs {api}");
    // Spend in money: Meta's reported and the estimate, in millionths, as the API's cost.
    let micros = |k: &str| {
        parley_domain::pricing::Micros::parse(api["cost"][k].as_str().expect(k))
            .expect("an amount")
            .0
    };
    assert_eq!(
        page["figures"]["spend_reported"],
        micros("reported"),
        "{page} vs {api}"
    );
    assert_eq!(
        page["figures"]["spend_estimated"],
        micros("estimated"),
        "{page} vs {api}"
    );
}

/// The messaging-limit use over the period drawn for the API's only scope, and the limit
/// drawn beside it.
fn limit_history(page: &Value, api: &Value) -> Vec<Value> {
    let (_, chart) = page["times"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("chart-limituse-"))
        .expect("a messaging-limit history chart");
    let series = api["messaging_limit"].as_array().expect("messaging_limit");
    assert_eq!(series.len(), 1, "{api}");
    let expected: Vec<Value> = api["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(series[0]["used"].as_array().unwrap())
        .map(|(b, u)| json!([b["start"], u]))
        .collect();
    assert_eq!(chart["limit_use"].as_array().unwrap(), &expected, "{chart}");
    chart["limit"]
        .as_array()
        .expect("the limit series")
        .iter()
        .map(|p| p[1].clone())
        .collect()
}

/// Opens `path` and reads its dashboard until it equals the API's answer for the page's own
/// query (bounded: a read right after the webhook processor's round can come from an older
/// SQLite snapshot, docs/TESTING.md), then checks every number.
async fn open_and_compare(browser: &Browser, app: &TestApp, path: &str) -> (Value, Value) {
    let mut page = Value::Null;
    let mut api = Value::Null;
    for _ in 0..20 {
        browser
            .client
            .goto(&format!("{}{path}", app.url))
            .await
            .expect("goto");
        page = read_dashboard(browser).await;
        let query = page["query"].as_str().expect("query").to_owned();
        assert!(!query.is_empty(), "{page}");
        api = get(app, &format!("/api/v1/stats?{query}")).await;
        if page["funnel"]["replied"] == api["totals"]["metrics"]["replied"]
            && page["funnel"]["read"] == api["totals"]["metrics"]["read"]
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_same_numbers(&page, &api);
    (page, api)
}

#[tokio::test]
async fn dashboards_after_a_demo_campaign_draw_the_apis_numbers() {
    let app = spawn_app().await;
    let id = demo_campaign(&app).await;
    // The counters are settled: wait until the API shows the reply.
    for _ in 0..100 {
        let s = get(&app, &format!("/api/v1/stats?campaign={id}")).await;
        if s["totals"]["metrics"]["replied"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let browser = Browser::start().await;
    browser.sign_in(&app).await;

    // The campaign's dashboard, last 24 h by hour.
    let (page, api) = open_and_compare(
        &browser,
        &app,
        &format!("/dashboards?range=24h&campaign={id}"),
    )
    .await;
    assert!(
        page["subject"]
            .as_str()
            .unwrap()
            .contains("Campaign Dashboard <demo>"),
        "the name is shown as text: {page}"
    );
    assert!(page["query"].as_str().unwrap().contains("interval=hour"));
    assert!(
        page["query"]
            .as_str()
            .unwrap()
            .contains(&format!("campaign={id}"))
    );
    let totals = &api["totals"]["metrics"];
    assert_eq!(totals["sent"], CONTACTS as i64 - 1, "{api}");
    assert_eq!(totals["failed"], 1, "{api}");
    assert_eq!(totals["replied"], 1, "{api}");
    assert_eq!(page["failures"]["failed_by_code:131026"], 1, "{page}");
    for chart in ["chart-funnel", "chart-timeline", "chart-failures"] {
        assert!(
            !page["empty"].as_array().unwrap().contains(&json!(chart)),
            "{chart} is drawn empty: {page}"
        );
    }

    // The overview (the console's home), 7 days by hour, all messages: the same numbers, and
    // the messaging limit's use now equals what the campaign plan counts.
    let (page, api) = open_and_compare(&browser, &app, "/?range=7d").await;
    assert_eq!(page["subject"], "All messages");
    assert!(api["totals"]["metrics"]["sent"].as_i64().unwrap() >= CONTACTS as i64 - 1);
    let plan = get(&app, &format!("/api/v1/campaigns/{id}/plan")).await;
    let limit = page["times"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("chart-limit-"))
        .map(|(_, v)| v.clone())
        .expect("a messaging-limit chart");
    let now_used = &limit["limit_use"][0][1];
    assert_eq!(now_used, &plan["quota"]["used"], "{limit} vs {plan}");
    assert!(now_used.as_u64().unwrap() > 0, "{plan}");
    // Over the period: the API's series, against the default tier's 250; it ends at the
    // count now.
    let limits = limit_history(&page, &api);
    assert!(limits.iter().all(|l| l == 250), "{limits:?}");
    let last = api["messaging_limit"][0]["used"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(&last, now_used, "{api}");
    assert!(
        page["figures"]["spend_reported"].as_i64().unwrap() > 0,
        "{page}"
    );

    // Meta raises the tier (webhook): the number's dashboard lists the change, and its
    // messaging-limit chart draws the new limit.
    let pn = parley_sandbox::demo_ids::PHONE_NUMBER_ID;
    app.sandbox_post(
        &format!("/sandbox/phone_numbers/{pn}/limit"),
        &json!({"limit": "TIER_2K"}),
    )
    .await;
    for _ in 0..400 {
        let plan = get(&app, &format!("/api/v1/campaigns/{id}/plan")).await;
        if plan["quota"]["limit"] == 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (page, _) = open_and_compare(
        &browser,
        &app,
        &format!("/dashboards?range=24h&phone_number={pn}"),
    )
    .await;
    // The number's view draws its scope's use (the unfiltered series) and the tier's rise.
    let all = get(
        &app,
        &format!(
            "/api/v1/stats?{}",
            page["query"]
                .as_str()
                .unwrap()
                .replace(&format!("&phone_number={pn}"), "")
        ),
    )
    .await;
    let limits = limit_history(&page, &all);
    assert_eq!(limits.last(), Some(&json!(2000)), "{limits:?}");
    assert!(
        page["subject"].as_str().unwrap().starts_with("Number "),
        "{page}"
    );
    let tiers: Vec<String> = browser
        .client
        .execute(
            "return [...document.querySelectorAll('#number-history [data-tier]')].map(t => t.textContent);",
            vec![],
        )
        .await
        .map(|v| serde_json::from_value(v).expect("strings"))
        .expect("script");
    assert!(
        tiers.iter().any(|t| t.ends_with("→ TIER_2K")),
        "the tier change is listed: {tiers:?}"
    );
    let threshold: Value = browser
        .client
        .execute(
            "return Number(document.querySelector('[id^=chart-limit-] .threshold').dataset.value);",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(threshold, 2000);

    // A picked date range: 30 days per day, the last day included.
    let (page, _) = open_and_compare(
        &browser,
        &app,
        &format!(
            "/dashboards?from={}&to={}&interval=day&campaign={id}",
            &api["from"].as_str().unwrap()[..10],
            &api["to"].as_str().unwrap()[..10]
        ),
    )
    .await;
    assert!(page["query"].as_str().unwrap().contains("interval=day"));

    // Too long for hours: coarsened to days, and said.
    browser
        .client
        .goto(&format!(
            "{}/dashboards?from=2026-01-01&to=2026-06-30&interval=hour",
            app.url
        ))
        .await
        .expect("goto");
    browser.wait_css("#dashboard-note").await;
    let page = read_dashboard(&browser).await;
    assert!(page["query"].as_str().unwrap().contains("interval=day"));
    // Over the API's 400 days: the API's error code, no chart.
    browser
        .client
        .goto(&format!(
            "{}/dashboards?from=2020-01-01&to=2026-06-30&interval=month",
            app.url
        ))
        .await
        .expect("goto");
    browser
        .wait_css("#dashboard [data-code=range_too_large]")
        .await;
}
