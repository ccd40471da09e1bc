//! `chronicle import`: bulk-load a backlog from JSON Lines (docs/IMPORT.md).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chronicle::datadir::DataDir;
use chronicle_core::{PrincipalId, Signer};
use chronicle_records::import::{Importer, Line, Planned};
use chronicle_records::{RecordEvent, Records, ReliefKind, ServiceError};
use chronicle_store::{AppendRequest, ExpectedVersion};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{HashMap, VecDeque};

/// Bulk-load a backlog from a JSON Lines file, one signed command per line (see docs/IMPORT.md).
///
/// Bad lines are reported with their number and reason and written to a rejects file; the good
/// ones are applied (or none at all with --all-or-nothing). Importing the same file twice changes
/// nothing the second time.
///
/// Example: chronicle import --data-dir D --principal clerk.rivera --key clerk.key.pem backlog.jsonl
#[derive(clap::Args)]
pub struct ImportArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The importing principal (a records clerk).
    #[arg(long)]
    principal: String,
    /// The principal's PKCS#8 PEM key file.
    #[arg(long)]
    key: PathBuf,
    /// The JSON Lines file.
    file: PathBuf,
    /// Where to write rejected lines (default FILE.rejects.jsonl).
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Apply nothing if any line is bad.
    #[arg(long)]
    all_or_nothing: bool,
}

struct Outcome {
    applied: u64,
    already: u64,
    rejected: Vec<(usize, String, String)>,
}

