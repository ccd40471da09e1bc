//! Signed checkpoints: the ledger keeps every checkpoint it signs and never signs two that are
//! inconsistent with each other.
//!
//! Before signing a tree size, the store recomputes the roots of its nearest stored neighbours
//! (the last checkpoint below and the first above) from its own stored hashes, checks they match
//! what those checkpoints say, and checks a consistency proof between each of them and the new
//! size. If anything disagrees the store refuses to sign: the tree or a checkpoint was damaged,
//! and signing would put the ledger's name to a fork. A signed checkpoint is durable (`fdatasync`)
//! before it is returned. Cosignatures returned by witnesses are checked and kept beside it.

use std::fs::File;
use std::time::{Duration, Instant};

use chronicle_core::VerifyingKey;
use chronicle_tlog::note::{NoteSigner, note_text};
use chronicle_tlog::tree::{TreeError, verify_consistency};
use chronicle_tlog::witness::verify_cosignature;
use tlog_tiles::checkpoint::Checkpoint;

use crate::store::Store;

pub(crate) const CHECKPOINT: u8 = b'p';
pub(crate) const COSIGNATURE: u8 = b'w';

pub(crate) fn checkpoint_key(size: u64) -> [u8; 9] {
    let mut k = [CHECKPOINT; 9];
    k[1..].copy_from_slice(&size.to_be_bytes());
    k
}

pub(crate) fn cosignature_key(size: u64, witness: &str) -> Vec<u8> {
    let mut k = vec![COSIGNATURE];
    k.extend_from_slice(&size.to_be_bytes());
    k.extend_from_slice(witness.as_bytes());
    k
}

/// When to sign a new checkpoint: after `entries` new entries or `interval`, whichever first.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointPolicy {
    /// Sign once this many entries are not yet covered.
    pub entries: u64,
    /// Sign once this long has passed since the last checkpoint (if anything is uncovered).
    pub interval: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy { entries: 10_000, interval: Duration::from_secs(60) }
    }
}

/// A checkpoint cannot be signed, read or cosigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The tree cannot answer for that size.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A stored checkpoint disagrees with the tree: the store refuses to sign.
    #[error("refusing to sign: the checkpoint at size {size} is inconsistent with the tree ({reason})")]
    Inconsistent {
        /// The stored checkpoint's size.
        size: u64,
        /// What disagrees.
        reason: String,
    },
    /// The log does not reach the last checkpoint signed (see `OpenError::RolledBack`).
    #[error("refusing to sign: the ledger signed a checkpoint at tree size {size}, and {found}")]
    RolledBack {
        /// The anchor's size.
        size: u64,
        /// What the log holds instead.
        found: String,
    },
    /// After an accepted rollback, a size the ledger may already have signed.
    #[error(
        "refusing to sign at tree size {size}: before its log was rolled back the ledger signed up to size {anchor}, \
         and it never signs two checkpoints at one size"
    )]
    AlreadySigned {
        /// The size asked for.
        size: u64,
        /// The last size signed before the rollback.
        anchor: u64,
    },
    /// No checkpoint was signed at that size.
    #[error("no checkpoint at size {0}")]
    NotFound(u64),
    /// The cosignature does not verify.
    #[error("cosignature rejected: {0}")]
    Cosignature(String),
    /// sled or the filesystem failed.
    #[error("storage: {0}")]
    Storage(String),
    /// Signing failed.
    #[error("signing: {0}")]
    Signing(String),
}

impl From<chronicle_core::VaultError> for CheckpointError {
    fn from(e: chronicle_core::VaultError) -> Self {
        CheckpointError::Storage(e.to_string())
    }
}

impl From<sled::Error> for CheckpointError {
    fn from(e: sled::Error) -> Self {
        CheckpointError::Storage(e.to_string())
    }
}

/// The key the ledger signs checkpoints with: its principal's first key in the registry.
pub(crate) fn log_verifying_key(registry: &chronicle_core::Registry) -> Option<VerifyingKey> {
    registry
        .principals()
        .find(|(_, p)| p.role == chronicle_core::Role::Ledger)
        .and_then(|(_, p)| p.keys.first())
        .and_then(|k| registry.key(k))
        .map(|k| k.public)
}

