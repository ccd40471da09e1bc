//! The entry: one event as stored, and the statement its author signs.
//!
//! Layout and versions are specified in `docs/FORMAT.md`; the known-answer tests in
//! `tests/known_answer.rs` pin the bytes, hash and signature for fixed inputs.
//!
//! Invariants kept here:
//! - Decoding is strict: every length is checked, flags are 0 or 1, trailing bytes are refused,
//!   so one byte string has exactly one meaning and `encode(decode(b)) == b`.
//! - An [`Entry`] keeps the exact bytes it was decoded from; hashes and signatures are always
//!   computed over those bytes, never over a re-encoding.
//! - The author signs the statement, which holds a salted commitment to the payload rather than
//!   the payload: once the payload's key is destroyed the signature still verifies and the
//!   commitment reveals nothing of the content.

use std::ops::Range;

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, FieldError};
use crate::hash::{DOMAIN_STATEMENT, Hash};
use crate::ids::{KeyId, PrincipalId, StreamId, Timestamp};
use crate::limits::{
    COURT_ORDER_LEN_MAX, ENTRY_BYTES_MAX, EVENT_TYPE_LEN_MAX, IDEMPOTENCY_KEY_LEN_MAX, STATEMENT_BYTES_MAX,
};

/// Version byte of the entry layout.
pub const ENTRY_FORMAT_V1: u8 = 1;
/// Version byte of the statement layout.
pub const STATEMENT_FORMAT_V1: u8 = 1;

/// How an entry's payload is stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum PayloadKind {
    /// In the clear, for system streams whose content must be checkable by anyone (the principal
    /// registry: public keys and roles are not secret).
    Public = 0,
    /// Encrypted under a content key that is wrapped by the stream's data key.
    Sealed = 1,
}

impl PayloadKind {
    fn from_u8(v: u8) -> Result<PayloadKind, DecodeError> {
        match v {
            0 => Ok(PayloadKind::Public),
            1 => Ok(PayloadKind::Sealed),
            value => Err(DecodeError::BadTag { field: "payload_kind", value }),
        }
    }
}

/// An event type name: 1 to 64 bytes of `[a-z0-9._]`, e.g. `registry.principal_registered`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct EventType(String);

impl EventType {
    /// Checks and wraps an event type name.
    pub fn new(s: impl Into<String>) -> Result<EventType, FieldError> {
        let s = s.into();
        if s.is_empty() || s.len() > EVENT_TYPE_LEN_MAX {
            return Err(FieldError::Length { field: "event_type", len: s.len(), max: EVENT_TYPE_LEN_MAX });
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_') {
            return Err(FieldError::Charset { field: "event_type", allowed: "a-z 0-9 . _" });
        }
        Ok(EventType(s))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// References an entry carries: the legal authority and the links between events.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct References {
    /// The court order (or other legal authority) under which the event was entered.
    pub court_order: Option<String>,
    /// Hash of the entry that caused this one.
    pub causation: Option<Hash>,
    /// Groups entries that belong to one piece of work (one submission, one import).
    pub correlation: Option<[u8; 16]>,
    /// Chosen by the author; a retried request with the same key appends nothing new. Required.
    pub idempotency_key: Vec<u8>,
}

/// What the author signs: everything about the event that the author decides.
///
/// The ledger assigns the rest (position, stream version, chain hashes, recorded time) when it
/// appends; those are covered by the entry hash and the Merkle tree instead.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Statement {
    /// The stream the event belongs to.
    pub stream: StreamId,
    /// What kind of event this is.
    pub event_type: EventType,
    /// When the event takes legal effect.
    pub effective_time: Timestamp,
    /// The principal who submits it.
    pub author: PrincipalId,
    /// Which of the author's keys signs it.
    pub key_id: KeyId,
    /// Authority, causation, correlation, idempotency.
    pub refs: References,
    /// Whether the payload is public or sealed.
    pub payload_kind: PayloadKind,
    /// `blake3(COMMITMENT || salt || payload)`; the salt lives inside the (sealed) payload.
    pub commitment: Hash,
}

