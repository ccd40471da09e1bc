//! The key vault: data keys, kept apart from the log, wrapped by a master key.
//!
//! Every stream has a current data key (the store records which, atomically with the entries).
//! Each entry's payload is sealed under its own random content key, and the content key is wrapped
//! by the stream's data key (the store keeps wrapped content keys beside the log). Destroying a
//! data key therefore makes every content key wrapped by it, and so every payload sealed under
//! those, unreadable: crypto-shredding.
//!
//! Why keys are not in sled: sled keeps superseded values in its segments until it happens to
//! rewrite them, so a key "deleted" from sled may survive on disk. The vault is a small file of
//! its own. New keys are generated in batches of [`SPARE_KEYS`], appended and `fdatasync`ed before
//! any of them is handed out, so a key is durable before any entry can be sealed under it and a
//! new stream costs no `fsync` of its own; destroying keys rewrites the whole file without them (write a temporary,
//! `fsync`, rename over, `fsync` the directory), so the old bytes are no longer in any file the
//! project owns. The live keys' records are copied into the new file as they were (kept in memory
//! since they were read or written), so a destruction costs a copy of the file, not a wrapping of
//! every key. What the filesystem or the device keeps of freed blocks is outside the project's
//! reach: see the README, "What expungement cannot promise".
//!
//! The vault also keeps the ledger's **anchor**: the size and root of the latest checkpoint the
//! ledger signed. It is storage apart from the log, written durably before a checkpoint is
//! returned, and authenticated with the master key, so a log restored from an older copy (or cut
//! short) while the vault keeps its newer state is noticed when the store opens, and the ledger
//! never signs a checkpoint that its log is not consistent with (see the store's `checkpoint`).
//!
//! File layout (all integers big-endian):
//! `"CHRONICLE-VAULT\n" | version u8 = 3 | master check [16]` then records, each followed by a
//! checksum [8] (the first 8 bytes of `blake3(record bytes before it)`):
//! - tag 1, a live key: `1 | key id [16] | wrapped key [72]`, the wrapped key being
//!   `nonce || XChaCha20-Poly1305(master, nonce, key, aad = DATA_KEY_AAD || key id)`;
//! - tag 2, a destroyed key's tombstone: `2 | key id [16]`;
//! - tag 3, the anchor: `3 | size u64 | root [32] | flags u8 | epoch u64 | mac [32]`, flags bit 0
//!   set after a rollback was accepted (see [`Anchor::recovered`]), epoch the history the log is
//!   in (see [`Anchor::epoch`]), the mac being
//!   `BLAKE3("chronicle.vault-anchor.v1\n" ‖ master key ‖ the record before it)`; the last one in
//!   the file is the anchor.
//!
//! A torn last record (a crash during an unacknowledged append) is dropped on open; damage
//! anywhere else is an error.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::error::SealError;
use crate::hash::{DOMAIN_CONTENT_KEY_AAD, DOMAIN_DATA_KEY_AAD, Hash};
use crate::payload::{NONCE_LEN, SymmetricKey, TAG_LEN, aead_open, aead_open_in_place, aead_seal};

const MAGIC: &[u8; 16] = b"CHRONICLE-VAULT\n";
const VERSION: u8 = 3;
const HEADER_LEN: usize = 16 + 1 + 16;
const WRAPPED_LEN: usize = 24 + 32 + 16;
const TAG_KEY: u8 = 1;
const RECORD_KEY_LEN: usize = 1 + 16 + WRAPPED_LEN + 8;
const TAG_DESTROYED: u8 = 2;
const TAG_ANCHOR: u8 = 3;
const ANCHOR_BODY_LEN: usize = 1 + 8 + 32 + 1 + 8 + 32;
/// Anchors appended since the file was last written whole before it is written whole again.
const ANCHORS_BEFORE_REWRITE: usize = 1024;
const DOMAIN_ANCHOR: &[u8] = b"chronicle.vault-anchor.v1\n";
/// Domain of a tombstone's MAC: `BLAKE3(this ‖ master key ‖ key id)`. Without it, anyone who can
/// write the vault file could append a tombstone for a live key: every entry under it would read
/// as expunged, with no order in the log.
const DOMAIN_TOMBSTONE: &[u8] = b"chronicle.vault-tombstone.v1\n";
/// A tombstone: tag, key id, MAC.
const TOMBSTONE_BODY_LEN: usize = 1 + 16 + 32;

