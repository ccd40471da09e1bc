//! The Merkle tree's stored hashes in sled.
//!
//! Stored hashes (see `chronicle_tlog::tree`) are kept 64 to a sled value under `t` ‖ chunk
//! number, so a group of appends rewrites one or two small values instead of inserting two keys
//! per entry, and any proof reads at most `O(log n)` chunks. The writer keeps the chunks it is
//! filling in memory and writes the ones it touched into the group's atomic batch, so the tree
//! always covers exactly the entries that are in the log.
//!
//! Each chunk carries a MAC over its number and hashes ([`IntegrityKeys::chunk`]): a flipped,
//! swapped or forged hash is refused when read, so no root or proof is ever computed from one.
//! A chunk replaced by an earlier state of itself holds fewer hashes than the log needs, and a
//! read of a hash it lacks fails the same way.

use std::collections::{BTreeMap, HashMap};

use chronicle_tlog::tree::{HashReader, TreeHash, hashes_to_store, stored_hash_count};
use tlog_tiles::tlog::Error as TlogError;

use crate::auth::{self, IntegrityKeys, MAC_LEN};

/// Stored hashes per sled value (the `t` prefix).
pub const CHUNK_HASHES: u64 = 64;
pub(crate) const TREE: u8 = b't';

pub(crate) fn chunk_key(chunk: u64) -> [u8; 9] {
    let mut k = [TREE; 9];
    k[1..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// Encodes a chunk: its hashes, then their MAC.
pub(crate) fn encode_chunk(keys: &IntegrityKeys, chunk: u64, hashes: &[TreeHash]) -> Vec<u8> {
    let mut v: Vec<u8> = Vec::with_capacity(hashes.len() * 32 + MAC_LEN);
    v.extend(hashes.iter().flat_map(|h| h.0));
    let m = keys.chunk(chunk, &v);
    v.extend_from_slice(&m);
    v
}

/// Decodes a stored chunk and checks its MAC (skipped without keys): `None` if it is malformed
/// or does not authenticate.
pub(crate) fn decode_chunk(keys: Option<&IntegrityKeys>, chunk: u64, v: &[u8]) -> Option<Vec<TreeHash>> {
    let (hashes, m) = v.split_at_checked(v.len().checked_sub(MAC_LEN)?)?;
    if !hashes.len().is_multiple_of(32) || hashes.len() as u64 > CHUNK_HASHES * 32 {
        return None;
    }
    if keys.is_some_and(|k| !auth::same(&k.chunk(chunk, hashes), m)) {
        return None;
    }
    Some(hashes.chunks_exact(32).map(|c| TreeHash(c.try_into().unwrap_or([0; 32]))).collect())
}

fn read_from(
    db: &sled::Db,
    keys: Option<&IntegrityKeys>,
    indexes: &[u64],
    cached: impl Fn(u64) -> Option<TreeHash>,
) -> Result<Vec<TreeHash>, TlogError> {
    let mut chunks: HashMap<u64, Vec<TreeHash>> = HashMap::new();
    let mut out = Vec::with_capacity(indexes.len());
    for &i in indexes {
        if let Some(h) = cached(i) {
            out.push(h);
            continue;
        }
        let c = i / CHUNK_HASHES;
        if let std::collections::hash_map::Entry::Vacant(e) = chunks.entry(c) {
            let v =
                db.get(chunk_key(c)).map_err(|_| TlogError::IndexesNotInTree)?.ok_or(TlogError::IndexesNotInTree)?;
            e.insert(decode_chunk(keys, c, &v).ok_or(TlogError::IndexesNotInTree)?);
        }
        let h = chunks[&c].get((i % CHUNK_HASHES) as usize).copied().ok_or(TlogError::IndexesNotInTree)?;
        out.push(h);
    }
    Ok(out)
}

/// The first of these entries that is not the one the authenticated tree holds at its position
/// (`None`: each is); an error if their leaves are missing or a chunk does not authenticate.
pub(crate) fn changed_entry<'e>(
    db: &sled::Db,
    keys: &IntegrityKeys,
    entries: impl IntoIterator<Item = &'e chronicle_core::Entry> + Clone,
) -> Result<Option<u64>, TlogError> {
    let indexes: Vec<u64> =
        entries.clone().into_iter().map(|e| chronicle_tlog::tree::stored_hash_index(0, e.position())).collect();
    let leaves = read_from(db, Some(keys), &indexes, |_| None)?;
    Ok(entries
        .into_iter()
        .zip(leaves)
        .find(|(e, leaf)| chronicle_tlog::tree::leaf_hash(e.bytes()) != *leaf)
        .map(|(e, _)| e.position()))
}

/// Reads committed stored hashes straight from sled (for roots and proofs), each chunk checked
/// against its MAC (unless no keys are given: `verify` without the master key, which compares
/// every stored hash with one it computed itself).
pub struct SledTree<'a> {
    db: &'a sled::Db,
    keys: Option<&'a IntegrityKeys>,
}

