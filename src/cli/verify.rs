//! `chronicle verify`: re-check every entry of a data directory, without a server.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use chronicle::datadir::DataDir;
use chronicle_store::verify_log;
use indicatif::{ProgressBar, ProgressStyle};

/// Verify the whole ledger: chains, positions, signatures against the registry, the head.
///
/// Exits 0 when intact, 1 naming the first bad position and the fault, 3 when the data directory
/// cannot be read.
///
/// Example: chronicle verify --data-dir /var/lib/chronicle --json
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Print a JSON report instead of a line of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: VerifyArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir, None);
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("verifying {bar:40} {pos}/{len} entries {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let report = verify_log(&dir.log_dir(), |done, total| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["ok"] = serde_json::Value::Bool(report.is_ok());
        v["seconds"] = serde_json::json!(secs);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &report.fault {
            None => println!(
                "ok: {} entries verified ({} streams, {} principals, {} signatures, {} sealed payloads, {} checkpoints), head {} in {:.2}s",
                report.entries_verified,
                report.streams,
                report.principals,
                report.signatures_verified,
                report.sealed_entries,
                report.checkpoints,
                report.last_hash,
                secs
            ),
            Some(f) => println!("FAILED at position {}: {}", f.position, f.fault),
        }
    }
    Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(super::EXIT_FAULT) })
}
