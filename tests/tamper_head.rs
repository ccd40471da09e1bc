//! An insider who changes the entries themselves, and the head record that counts them, rather
//! than what is derived from them: a log cut short after the last checkpoint, an unsigned entry
//! added beyond the head, a repair flag set by hand to get a rebuild past either, index values
//! that would steer a search past entries, a junk checkpoint key. Each is refused (never rebuilt
//! from at a start, never served) or, where it is derived state, repaired from the log.

mod common;

use chronicle_core::entry::Header;
use chronicle_core::{Entry, Hash, StreamId, Timestamp};
use chronicle_store::layout::encode_entry_value;
use chronicle_store::{ExpectedVersion, ReadError};
use common::{Ledger, record, stream};

fn entry_key(position: u64) -> Vec<u8> {
    let mut k = vec![b'e'];
    k.extend_from_slice(&position.to_be_bytes());
    k
}

fn stream_key(s: &StreamId, version: u64) -> Vec<u8> {
    let mut k = vec![b's'];
    k.extend_from_slice(&s.0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// A ledger with a signed checkpoint and entries after it; returns it closed, with the sizes.
fn ledger() -> (tempfile::TempDir, chronicle::datadir::DataDir, u64, u64) {
    let l = Ledger::new();
    let clerk = l.principal("clerk", chronicle_core::Role::RecordsClerk);
    for i in 0..8 {
        let s = stream(&format!("s{}", i % 2));
        l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, &format!("k{i}"), &format!("{{\"i\":{i}}}"))])
            .unwrap();
    }
    let anchor = l.store.head().len;
    l.store.sign_checkpoint(&l.dir.note_signer().unwrap(), &l.dir.info().unwrap().origin, anchor).unwrap();
    for i in 8..12 {
        let s = stream(&format!("s{}", i % 2));
        l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, &format!("k{i}"), &format!("{{\"i\":{i}}}"))])
            .unwrap();
    }
    let len = l.store.head().len;
    let (tmp, dir) = l.close();
    (tmp, dir, anchor, len)
}

fn refused(dir: &chronicle::datadir::DataDir) -> String {
    format!("{:#}", dir.open().err().expect("the start is refused"))
}

#[test]
fn a_log_cut_short_after_the_last_checkpoint_is_refused_at_start_even_with_a_repair_flag() {
    let (_tmp, dir, anchor, len) = ledger();
    {
        let db = common::raw_db(&dir.log_dir());
        // The last two entries (acknowledged after the checkpoint) and their index keys go.
        for p in len - 2..len {
            let v = db.remove(entry_key(p)).unwrap().unwrap();
            let e = Entry::decode(chronicle_store::layout::decode_entry_value(&v).unwrap().bytes.to_vec()).unwrap();
            db.remove(stream_key(&e.statement.stream, e.header.stream_version)).unwrap();
        }
        // And a repair flag, as a reader sets it, to ask the next start for a rebuild.
        db.insert(b"mrepair", &b"an insider"[..]).unwrap();
        db.flush().unwrap();
    }
    let said = refused(&dir);
    assert!(said.contains("log holds fewer") && said.contains("rebuild --store"), "{said}");
    assert!(dir.open().is_err(), "refused at every start, not repaired");
    // The operator may accept the log as it is: every entry checks, so it is rebuilt, and said so.
    let report = dir.rebuild_store().unwrap();
    assert!(report.contains("accepted by the operator"), "{report}");
    let store = dir.open().unwrap();
    assert_eq!(store.head().len, len - 2);
    assert!(store.head().len >= anchor);
}

#[test]
fn a_log_cut_below_the_anchor_is_refused_even_after_an_operator_rebuild() {
    let (_tmp, dir, anchor, len) = ledger();
    {
        let db = common::raw_db(&dir.log_dir());
        for p in anchor - 1..len {
            db.remove(entry_key(p)).unwrap();
        }
        db.flush().unwrap();
    }
    assert!(refused(&dir).contains("log holds fewer"));
    let e = format!("{:#}", dir.rebuild_store().expect_err("the anchor is not reached"));
    assert!(e.contains("does not reach") || e.contains("rolled back"), "{e}");
}

