//! Derived state checked when the store opens, and rebuilt from the entries when it is damaged.
//!
//! At open the store checks what it is about to trust, at a cost that does not grow with the log:
//! the head record's MAC, that the last entry is the one it names and nothing is stored beyond it,
//! the two system streams against the lengths the head record gives (the registry decides whose
//! signatures count; no entry of it may be left out), and the tree's open chunk. Everything else
//! is checked where it is read (see `derived`). Damage found at open, or reported by a reader
//! since (the `mrepair` key), is repaired before the store serves anything: the stream index, the
//! idempotency records, the tree and the head record are rebuilt from the entries, stream key
//! bindings that do not authenticate are dropped (the stream gets a fresh key at its next append;
//! expungement finds every key its entries are sealed under from the entries themselves), and
//! the repair is reported. Cosignatures kept are put back from the ledger's own stream, where each
//! was recorded before it was kept. The entries themselves are never rewritten: if they do not hold
//! together, the store refuses to open, and `verify` says where.

use std::collections::{BTreeMap, HashMap, HashSet};

use chronicle_core::payload::open_public;
use chronicle_core::registry::RegistryEvent;
use chronicle_core::{DataKeyId, Hash, Registry, StreamId, Vault};

use crate::auth::IntegrityKeys;
use crate::checkpoint::{COSIGNATURE, check_cosignatures_kept, cosignature_kept};
use crate::derived::{check_indexed, idem_record_of};
use crate::error::OpenError;
use crate::layout::{self, Head, HeadRecord, StreamHead};
use crate::store::{decode_stored, read_entry};
use crate::tree::{TREE, TreeTail};

/// What the checks at open established.
pub(crate) struct Opened {
    pub(crate) record: HeadRecord,
    pub(crate) registry: Registry,
    /// The heads of the registry and of the ledger's own stream.
    pub(crate) system: Vec<(StreamId, StreamHead)>,
    pub(crate) tree: TreeTail,
    /// The history the log records itself in: the highest epoch its accepted rollbacks name
    /// (0 if none).
    pub(crate) history: u64,
    /// Every stream's head at the log's length, in stream id order (for the heads map).
    pub(crate) heads: Vec<chronicle_tlog::heads::StreamHead>,
}

/// The event type of the ledger's record of an accepted rollback.
pub const ROLLBACK_ACCEPTED: &str = "ledger.rollback_accepted";

/// The epoch an accepted rollback's entry names (the history the log went on in).
pub(crate) fn rollback_epoch(e: &chronicle_core::Entry) -> Option<u64> {
    if e.statement.stream != StreamId::LEDGER || e.statement.event_type.as_str() != ROLLBACK_ACCEPTED {
        return None;
    }
    let payload = open_public(&e.statement.commitment, e.envelope()).ok()?;
    serde_json::from_slice::<serde_json::Value>(payload).ok()?["epoch"].as_u64()
}

/// Why the store cannot use what it found.
enum Problem {
    /// Derived state (what is wrong, naming the key space): rebuilt from the entries.
    Derived(String),
    /// The entries do not agree with the head record, or it is missing or does not authenticate.
    /// The head record is written in the same batch as the entries it counts, so this is a log
    /// changed outside the ledger (entries cut off or added), or a disk that lost writes: never
    /// repaired at a start, since a rebuild would bless whatever entries are there. An operator's
    /// `rebuild --store` accepts the log as it is, once every entry's signature checks.
    Head(String),
    /// The entries themselves, or sled: the store refuses to open.
    Fatal(OpenError),
}

fn derived(space: char, reason: impl Into<String>) -> Problem {
    Problem::Derived(format!("{} (key space {space})", reason.into()))
}

fn io(e: impl std::fmt::Display) -> Problem {
    Problem::Fatal(OpenError::Io(e.to_string()))
}

