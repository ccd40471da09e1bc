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
    /// Adopt a witness: recorded in the log (the ledger's own stream), after which the published
    /// checkpoint (`chronicle checkpoint --published`, and what the server answers for the
    /// latest checkpoint) is the latest one every adopted witness cosigned.
    ///
    /// Example: chronicle witness adopt --data-dir D --witness-key 'witness.example+0a1b2c3d+BH...'
    Adopt {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The witness's cosignature verifier key: name+hex(key id)+base64(0x04 || key).
        #[arg(long)]
        witness_key: String,
    },
    /// Each adopted witness, the last tree size it cosigned, and the published checkpoint.
    ///
    /// Example: chronicle witness status --data-dir D
    Status {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print the body of an add-checkpoint request (c2sp.org/tlog-witness): for an adopted
    /// witness (--witness: from the size it last cosigned), or from the size --old.
    ///
    /// Example: chronicle witness request --data-dir D --witness witness.example | curl --data-binary @- https://witness.example/add-checkpoint > reply.txt
    Request {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// An adopted witness: the request starts from the size it last cosigned.
        #[arg(long, conflicts_with = "old", required_unless_present = "old")]
        witness: Option<String>,
        /// The tree size the witness last saw (0 if none).
        #[arg(long)]
        old: Option<u64>,
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
        WitnessCmd::Adopt { data_dir, witness_key } => {
            let (name, _) = parse_witness_key(&witness_key).map_err(|e| anyhow::anyhow!("--witness-key: {e}"))?;
            let dir = DataDir::new(&data_dir, None);
            let position = dir.adopt_witness(&witness_key)?;
            println!("adopted witness {name} (recorded at position {position})");
        }
        WitnessCmd::Status { data_dir } => {
            let store = DataDir::new(&data_dir, None).open()?;
            let witnesses = store.witnesses()?;
            if witnesses.is_empty() {
                println!("no witness adopted: the published checkpoint is the latest one signed");
            }
            for w in &witnesses {
                match store.witnessed(&w.name)? {
                    Some(size) => println!("{}: last cosigned tree size {size}", w.name),
                    None => println!("{}: has cosigned nothing yet", w.name),
                }
            }
            match store.published_checkpoint()? {
                Some((size, _)) => println!("published checkpoint: tree size {size}"),
                None => println!("published checkpoint: none yet"),
            }
        }
        WitnessCmd::Request { data_dir, witness, old, size } => {
            let store = DataDir::new(&data_dir, None).open()?;
            let old = match (witness, old) {
                (Some(w), _) => {
                    if !store.witnesses()?.iter().any(|x| x.name == w) {
                        anyhow::bail!("--witness {w}: not an adopted witness (see `chronicle witness status`)");
                    }
                    store.witnessed(&w)?.unwrap_or(0)
                }
                (None, old) => old.unwrap_or(0),
            };
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
            let dir = DataDir::new(&data_dir, None);
            let store = dir.open()?;
            let ledger = dir.ledger()?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut added = 0;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let ts = store.add_cosignature(size, &name, &key, line, &ledger)?;
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
