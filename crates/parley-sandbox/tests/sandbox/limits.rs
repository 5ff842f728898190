//! The messaging limit, enforced by the sandbox on its own: unique recipients of
//! business-initiated templates per business portfolio in a moving 24 h, the limit being the
//! highest tier among the portfolio's numbers; beyond it error 131064 and a violation.

use parley_sandbox::{PhoneSeed, demo_ids};
use serde_json::{Value, json};

use super::{TestSandbox, assert_meta_error, spawn, test_config, welcome};

const SECOND_PHONE: &str = "106540352242999";

impl TestSandbox {
    async fn send_from(&self, phone: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v23.0/{phone}/messages", self.base))
            .bearer_auth(demo_ids::ACCESS_TOKEN)
            .json(body)
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }
}

fn recipient(i: u32) -> String {
    format!("+49160{i:07}")
}

#[tokio::test]
async fn the_messaging_limit_counts_unique_recipients_per_portfolio_and_reports_violations() {
    let mut config = test_config();
    let numbers = &mut config.businesses[0].wabas[0].phone_numbers;
    numbers[0].messaging_limit = "TIER_50".into();
    numbers[0].throughput_mps = 1_000;
    let mut second: PhoneSeed = numbers[0].clone();
    second.id = SECOND_PHONE.into();
    second.display_phone_number = "+1 555-010-0199".into();
    numbers.push(second);
    let sb = spawn(config).await;
    let first = demo_ids::PHONE_NUMBER_ID;

    // 30 recipients from one number, 20 from the other: the portfolio's 50 are used.
    for i in 0..50 {
        let phone = if i < 30 { first } else { SECOND_PHONE };
        let (status, body) = sb.send_from(phone, &welcome(&recipient(i))).await;
        assert_eq!(status, 200, "send {i}: {body}");
    }
    // Reached already: no new slot.
    assert_eq!(
        sb.send_from(SECOND_PHONE, &welcome(&recipient(0))).await.0,
        200
    );
    // A new recipient is over the limit, from either number.
    let (status, body) = sb.send_from(SECOND_PHONE, &welcome(&recipient(50))).await;
    assert_meta_error(status, &body, 400, 131064);
    // Inside the customer-service window a template is not business-initiated.
    sb.inbound(&recipient(51), "hi").await;
    assert_eq!(sb.send_from(first, &welcome(&recipient(51))).await.0, 200);
    // Free-form messages never count.
    let text = json!({"messaging_product": "whatsapp", "to": recipient(51), "type": "text",
                      "text": {"body": "hello"}});
    assert_eq!(sb.send_from(first, &text).await.0, 200);

    let violations = sb.control_get("violations").await;
    let data = violations["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "{violations}");
    assert_eq!(data[0]["phone_number_id"], SECOND_PHONE);
    assert_eq!(data[0]["recipient"], "491600000050");
    assert_eq!(data[0]["limit"], 50);
    assert_eq!(data[0]["reached"], 50);
    assert_eq!(data[0]["business_id"], demo_ids::BUSINESS_ID);
    assert!(data[0]["at"].is_i64());
    let accepted = sb.control_get("messages").await;
    assert!(
        !accepted["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|m| m["to"] == "491600000050"),
        "a refused send is not recorded"
    );

    // The portfolio's limit is its best number's: raising one number raises it for both.
    sb.control(
        &format!("phone_numbers/{SECOND_PHONE}/limit"),
        json!({"limit": "TIER_250"}),
    )
    .await;
    assert_eq!(sb.send_from(first, &welcome(&recipient(50))).await.0, 200);

    // Back to 50: the slots used stay taken until a day after their sends, then free up.
    sb.control(
        &format!("phone_numbers/{SECOND_PHONE}/limit"),
        json!({"limit": "TIER_50"}),
    )
    .await;
    sb.advance(24 * 60 * 60 - 1).await;
    let (status, body) = sb.send_from(first, &welcome(&recipient(60))).await;
    assert_meta_error(status, &body, 400, 131064);
    sb.advance(1).await;
    for i in 60..110 {
        let (status, body) = sb.send_from(first, &welcome(&recipient(i))).await;
        assert_eq!(status, 200, "send {i} a day later: {body}");
    }
    let (status, body) = sb.send_from(first, &welcome(&recipient(110))).await;
    assert_meta_error(status, &body, 400, 131064);

    assert_eq!(
        sb.control_get("violations").await["data"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    sb.control("reset", json!({})).await;
    assert_eq!(sb.control_get("violations").await["data"], json!([]));
    assert_eq!(sb.send_from(first, &welcome(&recipient(110))).await.0, 200);
}