/// Removes every kept checkpoint whose key is malformed or whose note is not the log key's
/// signature over a checkpoint of the size its key says (a rebuild's part: such a value is never
/// served, and left in place it would stop appends again at every start). Returns how many.
pub(crate) fn remove_unverifiable(db: &sled::Db, registry: &chronicle_core::Registry) -> Result<usize, sled::Error> {
    let key = log_verifying_key(registry);
    let mut removed = 0;
    for kv in db.scan_prefix([CHECKPOINT]) {
        let (k, note) = kv?;
        let size = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).filter(|_| k.len() == 9);
        let good = match (size, key) {
            (Some(size), Some(key)) => parse(&note).is_ok_and(|cp| {
                cp.size() == size
                    && chronicle_tlog::verify_checkpoint(&note, &chronicle_tlog::verifier_key(cp.origin(), &key))
                        .is_ok()
            }),
            _ => false,
        };
        if !good {
            db.remove(k)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn parse(note: &[u8]) -> Result<Checkpoint, String> {
    let text = note_text(note).map_err(|e| e.to_string())?;
    Checkpoint::from_bytes(&text).map_err(|_| "not a checkpoint".to_string())
}

impl Store {
    /// Every stored checkpoint, by size, ascending.
    pub fn checkpoints(&self) -> Result<Vec<(u64, Vec<u8>)>, CheckpointError> {
        let mut out = Vec::new();
        let db = self.db()?;
        for kv in db.scan_prefix([CHECKPOINT]) {
            let (k, v) = kv?;
            let size = self.checked_note(&db, &k, &v)?;
            out.push((size, v.to_vec()));
        }
        Ok(out)
    }

    /// The checkpoint signed at tree size `size`, if one was.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<Vec<u8>>, CheckpointError> {
        let db = self.db()?;
        let key = checkpoint_key(size);
        match db.get(key)? {
            None => Ok(None),
            Some(v) => {
                self.checked_note(&db, &key, &v)?;
                Ok(Some(v.to_vec()))
            }
        }
    }

    /// The tree sizes whose checkpoint the store must keep: the vault's anchor (unless recovered)
    /// and each size a witness's cosignature was kept for. A rebuild that removed a damaged one
    /// leaves it to be signed again (the same note: the signature is deterministic).
    pub fn required_checkpoints(&self) -> Result<Vec<u64>, CheckpointError> {
        let mut sizes: Vec<u64> = self.anchor().filter(|a| !a.recovered).map(|a| a.size).into_iter().collect();
        for k in self.db()?.scan_prefix([COSIGNATURE]).keys() {
            if let Some(size) = k?.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) {
                sizes.push(size);
            }
        }
        sizes.sort_unstable();
        sizes.dedup();
        Ok(sizes)
    }

    /// The checkpoint with the largest tree size, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, CheckpointError> {
        let db = self.db()?;
        match db.scan_prefix([CHECKPOINT]).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                let size = self.checked_note(&db, &k, &v)?;
                Ok(Some((size, v.to_vec())))
            }
        }
    }

    /// Checks a kept checkpoint before it is handed out: signed by the log's key, for the size
    /// its key says. One that is not is damage, reported as such; it is never served.
    fn checked_note(&self, db: &sled::Db, k: &[u8], note: &[u8]) -> Result<u64, CheckpointError> {
        let damaged = |reason: String| CheckpointError::Storage(self.shared.damaged(db, 'p', reason).to_string());
        let Some(size) = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).filter(|_| k.len() == 9)
        else {
            return Err(damaged("a malformed checkpoint key".into()));
        };
        let key =
            log_verifying_key(&self.registry()).ok_or_else(|| damaged("no ledger key to check checkpoints".into()))?;
        let cp = parse(note).map_err(|r| damaged(format!("the checkpoint at size {size}: {r}")))?;
        chronicle_tlog::verify_checkpoint(note, &chronicle_tlog::verifier_key(cp.origin(), &key))
            .map_err(|e| damaged(format!("the checkpoint at size {size}: {e}")))?;
        if cp.size() != size {
            return Err(damaged(format!("the checkpoint kept at size {size} is for size {}", cp.size())));
        }
        Ok(size)
    }

    /// Signs (or returns the already signed) checkpoint at `size`, after checking it is
    /// consistent with every neighbouring checkpoint and with the vault's anchor (the last
    /// checkpoint signed, kept apart from the log): the ledger never signs a checkpoint its log is
    /// not consistent with, and never two at one size. The anchor is moved on, durably, before the
    /// checkpoint is returned.
    pub fn sign_checkpoint(&self, signer: &NoteSigner, origin: &str, size: u64) -> Result<Vec<u8>, CheckpointError> {
        let _one_at_a_time = self.checkpoint_lock();
        if let Some((anchor, found)) = self.rollback()? {
            return Err(CheckpointError::RolledBack { size: anchor.size, found });
        }
        let anchor = self.anchor();
        if let Some(a) = anchor.filter(|a| a.recovered && size <= a.size) {
            return Err(CheckpointError::AlreadySigned { size, anchor: a.size });
        }
        if let Some(existing) = self.checkpoint_at(size)? {
            return Ok(existing);
        }
        let root = self.tree_root(size)?;
        let before = self.db()?.range(checkpoint_key(0)..checkpoint_key(size)).next_back().transpose()?;
        let after = self.db()?.range(checkpoint_key(size)..=checkpoint_key(u64::MAX)).next().transpose()?;
        for (k, note) in before.into_iter().chain(after) {
            // A neighbour that is not the log key's signature for its size is damage, never
            // something to be consistent with (nor a key to slice).
            let db = self.db()?;
            let other = self.checked_note(&db, &k, &note)?;
            let cp = parse(&note).map_err(|reason| CheckpointError::Inconsistent { size: other, reason })?;
            let stored_root = self.tree_root(other)?;
            if *cp.hash() != stored_root || cp.size() != other || cp.origin() != origin {
                return Err(CheckpointError::Inconsistent {
                    size: other,
                    reason: "its root is not the tree's root at that size".into(),
                });
            }
            let (lo, lo_root, hi, hi_root) =
                if other < size { (other, stored_root, size, root) } else { (size, root, other, stored_root) };
            if lo > 0 {
                let proof = self.consistency_proof(lo, hi)?;
                verify_consistency(lo, lo_root, hi, hi_root, &proof)
                    .map_err(|e| CheckpointError::Inconsistent { size: other, reason: e.to_string() })?;
            }
        }
        let note = chronicle_tlog::sign_checkpoint(signer, origin, size, root)
            .map_err(|e| CheckpointError::Signing(e.to_string()))?;
        if anchor.is_none_or(|a| a.recovered || size > a.size) {
            let epoch = anchor.map_or(0, |a| a.epoch);
            self.set_anchor(chronicle_core::Anchor { size, root: root.0, recovered: false, epoch })?;
        }
        self.db()?.insert(checkpoint_key(size), note.as_slice())?;
        self.make_durable()?;
        self.note_checkpoint_signed();
        Ok(note)
    }

    /// Commits the stream heads (`ledger.stream_heads`, signed by `ledger`), then signs the
    /// checkpoint whose last entry is the commitment (whatever was appended after it is left to
    /// the next): proofs against it show a stream complete at the commitment's size, and no later
    /// commitment lies below it. Returns the commitment, the checkpoint's size and its note.
    pub fn checkpoint_with_heads(
        &self,
        ledger: &chronicle_core::Signer,
        signer: &NoteSigner,
        origin: &str,
    ) -> Result<(crate::HeadsCommitment, u64, Vec<u8>), CheckpointError> {
        let c = self.commit_stream_heads(ledger)?;
        let size = c.position + 1;
        let note = self.sign_checkpoint(signer, origin, size)?;
        Ok((c, size, note))
    }

    /// Commits the stream heads and signs a checkpoint at the committed head (as
    /// [`Store::checkpoint_with_heads`]) if the policy says one is due.
    pub fn maybe_checkpoint(
        &self,
        ledger: &chronicle_core::Signer,
        signer: &NoteSigner,
        origin: &str,
        policy: CheckpointPolicy,
    ) -> Result<Option<Vec<u8>>, CheckpointError> {
        let len = self.head().len;
        let covered = self.latest_checkpoint()?.map_or(0, |(s, _)| s);
        if len == 0 || len <= covered {
            return Ok(None);
        }
        let due = len - covered >= policy.entries
            || self.since_last_checkpoint().is_none_or(|t| t.elapsed() >= policy.interval);
        if !due {
            return Ok(None);
        }
        self.checkpoint_with_heads(ledger, signer, origin).map(|(_, _, note)| Some(note))
    }

    /// Checks a witness's cosignature line over the checkpoint at `size` and keeps it: first in
    /// the ledger's own stream (a `ledger.cosignature_kept` entry the ledger signs, so that what
    /// is kept is part of the log, and a line deleted or altered in the store is noticed and put
    /// back from it), then beside the checkpoint. Keeping the same line again changes nothing.
    /// Returns the cosignature's timestamp.
    pub fn add_cosignature(
        &self,
        size: u64,
        witness: &str,
        key: &VerifyingKey,
        line: &str,
        ledger: &chronicle_core::Signer,
    ) -> Result<u64, CheckpointError> {
        let note = self.checkpoint_at(size)?.ok_or(CheckpointError::NotFound(size))?;
        let text = note_text(&note).map_err(|e| CheckpointError::Storage(e.to_string()))?;
        let ts =
            verify_cosignature(line, witness, key, &text).map_err(|e| CheckpointError::Cosignature(e.to_string()))?;
        let mut line = line.trim_end_matches('\n').to_string();
        line.push('\n');
        let payload = serde_json::to_vec(&serde_json::json!({ "size": size, "witness": witness, "line": line }))
            .map_err(|e| CheckpointError::Storage(e.to_string()))?;
        let idempotency_key = chronicle_core::Hash::of(b"chronicle.cosignature-kept.v1\n", &[&payload]).0.to_vec();
        let draft = chronicle_core::Draft {
            stream: chronicle_core::StreamId::LEDGER,
            event_type: chronicle_core::EventType::new(COSIGNATURE_KEPT)
                .map_err(|e| CheckpointError::Storage(e.to_string()))?,
            effective_time: chronicle_core::Timestamp::now(),
            refs: chronicle_core::References { idempotency_key, ..Default::default() },
            payload_kind: chronicle_core::PayloadKind::Public,
            payload,
        };
        let cmd = chronicle_core::Command::sign(ledger, draft).map_err(|e| CheckpointError::Signing(e.to_string()))?;
        let req = crate::AppendRequest {
            stream: chronicle_core::StreamId::LEDGER,
            expected: crate::ExpectedVersion::Any,
            commands: vec![cmd],
        };
        self.append(req).map_err(|e| CheckpointError::Storage(format!("recording the cosignature: {e}")))?;
        self.db()?.insert(cosignature_key(size, witness), line.as_bytes())?;
        self.make_durable()?;
        Ok(ts)
    }

    /// The checkpoint at `size` with every stored cosignature appended as further signature lines.
    pub fn cosigned_checkpoint(&self, size: u64) -> Result<Vec<u8>, CheckpointError> {
        let mut note = self.checkpoint_at(size)?.ok_or(CheckpointError::NotFound(size))?;
        for (_, line) in self.cosignatures(size, &note, &self.witnesses()?)? {
            note.extend_from_slice(line.as_bytes());
        }
        Ok(note)
    }

    /// The cosignature lines kept for the checkpoint `note` at `size`, by witness name; a line of
    /// an adopted witness is checked against that witness's key first (one that does not verify
    /// is damage, never served).
    fn cosignatures(
        &self,
        size: u64,
        note: &[u8],
        witnesses: &[Witness],
    ) -> Result<Vec<(String, String)>, CheckpointError> {
        let mut prefix = vec![COSIGNATURE];
        prefix.extend_from_slice(&size.to_be_bytes());
        let text = note_text(note).map_err(|e| CheckpointError::Storage(e.to_string()))?;
        let db = self.db()?;
        let mut out = Vec::new();
        for kv in db.scan_prefix(prefix) {
            let (k, v) = kv?;
            let name = String::from_utf8_lossy(&k[9..]).to_string();
            let damaged = |reason: String| CheckpointError::Storage(self.shared.damaged(&db, 'w', reason).to_string());
            let line = String::from_utf8(v.to_vec())
                .map_err(|_| damaged(format!("the cosignature of {name} at size {size} is not text")))?;
            if let Some(w) = witnesses.iter().find(|w| w.name == name) {
                verify_cosignature(&line, &w.name, &w.key, &text)
                    .map_err(|e| damaged(format!("the cosignature of {name} at size {size}: {e}")))?;
            }
            out.push((name, line));
        }
        Ok(out)
    }

    fn make_durable(&self) -> Result<(), CheckpointError> {
        crate::db::flush_within(&*self.db()?, crate::db::FLUSH_LIMIT).map_err(CheckpointError::Storage)?;
        File::open(self.log_dir().join("db"))
            .and_then(|f| f.sync_data())
            .map_err(|e| CheckpointError::Storage(e.to_string()))
    }
}

