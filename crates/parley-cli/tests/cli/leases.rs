//! Three `parley serve` nodes on one PostgreSQL, the sandbox as its own process (#17): a
//! 20,000-recipient send over four numbers survives one node killed (SIGKILL) and another
//! stopped (SIGSTOP) past its lease and then woken (SIGCONT). Each recipient gets exactly one
//! message as Meta counts them, no number is driven above its throughput in any one-second
//! window, no send reaches Meta under a fencing token older than one Meta already saw for its
//! number, and each lapsed lease is taken over within the lease time.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use parley_sandbox::demo_ids;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::crash::{Proc, free_port, start};
use crate::credentials;

/// The lease of every node's work, short so that the test waits seconds, not minutes.
const NODE_LEASE_MS: u64 = 3_000;
const RECIPIENTS: usize = 20_000;

struct Cluster {
    dir: tempfile::TempDir,
    sandbox: String,
    db: crate::pg::TestDb,
    http: reqwest::Client,
    _sandbox: Proc,
}

/// One `parley serve` process and its address.
struct Node {
    proc: Option<Proc>,
    url: String,
}

impl Node {
    fn pid(&self) -> String {
        self.proc.as_ref().expect("running").0.id().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {sig}");
    }
}

impl Cluster {
    async fn new(first_node_port: u16) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox_port = free_port();
        let sandbox = format!("http://127.0.0.1:{sandbox_port}");
        let db = crate::pg::TestDb::create().await;
        // Meta's webhooks go to the first node, which is never stopped.
        let proc = start(
            &[
                "sandbox".into(),
                "--listen".into(),
                format!("127.0.0.1:{sandbox_port}"),
                "--webhook-url".into(),
                format!("http://127.0.0.1:{first_node_port}/webhooks/whatsapp"),
            ],
            &[],
            "Meta sandbox on",
        );
        Cluster {
            dir,
            sandbox,
            db,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            _sandbox: proc,
        }
    }

    /// `parley serve` on `port`, seeding `seed` contacts on an empty database (0: none).
    fn serve(&self, port: u16, seed: usize) -> Node {
        let config = parley_sandbox::SandboxConfig::demo();
        let envs = vec![
            ("PARLEY_DATA_DIR", self.dir.path().display().to_string()),
            ("PARLEY_DATABASE_URL", self.db.url.clone()),
            ("PARLEY_LISTEN", format!("127.0.0.1:{port}")),
            ("PARLEY_META_GRAPH_URL", self.sandbox.clone()),
            ("PARLEY_META_APP_ID", config.app_id.clone()),
            ("PARLEY_META_APP_SECRET", config.app_secret.clone()),
            ("PARLEY_META_VERIFY_TOKEN", config.verify_token.clone()),
            ("PARLEY_NODE_LEASE_MS", NODE_LEASE_MS.to_string()),
            // The sender loops' and leases' own account (shown only when the test fails).
            (
                "RUST_LOG",
                "warn,parley_engine::sender=info,parley_engine::leases=info".into(),
            ),
        ];
        // Rows a dead node left `sending` go back to the queue 3 + 10 s after their claim,
        // unless a status webhook names them (a send Meta took).
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--lease-ms".into(),
            "3000".into(),
            "--crash-grace-ms".into(),
            "10000".into(),
        ];
        if seed > 0 {
            args.extend(["--seed-demo".into(), seed.to_string()]);
        }
        Node {
            proc: Some(start(&args, &envs, "Parley listens on")),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn graph(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .post(format!("{}/v27.0/{path}", self.sandbox))
            .bearer_auth(demo_ids::ACCESS_TOKEN)
            .json(body)
            .send()
            .await
            .expect("graph");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn sandbox(&self, method: reqwest::Method, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.sandbox))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("sandbox {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "sandbox {path}: {status} {v}");
        v
    }

    /// A number added, verified and registered at Meta, as its business would.
    async fn add_number(&self, i: u32) -> String {
        let added = self
            .graph(
                &format!("{}/phone_numbers", demo_ids::WABA_ID),
                &json!({"cc": "1", "phone_number": format!("415555{i:04}"),
                        "verified_name": "Parley Demo Shop"}),
            )
            .await;
        let id = added["id"].as_str().expect("id").to_owned();
        self.graph(
            &format!("{id}/request_code"),
            &json!({"code_method": "SMS", "language": "en_US"}),
        )
        .await;
        let code = self
            .sandbox(
                reqwest::Method::GET,
                &format!("/sandbox/phone_numbers/{id}/code"),
                &json!({}),
            )
            .await;
        self.graph(&format!("{id}/verify_code"), &json!({"code": code["code"]}))
            .await;
        self.graph(
            &format!("{id}/register"),
            &json!({"messaging_product": "whatsapp", "pin": "123456"}),
        )
        .await;
        id
    }

    async fn api(
        &self,
        node: &Node,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let token = credentials(self.dir.path())["api_token"]
            .as_str()
            .expect("token")
            .to_owned();
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", node.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A transactional campaign from `pn` to the contacts `filter` selects; its id.
    async fn campaign(&self, node: &Node, pn: &str, filter: &str) -> String {
        let (status, created) = self
            .api(
                node,
                reqwest::Method::POST,
                "/campaigns",
                Some(&json!({
                    "name": format!("Nodes {pn} {filter}"),
                    "phone_number_id": pn,
                    "template": {"name": "welcome", "language": "en",
                                 "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}},
                    "audience": {"filter": filter},
                    "type": "transactional"
                })),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().expect("id").to_owned()
    }

    /// Starts campaign `id`.
    async fn start(&self, node: &Node, id: &str) {
        let (status, body) = self
            .api(
                node,
                reqwest::Method::POST,
                &format!("/campaigns/{id}/start"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Waits (at most `limit`) until campaign `id` completed; its statistics.
    async fn completed(&self, node: &Node, id: &str, limit: Duration) -> Value {
        let stats = || async {
            self.api(
                node,
                reqwest::Method::GET,
                &format!("/campaigns/{id}/stats"),
                None,
            )
            .await
        };
        self.until("a campaign did not complete", limit, || async {
            let (status, s) = stats().await;
            status == 200 && s["state"] == "completed"
        })
        .await;
        stats().await.1
    }

    /// The sender leases a node holds: resource → token.
    async fn senders(&self, node: &Node) -> BTreeMap<String, i64> {
        self.held(node, "sender:").await
    }

    /// The leases a node holds (not being given up) whose resource starts with `prefix`:
    /// resource → token.
    async fn held(&self, node: &Node, prefix: &str) -> BTreeMap<String, i64> {
        let v: Value = self
            .http
            .get(format!("{}/readyz", node.url))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("readyz json");
        v["leases"]
            .as_array()
            .expect("leases")
            .iter()
            .filter(|l| {
                l["resource"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(prefix))
            })
            .filter(|l| l["releasing"] == false)
            .map(|l| {
                (
                    l["resource"].as_str().unwrap_or_default().to_owned(),
                    l["token"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The lease rows as the database has them: resource → (owner, token, taken_after_ms).
    async fn lease_rows(&self) -> HashMap<String, (String, i64, i64, i64)> {
        let mut c = sqlx::PgConnection::connect(&self.db.url)
            .await
            .expect("PostgreSQL");
        let rows: Vec<(String, String, i64, i64, i64)> =
            sqlx::query_as("SELECT resource, owner, token, taken_after_ms, refused FROM leases")
                .fetch_all(&mut c)
                .await
                .expect("leases");
        let _ = c.close().await;
        rows.into_iter()
            .map(|(r, o, t, a, n)| (r, (o, t, a, n)))
            .collect()
    }

    async fn accepted(&self) -> usize {
        let v = self.throughput().await;
        v["data"]
            .as_object()
            .expect("data")
            .values()
            .map(|n| n["accepted"].as_u64().unwrap_or(0) as usize)
            .sum()
    }

    async fn throughput(&self) -> Value {
        self.sandbox(reqwest::Method::GET, "/sandbox/throughput", &json!({}))
            .await
    }

    /// When Meta received each send to `pn` whose fencing token was lower than one an
    /// earlier send to it carried (ms since the epoch).
    async fn stale_sends(&self, pn: &str) -> Vec<i64> {
        let v = self
            .sandbox(
                reqwest::Method::GET,
                &format!("/sandbox/requests?sends=true&phone_number_id={pn}"),
                &json!({}),
            )
            .await;
        let mut sends: Vec<(u64, i64, i64)> = v["data"]
            .as_array()
            .expect("requests")
            .iter()
            .filter_map(|r| {
                Some((
                    r["seq"].as_u64()?,
                    r["fence"].as_i64()?,
                    r["received_ms"].as_i64()?,
                ))
            })
            .collect();
        sends.sort_unstable();
        let mut highest = i64::MIN;
        let mut stale = Vec::new();
        for (_, fence, at) in sends {
            if fence < highest {
                stale.push(at);
            }
            highest = highest.max(fence);
        }
        stale
    }

    /// Polls `check` (every 100 ms, at most `limit`).
    async fn until<F, Fut>(&self, what: &str, limit: Duration, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        while !check().await {
            if Instant::now() >= deadline {
                self.explain().await;
                panic!("{what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What a failing wait leaves behind to explain it: Meta's view per number, the lease
    /// rows, and the messages per number and state with their due and claim times (ms before
    /// or after the database's now), printed before the test fails.
    async fn explain(&self) {
        println!("Meta's throughput view: {}", self.throughput().await);
        let mut rows: Vec<_> = self.lease_rows().await.into_iter().collect();
        rows.sort();
        for (r, (owner, token, after, refused)) in rows {
            println!(
                "lease {r}: {owner} token {token}, taken {after} ms after lapsing, {refused} refused"
            );
        }
        let mut c = sqlx::PgConnection::connect(&self.db.url)
            .await
            .expect("PostgreSQL");
        // Number, state, count, due from and to, claims until.
        type States = Vec<(String, String, i64, Option<i64>, Option<i64>, Option<i64>)>;
        let states: States =
            sqlx::query_as(
                "SELECT phone_number_id, state, count(*),
                        min(next_attempt_at) - (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT,
                        max(next_attempt_at) - (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT,
                        max(lease_until) - (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
                 FROM messages GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .fetch_all(&mut c)
            .await
            .expect("messages");
        for (pn, state, n, due_min, due_max, lease_max) in states {
            println!(
                "messages {pn} {state}: {n}, due {due_min:?}..{due_max:?} ms, claims until {lease_max:?} ms"
            );
        }
        // State, what it waits for, its statement.
        type Sessions = Vec<(String, Option<String>, Option<String>, Option<String>)>;
        let sessions: Sessions =
            sqlx::query_as(
                "SELECT coalesce(state, ''), wait_event_type, wait_event, left(query, 160)
                 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND state <> 'idle'",
            )
            .fetch_all(&mut c)
            .await
            .expect("pg_stat_activity");
        let _ = c.close().await;
        for s in sessions {
            println!("session {s:?}");
        }
    }
}

#[tokio::test]
async fn three_nodes_send_each_recipient_once_through_a_kill_and_a_stop_past_the_lease() {
    let ports = [free_port(), free_port(), free_port()];
    let cluster = Cluster::new(ports[0]).await;
    // Four numbers at Meta, 80 messages per second each, no messaging limit in the way.
    let mut numbers = vec![demo_ids::PHONE_NUMBER_ID.to_owned()];
    for i in 1..=3 {
        numbers.push(cluster.add_number(i).await);
    }
    for pn in &numbers {
        cluster
            .sandbox(
                reqwest::Method::POST,
                &format!("/sandbox/phone_numbers/{pn}/limit"),
                &json!({"limit": "TIER_UNLIMITED"}),
            )
            .await;
    }
    cluster
        .sandbox(
            reqwest::Method::POST,
            "/sandbox/behaviour",
            &json!({"webhook_attempts": 60}),
        )
        .await;

    let first = cluster.serve(ports[0], RECIPIENTS);
    let mut nodes = vec![
        first,
        cluster.serve(ports[1], 0),
        cluster.serve(ports[2], 0),
    ];
    // The numbers spread over the three nodes: 2, 1, 1.
    cluster
        .until(
            "the numbers were not spread over the nodes",
            Duration::from_secs(60),
            || async {
                let mut counts = Vec::new();
                for n in &nodes {
                    counts.push(cluster.senders(n).await.len());
                }
                counts.sort_unstable();
                counts == [1, 1, 2]
            },
        )
        .await;

    // One campaign per number, the audience split four ways by visits (0..40).
    let bounds = [(0, 10), (10, 20), (20, 30), (30, 40)];
    let mut campaigns = Vec::new();
    for (pn, (lo, hi)) in numbers.iter().zip(bounds) {
        campaigns.push(
            cluster
                .campaign(&nodes[0], pn, &format!("visits >= {lo} and visits < {hi}"))
                .await,
        );
    }
    let mut planned = 0;
    for id in &campaigns {
        let (status, plan) = cluster
            .api(
                &nodes[0],
                reqwest::Method::GET,
                &format!("/campaigns/{id}/plan"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{plan}");
        planned += plan["recipients"].as_u64().expect("recipients") as usize;
    }
    assert_eq!(planned, RECIPIENTS);
    for id in &campaigns {
        cluster.start(&nodes[0], id).await;
    }

    // A fifth of the way: the second node dies (SIGKILL).
    cluster
        .until(
            "Meta took no 4,000 sends",
            Duration::from_secs(120),
            || async { cluster.accepted().await >= 4_000 },
        )
        .await;
    let killed = cluster.senders(&nodes[1]).await;
    assert!(!killed.is_empty(), "the second node held no number");
    drop(nodes[1].proc.take()); // SIGKILL
    println!("killed the second node holding {killed:?}");

    // Two fifths: the third node is stopped (SIGSTOP), and stays stopped until its numbers
    // went to the first node under new tokens and Meta saw sends under them.
    cluster
        .until(
            "Meta took no 8,000 sends",
            Duration::from_secs(120),
            || async { cluster.accepted().await >= 8_000 },
        )
        .await;
    let stopped = cluster.senders(&nodes[2]).await;
    assert!(!stopped.is_empty(), "the third node held no number");
    nodes[2].signal("-STOP");
    println!("stopped the third node holding {stopped:?}");
    let gone: BTreeMap<String, i64> = killed
        .iter()
        .chain(&stopped)
        .map(|(r, t)| (r.clone(), *t))
        .collect();
    cluster
        .until(
            "the first node did not take over the lapsed leases",
            Duration::from_secs(60),
            || async {
                let held = cluster.senders(&nodes[0]).await;
                gone.iter()
                    .all(|(r, t)| held.get(r).is_some_and(|new| new > t))
            },
        )
        .await;
    // Taken over within the lease time of lapsing (the database's own clock).
    let rows = cluster.lease_rows().await;
    for r in gone.keys() {
        let (owner, _, taken_after, _) = &rows[r];
        println!("{r}: taken by {owner} {taken_after} ms after it lapsed");
        assert!(
            (0..NODE_LEASE_MS as i64).contains(taken_after),
            "{r} was taken over {taken_after} ms after it lapsed"
        );
    }
    cluster
        .until(
            "Meta saw no send under the new tokens",
            Duration::from_secs(60),
            || async {
                let v = cluster.throughput().await;
                gone.iter().all(|(r, t)| {
                    let pn = r.trim_start_matches("sender:");
                    v["data"][pn]["fence_tokens"]
                        .as_array()
                        .is_some_and(|ts| ts.iter().any(|x| x.as_i64().is_some_and(|x| x > *t)))
                })
            },
        )
        .await;
    let woke_ms = wall_ms();
    nodes[2].signal("-CONT");
    println!("woke the third node");
    // It rejoins and gets a fair share back (the first node gives one up).
    cluster
        .until(
            "the woken node got no number back",
            Duration::from_secs(60),
            || async { !cluster.senders(&nodes[2]).await.is_empty() },
        )
        .await;

    // Every campaign completes.
    for id in &campaigns {
        let s = cluster
            .completed(&nodes[0], id, Duration::from_secs(240))
            .await;
        assert_eq!(s["failed"], 0, "{s}");
    }

    // Exactly once, as Meta counts.
    let v = cluster
        .sandbox(reqwest::Method::GET, "/sandbox/messages", &json!({}))
        .await;
    let mut sent: HashMap<String, u32> = HashMap::new();
    for m in v["data"].as_array().expect("messages") {
        if m["type"] == "template" {
            *sent
                .entry(m["to"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    let doubled: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "sent twice: {doubled:?}");
    assert_eq!(sent.len(), RECIPIENTS, "recipients Meta got a message for");

    // No number above its throughput in any one-second window, and no send under a token
    // older than one Meta had already seen for its number.
    let v = cluster.throughput().await;
    for pn in &numbers {
        println!("{pn}: {}", v["data"][pn.as_str()]);
    }
    for pn in &numbers {
        let t = &v["data"][pn.as_str()];
        let most = t["max_in_one_second"].as_u64().expect("max");
        let mps = t["throughput_mps"].as_u64().expect("mps");
        // Counted by arrival, as Meta counts: each send holds its slot until a second after
        // its answer, and a number's new holder waits out its predecessor's last second
        // (`pacer.rs`), so bunching on a loaded machine cannot push a window over the limit.
        // Two nodes driving one number, the failure leases prevent, arrive at twice the rate.
        assert!(
            most <= mps,
            "{pn} got {most} sends in one second (limit {mps}): {t}"
        );
        assert_eq!(
            t["refused_for_throughput"], 0,
            "{pn}: sends Meta refused for throughput (130429): {t}"
        );
        // A send under a token older than one Meta had already seen can only be a request
        // the third node had let through its last lease check when SIGSTOP froze it: it
        // reaches Meta when the node wakes, and nothing can call it back (Meta takes no
        // fencing token). Any other would be a node sending after its lease lapsed.
        let stale = cluster.stale_sends(pn).await;
        assert!(
            stale.len() as u64 <= mps
                && stale
                    .iter()
                    .all(|at| (woke_ms - 100..=woke_ms + 2_000).contains(at)),
            "{pn}: sends under a stale token other than those in flight when the third node \
             stopped (it woke at {woke_ms} ms): arrived at {stale:?}; {t}"
        );
    }
    let refused: i64 = cluster.lease_rows().await.values().map(|r| r.3).sum();
    println!("claims the database refused under a stale token: {refused}");

    drop(nodes);
    let Cluster { db, .. } = cluster;
    db.finish().await;
}

fn wall_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

/// A node stopped in the middle of a transaction holds its row locks until PostgreSQL ends
/// its session, and the crash recovery's updates of those rows wait for them. The loops of the
/// numbers a node takes over meanwhile must not wait with them: a three-node run once sent
/// nothing for a minute under the leases it had taken over so, its supervisor stuck in the
/// recovery pass. Here another session holds stale `sending` rows locked while the node loses
/// its number's lease to a "ghost" holder and takes it back: the loop under the new token
/// starts and sends all the same.
#[tokio::test]
async fn rows_another_session_holds_locked_do_not_stop_a_retaken_numbers_loop() {
    let port = free_port();
    let cluster = Cluster::new(port).await;
    let node = cluster.serve(port, 40);
    let pn = demo_ids::PHONE_NUMBER_ID;
    let resource = format!("sender:{pn}");
    cluster
        .until(
            "the node took no sender lease",
            Duration::from_secs(60),
            || async { cluster.senders(&node).await.contains_key(&resource) },
        )
        .await;
    let first = cluster.campaign(&node, pn, "visits >= 0").await;
    cluster.start(&node, &first).await;
    cluster
        .completed(&node, &first, Duration::from_secs(120))
        .await;

    // Three of its messages left `sending` by a "dead" claim, and held locked by a session
    // that, like a stopped node, neither commits nor goes away.
    let mut locker = sqlx::PgConnection::connect(&cluster.db.url)
        .await
        .expect("PostgreSQL");
    let stale = sqlx::query(
        "UPDATE messages SET state = 'sending', lease_until = 1, stale_since = NULL, wamid = NULL
         WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT 3)",
    )
    .execute(&mut locker)
    .await
    .expect("stale rows")
    .rows_affected();
    assert_eq!(stale, 3);
    let mut held = locker.begin().await.expect("begin");
    let locked: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM messages WHERE state = 'sending' FOR UPDATE")
            .fetch_all(&mut *held)
            .await
            .expect("lock");
    assert_eq!(locked.len(), 3);
    // A supervisor tick (every 5 s) runs into them.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The lease goes to a ghost for four seconds; the node loses it and takes it back.
    let mut c = sqlx::PgConnection::connect(&cluster.db.url)
        .await
        .expect("PostgreSQL");
    let ghost: i64 = sqlx::query_scalar(
        "UPDATE leases SET owner = 'node_ghost', token = token + 1,
                expires_at = (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + 4000
         WHERE resource = $1 RETURNING token",
    )
    .bind(&resource)
    .fetch_one(&mut c)
    .await
    .expect("ghost lease");
    let _ = c.close().await;
    let second = cluster.campaign(&node, pn, "visits >= 0").await;
    cluster.start(&node, &second).await;
    cluster
        .until(
            "the node did not take the number back",
            Duration::from_secs(60),
            || async {
                cluster
                    .senders(&node)
                    .await
                    .get(&resource)
                    .is_some_and(|t| *t > ghost)
            },
        )
        .await;
    cluster
        .until(
            "the retaken number's loop sent nothing while rows were held locked",
            Duration::from_secs(30),
            || async {
                cluster.throughput().await["data"][pn]["fence_tokens"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|t| t.as_i64().is_some_and(|t| t > ghost)))
            },
        )
        .await;

    held.rollback().await.expect("rollback");
    let _ = locker.close().await;
    drop(node);
    let Cluster { db, .. } = cluster;
    db.finish().await;
}

/// The periodic jobs (`job:*`: template sync, audit retention, webhook processing, media
/// cleanup, event deliveries) each have one owner among the worker nodes, and when the owner
/// dies (SIGKILL) the other node takes each over, under a higher token, within the lease time
/// of its lapsing.
#[tokio::test]
async fn each_periodic_job_has_one_owner_and_a_dead_owners_jobs_are_taken_over() {
    const JOBS: [&str; 5] = [
        "job:template_sync",
        "job:audit_retention",
        "job:webhook_processor",
        "job:media_cleanup",
        "job:event_deliveries",
    ];
    let ports = [free_port(), free_port()];
    let cluster = Cluster::new(ports[0]).await;
    let mut nodes = vec![cluster.serve(ports[0], 10), cluster.serve(ports[1], 0)];
    cluster
        .until(
            "the jobs have no single owner",
            Duration::from_secs(60),
            || async {
                let a = cluster.held(&nodes[0], "job:").await;
                let b = cluster.held(&nodes[1], "job:").await;
                JOBS.iter()
                    .all(|j| a.contains_key(*j) != b.contains_key(*j))
            },
        )
        .await;
    let (a, b) = (
        cluster.held(&nodes[0], "job:").await,
        cluster.held(&nodes[1], "job:").await,
    );
    assert!(
        a.keys().all(|j| !b.contains_key(j)),
        "a job held by both nodes: {a:?} {b:?}"
    );
    // The node holding the event deliveries dies, with every job it holds.
    let owner = usize::from(!a.contains_key("job:event_deliveries"));
    let gone = if owner == 0 { a } else { b };
    drop(nodes[owner].proc.take()); // SIGKILL
    let other = &nodes[1 - owner];
    cluster
        .until(
            "the other node did not take over the dead node's jobs",
            Duration::from_secs(30),
            || async {
                let held = cluster.held(other, "job:").await;
                JOBS.iter().all(|j| held.contains_key(*j)) && gone.iter().all(|(r, t)| held[r] > *t)
            },
        )
        .await;
    let rows = cluster.lease_rows().await;
    for r in gone.keys() {
        let (_, _, taken_after, _) = &rows[r];
        println!("{r}: taken over {taken_after} ms after it lapsed");
        assert!(
            (0..NODE_LEASE_MS as i64).contains(taken_after),
            "{r} was taken over {taken_after} ms after it lapsed"
        );
    }
    drop(nodes);
    let Cluster { db, .. } = cluster;
    db.finish().await;
}
