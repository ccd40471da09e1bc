//! Known-answer vectors for the entry format (docs/FORMAT.md). These bytes are set in stone: a
//! change to any of them means stored ledgers no longer verify. Do not update the expected values
//! to make a test pass; add a new format version instead.

use chronicle_core::payload::{SymmetricKey, commitment, danger_seal_with_nonce, open_sealed};
use chronicle_core::sign::verify_statement;
use chronicle_core::{
    Command, Draft, Entry, EventType, Hash, Header, KeyId, PayloadKind, PrincipalId, References, Signer, StreamId,
    Timestamp,
};

fn signer() -> Signer {
    Signer::from_seed(PrincipalId::new("clerk-1").unwrap(), [0x11; 32])
}

fn command() -> Command {
    let draft = Draft {
        stream: StreamId([0xab; 16]),
        event_type: EventType::new("records.charge_filed").unwrap(),
        effective_time: Timestamp(1_700_000_000_000_000),
        refs: References {
            court_order: Some("ORD-2024-0017".into()),
            causation: Some(Hash([0xcc; 32])),
            correlation: Some([0xdd; 16]),
            idempotency_key: b"import-line-42".to_vec(),
        },
        payload_kind: PayloadKind::Sealed,
        payload: br#"{"seq":1,"statute":"13-1802","literal":"THEFT"}"#.to_vec(),
    };
    Command::sign_with_salt(&signer(), draft, [0x22; 32]).unwrap()
}

fn header() -> Header {
    Header {
        position: 42,
        stream_version: 3,
        prev_hash: Hash([0x33; 32]),
        prev_stream_hash: Hash([0x44; 32]),
        recorded_time: Timestamp(1_700_000_123_456_789),
    }
}

const KEY_ID: &str = "50e5dc80a00f3931";
const COMMITMENT: &str = "f1a93b6fd1e682bdd333bd76a76be880d5929f615284fec621c6f3cb6c473d5c";
const STATEMENT: &str = "01abababababababababababababababab00060a24181e4000147265636f7264732e6368617267655f66696c656407636c65726b2d3150e5dc80a00f3931000d4f52442d323032342d3030313701cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc01dddddddddddddddddddddddddddddddd0e696d706f72742d6c696e652d343201f1a93b6fd1e682bdd333bd76a76be880d5929f615284fec621c6f3cb6c473d5c";
const SIGNATURE: &str = "c5f79f74dc32ca4acce5fbbc93375120221287561cabefaa94a888347dcebe9e8602cbea475f3bd032257140d8898cacc776da95fec1eb8574a7ef34860a8608";
const ENVELOPE: &str = "6666666666666666666666666666666666666666666666669504db8f547677d2e7cf52cd68757f1b1282db68e98740119457d3c1065ec16bb3063d19bb92da0835586c4b249494acd73f502245ebf5abaa150e22970615b05f7301cd03b48ef9c76cecbbadd9ad33856faca12a33afcb01dd5cbc21b23e";
const ENTRY: &str = "01000000000000002a00000000000000033333333333333333333333333333333333333333333333333333333333333333444444444444444444444444444444444444444444444444444444444444444400060a241f7a0d1500af01abababababababababababababababab00060a24181e4000147265636f7264732e6368617267655f66696c656407636c65726b2d3150e5dc80a00f3931000d4f52442d323032342d3030313701cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc01dddddddddddddddddddddddddddddddd0e696d706f72742d6c696e652d343201f1a93b6fd1e682bdd333bd76a76be880d5929f615284fec621c6f3cb6c473d5c000000776666666666666666666666666666666666666666666666669504db8f547677d2e7cf52cd68757f1b1282db68e98740119457d3c1065ec16bb3063d19bb92da0835586c4b249494acd73f502245ebf5abaa150e22970615b05f7301cd03b48ef9c76cecbbadd9ad33856faca12a33afcb01dd5cbc21b23ec5f79f74dc32ca4acce5fbbc93375120221287561cabefaa94a888347dcebe9e8602cbea475f3bd032257140d8898cacc776da95fec1eb8574a7ef34860a8608";
const ENTRY_HASH: &str = "1779f3941ad1039a9d7e1140d4476a295fb86b1f23af22e46e657abc791e72c3";

