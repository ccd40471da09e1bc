//! `chronicle rebuild`: rebuild the records projections from zero.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use chronicle::datadir::DataDir;
use chronicle_records::Records;

/// Rebuild the records projections by replaying the whole log, and persist them anew.
///
/// Projections are a pure function of the log, so this is always safe; it is what to do after
/// restoring a backup or when a projection is suspected to be wrong. With --store, the store's own
/// derived state (stream index, idempotency records, Merkle tree, cosignatures, head record, key
/// bindings that do not check) is rebuilt from the entries first: what to do when `verify` names
/// one of those key spaces.
///
/// Example: chronicle rebuild --data-dir /var/lib/chronicle --store
#[derive(clap::Args)]
pub struct RebuildArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Rebuild the store's derived state from the entries too.
    #[arg(long)]
    store: bool,
}

pub fn run(a: RebuildArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir, None);
    if a.store {
        println!("{}", dir.rebuild_store()?);
    }
    let store = dir.open()?;
    let len = store.head().len;
    let started = Instant::now();
    let (records, phases) = Records::rebuild_timed(store)?;
    records.set_ledger(dir.ledger()?)?;
    let secs = started.elapsed().as_secs_f64();
    let p = records.projection();
    println!(
        "rebuilt the projections from {len} entries in {secs:.2}s ({:.0} entries/s): {} subjects, {} cycles",
        len as f64 / secs.max(1e-9),
        p.state.subjects.len(),
        p.state.cycles.len()
    );
    println!(
        "  replay {:.2}s; persisting {} streams ({:.1} MB) {:.2}s (serializing {:.2}s, sealing {:.2}s, writing {:.2}s beside them); reopening sled {:.2}s",
        phases.replay.as_secs_f64(),
        phases.streams,
        phases.bytes as f64 / 1e6,
        phases.persisting.as_secs_f64(),
        phases.serializing.as_secs_f64(),
        phases.sealing.as_secs_f64(),
        phases.writing.as_secs_f64(),
        phases.settling.as_secs_f64()
    );
    drop(p);
    // The new projection is in force; what the one before it left is removed now rather than
    // by later persists.
    let swept = records.sweep_persisted()?;
    println!("  then removed {} keys of the projection persisted before, {:.2}s", swept.keys, swept.took.as_secs_f64());
    drop(records);
    dir.settle()?;
    Ok(ExitCode::SUCCESS)
}
