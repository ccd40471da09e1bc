//! Proofs anyone can check: the Merkle tree over the real log, signed checkpoints that never
//! disagree, a rollback caught by a checkpoint held outside, and evidence bundles checked offline.

mod common;

use chronicle_core::Role;
use chronicle_store::evidence::{Bundle, EvidenceError, build_bundle, verify_bundle};
use chronicle_store::{CheckpointError, ExpectedVersion, Fault, verify_log};
use chronicle_tlog::tree::{leaf_hash, verify_consistency, verify_inclusion};
use chronicle_tlog::{MemoryTree, verify_checkpoint};
use common::{Ledger, copy_dir, record, stream};

fn filled(n: usize) -> (Ledger, chronicle_core::Signer) {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    for i in 0..n {
        let s = stream(&format!("s{}", i % 4));
        l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, &format!("k{i}"), &format!("{{\"i\":{i}}}"))])
            .unwrap();
    }
    (l, clerk)
}

#[test]
fn the_stored_tree_matches_a_tree_rebuilt_from_the_entries_at_every_size() {
    let (l, _) = filled(90);
    let entries = l.store.read_log(0, 1000).unwrap();
    let mut mem = MemoryTree::new();
    let mut roots = vec![];
    for e in &entries {
        mem.push(e.bytes());
        roots.push(chronicle_tlog::tree::root(mem.size(), &mem).unwrap());
    }
    let len = entries.len() as u64;
    for size in 1..=len {
        let root = l.store.tree_root(size).unwrap();
        assert_eq!(root, roots[size as usize - 1], "size {size}");
        for index in [0, size / 3, size / 2, size - 1] {
            let path = l.store.inclusion_proof(index, size).unwrap();
            verify_inclusion(leaf_hash(entries[index as usize].bytes()), index, size, &path, root).unwrap();
        }
        for first in [1, size / 2, size].into_iter().filter(|f| *f >= 1) {
            let proof = l.store.consistency_proof(first, size).unwrap();
            verify_consistency(first, roots[first as usize - 1], size, root, &proof).unwrap();
        }
    }
    assert!(l.store.tree_root(len + 1).is_err(), "no root beyond the log");
    assert!(l.store.inclusion_proof(len, len).is_err());
}

/// The heads map at every size of a real log equals a model computed from the entries (each
/// stream's last entry among the first `size`), whatever the streams did after; every head proves
/// against the map's root, a head claimed shorter does not, and a stream with no entries yet
/// proves absent. Taken while appends run, a map at the committed size is still exact.
#[test]
fn the_heads_map_at_every_size_is_each_streams_last_entry_and_proves_it() {
    use chronicle_tlog::heads::{HeadsMap, StreamHead};
    let (l, clerk) = filled(70);
    let model = |entries: &[chronicle_core::Entry], size: u64| -> Vec<StreamHead> {
        let mut last = std::collections::BTreeMap::new();
        for e in entries.iter().take(size as usize) {
            last.insert(e.statement.stream.0, (e.header.stream_version, e.hash().0));
        }
        last.into_iter().map(|(stream, (version, hash))| StreamHead { stream, version, hash }).collect()
    };
    let entries = l.store.read_log(0, 1000).unwrap();
    for size in 0..=entries.len() as u64 {
        let heads = l.store.stream_heads_at(size).unwrap();
        assert_eq!(heads, model(&entries, size), "size {size}");
        let map = HeadsMap::new(heads.clone()).unwrap();
        let root = map.root();
        for h in &heads {
            let p = map.prove(&h.stream).unwrap();
            assert_eq!(p.verify(&root).unwrap(), *h);
            if h.version > 0 {
                let mut shorter = p.clone();
                shorter.version -= 1;
                assert!(shorter.verify(&root).is_err(), "size {size}: a shortened head proved");
            }
        }
        let later = stream("s3");
        if !heads.iter().any(|h| h.stream == later.0) {
            map.prove_absent(&later.0).unwrap().verify(&root, &later.0).unwrap();
        }
    }
    assert!(l.store.stream_heads_at(entries.len() as u64 + 1).is_err(), "no heads beyond the log");
    // While appends run: the map at a committed size is exact.
    std::thread::scope(|sc| {
        let appending = sc.spawn(|| {
            for i in 0..200 {
                let s = stream(&format!("s{}", i % 7));
                l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, &format!("r{i}"), "{}")]).unwrap();
            }
        });
        while !appending.is_finished() {
            let size = l.store.head().len;
            let heads = l.store.stream_heads_at(size).unwrap();
            let entries = l.store.read_log(0, size as usize).unwrap();
            assert_eq!(heads, model(&entries, size), "size {size}, taken while appending");
        }
    });
}

