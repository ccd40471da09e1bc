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
    /// Register a principal and issue it a TLS client certificate.
    ///
    /// With `--public-key` and `--csr` (made by the principal with `chronicle keygen` on its own
    /// machine), the bureau never holds its private keys: the public key is registered, the
    /// certificate is issued over the request's key, and `cert.pem` and `ca.pem` are written to
    /// `--creds-out` for the principal to put beside its keys. Without them, the bureau makes
    /// both keys itself and writes a whole credentials directory, signing key included: a
    /// convenience for a demonstration or a single-machine trial, where the bureau could sign as
    /// the principal.
    ///
    /// Example: chronicle principal add --data-dir D --id court.cp23 --role court --public-key signing.pub --csr tls.csr.pem --creds-out court.cp23
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
        #[arg(long, conflicts_with = "public_key")]
        key_out: Option<PathBuf>,
        /// The principal's Ed25519 public key (64 hex digits, the `signing.pub` of `chronicle
        /// keygen`).
        #[arg(long, requires = "csr")]
        public_key: Option<PathBuf>,
        /// The principal's certificate signing request (the `tls.csr.pem` of `chronicle keygen`).
        #[arg(long, requires = "public_key")]
        csr: Option<PathBuf>,
        /// How many days its certificate is valid (1 to 3653).
        #[arg(long, default_value_t = chronicle_server::pki::CLIENT_CERTIFICATE_DAYS)]
        valid_days: i64,
        /// Where to write its credentials (default SECRETS/principals/ID).
        #[arg(long)]
        creds_out: Option<PathBuf>,
        /// Register through this running server (as the admin) instead of opening the log,
        /// which the server holds.
        #[arg(long)]
        server: Option<String>,
    },
    /// Issue another TLS client certificate to a registered principal, over the key of a
    /// certificate signing request it made (a renewal before the last expires, or a replacement
    /// for one revoked or lost), and record it in the registry. Its signing keys are untouched.
    ///
    /// Example: chronicle principal certify --data-dir D --id court.cp23 --csr tls.csr.pem --creds-out court.cp23
    Certify {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The principal.
        #[arg(long)]
        id: String,
        /// The principal's certificate signing request (`tls.csr.pem` of `chronicle keygen`).
        #[arg(long)]
        csr: PathBuf,
        /// How many days the certificate is valid (1 to 3653).
        #[arg(long, default_value_t = chronicle_server::pki::CLIENT_CERTIFICATE_DAYS)]
        valid_days: i64,
        /// Where to write `cert.pem` and `ca.pem` (a new or empty directory).
        #[arg(long)]
        creds_out: PathBuf,
        /// Record it through this running server (as the admin).
        #[arg(long)]
        server: Option<String>,
    },
    /// List every principal: its role, where it was registered, and each of its signing keys
    /// with its state (valid, retired or revoked, and where). Reads the log (not while a server
    /// holds it).
    ///
    /// Example: chronicle principal list --data-dir D --json
    List {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// One JSON object per principal, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Rotate a principal's signing key: register the new public key (made by the principal,
    /// `chronicle keygen`) and retire the old one from this entry on. Entries signed before
    /// stay valid.
    ///
    /// Example: chronicle principal rotate --data-dir D --id court.cp23 --public-key new/signing.pub
    Rotate {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The principal.
        #[arg(long)]
        id: String,
        /// The new Ed25519 public key (64 hex digits, `signing.pub`).
        #[arg(long)]
        public_key: PathBuf,
        /// The key id to retire (16 hex digits); by default the principal's one valid key.
        #[arg(long)]
        retires: Option<String>,
        /// Submit through this running server (as the admin).
        #[arg(long)]
        server: Option<String>,
    },
    /// Revoke one of a principal's signing keys (a lost or stolen key: entries it signed before
    /// stay valid) or one of its TLS certificates (the server refuses it from then on), from this
    /// entry on. The two are separate credentials: revoking one leaves the other as it was.
    ///
    /// Example: chronicle principal revoke --data-dir D --id court.cp23 --key-id 1a2b3c4d5e6f7a8b --reason "laptop stolen"
    Revoke {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The principal.
        #[arg(long)]
        id: String,
        /// The signing key's id (16 hex digits, as `principal list` shows).
        #[arg(long, required_unless_present = "certificate", conflicts_with = "certificate")]
        key_id: Option<String>,
        /// The certificate's SHA-256 fingerprint (64 hex digits, as `principal list` shows).
        #[arg(long)]
        certificate: Option<String>,
        /// Why (kept in the log).
        #[arg(long)]
        reason: String,
        /// Submit through this running server (as the admin).
        #[arg(long)]
        server: Option<String>,
    },
}

