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
//! | `c` | stream id (16) | the stream's current data key id (16) |
//! | `t` | chunk (u64 BE) | 64 Merkle stored hashes (see `tree`) |
//! | `p` | tree size (u64 BE) | a signed checkpoint note |
//! | `w` | tree size (u64 BE), witness name | a cosignature line |
//! | `r` | generation (u64 BE), stream id (16) | the stream's sealed part of the records projection, over that generation's snapshot file (see `projection`) |
//! | `m` | `projection` | the log position the persisted projection reaches, and its generation |
//! | `m` | `projection-snapshot` | the generation, length, part count and BLAKE3 of the snapshot file |
//! | `m` | `head` | next position (u64 BE), last entry hash (32), last recorded time (i64 BE) |
//! | `m` | `format` | the store format version (u8) |

use chronicle_core::{Hash, PrincipalId, StreamId, Timestamp};

/// Store layout version, written at creation and checked at open.
pub const STORE_FORMAT: u8 = 1;

pub(crate) const ENTRY: u8 = b'e';
pub(crate) const STREAM: u8 = b's';
pub(crate) const IDEMPOTENCY: u8 = b'i';
pub(crate) const STREAM_DATA_KEY: u8 = b'c';
pub(crate) const HEAD_KEY: &[u8] = b"mhead";
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

pub(crate) fn stream_data_key(stream: &StreamId) -> [u8; 17] {
    let mut k = [STREAM_DATA_KEY; 17];
    k[1..].copy_from_slice(&stream.0);
    k
}

pub(crate) fn stream_prefix(stream: &StreamId) -> [u8; 17] {
    let mut k = [STREAM; 17];
    k[1..].copy_from_slice(&stream.0);
    k
}

pub(crate) fn idempotency_key(author: &PrincipalId, key: &[u8]) -> [u8; 33] {
    let len = (author.as_str().len() as u64).to_be_bytes();
    let h = Hash::of(b"chronicle.idempotency.v1\n", &[&len, author.as_str().as_bytes(), key]);
    let mut k = [IDEMPOTENCY; 33];
    k[1..].copy_from_slice(&h.0);
    k
}

/// A stored `e` value, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryValue<'a> {
    /// The entry bytes, exactly as hashed and signed.
    pub bytes: &'a [u8],
    /// The entry hash stored beside them (a claim: readers recompute and compare).
    pub hash: Hash,
    /// The wrapped content key of a sealed entry.
    pub wrapped_key: Option<&'a [u8]>,
}

/// Encodes an `e` value: entry length (u32 BE), entry bytes, entry hash, wrapped content key.
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
        chronicle_core::vault::WRAPPED_CONTENT_KEY_LEN => Some(rest),
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

    pub(crate) fn encode(&self) -> [u8; 48] {
        let mut v = [0u8; 48];
        v[..8].copy_from_slice(&self.len.to_be_bytes());
        v[8..40].copy_from_slice(&self.last_hash.0);
        v[40..].copy_from_slice(&self.last_recorded.0.to_be_bytes());
        v
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Head> {
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
