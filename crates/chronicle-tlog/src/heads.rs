//! The heads map: every stream's head (last version and last entry hash) at one log size, as an
//! RFC 6962 Merkle tree over the heads sorted by stream id, so that one root commits to where each
//! stream ended, and an `O(log n)` proof shows one stream's head (nothing left out at its end) or
//! that a stream had no entries at all (its two neighbours, adjacent in the tree).
//!
//! Leaf data: `stream id (16) ‖ last version (u64 BE) ‖ last entry hash (32)`, 56 bytes, hashed as
//! any RFC 6962 leaf (`SHA-256(0x00 ‖ data)`); leaves in strictly increasing stream id order. The
//! map of no stream has the empty tree's root.

use serde::{Deserialize, Serialize};

use crate::proof::{decode_hashes, encode_hashes};
use crate::tree::{EMPTY_HASH, MemoryTree, TreeError, TreeHash, inclusion_proof, leaf_hash, root, verify_inclusion};

/// Length of a leaf's data.
pub const HEAD_LEAF_LEN: usize = 56;

/// One stream's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamHead {
    /// The stream id.
    pub stream: [u8; 16],
    /// Its last version at the map's size.
    pub version: u64,
    /// The hash of its entry at that version.
    pub hash: [u8; 32],
}

impl StreamHead {
    /// The leaf data.
    pub fn leaf_data(&self) -> [u8; HEAD_LEAF_LEN] {
        let mut d = [0u8; HEAD_LEAF_LEN];
        d[..16].copy_from_slice(&self.stream);
        d[16..24].copy_from_slice(&self.version.to_be_bytes());
        d[24..].copy_from_slice(&self.hash);
        d
    }
}

/// The heads map cannot be built, or a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadsError {
    /// The heads are not in strictly increasing stream id order.
    #[error("heads out of order at index {0}")]
    OutOfOrder(usize),
    /// The proof is malformed or does not verify against the root.
    #[error("the heads proof does not verify: {0}")]
    Invalid(String),
}

impl From<TreeError> for HeadsError {
    fn from(e: TreeError) -> Self {
        HeadsError::Invalid(e.to_string())
    }
}

/// A head with its place in the map and its inclusion proof.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeadProof {
    /// Index of the head in the map (its rank by stream id).
    pub index: u64,
    /// The stream id, hex.
    pub stream: String,
    /// Its last version.
    pub version: u64,
    /// Its last entry's hash, hex.
    pub hash: String,
    /// The inclusion proof's hashes, base64.
    pub path: Vec<String>,
}

/// Proof that a stream has no head in the map: the heads just below and just above its id (one
/// of them absent at either end of the map), adjacent in it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AbsenceProof {
    /// The head just below, if any.
    pub below: Option<HeadProof>,
    /// The head just above, if any.
    pub above: Option<HeadProof>,
}

/// The heads of every stream at one log size.
pub struct HeadsMap {
    heads: Vec<StreamHead>,
    tree: MemoryTree,
}

impl HeadsMap {
    /// The map of these heads, which must be in strictly increasing stream id order.
    pub fn new(heads: Vec<StreamHead>) -> Result<HeadsMap, HeadsError> {
        if let Some(i) = heads.windows(2).position(|w| w[0].stream >= w[1].stream) {
            return Err(HeadsError::OutOfOrder(i + 1));
        }
        let mut tree = MemoryTree::new();
        for h in &heads {
            tree.push(&h.leaf_data());
        }
        Ok(HeadsMap { heads, tree })
    }

    /// How many streams.
    pub fn len(&self) -> u64 {
        self.heads.len() as u64
    }

    /// Whether no stream has a head.
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// The map's root.
    pub fn root(&self) -> TreeHash {
        root(self.len(), &self.tree).unwrap_or(EMPTY_HASH)
    }

    fn proof_at(&self, index: usize) -> Result<HeadProof, HeadsError> {
        let h = &self.heads[index];
        let path = inclusion_proof(index as u64, self.len(), &self.tree)?;
        Ok(HeadProof {
            index: index as u64,
            stream: hex(&h.stream),
            version: h.version,
            hash: hex(&h.hash),
            path: encode_hashes(&path),
        })
    }

