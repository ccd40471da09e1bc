//! Where things live in sled: one tree, keys namespaced by a one-byte prefix.
//!
//! Everything an append writes goes into the one default tree so that a group of appends is a
//! single `apply_batch`, which sled applies atomically: after a crash a group is wholly present
//! or wholly absent (I4). Keys never contain plaintext identifiers: stream ids are opaque, and
//! idempotency keys are stored hashed together with their author.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `e` | position (u64 BE) | entry length (u32 BE), entry bytes, entry hash (32), then for sealed entries the content key wrapped by the stream's data key (88) |
//! | `s` | stream id (16), stream version (u64 BE) | position (u64 BE), entry hash (32) |
//! | `i` | blake3(author, idempotency key) (32) | command digest (32), position (u64 BE), entry hash (32) |
//! | `c` | stream id (16) | the stream's current data key id (16), MAC (32) over stream and key id |
//! | `h` | stream id (16) | the stream's head: last version (u64 BE), its position (u64 BE) and entry hash (32), MAC (32) over stream and all three |
//! | `t` | chunk (u64 BE) | up to 64 Merkle stored hashes (see `tree`), MAC (32) over chunk number and hashes |
//! | `p` | tree size (u64 BE) | a signed checkpoint note |
//! | `w` | tree size (u64 BE), witness name | a cosignature line |
//! | `r` | generation (u64 BE), stream id (16) | the stream's sealed part of the records projection, over that generation's snapshot file (see `projection`) |
//! | `m` | `projection` | the log position the persisted projection reaches, its generation, and a MAC over both, the snapshot record and a digest of the overlay |
//! | `m` | `projection-snapshot` | the generation, length, part count and BLAKE3 of the snapshot file |
//! | `m` | `head` | next position (u64 BE), last entry hash (32), last recorded time (i64 BE), entries in the registry and in the ledger's own stream (u64 BE each), the XOR of every stream head's digest share (32), MAC (32) |
//! | `m` | `repair` | present while derived state found damaged waits to be rebuilt from the entries |
//! | `m` | `format` | the store format version (u8) |

use chronicle_core::{DataKeyId, Hash, PrincipalId, StreamId, Timestamp};

use crate::Appended;

use crate::auth::{self, IntegrityKeys, MAC_LEN};

/// Store layout version, written at creation and checked at open.
pub const STORE_FORMAT: u8 = 3;

pub(crate) const ENTRY: u8 = b'e';
pub(crate) const STREAM: u8 = b's';
pub(crate) const IDEMPOTENCY: u8 = b'i';
pub(crate) const STREAM_DATA_KEY: u8 = b'c';
pub(crate) const STREAM_HEAD: u8 = b'h';
pub(crate) const HEAD_KEY: &[u8] = b"mhead";
pub(crate) const REPAIR_KEY: &[u8] = b"mrepair";
pub(crate) const FORMAT_KEY: &[u8] = b"mformat";

pub(crate) fn entry_key(position: u64) -> [u8; 9] {
    let mut k = [ENTRY; 9];
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

pub(crate) fn stream_key(stream: &StreamId, version: u64) -> [u8; 25] {
    let mut k = [STREAM; 25];
    k[1..17].copy_from_slice(&stream.0);
    k[17..].copy_from_slice(&version.to_be_bytes());
    k
}

/// A key of one of the spaces keyed by stream id alone: prefix ‖ stream id.
fn stream_keyed(prefix: u8, stream: &StreamId) -> [u8; 17] {
    let mut k = [prefix; 17];
    k[1..].copy_from_slice(&stream.0);
    k
}

/// The stream a key of such a space names, if it is one of `prefix`.
fn keyed_stream(prefix: u8, k: &[u8]) -> Option<StreamId> {
    (k.len() == 17 && k[0] == prefix).then(|| StreamId(k[1..].try_into().unwrap_or_default()))
}

pub(crate) fn stream_data_key(stream: &StreamId) -> [u8; 17] {
    stream_keyed(STREAM_DATA_KEY, stream)
}

pub(crate) fn stream_head_key(stream: &StreamId) -> [u8; 17] {
    stream_keyed(STREAM_HEAD, stream)
}

/// The stream an `h` key names.
pub(crate) fn stream_head_stream(k: &[u8]) -> Option<StreamId> {
    keyed_stream(STREAM_HEAD, k)
}

/// A stream's head: its last version, where that entry is and what it hashes to. Kept under a
/// MAC in the `h` space, one per stream with entries, and counted by the head record (the XOR of
/// every head's MAC), so that no stream's tail can be hidden by deleting index keys: a reader
/// compares the index with the head, the open compares the heads with the head record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamHead {
    pub(crate) version: u64,
    pub(crate) position: u64,
    pub(crate) hash: Hash,
}

