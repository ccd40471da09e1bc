//! The fuzz targets' bodies, one function per target, shared by the cargo-fuzz binaries
//! (`fuzz/fuzz_targets/`) and by the stable test that replays every corpus file and every past
//! crash (`tests/fuzz_replay.rs`, which includes this file). Each body feeds bytes from anywhere
//! outside (a disk, an import file, a bundle someone sent, a witness, a gRPC client) to the code
//! that reads them, and asserts more than "no panic": what decodes re-encodes to the same bytes,
//! what verifies is something the ledger really signed, the fast path and the derived parser agree,
//! and a server never answers INTERNAL to a caller's bytes.
//!
//! The parts that need genuine signed material (checkpoint, witness, evidence) read it from
//! `fuzz/fixtures/`, written with the seed corpora by `cargo test --test fuzz_replay -- --ignored
//! write_seeds`; the gRPC target builds a small ledger of its own once per process.

#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use chronicle_core::{Command, Draft, Entry, EventType, PrincipalId, Signer, Statement, StreamId, Timestamp};
use chronicle_records::RecordEvent;
use chronicle_records::import::{Importer, Line, Planned};
use chronicle_store::evidence::{Bundle, verify_bundle};
use chronicle_tlog::note::{note_text, verify_checkpoint};
use chronicle_tlog::witness::{parse_witness_key, verify_cosignature, witness_key};

/// A target's body: it is given the fuzzer's bytes, and panics on a finding.
pub type Body = fn(&[u8]);

/// Every target, by name: the directory names under `fuzz/corpus/` and `fuzz/artifacts/`.
pub const TARGETS: &[(&str, Body)] = &[
    ("entry_decode", entry_decode),
    ("record_event", record_event),
    ("import_line", import_line),
    ("evidence_bundle", evidence_bundle),
    ("checkpoint_note", checkpoint_note),
    ("witness_reply", witness_reply),
    ("grpc_request", grpc_request),
];

fn fixtures_dir() -> PathBuf {
    Path::new(super::FUZZ_DIR).join("fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (write it with write_seeds)", path.display()))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap().trim_end().to_string()
}

// ------------------------------------------------------------------------------------------------
// Stored bytes

/// Entry and statement decoding (what `verify`, readers, proofs and bundles do with stored bytes).
/// Decoding is strict and canonical: whatever decodes re-encodes to exactly the input, so no two
/// byte strings are the same entry or the same signed statement.
pub fn entry_decode(data: &[u8]) {
    if let Ok(st) = Statement::decode(data) {
        let again = st.encode().expect("a decoded statement encodes");
        assert_eq!(again, data, "statement decoding is not canonical");
    }
    if let Ok(e) = Entry::decode(data.to_vec()) {
        assert_eq!(e.bytes(), data);
        let st = Statement::decode(e.statement_bytes()).expect("an entry's statement decodes on its own");
        assert_eq!(st, e.statement);
        assert_eq!(st.encode().unwrap(), e.statement_bytes(), "entry's statement is not canonical");
        assert!(e.envelope().len() <= data.len());
        let _ = e.hash();
        let _ = e.signing_message();
    }
}

// ------------------------------------------------------------------------------------------------
// Records events and import lines

/// Record event parsing: `event type \n payload`. The hand-written fast path and the derived parser
/// must agree on every payload the fast path accepts, and a parsed event re-serializes to a payload
/// that parses to the same event under the same type.
pub fn record_event(data: &[u8]) {
    let Some(nl) = data.iter().position(|&b| b == b'\n') else { return };
    let Ok(ty) = std::str::from_utf8(&data[..nl]) else { return };
    let Ok(ty) = EventType::new(ty) else { return };
    let payload = &data[nl + 1..];
    let parsed = RecordEvent::parse(&ty, payload);
    let derived = serde_json::from_slice::<RecordEvent>(payload);
    if let Ok(ev) = &parsed {
        assert_eq!(ev.event_type(), ty, "parsed an event of another type");
        let derived = derived.as_ref().expect("the fast path accepted what the derived parser refuses");
        assert_eq!(derived, ev, "the fast path and the derived parser disagree");
        let again = RecordEvent::parse(&ty, &ev.to_payload()).expect("a serialized event parses");
        assert_eq!(&again, ev);
    } else if let Ok(ev) = &derived {
        // The derived parser accepted it, so parse refused only over the type.
        assert_ne!(ev.event_type(), ty, "parse refused a payload of its own type: {parsed:?}");
    }
}

