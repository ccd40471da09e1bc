//! Witnessing: the c2sp.org/tlog-witness add-checkpoint request and c2sp.org/tlog-cosignature.
//!
//! A witness that last saw tree size `old` is sent `old <old>\n`, the consistency proof from `old`
//! to the checkpoint's size (one base64 hash per line), a blank line, then the signed checkpoint.
//! It answers with cosignature lines: `— name base64(key id || timestamp || signature)`, where the
//! key id is the first four bytes of `SHA-256(name || 0x0A || 0x04 || public key)`, the timestamp
//! is 8 bytes big-endian Unix seconds, and the Ed25519 signature covers
//! `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint text.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::tree::TreeHash;

const ALG_COSIGNATURE: u8 = 0x04;

/// A cosignature could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    /// The line is not `— name base64`.
    #[error("malformed cosignature line")]
    Malformed,
    /// The line names another key than the witness's.
    #[error("cosignature is by {found}, expected {expected}")]
    WrongKey {
        /// The expected witness name and key id.
        expected: String,
        /// What the line says.
        found: String,
    },
    /// The signature does not verify.
    #[error("cosignature does not verify")]
    BadSignature,
}

/// The body of a POST to a witness's `add-checkpoint` endpoint.
pub fn add_checkpoint_body(old_size: u64, consistency: &[TreeHash], signed_checkpoint: &[u8]) -> Vec<u8> {
    let mut out = format!("old {old_size}\n").into_bytes();
    for h in consistency {
        out.extend_from_slice(B64.encode(h.0).as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_checkpoint);
    out
}

/// The key id of a witness's cosigning key.
pub fn cosignature_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_COSIGNATURE]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn cosigned_message(timestamp: u64, checkpoint_text: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(checkpoint_text);
    m
}

/// Makes a cosignature line (what a witness returns), for tests and for running a witness.
pub fn cosign(name: &str, key: &SigningKey, timestamp: u64, checkpoint_text: &[u8]) -> String {
    let sig = key.sign(&cosigned_message(timestamp, checkpoint_text));
    let mut blob = cosignature_key_id(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&timestamp.to_be_bytes());
    blob.extend_from_slice(&sig.to_bytes());
    format!("— {name} {}\n", B64.encode(blob))
}

/// Checks a cosignature line from a known witness over a checkpoint's text; returns its timestamp.
pub fn verify_cosignature(
    line: &str,
    name: &str,
    key: &VerifyingKey,
    checkpoint_text: &[u8],
) -> Result<u64, CosignatureError> {
    let rest = line.trim_end_matches('\n').strip_prefix("— ").ok_or(CosignatureError::Malformed)?;
    let (line_name, b64) = rest.split_once(' ').ok_or(CosignatureError::Malformed)?;
    let blob = B64.decode(b64).map_err(|_| CosignatureError::Malformed)?;
    if blob.len() != 4 + 8 + 64 {
        return Err(CosignatureError::Malformed);
    }
    let id = cosignature_key_id(name, key);
    if line_name != name || blob[..4] != id {
        return Err(CosignatureError::WrongKey { expected: name.to_string(), found: line_name.to_string() });
    }
    let timestamp = u64::from_be_bytes(blob[4..12].try_into().map_err(|_| CosignatureError::Malformed)?);
    let sig = Signature::from_bytes(blob[12..].try_into().map_err(|_| CosignatureError::Malformed)?);
    key.verify_strict(&cosigned_message(timestamp, checkpoint_text), &sig)
        .map_err(|_| CosignatureError::BadSignature)?;
    Ok(timestamp)
}

/// Parses a witness's cosignature verifier key: `name+hex(key id)+base64(0x04 || public key)`.
pub fn parse_witness_key(vkey: &str) -> Result<(String, VerifyingKey), CosignatureError> {
    let mut parts = vkey.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CosignatureError::Malformed);
    };
    let raw = B64.decode(key).map_err(|_| CosignatureError::Malformed)?;
    let [ALG_COSIGNATURE, rest @ ..] = raw.as_slice() else { return Err(CosignatureError::Malformed) };
    let bytes: [u8; 32] = rest.try_into().map_err(|_| CosignatureError::Malformed)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| CosignatureError::Malformed)?;
    let want: String = cosignature_key_id(name, &key).iter().map(|b| format!("{b:02x}")).collect();
    if want != id {
        return Err(CosignatureError::Malformed);
    }
    Ok((name.to_string(), key))
}

/// A witness's cosignature verifier key string.
pub fn witness_key(name: &str, key: &VerifyingKey) -> String {
    let mut raw = vec![ALG_COSIGNATURE];
    raw.extend_from_slice(key.as_bytes());
    let id: String = cosignature_key_id(name, key).iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}+{id}+{}", B64.encode(raw))
}
