//! Graph field selection, versions and the limit webhooks' shapes, against Meta's OpenAPI spec
//! (`tests/meta/business-messaging-api_v23.0.yaml`, a copy of `shared/meta/`).

use super::*;

const SPEC: &str = include_str!("../meta/business-messaging-api_v23.0.yaml");

/// Fields Meta documents but leaves out of an answer while they have no value (a number
/// without a username or a pending certificate, a template never re-categorised, …).
const ABSENT_WHEN_UNSET: [&str; 12] = [
    "username",
    "new_certificate",
    "purchase_order_number",
    "linked_commerce_account",
    "primary_page",
    "payment_account_id",
    "sub_category",
    "previous_category",
    "correct_category",
    "message_send_ttl_seconds",
    "library_template_name",
    "profile_picture_handle",
];

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The property names of `components.schemas.<name>`.
fn schema_properties(name: &str) -> Vec<String> {
    let lines: Vec<&str> = SPEC.lines().collect();
    let schemas = lines
        .iter()
        .position(|l| *l == "  schemas:")
        .expect("components.schemas");
    let start = lines[schemas..]
        .iter()
        .position(|l| *l == format!("    {name}:"))
        .map(|i| i + schemas)
        .unwrap_or_else(|| panic!("schema {name} in the spec"));
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.trim().is_empty() && indent(l) <= 4)
        .map_or(lines.len(), |i| i + start + 1);
    properties_after(&lines[start..end], "      properties:")
}

/// Keys one level below the first line equal to `marker` (by its indentation).
fn properties_after(block: &[&str], marker: &str) -> Vec<String> {
    let Some(at) = block.iter().position(|l| l.trim_end() == marker) else {
        return Vec::new();
    };
    let depth = indent(block[at]);
    block[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > depth)
        .filter(|l| indent(l) == depth + 2 && l.trim_end().ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':').to_owned())
        .collect()
}

/// The lines of `paths.<path>.get`.
fn get_block(path: &str) -> Vec<&'static str> {
    let lines: Vec<&'static str> = SPEC.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == format!("  {path}:"))
        .unwrap_or_else(|| panic!("path {path} in the spec"));
    let get = lines[start..]
        .iter()
        .position(|l| *l == "    get:")
        .map(|i| i + start)
        .expect("a get operation");
    let end = lines[get + 1..]
        .iter()
        .position(|l| !l.trim().is_empty() && indent(l) <= 4)
        .map_or(lines.len(), |i| i + get + 1);
    lines[get..end].to_vec()
}

fn is_field_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The fields a path's `fields` parameter documents: its "Available fields" list, the
/// defaults in parentheses, and the back-quoted field names.
fn fields_parameter(path: &str) -> Vec<String> {
    let block = get_block(path);
    let Some(at) = block.iter().position(|l| l.trim() == "- name: fields") else {
        return Vec::new();
    };
    let text: String = block[at + 1..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with("- name:") && l.trim() != "schema:")
        .map(|l| l.trim().trim_matches('\''))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        let s = s.trim().trim_matches('`');
        if is_field_name(s) && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    let lower = text.to_ascii_lowercase();
    for (i, _) in lower.match_indices("available fields") {
        let rest = text[i + "available fields".len()..]
            .trim_start_matches(" include")
            .trim_start_matches([':', '*', ' ']);
        let list = rest.split(['.', '*']).next().unwrap_or("");
        list.split(',').for_each(&mut add);
    }
    for (i, _) in lower.match_indices("default fields") {
        if let Some(open) = text[i..].find('(') {
            let inner = &text[i + open + 1..];
            let inner = &inner[..inner.find(')').unwrap_or(inner.len())];
            inner.split(',').for_each(&mut add);
        }
    }
    for (n, part) in text.split('`').enumerate() {
        if n % 2 == 1 {
            add(part);
        }
    }
    out
}

/// The properties of a path's inline 200 response schema.
fn response_properties(path: &str) -> Vec<String> {
    let block = get_block(path);
    let ok = block
        .iter()
        .position(|l| l.trim() == "'200':")
        .expect("a 200 response");
    let marker = block[ok..]
        .iter()
        .find(|l| l.trim() == "properties:")
        .expect("an inline schema")
        .to_owned();
    properties_after(&block[ok..], marker.trim_end())
}

