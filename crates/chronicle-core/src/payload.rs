//! Payload commitments and sealing.
//!
//! Each payload gets a fresh random 32-byte salt. The author signs
//! `commitment = blake3(COMMITMENT || salt || payload)`; the salt travels inside the envelope:
//! in the clear for public payloads, inside the ciphertext for sealed ones. Once a sealed
//! payload's key is destroyed the salt is gone with it, so the commitment cannot be tested against
//! guesses of a low-entropy payload (a name, a date of birth).
//!
//! A sealed envelope is `nonce (24) || XChaCha20-Poly1305(content key, nonce, salt || payload,
//! aad = PAYLOAD_AAD || commitment)`. Each entry has its own random content key; the store keeps
//! it wrapped by the stream's data key (see [`crate::vault`]), so that destroying the data key
//! destroys the content, and re-keying the survivors of a partial expungement re-wraps 32-byte
//! content keys instead of rewriting entries.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::error::SealError;
use crate::hash::{DOMAIN_COMMITMENT, DOMAIN_PAYLOAD_AAD, Hash};

/// Length of a payload salt.
pub const SALT_LEN: usize = 32;
/// Length of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = 16;

/// A 32-byte symmetric key that is wiped from memory when dropped.
#[derive(Clone)]
pub struct SymmetricKey(Zeroizing<[u8; 32]>);

impl SymmetricKey {
    /// A fresh random key.
    pub fn random() -> SymmetricKey {
        SymmetricKey(Zeroizing::new(crate::random_array()))
    }
    /// Wraps key bytes.
    pub fn from_bytes(b: [u8; 32]) -> SymmetricKey {
        SymmetricKey(Zeroizing::new(b))
    }
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*self.0))
    }
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKey(..)")
    }
}

/// `blake3(COMMITMENT || salt || payload)`.
pub fn commitment(salt: &[u8; SALT_LEN], payload: &[u8]) -> Hash {
    Hash::of(DOMAIN_COMMITMENT, &[salt, payload])
}

/// Encrypts `plaintext` with associated data under `key`: `nonce || ciphertext || tag`.
pub fn aead_seal(key: &SymmetricKey, aad: &[&[u8]], plaintext: &[u8]) -> Vec<u8> {
    danger_aead_seal_with_nonce(key, crate::random_array(), aad, plaintext)
}

/// [`aead_seal`] with a caller-chosen nonce, for known-answer tests only: a nonce must never be
/// used twice under one key.
pub fn danger_aead_seal_with_nonce(
    key: &SymmetricKey,
    nonce: [u8; NONCE_LEN],
    aad: &[&[u8]],
    plaintext: &[u8],
) -> Vec<u8> {
    let aad = aad.concat();
    let ct = key
        .cipher()
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
        // XChaCha20-Poly1305 fails only for messages over 256 GiB; entries are capped far below.
        .expect("plaintext within the AEAD's length limit");
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Decrypts what [`aead_seal`] produced.
pub fn aead_open(key: &SymmetricKey, aad: &[&[u8]], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Short { len: sealed.len() });
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    let aad = aad.concat();
    key.cipher()
        .decrypt(&XNonce::from(n), Payload { msg: ct, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| SealError::Unauthentic)
}

/// Builds a public envelope: `salt || payload`.
pub fn public_envelope(salt: &[u8; SALT_LEN], payload: &[u8]) -> Vec<u8> {
    [salt.as_slice(), payload].concat()
}

/// Builds a sealed envelope under a content key, bound to the commitment.
pub fn seal(content_key: &SymmetricKey, commitment: &Hash, salt: &[u8; SALT_LEN], payload: &[u8]) -> Vec<u8> {
    danger_seal_with_nonce(content_key, crate::random_array(), commitment, salt, payload)
}

/// [`seal`] with a caller-chosen nonce, for known-answer tests only: a nonce must never be used
/// twice under one key.
pub fn danger_seal_with_nonce(
    content_key: &SymmetricKey,
    nonce: [u8; NONCE_LEN],
    commitment: &Hash,
    salt: &[u8; SALT_LEN],
    payload: &[u8],
) -> Vec<u8> {
    let plain = Zeroizing::new(public_envelope(salt, payload));
    danger_aead_seal_with_nonce(content_key, nonce, &[DOMAIN_PAYLOAD_AAD, &commitment.0], &plain)
}

/// Splits a public envelope and checks it against the commitment; returns the payload.
pub fn open_public<'a>(commitment_signed: &Hash, envelope: &'a [u8]) -> Result<&'a [u8], SealError> {
    if envelope.len() < SALT_LEN {
        return Err(SealError::Short { len: envelope.len() });
    }
    let (salt, payload) = envelope.split_at(SALT_LEN);
    let mut s = [0u8; SALT_LEN];
    s.copy_from_slice(salt);
    if !commitment(&s, payload).ct_eq(commitment_signed) {
        return Err(SealError::CommitmentMismatch);
    }
    Ok(payload)
}

/// Opens a sealed envelope and checks it against the commitment; returns the payload.
pub fn open_sealed(
    content_key: &SymmetricKey,
    commitment_signed: &Hash,
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let plain = aead_open(content_key, &[DOMAIN_PAYLOAD_AAD, &commitment_signed.0], envelope)?;
    let payload = open_public(commitment_signed, &plain)?;
    Ok(Zeroizing::new(payload.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = SymmetricKey::random();
        let salt = [5u8; 32];
        let c = commitment(&salt, b"hello");
        let env = seal(&k, &c, &salt, b"hello");
        assert_eq!(&open_sealed(&k, &c, &env).unwrap()[..], b"hello");
        let mut bad = env.clone();
        bad[30] ^= 1;
        assert_eq!(open_sealed(&k, &c, &bad), Err(SealError::Unauthentic));
        assert_eq!(open_sealed(&SymmetricKey::random(), &c, &env), Err(SealError::Unauthentic));
        assert_eq!(open_sealed(&k, &Hash::ZERO, &env), Err(SealError::Unauthentic));
        assert!(matches!(open_sealed(&k, &c, &env[..10]), Err(SealError::Short { .. })));
    }

    #[test]
    fn public_envelope_checks_commitment() {
        let salt = [1u8; 32];
        let c = commitment(&salt, b"p");
        assert_eq!(open_public(&c, &public_envelope(&salt, b"p")).unwrap(), b"p");
        assert_eq!(open_public(&c, &public_envelope(&salt, b"q")), Err(SealError::CommitmentMismatch));
    }

    #[test]
    fn commitment_depends_on_salt() {
        assert_ne!(commitment(&[0; 32], b"x"), commitment(&[1; 32], b"x"));
    }
}