impl Statement {
    /// Encodes the statement, checking every field's limits.
    pub fn encode(&self) -> Result<Vec<u8>, FieldError> {
        let refs = &self.refs;
        if let Some(order) = &refs.court_order
            && (order.is_empty() || order.len() > COURT_ORDER_LEN_MAX)
        {
            return Err(FieldError::Length { field: "court_order", len: order.len(), max: COURT_ORDER_LEN_MAX });
        }
        let idem = &refs.idempotency_key;
        if idem.is_empty() || idem.len() > IDEMPOTENCY_KEY_LEN_MAX {
            return Err(FieldError::Length { field: "idempotency_key", len: idem.len(), max: IDEMPOTENCY_KEY_LEN_MAX });
        }
        let mut w = Writer::with_capacity(160);
        w.u8(STATEMENT_FORMAT_V1);
        w.bytes(&self.stream.0);
        w.i64(self.effective_time.0);
        w.bytes8(self.event_type.as_str().as_bytes());
        w.bytes8(self.author.as_str().as_bytes());
        w.bytes(&self.key_id.0);
        w.bytes16(refs.court_order.as_deref().unwrap_or("").as_bytes());
        match &refs.causation {
            Some(h) => {
                w.u8(1);
                w.bytes(&h.0);
            }
            None => w.u8(0),
        }
        match &refs.correlation {
            Some(c) => {
                w.u8(1);
                w.bytes(c);
            }
            None => w.u8(0),
        }
        w.bytes8(idem);
        w.u8(self.payload_kind as u8);
        w.bytes(&self.commitment.0);
        debug_assert!(w.buf.len() <= STATEMENT_BYTES_MAX);
        Ok(w.buf)
    }

    /// Decodes a statement strictly.
    pub fn decode(bytes: &[u8]) -> Result<Statement, DecodeError> {
        if bytes.len() > STATEMENT_BYTES_MAX {
            return Err(DecodeError::TooLarge { what: "statement", len: bytes.len(), max: STATEMENT_BYTES_MAX });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("statement version")?;
        if version != STATEMENT_FORMAT_V1 {
            return Err(DecodeError::UnknownVersion { what: "statement", version });
        }
        let stream = StreamId(r.array("stream")?);
        let effective_time = Timestamp(r.i64("effective_time")?);
        let event_type = EventType::new(utf8(r.bytes8("event_type")?, "event_type")?)?;
        let author = PrincipalId::new(utf8(r.bytes8("author")?, "author")?)?;
        let key_id = KeyId(r.array("key_id")?);
        let order = r.bytes16("court_order")?;
        if order.len() > COURT_ORDER_LEN_MAX {
            return Err(FieldError::Length { field: "court_order", len: order.len(), max: COURT_ORDER_LEN_MAX }.into());
        }
        let court_order = if order.is_empty() { None } else { Some(utf8(order, "court_order")?) };
        let causation = if r.flag("causation")? { Some(Hash(r.array("causation")?)) } else { None };
        let correlation = if r.flag("correlation")? { Some(r.array("correlation")?) } else { None };
        let idem = r.bytes8("idempotency_key")?;
        if idem.is_empty() || idem.len() > IDEMPOTENCY_KEY_LEN_MAX {
            return Err(
                FieldError::Length { field: "idempotency_key", len: idem.len(), max: IDEMPOTENCY_KEY_LEN_MAX }.into()
            );
        }
        let payload_kind = PayloadKind::from_u8(r.u8("payload_kind")?)?;
        let commitment = Hash(r.array("commitment")?);
        r.finish("statement")?;
        Ok(Statement {
            stream,
            event_type,
            effective_time,
            author,
            key_id,
            refs: References { court_order, causation, correlation, idempotency_key: idem.to_vec() },
            payload_kind,
            commitment,
        })
    }
}

/// The exact message an author signs for statement bytes: `STATEMENT || statement`.
pub fn signing_message(statement_bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN_STATEMENT.len() + statement_bytes.len());
    m.extend_from_slice(DOMAIN_STATEMENT);
    m.extend_from_slice(statement_bytes);
    m
}

