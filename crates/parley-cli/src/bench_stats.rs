//! `parley bench stats`: a year of synthetic statistics (10 million messages by default) as
//! counters in a temporary SQLite file or (`--database-url postgres://…`) a throwaway
//! PostgreSQL database, then statistics queries through the engine (the path
//! `GET /api/v1/stats` takes), each timed several times: the engine's report alone, and the
//! whole answer of the API (the report, the period's spend and the JSON body). The counters
//! are written by bulk SQL (what the triggers would have kept), not by sending 10 million
//! messages.

use std::sync::Arc;
use std::time::Instant;

use parley_domain::{AccountId, ApplicationId};
use parley_engine::stats::{StatsParams, StatsRequest};
use parley_engine::{Engine, EngineConfig, SystemClock};
use parley_store::{PostgresStore, SecretCipher, SqliteStore, Store};

use crate::bench_campaign::BenchDatabase;

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

/// Resident set size in MiB: `VmRSS` (now) or `VmHWM` (the peak since the last reset).
fn rss_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub async fn stats(
    messages: u64,
    recipients: u64,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("parley-bench-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cipher = SecretCipher::from_key(&[7; 32]);
    let (store, pg, sqlite): (Arc<dyn Store>, _, _) = match &database_url {
        Some(url) => {
            let db = BenchDatabase::create(url).await?;
            let store = Arc::new(PostgresStore::connect(&db.url, cipher).await?);
            println!("PostgreSQL database {}", db.name);
            (store.clone(), Some((db, store)), None)
        }
        None => {
            let store = Arc::new(SqliteStore::open(&dir.join("bench.db"), cipher).await?);
            println!("SQLite at {}", dir.join("bench.db").display());
            (store.clone(), None, Some(store))
        }
    };
    let result = run(
        &store,
        pg.as_ref().map(|p| &p.1),
        sqlite.as_ref(),
        messages,
        recipients,
        &dir,
    )
    .await;
    drop((store, sqlite));
    if let Some((db, store)) = pg {
        drop(store);
        db.drop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(
    store: &Arc<dyn Store>,
    pg: Option<&Arc<PostgresStore>>,
    sqlite: Option<&Arc<SqliteStore>>,
    messages: u64,
    recipients: u64,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let account = AccountId::new();
    let app = ApplicationId::new();
    store.create_account(&account, "Bench", YEAR_START).await?;
    store
        .create_application(&app, &account, "Bench", YEAR_START)
        .await?;
    let t = Instant::now();
    let rows = match (pg, sqlite) {
        (Some(pg), _) => pg.bench_stat_counters(&app, YEAR_START, messages).await?,
        (None, Some(sqlite)) => {
            sqlite
                .bench_stat_counters(&app, YEAR_START, messages)
                .await?
        }
        (None, None) => anyhow::bail!("no store"),
    };
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
    // The six views of issue #16, then the worst a caller may ask within the bounds: the most
    // counters a request can read is an hourly view's 1,000 hours (41 days) of every
    // dimension combination; grouped by a dimension with many values it has the most rows.
    let queries: [BenchQuery; 11] = [
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
        (
            "worst: 41 days by hour, per country",
            "2026-11-01",
            "2026-12-12",
            "hour",
            Some("country"),
            None,
        ),
        (
            "worst: 41 days by hour, per campaign",
            "2026-11-01",
            "2026-12-12",
            "hour",
            Some("campaign"),
            None,
        ),
        (
            "worst: 41 days by hour, per origin",
            "2026-11-01",
            "2026-12-12",
            "hour",
            Some("conversation_origin"),
            None,
        ),
        (
            "worst: 41 days by hour, one country, per campaign",
            "2026-11-01",
            "2026-12-12",
            "hour",
            Some("campaign"),
            Some(("country", "DE")),
        ),
        (
            "worst: 400 days by day, per country",
            "2026-01-01",
            "2027-02-05",
            "day",
            Some("country"),
            None,
        ),
    ];
    let (mut worst, mut worst_api) = (0.0f64, 0.0f64);
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
        let mut api_times = Vec::new();
        let mut answer_rows = 0;
        let mut body_bytes = 0;
        for _ in 0..7 {
            let t = Instant::now();
            let r = engine
                .stats(&app, &req)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            answer_rows = r.data.len();
            drop(r);
            // What `GET /api/v1/stats` does: the report and the period's spend (read at once),
            // the JSON body.
            let t = Instant::now();
            let (r, spend) = tokio::join!(
                engine.stats(&app, &req),
                engine.spend(&app, req.from, req.to, &req.filters)
            );
            let r = r.map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let mut view = parley_server::routes::stats::StatsView::from(r);
            view.cost = Some(spend.map_err(|e| anyhow::anyhow!("{}", e.message))?);
            let body = serde_json::to_vec(&view)?;
            api_times.push(t.elapsed().as_secs_f64() * 1000.0);
            body_bytes = body.len();
        }
        times.sort_by(f64::total_cmp);
        api_times.sort_by(f64::total_cmp);
        worst = worst.max(times[times.len() / 2]);
        worst_api = worst_api.max(api_times[api_times.len() / 2]);
        println!(
            "{name:50} {answer_rows:6} rows  engine median {:7.2} ms max {:7.2} ms  \
             API answer median {:7.2} ms max {:7.2} ms ({:.1} MiB JSON)",
            times[times.len() / 2],
            times[times.len() - 1],
            api_times[api_times.len() / 2],
            api_times[api_times.len() - 1],
            body_bytes as f64 / 1_048_576.0
        );
    }
    println!("slowest median: engine {worst:.2} ms, API answer {worst_api:.2} ms (target < 50 ms)");

    // The per-recipient export of a campaign of `recipients`, through the API's streamed
    // response (`campaign_csv_response`), written to a file.
    if recipients > 0 {
        let campaign = parley_domain::CampaignId::new();
        let t = Instant::now();
        match (pg, sqlite) {
            (Some(pg), _) => {
                pg.bench_campaign_messages(&app, campaign.as_str(), YEAR_START, recipients)
                    .await?
            }
            (None, Some(sqlite)) => {
                sqlite
                    .bench_campaign_messages(&app, campaign.as_str(), YEAR_START, recipients)
                    .await?
            }
            (None, None) => anyhow::bail!("no store"),
        }
        println!(
            "synthetic:   a campaign of {recipients} recipients in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        export(&engine, &app, &campaign, recipients, dir).await?;
    }
    Ok(())
}

async fn export(
    engine: &Engine,
    app: &ApplicationId,
    campaign: &parley_domain::CampaignId,
    recipients: u64,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    use std::io::Write;
    // The peak so far is the seeding's: reset it (Linux: 5 → clear_refs resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = rss_mib("VmRSS:");
    let path = dir.join("export.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let t = Instant::now();
    let response = parley_server::routes::stats::campaign_csv_response(
        engine.clone(),
        app.clone(),
        campaign.clone(),
        true,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut body = response.into_body().into_data_stream();
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| anyhow::anyhow!("{e}"))?;
        bytes += chunk.len() as u64;
        lines += chunk.windows(2).filter(|w| w == b"\r\n").count() as u64;
        file.write_all(&chunk)?;
    }
    file.flush()?;
    let took = t.elapsed().as_secs_f64();
    let after = rss_mib("VmRSS:");
    let peak = rss_mib("VmHWM:");
    println!(
        "export:      {} rows, {:.1} MiB of CSV in {took:.2} s ({:.0} rows/s; target < 10 s)",
        lines.saturating_sub(1),
        bytes as f64 / 1_048_576.0,
        lines.saturating_sub(1) as f64 / took
    );
    println!(
        "export RSS:  {before:.1} MiB before, {after:.1} MiB after, {peak:.1} MiB peak during"
    );
    anyhow::ensure!(
        lines == recipients + 1,
        "the export has {lines} lines for {recipients} recipients and a header"
    );
    Ok(())
}
