//! The client commands against a real `chronicle serve` process over mutual TLS: the clerk's,
//! the court's and the police's actions, reads for a purpose, a history timeline, a background
//! check, a refusal, and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_chronicle");

mod common;

use common::{chronicle, ok};

struct Server(Child);

impl Server {
    fn start(data: &Path) -> (Server, String) {
        let mut child = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start chronicle serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("serve printed nothing").unwrap();
        let addr = first.strip_prefix("listening on ").and_then(|r| r.split(' ').next()).expect(&first).to_string();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        (Server(child), addr)
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.0.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

#[test]
fn clerk_court_and_police_work_a_case_through_the_client_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    ok(&["init", "--data-dir", d]);
    for (id, role) in [("clerk", "records_clerk"), ("court", "court"), ("pd", "law_enforcement"), ("acme", "employer")]
    {
        ok(&["principal", "add", "--data-dir", d, "--id", id, "--role", role]);
    }
    let (server, addr) = Server::start(&data);
    let who = |id: &str| -> Vec<String> {
        vec!["--server".into(), addr.clone(), "--data-dir".into(), d.into(), "--as".into(), id.into()]
    };
    let run = |cmd: &str, id: &str, rest: &[&str]| -> String {
        let mut args: Vec<String> = vec![cmd.into()];
        args.extend(who(id));
        args.extend(rest.iter().map(|s| s.to_string()));
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let json = |s: &str| -> serde_json::Value { serde_json::from_str(s.trim()).unwrap() };

    run("enroll", "clerk", &["--sid", "PA-1", "--last", "Doe", "--first", "John", "--dob", "1980-02-03"]);
    run("enroll", "clerk", &["--sid", "PA-2", "--last", "Doe", "--first", "Jon", "--dob", "1981-05-06"]);
    let arrest = json(&run(
        "arrest",
        "pd",
        &[
            "--subject",
            "PA-1",
            "--otn",
            "OTN-9",
            "--agency",
            "PA0000001",
            "--date",
            "2023-03-01",
            "--charge",
            "1|18 Pa.C.S. 3921|Theft by unlawful taking|misdemeanor",
            "--charge",
            "2|18 Pa.C.S. 5503|Disorderly conduct|summary",
            "--json",
        ],
    ));
    let case_id = arrest["stream"].as_str().unwrap().to_string();
    run("court-case", "court", &["--case", &case_id, "--court", "PA000001J", "--docket", "CP-9"]);
    run(
        "charge",
        "clerk",
        &[
            "--case",
            "CP-9",
            "--seq",
            "3",
            "--statute",
            "18 Pa.C.S. 3925",
            "--literal",
            "Receiving stolen property",
            "--level",
            "misdemeanor",
        ],
    );
    run(
        "disposition",
        "court",
        &["--case", "CP-9", "--seq", "1", "--disposition", "guilty_plea", "--date", "2023-09-01"],
    );
    let cutoff = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros().to_string();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let out = run(
        "correct",
        "court",
        &[
            "--case",
            "CP-9",
            "--seq",
            "1",
            "--disposition",
            "dismissed",
            "--date",
            "2023-09-01",
            "--reason",
            "wrong charge keyed",
        ],
    );
    assert!(out.contains("disposition of charge 1 corrected"), "{out}");
    run(
        "order",
        "court",
        &[
            "--case",
            "CP-9",
            "--kind",
            "seal",
            "--order-id",
            "ORD-1",
            "--statute",
            "18 Pa.C.S. 9122.1",
            "--charge",
            "2",
            "--audience",
            "court",
        ],
    );

    // The commands above looked up PA-1 and CP-9 for their own use: ids only, so no release of
    // the record to the police or the court was logged.
    let out = run("recipients", "clerk", &["--subject", "PA-1"]);
    assert!(out.ends_with("0 release(s)\n"), "{out}");

    // The record in words, for the police (purpose C): every charge, the correction applied.
    let out = run("record", "pd", &["PA-1", "--purpose", "C"]);
    assert!(out.contains("Doe, John (SID PA-1, born 1980-02-03)"), "{out}");
    assert!(
        out.contains("1. Theft by unlawful taking (18 Pa.C.S. 3921, misdemeanor): dismissed on 2023-09-01"),
        "{out}"
    );
    assert!(out.contains("docket CP-9"), "{out}");
    assert!(out.contains("this release was logged at position"), "{out}");
    // As recorded before the correction: the plea.
    let out = run("record", "pd", &["PA-1", "--purpose", "C", "--as-of", &cutoff, "--json"]);
    let v = json(&out);
    assert_eq!(v["view"]["cycles"][0]["charges"][0]["disposition"], "guilty_plea", "{out}");

    // The case, and its history as a timeline.
    let v = json(&run("case", "court", &["CP-9", "--purpose", "C", "--json"]));
    assert_eq!(v["view"]["cycles"][0]["docket"], "CP-9");
    let out = run("history", "pd", &["--case", "CP-9"]);
    assert!(out.contains("arrest recorded by pd (law_enforcement)"), "{out}");
    assert!(out.contains("disposition corrected by court (court)"), "{out}");
    assert!(out.contains("relief ordered by court (court), under order ORD-1"), "{out}");
    assert!(out.contains("6 entries"), "{out}");
    let lines = run("history", "pd", &["--case", "CP-9", "--as-of", &cutoff, "--json"]);
    assert_eq!(lines.lines().count(), 4, "as of the cutoff: arrest, filing, charge, disposition: {lines}");
    let effective = run("history", "pd", &["--case", "CP-9", "--effective", "--json"]);
    let times: Vec<i64> = effective.lines().map(|l| json(l)["effective_micros"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "--effective orders by effective time");
    // The arrest took effect on its date, the disposition on its own: ordered by effect, the
    // 2023 events come before the filings recorded today.
    let first = json(effective.lines().next().unwrap());
    assert_eq!(first["event_type"], "records.arrest_recorded", "{effective}");
    assert_eq!(chronicle_records::Date::from_micros(times[0]).to_string(), "2023-03-01");

    // The case was PA-2's all along: moved, and PA-1's record no longer shows it.
    run(
        "reattribute",
        "clerk",
        &["--case", "CP-9", "--to", "PA-2", "--reason", "fingerprints", "--evidence", "AFIS-1"],
    );
    let v = json(&run("record", "clerk", &["PA-1", "--purpose", "A", "--json"]));
    assert!(v["view"]["cycles"].as_array().unwrap().is_empty(), "{v}");

    // An employer's background check, logged; and a purpose it may not use, refused (exit 4).
    let v = json(&run("check", "acme", &["--purpose", "E", "--sid", "PA-2", "--authority", "consent 88", "--json"]));
    let released = v["dissemination_position"].as_u64().unwrap();
    assert!(released > 0);
    assert!(!run("check", "acme", &["--purpose", "E", "--sid", "PA-2"]).contains("withheld"), "no word of withholding");
    // Who received PA-2's record, and what exactly the employer received.
    let out = run("recipients", "clerk", &["--subject", "PA-2", "--json"]);
    let first = json(out.lines().next().unwrap());
    assert_eq!((first["requester"].as_str(), first["method"].as_str()), (Some("acme"), Some("background_check")));
    assert_eq!(first["authority"], "consent 88");
    let out = run("reproduce", "clerk", &["--dissemination", &released.to_string()]);
    assert!(out.contains(&format!("the release at position {released} (background check) was rebuilt")), "{out}");
    let mut args = vec!["reproduce".to_string()];
    args.extend(who("acme"));
    args.extend(["--dissemination".into(), released.to_string()]);
    let refused = chronicle(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.status.code(), Some(4), "an employer may not reproduce releases: {refused:?}");
    let mut args = vec!["record".to_string()];
    args.extend(who("acme"));
    args.extend(["PA-2".into(), "--purpose".into(), "C".into()]);
    let refused = chronicle(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"), "{refused:?}");

    // Expunge the whole case: the server destroys its keys before answering.
    run("order", "court", &["--case", "CP-9", "--kind", "expunge", "--order-id", "EXP-1", "--statute", "PC 851.93"]);
    let mut args = vec!["history".to_string()];
    args.extend(who("pd"));
    args.extend(["--case".into(), case_id.clone()]);
    let gone = chronicle(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(gone.status.code(), Some(4), "{gone:?}");
    // To the police an expunged case is as if it never was; the bureau sees the order.
    let said = String::from_utf8_lossy(&gone.stderr);
    assert!(said.contains(&format!("no record or case {case_id}")) && !said.contains("EXP-1"), "{gone:?}");
    let mut args = vec!["history".to_string()];
    args.extend(who("clerk"));
    args.extend(["--purpose".into(), "A".into(), "--case".into(), case_id.clone()]);
    let gone = chronicle(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(gone.status.code(), Some(4), "{gone:?}");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("expunged by order EXP-1"), "{gone:?}");

    // A principal added while the server runs (the server holds the log): through the server.
    let out = ok(&["principal", "add", "--data-dir", d, "--id", "pd2", "--role", "law_enforcement", "--server", &addr]);
    assert!(out.contains("registered pd2 as law_enforcement"), "{out}");
    let v = json(&run("record", "pd2", &["PA-2", "--purpose", "C", "--json"]));
    assert_eq!(v["view"]["identity"]["sid"], "PA-2");
    // A registration signed by the admin but sent over the clerk's connection is refused.
    let mut args = vec!["principal".to_string(), "add".into(), "--data-dir".into(), d.into()];
    args.extend(["--id".into(), "pd3".into(), "--role".into(), "court".into(), "--server".into(), addr.clone()]);
    std::fs::rename(data.join("secrets/principals/admin"), data.join("secrets/principals/admin.away")).unwrap();
    std::fs::rename(data.join("secrets/principals/clerk"), data.join("secrets/principals/admin")).unwrap();
    let refused = chronicle(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!refused.status.success(), "a clerk registered a principal: {refused:?}");
    std::fs::rename(data.join("secrets/principals/admin"), data.join("secrets/principals/clerk")).unwrap();
    std::fs::rename(data.join("secrets/principals/admin.away"), data.join("secrets/principals/admin")).unwrap();

    // SIGTERM: a clean stop, and the ledger verifies offline.
    assert!(server.stop().success());
    let out = ok(&["verify", "--data-dir", d]);
    assert!(out.starts_with("ok: "), "{out}");
}

/// `export-evidence` releases a record's entries with their content to a named recipient: only
/// when the policy lets the recipient's role receive all of it, and logged with the bundle's hash.
#[test]
fn an_evidence_export_with_content_is_a_logged_release_to_its_recipient() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let d = data.to_str().unwrap();
    ok(&["demo", "--data-dir", d]);
    let out = tmp.path().join("case.json");
    let o = out.to_str().unwrap();
    let export = |recipient: &str, purpose: &str| {
        chronicle(&[
            "export-evidence",
            "--data-dir",
            d,
            "--case",
            "CR-2024-001",
            "--recipient",
            recipient,
            "--purpose",
            purpose,
            "--authority",
            "subpoena 12",
            "--out",
            o,
        ])
    };
    // An employer may not receive a case's entries (part of it is sealed, and no employer
    // replays histories): refused, nothing written.
    let refused = export("acme.hr", "E");
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    assert!(!out.exists());
    let unknown = export("nobody.here", "C");
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    // The court may.
    let said = ok(&[
        "export-evidence",
        "--data-dir",
        d,
        "--case",
        "CR-2024-001",
        "--recipient",
        "court.district-4",
        "--purpose",
        "C",
        "--authority",
        "subpoena 12",
        "--out",
        o,
    ]);
    assert!(said.starts_with("wrote "), "{said}");
    let bundle = std::fs::read(&out).unwrap();
    let key = ok(&["log-key", "--data-dir", d]);
    assert!(ok(&["verify-evidence", o, "--log-key", key.trim()]).starts_with("verified: "));
    // The release is in the subject's access log: to the court, with the hash of the bundle.
    let dir = chronicle::datadir::DataDir::new(&data, None);
    let store = dir.open().unwrap();
    let releases: Vec<chronicle_records::RecordEvent> = store
        .read_log(0, 10_000)
        .unwrap()
        .iter()
        .filter_map(|e| match chronicle_records::service::decode(&store, e).unwrap() {
            chronicle_records::service::Decoded::Event(
                _,
                ev @ chronicle_records::RecordEvent::RecordDisseminated { .. },
            ) => Some(ev),
            _ => None,
        })
        .collect();
    let exported: Vec<_> = releases
        .iter()
        .filter(|ev| matches!(ev, chronicle_records::RecordEvent::RecordDisseminated { method, .. } if method == "evidence_export"))
        .collect();
    match exported[..] {
        [chronicle_records::RecordEvent::RecordDisseminated { requester, content_hash, authority, .. }] => {
            assert_eq!(requester, "court.district-4");
            assert_eq!(content_hash, &blake3::hash(&bundle).to_hex().to_string());
            assert_eq!(authority.as_deref(), Some("subpoena 12"));
        }
        _ => panic!("one evidence release expected: {releases:?}"),
    }
    // The employer's refusal was logged too.
    let refusals = store
        .read_log(0, 10_000)
        .unwrap()
        .iter()
        .filter(|e| e.statement.event_type.as_str() == "records.access_denied")
        .count();
    assert!(refusals >= 2, "the demo's refusal and the export's");
}