fn utf8(b: &[u8], field: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| FieldError::Charset { field, allowed: "UTF-8" }.into())
}

/// The fields of an entry that the ledger assigns when it appends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// Global position, gapless from 0.
    pub position: u64,
    /// Version within the stream, gapless from 0.
    pub stream_version: u64,
    /// Hash of the entry at `position - 1` (zero for position 0).
    pub prev_hash: Hash,
    /// Hash of the entry at `stream_version - 1` in this stream (zero for version 0).
    pub prev_stream_hash: Hash,
    /// The ledger's clock when it appended; never decreases along the log.
    pub recorded_time: Timestamp,
}

/// One stored entry, decoded, holding the exact bytes it came from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    bytes: Vec<u8>,
    /// The ledger-assigned fields.
    pub header: Header,
    /// The author's statement, decoded.
    pub statement: Statement,
    statement_range: Range<usize>,
    envelope_range: Range<usize>,
    /// The author's ed25519 signature over [`signing_message`] of the statement bytes.
    pub signature: [u8; 64],
}

impl Entry {
    /// Assembles an entry's bytes from its parts, then decodes them (so that an `Entry` always
    /// holds bytes that decode).
    pub fn assemble(
        header: &Header,
        statement_bytes: &[u8],
        envelope: &[u8],
        signature: &[u8; 64],
    ) -> Result<Entry, DecodeError> {
        let len = 1 + 8 + 8 + 32 + 32 + 8 + 2 + statement_bytes.len() + 4 + envelope.len() + 64;
        if len > ENTRY_BYTES_MAX {
            return Err(DecodeError::TooLarge { what: "entry", len, max: ENTRY_BYTES_MAX });
        }
        if statement_bytes.len() > STATEMENT_BYTES_MAX {
            return Err(DecodeError::TooLarge {
                what: "statement",
                len: statement_bytes.len(),
                max: STATEMENT_BYTES_MAX,
            });
        }
        let mut w = Writer::with_capacity(len);
        w.u8(ENTRY_FORMAT_V1);
        w.u64(header.position);
        w.u64(header.stream_version);
        w.bytes(&header.prev_hash.0);
        w.bytes(&header.prev_stream_hash.0);
        w.i64(header.recorded_time.0);
        w.bytes16(statement_bytes);
        w.u32(envelope.len() as u32);
        w.bytes(envelope);
        w.bytes(signature);
        Entry::decode(w.buf)
    }

    /// Decodes stored entry bytes strictly.
    pub fn decode(bytes: Vec<u8>) -> Result<Entry, DecodeError> {
        if bytes.len() > ENTRY_BYTES_MAX {
            return Err(DecodeError::TooLarge { what: "entry", len: bytes.len(), max: ENTRY_BYTES_MAX });
        }
        let mut r = Reader::new(&bytes);
        let version = r.u8("entry version")?;
        if version != ENTRY_FORMAT_V1 {
            return Err(DecodeError::UnknownVersion { what: "entry", version });
        }
        let header = Header {
            position: r.u64("position")?,
            stream_version: r.u64("stream_version")?,
            prev_hash: Hash(r.array("prev_hash")?),
            prev_stream_hash: Hash(r.array("prev_stream_hash")?),
            recorded_time: Timestamp(r.i64("recorded_time")?),
        };
        let statement_len = r.u16("statement length")? as usize;
        let statement_start = r.position();
        let statement = Statement::decode(r.take(statement_len, "statement")?)?;
        let envelope_len = r.u32("envelope length")? as usize;
        let envelope_start = r.position();
        r.take(envelope_len, "envelope")?;
        let signature = r.array("signature")?;
        r.finish("entry")?;
        Ok(Entry {
            header,
            statement,
            statement_range: statement_start..statement_start + statement_len,
            envelope_range: envelope_start..envelope_start + envelope_len,
            signature,
            bytes,
        })
    }

