//! Headless Chromium driving the console through chromedriver (Debian's `chromium` and
//! `chromium-driver`, installed by `.ci/run`). Each test gets its own driver and profile.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

pub struct Browser {
    pub client: Client,
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn find(binary: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| (*p).to_owned())
        .unwrap_or_else(|| {
            panic!(
                "{binary} is not installed: run `apt-get install -y chromium chromium-driver` (CI's .ci/run does)"
            )
        })
}

impl Browser {
    pub async fn start() -> Browser {
        let driver_bin = find(
            "chromedriver",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let chrome_bin = find(
            "chromium",
            &["/usr/bin/chromium", "/usr/lib/chromium/chromium"],
        );
        let port = free_port();
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
            serde_json::json!({
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

    /// Waits for an element by CSS selector (15 s at most). Every failed look is tried again
    /// until then, not only "no such element": a page that navigates meanwhile (the signup
    /// dialog's steps) makes ChromeDriver answer a look with "aborted by navigation", which
    /// fantoccini reports as a non-conforming response and its own wait gives up on.
    pub async fn wait_css(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => return element,
                Err(e) if std::time::Instant::now() >= deadline => {
                    panic!("no element `{css}`: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Runs `f` on the element `css` finds, finding it again while `f` fails: a page that
    /// updates itself live (the inbox's SSE) may replace the element between the find and the
    /// use, and WebDriver then answers "stale element reference".
    pub async fn fresh<T, F, Fut>(&self, css: &str, f: F) -> T
    where
        F: Fn(fantoccini::elements::Element) -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let mut last = None;
        for _ in 0..50 {
            match f(self.wait_css(css).await).await {
                Ok(v) => return v,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{css}` kept failing: {last:?}");
    }

    /// Waits until the page's URL contains `part` (a submitted form has navigated).
    pub async fn wait_url(&self, part: &str) {
        for _ in 0..150 {
            if let Ok(url) = self.client.current_url().await
                && url.as_str().contains(part)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = self.client.current_url().await.map(|u| u.to_string());
        panic!("the page never went to a URL with `{part}`: {url:?}");
    }

    /// Waits until the page body contains `text`.
    pub async fn wait_text(&self, text: &str) {
        for _ in 0..150 {
            if let Ok(body) = self.client.find(Locator::Css("body")).await
                && let Ok(t) = body.text().await
                && t.contains(text)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = self.client.source().await.unwrap_or_default();
        panic!("page never showed `{text}`: {body}");
    }

    /// What the page's Content-Security-Policy refused since it loaded (Chromium keeps the
    /// reports; `buffered` hands over the earlier ones), as `directive blocked-url`.
    pub async fn csp_violations(&self) -> Vec<String> {
        let v = self
            .client
            .execute(
                "var o = new ReportingObserver(function () {}, {types: ['csp-violation'], buffered: true});
                 o.observe();
                 var r = o.takeRecords().map(function (r) {
                   return r.body.effectiveDirective + ' ' + r.body.blockedURL;
                 });
                 o.disconnect();
                 return r;",
                vec![],
            )
            .await
            .expect("script");
        serde_json::from_value(v).expect("strings")
    }

    /// Signs in to the console with the app's printed login and waits for a signed-in page.
    pub async fn sign_in(&self, app: &crate::helpers::TestApp) {
        self.sign_in_at(&app.url, &app.console_email, &app.console_password)
            .await;
    }

    /// Signs in to the console served at `url` (another node of the same database).
    pub async fn sign_in_at(&self, url: &str, email: &str, password: &str) {
        let c = &self.client;
        c.goto(&format!("{url}/login")).await.expect("goto");
        let field = self.wait_css("input[name=email]").await;
        field.send_keys(email).await.expect("type");
        c.find(Locator::Css("input[name=password]"))
            .await
            .expect("pw")
            .send_keys(password)
            .await
            .expect("type");
        c.find(Locator::Css("button[type=submit]"))
            .await
            .expect("btn")
            .click()
            .await
            .expect("click");
        self.wait_text("Sign out").await;
    }
}