fn union(lists: Vec<Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in lists.into_iter().flatten() {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Every field the spec (and META_2026.md for what came since) documents per node.
fn documented() -> Vec<(&'static str, Vec<String>)> {
    vec![
        (
            "phone",
            union(vec![
                schema_properties("PhoneNumberInfo"),
                schema_properties("WhatsAppBusinessAccountPhoneNumber"),
                schema_properties("WhatsAppAccountNumber"),
                fields_parameter("/{Version}/{Phone-Number-ID}"),
                fields_parameter("/{Version}/{WABA-ID}/phone_numbers"),
                fields_parameter("/{Version}/{WhatsApp-Account-Number-ID}"),
                // META_2026.md §4, §9.5.
                names(&[
                    "whatsapp_business_manager_messaging_limit",
                    "throughput",
                    "is_on_biz_app",
                    "platform_type",
                ]),
            ]),
        ),
        (
            "waba",
            union(vec![
                schema_properties("WhatsAppBusinessAccount"),
                schema_properties("WhatsAppBusinessAccount_1"),
                schema_properties("WhatsAppBusinessAccount_3"),
                fields_parameter("/{Version}/{WABA-ID}"),
                fields_parameter("/{Version}/{Business-ID}/client_whatsapp_business_accounts"),
                // META_2026.md §4, §9.2.
                names(&[
                    "whatsapp_business_manager_messaging_limit",
                    "primary_funding_id",
                ]),
            ]),
        ),
        (
            "business",
            union(vec![
                response_properties("/{Version}/{Business-ID}"),
                schema_properties("BusinessSummary"),
                names(&["whatsapp_business_manager_messaging_limit"]),
            ]),
        ),
        (
            "template",
            union(vec![
                response_properties("/{Version}/{TEMPLATE_ID}"),
                schema_properties("MessageTemplate"),
            ]),
        ),
        (
            "profile",
            union(vec![
                schema_properties("WhatsAppBusinessProfile"),
                schema_properties("WhatsAppBusinessProfileNode"),
                fields_parameter("/{Version}/{Phone-Number-ID}/whatsapp_business_profile"),
                fields_parameter("/{Version}/{WhatsApp-Business-Profile-ID}"),
            ]),
        ),
    ]
}

#[test]
fn the_spec_walk_finds_the_field_lists() {
    let all = documented();
    let find = |node: &str| {
        all.iter()
            .find(|(n, _)| *n == node)
            .map(|(_, f)| f.clone())
            .expect("node")
    };
    let phone = find("phone");
    for field in [
        "quality_rating",
        "name_status",
        "messaging_limit_tier",
        "unified_cert_status",
        "certificate",
        "username",
    ] {
        assert!(phone.iter().any(|f| f == field), "{field} in {phone:?}");
    }
    let waba = find("waba");
    for field in [
        "message_template_namespace",
        "primary_business_location",
        "on_behalf_of_business_info",
        "dcc_config",
        "phone_numbers",
    ] {
        assert!(waba.iter().any(|f| f == field), "{field} in {waba:?}");
    }
    assert!(find("business").iter().any(|f| f == "timezone_id"));
    assert!(find("template").iter().any(|f| f == "components"));
    assert!(find("profile").iter().any(|f| f == "account_name"));
    assert!(!phone.iter().any(|f| f == "values" || f == "approved"));
}

/// A POST with the demo token.
async fn post(sb: &TestSandbox, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = sb
        .http
        .post(format!("{}{path}", sb.base))
        .bearer_auth(demo_ids::ACCESS_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("graph post");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

/// The profile node's id, through the number's edge.
async fn profile_id(sb: &TestSandbox) -> String {
    let (status, edge) = sb
        .get(&format!(
            "/v27.0/{}/whatsapp_business_profile?fields=id",
            demo_ids::PHONE_NUMBER_ID
        ))
        .await;
    assert_eq!(status, 200, "{edge}");
    edge["data"][0]["id"]
        .as_str()
        .expect("profile id")
        .to_owned()
}

#[tokio::test]
async fn every_documented_field_of_every_node_answers() {
    let sb = spawn(test_config()).await;
    // A subscription, so `subscribed_apps` has a row.
    let (status, _) = post(
        &sb,
        &format!("/v27.0/{}/subscribed_apps", demo_ids::WABA_ID),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let profile = profile_id(&sb).await;
    let template = "1193422825532001";
    for (node, fields) in documented() {
        let id = match node {
            "phone" => demo_ids::PHONE_NUMBER_ID,
            "waba" => demo_ids::WABA_ID,
            "business" => demo_ids::BUSINESS_ID,
            "template" => template,
            _ => profile.as_str(),
        };
        for field in &fields {
            let (status, answer) = sb.get(&format!("/v27.0/{id}?fields={field}")).await;
            assert_eq!(status, 200, "{node}.{field}: {answer}");
            assert_eq!(answer["id"], id, "{node}.{field}: {answer}");
            if !ABSENT_WHEN_UNSET.contains(&field.as_str()) {
                assert!(
                    answer.get(field).is_some_and(|v| !v.is_null()),
                    "{node}.{field} missing: {answer}"
                );
            }
        }
        // All of them at once.
        let all = fields.join(",");
        let (status, answer) = sb.get(&format!("/v27.0/{id}?fields={all}")).await;
        assert_eq!(status, 200, "{node} all fields: {answer}");
    }
}

#[tokio::test]
async fn values_are_consistent_with_the_world() {
    let sb = spawn(test_config()).await;
    let phone = demo_ids::PHONE_NUMBER_ID;
    let (_, number) = sb
        .get(&format!(
            "/v27.0/{phone}?fields=display_phone_number,country_dial_code,country_code,whatsapp_business_manager_messaging_limit,messaging_limit_tier,throughput{{level}},health_status{{can_send_message}}"
        ))
        .await;
    assert_eq!(
        number,
        json!({
            "id": phone,
            "display_phone_number": demo_ids::DISPLAY_PHONE_NUMBER,
            "country_dial_code": "1",
            "country_code": "US",
            "whatsapp_business_manager_messaging_limit": "TIER_250",
            "messaging_limit_tier": "TIER_250",
            "throughput": {"level": "STANDARD"},
            "health_status": {"can_send_message": "AVAILABLE"},
        })
    );
    // The limit is the portfolio's: raising it shows on the number, the WABA and the business.
    sb.control(
        &format!("phone_numbers/{phone}/limit"),
        json!({"limit": "TIER_10K"}),
    )
    .await;
    for id in [phone, demo_ids::WABA_ID, demo_ids::BUSINESS_ID] {
        let (status, node) = sb
            .get(&format!(
                "/v27.0/{id}?fields=whatsapp_business_manager_messaging_limit"
            ))
            .await;
        assert_eq!(status, 200, "{node}");
        assert_eq!(
            node,
            json!({"id": id, "whatsapp_business_manager_messaging_limit": "TIER_10K"})
        );
    }
    // Defaults: the deprecated tier is never among them.
    let (_, plain) = sb.get(&format!("/v27.0/{phone}")).await;
    assert_eq!(
        plain["whatsapp_business_manager_messaging_limit"],
        "TIER_10K"
    );
    assert!(plain.get("messaging_limit_tier").is_none(), "{plain}");
    let (_, listed) = sb
        .get(&format!("/v27.0/{}/phone_numbers", demo_ids::WABA_ID))
        .await;
    assert!(
        listed["data"][0].get("messaging_limit_tier").is_none(),
        "{listed}"
    );
    // The business profile as edited, through the node and the edge.
    let (status, _) = post(
        &sb,
        &format!("/v27.0/{phone}/whatsapp_business_profile"),
        Some(json!({"messaging_product": "whatsapp", "about": "Open 9-5"})),
    )
    .await;
    assert_eq!(status, 200);
    let profile = profile_id(&sb).await;
    let (_, node) = sb
        .get(&format!("/v27.0/{profile}?fields=about,vertical"))
        .await;
    assert_eq!(
        node,
        json!({"id": profile, "about": "Open 9-5", "vertical": "OTHER"})
    );
    let (_, edge) = sb
        .get(&format!(
            "/v27.0/{phone}?fields=whatsapp_business_profile{{about}}"
        ))
        .await;
    assert_eq!(
        edge["whatsapp_business_profile"],
        json!({"data": [{"about": "Open 9-5"}]})
    );
}

#[tokio::test]
async fn unknown_fields_are_error_100_naming_the_node_type() {
    let sb = spawn(test_config()).await;
    let cases = [
        (demo_ids::PHONE_NUMBER_ID, "WhatsAppBusinessPhoneNumber"),
        (demo_ids::WABA_ID, "WhatsAppBusinessAccount"),
        (demo_ids::BUSINESS_ID, "Business"),
        ("1193422825532001", "WhatsAppMessageTemplate"),
    ];
    for (id, node_type) in cases {
        let (status, error) = sb.get(&format!("/v27.0/{id}?fields=id,bogus_field")).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["code"], 100, "{error}");
        assert_eq!(
            error["error"]["message"],
            format!(
                "(#100) Tried accessing nonexisting field (bogus_field) on node type ({node_type})"
            )
        );
    }
    // Inside an expansion, the nested node's type; on a list edge, the listed node's.
    let (status, error) = sb
        .get(&format!(
            "/v27.0/{}?fields=phone_numbers{{id,wa_id}}",
            demo_ids::WABA_ID
        ))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error["error"]["message"],
        "(#100) Tried accessing nonexisting field (wa_id) on node type (WhatsAppBusinessPhoneNumber)"
    );
    let (status, error) = sb
        .get(&format!(
            "/v27.0/{}/message_templates?fields=name,website",
            demo_ids::WABA_ID
        ))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error["error"]["message"],
        "(#100) Tried accessing nonexisting field (website) on node type (WhatsAppMessageTemplate)"
    );
    // Syntax errors and modifiers on plain fields are 100 too, never a 500.
    for bad in [
        "phone_numbers{id",
        "name.limit(2)",
        "phone_numbers.sort(x){id}",
        "name{x}",
    ] {
        let (status, error) = sb
            .get(&format!("/v27.0/{}?fields={bad}", demo_ids::WABA_ID))
            .await;
        assert_eq!(status, 400, "{bad}: {error}");
        assert_eq!(error["error"]["code"], 100, "{bad}: {error}");
    }
}

#[tokio::test]
async fn nested_fields_limits_and_summaries() {
    let sb = spawn(test_config()).await;
    let waba = demo_ids::WABA_ID;
    let (status, answer) = sb
        .get(&format!(
            "/v27.0/{waba}?fields=name,phone_numbers{{id,display_phone_number,throughput{{level}}}},message_templates.limit(2).summary(total_count){{name,status}}"
        ))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], waba);
    assert_eq!(
        answer["phone_numbers"]["data"],
        json!([{
            "id": demo_ids::PHONE_NUMBER_ID,
            "display_phone_number": demo_ids::DISPLAY_PHONE_NUMBER,
            "throughput": {"level": "STANDARD"},
        }])
    );
    assert!(
        answer["phone_numbers"]["paging"].get("next").is_none(),
        "{answer}"
    );
    let templates = &answer["message_templates"];
    assert_eq!(
        templates["data"],
        json!([
            {"id": "1193422825532001", "name": "welcome", "status": "APPROVED"},
            {"id": "1193422825532002", "name": "spring_sale", "status": "APPROVED"},
        ])
    );
    assert_eq!(templates["summary"], json!({"total_count": 3}));
    let next = templates["paging"]["next"].as_str().expect("a next page");
    assert!(
        next.contains(&format!("/v27.0/{waba}/message_templates?")),
        "{next}"
    );
    // The business's WABAs, with their numbers, two levels down.
    let (status, answer) = sb
        .get(&format!(
            "/v27.0/{}?fields=owned_whatsapp_business_accounts{{name,phone_numbers{{verified_name}}}}",
            demo_ids::BUSINESS_ID
        ))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["owned_whatsapp_business_accounts"]["data"][0]["phone_numbers"]["data"][0]["verified_name"],
        "Parley Demo Shop"
    );
    // summary on a list edge: true (every summary field) and total_count.
    let (_, all) = sb
        .get(&format!(
            "/v27.0/{waba}/message_templates?fields=name&summary=true"
        ))
        .await;
    assert_eq!(all["summary"]["total_count"], 3);
    assert_eq!(all["summary"]["message_template_limit"], 250);
    let (_, numbers) = sb
        .get(&format!("/v27.0/{waba}/phone_numbers?summary=total_count"))
        .await;
    assert_eq!(numbers["summary"], json!({"total_count": 1}));
    let (status, error) = sb
        .get(&format!("/v27.0/{waba}/phone_numbers?summary=everything"))
        .await;
    assert_eq!((status, error["error"]["code"].clone()), (400, json!(100)));
}

