//! Bulk import: good and bad lines, the rejects file, all-or-nothing, and importing twice.

use std::process::Command;

fn chronicle(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chronicle")).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn setup() -> (tempfile::TempDir, String, String) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data").to_str().unwrap().to_string();
    let key = t.path().join("clerk.pem").to_str().unwrap().to_string();
    assert_eq!(chronicle(&["init", "--data-dir", &d]).0, Some(0));
    let (code, _, err) = chronicle(&[
        "principal",
        "add",
        "--data-dir",
        &d,
        "--id",
        "clerk.import",
        "--role",
        "records_clerk",
        "--key-out",
        &key,
    ]);
    assert_eq!(code, Some(0), "{err}");
    (t, d, key)
}

/// `chronicle import` of `file` into `d` as the test clerk.
fn import(d: &str, key: &str, file: &std::path::Path, all_or_nothing: bool) -> (Option<i32>, String, String) {
    let mut args = vec!["import", "--data-dir", d, "--principal", "clerk.import", "--key", key];
    if all_or_nothing {
        args.push("--all-or-nothing");
    }
    args.push(file.to_str().unwrap());
    chronicle(&args)
}

fn head(d: &str) -> u64 {
    let (_, out, _) = chronicle(&["verify", "--data-dir", d, "--json"]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["entries_verified"].as_u64().unwrap()
}

#[test]
fn a_generated_backlog_imports_and_importing_it_twice_changes_nothing() {
    let (t, d, key) = setup();
    let file = t.path().join("backlog.jsonl");
    let (code, out, _) = chronicle(&["generate", "--subjects", "40", "--out", file.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let lines = std::fs::read_to_string(&file).unwrap().lines().count();
    assert!(out.contains(&format!("wrote {lines} lines")));
    let (code, out, err) = import(&d, &key, &file, false);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("{lines} applied, 0 already imported, 0 rejected")), "{out}");
    let after_first = head(&d);
    // Lines were handed to the store many at a time; the log still holds them in the file's
    // order, as submitting them one by one would have.
    let expected: Vec<&str> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| match serde_json::from_str::<serde_json::Value>(l).unwrap()["op"].as_str().unwrap() {
            "enroll" => "subject_enrolled",
            "arrest" => "arrest_recorded",
            "court_case" => "court_case_filed",
            "disposition" => "disposition_recorded",
            "sentence" => "sentence_imposed",
            "order" => "relief_ordered",
            "expunge" => "expungement_ordered",
            other => panic!("unexpected op {other}"),
        })
        .collect();
    assert!(expected.contains(&"expungement_ordered"), "the backlog exercises expungements");
    let store = chronicle::datadir::DataDir::new(&d, None).open().unwrap();
    let logged: Vec<String> = store
        .read_log(0, 10_000)
        .unwrap()
        .iter()
        .filter(|e| e.statement.author.as_str() == "clerk.import")
        .map(|e| e.statement.event_type.as_str().trim_start_matches("records.").to_string())
        .collect();
    assert_eq!(logged, expected);
    drop(store);
    let (code, out, _) = import(&d, &key, &file, false);
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("0 applied, {lines} already imported, 0 rejected")), "{out}");
    assert_eq!(head(&d), after_first, "the second import appended nothing");
}

const MIXED: &str = r#"{"op":"enroll","ref":"P1","sid":"SID-1","name":{"last":"DOE","first":"JANE"},"dob":"1990-04-01"}
{"op":"arrest","ref":"C1","subject":"P1","tracking_number":"OTN-1","agency_ori":"ZZ","arrest_date":"2024-03-01","charges":[{"seq":1,"statute":"13-1802","offense_code":"2399","literal":"THEFT","level":"misdemeanor","counts":1}]}
this is not json
{"op":"disposition","case":"C1","seq":7,"disposition":"dismissed","date":"2024-04-01"}
{"op":"disposition","case":"C1","seq":1,"disposition":"dismissed","date":"2024-04-01"}
{"op":"enroll","ref":"P2","sid":"SID-1","name":{"last":"ROE","first":"JOHN"},"dob":"1980-01-01"}
{"op":"disposition","case":"C1","seq":1,"disposition":"dismissed","date":"2023-01-01","extra":1}
"#;

#[test]
fn bad_lines_are_reported_by_number_and_written_to_a_rejects_file() {
    let (t, d, key) = setup();
    let file = t.path().join("mixed.jsonl");
    std::fs::write(&file, MIXED).unwrap();
    let before = head(&d);
    let (code, out, err) = import(&d, &key, &file, false);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("7 lines, 3 applied, 0 already imported, 4 rejected"), "{out}");
    assert!(err.contains("line 3: ") && err.contains("line 4: cycle has no charge 7"), "{err}");
    assert!(err.contains("line 6: a subject with SID SID-1 already exists"), "{err}");
    assert!(err.contains("line 7: unknown field `extra`"), "{err}");
    let rejects = std::fs::read_to_string(t.path().join("mixed.rejects.jsonl")).unwrap();
    assert_eq!(rejects.lines().count(), 4);
    assert!(rejects.starts_with("this is not json"));
    assert_eq!(head(&d), before + 3);
}