pub(crate) fn since(t: &std::sync::Mutex<Option<Instant>>) -> Option<Instant> {
    t.lock().ok().and_then(|g| *g)
}

/// The event that adopts a witness, in the ledger's own stream: `{"witness_key": "name+id+key"}`.
pub const WITNESS_ADOPTED: &str = "ledger.witness_adopted";

/// The event recording a cosignature kept (see [`Store::add_cosignature`]).
pub const COSIGNATURE_KEPT: &str = "ledger.cosignature_kept";

/// The cosignature an entry of the ledger's own stream records as kept: its `w` key and line.
pub(crate) fn cosignature_kept(e: &chronicle_core::Entry) -> Option<(Vec<u8>, String)> {
    if e.statement.stream != chronicle_core::StreamId::LEDGER || e.statement.event_type.as_str() != COSIGNATURE_KEPT {
        return None;
    }
    let payload = chronicle_core::payload::open_public(&e.statement.commitment, e.envelope()).ok()?;
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let key = cosignature_key(v["size"].as_u64()?, v["witness"].as_str()?);
    Some((key, v["line"].as_str()?.to_string()))
}

/// What the `w` key space must hold, from the ledger's own stream's entries: every cosignature
/// kept, by key. `Err` names a key whose line is not what the log recorded, or that the log does
/// not account for, or one the log recorded and the store lacks.
pub(crate) fn check_cosignatures_kept(
    db: &sled::Db,
    kept: &std::collections::BTreeMap<Vec<u8>, String>,
) -> Result<(), String> {
    let mut found = 0;
    for kv in db.scan_prefix([COSIGNATURE]) {
        let (k, v) = kv.map_err(|e| e.to_string())?;
        let name = |k: &[u8]| {
            let size = k.get(1..9).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
            format!("{} at tree size {size}", String::from_utf8_lossy(k.get(9..).unwrap_or_default()))
        };
        match kept.get(k.as_ref()) {
            None => return Err(format!("the cosignature of {} is not recorded in the log", name(&k))),
            Some(line) if line.as_bytes() != v.as_ref() => {
                return Err(format!("the cosignature of {} is not the one the log recorded", name(&k)));
            }
            Some(_) => found += 1,
        }
    }
    if found != kept.len() {
        let missing = kept.keys().find(|k| !matches!(db.get(k), Ok(Some(_)))).cloned().unwrap_or_default();
        let size = missing.get(1..9).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
        return Err(format!(
            "the cosignature of {} at tree size {size}, recorded in the log, is missing",
            String::from_utf8_lossy(missing.get(9..).unwrap_or_default())
        ));
    }
    Ok(())
}

