//! `parley contacts import FILE`: the API's streamed import (`Engine::run_import`) run against
//! the configured database, with a progress bar. Bad rows never stop it; they are written next
//! to the file as `FILE.rejected.csv` (line, reason, row).

use parley_domain::ImportState;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use parley_engine::audience::{ColumnMap, ImportFormat, ImportOptions, Separator, TextEncoding};
use parley_engine::{Engine, EngineConfig, SystemClock};
use parley_meta::GraphClient;
use tokio::io::AsyncReadExt;

use crate::config;

/// Exit code when the import finished but rejected some rows.
pub const EXIT_REJECTED: u8 = 2;

#[derive(Subcommand)]
pub enum ContactsAction {
    /// Import contacts from a CSV (first row names the columns), NDJSON or .xlsx file (its
    /// first sheet), streamed. Exits 0 when every row was taken, 2 when some were rejected
    /// (listed in FILE.rejected.csv), 1 when the import could not run.
    Import {
        /// The file to read.
        file: PathBuf,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// `csv`, `ndjson` or `xlsx` (default: from the file's extension, else csv; a file
        /// that is a zip archive is read as a workbook).
        #[arg(long)]
        format: Option<String>,
        /// The file's text encoding: utf-8, utf-16le, utf-16be, windows-1251, windows-1252
        /// (default: detected from the head of the file).
        #[arg(long)]
        encoding: Option<String>,
        /// CSV's cell separator: comma, semicolon, tab (or `,` `;`; default: detected from
        /// the header).
        #[arg(long)]
        separator: Option<String>,
        /// Default country (ISO code, e.g. DE) for phone numbers written without a country
        /// code (`0151 23456789`); numbers with `+` or `00` are read as they are.
        #[arg(long)]
        country: Option<String>,
        /// CSV column mapping `column:tag:type`, repeatable. Types: string, integer, float,
        /// boolean, date, datetime, list (`;`-separated). Map a column to `phone`, `name`,
        /// `locale`, `timezone` or `subscription` for those fields, or to an empty tag
        /// (`column:`) to skip it. Unmapped columns become string tags named like the column.
        #[arg(long = "map", value_name = "COLUMN:TAG:TYPE")]
        map: Vec<String>,
        /// Application id (`app_…`); defaults to the only application.
        #[arg(long)]
        application: Option<String>,
        /// Resume an interrupted import (`imp_…`) with the same file: the rows it committed
        /// are skipped, not imported twice; the import's own format and mapping apply.
        #[arg(long, value_name = "IMPORT_ID")]
        resume: Option<String>,
    },
}

/// Runs the action; `Ok(code)` is the process's exit code.
pub async fn run(action: ContactsAction) -> anyhow::Result<u8> {
    match action {
        ContactsAction::Import {
            file,
            config,
            format,
            encoding,
            separator,
            country,
            map,
            application,
            resume,
        } => {
            let reading = Reading {
                format,
                encoding,
                separator,
                country,
                map,
            };
            import(file, config, reading, application, resume).await
        }
    }
}

/// How the command line says to read the file.
struct Reading {
    format: Option<String>,
    encoding: Option<String>,
    separator: Option<String>,
    country: Option<String>,
    map: Vec<String>,
}