pub fn run(a: PrincipalArgs) -> Result<ExitCode> {
    match a.cmd {
        PrincipalCmd::Add { data_dir, id, role, key_out, public_key, csr, valid_days, creds_out, server } => {
            let role: Role = serde_json::from_value(serde_json::Value::String(role.clone()))
                .with_context(|| format!("unknown role {role:?}"))?;
            if role == Role::Ledger {
                bail!("there is only one ledger principal");
            }
            let validity = validity(valid_days)?;
            let dir = DataDir::new(&data_dir, None);
            let principal = PrincipalId::new(id)?;
            // The author's own keys, or (for convenience) keys made here.
            let (key, made) = match (&public_key, &csr) {
                (Some(pk), Some(csr)) => {
                    let key = read_public_key(pk)?;
                    let request = std::fs::read_to_string(csr).with_context(|| format!("reading {}", csr.display()))?;
                    (key, Err(request))
                }
                _ => {
                    let signer = Signer::generate(principal.clone());
                    (signer.verifying_key(), Ok(signer))
                }
            };
            let out = OutDir::new(creds_out.clone().unwrap_or_else(|| dir.credentials_dir(principal.as_str())))?;
            // Everything is written before anything is recorded (a request that does not verify
            // records nothing); the principal and its certificate are recorded in one atomic
            // append, and if that fails, what this command wrote is removed.
            let admin = dir.admin()?;
            let (cert, record) = match &made {
                Err(request) => out.or_undo(write_certificate(&dir, &admin, &principal, request, validity, &out))?,
                Ok(signer) => {
                    let issued = dir.issue_credentials_valid(signer, Some(out.path.clone()), true, validity);
                    (None, out.or_undo(issued)?.1)
                }
            };
            if let (Some(key_out), Ok(signer)) = (&key_out, &made) {
                out.or_undo(super::keygen::write_new(key_out, signer.to_pem().as_bytes(), true))?;
            }
            let cmd = Command::sign(&admin, RegistryEvent::register(principal.clone(), role, &key).draft())?;
            let position = out.or_undo(submit(&dir, server, vec![cmd, record]))?;
            let key_id = chronicle_core::KeyId::of(&key.to_bytes());
            match cert {
                None => println!(
                    "registered {principal} as {} at position {position}; key {key_id}; credentials (keys made here, \
                     for convenience: the bureau could sign as this principal) in {}",
                    role.as_str(),
                    out.path.display()
                ),
                Some(said) => {
                    println!("registered {principal} as {} at position {position}; key {key_id}; {said}", role.as_str())
                }
            }
        }
        PrincipalCmd::Certify { data_dir, id, csr, valid_days, creds_out, server } => {
            let validity = validity(valid_days)?;
            let dir = DataDir::new(&data_dir, None);
            let principal = PrincipalId::new(id)?;
            let request = std::fs::read_to_string(&csr).with_context(|| format!("reading {}", csr.display()))?;
            let out = OutDir::new(creds_out)?;
            let written = write_certificate(&dir, &dir.admin()?, &principal, &request, validity, &out);
            let (said, record) = out.or_undo(written)?;
            let position = out.or_undo(submit(&dir, server, vec![record]))?;
            println!("certified {principal} at position {position}; {}", said.unwrap_or_default());
        }
        PrincipalCmd::List { data_dir, json } => {
            let dir = DataDir::new(&data_dir, None);
            let registry = dir.open()?.registry();
            let mut all: Vec<_> = registry.principals().collect();
            all.sort_by(|a, b| a.0.cmp(b.0));
            for (id, p) in all {
                let keys: Vec<serde_json::Value> = p
                    .keys
                    .iter()
                    .filter_map(|k| registry.key(k).map(|s| (k, s)))
                    .map(|(k, s)| {
                        let state = match (s.revoked_at, s.retired_at) {
                            (Some(at), _) => format!("revoked at {at}"),
                            (None, Some(at)) => format!("retired at {at}"),
                            (None, None) => "valid".to_string(),
                        };
                        serde_json::json!({
                            "key_id": k.to_hex(),
                            "public_key": hex::encode(s.public.to_bytes()),
                            "added_at": s.added_at,
                            "state": state,
                        })
                    })
                    .collect();
                let certificates: Vec<serde_json::Value> = registry
                    .certificates_of(id)
                    .into_iter()
                    .map(|(fp, c)| {
                        let now = time::OffsetDateTime::now_utc().unix_timestamp();
                        let state = match c.revoked_at {
                            Some(at) => format!("revoked at {at}"),
                            None if c.not_after <= now => "expired".to_string(),
                            None => "valid".to_string(),
                        };
                        serde_json::json!({
                            "fingerprint": fp,
                            "not_after": c.not_after,
                            "issued_at": c.issued_at,
                            "state": state,
                        })
                    })
                    .collect();
                if json {
                    let line = serde_json::json!({
                        "principal": id.as_str(),
                        "role": p.role.as_str(),
                        "registered_at": p.registered_at,
                        "keys": keys,
                        "certificates": certificates,
                    });
                    println!("{line}");
                } else {
                    let keys: Vec<String> = keys
                        .iter()
                        .map(|k| {
                            format!("{} {}", k["key_id"].as_str().unwrap_or(""), k["state"].as_str().unwrap_or(""))
                        })
                        .collect();
                    let certs: Vec<String> = certificates
                        .iter()
                        .map(|c| {
                            format!("{} {}", c["fingerprint"].as_str().unwrap_or(""), c["state"].as_str().unwrap_or(""))
                        })
                        .collect();
                    println!(
                        "{id}  {}  registered at {}  keys: {}  certificates: {}",
                        p.role.as_str(),
                        p.registered_at,
                        keys.join(", "),
                        certs.join(", ")
                    );
                }
            }
        }
        PrincipalCmd::Rotate { data_dir, id, public_key, retires, server } => {
            let dir = DataDir::new(&data_dir, None);
            let principal = PrincipalId::new(id)?;
            let key = read_public_key(&public_key)?;
            let retires = match retires {
                Some(hex) => chronicle_core::KeyId::from_hex(&hex).with_context(|| format!("--retires {hex:?}"))?,
                None if server.is_some() => bail!("with --server, say which key to retire (--retires KEY_ID)"),
                None => {
                    let registry = dir.open()?.registry();
                    let p = registry
                        .principal(&principal)
                        .with_context(|| format!("{principal} is not a registered principal"))?;
                    let valid: Vec<chronicle_core::KeyId> = p
                        .keys
                        .iter()
                        .copied()
                        .filter(|k| registry.key(k).is_some_and(|s| s.revoked_at.is_none() && s.retired_at.is_none()))
                        .collect();
                    match valid.as_slice() {
                        [one] => *one,
                        [] => bail!("{principal} holds no valid key to retire"),
                        _ => bail!("{principal} holds several valid keys: say which to retire (--retires KEY_ID)"),
                    }
                }
            };
            let new_id = chronicle_core::KeyId::of(&key.to_bytes());
            let cmd = Command::sign(&dir.admin()?, RegistryEvent::rotate(principal.clone(), &key, retires).draft())?;
            let position = submit(&dir, server, vec![cmd])?;
            println!("rotated the key of {principal} at position {position}: {retires} retired, {new_id} valid");
        }
        PrincipalCmd::Revoke { data_dir, id, key_id, certificate, reason, server } => {
            let dir = DataDir::new(&data_dir, None);
            let principal = PrincipalId::new(id)?;
            let (event, what) = match (key_id, certificate) {
                (Some(k), _) => {
                    let key = chronicle_core::KeyId::from_hex(&k).with_context(|| format!("--key-id {k:?}"))?;
                    (RegistryEvent::revoke(principal.clone(), key, reason), format!("key {key}"))
                }
                (None, Some(fp)) => {
                    // As `principal list` prints it, or as openssl does (upper case, colons).
                    let fp: String = fp.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
                    (
                        RegistryEvent::certificate_revoked(principal.clone(), fp.clone(), reason),
                        format!("certificate {fp}"),
                    )
                }
                (None, None) => bail!("give --key-id or --certificate"),
            };
            let cmd = Command::sign(&dir.admin()?, event.draft())?;
            let position = submit(&dir, server, vec![cmd])?;
            println!("revoked {what} of {principal} at position {position}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An Ed25519 public key from a file of 64 hex digits (`signing.pub`).
fn read_public_key(path: &std::path::Path) -> Result<chronicle_core::VerifyingKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut raw = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut raw)
        .with_context(|| format!("{}: not 64 hex digits of an Ed25519 public key", path.display()))?;
    chronicle_core::VerifyingKey::from_bytes(&raw)
        .with_context(|| format!("{}: not an Ed25519 public key", path.display()))
}

/// Appends registry commands signed by the admin, atomically: to the log, or through a running
/// server. Returns the first one's position.
fn submit(dir: &DataDir, server: Option<String>, commands: Vec<Command>) -> Result<u64> {
    match server {
        None => {
            let store = dir.open()?;
            let req = AppendRequest { stream: StreamId::REGISTRY, expected: ExpectedVersion::Any, commands };
            Ok(store.append(req)?.entries[0].position)
        }
        Some(addr) => {
            let admin = chronicle_client::Credentials::load(&dir.credentials_dir(chronicle::datadir::ADMIN_PRINCIPAL))?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let mut c = chronicle_client::Client::connect(&addr, &admin).await?;
                let r = c.submit(StreamId::REGISTRY, None, &commands).await?;
                let first = r.entries.first().ok_or_else(|| anyhow::anyhow!("the server appended nothing"))?;
                anyhow::Ok(first.position)
            })
        }
    }
}