pub fn run(a: ImportArgs) -> Result<ExitCode> {
    let signer = Signer::from_pem_file(PrincipalId::new(a.principal.clone())?, &a.key)?;
    let dir = DataDir::new(&a.data_dir, None);
    let store = dir.open()?;
    let records = Records::open(store)?;
    records.set_ledger(dir.ledger()?)?;
    let importer = Importer::new(&signer);
    let file = std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", a.file.display()))?;

    // Parse and plan every line first: a line that is not even well-formed is rejected up front.
    let mut planned = Vec::with_capacity(lines.len());
    let mut out = Outcome { applied: 0, already: 0, rejected: vec![] };
    for (i, raw) in lines.iter().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let plan = serde_json::from_str::<Line>(raw)
            .map_err(|e| e.to_string())
            .and_then(|l| importer.plan(&l, raw.as_bytes()));
        match plan {
            Ok(p) => planned.push((i + 1, raw, p)),
            Err(reason) => out.rejected.push((i + 1, raw.clone(), reason)),
        }
    }
    // Decide every line in file order against the records as they stand plus the lines before it,
    // without appending anything: what sequential submission would accept or refuse.
    let refused: HashMap<usize, String> = records
        .dry_run(signer.principal(), planned.iter().map(|(n, raw, p)| (*n, raw.as_str(), p)))
        .into_iter()
        .map(|(n, _, reason)| (n, reason))
        .collect();
    if a.all_or_nothing && (!refused.is_empty() || !out.rejected.is_empty()) {
        for (n, raw, _) in &planned {
            if let Some(reason) = refused.get(n) {
                out.rejected.push((*n, raw.to_string(), reason.clone()));
            }
        }
        out.rejected.sort_by_key(|(n, _, _)| *n);
        return finish(&a, out, lines.len());
    }

    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(planned.len() as u64);
        b.set_style(
            ProgressStyle::with_template("importing {bar:40} {pos}/{len} lines {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    // Lines the dry run accepts are handed to the store in file order, many in flight at once, so
    // that group commit shares the fsyncs; the store appends them in the order they were queued,
    // so the log is what submitting them one by one would have written. Expungements (whose keys
    // are destroyed as part of applying them) and lines the dry run refuses (which may be lines
    // imported before) wait for everything queued before them and go through the records service
    // one at a time, as every line used to. Should the store refuse a line the dry run accepted
    // (a payload over the size limit, say), the dry run no longer describes the records, and the
    // rest of the file goes one line at a time too.
    let store = records.store().clone();
    let mut queued: VecDeque<(usize, &String, chronicle_store::Queued)> = VecDeque::new();
    let trusted = std::cell::Cell::new(true);
    let settle = |queued: &mut VecDeque<(usize, &String, chronicle_store::Queued)>, out: &mut Outcome| {
        for (n, raw, q) in queued.drain(..) {
            let result = q.wait().map(|r| r.duplicate).map_err(ServiceError::from);
            if result.is_err() {
                trusted.set(false);
            }
            tally(out, n, raw, result)?;
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
        anyhow::Ok(())
    };
    for (n, raw, plan) in &planned {
        // A line imported before (by an earlier run) is in the log already: nothing to wait for.
        if refused.contains_key(n)
            && let Planned::Command(cmd) = plan
            && store.find_retry(cmd)?.is_some()
        {
            tally(&mut out, *n, raw, Ok(true))?;
            if let Some(b) = &bar {
                b.inc(1);
            }
            continue;
        }
        let one_at_a_time = !trusted.get() || refused.contains_key(n) || plan_destroys(plan);
        if !one_at_a_time && let Planned::Command(cmd) = plan {
            let req = AppendRequest {
                stream: cmd.statement().stream,
                expected: ExpectedVersion::Any,
                commands: vec![(**cmd).clone()],
            };
            match store.append_queued(req) {
                Ok(q) => queued.push_back((*n, raw, q)),
                Err(e) => {
                    trusted.set(false);
                    tally(&mut out, *n, raw, Err(e.into()))?
                }
            }
            if queued.len() >= IN_FLIGHT {
                let (n, raw, q) = queued.pop_front().expect("not empty");
                let mut one = VecDeque::from([(n, raw, q)]);
                settle(&mut one, &mut out)?;
            }
            continue;
        }
        settle(&mut queued, &mut out)?;
        records.catch_up()?;
        let result = match plan {
            Planned::Command(cmd) => records.submit((**cmd).clone()).map(|r| r.duplicate),
            Planned::Expunge(target, kind, order, statute, effective) => {
                if records.tombstone(target).is_some_and(|t| &t.order_id == order) {
                    Ok(true)
                } else {
                    records.expunge(&signer, *target, kind, order, statute, *effective).map(|_| false)
                }
            }
        };
        tally(&mut out, *n, raw, result)?;
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    settle(&mut queued, &mut out)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out.rejected.sort_by_key(|(n, _, _)| *n);
    records.catch_up()?;
    records.persist()?;
    drop(store);
    drop(records);
    dir.settle()?;
    finish(&a, out, lines.len())
}

/// Lines handed to the store at once before waiting for the first of them.
const IN_FLIGHT: usize = 1024;

/// Whether applying a planned line destroys keys (an expungement of a case, a record or charges).
fn plan_destroys(plan: &Planned) -> bool {
    match plan {
        Planned::Expunge(..) => true,
        Planned::Command(cmd) => {
            let st = cmd.statement();
            matches!(
                RecordEvent::parse(&st.event_type, cmd.payload()),
                Ok(RecordEvent::ReliefOrdered { kind: ReliefKind::Expunge, .. }
                    | RecordEvent::ExpungementOrdered { .. })
            )
        }
    }
}

/// Counts one line's outcome: applied, imported before (a duplicate), or rejected with a reason.
fn tally(out: &mut Outcome, n: usize, raw: &str, result: Result<bool, ServiceError>) -> Result<()> {
    match result {
        Ok(true) => out.already += 1,
        Ok(false) => out.applied += 1,
        Err(e @ ServiceError::Invalid(_))
        | Err(e @ ServiceError::Append(_))
        | Err(e @ ServiceError::Expunged { .. }) => out.rejected.push((n, raw.to_string(), e.to_string())),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn finish(a: &ImportArgs, mut out: Outcome, total: usize) -> Result<ExitCode> {
    out.rejected.sort_by_key(|r| r.0);
    for (n, _, reason) in &out.rejected {
        eprintln!("line {n}: {reason}");
    }
    if !out.rejected.is_empty() {
        let path = a.rejects.clone().unwrap_or_else(|| a.file.with_extension("rejects.jsonl"));
        let mut f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        for (_, raw, _) in &out.rejected {
            writeln!(f, "{raw}")?;
        }
        eprintln!("{} rejected line(s) written to {}", out.rejected.len(), path.display());
    }
    let verb = if a.all_or_nothing && !out.rejected.is_empty() { "nothing applied (--all-or-nothing)" } else { "done" };
    println!(
        "{verb}: {total} lines, {} applied, {} already imported, {} rejected",
        out.applied,
        out.already,
        out.rejected.len()
    );
    Ok(if out.rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(super::EXIT_FAULT) })
}
