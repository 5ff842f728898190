//! `parley bench stats`: a year of synthetic statistics (10 million messages by default) as
//! counters in a temporary SQLite file, then statistics queries through the engine (the path
//! `GET /api/v1/stats` takes), each timed several times. The counters are written by bulk SQL
//! (what the triggers would have kept), not by sending 10 million messages.

use std::sync::Arc;
use std::time::Instant;

use parley_domain::{AccountId, ApplicationId};
use parley_engine::stats::{StatsParams, StatsRequest};
use parley_engine::{Engine, EngineConfig, SystemClock};
use parley_store::{SecretCipher, SqliteStore, Store};

/// A timed query: name, from, to, interval, grouping, filter.
type BenchQuery = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<(&'static str, &'static str)>,
);

/// 2026-01-01T00:00:00Z.
const YEAR_START: i64 = 1_767_225_600_000;

pub async fn stats(messages: u64) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("parley-bench-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store =
        Arc::new(SqliteStore::open(&dir.join("bench.db"), SecretCipher::from_key(&[7; 32])).await?);
    let account = AccountId::new();
    let app = ApplicationId::new();
    store.create_account(&account, "Bench", YEAR_START).await?;
    store
        .create_application(&app, &account, "Bench", YEAR_START)
        .await?;
    let t = Instant::now();
    let rows = store
        .bench_stat_counters(&app, YEAR_START, messages)
        .await?;
    println!(
        "synthetic:   {messages} messages over 2026 as {rows} counter rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let engine = Engine::new(
        store.clone(),
        parley_meta::GraphClient::new("http://127.0.0.1:9", parley_meta::DEFAULT_GRAPH_VERSION),
        Arc::new(SystemClock),
        EngineConfig::default(),
    );
    let queries: [BenchQuery; 6] = [
        (
            "year by month",
            "2026-01-01",
            "2027-01-01",
            "month",
            None,
            None,
        ),
        (
            "year by day, per campaign",
            "2026-01-01",
            "2027-01-01",
            "day",
            Some("campaign"),
            None,
        ),
        (
            "year by week, per country",
            "2026-01-01",
            "2027-01-01",
            "week",
            Some("country"),
            None,
        ),
        (
            "year by month, per category",
            "2026-01-01",
            "2027-01-01",
            "month",
            Some("category"),
            None,
        ),
        (
            "one campaign's year by day, per number",
            "2026-01-01",
            "2027-01-01",
            "day",
            Some("phone_number"),
            Some(("campaign", "cmp_bench_7")),
        ),
        (
            "41 days by hour, per template",
            "2026-11-01",
            "2026-12-12",
            "hour",
            Some("template"),
            None,
        ),
    ];
    let mut worst = 0.0f64;
    for (name, from, to, interval, group, filter) in queries {
        let req = StatsRequest::parse(
            &StatsParams {
                from: Some(from.into()),
                to: Some(to.into()),
                interval: Some(interval.into()),
                group_by: group.map(str::to_owned),
                filters: filter
                    .map(|(k, v)| vec![(k.to_owned(), v.to_owned())])
                    .unwrap_or_default(),
            },
            YEAR_START,
        )
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let mut times = Vec::new();
        let mut answer_rows = 0;
        for _ in 0..7 {
            let t = Instant::now();
            let r = engine
                .stats(&app, &req)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            answer_rows = r.data.len();
        }
        times.sort_by(f64::total_cmp);
        worst = worst.max(times[times.len() - 1]);
        println!(
            "{name:40} {answer_rows:6} rows  median {:7.2} ms  max {:7.2} ms",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    println!("slowest query: {worst:.2} ms (target < 50 ms)");
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
