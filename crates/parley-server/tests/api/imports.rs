//! Imports as businesses export them: CSV files saved by spreadsheets in other locales
//! (Windows-1251 with `;`, Excel's "Unicode text": UTF-16 LE with tabs, UTF-8 with a byte order
//! mark), `.xlsx` workbooks (a phone stored as a number, dates; broken and bombed ones refused
//! with their codes), local phone spellings with a default country, the console preview saying
//! what it detected, and resumes of decoded files.

use std::io::{Read, Write};

use parley_engine::import_file::{SampleCell, sample_xlsx};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

/// Posts `body` to `POST /api/v1/contacts/import` with the query `pairs`: (status, JSON).
async fn post_import(app: &TestApp, pairs: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}/api/v1/contacts/import", app.url))
        .query(pairs)
        .bearer_auth(&app.token)
        .body(body)
        .send()
        .await
        .expect("import");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Imports `body` and answers the finished job.
async fn import(app: &TestApp, pairs: &[(&str, &str)], body: Vec<u8>) -> Value {
    let (status, v) = post_import(app, pairs, body).await;
    assert_eq!(status, 202, "{v}");
    let job = v["job_id"].as_str().expect("job id").to_owned();
    let (status, j) = app
        .api_call(Method::GET, &format!("/api/v1/contacts/import/{job}"), None)
        .await;
    assert_eq!(status, 200, "{j}");
    // The answer comes once the rows are committed.
    assert_ne!(j["state"], "running", "{j}");
    j
}

async fn contact(app: &TestApp, phone: &str) -> Value {
    let (status, v) = app
        .api_call(Method::GET, &format!("/api/v1/contacts/{phone}"), None)
        .await;
    assert_eq!(status, 200, "{phone}: {v}");
    v
}

/// Windows-1251 by hand (ASCII and Cyrillic letters are all the tests write), as a Russian
/// Excel saves "CSV (разделители - запятые)".
fn cp1251(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            c if c.is_ascii() => c as u8,
            'А'..='я' => (c as u32 - 'А' as u32 + 0xC0) as u8,
            'Ё' => 0xA8,
            'ё' => 0xB8,
            c => panic!("{c} is not written in these tests"),
        })
        .collect()
}

fn utf16le_with_bom(text: &str) -> Vec<u8> {
    [0xFEFFu16]
        .into_iter()
        .chain(text.encode_utf16())
        .flat_map(u16::to_le_bytes)
        .collect()
}

