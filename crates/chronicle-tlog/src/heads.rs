//! The heads map: every stream's head (last version and last entry hash) at one log size, as a
//! compact sparse Merkle tree keyed by stream id, so that one root commits to where each stream
//! ended, and an `O(log n)` proof shows one stream's head (nothing left out at its end) or that a
//! stream had no entries at all. A stream that moves changes only the hashes on its path, so the
//! map can be kept up to date per stream moved rather than rebuilt for each commitment.
//!
//! The tree is the binary trie of the 128-bit stream ids (bit 0 is the most significant bit of the
//! id's first byte), with every subtree that holds one stream collapsed into that stream's leaf:
//!
//! - a subtree with no stream hashes to 32 zero bytes (`EMPTY`);
//! - a subtree with one stream hashes to its leaf hash,
//!   `SHA-256(0x00 ‖ stream id (16) ‖ last version (u64 BE) ‖ last entry hash (32))`;
//! - any other subtree hashes to `SHA-256(0x01 ‖ left ‖ right)`, its halves by the next bit.
//!
//! The root is the whole tree's hash. A stream's proof is the sibling hashes from the root down
//! to its leaf; a stream's absence is proven the same way down to an empty subtree or to the leaf
//! of another stream that shares the path so far (if the stream were there, that subtree would
//! hold two streams and would not be a single leaf).

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Length of a leaf's data.
pub const HEAD_LEAF_LEN: usize = 56;
/// The hash of a subtree with no stream.
pub const EMPTY: [u8; 32] = [0; 32];
/// Longest path: one sibling per bit of a stream id.
pub const PATH_MAX: usize = 128;

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

    /// The leaf hash.
    pub fn leaf_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(self.leaf_data());
        h.finalize().into()
    }
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Bit `i` of a stream id, most significant first.
fn bit(id: &[u8; 16], i: usize) -> bool {
    id[i / 8] >> (7 - i % 8) & 1 == 1
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

/// A stream's head with the sibling hashes from the root down to its leaf.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeadProof {
    /// The stream id, hex.
    pub stream: String,
    /// Its last version.
    pub version: u64,
    /// Its last entry's hash, hex.
    pub hash: String,
    /// The sibling hashes from the root down, hex (at most [`PATH_MAX`]).
    pub path: Vec<String>,
}

/// Proof that a stream has no head: the sibling hashes from the root down along its id to an
/// empty subtree, or to the single leaf of another stream there.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AbsenceProof {
    /// The sibling hashes from the root down, hex.
    pub path: Vec<String>,
    /// The other stream whose leaf ends the path, if it does not end in an empty subtree.
    pub other: Option<HeadProofLeaf>,
}

/// A leaf named in an absence proof.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeadProofLeaf {
    /// The stream id, hex.
    pub stream: String,
    /// Its last version.
    pub version: u64,
    /// Its last entry's hash, hex.
    pub hash: String,
}

/// The heads of every stream, kept up to date as streams move: built once from sorted heads,
/// then each stream's head set in place. Hashes are recomputed lazily, only on the paths that
/// changed, when a root or a proof is asked for.
///
/// The map is persistent: a clone is a snapshot that costs one pointer, shares every subtree
/// with the map, and stays as it was while the map moves on (a set copies the nodes on its path
/// that a snapshot still holds). A commitment keeps its snapshot, so its proofs are `O(log n)`
/// whatever happened since.
#[derive(Clone)]
pub struct HeadsMap {
    root: Arc<Node>,
    len: u64,
}

/// A subtree: no stream, one stream's leaf, or a split on the next bit holding two or more.
/// An inner node's hash is computed once; a node is never changed while shared, so the hash
/// stays valid for every snapshot that holds it.
#[derive(Clone)]
enum Node {
    Empty,
    Leaf(StreamHead),
    Inner { left: Arc<Node>, right: Arc<Node>, hash: OnceLock<[u8; 32]> },
}