#[test]
fn an_unsigned_entry_added_beyond_the_head_is_refused_and_never_rebuilt_from() {
    let (_tmp, dir, _, len) = ledger();
    {
        let db = common::raw_db(&dir.log_dir());
        // The last registry entry, made anew as the next one: chained, hashed, indexed, and
        // carrying a signature nobody made.
        let last = Entry::decode(
            chronicle_store::layout::decode_entry_value(&db.get(entry_key(len - 1)).unwrap().unwrap())
                .unwrap()
                .bytes
                .to_vec(),
        )
        .unwrap();
        let (_, v) = db.scan_prefix(&stream_key(&StreamId::REGISTRY, 0)[..17]).next_back().unwrap().unwrap();
        let reg_pos = u64::from_be_bytes(v[..8].try_into().unwrap());
        let reg_last = Entry::decode(
            chronicle_store::layout::decode_entry_value(&db.get(entry_key(reg_pos)).unwrap().unwrap())
                .unwrap()
                .bytes
                .to_vec(),
        )
        .unwrap();
        let header = Header {
            position: len,
            stream_version: reg_last.header.stream_version + 1,
            prev_hash: last.hash(),
            prev_stream_hash: reg_last.hash(),
            recorded_time: Timestamp(last.header.recorded_time.0 + 1),
        };
        let forged = Entry::assemble(&header, reg_last.statement_bytes(), reg_last.envelope(), &[0u8; 64]).unwrap();
        let hash = Hash::entry(forged.bytes());
        db.insert(entry_key(len), encode_entry_value(forged.bytes(), &hash, None)).unwrap();
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(&hash.0);
        db.insert(stream_key(&StreamId::REGISTRY, header.stream_version), v).unwrap();
        db.flush().unwrap();
    }
    let said = refused(&dir);
    assert!(said.contains("beyond the head record"), "{said}");
    let e = format!("{:#}", dir.rebuild_store().expect_err("the forged entry fails its signature"));
    assert!(e.contains("do not check") && e.contains(&format!("position {len}")), "{e}");
    assert!(dir.open().is_err(), "still refused");
}

#[test]
fn index_values_that_would_steer_a_search_past_entries_are_damage() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", chronicle_core::Role::RecordsClerk);
    let s = stream("steered");
    for i in 0..6 {
        l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, &format!("k{i}"), "{}")]).unwrap();
    }
    let from = l.store.read_stream(&s, 3, 1).unwrap()[0].position();
    assert_eq!(l.store.stream_version_from(&s, from).unwrap(), 3);
    let (tmp, dir) = l.close();
    {
        let db = common::raw_db(&dir.log_dir());
        // Versions 2 and 3 claim position 0, keeping their hashes: a search for version 3's
        // position would land past it.
        for v in [2u64, 3] {
            let k = stream_key(&s, v);
            let mut val = db.get(&k).unwrap().unwrap().to_vec();
            val[..8].copy_from_slice(&0u64.to_be_bytes());
            db.insert(k, val).unwrap();
        }
        db.flush().unwrap();
    }
    let l = Ledger::reopen(tmp, dir);
    match l.store.stream_version_from(&s, from) {
        Err(ReadError::Derived { space, .. }) => assert_eq!(space, 's'),
        other => panic!("a steered search must be damage, got {other:?}"),
    }
}

