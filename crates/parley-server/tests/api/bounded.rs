//! Bounded work (#12 part 3): WhatsApp's size limits applied before anything is stored, a
//! renderer that stops at the limit, tag values with a size limit, and every request body
//! bounded.

use std::time::Duration;

use parley_domain::{AccountId, ApplicationId, MAX_SEGMENT_CONDITIONS, TagValue};
use parley_store::audience::ContactUpsert;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, backend, spawn_app, spawn_app_tuned};

/// How many messages the application has (all pages).
async fn message_count(app: &TestApp) -> usize {
    let mut total = 0;
    let mut after = String::new();
    loop {
        let path = if after.is_empty() {
            "/api/v1/messages?limit=200".to_owned()
        } else {
            format!("/api/v1/messages?limit=200&after={after}")
        };
        let (status, page) = app.api_call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        total += page["data"].as_array().expect("data").len();
        match page["next_cursor"].as_str() {
            Some(c) => after = c.to_owned(),
            None => return total,
        }
    }
}

#[tokio::test]
async fn a_variable_that_repeats_a_long_tag_is_refused_naming_it_and_nothing_is_stored() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    // A tag of 900 characters is allowed; 250 copies of it would be 225,000.
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{phone}"),
            Some(&json!({"tags": {"first_name": "x".repeat(900)}})),
        )
        .await;
    assert!(status == 200 || status == 201, "{v}");
    let before = message_count(&app).await;
    let amplifier = "{{first_name}}".repeat(250);
    let body = json!({"to": phone, "template": {"name": "welcome", "language": "en",
        "variables": {"first_name": amplifier}}});
    assert!(body.to_string().len() < 5_000, "a request of a few KB");
    let resp = app.post_message(&body).await;
    assert_eq!(resp.status().as_u16(), 422);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "variable_too_long", "{v}");
    assert_eq!(v["error"]["field"], "template.variables.first_name", "{v}");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("`first_name`") && message.contains("1024"),
        "{v}"
    );
    assert!(
        message.len() < 1_000,
        "the error does not echo the value: {v}"
    );
    assert_eq!(message_count(&app).await, before, "nothing was stored");

    // A literal value over 1,024 characters is refused the same way.
    let resp = app
        .post_message(
            &json!({"to": phone, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "y".repeat(1025)}}}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "variable_too_long", "{v}");
    assert_eq!(v["error"]["field"], "template.variables.first_name", "{v}");
    assert_eq!(message_count(&app).await, before, "nothing was stored");

    // The same value within the limit is sent.
    let resp = app
        .post_message(
            &json!({"to": phone, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "{{first_name}}"}}}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(message_count(&app).await, before + 1);
}

#[tokio::test]
async fn previews_are_bounded_and_name_the_variable() {
    let app = spawn_app().await;
    let contact = json!({"tags": {"t": "z".repeat(1000)}});
    // Free text: at most 4,096 characters once rendered.
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/personalize/preview",
            Some(&json!({"text": "{{t}}".repeat(1000), "contact": contact})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "text_too_long", "{v}");
    assert_eq!(v["error"]["field"], "text", "{v}");
    assert!(
        v.to_string().len() < 2_000,
        "no huge output: {}",
        v.to_string().len()
    );
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/personalize/preview",
            Some(&json!({"text": "{{t}}".repeat(4), "contact": contact})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["text"].as_str().map(|t| t.chars().count()), Some(4000));
    // A template: the variable is named.
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/personalize/preview",
            Some(&json!({"template": {"name": "welcome", "language": "en"},
                "variables": {"first_name": "{{t}}".repeat(300)}, "contact": contact})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "variable_too_long", "{v}");
    assert_eq!(v["error"]["field"], "variables.first_name", "{v}");
}

