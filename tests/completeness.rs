//! Evidence proves completeness: a bundle carries the ledger's heads commitment (the checkpoint's
//! last entry) and the heads-map proofs of its stream and of the registry, so that leaving out
//! any entry (from the end, from the middle, a registry revocation) is caught offline; `verify`
//! recomputes every commitment from the log, so a commitment that lies is caught too.

mod common;

use chronicle_core::{Command, Draft, EventType, PayloadKind, References, RegistryEvent, Role, StreamId, Timestamp};
use chronicle_store::evidence::{Bundle, EvidenceError, build_bundle, verify_bundle};
use chronicle_store::{ExpectedVersion, Fault, verify_log};
use common::{Ledger, record, stream};

/// A ledger with stream `s` of `n` entries (other streams moving in between), and a registry
/// whose last entry revokes a key.
fn ledger_with(n: usize) -> (Ledger, StreamId) {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    let s = stream("case");
    for i in 0..n {
        l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, &format!("k{i}"), &format!("{{\"i\":{i}}}"))])
            .unwrap();
        let o = stream(&format!("other{}", i % 3));
        l.append(o, ExpectedVersion::Any, vec![record(&clerk, o, &format!("o{i}"), "{}")]).unwrap();
    }
    let agency = l.principal("agency.sp", Role::LawEnforcement);
    let revoke =
        Command::sign(&l.admin, RegistryEvent::revoke(agency.principal().clone(), agency.key_id(), "key lost").draft())
            .unwrap();
    l.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![revoke]).unwrap();
    (l, s)
}

fn bundle(l: &Ledger, s: StreamId) -> (Bundle, String) {
    let origin = l.dir.info().unwrap().origin;
    let (_, size, note) =
        l.store.checkpoint_with_heads(&l.dir.ledger().unwrap(), &l.dir.note_signer().unwrap(), &origin).unwrap();
    let key = l.dir.log_key().unwrap();
    (build_bundle(&l.store, &s, &note, size, &key, true).unwrap(), key)
}

fn incomplete(r: Result<chronicle_store::evidence::Proven, EvidenceError>) -> String {
    match r {
        Err(EvidenceError::Incomplete(why)) => why,
        other => panic!("expected the bundle to be found incomplete, got {other:?}"),
    }
}

#[test]
fn leaving_out_any_entry_or_a_registry_revocation_makes_the_bundle_fail() {
    let (l, s) = ledger_with(7);
    let (b, key) = bundle(&l, s);
    // Untouched, it verifies with the log key alone, and says up to which size it is complete.
    let proven = verify_bundle(&b, &key).unwrap();
    assert_eq!(proven.entries, 7);
    assert_eq!(proven.commitment_position + 1, proven.tree_size);
    assert!(proven.complete_at <= proven.commitment_position);
    assert!(proven.describe().contains("had exactly these entries"), "{}", proven.describe());

    // The last entry left out (a seal order, a dismissal): the chain still holds, the head does not.
    let mut t = b.clone();
    t.entries.pop();
    t.content.pop();
    let why = incomplete(verify_bundle(&t, &key));
    assert!(why.contains("had 7 entries") && why.contains("up to version 5"), "{why}");

    // A middle entry left out: the chain is broken there.
    let mut t = b.clone();
    t.entries.remove(3);
    t.content.remove(3);
    assert!(matches!(verify_bundle(&t, &key), Err(EvidenceError::Chain { version: 3, .. })));

    // Both: the last two gone, so the chain holds from 0 to 4.
    let mut t = b.clone();
    t.entries.truncate(5);
    t.content.truncate(5);
    incomplete(verify_bundle(&t, &key));

    // The registry's last entry (a revocation) left out.
    let mut t = b.clone();
    let revocation = t.registry.pop().unwrap();
    assert!(String::from_utf8_lossy(&revocation.leaf_bytes().unwrap()).contains("key lost"));
    let why = incomplete(verify_bundle(&t, &key));
    assert!(why.contains("registry"), "{why}");

    // The stream's head proof swapped for another stream's, or altered.
    let other = stream("other0");
    let (ob, _) = bundle(&l, other);
    let mut t = b.clone();
    t.completeness.stream_head = ob.completeness.stream_head.clone();
    assert!(matches!(verify_bundle(&t, &key), Err(EvidenceError::Incomplete(_))));
    let mut t = b.clone();
    t.completeness.stream_head.version -= 1;
    assert!(matches!(verify_bundle(&t, &key), Err(EvidenceError::Incomplete(_))));

    // The commitment swapped for another entry of the log (here the first entry of the stream).
    let mut t = b.clone();
    t.completeness.commitment = t.entries[0].clone();
    let why = incomplete(verify_bundle(&t, &key));
    assert!(why.contains("not a heads commitment"), "{why}");
}

