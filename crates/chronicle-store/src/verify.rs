//! `verify`: re-checks a whole log from its stored bytes and names the first thing wrong.
//!
//! Checked for every entry, in order: the key's position matches the entry's (no gap, no swap);
//! the bytes match the hash stored beside them and decode; the global chain (previous hash) and
//! the stream chain (previous hash and version within the stream) hold; recorded time never goes
//! back; the entry belongs in its stream; its author's key was valid in the registry as it stood
//! just before the entry, and the signature verifies; the stream index points at it. At the end
//! the number of entries and the last hash must match the head record (catching a cut tail).
//!
//! Structure is checked sequentially; signatures are checked each on its own (the strict rule),
//! a chunk at a time on all cores, and the report names the first bad position.
//!
//! Then everything else the store keeps, key space by key space (docs/FORMAT.md, "Derived
//! state"): each entry's idempotency record (checked with the entry), no index key or record
//! beyond the entries', the stream key bindings, the tree's chunks (none beyond the log, the last
//! one exactly as long as the log needs), every checkpoint and cosignature, the head record, a
//! pending repair, and the persisted projection (marker, snapshot file, overlay). With the keys
//! derived from the master key, every MAC too. A finding names its key space.

use std::collections::HashMap;
use std::path::Path;

use chronicle_core::payload::{open_public, open_sealed};
use chronicle_core::registry::RegistryEvent;
use chronicle_core::sign::verify_message;
use chronicle_core::{DataKeyId, Entry, Hash, PayloadKind, Registry, RegistryError, StreamId, Timestamp, VerifyingKey};
use rayon::prelude::*;
use serde::Serialize;

use crate::auth::IntegrityKeys;
use crate::error::OpenError;
use crate::layout::{self, HeadRecord};
use crate::store::open_sled;
use crate::tree::{CHUNK_HASHES, SledTree, chunk_key, decode_chunk};
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
    /// The head record does not authenticate, or its counts do not match the log.
    #[error("head record invalid: {reason}")]
    HeadInvalid {
        /// What is wrong.
        reason: String,
    },
    /// A reader found derived state damaged and a rebuild waits for the next start.
    #[error("a rebuild of derived state is pending: {reason}")]
    RepairPending {
        /// What the reader found.
        reason: String,
    },
    /// The stream index holds keys no entry accounts for, or malformed ones.
    #[error("stream index invalid: {reason}")]
    IndexInvalid {
        /// What is wrong.
        reason: String,
    },
    /// An idempotency record is missing, does not match its entry, or is left over.
    #[error("idempotency record invalid: {reason}")]
    IdempotencyInvalid {
        /// What is wrong.
        reason: String,
    },
    /// A stream head is missing, left over, malformed, does not authenticate, is not its stream's
    /// last entry, or the heads do not make the head record's digest.
    #[error("stream head invalid: {reason}")]
    HeadsInvalid {
        /// What is wrong.
        reason: String,
    },
    /// A stream key binding is malformed, does not authenticate, or names the wrong key.
    #[error("stream key binding of {stream} invalid: {reason}")]
    BindingInvalid {
        /// The stream.
        stream: StreamId,
        /// What is wrong.
        reason: String,
    },
    /// The tree's chunks do not authenticate, or hold more or fewer hashes than the log needs.
    #[error("Merkle tree invalid: {reason}")]
    TreeInvalid {
        /// What is wrong.
        reason: String,
    },
    /// The kept cosignatures are not those the ledger's own stream records as kept.
    #[error("cosignatures invalid: {reason}")]
    CosignatureInvalid {
        /// What is wrong.
        reason: String,
    },
    /// The persisted projection's marker, snapshot file or overlay is damaged (the store replays
    /// the log instead of loading it, but it should not be so).
    #[error("persisted projection invalid: {reason}")]
    ProjectionInvalid {
        /// Which part: `m` (marker and snapshot record), `r` (overlay), `snapshot file`.
        part: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A `ledger.stream_heads` entry is malformed, out of order, or commits to heads other than
    /// the log's at its size.
    #[error("heads commitment invalid: {reason}")]
    HeadsCommitment {
        /// What is wrong.
        reason: String,
    },
    /// sled could not read an item.
    #[error("storage error: {reason}")]
    Storage {
        /// sled's error.
        reason: String,
    },
}

