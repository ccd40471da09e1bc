//! End to end over a real loopback socket with mutual TLS: courts, police, clerks, employers and
//! auditors using the ledger through the Rust client, the policy enforced by the server.

mod common;

use chronicle_client::v1 as pb;
use chronicle_client::{ClientError, Code};
use chronicle_core::{Command, StreamId, Timestamp};
use chronicle_records::service::draft;
use chronicle_records::{Date, DispositionKind, Level, Name, RecordEvent};
use common::{Served, charge};

fn ev_draft(stream: StreamId, ev: &RecordEvent) -> chronicle_core::Draft {
    draft(stream, ev, Timestamp::now(), None, chronicle_core::random_array::<16>().to_vec())
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> Code {
    match r {
        Err(ClientError::Status(s)) => s.code(),
        other => panic!("expected a status, got {other:?}"),
    }
}

fn record_req(sid: &str, purpose: pb::Purpose) -> pb::RecordRequest {
    pb::RecordRequest { sid: sid.into(), purpose: purpose as i32, ..Default::default() }
}

/// Enrolls a subject, records an arrest with two charges, files the court case and records a
/// disposition, each by the role that does it in life. Returns (subject, cycle).
fn story(s: &Served) -> (StreamId, StreamId) {
    let mut clerk = s.client("clerk");
    let mut police = s.client("pd.metro");
    let mut court = s.client("court.district-4");
    let subject = StreamId::random();
    let cycle = StreamId::random();
    s.rt.block_on(async {
        let enrolled = RecordEvent::SubjectEnrolled {
            sid: "PA-100".into(),
            fbi: None,
            name: Name { last: "Doe".into(), first: "Jane".into(), middle: None },
            dob: Date::parse("1990-04-01").unwrap(),
        };
        let r = clerk.sign_and_submit(ev_draft(subject, &enrolled)).await.unwrap();
        assert_eq!(r.entries.len(), 1);
        assert!(!r.duplicate);
        let arrest = RecordEvent::ArrestRecorded {
            subject: subject.to_hex(),
            tracking_number: "OTN-1".into(),
            agency_ori: "PA0000001".into(),
            arrest_date: Date::parse("2020-01-02").unwrap(),
            charges: vec![
                charge(1, "18 Pa.C.S. 3921", "Theft by unlawful taking", Level::Misdemeanor),
                charge(2, "18 Pa.C.S. 5503", "Disorderly conduct", Level::Summary),
            ],
        };
        police.sign_and_submit(ev_draft(cycle, &arrest)).await.unwrap();
        let filed = RecordEvent::CourtCaseFiled { court_ori: "PA000001J".into(), docket: "CP-1-CR-1".into() };
        court.sign_and_submit(ev_draft(cycle, &filed)).await.unwrap();
        let guilty = RecordEvent::DispositionRecorded {
            seq: 1,
            disposition: DispositionKind::GuiltyPlea,
            date: Date::parse("2020-06-01").unwrap(),
        };
        court.sign_and_submit(ev_draft(cycle, &guilty)).await.unwrap();
    });
    (subject, cycle)
}

#[test]
fn parties_use_the_ledger_over_mutual_tls_and_the_policy_is_enforced_and_logged() {
    let s = Served::start(true);
    let (subject, cycle) = story(&s);
    let mut clerk = s.client("clerk");
    let mut employer = s.client("acme.hr");
    let mut police = s.client("pd.metro");
    let mut auditor = s.client("auditor");
    s.rt.block_on(async {
        // The clerk reads the whole record inside the bureau: not a dissemination.
        let r = clerk.record(record_req("PA-100", pb::Purpose::A)).await.unwrap();
        let view: serde_json::Value = serde_json::from_slice(&r.view_json).unwrap();
        assert_eq!(view["subject"], subject.to_hex());
        assert_eq!(view["identity"]["name"]["last"], "Doe");
        assert_eq!(r.dissemination_position, 0);
        assert_eq!(r.content_hash, blake3::hash(&r.view_json).to_hex().to_string());

        // An employer's background check: what the policy lets employers see (the recent
        // arrest is reportable), logged as a dissemination with the hash of exactly these bytes.
        let check = employer.background_check(record_req("PA-100", pb::Purpose::E)).await.unwrap();
        assert!(check.dissemination_position > 0);
        let logged = s.store.entry(check.dissemination_position).unwrap().unwrap();
        let payload = s.store.open_payload(&logged).unwrap();
        let logged: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(logged["content_hash"], blake3::hash(&check.view_json).to_hex().to_string());
        assert_eq!(logged["requester"], "acme.hr");

        // The employer may not ask for purpose C: refused and logged.
        assert_eq!(code(employer.record(record_req("PA-100", pb::Purpose::C)).await), Code::PermissionDenied);
        // Nor replay histories.
        let hreq =
            pb::HistoryRequest { stream: subject.0.to_vec(), purpose: pb::Purpose::E as i32, ..Default::default() };
        assert_eq!(code(employer.history(hreq).await), Code::PermissionDenied);
        // Nor follow the log.
        assert_eq!(
            code(async { employer.subscribe(0).await?.message().await.map_err(ClientError::from) }.await),
            Code::PermissionDenied
        );
        // A purpose is required.
        assert_eq!(code(police.record(record_req("PA-100", pb::Purpose::Unspecified)).await), Code::InvalidArgument);

        // The clerk's history of the subject shows who did what, including the refusals.
        let hreq =
            pb::HistoryRequest { stream: subject.0.to_vec(), purpose: pb::Purpose::A as i32, ..Default::default() };
        let h = clerk.history(hreq).await.unwrap();
        let types: Vec<&str> = h.iter().map(|i| i.event_type.as_str()).collect();
        assert!(types.contains(&"records.subject_enrolled"), "{types:?}");
        assert!(types.contains(&"records.disposition_recorded"), "{types:?}");
        assert!(types.contains(&"records.record_disseminated"), "{types:?}");
        let denials: Vec<serde_json::Value> = h
            .iter()
            .filter(|i| i.event_type == "records.access_denied")
            .map(|i| serde_json::from_slice(&i.event_json).unwrap())
            .collect();
        assert_eq!(denials.len(), 2, "the purpose-C read and the history request were logged: {denials:?}");
        assert!(denials.iter().all(|d| d["requester"] == "acme.hr"));
        assert!(denials.iter().any(|d| d["action"] == "history"));
        let arrest = h.iter().find(|i| i.event_type == "records.arrest_recorded").unwrap();
        assert_eq!(arrest.author, "pd.metro");
        assert_eq!(arrest.role, "law_enforcement");
        assert_eq!(arrest.stream, cycle.to_hex());

        // Police replay the case by docket for purpose C: logged as a dissemination.
        let hreq =
            pb::HistoryRequest { docket: "CP-1-CR-1".into(), purpose: pb::Purpose::C as i32, ..Default::default() };
        let case_history = police.history(hreq).await.unwrap();
        assert_eq!(case_history.len(), 3);
        assert!(case_history.iter().all(|i| !i.event_json.is_empty()));

        // An auditor sees who, when and what kind, not the content.
        let hreq =
            pb::HistoryRequest { stream: cycle.0.to_vec(), purpose: pb::Purpose::A as i32, ..Default::default() };
        let audited = auditor.history(hreq).await.unwrap();
        assert_eq!(audited.len(), 3);
        assert!(audited.iter().all(|i| i.event_json.is_empty() && !i.author.is_empty()));

        // A case by docket, for the court's purpose.
        let case = police
            .case(pb::CaseRequest { docket: "CP-1-CR-1".into(), purpose: pb::Purpose::C as i32, ..Default::default() })
            .await
            .unwrap();
        let view: serde_json::Value = serde_json::from_slice(&case.view_json).unwrap();
        assert_eq!(view["cycles"].as_array().unwrap().len(), 1);
        assert_eq!(view["cycles"][0]["cycle"], cycle.to_hex());
        assert!(case.dissemination_position > 0, "law enforcement is outside the bureau");

        // As-of: the record as the ledger showed it before the disposition.
        let before = s
            .store
            .entry(h.iter().find(|i| i.event_type == "records.disposition_recorded").unwrap().position)
            .unwrap()
            .unwrap();
        let mut req = record_req("PA-100", pb::Purpose::A);
        req.as_recorded_micros = before.header.recorded_time.0 - 1;
        let then = clerk.record(req).await.unwrap();
        let view: serde_json::Value = serde_json::from_slice(&then.view_json).unwrap();
        assert!(view["cycles"][0]["charges"][0].get("disposition").is_none_or(|d| d.is_null()), "{view}");

        // The auditor follows the log from 0: exactly the stored entries, in order.
        let head = s.store.head().len;
        let mut sub = auditor.subscribe(0).await.unwrap();
        for pos in 0..head {
            let e = sub.message().await.unwrap().unwrap();
            assert_eq!(e.position, pos);
            assert_eq!(e.entry, s.store.entry(pos).unwrap().unwrap().bytes());
        }

        // Proofs: a checkpoint that verifies with the log key, and an inclusion proof under it.
        let note = auditor.checkpoint(0).await.unwrap();
        let cp = chronicle_tlog::verify_checkpoint(&note, &s.dir.log_key().unwrap()).unwrap();
        let p = auditor.inclusion_proof(1, cp.size).await.unwrap();
        let path: Vec<chronicle_tlog::TreeHash> =
            p.audit_path.iter().map(|h| chronicle_tlog::TreeHash(h.as_slice().try_into().unwrap())).collect();
        chronicle_tlog::tree::verify_inclusion(chronicle_tlog::tree::leaf_hash(&p.leaf), 1, cp.size, &path, cp.root)
            .unwrap();
        let c = auditor.consistency_proof(1, cp.size).await.unwrap();
        assert_eq!(c.second, cp.size);
    });
}

#[test]
fn submit_answers_retries_once_checks_expected_versions_and_refuses_what_the_role_may_not_do() {
    let s = Served::start(true);
    let (subject, cycle) = story(&s);
    let mut court = s.client("court.district-4");
    let mut employer = s.client("acme.hr");
    let mut clerk = s.client("clerk");
    let mut police = s.client("pd.metro");
    s.rt.block_on(async {
        let ev = RecordEvent::DispositionRecorded {
            seq: 2,
            disposition: DispositionKind::Dismissed,
            date: Date::parse("2020-06-01").unwrap(),
        };
        let cmd = Command::sign(court.signer().unwrap(), ev_draft(cycle, &ev)).unwrap();
        // Wrong expected version: ABORTED, nothing appended.
        let len = s.store.head().len;
        let wrong = Some(pb::expected_version::Expected::Exact(0));
        assert_eq!(code(court.submit(cycle, wrong, std::slice::from_ref(&cmd)).await), Code::Aborted);
        assert_eq!(s.store.head().len, len);
        // The right one, then the same command again: one entry, the second answer a duplicate.
        let right = Some(pb::expected_version::Expected::Exact(2));
        let first = court.submit(cycle, right, std::slice::from_ref(&cmd)).await.unwrap();
        let again = court.submit(cycle, None, std::slice::from_ref(&cmd)).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(again.entries, first.entries);
        // A retry with its original expected version (the stream has moved past it) is answered
        // as a duplicate too, not as a version conflict.
        let same = Some(pb::expected_version::Expected::Exact(2));
        let retry = court.submit(cycle, same, std::slice::from_ref(&cmd)).await.unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.entries, first.entries);
        assert_eq!(s.store.head().len, len + 1);
        // A second disposition of the same charge: a state conflict.
        let dup = Command::sign(court.signer().unwrap(), ev_draft(cycle, &ev)).unwrap();
        assert_eq!(code(court.submit(cycle, None, &[dup]).await), Code::FailedPrecondition);
        // An employer may not record dispositions: refused and logged.
        let ev3 = RecordEvent::DispositionRecorded {
            seq: 1,
            disposition: DispositionKind::Acquitted,
            date: Date::parse("2020-06-01").unwrap(),
        };
        let by_employer = Command::sign(employer.signer().unwrap(), ev_draft(cycle, &ev3)).unwrap();
        let before = s.store.head().len;
        assert_eq!(code(employer.submit(cycle, None, &[by_employer]).await), Code::PermissionDenied);
        assert_eq!(s.store.head().len, before + 1, "the refusal, and only it, was logged");
        // A command signed by the court but sent by the clerk: not the clerk's to send.
        let relayed = Command::sign(court.signer().unwrap(), ev_draft(cycle, &ev3)).unwrap();
        assert_eq!(code(clerk.submit(cycle, None, &[relayed]).await), Code::PermissionDenied);
        // A batch: a new arrest and a charge that depends on it, atomically.
        let new_cycle = StreamId::random();
        let arrest = RecordEvent::ArrestRecorded {
            subject: subject.to_hex(),
            tracking_number: "OTN-2".into(),
            agency_ori: "PA0000001".into(),
            arrest_date: Date::parse("2021-01-02").unwrap(),
            charges: vec![charge(1, "18 Pa.C.S. 2701", "Simple assault", Level::Misdemeanor)],
        };
        let filed = RecordEvent::ChargeFiled { charge: charge(2, "18 Pa.C.S. 2709", "Harassment", Level::Summary) };
        let signer = police.signer().unwrap();
        let batch = vec![
            Command::sign(signer, ev_draft(new_cycle, &arrest)).unwrap(),
            Command::sign(signer, ev_draft(new_cycle, &filed)).unwrap(),
        ];
        let nostream = Some(pb::expected_version::Expected::NoStream(true));
        let r = police.submit(new_cycle, nostream, &batch).await;
        // Filing a charge is the prosecutor's or the clerk's act, not the police's: the whole
        // batch is refused, nothing of it appended.
        let len = s.store.head().len;
        assert_eq!(code(r), Code::PermissionDenied);
        let clerk_batch = vec![Command::sign(clerk.signer().unwrap(), ev_draft(new_cycle, &filed)).unwrap()];
        assert_eq!(code(clerk.submit(new_cycle, None, &clerk_batch).await), Code::FailedPrecondition, "no arrest yet");
        assert_eq!(s.store.head().len, len, "a refused state conflict is not an access decision: nothing logged");
    });
}