#[tokio::test]
async fn a_long_tag_value_is_refused_on_put_and_import() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{phone}"),
            Some(&json!({"tags": {"bio": "b".repeat(1025)}})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "tag_value_too_long", "{v}");
    assert_eq!(v["error"]["field"], "tags.bio", "{v}");
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{phone}"),
            Some(&json!({"tags": {"langs": vec!["de"; 101]}})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "tag_value_too_long", "{v}");
    let (_, stored) = app
        .api_call(Method::GET, &format!("/api/v1/contacts/{phone}"), None)
        .await;
    assert!(stored["tags"].get("bio").is_none(), "{stored}");
    assert!(stored["tags"].get("langs").is_none(), "{stored}");

    // An import rejects the row with its line and the reason; the other rows are taken.
    let csv = format!(
        "phone,bio\n+4917000000101,short\n+4917000000102,{}\n",
        "b".repeat(1025)
    );
    let done = crate::audience::import(&app, "format=csv", &csv).await;
    assert_eq!(done["created"], 1, "{done}");
    assert_eq!(done["rejected"], 1, "{done}");
    let text = rejected_csv(&app, done["id"].as_str().expect("id")).await;
    let line = text.lines().nth(1).expect("a rejected row");
    assert!(line.starts_with("3,") && line.contains("1024"), "{text}");
    assert!(
        text.len() < 6_000,
        "the row is kept truncated: {}",
        text.len()
    );
}

