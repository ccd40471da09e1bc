//! Tampering with a real data directory through sled itself: `verify` must fail and name the
//! first bad position and the kind of fault.

mod common;

use chronicle_core::{Command, Entry, Hash, Header, PrincipalId, Role, Signer, Timestamp};
use chronicle_store::layout::{decode_entry_value, encode_entry_value};
use chronicle_store::{ExpectedVersion, Fault, Finding, verify_log};
use common::{Ledger, record, stream};

/// A closed ledger with 3 streams and ~24 entries; returns the temp dir and the log dir.
fn ledger() -> (tempfile::TempDir, std::path::PathBuf, u64) {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    for i in 0..7 {
        for name in ["a", "b", "c"] {
            let s = stream(name);
            l.append(
                s,
                ExpectedVersion::Any,
                vec![record(&clerk, s, &format!("{name}{i}"), &format!("{{\"n\":{i},\"name\":\"{name}\"}}"))],
            )
            .unwrap();
        }
    }
    let len = l.store.head().len;
    let (tmp, dir) = l.close();
    let log = dir.log_dir();
    assert!(verify_log(&log, |_, _| {}).unwrap().is_ok());
    (tmp, log, len)
}

fn ekey(p: u64) -> Vec<u8> {
    let mut k = vec![b'e'];
    k.extend_from_slice(&p.to_be_bytes());
    k
}

fn with_db<T>(log: &std::path::Path, f: impl FnOnce(&sled::Db) -> T) -> T {
    let db = common::raw_db(log);
    let out = f(&db);
    db.flush().unwrap();
    out
}

