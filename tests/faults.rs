//! What a failure leaves behind, made to happen at a chosen point by the store's test hooks.
//!
//! A storage failure while the writer built a group used to leave the commands built before it
//! in the group's batch, which was then written (part of a request on disk, its appender told it
//! failed), and the writer went on accepting writes with its state ahead of the disk.

mod common;

use chronicle_store::{AppendError, ExpectedVersion};
use common::{Ledger, record, stream};

#[test]
fn a_storage_failure_halfway_through_a_request_writes_none_of_it_and_stops_the_store() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", chronicle_core::Role::RecordsClerk);
    let s = stream("half");
    l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "first", "{}")]).unwrap();
    let before = l.store.head();
    let cmds: Vec<_> = (0..3).map(|i| record(&clerk, s, &format!("k{i}"), "{}")).collect();
    chronicle_store::hooks::fail_building_at(1);
    let e = l.append(s, ExpectedVersion::Any, cmds.clone()).unwrap_err();
    assert!(matches!(e, AppendError::Storage(_)), "{e:?}");
    assert_eq!(l.store.head(), before, "nothing of the request was published");
    assert!(l.store.read_log(before.len, 10).unwrap().is_empty());
    // The store stops: its state in memory was ahead of the disk.
    let e = l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "after", "{}")]).unwrap_err();
    assert!(matches!(e, AppendError::Unavailable(_)), "{e:?}");
    // After a restart the log is as it was, verifies, and takes the request whole.
    let (tmp, dir) = l.close();
    let l = Ledger::reopen(tmp, dir);
    assert_eq!(l.store.head(), before);
    let r = l.append(s, ExpectedVersion::Any, cmds).unwrap();
    assert_eq!(r.entries.len(), 3);
    let (_tmp, dir) = l.close();
    let report = chronicle_store::verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.fault);
    assert_eq!(report.entries_verified, before.len + 3);
}

/// A request into a stream whose data key was destroyed after the writer last sealed under it
/// (an append checked before an expungement, written after it): refused whole, with nothing of it
/// built, and the store goes on. It used to be refused only when the entry's content key was
/// wrapped, after the request had begun to move the writer's state: the writer's invariants then
/// stopped the process.
#[test]
fn a_request_into_a_stream_whose_key_was_just_destroyed_is_refused_whole_and_the_store_goes_on() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", chronicle_core::Role::RecordsClerk);
    let s = stream("shredded");
    l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "first", "{}")]).unwrap();
    assert_eq!(l.store.destroy_stream_keys(&[s]).unwrap(), 1);
    let before = l.store.head();
    for n in [1, 3] {
        let cmds: Vec<_> = (0..n).map(|i| record(&clerk, s, &format!("late{n}-{i}"), "{}")).collect();
        let e = l.append(s, ExpectedVersion::Any, cmds).unwrap_err();
        assert!(matches!(e, AppendError::Seal(chronicle_core::SealError::KeyDestroyed)), "{e:?}");
        assert_eq!(l.store.head(), before, "nothing of the request was written");
    }
    // The store goes on with other streams, and the log verifies.
    let other = stream("other");
    l.append(other, ExpectedVersion::Any, vec![record(&clerk, other, "o", "{}")]).unwrap();
    assert_eq!(l.store.failure(), None);
    let (_tmp, dir) = l.close();
    let report = chronicle_store::verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.fault);
}

/// A persist of the projection that fails (here its directory cannot hold files, as on a full
/// disk) used to turn every later append into an error, though each was durable in the log. The
/// appends go on; the failure is reported, and the next persist after it is fixed succeeds.
#[test]
fn a_failed_projection_persist_fails_no_append() {
    let b = common::Bureau::new();
    b.records.set_persist_every(5);
    let dir = b.ledger.dir.store_paths().projection;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::write(&dir, b"not a directory").unwrap();
    for i in 0..20 {
        b.enroll(&format!("SID-P{i}"), "DOE", "JANE", "1990-01-01");
    }
    assert!(b.records.persist_failure().is_some(), "the failure is reported");
    assert!(b.records.projection().state.subject_by_sid("SID-P19").is_some());
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    for i in 20..30 {
        b.enroll(&format!("SID-P{i}"), "DOE", "JANE", "1990-01-01");
    }
    assert_eq!(b.records.persist_failure(), None, "a later persist succeeded");
}

/// Every part of every snapshot file in the data directory that the vault can still open.
fn readable_snapshot_parts(b: &common::Bureau) -> Vec<Vec<u8>> {
    let dir = b.ledger.dir.store_paths().projection;
    let mut out = Vec::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_none_or(|e| e != "snap") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let header = b"chronicle.projection-snapshot.v1\n".len() + 8;
        let mut at = header;
        while at + 20 <= bytes.len() {
            let stream = chronicle_core::StreamId(bytes[at..at + 16].try_into().unwrap());
            let len = u32::from_be_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
            let sealed = &bytes[at + 20..at + 20 + len];
            if let Ok(plain) = b.ledger.store.open_for_stream(&stream, sealed) {
                out.push(plain.to_vec());
            }
            at += 20 + len;
        }
    }
    out
}