fn tombstone_mac(master: &MasterKey, id: &DataKeyId) -> Hash {
    Hash::of(DOMAIN_TOMBSTONE, &[master.0.as_bytes(), &id.0])
}
/// How many keys are generated (and synced) at once.
pub const SPARE_KEYS: usize = 64;
/// Length of a wrapped content key as the store keeps it: data key id, then the wrapped key.
pub const WRAPPED_CONTENT_KEY_LEN: usize = 16 + WRAPPED_LEN;
/// What follows the data key id in an expunged entry's wrapping: the content key is gone for good,
/// and the wrapping says so (see [`Vault::expunged_wrapping`]).
const EXPUNGED_TAG: &[u8; WRAPPED_CONTENT_KEY_LEN - 16] =
    b"chronicle: content key destroyed by an expungement order\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
/// Name of the environment variable that may hold the master key (64 hex digits).
pub const MASTER_KEY_ENV: &str = "CHRONICLE_MASTER_KEY";

/// Identifies one data key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct DataKeyId(pub [u8; 16]);

impl std::fmt::Display for DataKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The key that wraps every data key.
pub struct MasterKey(SymmetricKey);

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> MasterKey {
        MasterKey(SymmetricKey::random())
    }
    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<MasterKey, VaultError> {
        let mut b = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(s.trim(), &mut b[..]).map_err(|_| VaultError::MasterKeyMalformed)?;
        Ok(MasterKey(SymmetricKey::from_bytes(*b)))
    }
    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_bytes()))
    }
    /// Reads the key from `CHRONICLE_MASTER_KEY` if set, else from `file`.
    pub fn load(file: &Path) -> Result<MasterKey, VaultError> {
        if let Ok(v) = std::env::var(MASTER_KEY_ENV) {
            return MasterKey::from_hex(&v);
        }
        let s = Zeroizing::new(
            std::fs::read_to_string(file)
                .map_err(|e| VaultError::MasterKeyUnreadable(file.display().to_string(), e.to_string()))?,
        );
        MasterKey::from_hex(&s)
    }
    /// A key for one purpose, derived from the master key (BLAKE3's key derivation, `context`
    /// naming the purpose): whoever holds the master key can recompute it, nobody else can.
    pub fn derive(&self, context: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(context, self.0.as_bytes()))
    }

    fn check(&self) -> [u8; 16] {
        let h = Hash::of(b"chronicle.vault-check.v1\n", &[self.0.as_bytes()]);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.0[..16]);
        out
    }
}

/// The vault cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The master key is not 64 hex digits.
    #[error("master key must be 64 hex digits")]
    MasterKeyMalformed,
    /// The master key file cannot be read.
    #[error("cannot read master key file {0}: {1}")]
    MasterKeyUnreadable(String, String),
    /// The vault was written under a different master key.
    #[error("the master key does not match this vault")]
    WrongMasterKey,
    /// The file is damaged before its last record.
    #[error("vault file damaged at byte {offset}: {what}")]
    Corrupt {
        /// Byte offset of the damage.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// An I/O operation failed.
    #[error("vault i/o: {0}")]
    Io(String),
    /// A vault already exists where a new one was to be created.
    #[error("a vault already exists at {0}")]
    Exists(String),
}

impl From<std::io::Error> for VaultError {
    fn from(e: std::io::Error) -> Self {
        VaultError::Io(e.to_string())
    }
}

enum Slot {
    /// A live key, with its record exactly as in the file (wrapped under the master key), so
    /// that rewriting the file after a destruction copies it instead of wrapping the key again.
    Live {
        key: SymmetricKey,
        record: Vec<u8>,
    },
    Destroyed,
}

/// A vault file's bytes and each record's offset and length (checksum excluded).
type Scanned = (Zeroizing<Vec<u8>>, Vec<(usize, usize)>);

/// The latest checkpoint the ledger signed, as the vault keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: [u8; 32],
    /// Set when an operator accepted that the log no longer reaches this checkpoint (a rollback,
    /// recorded in the log): the log need not be consistent with it, but the ledger signs no
    /// checkpoint at a size up to it again, so it never signs two at one size.
    pub recovered: bool,
    /// The history the log is in: each accepted rollback starts a new one (named in the log's
    /// record of it), and every later anchor carries it on. The store binds what it derives from one
    /// history (its tree's MACs) to it, so that nothing saved from a history the operator gave
    /// up authenticates in the next.
    pub epoch: u64,
}

impl Anchor {
    fn body(&self) -> [u8; ANCHOR_BODY_LEN - 32] {
        let mut b = [0u8; ANCHOR_BODY_LEN - 32];
        b[0] = TAG_ANCHOR;
        b[1..9].copy_from_slice(&self.size.to_be_bytes());
        b[9..41].copy_from_slice(&self.root);
        b[41] = u8::from(self.recovered);
        b[42..50].copy_from_slice(&self.epoch.to_be_bytes());
        b
    }