/// Checks what the store trusts at open; repairs derived state from the entries if it is damaged.
/// Returns what was established, and a report of the repair if there was one.
pub(crate) fn open_checked(
    db: &sled::Db,
    keys: &IntegrityKeys,
    vault: &Vault,
    operator_rebuild: bool,
) -> Result<(Opened, Option<String>), OpenError> {
    let (why, head) = match check(db, keys) {
        Ok(opened) if !operator_rebuild => return Ok((opened, None)),
        Ok(opened) => ("an operator asked for a rebuild from the entries".to_string(), Some(opened.record.head)),
        Err(Problem::Fatal(e)) => return Err(e),
        Err(Problem::Derived(why)) => {
            // The head record authenticated and names the last entry (checked first): the rebuild
            // must arrive at exactly it.
            let head = db
                .get(layout::HEAD_KEY)
                .ok()
                .flatten()
                .and_then(|v| HeadRecord::decode(&v, Some(keys)).ok())
                .map(|r| r.head);
            (why, head)
        }
        Err(Problem::Head(why)) if operator_rebuild => {
            // Nothing authenticated says how long the log is: every entry must check as `verify`
            // checks it (signatures against the registry as it stood, authors, stream rules)
            // before its derived state is made anew and authenticated.
            crate::verify::verify_entries(db).map_err(|f| {
                OpenError::Damaged(format!("{why}; the entries do not check either, so they are not rebuilt from: {f}"))
            })?;
            (format!("{why} (accepted by the operator: every entry checked)"), None)
        }
        Err(Problem::Head(why)) => {
            return Err(OpenError::Damaged(format!(
                "{why} (key space m): the log's entries do not agree with the head record the ledger \
                 wrote with them, so they were changed outside the ledger or the disk lost writes. \
                 Nothing is served. Run `chronicle verify`; restore the data directory from a copy, or \
                 accept the log as it is with `chronicle rebuild --store` (which checks every entry first)"
            )));
        }
    };
    let mut report = rebuild(db, keys, vault, &why, head)?;
    match check(db, keys) {
        Ok(opened) => {
            let removed = crate::checkpoint::remove_unverifiable(db, &opened.registry)
                .map_err(|e| OpenError::Io(e.to_string()))?;
            if removed > 0 {
                crate::db::flush_within(db, crate::db::FLUSH_LIMIT).map_err(OpenError::Io)?;
                report.push_str(&format!(
                    "; {removed} kept checkpoint(s) removed that were not the log key's signature for their size"
                ));
            }
            Ok((opened, Some(report)))
        }
        Err(Problem::Fatal(e)) => Err(e),
        Err(Problem::Derived(why) | Problem::Head(why)) => {
            Err(OpenError::Damaged(format!("derived state still damaged after a rebuild from the entries: {why}")))
        }
    }
}

