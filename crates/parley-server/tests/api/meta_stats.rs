//! Meta's own numbers beside Parley's (#16 item 5), against the sandbox over HTTP: after a
//! campaign they agree and nothing is flagged; a message Meta billed that Parley never sent
//! (another app on the same WABA) is flagged once Meta's cached answer expires; bad ranges
//! and Meta's refusals get stable codes.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, seed_cohort as seed, spawn_app};

async fn call(app: &TestApp, path: &str, body: Option<&Value>, method: Method) -> Value {
    let (status, v) = app.api_call(method.clone(), path, body).await;
    assert!(status < 300, "{method} {path}: {status} {v}");
    v
}

fn row<'a>(v: &'a Value, metric: &str, dimension: &str, key: &str) -> &'a Value {
    v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["metric"] == metric && r["dimension"] == dimension && r["key"] == key)
        .unwrap_or_else(|| panic!("no row {metric}/{dimension}/{key} in {v}"))
}

/// Waits until the sandbox billed `n` messages and Parley counted them delivered and charged.
async fn settle(app: &TestApp, n: usize) {
    let mut billed = 0;
    for _ in 0..900 {
        billed = app.sandbox_get("/sandbox/billing").await["data"]
            .as_array()
            .map_or(0, Vec::len);
        if billed >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(billed, n, "the sandbox billed every message");
}

/// A transactional campaign to `phones` (seeded in the cohort `meta`), run until the sandbox
/// billed every message and Parley counted each delivered and charged.
async fn campaign_counted(app: &TestApp, phones: &[&str]) {
    seed(app, "meta", phones).await;
    let v = call(
        app,
        "/api/v1/campaigns",
        Some(&json!({
            "name": "Meta's numbers",
            "template": {"name": "order_update", "language": "en",
                         "variables": {"first_name": "there", "order_id": "A-1"}},
            "audience": {"filter": "cohort = \"meta\""},
            "type": "transactional"
        })),
        Method::POST,
    )
    .await;
    let id = v["id"].as_str().expect("id").to_owned();
    call(
        app,
        &format!("/api/v1/campaigns/{id}/start"),
        None,
        Method::POST,
    )
    .await;
    settle(app, phones.len()).await;
    // Parley's counters catch up with the webhooks.
    for _ in 0..900 {
        let stats = call(app, "/api/v1/stats", None, Method::GET).await;
        if stats["totals"]["metrics"]["charged"] == phones.len()
            && stats["totals"]["metrics"]["delivered"] == phones.len()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Parley never counted every message delivered and charged");
}

/// Another app on the same WABA sends a template from `phone` (the number's id) straight to
/// the sandbox: Meta bills it, Parley never sees it.
async fn another_app_sends(app: &TestApp, phone: &str) {
    let resp = app
        .http
        .post(format!("{}/v27.0/{phone}/messages", app.sandbox_url))
        .bearer_auth(parley_sandbox::demo_ids::ACCESS_TOKEN)
        .json(&json!({
            "messaging_product": "whatsapp", "to": "+4915230000009", "type": "template",
            "template": {"name": "order_update", "language": {"code": "en"},
                "components": [{"type": "body", "parameters": [
                    {"type": "text", "parameter_name": "first_name", "text": "X"},
                    {"type": "text", "parameter_name": "order_id", "text": "B-2"}]}]}
        }))
        .send()
        .await
        .expect("direct send");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
}

#[tokio::test]
async fn metas_numbers_match_parleys_after_a_campaign_and_a_message_parley_never_sent_is_flagged() {
    let app = spawn_app().await;
    let phones = [
        "+4915230000001",
        "+4915230000002",
        "+4915230000003",
        "+14155550101",
        "+919812340001",
    ];
    campaign_counted(&app, &phones).await;
    let n = phones.len().to_string();
    let v = call(&app, "/api/v1/stats/meta", None, Method::GET).await;
    assert_eq!(v["flagged"], 0, "{v}");
    assert_eq!(v["cached"], false, "{v}");
    assert_eq!(v["currency"], "USD");
    assert_eq!(v["platforms"].as_array().map(Vec::len), Some(1), "{v}");
    for metric in ["sent", "delivered", "charged"] {
        let r = row(&v, metric, "total", "");
        assert_eq!((&r["meta"], &r["parley"]), (&json!(n), &json!(n)), "{r}");
    }
    let phone = v["platforms"][0]["phone_numbers"][0]
        .as_str()
        .expect("a number")
        .to_owned();
    assert_eq!(row(&v, "sent", "phone_number", &phone)["meta"], n, "{v}");
    assert_eq!(row(&v, "charged", "category", "utility")["meta"], n, "{v}");
    assert_eq!(row(&v, "charged", "country", "DE")["meta"], "3", "{v}");
    assert_eq!(row(&v, "charged", "country", "DE")["parley"], "3", "{v}");
    assert_eq!(row(&v, "charged", "country", "IN")["parley"], "1", "{v}");
    let billed = app.sandbox_get("/sandbox/billing").await;
    let cost = row(&v, "cost", "total", "");
    assert_eq!(cost["meta"], billed["totals"]["cost"], "{v}");
    assert_eq!(cost["parley"], billed["totals"]["cost"], "{v}");
    assert!(
        v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|r| r["flagged"] == false),
        "{v}"
    );

    // The console's comparison table shows the same rows, none flagged.
    let cookie = app.console_cookie().await;
    let (status, html) = app.console_get(&cookie, "/dashboards/meta").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("id=\"meta-compare-summary\" data-flagged=\"0\""),
        "{html}"
    );
    assert!(
        html.contains(
            "data-metric=\"sent\" data-dimension=\"total\" data-key=\"\" data-flagged=\"false\">"
        ),
        "{html}"
    );
    assert!(!html.contains("class=\"flagged\""), "{html}");

    // Another app on the same WABA sends a template: Meta bills it, Parley never saw it.
    another_app_sends(&app, &phone).await;
    settle(&app, phones.len() + 1).await;

    // Meta's answer is reused for a minute: still the old numbers.
    let cached = call(&app, "/api/v1/stats/meta", None, Method::GET).await;
    assert_eq!(cached["cached"], true, "{cached}");
    assert_eq!(cached["fetched_at"], v["fetched_at"], "{cached}");
    assert_eq!(row(&cached, "sent", "total", "")["meta"], n, "{cached}");

    // A minute later Meta is asked again, and the extra message is flagged.
    app.advance(Duration::from_secs(61)).await;
    let v = call(&app, "/api/v1/stats/meta", None, Method::GET).await;
    assert_eq!(v["cached"], false, "{v}");
    let more = (phones.len() + 1).to_string();
    for metric in ["sent", "delivered", "charged"] {
        let r = row(&v, metric, "total", "");
        assert_eq!((&r["meta"], &r["parley"]), (&json!(more), &json!(n)), "{r}");
        assert_eq!(r["difference"], "1", "{r}");
        assert_eq!(r["flagged"], true, "{r}");
    }
    assert_eq!(row(&v, "charged", "country", "DE")["flagged"], true, "{v}");
    assert_eq!(row(&v, "charged", "country", "US")["flagged"], false, "{v}");
    assert_eq!(row(&v, "cost", "total", "")["flagged"], true, "{v}");
    assert!(v["flagged"].as_u64().unwrap_or(0) >= 5, "{v}");
    // The console flags the same rows as the API.
    let (_, html) = app.console_get(&cookie, "/dashboards/meta").await;
    assert!(
        html.contains(&format!("data-flagged=\"{}\"", v["flagged"])),
        "{html}"
    );
    assert!(
        html.contains("data-metric=\"sent\" data-dimension=\"total\" data-key=\"\" data-flagged=\"true\" class=\"flagged\">"),
        "{html}"
    );
    let (_, html) = app
        .console_get(&cookie, "/dashboards/meta?from=2020-01-01&to=2020-01-05")
        .await;
    assert!(html.contains("data-code=\"range_too_old\""), "{html}");
    // A tolerance of 50 % lets one message in six pass.
    let loose = call(
        &app,
        "/api/v1/stats/meta?tolerance_pct=50",
        None,
        Method::GET,
    )
    .await;
    assert_eq!(
        row(&loose, "sent", "total", "")["flagged"],
        false,
        "{loose}"
    );
}