/// Length of a stored `h` value.
const STREAM_HEAD_LEN: usize = 48 + MAC_LEN;

impl StreamHead {
    pub(crate) fn mac(&self, keys: &IntegrityKeys, stream: &StreamId) -> [u8; MAC_LEN] {
        keys.stream_head(stream, self.version, self.position, &self.hash)
    }

    /// This head's share of the head record's digest (never stored).
    pub(crate) fn share(&self, keys: &IntegrityKeys, stream: &StreamId) -> [u8; MAC_LEN] {
        keys.stream_head_share(stream, self.version, self.position, &self.hash)
    }

    pub(crate) fn encode(&self, keys: &IntegrityKeys, stream: &StreamId) -> [u8; STREAM_HEAD_LEN] {
        let mut v = [0u8; STREAM_HEAD_LEN];
        v[..8].copy_from_slice(&self.version.to_be_bytes());
        v[8..16].copy_from_slice(&self.position.to_be_bytes());
        v[16..48].copy_from_slice(&self.hash.0);
        v[48..].copy_from_slice(&self.mac(keys, stream));
        v
    }

    /// Decodes an `h` value and checks its MAC (the check is skipped without keys).
    pub(crate) fn decode(
        keys: Option<&IntegrityKeys>,
        stream: &StreamId,
        v: &[u8],
    ) -> Result<StreamHead, &'static str> {
        if v.len() != STREAM_HEAD_LEN {
            return Err("a malformed stream head");
        }
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(v[r].try_into().unwrap_or_default());
        let h = StreamHead {
            version: u(0..8),
            position: u(8..16),
            hash: Hash(v[16..48].try_into().map_err(|_| "a malformed stream head")?),
        };
        if keys.is_some_and(|k| !auth::same(&h.mac(k, stream), &v[48..])) {
            return Err("a stream head that does not authenticate");
        }
        Ok(h)
    }
}

/// Encodes a `c` value: the data key id and its MAC, binding it to the stream.
pub(crate) fn encode_binding(keys: &IntegrityKeys, stream: &StreamId, id: &DataKeyId) -> [u8; 48] {
    let mut v = [0u8; 48];
    v[..16].copy_from_slice(&id.0);
    v[16..].copy_from_slice(&keys.binding(stream, id));
    v
}

/// Decodes a `c` value and checks its MAC (the check is skipped without keys).
pub(crate) fn decode_binding(
    keys: Option<&IntegrityKeys>,
    stream: &StreamId,
    v: &[u8],
) -> Result<DataKeyId, &'static str> {
    if v.len() != 48 {
        return Err("malformed stream key binding");
    }
    let id = DataKeyId(v[..16].try_into().map_err(|_| "malformed stream key binding")?);
    if keys.is_some_and(|k| !auth::same(&k.binding(stream, &id), &v[16..])) {
        return Err("stream key binding does not authenticate");
    }
    Ok(id)
}

/// The position an `e` key names.
pub(crate) fn entry_key_position(k: &[u8]) -> Option<u64> {
    (k.len() == 9 && k[0] == ENTRY).then(|| u64::from_be_bytes(k[1..].try_into().unwrap_or_default()))
}

/// The version an `s` key names.
pub(crate) fn stream_key_version(k: &[u8]) -> Option<u64> {
    (k.len() == 25 && k[0] == STREAM).then(|| u64::from_be_bytes(k[17..].try_into().unwrap_or_default()))
}

/// The stream a `c` key names.
pub(crate) fn binding_stream(k: &[u8]) -> Option<StreamId> {
    keyed_stream(STREAM_DATA_KEY, k)
}

pub(crate) fn stream_prefix(stream: &StreamId) -> [u8; 17] {
    stream_keyed(STREAM, stream)
}

/// The `i` key of an author's idempotency key (hashed: no key holds plaintext).
pub fn idempotency_key(author: &PrincipalId, key: &[u8]) -> [u8; 33] {
    let len = (author.as_str().len() as u64).to_be_bytes();
    let h = Hash::of(b"chronicle.idempotency.v1\n", &[&len, author.as_str().as_bytes(), key]);
    let mut k = [IDEMPOTENCY; 33];
    k[1..].copy_from_slice(&h.0);
    k
}