#[tokio::test]
async fn a_semicolon_windows_1251_file_imports_with_cyrillic_names_and_russian_local_phones() {
    let app = spawn_app().await;
    let file = cp1251(
        "Телефон;Имя;Город\r\n\
         8 (916) 123-45-67;Иван Петров;Москва\r\n\
         +7 916 123-45-68;\"Пётр; мл.\";Тверь\r\n\
         8 (916) 12;Ошибка;Тула\r\n",
    );
    let job = import(
        &app,
        &[
            ("map", "Телефон:phone,Имя:name,Город:город"),
            ("country", "RU"),
        ],
        file,
    )
    .await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (&job["encoding"], &job["separator"], &job["country"]),
        (&"windows-1251".into(), &"semicolon".into(), &"RU".into()),
        "{job}"
    );
    assert_eq!(
        (job["created"].as_u64(), job["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{job}"
    );
    let ivan = contact(&app, "+79161234567").await;
    assert_eq!(ivan["name"], "Иван Петров", "{ivan}");
    assert_eq!(ivan["tags"]["город"], "Москва", "{ivan}");
    let petr = contact(&app, "+79161234568").await;
    assert_eq!(petr["name"], "Пётр; мл.", "{petr}");
    // The rejected row names the default country and keeps its Cyrillic text.
    let id = job["id"].as_str().expect("id");
    let rejected = app
        .http
        .get(format!("{}/api/v1/contacts/import/{id}/rejected", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("rejected")
        .text()
        .await
        .expect("text");
    assert!(
        rejected.contains("4,") && rejected.contains("in RU"),
        "{rejected}"
    );
    assert!(rejected.contains("Ошибка"), "{rejected}");
}

#[tokio::test]
async fn excels_unicode_text_utf16_le_with_tabs_imports_with_german_local_phones() {
    let app = spawn_app().await;
    let file = utf16le_with_bom(
        "Telefon\tName\tStadt\r\n\
         0151 23456789\tJürgen Müller\tKöln\r\n\
         +4915123456790\tZoë\tBerlin\r\n",
    );
    let job = import(
        &app,
        &[("map", "Telefon:phone,Name:name"), ("country", "de")],
        file,
    )
    .await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["encoding"], "utf-16le", "{job}");
    assert_eq!(job["separator"], "tab", "{job}");
    assert_eq!(job["created"], 2, "{job}");
    let j = contact(&app, "+4915123456789").await;
    assert_eq!(j["name"], "Jürgen Müller", "{j}");
    assert_eq!(j["tags"]["Stadt"], "Köln", "{j}");
    assert_eq!(contact(&app, "+4915123456790").await["name"], "Zoë");
}

#[tokio::test]
async fn a_utf8_file_with_a_byte_order_mark_imports_with_us_local_phones() {
    let app = spawn_app().await;
    let mut file = b"\xef\xbb\xbf".to_vec();
    file.extend_from_slice(
        "phone,name,city\n(415) 555-0132,Ana,San José\n415.555.0133,Bo,Oakland\n".as_bytes(),
    );
    let job = import(&app, &[("country", "US")], file).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (&job["encoding"], &job["separator"]),
        (&"utf-8".into(), &"comma".into())
    );
    assert_eq!(job["created"], 2, "{job}");
    // The byte order mark is not part of the first column's name: `phone` is the phone.
    let ana = contact(&app, "+14155550132").await;
    assert_eq!(ana["tags"]["city"], "San José", "{ana}");
    contact(&app, "+14155550133").await;
    // Without the default country the same file is refused row by row, saying how to fix it.
    let mut again = b"\xef\xbb\xbf".to_vec();
    again.extend_from_slice(b"phone,name\n(415) 555-0134,Cy\n");
    let job = import(&app, &[], again).await;
    assert_eq!(
        (job["created"].as_u64(), job["rejected"].as_u64()),
        (Some(0), Some(1))
    );
}

#[tokio::test]
async fn a_given_encoding_separator_or_country_that_does_not_exist_is_refused() {
    let app = spawn_app().await;
    for (pair, code) in [
        (("encoding", "koi8-r"), "invalid_encoding"),
        (("separator", "|"), "invalid_separator"),
        (("country", "XX"), "invalid_country"),
        (("format", "xls"), "invalid_format"),
    ] {
        let (status, v) = post_import(&app, &[pair], b"phone\n".to_vec()).await;
        assert_eq!(status, 400, "{pair:?}: {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["field"], pair.0, "{v}");
    }
}

fn text(s: &str) -> SampleCell {
    SampleCell::Text(s.to_owned())
}

#[tokio::test]
async fn an_xlsx_file_imports_its_first_sheet_with_a_phone_stored_as_a_number() {
    let app = spawn_app().await;
    let book = sample_xlsx(
        "Kunden",
        &[
            vec![text("Telefon"), text("Name"), text("seit"), text("Besuche")],
            // Excel keeps a number typed without `+` as a number: 4.91512E+12 on screen.
            vec![
                SampleCell::Number(4915123456791.0),
                text("Jürgen"),
                SampleCell::Date(46000.0),
                SampleCell::Number(3.0),
            ],
            vec![
                text("0151 23456792"),
                text("Anna"),
                SampleCell::Empty,
                text("x"),
            ],
            vec![],
            vec![text("kein Telefon"), text("Bo")],
        ],
    );
    let pairs = [
        (
            "map",
            "Telefon:phone,Name:name,seit:seit:date,Besuche:besuche:integer",
        ),
        ("country", "DE"),
    ];
    // Uploaded as CSV (the default format): recognised as a workbook by its content.
    let job = import(&app, &pairs, book.clone()).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (&job["format"], &job["sheet"]),
        (&"xlsx".into(), &"Kunden".into()),
        "{job}"
    );
    assert_eq!(
        (job["created"].as_u64(), job["rejected"].as_u64()),
        (Some(1), Some(2)),
        "{job}"
    );
    let j = contact(&app, "+4915123456791").await;
    assert_eq!(j["name"], "Jürgen", "{j}");
    assert_eq!(j["tags"]["seit"], "2025-12-09", "{j}");
    assert_eq!(j["tags"]["besuche"], 3, "{j}");
    // Rejected rows carry the sheet's row numbers (row 4 is empty).
    let id = job["id"].as_str().expect("id");
    let rejected = app
        .http
        .get(format!("{}/api/v1/contacts/import/{id}/rejected", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("rejected")
        .text()
        .await
        .expect("text");
    assert!(
        rejected.contains("\n3,") && rejected.contains("\n5,"),
        "{rejected}"
    );
    // Row 3 is rejected for its `besuche`, so its (good) phone is not imported.
    let (status, _) = app
        .api_call(Method::GET, "/api/v1/contacts/+4915123456792", None)
        .await;
    assert_eq!(status, 404);
    // Said to be xlsx, the same file reads the same (nothing new).
    let mut pairs = pairs.to_vec();
    pairs.push(("format", "xlsx"));
    let job = import(&app, &pairs, book).await;
    let again = job.clone();
    // A sheet of many rows goes in chunks of 1,000, each row once.
    let mut rows = vec![vec![text("phone"), text("batch")]];
    for i in 0..2_500u64 {
        rows.push(vec![
            SampleCell::Number((4_915_240_000_000 + i) as f64),
            text("sheet"),
        ]);
    }
    let many = import(&app, &[("country", "DE")], sample_xlsx("Viele", &rows)).await;
    assert_eq!(
        (
            many["state"].as_str(),
            many["created"].as_u64(),
            many["rejected"].as_u64()
        ),
        (Some("done"), Some(2_500), Some(0)),
        "{many}"
    );
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/segments/preview",
            Some(&serde_json::json!({"filter": "batch = \"sheet\""})),
        )
        .await;
    assert_eq!((status, &v["count"]), (200, &2_500.into()), "{v}");
    let job = again;
    assert_eq!(
        (job["created"].as_u64(), job["updated"].as_u64()),
        (Some(0), Some(1)),
        "{job}"
    );
}

/// A zip archive with one part of `size` spaces: a few hundred KiB that unpack past the limit.
fn zip_bomb(size: u64) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(size > u32::MAX as u64);
    zip.start_file("xl/sharedStrings.xml", options)
        .expect("part");
    std::io::copy(&mut std::io::repeat(b' ').take(size), &mut zip).expect("spaces");
    zip.flush().expect("flush");
    zip.finish().expect("zip").into_inner()
}

#[tokio::test]
async fn a_truncated_workbook_and_a_zip_bomb_are_refused_with_stable_codes() {
    let app = spawn_app().await;
    let book = sample_xlsx("S", &[vec![text("phone")], vec![text("+4915123456793")]]);
    let truncated = book[..book.len() * 2 / 3].to_vec();
    let (status, v) = post_import(&app, &[("format", "xlsx")], truncated.clone()).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "xlsx_unreadable", "{v}");
    // The import is listed as failed, with the same message.
    let (_, list) = app
        .api_call(Method::GET, "/api/v1/contacts/import?limit=1", None)
        .await;
    assert_eq!(list["data"][0]["state"], "failed", "{list}");
    assert_eq!(list["data"][0]["error"], v["error"]["message"], "{list}");
    // Not a zip at all, but said to be one.
    let (status, v) = post_import(&app, &[("format", "xlsx")], b"phone\n+49\n".to_vec()).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (422, &"xlsx_unreadable".into()),
        "{v}"
    );

    let limit = parley_engine::import_file::MAX_XLSX_UNPACKED;
    let bomb = zip_bomb(limit + 1024 * 1024);
    // About a hundredth of what it unpacks to (deflate at its fastest).
    assert!(bomb.len() < 4 * 1024 * 1024, "{} bytes", bomb.len());
    let (status, v) = post_import(&app, &[], bomb.clone()).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "xlsx_too_large", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unpacks")),
        "{v}"
    );
    // An upload over the workbook limit stops at the limit.
    let mut big = book.clone();
    big.resize(parley_engine::import_file::MAX_XLSX_BYTES + 1, 0);
    let (status, v) = post_import(&app, &[("format", "xlsx")], big).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (422, &"xlsx_too_large".into()),
        "{v}"
    );

    // The console's preview answers the same codes.
    let cookie = app.console_cookie().await;
    for (body, code) in [(truncated, "xlsx_unreadable"), (bomb, "xlsx_too_large")] {
        let resp = app
            .http
            .post(format!(
                "{}/import/preview/workbook?format=xlsx&complete=1",
                app.url
            ))
            .header("cookie", &cookie)
            .header("origin", app.url.as_str())
            .body(body)
            .send()
            .await
            .expect("preview");
        assert_eq!(resp.status(), 422);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
}

