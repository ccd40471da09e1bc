//! What an outside requester learns, end to end over mutual TLS: one test per way the promise
//! "an employer cannot learn a sealed record" was broken (each fails on the code before the
//! access module), and the bureau's answers to "who received this record" and "what exactly did
//! they receive".

mod common;

use chronicle_client::v1 as pb;
use chronicle_client::{ClientError, Code};
use chronicle_core::{StreamId, Timestamp};
use chronicle_records::model::{access_stream, denials_stream, policy_stream};
use chronicle_records::service::{Decoded, decode, draft};
use chronicle_records::{Access, Date, DispositionKind, Level, Name, Policy, RecordEvent, ReliefKind, Scope};
use common::{Served, charge};

fn ev_draft(stream: StreamId, ev: &RecordEvent) -> chronicle_core::Draft {
    draft(stream, ev, Timestamp::now(), None, chronicle_core::random_array::<16>().to_vec())
}

fn status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> chronicle_client::Status {
    match r {
        Err(ClientError::Status(s)) => s,
        other => panic!("expected a status, got {other:?}"),
    }
}

fn check(sid: &str, purpose: pb::Purpose) -> pb::RecordRequest {
    pb::RecordRequest { sid: sid.into(), purpose: purpose as i32, ..Default::default() }
}

/// The records events appended since `from`, with their streams.
fn since(s: &Served, from: u64) -> Vec<(StreamId, RecordEvent)> {
    s.store
        .read_log(from, 10_000)
        .unwrap()
        .iter()
        .filter_map(|e| match decode(&s.store, e).unwrap() {
            Decoded::Event(m, ev) => Some((m.stream, ev)),
            _ => None,
        })
        .collect()
}