/// The rejected rows of an import, as the CSV download gives them.
pub(crate) async fn rejected_csv(app: &TestApp, id: &str) -> String {
    app.http
        .get(format!("{}/api/v1/contacts/import/{id}/rejected", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("rejected")
        .text()
        .await
        .expect("text")
}

// --- filters bounded in cost ------------------------------------------------------------------

/// Contacts each with a long tag the expensive filter searches.
const CONTACTS_FOR_FILTERS: usize = 20_000;

/// A filter within every limit that is still expensive: as many `contains` conditions as a
/// filter may hold, none matching, each a substring search over every contact's long tag.
fn expensive_filter() -> String {
    let c: Vec<String> = (0..MAX_SEGMENT_CONDITIONS)
        .map(|i| format!("bio contains \"{}b{i}\"", "a".repeat(24)))
        .collect();
    let f = c.join(" or ");
    assert!(f.chars().count() <= parley_domain::MAX_SEGMENT_CHARS);
    f
}

async fn seed_long_tags(app: &TestApp) {
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let bio = "a".repeat(1000);
    for chunk in 0..CONTACTS_FOR_FILTERS / 1000 {
        let batch: Vec<ContactUpsert> = (0..1000)
            .map(|i| ContactUpsert {
                phone: format!("+4915900{:06}", chunk * 1000 + i),
                tags: [("bio".to_owned(), Some(TagValue::String(bio.clone())))]
                    .into_iter()
                    .collect(),
                ..ContactUpsert::default()
            })
            .collect();
        app.store
            .upsert_audience(&application, &batch, 0)
            .await
            .expect("seed");
    }
}

async fn preview(app: &TestApp, filter: &str) -> (u16, Value) {
    app.api_call(
        Method::POST,
        "/api/v1/segments/preview",
        Some(&json!({"filter": filter, "sample": 5})),
    )
    .await
}

/// A second tenant with its own token, for "other tenants are unaffected".
async fn other_tenant(app: &TestApp) -> String {
    let account = AccountId::new();
    let application = ApplicationId::new();
    app.store
        .create_account(&account, "Other", 0)
        .await
        .expect("account");
    app.store
        .create_application(&application, &account, "Other app", 0)
        .await
        .expect("application");
    let token = "other-tenant-token-0123456789".to_owned();
    app.store
        .add_api_token(
            &application,
            &parley_engine::auth::hash_api_token(&token),
            "other",
            0,
        )
        .await
        .expect("token");
    token
}

#[tokio::test]
async fn an_expensive_filter_is_stopped_at_its_budget_with_a_clear_error() {
    let app = spawn_app_tuned(None, |c| c.filter_timeout = Duration::from_millis(200)).await;
    seed_long_tags(&app).await;
    let filter = expensive_filter();
    let (status, v) = preview(&app, &filter).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "filter_too_expensive", "{v}");
    assert_eq!(v["error"]["field"], "filter", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("simpler")),
        "says what to do: {v}"
    );
    // The contact list with the same filter is bounded too.
    let (status, v) = app
        .api_call(
            Method::GET,
            &format!("/api/v1/contacts?filter={}", url_escape(&filter)),
            None,
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "filter_too_expensive", "{v}");
    // The filter connections are usable again: a cheap filter answers.
    let (status, v) = preview(&app, "bio contains \"aaa\"").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["count"], CONTACTS_FOR_FILTERS as u64, "{v}");
    // Over the condition limit: refused before it runs.
    let (status, v) = preview(&app, &format!("{filter} or x = 1")).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "filter_too_complex", "{v}");
    let nested = format!("{}x = 1{}", "(".repeat(65), ")".repeat(65));
    let (status, v) = preview(&app, &nested).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "filter_too_complex", "{v}");
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn four_expensive_filters_leave_readyz_and_other_tenants_answering() {
    let app = spawn_app_tuned(None, |c| c.filter_timeout = Duration::from_secs(2)).await;
    seed_long_tags(&app).await;
    let other = other_tenant(&app).await;
    let filter = expensive_filter();
    let app = std::sync::Arc::new(app);
    let previews: Vec<_> = (0..4)
        .map(|_| {
            let (app, filter) = (app.clone(), filter.clone());
            tokio::spawn(async move { preview(&app, &filter).await })
        })
        .collect();
    // Wait until the filters hold the filter connections (positive evidence they run).
    let mut running = 0;
    for _ in 0..400 {
        running = app.store.filter_queries_running();
        if running >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(running >= 1, "the previews never started");
    // Health checks and another tenant's reads answer meanwhile.
    let ready = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    for path in [
        "/api/v1/contacts?limit=5",
        "/api/v1/templates",
        "/api/v1/messages",
    ] {
        let resp = app
            .http
            .get(format!("{}{path}", app.url))
            .bearer_auth(&other)
            .send()
            .await
            .expect("other tenant");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    let (status, _) = app
        .api_call(Method::GET, "/api/v1/contacts?limit=5", None)
        .await;
    assert_eq!(status, 200, "an unfiltered list of the same tenant");
    assert!(
        app.store.filter_queries_running() >= 1 && previews.iter().any(|p| !p.is_finished()),
        "the answers above came while the filters were still running"
    );
    for p in previews {
        let (status, v) = p.await.expect("preview task");
        assert_eq!(status, 422, "{v}");
        assert_eq!(v["error"]["code"], "filter_too_expensive", "{v}");
    }
    assert_eq!(app.store.filter_queries_running(), 0);
}

#[tokio::test]
async fn a_filter_whose_client_hangs_up_stops_in_the_database() {
    // A budget far longer than the test: only the hang-up can stop the queries.
    let app = spawn_app_tuned(None, |c| c.filter_timeout = Duration::from_secs(600)).await;
    // PostgreSQL: the filters wait behind a lock the test holds, so they run until stopped;
    // SQLite (readers never wait for a lock): they search many long tags.
    let pg = match backend() {
        Backend::Postgres => {
            let url = &app.pg.as_ref().expect("postgres").url;
            let pool = sqlx::PgPool::connect(url).await.expect("pg");
            let mut lock = pool.begin().await.expect("begin");
            sqlx::query("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *lock)
                .await
                .expect("lock");
            Some((pool, lock))
        }
        Backend::Sqlite => {
            seed_long_tags(&app).await;
            None
        }
    };
    let filter = expensive_filter();
    let app = std::sync::Arc::new(app);
    // Two clients that will hang up hold both filter connections.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (app, filter) = (app.clone(), filter.clone());
            tokio::spawn(async move { preview(&app, &filter).await })
        })
        .collect();
    for _ in 0..1000 {
        if app.store.filter_queries_running() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.store.filter_queries_running(), 2, "both filters run");
    if let Some((pool, _)) = &pg {
        for _ in 0..1000 {
            if running_filters(pool).await == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            running_filters(pool).await,
            2,
            "both are in pg_stat_activity"
        );
    }
    let abandoned = app.store.filter_queries_abandoned();
    for c in &clients {
        c.abort();
    }
    for c in clients {
        assert!(c.await.is_err(), "the clients hung up");
    }
    // Both statements are stopped in the database (SQLite's progress handler interrupts
    // them; PostgreSQL's backends get a cancel), long before their budget.
    for _ in 0..1000 {
        if app.store.filter_queries_abandoned() == abandoned + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        app.store.filter_queries_abandoned(),
        abandoned + 2,
        "the abandoned statements were stopped"
    );
    if let Some((pool, lock)) = pg {
        // Gone from the server while the lock is still held: cancelled, not finished.
        let mut left = usize::MAX;
        for _ in 0..1000 {
            left = running_filters(&pool).await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(left, 0, "the abandoned queries still run in PostgreSQL");
        lock.rollback().await.expect("unlock");
    }
    // Both filter connections serve again: the abandoned statements were stopped, not left
    // to run out their budget.
    let cheap = tokio::time::timeout(
        Duration::from_secs(60),
        preview(&app, "bio contains \"aaa\""),
    )
    .await
    .expect("a filter connection came free: the abandoned statements were stopped");
    assert_eq!(cheap.0, 200, "{}", cheap.1);
}

/// Active statements over the contacts' tag index in PostgreSQL (the segment queries).
async fn running_filters(pool: &sqlx::PgPool) -> usize {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%tag_index%' AND pid <> pg_backend_pid()
           AND datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .expect("pg_stat_activity");
    usize::try_from(n).unwrap_or(0)
}

// --- request bodies ---------------------------------------------------------------------------

/// Posts a body of `len` bytes in 64 KiB chunks over a plain connection (the client never
/// holds it whole) and returns the answer's status.
async fn post_streamed(app: &TestApp, path: &str, content_type: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        app.token
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'%'; 64 * 1024];
    let mut sent = 0;
    while sent < len {
        let n = chunk.len().min(len - sent);
        // The server may answer and close before the whole body is sent.
        if conn.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        sent += n;
    }
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text}"))
}