fn importer() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| Signer::from_seed(PrincipalId::new("clerk.fuzz").unwrap(), [7; 32]))
}

/// One import line, parsed and planned as `chronicle import` does. Planning is deterministic (a
/// second import of the same file must produce the same commands, which the ledger treats as
/// retries), and every command it makes is well-formed.
pub fn import_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(line) = serde_json::from_str::<Line>(text) else { return };
    let imp = Importer::new(importer());
    let first = imp.plan(&line, data);
    let second = imp.plan(&line, data);
    match (first, second) {
        (Ok(Planned::Command(a)), Ok(Planned::Command(b))) => {
            assert_eq!(a.statement_bytes(), b.statement_bytes(), "import planning is not deterministic");
            assert_eq!(a.payload(), b.payload());
            let st = Statement::decode(a.statement_bytes()).expect("a planned statement decodes");
            assert_eq!(st.author, *importer().principal());
            let ev = RecordEvent::parse(&st.event_type, a.payload()).expect("a planned payload parses");
            assert_eq!(ev.event_type(), st.event_type);
            Command::from_parts(a.statement_bytes().to_vec(), *a.salt(), a.payload().to_vec(), *a.signature())
                .expect("a planned command reassembles");
        }
        (Ok(Planned::Expunge(t1, k1, o1, s1, e1)), Ok(Planned::Expunge(t2, k2, o2, s2, e2))) => {
            assert_eq!((t1, k1, o1, s1, e1), (t2, k2, o2, s2, e2), "import planning is not deterministic");
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("import planning is not deterministic: {:?} then {:?}", a.is_ok(), b.is_ok()),
    }
}

// ------------------------------------------------------------------------------------------------
// What outsiders send back: evidence bundles, checkpoints, witness replies

struct Genuine {
    log_key: String,
    checkpoint_text: Vec<u8>,
    entry_hashes: HashSet<[u8; 32]>,
    witness_key: String,
    cosignature: String,
}

fn genuine() -> &'static Genuine {
    static G: OnceLock<Genuine> = OnceLock::new();
    G.get_or_init(|| {
        let log_key = fixture_text("log_key.txt");
        let note = fixture("checkpoint.note");
        let checkpoint_text = note_text(&note).unwrap();
        verify_checkpoint(&note, &log_key).expect("the fixture checkpoint verifies");
        let bundle: Bundle = serde_json::from_slice(&fixture("bundle.json")).unwrap();
        verify_bundle(&bundle, &log_key).expect("the fixture bundle verifies");
        let mut entry_hashes = HashSet::new();
        for p in bundle.entries.iter().chain(&bundle.registry) {
            entry_hashes.insert(Entry::decode(p.leaf_bytes().unwrap()).unwrap().hash().0);
        }
        let witness_key = fixture_text("witness_key.txt");
        let cosignature = fixture_text("cosignature.txt");
        Genuine { log_key, checkpoint_text, entry_hashes, witness_key, cosignature }
    })
}

/// An evidence bundle as `verify-evidence` reads it. Whatever verifies proves only entries the
/// ledger really holds (those of the genuine bundle the fixtures keep).
pub fn evidence_bundle(data: &[u8]) {
    let g = genuine();
    let Ok(bundle) = serde_json::from_slice::<Bundle>(data) else { return };
    if let Ok(proven) = verify_bundle(&bundle, &g.log_key) {
        for p in bundle.entries.iter().chain(&bundle.registry) {
            let e = Entry::decode(p.leaf_bytes().unwrap()).unwrap();
            assert!(g.entry_hashes.contains(&e.hash().0), "a bundle proved an entry the ledger never held");
        }
        assert!(proven.entries > 0);
        let _ = proven.describe();
    }
}