/// PA-100 Jane Doe: case CP-1 (theft, convicted; trespass, dismissed and then sealed) and case
/// CP-2 (one charge, sealed whole). Returns the subject, the two cases and the time just before
/// the seals.
fn sealed_story(s: &Served) -> (StreamId, StreamId, StreamId, Timestamp) {
    let mut clerk = s.client("clerk");
    let mut police = s.client("pd.metro");
    let mut court = s.client("court.district-4");
    let (subject, cp1, cp2) = (StreamId::random(), StreamId::random(), StreamId::random());
    let before = s.rt.block_on(async {
        let enrolled = RecordEvent::SubjectEnrolled {
            sid: "PA-100".into(),
            fbi: None,
            name: Name { last: "Doe".into(), first: "Jane".into(), middle: None },
            dob: Date::parse("1990-04-01").unwrap(),
        };
        clerk.sign_and_submit(ev_draft(subject, &enrolled)).await.unwrap();
        let arrest = |charges| RecordEvent::ArrestRecorded {
            subject: subject.to_hex(),
            tracking_number: "OTN-1".into(),
            agency_ori: "PA0000001".into(),
            arrest_date: Date::parse("2024-01-02").unwrap(),
            charges,
        };
        let two = vec![
            charge(1, "18 Pa.C.S. 3921", "THEFT BY UNLAWFUL TAKING", Level::Misdemeanor),
            charge(2, "18 Pa.C.S. 3503", "DEFIANT TRESPASS", Level::Misdemeanor),
        ];
        police.sign_and_submit(ev_draft(cp1, &arrest(two))).await.unwrap();
        let one = vec![charge(1, "35 P.S. 780-113", "POSSESSION OF A SMALL AMOUNT", Level::Misdemeanor)];
        police.sign_and_submit(ev_draft(cp2, &arrest(one))).await.unwrap();
        for (cycle, docket) in [(cp1, "CP-1"), (cp2, "CP-2")] {
            let filed = RecordEvent::CourtCaseFiled { court_ori: "PA000001J".into(), docket: docket.into() };
            court.sign_and_submit(ev_draft(cycle, &filed)).await.unwrap();
        }
        for (seq, disposition) in [(1, DispositionKind::GuiltyPlea), (2, DispositionKind::Dismissed)] {
            let d = RecordEvent::DispositionRecorded { seq, disposition, date: Date::parse("2024-03-01").unwrap() };
            court.sign_and_submit(ev_draft(cp1, &d)).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let before = Timestamp::now();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let seal = |order: &str, scope| RecordEvent::ReliefOrdered {
            order_id: order.into(),
            kind: ReliefKind::Seal,
            scope,
            statute: "18 Pa.C.S. 9122.2".into(),
            audiences: vec![],
        };
        court.sign_and_submit(ev_draft(cp1, &seal("SEAL-1", Scope::Charges(vec![2])))).await.unwrap();
        court.sign_and_submit(ev_draft(cp2, &seal("SEAL-2", Scope::WholeCycle))).await.unwrap();
        before
    });
    (subject, cp1, cp2, before)
}

/// Defect 1: An employer asking for the record as effective, or as recorded, before the seals: the
/// restrictions in force now still withhold the sealed charges.
#[test]
fn an_as_of_read_never_shows_what_a_seal_in_force_now_withholds() {
    let s = Served::start(true);
    let (_, _, _, before) = sealed_story(&s);
    let mut employer = s.client("acme.hr");
    let mut court = s.client("court.district-4");
    s.rt.block_on(async {
        for (effective, recorded) in [(before.0, 0), (0, before.0), (before.0, before.0)] {
            for check_call in [true, false] {
                let mut req = check("PA-100", pb::Purpose::E);
                (req.as_effective_micros, req.as_recorded_micros) = (effective, recorded);
                let r = if check_call {
                    employer.background_check(req).await.unwrap()
                } else {
                    employer.record(req).await.unwrap()
                };
                let text = String::from_utf8(r.view_json.clone()).unwrap();
                assert!(text.contains("THEFT BY UNLAWFUL TAKING"), "{text}");
                assert!(!text.contains("TRESPASS") && !text.contains("POSSESSION"), "as of before the seal: {text}");
                assert!(r.dissemination_position > 0, "and the release is logged");
            }
        }
        // A court sees the sealed charges at any as-of point: as the policy says.
        let mut req = check("PA-100", pb::Purpose::C);
        req.as_recorded_micros = before.0;
        let r = court.record(req).await.unwrap();
        let text = String::from_utf8(r.view_json).unwrap();
        assert!(text.contains("DEFIANT TRESPASS") && text.contains("POSSESSION"), "{text}");
    });
}

/// Defect 2: Inclusion proofs: entry bytes only for the roles that read the log; anyone may prove an
/// entry it holds by its leaf hash; every such call is logged.
#[test]
fn an_outsider_gets_no_log_entry_from_a_proof_and_every_proof_call_is_logged() {
    let s = Served::start(true);
    sealed_story(&s);
    let mut employer = s.client("acme.hr");
    let mut auditor = s.client("auditor");
    s.rt.block_on(async {
        for position in [1, 5, 9] {
            let from = s.store.head().len;
            let st = status(employer.inclusion_proof(position, 0).await);
            assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
            let logged = since(&s, from);
            assert!(
                matches!(&logged[..], [(d, RecordEvent::AccessDenied { requester, action: Some(a), .. })]
                    if *d == denials_stream() && requester == "acme.hr" && a == "inclusion_proof"),
                "{logged:?}"
            );
        }
        // The auditor reads the entry; the employer, holding it, proves it by its leaf hash.
        let full = auditor.inclusion_proof(3, 0).await.unwrap();
        assert!(!full.leaf.is_empty());
        let leaf = chronicle_tlog::tree::leaf_hash(&full.leaf);
        let from = s.store.head().len;
        let held = employer.inclusion_check(3, full.tree_size, leaf.0).await.unwrap();
        assert!(held.leaf.is_empty(), "no entry bytes to a caller that did not send them");
        assert_eq!(held.audit_path, full.audit_path);
        let logged = since(&s, from);
        assert!(
            matches!(&logged[..], [(_, RecordEvent::AuditRecorded { requester, action, .. })]
                if requester == "acme.hr" && action == "inclusion_check"),
            "{logged:?}"
        );
        let st = status(employer.inclusion_check(3, full.tree_size, [7; 32]).await);
        assert_eq!(st.code(), Code::NotFound);
    });
}

/// Defect 3: Histories follow the adopted policy: a stricter policy takes them from a role the default
/// gives them to, and a policy that would give one to a row that withholds is refused.
#[test]
fn histories_follow_the_adopted_policy() {
    let s = Served::start(true);
    let (subject, cp1, _, _) = sealed_story(&s);
    let mut police = s.client("pd.metro");
    let mut employer = s.client("acme.hr");
    let admin = s.dir.admin().unwrap();
    let hreq = |purpose: pb::Purpose| pb::HistoryRequest {
        stream: cp1.0.to_vec(),
        purpose: purpose as i32,
        ..Default::default()
    };
    s.rt.block_on(async {
        let page = police.history_page(hreq(pb::Purpose::C)).await.unwrap();
        assert!(page.items.iter().any(|i| i.event_type == "records.relief_ordered"));
        assert!(page.dissemination_position > 0, "a history is a release outside the bureau");
        assert_eq!(status(employer.history_page(hreq(pb::Purpose::E)).await).code(), Code::PermissionDenied);
        // The police asking for another purpose: refused, whatever the records say.
        assert_eq!(status(police.history_page(hreq(pb::Purpose::E)).await).code(), Code::PermissionDenied);
        // The bureau adopts a policy under which the police replay no histories.
        let mut policy = Policy::default_policy();
        policy.version = 2;
        for r in policy.rules.iter_mut().filter(|r| r.role == chronicle_core::Role::LawEnforcement) {
            r.history = Access::None;
        }
        let adopted = RecordEvent::PolicyAdopted { policy };
        let mut admin_client = chronicle_client::Client::connect(
            &s.addr.to_string(),
            &chronicle_client::Credentials::load(&s.dir.credentials_dir("admin")).unwrap(),
        )
        .await
        .unwrap();
        let _ = &admin;
        admin_client.sign_and_submit(ev_draft(policy_stream(), &adopted)).await.unwrap();
        let st = status(police.history_page(hreq(pb::Purpose::C)).await);
        assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
        // A policy giving employers a history cannot be adopted.
        let mut policy = Policy::default_policy();
        policy.version = 3;
        for r in policy.rules.iter_mut().filter(|r| r.role == chronicle_core::Role::Employer) {
            r.history = Access::Full;
        }
        let st = status(
            admin_client.sign_and_submit(ev_draft(policy_stream(), &RecordEvent::PolicyAdopted { policy })).await,
        );
        assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
        let _ = subject;
    });
}

/// Defect 4: Existence: no count of what was withheld, and a docket whose every charge is sealed
/// answers an employer exactly as an unknown docket does.
#[test]
fn a_withheld_case_answers_exactly_as_an_unknown_one() {
    let s = Served::start(true);
    let (subject, cp1, _, _) = sealed_story(&s);
    let mut employer = s.client("acme.hr");
    let mut clerk = s.client("clerk");
    s.rt.block_on(async {
        let r = employer.background_check(check("PA-100", pb::Purpose::E)).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.view_json).unwrap();
        assert!(v.get("suppressed").is_none(), "{v}");
        assert_eq!(v["cycles"].as_array().unwrap().len(), 1, "the wholly sealed case is not there: {v}");
        let charges = v["cycles"][0]["charges"].as_array().unwrap();
        assert_eq!(charges.len(), 1);
        assert_eq!(
            (charges[0]["seq"].as_u64(), charges[0]["item"].as_str()),
            (Some(1), Some(format!("{}:1", cp1.to_hex()).as_str()))
        );
        // The dissemination entry, which the employer never sees, counts what was withheld.
        let logged = since(&s, r.dissemination_position);
        match &logged[0].1 {
            RecordEvent::RecordDisseminated { suppressed, items, .. } => {
                assert_eq!((*suppressed, items.len()), (2, 1));
            }
            other => panic!("{other:?}"),
        }

        let case = |docket: &str| pb::CaseRequest {
            docket: docket.into(),
            purpose: pb::Purpose::E as i32,
            ..Default::default()
        };
        let sealed = status(employer.case(case("CP-2")).await);
        let unknown = status(employer.case(case("CP-9")).await);
        assert_eq!(sealed.code(), Code::NotFound);
        assert_eq!(
            (sealed.code(), sealed.message().replace("CP-2", "?")),
            (unknown.code(), unknown.message().replace("CP-9", "?"))
        );
        assert!(!sealed.message().contains("Doe") && !sealed.message().contains("PA-100"));
        // Both are logged as refusals: the sealed one in the subject's access log, the unknown one
        // in the denials stream.
        let log = since(&s, 0);
        assert!(log.iter().any(|(st, ev)| *st == access_stream(&subject)
            && matches!(ev, RecordEvent::AccessDenied { action: Some(a), .. } if a == "get_case")));
        assert!(log.iter().any(|(st, ev)| *st == denials_stream()
            && matches!(ev, RecordEvent::AccessDenied { action: Some(a), .. } if a == "get_case")));
        // A SID whose every item is withheld answers like an unknown SID.
        let other = StreamId::random();
        let enrolled = RecordEvent::SubjectEnrolled {
            sid: "PA-200".into(),
            fbi: None,
            name: Name { last: "Roe".into(), first: "Ann".into(), middle: None },
            dob: Date::parse("1991-01-01").unwrap(),
        };
        clerk.sign_and_submit(ev_draft(other, &enrolled)).await.unwrap();
        let nothing = status(employer.background_check(check("PA-200", pb::Purpose::E)).await);
        let unknown = status(employer.background_check(check("PA-999", pb::Purpose::E)).await);
        assert_eq!(
            (nothing.code(), nothing.message().replace("PA-200", "?")),
            (unknown.code(), unknown.message().replace("PA-999", "?"))
        );
    });
}