#[test]
fn a_junk_checkpoint_key_is_damage_not_a_panic_and_is_removed_by_the_repair() {
    let (_tmp, dir, _, len) = ledger();
    {
        let db = common::raw_db(&dir.log_dir());
        db.insert(b"p\xff", &b"junk"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = dir.open().unwrap();
    let signer = dir.note_signer().unwrap();
    let origin = dir.info().unwrap().origin;
    let e = store.sign_checkpoint(&signer, &origin, len - 1).expect_err("the junk neighbour is damage");
    assert!(e.to_string().contains("damaged (p)"), "{e}");
    drop(store);
    let store = dir.open().unwrap();
    let said = store.repaired().expect("repaired at the next start").to_string();
    assert!(said.contains("1 kept checkpoint(s) removed"), "{said}");
    store.sign_checkpoint(&signer, &origin, len).unwrap();
}

#[test]
fn a_client_ca_replaced_or_added_to_in_the_data_directory_is_not_trusted() {
    let (_tmp, dir, _, _) = ledger();
    let genuine = std::fs::read_to_string(dir.tls_dir().join("ca.pem")).unwrap();
    assert_eq!(dir.tls_files().unwrap().ca_pem, genuine);
    let other = chronicle_server::pki::LocalCa::generate("insider.example").unwrap();
    for (what, pem) in
        [("replaced", other.cert_pem().to_string()), ("added to", format!("{genuine}{}", other.cert_pem()))]
    {
        std::fs::write(dir.tls_dir().join("ca.pem"), &pem).unwrap();
        let e = format!("{:#}", dir.tls_files().err().unwrap_or_else(|| panic!("a CA {what} is trusted")));
        assert!(e.contains("does not match the CA key"), "{what}: {e}");
    }
}

#[test]
fn an_index_value_past_the_head_does_not_end_a_read_early() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", chronicle_core::Role::RecordsClerk);
    let s = stream("cut-short");
    for i in 0..6 {
        l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, &format!("k{i}"), "{}")]).unwrap();
    }
    let (tmp, dir) = l.close();
    {
        let db = common::raw_db(&dir.log_dir());
        // Version 4 claims a position past the head: a reader that took it for a group still being
        // written would stop there, and an expungement would miss the keys after it.
        let k = stream_key(&s, 4);
        let mut val = db.get(&k).unwrap().unwrap().to_vec();
        val[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        db.insert(k, val).unwrap();
        db.flush().unwrap();
    }
    let l = Ledger::reopen(tmp, dir);
    for (what, r) in [
        ("read_stream", l.store.read_stream(&s, 0, 10).map(|_| ())),
        ("entry_keys", l.store.entry_keys(&s).map(|_| ())),
        ("stream_keys_destroyed", l.store.stream_keys_destroyed(&[s]).map(|_| ())),
    ] {
        assert!(matches!(r, Err(ReadError::Derived { space: 's', .. })), "{what}: {r:?}");
    }
}

/// Rewrites the entry at `position` with its recorded time moved on by one microsecond (the
/// author's signature covers only the statement, so it still verifies), its stored hash and its
/// index value made to match: nothing but the tree, and the next entry's link, says it changed.
fn rewrite(db: &sled::Db, position: u64) -> StreamId {
    let v = db.get(entry_key(position)).unwrap().unwrap();
    let ev = chronicle_store::layout::decode_entry_value(&v).unwrap();
    let e = Entry::decode(ev.bytes.to_vec()).unwrap();
    let mut header = e.header;
    header.recorded_time = Timestamp(header.recorded_time.0 + 1);
    let changed = Entry::assemble(&header, e.statement_bytes(), e.envelope(), &e.signature).unwrap();
    let hash = Hash::entry(changed.bytes());
    db.insert(entry_key(position), encode_entry_value(changed.bytes(), &hash, ev.wrapped_key)).unwrap();
    let mut idx = position.to_be_bytes().to_vec();
    idx.extend_from_slice(&hash.0);
    db.insert(stream_key(&e.statement.stream, e.header.stream_version), idx).unwrap();
    db.flush().unwrap();
    e.statement.stream
}

#[test]
fn an_entry_rewritten_with_its_hash_and_index_is_not_served() {
    // A registry entry (it decides whose signatures count): the start refuses.
    let (_tmp, dir, _, len) = ledger();
    {
        let db = common::raw_db(&dir.log_dir());
        let (_, v) = db.scan_prefix(&stream_key(&StreamId::REGISTRY, 0)[..17]).next_back().unwrap().unwrap();
        let q = u64::from_be_bytes(v[..8].try_into().unwrap());
        assert!(q < len - 1, "not the last entry of the log");
        rewrite(&db, q);
    }
    let said = refused(&dir);
    assert!(said.contains("is not the entry the tree holds"), "{said}");

    // A record's entry in the middle of its stream: every read of it says the log is damaged.
    let (tmp, dir, _, _) = ledger();
    let s = stream("s0");
    let position = {
        let db = common::raw_db(&dir.log_dir());
        let v = db.get(stream_key(&s, 2)).unwrap().unwrap();
        let p = u64::from_be_bytes(v[..8].try_into().unwrap());
        rewrite(&db, p);
        p
    };
    let l = Ledger::reopen(tmp, dir);
    for (what, r) in [
        ("read_stream", l.store.read_stream(&s, 0, 10).map(|_| ())),
        ("entry", l.store.entry(position).map(|_| ())),
        ("read_log", l.store.read_log(0, 100).map(|_| ())),
        ("read_log_map", l.store.read_log_map(0, 100, |_, _| ()).map(|_| ())),
    ] {
        assert!(matches!(r, Err(ReadError::Damaged { position: p, .. }) if p == position), "{what}: {r:?}");
    }
}

