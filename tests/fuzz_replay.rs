//! Replays every fuzz corpus file and every past crash through the same target bodies the fuzzers
//! run (`fuzz/src/targets.rs`, included here), on the stable toolchain, so that a regression of
//! anything a fuzzer once found fails the ordinary test run. See docs/FUZZING.md.
//!
//! `cargo test --test fuzz_replay -- --ignored write_seeds` rewrites `fuzz/fixtures/` (the genuine
//! signed material the targets check against) and the seed corpora from a small ledger built here.

use std::path::{Path, PathBuf};

const FUZZ_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz");

#[allow(dead_code)]
#[path = "../fuzz/src/targets.rs"]
mod targets;

/// The corpus files and crash artifacts of a target.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["corpus", "artifacts"] {
        let dir = Path::new(FUZZ_DIR).join(kind).join(target);
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, body) = targets::TARGETS.iter().find(|(n, _)| *n == target).unwrap();
    let files = inputs(target);
    assert!(!files.is_empty(), "{target}: no corpus (run write_seeds, then fuzz)");
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| body(&data));
        assert!(r.is_ok(), "{target}: {} fails again", f.display());
    }
    println!("{target}: {} inputs replayed", files.len());
}

#[test]
fn entry_decode() {
    replay("entry_decode");
}

#[test]
fn record_event() {
    replay("record_event");
}

#[test]
fn import_line() {
    replay("import_line");
}

#[test]
fn evidence_bundle() {
    replay("evidence_bundle");
}

#[test]
fn checkpoint_note() {
    replay("checkpoint_note");
}

#[test]
fn witness_reply() {
    replay("witness_reply");
}

#[test]
fn grpc_request() {
    replay("grpc_request");
}

#[test]
fn every_target_is_replayed() {
    let here = std::fs::read_to_string(file!()).unwrap();
    for (name, _) in targets::TARGETS {
        assert!(here.contains(&format!("replay(\"{name}\")")), "{name} has no replay test");
        let bin = Path::new(FUZZ_DIR).join("fuzz_targets").join(format!("{name}.rs"));
        assert!(bin.exists(), "{name} has no fuzz binary at {}", bin.display());
    }
}

