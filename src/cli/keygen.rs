//! `chronicle keygen`: an author's keys, made on the author's machine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chronicle_core::{PrincipalId, Signer};

/// Make a principal's keys on its own machine: an Ed25519 signing key and a TLS key with a
/// certificate signing request. The bureau receives only `signing.pub` and `tls.csr.pem`
/// (`chronicle principal add --public-key ... --csr ...`) and never sees the private keys; the
/// certificate it returns (`cert.pem`, with `ca.pem`) goes into the same directory, which is then
/// the principal's credentials directory for the client commands (`--creds DIR`).
///
/// Example: chronicle keygen --id court.cp23 --out ~/chronicle-court
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// The principal's id, as the bureau will register it (a-z 0-9 . _ @ : -).
    #[arg(long)]
    id: String,
    /// The directory to make (must not exist, or be empty).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: KeygenArgs) -> Result<ExitCode> {
    let principal = PrincipalId::new(a.id.as_str()).with_context(|| format!("--id {:?}", a.id))?;
    if a.out.exists() && std::fs::read_dir(&a.out)?.next().is_some() {
        bail!("{} is not empty: keys are made only into a new directory", a.out.display());
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let signer = Signer::generate(principal.clone());
    let tls = chronicle_server::pki::request(&principal)?;
    let public = format!("{}\n", hex::encode(signer.verifying_key().to_bytes()));
    let files: [(&str, &str, bool); 5] = [
        ("principal", &format!("{principal}\n"), false),
        ("signing.key.pem", &signer.to_pem(), true),
        ("signing.pub", &public, false),
        ("tls.key.pem", &tls.key_pem, true),
        ("tls.csr.pem", &tls.cert_pem, false),
    ];
    for (name, body, secret) in files {
        write_new(&a.out.join(name), body.as_bytes(), secret)?;
    }
    println!(
        "made the keys of {principal} in {dir} (signing key {key}); give the bureau {dir}/signing.pub and \
         {dir}/tls.csr.pem, keep signing.key.pem and tls.key.pem here, and put the cert.pem and ca.pem it returns \
         beside them",
        dir = a.out.display(),
        key = signer.key_id(),
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a new file (never over one), mode 0600 if `secret`, and syncs it.
pub(crate) fn write_new(path: &std::path::Path, bytes: &[u8], secret: bool) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(if secret { 0o600 } else { 0o644 });
    let mut f = o.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
