use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("text"), "ok");
    // Readiness says what the node does: one node with every worker.
    let r = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let ready: Value = r.json().await.expect("json");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["role"], "all", "{ready}");
    assert_eq!(
        ready["workers"],
        serde_json::json!(parley_engine::nodes::WORKERS),
        "{ready}"
    );
    assert!(
        ready["node"]
            .as_str()
            .is_some_and(|n| n.starts_with("node_")),
        "{ready}"
    );
    // Make one API call so request metrics exist.
    let _ = app
        .http
        .get(format!("{}/api/v1/phone-numbers", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("get");
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("parley_http_requests_total"), "{metrics}");
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/v1/messages",
        "/api/v1/messages/{id}",
        "/api/v1/phone-numbers",
        "/api/v1/templates",
        "/api/v1/templates/sync",
        "/webhooks/whatsapp",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from OpenAPI");
    }
    assert!(doc["paths"]["/api/v1/messages"]["post"]["responses"]["422"].is_object());
    let docs = app
        .http
        .get(format!("{}/api/docs", app.url))
        .send()
        .await
        .expect("get");
    assert_eq!(docs.status(), 200);
}

#[tokio::test]
async fn phone_numbers_show_the_connected_number() {
    let app = spawn_app().await;
    let v: Value = app
        .http
        .get(format!("{}/api/v1/phone-numbers", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let n = &v["data"][0];
    assert_eq!(
        n["phone_number_id"],
        parley_sandbox::demo_ids::PHONE_NUMBER_ID
    );
    assert_eq!(n["throughput_mps"], 80);
    assert_eq!(n["messaging_limit"], "TIER_250");
}

#[tokio::test]
async fn templates_are_listed_paginated_and_resynced() {
    let app = spawn_app().await;
    let get = |q: String| {
        let app = &app;
        async move {
            app.http
                .get(format!("{}/api/v1/templates{q}", app.url))
                .bearer_auth(&app.token)
                .send()
                .await
                .expect("get")
        }
    };
    let all: Value = get(String::new()).await.json().await.expect("json");
    let names: Vec<&str> = all["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["order_update", "spring_sale", "welcome"]);
    let spring = &all["data"][1];
    assert_eq!(spring["status"], "APPROVED");
    assert_eq!(
        spring["variables"],
        serde_json::json!(["header", "1", "2", "3", "button.0"])
    );
    // Two per page: two pages, nothing lost or repeated.
    let p1: Value = get("?limit=2".into()).await.json().await.expect("json");
    assert_eq!(p1["data"].as_array().map(Vec::len), Some(2));
    let cursor = p1["next_cursor"].as_str().expect("cursor").to_owned();
    let p2: Value = get(format!("?limit=2&after={cursor}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(p2["data"][0]["name"], "welcome");
    assert!(p2["next_cursor"].is_null());
    assert_eq!(get("?limit=0".into()).await.status(), 400);
    assert_eq!(get("?after=tpl_nope".into()).await.status(), 400);
    let approved: Value = get("?status=approved".into())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(approved["data"].as_array().map(Vec::len), Some(3));

    let sync: Value = app
        .http
        .post(format!("{}/api/v1/templates/sync", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(sync["synced"], 3);
    let again: Value = get(String::new()).await.json().await.expect("json");
    assert_eq!(
        again["data"][0]["id"], all["data"][0]["id"],
        "a resync keeps ids"
    );
}

/// Meta's id of the demo `welcome` template in the sandbox.
fn welcome_meta_id() -> String {
    parley_sandbox::demo_templates()
        .into_iter()
        .find(|t| t["name"] == "welcome")
        .and_then(|t| t["id"].as_str().map(str::to_owned))
        .expect("welcome id")
}

/// Changes a template's status at the sandbox, which sends Meta's status webhook.
async fn set_template_status(app: &TestApp, meta_id: &str, status: &str) {
    app.sandbox_post(
        &format!("/sandbox/templates/{meta_id}/status"),
        &serde_json::json!({ "status": status }),
    )
    .await;
}

/// Meta pauses a template: the webhook updates the local copy, and sends are refused with a
/// clear error before any call to Meta; reinstated, it sends again.
#[tokio::test]
async fn a_paused_template_blocks_sends_until_reinstated() {
    let app = spawn_app().await;
    let meta_id = welcome_meta_id();
    set_template_status(&app, &meta_id, "PAUSED").await;
    // Until Parley has the pause webhook, a send is taken and Meta refuses it: wait for it.
    let mut status = Value::Null;
    for _ in 0..400 {
        let (_, list) = app
            .api_call(reqwest::Method::GET, "/api/v1/templates?limit=100", None)
            .await;
        status = list["data"]
            .as_array()
            .and_then(|d| d.iter().find(|t| t["name"] == "welcome"))
            .map(|t| t["status"].clone())
            .unwrap_or_default();
        if status == "PAUSED" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "PAUSED", "the pause webhook was never applied");
    let (phone, _) = app.contact(0).await;
    let body = serde_json::json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}});
    let r = app.post_message(&body).await;
    assert_eq!(r.status(), 422);
    let refused = r.json::<Value>().await.expect("json");
    assert_eq!(refused["error"]["code"], "template_not_approved");
    assert!(
        refused["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("PAUSED"),
        "{refused}"
    );
    app.assert_nothing_reached_meta("refused while paused")
        .await;

    set_template_status(&app, &meta_id, "REINSTATED").await;
    set_template_status(&app, &meta_id, "APPROVED").await;
    let mut accepted = None;
    for _ in 0..100 {
        let r = app.post_message(&body).await;
        if r.status() == 202 {
            accepted = r.json::<Value>().await.expect("json")["id"]
                .as_str()
                .map(str::to_owned);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = accepted.expect("approved again, the template sends");
    let m = app
        .wait_for_message(&id, "a wamid", |m| m["wamid"].is_string())
        .await;
    // Meta received exactly one send, this one: none of the refused ones, not even later.
    let sends = app.sandbox_sends().await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["outcome"], "accepted", "{sends:?}");
    assert_eq!(sends[0]["wamid"], m["wamid"], "{sends:?}");
}

/// Meta does not order webhooks: a REINSTATED that reaches an approved template (the late
/// half of "reinstated, then approved") leaves it approved and sending. Before, it took the
/// approval back, and the test above failed whenever the two arrived in the other order.
#[tokio::test]
async fn a_late_reinstated_does_not_take_an_approval_back() {
    let app = spawn_app().await;
    let meta_id = welcome_meta_id();
    let (phone, _) = app.contact(0).await;
    let body = serde_json::json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}});
    assert_eq!(app.post_message(&body).await.status(), 202);
    set_template_status(&app, &meta_id, "REINSTATED").await;
    // The webhook is applied within a few hundred milliseconds; the template must stay
    // sendable throughout and after.
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let r = app.post_message(&body).await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    }
}

/// Every operation that reads a query string documents its 400 `invalid_query` (with the error
/// body) in the OpenAPI document, and answers it: each is called with a query that cannot
/// parse (a number that is no number, or a parameter given twice) and must say
/// `invalid_query` in the API's error shape, not axum's plain text.
#[tokio::test]
async fn every_route_with_a_query_documents_and_answers_invalid_query() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    // Reads its query as repeatable pairs (`map` repeats), so no query fails to parse there.
    let pairs_only = [("post", "/api/v1/contacts/import")];
    let mut tried = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let query: Vec<&Value> = params.iter().filter(|p| p["in"] == "query").collect();
            if query.is_empty() {
                continue;
            }
            let bad = &op["responses"]["400"];
            assert!(
                bad["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("invalid_query")),
                "{method} {path} reads a query but does not document 400 `invalid_query`: {bad}"
            );
            assert_eq!(
                bad["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{method} {path}: the 400 has the error body"
            );
            if pairs_only.contains(&(method, path.as_str())) {
                continue;
            }
            let typed = |p: &&&Value| {
                let t = &p["schema"]["type"];
                ["integer", "number", "boolean"].iter().any(|want| {
                    t == want || t.as_array().is_some_and(|ts| ts.contains(&json!(want)))
                })
            };
            let malformed = match query.iter().find(typed) {
                Some(p) => format!("{}=not-a-number", p["name"].as_str().expect("name")),
                None => {
                    let name = query[0]["name"].as_str().expect("name");
                    format!("{name}=a&{name}=b")
                }
            };
            let mut url = path.clone();
            for p in params.iter().filter(|p| p["in"] == "path") {
                let name = p["name"].as_str().expect("name");
                url = url.replace(&format!("{{{name}}}"), "x");
            }
            let resp = app
                .http
                .request(
                    method.to_uppercase().parse().expect("method"),
                    format!("{}{url}?{malformed}", app.url),
                )
                .bearer_auth(&app.token)
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            let text = resp.text().await.expect("body");
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert_eq!(
                (status, v["error"]["code"].as_str()),
                (400, Some("invalid_query")),
                "{method} {url}?{malformed}: {text:.300}"
            );
            tried.push(format!("{method} {path}"));
        }
    }
    assert!(tried.len() >= 15, "too few routes with a query: {tried:?}");
}

/// Every list is paginated: each GET operation of the OpenAPI document whose 200 answer has a
/// `data` array takes `limit` and `after` query parameters and answers `next_cursor`
/// (`GET /api/v1/applications` and `GET /api/v1/phone-numbers` answered everything at once).
/// `bounded::every_list_…` then tries each of them with a hostile `limit` and cursor.
#[tokio::test]
async fn every_list_in_the_document_takes_limit_and_after_and_answers_next_cursor() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.rsplit('/').next().expect("ref name");
                doc["components"]["schemas"][name].clone()
            }
            None => schema.clone(),
        }
    };
    // A report, not a list: its `data` are the time buckets of the range asked for, bounded
    // by the request itself (400 days, 1,000 buckets, 20,000 rows: 400 `too_many_buckets`,
    // `too_many_rows`), so it has no pages; the exemption holds only while it says so.
    let reports = ["/api/v1/stats"];
    let mut lists = Vec::new();
    let mut unpaged = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let Some(get) = item.get("get") else { continue };
        if reports.contains(&path.as_str()) {
            let bad = get["responses"]["400"]["description"]
                .as_str()
                .unwrap_or_default();
            assert!(
                bad.contains("too_many_buckets") && bad.contains("too_many_rows"),
                "GET {path} is exempt as a bounded report but no longer documents its bounds: {bad}"
            );
            continue;
        }
        let body = resolve(&get["responses"]["200"]["content"]["application/json"]["schema"]);
        let data = resolve(&body["properties"]["data"]);
        let is_array = data["type"] == "array"
            || data["type"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("array")));
        if !is_array {
            continue;
        }
        let params = get["parameters"].as_array().cloned().unwrap_or_default();
        let takes = |name: &str| {
            params
                .iter()
                .any(|p| p["name"] == name && p["in"] == "query")
        };
        let answers_cursor = body["properties"].get("next_cursor").is_some();
        if !(takes("limit") && takes("after") && answers_cursor) {
            unpaged.push(format!(
                "GET {path} (limit: {}, after: {}, next_cursor: {answers_cursor})",
                takes("limit"),
                takes("after")
            ));
        }
        lists.push(path.clone());
    }
    assert!(
        unpaged.is_empty(),
        "lists that are not paginated: {unpaged:#?}"
    );
    for p in [
        "/api/v1/applications",
        "/api/v1/phone-numbers",
        "/api/v1/segments",
    ] {
        assert!(
            lists.iter().any(|l| l == p),
            "{p} not found among {lists:?}"
        );
    }
    assert!(lists.len() >= 10, "too few lists found: {lists:?}");
}