#[tokio::test]
async fn paging_walks_a_list_of_several_pages() {
    let sb = spawn(test_config()).await;
    let base = format!("/v27.0/{}/message_templates", demo_ids::WABA_ID);
    let (status, first) = sb.get(&format!("{base}?fields=name&limit=2")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"].as_array().map(Vec::len), Some(2));
    assert!(first["paging"]["cursors"]["before"].is_string());
    assert!(first["paging"].get("previous").is_none(), "{first}");
    let next = first["paging"]["next"].as_str().expect("next");
    let path = next
        .split_once(&sb.base)
        .map(|(_, p)| p.to_owned())
        .or_else(|| {
            next.split_once("://")
                .and_then(|(_, r)| r.split_once('/'))
                .map(|(_, p)| format!("/{p}"))
        })
        .expect("a path");
    assert!(path.contains("fields=name"), "{path}");
    let (status, second) = sb.get(&path).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["data"],
        json!([{"id": "1193422825532003", "name": "order_update"}])
    );
    assert!(second["paging"].get("next").is_none(), "{second}");
    assert!(second["paging"]["previous"].is_string(), "{second}");
    // Back with `before`.
    let before = second["paging"]["cursors"]["before"]
        .as_str()
        .expect("before");
    let (_, back) = sb
        .get(&format!("{base}?fields=name&limit=2&before={before}"))
        .await;
    assert_eq!(back["data"], first["data"]);
    // A cursor that is not one is error 100.
    let (status, error) = sb.get(&format!("{base}?after=garbage")).await;
    assert_eq!((status, error["error"]["code"].clone()), (400, json!(100)));
}

