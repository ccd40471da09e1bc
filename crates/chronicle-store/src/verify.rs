//! `verify`: re-checks a whole log from its stored bytes and names the first thing wrong.
//!
//! Checked for every entry, in order: the key's position matches the entry's (no gap, no swap);
//! the bytes match the hash stored beside them and decode; the global chain (previous hash) and
//! the stream chain (previous hash and version within the stream) hold; recorded time never goes
//! back; the entry belongs in its stream; its author's key was valid in the registry as it stood
//! just before the entry, and the signature verifies; the stream index points at it. At the end
//! the number of entries and the last hash must match the head record (catching a cut tail).
//!
//! Structure is checked sequentially; signatures are collected per chunk and checked with ed25519
//! batch verification on all cores. A failed batch is re-checked one signature at a time, so the
//! report still names the first bad position.

use std::collections::HashMap;
use std::path::Path;

use chronicle_core::payload::open_public;
use chronicle_core::registry::RegistryEvent;
use chronicle_core::sign::verify_message;
use chronicle_core::{Entry, Hash, PayloadKind, Registry, RegistryError, StreamId, Timestamp, VerifyingKey};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::OpenError;
use crate::layout::{self, Head};
use crate::store::open_sled;
use crate::tree::{CHUNK_HASHES, SledTree, chunk_key};
use chronicle_tlog::tree::{HashReader, TreeHash, hashes_to_store, leaf_hash};

const CHUNK: usize = 8192;
const SIG_BATCH: usize = 256;

/// What is wrong at a position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// No entry is stored at this position, but later ones are.
    #[error("entry missing (the next stored entry is at position {next_found})")]
    Missing {
        /// The next position that is stored.
        next_found: u64,
    },
    /// The stored bytes do not match the hash stored with them: the entry was altered.
    #[error("entry bytes altered (hash {computed} does not match stored {stored})")]
    HashMismatch {
        /// The hash stored beside the entry.
        stored: Hash,
        /// The hash of the bytes found.
        computed: Hash,
    },
    /// The bytes do not decode as an entry.
    #[error("entry does not decode: {reason}")]
    Undecodable {
        /// Why.
        reason: String,
    },
    /// The entry stored under this position says it belongs elsewhere (moved or swapped).
    #[error("entry stored here claims position {claimed}")]
    PositionMismatch {
        /// The position in the entry.
        claimed: u64,
    },
    /// The entry's previous hash is not the hash of the entry before it.
    #[error("global chain broken: previous hash should be {expected}, entry says {found}")]
    ChainBroken {
        /// Hash of the entry before.
        expected: Hash,
        /// What this entry names.
        found: Hash,
    },
    /// The entry's stream version is not the next one of its stream.
    #[error("stream {stream} version should be {expected}, entry says {found}")]
    StreamVersionGap {
        /// The stream.
        stream: StreamId,
        /// The next version of the stream.
        expected: u64,
        /// The entry's version.
        found: u64,
    },
    /// The entry's previous-in-stream hash is not its stream predecessor's hash.
    #[error("stream {stream} chain broken: previous hash should be {expected}, entry says {found}")]
    StreamChainBroken {
        /// The stream.
        stream: StreamId,
        /// Hash of the stream predecessor.
        expected: Hash,
        /// What this entry names.
        found: Hash,
    },
    /// The recorded time is earlier than the previous entry's.
    #[error("recorded time goes back ({found:?} after {previous:?})")]
    ClockWentBack {
        /// The previous entry's recorded time.
        previous: Timestamp,
        /// This entry's.
        found: Timestamp,
    },
    /// The entry's author or key was not valid at this point of the log.
    #[error("author not authorized: {reason}")]
    Unauthorized {
        /// The registry's reason.
        reason: String,
    },
    /// The author's signature does not verify.
    #[error("author signature does not verify")]
    BadSignature,
    /// A registry entry is not a valid registry event at this point.
    #[error("registry entry rejected: {reason}")]
    RegistryRejected {
        /// Why.
        reason: String,
    },
    /// The entry does not belong in its stream (event type or payload kind).
    #[error("entry not allowed in its stream: {reason}")]
    WrongStream {
        /// Why.
        reason: String,
    },
    /// The stream index does not point at this entry.
    #[error("stream index does not point at this entry")]
    IndexMismatch,
    /// The log ends before the head record says it should: its tail was cut.
    #[error("log truncated: the head record says {head_len} entries, {found} are stored")]
    Truncated {
        /// Entries according to the head record.
        head_len: u64,
        /// Entries found.
        found: u64,
    },
    /// Entries are stored beyond the head record.
    #[error("entries stored beyond the head record ({head_len} entries)")]
    BeyondHead {
        /// Entries according to the head record.
        head_len: u64,
    },
    /// The last entry's hash does not match the head record.
    #[error("the head record names a different last entry")]
    HeadMismatch,
    /// The log does not reach a checkpoint it is expected to reach (the vault's anchor, or one
    /// kept outside the bureau): it was rolled back or cut short.
    #[error("rolled back: {what} is at tree size {size}, but the log holds only {len} entries")]
    RolledBack {
        /// Which checkpoint.
        what: String,
        /// Its size.
        size: u64,
        /// The log's length.
        len: u64,
    },
    /// The log's tree at an expected checkpoint's size has another root: the log was replaced by
    /// a different history (a fork).
    #[error("forked: {what} at tree size {size} has root {expected}, the log's tree there has {found}")]
    Forked {
        /// Which checkpoint.
        what: String,
        /// Its size.
        size: u64,
        /// The checkpoint's root, hex.
        expected: String,
        /// The log's root at that size, hex.
        found: String,
    },
    /// The Merkle tree's stored hashes for this entry are not what its bytes hash to.
    #[error("the Merkle tree's stored hashes for this entry do not match it")]
    TreeMismatch,
    /// A stored checkpoint is not validly signed by the ledger, or does not match the tree.
    #[error("checkpoint at tree size {size} is invalid: {reason}")]
    CheckpointInvalid {
        /// The checkpoint's tree size.
        size: u64,
        /// What is wrong.
        reason: String,
    },
    /// The head record is missing or malformed while entries exist.
    #[error("head record missing or malformed")]
    HeadDamaged,
    /// sled could not read an item.
    #[error("storage error: {reason}")]
    Storage {
        /// sled's error.
        reason: String,
    },
}

