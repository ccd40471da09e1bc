//! The records domain end to end: a clerk's day, as-of queries, validation rules, reproducible
//! background checks.

mod common;

use chronicle_core::{Role, StreamId, Timestamp};
use chronicle_records::model::access_stream;
use chronicle_records::{DispositionKind, Level, Purpose, RecordEvent, RecordsError, ReliefKind, Scope, ServiceError};
use common::{Bureau, date};

fn dispose(b: &Bureau, cycle: StreamId, seq: u32, kind: DispositionKind, on: &str) {
    b.rec(&b.court, cycle, RecordEvent::DispositionRecorded { seq, disposition: kind, date: date(on) }).unwrap();
}

fn seal(b: &Bureau, cycle: StreamId, order: &str, seqs: Vec<u32>, effective: Timestamp) {
    b.records
        .record(
            &b.court,
            cycle,
            &RecordEvent::ReliefOrdered {
                order_id: order.into(),
                kind: ReliefKind::Seal,
                scope: Scope::Charges(seqs),
                statute: "18 Pa.C.S. 9122.2".into(),
                audiences: vec![],
            },
            effective,
            Some(order.into()),
        )
        .unwrap();
}

#[test]
fn a_clerks_day() {
    let b = Bureau::new();
    let ledger_signer = &b.ledger.ledger;
    let jane = b.enroll("SID-100", "DOE", "JANE", "1990-04-01");
    let john = b.enroll("SID-200", "ROE", "JOHN", "1988-01-15");
    // Arrest, charges filed, the court case.
    let a = b.arrest(
        jane,
        "OTN-1",
        "2024-03-01",
        &[(1, "13-1802", "THEFT", Level::Misdemeanor), (2, "13-1502", "CRIMINAL TRESPASS", Level::Misdemeanor)],
    );
    b.rec(&b.court, a, RecordEvent::CourtCaseFiled { court_ori: "ZZ001015J".into(), docket: "CR-2024-001".into() })
        .unwrap();
    // One dismissed, one convicted; a sentence.
    dispose(&b, a, 2, DispositionKind::Dismissed, "2024-05-01");
    dispose(&b, a, 1, DispositionKind::GuiltyPlea, "2024-05-01");
    b.rec(
        &b.court,
        a,
        RecordEvent::SentenceImposed {
            seq: 1,
            kind: chronicle_records::model::SentenceKind::Probation,
            term_days: Some(365),
            amount_cents: None,
            date: date("2024-05-01"),
        },
    )
    .unwrap();
    // A sealing order on the dismissed charge.
    seal(&b, a, "SEAL-1", vec![2], Timestamp::now());
    assert_eq!(b.records.projection().state.cycle_by_docket("cr 2024 001"), Some(a));

    // An employer's background check: the sealed charge is not there, not even its literal.
    let emp = b
        .records
        .background_check(ledger_signer, b.employer.principal(), Purpose::E, jane, Some("consent form 77".into()), None)
        .unwrap();
    assert_eq!(emp.view.items(), vec![format!("{}:1", a.to_hex())]);
    assert!(!String::from_utf8(emp.bytes.clone()).unwrap().contains("suppressed"), "no count of what is withheld");
    let text = String::from_utf8(emp.bytes.clone()).unwrap();
    assert!(text.contains("THEFT") && !text.contains("TRESPASS"), "{text}");
    // Law enforcement for criminal justice: sees it, marked sealed, and the read is logged.
    let le = b.records.background_check(ledger_signer, b.police.principal(), Purpose::C, jane, None, None).unwrap();
    let sealed = &le.view.cycles[0].charges[1];
    assert_eq!((sealed.seq, sealed.status.as_str()), (2, "sealed"));
    let log = b.access_log(jane);
    assert_eq!(log.len(), 2);
    let release_to = |ev: &RecordEvent, to: Role, why: Purpose| matches!(ev, RecordEvent::RecordDisseminated { role, purpose, .. } if *role == to && *purpose == why);
    assert!(release_to(&log[0], Role::Employer, Purpose::E));
    assert!(release_to(&log[1], Role::LawEnforcement, Purpose::C));
    match &log[0] {
        RecordEvent::RecordDisseminated { content_hash, items, suppressed, requester, .. } => {
            assert_eq!(content_hash, &emp.content_hash);
            assert_eq!(content_hash, &blake3::hash(&emp.bytes).to_hex().to_string());
            assert_eq!((items.len(), *suppressed, requester.as_str()), (1, 1, "acme.hr"));
        }
        other => panic!("{other:?}"),
    }
    // Reads inside the bureau are not disseminations.
    let clerk_view = b.records.view(jane, Role::RecordsClerk, Purpose::A, None).unwrap();
    assert_eq!(clerk_view.items().len(), 2);

    // A corrected disposition, with the authority for it.
    let err = b
        .rec(
            &b.court,
            a,
            RecordEvent::DispositionRecorded {
                seq: 1,
                disposition: DispositionKind::NoloContendere,
                date: date("2024-05-02"),
            },
        )
        .unwrap_err();
    assert_eq!(err, ServiceError::Invalid(RecordsError::DispositionExists(1)));
    b.rec(
        &b.court,
        a,
        RecordEvent::DispositionCorrected {
            seq: 1,
            disposition: DispositionKind::NoloContendere,
            date: date("2024-05-01"),
            reason: "clerical error in plea entry".into(),
        },
    )
    .unwrap();
    let v = b.records.view(jane, Role::Court, Purpose::C, None).unwrap();
    assert_eq!(v.cycles[0].charges[0].disposition, Some(DispositionKind::NoloContendere));

    // A case recorded against the wrong person moves to the right one.
    let wrong = b.arrest(john, "OTN-2", "2024-06-10", &[(1, "13-3405", "POSSESSION OF MARIJUANA", Level::Misdemeanor)]);
    assert_eq!(b.records.view(john, Role::Court, Purpose::C, None).unwrap().cycles.len(), 1);
    b.rec(
        &b.clerk,
        wrong,
        RecordEvent::CycleReassigned {
            from_subject: john.to_hex(),
            to_subject: jane.to_hex(),
            reason: "fingerprints matched SID-100".into(),
            evidence: "AFIS response 2024-07-01-0042".into(),
        },
    )
    .unwrap();
    let john_now = b.records.view(john, Role::Court, Purpose::C, None).unwrap();
    assert!(john_now.cycles.is_empty(), "the wrong person's record no longer shows the case");
    assert!(!String::from_utf8(john_now.to_bytes()).unwrap().contains("MARIJUANA"));
    assert_eq!(b.records.view(jane, Role::Court, Purpose::C, None).unwrap().cycles.len(), 2);
    let history = b.history(wrong).unwrap();
    let mv = history.iter().find(|h| h.event_type == "records.cycle_reassigned").unwrap();
    assert_eq!((mv.author.as_str(), mv.role), ("clerk", Some(Role::RecordsClerk)));
    assert_eq!(mv.event.as_ref().unwrap()["reason"], "fingerprints matched SID-100");
    // John's history still shows that the case was once attributed to him and moved away.
    let john_history = b.history(john).unwrap();
    assert!(john_history.iter().any(|h| h.event_type == "records.cycle_reassigned"));

    // The employer's check, replayed to the position it was computed at, gives the same bytes.
    let again = b.records.reproduce(emp.dissemination.unwrap()).unwrap();
    assert!(again.matches());
    assert_eq!(again.bytes, emp.bytes);

    // A policy adopted by the bureau, then all of the day (orders, the dissemination log, the
    // move, the policy) survives a persist and a restart.
    let mut policy = chronicle_records::Policy::default_policy();
    policy.version += 1;
    b.rec(&b.ledger.admin, chronicle_records::model::policy_stream(), RecordEvent::PolicyAdopted { policy }).unwrap();
    b.records.persist().unwrap();
    let reopened = chronicle_records::Records::open(b.ledger.store.clone()).unwrap();
    assert!(reopened.projection().restored, "the persisted projection was loaded");
    assert!(reopened.projection().state == b.records.projection().state, "and is the same state");
    assert!(reopened.projection().state.adopted_policy.is_some());
    assert!(reopened.projection().state.versions.contains_key(&access_stream(&jane)), "the access log's version too");
}

