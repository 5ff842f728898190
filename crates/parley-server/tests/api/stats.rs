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

/// Runs SQL on the test's database, whichever backend it is (for rows no API writes).
async fn raw_sql(app: &TestApp, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match app.pg_url() {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("pg");
            sqlx::raw_sql(sql).execute(&pool).await.expect("sql");
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&app.db_path)
                .busy_timeout(std::time::Duration::from_secs(30));
            let pool = sqlx::SqlitePool::connect_with(options)
                .await
                .expect("sqlite");
            sqlx::raw_sql(sql).execute(&pool).await.expect("sql");
        }
    }
}

/// A SQL literal: text quoted (quotes doubled), `NULL` for none.
fn lit(s: Option<&str>) -> String {
    s.map_or("NULL".into(), |s| format!("'{}'", s.replace('\'', "''")))
}

/// A CSV cell the export must quote (it holds a quote): quoted, quotes doubled.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[tokio::test]
async fn campaign_export_over_several_pages_is_exactly_the_expected_csv() {
    let app = spawn_app().await;
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let campaign = parley_domain::CampaignId::new();
    let t0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    // Two whole pages and a short one (4,321 recipients for pages of 2,000). Each column
    // cycles through its own cases (lengths prime to each other, so rows mix them): the stored
    // value and the cell the export must write for it.
    const N: usize = 2 * parley_engine::stats::EXPORT_PAGE as usize + 321;
    let names: [(Option<&str>, &str); 9] = [
        (Some("Ana"), "Ana"),
        (Some("Zoë, \"Z\""), "\"Zoë, \"\"Z\"\"\""),
        (Some("=1+1"), "'=1+1"),
        (Some("two\r\nlines"), "\"two\r\nlines\""),
        (Some(""), ""),
        (None, ""),
        (Some("-5,0"), "\"'-5,0\""),
        (Some("@x"), "'@x"),
        (Some("\ttab"), "'\ttab"),
    ];
    let contents: [(&str, String); 7] = [
        (
            r#"{"type":"template","template":{"name":"welcome","language":"en","header":null,"body":[{"parameter_name":"first_name","text":"Ana \"A\", é"}],"buttons":[]}}"#,
            quoted(r#"{"first_name":"Ana \"A\", é"}"#),
        ),
        (
            r#"{"type":"template","template":{"name":"promo","language":"de","header":{"type":"text","text":"Hi\nthere","parameter_name":null},"body":[{"parameter_name":null,"text":"p1"},{"parameter_name":null,"text":"p2"},{"parameter_name":null,"text":"p3"},{"parameter_name":null,"text":"p4"},{"parameter_name":null,"text":"p5"},{"parameter_name":null,"text":"p6"},{"parameter_name":null,"text":"p7"},{"parameter_name":null,"text":"p8"},{"parameter_name":null,"text":"p9"},{"parameter_name":null,"text":"p10"}],"buttons":[{"index":0,"sub_type":"url","text":"promo/1"},{"index":2,"sub_type":"copy_code","text":"CODE"}]}}"#,
            quoted(
                r#"{"1":"p1","10":"p10","2":"p2","3":"p3","4":"p4","5":"p5","6":"p6","7":"p7","8":"p8","9":"p9","button_0":"promo/1","button_2":"CODE","header":"Hi\nthere"}"#,
            ),
        ),
        (
            "{\"type\":\"text\",\"body\":\"Hello, <b>\\u2028 \\u0001\\t\",\"preview_url\":false}",
            quoted("{\"text\":\"Hello, <b>\u{2028} \\u0001\\t\"}"),
        ),
        (
            r#"{"type":"media","media_type":"image","link":"https://x.test/y.png","caption":"cap"}"#,
            quoted(r#"{"caption":"cap","link":"https://x.test/y.png","media_type":"image"}"#),
        ),
        (
            r#"{"type":"reaction","message_id":"wamid.X","emoji":"👍"}"#,
            quoted(r#"{"emoji":"👍"}"#),
        ),
        (r#"{"type":"unknown"}"#, String::new()),
        (
            r#"{"type":"template","template":{"name":"welcome","language":"en","header":{"type":"text","text":"H","parameter_name":null},"body":[{"parameter_name":"header","text":"from body"},{"parameter_name":"a","text":"1"},{"parameter_name":"a","text":"2"}],"buttons":[]}}"#,
            quoted(r#"{"a":"2","header":"from body"}"#),
        ),
    ];
    // (pricing, pricing_category): the pricing type and category written, and the category
    // priced (`None`: no price).
    use parley_domain::pricing::PriceCategory;
    type PricingCase = (
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
        &'static str,
        Option<PriceCategory>,
    );
    let pricings: [PricingCase; 9] = [
        (
            Some(
                r#"{"billable":true,"pricing_model":"PMP","type":"regular","category":"marketing"}"#,
            ),
            Some("marketing"),
            "regular",
            "marketing",
            Some(PriceCategory::Marketing),
        ),
        (
            Some(r#"{"type":"free_customer_service","category":"service"}"#),
            Some("service"),
            "free_customer_service",
            "service",
            None, // free: 0
        ),
        (None, Some("utility"), "", "utility", None),
        (
            Some(r#"{"type":"regular"}"#),
            Some("utility"),
            "regular",
            "utility",
            Some(PriceCategory::Utility),
        ),
        (Some("not json"), None, "", "", None),
        (
            Some(r#"{"type":"regular","category":"authentication"}"#),
            None,
            "regular",
            "authentication",
            Some(PriceCategory::Authentication),
        ),
        (
            Some(r#"{"type":"regular","category":"unknown_cat"}"#),
            None,
            "regular",
            "unknown_cat",
            None,
        ),
        (
            Some(r#"{"type":7,"category":"utility"}"#),
            None,
            "",
            "utility",
            None,
        ),
        (Some("[1,2]"), Some("marketing"), "", "marketing", None),
    ];
    let countries: [Option<&str>; 6] = [
        Some("DE"),
        Some("US"),
        Some(""),
        None,
        Some("BR"),
        Some("IN"),
    ];
    let errors: [(Option<&str>, &str); 3] = [
        (Some("Message undeliverable"), "Message undeliverable"),
        (
            Some("a \"quoted\", message"),
            "\"a \"\"quoted\"\", message\"",
        ),
        (None, ""),
    ];
    let table = parley_domain::pricing::PriceTable::default_table();
    let rfc3339 = |ms: Option<i64>| {
        ms.map(|ms| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .expect("a time")
                .format(&time::format_description::well_known::Rfc3339)
                .expect("RFC 3339")
        })
        .unwrap_or_default()
    };

    let mut expected = String::from(
        "\u{feff}message_id,contact_id,phone,wa_id,bsuid,parent_bsuid,username,name,country,state,\
         meta_status,template,language,variables,wamid,queued_at,sending_at,accepted_at,sent_at,\
         delivered_at,read_at,failed_at,replied_at,error_code,error_message,reason,pricing_type,\
         pricing_category,price,currency\r\n",
    );
    let mut contacts = Vec::new();
    let mut messages = Vec::new();
    for i in 0..N {
        let message_id = format!("msg_export{i:016}");
        let phone = format!("+49179{i:08}");
        let has_contact = i % 5 != 4;
        let contact_id = has_contact.then(|| format!("ctc_export{i:016}"));
        let wa_id = (i % 2 == 0).then(|| format!("49179{i:08}"));
        // (bsuid and username are unique per application)
        let (bsuid, parent, username) = match i % 3 {
            0 => (
                Some(format!("US.{i}")),
                Some("US.ENT.9"),
                Some(format!("@ana{i}")),
            ),
            1 => (Some(format!("DE.{i}")), None, Some(format!("ana_{i}"))),
            _ => (None, None, None),
        };
        let (bsuid, username) = (bsuid.as_deref(), username.as_deref());
        let (name, name_cell) = names[i % names.len()];
        if let Some(id) = &contact_id {
            contacts.push(format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {t0}, {t0})",
                lit(Some(id)),
                lit(Some(application.as_str())),
                lit(Some(&phone)),
                lit(wa_id.as_deref()),
                lit(name),
                lit(bsuid),
                lit(parent),
                lit(username),
            ));
        }
        let (content, variables) = &contents[i % contents.len()];
        let (pricing, pricing_category, pricing_type_cell, category_cell, priced) =
            pricings[i % pricings.len()];
        let country = countries[i % countries.len()];
        let state = ["read", "delivered", "failed", "sent"][i % 4];
        let meta_status = [Some("read"), None][i % 2];
        let template = (i % 7 != 2).then_some(("welcome", "en"));
        let wamid = (i % 4 != 2).then(|| format!("wamid.export{i}"));
        let queued = t0 + i as i64 * 1001;
        let times: [Option<i64>; 7] = [
            (i % 3 != 0).then_some(queued + 10),
            (i % 4 != 2).then_some(queued + 120),
            (i % 4 != 2).then_some(queued + 1000),
            (i % 2 == 0).then_some(queued + 86_400_000),
            (i % 4 == 0).then_some(queued + 90_061_001),
            (i % 4 == 2).then_some(queued + 5),
            (i % 11 == 0).then_some(queued + 3_600_000),
        ];
        let error_code = (i % 4 == 2).then_some(131_026 + i as i64 % 3);
        let (error_message, error_cell) = errors[i % errors.len()];
        let hold_reason = (i % 13 == 0).then_some("opted_out");
        let num = |n: Option<i64>| n.map_or("NULL".into(), |n| n.to_string());
        messages.push(format!(
            "({}, {}, '100001', {}, {}, 'template', {}, {}, {}, {}, {}, {}, {}, {}, 1, {queued}, {queued}, {}, {}, {}, {}, {}, {}, {}, {queued}, {}, {}, {}, {}, {})",
            lit(Some(&message_id)),
            lit(Some(application.as_str())),
            lit(contact_id.as_deref()),
            lit(Some(&phone)),
            lit(template.map(|t| t.0)),
            lit(template.map(|t| t.1)),
            lit(Some(content)),
            lit(Some(state)),
            lit(wamid.as_deref()),
            num(error_code),
            lit(error_message),
            lit(hold_reason),
            num(times[0]),
            num(times[1]),
            num(times[2]),
            num(times[3]),
            num(times[4]),
            num(times[5]),
            num(times[6]),
            lit(Some(campaign.as_str())),
            lit(pricing),
            lit(pricing_category),
            lit(country),
            lit(meta_status),
        ));
        let price = match (pricing_type_cell, priced) {
            ("", _) => String::new(),
            ("regular", Some(c)) => table
                .market_of(country.filter(|c| !c.is_empty()))
                .rate(c)
                .to_string(),
            ("regular", None) => String::new(),
            _ => "0.00".into(),
        };
        let currency = if price.is_empty() { "" } else { "USD" };
        let cells: Vec<String> = [
            message_id.clone(),
            contact_id.clone().unwrap_or_default(),
            format!("'{phone}"),
            if has_contact {
                wa_id.clone().unwrap_or_default()
            } else {
                String::new()
            },
            if has_contact {
                bsuid.unwrap_or_default().into()
            } else {
                String::new()
            },
            if has_contact {
                parent.unwrap_or_default().into()
            } else {
                String::new()
            },
            match (has_contact, username) {
                (true, Some(u)) if u.starts_with('@') => format!("'{u}"),
                (true, Some(u)) => u.into(),
                _ => String::new(),
            },
            if has_contact {
                name_cell.into()
            } else {
                String::new()
            },
            country.unwrap_or_default().into(),
            state.into(),
            meta_status.unwrap_or_default().into(),
            template.map_or("", |t| t.0).into(),
            template.map_or("", |t| t.1).into(),
            variables.clone(),
            wamid.clone().unwrap_or_default(),
            rfc3339(Some(queued)),
        ]
        .into_iter()
        .chain(times.iter().map(|t| rfc3339(*t)))
        .chain([
            error_code.map(|c| c.to_string()).unwrap_or_default(),
            error_cell.into(),
            hold_reason.unwrap_or_default().into(),
            pricing_type_cell.into(),
            category_cell.into(),
            price,
            currency.into(),
        ])
        .collect();
        expected.push_str(&cells.join(","));
        expected.push_str("\r\n");
    }
    let mut sql = format!(
        "INSERT INTO campaigns (id, application_id, name, phone_number_id, template_name,
             template_language, variables, audience, audience_filter, kind, state, planned,
             recipients, created_at, updated_at)
         VALUES ({}, {}, 'Export', '100001', 'welcome', 'en', '{{}}', '{{\"filter\":\"all\"}}',
             'all', 'marketing', 'completed', {}, {N}, {t0}, {t0});\n",
        lit(Some(campaign.as_str())),
        lit(Some(application.as_str())),
        if app.pg_url().is_some() { "TRUE" } else { "1" },
    );
    for chunk in contacts.chunks(500) {
        sql.push_str(&format!(
            "INSERT INTO contacts (id, application_id, phone, wa_id, name, bsuid, parent_bsuid,
                 username, created_at, updated_at) VALUES {};\n",
            chunk.join(", ")
        ));
    }
    for chunk in messages.chunks(500) {
        sql.push_str(&format!(
            "INSERT INTO messages (id, application_id, phone_number_id, contact_id, to_phone,
                 kind, template_name, template_language, content, state, wamid, error_code,
                 error_message, hold_reason, attempts, next_attempt_at, queued_at, sending_at,
                 accepted_at, sent_at, delivered_at, read_at, failed_at, replied_at, updated_at,
                 campaign_id, pricing, pricing_category, country, meta_status) VALUES {};\n",
            chunk.join(", ")
        ));
    }
    raw_sql(&app, &sql).await;

    let export = |bom: bool| {
        let url = format!(
            "{}/api/v1/campaigns/{}/export{}",
            app.url,
            campaign.as_str(),
            if bom { "?bom=true" } else { "" }
        );
        let request = app.http.get(url).bearer_auth(&app.token);
        async move {
            let resp = request.send().await.expect("export");
            assert_eq!(resp.status(), 200);
            resp.text().await.expect("body")
        }
    };
    let body = export(true).await;
    // Line by line first, so a difference names its line.
    for (n, (got, want)) in body.split("\r\n").zip(expected.split("\r\n")).enumerate() {
        assert_eq!(got, want, "line {n}");
    }
    assert_eq!(body, expected);
    let plain = export(false).await;
    assert_eq!(plain, expected.strip_prefix('\u{feff}').expect("BOM"));
}