#[test]
fn an_older_commitment_cannot_make_a_newer_checkpoint_look_complete_with_entries_dropped() {
    let (l, s) = ledger_with(6);
    let (old, key) = bundle(&l, s);
    let clerk_entry = {
        let clerk = chronicle_core::Signer::generate(chronicle_core::PrincipalId::new("clerk2").unwrap());
        let cmd = Command::sign(
            &l.admin,
            RegistryEvent::register(clerk.principal().clone(), Role::RecordsClerk, &clerk.verifying_key()).draft(),
        )
        .unwrap();
        l.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![cmd]).unwrap();
        clerk
    };
    l.append(s, ExpectedVersion::Any, vec![record(&clerk_entry, s, "late", "{\"sealed\":true}")]).unwrap();
    let (new, _) = bundle(&l, s);
    assert_eq!(verify_bundle(&new, &key).unwrap().entries, 7);
    assert_eq!(verify_bundle(&old, &key).unwrap().entries, 6, "the old bundle is still true of its own size");

    // The new checkpoint with the old commitment (proven included at the new size, as anyone
    // with the log can) and its head proofs, the late entry dropped.
    let mut t = new.clone();
    t.completeness = old.completeness.clone();
    let at = old.completeness.commitment.leaf_index;
    let new_size = new.completeness.commitment.tree_size;
    let path = l.store.inclusion_proof(at, new_size).unwrap();
    let leaf = old.completeness.commitment.leaf_bytes().unwrap();
    t.completeness.commitment = chronicle_tlog::InclusionProof::new(at, new_size, &leaf, &path);
    t.entries.pop();
    t.content.pop();
    let why = incomplete(verify_bundle(&t, &key));
    assert!(why.contains("not the last entry of the checkpoint"), "{why}");
}

#[test]
fn the_cli_names_what_is_missing_and_exits_1() {
    let (l, s) = ledger_with(5);
    let (b, key) = bundle(&l, s);
    let tmp = tempfile::tempdir().unwrap();
    let check = |bundle: &Bundle, at_least: u64| {
        let path = tmp.path().join("bundle.json");
        std::fs::write(&path, serde_json::to_vec(bundle).unwrap()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .args(["verify-evidence", path.to_str().unwrap(), "--log-key", &key, "--json"])
            .args(["--at-least", &at_least.to_string()])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    };
    let (code, v) = check(&b, 0);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["proven"]["entries"], 5);
    let at = v["proven"]["complete_at"].as_u64().unwrap();
    assert!(at > 0);
    assert_eq!(check(&b, at).0, Some(0));
    // A checker holding a later checkpoint refuses a bundle complete only at an earlier size.
    let (code, v) = check(&b, at + 1);
    assert_eq!(code, Some(1));
    assert!(v["reason"].as_str().unwrap().starts_with("stale:"), "{v}");
    let mut t = b.clone();
    t.entries.pop();
    t.content.pop();
    let (code, v) = check(&t, 0);
    assert_eq!(code, Some(1));
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.starts_with("incomplete:") && reason.contains("had 5 entries"), "{reason}");
}

/// Commitments made while appenders run are each the heads at their size, as `verify`
/// recomputes them from the log (the map is kept by the syncer as groups are published); the
/// map built again at a restart goes on from where it was.
#[test]
fn commitments_made_while_appending_and_after_a_restart_are_what_verify_recomputes() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    let ledger = l.dir.ledger().unwrap();
    let made = std::thread::scope(|scope| {
        for t in 0..4 {
            let (l, clerk) = (&l, &clerk);
            scope.spawn(move || {
                for i in 0..150 {
                    let s = stream(&format!("t{t}-{}", i % 7));
                    l.append(s, ExpectedVersion::Any, vec![record(clerk, s, &format!("{t}-{i}"), "{}")]).unwrap();
                }
            });
        }
        let mut made = Vec::new();
        for _ in 0..20 {
            made.push(l.store.commit_stream_heads(&ledger).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        made
    });
    assert!(made.windows(2).all(|w| w[1].size > w[0].position || w[1] == w[0]));
    for c in &made {
        let map = l.store.heads_map_of(c).unwrap();
        assert_eq!(map.root(), c.root);
        let rebuilt = chronicle_tlog::heads::HeadsMap::new(l.store.stream_heads_at(c.size).unwrap()).unwrap();
        assert_eq!(rebuilt.root(), c.root, "the commitment at size {} is the heads at that size", c.size);
    }
    let (tmp, dir) = l.close();
    let l = Ledger::reopen(tmp, dir);
    let s = stream("t0-1");
    l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "after", "{}")]).unwrap();
    let after = l.store.commit_stream_heads(&ledger).unwrap();
    let (tmp, dir) = l.close();
    let report = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.fault);
    assert!(report.heads_commitments >= 2, "{report:?}");
    // The same when `verify` holds few heads in memory and reads the rest from the log again.
    for held in [0, 1, 2, 7, 64] {
        let r = chronicle_store::verify_log_holding(&dir.log_dir(), held).unwrap();
        assert!(r.is_ok(), "holding {held}: {:?}", r.fault);
        assert_eq!(r.heads_commitments, report.heads_commitments);
    }
    drop((tmp, after));
}

