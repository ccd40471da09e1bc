//! `chronicle proof`: inclusion and consistency proofs as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chronicle::datadir::DataDir;
use chronicle_tlog::{ConsistencyProof, InclusionProof};

/// Print a Merkle proof as JSON (RFC 9162 audit path or consistency proof, base64 hashes).
#[derive(clap::Args)]
pub struct ProofArgs {
    #[command(subcommand)]
    kind: ProofKind,
}

#[derive(clap::Subcommand)]
enum ProofKind {
    /// Prove that the entry at a position is in the tree of a given size.
    ///
    /// Example: chronicle proof inclusion --data-dir D --position 42 --tree-size 1000
    Inclusion {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The entry's position (its leaf index).
        #[arg(long)]
        position: u64,
        /// The tree size (default: the latest checkpoint's, if it covers the entry, else the head).
        #[arg(long)]
        tree_size: Option<u64>,
    },
    /// Prove that the tree of one size is a prefix of the tree of a larger size.
    ///
    /// Example: chronicle proof consistency --data-dir D --from 500 --to 1000
    Consistency {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The older tree size.
        #[arg(long)]
        from: u64,
        /// The newer tree size.
        #[arg(long)]
        to: u64,
    },
}

pub fn run(a: ProofArgs) -> Result<ExitCode> {
    match a.kind {
        ProofKind::Inclusion { data_dir, position, tree_size } => {
            let store = DataDir::new(&data_dir, None).open()?;
            let size = match tree_size {
                Some(s) => s,
                None => match store.latest_checkpoint()? {
                    Some((s, _)) if s > position => s,
                    _ => store.head().len,
                },
            };
            let path = store.inclusion_proof(position, size)?;
            let entry = store.entry(position)?.with_context(|| format!("no entry at position {position}"))?;
            println!("{}", serde_json::to_string_pretty(&InclusionProof::new(position, size, entry.bytes(), &path))?);
        }
        ProofKind::Consistency { data_dir, from, to } => {
            let store = DataDir::new(&data_dir, None).open()?;
            let proof = store.consistency_proof(from, to)?;
            println!("{}", serde_json::to_string_pretty(&ConsistencyProof::new(from, to, &proof))?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
