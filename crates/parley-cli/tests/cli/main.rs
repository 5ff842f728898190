//! The `parley` binary as a newcomer runs it: `parley demo` on a fresh data directory seeds,
//! serves and sends through the built-in sandbox; a second run reuses the same data.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

mod crash;
mod leases;
mod nodes;
mod people;
// The store suite's PostgreSQL harness (throwaway cluster or PARLEY_TEST_POSTGRES_URL).
#[allow(dead_code)]
#[path = "../../../parley-store/tests/store/pg.rs"]
mod pg;

struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts `parley demo` and waits for its "is running" line.
    fn start(data_dir: &std::path::Path) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["demo", "--port", "0", "--contacts", "50", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn parley demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let running = line.contains("Parley demo is running");
                let _ = tx.send(line);
                if running {
                    // Keep draining so the child never blocks on a full pipe.
                    continue;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .expect("parley demo did not start in time");
            if line.contains("Parley demo is running") {
                break;
            }
        }
        Demo { child }
    }

    #[cfg(unix)]
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill -INT");
        let status = self.child.wait().expect("wait");
        std::mem::forget(self);
        status
    }
}

pub(crate) fn credentials(dir: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(dir.join("demo-credentials.json")).expect("credentials");
    serde_json::from_str(&text).expect("json")
}

