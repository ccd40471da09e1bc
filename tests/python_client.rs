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

/// The virtual environment with the pinned requirements.
fn venv(root: &Path) -> PathBuf {
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