fn check(db: &sled::Db, keys: &IntegrityKeys) -> Result<Opened, Problem> {
    // The head record first: a repair flag (which anyone with the disk can set) never gets a
    // rebuild past a log that disagrees with it.
    let head = |reason: String| Problem::Head(reason);
    let first_entry = db.scan_prefix([layout::ENTRY]).keys().next().transpose().map_err(io)?;
    let record = match db.get(layout::HEAD_KEY).map_err(io)? {
        Some(v) => HeadRecord::decode(&v, Some(keys)).map_err(|reason| head(format!("the head record: {reason}")))?,
        None if first_entry.is_some() => return Err(head("the head record is missing".into())),
        None => HeadRecord::EMPTY,
    };
    let len = record.head.len;
    if len > 0 {
        match read_entry(db, len - 1) {
            Ok(last) if last.hash() == record.head.last_hash => {}
            Ok(_) => return Err(head(format!("entry {} is not the last entry the head record names", len - 1))),
            Err(_) if db.get(layout::entry_key(len - 1)).map_err(io)?.is_none() => {
                return Err(head(format!("the head record says {len} entries, the log holds fewer")));
            }
            Err(e) => return Err(Problem::Fatal(OpenError::Damaged(e.to_string()))),
        }
    }
    let beyond = db.range(layout::entry_key(len)..).keys().next().transpose().map_err(io)?;
    if beyond.is_some_and(|k| k.first() == Some(&layout::ENTRY)) {
        return Err(head(format!("entries are stored beyond the head record's {len}")));
    }
    if let Some(why) = db.get(layout::REPAIR_KEY).map_err(io)? {
        return Err(Problem::Derived(format!("a reader found {}", String::from_utf8_lossy(&why))));
    }
    let registry_entries = system_stream(db, keys, &StreamId::REGISTRY, record.registry, len)?;
    let ledger_entries = system_stream(db, keys, &StreamId::LEDGER, record.ledger, len)?;
    let mut registry = Registry::new();
    for e in &registry_entries {
        let position = e.position();
        let bad = |what: String| Problem::Fatal(OpenError::Damaged(format!("registry entry {position}: {what}")));
        let payload = open_public(&e.statement.commitment, e.envelope()).map_err(|x| bad(x.to_string()))?;
        let ev = RegistryEvent::parse(&e.statement.event_type, payload).map_err(|x| bad(x.to_string()))?;
        registry.apply(position, &e.statement.author, &ev).map_err(|x| bad(x.to_string()))?;
    }
    let mut system = Vec::new();
    for (stream, entries) in [(StreamId::REGISTRY, &registry_entries), (StreamId::LEDGER, &ledger_entries)] {
        if let Some(last) = entries.last() {
            system.push((
                stream,
                StreamHead { version: last.header.stream_version, position: last.position(), hash: last.hash() },
            ));
        }
    }
    let heads = check_stream_heads(db, keys, &record, &system)?;
    // Cosignatures kept are recorded in the ledger's own stream: the `w` space must hold exactly
    // those (a handful per checkpoint, checked whole).
    let kept: BTreeMap<Vec<u8>, String> = ledger_entries.iter().filter_map(cosignature_kept).collect();
    check_cosignatures_kept(db, &kept).map_err(|reason| derived('w', reason))?;
    let tree = TreeTail::load(db, len, keys).map_err(|reason| derived('t', reason))?;
    let history = ledger_entries.iter().filter_map(rollback_epoch).max().unwrap_or(0);
    Ok(Opened { record, registry, system, tree, history, heads })
}

/// Checks the stream heads (`h`): each authenticates and lies below the head, the system streams'
/// are their last entries, and together they make the head record's digest, so that none was
/// deleted, added or put back to an older one. One read per stream with entries. Returns every
/// head, in stream id order.
fn check_stream_heads(
    db: &sled::Db,
    keys: &IntegrityKeys,
    record: &HeadRecord,
    system: &[(StreamId, StreamHead)],
) -> Result<Vec<chronicle_tlog::heads::StreamHead>, Problem> {
    // Each head's own MAC is not checked here: its share, a second keyed function of the same
    // fields, already makes any change to it change the digest (readers check the MAC of each
    // head they use). The cost is one sled read and one keyed hash per stream.
    let mut digest = [0u8; crate::auth::MAC_LEN];
    let mut found: HashMap<StreamId, StreamHead> = HashMap::new();
    let mut heads = Vec::new();
    for kv in db.scan_prefix([layout::STREAM_HEAD]) {
        let (k, v) = kv.map_err(io)?;
        let stream = layout::stream_head_stream(&k).ok_or_else(|| derived('h', "a malformed stream head key"))?;
        let h = StreamHead::decode(None, &stream, &v).map_err(|r| derived('h', format!("{r} ({stream})")))?;
        if h.position >= record.head.len {
            return Err(derived(
                'h',
                format!("the head of stream {stream} names position {}, beyond the log", h.position),
            ));
        }
        crate::auth::xor_into(&mut digest, &h.share(keys, &stream));
        heads.push(chronicle_tlog::heads::StreamHead { stream: stream.0, version: h.version, hash: h.hash.0 });
        if stream.is_system() {
            found.insert(stream, h);
        }
    }
    if !crate::auth::same(&record.heads, &digest) {
        return Err(derived(
            'h',
            "the stream heads are not the ones the head record counts (one deleted, added or older)",
        ));
    }
    for (stream, want) in system {
        if found.get(stream) != Some(want) {
            return Err(derived('h', format!("the head of stream {stream} is not its last entry")));
        }
    }
    Ok(heads)
}

