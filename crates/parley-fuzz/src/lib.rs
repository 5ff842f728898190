//! A fuzzer for Parley's parsers that builds with the stable toolchain (cargo-fuzz needs a
//! nightly, which these machines may not have). Each [`Target`] takes bytes and checks its
//! properties: it must never panic, and its round-trip or oracle properties must hold. The
//! runner mutates a seed corpus (`fuzz/corpus/<target>/`), keeps mutants that show a new
//! outcome (a cheap stand-in for coverage feedback), and saves every failing input, shrunk, to
//! `fuzz/findings/<target>/`. `scripts/fuzz.sh N` runs every target for N seconds.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

pub mod mutate;
pub mod targets;

use mutate::{Rng, fnv, mutate};

/// What a target makes of one input: `Ok` with a signature of the outcome (inputs with a new
/// signature are kept for further mutation), or `Err` with the property that broke.
pub type Outcome = Result<u64, String>;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// Tokens of the target's grammar, inserted by the mutator.
    pub dictionary: &'static [&'static [u8]],
    /// Longest input tried.
    pub max_len: usize,
    pub check: fn(&[u8]) -> Outcome,
}

/// Every target, by name.
pub fn targets() -> Vec<Target> {
    vec![
        targets::webhook::target(),
        targets::personalize::target(),
        targets::segment::target(),
        targets::import::target(),
    ]
}

pub fn target(name: &str) -> Option<Target> {
    targets().into_iter().find(|t| t.name == name)
}

/// An input that broke a property or panicked.
#[derive(Debug, Clone)]
pub struct Finding {
    pub input: Vec<u8>,
    pub problem: String,
}

thread_local! {
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once) a panic hook that, inside [`run_one`], records the message and place
/// instead of printing them, so a run shows findings, not thousands of panic messages. Other
/// panics go to the previous hook as usual.
pub fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                return previous(info);
            }
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = payload_text(info.payload());
            PANIC.with(|p| *p.borrow_mut() = Some(format!("panic: {message}{place}")));
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Runs the target on one input, turning a panic into an `Err`.
pub fn run_one(target: &Target, input: &[u8]) -> Outcome {
    quiet_panics();
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.check)(input)));
    QUIET.with(|q| q.set(false));
    match result {
        Ok(outcome) => outcome,
        Err(payload) => Err(PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| format!("panic: {}", payload_text(payload.as_ref())))),
    }
}

/// The kind of a problem, for deduplication: its text without digits (positions, lengths).
fn problem_kind(problem: &str) -> String {
    problem
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(160)
        .collect()
}

/// Shrinks a failing input while it fails with the same kind of problem: removes chunks of
/// halving size, then single bytes. Bounded in attempts.
pub fn shrink(target: &Target, finding: Finding) -> Finding {
    let kind = problem_kind(&finding.problem);
    let mut best = finding;
    let mut attempts = 0;
    let mut chunk = (best.input.len() / 2).max(1);
    while chunk >= 1 && attempts < 4_000 {
        let mut i = 0;
        let mut shrank = false;
        while i < best.input.len() && attempts < 4_000 {
            let end = (i + chunk).min(best.input.len());
            let mut candidate = best.input.clone();
            candidate.drain(i..end);
            attempts += 1;
            match run_one(target, &candidate) {
                Err(p) if problem_kind(&p) == kind => {
                    best = Finding {
                        input: candidate,
                        problem: p,
                    };
                    shrank = true;
                }
                _ => i += chunk,
            }
        }
        if !shrank {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    best
}

/// Reads every file of a directory (sorted by name); a missing directory is empty.
pub fn read_dir_inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

/// What one target's run did.
#[derive(Debug, Default)]
pub struct Report {
    pub executions: u64,
    pub kept: usize,
    pub signatures: usize,
    pub findings: Vec<Finding>,
    /// The slowest input seen, and how long it took.
    pub slowest: Duration,
}

/// An input slower than this is a finding (a parser that takes seconds is a denial of service).
pub const SLOW: Duration = Duration::from_secs(5);

/// How long a run goes on.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Time(Duration),
    /// A fixed number of mutated inputs: the same run every time for a seed (for tests).
    Executions(u64),
}

/// Fuzzes `target` from `corpus` until `budget` is spent. Findings are shrunk and, when
/// `findings_dir` is given, saved there as `<hash>.input` (the bytes) and `<hash>.txt` (the
/// problem).
pub fn fuzz(
    target: &Target,
    corpus: Vec<Vec<u8>>,
    budget: Budget,
    seed: u64,
    findings_dir: Option<&Path>,
) -> Report {
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    let mut seen_signatures: HashSet<u64> = HashSet::new();
    let mut seen_problems: HashSet<String> = HashSet::new();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let started = Instant::now();

    let mut consider = |input: Vec<u8>,
                        outcome: Outcome,
                        elapsed: Duration,
                        pool: &mut Vec<Vec<u8>>,
                        report: &mut Report| {
        report.executions += 1;
        report.slowest = report.slowest.max(elapsed);
        let outcome = match outcome {
            Ok(_) if elapsed > SLOW => Err(format!(
                "slow: one input took {:.1} s (limit {} s)",
                elapsed.as_secs_f64(),
                SLOW.as_secs()
            )),
            other => other,
        };
        match outcome {
            Ok(signature) => {
                if seen_signatures.insert(signature) {
                    if pool.len() < 8_192 {
                        pool.push(input);
                    } else {
                        let i = rng_index(signature, pool.len());
                        pool[i] = input;
                    }
                }
            }
            Err(problem) => {
                if seen_problems.insert(problem_kind(&problem)) {
                    let finding = if problem.starts_with("slow:") {
                        Finding { input, problem }
                    } else {
                        shrink(target, Finding { input, problem })
                    };
                    if let Some(dir) = findings_dir {
                        save_finding(dir, &finding);
                    }
                    report.findings.push(finding);
                }
            }
        }
    };

    for input in &corpus {
        let t = Instant::now();
        let outcome = run_one(target, input);
        consider(input.clone(), outcome, t.elapsed(), &mut pool, &mut report);
    }
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let mut mutated = 0u64;
    while match budget {
        Budget::Time(limit) => started.elapsed() < limit,
        Budget::Executions(n) => mutated < n,
    } {
        mutated += 1;
        // Mostly mutate kept inputs; sometimes go back to a seed so the run does not drift.
        let base = if !corpus.is_empty() && rng.one_in(4) {
            &corpus[rng.below(corpus.len())]
        } else {
            &pool[rng.below(pool.len())]
        };
        let input = mutate(&mut rng, base, &pool, target.dictionary, target.max_len);
        let t = Instant::now();
        let outcome = run_one(target, &input);
        let elapsed = t.elapsed();
        consider(input, outcome, elapsed, &mut pool, &mut report);
    }
    report.kept = pool.len();
    report.signatures = seen_signatures.len();
    report
}

fn rng_index(signature: u64, len: usize) -> usize {
    (signature % len as u64) as usize
}

fn save_finding(dir: &Path, finding: &Finding) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let name = format!("{:016x}", fnv(&finding.input));
    let _ = std::fs::write(dir.join(format!("{name}.input")), &finding.input);
    let _ = std::fs::write(
        dir.join(format!("{name}.txt")),
        format!(
            "{}\n\ninput ({} bytes, as Rust text): {}\n",
            finding.problem,
            finding.input.len(),
            shown(&finding.input)
        ),
    );
}