#[test]
fn graceful_shutdown_keeps_every_acknowledged_append() {
    let mut s = Served::start(true);
    let clerk = s.client("clerk");
    let acked: Vec<u64> = s.rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..32 {
            let mut c = clerk.clone();
            tasks.push(tokio::spawn(async move {
                let ev = RecordEvent::SubjectEnrolled {
                    sid: format!("SD-{i}"),
                    fbi: None,
                    name: Name { last: "Roe".into(), first: format!("R{i}"), middle: None },
                    dob: Date::parse("1980-01-01").unwrap(),
                };
                c.sign_and_submit(ev_draft(StreamId::random(), &ev)).await
            }));
        }
        let mut acked = Vec::new();
        for t in tasks {
            if let Ok(r) = t.await.unwrap() {
                acked.push(r.entries[0].position);
            }
        }
        let _ = clerk.principal();
        acked
    });
    assert_eq!(acked.len(), 32);
    s.stop().expect("graceful stop");
    // After the stop every acknowledged entry is in the log and the ledger verifies.
    for p in &acked {
        assert!(s.store.entry(*p).unwrap().is_some());
    }
    let (_tmp, dir) = s.close();
    let report = chronicle_store::verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn insecure_loopback_names_the_caller_by_header_and_refuses_other_addresses() {
    let s = Served::start(false);
    let creds = s.creds("clerk");
    let addr = s.addr.to_string();
    s.rt.block_on(async {
        let mut clerk =
            chronicle_client::Client::connect_insecure(&addr, creds.principal.clone(), creds.signer.clone())
                .await
                .unwrap();
        let subject = StreamId::random();
        let ev = RecordEvent::SubjectEnrolled {
            sid: "IL-1".into(),
            fbi: None,
            name: Name { last: "Loop".into(), first: "Back".into(), middle: None },
            dob: Date::parse("1999-09-09").unwrap(),
        };
        clerk.sign_and_submit(ev_draft(subject, &ev)).await.unwrap();
        // No header: nobody.
        let mut raw = pb::records_client::RecordsClient::connect(format!("http://{addr}")).await.unwrap();
        let st = raw.get_record(record_req("IL-1", pb::Purpose::A)).await.unwrap_err();
        assert_eq!(st.code(), Code::Unauthenticated);
        assert!(clerk.record(record_req("IL-1", pb::Purpose::A)).await.is_ok());
    });
    // The same server mode on a non-loopback address is refused before it listens.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["serve", "--data-dir"])
        .arg(&s.dir.root)
        .args(["--listen", "0.0.0.0:0", "--insecure-loopback"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-loopback refuses 0.0.0.0:0"), "{out:?}");
}

#[test]
fn a_subject_sees_only_their_own_record_and_an_attorney_without_representation_nothing() {
    let s = Served::start(true);
    story(&s);
    let mut clerk = s.client("clerk");
    let mut me = s.client("subject:pa100");
    let mut attorney = s.client("da.smith");
    s.rt.block_on(async {
        let other = RecordEvent::SubjectEnrolled {
            sid: "PA-200".into(),
            fbi: None,
            name: Name { last: "Else".into(), first: "Someone".into(), middle: None },
            dob: Date::parse("1970-01-01").unwrap(),
        };
        clerk.sign_and_submit(ev_draft(StreamId::random(), &other)).await.unwrap();
        let mine = me.record(record_req("PA-100", pb::Purpose::X)).await.unwrap();
        let view: serde_json::Value = serde_json::from_slice(&mine.view_json).unwrap();
        assert_eq!(view["identity"]["sid"], "PA-100");
        assert_eq!(code(me.record(record_req("PA-200", pb::Purpose::X)).await), Code::PermissionDenied);
        assert_eq!(code(attorney.record(record_req("PA-100", pb::Purpose::C)).await), Code::PermissionDenied);
        let case = pb::CaseRequest { docket: "CP-1-CR-1".into(), purpose: pb::Purpose::C as i32, ..Default::default() };
        assert_eq!(code(attorney.case(case).await), Code::PermissionDenied);
    });
}

/// A call whose deadline passes is ended by the server, the server keeps serving, and resubmitting
/// the same signed command is safe whether or not the cut-off one was appended: one entry, and the
/// same answer to every later retry.
#[test]
fn a_submission_past_its_deadline_is_cut_off_and_resubmitting_it_appends_once() {
    let s = Served::start(true);
    let clerk = s.client("clerk");
    let mut hurried = clerk.clone().with_deadline(Some(std::time::Duration::from_nanos(1)));
    let mut patient = clerk.clone().with_deadline(Some(std::time::Duration::from_secs(30)));
    let subject = StreamId::random();
    let enrolled = RecordEvent::SubjectEnrolled {
        sid: "PA-DEADLINE".into(),
        fbi: None,
        name: Name { last: "Roe".into(), first: "Rita".into(), middle: None },
        dob: Date::parse("1985-02-03").unwrap(),
    };
    let cmd = Command::sign(clerk.signer().unwrap(), ev_draft(subject, &enrolled)).unwrap();
    let len = s.store.head().len;
    s.rt.block_on(async {
        // A nanosecond is over before the server can answer: the call is ended by its deadline.
        let cut = hurried.submit(subject, None, std::slice::from_ref(&cmd)).await;
        let c = code(cut);
        assert!(matches!(c, Code::Cancelled | Code::DeadlineExceeded), "{c:?}");
        // The same command again, with time to spare: appended once, whatever became of the first.
        let first = patient.submit(subject, None, std::slice::from_ref(&cmd)).await.unwrap();
        let again = patient.submit(subject, None, std::slice::from_ref(&cmd)).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(again.entries, first.entries);
        // Still serving: a read sees the subject.
        let rec = patient.record(record_req("PA-DEADLINE", pb::Purpose::A)).await.unwrap();
        assert!(!rec.view_json.is_empty());
    });
    // One entry appended (the server's own checkpoints, with their heads commitments, aside).
    let appended = s.store.read_log(len, 100).unwrap();
    assert_eq!(appended.iter().filter(|e| e.statement.stream != chronicle_core::StreamId::LEDGER).count(), 1);
    let on_subject = s.store.read_stream(&subject, 0, 10).unwrap();
    assert_eq!(on_subject.len(), 1);
}