/// Walks `path` `per_page` rows a page by `next_cursor` (which must be the page's last key)
/// and checks it gives what one page of 200 gives, every row once; returns those keys.
async fn walk_pages(app: &TestApp, path: &str, key: &str, per_page: u32) -> Vec<String> {
    let keys = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|r| r[key].as_str().expect("key").to_owned())
            .collect()
    };
    let (status, all) = app
        .api_call(reqwest::Method::GET, &format!("{path}?limit=200"), None)
        .await;
    assert_eq!(status, 200, "{all}");
    assert!(all["next_cursor"].is_null(), "{all}");
    let all = keys(&all);
    let mut walked = Vec::new();
    let mut url = format!("{path}?limit={per_page}");
    for _ in 0..=all.len() {
        let (status, page) = app.api_call(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200, "{url}: {page}");
        let rows = keys(&page);
        assert!(rows.len() <= per_page as usize, "{url}: {page}");
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(Some(c), rows.last().map(String::as_str), "{url}: {page}");
                url = format!("{path}?limit={per_page}&after={c}");
            }
            None => {
                walked.extend(rows);
                break;
            }
        }
        walked.extend(rows);
    }
    assert_eq!(walked, all, "{path}: every row once, in the list's order");
    all
}

/// `limit=0`, `limit=201`, a malformed cursor and `unknown` (well formed, naming no row the
/// token may see) are each 400 with a stable code.
async fn refuses_bad_pages(app: &TestApp, path: &str, unknown: &str) {
    for (query, code) in [
        ("limit=0".to_owned(), "invalid_limit"),
        ("limit=201".to_owned(), "invalid_limit"),
        ("after=nonsense".to_owned(), "invalid_cursor"),
        (format!("after={unknown}"), "invalid_cursor"),
    ] {
        let (status, e) = app
            .api_call(reqwest::Method::GET, &format!("{path}?{query}"), None)
            .await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (400, Some(code)),
            "{path}?{query}: {e}"
        );
    }
}

