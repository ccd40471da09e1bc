//! `chronicle init`: create a data directory with its keys, vault and genesis entries.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chronicle::datadir::DataDir;

/// Create a new ledger: data directory, signing keys, key vault and the first admin.
///
/// Example: chronicle init --data-dir /var/lib/chronicle --origin records.example-county.gov/chronicle
#[derive(clap::Args)]
pub struct InitArgs {
    /// The data directory to create.
    #[arg(long)]
    data_dir: PathBuf,
    /// Where to write the secrets (master key, ledger key, admin key); default DATA_DIR/secrets.
    #[arg(long)]
    secrets_dir: Option<PathBuf>,
    /// The log's origin name, as checkpoints will carry it.
    #[arg(long, default_value = "chronicle.localhost/ledger")]
    origin: String,
}

pub fn run(a: InitArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir, a.secrets_dir);
    let init = dir.init(&a.origin)?;
    let head = init.store.head();
    println!("created ledger {} in {}", a.origin, dir.root.display());
    println!("  log:          {}", dir.log_dir().display());
    println!("  vault:        {}", dir.store_paths().vault.display());
    println!("  master key:   {} (or set CHRONICLE_MASTER_KEY)", dir.master_key_file().display());
    println!("  ledger key:   {} (key id {})", dir.ledger_key_file().display(), init.ledger.key_id());
    println!("  admin key:    {} (principal admin, key id {})", dir.admin_key_file().display(), init.admin.key_id());
    println!("  genesis:      {} entries, head {}", head.len, head.last_hash);
    println!("keep the secrets directory on other storage than the data directory in production");
    Ok(ExitCode::SUCCESS)
}