impl Reading {
    fn options(self, file: &std::path::Path) -> anyhow::Result<ImportOptions> {
        let format = match self.format {
            Some(f) => ImportFormat::parse(&f)
                .with_context(|| format!("--format `{f}` is not csv, ndjson or xlsx"))?,
            None => match file.extension().and_then(|e| e.to_str()) {
                Some(e) if e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl") => {
                    ImportFormat::Ndjson
                }
                Some(e) if e.eq_ignore_ascii_case("xlsx") => ImportFormat::Xlsx,
                _ => ImportFormat::Csv,
            },
        };
        let columns = self
            .map
            .iter()
            .map(|m| ColumnMap::parse(m).map_err(|e| anyhow::anyhow!("--map {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let encoding = match self.encoding.as_deref() {
            None | Some("auto") => None,
            Some(e) => Some(TextEncoding::parse(e).with_context(|| {
                format!("--encoding `{e}` is not utf-8, utf-16le, utf-16be, windows-1251 or windows-1252")
            })?),
        };
        let separator = match self.separator.as_deref() {
            None | Some("auto") => None,
            Some(s) => Some(
                Separator::parse(s)
                    .with_context(|| format!("--separator `{s}` is not comma, semicolon or tab"))?,
            ),
        };
        let country = match self.country.as_deref() {
            None => None,
            Some(c) => Some(
                parley_domain::Region::parse(c).map_err(|e| anyhow::anyhow!("--country {e}"))?,
            ),
        };
        Ok(ImportOptions {
            format,
            columns,
            encoding,
            separator,
            country,
            sheet: None,
        })
    }
}

async fn import(
    file: PathBuf,
    config: Option<PathBuf>,
    reading: Reading,
    application: Option<String>,
    resume: Option<String>,
) -> anyhow::Result<u8> {
    let options = reading.options(&file)?;
    let handle = tokio::fs::File::open(&file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let size = handle.metadata().await.map(|m| m.len()).unwrap_or(0);

    let cfg = config::Config::load_unchecked(config.as_deref())?;
    let store = crate::open_store(&cfg).await?;
    parley_domain::warm_up();
    let engine = Engine::new(
        store,
        GraphClient::new(&cfg.meta.graph_url, &cfg.meta.graph_version),
        Arc::new(SystemClock),
        EngineConfig::default(),
    );
    let app = crate::chosen_application(&engine, application).await?;

    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {elapsed_precise} eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("starting…");
    // The file as a stream of 64 KiB chunks, advancing the bar as they are read.
    let read_bar = bar.clone();
    let body = futures::stream::unfold(Some(handle), move |state| {
        let bar = read_bar.clone();
        async move {
            let mut f = state?;
            let mut buf = vec![0u8; 64 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    bar.inc(n as u64);
                    Some((Ok::<_, std::io::Error>(buf), Some(f)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    })
    .boxed();

    let (job, options) = match resume {
        Some(id) => {
            let id = parley_engine::audience::import_id(&id).map_err(anyhow::Error::msg)?;
            engine
                .resume_import(&app, &id)
                .await
                .map_err(anyhow::Error::msg)?
        }
        None => {
            let job = engine
                .create_import(&app, &options)
                .await
                .map_err(anyhow::Error::msg)?;
            (job, options)
        }
    };
    let progress_bar = bar.clone();
    let job = engine
        .run_import(job, &options, body, move |j| {
            progress_bar.set_message(format!(
                "{} rows read, {} created, {} updated, {} rejected",
                j.rows_read, j.created, j.updated, j.rejected
            ));
        })
        .await
        .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();

    println!(
        "{}: {} rows read, {} created, {} updated, {} rejected (import {})",
        file.display(),
        job.rows_read,
        job.created,
        job.updated,
        job.rejected,
        job.id
    );
    if job.rejected > 0 {
        let csv = engine
            .import_rejects_csv(&app, &job)
            .await
            .map_err(anyhow::Error::msg)?;
        let mut name = file.file_name().unwrap_or_default().to_os_string();
        name.push(".rejected.csv");
        let path = file.with_file_name(name);
        match std::fs::write(&path, csv) {
            Ok(()) => println!("rejected rows (line, reason, row): {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
        println!(
            "they can also be read with GET /api/v1/contacts/import/{}/rejected",
            job.id
        );
    }
    if job.state == ImportState::Interrupted {
        anyhow::bail!(
            "the import stopped: {}\nresume it with: parley contacts import {} --resume {}",
            job.error.unwrap_or_else(|| "unknown error".into()),
            file.display(),
            job.id
        );
    }
    if job.state == ImportState::Failed {
        anyhow::bail!(
            "the import stopped: {}",
            job.error.unwrap_or_else(|| "unknown error".into())
        );
    }
    Ok(if job.rejected > 0 { EXIT_REJECTED } else { 0 })
}