/// The first fault found, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The first bad position.
    pub position: u64,
    /// What is wrong there.
    pub fault: Fault,
}

/// What verification established.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Entries checked and found good (all entries when `fault` is `None`).
    pub entries_verified: u64,
    /// Entries according to the head record.
    pub head_len: u64,
    /// Hash of the last good entry.
    pub last_hash: Hash,
    /// Distinct streams seen.
    pub streams: u64,
    /// Principals registered.
    pub principals: usize,
    /// Signatures checked.
    pub signatures_verified: u64,
    /// Entries with sealed payloads.
    pub sealed_entries: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Entries whose payload key was destroyed (expunged content): they still verify.
    pub keys_destroyed: u64,
    /// The first fault, if any.
    pub fault: Option<Finding>,
}

impl Report {
    /// Whether the log verified.
    pub fn is_ok(&self) -> bool {
        self.fault.is_none()
    }
}

/// An entry that passed the checks done in parallel: position, entry, hash, leaf hash, and
/// whether its payload key was destroyed.
type Checked = (u64, Entry, Hash, TreeHash, bool);

struct Pending {
    position: u64,
    message: Vec<u8>,
    signature: [u8; 64],
    key: VerifyingKey,
}

struct Walker {
    db: sled::Db,
    expected: u64,
    prev_hash: Hash,
    last_recorded: Timestamp,
    streams: HashMap<StreamId, (u64, Hash)>,
    registry: Registry,
    sealed: u64,
    signatures: u64,
    tree: TreeCheck,
    destroyed: std::collections::HashSet<chronicle_core::DataKeyId>,
    destroyed_entries: u64,
}

/// Recomputes the Merkle tree's stored hashes from the entries and compares them with what is
/// stored, keeping only the tree's right edge in memory (at most 64 hashes).
struct TreeCheck {
    edge: HashMap<u64, TreeHash>,
    count: u64,
    chunk: Option<(u64, Vec<TreeHash>)>,
}

struct EdgeReader<'a> {
    edge: &'a HashMap<u64, TreeHash>,
    read: std::cell::RefCell<Vec<u64>>,
}

impl HashReader for EdgeReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, tlog_tiles::tlog::Error> {
        self.read.borrow_mut().extend_from_slice(indexes);
        indexes.iter().map(|i| self.edge.get(i).copied().ok_or(tlog_tiles::tlog::Error::IndexesNotInTree)).collect()
    }
}