#[tokio::test]
async fn bad_ranges_and_metas_refusals_have_stable_codes() {
    let app = spawn_app().await;
    for (query, status, code) in [
        ("from=2026-01-01&to=2026-06-01", 400, "range_too_large"),
        ("from=2020-01-01&to=2020-02-01", 400, "range_too_old"),
        ("from=2099-01-01&to=2099-01-05", 400, "range_in_future"),
        ("from=2026-12-05&to=2026-12-01", 400, "invalid_range"),
        ("from=yesterday", 400, "invalid_time"),
        ("tolerance_pct=lots", 400, "invalid_tolerance"),
        ("tolerance_pct=-5", 400, "invalid_tolerance"),
        ("platform=plt_nope", 404, "platform_not_found"),
        ("platform=%27%3B--", 404, "platform_not_found"),
    ] {
        let (s, v) = app
            .api_call(Method::GET, &format!("/api/v1/stats/meta?{query}"), None)
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{query}: {v}"
        );
    }
    // Meta refuses the token: 409 meta_token_invalid; Meta fails otherwise: 502 meta_refused.
    // (A background GET of the WABA's templates may take the injected fault first: then
    // Meta's good answer is cached, so the clock moves past the cache and it is tried again.)
    for (code, status, expected) in [(190, 409, "meta_token_invalid"), (2, 502, "meta_refused")] {
        let mut answer = (0, Value::Null);
        for _ in 0..5 {
            app.sandbox_post(
                "/sandbox/faults",
                &json!({"fail_next_calls": [{"path": parley_sandbox::demo_ids::WABA_ID, "code": code, "method": "GET"}]}),
            )
            .await;
            answer = app.api_call(Method::GET, "/api/v1/stats/meta", None).await;
            if answer.0 != 200 {
                break;
            }
            app.advance(Duration::from_secs(61)).await;
        }
        let (s, v) = answer;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(expected)),
            "{v}"
        );
    }
}