fn heads_entry(l: &Ledger, key: &[u8], body: String) -> Command {
    Command::sign(
        &l.dir.ledger().unwrap(),
        Draft {
            stream: StreamId::LEDGER,
            event_type: EventType::new(chronicle_store::commitment::STREAM_HEADS).unwrap(),
            effective_time: Timestamp::now(),
            refs: References { idempotency_key: key.to_vec(), ..Default::default() },
            payload_kind: PayloadKind::Public,
            payload: body.into_bytes(),
        },
    )
    .unwrap()
}

/// A `ledger.stream_heads` entry whose root is not the heads at its size (the ledger's key
/// signing a lie, or a bug) is named by `verify`, however many heads it holds in memory; one
/// not in the payload's one spelling is refused at append; no bundle is made against a
/// checkpoint that does not end in a commitment.
#[test]
fn a_commitment_that_lies_is_named_by_verify() {
    let (l, s) = ledger_with(3);
    let size = l.store.head().len;
    for bad in [
        format!("{{\"root\":\"{}\",\"size\":{size}}}", "AB".repeat(32)),
        format!("{{\"size\":{size},\"root\":\"{}\"}}", "ab".repeat(32)),
        format!("{{\"root\":\"{}\", \"size\":{size}}}", "ab".repeat(32)),
        "{}".to_string(),
    ] {
        let e = l.append(StreamId::LEDGER, ExpectedVersion::Any, vec![heads_entry(&l, b"malformed", bad)]).unwrap_err();
        assert!(matches!(e, chronicle_store::AppendError::NotAllowedInStream { .. }), "{e:?}");
    }
    assert_eq!(l.store.head().len, size);
    let note = l.store.sign_checkpoint(&l.dir.note_signer().unwrap(), &l.dir.info().unwrap().origin, size).unwrap();
    let e = build_bundle(&l.store, &s, &note, size, &l.dir.log_key().unwrap(), false).unwrap_err();
    assert!(matches!(e, chronicle_store::evidence::BundleError::NoCommitment(n) if n == size), "{e:?}");

    let lie = format!("{{\"root\":\"{}\",\"size\":{size}}}", "ab".repeat(32));
    l.append(StreamId::LEDGER, ExpectedVersion::Any, vec![heads_entry(&l, b"a lie", lie)]).unwrap();
    let (_tmp, dir) = l.close();
    for held in [1 << 20, 0] {
        let report = chronicle_store::verify_log_holding(&dir.log_dir(), held).unwrap();
        let f = report.fault.expect("the lie is found");
        assert_eq!(f.position, size);
        assert!(matches!(f.fault, Fault::HeadsCommitment { .. }), "{f:?}");
    }
    assert!(!verify_log(&dir.log_dir(), |_, _| {}).unwrap().is_ok());
}

/// The positions of the orders that cover `stream`, as the records layer knows them.
fn orders_covering(b: &common::Bureau, stream: &StreamId) -> Vec<u64> {
    b.records.projection().state.expunged.values().filter(|t| t.streams.contains(stream)).map(|t| t.position).collect()
}

fn bundle_of(b: &common::Bureau, s: StreamId) -> (Bundle, String) {
    let dir = &b.ledger.dir;
    let origin = dir.info().unwrap().origin;
    let (_, size, note) =
        b.ledger.store.checkpoint_with_heads(&dir.ledger().unwrap(), &dir.note_signer().unwrap(), &origin).unwrap();
    let key = dir.log_key().unwrap();
    let orders = orders_covering(b, &s);
    (
        chronicle_store::evidence::build_bundle_with_orders(&b.ledger.store, &s, &note, size, &key, false, &orders)
            .unwrap(),
        key,
    )
}