#[test]
fn every_checkpoint_is_consistent_with_every_later_one() {
    let (l, clerk) = filled(20);
    let signer = l.dir.note_signer().unwrap();
    let origin = l.dir.info().unwrap().origin;
    let key = l.dir.log_key().unwrap();
    let mut sizes = vec![];
    for round in 0..6 {
        let s = stream("more");
        for i in 0..7 {
            l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, &format!("r{round}-{i}"), "{}")]).unwrap();
        }
        let size = l.store.head().len;
        l.store.sign_checkpoint(&signer, &origin, size).unwrap();
        sizes.push(size);
    }
    // A past size can be signed too; signing twice returns the same note.
    let past = l.store.sign_checkpoint(&signer, &origin, 10).unwrap();
    assert_eq!(l.store.sign_checkpoint(&signer, &origin, 10).unwrap(), past);
    let all = l.store.checkpoints().unwrap();
    assert_eq!(all.len(), sizes.len() + 1);
    for (i, (a, note_a)) in all.iter().enumerate() {
        let ca = verify_checkpoint(note_a, &key).unwrap();
        assert_eq!(ca.size, *a);
        for (b, note_b) in &all[i + 1..] {
            let cb = verify_checkpoint(note_b, &key).unwrap();
            let proof = l.store.consistency_proof(*a, *b).unwrap();
            verify_consistency(*a, ca.root, *b, cb.root, &proof).unwrap();
        }
    }
    let (_t, dir) = l.close();
    let r = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(r.is_ok(), "{:?}", r.fault);
    assert_eq!(r.checkpoints, all.len() as u64);
}

#[test]
fn the_ledger_refuses_to_sign_beside_a_checkpoint_that_disagrees_with_its_tree() {
    let (l, _) = filled(12);
    let origin = l.dir.info().unwrap().origin;
    let signer = l.dir.note_signer().unwrap();
    l.store.sign_checkpoint(&signer, &origin, 8).unwrap();
    let (t, dir) = l.close();
    // Someone replaces the stored checkpoint at 8 with one over another root, signed with the
    // ledger's own key (the worst case: a stolen key cannot make the ledger sign a fork either).
    let forged = chronicle_tlog::sign_checkpoint(&signer, &origin, 8, chronicle_tlog::TreeHash([7; 32])).unwrap();
    {
        let db = common::raw_db(&dir.log_dir());
        let mut k = vec![b'p'];
        k.extend_from_slice(&8u64.to_be_bytes());
        db.insert(k, forged).unwrap();
        db.flush().unwrap();
    }
    let r = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(
        matches!(r.fault.as_ref().map(|f| &f.fault), Some(Fault::CheckpointInvalid { size: 8, .. })),
        "{:?}",
        r.fault
    );
    let store = dir.open().unwrap();
    match store.sign_checkpoint(&signer, &origin, 12) {
        Err(CheckpointError::Inconsistent { size: 8, .. }) => {}
        other => panic!("signed beside an inconsistent checkpoint: {other:?}"),
    }
    drop(t);
}

