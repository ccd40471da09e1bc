//! The data directory: its layout, `init`, and opening the store in it.
//!
//! ```text
//! D/ledger.json           the ledger's identity: origin, ledger principal and public key
//! D/log/                  the append log (sled)
//! D/vault/keys.v1         the key vault (data keys wrapped by the master key)
//! S/master.key            the master key, 64 hex digits (S = --secrets-dir, default D/secrets)
//! S/ledger.key.pem        the ledger's own ed25519 signing key (PKCS#8)
//! S/admin.key.pem         the first admin principal's key (PKCS#8)
//! D/tls/ca.pem            the ledger's local CA certificate (clients and the server trust it)
//! D/tls/server.pem        the server's certificate (localhost, 127.0.0.1, ::1 and --host names)
//! S/tls/ca.key.pem        the CA's key (issues client certificates)
//! S/tls/server.key.pem    the server's TLS key
//! S/principals/ID/        a principal's credentials for the client commands: principal,
//!                         ca.pem, cert.pem, tls.key.pem and (if it signs) signing.key.pem
//! ```
//!
//! The master key may instead come from the `CHRONICLE_MASTER_KEY` environment variable.
//! In production the secrets directory belongs on other storage than the data directory (an HSM
//! or KMS later): whoever holds both the vault and the master key can read every live record.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chronicle_core::{Command, MasterKey, PrincipalId, RegistryEvent, Role, Signer, StreamId};
use chronicle_server::pki::LocalCa;
use chronicle_store::{AppendRequest, ExpectedVersion, Store, StorePaths};
use serde::{Deserialize, Serialize};

/// The ledger's own principal id.
pub const LEDGER_PRINCIPAL: &str = "ledger";
/// The first admin's principal id.
pub const ADMIN_PRINCIPAL: &str = "admin";

/// What `ledger.json` holds.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct LedgerInfo {
    /// Data directory format.
    pub format: u32,
    /// The log's origin name (checkpoints carry it).
    pub origin: String,
    /// The ledger principal's id.
    pub ledger_principal: String,
    /// The ledger's ed25519 public key, hex.
    pub ledger_public_key: String,
}

/// A data directory and where its secrets are.
#[derive(Clone, Debug)]
pub struct DataDir {
    /// The data directory.
    pub root: PathBuf,
    /// The secrets directory.
    pub secrets: PathBuf,
}

/// What `init` created.
pub struct Initialized {
    /// The open store.
    pub store: Store,
    /// The ledger's signer.
    pub ledger: Signer,
    /// The first admin's signer.
    pub admin: Signer,
}

impl DataDir {
    /// A data directory with secrets in `secrets` (default `root/secrets`).
    pub fn new(root: impl Into<PathBuf>, secrets: Option<PathBuf>) -> DataDir {
        let root = root.into();
        let secrets = secrets.unwrap_or_else(|| root.join("secrets"));
        DataDir { root, secrets }
    }

    /// Where the store's parts are.
    pub fn store_paths(&self) -> StorePaths {
        StorePaths::in_data_dir(&self.root)
    }
    /// The log directory.
    pub fn log_dir(&self) -> PathBuf {
        self.store_paths().log
    }
    /// The master key file.
    pub fn master_key_file(&self) -> PathBuf {
        self.secrets.join("master.key")
    }
    /// The ledger key file.
    pub fn ledger_key_file(&self) -> PathBuf {
        self.secrets.join("ledger.key.pem")
    }
    /// The admin key file.
    pub fn admin_key_file(&self) -> PathBuf {
        self.secrets.join("admin.key.pem")
    }
    /// `ledger.json`.
    pub fn info_file(&self) -> PathBuf {
        self.root.join("ledger.json")
    }
    /// The public TLS material: CA and server certificates.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    /// The secret TLS keys.
    pub fn tls_secrets_dir(&self) -> PathBuf {
        self.secrets.join("tls")
    }
    /// Where a principal's credentials are kept by default.
    pub fn credentials_dir(&self, principal: &str) -> PathBuf {
        chronicle_client::credentials_dir(&self.secrets, principal)
    }

    /// Creates the local CA and the server's certificate (for `localhost` and `hosts`).
    pub fn init_tls(&self, origin: &str, hosts: &[String]) -> Result<()> {
        let ca = LocalCa::generate(origin)?;
        let server = ca.issue_server(hosts)?;
        std::fs::create_dir_all(self.tls_dir())?;
        std::fs::create_dir_all(self.tls_secrets_dir())?;
        write_secret(&self.tls_secrets_dir().join("ca.key.pem"), ca.key_pem().as_bytes())?;
        write_secret(&self.tls_secrets_dir().join("server.key.pem"), server.key_pem.as_bytes())?;
        chronicle_core::vault::write_atomically(&self.tls_dir().join("ca.pem"), ca.cert_pem().as_bytes())?;
        chronicle_core::vault::write_atomically(&self.tls_dir().join("server.pem"), server.cert_pem.as_bytes())?;
        Ok(())
    }