/// A case's last index keys and its key binding deleted: the expungement would find none of its
/// keys through the index, destroy nothing and read as carried out. It is refused as damage, the
/// next start rebuilds the index, and the order given again destroys the case's key.
#[test]
fn an_expungement_is_refused_while_the_index_hides_part_of_the_case() {
    use chronicle_records::{DispositionKind, Level, RecordEvent};
    let b = common::Bureau::new();
    let person = b.enroll("SID-H-1", "HIDDEN", "TAIL", "1980-01-01");
    let case = b.arrest(person, "OTN-H", "2024-01-01", &[(1, "13-1802", "THEFT", Level::Misdemeanor)]);
    let guilty = RecordEvent::DispositionRecorded {
        seq: 1,
        disposition: DispositionKind::GuiltyPlea,
        date: common::date("2024-05-01"),
    };
    b.rec(&b.court, case, guilty).unwrap();
    b.records.persist().unwrap();
    let common::Bureau { ledger, records, court, .. } = b;
    drop(records);
    let (tmp, dir) = ledger.close();
    {
        let db = common::raw_db(&dir.log_dir());
        let (k, _) = db.scan_prefix(&stream_key(&case, 0)[..17]).next_back().unwrap().unwrap();
        db.remove(k).unwrap();
        let mut binding = vec![b'c'];
        binding.extend_from_slice(&case.0);
        db.remove(binding).unwrap();
        db.flush().unwrap();
    }
    let order = |records: &chronicle_records::Records, id: &str| {
        records.expunge(&court, case, "cycle", id, "PC 851.93", Timestamp::now())
    };
    let store = dir.open().unwrap();
    let records = dir.open_records(store.clone()).unwrap();
    let e = order(&records, "EXP-H1").expect_err("refused while the index is short");
    // The store finds the index short of the case's authenticated head before anything is recorded.
    assert!(
        e.to_string().contains("derived state damaged (s)") && e.to_string().contains("lacks its last version"),
        "{e}"
    );
    drop(records);
    drop(store);
    let _tmp = tmp;
    let store = dir.open().unwrap();
    assert!(store.repaired().is_some_and(|r| r.contains("key space s")), "{:?}", store.repaired());
    let records = dir.open_records(store.clone()).unwrap();
    let (_, destroyed) = order(&records, "EXP-H2").unwrap();
    assert!(destroyed >= 1);
    assert!(store.stream_keys_destroyed(&[case]).unwrap());
    assert!(store.danger_data_key_bytes(&case).is_none());
}

/// A middle entry rewritten (hash and index made to match) and a repair flag set: the start's
/// rebuild finds the chain broken and refuses, having changed nothing; the authenticated tree,
/// which says which entry is the original, is still there for `verify`.
#[test]
fn a_rebuild_over_a_broken_chain_refuses_before_it_changes_anything() {
    let (_tmp, dir, _, _) = ledger();
    let tree = |db: &sled::Db| -> Vec<(Vec<u8>, Vec<u8>)> {
        db.scan_prefix([b't']).map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect()
    };
    let before = {
        let db = common::raw_db(&dir.log_dir());
        let v = db.get(stream_key(&stream("s0"), 1)).unwrap().unwrap();
        rewrite(&db, u64::from_be_bytes(v[..8].try_into().unwrap()));
        db.insert(b"mrepair", &b"a reader found something"[..]).unwrap();
        db.flush().unwrap();
        tree(&db)
    };
    let said = refused(&dir);
    assert!(said.contains("does not name the entry before it"), "{said}");
    let db = common::raw_db(&dir.log_dir());
    assert_eq!(tree(&db), before, "the tree was left as it was");
}