/// An `i` value: the command's digest and where it was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdemRecord {
    pub(crate) digest: Hash,
    pub(crate) appended: Appended,
}

impl IdemRecord {
    pub(crate) fn encode(&self) -> [u8; 80] {
        let mut v = [0u8; 80];
        v[..32].copy_from_slice(&self.digest.0);
        v[32..40].copy_from_slice(&self.appended.position.to_be_bytes());
        v[40..48].copy_from_slice(&self.appended.stream_version.to_be_bytes());
        v[48..80].copy_from_slice(&self.appended.hash.0);
        v
    }
    pub(crate) fn decode(v: &[u8]) -> Option<IdemRecord> {
        if v.len() != 80 {
            return None;
        }
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(v[r].try_into().unwrap_or([0; 8]));
        let mut d = [0u8; 32];
        d.copy_from_slice(&v[..32]);
        let mut h = [0u8; 32];
        h.copy_from_slice(&v[48..80]);
        Some(IdemRecord {
            digest: Hash(d),
            appended: Appended { position: u(32..40), stream_version: u(40..48), hash: Hash(h) },
        })
    }
}

/// A stored `e` value, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryValue<'a> {
    /// The entry bytes, exactly as hashed and signed.
    pub bytes: &'a [u8],
    /// The entry hash stored beside them (a claim: readers recompute and compare).
    pub hash: Hash,
    /// The wrapped content key of a sealed entry, with its MAC ([`STORED_WRAP_LEN`] bytes).
    pub wrapped_key: Option<&'a [u8]>,
}

/// A sealed entry's wrapped content key as stored beside it: the wrapping, then its MAC
/// ([`crate::IntegrityKeys`], over the position and the wrapping).
pub const STORED_WRAP_LEN: usize = chronicle_core::vault::WRAPPED_CONTENT_KEY_LEN + crate::auth::MAC_LEN;

/// Which entry a wrapping belongs to, as its MAC binds it: the position, the recorded time and the
/// statement's payload commitment. The three together tell apart the entries two histories put at
/// one position, even the same command retried after a rollback (recorded at another time).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WrapSite {
    pub(crate) position: u64,
    pub(crate) recorded: Timestamp,
    pub(crate) commitment: Hash,
}

impl WrapSite {
    pub(crate) fn of(e: &chronicle_core::Entry) -> WrapSite {
        WrapSite { position: e.position(), recorded: e.header.recorded_time, commitment: e.statement.commitment }
    }
}

/// A wrapping with its MAC, as stored beside the entry at `site`.
pub(crate) fn seal_wrap(keys: &crate::IntegrityKeys, site: &WrapSite, wrapped: &[u8]) -> Vec<u8> {
    let mut v = wrapped.to_vec();
    v.extend_from_slice(&keys.wrap(site, wrapped));
    v
}

/// The wrapping in a stored one, if its MAC authenticates it at this position (unchecked without
/// keys: `verify` with no master key).
pub(crate) fn open_wrap<'a>(
    keys: Option<&crate::IntegrityKeys>,
    site: &WrapSite,
    stored: &'a [u8],
) -> Option<&'a [u8]> {
    if stored.len() != STORED_WRAP_LEN {
        return None;
    }
    let (wrapped, m) = stored.split_at(chronicle_core::vault::WRAPPED_CONTENT_KEY_LEN);
    if keys.is_some_and(|k| !crate::auth::same(&k.wrap(site, wrapped), m)) {
        return None;
    }
    Some(wrapped)
}

/// Encodes an `e` value: entry length (u32 BE), entry bytes, entry hash, and for a sealed entry
/// its wrapped content key with the MAC after it ([`STORED_WRAP_LEN`] bytes).
pub fn encode_entry_value(bytes: &[u8], hash: &Hash, wrapped_key: Option<&[u8]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + bytes.len() + 32 + wrapped_key.map_or(0, <[u8]>::len));
    v.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    v.extend_from_slice(bytes);
    v.extend_from_slice(&hash.0);
    if let Some(w) = wrapped_key {
        v.extend_from_slice(w);
    }
    v
}

/// Splits an `e` value; `None` if it is malformed.
pub fn decode_entry_value(v: &[u8]) -> Option<EntryValue<'_>> {
    let len = u32::from_be_bytes(v.get(..4)?.try_into().ok()?) as usize;
    let bytes = v.get(4..4 + len)?;
    let hash = Hash(v.get(4 + len..4 + len + 32)?.try_into().ok()?);
    let rest = &v[4 + len + 32..];
    let wrapped_key = match rest.len() {
        0 => None,
        STORED_WRAP_LEN => Some(rest),
        _ => return None,
    };
    Some(EntryValue { bytes, hash, wrapped_key })
}

