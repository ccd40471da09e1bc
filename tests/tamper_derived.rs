//! Tampering with everything the store keeps beside the entries, as an insider with disk access
//! and any sled tool would: in each key space (`e s i h c t p w m r`) and in the projection's
//! snapshot file, a byte flipped, a key deleted, two values swapped, and a value replaced by an
//! older one captured earlier from the same directory. After each, `verify` (with the master key)
//! fails naming the key space; and a restart either refuses, or serves exactly what a rebuild
//! from the untouched log serves (a read it cannot answer truthfully is refused, never answered
//! from the damaged state).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chronicle::datadir::DataDir;
use chronicle_core::{MasterKey, Role, Signer, StreamId, Vault};
use chronicle_records::{
    DispositionKind, HistoryQuery, Level, Purpose, RecordEvent, Records, ReliefKind, Scope, Target,
};
use chronicle_store::{Expected, Finding, Store, verify_log_against};
use common::{Bureau, copy_dir, date};

/// What the records service serves, as one comparable value per read: each subject's record as an
/// employer and as the clerk sees it, and each case's whole history as the clerk sees it. A read
/// refused is `None`.
type Served = Vec<(String, Option<String>)>;

struct Pristine {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    subjects: Vec<StreamId>,
    cases: Vec<StreamId>,
    /// Every sled key and value as they were part way through (before a seal, a charge
    /// expungement, a new snapshot, the second checkpoint).
    older: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The snapshot file as it was then (an earlier generation's).
    older_snapshot: Vec<u8>,
    reference: Served,
}

fn dump(log: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = common::raw_db(log);
    db.iter().map(|kv| kv.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

fn snapshot_path(root: &Path) -> PathBuf {
    let dir = root.join("projection");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 1, "one snapshot file: {files:?}");
    files.remove(0)
}

/// Commits the stream heads and signs the checkpoint ending in the commitment (as the server
/// does), so that evidence bundles can be made against it.
fn sign(store: &Store, dir: &DataDir) -> u64 {
    let origin = dir.info().unwrap().origin;
    store.checkpoint_with_heads(&dir.ledger().unwrap(), &dir.note_signer().unwrap(), &origin).unwrap().1
}

fn cosign(store: &Store, dir: &DataDir, witness: &ed25519_dalek::SigningKey, size: u64) {
    let note = store.checkpoint_at(size).unwrap().unwrap();
    let text = chronicle_tlog::note::note_text(&note).unwrap();
    let line = chronicle_tlog::witness::cosign("witness.example", witness, 1_800_000_000 + size, &text);
    store.add_cosignature(size, "witness.example", &witness.verifying_key(), &line, &dir.ledger().unwrap()).unwrap();
}

/// A records service over a store, opened as the server opens it.
fn service(store: Store, dir: &DataDir) -> anyhow::Result<Records> {
    dir.open_records(store)
}

fn served(records: &Records, dir: &DataDir, subjects: &[StreamId], cases: &[StreamId]) -> Served {
    let mut out = Vec::new();
    for s in subjects {
        for (role, purpose) in [(Role::Employer, Purpose::E), (Role::RecordsClerk, Purpose::A)] {
            let v = records.view(*s, role, purpose, None).ok().map(|v| String::from_utf8(v.to_bytes()).unwrap());
            out.push((format!("{s} as {role:?}"), v));
        }
    }
    let ledger = dir.ledger().unwrap();
    let clerk = records.caller(&chronicle_core::PrincipalId::new("clerk").unwrap()).unwrap();
    for c in cases {
        let mut q = HistoryQuery {
            target: Target::Stream(*c),
            purpose: Purpose::A,
            from: 0,
            limit: 0,
            up_to: None,
            as_recorded: None,
        };
        let mut items = Vec::new();
        let whole = loop {
            match records.history_page(&ledger, &clerk, q.clone()) {
                Err(_) => break None,
                Ok(page) => {
                    items.extend(page.items.iter().map(|i| serde_json::to_string(i).unwrap()));
                    match page.next {
                        Some(n) => q.from = n,
                        None => break Some(items.join("\n")),
                    }
                }
            }
        };
        out.push((format!("history of {c}"), whole));
    }
    out
}

/// Builds the directory once: subjects, arrests, dispositions, a persisted projection (a snapshot
/// and an overlay), a checkpoint cosigned by an adopted witness; then, after the older state is
/// captured, a seal, a charge expungement (the case moves to a fresh key), a new snapshot with an
/// overlay over it, a second checkpoint, cosigned too.
fn pristine() -> Pristine {
    let b = Bureau::new();
    let witness = ed25519_dalek::SigningKey::from_bytes(&[91; 32]);
    let mut subjects = Vec::new();
    let mut cases = Vec::new();
    for (i, (last, charges)) in [("ALPHA", 1u32), ("BRAVO", 3), ("CHARLIE", 2)].iter().enumerate() {
        let s = b.enroll(&format!("SID-T{i}"), last, "PAT", "1980-01-01");
        let specs: Vec<(u32, &str, &str, Level)> =
            (1..=*charges).map(|n| (n, "13-1802", "THEFT", Level::Misdemeanor)).collect();
        let c = b.arrest(s, &format!("OTN-T{i}"), "2023-01-05", &specs);
        b.rec(&b.court, c, RecordEvent::CourtCaseFiled { court_ori: "ZZ".into(), docket: format!("DKT-T{i}") })
            .unwrap();
        subjects.push(s);
        cases.push(c);
    }
    let dispose = |c: StreamId, seq: u32, d: DispositionKind| {
        b.rec(&b.court, c, RecordEvent::DispositionRecorded { seq, disposition: d, date: date("2023-07-01") }).unwrap();
    };
    dispose(cases[0], 1, DispositionKind::GuiltyPlea);
    b.records.persist().unwrap();
    dispose(cases[1], 1, DispositionKind::GuiltyPlea);
    dispose(cases[1], 2, DispositionKind::Dismissed);
    b.records.persist().unwrap();
    chronicle::datadir::adopt_witness_in(
        &b.ledger.store,
        &b.ledger.ledger,
        &chronicle_tlog::witness::witness_key("witness.example", &witness.verifying_key()),
    )
    .unwrap();
    let first = sign(&b.ledger.store, &b.ledger.dir);
    cosign(&b.ledger.store, &b.ledger.dir, &witness, first);
    let Bureau { ledger, records, court, police, clerk, .. } = b;
    drop(records);
    let (tmp, dir) = ledger.close();
    let older = dump(&dir.log_dir());
    let older_snapshot = std::fs::read(snapshot_path(&dir.root)).unwrap();

    let store = dir.open().unwrap();
    // A new snapshot (the next generation), then more over it.
    let records = Records::rebuild(store.clone()).unwrap();
    records.set_ledger(dir.ledger().unwrap()).unwrap();
    let rec = |who: &Signer, c: StreamId, ev: RecordEvent| {
        records.record(who, c, &ev, chronicle_core::Timestamp::now(), None).unwrap();
    };
    let seal = RecordEvent::ReliefOrdered {
        order_id: "SEAL-T".into(),
        kind: ReliefKind::Seal,
        scope: Scope::Charges(vec![1]),
        statute: "18 Pa.C.S. 9122.2".into(),
        audiences: vec![],
    };
    rec(&court, cases[0], seal);
    let expunge = RecordEvent::ReliefOrdered {
        order_id: "EXP-T".into(),
        kind: ReliefKind::Expunge,
        scope: Scope::Charges(vec![2]),
        statute: "PC 1203.4".into(),
        audiences: vec![],
    };
    rec(&court, cases[1], expunge);
    rec(
        &court,
        cases[2],
        RecordEvent::DispositionRecorded { seq: 1, disposition: DispositionKind::Acquitted, date: date("2023-08-01") },
    );
    // Enough entries for the tree to fill its first chunk (the older state holds it part full).
    for i in 0..12 {
        let ev = RecordEvent::SubjectEnrolled {
            sid: format!("SID-X{i}"),
            fbi: None,
            name: chronicle_records::Name { last: "EXTRA".into(), first: format!("N{i}"), middle: None },
            dob: date("1970-01-01"),
        };
        rec(&clerk, StreamId::random(), ev);
    }
    records.background_check(&dir.ledger().unwrap(), police.principal(), Purpose::C, subjects[1], None, None).unwrap();
    records.persist().unwrap();
    let second = sign(&store, &dir);
    cosign(&store, &dir, &witness, second);
    drop(records);
    drop(store);

    // What a rebuild from the untouched log serves, on a copy.
    let copy = tmp.path().join("reference");
    copy_dir(&dir.root, &copy);
    let rdir = DataDir::new(&copy, None);
    let records = Records::rebuild(rdir.open().unwrap()).unwrap();
    records.set_ledger(rdir.ledger().unwrap()).unwrap();
    let reference = served(&records, &rdir, &subjects, &cases);
    // Every read is answered, but the employer's of the first subject: its only charge is sealed,
    // and a sealed record is not found (a state from before the seal would show it).
    let unanswered: Vec<&str> = reference.iter().filter(|(_, v)| v.is_none()).map(|(w, _)| w.as_str()).collect();
    assert_eq!(unanswered, vec![format!("{} as Employer", subjects[0])], "{reference:?}");
    drop(records);
    let root = dir.root.clone();
    Pristine { _tmp: tmp, root, subjects, cases, older, older_snapshot, reference }
}

#[derive(Clone, Copy, Debug)]
enum Change {
    Flip,
    Delete,
    Swap,
    Older,
}

/// The keys of a key space in a dump, in order.
fn keys_of(d: &BTreeMap<Vec<u8>, Vec<u8>>, space: u8) -> Vec<Vec<u8>> {
    d.keys().filter(|k| k.first() == Some(&space)).cloned().collect()
}

/// Applies one change to one key space of a closed copy.
fn tamper(p: &Pristine, root: &Path, space: &str, change: Change) {
    let log = root.join("log");
    if space == "snapshot file" {
        let file = snapshot_path(root);
        let mut bytes = std::fs::read(&file).unwrap();
        let n = bytes.len();
        match change {
            Change::Flip => bytes[n / 2] ^= 0x20,
            Change::Delete => return std::fs::remove_file(&file).unwrap(),
            Change::Swap => {
                let (a, b) = (n / 3, 2 * n / 3);
                for i in 0..16 {
                    bytes.swap(a + i, b + i);
                }
            }
            Change::Older => bytes = p.older_snapshot.clone(),
        }
        return std::fs::write(&file, bytes).unwrap();
    }
    let now = dump(&log);
    let prefix = space.as_bytes()[0];
    let keys = keys_of(&now, prefix);
    // The key changed: for `m` the head record, for `p` and `w` the latest (the anchor's), for the
    // others one in the middle whose value changed since the older state where one did.
    let key = match space {
        "m" => b"mhead".to_vec(),
        "p" | "w" => keys.last().unwrap().clone(),
        // An entry's bytes never change; what a rewrap changes (the wrapped content key beside
        // them) is a separate matter (see docs/FORMAT.md, "Derived state", what is not caught).
        "e" => keys[keys.len() / 2].clone(),
        _ => keys
            .iter()
            .find(|k| p.older.get(*k).is_some_and(|o| Some(o) != now.get(*k)))
            .unwrap_or(&keys[keys.len() / 2])
            .clone(),
    };
    let db = common::raw_db(&log);
    match change {
        Change::Flip => {
            let mut v = now[&key].clone();
            let i = v.len() / 2;
            v[i] ^= 0x01;
            db.insert(&key, v).unwrap();
        }
        Change::Delete => {
            db.remove(&key).unwrap();
        }
        Change::Swap => {
            let other = match space {
                "m" => b"mprojection".to_vec(),
                _ => keys.iter().find(|k| **k != key && now[*k] != now[&key]).unwrap().clone(),
            };
            db.insert(&key, now[&other].clone()).unwrap();
            db.insert(&other, now[&key].clone()).unwrap();
        }
        Change::Older => {
            // The same key's earlier value if it had one; else an earlier value of the same
            // stream's key (`r`: an older part of the same stream); else any other earlier value
            // in the space.
            let own = p.older.get(&key).filter(|o| Some(*o) != now.get(&key) && space != "e");
            let older = own.cloned().or_else(|| {
                let same_stream = |k: &Vec<u8>| space == "r" && k.len() == key.len() && k[9..] == key[9..];
                p.older
                    .iter()
                    .filter(|(k, v)| k.first() == Some(&prefix) && **k != key && Some(*v) != now.get(&key))
                    .max_by_key(|(k, _)| same_stream(k))
                    .map(|(_, v)| v.clone())
            });
            db.insert(&key, older.expect("an older value in the space")).unwrap();
        }
    }
    db.flush().unwrap();
}

fn verify(root: &Path) -> Option<Finding> {
    let dir = DataDir::new(root, None);
    let master = MasterKey::load(&dir.master_key_file()).unwrap();
    let anchor = Vault::read_anchor(&dir.store_paths().vault, &master).unwrap().unwrap();
    let expected = [Expected {
        what: "the vault's anchor".into(),
        size: anchor.size,
        root: chronicle_tlog::TreeHash(anchor.root),
        kept: true,
    }];
    verify_log_against(&dir.log_dir(), &expected, Some(&master), |_, _| {}).unwrap().fault
}

/// After a change: what a restart serves, or `None` if it refuses to start.
fn restart(p: &Pristine, root: &Path) -> Option<Served> {
    let dir = DataDir::new(root, None);
    let store = dir.open().ok()?;
    let records = service(store, &dir).ok()?;
    Some(served(&records, &dir, &p.subjects, &p.cases))
}

#[test]
fn every_change_to_derived_state_is_named_by_verify_and_never_served() {
    let p = pristine();
    let clean = p.root.parent().unwrap().join("clean-check");
    copy_dir(&p.root, &clean);
    assert_eq!(verify(&clean), None, "the untouched directory verifies");
    let mut outcomes = Vec::new();
    for space in ["e", "s", "i", "h", "c", "t", "p", "w", "m", "r", "snapshot file"] {
        for change in [Change::Flip, Change::Delete, Change::Swap, Change::Older] {
            let root = p.root.parent().unwrap().join(format!("case-{}-{change:?}", space.replace(' ', "-")));
            copy_dir(&p.root, &root);
            tamper(&p, &root, space, change);
            let finding = verify(&root).unwrap_or_else(|| panic!("{space} {change:?}: verify passed"));
            assert_eq!(finding.space, space, "{space} {change:?}: verify named {finding}");
            match restart(&p, &root) {
                // The log itself is damaged: nothing but a restored copy repairs it.
                None if space == "e" => outcomes.push(format!("{space} {change:?}: refused to start")),
                // Derived state the start could not repair by itself: the operator's rebuild does.
                None => {
                    let dir = DataDir::new(&root, None);
                    let said = dir.rebuild_store().unwrap();
                    assert_eq!(verify(&root), None, "{space} {change:?}: after `rebuild --store` ({said})");
                    let served = restart(&p, &root).expect("starts after the rebuild");
                    assert_eq!(served, p.reference, "{space} {change:?}: after `rebuild --store`");
                    outcomes.push(format!("{space} {change:?}: refused to start; repaired by rebuild --store"));
                }
                Some(served) => {
                    let mut refused = 0;
                    for ((what, got), (_, want)) in served.iter().zip(&p.reference) {
                        match got {
                            None if want.is_some() => refused += 1,
                            None => {}
                            Some(v) => assert_eq!(Some(v), want.as_ref(), "{space} {change:?}: {what} differs"),
                        }
                    }
                    // Whatever the start left for the operator, `rebuild --store` makes whole.
                    if space != "e" {
                        let said = DataDir::new(&root, None).rebuild_store().unwrap();
                        assert_eq!(verify(&root), None, "{space} {change:?}: after `rebuild --store` ({said})");
                    }
                    outcomes.push(format!("{space} {change:?}: started, {refused} reads refused"));
                }
            }
            std::fs::remove_dir_all(&root).unwrap();
        }
    }
    println!("{}", outcomes.join("\n"));
}

/// Damage found where it is read (a stream index that lost its last key) is refused then, stops
/// appends, and is repaired from the log at the next start, which reports it.
#[test]
fn damage_found_by_a_reader_is_repaired_from_the_log_at_the_next_start() {
    let p = pristine();
    let root = p.root.parent().unwrap().join("reader");
    copy_dir(&p.root, &root);
    // The last index key of the sealed case: its seal order would drop out of its history.
    let log = root.join("log");
    let mut prefix = vec![b's'];
    prefix.extend_from_slice(&p.cases[0].0);
    {
        let db = common::raw_db(&log);
        let (k, _) = db.scan_prefix(&prefix).next_back().unwrap().unwrap();
        db.remove(k).unwrap();
        db.flush().unwrap();
    }
    let dir = DataDir::new(&root, None);
    let store = dir.open().unwrap();
    assert_eq!(store.repaired(), None, "not seen at open (only where it is read)");
    let records = service(store.clone(), &dir).unwrap();
    let served_now = served(&records, &dir, &p.subjects, &p.cases);
    let history = served_now.iter().find(|(w, _)| *w == format!("history of {}", p.cases[0])).unwrap();
    assert_eq!(history.1, None, "the history is refused, not served short");
    assert!(store.failure().is_some_and(|f| f.contains("key space s")), "{:?}", store.failure());
    drop(records);
    drop(store);
    // The next start rebuilds the index from the log, says so, and serves the whole history.
    let store = dir.open().unwrap();
    let said = store.repaired().unwrap().to_string();
    assert!(said.contains("key space s") && said.contains("Rebuilt from the"), "{said}");
    let records = service(store, &dir).unwrap();
    assert_eq!(served(&records, &dir, &p.subjects, &p.cases), p.reference);
    drop(records);
    assert_eq!(verify(&root), None);
}

/// The last index keys of a case deleted, alone, with its stream head, or with its stream head put
/// back to the one from before those entries: no evidence bundle comes out short of them (it would
/// verify, silently missing a seal order), and a restart serves nothing short.
#[test]
fn an_evidence_bundle_never_comes_out_short_when_a_streams_index_tail_is_hidden() {
    let p = pristine();
    let case = p.cases[0];
    let mut index_prefix = vec![b's'];
    index_prefix.extend_from_slice(&case.0);
    let mut head_key = vec![b'h'];
    head_key.extend_from_slice(&case.0);
    let whole = {
        let root = p.root.parent().unwrap().join("short-reference");
        copy_dir(&p.root, &root);
        let dir = DataDir::new(&root, None);
        let store = dir.open().unwrap();
        let (size, note) = store.latest_checkpoint().unwrap().unwrap();
        let b = chronicle_store::evidence::build_bundle(&store, &case, &note, size, &dir.log_key().unwrap(), false)
            .unwrap();
        b.entries.len()
    };
    assert!(whole >= 3, "the case has entries to hide ({whole})");
    let older_head = p.older.get(&head_key).cloned().expect("the case's head before the seal");
    for with_head in ["index only", "head deleted", "head older", "every head older"] {
        let root = p.root.parent().unwrap().join(format!("short-{}", with_head.replace(' ', "-")));
        copy_dir(&p.root, &root);
        {
            let db = common::raw_db(&root.join("log"));
            let keys: Vec<_> = db.scan_prefix(&index_prefix).keys().map(Result::unwrap).collect();
            for k in &keys[keys.len() - 2..] {
                db.remove(k).unwrap();
            }
            match with_head {
                "head deleted" => {
                    db.remove(&head_key).unwrap();
                }
                "head older" => {
                    db.insert(&head_key, older_head.clone()).unwrap();
                }
                "every head older" => {
                    // Several heads changed together, each to a value that authenticates.
                    for (k, v) in p.older.iter().filter(|(k, _)| k.first() == Some(&b'h')) {
                        db.insert(k, v.clone()).unwrap();
                    }
                }
                _ => {}
            }
            db.flush().unwrap();
        }
        let finding = verify(&root).unwrap_or_else(|| panic!("{with_head}: verify passed"));
        assert!(["s", "h"].contains(&finding.space), "{with_head}: {finding}");
        let dir = DataDir::new(&root, None);
        let store = dir.open().unwrap();
        let (size, note) = store.latest_checkpoint().unwrap().unwrap();
        match chronicle_store::evidence::build_bundle(&store, &case, &note, size, &dir.log_key().unwrap(), false) {
            Ok(b) => assert_eq!(b.entries.len(), whole, "{with_head}: a bundle came out short"),
            Err(e) => {
                assert!(e.to_string().contains("derived state damaged (s)"), "{with_head}: {e}");
                assert!(store.failure().is_some(), "{with_head}: the store goes on appending over damage");
            }
        }
        drop(store);
        // The next start serves exactly what a rebuild serves.
        assert_eq!(restart(&p, &root).as_ref(), Some(&p.reference), "{with_head}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

/// After a charge expungement re-wrapped the entries it kept and destroyed the case's old key, an
/// entry's older wrapping (under the destroyed key, with its MAC, captured before) put back beside
/// it: the entry must not read as expunged (its content silently gone from the case's history and
/// evidence). The expungement left no wrapping under the key it destroyed, so this one is damage:
/// `verify` names the entry and no read serves the case without it.
#[test]
fn an_older_wrapping_put_back_after_a_charge_expungement_is_damage_not_an_expunged_entry() {
    let p = pristine();
    let case = p.cases[1];
    let wrap_of = |v: &[u8]| chronicle_store::layout::decode_entry_value(v).unwrap().wrapped_key.map(<[u8]>::to_vec);
    let is_marked = |w: &[u8]| Vault::is_expunged_wrapping(&w[..chronicle_core::vault::WRAPPED_CONTENT_KEY_LEN]);
    let now = dump(&p.root.join("log"));
    let mut survivors = Vec::new();
    let mut marked = 0;
    for (k, v) in now.iter().filter(|(k, _)| k.first() == Some(&b'e')) {
        let ev = chronicle_store::layout::decode_entry_value(v).unwrap();
        let e = chronicle_core::Entry::decode(ev.bytes.to_vec()).unwrap();
        let (Some(w), Some(old)) = (wrap_of(v), p.older.get(k)) else { continue };
        if e.statement.stream != case || wrap_of(old).as_ref() == Some(&w) {
            continue;
        }
        if is_marked(&w) {
            marked += 1;
        } else {
            survivors.push((k.clone(), old.clone(), e.position()));
        }
    }
    assert!(marked >= 1, "the expunged charge's entries carry the expunged wrapping");
    assert!(!survivors.is_empty(), "the expungement kept (re-wrapped) entries of the case");
    for (k, old, position) in survivors {
        let root = p.root.parent().unwrap().join(format!("older-wrap-{position}"));
        copy_dir(&p.root, &root);
        {
            let db = common::raw_db(&root.join("log"));
            db.insert(&k, old).unwrap();
            db.flush().unwrap();
        }
        let finding = verify(&root).unwrap_or_else(|| panic!("entry {position}: verify passed"));
        assert_eq!((finding.position, finding.space), (position, "e"), "{finding}");
        match restart(&p, &root) {
            None => {}
            Some(served) => {
                for ((what, got), (_, want)) in served.iter().zip(&p.reference) {
                    if *what == format!("history of {case}") {
                        assert_eq!(got, &None, "entry {position}: the case's history was served without it");
                    } else if got.is_some() {
                        assert_eq!(got, want, "{what}");
                    }
                }
            }
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}

/// The content key wrapped beside a seal order, taken away or changed (no hash covers it): the
/// order cannot be opened, and it must not be taken for an expunged entry, which a replay skips,
/// serving the record unsealed. Verify names the entry; a start that must replay refuses.
#[test]
fn a_seal_order_whose_wrapped_key_is_removed_or_changed_is_damage_never_skipped() {
    let p = pristine();
    // A key destroyed by the charge expungement: its id is readable without the master key.
    let destroyed = *chronicle_core::Vault::destroyed_ids(&p.root.join("vault")).unwrap().iter().next().unwrap();
    for change in ["removed", "changed", "a destroyed key's id"] {
        let root = p.root.parent().unwrap().join(format!("wrap-{}", change.replace(' ', "-").replace('\'', "")));
        copy_dir(&p.root, &root);
        let position = {
            let db = common::raw_db(&root.join("log"));
            let mut found = None;
            for kv in db.scan_prefix([b'e']) {
                let (k, v) = kv.unwrap();
                let ev = chronicle_store::layout::decode_entry_value(&v).unwrap();
                let e = chronicle_core::Entry::decode(ev.bytes.to_vec()).unwrap();
                if e.statement.stream == p.cases[0] && e.statement.event_type.as_str() == "records.relief_ordered" {
                    let wrap = ev.wrapped_key.unwrap().to_vec();
                    let value = match change {
                        "removed" => chronicle_store::layout::encode_entry_value(ev.bytes, &ev.hash, None),
                        "a destroyed key's id" => {
                            // The wrapping names the destroyed key, so that the order would read as
                            // expunged (and a replay would skip it).
                            let mut w = wrap.clone();
                            w[..16].copy_from_slice(&destroyed.0);
                            chronicle_store::layout::encode_entry_value(ev.bytes, &ev.hash, Some(&w))
                        }
                        _ => {
                            let mut w = wrap.clone();
                            *w.last_mut().unwrap() ^= 1;
                            chronicle_store::layout::encode_entry_value(ev.bytes, &ev.hash, Some(&w))
                        }
                    };
                    found = Some((k.to_vec(), value, e.position()));
                }
            }
            let (k, value, position) = found.expect("the seal order");
            db.insert(k, value).unwrap();
            // The persisted projection goes too (it is a cache): the start must replay the log.
            db.remove(b"mprojection").unwrap();
            db.flush().unwrap();
            position
        };
        let finding = verify(&root).unwrap_or_else(|| panic!("{change}: verify passed at {position}"));
        assert_eq!((finding.position, finding.space), (position, "e"), "{change}: {finding}");
        {
            // Nor is an evidence bundle with content made over it, leaving the order's content out.
            let dir = DataDir::new(&root, None);
            let store = dir.open().unwrap();
            let (size, note) = store.latest_checkpoint().unwrap().unwrap();
            let bundle = chronicle_store::evidence::build_bundle(
                &store,
                &p.cases[0],
                &note,
                size,
                &dir.log_key().unwrap(),
                true,
            );
            assert!(bundle.is_err(), "{change}: a bundle with content was made over the damaged entry");
        }
        assert!(restart(&p, &root).is_none(), "{change}: a start served a state replayed without the seal order");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
