//! First run as an operator meets it: `parley serve` on an empty database prints a one-time
//! setup link that creates the first owner; `parley admin reset-password` and
//! `parley admin create-owner` work from a shell.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::crash::{Proc, free_port};

/// Starts `parley serve` and returns it with the lines it printed up to one containing
/// `until`.
fn serve(envs: &[(&str, String)], until: &str) -> (Proc, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("serve")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn parley serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let proc = Proc(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_else(|_| panic!("parley serve did not print {until:?}: {lines:?}"));
        let done = line.contains(until);
        lines.push(line);
        if done {
            return (proc, lines);
        }
    }
}

fn admin(args: &[&str], envs: &[(&str, String)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("admin")
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .output()
        .expect("parley admin");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "parley admin {args:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A form body, percent-encoded.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn sign_in(url: &str, email: &str, password: &str) -> reqwest::Response {
    client()
        .post(format!("{url}/login"))
        .header("origin", url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("email", email), ("password", password)]))
        .send()
        .await
        .expect("login")
}

fn session_cookie(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|c| c.starts_with("parley_session=") && c.len() > "parley_session=".len())
        .expect("session cookie")
}

#[tokio::test]
async fn serve_prints_a_setup_link_and_the_admin_commands_manage_owners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let envs = [
        ("PARLEY_DATA_DIR", dir.path().display().to_string()),
        ("PARLEY_LISTEN", format!("127.0.0.1:{port}")),
        ("PARLEY_META_GRAPH_URL", "http://127.0.0.1:9".to_owned()),
        ("PARLEY_META_APP_ID", "1".to_owned()),
        ("PARLEY_META_APP_SECRET", "app-secret".to_owned()),
        ("PARLEY_META_VERIFY_TOKEN", "verify".to_owned()),
    ];
    let (running, lines) = serve(&envs, "Create the first owner at:");
    let line = lines.last().expect("line");
    let link = line[line.find("http").expect("a link")..].trim().to_owned();
    assert!(link.starts_with(&format!("{url}/setup/")), "{link}");
    let page = client().get(&link).send().await.expect("setup page");
    assert_eq!(page.status(), 200);
    let created = client()
        .post(&link)
        .header("origin", url.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("email", "ana@acme.test"),
            ("password", "first-owner-pw"),
            ("account", "Acme"),
            ("application", "Shop"),
        ]))
        .send()
        .await
        .expect("setup");
    assert_eq!(created.status(), 303);
    let cookie = session_cookie(&created);
    let overview = client()
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("overview");
    assert_eq!(overview.status(), 200);
    drop(running);

    // The operator resets the password from a shell: the new one works, sessions ended.
    let out = admin(&["reset-password", "--email", "ANA@acme.test"], &envs);
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("New password for ana@acme.test: "))
        .expect("printed password")
        .trim()
        .to_owned();
    // A database with a user prints no link; the used one is gone.
    let (_running, _) = serve(&envs, "Parley listens on");
    assert_eq!(client().get(&link).send().await.expect("get").status(), 404);
    let old = client()
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("overview");
    assert_eq!(old.status(), 303, "the reset ended the session");
    assert_eq!(
        sign_in(&url, "ana@acme.test", "first-owner-pw")
            .await
            .status(),
        401
    );
    assert_eq!(
        sign_in(&url, "ana@acme.test", &password).await.status(),
        303
    );

    // Another account with its owner.
    let out = admin(
        &[
            "create-owner",
            "--email",
            "bo@other.test",
            "--account",
            "Other",
        ],
        &envs,
    );
    let password = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("password:"))
        .expect("printed password")
        .trim()
        .to_owned();
    assert_eq!(
        sign_in(&url, "bo@other.test", &password).await.status(),
        303
    );
    let again = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["admin", "create-owner", "--email", "bo@other.test"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("email_taken"));
}
