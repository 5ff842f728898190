//! `parley-fuzz <target|all> --seconds N [--seed S] [--corpus DIR] [--findings DIR]` fuzzes
//! one target (or each in turn) for N seconds; `parley-fuzz replay <target> <file>...` runs
//! inputs once (a finding, or a corpus file) and says what each does. Exits 1 on a finding.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parley_fuzz::{Budget, Target, fuzz, read_dir_inputs, run_one, shown, target, targets};

const USAGE: &str =
    "usage: parley-fuzz <target|all> --seconds N [--seed S] [--corpus DIR] [--findings DIR]
       parley-fuzz replay <target> <file>...
       parley-fuzz list
targets: webhook, personalize, segment, import";

/// Tokio's worker threads have 2 MiB stacks: recursion that fits here fits in the server.
const STACK: usize = 2 * 1024 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let handle = std::thread::Builder::new()
        .name("fuzz".into())
        .stack_size(STACK)
        .spawn(move || run(args))
        .expect("spawn the fuzzing thread");
    match handle.join() {
        Ok(code) => code,
        Err(_) => ExitCode::from(2),
    }
}

fn run(args: Vec<String>) -> ExitCode {
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("list") => {
            for t in targets() {
                println!("{}", t.name);
            }
            ExitCode::SUCCESS
        }
        Some("replay") => replay(&args[1..]),
        Some(name) => match options(&args[1..]) {
            Ok(o) => fuzz_targets(name, o),
            Err(e) => {
                eprintln!("{e}\n{USAGE}");
                ExitCode::from(2)
            }
        },
    }
}

struct Options {
    seconds: u64,
    seed: u64,
    corpus: PathBuf,
    findings: PathBuf,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        seconds: 10,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        corpus: PathBuf::from("fuzz/corpus"),
        findings: PathBuf::from("fuzz/findings"),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("`{flag}` needs a value"))?;
        match flag.as_str() {
            "--seconds" => o.seconds = value.parse().map_err(|_| "--seconds takes a number")?,
            "--seed" => o.seed = value.parse().map_err(|_| "--seed takes a number")?,
            "--corpus" => o.corpus = value.into(),
            "--findings" => o.findings = value.into(),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(o)
}

fn fuzz_targets(name: &str, o: Options) -> ExitCode {
    let chosen: Vec<Target> = if name == "all" {
        targets()
    } else {
        match target(name) {
            Some(t) => vec![t],
            None => {
                eprintln!("no target `{name}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    };
    let mut found = false;
    for t in chosen {
        let corpus: Vec<Vec<u8>> = read_dir_inputs(&o.corpus.join(t.name))
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        if corpus.is_empty() {
            eprintln!(
                "{}: no seed corpus in {}",
                t.name,
                o.corpus.join(t.name).display()
            );
            return ExitCode::from(2);
        }
        println!(
            "== {}: {} seeds, {} s, seed {}",
            t.name,
            corpus.len(),
            o.seconds,
            o.seed
        );
        let findings_dir = o.findings.join(t.name);
        let report = fuzz(
            &t,
            corpus,
            Budget::Time(Duration::from_secs(o.seconds)),
            o.seed,
            Some(&findings_dir),
        );
        println!(
            "   {} executions ({}/s), {} outcomes, {} inputs kept, slowest {:.1} ms",
            report.executions,
            report.executions / o.seconds.max(1),
            report.signatures,
            report.kept,
            report.slowest.as_secs_f64() * 1000.0
        );
        for f in &report.findings {
            found = true;
            println!("   FINDING: {}", f.problem.lines().next().unwrap_or(""));
            println!("   input: {}", shown(&f.input));
        }
        if !report.findings.is_empty() {
            println!("   saved in {}", findings_dir.display());
        }
    }
    if found {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn replay(args: &[String]) -> ExitCode {
    let Some(t) = args.first().and_then(|n| target(n)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut failed = false;
    for file in &args[1..] {
        let input = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::from(2);
            }
        };
        match run_one(&t, &input) {
            Ok(_) => println!("{file}: passes"),
            Err(problem) => {
                failed = true;
                println!("{file}: {problem}\n  input: {}", shown(&input));
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