#[tokio::test]
async fn demo_runs_with_no_configuration_and_reuses_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();

    let demo = Demo::start(dir.path());
    let creds = credentials(dir.path());
    for key in [
        "console_url",
        "email",
        "password",
        "api_token",
        "sandbox_url",
        "app_id",
        "app_secret",
        "verify_token",
    ] {
        assert!(
            creds[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} missing: {creds}"
        );
    }
    // The app secret is this data directory's own, kept beside the database.
    let secret = std::fs::read_to_string(dir.path().join("demo-app-secret")).expect("secret");
    assert_eq!(creds["app_secret"].as_str(), Some(secret.trim()));
    assert_eq!(secret.trim().len(), 32, "{secret}");
    assert_ne!(secret.trim(), parley_sandbox::demo_ids::APP_SECRET);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |name: &str| {
            std::fs::metadata(dir.path().join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(""), 0o700, "the data directory");
        for name in [
            "parley.db",
            "parley.db-wal",
            "parley.db-shm",
            "master.key",
            "session.key",
            "demo-credentials.json",
            "demo-app-secret",
        ] {
            assert_eq!(mode(name), 0o600, "{name}");
        }
    }
    let url = creds["console_url"].as_str().expect("url").to_owned();
    let token = creds["api_token"].as_str().expect("token").to_owned();

    let resp = http
        .post(format!("{url}/api/v1/messages"))
        .bearer_auth(&token)
        .json(&json!({"to": "+4915110007919", "template": {"name": "order_update", "language": "en",
               "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}", "order_id": "A-1"}}}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut state = Value::Null;
    for _ in 0..200 {
        let m: Value = http
            .get(format!("{url}/api/v1/messages/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        state = m["state"].clone();
        if state == "delivered" || state == "read" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        state == "delivered" || state == "read",
        "message ended {state}"
    );

    #[cfg(unix)]
    assert!(demo.interrupt().success(), "Ctrl-C stops the demo cleanly");
    #[cfg(not(unix))]
    drop(demo);

    // An operator adds a token from the command line.
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["token", "create", "--label", "ops"])
        .env("PARLEY_DATA_DIR", dir.path())
        .output()
        .expect("token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(new_token.starts_with("pk_"));

    // A read-only token that expires, listed, then revoked.
    let parley = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(args)
            .env("PARLEY_DATA_DIR", dir.path())
            .output()
            .expect("parley");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let viewer = parley(&[
        "token",
        "create",
        "--label",
        "viewer",
        "--scope",
        "read",
        "--expires",
        "30d",
    ])
    .trim()
    .to_owned();
    assert!(viewer.starts_with("pk_"));
    let list = parley(&["token", "list"]);
    let row = list
        .lines()
        .find(|l| l.contains("\tviewer\t"))
        .unwrap_or_else(|| panic!("viewer not listed: {list}"));
    let cols: Vec<&str> = row.split('\t').collect();
    assert_eq!(cols[2], "read", "{row}");
    assert_ne!(cols[5], "-", "it expires: {row}");
    assert!(
        list.lines()
            .any(|l| l.contains("\tops\tsend read manage\t")),
        "a token made without --scope has all three: {list}"
    );
    let revoked = parley(&["token", "revoke", cols[0]]);
    assert!(revoked.contains("revoked"), "{revoked}");

    // Second run: same account, same token, the earlier message still there.
    let _demo = Demo::start(dir.path());
    let again = credentials(dir.path());
    assert_eq!(again["api_token"], creds["api_token"]);
    assert_eq!(again["password"], creds["password"]);
    assert_eq!(
        again["app_secret"], creds["app_secret"],
        "the secret is reused"
    );
    let url = again["console_url"].as_str().expect("url");
    let m = http
        .get(format!("{url}/api/v1/messages/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(m.status(), 200);
    let m = http
        .get(format!("{url}/api/v1/messages/{id}"))
        .bearer_auth(&new_token)
        .send()
        .await
        .expect("get");
    assert_eq!(m.status(), 200, "the CLI-made token works");
    let m = http
        .get(format!("{url}/api/v1/messages/{id}"))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("get");
    assert_eq!(m.status(), 401, "the revoked token is refused");
}

#[test]
fn token_create_on_an_empty_database_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["token", "create"])
        .env("PARLEY_DATA_DIR", dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no application yet"), "{err}");
}

#[tokio::test]
async fn contacts_import_reads_a_csv_into_the_configured_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    // The demo creates the database and its application once.
    let demo = Demo::start(dir.path());
    #[cfg(unix)]
    assert!(demo.interrupt().success());
    #[cfg(not(unix))]
    drop(demo);

    let csv = dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "Mobile,first_name,city,visits\n\
         +4917077700001,ana,Berlin,3\n\
         +4917077700002,bo,Köln,many\n\
         +4917077700003,cy,Berlin,7\n",
    )
    .expect("write csv");
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["contacts", "import"])
        .arg(&csv)
        .args(["--map", "Mobile:phone", "--map", "visits:visits:integer"])
        .env("PARLEY_DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("contacts import");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a rejected row exits 2: {stdout} {stderr}"
    );
    assert!(
        stdout.contains("3 rows read, 2 created, 0 updated, 1 rejected"),
        "{stdout}"
    );
    let rejected_path = dir.path().join("people.csv.rejected.csv");
    assert!(
        stdout.contains(&rejected_path.display().to_string()),
        "{stdout}"
    );
    let rejected = std::fs::read_to_string(&rejected_path).expect("rejected rows");
    assert!(
        rejected.starts_with("line,reason,row\n3,") && rejected.contains("many"),
        "{rejected}"
    );

    // A bad mapping is refused before anything is read.
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["contacts", "import"])
        .arg(&csv)
        .args(["--map", "visits:visits:wat"])
        .env("PARLEY_DATA_DIR", dir.path())
        .output()
        .expect("contacts import");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown type `wat`"));

    // A Russian spreadsheet's CSV (Windows-1251, `;`), read as the flags say, its local phone
    // numbers with the default country; and a workbook's first sheet.
    let ru = dir.path().join("clients.csv");
    let cp1251: Vec<u8> = "Телефон;Имя\r\n8 (916) 123-45-80;Иван\r\n"
        .chars()
        .map(|c| match c {
            c if c.is_ascii() => c as u8,
            c => (c as u32 - 'А' as u32 + 0xC0) as u8,
        })
        .collect();
    std::fs::write(&ru, cp1251).expect("write");
    let book = dir.path().join("kunden.xlsx");
    std::fs::write(
        &book,
        parley_engine::import_file::sample_xlsx(
            "Kunden",
            &[
                vec![parley_engine::import_file::SampleCell::Text("phone".into())],
                vec![parley_engine::import_file::SampleCell::Text(
                    "0151 77700004".into(),
                )],
            ],
        ),
    )
    .expect("write");
    for (file, flags) in [
        (
            &ru,
            &[
                "--encoding",
                "windows-1251",
                "--separator",
                "semicolon",
                "--country",
                "RU",
                "--map",
                "Телефон:phone",
                "--map",
                "Имя:name",
            ][..],
        ),
        (&book, &["--country", "DE"][..]),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["contacts", "import"])
            .arg(file)
            .args(flags)
            .env("PARLEY_DATA_DIR", dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .expect("contacts import");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 rows read, 1 created"), "{stdout}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["contacts", "import"])
        .arg(&ru)
        .args(["--country", "Russia"])
        .env("PARLEY_DATA_DIR", dir.path())
        .output()
        .expect("contacts import");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--country"));

    // The served database has them, typed.
    let _demo = Demo::start(dir.path());
    let creds = credentials(dir.path());
    let url = creds["console_url"].as_str().expect("url");
    let token = creds["api_token"].as_str().expect("token");
    let c: Value = http
        .get(format!("{url}/api/v1/contacts/+4917077700003"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(c["tags"]["visits"], 7, "{c}");
    assert_eq!(c["tags"]["first_name"], "cy", "{c}");
    for (phone, name) in [("+79161234580", Some("Иван")), ("+4915177700004", None)] {
        let c: Value = http
            .get(format!("{url}/api/v1/contacts/{phone}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(c["name"].as_str(), name, "{c}");
    }
    let missing = http
        .get(format!("{url}/api/v1/contacts/+4917077700002"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
}
