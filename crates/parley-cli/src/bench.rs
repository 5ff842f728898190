//! `parley bench audience`: 1,000,000 contacts with 5 tags into a temporary SQLite file through
//! the import path, a three-condition segment count, personalizing every contact for three
//! variables, and the peak resident memory.

use std::sync::Arc;
use std::time::Instant;

use parley_domain::{AccountId, ApplicationId, DynamicText, Segment};
use parley_engine::audience::{ColumnMap, ImportFormat, ImportOptions};
use parley_engine::messages::ContactTags;
use parley_engine::{Clock as _, Engine, EngineConfig, SystemClock};
use parley_store::{SecretCipher, SqliteStore, Store};

const CITIES: [&str; 8] = [
    "Berlin",
    "Hamburg",
    "München",
    "Köln",
    "Frankfurt",
    "Stuttgart",
    "Leipzig",
    "Dresden",
];
const NAMES: [&str; 8] = [
    "ana",
    "björn",
    "çağla",
    "dmitri",
    "eva",
    "françois",
    "günther",
    "zoë",
];
const PLANS: [&str; 3] = ["free", "pro", "team"];

/// Peak resident set size in MiB (VmHWM).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn rows(start: u64, n: u64) -> Vec<u8> {
    let mut out = String::with_capacity(n as usize * 64);
    for i in start..start + n {
        let day = 1 + i % 28;
        let month = 1 + (i / 28) % 12;
        out.push_str(&format!(
            "+49151{:08},{},{},{},2025-{month:02}-{day:02},{}\n",
            10_000_000 + i,
            NAMES[(i % 8) as usize],
            CITIES[(i / 8 % 8) as usize],
            i % 40,
            PLANS[(i % 3) as usize],
        ));
    }
    out.into_bytes()
}

pub async fn audience(contacts: u64) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let path = dir.join("bench.db");
    println!(
        "parley bench audience: {contacts} contacts, 5 tags each, SQLite at {}",
        path.display()
    );
    parley_domain::warm_up();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&path, SecretCipher::from_key(&[7; 32])).await?);
    let now = SystemClock.now_millis();
    let account = AccountId::new();
    let app = ApplicationId::new();
    store.create_account(&account, "bench", now).await?;
    store
        .create_application(&app, &account, "bench", now)
        .await?;
    let engine = Engine::new(
        store.clone(),
        parley_meta::GraphClient::new("http://127.0.0.1:9", parley_meta::DEFAULT_GRAPH_VERSION),
        Arc::new(SystemClock),
        EngineConfig::default(),
    );

    // 1. Import through the same path as POST /api/v1/contacts/import.
    let options = ImportOptions {
        format: ImportFormat::Csv,
        columns: ["visits:visits:integer", "signup_date:signup_date:date"]
            .iter()
            .map(|m| ColumnMap::parse(m).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?,
        ..ImportOptions::default()
    };
    let header = b"phone,first_name,city,visits,signup_date,plan\n".to_vec();
    let chunk = 1_000u64;
    let body = futures::stream::iter(
        std::iter::once(header)
            .chain(
                (0..contacts.div_ceil(chunk))
                    .map(move |c| rows(c * chunk, chunk.min(contacts - c * chunk))),
            )
            .map(Ok::<_, std::io::Error>),
    );
    let job = engine
        .create_import(&app, &options)
        .await
        .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let mut last = Instant::now();
    let job = engine
        .run_import(job, &options, body, |j| {
            if last.elapsed().as_secs() >= 5 {
                last = Instant::now();
                eprintln!("  … {} rows", j.rows_read);
            }
        })
        .await
        .map_err(anyhow::Error::msg)?;
    let import_s = started.elapsed().as_secs_f64();
    println!(
        "import:      {import_s:8.2} s  ({} read, {} created, {} rejected; {:.0} rows/s)",
        job.rows_read,
        job.created,
        job.rejected,
        job.rows_read as f64 / import_s
    );

    // 2. A three-condition segment count.
    let filter = "city = \"berlin\" and visits >= 10 and signup_date > 2025-03-31";
    let segment = Segment::parse(filter)?;
    let started = Instant::now();
    let n = store
        .count_segment(&app, &segment, parley_engine::clock::to_datetime(now))
        .await?;
    let count_s = started.elapsed().as_secs_f64();
    println!("count:       {count_s:8.3} s  (`{filter}` → {n})");

    // 3. Personalize every contact for a template with three variables, reading them in
    //    keyset pages like the campaign planner.
    let vars = [
        "{{first_name|CapitalizeFirst|there}}",
        "{{city|UPPERCASE}}",
        "{{signup_date|date:%d.%m.%Y|}}",
    ]
    .iter()
    .map(|v| DynamicText::parse(v).map_err(anyhow::Error::msg))
    .collect::<anyhow::Result<Vec<_>>>()?;
    let all = Segment::all();
    let started = Instant::now();
    let mut render_time = std::time::Duration::ZERO;
    let mut after: Option<String> = None;
    let (mut rendered, mut skipped, mut bytes) = (0u64, 0u64, 0usize);
    let mut out = String::with_capacity(256);
    loop {
        let page = store
            .recipients_page(
                &app,
                &all,
                after.as_deref(),
                5_000,
                parley_engine::clock::to_datetime(now),
            )
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.phone.clone());
        let t = Instant::now();
        for c in &page {
            let lookup = ContactTags {
                tags: Some(&c.tags),
                phone: &c.phone,
                name: c.name.as_deref(),
            };
            let mut ok = true;
            for v in &vars {
                out.clear();
                if v.render_into(&lookup, &mut out, &parley_domain::Limit::value("v", 1024))
                    .is_err()
                {
                    ok = false;
                }
                bytes += out.len();
            }
            if ok {
                rendered += 1;
            } else {
                skipped += 1;
            }
        }
        render_time += t.elapsed();
    }
    let total_s = started.elapsed().as_secs_f64();
    println!(
        "personalize: {:8.2} s  rendering only, {total_s:.2} s with reading the contacts ({rendered} rendered, {skipped} skipped, {bytes} bytes)",
        render_time.as_secs_f64()
    );
    println!("peak RSS:    {:8.1} MiB (VmHWM)", peak_rss_mib());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("parley-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