impl<'a> SledTree<'a> {
    /// A reader of the tree in `db`.
    pub fn new(db: &'a sled::Db, keys: Option<&'a IntegrityKeys>) -> SledTree<'a> {
        SledTree { db, keys }
    }
}

impl HashReader for SledTree<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, TlogError> {
        read_from(self.db, self.keys, indexes, |_| None)
    }
}

/// The writer's end of the tree: the chunks being filled, and those touched since the last group.
pub struct TreeTail {
    keys: IntegrityKeys,
    count: u64,
    open: BTreeMap<u64, Vec<TreeHash>>,
    dirty: Vec<u64>,
}

struct TailReader<'a> {
    tail: &'a TreeTail,
    db: &'a sled::Db,
}

impl HashReader for TailReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, TlogError> {
        read_from(self.db, Some(&self.tail.keys), indexes, |i| {
            self.tail.open.get(&(i / CHUNK_HASHES)).and_then(|c| c.get((i % CHUNK_HASHES) as usize)).copied()
        })
    }
}

impl TreeTail {
    /// The tail of a tree over `len` entries.
    pub fn load(db: &sled::Db, len: u64, keys: &IntegrityKeys) -> Result<TreeTail, String> {
        let count = stored_hash_count(len);
        let mut open = BTreeMap::new();
        let last = count / CHUNK_HASHES;
        if !count.is_multiple_of(CHUNK_HASHES) {
            let v = db.get(chunk_key(last)).map_err(|e| e.to_string())?.ok_or("tree chunk missing")?;
            let c = decode_chunk(Some(keys), last, &v)
                .ok_or("the tree's last chunk is malformed or does not authenticate")?;
            if c.len() as u64 != count % CHUNK_HASHES {
                return Err(format!(
                    "tree chunk {last} holds {} hashes, the log needs {}",
                    c.len(),
                    count % CHUNK_HASHES
                ));
            }
            open.insert(last, c);
        }
        Ok(TreeTail { keys: keys.clone(), count, open, dirty: Vec::new() })
    }

    /// Adds leaf `index` (which must be the next one).
    pub fn append(&mut self, db: &sled::Db, index: u64, leaf: TreeHash) -> Result<(), String> {
        let new = hashes_to_store(index, leaf, &TailReader { tail: self, db }).map_err(|e| e.to_string())?;
        for h in new {
            let c = self.count / CHUNK_HASHES;
            self.open.entry(c).or_default().push(h);
            if self.dirty.last() != Some(&c) {
                self.dirty.push(c);
            }
            self.count += 1;
        }
        Ok(())
    }