fn envelope(c: &Command) -> Vec<u8> {
    danger_seal_with_nonce(
        &SymmetricKey::from_bytes([0x55; 32]),
        [0x66; 24],
        &c.statement().commitment,
        c.salt(),
        c.payload(),
    )
}

#[test]
fn key_id_is_pinned() {
    assert_eq!(signer().key_id(), KeyId::from_hex(KEY_ID).unwrap());
    assert_eq!(signer().key_id(), KeyId::of(&signer().verifying_key().to_bytes()));
}

#[test]
fn commitment_and_statement_are_pinned() {
    let c = command();
    assert_eq!(c.statement().commitment.to_hex(), COMMITMENT);
    assert_eq!(commitment(&[0x22; 32], c.payload()).to_hex(), COMMITMENT);
    assert_eq!(hex::encode(c.statement_bytes()), STATEMENT);
}

#[test]
fn signature_is_pinned_and_verifies() {
    let c = command();
    assert_eq!(hex::encode(c.signature()), SIGNATURE);
    assert!(verify_statement(&signer().verifying_key(), c.statement_bytes(), c.signature()));
    let mut message = b"chronicle.statement.v1\n".to_vec();
    message.extend_from_slice(&hex::decode(STATEMENT).unwrap());
    let sig = ed25519_dalek::Signature::from_bytes(&hex::decode(SIGNATURE).unwrap().try_into().unwrap());
    signer().verifying_key().verify_strict(&message, &sig).unwrap();
}

#[test]
fn sealed_envelope_is_pinned_and_opens() {
    let c = command();
    let env = envelope(&c);
    assert_eq!(hex::encode(&env), ENVELOPE);
    let opened = open_sealed(&SymmetricKey::from_bytes([0x55; 32]), &c.statement().commitment, &env).unwrap();
    assert_eq!(&opened[..], c.payload());
}

#[test]
fn entry_bytes_and_hash_are_pinned() {
    let c = command();
    let e = Entry::assemble(&header(), c.statement_bytes(), &envelope(&c), c.signature()).unwrap();
    assert_eq!(hex::encode(e.bytes()), ENTRY);
    assert_eq!(e.hash().to_hex(), ENTRY_HASH);
    // The hash is blake3 over the domain string and the stored bytes, nothing else.
    let mut h = blake3::Hasher::new();
    h.update(b"chronicle.entry.v1\n");
    h.update(&hex::decode(ENTRY).unwrap());
    assert_eq!(hex::encode(h.finalize().as_bytes()), ENTRY_HASH);
    // Decoding the pinned bytes gives back every field.
    let d = Entry::decode(hex::decode(ENTRY).unwrap()).unwrap();
    assert_eq!(d.header, header());
    assert_eq!(d.statement, *c.statement());
    assert_eq!(d.statement_bytes(), c.statement_bytes());
    assert_eq!(d.signature, *c.signature());
}

#[test]
fn entry_layout_offsets_match_the_format_document() {
    let e = Entry::decode(hex::decode(ENTRY).unwrap()).unwrap();
    let b = e.bytes();
    assert_eq!(b[0], 1, "format version");
    assert_eq!(&b[1..9], &42u64.to_be_bytes(), "position, big-endian");
    assert_eq!(&b[9..17], &3u64.to_be_bytes(), "stream version");
    assert_eq!(&b[17..49], &[0x33; 32], "previous entry hash");
    assert_eq!(&b[49..81], &[0x44; 32], "previous hash in stream");
    assert_eq!(&b[81..89], &1_700_000_123_456_789i64.to_be_bytes(), "recorded time");
    let slen = u16::from_be_bytes([b[89], b[90]]) as usize;
    assert_eq!(&b[91..91 + slen], e.statement_bytes());
    let elen = u32::from_be_bytes(b[91 + slen..95 + slen].try_into().unwrap()) as usize;
    assert_eq!(&b[95 + slen..95 + slen + elen], e.envelope());
    assert_eq!(b.len(), 95 + slen + elen + 64, "signature last");
}
