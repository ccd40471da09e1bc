//! `chronicle log-key`: print the log's verifier key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chronicle::datadir::DataDir;

/// Print the log's verifier key in the signed-note format `<name>+<hex key id>+<base64 key>`.
///
/// Give it to anyone who checks checkpoints or evidence bundles; they should get it from the
/// bureau through a channel they trust, not from a bundle.
///
/// Example: chronicle log-key --data-dir /var/lib/chronicle
#[derive(clap::Args)]
pub struct LogKeyArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Print `{"origin": ..., "log_key": ...}`.
    #[arg(long)]
    json: bool,
}

pub fn run(a: LogKeyArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir, None);
    let key = dir.log_key()?;
    if a.json {
        println!("{}", serde_json::json!({ "origin": dir.info()?.origin, "log_key": key }));
    } else {
        println!("{key}");
    }
    Ok(ExitCode::SUCCESS)
}
