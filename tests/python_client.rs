//! A real client that we did not write: Python's `grpcio`, with stubs generated from `proto/` by
//! `grpcio-tools`, signing with the `cryptography` package's Ed25519, against a real server over
//! mutual TLS. The packages come from PyPI, pinned in `tests/python/requirements.txt`, into a
//! virtual environment kept under the target directory (made once, reused while the
//! requirements do not change).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Served;

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The virtual environment with the pinned requirements (made by one test at a time).
fn venv(root: &Path) -> PathBuf {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let reqs = root.join("tests/python/requirements.txt");
    let hash = blake3::hash(&std::fs::read(&reqs).expect("requirements.txt"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("python-venv-{}", &hash.to_hex()[..12]));
    let python = dir.join("bin/python");
    if !dir.join(".installed").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir), "python3 -m venv");
        run(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&reqs),
            "pip install -r tests/python/requirements.txt",
        );
        std::fs::write(dir.join(".installed"), b"").unwrap();
    }
    python
}

#[test]
fn python_grpcio_client_signs_submits_reads_streams_and_is_refused_where_the_policy_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = venv(root);
    let stubs = tempfile::tempdir().unwrap();
    run(
        Command::new(&python)
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(root.join("proto"))
            .arg(format!("--python_out={}", stubs.path().display()))
            .arg(format!("--grpc_python_out={}", stubs.path().display()))
            .arg(root.join("proto/chronicle/v1/ledger.proto")),
        "grpc_tools.protoc",
    );
    let s = Served::start(true);
    let len = s.store.head().len;
    let out = Command::new(&python)
        .arg(root.join("tests/python/chronicle_client_test.py"))
        .arg(stubs.path())
        .arg(format!("localhost:{}", s.addr.port()))
        .arg(s.dir.credentials_dir("clerk"))
        .arg(s.dir.credentials_dir("acme.hr"))
        .output()
        .expect("run the python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("python client: all checks passed"), "{stdout}");
    assert!(stdout.contains("ok: as_recorded_micros before the seal: the sealed charge is not shown"), "{stdout}");
    assert!(stdout.contains("ok: with the leaf hash: an audit path, no entry bytes"), "{stdout}");
    print!("{stdout}");
    // What Python submitted is in the log, signed by the clerk's key, and the refusal was logged.
    let registry = s.store.registry();
    let entries = s.store.read_log(len, 100).unwrap();
    let enrolled = entries
        .iter()
        .find(|e| e.statement.event_type.as_str() == "records.subject_enrolled")
        .expect("the python client's enrollment");
    assert_eq!(enrolled.statement.author.as_str(), "clerk");
    let key = registry.key(&enrolled.statement.key_id).expect("key registered");
    use ed25519_dalek::Verifier;
    let mut msg = b"chronicle.statement.v1\n".to_vec();
    msg.extend_from_slice(enrolled.statement_bytes());
    key.public.verify(&msg, &ed25519_dalek::Signature::from_bytes(&enrolled.signature)).unwrap();
    assert!(entries.iter().any(|e| e.statement.event_type.as_str() == "records.access_denied"));
    assert_eq!(entries.iter().filter(|e| e.statement.event_type.as_str() == "records.subject_enrolled").count(), 1);
}

/// The completeness proof of an evidence bundle, checked by Python code written from
/// docs/FORMAT.md alone (`tests/python/check_completeness.py`): an untouched bundle is complete;
/// one with its last entry, a middle entry or the registry's last entry left out is not.
#[test]
fn python_checks_an_evidence_bundles_completeness_proof_with_its_own_code() {
    use chronicle_core::{Command as Signed, RegistryEvent, Role, StreamId};
    use chronicle_store::ExpectedVersion;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = venv(root);
    let l = common::Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    let s = common::stream("case");
    for i in 0..6 {
        l.append(s, ExpectedVersion::Any, vec![common::record(&clerk, s, &format!("k{i}"), "{}")]).unwrap();
        let o = common::stream(&format!("o{i}"));
        l.append(o, ExpectedVersion::Any, vec![common::record(&clerk, o, &format!("o{i}"), "{}")]).unwrap();
    }
    let agency = l.principal("agency.sp", Role::LawEnforcement);
    let revoke =
        Signed::sign(&l.admin, RegistryEvent::revoke(agency.principal().clone(), agency.key_id(), "lost").draft())
            .unwrap();
    l.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![revoke]).unwrap();
    let origin = l.dir.info().unwrap().origin;
    let (_, size, note) = l.store.checkpoint_with_heads(&l.ledger, &l.dir.note_signer().unwrap(), &origin).unwrap();
    let key = l.dir.log_key().unwrap();
    let bundle = chronicle_store::evidence::build_bundle(&l.store, &s, &note, size, &key, false).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let check = |b: &chronicle_store::evidence::Bundle| {
        let path = tmp.path().join("bundle.json");
        std::fs::write(&path, serde_json::to_vec(b).unwrap()).unwrap();
        let out = Command::new(&python)
            .arg(root.join("tests/python/check_completeness.py"))
            .arg(&path)
            .arg(&key)
            .output()
            .expect("run the python checker");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.stderr.is_empty(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
        (out.status.code(), stdout)
    };
    let (code, said) = check(&bundle);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.starts_with("complete: 6 entries"), "{said}");
    let mut t = bundle.clone();
    t.entries.pop();
    assert_eq!(check(&t), (Some(1), "INCOMPLETE: the stream lacks versions up to its committed head 5\n".into()));
    let mut t = bundle.clone();
    t.entries.remove(2);
    assert_eq!(check(&t).0, Some(1));
    let mut t = bundle.clone();
    t.registry.pop();
    let (code, said) = check(&t);
    assert_eq!(code, Some(1));
    assert!(said.contains("registry"), "{said}");
}