/// An expunged case's bundle carries the order that emptied it, proven complete through the
/// case's orders stream (the ledger's notice of the order, written before the keys were
/// destroyed): leaving out the notice, the order, or claiming no order covers it, fails. A case
/// no order covers proves that too.
#[test]
fn an_expunged_cases_bundle_carries_the_order_that_emptied_it_proven_complete() {
    use chronicle_records::Level;
    let b = common::Bureau::new();
    let subject = b.enroll("PA-51", "Roe", "Ann", "1980-01-02");
    let gone = b.arrest(subject, "OTN-51", "2021-03-04", &[(1, "18 PA 3502", "BURGLARY", Level::Felony)]);
    let kept = b.arrest(subject, "OTN-52", "2022-05-06", &[(1, "18 PA 3921", "THEFT", Level::Misdemeanor)]);
    let (order_at, destroyed) =
        b.records.expunge(&b.court, gone, "cycle", "EXP-51", "PC 851.93", Timestamp::now()).unwrap();
    assert!(destroyed > 0);
    // The notice, in the case's orders stream, names the order.
    let notices = b.ledger.store.read_stream(&chronicle_store::evidence::orders_stream(&gone), 0, 10).unwrap();
    assert_eq!(notices.len(), 1);
    let order = b.ledger.store.entry(order_at).unwrap().unwrap();
    assert_eq!(notices[0].statement.refs.causation, Some(order.hash()));
    assert!(notices[0].position() > order_at);

    let (bg, key) = bundle_of(&b, gone);
    let proven = verify_bundle(&bg, &key).unwrap();
    assert_eq!(proven.orders, 1);
    assert!(proven.describe().contains("1 expungement order(s) cover the stream"), "{}", proven.describe());
    let (bk, _) = bundle_of(&b, kept);
    let proven = verify_bundle(&bk, &key).unwrap();
    assert_eq!(proven.orders, 0);
    assert!(proven.describe().contains("no expungement order covers the stream"));

    // The notice left out; the order left out; the order replaced by another entry.
    let mut t = bg.clone();
    t.completeness.orders.notices.clear();
    assert!(matches!(verify_bundle(&t, &key), Err(EvidenceError::Incomplete(_)) | Err(EvidenceError::Chain { .. })));
    let mut t = bg.clone();
    t.completeness.orders.orders.clear();
    let why = incomplete(verify_bundle(&t, &key));
    assert!(why.contains("is missing"), "{why}");
    let mut t = bg.clone();
    t.completeness.orders.orders = vec![t.entries[0].clone()];
    assert!(verify_bundle(&t, &key).is_err());
    // "No order covers it": the other case's absence proof, or the head dropped.
    let mut t = bg.clone();
    t.completeness.orders.head = None;
    t.completeness.orders.notices.clear();
    t.completeness.orders.orders.clear();
    t.completeness.orders.absent = bk.completeness.orders.absent.clone();
    incomplete(verify_bundle(&t, &key));
    let mut t = bg.clone();
    t.completeness.orders.head = None;
    incomplete(verify_bundle(&t, &key));
    let mut t = bg.clone();
    t.completeness.orders.orders.push(t.completeness.orders.orders[0].clone());
    assert!(verify_bundle(&t, &key).is_err(), "an order listed twice");
}

/// What someone with write rights puts in a stream's orders stream notices nothing (only the
/// ledger's entries are notices), and does not keep the stream's evidence from being made; an
/// order carried out while the service had no ledger signer (recovery at open) gets its notice
/// when the signer is given, and no bundle is made before (it would say no order covers it).
#[test]
fn a_squatted_orders_stream_or_a_notice_not_yet_written_never_hides_an_order() {
    use chronicle_records::Level;
    let b = common::Bureau::new();
    let subject = b.enroll("PA-71", "Doe", "Jo", "1970-03-04");
    let case = b.arrest(subject, "OTN-71", "2019-01-02", &[(1, "18 PA 3502", "BURGLARY", Level::Felony)]);
    // Someone who may record arrests puts one in the case's orders stream first.
    let squat = chronicle_store::evidence::orders_stream(&case);
    b.rec(
        &b.police,
        squat,
        chronicle_records::RecordEvent::ArrestRecorded {
            subject: subject.to_hex(),
            tracking_number: "OTN-SQUAT".into(),
            agency_ori: "ZZ0000001".into(),
            arrest_date: common::date("2019-01-03"),
            charges: vec![common::charge(1, "18 PA 3921", "THEFT", Level::Misdemeanor)],
        },
    )
    .unwrap();
    // The order, carried out by a service that has no ledger signer: keys destroyed, no notice.
    let bare = chronicle_records::Records::open(b.ledger.store.clone()).unwrap();
    bare.expunge(&b.court, case, "cycle", "EXP-71", "PC 851.93", Timestamp::now()).unwrap();
    let dir = &b.ledger.dir;
    let origin = dir.info().unwrap().origin;
    let key = dir.log_key().unwrap();
    let export = || {
        let (_, size, note) =
            b.ledger.store.checkpoint_with_heads(&dir.ledger().unwrap(), &dir.note_signer().unwrap(), &origin).unwrap();
        let orders = orders_covering(&b, &case);
        assert_eq!(orders.len(), 1);
        chronicle_store::evidence::build_bundle_with_orders(&b.ledger.store, &case, &note, size, &key, false, &orders)
    };
    b.records.catch_up().unwrap();
    let e = export().unwrap_err();
    assert!(e.to_string().contains("its notice is not in the stream's orders stream"), "{e}");
    // The signer given: the notice is written, and the bundle proves the order.
    bare.set_ledger(dir.ledger().unwrap()).unwrap();
    let bundle = export().unwrap();
    let proven = verify_bundle(&bundle, &key).unwrap();
    assert_eq!(proven.orders, 1);
    assert_eq!(bundle.completeness.orders.notices.len(), 2, "the squatter's entry and the ledger's notice");
}