/// `GET /api/v1/applications` is paginated like every list (it answered every application of
/// the account at once): oldest first, ties on the same millisecond by id, `next_cursor` the
/// last application's id; another account's application is no cursor.
#[tokio::test]
async fn applications_are_listed_a_page_at_a_time_oldest_first() {
    let app = spawn_app().await;
    for i in 0..4 {
        let (status, v) = app
            .api_call(
                reqwest::Method::POST,
                "/api/v1/applications",
                Some(&json!({"name": format!("Branch {i}")})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
    }
    let ids = walk_pages(&app, "/api/v1/applications", "id", 2).await;
    assert_eq!(ids.len(), 5, "{ids:?}");
    let (_, first) = app
        .api_call(reqwest::Method::GET, "/api/v1/applications?limit=1", None)
        .await;
    assert_eq!(
        first["data"][0]["current"], true,
        "the oldest is the token's: {first}"
    );
    // Another account's application, and one that does not exist.
    let account = parley_domain::AccountId::new();
    let other = parley_domain::ApplicationId::new();
    app.store
        .create_account(&account, "Other", 0)
        .await
        .expect("account");
    app.store
        .create_application(&other, &account, "Other app", 0)
        .await
        .expect("application");
    refuses_bad_pages(&app, "/api/v1/applications", other.as_str()).await;
    let missing = parley_domain::ApplicationId::new();
    refuses_bad_pages(&app, "/api/v1/applications", missing.as_str()).await;
}

/// `GET /api/v1/phone-numbers` is paginated like every list (it answered every number at
/// once): by `phone_number_id`, `next_cursor` the last number's id.
#[tokio::test]
async fn phone_numbers_are_listed_a_page_at_a_time_by_id() {
    let app = spawn_app().await;
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let connected = app
        .store
        .phone_numbers(&application)
        .await
        .expect("numbers")
        .remove(0);
    for i in 0..4 {
        let mut n = connected.clone();
        n.phone_number_id =
            parley_domain::PhoneNumberId::parse(&format!("7700900{i}")).expect("id");
        n.display_phone_number = format!("+44 7700 900{i}");
        app.store.upsert_phone_number(&n).await.expect("number");
    }
    let ids = walk_pages(&app, "/api/v1/phone-numbers", "phone_number_id", 2).await;
    assert_eq!(ids.len(), 5, "{ids:?}");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "by phone_number_id");
    refuses_bad_pages(&app, "/api/v1/phone-numbers", "999999999999").await;
}

/// An account holds at most `MAX_APPLICATIONS` applications, and a burst of concurrent creates
/// stops exactly there (409 `application_limit_reached`, nothing written). Before, nothing
/// bounded them, and each create read the members of every application of the account, one
/// query each: work growing with every application a script had made.
#[tokio::test]
async fn an_account_holds_a_bounded_number_of_applications_even_under_a_burst() {
    let app = spawn_app().await;
    let max = parley_engine::identity::MAX_APPLICATIONS;
    // The token's application is the account's oldest.
    let (_, page) = app
        .api_call(reqwest::Method::GET, "/api/v1/applications?limit=1", None)
        .await;
    let id = parley_domain::ApplicationId::parse(page["data"][0]["id"].as_str().expect("id"))
        .expect("id");
    let account = app
        .store
        .application(&id)
        .await
        .expect("read")
        .expect("the token's application")
        .account_id;
    let have = app
        .store
        .account_applications(&account)
        .await
        .expect("apps")
        .len();
    let room = 5;
    for i in have..max - room {
        app.store
            .create_application(
                &parley_domain::ApplicationId::new(),
                &account,
                &format!("Seeded {i}"),
                0,
            )
            .await
            .expect("application");
    }
    let burst = room + 12;
    let answers = futures::future::join_all((0..burst).map(|i| {
        let body = json!({"name": format!("Burst {i}")});
        let app = &app;
        async move {
            app.api_call(reqwest::Method::POST, "/api/v1/applications", Some(&body))
                .await
        }
    }))
    .await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, room, "{answers:?}");
    for (status, v) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409, "{v}");
        assert_eq!(v["error"]["code"], "application_limit_reached", "{v}");
    }
    let all = app
        .store
        .account_applications(&account)
        .await
        .expect("apps");
    assert_eq!(all.len(), max);
}
