//! Identifiers and timestamps that appear in entries.
//!
//! Stream ids are opaque 16-byte values: they never carry plaintext identifiers (names, SIDs,
//! docket numbers), so that nothing readable about a record is left in the log's keys or indexes
//! once the record's data key is destroyed.

use std::fmt;

use crate::error::FieldError;
use crate::hash::{DOMAIN_KEY_ID, Hash};
use crate::limits::PRINCIPAL_ID_LEN_MAX;

/// Identifies one stream (a subject, a case, the principal registry, ...). Opaque.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub [u8; 16]);

impl StreamId {
    /// The system stream holding the principal registry.
    pub const REGISTRY: StreamId = StreamId([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    /// The system stream of the ledger's own statements about the log (a rollback an operator
    /// accepted), written by the ledger principal alone, in the clear.
    pub const LEDGER: StreamId = StreamId([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);

    /// A fresh random stream id.
    pub fn random() -> StreamId {
        StreamId(crate::random_array())
    }

    /// A stream id derived from a name within a namespace, for streams whose id must be
    /// computable (tests, the demo). The records layer derives its ids with a keyed hash instead.
    pub fn derive(namespace: &str, name: &str) -> StreamId {
        let len = (namespace.len() as u64).to_be_bytes();
        let h = Hash::of(b"chronicle.stream-id.v1\n", &[&len, namespace.as_bytes(), name.as_bytes()]);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.0[..16]);
        StreamId(out)
    }

    /// Whether this is a system stream (reserved ids 0..=255 in the last byte, zeros elsewhere).
    pub fn is_system(&self) -> bool {
        self.0[..15].iter().all(|b| *b == 0)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<StreamId> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(StreamId(out))
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.to_hex())
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // On the stack: projections and events hold many ids, each serialized often.
        let mut hex = [0u8; 32];
        hex::encode_to_slice(self.0, &mut hex).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> serde::Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        StreamId::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 32 hex digits"))
    }
}

/// Identifies one ed25519 public key: the first 8 bytes of `blake3(KEY_ID || public key)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The key id of a public key.
    pub fn of(public_key: &[u8; 32]) -> KeyId {
        let h = Hash::of(DOMAIN_KEY_ID, &[public_key]);
        let mut out = [0u8; 8];
        out.copy_from_slice(&h.0[..8]);
        KeyId(out)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 16 hex digits.
    pub fn from_hex(s: &str) -> Option<KeyId> {
        let mut out = [0u8; 8];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(KeyId(out))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A principal's id: 1 to 64 bytes of `[a-z0-9._@:-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PrincipalId(String);

impl PrincipalId {
    /// Checks and wraps a principal id.
    pub fn new(s: impl Into<String>) -> Result<PrincipalId, FieldError> {
        let s = s.into();
        if s.is_empty() || s.len() > PRINCIPAL_ID_LEN_MAX {
            return Err(FieldError::Length { field: "principal", len: s.len(), max: PRINCIPAL_ID_LEN_MAX });
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@:-".contains(&b)) {
            return Err(FieldError::Charset { field: "principal", allowed: "a-z 0-9 . _ @ : -" });
        }
        Ok(PrincipalId(s))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PrincipalId {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        PrincipalId::new(s)
    }
}

impl From<PrincipalId> for String {
    fn from(p: PrincipalId) -> String {
        p.0
    }
}

impl fmt::Debug for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrincipalId({})", self.0)
    }
}

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Microseconds since the Unix epoch (UTC). Signed, so dates before 1970 (dates of birth,
/// old arrests in a backlog) are representable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Now, by the system clock.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    /// Whole seconds since the epoch (floor).
    pub fn seconds(&self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// From whole seconds since the epoch.
    pub fn from_seconds(s: i64) -> Timestamp {
        Timestamp(s.saturating_mul(1_000_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_ids_are_checked() {
        assert!(PrincipalId::new("clerk-1@county").is_ok());
        assert!(PrincipalId::new("").is_err());
        assert!(PrincipalId::new("Clerk").is_err());
        assert!(PrincipalId::new("a b").is_err());
        assert!(PrincipalId::new("x".repeat(65)).is_err());
    }

    #[test]
    fn registry_stream_is_system_and_derived_ids_are_not() {
        assert!(StreamId::REGISTRY.is_system());
        assert!(!StreamId::derive("case", "CR-1").is_system());
        assert_ne!(StreamId::derive("case", "a\nb"), StreamId::derive("case\na", "b"));
    }
}