pub(crate) fn position_and_hash(v: &[u8]) -> Option<(u64, Hash)> {
    if v.len() != 40 {
        return None;
    }
    let mut p = [0u8; 8];
    p.copy_from_slice(&v[..8]);
    let mut h = [0u8; 32];
    h.copy_from_slice(&v[8..]);
    Some((u64::from_be_bytes(p), Hash(h)))
}

pub(crate) fn encode_position_and_hash(position: u64, hash: &Hash) -> [u8; 40] {
    let mut v = [0u8; 40];
    v[..8].copy_from_slice(&position.to_be_bytes());
    v[8..].copy_from_slice(&hash.0);
    v
}

/// The head record: how long the log is and what its last entry hashes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Number of entries (the next position).
    pub len: u64,
    /// Hash of the last entry (zero when empty).
    pub last_hash: Hash,
    /// Recorded time of the last entry.
    pub last_recorded: Timestamp,
}

impl Head {
    pub(crate) const EMPTY: Head = Head { len: 0, last_hash: Hash::ZERO, last_recorded: Timestamp(i64::MIN) };

    fn encode(&self) -> [u8; 48] {
        let mut v = [0u8; 48];
        v[..8].copy_from_slice(&self.len.to_be_bytes());
        v[8..40].copy_from_slice(&self.last_hash.0);
        v[40..].copy_from_slice(&self.last_recorded.0.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Head> {
        if v.len() != 48 {
            return None;
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&v[..8]);
        let mut h = [0u8; 32];
        h.copy_from_slice(&v[8..40]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&v[40..]);
        Some(Head { len: u64::from_be_bytes(n), last_hash: Hash(h), last_recorded: Timestamp(i64::from_be_bytes(t)) })
    }
}

/// The stored head record: the head, how many entries the two system streams hold (their
/// loaders check that they read exactly that many, so that no registry or ledger entry can be
/// left out by deleting its index key), and a MAC over it all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeadRecord {
    pub(crate) head: Head,
    /// Entries in the registry stream.
    pub(crate) registry: u64,
    /// Entries in the ledger's own stream.
    pub(crate) ledger: u64,
    /// The XOR of every stream head's share (`StreamHead::share`, a keyed function of the head
    /// stored nowhere): a stream head deleted, added or put back to an older one changes it, and
    /// an insider without the master key can neither predict a change nor combine several to
    /// cancel out.
    pub(crate) heads: [u8; MAC_LEN],
}

/// Length of a stored head record.
const HEAD_RECORD_LEN: usize = 48 + 16 + MAC_LEN + MAC_LEN;
const HEAD_BODY_LEN: usize = HEAD_RECORD_LEN - MAC_LEN;

impl HeadRecord {
    pub(crate) const EMPTY: HeadRecord = HeadRecord { head: Head::EMPTY, registry: 0, ledger: 0, heads: [0; MAC_LEN] };

    pub(crate) fn encode(&self, keys: &IntegrityKeys) -> [u8; HEAD_RECORD_LEN] {
        let mut v = [0u8; HEAD_RECORD_LEN];
        v[..48].copy_from_slice(&self.head.encode());
        v[48..56].copy_from_slice(&self.registry.to_be_bytes());
        v[56..64].copy_from_slice(&self.ledger.to_be_bytes());
        v[64..HEAD_BODY_LEN].copy_from_slice(&self.heads);
        let m = keys.head(&v[..HEAD_BODY_LEN]);
        v[HEAD_BODY_LEN..].copy_from_slice(&m);
        v
    }

    /// Decodes a stored head record and checks its MAC (the check is skipped without keys).
    pub(crate) fn decode(v: &[u8], keys: Option<&IntegrityKeys>) -> Result<HeadRecord, &'static str> {
        if v.len() != HEAD_RECORD_LEN {
            return Err("the head record is malformed");
        }
        if keys.is_some_and(|k| !auth::same(&k.head(&v[..HEAD_BODY_LEN]), &v[HEAD_BODY_LEN..])) {
            return Err("the head record does not authenticate");
        }
        let head = Head::decode(&v[..48]).ok_or("the head record is malformed")?;
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(v[r].try_into().unwrap_or_default());
        let heads = v[64..HEAD_BODY_LEN].try_into().map_err(|_| "the head record is malformed")?;
        Ok(HeadRecord { head, registry: u(48..56), ledger: u(56..64), heads })
    }
}