#[test]
fn a_rollback_of_head_and_tail_together_is_caught_by_a_checkpoint_held_outside() {
    let (l, clerk) = filled(10);
    let origin = l.dir.info().unwrap().origin;
    let signer = l.dir.note_signer().unwrap();
    let key = l.dir.log_key().unwrap();
    let (t, dir) = l.close();
    // Snapshot the whole data directory at this point.
    let snapshot = t.path().join("snapshot");
    copy_dir(&dir.root, &snapshot);
    // The ledger goes on, and an auditor keeps a checkpoint of it.
    let store = dir.open().unwrap();
    let s = stream("x");
    for i in 0..5 {
        store
            .append(chronicle_store::AppendRequest {
                stream: s,
                expected: ExpectedVersion::Any,
                commands: vec![record(&clerk, s, &format!("a{i}"), "{\"conviction\":false}")],
            })
            .unwrap();
    }
    let held = verify_checkpoint(&store.sign_checkpoint(&signer, &origin, store.head().len).unwrap(), &key).unwrap();
    drop(store);
    // Someone restores the snapshot (head and tail rolled back together) and writes other history.
    std::fs::remove_dir_all(&dir.root).unwrap();
    copy_dir(&snapshot, &dir.root);
    let store = dir.open().unwrap();
    for i in 0..7 {
        store
            .append(chronicle_store::AppendRequest {
                stream: s,
                expected: ExpectedVersion::Any,
                commands: vec![record(&clerk, s, &format!("b{i}"), "{\"conviction\":true}")],
            })
            .unwrap();
    }
    let new = verify_checkpoint(&store.sign_checkpoint(&signer, &origin, store.head().len).unwrap(), &key).unwrap();
    // The rewritten ledger verifies on its own...
    let proof = store.consistency_proof(held.size, new.size).unwrap();
    drop(store);
    assert!(verify_log(&dir.log_dir(), |_, _| {}).unwrap().is_ok());
    // ...but the auditor's checkpoint is not a prefix of the new one.
    assert!(verify_consistency(held.size, held.root, new.size, new.root, &proof).is_err());
}

fn bundle_for(l: &Ledger, s: chronicle_core::StreamId) -> (Bundle, String) {
    let origin = l.dir.info().unwrap().origin;
    let (_, size, note) =
        l.store.checkpoint_with_heads(&l.dir.ledger().unwrap(), &l.dir.note_signer().unwrap(), &origin).unwrap();
    let key = l.dir.log_key().unwrap();
    (build_bundle(&l.store, &s, &note, size, &key, true).unwrap(), key)
}