    /// The proof of a stream's head, or `None` if it has none (see [`HeadsMap::prove_absent`]).
    pub fn prove(&self, stream: &[u8; 16]) -> Result<Option<HeadProof>, HeadsError> {
        match self.heads.binary_search_by(|h| h.stream.cmp(stream)) {
            Ok(i) => self.proof_at(i).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The proof that a stream has no head, or `None` if it has one.
    pub fn prove_absent(&self, stream: &[u8; 16]) -> Result<Option<AbsenceProof>, HeadsError> {
        match self.heads.binary_search_by(|h| h.stream.cmp(stream)) {
            Ok(_) => Ok(None),
            Err(i) => Ok(Some(AbsenceProof {
                below: i.checked_sub(1).map(|b| self.proof_at(b)).transpose()?,
                above: (i < self.heads.len()).then(|| self.proof_at(i)).transpose()?,
            })),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(field: &str, s: &str) -> Result<[u8; N], HeadsError> {
    let bad = || HeadsError::Invalid(format!("{field} is not {N} bytes of hex"));
    if s.len() != 2 * N || !s.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

impl HeadProof {
    /// Checks the proof against a map's root and size; returns the head it proves.
    pub fn verify(&self, root: TreeHash, count: u64) -> Result<StreamHead, HeadsError> {
        let head = StreamHead {
            stream: unhex::<16>("stream", &self.stream)?,
            version: self.version,
            hash: unhex::<32>("hash", &self.hash)?,
        };
        let path = decode_hashes("path", &self.path).map_err(|e| HeadsError::Invalid(e.to_string()))?;
        verify_inclusion(leaf_hash(&head.leaf_data()), self.index, count, &path, root)?;
        Ok(head)
    }
}

impl AbsenceProof {
    /// Checks that `stream` has no head in the map of `count` heads with this root: the heads
    /// proven are adjacent in the map (or at its ends) and their ids enclose `stream`.
    pub fn verify(&self, root: TreeHash, count: u64, stream: &[u8; 16]) -> Result<(), HeadsError> {
        let bad = |why: &str| Err(HeadsError::Invalid(why.into()));
        let below = self.below.as_ref().map(|p| p.verify(root, count).map(|h| (p.index, h))).transpose()?;
        let above = self.above.as_ref().map(|p| p.verify(root, count).map(|h| (p.index, h))).transpose()?;
        match (below, above) {
            (None, None) if count == 0 => Ok(()),
            (None, None) => bad("a map with heads needs a neighbour"),
            (None, Some((i, a))) if i == 0 && a.stream > *stream => Ok(()),
            (Some((i, b)), None) if i + 1 == count && b.stream < *stream => Ok(()),
            (Some((i, b)), Some((j, a))) if j == i + 1 && b.stream < *stream && *stream < a.stream => Ok(()),
            _ => bad("the neighbours are not adjacent around the stream"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(n: u8, version: u64) -> StreamHead {
        StreamHead { stream: [n; 16], version, hash: [n.wrapping_mul(7); 32] }
    }

    #[test]
    fn known_answers() {
        // The empty map, one head, and three, computed with Python's hashlib from the RFC 6962
        // definitions (leaf SHA-256(0x00 ‖ data), node SHA-256(0x01 ‖ left ‖ right)).
        let empty = HeadsMap::new(vec![]).unwrap();
        assert_eq!(hex(&empty.root().0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let one = HeadsMap::new(vec![head(1, 0)]).unwrap();
        assert_eq!(hex(&one.root().0), "45ec141b8be8a5ef4881339e90d5edb9cf4e129fce2ca8e1c761e47f288eda8a");
        let three = HeadsMap::new(vec![head(1, 0), head(2, 5), head(9, 1)]).unwrap();
        assert_eq!(hex(&three.root().0), "b8dc4a983c0f04c8f445fc47394ebc30d3a61640729560527cd97df30e656360");
        assert_eq!(hex(&head(2, 5).leaf_data()[..24]), "020202020202020202020202020202020000000000000005");
    }

    #[test]
    fn known_answer_by_hand() {
        use sha2::{Digest, Sha256};
        let node = |l: &[u8], r: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(l);
            h.update(r);
            h.finalize().into()
        };
        let leaf = |d: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(d);
            h.finalize().into()
        };
        let heads = vec![head(1, 0), head(2, 5), head(9, 1)];
        let l: Vec<[u8; 32]> = heads.iter().map(|h| leaf(&h.leaf_data())).collect();
        // RFC 6962: MTH of three leaves is node(node(l0, l1), l2).
        let want = node(&node(&l[0], &l[1]), &l[2]);
        assert_eq!(HeadsMap::new(heads).unwrap().root().0, want);
    }

    #[test]
    fn every_head_proves_and_nothing_else_does() {
        let heads: Vec<StreamHead> = (1..=20u8).map(|n| head(n * 3, u64::from(n))).collect();
        let map = HeadsMap::new(heads.clone()).unwrap();
        let (root, count) = (map.root(), map.len());
        for h in &heads {
            let p = map.prove(&h.stream).unwrap().unwrap();
            assert_eq!(p.verify(root, count).unwrap(), *h);
            // A head claimed shorter (a version left out at the end) does not verify.
            let mut shorter = p.clone();
            shorter.version -= 1;
            assert!(shorter.verify(root, count).is_err());
            // Nor against another map's root, or with a hash of the path changed. (The map's size
            // is not proven by the path, as in any RFC 6962 tree: it comes signed with the root.)
            let other = HeadsMap::new(heads[1..].to_vec()).unwrap();
            assert!(p.verify(other.root(), other.len()).is_err());
            if let Some(first) = p.path.first() {
                let mut changed = p.clone();
                changed.path[0] =
                    if first.starts_with('A') { first.replacen('A', "B", 1) } else { "A".to_string() + &first[1..] };
                assert!(changed.verify(root, count).is_err());
            }
            assert!(map.prove_absent(&h.stream).unwrap().is_none());
        }
        // Absent streams: below all, between two, above all.
        for s in [[0u8; 16], [4u8; 16], [61u8; 16]] {
            let a = map.prove_absent(&s).unwrap().unwrap();
            a.verify(root, count, &s).unwrap();
            // The same neighbours do not prove a stream that is present absent.
            assert!(a.verify(root, count, &[3u8; 16]).is_err());
        }
        // Neighbours that are not adjacent prove nothing.
        let skip = AbsenceProof { below: map.prove(&[3u8; 16]).unwrap(), above: map.prove(&[9u8; 16]).unwrap() };
        assert!(skip.verify(root, count, &[4u8; 16]).is_err());
        let empty = HeadsMap::new(vec![]).unwrap();
        empty.prove_absent(&[1; 16]).unwrap().unwrap().verify(empty.root(), 0, &[1; 16]).unwrap();
    }

    #[test]
    fn heads_must_be_sorted_and_unique() {
        assert_eq!(HeadsMap::new(vec![head(2, 0), head(1, 0)]).err(), Some(HeadsError::OutOfOrder(1)));
        assert_eq!(HeadsMap::new(vec![head(2, 0), head(2, 1)]).err(), Some(HeadsError::OutOfOrder(1)));
    }
}