    /// An anchor record as stored (`rec` is [`ANCHOR_BODY_LEN`] bytes at offset `at`), its MAC
    /// checked.
    fn decode(rec: &[u8], at: usize, master: &MasterKey) -> Result<Anchor, VaultError> {
        let a = Anchor {
            size: u64::from_be_bytes(rec[1..9].try_into().expect("8 bytes")),
            root: rec[9..41].try_into().expect("32 bytes"),
            recovered: rec[41] & 1 == 1,
            epoch: u64::from_be_bytes(rec[42..50].try_into().expect("8 bytes")),
        };
        if a.mac(master).0[..] != rec[50..ANCHOR_BODY_LEN] {
            return Err(VaultError::Corrupt { offset: at, what: "the anchor does not authenticate" });
        }
        Ok(a)
    }

    fn mac(&self, master: &MasterKey) -> Hash {
        Hash::of(DOMAIN_ANCHOR, &[master.0.as_bytes(), &self.body()])
    }
}

/// The open vault. Not thread-safe by itself; the store guards it.
pub struct Vault {
    path: PathBuf,
    master: MasterKey,
    file: File,
    slots: HashMap<DataKeyId, Slot>,
    spare: Vec<DataKeyId>,
    anchor: Option<Anchor>,
    anchors_appended: usize,
}

impl Vault {
    /// The vault file inside a vault directory.
    pub fn file_path(dir: &Path) -> PathBuf {
        dir.join("keys.v1")
    }

