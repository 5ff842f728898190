//! Audience through the API: contacts (partial tag updates, subscription), imports with good
//! and bad rows, the segment language (counts, errors with positions), personalization
//! previews, erasure and opt-out keywords.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

pub(crate) async fn import(app: &TestApp, query: &str, body: &str) -> Value {
    let resp = app
        .http
        .post(format!("{}/api/v1/contacts/import?{query}", app.url))
        .bearer_auth(&app.token)
        .body(body.to_owned())
        .send()
        .await
        .expect("import");
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.unwrap();
    let job = v["job_id"].as_str().expect("job id").to_owned();
    for _ in 0..300 {
        let (status, j) = app
            .api_call(Method::GET, &format!("/api/v1/contacts/import/{job}"), None)
            .await;
        assert_eq!(status, 200, "{j}");
        if j["state"] != "running" {
            return j;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("import {job} did not finish");
}

async fn count(app: &TestApp, filter: &str) -> u64 {
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/segments/preview",
            Some(&json!({"filter": filter, "sample": 3})),
        )
        .await;
    assert_eq!(status, 200, "{filter}: {v}");
    v["count"].as_u64().unwrap()
}

#[tokio::test]
async fn csv_import_takes_good_rows_and_lists_bad_ones_with_line_numbers() {
    let app = spawn_app().await;
    let csv = "Phone,first_name,visits,vip,signup,langs\n\
               +4917000000001,ana,3,yes,2025-01-31,de;en\n\
               not a number,bob,1,no,2025-01-01,\n\
               +4917000000002,\"Çağla, \"\"CJ\"\"\",x,no,2025-01-01,\n\
               \n\
               +4917000000003,zoë,7,no,2025-02-30,\n\
               +4917000000004,\"multi\nline\",12,true,2024-12-24,fr\n\
               +4917000000001,ana,4,yes,2025-01-31,de\n";
    let job = import(
        &app,
        "format=csv&map=Phone:phone&map=visits:visits:integer,vip:vip:boolean&map=signup:signup:date&map=langs:langs:list",
        csv,
    )
    .await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["rows_read"], 6, "{job}");
    assert_eq!(job["created"], 2, "{job}");
    assert_eq!(job["updated"], 1, "{job}");
    assert_eq!(job["rejected"], 3, "{job}");
    let id = job["id"].as_str().unwrap();
    let resp = app
        .http
        .get(format!("{}/api/v1/contacts/import/{id}/rejected", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "line,reason,row");
    assert!(lines[1].starts_with("3,\"bad phone number"), "{text}");
    assert!(
        lines[2].starts_with("4,bad value for tag `visits`"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("6,bad value for tag `signup`"),
        "{text}"
    );

    let (status, c) = app
        .api_call(Method::GET, "/api/v1/contacts/+4917000000001", None)
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["tags"]["visits"], 4, "the later row updates");
    assert_eq!(c["tags"]["vip"], true);
    assert_eq!(c["tags"]["langs"], json!(["de"]));
    assert_eq!(c["tags"]["signup"], "2025-01-31");
    let (_, c) = app
        .api_call(Method::GET, "/api/v1/contacts/+4917000000004", None)
        .await;
    assert_eq!(
        c["tags"]["first_name"], "multi\nline",
        "quoted newlines stay in the cell"
    );
    assert_eq!(count(&app, "visits >= 4 and vip = true").await, 2);
    assert_eq!(count(&app, "langs contains \"FR\"").await, 1);

    // NDJSON, and a job id that does not exist.
    let nd = "{\"phone\":\"+4917000000005\",\"name\":\"Eve\",\"tags\":{\"city\":\"Köln\",\"n\":2.5}}\n\
              {\"phone\":\"+4917000000006\",\"tags\":{\"city\":{\"nested\":1}}}\n\
              [1,2]\n";
    let job = import(&app, "format=ndjson", nd).await;
    assert_eq!(
        (job["created"].as_u64(), job["rejected"].as_u64()),
        (Some(1), Some(2)),
        "{job}"
    );
    assert_eq!(count(&app, "city = \"KÖLN\" and n > 2").await, 1);
    let (status, _) = app
        .api_call(Method::GET, "/api/v1/contacts/import/imp_0000", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn contacts_update_partially_and_filter_by_segments() {
    let app = spawn_app().await;
    let phone = "+4917000000010";
    let (status, c) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{phone}"),
            Some(&json!({"name": "Ana", "tags": {"office": "Berlin", "visits": 3, "tier": "pro"}, "subscription": "opted_in"})),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    let (status, c) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{phone}"),
            Some(&json!({"tags": {"tier": null, "visits": 4}})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["tags"], json!({"office": "Berlin", "visits": 4}));
    assert_eq!(c["name"], "Ana");
    assert_eq!(c["subscription"], "opted_in");
    let (status, e) = app
        .api_call(
            Method::PUT,
            "/api/v1/contacts/12345",
            Some(&json!({"tags": {}})),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("invalid_phone_number"))
    );
    let (status, e) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{phone}"),
            Some(&json!({"tags": {"x": {"a": 1}}})),
        )
        .await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("tags.x"))
    );

    assert_eq!(count(&app, "office = \"berlin\" and visits >= 3").await, 1);
    assert_eq!(
        count(&app, "tier != \"pro\"").await,
        0,
        "a missing tag is never unequal"
    );

    // Errors carry the position.
    let (status, e) = app
        .api_call(
            Method::POST,
            "/api/v1/segments/preview",
            Some(&json!({"filter": "office = \"Berlin\" and visits >>= 3"})),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], "invalid_segment");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at character 29"),
        "{e}"
    );
    let (status, e) = app
        .api_call(Method::GET, "/api/v1/contacts?filter=visits%20%3E", None)
        .await;
    assert_eq!(status, 400, "{e}");

    // Saved segments with live counts.
    let (status, s) = app
        .api_call(
            Method::POST,
            "/api/v1/segments",
            Some(&json!({"name": "Berliners", "filter": "office = \"Berlin\""})),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["count"], 1);
    let id = s["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .api_call(
            Method::POST,
            "/api/v1/segments",
            Some(&json!({"name": "Berliners", "filter": "all"})),
        )
        .await;
    assert_eq!(status, 409);
    app.api_call(
        Method::PUT,
        "/api/v1/contacts/+4917000000011",
        Some(&json!({"tags": {"office": "BERLIN"}})),
    )
    .await;
    let (_, s) = app
        .api_call(Method::GET, &format!("/api/v1/segments/{id}"), None)
        .await;
    assert_eq!(s["count"], 2, "the count is live");
    let (_, list) = app.api_call(Method::GET, "/api/v1/segments", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // Pages through the whole list (demo contacts included).
    let mut after = String::new();
    let mut total = 0;
    loop {
        let (status, page) = app
            .api_call(
                Method::GET,
                &format!(
                    "/api/v1/contacts?limit=7&after={}",
                    after.replace('+', "%2B")
                ),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        total += page["data"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => after = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(total, crate::helpers::CONTACTS + 2);
}

#[tokio::test]
async fn personalization_preview_follows_the_default_rules() {
    let app = spawn_app().await;
    let preview = |text: &str, contact: Value| {
        let body = json!({"text": text, "contact": contact});
        let app = &app;
        async move {
            let (status, v) = app
                .api_call(Method::POST, "/api/v1/personalize/preview", Some(&body))
                .await;
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let ana = json!({"phone": "+4917000000020", "tags": {"first_name": "ana maría", "city": "münchen", "signup": "2025-01-31", "price": 12.5}});
    let cases = [
        ("{{first_name|CapitalizeFirst}}", "Ana maría"),
        ("{{first_name|CapitalizeAllFirst}}", "Ana María"),
        ("{{city|UPPERCASE}}", "MÜNCHEN"),
        ("{{first_name|lowercase}}", "ana maría"),
        ("{{signup|date:%d.%m.%Y|}}", "31.01.2025"),
        ("{{missing|CapitalizeFirst|there}}", "there"),
        ("Hi{{missing||}}!", "Hi!"),
    ];
    for (text, expected) in cases {
        let v = preview(text, ana.clone()).await;
        assert_eq!(v["text"], expected, "{text}: {v}");
    }
    let v = preview("Hi {{last_name|CapitalizeFirst}}", ana.clone()).await;
    assert_eq!(v["skipped"]["code"], "missing_tag", "{v}");
    assert!(v.get("text").is_none());
    // One-word and Unicode names.
    let v = preview(
        "{{first_name|CapitalizeAllFirst}}",
        json!({"tags": {"first_name": "björk"}}),
    )
    .await;
    assert_eq!(v["text"], "Björk");
    let v = preview(
        "{{first_name|UPPERCASE}}",
        json!({"tags": {"first_name": "ßüleyman"}}),
    )
    .await;
    assert_eq!(v["text"], "SSÜLEYMAN");
    // A stored contact by phone.
    let (phone, first) = app.contact(0).await;
    let v = preview("Hi {{first_name|CapitalizeFirst}}", json!(phone)).await;
    let mut cap = first.chars();
    let expected = format!("Hi {}{}", cap.next().unwrap().to_uppercase(), cap.as_str());
    assert_eq!(v["text"], expected);
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/personalize/preview",
            Some(&json!({"text": "{{a|Nope}}", "contact": {"tags": {}}})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn erasure_removes_personal_data_and_keeps_counts() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(1).await;
    let id = app
        .send(&json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}}}))
        .await;
    let (_, before) = app
        .api_call(Method::GET, "/api/v1/messages?limit=200", None)
        .await;
    let n = before["data"].as_array().unwrap().len();
    let (status, c) = app
        .api_call(Method::GET, &format!("/api/v1/contacts/{phone}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(c["messages"].as_array().unwrap().len(), 1, "{c}");
    let (status, e) = app
        .api_call(Method::DELETE, &format!("/api/v1/contacts/{phone}"), None)
        .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["erased"], true);
    let (status, _) = app
        .api_call(Method::GET, &format!("/api/v1/contacts/{phone}"), None)
        .await;
    assert_eq!(status, 404);
    let (_, after) = app
        .api_call(Method::GET, "/api/v1/messages?limit=200", None)
        .await;
    assert_eq!(after["data"].as_array().unwrap().len(), n, "counts kept");
    let m = app.get_message(&id).await;
    assert_eq!(m["to"], "erased");
    assert!(!m.to_string().contains(&phone[1..]), "{m}");
    let (status, _) = app
        .api_call(Method::DELETE, &format!("/api/v1/contacts/{phone}"), None)
        .await;
    assert_eq!(status, 404, "nothing left to erase");
}

#[tokio::test]
async fn stop_keyword_opts_out_and_start_opts_back_in() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(2).await;
    let state = |app: &TestApp| {
        let path = format!("/api/v1/contacts/{phone}");
        let app = app.http.clone();
        let _ = app;
        path
    };
    let path = state(&app);
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": phone, "text": "  Stop "}),
    )
    .await;
    let mut c = Value::Null;
    for _ in 0..200 {
        c = app.api_call(Method::GET, &path, None).await.1;
        if c["subscription"] == "opted_out" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(c["subscription"], "opted_out", "{c}");
    assert_eq!(c["subscription_source"], "keyword");
    app.sandbox_post("/sandbox/inbound", &json!({"from": phone, "text": "START"}))
        .await;
    for _ in 0..200 {
        c = app.api_call(Method::GET, &path, None).await.1;
        if c["subscription"] == "opted_in" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(c["subscription"], "opted_in", "{c}");
    let history: Vec<&str> = c["subscription_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["opted_out", "opted_in"]);
}

// --- The console's audience pages in a real browser -------------------------------------------

pub(crate) async fn console_sign_in(app: &TestApp) -> crate::browser::Browser {
    let browser = crate::browser::Browser::start().await;
    browser.sign_in(app).await;
    browser.wait_text("WhatsApp platforms").await;
    browser
}

/// Polls until the element's text satisfies `ok`; returns the text.
pub(crate) async fn wait_for_text(
    browser: &crate::browser::Browser,
    css: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        if let Ok(el) = browser.client.find(fantoccini::Locator::Css(css)).await
            && let Ok(t) = el.text().await
        {
            if ok(&t) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("`{css}` never showed what was expected; last text `{last}`");
}

#[tokio::test]
async fn console_filters_contacts_with_a_live_count_that_matches_the_api() {
    use fantoccini::Locator;
    let app = spawn_app().await;
    for (i, (city, visits)) in [
        ("Berlin", 5),
        ("berlin", 3),
        ("Berlin", 1),
        ("Hamburg", 9),
        ("Berlin", 12),
    ]
    .iter()
    .enumerate()
    {
        let (status, v) = app
            .api_call(
                Method::PUT,
                &format!("/api/v1/contacts/+49170555000{i}"),
                Some(&json!({"name": format!("Filter {i}"), "tags": {"city": city, "visits": visits}})),
            )
            .await;
        assert!(status == 201 || status == 200, "{v}");
    }
    let filter = r#"city = "Berlin" and visits >= 3"#;
    let expected = count(&app, filter).await;
    // The demo seed has some of its own; ours add three.
    assert!((3..50).contains(&expected), "{expected}");

    let browser = console_sign_in(&app).await;
    let c = &browser.client;
    c.find(Locator::LinkText("Contacts"))
        .await
        .expect("nav")
        .click()
        .await
        .expect("click");
    browser.wait_css("#filter").await;
    // A filter with a mistake shows where it is, live.
    let input = c.find(Locator::Css("#filter")).await.expect("filter");
    input.send_keys("city = ").await.expect("type");
    let err = wait_for_text(&browser, "#filter-error", |t| t.contains("character")).await;
    assert!(err.contains("at character 6"), "{err}");
    input.clear().await.expect("clear");
    input.send_keys(filter).await.expect("type");
    wait_for_text(&browser, "#filter-count", |t| t == expected.to_string()).await;
    let err = c
        .find(Locator::Css("#filter-error"))
        .await
        .expect("error box");
    assert!(!err.is_displayed().await.expect("displayed"));
    // Applying it lists exactly those contacts; one opens with its tags.
    c.find(Locator::Css("#contacts-form button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    // The unfiltered page has a `#contacts` table too: wait for the filtered one.
    browser.wait_url("filter=").await;
    browser.wait_css("#contacts").await;
    let rows = c
        .find_all(Locator::Css("#contacts tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len() as u64, expected);
    browser.wait_text("Filter 4").await;
    c.find(Locator::LinkText("+491705550004"))
        .await
        .expect("link")
        .click()
        .await
        .expect("click");
    browser.wait_css("#tags").await;
    let tags = c
        .find(Locator::Css("#tags"))
        .await
        .expect("tags")
        .text()
        .await
        .expect("text");
    assert!(tags.contains("visits") && tags.contains("12"), "{tags}");
    browser.wait_text("Marketing subscription").await;

    // Segments: a live count and sample while typing, then saved with its count.
    c.find(Locator::LinkText("Segments"))
        .await
        .expect("nav")
        .click()
        .await
        .expect("click");
    browser.wait_css("#segment-form").await;
    c.find(Locator::Css("#segment-form input[name=name]"))
        .await
        .expect("name")
        .send_keys("Berlin regulars")
        .await
        .expect("type");
    c.find(Locator::Css("#filter"))
        .await
        .expect("filter")
        .send_keys(filter)
        .await
        .expect("type");
    wait_for_text(&browser, "#filter-count", |t| t == expected.to_string()).await;
    wait_for_text(&browser, "#filter-sample", |t| t.contains("+49")).await;
    c.find(Locator::Css("#segment-form button[type=submit]"))
        .await
        .expect("save")
        .click()
        .await
        .expect("click");
    browser.wait_text("Segment “Berlin regulars” saved.").await;
    let row = wait_for_text(&browser, "#segments", |t| t.contains("Berlin regulars")).await;
    assert!(
        row.contains(&format!("Berlin regulars {filter} {expected}")),
        "{row}"
    );

    // A cross-site count request is refused.
    let r = app
        .http
        .post(format!("{}/contacts/count", app.url))
        .header("origin", "https://evil.example")
        .json(&json!({"filter": "all"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn console_imports_a_csv_with_progress_and_a_rejected_row() {
    use fantoccini::Locator;
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("people.csv");
    std::fs::write(
        &path,
        "phone,first_name,city,visits\n\
         +4917066600001,ana,Berlin,3\n\
         +4917066600002,bo,Köln,x\n\
         +4917066600003,cy,Berlin,7\n",
    )
    .expect("write");

    let browser = console_sign_in(&app).await;
    let c = &browser.client;
    c.find(Locator::LinkText("Import"))
        .await
        .expect("nav")
        .click()
        .await
        .expect("click");
    browser.wait_css("#import-file").await;
    c.find(Locator::Css("#import-file"))
        .await
        .expect("file")
        .send_keys(&path.display().to_string())
        .await
        .expect("choose file");
    // The header's columns, mapped by guess (phone → the phone field, visits → integer), and a
    // preview that already shows the bad row.
    browser
        .wait_css("#import-columns tr[data-column=visits]")
        .await;
    let visits_type = c
        .find(Locator::Css(
            "#import-columns tr[data-column=visits] [data-role=type]",
        ))
        .await
        .expect("type");
    assert_eq!(
        visits_type.prop("value").await.expect("value").as_deref(),
        Some("integer")
    );
    let preview = wait_for_text(&browser, "#import-preview tbody", |t| {
        t.contains("is not an integer")
    })
    .await;
    assert!(preview.contains("+4917066600001"), "{preview}");
    c.find(Locator::Css("#import-start"))
        .await
        .expect("start")
        .click()
        .await
        .expect("click");
    wait_for_text(&browser, "#import-state", |t| t == "done").await;
    for (id, want) in [
        ("#import-read", "3"),
        ("#import-created", "2"),
        ("#import-rejected", "1"),
    ] {
        let got = c
            .find(Locator::Css(id))
            .await
            .expect("count")
            .text()
            .await
            .expect("text");
        assert_eq!(got, want, "{id}");
    }
    let link = c
        .find(Locator::Css("#import-rejected-link"))
        .await
        .expect("link")
        .attr("href")
        .await
        .expect("href")
        .expect("an href");
    assert!(link.ends_with("/rejected.csv"), "{link}");
    // The imported contact has its typed tag.
    let (status, v) = app
        .api_call(Method::GET, "/api/v1/contacts/+4917066600003", None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["tags"]["visits"], 7, "{v}");
    assert_eq!(v["tags"]["city"], "Berlin", "{v}");
}

/// `POST /api/v1/contacts/import/{job}/resume` with `body`: (status, JSON).
async fn resume(app: &TestApp, job: &str, body: &str) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}/api/v1/contacts/import/{job}/resume", app.url))
        .bearer_auth(&app.token)
        .body(body.to_owned())
        .send()
        .await
        .expect("resume");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_upload_cut_off_is_interrupted_and_resumes_with_the_same_file_importing_each_row_once() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let rows = 2_500;
    let mut csv = String::from("phone,batch\n");
    for i in 0..rows {
        csv.push_str(&format!("+49152{:08},r1\n", 61_000_000 + i));
    }
    // The client goes away after 60 % of the file (raw HTTP: the length of the whole file,
    // then the connection closes).
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/contacts/import?map=batch:batch HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
        app.token,
        csv.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    socket
        .write_all(&csv.as_bytes()[..csv.len() * 6 / 10])
        .await
        .expect("part of the body");
    socket.flush().await.expect("flush");
    drop(socket);

    // The client never got the job id: the list has it, interrupted, with the whole rows
    // before the cut committed.
    let mut job = Value::Null;
    for _ in 0..300 {
        let resp = app
            .http
            .get(format!("{}/api/v1/contacts/import?limit=5", app.url))
            .bearer_auth(&app.token)
            .send()
            .await
            .expect("list");
        let status = resp.status();
        let headers = format!("{:?}", resp.headers());
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{headers} {text}");
        let list: Value = serde_json::from_str(&text).expect("json");
        job = list["data"][0].clone();
        if job["state"] != "running" && !job.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(job["state"], "interrupted", "{job}");
    let id = job["id"].as_str().expect("id").to_owned();
    let committed = job["rows_read"].as_u64().expect("rows read");
    assert!((1_000..rows).contains(&committed), "{job}");
    assert_eq!(job["created"], committed, "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("broke off") && e.contains("Resume")),
        "{job}"
    );
    assert_eq!(count(&app, "batch = \"r1\"").await, committed);

    // Another file is refused and changes nothing.
    let other = csv.replacen("+4915261000000", "+4915269999999", 1);
    let (status, body) = resume(&app, &id, &other).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "import_file_differs", "{body}");
    let (_, still) = app
        .api_call(Method::GET, &format!("/api/v1/contacts/import/{id}"), None)
        .await;
    assert_eq!(still["state"], "interrupted", "{still}");
    assert_eq!(still["rows_read"], committed, "{still}");

    // The same file: the committed rows are read, not written again; the rest is imported.
    let (status, body) = resume(&app, &id, &csv).await;
    assert_eq!(status, 202, "{body}");
    let (_, done) = app
        .api_call(Method::GET, &format!("/api/v1/contacts/import/{id}"), None)
        .await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["rows_read"], rows, "{done}");
    assert_eq!(done["created"], rows, "{done}");
    assert_eq!(done["updated"], 0, "no row imported twice: {done}");
    assert_eq!(count(&app, "batch = \"r1\"").await, rows);

    let (status, body) = resume(&app, &id, &csv).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "import_not_resumable", "{body}");

    // The console's Resume button posts the chosen file to its own route, same answers.
    let cookie = app.console_cookie().await;
    let resp = app
        .http
        .post(format!("{}/import/{id}/resume", app.url))
        .header("cookie", &cookie)
        .header("origin", app.url.as_str())
        .header("content-type", "text/csv")
        .body(csv.clone())
        .send()
        .await
        .expect("console resume");
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "import_not_resumable", "{body}");
    let (status, page) = app.console_get(&cookie, "/import").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("id=\"import-resume\""),
        "the page has the Resume button"
    );
    let (status, body) = resume(&app, "imp_00000000000000000000000000000000", &csv).await;
    assert_eq!(status, 404, "{body}");
}

/// `GET /api/v1/segments` is paginated like every list (it used to answer every segment of
/// the application at once): by name, `?limit` 1–200, `next_cursor` the last segment's id;
/// walked one a page it gives every segment once, in name order; a cursor naming no segment
/// of the application is 400 `invalid_cursor`.
#[tokio::test]
async fn segments_are_listed_a_page_at_a_time_by_name() {
    let app = spawn_app().await;
    let names = ["Delta", "alpha", "Charlie", "bravo", "Echo"];
    for name in names {
        let (status, s) = app
            .api_call(
                Method::POST,
                "/api/v1/segments",
                Some(&json!({"name": name, "filter": "all"})),
            )
            .await;
        assert_eq!(status, 201, "{s}");
    }
    let (status, all) = app
        .api_call(Method::GET, "/api/v1/segments?limit=200", None)
        .await;
    assert_eq!(status, 200, "{all}");
    let all_names: Vec<&str> = all["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(all_names.len(), names.len(), "{all}");
    assert!(all["next_cursor"].is_null(), "{all}");
    let mut walked = Vec::new();
    let mut url = "/api/v1/segments?limit=2".to_owned();
    for _ in 0..names.len() {
        let (status, page) = app.api_call(Method::GET, &url, None).await;
        assert_eq!(status, 200, "{url}: {page}");
        let rows = page["data"].as_array().expect("data");
        assert!(rows.len() <= 2, "{page}");
        for s in rows {
            walked.push(s["name"].as_str().expect("name").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(
                    Some(c),
                    rows.last().and_then(|s| s["id"].as_str()),
                    "the cursor is the last segment's id"
                );
                url = format!("/api/v1/segments?limit=2&after={c}");
            }
            None => break,
        }
    }
    assert_eq!(walked, all_names, "every segment once, in the list's order");

    // A well-formed id that names no segment of this application.
    let unknown = format!("after={}", parley_domain::SegmentId::new());
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=201", "invalid_limit"),
        ("after=nonsense", "invalid_cursor"),
        (unknown.as_str(), "invalid_cursor"),
    ] {
        let (status, e) = app
            .api_call(Method::GET, &format!("/api/v1/segments?{query}"), None)
            .await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (400, Some(code)),
            "{query}: {e}"
        );
    }
}

/// A saved segment is deleted by id: 204, then it is gone from the list and `GET`; deleting it
/// again, or an id that is not a segment's, is 404 `segment_not_found`; a token without the
/// `manage` scope cannot; a campaign that chose the segment keeps its copy of the filter.
#[tokio::test]
async fn segments_are_deleted_by_id() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for name in ["Keep", "Drop"] {
        let (status, s) = app
            .api_call(
                Method::POST,
                "/api/v1/segments",
                Some(&json!({"name": name, "filter": "all"})),
            )
            .await;
        assert_eq!(status, 201, "{s}");
        ids.push(s["id"].as_str().expect("id").to_owned());
    }
    let (keep, drop) = (&ids[0], &ids[1]);

    // A read-only token is refused, and nothing is deleted.
    let (status, t) = app
        .api_call(
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({"label": "reader", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let read_only = t["token_secret"].as_str().expect("secret").to_owned();
    let r = app
        .http
        .delete(format!("{}/api/v1/segments/{drop}", app.url))
        .bearer_auth(&read_only)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 403);

    let (status, body) = app
        .api_call(Method::DELETE, &format!("/api/v1/segments/{drop}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = app
        .api_call(Method::GET, &format!("/api/v1/segments/{drop}"), None)
        .await;
    assert_eq!(status, 404, "{body}");
    let (_, list) = app.api_call(Method::GET, "/api/v1/segments", None).await;
    let listed: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, [keep.as_str()], "{list}");
    for id in [
        drop.as_str(),
        "seg_not-an-id",
        "cmp_00000000000000000000000000000000",
    ] {
        let (status, body) = app
            .api_call(Method::DELETE, &format!("/api/v1/segments/{id}"), None)
            .await;
        assert_eq!(status, 404, "{id}: {body}");
        assert_eq!(body["error"]["code"], "segment_not_found", "{body}");
    }
    let (status, body) = app
        .api_call(Method::GET, &format!("/api/v1/segments/{keep}"), None)
        .await;
    assert_eq!(status, 200, "the other segment stays: {body}");
}

/// An application keeps at most `MAX_SEGMENTS` segments: one more is 409
/// `segment_limit_reached` and nothing is saved, even in a burst of concurrent creates (each
/// counts and inserts in one transaction; before, N concurrent creates could pass the cap by
/// up to N); once one is deleted, a new one is saved.
#[tokio::test]
async fn an_application_keeps_a_bounded_number_of_segments() {
    let app = spawn_app().await;
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let max = parley_engine::audience::MAX_SEGMENTS;
    let room = 3;
    let first = seed_segments(&app, max - room).await.swap_remove(0);
    let answers = futures::future::join_all((0..room + 9).map(|i| {
        let body = json!({"name": format!("burst {i}"), "filter": "all"});
        let app = &app;
        async move {
            app.api_call(Method::POST, "/api/v1/segments", Some(&body))
                .await
        }
    }))
    .await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created as u64, room, "{answers:?}");
    for (status, v) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409, "{v}");
        assert_eq!(v["error"]["code"], "segment_limit_reached", "{v}");
    }
    let new = json!({"name": "one too many", "filter": "all"});
    let (status, body) = app
        .api_call(Method::POST, "/api/v1/segments", Some(&new))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "segment_limit_reached", "{body}");
    assert_eq!(
        app.store.count_segments(&application).await.expect("count"),
        max
    );
    let (status, body) = app
        .api_call(Method::DELETE, &format!("/api/v1/segments/{first}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = app
        .api_call(Method::POST, "/api/v1/segments", Some(&new))
        .await;
    assert_eq!(status, 201, "{body}");
}

/// The console's segment list pages (20 a page, each with its count now, by name; it used to
/// count every saved segment on every visit) and deletes a segment from its row; another
/// application's segment is not found.
#[tokio::test]
async fn the_console_pages_segments_and_deletes_one() {
    let app = spawn_app().await;
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    seed_segments(&app, 45).await;
    let cookie = app.console_cookie().await;
    let get = |path: String| {
        let (http, cookie, url) = (app.http.clone(), cookie.clone(), app.url.clone());
        async move {
            let r = http
                .get(format!("{url}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .expect("page");
            (r.status().as_u16(), r.text().await.expect("html"))
        }
    };
    let rows = |html: &str| -> Vec<String> {
        html.split("data-segment=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap_or_default().to_owned())
            .collect()
    };
    let next = |html: &str| -> Option<String> {
        let at = html.find("id=\"segments-next\"")?;
        let start = html[..at].rfind("href=\"")? + "href=\"".len();
        Some(html[start..].split('"').next()?.replace("&#38;", "&"))
    };
    let mut seen = Vec::new();
    let mut path = "/segments".to_owned();
    let mut pages = 0;
    loop {
        let (status, html) = get(path.clone()).await;
        assert_eq!(status, 200, "{path}");
        let ids = rows(&html);
        assert!(ids.len() <= 20, "{path}: {} rows", ids.len());
        assert_eq!(
            html.matches("data-role=\"segment-count\"").count(),
            ids.len(),
            "a count per row shown"
        );
        seen.extend(ids);
        pages += 1;
        match next(&html) {
            Some(n) => path = n,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 45, "{seen:?}");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 45, "no segment twice");

    // Deleted from its row: the list says so and no longer shows it.
    let post = |path: String| {
        let (cookie, url) = (cookie.clone(), app.url.clone());
        async move {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client")
                .post(format!("{url}{path}"))
                .header("cookie", cookie)
                .header("origin", url.as_str())
                .send()
                .await
                .expect("post")
        }
    };
    let victim = seen[0].clone();
    let r = post(format!("/segments/{victim}/delete")).await;
    assert_eq!(r.status().as_u16(), 303);
    let to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(to.starts_with("/segments?deleted="), "{to}");
    let (_, html) = get(to).await;
    assert!(html.contains("deleted."), "{html}");
    assert!(!rows(&html).contains(&victim));
    assert!(
        app.engine
            .segment_by_id(
                &application,
                &parley_domain::SegmentId::parse(&victim).expect("id")
            )
            .await
            .is_err()
    );

    // Again, or another application's: not found, nothing deleted.
    let other = parley_domain::SegmentId::new();
    for id in [victim.as_str(), other.as_str()] {
        let r = post(format!("/segments/{id}/delete")).await;
        assert_eq!(r.status().as_u16(), 404, "{id}");
    }
    assert_eq!(app.store.count_segments(&application).await.expect("n"), 44);
}

/// `n` segments of the first application (`seg 0000`, … matching every contact), saved
/// straight in the store; their ids in name order.
async fn seed_segments(app: &TestApp, n: u64) -> Vec<parley_domain::SegmentId> {
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let mut ids = Vec::new();
    for i in 0..n {
        let s = parley_store::audience::SegmentRecord {
            id: parley_domain::SegmentId::new(),
            application_id: application.clone(),
            name: format!("seg {i:04}"),
            filter: "all".into(),
            created_at: 0,
            updated_at: 0,
        };
        assert!(
            app.store
                .create_segment(&s, u64::MAX)
                .await
                .expect("segment")
        );
        ids.push(s.id);
    }
    ids
}

/// A contact holds at most `MAX_CONTACT_TAGS` tags: each PUT merges its names into the stored
/// ones, so a client adding new names PUT after PUT grew one contact without end (every later
/// write, list page and campaign plan reading all of it). A PUT that would pass the cap is
/// 422 `too_many_tags` and changes nothing; new values and removals still go.
#[tokio::test]
async fn a_contact_holds_a_bounded_number_of_tags() {
    let app = spawn_app().await;
    let max = parley_store::audience::MAX_CONTACT_TAGS;
    let path = "/api/v1/contacts/+4917000000077";
    let tags = |from: usize, n: usize| -> Value {
        Value::Object(
            (from..from + n)
                .map(|i| (format!("t{i:04}"), json!(i)))
                .collect(),
        )
    };
    // Over the cap in one write, and a contact filled in four.
    let (status, e) = app
        .api_call(Method::PUT, path, Some(&json!({"tags": tags(0, max + 1)})))
        .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "too_many_tags", "{e}");
    assert_eq!(e["error"]["field"], "tags", "{e}");
    for k in 0..4 {
        let (status, c) = app
            .api_call(
                Method::PUT,
                path,
                Some(&json!({"tags": tags(k * max / 4, max / 4)})),
            )
            .await;
        assert!(status == 200 || status == 201, "{status}: {c}");
    }
    let (status, e) = app
        .api_call(
            Method::PUT,
            path,
            Some(&json!({"name": "Mallory", "tags": {"one_more": 1}})),
        )
        .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "too_many_tags", "{e}");
    let (_, c) = app.api_call(Method::GET, path, None).await;
    assert_eq!(c["tags"].as_object().expect("tags").len(), max, "{c}");
    assert_ne!(c["name"], "Mallory");
    // Removing one makes room for another.
    let (status, c) = app
        .api_call(
            Method::PUT,
            path,
            Some(&json!({"tags": {"t0000": null, "one_more": 1}})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["tags"]["one_more"], 1, "{c}");
}

/// `GET /api/v1/contacts?search=` finds contacts by part of the number or the name; it runs
/// bounded like a filter (a search matching nothing reads every contact; it ran outside the
/// filters' time budget), and a search over 100 characters is 400 `invalid_search`.
#[tokio::test]
async fn contacts_are_searched_by_number_or_name_within_bounds() {
    let app = spawn_app().await;
    for (phone, name) in [
        ("+4917000000501", "Ana Lima"),
        ("+4917000000502", "Bruno Costa"),
        ("+4917000000603", "Carla Lima"),
    ] {
        let (status, v) = app
            .api_call(
                Method::PUT,
                &format!("/api/v1/contacts/{phone}"),
                Some(&json!({"name": name})),
            )
            .await;
        assert!(status == 200 || status == 201, "{v}");
    }
    let found = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|c| c["phone"].as_str().expect("phone").to_owned())
            .collect()
    };
    let (status, v) = app
        .api_call(Method::GET, "/api/v1/contacts?search=lima", None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(found(&v), ["+4917000000501", "+4917000000603"], "{v}");
    let (status, v) = app
        .api_call(Method::GET, "/api/v1/contacts?search=70000005", None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(found(&v), ["+4917000000501", "+4917000000502"], "{v}");
    let (status, v) = app
        .api_call(
            Method::GET,
            &format!("/api/v1/contacts?search={}", "x".repeat(101)),
            None,
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_search", "{v}");
    assert_eq!(v["error"]["field"], "search", "{v}");
}