    /// The stored bytes, exactly.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives up the entry, keeping its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The statement's bytes as stored (what the author signed, after the domain prefix).
    pub fn statement_bytes(&self) -> &[u8] {
        &self.bytes[self.statement_range.clone()]
    }

    /// The payload envelope as stored (public: salt and payload; sealed: nonce and ciphertext).
    pub fn envelope(&self) -> &[u8] {
        &self.bytes[self.envelope_range.clone()]
    }

    /// `blake3(ENTRY || bytes)`.
    pub fn hash(&self) -> Hash {
        Hash::entry(&self.bytes)
    }

    /// Global position.
    pub fn position(&self) -> u64 {
        self.header.position
    }

    /// The message the author's signature covers.
    pub fn signing_message(&self) -> Vec<u8> {
        signing_message(self.statement_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_statement() -> Statement {
        Statement {
            stream: StreamId([7; 16]),
            event_type: EventType::new("records.arrest_recorded").unwrap(),
            effective_time: Timestamp(1_700_000_000_000_000),
            author: PrincipalId::new("clerk-1").unwrap(),
            key_id: KeyId([1; 8]),
            refs: References {
                court_order: Some("ORD-2024-17".into()),
                causation: Some(Hash([9; 32])),
                correlation: None,
                idempotency_key: b"req-1".to_vec(),
            },
            payload_kind: PayloadKind::Sealed,
            commitment: Hash([3; 32]),
        }
    }

    #[test]
    fn statement_round_trips_and_rejects_trailing() {
        let s = sample_statement();
        let b = s.encode().unwrap();
        assert_eq!(Statement::decode(&b).unwrap(), s);
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(Statement::decode(&longer), Err(DecodeError::Trailing { .. })));
        for cut in 0..b.len() {
            assert!(Statement::decode(&b[..cut]).is_err(), "prefix of {cut} bytes decoded");
        }
    }

    #[test]
    fn entry_round_trips_every_prefix_fails() {
        let s = sample_statement();
        let sb = s.encode().unwrap();
        let h = Header {
            position: 5,
            stream_version: 2,
            prev_hash: Hash([1; 32]),
            prev_stream_hash: Hash([2; 32]),
            recorded_time: Timestamp(10),
        };
        let e = Entry::assemble(&h, &sb, b"envelope", &[4; 64]).unwrap();
        assert_eq!(e.header, h);
        assert_eq!(e.statement, s);
        assert_eq!(e.envelope(), b"envelope");
        let again = Entry::decode(e.bytes().to_vec()).unwrap();
        assert_eq!(again, e);
        for cut in 0..e.bytes().len() {
            assert!(Entry::decode(e.bytes()[..cut].to_vec()).is_err());
        }
    }

    #[test]
    fn bad_flags_and_versions_are_refused() {
        let sb = sample_statement().encode().unwrap();
        let mut v = sb.clone();
        v[0] = 2;
        assert!(matches!(Statement::decode(&v), Err(DecodeError::UnknownVersion { .. })));
        let mut bad_kind = sb.clone();
        let n = bad_kind.len();
        bad_kind[n - 33] = 7;
        assert!(matches!(Statement::decode(&bad_kind), Err(DecodeError::BadTag { field: "payload_kind", value: 7 })));
    }

    #[test]
    fn event_types_are_checked() {
        assert!(EventType::new("a.b_c9").is_ok());
        assert!(EventType::new("A").is_err());
        assert!(EventType::new("").is_err());
        assert!(EventType::new("x".repeat(65)).is_err());
    }
}
