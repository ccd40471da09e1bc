//! Rollback and equivocation: a log restored from an older copy (which is also what a log cut
//! short consistently looks like) while the vault keeps its newer anchor is refused at open, by
//! `checkpoint` and `serve` (exit 3), and reported by `verify`; an operator may accept it, which
//! is recorded in the log, and the ledger then signs no checkpoint at a size it signed before. A
//! data directory restored whole, vault and all, is caught by `verify --trusted-checkpoint`
//! against a checkpoint kept outside.

mod common;

use std::process::Command;

use chronicle_core::StreamId;
use chronicle_store::{CheckpointError, ExpectedVersion, OpenError};
use common::{Ledger, copy_dir, record, stream};

const BIN: &str = env!("CARGO_BIN_EXE_chronicle");

fn chronicle(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run chronicle")
}

fn fill(l: &Ledger, clerk: &chronicle_core::Signer, from: usize, n: usize) {
    for i in from..from + n {
        let s = stream(&format!("s{}", i % 3));
        l.append(s, ExpectedVersion::Any, vec![record(clerk, s, &format!("k{i}"), &format!("{{\"i\":{i}}}"))]).unwrap();
    }
}

/// A ledger that signed a checkpoint after `first` entries and another after `more` more, closed,
/// with a copy of its log taken at the first: (its directory, the clerk, the copy, both sizes).
fn signed_twice(
    first: usize,
    more: usize,
) -> (tempfile::TempDir, chronicle::datadir::DataDir, chronicle_core::Signer, std::path::PathBuf, u64, u64) {
    let l = Ledger::new();
    let clerk = l.principal("clerk", chronicle_core::Role::RecordsClerk);
    fill(&l, &clerk, 0, first);
    let (s1, _) = sign(&l);
    let (tmp, dir) = l.close();
    let older = tmp.path().join("log-copy");
    copy_dir(&dir.log_dir(), &older);
    let l = Ledger::reopen(tmp, dir);
    fill(&l, &clerk, first, more);
    let (s2, _) = sign(&l);
    let (tmp, dir) = l.close();
    (tmp, dir, clerk, older, s1, s2)
}

/// Puts a copy of a log in place of the directory's log, as an insider or a restore would.
fn put_log(dir: &chronicle::datadir::DataDir, from: &std::path::Path) {
    std::fs::remove_dir_all(dir.log_dir()).unwrap();
    copy_dir(from, &dir.log_dir());
}

fn sign(l: &Ledger) -> (u64, Vec<u8>) {
    let size = l.store.head().len;
    let note = l.store.sign_checkpoint(&l.dir.note_signer().unwrap(), &l.dir.info().unwrap().origin, size).unwrap();
    (size, note)
}