/// An expunged case is exported by stream id, without content, by a role that may read the log:
/// its opaque entries with the order that emptied them; with content it is refused (there is
/// none left to release), and by docket it is not found (the docket went with it).
#[test]
fn the_cli_exports_an_expunged_cases_opaque_entries_with_its_order() {
    use chronicle_records::Level;
    let b = common::Bureau::new();
    let subject = b.enroll("PA-61", "Poe", "Al", "1975-07-08");
    let gone = b.arrest(subject, "OTN-61", "2020-01-02", &[(1, "18 PA 3502", "BURGLARY", Level::Felony)]);
    b.records.expunge(&b.court, gone, "cycle", "EXP-61", "PC 851.93", Timestamp::now()).unwrap();
    let common::Bureau { ledger, records, .. } = b;
    drop(records);
    let (tmp, dir) = ledger.close();
    let d = dir.root.to_str().unwrap().to_string();
    let out = tmp.path().join("gone.json");
    let run = |extra: &[&str]| {
        let mut args = vec!["export-evidence", "--data-dir", &d, "--recipient", "auditor", "--purpose", "A"];
        args.extend(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_chronicle")).args(&args).output().unwrap()
    };
    let hex = gone.to_hex();
    let o = run(&["--stream", &hex, "--no-content", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let bundle: Bundle = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let proven = verify_bundle(&bundle, &dir.log_key().unwrap()).unwrap();
    assert_eq!((proven.entries, proven.orders), (1, 1));
    let o = run(&["--stream", &hex, "--out", tmp.path().join("c.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["--case", "OTN-61", "--no-content", "--out", tmp.path().join("d.json").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--stream"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Expungements carried out side by side (each writes its notices, then destroys its keys) all
/// end noticed and destroyed: notices are written one writer at a time, and none is written twice.
#[test]
fn expungements_carried_out_side_by_side_are_each_noticed_once() {
    use chronicle_records::Level;
    let b = common::Bureau::new();
    let cases: Vec<StreamId> = (0..6)
        .map(|i| {
            let subject = b.enroll(&format!("PA-8{i}"), "Roe", "Ann", "1980-01-02");
            b.arrest(subject, &format!("OTN-8{i}"), "2021-03-04", &[(1, "18 PA 3502", "BURGLARY", Level::Felony)])
        })
        .collect();
    std::thread::scope(|scope| {
        for (i, case) in cases.iter().enumerate() {
            let b = &b;
            scope.spawn(move || {
                b.records
                    .expunge(&b.court, *case, "cycle", &format!("EXP-8{i}"), "PC 851.93", Timestamp::now())
                    .unwrap();
            });
        }
    });
    // Once more, as a start would: nothing left to write.
    assert_eq!(b.records.notice_orders().unwrap(), 0);
    for case in &cases {
        let notices = b.ledger.store.read_stream(&chronicle_store::evidence::orders_stream(case), 0, 10).unwrap();
        assert_eq!(notices.len(), 1, "one notice for the one order covering the case");
        assert!(b.ledger.store.stream_keys_destroyed(&[*case]).unwrap());
        let (bundle, key) = bundle_of(&b, *case);
        assert_eq!(verify_bundle(&bundle, &key).unwrap().orders, 1);
    }
}
