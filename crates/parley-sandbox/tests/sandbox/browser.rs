//! One smoke test in headless Chromium (it fails, saying what to install, when chromium or
//! chromedriver is missing — `.ci/run` installs them): a
//! page on another origin loads `{sandbox}/sdk.js`, calls `FB.login`, and records the
//! `WA_EMBEDDED_SIGNUP` message events and the callback while the test walks the dialog.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use fantoccini::{Client, ClientBuilder, Locator};
use parley_sandbox::demo_ids;
use serde_json::{Value, json};

use super::super::{TestSandbox, spawn, test_config};

const DRIVERS: [&str; 2] = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
const CHROMES: [&str; 2] = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"];

struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Runs on success and on panic alike. Chromium's processes are chromedriver's children in
    /// its own process group (see `start`): the whole group goes, or they outlive the test.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn installed(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| (*p).to_owned())
}

impl Browser {
    /// Same Chromium flags as Parley's browser tests.
    async fn start(driver_bin: &str, chrome_bin: &str) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chrome_bin,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_err = None;
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                    };
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("could not start a Chromium session: {last_err:?}");
    }

    async fn wait_css(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element `{css}`: {e}"))
    }

    async fn click(&self, css: &str) {
        self.wait_css(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    async fn fill(&self, css: &str, text: &str) {
        let element = self.wait_css(css).await;
        element.clear().await.expect("clear");
        element.send_keys(text).await.expect("type");
    }

    async fn select(&self, css: &str, value: &str) {
        self.wait_css(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in `{css}`: {e}"));
    }

    /// Waits for the dialog to show `step`; with `SANDBOX_SCREENSHOTS=<dir>` also saves a
    /// screenshot of it there (to look at the dialog while changing it).
    async fn at_step(&self, step: &str) {
        self.wait_css(&format!(".es-dialog[data-step=\"{step}\"]"))
            .await;
        if let Some(dir) = std::env::var_os("SANDBOX_SCREENSHOTS")
            && let Ok(png) = self.client.screenshot().await
        {
            let _ = std::fs::write(std::path::Path::new(&dir).join(format!("{step}.png")), png);
        }
    }

    async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script `{script}`: {e}"))
    }

    /// Clicks the page's button and switches to the popup it opens; returns the page's handle.
    async fn open_popup(&self) -> fantoccini::wd::WindowHandle {
        let main = self.client.window().await.expect("window");
        self.click("#go").await;
        for _ in 0..200 {
            let windows = self.client.windows().await.expect("windows");
            if let Some(popup) = windows.into_iter().find(|w| *w != main) {
                self.client
                    .switch_to_window(popup)
                    .await
                    .expect("switch to popup");
                return main;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("FB.login opened no popup");
    }

    /// Polls the page until `events` and `callbacks` have `n` entries each.
    async fn recorded(&self, n: usize) -> (Vec<Value>, Vec<Value>) {
        let mut last = Value::Null;
        for _ in 0..300 {
            last = self
                .eval("return {events: window.events, callbacks: window.callbacks};")
                .await;
            let events = last["events"].as_array().cloned().unwrap_or_default();
            let callbacks = last["callbacks"].as_array().cloned().unwrap_or_default();
            if events.len() >= n && callbacks.len() >= n {
                return (events, callbacks);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never recorded {n} event(s) and callback(s): {last}");
    }
}

fn test_page(sandbox: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Signup test</title></head>
<body><button id="go">Log in with Facebook</button>
<script>
window.events = []; window.callbacks = [];
window.fbAsyncInit = function () {{
  FB.init({{ appId: '{app_id}', autoLogAppEvents: true, xfbml: true, version: 'v23.0' }});
  window.inited = true;
}};
window.addEventListener('message', function (event) {{
  if (event.origin !== '{sandbox}') return;
  try {{
    var data = JSON.parse(event.data);
    if (data.type === 'WA_EMBEDDED_SIGNUP') window.events.push(data);
  }} catch (e) {{}}
}});
document.getElementById('go').addEventListener('click', function () {{
  FB.login(function (response) {{ window.callbacks.push(response); }}, {{
    config_id: '987654321', response_type: 'code', override_default_response_type: true,
    extras: window.extras || {{ setup: {{}} }}
  }});
}});
</script>
<script async defer crossorigin="anonymous" src="{sandbox}/sdk.js"></script>
</body></html>"#,
        app_id = demo_ids::APP_ID,
    )
}

async fn serve_page(sb: &TestSandbox) -> String {
    let page = test_page(&sb.base);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind page");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/", get(move || async move { Html(page) }));
    let stop = sb.shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    // "localhost" keeps the page's origin distinct from the sandbox's 127.0.0.1.
    format!("http://localhost:{}/", addr.port())
}

#[tokio::test]
async fn browser_walks_the_dialog_and_the_page_gets_finish_and_code() {
    let (Some(driver), Some(chrome)) = (installed(&DRIVERS), installed(&CHROMES)) else {
        panic!(
            "chromium and chromedriver are not installed: run `apt-get install -y chromium chromium-driver` (CI's .ci/run does)"
        );
    };
    let sb = spawn(test_config()).await;
    let page = serve_page(&sb).await;
    let browser = Browser::start(&driver, &chrome).await;
    browser.client.goto(&page).await.expect("open test page");
    for _ in 0..200 {
        if browser.eval("return window.inited === true;").await == json!(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        browser.eval("return window.inited === true;").await,
        json!(true),
        "sdk.js called fbAsyncInit"
    );

    let main = browser.open_popup().await;
    browser.at_step("LOGIN").await;
    browser.click("#es-next").await;
    browser.at_step("GET_STARTED").await;
    browser.click("#es-next").await;
    // Phone Number First: the number and its code come before the portfolio.
    browser.at_step("PHONE_NUMBER_SETUP").await;
    browser.click("#es-phone-sandbox").await;
    browser.click("#es-next").await;
    browser.at_step("PHONE_NUMBER_VERIFICATION").await;
    browser.click("#es-next").await;
    browser.at_step("BUSINESS_ACCOUNT_SELECTION").await;
    browser.click("#es-business-new").await;
    browser.fill("#es-business-name", "Café Lumen").await;
    browser.fill("#es-business-website", "cafe-lumen").await;
    browser.select("#es-business-country", "PT").await;
    browser
        .fill("#es-business-address", "Rua Augusta 1, Lisboa")
        .await;
    browser.click("#es-next").await;
    browser.wait_css("#es-error-website").await;
    browser
        .fill("#es-business-website", "https://cafe-lumen.example")
        .await;
    browser.click("#es-next").await;
    browser.at_step("WABA_PHONE_PROFILE_PICKER").await;
    browser.fill("#es-waba-name", "Café Lumen Orders").await;
    browser.click("#es-next").await;
    browser.at_step("WHATSAPP_BUSINESS_PROFILE_SETUP").await;
    browser.fill("#es-profile-display-name", "Café Lumen").await;
    browser.select("#es-profile-category", "RESTAURANT").await;
    browser.click("#es-next").await;
    browser.at_step("PERMISSIONS").await;
    browser.click("#es-next").await;
    browser.at_step("CONFIRMATION").await;
    browser.click("#es-next").await;
    browser.at_step("QUOTAS").await;
    browser.click("#es-next").await;
    browser
        .client
        .switch_to_window(main.clone())
        .await
        .expect("back to the page");

    let (events, callbacks) = browser.recorded(1).await;
    let finish = &events[0];
    assert_eq!(finish["event"], "FINISH", "{finish}");
    let data = &finish["data"];
    let code = callbacks[0]["authResponse"]["code"]
        .as_str()
        .expect("code in the callback")
        .to_owned();
    assert_eq!(callbacks[0]["status"], "connected");
    let (status, token) = sb.exchange(&code).await;
    assert_eq!(status, 200, "{token}");
    let state = sb.control_get("state").await;
    let business = state["businesses"]
        .as_array()
        .expect("businesses")
        .iter()
        .find(|b| b["id"] == data["business_id"])
        .cloned()
        .expect("the portfolio of the FINISH event exists");
    assert_eq!(business["name"], "Café Lumen");
    assert_eq!(business["country"], "PT");
    assert_eq!(business["wabas"][0]["id"], data["waba_id"]);
    assert_eq!(business["wabas"][0]["name"], "Café Lumen Orders");
    assert_eq!(
        business["wabas"][0]["phone_numbers"][0]["id"],
        data["phone_number_id"]
    );
    assert_eq!(
        business["wabas"][0]["phone_numbers"][0]["code_verification_status"],
        "VERIFIED"
    );
    let signups = sb.control_get("signups").await;
    assert_eq!(signups["data"][0]["flavour"], "v4", "{signups}");
    assert_eq!(signups["data"][0]["extras"], json!({"setup": {}}));
    assert_eq!(signups["data"][0]["event"], "FINISH");

    // Closing the popup early: the SDK notices and reports the step it was on.
    browser.open_popup().await;
    browser.at_step("LOGIN").await;
    browser.click("#es-next").await;
    browser.at_step("GET_STARTED").await;
    browser.click("#es-next").await;
    browser.at_step("PHONE_NUMBER_SETUP").await;
    browser.click("#es-phone-later").await;
    browser.click("#es-next").await;
    browser.at_step("BUSINESS_ACCOUNT_SELECTION").await;
    browser.click("#es-close").await;
    browser
        .client
        .switch_to_window(main.clone())
        .await
        .expect("back to the page");
    let (events, callbacks) = browser.recorded(2).await;
    assert_eq!(
        events[1],
        json!({"data": {"current_step": "BUSINESS_ACCOUNT_SELECTION"}, "type": "WA_EMBEDDED_SIGNUP", "event": "CANCEL", "version": 3})
    );
    assert_eq!(
        callbacks[1],
        json!({"authResponse": null, "status": "unknown"})
    );

    // "Report a problem": a CANCEL with the user's message.
    browser.open_popup().await;
    browser.at_step("LOGIN").await;
    browser.click("#es-report-problem").await;
    browser
        .fill("#es-report-message", "The button does nothing")
        .await;
    browser.select("#es-report-code", "2655093").await;
    browser.click("#es-report-send").await;
    browser
        .client
        .switch_to_window(main.clone())
        .await
        .expect("back to the page");
    let (events, callbacks) = browser.recorded(3).await;
    assert_eq!(events[2]["event"], "CANCEL", "{}", events[2]);
    assert_eq!(
        events[2]["data"]["error_message"],
        "The button does nothing"
    );
    assert!(events[2]["data"]["session_id"].is_string());
    assert_eq!(events[2]["data"]["error_code"], "2655093");
    assert_eq!(
        callbacks[2],
        json!({"authResponse": null, "status": "unknown"})
    );

    // A WhatsApp Business app number, launched as Meta's coexistence page does (legacy pair):
    // the QR step, then FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING with only the WABA.
    browser
        .eval("window.extras = {setup: {}, featureType: 'whatsapp_business_app_onboarding', sessionInfoVersion: '3'}; return true;")
        .await;
    browser.open_popup().await;
    browser.at_step("LOGIN").await;
    browser.click("#es-next").await;
    browser.at_step("GET_STARTED").await;
    browser.click("#es-next").await;
    browser.at_step("PHONE_NUMBER_SETUP").await;
    browser.click("#es-next").await; // the Business app choice is preselected
    browser.at_step("BUSINESS_ACCOUNT_SELECTION").await;
    browser.click("#es-next").await; // the sandbox's portfolio
    browser.at_step("WHATSAPP_BUSINESS_APP_QR").await;
    browser.click("#es-next").await;
    browser.at_step("WABA_PHONE_PROFILE_PICKER").await;
    browser.fill("#es-waba-name", "Lumen Corner").await;
    browser.click("#es-next").await;
    browser.at_step("WHATSAPP_BUSINESS_PROFILE_SETUP").await;
    browser
        .fill("#es-profile-display-name", "Lumen Corner")
        .await;
    browser.select("#es-profile-category", "RETAIL").await;
    browser.click("#es-next").await;
    browser.at_step("PERMISSIONS").await;
    browser.click("#es-next").await;
    browser.at_step("CONFIRMATION").await;
    browser.click("#es-next").await;
    browser.at_step("QUOTAS").await;
    browser.click("#es-next").await;
    browser
        .client
        .switch_to_window(main.clone())
        .await
        .expect("back to the page");
    let (events, _) = browser.recorded(4).await;
    assert_eq!(
        events[3]["event"],
        "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING"
    );
    assert!(
        events[3]["data"]["phone_number_id"].is_null(),
        "{}",
        events[3]
    );
    let waba = events[3]["data"]["waba_id"]
        .as_str()
        .expect("waba_id")
        .to_owned();
    let signups = sb.control_get("signups").await;
    let last = signups["data"]
        .as_array()
        .and_then(|d| d.last())
        .cloned()
        .expect("signup");
    assert_eq!(last["flavour"], "legacy", "{last}");
    assert_eq!(last["completion"], "coexistence");
    let state = sb.control_get("state").await;
    let number = state["businesses"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["wabas"].as_array().cloned().unwrap_or_default())
        .find(|w| w["id"] == waba)
        .map(|w| w["phone_numbers"][0].clone())
        .expect("the coexistence WABA");
    assert_eq!(number["is_on_biz_app"], true, "{number}");
    assert_eq!(number["status"], "CONNECTED");
    assert_eq!(number["throughput_mps"], 20);
    let _ = browser.client.clone().close().await;
}
