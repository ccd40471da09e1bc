//! `chronicle checkpoint`: print (signing if needed) a checkpoint note.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use chronicle::datadir::DataDir;

/// Print the signed checkpoint (C2SP tlog-checkpoint in a signed note) at a tree size.
///
/// Without --size: the checkpoint at the current head, signed now if the head moved since the
/// last one. With --size: the stored checkpoint at that size, signed now if there is none (the
/// ledger first checks it is consistent with every checkpoint it signed before). Stored witness
/// cosignatures are appended as further signature lines.
///
/// Example: chronicle checkpoint --data-dir /var/lib/chronicle --size 1000
#[derive(clap::Args)]
pub struct CheckpointArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The tree size.
    #[arg(long)]
    size: Option<u64>,
    /// Print the published checkpoint instead: the latest one that every adopted witness
    /// cosigned (`chronicle witness adopt`), with their cosignatures; signs nothing.
    #[arg(long, conflicts_with = "size")]
    published: bool,
    /// Print `{"origin", "tree_size", "root_hash" (base64), "note"}` instead of the note alone.
    #[arg(long)]
    json: bool,
}

pub fn run(a: CheckpointArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir, None);
    let store = dir.open()?;
    let info = dir.info()?;
    let note = if a.published {
        match store.published_checkpoint()? {
            Some((_, note)) => note,
            None => bail!("no checkpoint is cosigned by every adopted witness yet (see `chronicle witness status`)"),
        }
    } else {
        if store.head().len == 0 {
            bail!("the log is empty: there is nothing to checkpoint");
        }
        // At the head, the stream heads are committed first, so that the checkpoint covers them;
        // a past size is signed as the log was then.
        let size = match a.size {
            Some(size) => {
                store.sign_checkpoint(&dir.note_signer()?, &info.origin, size)?;
                size
            }
            None => store.checkpoint_with_heads(&dir.ledger()?, &dir.note_signer()?, &info.origin)?.1,
        };
        store.cosigned_checkpoint(size)?
    };
    if a.json {
        let checked = chronicle_tlog::verify_checkpoint(&note, &dir.log_key()?)?;
        use base64::Engine;
        let out = serde_json::json!({
            "origin": checked.origin,
            "tree_size": checked.size,
            "root_hash": base64::engine::general_purpose::STANDARD.encode(checked.root.0),
            "note": String::from_utf8_lossy(&note),
        });
        println!("{out}");
    } else {
        std::io::stdout().write_all(&note)?;
    }
    Ok(ExitCode::SUCCESS)
}
