//! Cost (#16 item 4): a campaign's estimated cost (the plan before Start) equals the sum of
//! what the sandbox billed for it, with recipients in several markets, some inside an open
//! service window (charged since 2026-10-01) and volume tiers crossed within the campaign; the
//! statistics' reported and estimated spend agree with it; editing the rates changes the
//! estimate; bad rate input is refused with stable codes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, seed_cohort as seed, spawn_app};

async fn call(app: &TestApp, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
    let (status, v) = app.api_call(method.clone(), path, body).await;
    assert!(status < 300, "{method} {path}: {status} {v}");
    v
}

async fn create_campaign(app: &TestApp, cohort: &str) -> String {
    let v = call(
        app,
        reqwest::Method::POST,
        "/api/v1/campaigns",
        Some(&json!({
            "name": format!("Cost {cohort}"),
            "template": {"name": "order_update", "language": "en",
                         "variables": {"first_name": "there", "order_id": "A-1"}},
            "audience": {"filter": format!("cohort = \"{cohort}\"")},
            "type": "transactional"
        })),
    )
    .await;
    v["id"].as_str().expect("id").to_owned()
}

/// The default table with utility tiers low enough to be crossed by a small campaign.
fn tiered(mut table: Value) -> Value {
    let obj = table.as_object_mut().expect("table");
    obj.remove("default");
    for m in table["markets"].as_array_mut().expect("markets") {
        match m["id"].as_str() {
            Some("germany") => {
                m["utility_tiers"] =
                    json!([{"from": 4, "rate": "0.05"}, {"from": 7, "rate": "0.045"}])
            }
            Some("north_america") => m["utility_tiers"] = json!([{"from": 3, "rate": "0.003"}]),
            _ => {}
        }
    }
    table
}