#[test]
fn as_recorded_and_as_effective_differ_and_a_past_check_reproduces() {
    let b = Bureau::new();
    let s = b.enroll("SID-7", "POE", "EDGAR", "1980-01-19");
    let c = b.arrest(s, "OTN-7", "2024-03-01", &[(1, "13-1602", "CRIMINAL DAMAGE", Level::Misdemeanor)]);
    dispose(&b, c, 1, DispositionKind::Dismissed, "2024-04-01");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let day5 = Timestamp::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Day 7: the employer's check sees the dismissed (recent, reportable) charge.
    let day7_check =
        b.records.background_check(&b.ledger.ledger, b.employer.principal(), Purpose::E, s, None, None).unwrap();
    assert_eq!(day7_check.view.items().len(), 1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let day7 = Timestamp::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Day 10: a sealing order is recorded, effective day 5.
    seal(&b, c, "SEAL-7", vec![1], day5);

    // As recorded on day 7: not sealed, to a court. The employer asking for day 7 now is not
    // shown what the seal in force now withholds: an as-of read never widens a view.
    let recorded = b.records.view_as_recorded(s, Role::Court, Purpose::C, day7).unwrap();
    assert_eq!(recorded.cycles[0].charges[0].status, "none");
    assert!(matches!(
        b.records.view_as_recorded(s, Role::Employer, Purpose::E, day7),
        Err(ServiceError::View(chronicle_records::view::ViewError::NothingShown { withheld: 1 }))
    ));
    // As effective on day 7: sealed (the employer does not see it; the court sees it as sealed).
    let effective = b.records.view(s, Role::Court, Purpose::C, Some(day7)).unwrap();
    assert_eq!(effective.cycles[0].charges[0].status, "sealed");
    assert!(matches!(
        b.records.view(s, Role::Employer, Purpose::E, Some(day7)),
        Err(ServiceError::View(chronicle_records::view::ViewError::NothingShown { withheld: 1 }))
    ));
    // The day-7 check reproduces byte for byte, though the record has changed since.
    let again = b.records.reproduce(day7_check.dissemination.unwrap()).unwrap();
    assert!(again.matches(), "the replayed response must hash to what was logged");
    assert_eq!(again.bytes, day7_check.bytes);
    // And as recorded before anything at all: nothing.
    assert!(b.records.view_as_recorded(s, Role::Court, Purpose::C, Timestamp(0)).is_err());
}

#[test]
fn a_denied_request_is_logged_and_answers_nothing() {
    let b = Bureau::new();
    let s = b.enroll("SID-9", "LEE", "ANN", "1970-02-02");
    b.arrest(s, "OTN-9", "2024-03-01", &[(1, "13-1802", "THEFT", Level::Misdemeanor)]);
    let e =
        b.records.background_check(&b.ledger.ledger, b.employer.principal(), Purpose::C, s, None, None).unwrap_err();
    assert!(matches!(&e, ServiceError::Refused(reason) if reason.contains("employer")), "{e:?}");
    let log = b.access_log(s);
    assert!(matches!(&log[0], RecordEvent::AccessDenied { requester, .. } if requester == "acme.hr"));
    let access = b.ledger.store.read_stream(&access_stream(&s), 0, 10).unwrap();
    assert_eq!(access.len(), 1);
    // The auditor sees metadata only: ids and statuses, no literal, no identity.
    let audit = b.records.view(s, Role::Auditor, Purpose::A, None).unwrap();
    assert!(audit.identity.is_none());
    let text = String::from_utf8(audit.to_bytes()).unwrap();
    assert!(!text.contains("THEFT") && !text.contains("LEE"), "{text}");
    assert_eq!(audit.items().len(), 1);
}

/// Each validation rule: a precise error, and the log unchanged.
mod validation {
    use super::*;

    fn refused(b: &Bureau, who: &chronicle_core::Signer, stream: StreamId, ev: RecordEvent) -> RecordsError {
        let before = b.ledger.store.head();
        let e = b.rec(who, stream, ev).unwrap_err();
        assert_eq!(b.ledger.store.head(), before, "a refused command appends nothing");
        match e {
            ServiceError::Invalid(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn case() -> (Bureau, StreamId, StreamId) {
        let b = Bureau::new();
        let s = b.enroll("SID-1", "DOE", "JANE", "1990-04-01");
        let c = b.arrest(s, "OTN-1", "2024-03-01", &[(1, "13-1802", "THEFT", Level::Misdemeanor)]);
        (b, s, c)
    }

    #[test]
    fn a_disposition_for_a_charge_that_does_not_exist() {
        let (b, _, c) = case();
        let e = refused(
            &b,
            &b.court,
            c,
            RecordEvent::DispositionRecorded {
                seq: 9,
                disposition: DispositionKind::Dismissed,
                date: date("2024-04-01"),
            },
        );
        assert_eq!(e, RecordsError::UnknownCharge(9));
    }

    #[test]
    fn a_second_final_disposition_without_a_correction() {
        let (b, _, c) = case();
        dispose(&b, c, 1, DispositionKind::Dismissed, "2024-04-01");
        let e = refused(
            &b,
            &b.court,
            c,
            RecordEvent::DispositionRecorded {
                seq: 1,
                disposition: DispositionKind::GuiltyPlea,
                date: date("2024-04-02"),
            },
        );
        assert_eq!(e, RecordsError::DispositionExists(1));
    }

    #[test]
    fn an_order_on_an_already_expunged_scope() {
        let (b, _, c) = case();
        b.rec(
            &b.court,
            c,
            RecordEvent::ReliefOrdered {
                order_id: "EXP-1".into(),
                kind: ReliefKind::Expunge,
                scope: Scope::Charges(vec![1]),
                statute: "PC 851.93".into(),
                audiences: vec![],
            },
        )
        .unwrap();
        let e = refused(
            &b,
            &b.court,
            c,
            RecordEvent::ReliefOrdered {
                order_id: "SEAL-2".into(),
                kind: ReliefKind::Seal,
                scope: Scope::Charges(vec![1]),
                statute: "x".into(),
                audiences: vec![],
            },
        );
        assert_eq!(e, RecordsError::AlreadyExpunged(1));
    }

    #[test]
    fn a_reattribution_to_an_unknown_subject() {
        let (b, s, c) = case();
        let ghost = StreamId::random().to_hex();
        let e = refused(
            &b,
            &b.clerk,
            c,
            RecordEvent::CycleReassigned {
                from_subject: s.to_hex(),
                to_subject: ghost.clone(),
                reason: "r".into(),
                evidence: "e".into(),
            },
        );
        assert_eq!(e, RecordsError::UnknownSubject(ghost));
    }

    #[test]
    fn an_order_whose_scope_names_nothing() {
        let (b, _, c) = case();
        let e = refused(
            &b,
            &b.court,
            c,
            RecordEvent::ReliefOrdered {
                order_id: "SEAL-3".into(),
                kind: ReliefKind::Seal,
                scope: Scope::Charges(vec![]),
                statute: "x".into(),
                audiences: vec![],
            },
        );
        assert_eq!(e, RecordsError::EmptyScope);
    }

    #[test]
    fn dates_in_an_impossible_order() {
        let (b, s, c) = case();
        let e = refused(
            &b,
            &b.court,
            c,
            RecordEvent::DispositionRecorded {
                seq: 1,
                disposition: DispositionKind::Dismissed,
                date: date("2024-02-01"),
            },
        );
        assert_eq!(
            e,
            RecordsError::DateOrder {
                what: "disposition date",
                later: date("2024-02-01"),
                earlier_what: "arrest date",
                earlier: date("2024-03-01")
            }
        );
        let e = refused(
            &b,
            &b.police,
            StreamId::random(),
            RecordEvent::ArrestRecorded {
                subject: s.to_hex(),
                tracking_number: "OTN-X".into(),
                agency_ori: "ZZ".into(),
                arrest_date: date("1980-01-01"),
                charges: vec![common::charge(1, "x", "y", Level::Felony)],
            },
        );
        assert!(matches!(e, RecordsError::DateOrder { earlier_what: "date of birth", .. }));
    }

    #[test]
    fn a_duplicate_sid() {
        let (b, _, _) = case();
        let e = refused(
            &b,
            &b.clerk,
            StreamId::random(),
            RecordEvent::SubjectEnrolled {
                sid: "sid 1".into(),
                fbi: None,
                name: chronicle_records::Name { last: "X".into(), first: "Y".into(), middle: None },
                dob: date("1999-09-09"),
            },
        );
        assert_eq!(e, RecordsError::DuplicateSid("sid 1".into()));
    }

    #[test]
    fn a_role_that_may_not_write_the_event() {
        let (b, _, c) = case();
        let e = refused(
            &b,
            &b.employer,
            c,
            RecordEvent::DispositionRecorded {
                seq: 1,
                disposition: DispositionKind::Dismissed,
                date: date("2024-04-01"),
            },
        );
        assert_eq!(e, RecordsError::RoleNotAllowed { role: "employer", event: "disposition_recorded" });
    }

    #[test]
    fn unsealing_works_and_an_expungement_cannot_be_vacated() {
        let (b, s, c) = case();
        seal(&b, c, "SEAL-9", vec![1], Timestamp::now());
        assert!(matches!(
            b.records.view(s, Role::Employer, Purpose::E, None),
            Err(ServiceError::View(chronicle_records::view::ViewError::NothingShown { withheld: 1 }))
        ));
        b.rec(
            &b.court,
            c,
            RecordEvent::RestrictionVacated { order_id: "SEAL-9".into(), reason: "order vacated on appeal".into() },
        )
        .unwrap();
        assert_eq!(b.records.view(s, Role::Employer, Purpose::E, None).unwrap().items().len(), 1);
        b.rec(
            &b.court,
            c,
            RecordEvent::ReliefOrdered {
                order_id: "EXP-9".into(),
                kind: ReliefKind::Expunge,
                scope: Scope::Charges(vec![1]),
                statute: "x".into(),
                audiences: vec![],
            },
        )
        .unwrap();
        let e =
            refused(&b, &b.court, c, RecordEvent::RestrictionVacated { order_id: "EXP-9".into(), reason: "no".into() });
        assert!(matches!(e, RecordsError::AlreadyExpunged(_) | RecordsError::CannotVacateExpungement(_)), "{e:?}");
    }
}

#[test]
fn the_projection_persists_sealed_and_a_restart_or_rebuild_gives_the_same_state() {
    let b = Bureau::new();
    let s = b.enroll("SID-42", "PLANTED-SURNAME", "ZELDA", "1975-05-05");
    let c = b.arrest(s, "OTN-PLANTED", "2024-03-01", &[(1, "13-1802", "PLANTED-LITERAL", Level::Felony)]);
    b.rec(&b.court, c, RecordEvent::CourtCaseFiled { court_ori: "ZZ".into(), docket: "PLANTED-DOCKET".into() })
        .unwrap();
    // Persisting reopens sled when enough was written since it was last opened (here: anything),
    // and what was persisted is read back through the reopened handle below.
    b.ledger.store.set_settle_every(Some(1));
    let reopens = b.ledger.store.settled().0;
    b.records.persist().unwrap();
    assert!(b.ledger.store.settled().0 > reopens, "persisting the projection reopened sled");
    let before = b.records.projection().state.clone();
    // Nothing readable of the record is anywhere in the data directory: entries and persisted
    // projections are both sealed.
    let store = b.ledger.store.clone();
    let reopened = chronicle_records::Records::open(store.clone()).unwrap();
    assert!(reopened.projection().restored, "the projection was loaded, not replayed");
    assert!(reopened.projection().state == before, "the persisted projection restores the same state");
    assert_eq!(reopened.projection().state.cycle_by_docket("PLANTED-DOCKET"), Some(c), "indexes are rebuilt");
    // A part that belongs to no stream of the log (left by a damaged or foreign projection)
    // makes loading fail, so the next open replays; a rebuild replaces the projection whole.
    let next = store.projection_marker().unwrap().unwrap();
    store.write_projection(vec![(StreamId::random(), b"not a part".to_vec())], vec![], next).unwrap();
    let replayed = chronicle_records::Records::open(store.clone()).unwrap();
    assert!(!replayed.projection().restored, "a part that does not open: the log is replayed");
    assert!(replayed.projection().state == before, "and gives the same state");
    let rebuilt = chronicle_records::Records::rebuild(store.clone()).unwrap();
    assert!(rebuilt.projection().state == before, "rebuilding from zero gives the same state");
    let after = chronicle_records::Records::open(store.clone()).unwrap();
    assert!(after.projection().restored, "the rebuilt projection loads: the stale part is gone");
    assert!(after.projection().state == before);
    // The rebuilt projection is one snapshot file. Damaged, it is refused whole: the next open
    // replays, and its first persist writes a new snapshot, which loads.
    let snapshots: Vec<std::path::PathBuf> =
        std::fs::read_dir(b.ledger.dir.store_paths().projection).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let mut bytes = std::fs::read(&snapshots[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&snapshots[0], &bytes).unwrap();
    let replayed_again = chronicle_records::Records::open(store.clone()).unwrap();
    assert!(!replayed_again.projection().restored, "a damaged snapshot: the log is replayed");
    assert!(replayed_again.projection().state == before);
    replayed_again.persist().unwrap();
    let loads = chronicle_records::Records::open(store).unwrap();
    assert!(loads.projection().restored, "the snapshot written after the replay loads");
    assert!(loads.projection().state == before);
    drop((reopened, replayed, rebuilt, after, replayed_again, loads, b.records));
    let (_t, dir) = b.ledger.close();
    for needle in ["PLANTED-SURNAME", "PLANTED-LITERAL", "PLANTED-DOCKET", "OTN-PLANTED"] {
        for f in walk(&dir.root) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in plaintext in {}",
                f.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn a_persist_that_fails_keeps_its_changes_for_the_next_one() {
    let b = Bureau::new();
    let s = b.enroll("SID-77", "DOE", "JANE", "1980-01-01");
    let c = b.arrest(s, "OTN-77", "2024-03-01", &[(1, "13-1802", "THEFT", Level::Misdemeanor)]);
    b.records.persist().unwrap();
    let marker = b.ledger.store.projection_marker().unwrap();
    // A change to the cycle, then its key destroyed behind the records service's back: the
    // cycle's part can no longer be sealed, so persisting fails.
    b.rec(&b.court, c, RecordEvent::CourtCaseFiled { court_ori: "ZZ".into(), docket: "CR-77".into() }).unwrap();
    assert_eq!(b.ledger.store.destroy_stream_keys(&[c]).unwrap(), 1);
    assert!(matches!(b.records.persist(), Err(ServiceError::Persist(_))), "persisting a part without its key fails");
    assert_eq!(b.ledger.store.projection_marker().unwrap(), marker, "a failed persist moves nothing");
    // The cycle is still waiting to be persisted: a second try fails the same way rather than
    // writing a newer marker over the cycle's stale part.
    assert!(matches!(b.records.persist(), Err(ServiceError::Persist(_))), "the change was kept for the next persist");
    assert_eq!(b.ledger.store.projection_marker().unwrap(), marker);
}

#[test]
fn parts_persisted_over_the_snapshot_are_folded_into_a_new_one_once_they_outgrow_it() {
    let b = Bureau::new();
    let store = b.ledger.store.clone();
    b.records.set_snapshot_after(6);
    // The service's first persist writes a snapshot (its projection was replayed from zero).
    b.enroll("SID-1", "FIRST", "ANNA", "1970-01-01");
    b.records.persist().unwrap();
    let first = store.projection_shape().unwrap();
    assert!(first.snapshot_parts > 0 && first.overlay == 0, "{first:?}");
    // Later persists go over it, until more than six parts were written there.
    let mut shapes = Vec::new();
    for i in 0..9 {
        b.enroll(&format!("SID-N{i}"), "NEXT", "BORIS", "1971-01-01");
        b.records.persist().unwrap();
        shapes.push(store.projection_shape().unwrap());
    }
    let overlays: Vec<u64> = shapes.iter().map(|s| s.overlay).collect();
    assert!(overlays[0] > 0, "persists over the snapshot: {shapes:?}");
    let folded =
        shapes.iter().position(|s| s.overlay == 0).unwrap_or_else(|| panic!("no new snapshot: {first:?} {shapes:?}"));
    assert!(overlays[..folded].windows(2).all(|w| w[0] < w[1]), "the overlay grew until then: {shapes:?}");
    assert!(shapes[folded].snapshot_parts > first.snapshot_parts, "{shapes:?}");
    // One snapshot file, the earlier overlay swept by the persists after it, and it loads.
    let files = std::fs::read_dir(b.ledger.dir.store_paths().projection).unwrap().count();
    assert_eq!(files, 1);
    b.enroll("SID-LAST", "LAST", "CARL", "1972-01-01");
    b.records.persist().unwrap();
    assert_eq!(store.sweep_projection(usize::MAX).unwrap(), 0, "nothing of an earlier generation is left");
    let reopened = chronicle_records::Records::open(store).unwrap();
    assert!(reopened.projection().restored);
    assert!(reopened.projection().state == b.records.projection().state);
}