impl TreeCheck {
    /// Adds leaf `n` and checks the hashes it stores; `false` if any differs from what is stored.
    fn push(&mut self, db: &sled::Db, n: u64, leaf: TreeHash) -> Result<bool, String> {
        let reader = EdgeReader { edge: &self.edge, read: Default::default() };
        let new = hashes_to_store(n, leaf, &reader).map_err(|e| e.to_string())?;
        let read = reader.read.into_inner();
        for i in read {
            self.edge.remove(&i);
        }
        let mut ok = true;
        for h in &new {
            let c = self.count / CHUNK_HASHES;
            if self.chunk.as_ref().is_none_or(|(have, _)| *have != c) {
                let v = db.get(chunk_key(c)).map_err(|e| e.to_string())?;
                let hashes = v
                    .map(|v| v.chunks_exact(32).map(|b| TreeHash(b.try_into().unwrap_or([0; 32]))).collect())
                    .unwrap_or_default();
                self.chunk = Some((c, hashes));
            }
            let stored = self.chunk.as_ref().and_then(|(_, hs)| hs.get((self.count % CHUNK_HASHES) as usize));
            ok &= stored == Some(h);
            self.count += 1;
        }
        if let Some(top) = new.last() {
            self.edge.insert(self.count - 1, *top);
        }
        Ok(ok)
    }
}

/// Verifies the log in `log_dir`. `progress` is called with the number of entries done so far.
/// A checkpoint the log must be consistent with: the vault's anchor, or one someone outside the
/// bureau kept (its signature already checked by the caller).
#[derive(Clone, Debug)]
pub struct Expected {
    /// What it is, in words.
    pub what: String,
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: TreeHash,
}

/// [`verify_log_against`] with no checkpoint from outside the log.
pub fn verify_log(log_dir: &Path, progress: impl FnMut(u64, u64)) -> Result<Report, OpenError> {
    verify_log_against(log_dir, &[], progress)
}