impl Fault {
    /// The key space (docs/FORMAT.md) or file the fault is in: `e` the entries, `s` the stream
    /// index, `i` idempotency records, `h` stream heads, `c` stream key bindings, `t` the tree, `p` checkpoints,
    /// `w` cosignatures, `m` the head record and markers, `r` the projection's overlay, `snapshot
    /// file` the projection's snapshot, `sled` when sled itself failed.
    pub fn space(&self) -> &'static str {
        match self {
            Fault::Missing { .. }
            | Fault::HashMismatch { .. }
            | Fault::Undecodable { .. }
            | Fault::PositionMismatch { .. }
            | Fault::ChainBroken { .. }
            | Fault::StreamVersionGap { .. }
            | Fault::StreamChainBroken { .. }
            | Fault::ClockWentBack { .. }
            | Fault::Unauthorized { .. }
            | Fault::BadSignature
            | Fault::RegistryRejected { .. }
            | Fault::WrongStream { .. }
            | Fault::HeadsCommitment { .. }
            | Fault::RolledBack { .. }
            | Fault::Forked { .. } => "e",
            Fault::IndexMismatch | Fault::IndexInvalid { .. } => "s",
            Fault::IdempotencyInvalid { .. } => "i",
            Fault::HeadsInvalid { .. } => "h",
            Fault::BindingInvalid { .. } => "c",
            Fault::TreeMismatch | Fault::TreeInvalid { .. } => "t",
            Fault::CheckpointInvalid { .. } => "p",
            Fault::CosignatureInvalid { .. } => "w",
            Fault::Truncated { .. }
            | Fault::BeyondHead { .. }
            | Fault::HeadMismatch
            | Fault::HeadDamaged
            | Fault::HeadInvalid { .. }
            | Fault::RepairPending { .. } => "m",
            Fault::ProjectionInvalid { part, .. } => part,
            Fault::Storage { .. } => "sled",
        }
    }
}

/// The first fault found, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The first bad position (for faults outside the entries, the position they concern, or 0).
    pub position: u64,
    /// The key space the fault is in ([`Fault::space`]).
    pub space: &'static str,
    /// What is wrong there.
    pub fault: Fault,
}

impl Finding {
    /// A finding at `position`.
    pub fn new(position: u64, fault: Fault) -> Finding {
        Finding { position, space: fault.space(), fault }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "position {} (key space {}): {}", self.position, self.space, self.fault)
    }
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
    /// Heads commitments (`ledger.stream_heads`) recomputed and found to hold.
    pub heads_commitments: u64,
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
type Checked = (u64, Entry, Hash, TreeHash, bool, Option<DataKeyId>);

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
    streams: HashMap<StreamId, layout::StreamHead>,
    registry: Registry,
    sealed: u64,
    signatures: u64,
    tree: TreeCheck,
    destroyed: std::collections::HashSet<chronicle_core::DataKeyId>,
    /// Every data key id the vault holds or held, if its file could be read.
    known: Option<std::collections::HashSet<chronicle_core::DataKeyId>>,
    /// The vault's keys, with the master key: every wrap under a live key must open, and the
    /// payload under it.
    content: Option<chronicle_core::VaultKeys>,
    destroyed_entries: u64,
    keys: Option<IntegrityKeys>,
    /// The data key each stream's last sealed entry is under.
    last_key: HashMap<StreamId, DataKeyId>,
    /// The cosignatures the ledger's own stream records as kept: `w` key, line.
    kept: std::collections::BTreeMap<Vec<u8>, String>,
    /// Check the entries alone (chains, signatures, authors, stream rules), not what the store
    /// derived from them: for a rebuild, which is about to make that anew.
    entries_only: bool,
    /// The heads map, to recompute every heads commitment.
    heads: HeadsCheck,
}

/// The heads map as the walk goes, to recompute each heads commitment. The map lags behind the
/// walk: it holds the heads among the first `applied` entries, and the heads moved since wait in
/// `unapplied` until the next commitment names its size (which is past the previous commitment's
/// position), so the map only ever moves forward. A long stretch with no commitment (a log
/// imported in bulk) is not held in memory: past `held` moves ([`UNAPPLIED_MAX`]) the buffer is dropped,
/// and the next commitment reads the entries it needs from the log again (already checked).
#[derive(Default)]
struct HeadsCheck {
    map: chronicle_tlog::heads::HeadsMap,
    applied: u64,
    /// The heads moved from position `applied` on, one per entry; `None` once dropped.
    unapplied: Option<std::collections::VecDeque<chronicle_tlog::heads::StreamHead>>,
    last: Option<crate::commitment::HeadsCommitment>,
    commitments: u64,
    /// The most heads held in `unapplied`.
    held: usize,
}

/// The most heads `HeadsCheck` holds waiting for a commitment (64 MiB).
const UNAPPLIED_MAX: usize = 1 << 20;

impl HeadsCheck {
    fn new() -> HeadsCheck {
        HeadsCheck { unapplied: Some(Default::default()), held: UNAPPLIED_MAX, ..Default::default() }
    }