    /// The local CA (needs its key from the secrets directory).
    pub fn ca(&self) -> Result<LocalCa> {
        let cert = read(&self.tls_dir().join("ca.pem"))?;
        let key = read(&self.tls_secrets_dir().join("ca.key.pem"))?;
        Ok(LocalCa::load(&cert, &key)?)
    }

    /// What the server needs for mutual TLS. The CA that client certificates must chain to is
    /// the one whose key is in the secrets directory: a CA certificate replaced or added to in the
    /// data directory (which is not secret) would let its holder sign in as any principal.
    pub fn tls_files(&self) -> Result<chronicle_server::TlsFiles> {
        let ca = self.ca().context("the TLS CA certificate does not match the CA key in the secrets directory")?;
        Ok(chronicle_server::TlsFiles {
            ca_pem: ca.cert_pem().to_string(),
            cert_pem: read(&self.tls_dir().join("server.pem"))?,
            key_pem: read(&self.tls_secrets_dir().join("server.key.pem"))?,
        })
    }

    /// Issues a client certificate for a principal and writes its credentials directory (with
    /// its signing key, if given). Returns the directory and the registry entry that records the
    /// certificate (signed by the admin), which the caller appends: the server serves a
    /// certificate only once the registry records it.
    pub fn issue_credentials(
        &self,
        signer: &Signer,
        out: Option<PathBuf>,
        with_key: bool,
    ) -> Result<(PathBuf, Command)> {
        let validity = chronicle_server::pki::validity_days(chronicle_server::pki::CLIENT_CERTIFICATE_DAYS);
        self.issue_credentials_valid(signer, out, with_key, validity)
    }

