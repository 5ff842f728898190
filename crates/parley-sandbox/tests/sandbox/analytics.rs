//! Meta's WABA analytics (`analytics`, `pricing_analytics`, `conversation_analytics`), served
//! from what the sandbox sent and billed, with Meta's field-expansion syntax and its errors.

use super::*;

/// Sends `messages`, lets them be delivered (and billed), and returns the virtual time
/// before the sends (Unix seconds) and after.
async fn send_and_deliver(sb: &TestSandbox, messages: &[Value]) -> (i64, i64) {
    let before = sb.control_get("clock").await["now"].as_i64().expect("now");
    for m in messages {
        let (status, body) = sb.send(m).await;
        assert_eq!(status, 200, "{body}");
    }
    sb.advance(120).await;
    let n = messages.len();
    let mut billed = 0;
    for _ in 0..500 {
        billed = sb.control_get("billing").await["data"]
            .as_array()
            .map_or(0, Vec::len);
        if billed == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(billed, n, "every message delivered and billed");
    let after = sb.control_get("clock").await["now"].as_i64().expect("now");
    (before, after)
}

fn analytics_path(field: &str, start: i64, end: i64, rest: &str) -> String {
    format!(
        "/v27.0/{}?fields={field}.start({start}).end({end}){rest}",
        demo_ids::WABA_ID
    )
}

#[tokio::test]
async fn pricing_and_messaging_analytics_answer_from_what_was_billed() {
    let sb = spawn(test_config()).await;
    // Two utility templates to Germany, one marketing to the US, one to Germany.
    let messages = [
        order_update("+4915112345601"),
        order_update("+4915112345602"),
        spring_sale("+14155550101"),
        spring_sale("+4915112345603"),
    ];
    let (before, after) = send_and_deliver(&sb, &messages).await;
    let day = 86_400;
    let (start, end) = (
        before.div_euclid(day) * day,
        after.div_euclid(day) * day + day,
    );
    let billing = sb.control_get("billing").await;

    // Pricing analytics by category and country: volumes and costs equal the bills.
    let (status, v) = sb
        .get(&analytics_path(
            "pricing_analytics",
            start,
            end,
            ".granularity(DAILY).dimensions([\"PRICING_CATEGORY\",\"PRICING_TYPE\",\"COUNTRY\",\"TIER\"])",
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], demo_ids::WABA_ID);
    let points = v["pricing_analytics"]["data"][0]["data_points"]
        .as_array()
        .expect("data points")
        .clone();
    let volume = |cat: &str, country: &str| {
        points
            .iter()
            .filter(|p| p["pricing_category"] == cat && p["country"] == country)
            .map(|p| p["volume"].as_u64().expect("volume"))
            .sum::<u64>()
    };
    assert_eq!(volume("UTILITY", "DE"), 2, "{v}");
    assert_eq!(volume("MARKETING", "DE"), 1, "{v}");
    assert_eq!(volume("MARKETING", "US"), 1, "{v}");
    for p in &points {
        assert_eq!(p["pricing_type"], "REGULAR", "{p}");
        // The demo WABA's `timezone_id` is "1": its days start at midnight in Los Angeles
        // (07:00 or 08:00 UTC), as Meta aligns daily buckets on the WABA's time zone.
        let (s, e) = (
            p["start"].as_i64().expect("start"),
            p["end"].as_i64().expect("end"),
        );
        assert!([7 * 3600, 8 * 3600].contains(&s.rem_euclid(day)), "{p}");
        assert!([day - 3600, day, day + 3600].contains(&(e - s)), "{p}");
        assert!(p["cost"].is_number(), "{p}");
        if p["pricing_category"] == "MARKETING" {
            assert_eq!(p["tier"], "0:MAX", "{p}");
        }
        assert!(p.get("phone_number").is_none(), "{p}");
    }
    let total: f64 = points
        .iter()
        .map(|p| p["cost"].as_f64().expect("cost"))
        .sum();
    let billed: f64 = billing["totals"]["cost"]
        .as_str()
        .expect("cost")
        .parse()
        .expect("decimal");
    assert!((total - billed).abs() < 1e-9, "{total} vs {billed}: {v}");

    // No dimensions: one point per bucket; VOLUME only: no cost; the PHONE dimension names
    // the display number; filters by category and phone.
    let (_, v) = sb
        .get(&analytics_path(
            "pricing_analytics",
            start,
            end,
            ".granularity(MONTHLY).metric_types([VOLUME]).dimensions(PHONE).pricing_categories([MARKETING])",
        ))
        .await;
    let points = v["pricing_analytics"]["data"][0]["data_points"]
        .as_array()
        .expect("points")
        .clone();
    assert_eq!(points.len(), 1, "{v}");
    assert_eq!(points[0]["volume"], 2, "{v}");
    assert!(points[0].get("cost").is_none(), "{v}");
    assert_eq!(points[0]["phone_number"], "15550100100", "{v}");

    // Messaging analytics: sent and delivered per bucket, for the WABA or one number.
    let (status, v) = sb
        .get(&analytics_path(
            "analytics",
            start,
            end,
            ".granularity(DAY)",
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    let a = &v["analytics"];
    assert_eq!(a["granularity"], "DAY", "{v}");
    let sum = |key: &str| {
        a["data_points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p[key].as_u64().expect("count"))
            .sum::<u64>()
    };
    assert_eq!((sum("sent"), sum("delivered")), (4, 4), "{v}");
    let (_, v) = sb
        .get(&analytics_path(
            "analytics",
            start,
            end,
            ".granularity(DAY).country_codes([\"US\"]).phone_numbers([\"15550100100\"])",
        ))
        .await;
    let points = v["analytics"]["data_points"].as_array().expect("points");
    assert_eq!(
        points
            .iter()
            .map(|p| p["sent"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        1,
        "{v}"
    );
    assert_eq!(v["analytics"]["country_codes"], json!(["US"]), "{v}");

    // A range before the sends has no points; conversation analytics are empty under PMP.
    let (_, v) = sb
        .get(&analytics_path(
            "pricing_analytics",
            start - 10 * day,
            start,
            ".granularity(DAILY)",
        ))
        .await;
    assert_eq!(
        v["pricing_analytics"]["data"][0]["data_points"],
        json!([]),
        "{v}"
    );
    let (status, v) = sb
        .get(&analytics_path(
            "conversation_analytics",
            start,
            end,
            ".granularity(DAILY).dimensions([\"CONVERSATION_CATEGORY\"])",
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["conversation_analytics"]["data"][0]["data_points"],
        json!([])
    );
}

#[tokio::test]
async fn bad_analytics_parameters_are_metas_error_100() {
    let sb = spawn(test_config()).await;
    let now = sb.control_get("clock").await["now"].as_i64().expect("now");
    let waba = demo_ids::WABA_ID;
    for (fields, says) in [
        (
            "pricing_analytics.end(2).granularity(DAILY)".to_owned(),
            "start",
        ),
        (
            format!(
                "pricing_analytics.start({now}).end({}).granularity(DAY)",
                now + 60
            ),
            "granularity",
        ),
        (
            format!("pricing_analytics.start({now}).end({now}).granularity(DAILY)"),
            "end",
        ),
        (
            format!("pricing_analytics.start(yesterday).end({now}).granularity(DAILY)"),
            "start",
        ),
        (
            format!(
                "pricing_analytics.start({}).end({now}).granularity(DAILY)",
                now - 400 * 86_400
            ),
            "lookback",
        ),
        (
            format!(
                "pricing_analytics.start({}).end({now}).granularity(DAILY).dimensions([CURRENCY])",
                now - 60
            ),
            "dimensions",
        ),
        (
            format!(
                "pricing_analytics.start({}).end({now}).granularity(DAILY).metric_types([CLICKS])",
                now - 60
            ),
            "metric_types",
        ),
        (
            format!(
                "analytics.start({}).end({now}).granularity(DAILY)",
                now - 60
            ),
            "granularity",
        ),
        (
            format!(
                "analytics.start({}).end({now}).granularity(DAY).product_types([7])",
                now - 60
            ),
            "product_types",
        ),
        (
            format!(
                "analytics.start({}).end({now}).granularity(DAY).dimensions([PHONE])",
                now - 60
            ),
            "dimensions",
        ),
        (
            format!(
                "pricing_analytics.start({}).end({now}).granularity(DAILY){{volume}}",
                now - 60
            ),
            "expansion",
        ),
        (format!("name.start({now})"), "modifier"),
    ] {
        let (status, body) = sb.get(&format!("/v27.0/{waba}?fields={fields}")).await;
        assert_meta_error(status, &body, 400, 100);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{fields}: {body}");
    }
    // A phone number is not a WABA: the analytics fields do not exist there.
    let (status, body) = sb
        .get(&format!(
            "/v27.0/{}?fields=pricing_analytics.start(1).end(2).granularity(DAILY)",
            demo_ids::PHONE_NUMBER_ID
        ))
        .await;
    assert_meta_error(status, &body, 400, 100);
}