    /// Creates an empty vault in `dir`.
    pub fn create(dir: &Path, master: MasterKey) -> Result<Vault, VaultError> {
        std::fs::create_dir_all(dir)?;
        let path = Vault::file_path(dir);
        if path.exists() {
            return Err(VaultError::Exists(path.display().to_string()));
        }
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&master.check());
        write_atomically(&path, &header)?;
        Vault::open(dir, master)
    }

    /// Opens the vault in `dir`, dropping a torn last record.
    pub fn open(dir: &Path, master: MasterKey) -> Result<Vault, VaultError> {
        let Parsed { path, slots, anchor, anchors_appended, good_len, len } = Vault::parse(dir, &master)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        if good_len < len {
            file.set_len(good_len as u64)?;
            file.sync_all()?;
        }
        Ok(Vault { path, master, file, slots, spare: Vec::new(), anchor, anchors_appended })
    }

    /// Reads and checks the vault file in `dir`, changing nothing.
    fn parse(dir: &Path, master: &MasterKey) -> Result<Parsed, VaultError> {
        let path = Vault::file_path(dir);
        let bytes =
            Zeroizing::new(std::fs::read(&path).map_err(|e| VaultError::Io(format!("{}: {e}", path.display())))?);
        if bytes.len() < HEADER_LEN || &bytes[..16] != MAGIC {
            return Err(VaultError::Corrupt { offset: 0, what: "not a vault file" });
        }
        if bytes[16] != VERSION {
            return Err(VaultError::Corrupt { offset: 16, what: "unknown vault version" });
        }
        if bytes[17..HEADER_LEN] != master.check() {
            return Err(VaultError::WrongMasterKey);
        }
        // Each record's offset and length, checked against its checksum.
        let mut records = Vec::new();
        let mut at = HEADER_LEN;
        let mut good_len = at;
        while at < bytes.len() {
            let tag = bytes[at];
            let body = match tag {
                TAG_KEY => 1 + 16 + WRAPPED_LEN,
                TAG_DESTROYED => TOMBSTONE_BODY_LEN,
                TAG_ANCHOR => ANCHOR_BODY_LEN,
                _ => 0,
            };
            let torn_or_bad = |what| {
                if at + 1 + 16 + WRAPPED_LEN + 8 >= bytes.len() {
                    Ok(())
                } else {
                    Err(VaultError::Corrupt { offset: at, what })
                }
            };
            if body == 0 {
                torn_or_bad("unknown record tag")?;
                break;
            }
            if at + body + 8 > bytes.len() {
                break; // torn tail
            }
            let rec = &bytes[at..at + body];
            let sum = Hash::of(b"", &[rec]);
            if sum.0[..8] != bytes[at + body..at + body + 8] {
                torn_or_bad("record checksum")?;
                break;
            }
            records.push((at, body));
            at += body + 8;
            good_len = at;
        }
        // The anchor: the last one in the file, authenticated with the master key.
        let mut anchor = None;
        let mut anchors_appended = 0;
        for &(at, body) in records.iter().filter(|(at, _)| bytes[*at] == TAG_ANCHOR) {
            anchor = Some(Anchor::decode(&bytes[at..at + body], at, master)?);
            anchors_appended += 1;
        }
        let records: Vec<(usize, usize)> = records.into_iter().filter(|(at, _)| bytes[*at] != TAG_ANCHOR).collect();
        // Unwrapping is most of the work (one AEAD per key); it runs on all cores, and the slots
        // are then filled in file order, so that a later record of a key (its destruction) wins.
        let opened: Vec<Result<(DataKeyId, Slot), VaultError>> = records
            .par_iter()
            .map(|&(at, body)| {
                let rec = &bytes[at..at + body];
                let mut id = [0u8; 16];
                id.copy_from_slice(&rec[1..17]);
                let id = DataKeyId(id);
                if rec[0] != TAG_KEY {
                    if tombstone_mac(master, &id).0[..] != rec[17..49] {
                        return Err(VaultError::Corrupt { offset: at, what: "a tombstone does not authenticate" });
                    }
                    return Ok((id, Slot::Destroyed));
                }
                let plain = aead_open(&master.0, &[DOMAIN_DATA_KEY_AAD, &id.0], &rec[17..])
                    .map_err(|_| VaultError::Corrupt { offset: at, what: "wrapped key does not authenticate" })?;
                let mut k = [0u8; 32];
                k.copy_from_slice(&plain);
                Ok((id, Slot::Live { key: SymmetricKey::from_bytes(k), record: bytes[at..at + body + 8].to_vec() }))
            })
            .collect();
        let mut slots = HashMap::with_capacity(opened.len());
        for o in opened {
            let (id, slot) = o?;
            slots.insert(id, slot);
        }
        Ok(Parsed { path, slots, anchor, anchors_appended, good_len, len: bytes.len() })
    }

    /// The latest checkpoint the ledger signed, if it signed any.
    pub fn anchor(&self) -> Option<Anchor> {
        self.anchor
    }

    /// The history the log is in ([`Anchor::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.anchor.map_or(0, |a| a.epoch)
    }

    /// Records the latest checkpoint signed, durably, before it is handed out.
    pub fn set_anchor(&mut self, anchor: Anchor) -> Result<(), VaultError> {
        if self.anchors_appended >= ANCHORS_BEFORE_REWRITE {
            self.anchor = Some(anchor);
            return self.rewrite();
        }
        let mut rec = anchor.body().to_vec();
        rec.extend_from_slice(&anchor.mac(&self.master).0);
        let sum = Hash::of(b"", &[&rec]);
        rec.extend_from_slice(&sum.0[..8]);
        self.file.write_all(&rec)?;
        self.file.sync_data()?;
        self.anchor = Some(anchor);
        self.anchors_appended += 1;
        Ok(())
    }

    /// A new data key, already durable in the vault file. Keys are generated [`SPARE_KEYS`] at a
    /// time with one `fdatasync`; keys never handed out before a restart stay unused.
    pub fn new_key(&mut self) -> Result<DataKeyId, VaultError> {
        if self.spare.is_empty() {
            let mut out = Vec::with_capacity(SPARE_KEYS * RECORD_KEY_LEN);
            let mut fresh = Vec::with_capacity(SPARE_KEYS);
            for _ in 0..SPARE_KEYS {
                let id = DataKeyId(crate::random_array());
                let key = SymmetricKey::random();
                let record = self.record(&id, Some(&key));
                out.extend_from_slice(&record);
                fresh.push((id, key, record));
            }
            self.file.write_all(&out)?;
            self.file.sync_data()?;
            for (id, key, record) in fresh {
                self.slots.insert(id, Slot::Live { key, record });
                self.spare.push(id);
            }
        }
        // The pool was refilled just above when empty.
        Ok(self.spare.pop().expect("spare keys available"))
    }

    fn record(&self, id: &DataKeyId, key: Option<&SymmetricKey>) -> Vec<u8> {
        let mut rec = Vec::with_capacity(RECORD_KEY_LEN);
        rec.push(if key.is_some() { TAG_KEY } else { TAG_DESTROYED });
        rec.extend_from_slice(&id.0);
        match key {
            Some(k) => rec.extend_from_slice(&aead_seal(&self.master.0, &[DOMAIN_DATA_KEY_AAD, &id.0], k.as_bytes())),
            None => rec.extend_from_slice(&tombstone_mac(&self.master, id).0),
        }
        let sum = Hash::of(b"", &[&rec]);
        rec.extend_from_slice(&sum.0[..8]);
        rec
    }

    /// A data key by id.
    pub fn key(&self, id: &DataKeyId) -> Result<&SymmetricKey, SealError> {
        match self.slots.get(id) {
            Some(Slot::Live { key, .. }) => Ok(key),
            Some(Slot::Destroyed) => Err(SealError::KeyDestroyed),
            None => Err(SealError::KeyUnknown),
        }
    }

    /// Whether a key id was destroyed.
    pub fn is_destroyed(&self, id: &DataKeyId) -> bool {
        matches!(self.slots.get(id), Some(Slot::Destroyed))
    }

    /// Destroys data keys: rewrites the vault file without them (keeping tombstones), durably.
    /// Returns how many live keys were destroyed (already destroyed or unknown ids count zero).
    ///
    /// The keys stay usable in memory until the file without them is durably in place: a failed
    /// rewrite leaves the vault as it was, in memory and on disk, so that whoever carries out the
    /// order (the next start, at the latest) destroys them again.
    pub fn destroy(&mut self, ids: &[DataKeyId]) -> Result<usize, VaultError> {
        let live: std::collections::BTreeSet<DataKeyId> =
            ids.iter().filter(|id| matches!(self.slots.get(id), Some(Slot::Live { .. }))).copied().collect();
        if live.is_empty() {
            return Ok(0);
        }
        self.rewrite_without(&live)?;
        for id in &live {
            self.slots.insert(*id, Slot::Destroyed);
        }
        Ok(live.len())
    }

    fn rewrite(&mut self) -> Result<(), VaultError> {
        self.rewrite_without(&std::collections::BTreeSet::new())
    }

    /// Writes the file whole: every key, with those of `destroyed` as tombstones, and the anchor.
    fn rewrite_without(&mut self, destroyed: &std::collections::BTreeSet<DataKeyId>) -> Result<(), VaultError> {
        let mut out = Zeroizing::new(Vec::with_capacity(HEADER_LEN + self.slots.len() * RECORD_KEY_LEN));
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.master.check());
        let mut ids: Vec<&DataKeyId> = self.slots.keys().collect();
        ids.sort();
        for id in ids {
            match &self.slots[id] {
                Slot::Live { .. } if destroyed.contains(id) => out.extend_from_slice(&self.record(id, None)),
                // A live key's record is copied as it is: wrapping it again would add nothing.
                Slot::Live { record, .. } => out.extend_from_slice(record),
                Slot::Destroyed => out.extend_from_slice(&self.record(id, None)),
            }
        }
        if let Some(a) = self.anchor {
            let mut rec = a.body().to_vec();
            rec.extend_from_slice(&a.mac(&self.master).0);
            let sum = Hash::of(b"", &[&rec]);
            rec.extend_from_slice(&sum.0[..8]);
            out.extend_from_slice(&rec);
        }
        write_atomically(&self.path, &out)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.anchors_appended = usize::from(self.anchor.is_some());
        Ok(())
    }

    /// Wraps an entry's content key under a data key, bound to the entry's position.
    pub fn wrap_content_key(
        &self,
        id: &DataKeyId,
        position: u64,
        content_key: &SymmetricKey,
    ) -> Result<Vec<u8>, SealError> {
        let kek = self.key(id)?;
        let mut out = Vec::with_capacity(WRAPPED_CONTENT_KEY_LEN);
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&aead_seal(
            kek,
            &[DOMAIN_CONTENT_KEY_AAD, &position.to_be_bytes(), &id.0],
            content_key.as_bytes(),
        ));
        Ok(out)
    }

    /// Unwraps what [`Vault::wrap_content_key`] produced.
    pub fn unwrap_content_key(&self, position: u64, wrapped: &[u8]) -> Result<SymmetricKey, SealError> {
        unwrap_content_key_in(&self.slots, position, wrapped)
    }

    /// What replaces an entry's wrapped content key when the data key it was wrapped under is
    /// destroyed by an expungement: the data key's id, then a fixed tag, no key. An entry reads as
    /// expunged only through this; a wrapping that still holds a key under a destroyed data key
    /// is [`SealError::DestroyedUnmarked`] (damage): otherwise an older wrapping put back beside
    /// an entry a charge expungement kept would make it read as expunged.
    pub fn expunged_wrapping(id: &DataKeyId) -> [u8; WRAPPED_CONTENT_KEY_LEN] {
        let mut w = [0u8; WRAPPED_CONTENT_KEY_LEN];
        w[..16].copy_from_slice(&id.0);
        w[16..].copy_from_slice(EXPUNGED_TAG);
        w
    }

    /// Whether a wrapping is an expunged entry's ([`Vault::expunged_wrapping`]).
    pub fn is_expunged_wrapping(wrapped: &[u8]) -> bool {
        wrapped.len() == WRAPPED_CONTENT_KEY_LEN && wrapped[16..] == EXPUNGED_TAG[..]
    }

    /// The data key id a wrapped content key names.
    pub fn wrapped_key_id(wrapped: &[u8]) -> Option<DataKeyId> {
        let mut id = [0u8; 16];
        id.copy_from_slice(wrapped.get(..16)?);
        Some(DataKeyId(id))
    }

    /// The records of a vault file as they stand, read without changing it: each record's bytes
    /// (checksum excluded). Stops at the first record that is torn or unknown.
    fn scan(dir: &Path) -> Result<Scanned, VaultError> {
        let path = Vault::file_path(dir);
        let bytes =
            Zeroizing::new(std::fs::read(&path).map_err(|e| VaultError::Io(format!("{}: {e}", path.display())))?);
        if bytes.len() < HEADER_LEN || &bytes[..16] != MAGIC {
            return Err(VaultError::Corrupt { offset: 0, what: "not a vault file" });
        }
        let mut out = Vec::new();
        let mut at = HEADER_LEN;
        while at < bytes.len() {
            let body = match bytes[at] {
                TAG_KEY => 1 + 16 + WRAPPED_LEN,
                TAG_DESTROYED => TOMBSTONE_BODY_LEN,
                TAG_ANCHOR => ANCHOR_BODY_LEN,
                _ => break,
            };
            if at + body + 8 > bytes.len() {
                break;
            }
            out.push((at, body));
            at += body + 8;
        }
        Ok((bytes, out))
    }

    /// The ids of destroyed keys recorded in a vault file, read without the master key (the
    /// tombstones are not secret). For `verify`, which runs without secrets.
    pub fn destroyed_ids(dir: &Path) -> Result<std::collections::HashSet<DataKeyId>, VaultError> {
        let (bytes, records) = Vault::scan(dir)?;
        Ok(records
            .into_iter()
            .filter(|(at, _)| bytes[*at] == TAG_DESTROYED)
            .map(|(at, _)| DataKeyId(bytes[at + 1..at + 17].try_into().expect("16 bytes")))
            .collect())
    }

    /// The ids of every data key a vault file holds or held (live or destroyed), read without the
    /// master key. For `verify`: a wrapped content key naming any other id was not made here.
    pub fn known_ids(dir: &Path) -> Result<std::collections::HashSet<DataKeyId>, VaultError> {
        let (bytes, records) = Vault::scan(dir)?;
        Ok(records
            .into_iter()
            .filter(|(at, _)| matches!(bytes[*at], TAG_KEY | TAG_DESTROYED))
            .map(|(at, _)| DataKeyId(bytes[at + 1..at + 17].try_into().expect("16 bytes")))
            .collect())
    }

    /// The anchor of a vault file, authenticated with the master key, read without changing the
    /// file (for `verify`, which may run on a copy that must stay as it is).
    pub fn read_anchor(dir: &Path, master: &MasterKey) -> Result<Option<Anchor>, VaultError> {
        let (bytes, records) = Vault::scan(dir)?;
        if bytes[17..HEADER_LEN] != master.check() {
            return Err(VaultError::WrongMasterKey);
        }
        let mut anchor = None;
        for (at, _) in records.into_iter().filter(|(at, _)| bytes[*at] == TAG_ANCHOR) {
            anchor = Some(Anchor::decode(&bytes[at..at + ANCHOR_BODY_LEN], at, master)?);
        }
        Ok(anchor)
    }

    /// A key for one purpose derived from the master key (see [`MasterKey::derive`]).
    pub fn derive(&self, context: &str) -> Zeroizing<[u8; 32]> {
        self.master.derive(context)
    }

    /// How many keys are live and how many destroyed.
    pub fn counts(&self) -> (usize, usize) {
        let live = self.slots.values().filter(|s| matches!(s, Slot::Live { .. })).count();
        (live, self.slots.len() - live)
    }
}

