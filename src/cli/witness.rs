//! `chronicle witness`: talk to transparency-log witnesses (c2sp.org/tlog-witness).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chronicle::datadir::DataDir;
use chronicle_tlog::witness::{add_checkpoint_body, parse_witness_key};

/// Witness requests and cosignatures.
#[derive(clap::Args)]
pub struct WitnessArgs {
    #[command(subcommand)]
    cmd: WitnessCmd,
}

#[derive(clap::Subcommand)]
enum WitnessCmd {
    /// Print the body of an add-checkpoint request for a witness that last saw size --old.
    ///
    /// Example: chronicle witness request --data-dir D --old 500 | curl --data-binary @- https://witness.example/add-checkpoint
    Request {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The tree size the witness last saw (0 if none).
        #[arg(long)]
        old: u64,
        /// The checkpoint's size (default: the latest checkpoint).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Check a witness's cosignature line(s) over a checkpoint and keep them beside it.
    ///
    /// Example: chronicle witness add-cosignature --data-dir D --size 1000 --witness-key 'w.example+0a1b2c3d+BH...' --file reply.txt
    AddCosignature {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The checkpoint's size.
        #[arg(long)]
        size: u64,
        /// The witness's cosignature verifier key: name+hex(key id)+base64(0x04 || key).
        #[arg(long)]
        witness_key: String,
        /// The witness's answer (cosignature lines).
        #[arg(long)]
        file: PathBuf,
    },
}

pub fn run(a: WitnessArgs) -> Result<ExitCode> {
    match a.cmd {
        WitnessCmd::Request { data_dir, old, size } => {
            let store = DataDir::new(&data_dir, None).open()?;
            let (size, note) = match size {
                Some(s) => (
                    s,
                    store
                        .checkpoint_at(s)?
                        .with_context(|| format!("no checkpoint at size {s}; run `chronicle checkpoint --size {s}`"))?,
                ),
                None => store.latest_checkpoint()?.context("no checkpoint yet; run `chronicle checkpoint`")?,
            };
            let proof = if old == 0 || old == size { Vec::new() } else { store.consistency_proof(old, size)? };
            std::io::stdout().write_all(&add_checkpoint_body(old, &proof, &note))?;
        }
        WitnessCmd::AddCosignature { data_dir, size, witness_key, file } => {
            let (name, key) = parse_witness_key(&witness_key).map_err(|e| anyhow::anyhow!("--witness-key: {e}"))?;
            let store = DataDir::new(&data_dir, None).open()?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut added = 0;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let ts = store.add_cosignature(size, &name, &key, line)?;
                println!("kept the cosignature of {name} over size {size} (witnessed at unix time {ts})");
                added += 1;
            }
            if added == 0 {
                anyhow::bail!("{} holds no cosignature line", file.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