    /// [`DataDir::issue_credentials`] with a certificate valid for the given period.
    pub fn issue_credentials_valid(
        &self,
        signer: &Signer,
        out: Option<PathBuf>,
        with_key: bool,
        validity: (time::OffsetDateTime, time::OffsetDateTime),
    ) -> Result<(PathBuf, Command)> {
        let ca = self.ca()?;
        let issued = ca.issue_client_valid(signer.principal(), validity)?;
        let record = Command::sign(
            &self.admin()?,
            chronicle_server::pki::certificate_record(signer.principal(), &issued.cert_pem)?.draft(),
        )?;
        let dir = out.unwrap_or_else(|| self.credentials_dir(signer.principal().as_str()));
        if dir.join("principal").exists() {
            bail!("{} already holds credentials", dir.display());
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = [
            ("principal", format!("{}\n", signer.principal())),
            ("ca.pem", ca.cert_pem().to_string()),
            ("cert.pem", issued.cert_pem),
            ("tls.key.pem", issued.key_pem),
        ];
        for (name, body) in files.iter() {
            write_secret(&dir.join(name), body.as_bytes())?;
        }
        if with_key {
            write_secret(&dir.join("signing.key.pem"), signer.to_pem().as_bytes())?;
        }
        Ok((dir, record))
    }

    /// Creates the data directory: secrets, vault, log, and the genesis entries (the ledger
    /// principal, self-signed, then the first admin).
    pub fn init(&self, origin: &str) -> Result<Initialized> {
        if self.info_file().exists() {
            bail!("{} already holds a Chronicle ledger", self.root.display());
        }
        std::fs::create_dir_all(&self.root).with_context(|| format!("creating {}", self.root.display()))?;
        std::fs::create_dir_all(&self.secrets).with_context(|| format!("creating {}", self.secrets.display()))?;
        let master = MasterKey::generate();
        write_secret(&self.master_key_file(), format!("{}\n", master.to_hex().as_str()).as_bytes())?;
        let ledger = Signer::generate(PrincipalId::new(LEDGER_PRINCIPAL)?);
        let admin = Signer::generate(PrincipalId::new(ADMIN_PRINCIPAL)?);
        write_secret(&self.ledger_key_file(), ledger.to_pem().as_bytes())?;
        write_secret(&self.admin_key_file(), admin.to_pem().as_bytes())?;
        let store = Store::create(&self.store_paths(), master)?;
        let genesis = vec![
            Command::sign(
                &ledger,
                RegistryEvent::register(ledger.principal().clone(), Role::Ledger, &ledger.verifying_key()).draft(),
            )?,
            Command::sign(
                &ledger,
                RegistryEvent::register(admin.principal().clone(), Role::Admin, &admin.verifying_key()).draft(),
            )?,
        ];
        store.append(AppendRequest {
            stream: StreamId::REGISTRY,
            expected: ExpectedVersion::NoStream,
            commands: genesis,
        })?;
        let info = LedgerInfo {
            format: 1,
            origin: origin.to_string(),
            ledger_principal: LEDGER_PRINCIPAL.into(),
            ledger_public_key: hex::encode(ledger.verifying_key().to_bytes()),
        };
        self.init_tls(origin, &[])?;
        let (_, record) = self.issue_credentials(&admin, None, true)?;
        store.append(AppendRequest {
            stream: StreamId::REGISTRY,
            expected: ExpectedVersion::Any,
            commands: vec![record],
        })?;
        chronicle_core::vault::write_atomically(&self.info_file(), serde_json::to_string_pretty(&info)?.as_bytes())?;
        Ok(Initialized { store, ledger, admin })
    }

    /// Reads `ledger.json`.
    pub fn info(&self) -> Result<LedgerInfo> {
        let s = std::fs::read_to_string(self.info_file()).with_context(|| {
            format!("{} is not a Chronicle data directory (no ledger.json; run `chronicle init`)", self.root.display())
        })?;
        serde_json::from_str(&s).with_context(|| format!("{} is malformed", self.info_file().display()))
    }

    /// Opens the store (needs the master key).
    pub fn open(&self) -> Result<Store> {
        self.info()?;
        let master = MasterKey::load(&self.master_key_file())?;
        Ok(Store::open(&self.store_paths(), master)?)
    }

    /// Opens the store even when its log does not reach the last checkpoint the ledger signed (a
    /// rollback: the log restored from an older copy, or cut short). The rollback is first written
    /// to the log, in the ledger's own stream (`ledger.rollback_accepted`: the checkpoint the log
    /// no longer reaches, what it holds instead, and the operator's reason), durably; only then is
    /// the vault's anchor marked recovered. Until the log grows past the size the ledger signed
    /// before, no checkpoint is signed: the ledger never signs two at one size. Returns whether a
    /// rollback was accepted.
    pub fn open_accepting_rollback(&self, reason: &str) -> Result<(Store, bool)> {
        self.info()?;
        if reason.trim().is_empty() {
            bail!("accepting a rollback needs a reason, recorded in the log");
        }
        let master = MasterKey::load(&self.master_key_file())?;
        let (store, rolled) = Store::open_with(&self.store_paths(), master, true)?;
        let Some((anchor, found)) = rolled else { return Ok((store, false)) };
        let epoch = store.next_history();
        let payload = serde_json::json!({
            "epoch": epoch,
            "anchor_size": anchor.size,
            "anchor_root": chronicle_core::Hash(anchor.root).to_hex(),
            "log_length": store.head().len,
            "found": found,
            "reason": reason,
        });
        let draft = chronicle_core::Draft {
            stream: StreamId::LEDGER,
            event_type: chronicle_core::EventType::new(chronicle_store::ROLLBACK_ACCEPTED)?,
            effective_time: chronicle_core::Timestamp::now(),
            refs: chronicle_core::References {
                idempotency_key: chronicle_core::random_array::<16>().to_vec(),
                ..Default::default()
            },
            payload_kind: chronicle_core::PayloadKind::Public,
            payload: serde_json::to_vec(&payload)?,
        };
        let cmd = Command::sign(&self.ledger()?, draft)?;
        store.append(AppendRequest {
            stream: StreamId::LEDGER,
            expected: ExpectedVersion::Any,
            commands: vec![cmd],
        })?;
        store.accept_rollback(epoch)?;
        // The log is in a new history now: the tree is rebuilt from it, its MACs bound to the new
        // history, so that nothing kept from the one given up authenticates.
        drop(store);
        let store = Store::open_rebuilding(&self.store_paths(), MasterKey::load(&self.master_key_file())?)?;
        Ok((store, true))
    }

    /// Rebuilds the store's derived state from the entries (see docs/FORMAT.md, "Derived state")
    /// and says what was done.
    pub fn rebuild_store(&self) -> Result<String> {
        self.info()?;
        let master = MasterKey::load(&self.master_key_file())?;
        let store = Store::open_rebuilding(&self.store_paths(), master)?;
        let mut said = store.repaired().unwrap_or("nothing was rebuilt").to_string();
        // A kept checkpoint the rebuild removed (its note was damaged) that the anchor or a
        // witness's cosignature needs: signed again, the same note as before.
        let origin = self.info()?.origin;
        for size in store.required_checkpoints()? {
            if store.checkpoint_at(size)?.is_none() {
                store.sign_checkpoint(&self.note_signer()?, &origin, size)?;
                said.push_str(&format!("; the checkpoint at size {size} signed again"));
            }
        }
        // The projection as a start makes it: loaded if it checks, else replayed from the log;
        // then persisted, so that what is on disk checks too.
        let records = self.open_records(store)?;
        if records.projection().restored {
            said.push_str("; the persisted projection checked");
        } else {
            said.push_str("; the projection replayed from the log");
        }
        records.persist()?;
        Ok(said)
    }

    /// Opens the records service over `store` and gives it the ledger's signer (which finishes
    /// any expungement left half done). If that finds derived state damaged where it reads it
    /// (the store then stops accepting appends and asks for a rebuild at its next open), the
    /// store is opened once more, which rebuilds that state from the log and says so, and the
    /// service with it: damage is repaired from the log, never served.
    pub fn open_records(&self, store: Store) -> Result<chronicle_records::Records> {
        let open = |store: Store| -> Result<chronicle_records::Records> {
            let records = chronicle_records::Records::open(store).context("opening the records projection")?;
            records.set_ledger(self.ledger()?).context("finishing expungement orders")?;
            Ok(records)
        };
        match open(store.clone()) {
            Err(e) if store.damage_found() => {
                eprintln!("chronicle: {e:#}; opening the store again, which rebuilds it from the log");
                drop(store);
                open(self.open()?)
            }
            other => other,
        }
    }

    /// Adopts a witness: a `ledger.witness_adopted` entry in the ledger's own stream, signed by
    /// the ledger. Returns its position.
    pub fn adopt_witness(&self, witness_key: &str) -> Result<u64> {
        adopt_witness_in(&self.open()?, &self.ledger()?, witness_key)
    }
}

/// [`DataDir::adopt_witness`] on a store already open, signed by `ledger`.
pub fn adopt_witness_in(store: &Store, ledger: &Signer, witness_key: &str) -> Result<u64> {
    chronicle_tlog::witness::parse_witness_key(witness_key).map_err(|e| anyhow::anyhow!("witness key: {e}"))?;
    let draft = chronicle_core::Draft {
        stream: StreamId::LEDGER,
        event_type: chronicle_core::EventType::new(chronicle_store::checkpoint::WITNESS_ADOPTED)?,
        effective_time: chronicle_core::Timestamp::now(),
        refs: chronicle_core::References {
            idempotency_key: chronicle_core::random_array::<16>().to_vec(),
            ..Default::default()
        },
        payload_kind: chronicle_core::PayloadKind::Public,
        payload: serde_json::to_vec(&serde_json::json!({ "witness_key": witness_key }))?,
    };
    let cmd = Command::sign(ledger, draft)?;
    let r = store.append(AppendRequest {
        stream: StreamId::LEDGER,
        expected: ExpectedVersion::Any,
        commands: vec![cmd],
    })?;
    Ok(r.entries[0].position)
}

impl DataDir {
    /// Prepares for a fast next start, after a clean stop: opens the store once more and closes it.
    ///
    /// sled 0.34 writes the snapshot of its page table only when it opens, and opening replays its
    /// log since the last snapshot; after a long run (or a large import) that replay is seconds
    /// long. Doing it at a clean stop moves that cost from the next start to this stop. After a
    /// crash, the next start pays it once.
    pub fn settle(&self) -> Result<std::time::Duration> {
        let t = std::time::Instant::now();
        drop(self.open()?);
        Ok(t.elapsed())
    }