/// Writes a file so that it is either wholly the new content or the old one after a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A vault file as read by [`Vault::parse`].
struct Parsed {
    path: PathBuf,
    slots: HashMap<DataKeyId, Slot>,
    anchor: Option<Anchor>,
    anchors_appended: usize,
    good_len: usize,
    len: usize,
}

/// The data keys of a vault file, read without changing the file: for `verify` to open every
/// sealed entry's wrapped content key (and its payload) with the master key, on a copy that must
/// stay as it is.
pub struct VaultKeys {
    slots: HashMap<DataKeyId, Slot>,
}

impl VaultKeys {
    /// Reads the vault in `dir` with the master key.
    pub fn read(dir: &Path, master: &MasterKey) -> Result<VaultKeys, VaultError> {
        Ok(VaultKeys { slots: Vault::parse(dir, master)?.slots })
    }

    /// As [`Vault::unwrap_content_key`].
    pub fn unwrap_content_key(&self, position: u64, wrapped: &[u8]) -> Result<SymmetricKey, SealError> {
        unwrap_content_key_in(&self.slots, position, wrapped)
    }

    /// The ids of destroyed keys, each tombstone's MAC checked (unlike [`Vault::destroyed_ids`],
    /// which reads them without the master key).
    pub fn destroyed_ids(&self) -> std::collections::HashSet<DataKeyId> {
        self.slots.iter().filter(|(_, s)| matches!(s, Slot::Destroyed)).map(|(id, _)| *id).collect()
    }
}