#[tokio::test]
async fn webhook_campaign_media_and_console_bodies_have_their_limits() {
    let app = spawn_app().await;
    let limit = |n: usize| n + 1;

    // Meta's webhooks: at most 4 MiB (Meta sends up to 3 MB), even with a valid signature.
    let mut big = br#"{"object":"whatsapp_business_account","entry":[],"pad":""#.to_vec();
    big.resize(limit(parley_server::WEBHOOK_BODY_LIMIT) - 2, b'x');
    big.extend_from_slice(br#""}"#);
    let status = app.post_webhook(&big, Some(&app.sign(&big))).await;
    assert_eq!(status.as_u16(), 413);

    // Campaigns: 4 MiB, more than the API's 256 KiB (a list of 20,000 numbers fits)...
    let phones: Vec<String> = (0..20_000).map(|i| format!("+4915800{i:06}")).collect();
    let body = json!({"name": "Big list", "template": {"name": "welcome", "language": "en",
        "variables": {"first_name": "{{first_name||there}}"}},
        "audience": {"phones": phones}, "type": "transactional"});
    assert!(body.to_string().len() > parley_server::API_BODY_LIMIT);
    let (status, v) = app
        .api_call(Method::POST, "/api/v1/campaigns", Some(&body))
        .await;
    assert_eq!(status, 201, "{v}");
    // ...and no more.
    let pad = "x".repeat(parley_server::CAMPAIGN_BODY_LIMIT);
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/campaigns",
            Some(
                &json!({"name": pad, "template": {"name": "welcome", "language": "en"},
                "audience": {"filter": "all"}, "type": "transactional"}),
            ),
        )
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "body_too_large", "{v}");
    // Other API routes: 256 KiB.
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/segments/preview",
            Some(&json!({"filter": "x".repeat(parley_server::API_BODY_LIMIT)})),
        )
        .await;
    assert_eq!(status, 413, "{v}");

    // Media examples: 100 MiB, streamed to the server.
    let status = post_streamed(
        &app,
        "/api/v1/media/uploads",
        "application/pdf",
        limit(parley_server::MEDIA_BODY_LIMIT),
    )
    .await;
    assert_eq!(status, 413);

    // The console: its JSON calls take 256 KiB (the import preview posts 64 KiB).
    let cookie = app.console_cookie().await;
    let resp = app
        .http
        .post(format!("{}/import/preview?format=csv", app.url))
        .header("cookie", &cookie)
        .header("origin", app.url.as_str())
        .body(vec![b'a'; limit(parley_server::CONSOLE_BODY_LIMIT)])
        .send()
        .await
        .expect("preview");
    assert_eq!(resp.status().as_u16(), 413);
    let resp = app
        .http
        .post(format!("{}/import/preview?format=csv", app.url))
        .header("cookie", &cookie)
        .header("origin", app.url.as_str())
        .body("phone,city\n+4917000000201,Berlin\n")
        .send()
        .await
        .expect("preview");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn an_over_long_csv_row_is_rejected_with_its_line_and_the_rest_imported() {
    let app = spawn_app().await;
    let long = "l".repeat(parley_engine::audience::MAX_ROW_BYTES + 10);
    let csv =
        format!("phone,note\n+4917000000301,first\n+4917000000302,{long}\n+4917000000303,after\n");
    // Through the API...
    let done = crate::audience::import(&app, "format=csv", &csv).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["created"], 2, "{done}");
    assert_eq!(done["rejected"], 1, "{done}");
    let text = rejected_csv(&app, done["id"].as_str().expect("id")).await;
    let line = text.lines().nth(1).expect("a rejected row");
    assert!(line.starts_with("3,"), "{}", &text[..text.len().min(300)]);
    assert!(
        text.len() < 16 * 1024,
        "the rejected row is kept truncated: {}",
        text.len()
    );
    // ...and through the console's streamed upload.
    let cookie = app.console_cookie().await;
    let csv = csv.replace("+49170000003", "+49170000004");
    let resp = app
        .http
        .post(format!("{}/import/upload?format=csv", app.url))
        .header("cookie", &cookie)
        .header("origin", app.url.as_str())
        .body(csv)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status().as_u16(), 202);
    let v: Value = resp.json().await.expect("json");
    let done = wait_import(&app, v["job_id"].as_str().expect("job")).await;
    assert_eq!(done["created"], 2, "{done}");
    assert_eq!(done["rejected"], 1, "{done}");
}