#[test]
fn an_evidence_bundle_verifies_offline_and_tampered_bundles_are_rejected_precisely() {
    let (l, clerk) = filled(16);
    // A key rotation in the middle, so the registry matters.
    let next = chronicle_core::Signer::generate(clerk.principal().clone());
    let rot = chronicle_core::Command::sign(
        &clerk,
        chronicle_core::RegistryEvent::rotate(clerk.principal().clone(), &next.verifying_key(), clerk.key_id()).draft(),
    )
    .unwrap();
    l.append(chronicle_core::StreamId::REGISTRY, ExpectedVersion::Any, vec![rot]).unwrap();
    let s = stream("s1");
    l.append(s, ExpectedVersion::Any, vec![record(&next, s, "after-rotation", "{\"late\":true}")]).unwrap();
    let (b, key) = bundle_for(&l, s);
    let proven = verify_bundle(&b, &key).unwrap();
    assert_eq!(proven.entries, 5);
    assert_eq!(proven.content_checked, 5);
    assert!(proven.describe().contains("all 5 entries of stream"));

    // An altered entry byte: its inclusion proof fails.
    let mut t = b.clone();
    let mut bytes = t.entries[2].leaf_bytes().unwrap();
    let n = bytes.len();
    bytes[n - 70] ^= 1;
    t.entries[2].leaf = base64_encode(&bytes);
    assert!(
        matches!(verify_bundle(&t, &key), Err(EvidenceError::Inclusion { position, .. }) if position == b.entries[2].leaf_index)
    );
    // Another log key.
    let other = chronicle_tlog::NoteSigner::new(
        "test.chronicle.localhost/ledger",
        ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
    )
    .unwrap();
    assert!(matches!(verify_bundle(&b, &other.verifier_key()), Err(EvidenceError::Checkpoint(_))));
    // The first entry of the stream left out: the chain is incomplete.
    let mut t = b.clone();
    t.entries.remove(0);
    assert!(matches!(verify_bundle(&t, &key), Err(EvidenceError::Chain { version: 0, .. })));
    // The rotation left out of the registry: the registry's committed head is missing.
    let mut t = b.clone();
    t.registry.pop();
    assert!(matches!(verify_bundle(&t, &key), Err(EvidenceError::Incomplete(_))));
    // Content that is not what the author signed.
    let mut t = b.clone();
    t.content[1].payload = base64_encode(b"{\"i\":999}");
    assert_eq!(verify_bundle(&t, &key).unwrap_err(), EvidenceError::Content(b.content[1].position));
    // A checkpoint whose text was edited.
    let mut t = b.clone();
    t.checkpoint =
        t.checkpoint.replacen(&format!("\n{}\n", proven.tree_size), &format!("\n{}\n", proven.tree_size + 1), 1);
    assert!(matches!(verify_bundle(&t, &key), Err(EvidenceError::Checkpoint(_))));
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn the_cli_exports_and_checks_evidence_and_prints_keys_checkpoints_and_proofs() {
    let (l, _) = filled(9);
    let s = stream("s2");
    let (t, dir) = l.close();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle")).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let d = dir.root.to_str().unwrap();
    let (code, key, _) = run(&["log-key", "--data-dir", d]);
    assert_eq!(code, Some(0));
    let key = key.trim().to_string();
    assert!(key.starts_with("test.chronicle.localhost/ledger+"));
    let (code, json, _) = run(&["log-key", "--data-dir", d, "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["log_key"], key.as_str());
    let (code, note, _) = run(&["checkpoint", "--data-dir", d]);
    assert_eq!(code, Some(0));
    let cp = verify_checkpoint(note.as_bytes(), &key).unwrap();
    let (code, json, _) = run(&["checkpoint", "--data-dir", d, "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["tree_size"], cp.size);
    assert_eq!(v["note"], note.as_str());
    let (code, json, _) = run(&["proof", "inclusion", "--data-dir", d, "--position", "4"]);
    assert_eq!(code, Some(0));
    let p: chronicle_tlog::InclusionProof = serde_json::from_str(&json).unwrap();
    assert_eq!((p.leaf_index, p.tree_size), (4, cp.size));
    p.verify(cp.root).unwrap();
    let (code, json, _) = run(&["proof", "consistency", "--data-dir", d, "--from", "3", "--to", &cp.size.to_string()]);
    assert_eq!(code, Some(0));
    let c: chronicle_tlog::ConsistencyProof = serde_json::from_str(&json).unwrap();
    assert_eq!((c.first, c.second), (3, cp.size));
    let (code, _, err) = run(&["proof", "inclusion", "--data-dir", d, "--position", "999"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("leaf index 999"), "{err}");

    let out = t.path().join("bundle.json");
    let (code, _, err) = run(&[
        "export-evidence",
        "--data-dir",
        d,
        "--stream",
        &s.to_hex(),
        "--recipient",
        "admin",
        "--purpose",
        "A",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, said, _) = run(&["verify-evidence", out.to_str().unwrap(), "--log-key", &key]);
    assert_eq!(code, Some(0));
    assert!(said.starts_with("verified: "), "{said}");
    let (code, said, _) = run(&["verify-evidence", out.to_str().unwrap(), "--log-key", &key, "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!((v["ok"].as_bool(), v["proven"]["stream"].as_str()), (Some(true), Some(s.to_hex().as_str())));
    let mut b: Bundle = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    b.entries.remove(0);
    std::fs::write(&out, serde_json::to_vec(&b).unwrap()).unwrap();
    let (code, said, _) = run(&["verify-evidence", out.to_str().unwrap(), "--log-key", &key]);
    assert_eq!(code, Some(1));
    assert!(said.contains("REJECTED: the stream chain is broken at version 0"), "{said}");
    let (code, said, _) = run(&["verify-evidence", out.to_str().unwrap(), "--log-key", &key, "--json"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["reason"].as_str().unwrap().contains("the stream chain is broken at version 0"));
}

#[test]
fn witness_cosignatures_are_checked_and_kept_beside_the_checkpoint() {
    let (l, _) = filled(5);
    let origin = l.dir.info().unwrap().origin;
    let size = l.store.head().len;
    let note = l.store.sign_checkpoint(&l.dir.note_signer().unwrap(), &origin, size).unwrap();
    let text = chronicle_tlog::note::note_text(&note).unwrap();
    let witness = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let line = chronicle_tlog::witness::cosign("witness.example", &witness, 1_800_000_000, &text);
    assert_eq!(
        l.store.add_cosignature(size, "witness.example", &witness.verifying_key(), &line, &l.ledger).unwrap(),
        1_800_000_000
    );
    let impostor = ed25519_dalek::SigningKey::from_bytes(&[43; 32]);
    let bad = chronicle_tlog::witness::cosign("witness.example", &impostor, 1_800_000_000, &text);
    assert!(matches!(
        l.store.add_cosignature(size, "witness.example", &witness.verifying_key(), &bad, &l.ledger),
        Err(CheckpointError::Cosignature(_))
    ));
    let cosigned = l.store.cosigned_checkpoint(size).unwrap();
    assert!(String::from_utf8(cosigned.clone()).unwrap().ends_with(&line));
    // The cosigned note still verifies against the log key (verifiers skip unknown signers).
    verify_checkpoint(&cosigned, &l.dir.log_key().unwrap()).unwrap();
}

#[test]
fn the_checkpoint_policy_signs_after_m_entries_or_n_seconds_and_never_twice_for_one_size() {
    let (l, clerk) = filled(3);
    let signer = l.dir.note_signer().unwrap();
    let ledger = l.dir.ledger().unwrap();
    let origin = l.dir.info().unwrap().origin;
    let policy = chronicle_store::CheckpointPolicy { entries: 5, interval: std::time::Duration::from_secs(3600) };
    // Nothing signed yet: the first call signs at the head.
    let first = l.store.maybe_checkpoint(&ledger, &signer, &origin, policy).unwrap().expect("first checkpoint");
    assert_eq!(verify_checkpoint(&first, &l.dir.log_key().unwrap()).unwrap().size, l.store.head().len);
    // Fewer than M new entries and N not elapsed: nothing.
    let s = stream("p");
    for i in 0..4 {
        l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, &format!("p{i}"), "{}")]).unwrap();
    }
    assert!(l.store.maybe_checkpoint(&ledger, &signer, &origin, policy).unwrap().is_none());
    // The M-th entry makes one due.
    l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "p4", "{}")]).unwrap();
    assert!(l.store.maybe_checkpoint(&ledger, &signer, &origin, policy).unwrap().is_some());
    assert!(
        l.store.maybe_checkpoint(&ledger, &signer, &origin, policy).unwrap().is_none(),
        "nothing new, nothing signed"
    );
    // With N elapsed, a single new entry is enough.
    let quick = chronicle_store::CheckpointPolicy { entries: 1_000, interval: std::time::Duration::ZERO };
    l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "p5", "{}")]).unwrap();
    assert!(l.store.maybe_checkpoint(&ledger, &signer, &origin, quick).unwrap().is_some());
    assert_eq!(l.store.checkpoints().unwrap().len(), 3);
}
