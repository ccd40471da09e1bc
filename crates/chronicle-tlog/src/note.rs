//! Checkpoints as C2SP signed notes, signed with the ledger's Ed25519 key.
//!
//! A checkpoint's text is `origin\nsize\nbase64(root)\n` (c2sp.org/tlog-checkpoint). The note adds
//! a blank line and one signature line per signer: `— name base64(key id || signature)`
//! (c2sp.org/signed-note). The key id of an Ed25519 key is the first four bytes of
//! `SHA-256(name || 0x0A || 0x01 || public key)`, and the verifier key is written
//! `name+hex(key id)+base64(0x01 || public key)`. Formatting and parsing are `signed_note`'s and
//! `tlog_tiles`' (ports of Go's `sumdb/note` and `sumdb/tlog`), so what Chronicle writes is what
//! those verifiers read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint;

use crate::tree::TreeHash;

const ALG_ED25519: u8 = 0x01;

/// A checkpoint note could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The key name is not a valid note key name (non-empty, no spaces or `+`).
    #[error("invalid key name {0:?}")]
    BadName(String),
    /// The verifier key string is malformed.
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(String),
    /// The note does not parse, or is not signed by the given key.
    #[error("note rejected: {0}")]
    Rejected(String),
    /// The note's text is not a checkpoint.
    #[error("the note's text is not a checkpoint")]
    NotACheckpoint,
    /// The origin is not what was expected.
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    WrongOrigin {
        /// Expected origin.
        expected: String,
        /// Origin found.
        found: String,
    },
}

/// The note key id of an Ed25519 key under a name.
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut encoded = vec![ALG_ED25519];
    encoded.extend_from_slice(key.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// The verifier key string: `name+hex(key id)+base64(0x01 || public key)`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    let mut encoded = vec![ALG_ED25519];
    encoded.extend_from_slice(key.as_bytes());
    format!("{name}+{:08x}+{}", key_id(name, key), B64.encode(encoded))
}

/// Signs notes with the ledger's key.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: u32,
}

impl NoteSigner {
    /// A signer for a key name (the log's origin, by convention).
    pub fn new(name: &str, key: SigningKey) -> Result<NoteSigner, NoteError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(NoteError::BadName(name.to_string()));
        }
        let id = key_id(name, &key.verifying_key());
        Ok(NoteSigner { name: name.to_string(), key, id })
    }

    /// The verifier key string for this signer.
    pub fn verifier_key(&self) -> String {
        verifier_key(&self.name, &self.key.verifying_key())
    }
}

impl signed_note::Signer for NoteSigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// The checkpoint text: `origin\nsize\nbase64(root)\n`.
pub fn checkpoint_text(origin: &str, size: u64, root: TreeHash) -> Result<Vec<u8>, NoteError> {
    let cp = Checkpoint::new(origin, size, root, "").map_err(|_| NoteError::NotACheckpoint)?;
    Ok(cp.to_bytes())
}

/// Signs a checkpoint and returns the whole signed note.
pub fn sign_checkpoint(signer: &NoteSigner, origin: &str, size: u64, root: TreeHash) -> Result<Vec<u8>, NoteError> {
    let text = checkpoint_text(origin, size, root)?;
    let mut note = Note::new(&text, &[]).map_err(|e| NoteError::Rejected(e.to_string()))?;
    note.add_sigs(&[signer]).map_err(|e| NoteError::Rejected(e.to_string()))?;
    Ok(note.to_bytes())
}

/// A checkpoint whose note was verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCheckpoint {
    /// The origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: TreeHash,
    /// The note's text (what the signatures cover).
    pub text: Vec<u8>,
}

/// Verifies a signed note against a verifier key string; returns the note's text.
pub fn verify_note(note: &[u8], verifier_key: &str) -> Result<Vec<u8>, NoteError> {
    let v = StandardVerifier::new(verifier_key).map_err(|e| NoteError::BadVerifierKey(e.to_string()))?;
    let n = Note::from_bytes(note).map_err(|e| NoteError::Rejected(e.to_string()))?;
    n.verify(&VerifierList::new(vec![Box::new(v)])).map_err(|e| NoteError::Rejected(e.to_string()))?;
    Ok(n.text().to_vec())
}

/// Verifies a signed checkpoint note against a verifier key string and parses the checkpoint.
pub fn verify_checkpoint(note: &[u8], verifier_key: &str) -> Result<VerifiedCheckpoint, NoteError> {
    let text = verify_note(note, verifier_key)?;
    let cp = Checkpoint::from_bytes(&text).map_err(|_| NoteError::NotACheckpoint)?;
    Ok(VerifiedCheckpoint { origin: cp.origin().to_string(), size: cp.size(), root: *cp.hash(), text })
}

/// Parses a verifier key string into its name and Ed25519 public key.
pub fn parse_verifier_key(vkey: &str) -> Result<(String, VerifyingKey), NoteError> {
    let bad = |why: &str| NoteError::BadVerifierKey(why.to_string());
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected name+id+key"));
    };
    let raw = B64.decode(key).map_err(|_| bad("key is not base64"))?;
    let [ALG_ED25519, rest @ ..] = raw.as_slice() else { return Err(bad("not an Ed25519 key")) };
    let bytes: [u8; 32] = rest.try_into().map_err(|_| bad("Ed25519 key is not 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not a valid Ed25519 point"))?;
    if format!("{:08x}", key_id(name, &key)) != id {
        return Err(bad("key id does not match the key"));
    }
    Ok((name.to_string(), key))
}

/// The text of a note (everything before the signature block), without checking signatures.
pub fn note_text(note: &[u8]) -> Result<Vec<u8>, NoteError> {
    Note::from_bytes(note).map(|n| n.text().to_vec()).map_err(|e| NoteError::Rejected(e.to_string()))
}