#[tokio::test]
async fn versions_from_v21_on_are_served_older_ones_refused() {
    let sb = spawn(test_config()).await;
    let phone = demo_ids::PHONE_NUMBER_ID;
    for version in ["v21.0", "v23.0", "v24.0", "v25.0", "v26.0", "v27.0"] {
        let (status, answer) = sb
            .get(&format!("/{version}/{phone}?fields=verified_name"))
            .await;
        assert_eq!(status, 200, "{version}: {answer}");
        assert_eq!(answer["verified_name"], "Parley Demo Shop");
    }
    for version in ["v20.0", "v19.0", "v2.0", "v23.5"] {
        let (status, error) = sb.get(&format!("/{version}/{phone}")).await;
        assert_eq!(status, 400, "{version}: {error}");
        assert_eq!(error["error"]["code"], 100, "{version}: {error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("v21.0") && message.contains("v27.0"),
            "{message}"
        );
    }
    // A refused version is a refused call in the request log.
    let log = sb.control_get("requests?outcome=refused").await;
    assert_eq!(log["data"].as_array().map(Vec::len), Some(4), "{log}");
    // Sends work on the current version, and the sandbox tells clients to use it.
    let state = sb.control_get("state").await;
    assert_eq!(state["graph_version"], "v27.0");
}