/// The input as a Rust string literal body (lossy for invalid UTF-8, which is marked), short.
pub fn shown(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(input);
    let mut out = format!("{:?}", text.as_ref());
    if out.len() > 600 {
        let mut cut = 600;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    if std::str::from_utf8(input).is_err() {
        out.push_str(" (not UTF-8; exact bytes in the .input file)");
    }
    out
}

/// A signature from a few outcome facts.
pub fn signature(parts: &[&[u8]]) -> u64 {
    let mut h = 0u64;
    for p in parts {
        h = h.rotate_left(17) ^ fnv(p);
    }
    h
}

/// An error message's shape: its text without digits and without what it quotes (between
/// backticks or double quotes), so positions and echoed input do not count as new outcomes.
pub fn message_shape(message: &str) -> Vec<u8> {
    let mut quoted = false;
    message
        .bytes()
        .filter(|&b| {
            if b == b'`' || b == b'"' {
                quoted = !quoted;
                return true;
            }
            !quoted && !b.is_ascii_digit()
        })
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in seed corpus passes every property: a finding turned into a fix keeps
    /// passing here, and a corpus file that breaks a property fails `cargo test`.
    #[test]
    fn seed_corpus_passes_every_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for target in targets() {
            let inputs = read_dir_inputs(&root.join(target.name));
            assert!(
                !inputs.is_empty(),
                "no seed corpus for {} in {}",
                target.name,
                root.display()
            );
            for (path, input) in inputs {
                if let Err(problem) = run_one(&target, &input) {
                    panic!("{}: {problem}", path.display());
                }
            }
        }
    }

    #[test]
    fn a_short_run_of_each_target_finds_nothing() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for target in targets() {
            let corpus = read_dir_inputs(&root.join(target.name))
                .into_iter()
                .map(|(_, b)| b)
                .collect();
            let report = fuzz(&target, corpus, Budget::Executions(3_000), 1, None);
            assert!(report.executions > 0);
            assert!(
                report.findings.is_empty(),
                "{}: {:?}",
                target.name,
                report
                    .findings
                    .iter()
                    .map(|f| format!("{} for {}", f.problem, shown(&f.input)))
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_panicking_target_is_a_shrunk_finding() {
        fn check(input: &[u8]) -> Outcome {
            if input.windows(3).any(|w| w == b"bad") {
                panic!("found it");
            }
            Ok(input.len() as u64)
        }
        let target = Target {
            name: "test",
            dictionary: &[b"bad"],
            max_len: 64,
            check,
        };
        let report = fuzz(
            &target,
            vec![b"a good input".to_vec()],
            Budget::Executions(20_000),
            3,
            None,
        );
        assert_eq!(report.findings.len(), 1, "{report:?}");
        assert_eq!(report.findings[0].input, b"bad");
        assert!(report.findings[0].problem.contains("found it"));
    }
}