/// The page's table as the browser shows it: the summary's count of flags, the API query the
/// page names, and each row's numbers from its cells (not its attributes alone).
async fn read_meta_page(browser: &crate::browser::Browser) -> Value {
    browser.wait_css("#meta-compare-table tbody tr").await;
    browser
        .client
        .execute(
            r#"
            const text = (tr, css) => tr.querySelector(css).textContent.trim();
            return {
                query: document.getElementById('meta-compare').dataset.apiQuery,
                flagged: Number(document.getElementById('meta-compare-summary').dataset.flagged),
                summary: document.getElementById('meta-compare-summary').textContent,
                rows: [...document.querySelectorAll('#meta-compare-table tbody tr')].map(tr => ({
                    metric: tr.dataset.metric,
                    dimension: tr.dataset.dimension,
                    key: tr.dataset.key,
                    meta: text(tr, 'td.meta'),
                    parley: text(tr, 'td.parley'),
                    difference: tr.children[5].textContent.trim(),
                    flagged: tr.dataset.flagged === 'true',
                    marked: tr.classList.contains('flagged') && tr.textContent.includes('differs'),
                })),
            };
            "#,
            vec![],
        )
        .await
        .expect("script")
}

/// The page's rows equal the API's answer for the page's own query, row by row.
fn assert_page_is_the_api(page: &Value, api: &Value) {
    assert_eq!(page["flagged"], api["flagged"], "{page} vs {api}");
    let api_rows: Vec<Value> = api["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            json!({
                "metric": r["metric"], "dimension": r["dimension"], "key": r["key"],
                "meta": r["meta"], "parley": r["parley"], "difference": r["difference"],
                "flagged": r["flagged"],
            })
        })
        .collect();
    let page_rows: Vec<Value> = page["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            assert_eq!(r["marked"], r["flagged"], "a flagged row is marked: {r}");
            let mut r = r.clone();
            r.as_object_mut().expect("row").remove("marked");
            r
        })
        .collect();
    assert!(!api_rows.is_empty(), "{api}");
    assert_eq!(page_rows, api_rows, "the page's rows are the API's");
}