/// Defect 5: The dissemination log is exact: a command's look-up is no release, and refusals are logged
/// after a restart too.
#[test]
fn look_ups_are_not_releases_and_refusals_are_logged_after_a_restart() {
    let s = Served::start(true);
    let (subject, cp1, _, _) = sealed_story(&s);
    let mut court = s.client("court.district-4");
    let mut police = s.client("pd.metro");
    let from = s.store.head().len;
    s.rt.block_on(async {
        let r = court
            .resolve(pb::ResolveRequest { docket: "CP-1".into(), purpose: pb::Purpose::C as i32, ..Default::default() })
            .await
            .unwrap();
        assert_eq!((r.subject_id, r.case_id), (subject.0.to_vec(), cp1.0.to_vec()));
        let r = police
            .resolve(pb::ResolveRequest { sid: "PA-100".into(), purpose: pb::Purpose::C as i32, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(r.subject_id, subject.0.to_vec());
    });
    // Not releases: audit entries in the subject's access log, saying who looked the ids up.
    let logged = since(&s, from);
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(
        logged.iter().all(|(st, ev)| *st == access_stream(&subject)
            && matches!(ev, RecordEvent::AuditRecorded { action, .. } if action == "resolve")),
        "{logged:?}"
    );
    let from = s.store.head().len;
    s.rt.block_on(async {
        // The police probing an unknown SID: not found, and logged (the SID is not written).
        let st = status(
            police
                .resolve(pb::ResolveRequest {
                    sid: "PA-777".into(),
                    purpose: pb::Purpose::C as i32,
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(st.code(), Code::NotFound);
        let logged = since(&s, from);
        assert!(matches!(&logged[..], [(d, RecordEvent::AccessDenied { .. })] if *d == denials_stream()), "{logged:?}");
        assert!(!format!("{logged:?}").contains("PA-777"), "a probe's reference is not written down");
    });
    // After a restart, refusals into the denials stream (and the subject's access log) go on.
    let (tmp, dir) = s.close();
    let s = common::Served::reopen(tmp, dir);
    let mut employer = s.client("acme.hr");
    s.rt.block_on(async {
        for _ in 0..2 {
            let st = status(
                employer
                    .case(pb::CaseRequest {
                        docket: "CP-404".into(),
                        purpose: pb::Purpose::E as i32,
                        ..Default::default()
                    })
                    .await,
            );
            assert_eq!(st.code(), Code::NotFound, "{st:?}");
            let st = status(employer.record(check("PA-100", pb::Purpose::C)).await);
            assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
        }
    });
}

/// Defect 6: amplification. Refusals naming subjects that do not exist create no stream and no
/// key, and a requester refused in a loop is logged one by one only up to a rate; over it, every
/// call it makes is refused before anything is looked up (so nothing it asks while its refusals
/// are only counted can tell it anything), and the refusals are logged together.
#[test]
fn refusals_create_no_streams_and_are_logged_at_a_bounded_rate() {
    let s = Served::start(true);
    sealed_story(&s);
    let mut employer = s.client("acme.hr");
    let from = s.store.head().len;
    let burst = chronicle_core::limits::REFUSALS_LOGGED_BURST as usize;
    let calls = burst + 200;
    let (mut not_found, mut limited) = (0, 0);
    s.rt.block_on(async {
        for k in 0..calls {
            let id = StreamId::random();
            let req =
                pb::RecordRequest { subject_id: id.0.to_vec(), purpose: pb::Purpose::E as i32, ..Default::default() };
            match status(employer.background_check(req).await).code() {
                Code::NotFound => not_found += 1,
                Code::ResourceExhausted => limited += 1,
                other => panic!("call {k}: {other:?}"),
            }
        }
    });
    // The burst is answered and logged one by one (with what refilled meanwhile); then the
    // employer is refused before anything is looked up.
    assert!(not_found >= burst && limited > 0, "{not_found} not found, {limited} over the rate");
    let logged = since(&s, from);
    assert!(logged.iter().all(|(st, _)| *st == denials_stream()), "every refusal went to the one denials stream");
    assert_eq!(logged.len(), not_found, "one entry for each refusal answered one by one");
    // The rest are logged together by the next flush.
    assert_eq!(s.flush_refusals(), 1);
    let logged = since(&s, from);
    match &logged.last().unwrap().1 {
        RecordEvent::AccessDenied { repeated, requester, .. } => {
            assert_eq!((*repeated as usize, requester.as_str()), (limited, "acme.hr"))
        }
        other => panic!("{other:?}"),
    }
    let streams: std::collections::BTreeSet<StreamId> =
        s.store.read_log(from, 10_000).unwrap().iter().map(|e| e.statement.stream).collect();
    assert_eq!(streams.len(), 1, "no stream, so no key, for any subject that does not exist");
}

/// Defect 7: Only the ledger writes the access log: a clerk's forged release or refusal is refused.
#[test]
fn no_one_but_the_ledger_writes_a_release_or_a_refusal() {
    let s = Served::start(true);
    let (subject, _, _, _) = sealed_story(&s);
    let mut clerk = s.client("clerk");
    s.rt.block_on(async {
        let forged = RecordEvent::RecordDisseminated {
            request_id: "x".into(),
            requester: "acme.hr".into(),
            role: chronicle_core::Role::Employer,
            purpose: chronicle_records::Purpose::E,
            authority: None,
            subject: subject.to_hex(),
            as_of_position: 1,
            content_hash: "00".repeat(32),
            items: vec![],
            suppressed: 0,
            checked_on: Date::parse("2024-01-01").unwrap(),
            as_effective: None,
            method: "background_check".into(),
            case: None,
            as_recorded: None,
            page: None,
            answered_at: None,
        };
        let st = status(clerk.sign_and_submit(ev_draft(access_stream(&subject), &forged)).await);
        assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
    });
}

/// The bureau's questions: who received the record, and what exactly one release held.
#[test]
fn the_bureau_lists_the_recipients_of_a_record_and_reproduces_a_release_without_releasing_again() {
    let s = Served::start(true);
    let (_, _, _, before) = sealed_story(&s);
    let mut employer = s.client("acme.hr");
    let mut police = s.client("pd.metro");
    let mut auditor = s.client("auditor");
    let mut clerk = s.client("clerk");
    s.rt.block_on(async {
        let mut asked = check("PA-100", pb::Purpose::E);
        asked.authority = "consent form 88".into();
        asked.as_recorded_micros = before.0;
        let first = employer.background_check(asked).await.unwrap();
        let second = police.record(check("PA-100", pb::Purpose::C)).await.unwrap();
        let hist = police
            .history_page(pb::HistoryRequest {
                docket: "CP-1".into(),
                purpose: pb::Purpose::C as i32,
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(hist.items.len(), 2);
        assert!(hist.more_items);
        let listed =
            auditor.recipients(pb::RecipientsRequest { sid: "PA-100".into(), ..Default::default() }).await.unwrap();
        let who: Vec<(&str, &str, u64)> =
            listed.recipients.iter().map(|r| (r.requester.as_str(), r.method.as_str(), r.position)).collect();
        assert_eq!(
            who,
            vec![
                ("acme.hr", "background_check", first.dissemination_position),
                ("pd.metro", "get_record", second.dissemination_position),
                ("pd.metro", "history", hist.dissemination_position),
            ]
        );
        assert_eq!(listed.recipients[0].content_hash, first.content_hash);
        assert_eq!(listed.recipients[0].authority, "consent form 88");
        // Only the case CP-2: the releases of the whole record included it, the history of CP-1 did not.
        let cp2 = auditor
            .recipients(pb::RecipientsRequest { sid: "PA-100".into(), docket: "CP-2".into(), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(cp2.recipients.iter().map(|r| r.requester.as_str()).collect::<Vec<_>>(), vec!["pd.metro"]);
        // Reproducing each release: the same bytes, checked against the hash logged; an audit
        // entry, not a release. The auditor is told whether they match, not shown them.
        for (position, bytes) in [
            (first.dissemination_position, first.view_json.clone()),
            (second.dissemination_position, second.view_json.clone()),
        ] {
            let checked = auditor.reproduce(position).await.unwrap();
            assert!(checked.matches && checked.content.is_empty(), "{checked:?}");
            let from = s.store.head().len;
            let again = clerk.reproduce(position).await.unwrap();
            assert!(again.matches, "{again:?}");
            assert_eq!(again.content, bytes);
            let logged = since(&s, from);
            assert!(
                matches!(&logged[..], [(_, RecordEvent::AuditRecorded { action, .. })] if action == "reproduce"),
                "{logged:?}"
            );
        }
        let again = auditor.reproduce(hist.dissemination_position).await.unwrap();
        assert!(again.matches && again.method == "history", "{again:?}");
        // Outsiders may do neither.
        assert_eq!(status(employer.reproduce(first.dissemination_position).await).code(), Code::PermissionDenied);
        assert_eq!(
            status(employer.recipients(pb::RecipientsRequest { sid: "PA-100".into(), ..Default::default() }).await)
                .code(),
            Code::PermissionDenied
        );
    });
}

/// Bad input to the read calls: the field named, the right code, nothing appended.
#[test]
fn bad_input_to_reads_gets_the_right_code_and_appends_nothing() {
    let s = Served::start(true);
    sealed_story(&s);
    let mut employer = s.client("acme.hr");
    let mut clerk = s.client("clerk");
    let from = s.store.head().len;
    s.rt.block_on(async {
        for (field, t) in [
            ("as_effective_micros", -1),
            ("as_effective_micros", 253_402_300_800_000_000),
            ("as_recorded_micros", i64::MIN),
            ("as_recorded_micros", i64::MAX),
        ] {
            let mut req = check("PA-100", pb::Purpose::E);
            if field == "as_effective_micros" {
                req.as_effective_micros = t
            } else {
                req.as_recorded_micros = t
            }
            let st = status(employer.background_check(req).await);
            assert_eq!(st.code(), Code::InvalidArgument, "{field} = {t}: {st:?}");
            assert!(st.message().starts_with(field), "{st:?}");
        }
        let st = status(
            employer
                .case(pb::CaseRequest {
                    docket: "CP-1".into(),
                    purpose: pb::Purpose::E as i32,
                    as_effective_micros: -5,
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(st.code(), Code::InvalidArgument);
        let page = |limit| pb::HistoryRequest {
            docket: "CP-1".into(),
            purpose: pb::Purpose::A as i32,
            limit,
            ..Default::default()
        };
        let st = status(clerk.history_page(page(1_000_000)).await);
        assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
        assert!(st.message().starts_with("limit:"), "{st:?}");
        let mut far = page(10);
        far.from_position = u64::MAX;
        assert!(clerk.history_page(far).await.unwrap().items.is_empty());
        let st = status(
            clerk.recipients(pb::RecipientsRequest { sid: "PA-100".into(), limit: 5_000, ..Default::default() }).await,
        );
        assert_eq!(st.code(), Code::ResourceExhausted);
        let st = status(
            clerk
                .recipients(pb::RecipientsRequest { sid: "PA-100".into(), since_micros: -1, ..Default::default() })
                .await,
        );
        assert_eq!(st.code(), Code::InvalidArgument);
        // Malformed ids are named; unknown ones asked for inside the bureau are not found and
        // not logged.
        let st = status(
            clerk
                .record(pb::RecordRequest {
                    subject_id: vec![1, 2, 3],
                    purpose: pb::Purpose::A as i32,
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(st.code(), Code::InvalidArgument);
        assert!(st.message().starts_with("subject_id:"), "{st:?}");
        let st = status(
            clerk
                .history_page(pb::HistoryRequest {
                    stream: StreamId::random().0.to_vec(),
                    purpose: pb::Purpose::A as i32,
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(st.code(), Code::NotFound);
        let st = status(clerk.reproduce(u64::MAX).await);
        assert_eq!(st.code(), Code::NotFound);
        let st = status(employer.inclusion_check(u64::MAX, 0, [0; 32]).await);
        assert_eq!(st.code(), Code::OutOfRange);
        let st = status(clerk.inclusion_check(0, 0, [0; 32]).await);
        assert_eq!(st.code(), Code::NotFound, "a leaf hash the entry does not have");
        // An authority longer than allowed is refused before anything is looked up, for a
        // record that exists as for one that does not.
        for sid in ["PA-100", "PA-NOBODY"] {
            let mut req = check(sid, pb::Purpose::E);
            req.authority = "A".repeat(257);
            let st = status(employer.background_check(req).await);
            assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
            assert!(st.message().starts_with("authority:"), "{st:?}");
        }
    });
    assert_eq!(since(&s, from), vec![], "bad input appends nothing");
}

/// A submission says a stream's version only to a caller allowed to write to it: an employer
/// probing how many entries a subject's access log holds is refused as a role, not told.
#[test]
fn a_submission_tells_no_version_of_a_stream_the_caller_may_not_write() {
    let s = Served::start(true);
    let (subject, _, _, _) = sealed_story(&s);
    let mut employer = s.client("acme.hr");
    s.rt.block_on(async {
        let ev = RecordEvent::ChallengeFiled { challenge_id: "c1".into(), statement: "x".into() };
        let cmd =
            chronicle_core::Command::sign(employer.signer().unwrap(), ev_draft(access_stream(&subject), &ev)).unwrap();
        let st = status(
            employer.submit(access_stream(&subject), Some(pb::expected_version::Expected::Exact(999)), &[cmd]).await,
        );
        assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
        assert!(!st.message().contains("version"), "{st:?}");
    });
}

/// A subject files a challenge only on their own record; an attorney without representation on
/// none. Someone else's case and no case at all are refused alike.
#[test]
fn a_subject_challenges_only_their_own_record() {
    let s = Served::start(true);
    let (_, cp1, _, _) = sealed_story(&s);
    let mut subject = s.client("subject:pa100");
    let mut attorney = s.client("da.smith");
    let mut police = s.client("pd.metro");
    s.rt.block_on(async {
        let challenge = |id: &str| RecordEvent::ChallengeFiled { challenge_id: id.into(), statement: "not me".into() };
        subject.sign_and_submit(ev_draft(cp1, &challenge("c1"))).await.unwrap();
        // Someone else's case, and a case id that names nothing.
        let other = StreamId::random();
        let arrest = RecordEvent::ArrestRecorded {
            subject: {
                let mut clerk = s.client_async("clerk").await;
                let id = StreamId::random();
                let e = RecordEvent::SubjectEnrolled {
                    sid: "PA-300".into(),
                    fbi: None,
                    name: Name { last: "Poe".into(), first: "Al".into(), middle: None },
                    dob: Date::parse("1970-01-01").unwrap(),
                };
                clerk.sign_and_submit(ev_draft(id, &e)).await.unwrap();
                id.to_hex()
            },
            tracking_number: "OTN-3".into(),
            agency_ori: "PA0000001".into(),
            arrest_date: Date::parse("2024-01-02").unwrap(),
            charges: vec![charge(1, "s", "X", Level::Misdemeanor)],
        };
        police.sign_and_submit(ev_draft(other, &arrest)).await.unwrap();
        let theirs = status(subject.sign_and_submit(ev_draft(other, &challenge("c2"))).await);
        let nothing = status(subject.sign_and_submit(ev_draft(StreamId::random(), &challenge("c3"))).await);
        assert_eq!((theirs.code(), theirs.message()), (nothing.code(), nothing.message()));
        assert_eq!(theirs.code(), Code::PermissionDenied);
        let st = status(attorney.sign_and_submit(ev_draft(cp1, &challenge("c4"))).await);
        assert_eq!(st.code(), Code::PermissionDenied);
    });
}

/// Two orders restrict a charge: a role sees it as unrestricted only if every one of them names
/// it. A vacatur that takes effect next month lifts nothing today.
#[test]
fn every_order_in_force_restricts_and_a_vacatur_lifts_nothing_before_it_takes_effect() {
    let s = Served::start(true);
    sealed_story(&s);
    let mut court = s.client("court.district-4");
    let mut police = s.client("pd.metro");
    let mut employer = s.client("acme.hr");
    let cp1 =
        s.rt.block_on(court.resolve(pb::ResolveRequest {
            docket: "CP-1".into(),
            purpose: pb::Purpose::C as i32,
            ..Default::default()
        }))
        .unwrap()
        .case_id;
    let cp1 = StreamId(cp1.try_into().unwrap());
    s.rt.block_on(async {
        // SEAL-1 (no audiences) holds charge 2; a limited-access order naming the police comes later.
        let limited = RecordEvent::ReliefOrdered {
            order_id: "LA-1".into(),
            kind: ReliefKind::LimitedAccess,
            scope: Scope::Charges(vec![2]),
            statute: "18 Pa.C.S. 9122.1".into(),
            audiences: vec![chronicle_core::Role::LawEnforcement],
        };
        court.sign_and_submit(ev_draft(cp1, &limited)).await.unwrap();
        let r = police.record(check("PA-100", pb::Purpose::E)).await.unwrap();
        assert!(!String::from_utf8_lossy(&r.view_json).contains("TRESPASS"), "the seal naming no one still holds");
        // The court vacates SEAL-1 with effect next month: it holds until then.
        let next_month = Timestamp(Timestamp::now().0 + 30 * 86_400_000_000);
        let vacate = RecordEvent::RestrictionVacated { order_id: "SEAL-1".into(), reason: "on appeal".into() };
        let d = draft(cp1, &vacate, next_month, None, chronicle_core::random_array::<16>().to_vec());
        court.sign_and_submit(d).await.unwrap();
        let r = employer.background_check(check("PA-100", pb::Purpose::E)).await.unwrap();
        assert!(!String::from_utf8_lossy(&r.view_json).contains("TRESPASS"), "vacated only from next month");
        // As effective next month and later, it is vacated (but LA-1 names only the police).
        let mut later = check("PA-100", pb::Purpose::E);
        later.as_effective_micros = next_month.0 + 1;
        let r = employer.background_check(later).await.unwrap();
        assert!(!String::from_utf8_lossy(&r.view_json).contains("TRESPASS"), "an as-of read never widens today's view");
    });
}

/// Histories to callers outside the bureau: pages point only at entries the caller may see,
/// the access log and the ledger's own streams answer as unknown, and an expungement order on
/// some charges (and the restatement that carries it out) is absent for rows that may not know
/// of expungements.
#[test]
fn a_history_page_points_only_at_what_the_caller_may_see() {
    let s = Served::start(true);
    let (subject, cp1, _, _) = sealed_story(&s);
    let mut court = s.client("court.district-4");
    let mut police = s.client("pd.metro");
    let mut employer = s.client("acme.hr");
    let mut clerk = s.client("clerk");
    s.rt.block_on(async {
        // Releases and refusals fill the subject's access log between the record's entries.
        for _ in 0..3 {
            employer.background_check(check("PA-100", pb::Purpose::E)).await.unwrap();
            let _ = employer.record(check("PA-100", pb::Purpose::C)).await;
        }
        let expunge = RecordEvent::ReliefOrdered {
            order_id: "EXP-7".into(),
            kind: ReliefKind::Expunge,
            scope: Scope::Charges(vec![2]),
            statute: "18 Pa.C.S. 9122".into(),
            audiences: vec![],
        };
        court.sign_and_submit(ev_draft(cp1, &expunge)).await.unwrap();
        let mut req = pb::HistoryRequest {
            stream: subject.0.to_vec(),
            purpose: pb::Purpose::C as i32,
            limit: 1,
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = police.history_page(req.clone()).await.unwrap();
            assert!(!page.items.is_empty() || seen.is_empty(), "a page was promised and came empty");
            seen.extend(page.items);
            if !page.more_items {
                break;
            }
            req.from_position = page.next_position;
        }
        assert!(seen.iter().all(|i| !i.event_type.contains("disseminated") && !i.event_type.contains("denied")));
        assert!(!seen.iter().any(|i| i.event_type == "records.cycle_restated" || i.court_order == "EXP-7"));
        assert!(
            seen.iter().all(|i| !String::from_utf8_lossy(&i.event_json).contains("EXP-7")),
            "no word of the expungement"
        );
        // The bureau sees the order and the restatement.
        let all = clerk
            .history(pb::HistoryRequest {
                stream: cp1.0.to_vec(),
                purpose: pb::Purpose::A as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(all.iter().any(|i| i.event_type == "records.cycle_restated"));
        assert!(all.iter().any(|i| String::from_utf8_lossy(&i.event_json).contains("EXP-7")));
        // The subject's access log, asked for by its own id, answers the police as an unknown stream.
        let access = status(
            police
                .history_page(pb::HistoryRequest {
                    stream: access_stream(&subject).0.to_vec(),
                    purpose: pb::Purpose::C as i32,
                    ..Default::default()
                })
                .await,
        );
        let unknown_id = StreamId::random();
        let unknown = status(
            police
                .history_page(pb::HistoryRequest {
                    stream: unknown_id.0.to_vec(),
                    purpose: pb::Purpose::C as i32,
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(
            (access.code(), access.message().replace(&access_stream(&subject).to_hex(), "?")),
            (unknown.code(), unknown.message().replace(&unknown_id.to_hex(), "?"))
        );
    });
}

/// Look-ups are for a writer's command, under a purpose in which the writer sees whole records;
/// an inclusion check by a leaf hash the entry does not have is a refusal, logged.
#[test]
fn look_ups_need_a_purpose_that_shows_whole_records_and_a_wrong_leaf_hash_is_a_logged_refusal() {
    let s = Served::start(true);
    sealed_story(&s);
    let mut police = s.client("pd.metro");
    let mut employer = s.client("acme.hr");
    s.rt.block_on(async {
        let st = status(police.resolve(pb::ResolveRequest { sid: "PA-100".into(), purpose: pb::Purpose::E as i32, ..Default::default() }).await);
        assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
        let from = s.store.head().len;
        let st = status(employer.inclusion_check(2, 0, [9; 32]).await);
        assert_eq!(st.code(), Code::NotFound);
        let logged = since(&s, from);
        assert!(matches!(&logged[..], [(d, RecordEvent::AccessDenied { action: Some(a), .. })] if *d == denials_stream() && a == "inclusion_check"), "{logged:?}");
    });
}
