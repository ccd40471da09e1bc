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
}

pub fn run(a: LogKeyArgs) -> Result<ExitCode> {
    println!("{}", DataDir::new(&a.data_dir, None).log_key()?);
    Ok(ExitCode::SUCCESS)
}