fn first_fault(log: &std::path::Path) -> Finding {
    let r = verify_log(log, |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    r.fault.expect("verify must fail")
}

/// Loads the entry at `p`.
fn load(db: &sled::Db, p: u64) -> Entry {
    let v = db.get(ekey(p)).unwrap().unwrap();
    Entry::decode(decode_entry_value(&v).unwrap().bytes.to_vec()).unwrap()
}

/// Stores entry bytes at `p` with a freshly computed stored hash (a tamperer who knows the format),
/// keeping the wrapped content key.
fn store_recomputed(db: &sled::Db, p: u64, bytes: &[u8]) {
    let old = db.get(ekey(p)).unwrap();
    let wrapped = old.as_ref().and_then(|v| decode_entry_value(v).unwrap().wrapped_key.map(<[u8]>::to_vec));
    db.insert(ekey(p), encode_entry_value(bytes, &Hash::entry(bytes), wrapped.as_deref())).unwrap();
}

/// Offset of the entry bytes inside a stored value (after the u32 length).
const AT: usize = 4;

#[test]
fn flipping_a_payload_byte_is_caught_at_its_position() {
    let (_t, log, _) = ledger();
    let p = 10;
    with_db(&log, |db| {
        let e = load(db, p);
        let env_offset = e.bytes().len() - 64 - e.envelope().len();
        let mut v = db.get(ekey(p)).unwrap().unwrap().to_vec();
        v[AT + env_offset + 30] ^= 0x01;
        db.insert(ekey(p), v).unwrap();
    });
    let f = first_fault(&log);
    assert_eq!(f.position, p);
    assert!(matches!(f.fault, Fault::HashMismatch { .. }), "{f:?}");
}

#[test]
fn flipping_a_payload_byte_and_recomputing_every_stored_hash_is_still_caught() {
    let (_t, log, _) = ledger();
    let p = 10;
    // The tamperer recomputes the hash stored beside the entry: the stream index still names the
    // original hash.
    let (original, stream, version) = with_db(&log, |db| {
        let e = load(db, p);
        let mut b = e.bytes().to_vec();
        let n = b.len();
        b[n - 64 - 5] ^= 0x01;
        store_recomputed(db, p, &b);
        (e.hash(), e.statement.stream, e.header.stream_version)
    });
    assert_eq!(first_fault(&log), Finding::new(p, Fault::IndexMismatch));
    // The tamperer fixes the index too: the Merkle tree's stored leaf hash still names the original.
    with_db(&log, |db| {
        let e = load(db, p);
        let mut idx = vec![b's'];
        idx.extend_from_slice(&stream.0);
        idx.extend_from_slice(&version.to_be_bytes());
        let mut v = p.to_be_bytes().to_vec();
        v.extend_from_slice(&e.hash().0);
        db.insert(idx, v).unwrap();
    });
    // The idempotency record names the original hash too.
    let f = first_fault(&log);
    assert_eq!((f.position, f.space), (p, "i"), "{f}");
    with_db(&log, |db| {
        let e = load(db, p);
        let k = chronicle_store::layout::idempotency_key(&e.statement.author, &e.statement.refs.idempotency_key);
        let mut v = db.get(k).unwrap().unwrap().to_vec();
        v[48..].copy_from_slice(&e.hash().0);
        db.insert(k, v).unwrap();
    });
    assert_eq!(first_fault(&log), Finding::new(p, Fault::TreeMismatch));
    // Even with the tree rewritten too, the next entry still names the original hash; rewriting
    // everything after it is what checkpoints held by others catch (see the proofs tests).
    let next_prev = with_db(&log, |db| load(db, p + 1).header.prev_hash);
    assert_eq!(next_prev, original);
}

#[test]
fn flipping_a_header_field_is_caught() {
    let (_t, log, _) = ledger();
    let p = 12;
    // Raw flip of the stream version: the stored hash no longer matches.
    with_db(&log, |db| {
        let mut v = db.get(ekey(p)).unwrap().unwrap().to_vec();
        v[AT + 16] ^= 0x01; // last byte of the stream version (offset 9..17)
        db.insert(ekey(p), v).unwrap();
    });
    let f = first_fault(&log);
    assert_eq!((f.position, matches!(f.fault, Fault::HashMismatch { .. })), (p, true), "{f:?}");
    // The same flip with the trailer recomputed: named as a stream version gap at p.
    with_db(&log, |db| {
        let v = db.get(ekey(p)).unwrap().unwrap().to_vec();
        store_recomputed(db, p, decode_entry_value(&v).unwrap().bytes);
    });
    let f = first_fault(&log);
    assert_eq!(f.position, p);
    assert!(matches!(f.fault, Fault::StreamVersionGap { .. }), "{f:?}");
}

#[test]
fn flipping_a_signature_byte_is_caught() {
    let (_t, log, _) = ledger();
    let p = 7;
    with_db(&log, |db| {
        let e = load(db, p);
        let mut b = e.bytes().to_vec();
        let n = b.len();
        b[n - 10] ^= 0x40;
        store_recomputed(db, p, &b);
    });
    let f = first_fault(&log);
    assert_eq!(f, Finding::new(p, Fault::BadSignature));
}

#[test]
fn deleting_an_entry_is_caught_as_a_gap() {
    let (_t, log, _) = ledger();
    with_db(&log, |db| db.remove(ekey(9)).unwrap());
    assert_eq!(first_fault(&log), Finding::new(9, Fault::Missing { next_found: 10 }));
}

#[test]
fn swapping_two_entries_is_caught() {
    let (_t, log, _) = ledger();
    with_db(&log, |db| {
        let a = db.get(ekey(8)).unwrap().unwrap();
        let b = db.get(ekey(15)).unwrap().unwrap();
        db.insert(ekey(8), b).unwrap();
        db.insert(ekey(15), a).unwrap();
    });
    assert_eq!(first_fault(&log), Finding::new(8, Fault::PositionMismatch { claimed: 15 }));
}

#[test]
fn a_forged_entry_signed_by_an_unregistered_key_is_caught() {
    for (name, seed) in [("mallory", [9u8; 32]), ("clerk", [10u8; 32])] {
        let (_t, log, len) = ledger();
        // A forger who knows the format appends a perfectly chained entry and moves the head.
        with_db(&log, |db| {
            let last = load(db, len - 1);
            let forger = Signer::from_seed(PrincipalId::new(name).unwrap(), seed);
            let s = stream("a");
            let cmd: Command = record(&forger, s, "forged", "{\"conviction\":true}");
            let prev_stream = last.statement.stream == s;
            let header = Header {
                position: len,
                stream_version: if prev_stream { last.header.stream_version + 1 } else { 7 },
                prev_hash: last.hash(),
                prev_stream_hash: if prev_stream { last.hash() } else { load_stream_last(db, s) },
                recorded_time: Timestamp::now(),
            };
            let mut env = vec![0u8; 24];
            env.extend_from_slice(cmd.payload());
            let e = Entry::assemble(&header, cmd.statement_bytes(), &env, cmd.signature()).unwrap();
            // Beside it, a wrapped content key copied from the last entry (the forger cannot make
            // one; with none, the entry is caught before its signature is even looked at).
            let last_wrap =
                decode_entry_value(&db.get(ekey(len - 1)).unwrap().unwrap()).unwrap().wrapped_key.map(<[u8]>::to_vec);
            db.insert(ekey(len), encode_entry_value(e.bytes(), &Hash::entry(e.bytes()), last_wrap.as_deref())).unwrap();
            let mut idx = vec![b's'];
            idx.extend_from_slice(&s.0);
            idx.extend_from_slice(&header.stream_version.to_be_bytes());
            let mut iv = len.to_be_bytes().to_vec();
            iv.extend_from_slice(&e.hash().0);
            db.insert(idx, iv).unwrap();
            let mut head = (len + 1).to_be_bytes().to_vec();
            head.extend_from_slice(&e.hash().0);
            head.extend_from_slice(&header.recorded_time.0.to_be_bytes());
            db.insert(b"mhead", head).unwrap();
        });
        let f = first_fault(&log);
        assert_eq!(f.position, len);
        match (&f.fault, name) {
            (Fault::Unauthorized { reason }, "mallory") => {
                assert!(reason.contains("unknown principal"), "{reason}")
            }
            (Fault::Unauthorized { reason }, "clerk") => {
                assert!(reason.contains("is not registered to clerk"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}

fn load_stream_last(db: &sled::Db, s: chronicle_core::StreamId) -> Hash {
    let mut prefix = vec![b's'];
    prefix.extend_from_slice(&s.0);
    let (_, v) = db.scan_prefix(prefix).next_back().unwrap().unwrap();
    let mut h = [0u8; 32];
    h.copy_from_slice(&v[8..40]);
    Hash(h)
}

#[test]
fn truncating_the_tail_is_caught_against_the_head_record() {
    let (_t, log, len) = ledger();
    with_db(&log, |db| {
        db.remove(ekey(len - 1)).unwrap();
        db.remove(ekey(len - 2)).unwrap();
    });
    assert_eq!(first_fault(&log), Finding::new(len - 2, Fault::Truncated { head_len: len, found: len - 2 }));
}

#[test]
fn a_damaged_data_directory_is_refused_at_open_and_the_cli_names_the_fault() {
    let (t, log, _) = ledger();
    with_db(&log, |db| db.remove(ekey(5)).unwrap());
    let data = t.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["verify", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAILED at position 5") && text.contains("entry missing"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["verify", "--json", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["fault"]["position"], 5);
    assert_eq!(v["fault"]["fault"]["kind"], "missing");
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["verify", "--data-dir", t.path().join("nowhere").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
}

/// The vault and sled are opened side by side; a problem with either is still reported as itself,
/// and nothing is changed by the failed open.
#[test]
fn a_wrong_master_key_or_a_damaged_vault_record_is_named_on_open() {
    use chronicle_core::{MasterKey, VaultError};
    use chronicle_store::{OpenError, Store};
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    l.append(stream("s"), ExpectedVersion::Any, vec![record(&clerk, stream("s"), "k1", "{}")]).unwrap();
    let (_t, dir) = l.close();
    let paths = dir.store_paths();
    let wrong = MasterKey::generate();
    assert!(matches!(Store::open(&paths, wrong), Err(OpenError::Vault(VaultError::WrongMasterKey))));
    // Flip one byte inside the first wrapped key (after the 33-byte header, the tag and the id),
    // and fix up the record's checksum so that only the authentication can catch it.
    let file = chronicle_core::Vault::file_path(&paths.vault);
    let mut bytes = std::fs::read(&file).unwrap();
    let (at, body) = (33, 1 + 16 + 72);
    bytes[at + 20] ^= 1;
    let sum = Hash::of(b"", &[&bytes[at..at + body]]);
    bytes[at + body..at + body + 8].copy_from_slice(&sum.0[..8]);
    std::fs::write(&file, &bytes).unwrap();
    let master = MasterKey::load(&dir.master_key_file()).unwrap();
    match Store::open(&paths, master) {
        Err(OpenError::Vault(VaultError::Corrupt { offset, what })) => {
            assert_eq!((offset, what), (at, "wrapped key does not authenticate"));
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a vault with a damaged key opened"),
    }
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "the failed open changed the vault");
}
