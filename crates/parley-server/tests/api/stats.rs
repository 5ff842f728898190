//! Statistics (#16): after a campaign through a chaotic sandbox (transient errors, a
//! permanent failure, duplicated and reordered webhooks, a reply and a STOP posted twice),
//! the counters equal a recount from the raw rows and the API's views agree with each other
//! and with the campaign's own statistics; CSV exports; hostile parameters get 400 with
//! stable codes.

use parley_store::audience::ContactUpsert;
use serde_json::{Value, json};

use crate::helpers::{Cohort, TestApp, cohort_campaign, spawn_app, text_webhook};

const N: u64 = 60;

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, v) = app.api_call(reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

async fn run_chaotic_campaign(app: &TestApp) -> (String, Vec<String>) {
    let phones = Cohort::numbered("stats", "+49152", 70_000_000, N)
        .seed(app)
        .await;
    app.sandbox_post(
        "/sandbox/faults",
        &json!({
            "error_rates": {"131000": 0.05},
            "fail_next": [130429, 131000, 131026, 130429],
            "duplicate_webhooks": 0.3,
            "reorder_webhooks": true,
        }),
    )
    .await;
    let id = app
        .start_campaign(&cohort_campaign(
            "Stats",
            "stats",
            json!({"name": "welcome", "language": "en", "variables": {"first_name": "there"}}),
            "transactional",
            json!({}),
        ))
        .await;
    app.wait_stats(&id, "completed, every message read or failed", |s| {
        s["state"] == "completed"
            && s["read"].as_u64().unwrap_or(0) + s["failed"].as_u64().unwrap_or(0) == N
    })
    .await;
    // A reply and a STOP from the first recipient, each posted twice.
    let from = phones[0].trim_start_matches('+').to_owned();
    let timestamp = app.now_ms() / 1000 + 1;
    let inbound = |wamid: &str, text: &str| text_webhook(&from, wamid, timestamp, text);
    let reply = inbound(
        "wamid.HBgLNDkxNTIwNzAwMDAwMDAVAgASGBQzQUFBQUFBQUFBQUFBQUFBQUFBAA==",
        "thanks!",
    );
    let stop = inbound(
        "wamid.HBgLNDkxNTIwNzAwMDAwMDAVAgASGBQzQkJCQkJCQkJCQkJCQkJCQkJCAA==",
        "STOP",
    );
    for body in [&reply, &reply, &stop, &stop] {
        assert_eq!(app.post_webhook(body, Some(&app.sign(body))).await, 200);
    }
    app.webhooks_processed().await;
    (id, phones)
}

#[tokio::test]
async fn counters_equal_a_recount_after_a_chaotic_campaign_and_the_views_agree() {
    let app = spawn_app().await;
    let (id, _) = run_chaotic_campaign(&app).await;

    let diff = app.engine.recount_stats(false).await.expect("recount");
    assert!(
        diff.is_empty(),
        "counters differ from the recount: {diff:#?}"
    );

    let campaign = get(&app, &format!("/api/v1/campaigns/{id}/stats")).await;
    let by_campaign = get(&app, "/api/v1/stats?interval=day&group_by=campaign").await;
    let mine: Vec<&Value> = by_campaign["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|b| b["group"] == id.as_str())
        .collect();
    assert!(!mine.is_empty(), "{by_campaign}");
    let sum = |rows: &[&Value], metric: &str| -> u64 {
        rows.iter()
            .map(|b| b["metrics"][metric].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(sum(&mine, "queued"), N, "{by_campaign}");
    assert_eq!(
        sum(&mine, "read"),
        campaign["read"].as_u64().unwrap(),
        "{campaign}"
    );
    assert_eq!(
        sum(&mine, "failed"),
        campaign["failed"].as_u64().unwrap(),
        "{campaign}"
    );
    assert_eq!(
        sum(&mine, "delivered"),
        sum(&mine, "read"),
        "every read message counts as delivered once"
    );
    assert_eq!(sum(&mine, "replied"), 1, "{by_campaign}");
    // The sandbox fails one send for good with 131026.
    let failed: u64 = mine
        .iter()
        .map(|b| {
            b["breakdown"]["failed_by_code"]["131026"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(
        failed,
        campaign["failed"].as_u64().unwrap(),
        "{by_campaign}"
    );

    // The inbound side: one reply and one STOP (each posted twice), one opt-out.
    // Read at once: `run_chaotic_campaign` waited for `webhooks_processed()`, which answers
    // only once the STOP's effects are committed (it once answered early: docs/TESTING.md).
    let stats = get(&app, "/api/v1/stats").await;
    let totals = &stats["totals"];
    assert_eq!(totals["metrics"]["inbound"], 2, "{totals}");
    assert_eq!(totals["metrics"]["opt_outs"], 1, "{totals}");
    assert_eq!(
        totals["metrics"]["conversations_by_customer"], 1,
        "{totals}"
    );

    // Hours, days, weeks and months sum to the same totals.
    let mut seen = Vec::new();
    for interval in ["hour", "day", "week", "month"] {
        let v = get(
            &app,
            &format!("/api/v1/stats?interval={interval}&campaign={id}"),
        )
        .await;
        assert_eq!(v["interval"], interval);
        seen.push(v["totals"].clone());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:#?}");
    assert_eq!(seen[0]["metrics"]["queued"], N);
    // Grouped by country: every recipient is German.
    let v = get(
        &app,
        &format!("/api/v1/stats?group_by=country&campaign={id}"),
    )
    .await;
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["group"].is_null() || b["group"] == "DE"),
        "{v}"
    );
}

#[tokio::test]
async fn stats_export_is_csv_with_the_api_numbers() {
    let app = spawn_app().await;
    let (id, _) = run_chaotic_campaign(&app).await;
    let json = get(
        &app,
        &format!("/api/v1/stats?interval=month&group_by=campaign&campaign={id}"),
    )
    .await;
    let resp = app
        .http
        .get(format!(
            "{}/api/v1/stats/export?interval=month&group_by=campaign&campaign={id}&bom=true",
            app.url
        ))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let body = resp.text().await.expect("body");
    let body = body.strip_prefix('\u{feff}').expect("a byte-order mark");
    let lines: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(
        &header[..4],
        ["start", "campaign", "queued", "sent"],
        "{body}"
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split(',').collect())
        .filter(|r: &Vec<&str>| r[1] == id)
        .collect();
    assert_eq!(rows.len(), 1, "{body}");
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let b = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["group"] == id.as_str())
        .expect("the campaign's row");
    for metric in ["queued", "sent", "delivered", "read", "failed", "replied"] {
        assert_eq!(
            rows[0][col(metric)],
            b["metrics"][metric].to_string(),
            "{metric}: {body}"
        );
    }
}

#[tokio::test]
async fn hostile_stats_parameters_get_400_with_stable_codes() {
    let app = spawn_app().await;
    for (query, code, field) in [
        ("interval=fortnight", "invalid_interval", "interval"),
        ("group_by=password", "invalid_group_by", "group_by"),
        ("from=0001-01-01&to=9999-12-31", "range_too_large", "from"),
        (
            "from=2026-01-01&to=2026-06-01&interval=hour",
            "too_many_buckets",
            "interval",
        ),
        ("from=2026-02-01&to=2026-01-01", "invalid_range", "from"),
        ("from=yesterday", "invalid_time", "from"),
        ("to=%27%3B%20DROP%20TABLE%20messages", "invalid_time", "to"),
    ] {
        for route in ["/api/v1/stats", "/api/v1/stats/export"] {
            let (status, v) = app
                .api_call(reqwest::Method::GET, &format!("{route}?{query}"), None)
                .await;
            assert_eq!(status, 400, "{route}?{query}: {v}");
            assert_eq!(v["error"]["code"], code, "{route}?{query}: {v}");
            assert_eq!(v["error"]["field"], field, "{route}?{query}: {v}");
        }
    }
    // A filter value that names nothing is no error: it counts nothing.
    let v = get(&app, "/api/v1/stats?campaign=%27%20OR%201%3D1").await;
    assert_eq!(v["totals"]["metrics"]["queued"], 0, "{v}");
}

/// RFC 4180 records (quoted cells with doubled quotes, CRLF line ends): an independent reader.
fn csv_records(body: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut cell));
                out.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(
        cell.is_empty() && row.is_empty(),
        "a last line without CRLF"
    );
    out
}

#[tokio::test]
async fn campaign_export_has_every_recipients_outcome_quoted_and_formula_safe() {
    let app = spawn_app().await;
    // A name a spreadsheet would run as a formula, with a quote and a comma in it.
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let now = app.now_ms();
    app.store
        .upsert_audience(
            &application,
            &[ContactUpsert {
                phone: "+4915270000000".into(),
                name: Some("=HYPERLINK(\"http://evil\",\"Ana, Bö\")".into()),
                ..ContactUpsert::default()
            }],
            now,
        )
        .await
        .expect("name");
    let (id, phones) = run_chaotic_campaign(&app).await;
    let stats = get(&app, &format!("/api/v1/campaigns/{id}/stats")).await;

    let resp = app
        .http
        .get(format!("{}/api/v1/campaigns/{id}/export?bom=true", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let body = resp.text().await.expect("body");
    let body = body.strip_prefix('\u{feff}').expect("a byte-order mark");
    let records = csv_records(body);
    let header = &records[0];
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let rows = &records[1..];
    assert_eq!(rows.len() as u64, N, "one line per recipient: {body}");
    assert!(rows.iter().all(|r| r.len() == header.len()), "{body}");
    // Every recipient once, in message id order.
    let mut seen: Vec<String> = rows.iter().map(|r| r[col("phone")].clone()).collect();
    seen.sort();
    let mut expected: Vec<String> = phones.iter().map(|p| format!("'{p}")).collect();
    expected.sort();
    assert_eq!(seen, expected, "phones (guarded: they begin with +)");
    let ids: Vec<&String> = rows.iter().map(|r| &r[col("message_id")]).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in message id order");
    // The states, errors and times agree with the campaign's statistics.
    let count = |state: &str| rows.iter().filter(|r| r[col("state")] == state).count() as u64;
    assert_eq!(count("read"), stats["read"].as_u64().unwrap(), "{stats}");
    assert_eq!(
        count("failed"),
        stats["failed"].as_u64().unwrap(),
        "{stats}"
    );
    for r in rows {
        if r[col("state")] == "failed" {
            assert!(
                !r[col("error_code")].is_empty(),
                "a failure has its code: {r:?}"
            );
        }
        if r[col("state")] == "read" {
            for t in [
                "queued_at",
                "accepted_at",
                "sent_at",
                "delivered_at",
                "read_at",
            ] {
                assert!(r[col(t)].ends_with('Z'), "{t} of a read message: {r:?}");
            }
        }
        assert_eq!(r[col("template")], "welcome");
        let vars: Value = serde_json::from_str(&r[col("variables")]).expect("variables JSON");
        assert!(
            vars.as_object()
                .expect("an object")
                .values()
                .any(|v| v == "there"),
            "the rendered variable: {r:?}"
        );
    }
    let ana = rows
        .iter()
        .find(|r| r[col("phone")] == "'+4915270000000")
        .expect("the named contact");
    assert_eq!(
        ana[col("name")],
        "'=HYPERLINK(\"http://evil\",\"Ana, Bö\")",
        "a formula is shown as text"
    );
    let replied = rows
        .iter()
        .filter(|r| !r[col("replied_at")].is_empty())
        .count() as u64;
    assert_eq!(replied, stats["replied"].as_u64().unwrap(), "{stats}");
    assert!(
        rows.iter().any(|r| r[col("pricing_category")] == "utility"
            || r[col("pricing_category")] == "marketing"),
        "Meta's pricing shows: {body}"
    );
    // The price column: each message Meta reported as charged at the default table's rate
    // for Germany and its category (no tiers in the default), free ones at 0, unpriced empty;
    // the column sums to the spend Meta reported in the statistics for this campaign.
    let table = parley_domain::pricing::PriceTable::default_table();
    let de = table.market_of(Some("DE"));
    let micros = |s: &str| {
        parley_domain::pricing::Micros::parse(s)
            .unwrap_or_else(|| panic!("a price: {s:?}"))
            .0
    };
    let (mut total, mut charged) = (0, 0);
    for r in rows {
        match r[col("pricing_type")].as_str() {
            "" => assert_eq!(r[col("price")], "", "unpriced: {r:?}"),
            "regular" => {
                charged += 1;
                let c =
                    parley_domain::pricing::PriceCategory::from_meta(&r[col("pricing_category")])
                        .expect("a category");
                assert_eq!(micros(&r[col("price")]), de.rate(c).0, "{r:?}");
                assert_eq!(r[col("currency")], "USD");
                total += micros(&r[col("price")]);
            }
            _ => assert_eq!(micros(&r[col("price")]), 0, "{r:?}"),
        }
    }
    assert!(total > 0, "{body}");
    let spend = get(&app, &format!("/api/v1/stats?campaign={id}")).await;
    assert_eq!(
        micros(spend["cost"]["reported"].as_str().expect("reported")),
        total,
        "{spend}"
    );
    // Each charged message once, though a third of the webhooks came twice and out of order.
    let reported_messages: i64 = spend["cost"]["by_category"]
        .as_object()
        .expect("by category")
        .values()
        .map(|c| c["reported_messages"].as_i64().expect("messages"))
        .sum();
    assert_eq!(reported_messages, charged, "{spend}");

    // Without a BOM; an unknown campaign is 404 with a stable code.
    let resp = app
        .http
        .get(format!("{}/api/v1/campaigns/{id}/export", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("export");
    assert!(resp.text().await.expect("body").starts_with("message_id,"));
    let (status, v) = app
        .api_call(
            reqwest::Method::GET,
            "/api/v1/campaigns/cmp_00000000000000000000000000/export",
            None,
        )
        .await;
    assert_eq!(status, 404, "{v}");
}