    /// The heads moved by the entries at positions `from..to`, read from the log, one by one.
    fn read_moves(
        db: &sled::Db,
        from: u64,
        to: u64,
        mut each: impl FnMut(chronicle_tlog::heads::StreamHead),
    ) -> Result<(), Fault> {
        let mut read = 0u64;
        for kv in db.range(layout::entry_key(from)..layout::entry_key(to)) {
            let (_, v) = kv.map_err(|e| Fault::Storage { reason: e.to_string() })?;
            let ev = layout::decode_entry_value(&v)
                .ok_or_else(|| Fault::Undecodable { reason: "malformed stored value".into() })?;
            let e = Entry::decode(ev.bytes.to_vec()).map_err(|e| Fault::Undecodable { reason: e.to_string() })?;
            if e.position() != from + read {
                return Err(Fault::Storage { reason: "the log changed while it was being verified".into() });
            }
            each(chronicle_tlog::heads::StreamHead {
                stream: e.statement.stream.0,
                version: e.header.stream_version,
                hash: Hash::entry(ev.bytes).0,
            });
            read += 1;
        }
        if read != to - from {
            return Err(Fault::Storage { reason: "the log changed while it was being verified".into() });
        }
        Ok(())
    }

    /// Checks the commitment an entry records, if it is one, against the heads before it.
    fn check(&mut self, db: &sled::Db, e: &Entry) -> Result<(), Fault> {
        let Some(c) = crate::commitment::commitment_of(e) else { return Ok(()) };
        let bad = |reason: String| Fault::HeadsCommitment { reason };
        let c = c.map_err(bad)?;
        if let Some(last) = self.last
            && c.size <= last.position
        {
            return Err(bad(format!(
                "its size {} does not cover the commitment before it (at position {})",
                c.size, last.position
            )));
        }
        let unapplied = match self.unapplied.take() {
            Some(mut u) => {
                while self.applied < c.size
                    && let Some(head) = u.pop_front()
                {
                    self.map.set(head);
                    self.applied += 1;
                }
                u
            }
            // Dropped: from the log again, into the map up to the size, then held up to here.
            None => {
                let map = &mut self.map;
                HeadsCheck::read_moves(db, self.applied, c.size, |h| map.set(h))?;
                self.applied = c.size;
                let mut u = std::collections::VecDeque::new();
                HeadsCheck::read_moves(db, c.size, e.position(), |h| u.push_back(h))?;
                u
            }
        };
        self.unapplied = Some(unapplied);
        if self.map.root() != c.root {
            return Err(bad(format!(
                "its root {} is not the root of the stream heads at size {} ({})",
                hex::encode(c.root),
                c.size,
                hex::encode(self.map.root())
            )));
        }
        self.last = Some(c);
        self.commitments += 1;
        Ok(())
    }

    fn moved(&mut self, stream: &StreamId, version: u64, hash: &Hash) {
        if let Some(u) = &mut self.unapplied {
            if u.len() >= self.held {
                self.unapplied = None;
            } else {
                u.push_back(chronicle_tlog::heads::StreamHead { stream: stream.0, version, hash: hash.0 });
            }
        }
    }
}

impl Walker {
    /// A walker from the genesis entry, with no vault or keys at hand (the caller adds them).
    fn new(db: &sled::Db, entries_only: bool) -> Walker {
        Walker {
            db: db.clone(),
            expected: 0,
            prev_hash: Hash::ZERO,
            last_recorded: Timestamp(i64::MIN),
            streams: HashMap::new(),
            registry: Registry::new(),
            sealed: 0,
            signatures: 0,
            tree: TreeCheck { edge: HashMap::new(), count: 0, chunk: None },
            destroyed: Default::default(),
            known: None,
            content: None,
            destroyed_entries: 0,
            keys: None,
            last_key: HashMap::new(),
            kept: std::collections::BTreeMap::new(),
            entries_only,
            heads: HeadsCheck::new(),
        }
    }

    /// Checks every entry, a chunk at a time, calling `progress` with how many are done; stops at
    /// the first fault.
    fn walk(&mut self, mut progress: impl FnMut(u64)) -> Result<(), Finding> {
        let mut iter = self.db.scan_prefix([layout::ENTRY]);
        loop {
            let raw: Vec<_> = iter.by_ref().take(CHUNK).collect();
            if raw.is_empty() {
                return Ok(());
            }
            if let Some(f) = self.chunk(raw) {
                return Err(f);
            }
            progress(self.expected);
        }
    }
}

