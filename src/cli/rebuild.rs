//! `chronicle rebuild`: rebuild the records projections from zero.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use chronicle::datadir::DataDir;
use chronicle_records::Records;

/// Drop the persisted projections and rebuild them by replaying the whole log.
///
/// Projections are a pure function of the log, so this is always safe; it is what to do after
/// restoring a backup or when a projection is suspected to be wrong.
///
/// Example: chronicle rebuild --data-dir /var/lib/chronicle
#[derive(clap::Args)]
pub struct RebuildArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
}

pub fn run(a: RebuildArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir, None);
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
        "  replay {:.2}s; persisting {} streams ({:.1} MB) {:.2}s (of which writing {:.2}s); reopening sled {:.2}s",
        phases.replay.as_secs_f64(),
        phases.streams,
        phases.bytes as f64 / 1e6,
        phases.persisting.as_secs_f64(),
        phases.writing.as_secs_f64(),
        phases.settling.as_secs_f64()
    );
    drop(p);
    drop(records);
    dir.settle()?;
    Ok(ExitCode::SUCCESS)
}