impl Node {
    /// The subtree of `heads` (sorted, all sharing their first `depth` bits).
    fn build(heads: &[StreamHead], depth: usize) -> Node {
        match heads {
            [] => Node::Empty,
            [one] => Node::Leaf(*one),
            _ => {
                let split = heads.partition_point(|h| !bit(&h.stream, depth));
                Node::Inner {
                    left: Arc::new(Node::build(&heads[..split], depth + 1)),
                    right: Arc::new(Node::build(&heads[split..], depth + 1)),
                    hash: OnceLock::new(),
                }
            }
        }
    }

    fn hash(&self) -> [u8; 32] {
        match self {
            Node::Empty => EMPTY,
            Node::Leaf(h) => h.leaf_hash(),
            Node::Inner { left, right, hash } => *hash.get_or_init(|| node(&left.hash(), &right.hash())),
        }
    }

    /// Sets `head` in this subtree at `depth`; whether a stream was added.
    fn set(&mut self, head: StreamHead, depth: usize) -> bool {
        match self {
            Node::Empty => {
                *self = Node::Leaf(head);
                true
            }
            Node::Leaf(l) if l.stream == head.stream => {
                *l = head;
                false
            }
            Node::Leaf(l) => {
                // Two streams here now: split on the next bit (again, while they share it).
                let other = *l;
                *self = Node::build(&if other.stream < head.stream { [other, head] } else { [head, other] }, depth);
                true
            }
            Node::Inner { left, right, hash } => {
                *hash = OnceLock::new();
                // Copied first if a snapshot still holds it.
                let next = if bit(&head.stream, depth) { right } else { left };
                Arc::make_mut(next).set(head, depth + 1)
            }
        }
    }
}

impl Default for HeadsMap {
    /// The map with no stream.
    fn default() -> HeadsMap {
        HeadsMap { root: Arc::new(Node::Empty), len: 0 }
    }
}

impl HeadsMap {
    /// The map of these heads, which must be in strictly increasing stream id order.
    pub fn new(heads: Vec<StreamHead>) -> Result<HeadsMap, HeadsError> {
        if let Some(i) = heads.windows(2).position(|w| w[0].stream >= w[1].stream) {
            return Err(HeadsError::OutOfOrder(i + 1));
        }
        Ok(HeadsMap { root: Arc::new(Node::build(&heads, 0)), len: heads.len() as u64 })
    }

    /// Sets a stream's head (adding the stream if it had none).
    pub fn set(&mut self, head: StreamHead) {
        if Arc::make_mut(&mut self.root).set(head, 0) {
            self.len += 1;
        }
    }

    /// How many streams.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no stream has a head.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The map's root.
    pub fn root(&self) -> [u8; 32] {
        self.root.hash()
    }

    /// The sibling hashes down `stream`'s path, and the subtree where it ends (empty or a leaf).
    fn walk(&self, stream: &[u8; 16]) -> (Vec<[u8; 32]>, Option<StreamHead>) {
        let mut path = Vec::new();
        let mut here = &*self.root;
        let mut depth = 0;
        loop {
            match here {
                Node::Empty => return (path, None),
                Node::Leaf(h) => return (path, Some(*h)),
                Node::Inner { left, right, .. } => {
                    let (next, sibling) = if bit(stream, depth) { (right, left) } else { (left, right) };
                    path.push(sibling.hash());
                    here = &**next;
                    depth += 1;
                }
            }
        }
    }

    /// The proof of a stream's head, or `None` if it has none (see [`HeadsMap::prove_absent`]).
    pub fn prove(&self, stream: &[u8; 16]) -> Option<HeadProof> {
        match self.walk(stream) {
            (path, Some(h)) if h.stream == *stream => Some(HeadProof {
                stream: hex(&h.stream),
                version: h.version,
                hash: hex(&h.hash),
                path: path.iter().map(|p| hex(p)).collect(),
            }),
            _ => None,
        }
    }

