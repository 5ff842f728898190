//! `parley migrate-store --from sqlite://… --to postgres://…`: moves an installation from
//! SQLite to PostgreSQL (`parley_store::transfer` does the copy and the checks).

use parley_store::transfer::{self, Options, Progress};

/// How often a long table reports its progress.
const EVERY_ROWS: u64 = 50_000;

pub async fn run(from: &str, to: &str, replace: bool, batch: usize) -> anyhow::Result<()> {
    println!("Moving {} to {}", from, redact(to));
    let mut print = |p: Progress<'_>| match p {
        Progress::Copying { table, rows } if rows % EVERY_ROWS == 0 => {
            println!("  {table}: {rows} rows copied…");
        }
        Progress::Copying { .. } => {}
        Progress::Checked(r) => println!(
            "  {}: {} rows copied; count and checksum {} match",
            r.table, r.rows, r.digest
        ),
        Progress::Sequence { table, column } => {
            println!("  {table}.{column}: sequence set past the copied rows")
        }
    };
    let now = parley_engine::Clock::now_millis(&parley_engine::SystemClock);
    let reports =
        transfer::sqlite_to_postgres(from, to, &Options { replace, batch }, now, &mut print)
            .await?;
    let rows: u64 = reports.iter().map(|r| r.rows).sum();
    println!(
        "Done: {} tables, {rows} rows, every count and checksum matches.",
        reports.len()
    );
    println!(
        "Point database.url (PARLEY_DATABASE_URL) at the PostgreSQL database and keep the same master key (PARLEY_MASTER_KEY or <data_dir>/master.key)."
    );
    Ok(())
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}