    /// Loads the ledger's own signer.
    pub fn ledger(&self) -> Result<Signer> {
        Ok(Signer::from_pem_file(PrincipalId::new(LEDGER_PRINCIPAL)?, &self.ledger_key_file())?)
    }

    /// The ledger's checkpoint signer (note key name = the log's origin).
    pub fn note_signer(&self) -> Result<chronicle_tlog::NoteSigner> {
        let info = self.info()?;
        Ok(chronicle_tlog::NoteSigner::new(&info.origin, self.ledger()?.signing_key().clone())?)
    }

    /// The log's verifier key, `origin+id+base64(0x01 || key)`, from `ledger.json` alone.
    pub fn log_key(&self) -> Result<String> {
        let info = self.info()?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&info.ledger_public_key, &mut key).context("ledger.json: ledger_public_key")?;
        let key = chronicle_core::VerifyingKey::from_bytes(&key).context("ledger.json: ledger_public_key")?;
        Ok(chronicle_tlog::verifier_key(&info.origin, &key))
    }

    /// Loads the first admin's signer.
    pub fn admin(&self) -> Result<Signer> {
        Ok(Signer::from_pem_file(PrincipalId::new(ADMIN_PRINCIPAL)?, &self.admin_key_file())?)
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!("reading {} (a data directory made before TLS existed needs `chronicle init` again)", path.display())
    })
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
