//! `chronicle verify`: re-check every entry of a data directory, without a server.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use chronicle::datadir::DataDir;
use chronicle_store::{Expected, verify_log_against};
use indicatif::{ProgressBar, ProgressStyle};

/// Verify the whole ledger: chains, positions, signatures against the registry, the head, every
/// checkpoint, and everything kept beside the entries (index, idempotency records, key bindings,
/// tree, cosignatures, the persisted projection; with the master key, their MACs too); that the log reaches the last checkpoint the ledger signed (the vault's anchor,
/// when the master key is at hand); and, with --trusted-checkpoint, that it reaches a checkpoint
/// kept outside the bureau (a copy restored whole, vault and all, is caught only so).
///
/// Exits 0 when intact, 1 naming the first bad position and the fault, 2 when the trusted
/// checkpoint is not signed by the log key, 3 when the data directory cannot be read.
///
/// Example: chronicle verify --data-dir /var/lib/chronicle --trusted-checkpoint published.txt --log-key 'origin+1a2b3c4d+AX...'
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The secrets directory (default DATA_DIR/secrets): the master key there authenticates the
    /// vault's anchor.
    #[arg(long)]
    secrets_dir: Option<PathBuf>,
    /// A checkpoint (C2SP signed note) someone outside the bureau kept: the log must reach it.
    #[arg(long, requires = "log_key")]
    trusted_checkpoint: Option<PathBuf>,
    /// The log's verifier key, obtained through a channel you trust, that signed the checkpoint.
    #[arg(long)]
    log_key: Option<String>,
    /// Print a JSON report instead of a line of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: VerifyArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir, a.secrets_dir.clone());
    let mut expected = Vec::new();
    if let (Some(file), Some(key)) = (&a.trusted_checkpoint, &a.log_key) {
        let note = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        match chronicle_tlog::verify_checkpoint(&note, key) {
            Ok(cp) => expected.push(Expected {
                what: format!("the trusted checkpoint {}", file.display()),
                size: cp.size,
                root: cp.root,
                kept: false,
            }),
            Err(e) => {
                eprintln!("error: --trusted-checkpoint {}: {e}", file.display());
                return Ok(ExitCode::from(super::EXIT_USAGE));
            }
        }
    }
    // With the master key at hand: the vault's anchor, and every MAC of derived state.
    let master = chronicle_core::MasterKey::load(&dir.master_key_file()).ok();
    let anchor = match &master {
        Some(master) => chronicle_core::Vault::read_anchor(&dir.store_paths().vault, master)?,
        None => None,
    };
    match anchor {
        Some(a) if !a.recovered => expected.push(Expected {
            what: "the last checkpoint the ledger signed (the vault's anchor)".into(),
            size: a.size,
            root: chronicle_tlog::TreeHash(a.root),
            kept: true,
        }),
        _ => {}
    }
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("verifying {bar:40} {pos}/{len} entries {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let report = verify_log_against(&dir.log_dir(), &expected, master.as_ref(), |done, total| {
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
        v["macs_checked"] = serde_json::Value::Bool(master.is_some());
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
            Some(f) => println!("FAILED at {f}"),
        }
        if master.is_none() {
            println!("(no master key at hand: the MACs of derived state and the sealed payloads were not checked)");
        }
    }
    Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(super::EXIT_FAULT) })
}
