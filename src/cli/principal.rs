//! `chronicle principal`: manage principals in the registry.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chronicle::datadir::DataDir;
use chronicle_core::{Command, PrincipalId, RegistryEvent, Role, Signer, StreamId};
use chronicle_store::{AppendRequest, ExpectedVersion};

/// Manage principals (signed by the first admin).
#[derive(clap::Args)]
pub struct PrincipalArgs {
    #[command(subcommand)]
    cmd: PrincipalCmd,
}

#[derive(clap::Subcommand)]
enum PrincipalCmd {
    /// Register a principal with a new signing key, issue it a TLS client certificate, and write
    /// its credentials directory (for `--creds` of the client commands).
    ///
    /// Example: chronicle principal add --data-dir D --id clerk.rivera --role records_clerk
    Add {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The principal's id (a-z 0-9 . _ @ : -).
        #[arg(long)]
        id: String,
        /// Its role: records_clerk, court, law_enforcement, prosecutor, defense_attorney, subject,
        /// background_check, employer, licensing_agency, auditor, admin.
        #[arg(long)]
        role: String,
        /// Also write its signing key to this file (PKCS#8 PEM, mode 0600).
        #[arg(long)]
        key_out: Option<PathBuf>,
        /// Where to write its credentials (default SECRETS/principals/ID).
        #[arg(long)]
        creds_out: Option<PathBuf>,
        /// Register through this running server (as the admin) instead of opening the log,
        /// which the server holds.
        #[arg(long)]
        server: Option<String>,
    },
}

pub fn run(a: PrincipalArgs) -> Result<ExitCode> {
    match a.cmd {
        PrincipalCmd::Add { data_dir, id, role, key_out, creds_out, server } => {
            let role: Role = serde_json::from_value(serde_json::Value::String(role.clone()))
                .with_context(|| format!("unknown role {role:?}"))?;
            if role == Role::Ledger {
                bail!("there is only one ledger principal");
            }
            let dir = DataDir::new(&data_dir, None);
            let signer = Signer::generate(PrincipalId::new(id)?);
            let creds_dir = creds_out.clone().unwrap_or_else(|| dir.credentials_dir(signer.principal().as_str()));
            if creds_dir.join("principal").exists() {
                bail!("{} already holds credentials", creds_dir.display());
            }
            if let Some(key_out) = &key_out {
                write_key(key_out, &signer.to_pem())?;
            }
            let cmd = Command::sign(
                &dir.admin()?,
                RegistryEvent::register(signer.principal().clone(), role, &signer.verifying_key()).draft(),
            )?;
            let position = match server {
                None => {
                    let store = dir.open()?;
                    let req = AppendRequest {
                        stream: StreamId::REGISTRY,
                        expected: ExpectedVersion::Any,
                        commands: vec![cmd],
                    };
                    store.append(req)?.entries[0].position
                }
                Some(addr) => {
                    let admin =
                        chronicle_client::Credentials::load(&dir.credentials_dir(chronicle::datadir::ADMIN_PRINCIPAL))?;
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    rt.block_on(async {
                        let mut c = chronicle_client::Client::connect(&addr, &admin).await?;
                        let r = c.submit(StreamId::REGISTRY, None, &[cmd]).await?;
                        let first = r.entries.first().ok_or_else(|| anyhow::anyhow!("the server appended nothing"))?;
                        anyhow::Ok(first.position)
                    })?
                }
            };
            let creds = dir.issue_credentials(&signer, Some(creds_dir), true)?;
            println!(
                "registered {} as {} at position {}; key {}; credentials in {}",
                signer.principal(),
                role.as_str(),
                position,
                signer.key_id(),
                creds.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_key(path: &std::path::Path, pem: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    Ok(())
}