fn unwrap_content_key_in(
    slots: &HashMap<DataKeyId, Slot>,
    position: u64,
    wrapped: &[u8],
) -> Result<SymmetricKey, SealError> {
    if wrapped.len() != WRAPPED_CONTENT_KEY_LEN {
        return Err(SealError::Short { len: wrapped.len() });
    }
    if Vault::is_expunged_wrapping(wrapped) {
        return Err(SealError::KeyDestroyed);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&wrapped[..16]);
    let id = DataKeyId(id);
    let kek = match slots.get(&id) {
        Some(Slot::Live { key, .. }) => key,
        Some(Slot::Destroyed) => return Err(SealError::DestroyedUnmarked),
        None => return Err(SealError::KeyUnknown),
    };
    // nonce || the key, sealed || tag: opened on the stack (one per entry read).
    let (nonce, sealed) = wrapped[16..].split_at(NONCE_LEN);
    let mut buf = Zeroizing::new([0u8; 32 + TAG_LEN]);
    buf.copy_from_slice(sealed);
    let nonce = nonce.try_into().expect("split at the nonce");
    aead_open_in_place(kek, &[DOMAIN_CONTENT_KEY_AAD, &position.to_be_bytes(), &id.0], nonce, &mut buf[..])?;
    let mut k = [0u8; 32];
    k.copy_from_slice(&buf[..32]);
    Ok(SymmetricKey::from_bytes(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(hex: &str) -> MasterKey {
        MasterKey::from_hex(hex).unwrap()
    }
    const M: &str = "0101010101010101010101010101010101010101010101010101010101010101";

    #[test]
    fn keys_survive_reopen_and_destroyed_keys_leave_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut v = Vault::create(d.path(), master(M)).unwrap();
        let k1 = v.new_key().unwrap();
        let k2 = v.new_key().unwrap();
        let raw1 = *v.key(&k1).unwrap().as_bytes();
        let raw2 = *v.key(&k2).unwrap().as_bytes();
        // Destroyed in the session that made them: the survivors' records written at creation
        // are what the rewritten file holds.
        let k3 = v.new_key().unwrap();
        let k4 = v.new_key().unwrap();
        let raw4 = *v.key(&k4).unwrap().as_bytes();
        assert_eq!(v.destroy(&[k3]).unwrap(), 1);
        let ck = SymmetricKey::random();
        let wrapped = v.wrap_content_key(&k1, 9, &ck).unwrap();
        drop(v);
        let mut v = Vault::open(d.path(), master(M)).unwrap();
        assert_eq!(v.unwrap_content_key(9, &wrapped).unwrap().as_bytes(), ck.as_bytes());
        assert!(v.unwrap_content_key(10, &wrapped).is_err(), "bound to its position");
        assert_eq!(v.destroy(&[k1]).unwrap(), 1);
        assert_eq!(v.destroy(&[k1]).unwrap(), 0);
        // A wrapping still under the destroyed key is not an expunged entry's: that one says so.
        assert_eq!(v.unwrap_content_key(9, &wrapped).unwrap_err(), SealError::DestroyedUnmarked);
        let marked = Vault::expunged_wrapping(&k1);
        assert!(Vault::is_expunged_wrapping(&marked) && !Vault::is_expunged_wrapping(&wrapped));
        assert_eq!(Vault::wrapped_key_id(&marked), Some(k1));
        assert_eq!(v.unwrap_content_key(9, &marked).unwrap_err(), SealError::KeyDestroyed);
        drop(v);
        let v = Vault::open(d.path(), master(M)).unwrap();
        assert!(v.is_destroyed(&k1) && v.is_destroyed(&k3));
        assert_eq!(v.key(&k2).unwrap().as_bytes(), &raw2);
        assert_eq!(v.key(&k4).unwrap().as_bytes(), &raw4);
        assert_eq!(v.key(&DataKeyId([9; 16])).unwrap_err(), SealError::KeyUnknown);
        let file = std::fs::read(Vault::file_path(d.path())).unwrap();
        assert!(!file.windows(32).any(|w| w == raw1));
    }

    #[test]
    fn the_anchor_survives_reopen_and_rewrites_and_must_authenticate() {
        let d = tempfile::tempdir().unwrap();
        let mut v = Vault::create(d.path(), master(M)).unwrap();
        assert_eq!(v.anchor(), None);
        let k = v.new_key().unwrap();
        let a = Anchor { size: 42, root: [7; 32], recovered: false, epoch: 0 };
        v.set_anchor(a).unwrap();
        let b = Anchor { size: 50, root: [8; 32], recovered: true, epoch: 1 };
        v.set_anchor(b).unwrap();
        drop(v);
        let mut v = Vault::open(d.path(), master(M)).unwrap();
        assert_eq!(v.anchor(), Some(b), "the last anchor wins");
        v.destroy(&[k]).unwrap();
        drop(v);
        let v = Vault::open(d.path(), master(M)).unwrap();
        assert_eq!(v.anchor(), Some(b), "a rewrite keeps the anchor");
        assert_eq!(Vault::destroyed_ids(d.path()).unwrap().len(), 1, "tombstones are read past the anchor");
        drop(v);
        // Changing the anchor's size without the master key is noticed.
        let p = Vault::file_path(d.path());
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.len() - (ANCHOR_BODY_LEN + 8);
        assert_eq!(bytes[at], TAG_ANCHOR);
        bytes[at + 8] ^= 1;
        let sum = Hash::of(b"", &[&bytes[at..at + ANCHOR_BODY_LEN]]);
        let n = bytes.len();
        bytes[n - 8..].copy_from_slice(&sum.0[..8]);
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            Vault::open(d.path(), master(M)),
            Err(VaultError::Corrupt { what: "the anchor does not authenticate", .. })
        ));
    }

    /// A destruction whose rewrite fails leaves the key usable and live on disk (it used to be
    /// marked destroyed in memory only, so no one destroyed it again while the server ran).
    #[test]
    fn a_tombstone_without_the_master_key_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut v = Vault::create(d.path(), master(M)).unwrap();
        let live = v.new_key().unwrap();
        let gone = v.new_key().unwrap();
        v.destroy(&[gone]).unwrap();
        drop(v);
        assert!(Vault::open(d.path(), master(M)).unwrap().is_destroyed(&gone), "a genuine tombstone opens");
        // Someone who can write the file, but holds no master key, appends one for a live key.
        let mut rec = vec![TAG_DESTROYED];
        rec.extend_from_slice(&live.0);
        rec.extend_from_slice(&[0x5a; 32]);
        let sum = Hash::of(b"", &[&rec]);
        rec.extend_from_slice(&sum.0[..8]);
        let p = Vault::file_path(d.path());
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(&rec);
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            Vault::open(d.path(), master(M)),
            Err(VaultError::Corrupt { what: "a tombstone does not authenticate", .. })
        ));
    }

    #[test]
    fn a_failed_rewrite_destroys_nothing_and_a_retry_does() {
        let d = tempfile::tempdir().unwrap();
        let mut v = Vault::create(d.path(), master(M)).unwrap();
        let k = v.new_key().unwrap();
        // The temporary file cannot be made: a directory stands where it goes.
        let obstacle = Vault::file_path(d.path()).with_extension("tmp");
        std::fs::create_dir(&obstacle).unwrap();
        assert!(v.destroy(&[k]).is_err());
        assert!(v.key(&k).is_ok() && !v.is_destroyed(&k), "still live in memory");
        assert!(Vault::destroyed_ids(d.path()).unwrap().is_empty(), "and on disk");
        std::fs::remove_dir(&obstacle).unwrap();
        assert_eq!(v.destroy(&[k]).unwrap(), 1, "the retry destroys it");
        assert!(v.is_destroyed(&k));
        drop(v);
        let v = Vault::open(d.path(), master(M)).unwrap();
        assert!(v.is_destroyed(&k));
    }

    #[test]
    fn wrong_master_key_and_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let mut v = Vault::create(d.path(), master(M)).unwrap();
        v.new_key().unwrap();
        drop(v);
        let other = "02".repeat(32);
        assert_eq!(Vault::open(d.path(), master(&other)).err(), Some(VaultError::WrongMasterKey));
        let p = Vault::file_path(d.path());
        let len = std::fs::metadata(&p).unwrap().len();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 5).unwrap();
        let v = Vault::open(d.path(), master(M)).unwrap();
        assert_eq!(v.counts(), (SPARE_KEYS - 1, 0));
        // Damage before the last record is an error, not silently dropped.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[HEADER_LEN + 40] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(Vault::open(d.path(), master(M)), Err(VaultError::Corrupt { .. })));
    }
}
