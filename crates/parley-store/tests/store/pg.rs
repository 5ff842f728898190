//! PostgreSQL for the store tests, found or started without Docker.
//!
//! - `PARLEY_TEST_POSTGRES_URL=postgres://user:pass@host:port/db` uses that server: each test
//!   gets a fresh database `parley_test_<random>` (dropped when the test passes).
//! - Otherwise the first test of the process starts a throwaway cluster from the newest
//!   `/usr/lib/postgresql/*/bin` (or `initdb` on PATH): `initdb` into
//!   `/tmp/parley-test-pg-<pid>-<random>/data` (as the `postgres` user when running as root,
//!   since initdb refuses root), then `pg_ctl start` on a free 127.0.0.1 port with the socket
//!   in that directory and `fsync=off`. Each test creates its own database in it.
//! - Nothing outlives the test process: a watchdog shell in its own process group (so Ctrl-C
//!   does not kill it first) polls the test process and, once it is gone however it ended,
//!   runs `pg_ctl stop -m immediate` and deletes the directory. Drop guards in statics never
//!   run at exit, hence the watchdog. As a second net, each start stops and deletes clusters
//!   left by test processes that no longer exist (`owner.pid` in each directory), and
//!   PostgreSQL itself shuts down when its data directory disappears.
//! - No PostgreSQL at all is a test failure saying `apt-get install -y postgresql`, never a
//!   silent skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

const INSTALL_HINT: &str = "install the PostgreSQL server with `apt-get install -y postgresql` \
     (Debian/Ubuntu), or point PARLEY_TEST_POSTGRES_URL at a server \
     (postgres://user:pass@host:port/db) where that user may create databases";

const DIR_PREFIX: &str = "parley-test-pg-";

/// Where test databases are created.
enum Server {
    /// A server the developer gave: a test database's URL is `{prefix}/{name}{query}`.
    External {
        prefix: String,
        query: String,
        admin_url: String,
    },
    /// Our own cluster, stopped by the watchdog when this process ends.
    Local { port: u16 },
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// The server, found or started by the first caller; later callers wait for it.
fn server() -> &'static Result<Server, String> {
    SERVER.get_or_init(|| match std::env::var("PARLEY_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => external(url.trim()),
        _ => start_local(),
    })
}

fn external(url: &str) -> Result<Server, String> {
    let scheme_end = url
        .find("://")
        .ok_or_else(|| format!("PARLEY_TEST_POSTGRES_URL `{url}` is not a postgres:// URL"))?
        + 3;
    let (without_query, query) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let prefix = match without_query[scheme_end..].find('/') {
        Some(i) => &without_query[..scheme_end + i],
        None => without_query,
    };
    Ok(Server::External {
        prefix: prefix.to_owned(),
        query: query.to_owned(),
        admin_url: url.to_owned(),
    })
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub async fn create() -> TestDb {
        let server = match tokio::task::spawn_blocking(server).await {
            Ok(Ok(server)) => server,
            Ok(Err(e)) => panic!("PostgreSQL for the store tests: {e}"),
            Err(e) => panic!("PostgreSQL for the store tests: {e}"),
        };
        let name = format!("parley_test_{:016x}", rand::random::<u64>());
        let (admin_url, url) = match server {
            Server::External {
                prefix,
                query,
                admin_url,
            } => (admin_url.clone(), format!("{prefix}/{name}{query}")),
            Server::Local { port } => (
                format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                format!("postgres://postgres@127.0.0.1:{port}/{name}"),
            ),
        };
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to PostgreSQL at {admin_url}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating the test database {name}: {e}"));
        let _ = admin.close().await;
        TestDb { url, name }
    }

    /// Drops the database on a server we do not own; our own cluster is deleted whole.
    pub async fn finish(self) {
        if let Some(Ok(Server::External { admin_url, .. })) = SERVER.get()
            && let Ok(mut admin) = PgConnection::connect(admin_url).await
        {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await;
            let _ = admin.close().await;
        }
    }
}

/// The directory with `initdb`, `pg_ctl` and `postgres`: the newest version installed.
fn find_bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let bin = entry.path().join("bin");
            let version = entry
                .file_name()
                .to_string_lossy()
                .split('.')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .ok_or_else(|| {
            format!(
                "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH: {INSTALL_HINT}"
            )
        })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program args…`, as the `postgres` user when we are root (initdb and postgres refuse root).
fn pg_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: could not run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

fn process_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid.trim()).exists()
}

/// Stops and deletes clusters whose test process is gone (its watchdog was killed too).
fn clean_stale(bin: &Path, as_postgres: bool) {
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let owner = std::fs::read_to_string(dir.join("owner.pid")).unwrap_or_default();
        if !owner.trim().is_empty() && process_alive(&owner) {
            continue;
        }
        if dir.join("data/postmaster.pid").exists() {
            let mut stop = pg_command(&bin.join("pg_ctl"), as_postgres);
            stop.arg("-D")
                .arg(dir.join("data"))
                .args(["stop", "-m", "immediate", "-s"]);
            let _ = run(stop, "stopping a stale test cluster");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn start_local() -> Result<Server, String> {
    let bin = find_bin_dir()?;
    let as_postgres = running_as_root();
    clean_stale(&bin, as_postgres);

    let dir = std::env::temp_dir().join(format!(
        "{DIR_PREFIX}{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::write(dir.join("owner.pid"), std::process::id().to_string())
        .map_err(|e| format!("writing {}/owner.pid: {e}", dir.display()))?;
    // The watchdog first, so that even a failed start is cleaned up.
    spawn_watchdog(&bin, &dir, as_postgres)?;
    if as_postgres {
        let mut chown = Command::new("chown");
        chown.arg("-R").arg("postgres:postgres").arg(&dir);
        run(
            chown,
            "giving the test cluster directory to the postgres user",
        )?;
    }
    let data = dir.join("data");
    let mut initdb = pg_command(&bin.join("initdb"), as_postgres);
    initdb.arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-locale",
        "--no-sync",
    ]);
    run(initdb, "initdb")?;

    let mut last_error = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
            dir.display()
        );
        let mut start = pg_command(&bin.join("pg_ctl"), as_postgres);
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "60", "-s", "-o", &options, "start"]);
        match run(start, "pg_ctl start") {
            Ok(()) => return Ok(Server::Local { port }),
            Err(e) => {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                last_error = format!("{e}\nserver log:\n{log}");
                if !log.contains("Address already in use") {
                    break;
                }
            }
        }
    }
    Err(format!(
        "could not start PostgreSQL from {}: {last_error}",
        bin.display()
    ))
}

/// A shell in its own process group that waits for this process to end, then stops the
/// cluster and deletes its directory.
fn spawn_watchdog(bin: &Path, dir: &Path, as_postgres: bool) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let runuser = if as_postgres {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         if [ -f '{dir}/data/postmaster.pid' ]; then {runuser}'{pg_ctl}' -D '{dir}/data' stop -m immediate -s; fi; \
         rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display(),
        pg_ctl = bin.join("pg_ctl").display(),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the cleanup watchdog: {e}"))
}