/// Reads a system stream through its index and checks that the index holds exactly `count`
/// versions, from 0 with no gap, each naming its entry, each entry naming its predecessor.
fn system_stream(
    db: &sled::Db,
    keys: &IntegrityKeys,
    stream: &StreamId,
    count: u64,
    len: u64,
) -> Result<Vec<chronicle_core::Entry>, Problem> {
    let mut out: Vec<chronicle_core::Entry> = Vec::new();
    for kv in db.scan_prefix(layout::stream_prefix(stream)) {
        let (k, v) = kv.map_err(io)?;
        let version = layout::stream_key_version(&k).ok_or_else(|| derived('s', "a malformed stream index key"))?;
        let (position, hash) =
            layout::position_and_hash(&v).ok_or_else(|| derived('s', "a malformed stream index value"))?;
        let expected = out.len() as u64;
        if version != expected {
            return Err(derived('s', format!("the index of stream {stream} lacks version {expected}")));
        }
        if position >= len {
            return Err(derived(
                's',
                format!("the index of stream {stream} names position {position}, beyond the log"),
            ));
        }
        let e = read_entry(db, position).map_err(|e| Problem::Fatal(OpenError::Damaged(e.to_string())))?;
        check_indexed(&e, stream, version, &hash).map_err(|r| derived('s', r))?;
        let prev = out.last().map_or(Hash::ZERO, chronicle_core::Entry::hash);
        if e.header.prev_stream_hash != prev {
            return Err(Problem::Fatal(OpenError::Damaged(format!(
                "entry {position} does not name its predecessor in stream {stream}"
            ))));
        }
        out.push(e);
    }
    if out.len() as u64 != count {
        return Err(derived(
            's',
            format!("the index of stream {stream} holds {} versions, the head record says {count}", out.len()),
        ));
    }
    // Each entry is the one the authenticated tree holds at its position: the registry decides
    // whose signatures count, so an entry rewritten with its stored hash and index value (which
    // nothing else authenticates) must not be trusted.
    let changed = crate::tree::changed_entry(db, keys, &out).map_err(|_| {
        derived('t', format!("the tree's leaves of stream {stream} are missing or do not authenticate"))
    })?;
    if let Some(position) = changed {
        return Err(Problem::Fatal(OpenError::Damaged(format!(
            "entry {position} of stream {stream} is not the entry the tree holds at its position: it was changed \
             outside the ledger (run `chronicle verify`)"
        ))));
    }
    Ok(out)
}

/// The log's chains walked from the genesis entry: every position present, each entry naming the
/// one before it, and its stream's previous entry at the version before.
struct Chain {
    head: Head,
    streams: HashMap<StreamId, StreamHead>,
}

impl Default for Chain {
    fn default() -> Chain {
        Chain { head: Head::EMPTY, streams: HashMap::new() }
    }
}

impl Chain {
    /// Takes the next entry; returns its stream, version and hash.
    fn step(&mut self, position: u64, e: &chronicle_core::Entry) -> Result<(StreamId, u64, Hash), OpenError> {
        if position != self.head.len {
            return Err(OpenError::Damaged(format!("entry {} is missing", self.head.len)));
        }
        let damaged = |what: &str| OpenError::Damaged(format!("entry {position} {what}"));
        if e.header.prev_hash != self.head.last_hash {
            return Err(damaged("does not name the entry before it"));
        }
        let stream = e.statement.stream;
        let (version, prev) = match self.streams.get(&stream) {
            Some(h) => (h.version + 1, h.hash),
            None => (0, Hash::ZERO),
        };
        if e.header.stream_version != version || e.header.prev_stream_hash != prev {
            return Err(damaged("does not follow its stream's previous entry"));
        }
        let hash = e.hash();
        self.streams.insert(stream, StreamHead { version, position, hash });
        self.head = Head {
            len: position + 1,
            last_hash: hash,
            last_recorded: e.header.recorded_time.max(self.head.last_recorded),
        };
        Ok((stream, version, hash))
    }
}