/// The validity of a certificate of `days` days, or a precise error.
fn validity(days: i64) -> Result<(time::OffsetDateTime, time::OffsetDateTime)> {
    let max = chronicle_server::pki::CLIENT_CERTIFICATE_DAYS_MAX;
    if !(1..=max).contains(&days) {
        bail!("--valid-days must be 1 to {max}");
    }
    Ok(chronicle_server::pki::validity_days(days))
}

/// Issues a certificate over `request` for `principal`, writes `cert.pem` and `ca.pem` into
/// `out`, and returns what to say and the registry entry recording it (signed by `admin`).
fn write_certificate(
    dir: &DataDir,
    admin: &Signer,
    principal: &PrincipalId,
    request: &str,
    validity: (time::OffsetDateTime, time::OffsetDateTime),
    out: &OutDir,
) -> Result<(Option<String>, Command)> {
    let ca = dir.ca()?;
    let cert = ca.issue_client_for_request(principal, request, validity)?;
    let record = Command::sign(admin, chronicle_server::pki::certificate_record(principal, &cert)?.draft())?;
    out.write("cert.pem", cert.as_bytes())?;
    out.write("ca.pem", ca.cert_pem().as_bytes())?;
    let (fingerprint, expires) = chronicle_server::pki::fingerprint(&cert)?;
    let said = format!(
        "certificate sha256 {fingerprint}, valid until {expires}; cert.pem and ca.pem in {} (the bureau holds none of \
         its private keys)",
        out.path.display()
    );
    Ok((Some(said), record))
}

/// A directory this command writes credentials into: new or empty, so that undoing a failed
/// command removes only what it wrote.
struct OutDir {
    path: PathBuf,
    made: bool,
}

impl OutDir {
    fn new(path: PathBuf) -> Result<OutDir> {
        let exists = path.exists();
        if exists && std::fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))?.next().is_some() {
            bail!("{} is not empty: credentials are written only into a new or empty directory", path.display());
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(OutDir { path, made: !exists })
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        super::keygen::write_new(&self.path.join(name), bytes, false)
    }

    /// `r`, or (if it failed) `r` after removing what this command wrote here.
    fn or_undo<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            for name in ["principal", "ca.pem", "cert.pem", "tls.key.pem", "signing.key.pem"] {
                let _ = std::fs::remove_file(self.path.join(name));
            }
            if self.made {
                let _ = std::fs::remove_dir(&self.path);
            }
        }
        r
    }
}