/// Polls an import until it is no longer running.
async fn wait_import(app: &TestApp, id: &str) -> Value {
    for _ in 0..300 {
        let (status, v) = app
            .api_call(Method::GET, &format!("/api/v1/contacts/import/{id}"), None)
            .await;
        assert_eq!(status, 200, "{v}");
        if v["state"] != "running" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("import {id} never finished");
}

/// Every paginated list of the API (each `GET /api/v1/…` route with a `limit` parameter in the
/// OpenAPI document, those under a path parameter too, filled with a seeded parent's id)
/// given a hostile `?limit` or `?after`: a number that is no number or does not fit, zero, far
/// too many, a 4 KiB cursor, a cursor past any id. Each answer comes (no unbounded work), is
/// never a 5xx, and is either a page of at most 1,000 rows or a JSON error with a stable code
/// (axum's plain-text query rejections used to answer these). Each list under a path
/// parameter is then walked one row a page: every row once, by `next_cursor`, the same rows as
/// one large page.
#[tokio::test]
async fn every_list_bounds_a_hostile_limit_and_cursor_with_a_stable_code() {
    let app = crate::helpers::spawn_app_unthrottled().await;
    let doc = app.openapi().await;
    let mut lists = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let Some(get) = item.get("get") else { continue };
        let paged = get["parameters"].as_array().is_some_and(|ps| {
            ps.iter()
                .any(|p| p["name"] == "limit" && p["in"] == "query")
        });
        if paged && path.starts_with("/api/v1/") {
            lists.push(path.clone());
        }
    }
    assert!(lists.len() >= 8, "too few lists found: {lists:?}");
    let parents = Parents::seed(&app).await;
    let nested: Vec<String> = lists
        .iter()
        .filter(|p| p.contains('{'))
        .map(|p| parents.fill(p))
        .collect();
    assert!(
        nested.len() >= 3,
        "too few lists under a path parameter: {lists:?}"
    );
    let lists: Vec<String> = lists.iter().map(|p| parents.fill(p)).collect();
    let long = "z".repeat(4_096);
    let hostile = [
        "limit=abc".to_owned(),
        "limit=-1".to_owned(),
        "limit=99999999999999999999".to_owned(),
        "limit=4294967295".to_owned(),
        "limit=0".to_owned(),
        "limit=1000000".to_owned(),
        format!("after={long}"),
        "after=9223372036854775807".to_owned(),
        "after=zzzzzzzzzzzzzzzz&limit=200".to_owned(),
    ];
    let mut refusals = 0;
    for path in &lists {
        for q in &hostile {
            let resp = app
                .http
                .get(format!("{}{path}?{q}", app.url))
                .bearer_auth(&app.token)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}?{q:.40}: no answer: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.expect("body");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{path}?{q:.40}: {status} and not JSON: {text:.200}"));
            match status {
                200 => {
                    let rows = v["data"].as_array().map_or(0, Vec::len);
                    assert!(rows <= 1_000, "{path}?{q:.40}: {rows} rows");
                }
                400 | 422 => {
                    let code = v["error"]["code"].as_str().unwrap_or_default();
                    assert!(
                        !code.is_empty()
                            && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                        "{path}?{q:.40}: {status} without a stable code: {v}"
                    );
                    refusals += 1;
                }
                _ => panic!("{path}?{q:.40}: {status} {text:.300}"),
            }
        }
    }
    // Each list refuses at least the non-numbers.
    assert!(
        refusals >= 3 * lists.len(),
        "{refusals} refusals over {lists:?}"
    );
    for path in &nested {
        let (status, all) = app
            .api_call(Method::GET, &format!("{path}?limit=200"), None)
            .await;
        assert_eq!(status, 200, "{path}: {all}");
        let all = row_keys(&all);
        assert!(
            all.len() >= 3,
            "{path}: the seed left too few rows: {all:?}"
        );
        let mut walked = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..=all.len() {
            let url = match &after {
                None => format!("{path}?limit=1"),
                Some(c) => format!("{path}?limit=1&after={c}"),
            };
            let (status, page) = app.api_call(Method::GET, &url, None).await;
            assert_eq!(status, 200, "{url}: {page}");
            let rows = row_keys(&page);
            assert!(rows.len() <= 1, "{url}: {} rows", rows.len());
            walked.extend(rows);
            match page["next_cursor"].as_str() {
                Some(c) => after = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(walked, all, "{path}: one row a page, by next_cursor");
    }
}

/// Each row of a page by its id or wamid (the row itself when it has neither).
fn row_keys(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .or(r["wamid"].as_str())
                .map_or_else(|| r.to_string(), str::to_owned)
        })
        .collect()
}