#[tokio::test]
async fn legacy_limit_webhooks_only_when_asked_for() {
    let sb = spawn(test_config()).await;
    let behaviour = sb
        .control("behaviour", json!({"legacy_limit_webhooks": true}))
        .await;
    assert_eq!(behaviour["legacy_limit_webhooks"], true);
    let phone = demo_ids::PHONE_NUMBER_ID;
    let waba = demo_ids::WABA_ID;
    sb.control(
        &format!("phone_numbers/{phone}/limit"),
        json!({"limit": "TIER_UNLIMITED", "event": "THROUGHPUT_UPGRADE"}),
    )
    .await;
    let find = |field: &str| {
        sb.received.all().iter().find_map(|(body, _)| {
            let change = &body["entry"][0]["changes"][0];
            (body["entry"][0]["id"] == waba && change["field"] == field)
                .then(|| change["value"].clone())
        })
    };
    eventually("both limit webhooks", || {
        find("business_capability_update").is_some()
            && find("phone_number_quality_update").is_some()
    })
    .await;
    let capability = find("business_capability_update").expect("capability");
    assert_eq!(
        capability,
        json!({"max_daily_conversation_per_phone": -1, "max_phone_numbers_per_waba": 25})
    );
    let quality = find("phone_number_quality_update").expect("quality");
    assert_eq!(
        quality,
        json!({
            "display_phone_number": "15550100100",
            "event": "THROUGHPUT_UPGRADE",
            "old_limit": "TIER_250",
            "current_limit": "TIER_UNLIMITED",
        })
    );
}
