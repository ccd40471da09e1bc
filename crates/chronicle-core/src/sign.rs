//! Principal keys: signing statements and checking signatures.
//!
//! One rule, everywhere a signature is checked (append, `verify`, evidence bundles): a signature
//! (R, s) by key A over message M is valid when
//!
//! - A was registered, and registration admits only canonical keys in the prime-order subgroup
//!   (neither small order nor mixed order: `registry::parse_public_key`);
//! - s is canonical (s < ℓ) and R is a canonical encoding of a point that is not of small order;
//! - and [s]B = R + [H(R ‖ A ‖ M)]A, with no cofactor (`verify_strict`).
//!
//! With A torsion-free, the equation makes R torsion-free too. Batch verification is not used:
//! its random linear combination cancels a torsion component of R (an order-2 point vanishes
//! whenever the random scalar is even), so a signature with R + T for a small-order T would pass a
//! batch about half the time and always fail the single check; a signer could grind such a
//! signature offline and get it into the log, after which every strict check of the log, and
//! every evidence bundle holding it, fails. Each signature is checked strictly on its own, on
//! all cores.

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::entry::signing_message;
use crate::ids::{KeyId, PrincipalId};

/// A principal's signing key, with the id it signs as.
pub struct Signer {
    principal: PrincipalId,
    key: SigningKey,
    key_id: KeyId,
}

impl Signer {
    /// Wraps an existing key.
    pub fn new(principal: PrincipalId, key: SigningKey) -> Signer {
        let key_id = KeyId::of(&key.verifying_key().to_bytes());
        Signer { principal, key, key_id }
    }

    /// A fresh random key.
    pub fn generate(principal: PrincipalId) -> Signer {
        Signer::new(principal, SigningKey::from_bytes(&crate::random_array()))
    }

    /// A key from 32 secret bytes (tests and known-answer vectors).
    pub fn from_seed(principal: PrincipalId, seed: [u8; 32]) -> Signer {
        Signer::new(principal, SigningKey::from_bytes(&seed))
    }

    /// The principal this key signs for.
    pub fn principal(&self) -> &PrincipalId {
        &self.principal
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The secret key, for callers that need another signature scheme over the same key (the
    /// ledger's checkpoint notes).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs statement bytes (the domain prefix is added here).
    pub fn sign_statement(&self, statement_bytes: &[u8]) -> [u8; 64] {
        self.key.sign(&signing_message(statement_bytes)).to_bytes()
    }

    /// The key as a PKCS#8 v1 PEM document (RFC 8410), the form OpenSSL, Python's
    /// `cryptography` and Go write and read. (The v2 form with the public key inside, which
    /// ed25519-dalek writes by default, is refused by OpenSSL and `cryptography`.)
    pub fn to_pem(&self) -> String {
        ed25519_dalek::pkcs8::KeypairBytes { secret_key: self.key.to_bytes(), public_key: None }
            .to_pkcs8_pem(Default::default())
            .map(|s| s.to_string())
            // Encoding a valid 32-byte key into PKCS#8 cannot fail.
            .expect("ed25519 key encodes as PKCS#8")
    }

    /// Reads a PKCS#8 PEM key.
    pub fn from_pem(principal: PrincipalId, pem: &str) -> Result<Signer, KeyFileError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        Ok(Signer::new(principal, key))
    }

    /// Reads a PKCS#8 PEM key file.
    pub fn from_pem_file(principal: PrincipalId, path: &Path) -> Result<Signer, KeyFileError> {
        let pem =
            std::fs::read_to_string(path).map_err(|e| KeyFileError::Io(path.display().to_string(), e.to_string()))?;
        Signer::from_pem(principal, &pem)
    }
}

/// A key file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("cannot read {0}: {1}")]
    Io(String, String),
    /// The file is not a PKCS#8 ed25519 key.
    #[error("not a PKCS#8 ed25519 private key: {0}")]
    Malformed(String),
}

/// Checks one statement signature strictly.
pub fn verify_statement(key: &VerifyingKey, statement_bytes: &[u8], signature: &[u8; 64]) -> bool {
    let sig = Signature::from_bytes(signature);
    key.verify_strict(&signing_message(statement_bytes), &sig).is_ok()
}

/// Checks one signature over an already-built message strictly.
pub fn verify_message(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
    key.verify_strict(message, &Signature::from_bytes(signature)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_pem_round_trip() {
        let p = PrincipalId::new("a").unwrap();
        let s = Signer::generate(p.clone());
        let sig = s.sign_statement(b"stmt");
        assert!(verify_statement(&s.verifying_key(), b"stmt", &sig));
        assert!(!verify_statement(&s.verifying_key(), b"stmu", &sig));
        let back = Signer::from_pem(p.clone(), &s.to_pem()).unwrap();
        assert_eq!(back.key_id(), s.key_id());
        assert!(Signer::from_pem(p, "junk").is_err());
        let msg = signing_message(b"stmt");
        assert!(verify_message(&s.verifying_key(), &msg, &sig));
    }

    #[test]
    fn key_files_are_pkcs8_v1_as_openssl_writes_them() {
        let s = Signer::from_pem(PrincipalId::new("a").unwrap(), "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n").unwrap();
        // RFC 8410 section 10.3's example key, written back exactly as the RFC (and OpenSSL) write it.
        assert_eq!(
            s.to_pem(),
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n"
        );
    }
}