#[test]
fn all_or_nothing_applies_nothing_when_a_line_is_bad() {
    let (t, d, key) = setup();
    let file = t.path().join("mixed.jsonl");
    std::fs::write(&file, MIXED).unwrap();
    let before = head(&d);
    let (code, out, err) = import(&d, &key, &file, true);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.starts_with("nothing applied (--all-or-nothing)"), "{out}");
    assert!(
        err.contains("line 4: cycle has no charge 7")
            && err.contains("line 6: a subject with SID SID-1 already exists"),
        "{err}"
    );
    assert_eq!(head(&d), before, "nothing was appended");
    // A line that is not even JSON is enough to apply nothing, whatever the others are.
    let unparsable: String =
        MIXED.lines().enumerate().filter(|(i, _)| [0, 1, 2].contains(i)).map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&file, unparsable).unwrap();
    let (code, out, err) = import(&d, &key, &file, true);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.starts_with("nothing applied (--all-or-nothing)"), "{out}");
    assert_eq!(head(&d), before, "nothing was appended");
    // With the bad lines removed, the same import applies everything.
    let good: String =
        MIXED.lines().enumerate().filter(|(i, _)| [0, 1, 4].contains(i)).map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&file, good).unwrap();
    let (code, out, _) = import(&d, &key, &file, true);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(head(&d), before + 3);
}

/// A case whose last index key was deleted (its entry is still in the log): an import that adds
/// to the case is refused as damage, rather than appended after the index's last version (which
/// would give the case a second entry at a version the log holds, and a log that no longer opens).
/// The next start rebuilds the index; the import then goes through, and the log verifies.
#[test]
fn an_import_into_a_stream_whose_index_lost_its_tail_is_refused_not_forked() {
    let (t, d, key) = setup();
    let first = t.path().join("first.jsonl");
    std::fs::write(
        &first,
        r#"{"op":"enroll","ref":"P1","sid":"SID-1","name":{"last":"DOE","first":"JANE"},"dob":"1990-04-01"}
{"op":"arrest","ref":"C1","subject":"P1","tracking_number":"OTN-1","agency_ori":"ZZ","arrest_date":"2024-03-01","charges":[{"seq":1,"statute":"13-1802","offense_code":"2399","literal":"THEFT","level":"misdemeanor","counts":1},{"seq":2,"statute":"13-1802","offense_code":"2399","literal":"THEFT","level":"misdemeanor","counts":1}]}
{"op":"court_case","case":"C1","court_ori":"ZZ007015J","docket":"CR-1"}
"#,
    )
    .unwrap();
    let (code, out, err) = import(&d, &key, &first, false);
    assert_eq!(code, Some(0), "{out}{err}");
    let head_before = head(&d);
    {
        // The case's last index key goes (the court-case entry stays in the log).
        let db = sled::Config::new().path(std::path::Path::new(&d).join("log")).open().unwrap();
        let case = {
            let e = (0..head_before)
                .rev()
                .map(|p| {
                    let mut k = vec![b'e'];
                    k.extend_from_slice(&p.to_be_bytes());
                    let v = db.get(k).unwrap().unwrap();
                    let ev = chronicle_store::layout::decode_entry_value(&v).unwrap();
                    chronicle_core::Entry::decode(ev.bytes.to_vec()).unwrap()
                })
                .find(|e| e.statement.event_type.as_str() == "records.court_case_filed")
                .unwrap();
            (e.statement.stream, e.header.stream_version)
        };
        let mut k = vec![b's'];
        k.extend_from_slice(&case.0.0);
        k.extend_from_slice(&case.1.to_be_bytes());
        assert!(db.remove(k).unwrap().is_some());
        db.flush().unwrap();
    }
    let second = t.path().join("second.jsonl");
    std::fs::write(
        &second,
        "{\"op\":\"disposition\",\"case\":\"C1\",\"seq\":1,\"disposition\":\"dismissed\",\"date\":\"2024-04-01\"}\n",
    )
    .unwrap();
    let (code, out, err) = import(&d, &key, &second, false);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(format!("{out}{err}").contains("key space s"), "{out}{err}");
    // Nothing was appended to the case; the next start rebuilds the index, and the import goes on.
    let (code, out, err) = import(&d, &key, &second, false);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = chronicle(&["verify", "--data-dir", &d]);
    assert_eq!(code, Some(0), "{out}");
}