/// A witness the ledger adopted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    /// Its name (the cosignature key name).
    pub name: String,
    /// Its cosignature key.
    pub key: VerifyingKey,
    /// Its verifier key string, as adopted.
    pub vkey: String,
}

impl Store {
    /// The witnesses the ledger adopted, from `ledger.witness_adopted` entries of its own stream
    /// (in the log, so every server and auditor sees the same list).
    pub fn witnesses(&self) -> Result<Vec<Witness>, CheckpointError> {
        let mut out: Vec<Witness> = Vec::new();
        let mut version = 0;
        loop {
            let page = self
                .read_stream(&chronicle_core::StreamId::LEDGER, version, 1024)
                .map_err(|e| CheckpointError::Storage(e.to_string()))?;
            let n = page.len();
            for e in page.iter().filter(|e| e.statement.event_type.as_str() == WITNESS_ADOPTED) {
                let payload = chronicle_core::payload::open_public(&e.statement.commitment, e.envelope())
                    .map_err(|err| CheckpointError::Storage(format!("a witness adoption: {err}")))?;
                let v: serde_json::Value = serde_json::from_slice(payload)
                    .map_err(|err| CheckpointError::Storage(format!("a witness adoption: {err}")))?;
                let vkey = v["witness_key"].as_str().unwrap_or_default().to_string();
                let (name, key) = chronicle_tlog::witness::parse_witness_key(&vkey)
                    .map_err(|err| CheckpointError::Storage(format!("a witness adoption: {err}")))?;
                out.retain(|w| w.name != name);
                out.push(Witness { name, key, vkey });
            }
            if n < 1024 {
                return Ok(out);
            }
            version += n as u64;
        }
    }

    /// The largest tree size `witness` cosigned, if any.
    pub fn witnessed(&self, witness: &str) -> Result<Option<u64>, CheckpointError> {
        let mut best = None;
        for kv in self.db()?.scan_prefix([COSIGNATURE]) {
            let (k, _) = kv?;
            if k.len() > 9 && &k[9..] == witness.as_bytes() {
                let size = u64::from_be_bytes(k[1..9].try_into().expect("8 bytes"));
                best = best.max(Some(size));
            }
        }
        Ok(best)
    }

    /// The checkpoint to publish: the latest that every adopted witness cosigned, with their
    /// cosignatures; with no witness adopted, the latest checkpoint. `None` when there is none.
    pub fn published_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, CheckpointError> {
        let witnesses = self.witnesses()?;
        let sizes: Vec<u64> = self.checkpoints()?.into_iter().map(|(s, _)| s).rev().collect();
        for size in sizes {
            let Some(note) = self.checkpoint_at(size)? else { continue };
            let lines = self.cosignatures(size, &note, &witnesses)?;
            if witnesses.iter().all(|w| lines.iter().any(|(name, _)| *name == w.name)) {
                return Ok(Some((size, self.cosigned_checkpoint(size)?)));
            }
        }
        Ok(None)
    }
}