/// Why the tree could not be checked at an entry.
enum TreeCheckError {
    /// A chunk is malformed or does not authenticate.
    Chunk(u64),
    Storage(String),
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
    fn push(
        &mut self,
        db: &sled::Db,
        keys: Option<&IntegrityKeys>,
        n: u64,
        leaf: TreeHash,
    ) -> Result<bool, TreeCheckError> {
        let reader = EdgeReader { edge: &self.edge, read: Default::default() };
        let new = hashes_to_store(n, leaf, &reader).map_err(|e| TreeCheckError::Storage(e.to_string()))?;
        let read = reader.read.into_inner();
        for i in read {
            self.edge.remove(&i);
        }
        let mut ok = true;
        for h in &new {
            let c = self.count / CHUNK_HASHES;
            if self.chunk.as_ref().is_none_or(|(have, _)| *have != c) {
                let v = db.get(chunk_key(c)).map_err(|e| TreeCheckError::Storage(e.to_string()))?;
                let hashes = match v {
                    None => Vec::new(),
                    Some(v) => decode_chunk(keys, c, &v).ok_or(TreeCheckError::Chunk(c))?,
                };
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
    /// Whether the store must keep this checkpoint (the vault's anchor: the last one the ledger
    /// signed, which no deletion may take away).
    pub kept: bool,
}

/// [`verify_log_against`] with no checkpoint from outside the log and no master key (every MAC
/// unchecked; everything else checked).
pub fn verify_log(log_dir: &Path, progress: impl FnMut(u64, u64)) -> Result<Report, OpenError> {
    verify_log_against(log_dir, &[], None, progress)
}

/// Re-checks every entry of a log, its tree and its checkpoints, everything else the store keeps
/// beside them (with `keys`, the MACs too), and then that the verified log reaches each
/// `expected` checkpoint with the same root (no rollback, no fork).
pub fn verify_log_against(
    log_dir: &Path,
    expected: &[Expected],
    master: Option<&chronicle_core::MasterKey>,
    progress: impl FnMut(u64, u64),
) -> Result<Report, OpenError> {
    verify_holding(log_dir, expected, master, UNAPPLIED_MAX, progress)
}

/// [`verify_log`] holding at most `held` stream heads in memory while it waits for the next heads
/// commitment (the rest are read from the log again when it comes): for tests of that path,
/// which a real log takes after a million entries with no commitment.
#[doc(hidden)]
pub fn verify_log_holding(log_dir: &Path, held: usize) -> Result<Report, OpenError> {
    verify_holding(log_dir, &[], None, held, |_, _| {})
}

fn verify_holding(
    log_dir: &Path,
    expected: &[Expected],
    master: Option<&chronicle_core::MasterKey>,
    held: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, OpenError> {
    if !log_dir.join("db").exists() {
        return Err(OpenError::NotInitialized(log_dir.display().to_string()));
    }
    // With the master key, every sealed entry's content key is unwrapped, and its payload opened.
    let vault_dir = log_dir.parent().map(|d| d.join("vault")).unwrap_or_default();
    let integrity = match master {
        Some(m) => {
            let epoch = chronicle_core::Vault::read_anchor(&vault_dir, m)?.map_or(0, |a| a.epoch);
            Some(IntegrityKeys::from_master(m, epoch))
        }
        None => None,
    };
    let keys = integrity.as_ref();
    let content = master.map(|m| chronicle_core::VaultKeys::read(&vault_dir, m)).transpose()?;
    let db = open_sled(log_dir)?;
    let head = db
        .get(layout::HEAD_KEY)
        .map_err(|e| OpenError::Io(e.to_string()))?
        .map(|v| HeadRecord::decode(&v, keys).map_err(str::to_string));
    let head_len = head.as_ref().and_then(|h| h.as_ref().ok()).map_or(0, |h| h.head.len);
    let mut w = Walker {
        // With the master key, only tombstones that authenticate count (one appended without it
        // would make every entry under a live key look like damage).
        destroyed: match &content {
            Some(c) => c.destroyed_ids(),
            None => chronicle_core::Vault::destroyed_ids(&vault_dir).unwrap_or_default(),
        },
        known: chronicle_core::Vault::known_ids(&vault_dir).ok(),
        content,
        keys: keys.cloned(),
        heads: HeadsCheck { held, ..HeadsCheck::new() },
        ..Walker::new(&db, false)
    };
    let mut fault = w.walk(|done| progress(done, head_len)).err();
    if fault.is_none() {
        let count = |s: &StreamId| w.streams.get(s).map_or(0, |h| h.version + 1);
        fault = match head {
            None if w.expected > 0 => Some(Finding::new(0, Fault::HeadDamaged)),
            None => None,
            Some(Err(reason)) => Some(Finding::new(0, Fault::HeadInvalid { reason })),
            Some(Ok(r)) if r.head.len > w.expected => {
                Some(Finding::new(w.expected, Fault::Truncated { head_len: r.head.len, found: w.expected }))
            }
            Some(Ok(r)) if r.head.len < w.expected => {
                Some(Finding::new(r.head.len, Fault::BeyondHead { head_len: r.head.len }))
            }
            Some(Ok(r)) if r.head.last_hash != w.prev_hash => {
                Some(Finding::new(w.expected.saturating_sub(1), Fault::HeadMismatch))
            }
            Some(Ok(r)) if r.registry != count(&StreamId::REGISTRY) || r.ledger != count(&StreamId::LEDGER) => {
                Some(Finding::new(
                    0,
                    Fault::HeadInvalid {
                        reason: format!(
                            "it counts {} registry and {} ledger entries, the log holds {} and {}",
                            r.registry,
                            r.ledger,
                            count(&StreamId::REGISTRY),
                            count(&StreamId::LEDGER)
                        ),
                    },
                ))
            }
            Some(Ok(r)) => w.check_heads(&r).err(),
        };
    }
    if fault.is_none() {
        fault = w.check_derived(log_dir).err();
    }
    let mut checkpoints = 0;
    if fault.is_none() {
        let mut sizes: Vec<u64> = expected.iter().filter(|e| e.kept).map(|e| e.size).collect();
        sizes.extend(w.kept.keys().filter_map(|k| k.get(1..9)?.try_into().ok().map(u64::from_be_bytes)));
        match check_checkpoints(&db, &w.registry, w.expected, keys, &sizes) {
            Ok(n) => checkpoints = n,
            Err(f) => fault = Some(f),
        }
    }
    if fault.is_none() {
        fault = crate::checkpoint::check_cosignatures_kept(&db, &w.kept)
            .err()
            .map(|reason| Finding::new(0, Fault::CosignatureInvalid { reason }));
    }
    if fault.is_none() {
        for e in expected {
            if e.size > w.expected {
                let f = Fault::RolledBack { what: e.what.clone(), size: e.size, len: w.expected };
                fault = Some(Finding::new(w.expected, f));
                break;
            }
            let found = chronicle_tlog::tree::root(e.size, &SledTree::new(&db, keys))
                .map_err(|err| Finding::new(e.size, Fault::Storage { reason: err.to_string() }));
            match found {
                Ok(root) if root == e.root => {}
                Ok(root) => {
                    let f = Fault::Forked {
                        what: e.what.clone(),
                        size: e.size,
                        expected: Hash(e.root.0).to_hex(),
                        found: Hash(root.0).to_hex(),
                    };
                    fault = Some(Finding::new(e.size.saturating_sub(1), f));
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
        heads_commitments: w.heads.commitments,
        keys_destroyed: w.destroyed_entries,
        fault,
    })
}

/// Checks every entry of an open log as [`verify_log_against`] does (chains, hashes, signatures
/// against the registry as it stood, authors, stream rules), but nothing derived from them.
/// Returns how many entries checked.
pub(crate) fn verify_entries(db: &sled::Db) -> Result<u64, Finding> {
    let mut w = Walker::new(db, true);
    w.walk(|_| {})?;
    Ok(w.expected)
}

/// Checks every stored checkpoint: signed by the ledger's genesis key under its origin, and its
/// root equal to the (already verified) tree's root at its size.
fn check_checkpoints(
    db: &sled::Db,
    registry: &Registry,
    len: u64,
    keys: Option<&IntegrityKeys>,
    must_have: &[u64],
) -> Result<u64, Finding> {
    // (A size beyond the log is a rollback, which the checks against expected checkpoints name.)
    for &size in must_have.iter().filter(|s| **s <= len) {
        if db
            .get(crate::checkpoint::checkpoint_key(size))
            .map_err(|e| Finding::new(0, Fault::Storage { reason: e.to_string() }))?
            .is_none()
        {
            let reason = "missing, though the vault's anchor or a cosignature kept in the log names it".to_string();
            return Err(Finding::new(size.saturating_sub(1), Fault::CheckpointInvalid { size, reason }));
        }
    }
    let ledger_key = crate::checkpoint::log_verifying_key(registry);
    let mut n = 0;
    for kv in db.scan_prefix([crate::checkpoint::CHECKPOINT]) {
        let (k, note) = kv.map_err(|e| Finding::new(0, Fault::Storage { reason: e.to_string() }))?;
        let size = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
        let bad = |reason: String| Finding::new(size.saturating_sub(1), Fault::CheckpointInvalid { size, reason });
        let key = ledger_key.ok_or_else(|| bad("no ledger principal in the registry".into()))?;
        let text = chronicle_tlog::note::note_text(&note).map_err(|e| bad(e.to_string()))?;
        let origin = String::from_utf8_lossy(text.split(|b| *b == b'\n').next().unwrap_or_default()).to_string();
        let cp = chronicle_tlog::verify_checkpoint(&note, &chronicle_tlog::verifier_key(&origin, &key))
            .map_err(|e| bad(e.to_string()))?;
        if cp.size != size || size > len {
            return Err(bad(format!("claims size {} (log has {len} entries)", cp.size)));
        }
        let root = chronicle_tlog::tree::root(size, &SledTree::new(db, keys)).map_err(|e| bad(e.to_string()))?;
        if root != cp.root {
            return Err(bad("its root is not the tree's root at that size".into()));
        }
        n += 1;
    }
    Ok(n)
}

impl Walker {
    /// The stream heads (`h`): exactly one per stream, each its stream's last entry, each
    /// authenticated (with the master key), all of them making the head record's digest.
    fn check_heads(&self, record: &HeadRecord) -> Result<(), Finding> {
        let bad = |reason: String| Finding::new(0, Fault::HeadsInvalid { reason });
        let mut digest = [0u8; crate::auth::MAC_LEN];
        let mut n = 0usize;
        for kv in self.db.scan_prefix([layout::STREAM_HEAD]) {
            let (k, v) = kv.map_err(|e| Finding::new(0, Fault::Storage { reason: e.to_string() }))?;
            let stream = layout::stream_head_stream(&k).ok_or_else(|| bad("a malformed stream head key".into()))?;
            let h = layout::StreamHead::decode(self.keys.as_ref(), &stream, &v)
                .map_err(|r| bad(format!("{r} ({stream})")))?;
            match self.streams.get(&stream) {
                Some(want) if *want == h => {}
                Some(want) => {
                    return Err(Finding::new(
                        want.position,
                        Fault::HeadsInvalid {
                            reason: format!(
                                "the head of stream {stream} names version {} at position {}, its last entry is version {} at {}",
                                h.version, h.position, want.version, want.position
                            ),
                        },
                    ));
                }
                None => return Err(bad(format!("a head for stream {stream}, which has no entries"))),
            }
            if let Some(keys) = &self.keys {
                crate::auth::xor_into(&mut digest, &h.share(keys, &stream));
            }
            n += 1;
        }
        if n != self.streams.len() {
            return Err(bad(format!("{n} stream heads for {} streams", self.streams.len())));
        }
        if self.keys.is_some() && !crate::auth::same(&record.heads, &digest) {
            return Err(bad("the stream heads do not make the head record's digest".into()));
        }
        Ok(())
    }

    /// After the entries: everything else the store keeps, against what the walk established.
    fn check_derived(&self, log_dir: &Path) -> Result<(), Finding> {
        let storage = |e: sled::Error| Finding::new(0, Fault::Storage { reason: e.to_string() });
        let db = &self.db;
        if let Some(why) = db.get(layout::REPAIR_KEY).map_err(storage)? {
            return Err(Finding::new(0, Fault::RepairPending { reason: String::from_utf8_lossy(&why).into() }));
        }
        // Every entry's index key and record were found; anything more is left over or forged.
        let n = db.scan_prefix([layout::STREAM]).keys().count() as u64;
        if n != self.expected {
            let reason = format!("{n} index keys for {} entries", self.expected);
            return Err(Finding::new(0, Fault::IndexInvalid { reason }));
        }
        let n = db.scan_prefix([layout::IDEMPOTENCY]).keys().count() as u64;
        if n != self.expected {
            let reason = format!("{n} records for {} entries", self.expected);
            return Err(Finding::new(0, Fault::IdempotencyInvalid { reason }));
        }
        // Bindings: one per stream with a sealed entry under a live key (a stream whose keys were
        // all destroyed may have none), authenticated, never naming a destroyed key while the
        // stream's last entry is under a live one.
        let mut bound = std::collections::HashSet::new();
        for kv in db.scan_prefix([layout::STREAM_DATA_KEY]) {
            let (k, v) = kv.map_err(storage)?;
            let Some(stream) = layout::binding_stream(&k) else {
                let reason = "a malformed binding key".to_string();
                return Err(Finding::new(0, Fault::BindingInvalid { stream: StreamId([0; 16]), reason }));
            };
            let bad = |reason: String| Finding::new(0, Fault::BindingInvalid { stream, reason });
            let id = layout::decode_binding(self.keys.as_ref(), &stream, &v).map_err(|r| bad(r.into()))?;
            let Some(last) = self.last_key.get(&stream) else {
                return Err(bad("bound to a key, but the stream has no sealed entry".into()));
            };
            if self.destroyed.contains(&id) && !self.destroyed.contains(last) {
                return Err(bad("names a destroyed key while the stream's last entry is under a live one".into()));
            }
            bound.insert(stream);
        }
        if let Some((stream, _)) =
            self.last_key.iter().find(|(s, id)| !bound.contains(*s) && !self.destroyed.contains(*id))
        {
            let reason = "missing, while the stream's entries are under a live key".to_string();
            return Err(Finding::new(0, Fault::BindingInvalid { stream: *stream, reason }));
        }
        // The tree: exactly the chunks the log needs, the last one exactly as long.
        let count = chronicle_tlog::tree::stored_hash_count(self.expected);
        let mut chunks = 0u64;
        for kv in db.scan_prefix([crate::tree::TREE]) {
            let (k, v) = kv.map_err(storage)?;
            let c = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
            let tree = |reason: String| Finding::new(0, Fault::TreeInvalid { reason });
            let Some(c) = c.filter(|c| *c == chunks && k.len() == 9) else {
                return Err(tree(format!("chunk {chunks} is missing or a key is malformed")));
            };
            let hashes = decode_chunk(self.keys.as_ref(), c, &v)
                .ok_or_else(|| tree(format!("chunk {c} is malformed or does not authenticate")))?;
            let want = (count - (c * CHUNK_HASHES).min(count)).min(CHUNK_HASHES);
            if hashes.len() as u64 != want {
                return Err(tree(format!("chunk {c} holds {} hashes, the log needs {want}", hashes.len())));
            }
            chunks += 1;
        }
        if chunks != count.div_ceil(CHUNK_HASHES) {
            let reason = format!("{chunks} chunks, the log needs {}", count.div_ceil(CHUNK_HASHES));
            return Err(Finding::new(0, Fault::TreeInvalid { reason }));
        }
        let projection = log_dir.parent().map(|d| d.join("projection")).unwrap_or_default();
        crate::projection::check_persisted(db, &projection, self.keys.as_ref(), self.expected).map_err(
            |(part, reason)| match part {
                "sled" => Finding::new(0, Fault::Storage { reason }),
                part => Finding::new(0, Fault::ProjectionInvalid { part, reason }),
            },
        )
    }

    /// Checks one chunk; returns the first fault in it.
    fn chunk(&mut self, raw: Vec<Result<(sled::IVec, sled::IVec), sled::Error>>) -> Option<Finding> {
        // Decoding and hashing are independent per entry: do them on all cores.
        let decoded: Vec<Result<Checked, Finding>> = raw
            .into_par_iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| Finding::new(u64::MAX, Fault::Storage { reason: e.to_string() }))?;
                let position =
                    k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(|| {
                        Finding::new(u64::MAX, Fault::Storage { reason: "malformed entry key".into() })
                    })?;
                let ev = layout::decode_entry_value(&v).ok_or_else(|| {
                    Finding::new(position, Fault::Undecodable { reason: "malformed stored value".into() })
                })?;
                let (bytes, stored) = (ev.bytes, ev.hash);
                let computed = Hash::entry(bytes);
                if computed != stored {
                    return Err(Finding::new(position, Fault::HashMismatch { stored, computed }));
                }
                let e = Entry::decode(bytes.to_vec())
                    .map_err(|e| Finding::new(position, Fault::Undecodable { reason: e.to_string() }))?;
                let leaf = leaf_hash(bytes);
                // A sealed payload can be opened only with the content key wrapped beside it: one
                // missing, malformed or naming a key the vault never held hides the entry from
                // every reader as surely as a deletion.
                let sealed = e.statement.payload_kind == PayloadKind::Sealed;
                let wrap_fault = match ev.wrapped_key {
                    None if sealed => Some("a sealed entry is stored without its wrapped content key".to_string()),
                    Some(_) if !sealed => Some("a public entry is stored with a wrapped content key".to_string()),
                    Some(w) if layout::open_wrap(self.keys.as_ref(), &layout::WrapSite::of(&e), w).is_none() => {
                        Some("its wrapped content key does not authenticate at its position".to_string())
                    }
                    Some(w) => {
                        let id = chronicle_core::Vault::wrapped_key_id(&w[..chronicle_core::vault::WRAPPED_CONTENT_KEY_LEN]);
                        let marked = chronicle_core::Vault::is_expunged_wrapping(&w[..chronicle_core::vault::WRAPPED_CONTENT_KEY_LEN]);
                        match id {
                            Some(id) if self.known.as_ref().is_some_and(|k| !k.contains(&id)) => {
                                Some(format!("its content key {id} is not in the vault"))
                            }
                            // An expungement replaces every wrapping under the keys it destroys.
                            Some(id) if !marked && self.destroyed.contains(&id) => Some(format!(
                                "its content key is still wrapped under {id}, a destroyed key, where the expungement left none (put back from before?)"
                            )),
                            _ => None,
                        }
                    }
                    None => None,
                };
                let wrap_fault = wrap_fault.or_else(|| {
                    let content = self.content.as_ref()?;
                    let wrapped =
                        layout::open_wrap(self.keys.as_ref(), &layout::WrapSite::of(&e), ev.wrapped_key?)?;
                    match content.unwrap_content_key(position, wrapped) {
                        Ok(cek) => open_sealed(&cek, &e.statement.commitment, e.envelope())
                            .err()
                            .map(|err| format!("its payload does not open under its content key: {err}")),
                        Err(chronicle_core::SealError::KeyDestroyed) => None,
                        Err(err) => Some(format!("its wrapped content key: {err}")),
                    }
                });
                if let Some(reason) = wrap_fault {
                    return Err(Finding::new(position, Fault::Undecodable { reason }));
                }
                let key = ev.wrapped_key.and_then(chronicle_core::Vault::wrapped_key_id);
                let destroyed = ev.wrapped_key.is_some_and(|w| {
                    chronicle_core::Vault::is_expunged_wrapping(&w[..chronicle_core::vault::WRAPPED_CONTENT_KEY_LEN])
                });
                Ok((position, e, computed, leaf, destroyed, key))
            })
            .collect();

        let mut pending = Vec::with_capacity(decoded.len());
        let mut structural = None;
        for d in decoded {
            let r = d.and_then(|(position, e, hash, leaf, destroyed, key)| {
                let at = self.expected;
                self.destroyed_entries += u64::from(destroyed);
                if let Some(k) = key {
                    self.last_key.insert(e.statement.stream, k);
                }
                self.entry(position, e, hash, &mut pending)?;
                if self.entries_only {
                    return Ok(());
                }
                match self.tree.push(&self.db, self.keys.as_ref(), at, leaf) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(Finding::new(at, Fault::TreeMismatch)),
                    Err(TreeCheckError::Chunk(c)) => Err(Finding::new(
                        at,
                        Fault::TreeInvalid { reason: format!("chunk {c} is malformed or does not authenticate") },
                    )),
                    Err(TreeCheckError::Storage(reason)) => Err(Finding::new(at, Fault::Storage { reason })),
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
            (Some(position), _) => Some(Finding::new(position, Fault::BadSignature)),
            (None, s) => s,
        }
    }

    fn entry(&mut self, position: u64, e: Entry, hash: Hash, pending: &mut Vec<Pending>) -> Result<(), Finding> {
        let at = |fault| Finding::new(position, fault);
        if position != self.expected {
            return Err(Finding::new(self.expected, Fault::Missing { next_found: position }));
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
        let (next_version, stream_prev) =
            self.streams.get(&st.stream).map_or((0, Hash::ZERO), |h| (h.version + 1, h.hash));
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
        if let Some((k, line)) = crate::checkpoint::cosignature_kept(&e) {
            self.kept.insert(k, line);
        }
        if let Some(payload) = public.filter(|_| is_registry) {
            let ev = RegistryEvent::parse(&st.event_type, payload)
                .map_err(|err| at(Fault::RegistryRejected { reason: err.to_string() }))?;
            self.registry
                .apply(position, &st.author, &ev)
                .map_err(|err| at(Fault::RegistryRejected { reason: err.to_string() }))?;
        }
        self.heads.check(&self.db, &e).map_err(at)?;
        self.heads.moved(&st.stream, h.stream_version, &hash);
        if self.entries_only {
            self.streams.insert(st.stream, layout::StreamHead { version: h.stream_version, position, hash });
            self.prev_hash = hash;
            self.last_recorded = h.recorded_time;
            self.expected = position + 1;
            return Ok(());
        }
        match self.db.get(layout::stream_key(&st.stream, h.stream_version)) {
            Ok(Some(v)) if layout::position_and_hash(&v) == Some((position, hash)) => {}
            Ok(_) => return Err(at(Fault::IndexMismatch)),
            Err(err) => {
                return Err(at(Fault::Storage { reason: err.to_string() }));
            }
        }
        // The entry's idempotency record: present, naming this entry, as the entry makes it.
        let (idem_key, made) = crate::derived::idem_record_of(&e);
        let found = match self.db.get(idem_key) {
            Ok(found) => found,
            Err(err) => return Err(at(Fault::Storage { reason: err.to_string() })),
        };
        let idem = |reason: String| at(Fault::IdempotencyInvalid { reason });
        match found.as_deref().map(layout::IdemRecord::decode) {
            None => return Err(idem("the entry has no idempotency record".into())),
            Some(None) => return Err(idem("the entry's idempotency record is malformed".into())),
            Some(Some(rec)) if rec.appended.position < position => {
                return Err(idem(format!(
                    "the entry repeats the author and idempotency key of position {}",
                    rec.appended.position
                )));
            }
            Some(Some(rec)) if rec != made => {
                return Err(idem("the entry's idempotency record does not match it".into()));
            }
            Some(Some(_)) => {}
        }
        self.streams.insert(st.stream, layout::StreamHead { version: h.stream_version, position, hash });
        self.prev_hash = hash;
        self.last_recorded = h.recorded_time;
        self.expected = position + 1;
        Ok(())
    }
}