/// A checkpoint note (what a relying party, a witness or `verify --trusted-checkpoint` reads).
/// Only the text the ledger signed verifies under its key, however the note around it is changed.
pub fn checkpoint_note(data: &[u8]) {
    let g = genuine();
    let _ = note_text(data);
    if let Ok(cp) = verify_checkpoint(data, &g.log_key) {
        assert_eq!(note_text(data).unwrap(), g.checkpoint_text, "a checkpoint the ledger never signed verifies");
        assert!(cp.size > 0);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chronicle_tlog::note::parse_verifier_key(text);
    }
}

/// A witness's reply (cosignature lines, as `witness add-cosignature --file` reads them) and a
/// witness key. Only the cosignature the witness made verifies; a key parses only in its one
/// canonical spelling.
pub fn witness_reply(data: &[u8]) {
    let g = genuine();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (name, key) = parse_witness_key(&g.witness_key).unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if verify_cosignature(line, &name, &key, &g.checkpoint_text).is_ok() {
            assert_eq!(line.trim_end_matches('\n'), g.cosignature, "a cosignature the witness never made verifies");
        }
        if let Ok((n, k)) = parse_witness_key(line) {
            assert_eq!(witness_key(&n, &k), line.trim(), "a witness key parses in a second spelling");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// gRPC requests into the service layer

/// The ledger the gRPC target calls, built once per process in a temporary directory.
struct World {
    _tmp: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    shared: Arc<chronicle_server::Shared>,
    callers: Vec<Signer>,
}

/// The principals of the gRPC target's ledger, one per role that calls the server.
const CALLERS: &[(&str, chronicle_core::registry::Role)] = {
    use chronicle_core::registry::Role::*;
    &[
        ("clerk.fuzz", RecordsClerk),
        ("court.fuzz", Court),
        ("police.fuzz", LawEnforcement),
        ("prosecutor.fuzz", Prosecutor),
        ("employer.fuzz", Employer),
        ("screening.fuzz", BackgroundCheck),
        ("auditor.fuzz", Auditor),
    ]
};

/// The import lines the gRPC target's ledger starts with (a person, two cases, a seal).
pub const WORLD_LINES: &str = r#"{"op":"enroll","ref":"P-1","sid":"SID-1","fbi":"FBI-1","name":{"last":"DOE","first":"JANE"},"dob":"1990-04-01"}
{"op":"arrest","ref":"A-1","subject":"P-1","tracking_number":"OTN-1","agency_ori":"ZZ0070000","arrest_date":"2024-03-01","charges":[{"seq":1,"statute":"13-1802","offense_code":"2399","literal":"THEFT","level":"misdemeanor","counts":1},{"seq":2,"statute":"13-1203","offense_code":"1313","literal":"ASSAULT","level":"misdemeanor","counts":1}]}
{"op":"court_case","case":"A-1","court_ori":"ZZ007015J","docket":"CR-2024-001"}
{"op":"disposition","case":"A-1","seq":1,"disposition":"guilty_plea","date":"2024-05-01"}
{"op":"disposition","case":"A-1","seq":2,"disposition":"dismissed","date":"2024-05-01"}
{"op":"order","case":"A-1","order_id":"SEAL-1","kind":"seal","scope":{"charges":[1]},"statute":"18 Pa.C.S. 9122.2","effective":"2024-06-01"}
{"op":"arrest","ref":"A-2","subject":"P-1","tracking_number":"OTN-2","agency_ori":"ZZ0070000","arrest_date":"2024-08-01","charges":[{"seq":1,"statute":"13-1802","offense_code":"2399","literal":"THEFT","level":"felony","counts":1}]}
{"op":"court_case","case":"A-2","court_ori":"ZZ007015J","docket":"CR-2024-002"}
"#;

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = chronicle::datadir::DataDir::new(tmp.path().join("ledger"), None);
        let init = dir.init("fuzz.chronicle.example/ledger").unwrap();
        let callers: Vec<Signer> = CALLERS
            .iter()
            .enumerate()
            .map(|(i, (name, _))| Signer::from_seed(PrincipalId::new(*name).unwrap(), [i as u8 + 1; 32]))
            .collect();
        let registrations = callers
            .iter()
            .zip(CALLERS)
            .map(|(s, (_, role))| {
                let ev =
                    chronicle_core::registry::RegistryEvent::register(s.principal().clone(), *role, &s.verifying_key());
                Command::sign(&init.admin, ev.draft()).unwrap()
            })
            .collect();
        init.store
            .append(chronicle_store::AppendRequest {
                stream: StreamId::REGISTRY,
                expected: chronicle_store::ExpectedVersion::Any,
                commands: registrations,
            })
            .unwrap();
        let records = dir.open_records(init.store).unwrap();
        let imp = Importer::new(&callers[0]);
        for raw in WORLD_LINES.lines() {
            let line: Line = serde_json::from_str(raw).unwrap();
            match imp.plan(&line, raw.as_bytes()).unwrap() {
                Planned::Command(cmd) => {
                    records.submit(*cmd).unwrap();
                }
                Planned::Expunge(..) => unreachable!("the world has no expungement"),
            }
        }
        let shared = Arc::new(chronicle_server::Shared {
            records,
            ledger: init.ledger,
            note: dir.note_signer().unwrap(),
            origin: "fuzz.chronicle.example/ledger".into(),
            tls: false,
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        World { _tmp: tmp, rt, shared, callers }
    })
}

/// The methods the gRPC target calls, in the order of the input's first byte.
pub const METHODS: &[&str] = &[
    "Submit",
    "SubmitSigned",
    "GetRecord",
    "BackgroundCheck",
    "GetCase",
    "History",
    "Resolve",
    "Recipients",
    "Reproduce",
    "GetCheckpoint",
    "GetInclusionProof",
    "GetConsistencyProof",
    "Subscribe",
];

/// A gRPC request as the service layer receives it after transport: the first byte picks the
/// method, the second the caller (a registered principal of each role, an unregistered name, or
/// none), the rest is the request's protobuf bytes. `SubmitSigned` re-signs each command's
/// statement with the caller's key (and commits to its payload), so that fuzzed events get past
/// the signature check into validation. However bad the bytes, the answer is a status the caller
/// can act on: never INTERNAL or UNKNOWN, and nothing found damaged.
pub fn grpc_request(data: &[u8]) {
    use chronicle_proto::v1 as pb;
    use pb::ledger_server::Ledger;
    use pb::proofs_server::Proofs;
    use pb::records_server::Records;
    use prost::Message;

    let [method, who, body @ ..] = data else { return };
    let w = world();
    let method = METHODS[*method as usize % METHODS.len()];
    let caller: Option<&str> = match *who as usize % (w.callers.len() + 2) {
        i if i < w.callers.len() => Some(w.callers[i].principal().as_str()),
        i if i == w.callers.len() => Some("nobody.fuzz"),
        _ => None,
    };
    fn req<T>(msg: T, caller: Option<&str>) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(c) = caller
            && let Ok(v) = c.parse()
        {
            r.metadata_mut().insert(chronicle_server::PRINCIPAL_HEADER, v);
        }
        r
    }
    let ledger = chronicle_server::services::LedgerService(w.shared.clone());
    let records = chronicle_server::services::RecordsService(w.shared.clone());
    let proofs = chronicle_server::services::ProofsService(w.shared.clone());
    let signer = w.callers.iter().find(|s| Some(s.principal().as_str()) == caller);
    let status: Option<tonic::Status> = w.rt.block_on(async {
        macro_rules! call {
            ($svc:expr, $m:ident, $ty:ty) => {{
                let Ok(msg) = <$ty>::decode(body) else { return None };
                $svc.$m(req(msg, caller)).await.err()
            }};
        }
        match method {
            "Submit" => call!(ledger, submit, pb::SubmitRequest),
            "SubmitSigned" => {
                let Ok(mut msg) = pb::SubmitRequest::decode(body) else { return None };
                if let Some(s) = signer {
                    for c in &mut msg.commands {
                        resign(s, c);
                    }
                }
                ledger.submit(req(msg, caller)).await.err()
            }
            "GetRecord" => call!(records, get_record, pb::RecordRequest),
            "BackgroundCheck" => call!(records, background_check, pb::RecordRequest),
            "GetCase" => call!(records, get_case, pb::CaseRequest),
            "History" => call!(records, history, pb::HistoryRequest),
            "Resolve" => call!(records, resolve, pb::ResolveRequest),
            "Recipients" => call!(records, recipients, pb::RecipientsRequest),
            "Reproduce" => call!(records, reproduce, pb::ReproduceRequest),
            "GetCheckpoint" => call!(proofs, get_checkpoint, pb::CheckpointRequest),
            "GetInclusionProof" => call!(proofs, get_inclusion_proof, pb::InclusionProofRequest),
            "GetConsistencyProof" => call!(proofs, get_consistency_proof, pb::ConsistencyProofRequest),
            "Subscribe" => {
                let Ok(msg) = pb::SubscribeRequest::decode(body) else { return None };
                match ledger.subscribe(req(msg, caller)).await {
                    Ok(stream) => {
                        use tokio_stream::StreamExt;
                        let mut s = stream.into_inner();
                        match tokio::time::timeout(std::time::Duration::from_millis(20), s.next()).await {
                            Ok(Some(Err(status))) => Some(status),
                            _ => None,
                        }
                    }
                    Err(s) => Some(s),
                }
            }
            _ => unreachable!(),
        }
    });
    static TRACE: OnceLock<bool> = OnceLock::new();
    if *TRACE.get_or_init(|| std::env::var_os("CHRONICLE_FUZZ_TRACE").is_some()) {
        eprintln!("{method} as {caller:?}: {:?}", status.as_ref().map(|s| (s.code(), s.message())));
    }
    if let Some(s) = status {
        assert!(
            !matches!(s.code(), tonic::Code::Internal | tonic::Code::Unknown),
            "{method} answered {:?}: {}",
            s.code(),
            s.message()
        );
    }
    assert!(!w.shared.records.store().damage_found(), "the store found damage after {method}");
}

