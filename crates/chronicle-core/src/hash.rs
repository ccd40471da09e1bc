//! Hashes and the domain-separation strings that make each use of a hash distinct.
//!
//! Every hash Chronicle computes starts with a fixed ASCII prefix naming what is hashed and the
//! format version, ending in a newline. A hash of one kind can therefore never be passed off as a
//! hash of another kind. These strings are part of the format (docs/FORMAT.md): set in stone.

use std::fmt;

/// Prefix of the entry hash: `blake3(ENTRY || entry bytes)`.
pub const DOMAIN_ENTRY: &[u8] = b"chronicle.entry.v1\n";
/// Prefix of the message an author signs: `ed25519(STATEMENT || statement bytes)`.
pub const DOMAIN_STATEMENT: &[u8] = b"chronicle.statement.v1\n";
/// Prefix of the payload commitment: `blake3(COMMITMENT || salt || payload)`.
pub const DOMAIN_COMMITMENT: &[u8] = b"chronicle.payload-commitment.v1\n";
/// Prefix of the associated data when a payload is sealed: `PAYLOAD_AAD || commitment`.
pub const DOMAIN_PAYLOAD_AAD: &[u8] = b"chronicle.payload.v1\n";
/// Prefix of the associated data when a content key is wrapped by a data key.
pub const DOMAIN_CONTENT_KEY_AAD: &[u8] = b"chronicle.content-key.v1\n";
/// Prefix of the associated data when a data key is wrapped by the master key.
pub const DOMAIN_DATA_KEY_AAD: &[u8] = b"chronicle.data-key.v1\n";
/// Prefix of a principal key id: `blake3(KEY_ID || public key)[..8]`.
pub const DOMAIN_KEY_ID: &[u8] = b"chronicle.key-id.v1\n";
/// Prefix of an append request's digest, used to recognise a retried request.
pub const DOMAIN_REQUEST: &[u8] = b"chronicle.request.v1\n";

/// A 32-byte blake3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash: the "previous hash" of the first entry of the log or of a stream.
    pub const ZERO: Hash = Hash([0; 32]);

    /// `blake3(domain || parts...)`.
    pub fn of(domain: &[u8], parts: &[&[u8]]) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(domain);
        for p in parts {
            h.update(p);
        }
        Hash(*h.finalize().as_bytes())
    }

    /// The entry hash of stored entry bytes.
    pub fn entry(bytes: &[u8]) -> Hash {
        Hash::of(DOMAIN_ENTRY, &[bytes])
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Hash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Hash(out))
    }

    /// Constant-time comparison, for checks an attacker might time.
    pub fn ct_eq(&self, other: &Hash) -> bool {
        self.0.iter().zip(other.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Hash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_distinct_and_newline_terminated() {
        let all = [
            DOMAIN_ENTRY,
            DOMAIN_STATEMENT,
            DOMAIN_COMMITMENT,
            DOMAIN_PAYLOAD_AAD,
            DOMAIN_CONTENT_KEY_AAD,
            DOMAIN_DATA_KEY_AAD,
            DOMAIN_KEY_ID,
            DOMAIN_REQUEST,
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(a.ends_with(b"\n"));
            for b in &all[i + 1..] {
                assert!(!a.starts_with(b) && !b.starts_with(a));
            }
        }
    }

    #[test]
    fn hex_round_trip_and_ct_eq() {
        let h = Hash::entry(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert!(h.ct_eq(&h));
        assert!(!h.ct_eq(&Hash::ZERO));
        assert_eq!(Hash::from_hex("zz"), None);
    }
}