/// Most keys removed or written in one batch while rebuilding.
const REBUILD_BATCH: usize = 4096;

/// Rebuilds the stream index, the idempotency records, the tree and the head record from the
/// entries, and drops stream key bindings that do not authenticate. The repair key is set first
/// and removed last (durably), so a crash in between repairs again at the next open.
fn rebuild(
    db: &sled::Db,
    keys: &IntegrityKeys,
    vault: &Vault,
    why: &str,
    expect: Option<Head>,
) -> Result<String, OpenError> {
    let io = |e: sled::Error| OpenError::Io(e.to_string());
    // The chain first, reading only: a log that does not hold together (or does not arrive at the
    // authenticated head) is refused with its derived state as it was, the authenticated tree
    // among it, which still says which entries are the originals.
    let mut walk = Chain::default();
    for kv in db.scan_prefix([layout::ENTRY]) {
        let (k, v) = kv.map_err(io)?;
        let position =
            layout::entry_key_position(&k).ok_or_else(|| OpenError::Damaged("a malformed entry key".into()))?;
        let (e, _) = decode_stored(position, &v).map_err(|e| OpenError::Damaged(e.to_string()))?;
        walk.step(position, &e)?;
    }
    if let Some(want) = expect
        && (want.len != walk.head.len || want.last_hash != walk.head.last_hash)
    {
        return Err(OpenError::Damaged(format!(
            "the entries reach {} entries, the head record authenticated {}: nothing was rebuilt",
            walk.head.len, want.len
        )));
    }
    db.insert(layout::REPAIR_KEY, why.as_bytes()).map_err(io)?;
    crate::db::flush_within(db, crate::db::FLUSH_LIMIT).map_err(OpenError::Io)?;
    for prefix in [layout::STREAM, layout::STREAM_HEAD, layout::IDEMPOTENCY, TREE, COSIGNATURE] {
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for k in db.scan_prefix([prefix]).keys().take(REBUILD_BATCH) {
                batch.remove(k.map_err(io)?);
                n += 1;
            }
            if n == 0 {
                break;
            }
            db.apply_batch(batch).map_err(io)?;
        }
    }
    let mut tree = TreeTail::load(db, 0, keys).map_err(OpenError::Damaged)?;
    let mut last_key: HashMap<StreamId, DataKeyId> = HashMap::new();
    let mut seen_idem: HashSet<[u8; 33]> = HashSet::new();
    let mut kept: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    let mut walk = Chain::default();
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    for kv in db.scan_prefix([layout::ENTRY]) {
        let (k, v) = kv.map_err(io)?;
        let position =
            layout::entry_key_position(&k).ok_or_else(|| OpenError::Damaged("a malformed entry key".into()))?;
        let (e, wrapped) = decode_stored(position, &v).map_err(|e| OpenError::Damaged(e.to_string()))?;
        let (stream, version, hash) = walk.step(position, &e)?;
        if let Some((k, line)) = cosignature_kept(&e) {
            kept.insert(k, line);
        }
        if let Some(id) = wrapped.and_then(Vault::wrapped_key_id) {
            last_key.insert(stream, id);
        }
        batch.insert(&layout::stream_key(&stream, version)[..], &layout::encode_position_and_hash(position, &hash)[..]);
        let (idem_key, rec) = idem_record_of(&e);
        // The first entry under a key is the one its record names (the writer never appends a second).
        if seen_idem.insert(idem_key) {
            batch.insert(&idem_key[..], &rec.encode()[..]);
        }
        tree.append(db, position, chronicle_tlog::tree::leaf_hash(e.bytes())).map_err(OpenError::Damaged)?;
        pending += 1;
        if pending >= REBUILD_BATCH {
            tree.write_into(&mut batch);
            db.apply_batch(std::mem::take(&mut batch)).map_err(io)?;
            pending = 0;
        }
    }
    let Chain { head, streams } = walk;
    tree.write_into(&mut batch);
    for (k, line) in &kept {
        batch.insert(&k[..], line.as_bytes());
    }
    db.apply_batch(batch).map_err(io)?;
    // Bindings: one that does not authenticate is dropped, or bound again to the key the stream's
    // last sealed entry is under if that key is live; one naming a destroyed key while that entry's
    // key is live is bound to it.
    let mut rebound = 0;
    let mut batch = sled::Batch::default();
    let mut bound_streams = HashSet::new();
    for kv in db.scan_prefix([layout::STREAM_DATA_KEY]) {
        let (k, v) = kv.map_err(io)?;
        let Some(stream) = layout::binding_stream(&k) else {
            batch.remove(k);
            rebound += 1;
            continue;
        };
        bound_streams.insert(stream);
        let bound = layout::decode_binding(Some(keys), &stream, &v).ok();
        let last_live = last_key.get(&stream).filter(|id| !vault.is_destroyed(id));
        match (bound, last_live) {
            (Some(id), _) if !vault.is_destroyed(&id) => continue,
            (Some(_), None) => continue,
            (_, Some(id)) => batch.insert(k, &layout::encode_binding(keys, &stream, id)[..]),
            (None, None) => batch.remove(k),
        }
        rebound += 1;
    }
    // A binding deleted while its stream's last sealed entry is under a live key: bound again to it
    // (else the stream's next append would start a second key, and `verify` would name the gap).
    for (stream, id) in &last_key {
        if !bound_streams.contains(stream) && !vault.is_destroyed(id) {
            batch.insert(&layout::stream_data_key(stream)[..], &layout::encode_binding(keys, stream, id)[..]);
            rebound += 1;
        }
    }
    db.apply_batch(batch).map_err(io)?;
    if let Some(want) = expect
        && (want.len != head.len || want.last_hash != head.last_hash)
    {
        // The checks before guarantee this; a rebuild never moves an authenticated head.
        return Err(OpenError::Damaged(format!(
            "the rebuild reached {} entries, the head record authenticated {}",
            head.len, want.len
        )));
    }
    let mut heads = [0u8; crate::auth::MAC_LEN];
    let mut batch = sled::Batch::default();
    for (n, (stream, h)) in streams.iter().enumerate() {
        crate::auth::xor_into(&mut heads, &h.share(keys, stream));
        batch.insert(&layout::stream_head_key(stream)[..], &h.encode(keys, stream)[..]);
        if (n + 1) % REBUILD_BATCH == 0 {
            db.apply_batch(std::mem::take(&mut batch)).map_err(io)?;
        }
    }
    db.apply_batch(batch).map_err(io)?;
    let count = |s: &StreamId| streams.get(s).map_or(0, |h| h.version + 1);
    let record = HeadRecord { head, registry: count(&StreamId::REGISTRY), ledger: count(&StreamId::LEDGER), heads };
    let mut batch = sled::Batch::default();
    batch.insert(layout::HEAD_KEY, &record.encode(keys)[..]);
    batch.remove(layout::REPAIR_KEY);
    db.apply_batch(batch).map_err(io)?;
    crate::db::flush_within(db, crate::db::FLUSH_LIMIT).map_err(OpenError::Io)?;
    Ok(format!(
        "derived state was damaged: {why}. Rebuilt from the {} entries of the log: the stream index and heads of {} streams, \
         the idempotency records, the Merkle tree and the head record; {rebound} stream key bindings re-made",
        head.len,
        streams.len()
    ))
}