/// Re-checks every entry of a log, its tree and its checkpoints, and then that the verified log
/// reaches each `expected` checkpoint with the same root (no rollback, no fork).
pub fn verify_log_against(
    log_dir: &Path,
    expected: &[Expected],
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, OpenError> {
    if !log_dir.join("db").exists() {
        return Err(OpenError::NotInitialized(log_dir.display().to_string()));
    }
    let db = open_sled(log_dir)?;
    let head = db.get(layout::HEAD_KEY).map_err(|e| OpenError::Io(e.to_string()))?.map(|v| Head::decode(&v));
    let head_len = head.flatten().map_or(0, |h| h.len);
    let mut w = Walker {
        db: db.clone(),
        expected: 0,
        prev_hash: Hash::ZERO,
        last_recorded: Timestamp(i64::MIN),
        streams: HashMap::new(),
        registry: Registry::new(),
        sealed: 0,
        signatures: 0,
        tree: TreeCheck { edge: HashMap::new(), count: 0, chunk: None },
        destroyed: log_dir
            .parent()
            .map(|d| chronicle_core::Vault::destroyed_ids(&d.join("vault")).unwrap_or_default())
            .unwrap_or_default(),
        destroyed_entries: 0,
    };
    let mut fault = None;
    let mut iter = db.scan_prefix([layout::ENTRY]);
    loop {
        let mut raw = Vec::with_capacity(CHUNK);
        for kv in iter.by_ref().take(CHUNK) {
            raw.push(kv);
        }
        if raw.is_empty() {
            break;
        }
        if let Some(f) = w.chunk(raw) {
            fault = Some(f);
            break;
        }
        progress(w.expected, head_len);
    }
    if fault.is_none() {
        fault = match head {
            None if w.expected > 0 => Some(Finding { position: 0, fault: Fault::HeadDamaged }),
            None => None,
            Some(None) => Some(Finding { position: 0, fault: Fault::HeadDamaged }),
            Some(Some(h)) if h.len > w.expected => {
                Some(Finding { position: w.expected, fault: Fault::Truncated { head_len: h.len, found: w.expected } })
            }
            Some(Some(h)) if h.len < w.expected => {
                Some(Finding { position: h.len, fault: Fault::BeyondHead { head_len: h.len } })
            }
            Some(Some(h)) if h.last_hash != w.prev_hash => {
                Some(Finding { position: w.expected.saturating_sub(1), fault: Fault::HeadMismatch })
            }
            Some(Some(_)) => None,
        };
    }
    let mut checkpoints = 0;
    if fault.is_none() {
        match check_checkpoints(&db, &w.registry, w.expected) {
            Ok(n) => checkpoints = n,
            Err(f) => fault = Some(f),
        }
    }
    if fault.is_none() {
        for e in expected {
            if e.size > w.expected {
                let f = Fault::RolledBack { what: e.what.clone(), size: e.size, len: w.expected };
                fault = Some(Finding { position: w.expected, fault: f });
                break;
            }
            let found = chronicle_tlog::tree::root(e.size, &SledTree(&db))
                .map_err(|err| Finding { position: e.size, fault: Fault::Storage { reason: err.to_string() } });
            match found {
                Ok(root) if root == e.root => {}
                Ok(root) => {
                    let f = Fault::Forked {
                        what: e.what.clone(),
                        size: e.size,
                        expected: Hash(e.root.0).to_hex(),
                        found: Hash(root.0).to_hex(),
                    };
                    fault = Some(Finding { position: e.size.saturating_sub(1), fault: f });
                    break;
                }
                Err(f) => {
                    fault = Some(f);
                    break;
                }
            }
        }
    }
    let verified = fault.as_ref().map_or(w.expected, |f| f.position.min(w.expected));
    Ok(Report {
        entries_verified: verified,
        head_len,
        last_hash: w.prev_hash,
        streams: w.streams.len() as u64,
        principals: w.registry.principal_count(),
        signatures_verified: w.signatures,
        sealed_entries: w.sealed,
        checkpoints,
        keys_destroyed: w.destroyed_entries,
        fault,
    })
}

/// Checks every stored checkpoint: signed by the ledger's genesis key under its origin, and its
/// root equal to the (already verified) tree's root at its size.
fn check_checkpoints(db: &sled::Db, registry: &Registry, len: u64) -> Result<u64, Finding> {
    let ledger_key = registry
        .principals()
        .find(|(_, p)| p.role == chronicle_core::Role::Ledger)
        .and_then(|(_, p)| p.keys.first())
        .and_then(|k| registry.key(k))
        .map(|k| k.public);
    let mut n = 0;
    for kv in db.scan_prefix([crate::checkpoint::CHECKPOINT]) {
        let (k, note) = kv.map_err(|e| Finding { position: 0, fault: Fault::Storage { reason: e.to_string() } })?;
        let size = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
        let bad = |reason: String| Finding {
            position: size.saturating_sub(1),
            fault: Fault::CheckpointInvalid { size, reason },
        };
        let key = ledger_key.ok_or_else(|| bad("no ledger principal in the registry".into()))?;
        let text = chronicle_tlog::note::note_text(&note).map_err(|e| bad(e.to_string()))?;
        let origin = String::from_utf8_lossy(text.split(|b| *b == b'\n').next().unwrap_or_default()).to_string();
        let cp = chronicle_tlog::verify_checkpoint(&note, &chronicle_tlog::verifier_key(&origin, &key))
            .map_err(|e| bad(e.to_string()))?;
        if cp.size != size || size > len {
            return Err(bad(format!("claims size {} (log has {len} entries)", cp.size)));
        }
        let root = chronicle_tlog::tree::root(size, &SledTree(db)).map_err(|e| bad(e.to_string()))?;
        if root != cp.root {
            return Err(bad("its root is not the tree's root at that size".into()));
        }
        n += 1;
    }
    Ok(n)
}

impl Walker {
    /// Checks one chunk; returns the first fault in it.
    fn chunk(&mut self, raw: Vec<Result<(sled::IVec, sled::IVec), sled::Error>>) -> Option<Finding> {
        // Decoding and hashing are independent per entry: do them on all cores.
        let decoded: Vec<Result<Checked, Finding>> = raw
            .into_par_iter()
            .map(|kv| {
                let (k, v) =
                    kv.map_err(|e| Finding { position: u64::MAX, fault: Fault::Storage { reason: e.to_string() } })?;
                let position =
                    k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(|| Finding {
                        position: u64::MAX,
                        fault: Fault::Storage { reason: "malformed entry key".into() },
                    })?;
                let ev = layout::decode_entry_value(&v).ok_or_else(|| Finding {
                    position,
                    fault: Fault::Undecodable { reason: "malformed stored value".into() },
                })?;
                let (bytes, stored) = (ev.bytes, ev.hash);
                let computed = Hash::entry(bytes);
                if computed != stored {
                    return Err(Finding { position, fault: Fault::HashMismatch { stored, computed } });
                }
                let e = Entry::decode(bytes.to_vec())
                    .map_err(|e| Finding { position, fault: Fault::Undecodable { reason: e.to_string() } })?;
                let leaf = leaf_hash(bytes);
                let destroyed = ev
                    .wrapped_key
                    .and_then(chronicle_core::Vault::wrapped_key_id)
                    .is_some_and(|id| self.destroyed.contains(&id));
                Ok((position, e, computed, leaf, destroyed))
            })
            .collect();

        let mut pending = Vec::with_capacity(decoded.len());
        let mut structural = None;
        for d in decoded {
            let r = d.and_then(|(position, e, hash, leaf, destroyed)| {
                let at = self.expected;
                self.destroyed_entries += u64::from(destroyed);
                self.entry(position, e, hash, &mut pending)?;
                match self.tree.push(&self.db, at, leaf) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(Finding { position: at, fault: Fault::TreeMismatch }),
                    Err(reason) => Err(Finding { position: at, fault: Fault::Storage { reason } }),
                }
            });
            if let Err(mut f) = r {
                if f.position == u64::MAX {
                    f.position = self.expected;
                }
                structural = Some(f);
                break;
            }
        }
        self.signatures += pending.len() as u64;
        // Every signature strictly on its own (see `chronicle_core::sign`: a batch check would
        // accept what the strict rule refuses), on all cores.
        let bad_sig = pending
            .par_chunks(SIG_BATCH)
            .filter_map(|batch| {
                batch.iter().find(|p| !verify_message(&p.key, &p.message, &p.signature)).map(|p| p.position)
            })
            .min();
        match (bad_sig, structural) {
            (Some(position), _) => Some(Finding { position, fault: Fault::BadSignature }),
            (None, s) => s,
        }
    }

    fn entry(&mut self, position: u64, e: Entry, hash: Hash, pending: &mut Vec<Pending>) -> Result<(), Finding> {
        let at = |fault| Finding { position, fault };
        if position != self.expected {
            return Err(Finding { position: self.expected, fault: Fault::Missing { next_found: position } });
        }
        let h = &e.header;
        if h.position != position {
            return Err(at(Fault::PositionMismatch { claimed: h.position }));
        }
        if h.prev_hash != self.prev_hash {
            return Err(at(Fault::ChainBroken { expected: self.prev_hash, found: h.prev_hash }));
        }
        if h.recorded_time < self.last_recorded {
            return Err(at(Fault::ClockWentBack { previous: self.last_recorded, found: h.recorded_time }));
        }
        let st = &e.statement;
        let (next_version, stream_prev) = self.streams.get(&st.stream).map_or((0, Hash::ZERO), |(v, h)| (v + 1, *h));
        if h.stream_version != next_version {
            return Err(at(Fault::StreamVersionGap {
                stream: st.stream,
                expected: next_version,
                found: h.stream_version,
            }));
        }
        if h.prev_stream_hash != stream_prev {
            return Err(at(Fault::StreamChainBroken {
                stream: st.stream,
                expected: stream_prev,
                found: h.prev_stream_hash,
            }));
        }
        let is_registry = st.stream == StreamId::REGISTRY;
        let wrong = crate::store::stream_rule(&st.stream, st).or_else(|| {
            (st.stream == StreamId::LEDGER && !crate::store::ledger_stream_author(&self.registry, st))
                .then_some("only the ledger writes the ledger's own stream")
        });
        if let Some(reason) = wrong {
            return Err(at(Fault::WrongStream { reason: reason.into() }));
        }
        let public = if st.payload_kind == PayloadKind::Public {
            Some(
                open_public(&st.commitment, e.envelope())
                    .map_err(|err| at(Fault::Undecodable { reason: format!("public payload: {err}") }))?,
            )
        } else {
            self.sealed += 1;
            None
        };
        let key = self.registry.signing_key(st, public).map_err(|err| {
            at(match err {
                RegistryError::BadSignature => Fault::BadSignature,
                other => Fault::Unauthorized { reason: other.to_string() },
            })
        })?;
        pending.push(Pending { position, message: e.signing_message(), signature: e.signature, key });
        if let Some(payload) = public.filter(|_| is_registry) {
            let ev = RegistryEvent::parse(&st.event_type, payload)
                .map_err(|err| at(Fault::RegistryRejected { reason: err.to_string() }))?;
            self.registry
                .apply(position, &st.author, &ev)
                .map_err(|err| at(Fault::RegistryRejected { reason: err.to_string() }))?;
        }
        match self.db.get(layout::stream_key(&st.stream, h.stream_version)) {
            Ok(Some(v)) if layout::position_and_hash(&v) == Some((position, hash)) => {}
            Ok(_) => return Err(at(Fault::IndexMismatch)),
            Err(err) => {
                return Err(at(Fault::Storage { reason: err.to_string() }));
            }
        }
        self.streams.insert(st.stream, (h.stream_version, hash));
        self.prev_hash = hash;
        self.last_recorded = h.recorded_time;
        self.expected = position + 1;
        Ok(())
    }
}
