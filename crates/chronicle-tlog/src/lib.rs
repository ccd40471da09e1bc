//! Chronicle's transparency-log layer: the RFC 6962 Merkle tree over the log, C2SP checkpoints
//! signed as notes, inclusion and consistency proofs, and witness cosignatures.
//!
//! Pure: no I/O. The store keeps the tree's hashes and calls into this crate; offline checkers
//! (`chronicle verify-evidence`) use it with no data directory at all.

pub mod heads;
pub mod note;
pub mod proof;
pub mod tree;
pub mod witness;

pub use note::{NoteError, NoteSigner, VerifiedCheckpoint, sign_checkpoint, verifier_key, verify_checkpoint};
pub use proof::{ConsistencyProof, InclusionProof, ProofError};
pub use tree::{MemoryTree, TreeError, TreeHash};
