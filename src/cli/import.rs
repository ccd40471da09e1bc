//! `chronicle import`: bulk-load a backlog from JSON Lines (docs/IMPORT.md).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chronicle::datadir::DataDir;
use chronicle_core::{PrincipalId, Signer};
use chronicle_records::import::{Importer, Line, Planned};
use chronicle_records::{Records, ServiceError};
use indicatif::{ProgressBar, ProgressStyle};

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
    if a.all_or_nothing {
        for (n, raw, reason) in
            records.dry_run(signer.principal(), planned.iter().map(|(n, raw, p)| (*n, raw.as_str(), p)))
        {
            out.rejected.push((n, raw.to_string(), reason));
        }
        if !out.rejected.is_empty() {
            return finish(&a, out, lines.len());
        }
    }

    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(planned.len() as u64);
        b.set_style(
            ProgressStyle::with_template("importing {bar:40} {pos}/{len} lines {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    for (n, raw, plan) in planned {
        let result = match plan {
            Planned::Command(cmd) => records.submit(*cmd).map(|r| r.duplicate),
            Planned::Expunge(target, kind, order, statute, effective) => {
                if records.tombstone(&target).is_some_and(|t| t.order_id == order) {
                    Ok(true)
                } else {
                    records.expunge(&signer, target, kind, &order, &statute, effective).map(|_| false)
                }
            }
        };
        match result {
            Ok(true) => out.already += 1,
            Ok(false) => out.applied += 1,
            Err(e @ ServiceError::Invalid(_))
            | Err(e @ ServiceError::Append(_))
            | Err(e @ ServiceError::Expunged { .. }) => out.rejected.push((n, raw.clone(), e.to_string())),
            Err(e) => return Err(e.into()),
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    records.persist()?;
    drop(records);
    dir.settle()?;
    finish(&a, out, lines.len())
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