#[test]
fn a_log_restored_from_an_older_copy_is_refused_until_an_operator_accepts_it_in_the_log() {
    // The ledger goes on after a copy of its log is taken, and signs a checkpoint at a larger size.
    let (tmp, dir, clerk, older, s1, s2) = signed_twice(10, 10);
    assert!(s2 > s1);
    // An insider puts the older log back; the vault keeps its anchor at s2.
    put_log(&dir, &older);

    let e = dir.open().err().expect("a rolled-back log is refused");
    let e = e.downcast::<OpenError>().unwrap();
    assert!(matches!(e, OpenError::RolledBack { anchor_size, .. } if anchor_size == s2), "{e}");
    let d = dir.root.to_str().unwrap();
    let out = chronicle(&["checkpoint", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"), "{out:?}");
    let out = chronicle(&["serve", "--data-dir", d, "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = chronicle(&["verify", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("rolled back"), "{out:?}");

    // Accepted, with a reason: recorded in the log first.
    let (store, accepted) = dir.open_accepting_rollback("disk failure; log restored from the nightly copy").unwrap();
    assert!(accepted);
    let last = store.entry(store.head().len - 1).unwrap().unwrap();
    assert_eq!(
        (last.statement.stream, last.statement.event_type.as_str()),
        (StreamId::LEDGER, "ledger.rollback_accepted")
    );
    let said = String::from_utf8_lossy(
        chronicle_core::payload::open_public(&last.statement.commitment, last.envelope()).unwrap(),
    )
    .to_string();
    assert!(said.contains(&format!("\"anchor_size\":{s2}")) && said.contains("nightly copy"), "{said}");
    // No checkpoint at a size the ledger may have signed before.
    let l = Ledger::over(tmp, dir, store);
    let size = l.store.head().len;
    assert!(size <= s2);
    let e = l.store.sign_checkpoint(&l.dir.note_signer().unwrap(), &l.dir.info().unwrap().origin, size).unwrap_err();
    assert!(matches!(e, CheckpointError::AlreadySigned { anchor, .. } if anchor == s2), "{e}");
    // Past it, signing resumes, and the new anchor is required of the log again.
    fill(&l, &clerk, 100, (s2 - size + 1) as usize);
    let (s3, _) = sign(&l);
    assert!(s3 > s2);
    assert!(!l.store.anchor().unwrap().recovered);
    let (_tmp, dir) = l.close();
    assert!(dir.open().is_ok(), "the accepted log opens without the flag");
    let out = chronicle(&["verify", "--data-dir", dir.root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// After an accepted rollback, derived state saved from the history given up and put back (a
/// Merkle tree chunk whose positions the new history filled again; the persisted state of the
/// old history authenticated under the same keys) must not be trusted: the tree's MACs are bound
/// to the history (the vault's epoch), so the start that reads it (checking the log against the
/// anchor) takes it for damage and rebuilds the tree from the log: neither a root computed from it
/// nor a false "rolled back".
#[test]
fn tree_chunks_from_a_history_given_up_do_not_authenticate_after_the_rollback() {
    let (tmp, dir, clerk, older, s1, s2) = signed_twice(10, 80);
    // The tree's second chunk (stored hashes 64..128, entries of about 32..64) as the history
    // about to be given up holds it: full, and different from what the new history will hold.
    let chunk_key = |c: u64| {
        let mut k = vec![b't'];
        k.extend_from_slice(&c.to_be_bytes());
        k
    };
    let given_up = common::raw_db(&dir.log_dir()).get(chunk_key(1)).unwrap().unwrap().to_vec();
    put_log(&dir, &older);
    let (store, accepted) = dir.open_accepting_rollback("restored from the nightly copy").unwrap();
    assert!(accepted && s1 < s2);
    assert_eq!(store.anchor().unwrap().epoch, 1, "a new history");
    let l = Ledger::over(tmp, dir, store);
    fill(&l, &clerk, 200, (s2 + 5 - l.store.head().len) as usize);
    let (s3, _) = sign(&l);
    assert!(s3 > s2);
    let (tmp, dir) = l.close();
    {
        let db = common::raw_db(&dir.log_dir());
        let now = db.get(chunk_key(1)).unwrap().unwrap().to_vec();
        assert_eq!(now.len(), given_up.len(), "both full");
        assert_ne!(now, given_up, "the histories differ there");
        db.insert(chunk_key(1), given_up).unwrap();
        db.flush().unwrap();
    }
    let out = chronicle(&["verify", "--data-dir", dir.root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("key space t"), "{out:?}");
    // The start notices it (checking the log against the vault's anchor reads it) and rebuilds
    // the tree from the log, rather than taking the log for rolled back or signing over it.
    let l = Ledger::reopen(tmp, dir);
    let said = l.store.repaired().map(str::to_string);
    assert!(said.as_deref().is_some_and(|r| r.contains("key space t")), "{said:?}");
    fill(&l, &clerk, 400, 3);
    sign(&l);
    let (_tmp, dir) = l.close();
    let out = chronicle(&["verify", "--data-dir", dir.root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// The log of a history given up, put back after its rollback was accepted (the vault's anchor
/// is then marked recovered, so the log need not reach it): it records none of the rollbacks the
/// vault counts, and is refused rather than served.
#[test]
fn the_log_of_a_history_given_up_is_refused_after_the_rollback() {
    let (tmp, dir, _, older, _, _) = signed_twice(10, 10);
    let given_up = tmp.path().join("log-given-up");
    copy_dir(&dir.log_dir(), &given_up);
    put_log(&dir, &older);
    let (store, accepted) = dir.open_accepting_rollback("restored from the nightly copy").unwrap();
    assert!(accepted);
    assert_eq!(store.anchor().unwrap().epoch, 1);
    drop(store);
    // The accepted log opens; the one given up does not.
    assert!(dir.open().is_ok());
    put_log(&dir, &given_up);
    let e = dir.open().err().expect("the log of the history given up is refused");
    let e = e.downcast::<OpenError>().unwrap();
    assert!(matches!(e, OpenError::OtherHistory(_)), "{e}");
    let out = chronicle(&["serve", "--data-dir", dir.root.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("different histories"), "{out:?}");
    // An operator who means to keep it accepts it, recorded in the log: a third history.
    let (store, accepted) = dir.open_accepting_rollback("the given-up log is the right one after all").unwrap();
    assert!(accepted);
    assert_eq!(store.anchor().unwrap().epoch, 2);
    drop(store);
    assert!(dir.open().is_ok());
    // The disk is lost again and the same old copy, a prefix of every history, is restored: it is
    // refused, and accepting it is never stuck.
    put_log(&dir, &older);
    let e = dir.open().err().expect("an old copy is refused").downcast::<OpenError>().unwrap();
    assert!(matches!(e, OpenError::OtherHistory(_) | OpenError::RolledBack { .. }), "{e}");
    let (store, accepted) = dir.open_accepting_rollback("restored the nightly copy again").unwrap();
    assert!(accepted);
    assert_eq!(store.anchor().unwrap().epoch, 3);
    drop(store);
    assert!(dir.open().is_ok());
    let out = chronicle(&["verify", "--data-dir", dir.root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    drop(tmp);
}

#[test]
fn a_directory_restored_whole_is_caught_against_a_checkpoint_kept_outside() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", chronicle_core::Role::RecordsClerk);
    fill(&l, &clerk, 0, 10);
    sign(&l);
    let (tmp, dir) = l.close();
    let copy = tmp.path().join("whole-copy");
    copy_dir(&dir.root, &copy);
    let l = Ledger::reopen(tmp, dir);
    fill(&l, &clerk, 10, 10);
    let (_, published) = sign(&l);
    let key = l.dir.log_key().unwrap();
    let (tmp, dir) = l.close();
    let kept = tmp.path().join("published.txt");
    std::fs::write(&kept, &published).unwrap();
    // The whole directory, vault included, restored from the copy: consistent with itself.
    std::fs::remove_dir_all(&dir.root).unwrap();
    copy_dir(&copy, &dir.root);
    assert!(dir.open().is_ok(), "nothing inside the directory says it was rolled back");
    let d = dir.root.to_str().unwrap();
    assert_eq!(chronicle(&["verify", "--data-dir", d]).status.code(), Some(0));
    let out =
        chronicle(&["verify", "--data-dir", d, "--trusted-checkpoint", kept.to_str().unwrap(), "--log-key", &key]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("rolled back: the trusted checkpoint"), "{out:?}");
    // A checkpoint not signed by the log key is bad input.
    let out = chronicle(&[
        "verify",
        "--data-dir",
        d,
        "--trusted-checkpoint",
        kept.to_str().unwrap(),
        "--log-key",
        "other.example+00000000+AQ==",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// Running with an outside witness: adopted in the log, asked from the size it last cosigned,
/// and the published checkpoint is the latest it cosigned, which is what `checkpoint --published`
/// prints and a restored directory is then checked against.
#[test]
fn with_a_witness_adopted_the_published_checkpoint_is_the_latest_it_cosigned() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", chronicle_core::Role::RecordsClerk);
    fill(&l, &clerk, 0, 5);
    let witness = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
    let vkey = chronicle_tlog::witness::witness_key("witness.example", &witness.verifying_key());
    let (tmp, dir) = l.close();
    let d = dir.root.to_str().unwrap().to_string();
    let out = chronicle(&["witness", "adopt", "--data-dir", &d, "--witness-key", &vkey]);
    assert!(out.status.success(), "{out:?}");
    let l = Ledger::reopen(tmp, dir);
    assert_eq!(l.store.witnesses().unwrap().len(), 1);
    let (s1, note1) = sign(&l);
    assert_eq!(l.store.published_checkpoint().unwrap(), None, "nothing cosigned yet");
    let text = chronicle_tlog::note::note_text(&note1).unwrap();
    let line = chronicle_tlog::witness::cosign("witness.example", &witness, 1_800_000_000, &text);
    l.store.add_cosignature(s1, "witness.example", &witness.verifying_key(), &line, &l.ledger).unwrap();
    fill(&l, &clerk, 5, 5);
    let (s2, _) = sign(&l);
    let (published_size, published) = l.store.published_checkpoint().unwrap().unwrap();
    assert_eq!(published_size, s1, "the latest checkpoint the witness cosigned, not the latest signed ({s2})");
    assert!(String::from_utf8_lossy(&published).contains("— witness.example "));
    let (_tmp, dir) = l.close();
    let d = dir.root.to_str().unwrap();
    let out = chronicle(&["witness", "request", "--data-dir", d, "--witness", "witness.example"]);
    assert!(out.status.success() && out.stdout.starts_with(format!("old {s1}\n").as_bytes()), "{out:?}");
    let out = chronicle(&["checkpoint", "--data-dir", d, "--published"]);
    assert_eq!(out.stdout, published, "{out:?}");
    let out = chronicle(&["witness", "status", "--data-dir", d]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("witness.example: last cosigned tree size {s1}")), "{said}");
    assert!(said.contains(&format!("published checkpoint: tree size {s1}")), "{said}");
    // The published checkpoint, kept outside, is what a restored directory is checked against.
    let kept = dir.root.join("published.txt");
    std::fs::write(&kept, &published).unwrap();
    let key = dir.log_key().unwrap();
    let out =
        chronicle(&["verify", "--data-dir", d, "--trusted-checkpoint", kept.to_str().unwrap(), "--log-key", &key]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
