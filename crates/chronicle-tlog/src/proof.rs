//! Proofs as JSON documents that other tools can check.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::tree::{PROOF_HASHES_MAX, TreeError, TreeHash, leaf_hash, verify_consistency, verify_inclusion};

/// `{"leaf_index": P, "tree_size": N, "leaf": base64(entry bytes), "audit_path": [base64, ...]}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The leaf's index (the entry's position).
    pub leaf_index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The stored entry bytes, base64.
    pub leaf: String,
    /// The audit path, base64 hashes, leaf side first.
    pub audit_path: Vec<String>,
}

/// `{"first": M, "second": N, "consistency": [base64, ...]}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub first: u64,
    /// The newer tree size.
    pub second: u64,
    /// The proof hashes, base64.
    pub consistency: Vec<String>,
}

/// A proof document does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// A field is not valid base64 or a hash is not 32 bytes.
    #[error("{field}: {reason}")]
    Encoding {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The proof does not prove the claim.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// Encodes hashes as base64 strings.
pub fn encode_hashes(hashes: &[TreeHash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h.0)).collect()
}

/// Decodes base64 hashes (at most [`PROOF_HASHES_MAX`]).
pub fn decode_hashes(field: &'static str, hashes: &[String]) -> Result<Vec<TreeHash>, ProofError> {
    if hashes.len() > PROOF_HASHES_MAX {
        return Err(TreeError::ProofTooLong(hashes.len()).into());
    }
    hashes.iter().map(|s| decode_hash(field, s)).collect()
}

/// Decodes one base64 hash.
pub fn decode_hash(field: &'static str, s: &str) -> Result<TreeHash, ProofError> {
    let b = B64.decode(s).map_err(|e| ProofError::Encoding { field, reason: e.to_string() })?;
    let a: [u8; 32] = b.try_into().map_err(|_| ProofError::Encoding { field, reason: "not 32 bytes".into() })?;
    Ok(TreeHash(a))
}

impl InclusionProof {
    /// Builds the document.
    pub fn new(leaf_index: u64, tree_size: u64, entry_bytes: &[u8], path: &[TreeHash]) -> InclusionProof {
        InclusionProof { leaf_index, tree_size, leaf: B64.encode(entry_bytes), audit_path: encode_hashes(path) }
    }

    /// The leaf's entry bytes.
    pub fn leaf_bytes(&self) -> Result<Vec<u8>, ProofError> {
        B64.decode(&self.leaf).map_err(|e| ProofError::Encoding { field: "leaf", reason: e.to_string() })
    }

    /// Checks the proof against a root of `tree_size` leaves.
    pub fn verify(&self, root: TreeHash) -> Result<(), ProofError> {
        let path = decode_hashes("audit_path", &self.audit_path)?;
        Ok(verify_inclusion(leaf_hash(&self.leaf_bytes()?), self.leaf_index, self.tree_size, &path, root)?)
    }
}

impl ConsistencyProof {
    /// Builds the document.
    pub fn new(first: u64, second: u64, proof: &[TreeHash]) -> ConsistencyProof {
        ConsistencyProof { first, second, consistency: encode_hashes(proof) }
    }

    /// Checks the proof between the two roots.
    pub fn verify(&self, first_root: TreeHash, second_root: TreeHash) -> Result<(), ProofError> {
        let proof = decode_hashes("consistency", &self.consistency)?;
        Ok(verify_consistency(self.first, first_root, self.second, second_root, &proof)?)
    }
}
