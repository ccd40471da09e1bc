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

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
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
    /// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03) under this key and `nonce`: HChaCha20
    /// derives a subkey from the key and the nonce's first 16 bytes, and ChaCha20-Poly1305
    /// (RFC 8439) runs under the subkey with the nonce `0^4 || nonce[16..24]`.
    ///
    /// ChaCha20-Poly1305 is ring's (already linked for TLS): for the short messages sealed here
    /// (32-byte keys, payloads of a few hundred bytes) it is 4-8 times faster than a generic
    /// implementation, whose fixed cost per message dominated replaying the log.
    fn xchacha(&self, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&nonce[..16]);
        let subkey =
            Zeroizing::new(<[u8; 32]>::from(chacha20::hchacha::<chacha20::R20>(&(*self.0).into(), &prefix.into())));
        let key = UnboundKey::new(&CHACHA20_POLY1305, &subkey[..])
            .map(LessSafeKey::new)
            // Fails only for a key of another length; the subkey is 32 bytes by its type.
            .expect("a 32-byte ChaCha20-Poly1305 key");
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&nonce[16..]);
        (key, Nonce::assume_unique_for_key(n))
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
    let (cipher, n) = key.xchacha(&nonce);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .seal_in_place_separate_tag(n, Aad::from(&aad[..]), &mut out[NONCE_LEN..])
        // Fails only for messages over 256 GiB; entries are capped far below.
        .expect("plaintext within the AEAD's length limit");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Decrypts what [`aead_seal`] produced.
pub fn aead_open(key: &SymmetricKey, aad: &[&[u8]], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Short { len: sealed.len() });
    }
    let mut buf = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
    let len = aead_open_in_place(key, aad, sealed[..NONCE_LEN].try_into().expect("split at the nonce"), &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

/// Decrypts `ciphertext || tag` (what [`aead_seal`] produced after its nonce) in place; returns
/// the length of the plaintext now at the start of `buf`.
pub fn aead_open_in_place(
    key: &SymmetricKey,
    aad: &[&[u8]],
    nonce: &[u8; NONCE_LEN],
    buf: &mut [u8],
) -> Result<usize, SealError> {
    if buf.len() < TAG_LEN {
        return Err(SealError::Short { len: NONCE_LEN + buf.len() });
    }
    let (cipher, n) = key.xchacha(nonce);
    // The associated data is a few short parts: joined on the stack, not on the heap.
    let mut joined = [0u8; 128];
    let len: usize = aad.iter().map(|part| part.len()).sum();
    let heap;
    let aad = if len <= joined.len() {
        let mut at = 0;
        for part in aad {
            joined[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        &joined[..len]
    } else {
        heap = aad.concat();
        &heap[..]
    };
    cipher.open_in_place(n, Aad::from(aad), buf).map(|plain| plain.len()).map_err(|_| SealError::Unauthentic)
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
    let mut plain = aead_open(content_key, &[DOMAIN_PAYLOAD_AAD, &commitment_signed.0], envelope)?;
    open_public(commitment_signed, &plain)?;
    // The payload follows its salt: moved to the front rather than copied out.
    plain.drain(..SALT_LEN);
    Ok(plain)
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

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1.
    #[test]
    fn xchacha20poly1305_known_answer() {
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the \
                          future, sunscreen would be it.";
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let key = SymmetricKey::from_bytes(
            unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f").try_into().unwrap(),
        );
        let nonce: [u8; NONCE_LEN] = unhex("404142434445464748494a4b4c4d4e4f5051525354555657").try_into().unwrap();
        let want = unhex(concat!(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39",
            "ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9",
            "21f9664c97637da9768812f615c68b13b52e",
            "c0875924c1c7987947deafd8780acf49",
        ));
        let sealed = danger_aead_seal_with_nonce(&key, nonce, &[&aad[..5], &aad[5..]], plaintext);
        assert_eq!(&sealed[..NONCE_LEN], &nonce);
        assert_eq!(&sealed[NONCE_LEN..], &want[..]);
        assert_eq!(&aead_open(&key, &[&aad], &sealed).unwrap()[..], &plaintext[..]);
    }

    proptest::proptest! {
        /// The same bytes as an independent XChaCha20-Poly1305 (RustCrypto's), both ways, and a
        /// flipped bit anywhere is refused.
        #[test]
        fn agrees_with_an_independent_xchacha20poly1305(
            key in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            nonce in proptest::array::uniform24(proptest::prelude::any::<u8>()),
            aad in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
            flip in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            use chacha20poly1305::aead::{Aead, KeyInit, Payload};
            let other = chacha20poly1305::XChaCha20Poly1305::new(&key.into());
            let theirs = other.encrypt(&nonce.into(), Payload { msg: &msg, aad: &aad }).unwrap();
            let k = SymmetricKey::from_bytes(key);
            let ours = danger_aead_seal_with_nonce(&k, nonce, &[&aad], &msg);
            proptest::prop_assert_eq!(&ours[NONCE_LEN..], &theirs[..]);
            let mut sealed = nonce.to_vec();
            sealed.extend_from_slice(&theirs);
            proptest::prop_assert_eq!(&aead_open(&k, &[&aad], &sealed).unwrap()[..], &msg[..]);
            let i = flip.index(sealed.len());
            sealed[i] ^= 1;
            proptest::prop_assert_eq!(aead_open(&k, &[&aad], &sealed), Err(SealError::Unauthentic));
        }
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
