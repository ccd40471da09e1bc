//! The Merkle tree's stored hashes in sled.
//!
//! Stored hashes (see `chronicle_tlog::tree`) are kept 64 to a sled value under `t` ‖ chunk
//! number, so a group of appends rewrites one or two small values instead of inserting two keys
//! per entry, and any proof reads at most `O(log n)` chunks. The writer keeps the chunks it is
//! filling in memory and writes the ones it touched into the group's atomic batch, so the tree
//! always covers exactly the entries that are in the log.

use std::collections::{BTreeMap, HashMap};

use chronicle_tlog::tree::{HashReader, TreeHash, hashes_to_store, stored_hash_count};
use tlog_tiles::tlog::Error as TlogError;

/// Stored hashes per sled value (the `t` prefix).
pub const CHUNK_HASHES: u64 = 64;
pub(crate) const TREE: u8 = b't';

pub(crate) fn chunk_key(chunk: u64) -> [u8; 9] {
    let mut k = [TREE; 9];
    k[1..].copy_from_slice(&chunk.to_be_bytes());
    k
}

fn decode_chunk(v: &[u8]) -> Option<Vec<TreeHash>> {
    if !v.len().is_multiple_of(32) || v.len() as u64 > CHUNK_HASHES * 32 {
        return None;
    }
    Some(v.chunks_exact(32).map(|c| TreeHash(c.try_into().unwrap_or([0; 32]))).collect())
}

fn read_from(
    db: &sled::Db,
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
            e.insert(decode_chunk(&v).ok_or(TlogError::IndexesNotInTree)?);
        }
        let h = chunks[&c].get((i % CHUNK_HASHES) as usize).copied().ok_or(TlogError::IndexesNotInTree)?;
        out.push(h);
    }
    Ok(out)
}

/// Reads committed stored hashes straight from sled (for roots and proofs).
pub struct SledTree<'a>(pub &'a sled::Db);

impl HashReader for SledTree<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, TlogError> {
        read_from(self.0, indexes, |_| None)
    }
}

/// The writer's end of the tree: the chunks being filled, and those touched since the last group.
pub struct TreeTail {
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
        read_from(self.db, indexes, |i| {
            self.tail.open.get(&(i / CHUNK_HASHES)).and_then(|c| c.get((i % CHUNK_HASHES) as usize)).copied()
        })
    }
}

impl TreeTail {
    /// The tail of a tree over `len` entries.
    pub fn load(db: &sled::Db, len: u64) -> Result<TreeTail, String> {
        let count = stored_hash_count(len);
        let mut open = BTreeMap::new();
        let last = count / CHUNK_HASHES;
        if !count.is_multiple_of(CHUNK_HASHES) {
            let v = db.get(chunk_key(last)).map_err(|e| e.to_string())?.ok_or("tree chunk missing")?;
            let c = decode_chunk(&v).ok_or("tree chunk malformed")?;
            if c.len() as u64 != count % CHUNK_HASHES {
                return Err(format!(
                    "tree chunk {last} holds {} hashes, the log needs {}",
                    c.len(),
                    count % CHUNK_HASHES
                ));
            }
            open.insert(last, c);
        }
        Ok(TreeTail { count, open, dirty: Vec::new() })
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
                let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
                batch.insert(&chunk_key(c)[..], bytes);
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
        let mut tail = TreeTail::load(&db, 0).unwrap();
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
                    tail = TreeTail::load(&db, i + 1).unwrap();
                }
            }
        }
        let mut b = sled::Batch::default();
        tail.write_into(&mut b);
        db.apply_batch(b).unwrap();
        for size in [1u64, 2, 3, 64, 65, 255, 300] {
            assert_eq!(root(size, &SledTree(&db)).unwrap(), root(size, &mem).unwrap());
            assert_eq!(
                inclusion_proof(size / 2, size, &SledTree(&db)).unwrap(),
                inclusion_proof(size / 2, size, &mem).unwrap()
            );
        }
    }
}