/// `/dashboards/meta` in a real browser after a campaign: its table equals
/// `GET /api/v1/stats/meta` for the page's query with nothing flagged; once Meta billed a
/// message Parley never sent (another app on the same WABA) and its cached answer expired,
/// the page flags the same rows as the API and says how many differ.
#[tokio::test]
async fn the_meta_dashboard_in_a_browser_shows_the_apis_numbers_and_flags_a_difference() {
    let app = spawn_app().await;
    let phones = ["+4915230000101", "+4915230000102", "+14155550111"];
    campaign_counted(&app, &phones).await;
    let browser = crate::browser::Browser::start().await;
    browser.sign_in(&app).await;
    let url = format!("{}/dashboards/meta", app.url);
    browser.client.goto(&url).await.expect("goto");
    let page = read_meta_page(&browser).await;
    let query = page["query"].as_str().expect("query").to_owned();
    let api = call(
        &app,
        &format!("/api/v1/stats/meta?{query}"),
        None,
        Method::GET,
    )
    .await;
    assert_eq!(api["flagged"], 0, "{api}");
    assert_page_is_the_api(&page, &api);
    let sent = page["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["metric"] == "sent" && r["dimension"] == "total")
        .expect("a sent total")
        .clone();
    let n = phones.len().to_string();
    assert_eq!(
        (&sent["meta"], &sent["parley"]),
        (&json!(n), &json!(n)),
        "{page}"
    );
    assert!(
        page["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("agree"),
        "{page}"
    );

    let phone = api["platforms"][0]["phone_numbers"][0]
        .as_str()
        .expect("a number")
        .to_owned();
    another_app_sends(&app, &phone).await;
    settle(&app, phones.len() + 1).await;
    app.advance(Duration::from_secs(61)).await;
    browser.client.goto(&url).await.expect("goto");
    let page = read_meta_page(&browser).await;
    let query = page["query"].as_str().expect("query").to_owned();
    let api = call(
        &app,
        &format!("/api/v1/stats/meta?{query}"),
        None,
        Method::GET,
    )
    .await;
    // The page asked Meta again (the minute passed); the API's call reuses that answer.
    assert_eq!(api["cached"], true, "{api}");
    assert_page_is_the_api(&page, &api);
    let more = (phones.len() + 1).to_string();
    let sent = page["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["metric"] == "sent" && r["dimension"] == "total")
        .expect("a sent total")
        .clone();
    assert_eq!(
        (
            &sent["meta"],
            &sent["parley"],
            &sent["flagged"],
            &sent["marked"]
        ),
        (&json!(more), &json!(n), &json!(true), &json!(true)),
        "{page}"
    );
    assert!(page["flagged"].as_u64().unwrap_or(0) >= 3, "{page}");
    assert!(
        page["summary"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("{} difference(s) above", page["flagged"])),
        "{page}"
    );
    assert_eq!(browser.csp_violations().await, Vec::<String>::new());
}

/// Meta's daily buckets are the WABA's days (the demo WABA's `timezone_id` "1", Los
/// Angeles), so a comparison of a date covers that date there, on both sides: a message
/// three hours into a UTC day belongs to the day before on both sides, its cost included.
#[tokio::test]
async fn a_comparison_covers_the_wabas_days_not_utc_days() {
    let app = spawn_app().await;
    seed(&app, "days", &["+14155550177"]).await;
    // The next UTC midnight, D; the message goes at D + 3 h (Los Angeles: the day before).
    const HOUR: i64 = 3_600_000;
    let now = app.now_ms();
    let midnight = (now / (24 * HOUR) + 1) * 24 * HOUR;
    let at = midnight + 3 * HOUR;
    app.advance(Duration::from_millis(
        u64::try_from(at - now).expect("ahead"),
    ))
    .await;
    let id = app
        .send(
            &json!({"to": "+14155550177", "template": {"name": "order_update", "language": "en",
            "variables": {"first_name": "there", "order_id": "A-1"}}}),
        )
        .await;
    app.wait_for_state(&id, "read").await;
    settle(&app, 1).await;
    let date = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t / 1000)
            .expect("date")
            .date()
            .to_string()
    };
    for _ in 0..900 {
        let stats = call(&app, "/api/v1/stats", None, Method::GET).await;
        if stats["totals"]["metrics"]["charged"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The day before D (UTC date), as Los Angeles has it: 07:00 or 08:00 UTC to the same on D.
    let before = call(
        &app,
        &format!(
            "/api/v1/stats/meta?from={}&to={}",
            date(midnight - 24 * HOUR),
            date(midnight)
        ),
        None,
        Method::GET,
    )
    .await;
    assert_eq!(
        before["time_zone"]["name"], "America/Los_Angeles",
        "{before}"
    );
    let from = before["from"].as_str().expect("from");
    assert!(
        from.ends_with("T07:00:00Z") || from.ends_with("T08:00:00Z"),
        "{before}"
    );
    for metric in ["sent", "delivered", "charged"] {
        let r = row(&before, metric, "total", "");
        assert_eq!(
            (&r["meta"], &r["parley"]),
            (&json!("1"), &json!("1")),
            "{r}"
        );
    }
    let cost = row(&before, "cost", "total", "");
    assert_eq!(cost["meta"], cost["parley"], "{before}");
    assert_eq!(before["flagged"], 0, "{before}");

    // D itself in Los Angeles starts after the message: nothing on either side.
    let on = call(
        &app,
        &format!(
            "/api/v1/stats/meta?from={}&to={}",
            date(midnight),
            date(midnight + 24 * HOUR)
        ),
        None,
        Method::GET,
    )
    .await;
    let r = row(&on, "sent", "total", "");
    assert_eq!(
        (&r["meta"], &r["parley"]),
        (&json!("0"), &json!("0")),
        "{on}"
    );
    assert_eq!(on["flagged"], 0, "{on}");

    // The console's comparison names the zone its days are in.
    let cookie = app.console_cookie().await;
    let (status, html) = app
        .console_get(
            &cookie,
            &format!(
                "/dashboards/meta?from={}&to={}",
                date(midnight - 24 * HOUR),
                date(midnight)
            ),
        )
        .await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(r#"id="meta-compare-zone" data-zone="America/Los_Angeles""#),
        "{html}"
    );
}