/// Parents of the lists under a path parameter, each with at least three rows, settled.
struct Parents {
    /// A contact with three inbound messages (`%2B49…`).
    contact: String,
    /// An event endpoint with three deliveries (`ep_…`), disabled.
    event_endpoint: String,
}

impl Parents {
    async fn seed(app: &TestApp) -> Parents {
        let (phone, _) = app.contact(0).await;
        let contact = phone.replace('+', "%2B");
        let (status, v) = app
            .api_call(
                Method::POST,
                "/api/v1/event-endpoints",
                Some(&json!({"url": "https://example.com/bounded", "event_types": ["contact.updated"]})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        let event_endpoint = v["id"].as_str().expect("endpoint").to_owned();
        for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
            app.sandbox_post("/sandbox/inbound", &json!({"from": phone, "text": text}))
                .await;
            let (status, v) = app
                .api_call(
                    Method::PUT,
                    &format!("/api/v1/contacts/{contact}"),
                    Some(&json!({"tags": {"city": format!("City {i}")}})),
                )
                .await;
            assert!(status < 300, "{v}");
        }
        let deliveries = format!("/api/v1/event-endpoints/{event_endpoint}/deliveries?limit=200");
        let inbound = format!("/api/v1/contacts/{contact}/messages?limit=200");
        for _ in 0..400 {
            let (_, d) = app.api_call(Method::GET, &deliveries, None).await;
            let (_, m) = app.api_call(Method::GET, &inbound, None).await;
            if row_keys(&d).len() >= 3 && row_keys(&m).len() >= 3 {
                // Disabled, so that no new attempt moves a row while the lists are walked.
                let (status, v) = app
                    .api_call(
                        Method::PATCH,
                        &format!("/api/v1/event-endpoints/{event_endpoint}"),
                        Some(&json!({"enabled": false})),
                    )
                    .await;
                assert_eq!(status, 200, "{v}");
                return Parents {
                    contact,
                    event_endpoint,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the seed's three deliveries and inbound messages never all arrived");
    }

    /// `path` with each `{param}` filled; panics for a list this test does not know yet, so
    /// a new one cannot slip through untried.
    fn fill(&self, path: &str) -> String {
        match path {
            "/api/v1/conversations/{contact}/messages" | "/api/v1/contacts/{phone}/messages" => {
                path.replace("{contact}", &self.contact)
                    .replace("{phone}", &self.contact)
            }
            "/api/v1/event-endpoints/{id}/deliveries" => path.replace("{id}", &self.event_endpoint),
            p if !p.contains('{') => p.to_owned(),
            p => panic!(
                "{p}: a list under a path parameter this test does not know: seed a parent with three rows"
            ),
        }
    }
}