    /// Writes every chunk touched since the last call into the batch, and forgets full chunks.
    pub fn write_into(&mut self, batch: &mut sled::Batch) {
        for c in self.dirty.drain(..) {
            if let Some(hashes) = self.open.get(&c) {
                batch.insert(&chunk_key(c)[..], encode_chunk(&self.keys, c, hashes));
            }
        }
        let current = self.count / CHUNK_HASHES;
        self.open.retain(|c, _| *c >= current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronicle_tlog::MemoryTree;
    use chronicle_tlog::tree::{inclusion_proof, leaf_hash, root};

    #[test]
    fn tail_in_sled_matches_a_memory_tree() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let keys = IntegrityKeys::from_master(&chronicle_core::MasterKey::generate(), 0);
        let mut tail = TreeTail::load(&db, 0, &keys).unwrap();
        let mut mem = MemoryTree::new();
        for i in 0..300u64 {
            let leaf = leaf_hash(format!("e{i}").as_bytes());
            tail.append(&db, i, leaf).unwrap();
            mem.push_leaf(leaf);
            if i % 7 == 3 {
                let mut b = sled::Batch::default();
                tail.write_into(&mut b);
                db.apply_batch(b).unwrap();
                if i % 2 == 0 {
                    tail = TreeTail::load(&db, i + 1, &keys).unwrap();
                }
            }
        }
        let mut b = sled::Batch::default();
        tail.write_into(&mut b);
        db.apply_batch(b).unwrap();
        for size in [1u64, 2, 3, 64, 65, 255, 300] {
            let tree = SledTree::new(&db, Some(&keys));
            assert_eq!(root(size, &tree).unwrap(), root(size, &mem).unwrap());
            assert_eq!(inclusion_proof(size / 2, size, &tree).unwrap(), inclusion_proof(size / 2, size, &mem).unwrap());
        }
    }

    #[test]
    fn a_chunk_that_was_altered_moved_or_cut_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let keys = IntegrityKeys::from_master(&chronicle_core::MasterKey::generate(), 0);
        let mut tail = TreeTail::load(&db, 0, &keys).unwrap();
        for i in 0..200u64 {
            tail.append(&db, i, leaf_hash(&i.to_be_bytes())).unwrap();
        }
        let mut b = sled::Batch::default();
        tail.write_into(&mut b);
        db.apply_batch(b).unwrap();
        let tree = SledTree::new(&db, Some(&keys));
        // The proof of leaf 1 reads leaf 0's hash, in chunk 0.
        let good = inclusion_proof(1, 200, &tree).unwrap();
        let v0 = db.get(chunk_key(0)).unwrap().unwrap();
        let v1 = db.get(chunk_key(1)).unwrap().unwrap();
        // A flipped hash.
        let mut bad = v0.to_vec();
        bad[5] ^= 1;
        db.insert(chunk_key(0), bad).unwrap();
        assert!(inclusion_proof(1, 200, &tree).is_err());
        // A chunk stored under another number.
        db.insert(chunk_key(0), v1.clone()).unwrap();
        assert!(inclusion_proof(1, 200, &tree).is_err());
        // A chunk cut short (the last hash and the MAC recomputed by someone without the key).
        db.insert(chunk_key(0), v0.clone()).unwrap();
        assert_eq!(inclusion_proof(1, 200, &tree).unwrap(), good);
        let mut cut = v0[..v0.len() - 64].to_vec();
        cut.extend_from_slice(&[0; 32]);
        db.insert(chunk_key(0), cut).unwrap();
        assert!(inclusion_proof(1, 200, &tree).is_err());
        // The same chunk written under another master key.
        let other = IntegrityKeys::from_master(&chronicle_core::MasterKey::generate(), 0);
        let hashes = decode_chunk(None, 0, &v0).unwrap();
        db.insert(chunk_key(0), encode_chunk(&other, 0, &hashes)).unwrap();
        assert!(inclusion_proof(1, 200, &tree).is_err());
        assert!(TreeTail::load(&db, 200, &other).is_err(), "the open chunk is checked when the tail loads");
    }
}