/// Writes `fuzz/fixtures/` and the seed corpora (named `seed-*`, so fuzzer finds stay apart).
#[test]
#[ignore = "rewrites fuzz/fixtures and the seed corpora"]
fn write_seeds() {
    use chronicle_core::{PrincipalId, Signer, Timestamp};
    use chronicle_proto::v1 as pb;
    use chronicle_records::RecordEvent;
    use chronicle_records::import::{Importer, Line, Planned};
    use prost::Message;

    let fuzz = Path::new(FUZZ_DIR);
    let fixtures = fuzz.join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let seed = |target: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz.join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };

    // A ledger of its own, with a checkpoint, a bundle with content and a witness's cosignature.
    let tmp = tempfile::tempdir().unwrap();
    let dir = chronicle::datadir::DataDir::new(tmp.path().join("ledger"), None);
    let init = dir.init("fuzz.chronicle.example/fixtures").unwrap();
    let clerk = Signer::from_seed(PrincipalId::new("clerk.fixtures").unwrap(), [9; 32]);
    let reg = chronicle_core::registry::RegistryEvent::register(
        clerk.principal().clone(),
        chronicle_core::registry::Role::RecordsClerk,
        &clerk.verifying_key(),
    );
    init.store
        .append(chronicle_store::AppendRequest {
            stream: chronicle_core::StreamId::REGISTRY,
            expected: chronicle_store::ExpectedVersion::Any,
            commands: vec![chronicle_core::Command::sign(&init.admin, reg.draft()).unwrap()],
        })
        .unwrap();
    let store = init.store.clone();
    let records = dir.open_records(init.store).unwrap();
    let imp = Importer::new(&clerk);
    for raw in targets::WORLD_LINES.lines() {
        let line: Line = serde_json::from_str(raw).unwrap();
        let Planned::Command(cmd) = imp.plan(&line, raw.as_bytes()).unwrap() else { panic!() };
        // Seeds: the import line, its event, its statement.
        let n = format!("{:02}", store.head().len);
        seed("import_line", &n, raw.as_bytes());
        let mut ev = cmd.statement().event_type.as_str().as_bytes().to_vec();
        ev.push(b'\n');
        ev.extend_from_slice(cmd.payload());
        seed("record_event", &n, &ev);
        seed("entry_decode", &format!("statement-{n}"), cmd.statement_bytes());
        records.submit(*cmd).unwrap();
    }
    for (i, raw) in [
        r#"{"op":"sentence","case":"A-1","seq":1,"kind":"probation","term_days":365,"date":"2024-05-01"}"#,
        r#"{"op":"expunge","case":"A-1","order_id":"EXP-3","statute":"PC 851.93","effective":"2024-07-01"}"#,
        r#"{"op":"expunge","subject":"P-1","order_id":"EXP-4","statute":"CPL 160.50","effective":"2024-07-02"}"#,
    ]
    .iter()
    .enumerate()
    {
        seed("import_line", &format!("more-{i}"), raw.as_bytes());
    }
    let note_signer = dir.note_signer().unwrap();
    let (_, size, note) =
        store.checkpoint_with_heads(&dir.ledger().unwrap(), &note_signer, "fuzz.chronicle.example/fixtures").unwrap();
    for p in 0..size {
        let e = store.entry(p).unwrap().unwrap();
        seed("entry_decode", &format!("entry-{p:02}"), e.bytes());
    }
    let log_key = dir.log_key().unwrap();
    let case = imp.stream("case", "A-1");
    let bundle = chronicle_store::evidence::build_bundle(&store, &case, &note, size, &log_key, true).unwrap();
    let bare = chronicle_store::evidence::build_bundle(&store, &case, &note, size, &log_key, false).unwrap();
    let witness = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let wname = "witness.fuzz.example";
    let text = chronicle_tlog::note::note_text(&note).unwrap();
    let cosig = chronicle_tlog::witness::cosign(wname, &witness, 1_790_000_000, &text);
    let wkey = chronicle_tlog::witness::witness_key(wname, &witness.verifying_key());

    std::fs::write(fixtures.join("log_key.txt"), format!("{log_key}\n")).unwrap();
    std::fs::write(fixtures.join("checkpoint.note"), &note).unwrap();
    std::fs::write(fixtures.join("bundle.json"), serde_json::to_vec_pretty(&bundle).unwrap()).unwrap();
    std::fs::write(fixtures.join("witness_key.txt"), format!("{wkey}\n")).unwrap();
    std::fs::write(fixtures.join("cosignature.txt"), &cosig).unwrap();

    seed("evidence_bundle", "content", &serde_json::to_vec(&bundle).unwrap());
    seed("evidence_bundle", "bare", &serde_json::to_vec(&bare).unwrap());
    seed("checkpoint_note", "note", &note);
    let mut cosigned = note.clone();
    cosigned.extend_from_slice(cosig.as_bytes());
    seed("checkpoint_note", "cosigned", &cosigned);
    seed("checkpoint_note", "log-key", log_key.as_bytes());
    seed("witness_reply", "reply", cosig.as_bytes());
    seed("witness_reply", "key", wkey.as_bytes());
    // A dictionary of event types and JSON tokens for the record_event and import_line targets.
    let mut dict = String::new();
    for tag in chronicle_records::model::TAGS {
        dict.push_str(&format!("\"records.{tag}\"\n\"\\\"{tag}\\\"\"\n"));
    }
    for tok in ["{", "}", "[", "]", ":", ",", "null", "true", "false", "\\\"event\\\"", "\\\"op\\\"", "\\\"seq\\\""] {
        dict.push_str(&format!("\"{tok}\"\n"));
    }
    std::fs::write(fuzz.join("json.dict"), dict).unwrap();
    drop(records);
    drop(store);

    // gRPC requests against the target's own ledger (its streams are derived from fixed keys).
    let m = |name: &str| targets::METHODS.iter().position(|x| *x == name).unwrap() as u8;
    let person = targets::world_stream("subject", "P-1");
    let case = targets::world_stream("case", "A-1");
    let clerk = Signer::from_seed(PrincipalId::new("clerk.fuzz").unwrap(), [1; 32]);
    let grpc = |name: &str, method: &str, caller: u8, body: Vec<u8>| {
        let mut b = vec![m(method), caller];
        b.extend_from_slice(&body);
        seed("grpc_request", name, &b);
    };
    let purpose = pb::Purpose::C as i32;
    for (i, who) in [(0u8, "clerk"), (4, "employer"), (7, "nobody"), (8, "anonymous")] {
        let rr = pb::RecordRequest { sid: "SID-1".into(), purpose, ..Default::default() };
        grpc(&format!("get-record-{who}"), "GetRecord", i, rr.encode_to_vec());
        let asof = pb::RecordRequest {
            subject_id: person.0.to_vec(),
            purpose: pb::Purpose::E as i32,
            as_effective_micros: 1_700_000_000_000_000,
            ..Default::default()
        };
        grpc(&format!("check-{who}"), "BackgroundCheck", i, asof.encode_to_vec());
        let c = pb::CaseRequest { docket: "CR-2024-001".into(), purpose, ..Default::default() };
        grpc(&format!("case-{who}"), "GetCase", i, c.encode_to_vec());
        let h = pb::HistoryRequest { stream: case.0.to_vec(), purpose, limit: 10, ..Default::default() };
        grpc(&format!("history-{who}"), "History", i, h.encode_to_vec());
        let r = pb::ResolveRequest { docket: "CR-2024-002".into(), purpose, ..Default::default() };
        grpc(&format!("resolve-{who}"), "Resolve", i, r.encode_to_vec());
        let rc = pb::RecipientsRequest { sid: "SID-1".into(), limit: 5, ..Default::default() };
        grpc(&format!("recipients-{who}"), "Recipients", i, rc.encode_to_vec());
        grpc(&format!("reproduce-{who}"), "Reproduce", i, pb::ReproduceRequest { position: 12 }.encode_to_vec());
        grpc(&format!("checkpoint-{who}"), "GetCheckpoint", i, pb::CheckpointRequest { tree_size: 0 }.encode_to_vec());
        let ip = pb::InclusionProofRequest { position: 3, tree_size: 9, ..Default::default() };
        grpc(&format!("inclusion-{who}"), "GetInclusionProof", i, ip.encode_to_vec());
        let cp = pb::ConsistencyProofRequest { first: 3, second: 9 };
        grpc(&format!("consistency-{who}"), "GetConsistencyProof", i, cp.encode_to_vec());
        let sub = pb::SubscribeRequest { from_position: 0 };
        grpc(&format!("subscribe-{who}"), "Subscribe", i, sub.encode_to_vec());
    }
    // Signed submissions: a disposition on the case, a seal order, an event in the wrong stream.
    let dispo = RecordEvent::parse(
        &chronicle_core::EventType::new("records.disposition_recorded").unwrap(),
        br#"{"event":"disposition_recorded","charge_seq":2,"disposition":"convicted","date":"2024-09-01"}"#,
    );
    let events: Vec<(String, chronicle_core::StreamId, RecordEvent)> = [
        ("sentence", case, r#"{"op":"sentence","case":"A-1","seq":1,"kind":"probation","term_days":365,"date":"2024-05-01"}"#),
        ("seal", case, r#"{"op":"order","case":"A-1","order_id":"SEAL-2","kind":"seal","scope":{"charges":[2]},"statute":"18 Pa.C.S. 9122.2","effective":"2024-06-01"}"#),
        ("enroll", person, r#"{"op":"enroll","ref":"P-2","sid":"SID-2","name":{"last":"ROE","first":"RICHARD"},"dob":"1985-01-01"}"#),
    ]
    .into_iter()
    .filter_map(|(n, stream, raw)| {
        let line: Line = serde_json::from_str(raw).unwrap();
        match Importer::new(&clerk).plan(&line, raw.as_bytes()).unwrap() {
            Planned::Command(cmd) => {
                let ev = RecordEvent::parse(&cmd.statement().event_type, cmd.payload()).unwrap();
                Some((n.to_string(), stream, ev))
            }
            Planned::Expunge(..) => None,
        }
    })
    .chain(dispo.ok().map(|ev| ("disposition".to_string(), case, ev)))
    .collect();
    for (n, stream, ev) in events {
        let cmd = targets::signed_command(&clerk, stream, &ev, Timestamp(1_717_000_000_000_000));
        let req = pb::SubmitRequest { stream: stream.0.to_vec(), expected: None, commands: vec![cmd] };
        grpc(&format!("submit-signed-{n}"), "SubmitSigned", 0, req.encode_to_vec());
        grpc(&format!("submit-signed-{n}-court"), "SubmitSigned", 1, req.encode_to_vec());
        grpc(&format!("submit-{n}"), "Submit", 0, req.encode_to_vec());
    }
}