/// A persist that copied the state before an expungement of some charges of a case, and sealed
/// it after the case's key turned, sealed the expunged charge under the new key, which is never
/// destroyed: readable, in the snapshot file, by whoever holds the directory and the master key.
/// The key now turns only once no persist is under way.
#[test]
fn a_persist_racing_a_charge_expungement_leaves_nothing_of_the_charge_readable() {
    use chronicle_records::{Level, RecordEvent, ReliefKind, Scope};
    let b = std::sync::Arc::new(common::Bureau::new());
    let s = b.enroll("SID-R1", "DOE", "JANE", "1990-01-01");
    let case = b.arrest(
        s,
        "OTN-R1",
        "2024-01-02",
        &[(1, "s1", "KEPT CHARGE", Level::Misdemeanor), (2, "s2", "PLANTED-EXPUNGED-LITERAL", Level::Misdemeanor)],
    );
    b.records.set_snapshot_after(0);
    let (cloned, go) = chronicle_records::hooks::pause_next_persist_after_cloning();
    let persist = {
        let b = b.clone();
        std::thread::spawn(move || b.records.persist())
    };
    cloned.recv().unwrap();
    // The persist holds a copy of the case with charge 2. The court orders charge 2 expunged.
    let order = {
        let b = b.clone();
        std::thread::spawn(move || {
            b.rec(
                &b.court,
                case,
                RecordEvent::ReliefOrdered {
                    order_id: "EXP-R1".into(),
                    kind: ReliefKind::Expunge,
                    scope: Scope::Charges(vec![2]),
                    statute: "18 Pa.C.S. 9122".into(),
                    audiences: vec![],
                },
            )
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    go.send(()).unwrap();
    persist.join().unwrap().unwrap();
    order.join().unwrap().unwrap();
    let readable = readable_snapshot_parts(&b);
    assert!(!readable.is_empty(), "the snapshot has parts the vault opens");
    for part in readable {
        let text = String::from_utf8_lossy(&part);
        assert!(!text.contains("PLANTED-EXPUNGED-LITERAL"), "an expunged charge is readable in a snapshot file");
    }
}

/// An arrest validated just before its subject's whole record was ordered expunged, and appended
/// just after, survived the order: a live case of an expunged person, its key never destroyed.
/// The ledger now expunges such a case as soon as it lands, naming the subject's order.
#[test]
fn an_arrest_racing_its_subjects_expungement_is_expunged_with_the_rest() {
    use chronicle_records::{Level, RecordEvent};
    let b = std::sync::Arc::new(common::Bureau::new());
    let s = b.enroll("SID-X1", "DOE", "JANE", "1990-01-01");
    b.arrest(s, "OTN-X0", "2024-01-02", &[(1, "s1", "AN EARLIER CASE", Level::Misdemeanor)]);
    let late = chronicle_core::StreamId::random();
    let (validated, go) = chronicle_records::hooks::pause_next_append_after_validation();
    let arrest = {
        let b = b.clone();
        std::thread::spawn(move || {
            b.rec(
                &b.police,
                late,
                RecordEvent::ArrestRecorded {
                    subject: s.to_hex(),
                    tracking_number: "OTN-X1".into(),
                    agency_ori: "ZZ0000001".into(),
                    arrest_date: common::date("2024-02-02"),
                    charges: vec![common::charge(1, "s", "PLANTED-LATE-ARREST", Level::Misdemeanor)],
                },
            )
        })
    };
    validated.recv().unwrap();
    // Validated against a subject not yet expunged: now the order.
    let (_, destroyed) = b
        .records
        .expunge(&b.court, s, "subject", "EXP-X1", "18 Pa.C.S. 9122", chronicle_core::Timestamp::now())
        .unwrap();
    assert!(destroyed >= 2);
    go.send(()).unwrap();
    arrest.join().unwrap().unwrap();
    // The late case is expunged too: its key destroyed, nothing of it in the projection, and its
    // order names the subject's.
    assert!(b.ledger.store.stream_keys_destroyed(&[late]).unwrap(), "the late case's key is destroyed");
    assert!(!b.records.projection().state.cycles.contains_key(&late));
    let t = b.records.tombstone(&late).expect("the late case has a tombstone");
    assert!(t.order_id.starts_with("EXP-X1"), "{}", t.order_id);
    assert!(!format!("{:?}", b.records.projection().state).contains("PLANTED-LATE-ARREST"));
    // And a rebuild from the log gives the same state.
    let rebuilt = chronicle_records::Records::open(b.ledger.store.clone()).unwrap();
    assert!(rebuilt.projection().state == b.records.projection().state);
}