    /// The proof that a stream has no head, or `None` if it has one.
    pub fn prove_absent(&self, stream: &[u8; 16]) -> Option<AbsenceProof> {
        let (path, end) = self.walk(stream);
        let other = match end {
            Some(h) if h.stream == *stream => return None,
            Some(h) => Some(HeadProofLeaf { stream: hex(&h.stream), version: h.version, hash: hex(&h.hash) }),
            None => None,
        };
        Some(AbsenceProof { path: path.iter().map(|p| hex(p)).collect(), other })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(field: &str, s: &str) -> Result<[u8; N], HeadsError> {
    let bad = || HeadsError::Invalid(format!("{field} is not {N} bytes of lowercase hex"));
    // One spelling per value: lowercase digits only (`from_str_radix` alone would take "+a"
    // and uppercase, so that one proof had several forms).
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Folds a path (siblings from the root down) over the hash at its end, along `stream`'s bits.
fn fold(stream: &[u8; 16], path: &[String], end: [u8; 32]) -> Result<[u8; 32], HeadsError> {
    if path.len() > PATH_MAX {
        return Err(HeadsError::Invalid(format!("a path of {} hashes is longer than any", path.len())));
    }
    let mut h = end;
    for (depth, sibling) in path.iter().enumerate().rev() {
        let s = unhex::<32>("path", sibling)?;
        h = if bit(stream, depth) { node(&s, &h) } else { node(&h, &s) };
    }
    Ok(h)
}

impl HeadProof {
    /// Checks the proof against a map's root; returns the head it proves.
    pub fn verify(&self, root: &[u8; 32]) -> Result<StreamHead, HeadsError> {
        let head = StreamHead {
            stream: unhex::<16>("stream", &self.stream)?,
            version: self.version,
            hash: unhex::<32>("hash", &self.hash)?,
        };
        if fold(&head.stream, &self.path, head.leaf_hash())? != *root {
            return Err(HeadsError::Invalid(format!("the head of stream {} is not the map's", self.stream)));
        }
        Ok(head)
    }
}

impl AbsenceProof {
    /// Checks that `stream` has no head in the map with this root.
    pub fn verify(&self, root: &[u8; 32], stream: &[u8; 16]) -> Result<(), HeadsError> {
        if self.path.len() > PATH_MAX {
            return Err(HeadsError::Invalid(format!("a path of {} hashes is longer than any", self.path.len())));
        }
        let end = match &self.other {
            None => EMPTY,
            Some(o) => {
                let other = StreamHead {
                    stream: unhex::<16>("other stream", &o.stream)?,
                    version: o.version,
                    hash: unhex::<32>("other hash", &o.hash)?,
                };
                // Another stream, on the same path so far: were `stream` there too, the subtree
                // would hold two streams and not be this one leaf.
                let shares = (0..self.path.len()).all(|i| bit(&other.stream, i) == bit(stream, i));
                if other.stream == *stream || !shares {
                    return Err(HeadsError::Invalid(
                        "the leaf that ends the path is not another stream's on it".into(),
                    ));
                }
                other.leaf_hash()
            }
        };
        if fold(stream, &self.path, end)? != *root {
            return Err(HeadsError::Invalid("the path does not lead to the map's root".into()));
        }
        Ok(())
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
        // Computed with Python's hashlib from the definitions above: no stream, one, and three
        // (0x01.., 0x02.. and 0x90..: the first two part at bit 6, the third at bit 0).
        assert_eq!(HeadsMap::new(vec![]).unwrap().root(), EMPTY);
        let one = HeadsMap::new(vec![head(1, 0)]).unwrap();
        assert_eq!(hex(&one.root()), "45ec141b8be8a5ef4881339e90d5edb9cf4e129fce2ca8e1c761e47f288eda8a");
        let three = HeadsMap::new(vec![head(1, 0), head(2, 5), head(0x90, 1)]).unwrap();
        assert_eq!(hex(&three.root()), "83f1c72f99e058b3a64b56669dc246de176a211ce40dc17ce3017cd921930d73");
        assert_eq!(hex(&head(2, 5).leaf_data()[..24]), "020202020202020202020202020202020000000000000005");
        // The proof of 0x02..: siblings at depths 0..=6 (the 0x90 leaf, then empty subtrees down to
        // where 0x01 and 0x02 part, then the 0x01 leaf).
        let p = three.prove(&[2; 16]).unwrap();
        assert_eq!(p.path.len(), 7);
        assert_eq!(p.path[0], hex(&head(0x90, 1).leaf_hash()));
        assert!(p.path[1..6].iter().all(|s| *s == hex(&EMPTY)));
        assert_eq!(p.path[6], hex(&head(1, 0).leaf_hash()));
    }

    #[test]
    fn every_head_proves_and_nothing_else_does() {
        let heads: Vec<StreamHead> = (1..=60u8).map(|n| head(n * 4, u64::from(n))).collect();
        let map = HeadsMap::new(heads.clone()).unwrap();
        let root = map.root();
        for h in &heads {
            let p = map.prove(&h.stream).unwrap();
            assert_eq!(p.verify(&root).unwrap(), *h);
            // A head claimed shorter (a version left out at the end) does not verify.
            let mut shorter = p.clone();
            shorter.version -= 1;
            assert!(shorter.verify(&root).is_err());
            // Nor with a sibling changed, one dropped, or against another map's root.
            let mut changed = p.clone();
            changed.path[0] = hex(&EMPTY);
            assert!(changed.verify(&root).is_err());
            let mut dropped = p.clone();
            dropped.path.pop();
            assert!(dropped.verify(&root).is_err());
            let other = HeadsMap::new(heads.iter().filter(|x| x.stream != [4; 16]).copied().collect()).unwrap();
            assert!(p.verify(&other.root()).is_err());
            assert!(map.prove_absent(&h.stream).is_none());
            // A present stream has no absence proof; its own path with its leaf passed off as
            // another's is refused.
            let fake = AbsenceProof {
                path: p.path.clone(),
                other: Some(HeadProofLeaf { stream: p.stream.clone(), version: p.version, hash: p.hash.clone() }),
            };
            assert!(fake.verify(&root, &h.stream).is_err());
        }
        // Absent streams: below all, between two (ending at an empty subtree or another's leaf),
        // above all.
        for s in [[0u8; 16], [5u8; 16], [6u8; 16], [0xf1u8; 16], [0xffu8; 16]] {
            let a = map.prove_absent(&s).unwrap();
            a.verify(&root, &s).unwrap();
            assert!(map.prove(&s).is_none());
            // The same proof says nothing of a stream that is there.
            assert!(a.verify(&root, &[4u8; 16]).is_err());
        }
        let empty = HeadsMap::new(vec![]).unwrap();
        let r = empty.root();
        empty.prove_absent(&[1; 16]).unwrap().verify(&r, &[1; 16]).unwrap();
        let one = HeadsMap::new(vec![head(1, 0)]).unwrap();
        assert!(one.prove(&[1; 16]).unwrap().path.is_empty());
        let r = one.root();
        one.prove_absent(&[2; 16]).unwrap().verify(&r, &[2; 16]).unwrap();
    }

    /// The subtree hash straight from the definitions, over a sorted slice: the reference the
    /// kept-up-to-date map is compared with.
    fn reference(heads: &[StreamHead], depth: usize) -> [u8; 32] {
        match heads {
            [] => EMPTY,
            [one] => one.leaf_hash(),
            _ => {
                let split = heads.partition_point(|h| !bit(&h.stream, depth));
                node(&reference(&heads[..split], depth + 1), &reference(&heads[split..], depth + 1))
            }
        }
    }

    #[test]
    fn a_map_kept_up_to_date_equals_one_built_from_scratch() {
        // Streams that share long prefixes (they differ in the last byte only, or in one bit
        // anywhere) as well as random ones; heads set in a pseudo-random order, some several times.
        let mut seed = 0x2026_1130_u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 11
        };
        let mut ids: Vec<[u8; 16]> = (0..40u8).map(|i| [i; 16]).collect();
        ids.extend((0..20u8).map(|i| {
            let mut id = [0x55; 16];
            id[15] = i;
            id
        }));
        ids.extend((0..128usize).step_by(9).map(|b| {
            let mut id = [0u8; 16];
            id[b / 8] = 1 << (7 - b % 8);
            id
        }));
        let mut model = std::collections::BTreeMap::new();
        let mut map = HeadsMap::new(vec![]).unwrap();
        // Snapshots taken along the way (some with their root asked for at once, some not), each
        // with the heads it must still hold however far the map moved on.
        let mut snapshots: Vec<(HeadsMap, Vec<StreamHead>)> = Vec::new();
        for round in 0..600u64 {
            let id = ids[(next() % ids.len() as u64) as usize];
            let head = StreamHead { stream: id, version: round, hash: [(round % 251) as u8; 32] };
            model.insert(id, head);
            map.set(head);
            if round % 23 == 0 {
                let snapshot = map.clone();
                if round % 2 == 0 {
                    snapshot.root();
                }
                snapshots.push((snapshot, model.values().copied().collect()));
            }
            if round % 37 == 0 || round == 599 {
                for (snapshot, heads) in &snapshots {
                    assert_eq!(snapshot.root(), reference(heads, 0), "a snapshot moved, round {round}");
                    assert_eq!(snapshot.len(), heads.len() as u64);
                }
                let sorted: Vec<StreamHead> = model.values().copied().collect();
                assert_eq!(map.len(), sorted.len() as u64);
                assert_eq!(map.root(), reference(&sorted, 0), "round {round}");
                assert_eq!(HeadsMap::new(sorted.clone()).unwrap().root(), map.root());
                let root = map.root();
                for h in &sorted {
                    assert_eq!(map.prove(&h.stream).unwrap().verify(&root).unwrap(), *h);
                }
                for id in &ids {
                    if !model.contains_key(id) {
                        map.prove_absent(id).unwrap().verify(&root, id).unwrap();
                    }
                }
            }
        }
    }

    #[test]
    fn heads_must_be_sorted_and_unique() {
        assert_eq!(HeadsMap::new(vec![head(2, 0), head(1, 0)]).err(), Some(HeadsError::OutOfOrder(1)));
        assert_eq!(HeadsMap::new(vec![head(2, 0), head(2, 1)]).err(), Some(HeadsError::OutOfOrder(1)));
    }

    #[test]
    fn malformed_proofs_are_errors_never_panics() {
        let map = HeadsMap::new(vec![head(1, 0), head(2, 0)]).unwrap();
        let mut p = map.prove(&[1; 16]).unwrap();
        p.path = vec!["zz".into()];
        assert!(p.verify(&map.root()).is_err());
        p.path = vec![hex(&EMPTY); PATH_MAX + 1];
        assert!(p.verify(&map.root()).is_err());
        p.stream = "é".repeat(16);
        assert!(p.verify(&map.root()).is_err());
        // Other spellings of a valid proof's hex are refused.
        let good = map.prove(&[2; 16]).unwrap();
        assert!(good.hash.contains('e'), "a hash with letters in it");
        let mut upper = good.clone();
        upper.hash = upper.hash.to_uppercase();
        assert!(upper.verify(&map.root()).is_err());
        let mut plus = good.clone();
        plus.hash.replace_range(0..2, "+a");
        assert!(plus.verify(&map.root()).is_err());
        // An absence proof naming the stream itself, with a path longer than any.
        let long = AbsenceProof {
            path: vec![hex(&EMPTY); PATH_MAX + 1],
            other: Some(HeadProofLeaf { stream: hex(&[1; 16]), version: 0, hash: hex(&[7; 32]) }),
        };
        assert!(long.verify(&map.root(), &[1; 16]).is_err());
    }
}
