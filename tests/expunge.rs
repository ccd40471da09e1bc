//! Expungement that really destroys: after the order no view, index, persisted projection or
//! file under the data directory holds the expunged content or the destroyed keys, in any
//! encoding; the ledger still verifies; everything else stays readable; expunged is final.

mod common;

use base64::Engine;
use chronicle_core::{Role, StreamId, Timestamp};
use chronicle_records::model::access_stream;
use chronicle_records::{DispositionKind, Level, Purpose, RecordEvent, Records, RecordsError, ServiceError};
use chronicle_store::verify_log;
use common::{Bureau, date};

fn encodings(needle: &[u8]) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = vec![needle.to_vec(), hex::encode(needle).into_bytes(), hex::encode_upper(needle).into_bytes()];
    // Base64 of the needle at each of the three alignments it can have inside longer data.
    for shift in 0..3usize {
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(needle);
        let enc = b64.encode(&padded);
        let skip = if shift == 0 { 0 } else { 4 };
        let keep = enc.len().saturating_sub(4);
        if keep > skip + 8 {
            out.push(enc.as_bytes()[skip..keep].to_vec());
        }
    }
    out
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn expunged_content_and_keys_leave_no_trace_and_the_ledger_still_verifies() {
    let b = Bureau::new();
    // Subject A: one case to expunge, one to keep.
    let a = b.enroll("SID-A-1", "KEEPSURNAME", "ALICE", "1980-02-02");
    let gone = b.arrest(
        a,
        "OTN-PLANTED-1",
        "2023-01-05",
        &[(1, "PLANTED-STATUTE-9", "PLANTED CASE ONE LITERAL", Level::Felony)],
    );
    b.rec(&b.court, gone, RecordEvent::CourtCaseFiled { court_ori: "ZZ".into(), docket: "DKT-PLANTED-1".into() })
        .unwrap();
    b.rec(
        &b.clerk,
        gone,
        RecordEvent::ChallengeFiled {
            challenge_id: "CH-1".into(),
            statement: "PLANTED FREE TEXT ABOUT THE NIGHT".into(),
        },
    )
    .unwrap();
    let kept = b.arrest(a, "OTN-KEEP", "2023-06-05", &[(1, "13-1802", "KEEP LITERAL THEFT", Level::Misdemeanor)]);
    b.rec(
        &b.court,
        kept,
        RecordEvent::DispositionRecorded { seq: 1, disposition: DispositionKind::GuiltyPlea, date: date("2023-07-01") },
    )
    .unwrap();
    // Subject B: the whole record goes.
    let bsub = b.enroll("SID-PLANTED-B", "PLANTEDBSURNAME", "BORIS", "1961-07-13");
    let bcase = b.arrest(
        bsub,
        "OTN-PLANTED-B",
        "2022-03-03",
        &[(1, "PLANTED-STATUTE-B", "PLANTED B LITERAL", Level::Misdemeanor)],
    );
    b.rec(&b.court, bcase, RecordEvent::CourtCaseFiled { court_ori: "ZZ".into(), docket: "DKT-PLANTED-B".into() })
        .unwrap();
    // Subject C: untouched.
    let c = b.enroll("SID-C-3", "CONTROLSURNAME", "CARL", "1970-03-03");
    b.arrest(c, "OTN-C", "2024-01-01", &[(1, "13-1602", "CONTROL LITERAL", Level::Misdemeanor)]);
    // Disseminations that mention the doomed items, before the orders.
    b.records.background_check(&b.ledger.ledger, b.police.principal(), Purpose::C, a, None, None).unwrap();
    b.records.background_check(&b.ledger.ledger, b.police.principal(), Purpose::C, bsub, None, None).unwrap();
    b.records.persist().unwrap();
    let c_before = b.records.view(c, Role::Court, Purpose::C, None).unwrap();
    let keys: Vec<[u8; 32]> = [gone, bsub, access_stream(&bsub), bcase]
        .iter()
        .map(|s| b.ledger.store.danger_data_key_bytes(s).unwrap())
        .collect();

    // The orders.
    let (_, destroyed) = b.records.expunge(&b.court, gone, "cycle", "EXP-1", "PC 851.93", Timestamp::now()).unwrap();
    assert_eq!(destroyed, 1);
    let (_, destroyed) = b.records.expunge(&b.court, bsub, "subject", "EXP-2", "CPL 160.50", Timestamp::now()).unwrap();
    assert_eq!(destroyed, 3, "identity, access log and the one case");
    // What the service persisted while carrying the orders out loads as it stands: the
    // expunged streams' parts (in the snapshot persisted before the orders) were removed, not
    // left behind for a restart to fail on and replay the whole log.
    {
        let loaded = Records::open(b.ledger.store.clone()).unwrap();
        assert!(loaded.projection().restored, "the persisted projection was loaded, not replayed");
        assert!(loaded.projection().state == b.records.projection().state);
        let (_, parts) = {
            let p = b.ledger.store.read_projection().unwrap().unwrap();
            (p.next, p.parts)
        };
        for s in [gone, bsub, access_stream(&bsub), bcase] {
            assert!(parts.iter().all(|(t, _)| *t != s), "no part of {s} is persisted");
        }
    }

    // No role sees a trace; lookups and history say only that an order was carried out.
    for (role, purpose) in
        [(Role::Court, Purpose::C), (Role::RecordsClerk, Purpose::A), (Role::LawEnforcement, Purpose::C)]
    {
        let v = b.records.view(a, role, purpose, None).unwrap();
        let text = String::from_utf8(v.to_bytes()).unwrap();
        assert!(!text.contains("PLANTED") && !text.contains(&gone.to_hex()), "{role:?}: {text}");
        assert!(text.contains("KEEP LITERAL THEFT"), "the other case stays");
        assert!(matches!(b.records.view(bsub, role, purpose, None), Err(ServiceError::View(_))));
    }
    {
        let p = b.records.projection();
        assert_eq!(p.state.subject_by_sid("SID-PLANTED-B"), None);
        assert_eq!(p.state.cycle_by_docket("DKT-PLANTED-1"), None);
        assert!(!p.state.versions.contains_key(&chronicle_records::model::access_stream(&bsub)));
        assert!(format!("{:?}", p.state).find("PLANTED").is_none(), "nothing of it in the projection");
    }
    for target in [gone, bsub] {
        match b.history(target) {
            Err(ServiceError::Expunged { order_id, by, .. }) => {
                assert!(order_id.starts_with("EXP-") && by == "court.district-4")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(b.records.tombstone(&bcase).unwrap().order_id, "EXP-2");
    let c_after = b.records.view(c, Role::Court, Purpose::C, None).unwrap();
    assert_eq!((c_after.identity, c_after.cycles), (c_before.identity, c_before.cycles), "other records are untouched");

    // Expunged is final; a second order is recorded and finds nothing left to destroy.
    let e = b
        .rec(
            &b.court,
            gone,
            RecordEvent::DispositionRecorded {
                seq: 1,
                disposition: DispositionKind::Dismissed,
                date: date("2023-02-01"),
            },
        )
        .unwrap_err();
    assert_eq!(e, ServiceError::Invalid(RecordsError::Expunged("EXP-1".into())));
    let e = b
        .rec(
            &b.police,
            StreamId::random(),
            RecordEvent::ArrestRecorded {
                subject: bsub.to_hex(),
                tracking_number: "X".into(),
                agency_ori: "Z".into(),
                arrest_date: date("2024-01-01"),
                charges: vec![common::charge(1, "s", "l", Level::Felony)],
            },
        )
        .unwrap_err();
    assert_eq!(e, ServiceError::Invalid(RecordsError::Expunged("EXP-2".into())));
    let (pos, destroyed) =
        b.records.expunge(&b.court, gone, "cycle", "EXP-1-AGAIN", "PC 851.93", Timestamp::now()).unwrap();
    assert!(pos > 0);
    assert_eq!(destroyed, 0, "nothing was left to destroy");

    // Rebuilding from zero gives the same state (the expunged entries simply cannot be read).
    let rebuilt = Records::rebuild(b.ledger.store.clone()).unwrap();
    assert!(rebuilt.projection().state == b.records.projection().state);
    // And what the rebuild persisted (the tombstones with it) loads to the same state.
    let reopened = Records::open(b.ledger.store.clone()).unwrap();
    assert!(reopened.projection().restored, "the persisted projection was loaded");
    assert!(reopened.projection().state == b.records.projection().state);
    assert!(!reopened.projection().state.expunged.is_empty());
    drop((rebuilt, reopened));
    drop(b.records);

    let (_t, dir) = b.ledger.close();
    // verify still passes; it counts the entries whose keys are gone.
    let r = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(r.is_ok(), "{:?}", r.fault);
    assert!(r.keys_destroyed >= 7, "{}", r.keys_destroyed);
    // No file under the data directory holds the content or the keys, raw or encoded.
    let planted: Vec<&[u8]> = vec![
        b"PLANTED CASE ONE LITERAL",
        b"PLANTED-STATUTE-9",
        b"DKT-PLANTED-1",
        b"PLANTED FREE TEXT ABOUT THE NIGHT",
        b"PLANTEDBSURNAME",
        b"1961-07-13",
        b"SID-PLANTED-B",
        b"DKT-PLANTED-B",
        b"PLANTED B LITERAL",
    ];
    let mut needles: Vec<Vec<u8>> = planted.iter().flat_map(|p| encodings(p)).collect();
    for k in &keys {
        needles.extend(encodings(k));
    }
    let all = files(&dir.root);
    assert!(all.len() > 3);
    for f in all {
        let bytes = std::fs::read(&f).unwrap();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == &n[..]),
                "{} holds {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    // And the kept content is still readable after a restart.
    let store = dir.open().unwrap();
    let records = Records::open(store).unwrap();
    let v = records.view(a, Role::Court, Purpose::C, None).unwrap();
    assert_eq!(v.items().len(), 1);
}

#[test]
fn a_charge_expungement_re_keys_the_case_and_leaves_no_trace_of_the_charge() {
    use chronicle_records::{ReliefKind, Scope};
    let b = Bureau::new();
    let a = b.enroll("SID-CH-1", "CHARGESURNAME", "DORA", "1985-05-05");
    let case = b.arrest(
        a,
        "OTN-CH-KEEP",
        "2023-01-05",
        &[
            (1, "13-1802", "SURVIVING LITERAL THEFT", Level::Misdemeanor),
            (2, "PLANTED-CHARGE-STATUTE", "PLANTED CHARGE TWO LITERAL", Level::Felony),
        ],
    );
    b.rec(&b.court, case, RecordEvent::CourtCaseFiled { court_ori: "ZZ".into(), docket: "DKT-CH-KEEP".into() })
        .unwrap();
    b.rec(
        &b.clerk,
        case,
        RecordEvent::ChargeFiled { charge: common::charge(3, "PLANTED-STATUTE-3", "PLANTED THIRD", Level::Felony) },
    )
    .unwrap();
    for (seq, d) in [(1, DispositionKind::GuiltyPlea), (2, DispositionKind::Acquitted), (3, DispositionKind::Dismissed)]
    {
        b.rec(&b.court, case, RecordEvent::DispositionRecorded { seq, disposition: d, date: date("2023-07-01") })
            .unwrap();
    }
    b.records.background_check(&b.ledger.ledger, b.police.principal(), Purpose::C, a, None, None).unwrap();
    b.records.persist().unwrap();
    let old_key = b.ledger.store.danger_data_key_bytes(&case).unwrap();

    // The order covers charges 2 and 3: narrower than the case's key.
    let order = |id: &str, seqs: Vec<u32>| RecordEvent::ReliefOrdered {
        order_id: id.into(),
        kind: ReliefKind::Expunge,
        scope: Scope::Charges(seqs),
        statute: "PC 1203.4".into(),
        audiences: vec![],
    };
    b.rec(&b.court, case, order("EXP-CH", vec![2, 3])).unwrap();
    let new_key = b.ledger.store.danger_data_key_bytes(&case).unwrap();
    assert_ne!(new_key, old_key, "the case moved to a fresh key");

    // What survives is readable; nothing of the expunged charges is anywhere in the projection.
    for (role, purpose) in [(Role::Court, Purpose::C), (Role::RecordsClerk, Purpose::A)] {
        let text = String::from_utf8(b.records.view(a, role, purpose, None).unwrap().to_bytes()).unwrap();
        assert!(
            text.contains("SURVIVING LITERAL THEFT") && text.contains("OTN-CH-KEEP") && text.contains("DKT-CH-KEEP")
        );
        assert!(!text.contains("PLANTED"), "{role:?}: {text}");
    }
    assert!(format!("{:?}", b.records.projection().state).find("PLANTED").is_none());
    // The auditor sees that an order was carried out, not what it covered.
    let audit = b.records.view(a, Role::Auditor, Purpose::A, None).unwrap();
    assert!(audit.notices.iter().any(|n| n.order_id == "EXP-CH"), "{audit:?}");
    // The case's history: the entries that held the charges are unreadable; the rest is there.
    let h = b.history(case).unwrap();
    assert!(h.iter().any(|i| i.event_type == "records.arrest_recorded" && i.event.is_none()));
    assert!(h.iter().any(|i| i.event_type == "records.court_case_filed" && i.event.is_some()));
    assert!(h.iter().any(|i| i.event_type == "records.cycle_restated" && i.event.is_some()));
    assert!(!serde_json::to_string(&h).unwrap().contains("PLANTED"));

    // Expunged is final; a second order on the same charge is recorded, with nothing to destroy.
    let e = b
        .rec(
            &b.court,
            case,
            RecordEvent::DispositionRecorded {
                seq: 2,
                disposition: DispositionKind::Dismissed,
                date: date("2023-08-01"),
            },
        )
        .unwrap_err();
    assert_eq!(e, ServiceError::Invalid(RecordsError::AlreadyExpunged(2)));
    let key_now = b.ledger.store.danger_data_key_bytes(&case).unwrap();
    b.rec(&b.court, case, order("EXP-CH-AGAIN", vec![2])).unwrap();
    // Nothing of charge 2 was left: no new key, nothing destroyed.
    // Charge 1 lives on: a sentence can still be recorded.
    b.rec(&b.court, case, RecordEvent::SupervisionDischarged { date: date("2024-01-01") }).unwrap();
    assert_eq!(b.ledger.store.danger_data_key_bytes(&case).unwrap(), key_now);

    // Rebuilding from zero (the destroyed entries unreadable) gives the same state.
    let rebuilt = Records::rebuild(b.ledger.store.clone()).unwrap();
    assert!(rebuilt.projection().state == b.records.projection().state, "rebuild differs");
    drop(rebuilt);
    drop(b.records);
    let (_t, dir) = b.ledger.close();
    let r = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(r.is_ok(), "{:?}", r.fault);
    assert!(
        r.keys_destroyed >= 4,
        "the arrest, charge 3's filing, charges 2 and 3's dispositions: {}",
        r.keys_destroyed
    );
    let planted: Vec<&[u8]> =
        vec![b"PLANTED CHARGE TWO LITERAL", b"PLANTED-CHARGE-STATUTE", b"PLANTED-STATUTE-3", b"PLANTED THIRD"];
    let mut needles: Vec<Vec<u8>> = planted.iter().flat_map(|p| encodings(p)).collect();
    needles.extend(encodings(&old_key));
    for f in files(&dir.root) {
        let bytes = std::fs::read(&f).unwrap();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == &n[..]),
                "{} holds {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    // After a restart the surviving charge is still there.
    let records = Records::open(dir.open().unwrap()).unwrap();
    let v = records.view(a, Role::Court, Purpose::C, None).unwrap();
    assert_eq!(v.items().len(), 1);
}