#[tokio::test]
async fn a_campaigns_estimated_cost_equals_what_the_sandbox_billed() {
    let app = spawn_app().await;
    // Recipients in five markets: Germany (8: crosses two utility tiers), North America (4:
    // crosses one), India, Brazil and France.
    let mut phones: Vec<String> = (0..8).map(|i| format!("+4915230000{i:03}")).collect();
    phones.extend((0..4).map(|i| format!("+1415555{:04}", 100 + i)));
    phones.extend((0..3).map(|i| format!("+91981234{:04}", i)));
    phones.extend((0..2).map(|i| format!("+55119876{:05}", i)));
    phones.push("+33612345678".to_owned());
    seed(&app, "cost", &phones).await;

    // The same tiered table on both sides: Parley's (the API) and Meta's (the sandbox's card).
    let table = tiered(call(&app, reqwest::Method::GET, "/api/v1/pricing/rates", None).await);
    let put = call(
        &app,
        reqwest::Method::PUT,
        "/api/v1/pricing/rates",
        Some(&table),
    )
    .await;
    assert_eq!(put["default"], false);
    app.sandbox_post("/sandbox/rates", &table).await;

    // Three recipients write in first: their window is open, and since 2026-10-01 a utility
    // template inside it is charged all the same (META_2026 §5.3).
    let inside = [&phones[0], &phones[9], &phones[12]];
    for p in inside {
        app.sandbox_post("/sandbox/inbound", &json!({"from": p, "text": "hi"}))
            .await;
    }
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    for p in inside {
        let mut known = false;
        for _ in 0..400 {
            let c = app
                .store
                .contact_by_phone(&application, p)
                .await
                .expect("contact");
            if c.and_then(|c| c.last_inbound_at).is_some() {
                known = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(known, "Parley never processed {p}'s message");
    }

    let id = create_campaign(&app, "cost").await;
    let plan = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/campaigns/{id}/plan"),
        None,
    )
    .await;
    let cost = &plan["cost"];
    assert_eq!(plan["recipients"], phones.len());
    assert_eq!(cost["currency"], "USD");
    assert_eq!(cost["charged"], phones.len(), "{cost}");
    let lines = cost["lines"].as_array().expect("lines");
    let line = |market: &str, tier: u64| {
        lines
            .iter()
            .filter(|l| l["market"] == market && l["tier_from"] == tier)
            .map(|l| l["messages"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    // Germany: 3 at the list rate, 3 from the 4th, 2 from the 7th; North America: 2 + 2.
    assert_eq!(
        (line("germany", 1), line("germany", 4), line("germany", 7)),
        (3, 3, 2),
        "{cost}"
    );
    assert_eq!(
        (line("north_america", 1), line("north_america", 3)),
        (2, 2),
        "{cost}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["in_window"] == true)
            .map(|l| l["messages"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        3,
        "{cost}"
    );
    assert!(lines.iter().all(|l| l["category"] == "utility"), "{cost}");
    // 3×0.055 + 3×0.05 + 2×0.045 + 2×0.0034 + 2×0.003 + 3×0.0014 + 2×0.0068 + 0.03
    assert_eq!(cost["total"], "0.4656", "{cost}");

    call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/campaigns/{id}/start"),
        None,
    )
    .await;
    let mut billed = Value::Null;
    for _ in 0..900 {
        billed = app.sandbox_get("/sandbox/billing").await;
        if billed["data"].as_array().map_or(0, Vec::len) == phones.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bills = billed["data"].as_array().expect("bills");
    assert_eq!(bills.len(), phones.len(), "{billed}");
    // Every message was charged as `regular` utility, those inside the window included.
    assert!(
        bills
            .iter()
            .all(|b| b["pricing_type"] == "regular" && b["category"] == "utility"),
        "{billed}"
    );
    assert_eq!(billed["currency"], "USD");
    assert_eq!(billed["totals"]["cost"], cost["total"], "{billed}");

    // The statistics: Meta's reported charges priced, and Parley's estimate, equal the bill.
    let mut stats = Value::Null;
    for _ in 0..900 {
        stats = call(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/stats?campaign={id}&interval=day"),
            None,
        )
        .await;
        if stats["totals"]["metrics"]["charged"] == phones.len()
            && stats["totals"]["metrics"]["delivered"] == phones.len()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats["cost"]["reported"], cost["total"], "{stats}");
    assert_eq!(stats["cost"]["estimated"], cost["total"], "{stats}");
    assert_eq!(stats["cost"]["currency"], "USD");
}

#[tokio::test]
async fn editing_rates_changes_the_estimate_and_bad_rates_are_refused() {
    let app = spawn_app().await;
    let phones: Vec<String> = (0..5).map(|i| format!("+1415555{:04}", 200 + i)).collect();
    seed(&app, "rates", &phones).await;
    let id = create_campaign(&app, "rates").await;
    let plan_path = format!("/api/v1/campaigns/{id}/plan");

    let rates = call(&app, reqwest::Method::GET, "/api/v1/pricing/rates", None).await;
    assert_eq!(rates["default"], true);
    assert_eq!(rates["effective_date"], "2026-10-01");
    let before = call(&app, reqwest::Method::GET, &plan_path, None).await;
    // 5 × North America's utility rate.
    assert_eq!(before["cost"]["total"], "0.017", "{}", before["cost"]);

    let mut table = rates.clone();
    for m in table["markets"].as_array_mut().expect("markets") {
        if m["id"] == "north_america" {
            m["utility"] = json!(0.01);
        }
    }
    call(
        &app,
        reqwest::Method::PUT,
        "/api/v1/pricing/rates",
        Some(&table),
    )
    .await;
    let after = call(&app, reqwest::Method::GET, &plan_path, None).await;
    assert_eq!(after["cost"]["total"], "0.05", "{}", after["cost"]);

    // Bad input: refused with a stable code and the field; the table in force is unchanged.
    let bad = |f: &dyn Fn(&mut Value)| {
        let mut v = table.clone();
        f(&mut v);
        v
    };
    for (body, code, field) in [
        (
            bad(&|v| v["markets"][0]["marketing"] = json!("-1")),
            "rate_invalid",
            "markets[0].marketing",
        ),
        (
            bad(&|v| v["markets"][0]["utility"] = json!("0.1234567")),
            "rate_invalid",
            "markets[0].utility",
        ),
        (
            bad(&|v| v["currency"] = json!("usd")),
            "currency_invalid",
            "currency",
        ),
        (
            bad(&|v| v["effective_date"] = json!("next quarter")),
            "effective_date_invalid",
            "effective_date",
        ),
        (
            bad(&|v| v["markets"][1]["countries"] = json!(["AR"])),
            "country_duplicate",
            "markets[1].countries[0]",
        ),
        (
            bad(&|v| v["markets"][0]["utility_tiers"] = json!([{"from": 1, "rate": "0.01"}])),
            "tier_invalid",
            "markets[0].utility_tiers[0].from",
        ),
        (
            bad(&|v| v["default_market"] = json!("atlantis")),
            "default_market_unknown",
            "default_market",
        ),
        (json!("a table"), "price_table_invalid", ""),
    ] {
        let (status, v) = app
            .api_call(reqwest::Method::PUT, "/api/v1/pricing/rates", Some(&body))
            .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        if !field.is_empty() {
            assert_eq!(v["error"]["field"], field, "{v}");
        }
    }
    let still = call(&app, reqwest::Method::GET, &plan_path, None).await;
    assert_eq!(still["cost"]["total"], "0.05");

    // Back to the default.
    let reset = call(&app, reqwest::Method::DELETE, "/api/v1/pricing/rates", None).await;
    assert_eq!(reset["default"], true);
    let again = call(&app, reqwest::Method::GET, &plan_path, None).await;
    assert_eq!(again["cost"]["total"], "0.017");
}

#[tokio::test]
async fn the_console_shows_and_edits_the_prices() {
    let app = spawn_app().await;
    let cookie = app.console_cookie().await;
    let (status, html) = app.console_get(&cookie, "/settings/pricing").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("North America") && html.contains("0.0034") && html.contains("2026-10-01"),
        "the default table is shown"
    );
    let post = |fields: Vec<(&'static str, String)>| {
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        app.http
            .post(format!("{}/settings/pricing", app.url))
            .header("cookie", cookie.as_str())
            .header("origin", app.url.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(crate::consent::form_body(&f))
            .send()
    };
    let table = json!({"currency": "EUR", "effective_date": "2027-01-01", "default_market": "all",
        "markets": [{"id": "all", "name": "Everywhere", "marketing": "0.05", "utility": "0.01",
                     "authentication": "0.01", "service": "0.01"}]});
    let resp = post(vec![("table", table.to_string())])
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let v = call(&app, reqwest::Method::GET, "/api/v1/pricing/rates", None).await;
    assert_eq!(
        (v["currency"].clone(), v["default"].clone()),
        (json!("EUR"), json!(false))
    );
    // A bad rate is refused with its code and place; nothing changes.
    let mut bad = table.clone();
    bad["markets"][0]["service"] = json!("free");
    let resp = post(vec![("table", bad.to_string())]).await.expect("post");
    assert_eq!(resp.status(), 422);
    let text = resp.text().await.unwrap_or_default();
    assert!(
        text.contains("rate_invalid") && text.contains("markets[0].service"),
        "{text}"
    );
    let v = call(&app, reqwest::Method::GET, "/api/v1/pricing/rates", None).await;
    assert_eq!(v["markets"][0]["service"], "0.01");
    let resp = post(vec![("table", String::new()), ("defaults", "1".into())])
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let v = call(&app, reqwest::Method::GET, "/api/v1/pricing/rates", None).await;
    assert_eq!(v["default"], true);

    // The campaign page's plan shows the estimate before Start.
    seed(&app, "page", &["+14155550300".to_owned()]).await;
    let id = create_campaign(&app, "page").await;
    let (status, html) = app
        .console_get(&cookie, &format!("/campaigns/whatsapp/{id}"))
        .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("id=\"plan-cost\"") && html.contains("0.0034 USD"),
        "{html}"
    );
}

/// Price-table writes racing plans and a start: every plan's estimate is priced with one
/// table, whole (its total and its `rates_effective_date` are those of the same table, never
/// a mix of the old rates and the new), and nothing fails or hangs, on either backend.
#[tokio::test]
async fn plans_racing_price_table_writes_each_use_one_whole_table() {
    // The race, not the token's rate limit, is under test.
    let app = crate::helpers::spawn_app_unthrottled().await;
    let na: Vec<String> = (0..3).map(|i| format!("+1415555{:04}", 300 + i)).collect();
    let de: Vec<String> = (0..3)
        .map(|i| format!("+49151{:08}", 40_000_300 + i))
        .collect();
    seed(&app, "race", &[na, de].concat()).await;
    let id = create_campaign(&app, "race").await;
    let plan_path = format!("/api/v1/campaigns/{id}/plan");
    let other = create_campaign(&app, "race").await;

    // Two tables that differ in every market, each with its own date.
    let base = call(&app, reqwest::Method::GET, "/api/v1/pricing/rates", None).await;
    let table = |date: &str, north_america: &str, elsewhere: &str| {
        let mut t = base.clone();
        t["effective_date"] = json!(date);
        for m in t["markets"].as_array_mut().expect("markets") {
            m["utility"] = json!(match m["id"] == "north_america" {
                true => north_america,
                false => elsewhere,
            });
            m["utility_tiers"] = json!([]);
        }
        t
    };
    let tables = [
        table("2026-11-01", "0.0100", "0.0300"),
        table("2026-12-01", "0.0200", "0.0500"),
    ];
    let mut expected = Vec::new();
    for t in &tables {
        call(&app, reqwest::Method::PUT, "/api/v1/pricing/rates", Some(t)).await;
        let plan = call(&app, reqwest::Method::GET, &plan_path, None).await;
        let cost = &plan["cost"];
        expected.push((cost["rates_effective_date"].clone(), cost["total"].clone()));
    }
    assert_ne!(expected[0].1, expected[1].1, "{expected:?}");

    let app = std::sync::Arc::new(app);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..3 {
        let (app, tables) = (app.clone(), tables.clone());
        tasks.spawn(async move {
            for i in 0..20 {
                let (status, v) = app
                    .api_call(
                        reqwest::Method::PUT,
                        "/api/v1/pricing/rates",
                        Some(&tables[(w + i) % 2]),
                    )
                    .await;
                assert_eq!(status, 200, "PUT: {v}");
            }
            Vec::new()
        });
    }
    for _ in 0..3 {
        let (app, plan_path) = (app.clone(), plan_path.clone());
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..20 {
                let (status, plan) = app.api_call(reqwest::Method::GET, &plan_path, None).await;
                assert_eq!(status, 200, "plan: {plan}");
                let cost = &plan["cost"];
                seen.push((cost["rates_effective_date"].clone(), cost["total"].clone()));
            }
            seen
        });
    }
    {
        let app = app.clone();
        tasks.spawn(async move {
            let (status, v) = app
                .api_call(
                    reqwest::Method::POST,
                    &format!("/api/v1/campaigns/{other}/start"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "start: {v}");
            Vec::new()
        });
    }
    let mut plans = 0;
    while let Some(done) = tokio::time::timeout(Duration::from_secs(120), tasks.join_next())
        .await
        .expect("the race did not end in 120 s (a deadlock?)")
    {
        for pair in done.expect("a racing request failed") {
            assert!(
                expected.contains(&pair),
                "a plan priced with neither table whole: {pair:?}, expected one of {expected:?}"
            );
            plans += 1;
        }
    }
    assert_eq!(plans, 60);
}

/// The `referral` of Meta's documented click-to-WhatsApp inbound example (the "Click to
/// WhatsApp ad" message in Meta's OpenAPI spec, `crates/parley-sandbox/tests/meta`).
fn ad_referral() -> Value {
    json!({
        "source_url": "https://fb.me/3cr4Wqqkv",
        "source_id": "120226305854810726",
        "source_type": "ad",
        "body": "Summer Succulents are here!",
        "headline": "Chat with us",
        "media_type": "image",
        "image_url": "https://scontent.xx.fbcdn.net/v/t45.1...",
        "ctwa_clid": "Aff-n8ZTODiE79d22KtAwQKj9e_mIEOOj27vDVwFjN80dp4_0NiNhEgpGo0AHemvuSoifXaytfTzcchptiErTKCqTrJ5nW1h7IHYeYymGb5K5J5iTROpBhWAGaIAeUzHL50",
        "welcome_message": {"text": "Hi there! Let us know how we can help!"}
    })
}

async fn conversation(app: &TestApp, phone: &str) -> Value {
    call(
        app,
        reqwest::Method::GET,
        &format!("/api/v1/conversations/{}", phone.replace('+', "%2B")),
        None,
    )
    .await
}

/// The bill the sandbox (Meta) made for the send to `to`, once delivered.
async fn bill_to(app: &TestApp, to: &str) -> Value {
    let digits = to.trim_start_matches('+');
    for _ in 0..400 {
        let billed = app.sandbox_get("/sandbox/billing").await;
        if let Some(b) = billed["data"].as_array().and_then(|d| {
            d.iter()
                .find(|b| b["to"].as_str().map(|t| t.trim_start_matches('+')) == Some(digits))
        }) {
            return b.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the sandbox never billed a send to {to}");
}

/// A customer who came from a click-to-WhatsApp ad (an inbound with Meta's example `referral`)
/// is in a 72 h free entry point: the conversations API, the inbox list and thread say
/// `free_entry_point`, the campaign estimate prices them free, and Meta bills the reply free;
/// a customer who wrote without a referral is billed everywhere. The window closing leaves the
/// entry point (templates only, free); 72 h after the referral replies are billed again.
#[tokio::test]
async fn a_customer_from_a_click_to_whatsapp_ad_is_free_in_the_inbox_the_api_the_estimate_and_the_bill()
 {
    let app = spawn_app().await;
    let (ad, plain) = ("+4915230009001".to_owned(), "+4915230009002".to_owned());
    seed(&app, "fep", &[ad.clone(), plain.clone()]).await;
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": ad, "name": "Sheena Nelson", "message": {
            "type": "text", "text": {"body": "Hello! Can I get more info on this?"},
            "referral": ad_referral(),
        }}),
    )
    .await;
    app.sandbox_post("/sandbox/inbound", &json!({"from": plain, "text": "hi"}))
        .await;
    for p in [&ad, &plain] {
        let mut seen = Value::Null;
        for _ in 0..400 {
            seen = conversation(&app, p).await;
            if seen["last_message"]["direction"] == "inbound" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen["last_message"]["direction"], "inbound", "{seen}");
    }

    // The API.
    let c = conversation(&app, &ad).await;
    assert_eq!(c["reply"]["billing"], "free_entry_point", "{c}");
    assert_eq!(c["reply"]["free_form"], true, "{c}");
    let until = c["reply"]["free_until"].as_str().expect("free_until");
    let closes = c["window"]["closes_at"].as_str().expect("closes_at");
    assert!(until > closes, "the entry point outlasts the window: {c}");
    let p = conversation(&app, &plain).await;
    assert_eq!(p["reply"]["billing"], "billed", "{p}");
    assert_eq!(p["reply"]["free_until"], Value::Null, "{p}");
    let list = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/conversations?limit=100",
        None,
    )
    .await;
    let listed = |id: &Value| {
        list["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|r| r["contact"]["id"] == *id)
            .map(|r| r["reply"]["billing"].clone())
    };
    assert_eq!(listed(&c["contact"]["id"]), Some(json!("free_entry_point")));
    assert_eq!(listed(&p["contact"]["id"]), Some(json!("billed")));

    // The inbox: the list row and the thread.
    let owner = app.console_cookie().await;
    let ad_id = c["contact"]["id"].as_str().expect("id").to_owned();
    let (status, page) = app.console_get(&owner, "/inbox/list").await;
    assert_eq!(status, 200);
    let row = &page[page
        .find(&format!("data-contact=\"{ad_id}\""))
        .expect("row")..];
    let row = &row[..row.find("</li>").expect("end of row")];
    assert!(
        row.contains("b-free_entry_point") && row.contains("reply free (entry point)"),
        "{row}"
    );
    let (status, live) = app
        .console_get(&owner, &format!("/inbox/{ad_id}/live"))
        .await;
    assert_eq!(status, 200);
    assert!(
        live.contains("b-free_entry_point\" id=\"billing\">free (entry point)"),
        "{live}"
    );

    // The campaign estimate agrees: the ad's customer costs nothing, the other is charged.
    let id = create_campaign(&app, "fep").await;
    let plan = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/campaigns/{id}/plan"),
        None,
    )
    .await;
    let lines = plan["cost"]["lines"].as_array().expect("lines");
    let free: u64 = lines
        .iter()
        .filter(|l| l["free_entry_point"] == true && l["charged"] == false)
        .map(|l| l["messages"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        (free, plan["cost"]["charged"].as_u64()),
        (1, Some(1)),
        "{plan}"
    );

    // And Meta bills as the inbox said: the reply to the ad's customer free, the other regular.
    for (to, contact) in [(&ad, &c), (&plain, &p)] {
        let (status, v) = app
            .api_call(
                reqwest::Method::POST,
                &format!(
                    "/api/v1/conversations/{}/messages",
                    contact["contact"]["id"].as_str().expect("id")
                ),
                Some(&json!({"text": "Thanks for writing!"})),
            )
            .await;
        assert_eq!(status, 202, "{v}");
        let bill = bill_to(&app, to).await;
        let expected = if to == &ad {
            "free_entry_point"
        } else {
            "regular"
        };
        assert_eq!(bill["pricing_type"], expected, "{bill}");
    }

    // 30 h later: the window is closed, the entry point open (templates only, free).
    app.advance(Duration::from_secs(30 * 3600)).await;
    let c = conversation(&app, &ad).await;
    assert_eq!(
        (
            &c["window"]["open"],
            &c["reply"]["free_form"],
            &c["reply"]["billing"]
        ),
        (&json!(false), &json!(false), &json!("free_entry_point")),
        "{c}"
    );
    // 73 h after the referral: billed again.
    app.advance(Duration::from_secs(43 * 3600)).await;
    let c = conversation(&app, &ad).await;
    assert_eq!(c["reply"]["billing"], "billed", "{c}");
    assert_eq!(c["reply"]["free_until"], Value::Null, "{c}");
}

/// Meta counts volume tiers per calendar month in the WABA's time zone (META_2026 §5.2): the
/// demo WABA's `timezone_id` is "1" (America/Los_Angeles), so a message three hours into a
/// UTC month is still the last month's there and crosses the tier the two before it started,
/// in the statistics' spend, the next plan's estimate, and the sandbox's bill alike. Counted
/// per UTC month it would be the new month's first, at the list rate.
#[tokio::test]
async fn a_tier_crossed_three_hours_into_a_utc_month_is_still_last_months_in_los_angeles() {
    let app = spawn_app().await;
    let platforms = call(&app, reqwest::Method::GET, "/api/v1/platforms", None).await;
    let platform = &platforms["data"][0];
    assert_eq!(platform["details"]["timezone_id"], "1", "{platform}");
    assert_eq!(
        platform["time_zone"],
        json!({"timezone_id": "1", "name": "America/Los_Angeles", "known": true}),
        "{platform}"
    );

    let phones: Vec<String> = (0..4).map(|i| format!("+1415555{:04}", 300 + i)).collect();
    seed(&app, "tz", &phones[..3]).await;
    seed(&app, "tzplan", &phones[3..]).await;
    // North America: utility at the list rate (0.0034) for the month's first two, 0.003 from
    // the third; the same card on Meta's side.
    let table = tiered(call(&app, reqwest::Method::GET, "/api/v1/pricing/rates", None).await);
    call(
        &app,
        reqwest::Method::PUT,
        "/api/v1/pricing/rates",
        Some(&table),
    )
    .await;
    app.sandbox_post("/sandbox/rates", &table).await;

    // The next UTC month's start, M; two messages at M − 10 h, one at M + 3 h.
    const HOUR: i64 = 3_600_000;
    let now = app.now_ms();
    let month = {
        let at = time::OffsetDateTime::from_unix_timestamp(now / 1000).expect("now");
        let (y, m) = (at.year(), u8::from(at.month()));
        let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        time::Date::from_calendar_date(y, time::Month::try_from(m).expect("month"), 1)
            .expect("date")
            .midnight()
            .assume_utc()
            .unix_timestamp()
            * 1000
    };
    let send = |to: String| {
        let app = &app;
        async move {
            let id = app
                .send(
                    &json!({"to": to, "template": {"name": "order_update", "language": "en",
                    "variables": {"first_name": "there", "order_id": "A-1"}}}),
                )
                .await;
            app.wait_for_state(&id, "read").await;
        }
    };
    app.advance(Duration::from_millis(
        u64::try_from(month - 10 * HOUR - now).expect("ahead"),
    ))
    .await;
    send(phones[0].clone()).await;
    send(phones[1].clone()).await;
    let late = month + 3 * HOUR;
    app.advance(Duration::from_millis(
        u64::try_from(late - app.now_ms()).expect("ahead"),
    ))
    .await;
    send(phones[2].clone()).await;

    // Meta's bill: the third message is October's (the month's) third, at the tier rate.
    let mut billed = Value::Null;
    for _ in 0..300 {
        billed = app.sandbox_get("/sandbox/billing").await;
        if billed["data"].as_array().map_or(0, Vec::len) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bills = billed["data"].as_array().expect("bills");
    assert_eq!(bills.len(), 3, "{billed}");
    let prices: Vec<&str> = bills
        .iter()
        .map(|b| b["price"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(prices, ["0.0034", "0.0034", "0.003"], "{billed}");
    assert!(bills[2]["at"].as_i64().expect("at") >= month, "{billed}");

    // Parley's spend over the two UTC days around M, tiers counted in Los Angeles.
    let day = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t / 1000)
            .expect("day")
            .date()
            .to_string()
    };
    let path = format!(
        "/api/v1/stats?from={}&to={}&interval=day",
        day(month - 24 * HOUR),
        day(month + 24 * HOUR)
    );
    let mut stats = Value::Null;
    for _ in 0..300 {
        stats = call(&app, reqwest::Method::GET, &path, None).await;
        if stats["totals"]["metrics"]["charged"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats["totals"]["metrics"]["charged"], 3, "{stats}");
    assert_eq!(stats["cost"]["time_zone"]["name"], "America/Los_Angeles");
    // 2 × 0.0034 + 0.003; counted per UTC month it would be 3 × 0.0034 = 0.0102.
    assert_eq!(stats["cost"]["reported"], "0.0098", "{stats}");
    assert_eq!(stats["cost"]["estimated"], "0.0098", "{stats}");
    assert_eq!(billed["totals"]["cost"], "0.0098", "{billed}");
    // Only the new UTC day: the message at M + 3 h alone, still priced as the third.
    let path = format!(
        "/api/v1/stats?from={}&to={}&interval=day",
        day(month),
        day(month + 24 * HOUR)
    );
    let after = call(&app, reqwest::Method::GET, &path, None).await;
    assert_eq!(after["cost"]["reported"], "0.003", "{after}");

    // A plan made now (still the Los Angeles month) starts from its three charged messages.
    let id = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/campaigns",
        Some(&json!({
            "name": "After the boundary",
            "template": {"name": "order_update", "language": "en",
                         "variables": {"first_name": "there", "order_id": "A-1"}},
            "audience": {"filter": "cohort = \"tzplan\""},
            "type": "transactional"
        })),
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let plan = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/campaigns/{id}/plan"),
        None,
    )
    .await;
    let lines = plan["cost"]["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 1, "{plan}");
    assert_eq!(lines[0]["tier_from"], 3, "{plan}");
    assert_eq!(plan["cost"]["total"], "0.003", "{plan}");
}