/// The console's preview of `body` with the query `pairs`.
async fn console_preview(
    app: &TestApp,
    cookie: &str,
    pairs: &[(&str, &str)],
    body: Vec<u8>,
) -> Value {
    let resp = app
        .http
        .post(format!("{}/import/preview", app.url))
        .query(pairs)
        .query(&[("complete", "1")])
        .header("cookie", cookie)
        .header("origin", app.url.as_str())
        .body(body)
        .send()
        .await
        .expect("preview");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

#[tokio::test]
async fn the_preview_says_what_it_detected_and_an_override_changes_the_reading() {
    let app = spawn_app().await;
    let cookie = app.console_cookie().await;
    let file = cp1251("Телефон;Имя\r\n+79161234569;Иван\r\n");
    let auto = [("map", "Телефон:phone:string"), ("map", "Имя:name:string")];
    let v = console_preview(&app, &cookie, &auto, file.clone()).await;
    assert_eq!(v["read_as"]["encoding"], "windows-1251", "{v}");
    assert_eq!(v["read_as"]["separator"], "semicolon", "{v}");
    assert_eq!(v["columns"], serde_json::json!(["Телефон", "Имя"]), "{v}");
    assert_eq!(v["rows"][0]["contact"]["name"], "Иван", "{v}");
    // Told it is comma-separated: one column, and the row says which separator it seems to be.
    let mut commas = auto.to_vec();
    commas.push(("separator", "comma"));
    let v = console_preview(&app, &cookie, &commas, file.clone()).await;
    assert_eq!(v["read_as"]["separator"], "comma", "{v}");
    assert_eq!(v["columns"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(
        v["rows"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("semicolon")),
        "{v}"
    );
    // Told it is Windows-1252: Latin letters instead of Cyrillic, so no column maps to phone.
    let mut latin = auto.to_vec();
    latin.push(("encoding", "windows-1252"));
    let v = console_preview(&app, &cookie, &latin, file).await;
    assert_eq!(v["read_as"]["encoding"], "windows-1252", "{v}");
    assert_ne!(v["columns"][0], "Телефон", "{v}");
    assert!(v["rows"][0]["error"].is_string(), "{v}");
    // A workbook previews whole, naming its sheet; its number cell is read with the default
    // country (digits that lost their `+`).
    let book = sample_xlsx(
        "Kunden",
        &[
            vec![text("phone")],
            vec![SampleCell::Number(4915123456794.0)],
        ],
    );
    let resp = app
        .http
        .post(format!(
            "{}/import/preview/workbook?format=xlsx&complete=1&country=DE",
            app.url
        ))
        .header("cookie", &cookie)
        .header("origin", app.url.as_str())
        .body(book)
        .send()
        .await
        .expect("preview");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["read_as"]["sheet"], "Kunden", "{v}");
    assert_eq!(v["rows"][0]["contact"]["phone"], "+4915123456794", "{v}");
}

/// Sends `file` to the import with the connection cut after `cut` bytes; answers the
/// interrupted job from the list.
async fn cut_upload(app: &TestApp, query: &str, file: &[u8], cut: usize) -> Value {
    use tokio::io::AsyncWriteExt;
    let newest = || async {
        let (status, list) = app
            .api_call(Method::GET, "/api/v1/contacts/import?limit=1", None)
            .await;
        assert_eq!(status, 200, "{list}");
        list["data"][0].clone()
    };
    let before = newest().await["id"].clone();
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/contacts/import?{query} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
        app.token,
        file.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    socket
        .write_all(&file[..cut])
        .await
        .expect("part of the body");
    socket.flush().await.expect("flush");
    drop(socket);
    for _ in 0..300 {
        let job = newest().await;
        if !job.is_null() && job["id"] != before && job["state"] != "running" {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the cut import did not settle");
}

async fn resume(app: &TestApp, id: &str, file: Vec<u8>) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}/api/v1/contacts/import/{id}/resume", app.url))
        .bearer_auth(&app.token)
        .body(file)
        .send()
        .await
        .expect("resume");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn decoded_files_resume_after_a_cut_upload_importing_each_row_once() {
    let app = spawn_app().await;
    let rows = 2_500u64;
    let mut text = String::from("phone;batch\r\n");
    for i in 0..rows {
        text.push_str(&format!(
            "8 (916) {:03}-{:02}-{:02};первая\r\n",
            200 + i / 10_000 % 800,
            i / 100 % 100,
            i % 100
        ));
    }
    for (name, file, batch) in [
        ("windows-1251", cp1251(&text), "первая"),
        (
            "utf-16le",
            utf16le_with_bom(&text.replace("первая", "вторая")),
            "вторая",
        ),
    ] {
        let cut = file.len() * 6 / 10;
        let job = cut_upload(&app, "country=RU", &file, cut).await;
        assert_eq!(job["state"], "interrupted", "{name}: {job}");
        assert_eq!(job["encoding"], name, "{job}");
        assert_eq!(job["separator"], "semicolon", "{job}");
        let committed = job["rows_read"].as_u64().expect("rows");
        assert!((1_000..rows).contains(&committed), "{name}: {job}");
        assert!(
            job["error"]
                .as_str()
                .is_some_and(|e| e.contains("broke off")),
            "{job}"
        );
        let id = job["id"].as_str().expect("id").to_owned();
        // Another file (one letter changed before the cut) is refused.
        let mut other = file.clone();
        let at = file.len() / 4;
        other[at] ^= 0x01;
        let (status, v) = resume(&app, &id, other).await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (409, &"import_file_differs".into()),
            "{name}: {v}"
        );
        let (status, v) = resume(&app, &id, file).await;
        assert_eq!(status, 202, "{v}");
        let (_, done) = app
            .api_call(Method::GET, &format!("/api/v1/contacts/import/{id}"), None)
            .await;
        assert_eq!(done["state"], "done", "{name}: {done}");
        assert_eq!(done["rows_read"], rows, "{name}: {done}");
        assert_eq!(done["rejected"], 0, "{name}: {done}");
        // Both files hold the same numbers: the first creates them, the second updates them,
        // each row once.
        let written = done["created"].as_u64().unwrap_or(0) + done["updated"].as_u64().unwrap_or(0);
        assert_eq!(written, rows, "{name}: {done}");
        let (status, v) = app
            .api_call(
                Method::POST,
                "/api/v1/segments/preview",
                Some(&serde_json::json!({"filter": format!("batch = \"{batch}\"")})),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["count"], rows, "{name}: {v}");
    }
}

#[tokio::test]
async fn the_console_preview_says_what_it_detected_and_its_controls_change_the_reading() {
    use crate::audience::{console_sign_in, wait_for_text};
    use fantoccini::Locator;
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("clients.csv");
    std::fs::write(
        &csv,
        cp1251("Телефон;Имя;Город\r\n8 (916) 123-45-70;Иван;Москва\r\n"),
    )
    .expect("write");
    let browser = console_sign_in(&app).await;
    let c = &browser.client;
    c.goto(&format!("{}/import", app.url))
        .await
        .expect("import page");
    browser.wait_css("#import-file").await;
    c.find(Locator::Css("#import-file"))
        .await
        .expect("file")
        .send_keys(&csv.display().to_string())
        .await
        .expect("choose file");
    let said = wait_for_text(&browser, "#import-detected", |t| {
        t.contains("windows-1251 (detected)")
    })
    .await;
    assert!(said.contains("semicolon (detected)"), "{said}");
    // The Cyrillic header is read as such; the phone column goes to the phone field.
    let phone_column = "#import-columns tr[data-column=\"Телефон\"] [data-role=target]";
    browser.wait_css(phone_column).await;
    c.find(Locator::Css(phone_column))
        .await
        .expect("target")
        .select_by_value("phone")
        .await
        .expect("phone");
    // A local number needs the default country.
    wait_for_text(&browser, "#import-preview tbody", |t| {
        t.contains("not an international phone number")
    })
    .await;
    c.find(Locator::Css("#import-country"))
        .await
        .expect("country")
        .select_by_value("RU")
        .await
        .expect("RU");
    let preview = wait_for_text(&browser, "#import-preview tbody", |t| {
        t.contains("+79161234570")
    })
    .await;
    assert!(preview.contains("Москва"), "{preview}");
    // Overriding the separator reads one column, and the row says which one it seems to be.
    c.find(Locator::Css("#import-separator"))
        .await
        .expect("separator")
        .select_by_value("comma")
        .await
        .expect("comma");
    wait_for_text(&browser, "#import-preview tbody", |t| {
        t.contains("separated by semicolon")
    })
    .await;
    let said = wait_for_text(&browser, "#import-detected", |t| {
        t.contains("separator comma")
    })
    .await;
    assert!(!said.contains("comma (detected)"), "{said}");
    // Back to detection, and import.
    c.find(Locator::Css("#import-separator"))
        .await
        .expect("separator")
        .select_by_value("auto")
        .await
        .expect("auto");
    browser.wait_css(phone_column).await;
    c.find(Locator::Css(phone_column))
        .await
        .expect("target")
        .select_by_value("phone")
        .await
        .expect("phone");
    wait_for_text(&browser, "#import-preview tbody", |t| {
        t.contains("+79161234570")
    })
    .await;
    c.find(Locator::Css("#import-start"))
        .await
        .expect("start")
        .click()
        .await
        .expect("click");
    wait_for_text(&browser, "#import-state", |t| t == "done").await;
    let ivan = contact(&app, "+79161234570").await;
    assert_eq!(ivan["tags"]["Город"], "Москва", "{ivan}");
    // A workbook: its sheet is named, the text controls are hidden.
    let xlsx = dir.path().join("clients.xlsx");
    let book = sample_xlsx(
        "Kunden",
        &[vec![text("phone")], vec![SampleCell::Number(79161234571.0)]],
    );
    std::fs::write(&xlsx, book).expect("write");
    c.find(Locator::Css("#import-file"))
        .await
        .expect("file")
        .send_keys(&xlsx.display().to_string())
        .await
        .expect("choose file");
    wait_for_text(&browser, "#import-detected", |t| t.contains("Kunden")).await;
    wait_for_text(&browser, "#import-preview tbody", |t| {
        t.contains("+79161234571")
    })
    .await;
    let hidden = c
        .find(Locator::Css("#import-text-reading"))
        .await
        .expect("text controls")
        .attr("hidden")
        .await
        .expect("attr");
    assert!(
        hidden.is_some(),
        "encoding and separator do not apply to a workbook"
    );
}

#[tokio::test]
async fn a_workbook_cut_off_commits_nothing_and_resumes_with_the_same_file() {
    let app = spawn_app().await;
    let mut rows = vec![vec![text("phone"), text("batch")]];
    for i in 0..1_500u64 {
        rows.push(vec![
            text(&format!("+49152{:08}", 64_000_000 + i)),
            text("book"),
        ]);
    }
    let book = sample_xlsx("S", &rows);
    let job = cut_upload(&app, "format=xlsx", &book, book.len() / 2).await;
    assert_eq!(job["state"], "interrupted", "{job}");
    // A workbook is read whole before any row: nothing was committed.
    assert_eq!(job["rows_read"], 0, "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("broke off")),
        "{job}"
    );
    let id = job["id"].as_str().expect("id").to_owned();
    let (status, v) = resume(&app, &id, book).await;
    assert_eq!(status, 202, "{v}");
    let (_, done) = app
        .api_call(Method::GET, &format!("/api/v1/contacts/import/{id}"), None)
        .await;
    assert_eq!(
        (
            done["state"].as_str(),
            done["created"].as_u64(),
            done["sheet"].as_str()
        ),
        (Some("done"), Some(1_500), Some("S")),
        "{done}"
    );
}

/// A finished import (its report and its rejected rows) is deleted 30 days after it finished
/// (`imports.retention_days`): each import kept every rejected line for ever. The contacts it
/// wrote stay.
#[tokio::test]
async fn a_finished_import_and_its_rejected_rows_are_deleted_past_their_retention() {
    let app = spawn_app().await;
    let job = import(
        &app,
        &[("country", "US")],
        b"phone,name\n(415) 555-0141,Ana\nnot a phone,Bo\n".to_vec(),
    )
    .await;
    assert_eq!(
        (job["created"].as_u64(), job["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{job}"
    );
    let id = job["id"].as_str().expect("id").to_owned();
    let report = format!("/api/v1/contacts/import/{id}");
    let rejects = format!("{report}/rejected");
    let (status, _) = app.api_call(Method::GET, &rejects, None).await;
    assert_eq!(status, 200);
    assert_eq!(app.engine.prune_retained().await.expect("prune").imports, 0);
    app.advance(std::time::Duration::from_secs(31 * 24 * 3600))
        .await;
    assert_eq!(app.engine.prune_retained().await.expect("prune").imports, 1);
    for path in [&report, &rejects] {
        let (status, v) = app.api_call(Method::GET, path, None).await;
        assert_eq!(status, 404, "{path}: {v}");
        assert_eq!(v["error"]["code"], "import_not_found", "{v}");
    }
    contact(&app, "+14155550141").await;
}