/// Signs a fuzzed command's statement as `signer` (author and key id replaced), committing to its
/// payload under its salt, so that it passes the signature and commitment checks.
fn resign(signer: &Signer, c: &mut chronicle_proto::v1::SignedCommand) {
    let Ok(mut st) = Statement::decode(&c.statement) else { return };
    let Ok(salt) = <[u8; chronicle_core::payload::SALT_LEN]>::try_from(c.salt.as_slice()) else { return };
    st.author = signer.principal().clone();
    st.key_id = signer.key_id();
    st.commitment = chronicle_core::payload::commitment(&salt, &c.payload);
    let Ok(bytes) = st.encode() else { return };
    c.signature = signer.sign_statement(&bytes).to_vec();
    c.statement = bytes;
}

/// A command of `signer` as a SubmitSigned seed would carry it.
pub fn signed_command(
    signer: &Signer,
    stream: StreamId,
    event: &RecordEvent,
    effective: Timestamp,
) -> chronicle_proto::v1::SignedCommand {
    let d: Draft = chronicle_records::service::draft(stream, event, effective, None, b"fuzz-seed".to_vec());
    let cmd = Command::sign(signer, d).unwrap();
    chronicle_proto::v1::SignedCommand {
        statement: cmd.statement_bytes().to_vec(),
        salt: cmd.salt().to_vec(),
        payload: cmd.payload().to_vec(),
        signature: cmd.signature().to_vec(),
    }
}

/// The stream id the gRPC target's ledger gives an import reference (`kind` "subject" or "cycle").
pub fn world_stream(kind: &str, reference: &str) -> StreamId {
    Importer::new(&world().callers[0]).stream(kind, reference)
}
