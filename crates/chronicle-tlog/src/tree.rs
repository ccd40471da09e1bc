//! The log as an RFC 6962 / RFC 9162 Merkle tree over the stored entry bytes.
//!
//! Leaf hash `SHA-256(0x00 || entry bytes)`, interior node `SHA-256(0x01 || left || right)`, the
//! empty tree `SHA-256("")`. Hashes are kept in the "stored hash" order of Crosby and Wallach (as Go's
//! `sumdb/tlog` and the `tlog_tiles` crate do): appending entry `n` stores its leaf hash and the
//! hash of every subtree it completes (under two hashes per entry on average), and any root,
//! inclusion proof or consistency proof at any tree size then needs at most `O(log n)` stored
//! hashes, never a rebuild.
//!
//! The tree math is `tlog_tiles`' (a port of Go's `sumdb/tlog`); this module checks every input
//! first so that a bad index, size or proof from outside is an error, never a panic.

pub use tlog_tiles::tlog::{EMPTY_HASH, Hash as TreeHash, HashReader, stored_hash_count, stored_hash_index};
use tlog_tiles::tlog::{
    Error as TlogError, check_record, check_tree, prove_record, prove_tree, record_hash, stored_hashes_for_record_hash,
    tree_hash,
};

/// Longest proof accepted from outside: a tree of 2^64 leaves needs at most 64 hashes.
pub const PROOF_HASHES_MAX: usize = 64;

/// A tree operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A tree size is larger than the log.
    #[error("tree size {size} is larger than the log ({len} entries)")]
    SizeOutOfRange {
        /// The size asked for.
        size: u64,
        /// The log's length.
        len: u64,
    },
    /// The sizes of a consistency proof are not `1 <= first <= second`.
    #[error("consistency needs 1 <= first <= second, got {first} and {second}")]
    BadSizes {
        /// The older size.
        first: u64,
        /// The newer size.
        second: u64,
    },
    /// The proof does not prove what it claims.
    #[error("the proof does not verify")]
    InvalidProof,
    /// The proof has more hashes than any tree could need.
    #[error("a proof of {0} hashes is longer than any tree needs")]
    ProofTooLong(usize),
    /// Reading stored hashes failed.
    #[error("reading stored hashes: {0}")]
    Storage(String),
}

impl From<TlogError> for TreeError {
    fn from(e: TlogError) -> Self {
        match e {
            TlogError::InvalidProof => TreeError::InvalidProof,
            other => TreeError::Storage(other.to_string()),
        }
    }
}

/// The leaf hash of stored entry bytes: `SHA-256(0x00 || bytes)`.
pub fn leaf_hash(entry_bytes: &[u8]) -> TreeHash {
    record_hash(entry_bytes)
}

/// The hashes to store when appending leaf `index` (they go at `stored_hash_index(0, index)` on).
pub fn hashes_to_store<R: HashReader>(index: u64, leaf: TreeHash, reader: &R) -> Result<Vec<TreeHash>, TreeError> {
    Ok(stored_hashes_for_record_hash(index, leaf, reader)?)
}

/// The root of the tree of the first `size` leaves.
pub fn root<R: HashReader>(size: u64, reader: &R) -> Result<TreeHash, TreeError> {
    Ok(tree_hash(size, reader)?)
}

/// The audit path proving leaf `index` is in the tree of `size` leaves (RFC 9162 2.1.3).
pub fn inclusion_proof<R: HashReader>(index: u64, size: u64, reader: &R) -> Result<Vec<TreeHash>, TreeError> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    Ok(prove_record(size, index, reader)?)
}

/// The proof that the tree of `first` leaves is a prefix of the tree of `second` (RFC 9162 2.1.4).
pub fn consistency_proof<R: HashReader>(first: u64, second: u64, reader: &R) -> Result<Vec<TreeHash>, TreeError> {
    if first == 0 || first > second {
        return Err(TreeError::BadSizes { first, second });
    }
    Ok(prove_tree(second, first, reader)?)
}

/// Checks an inclusion proof.
pub fn verify_inclusion(
    leaf: TreeHash,
    index: u64,
    size: u64,
    proof: &[TreeHash],
    root: TreeHash,
) -> Result<(), TreeError> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    if proof.len() > PROOF_HASHES_MAX {
        return Err(TreeError::ProofTooLong(proof.len()));
    }
    Ok(check_record(&proof.to_vec(), size, root, index, leaf)?)
}

/// Checks a consistency proof between two roots.
pub fn verify_consistency(
    first: u64,
    first_root: TreeHash,
    second: u64,
    second_root: TreeHash,
    proof: &[TreeHash],
) -> Result<(), TreeError> {
    if first == 0 || first > second {
        return Err(TreeError::BadSizes { first, second });
    }
    if proof.len() > PROOF_HASHES_MAX {
        return Err(TreeError::ProofTooLong(proof.len()));
    }
    Ok(check_tree(&proof.to_vec(), second, second_root, first, first_root)?)
}

/// An in-memory hash store, for tests, bundles and anyone rebuilding a tree from entries.
#[derive(Default, Clone, Debug)]
pub struct MemoryTree {
    hashes: Vec<TreeHash>,
    size: u64,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }
    /// Appends a leaf by its entry bytes.
    pub fn push(&mut self, entry_bytes: &[u8]) {
        self.push_leaf(leaf_hash(entry_bytes));
    }
    /// Appends a leaf by its leaf hash.
    pub fn push_leaf(&mut self, leaf: TreeHash) {
        // Only reads hashes already stored: the in-memory reader cannot fail.
        let new = hashes_to_store(self.size, leaf, self).expect("memory tree holds every earlier hash");
        self.hashes.extend(new);
        self.size += 1;
    }
    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, TlogError> {
        indexes
            .iter()
            .map(|i| {
                usize::try_from(*i).ok().and_then(|i| self.hashes.get(i)).copied().ok_or(TlogError::IndexesNotInTree)
            })
            .collect()
    }
}
