//! Optimistic concurrency under contention: many appenders, one stream, expected versions.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chronicle_core::Role;
use chronicle_store::{AppendError, AppendRequest, ExpectedVersion, verify_log};
use common::{Ledger, record, stream};

#[test]
fn sixteen_tasks_racing_on_one_stream_win_each_version_exactly_once() {
    let l = Ledger::new();
    let clerk = Arc::new(l.principal("clerk", Role::RecordsClerk));
    let s = stream("contended");
    let rounds = 12u64;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let wins: Vec<(usize, u64, u64)> = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..16usize {
            let (store, clerk) = (l.store.clone(), clerk.clone());
            tasks.push(tokio::spawn(async move {
                let mut won = Vec::new();
                let mut conflicts = 0u64;
                for attempt in 0u64.. {
                    // Read the stream's version, then try to append exactly after it.
                    let current = store.stream_version(&s).unwrap();
                    if current.is_some_and(|v| v + 1 >= rounds) {
                        break;
                    }
                    let expected = current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    let cmd = record(&clerk, s, &format!("t{t}-{attempt}"), &format!("{{\"task\":{t}}}"));
                    match store.append_async(AppendRequest { stream: s, expected, commands: vec![cmd] }).await {
                        Ok(r) => won.push((t, r.entries[0].stream_version, r.entries[0].position)),
                        Err(AppendError::WrongExpectedVersion { .. }) => conflicts += 1,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
                (won, conflicts)
            }));
        }
        let mut all = Vec::new();
        let mut conflicts = 0;
        for t in tasks {
            let (w, c) = t.await.unwrap();
            all.extend(w);
            conflicts += c;
        }
        assert!(conflicts > 0, "the race must actually produce conflicts");
        all
    });
    // Exactly one winner per version, versions gapless from 0.
    let by_version: BTreeMap<u64, (usize, u64)> = wins.iter().map(|(t, v, p)| (*v, (*t, *p))).collect();
    assert_eq!(by_version.len(), wins.len(), "two winners for one version");
    assert_eq!(by_version.keys().copied().collect::<Vec<_>>(), (0..rounds).collect::<Vec<_>>());
    let entries = l.store.read_stream(&s, 0, 100).unwrap();
    assert_eq!(entries.len() as u64, rounds);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.header.stream_version, i as u64);
        assert_eq!(e.position(), by_version[&(i as u64)].1);
    }
    drop(rt);
    let (_t, dir) = l.close();
    assert!(verify_log(&dir.log_dir(), |_, _| {}).unwrap().is_ok());
}

/// Enough appenders that groups commit many requests at once and cross many Merkle chunks.
#[test]
fn concurrent_appenders_on_many_streams_share_group_commits_and_keep_the_log_gapless() {
    let l = Ledger::new();
    let clerk = Arc::new(l.principal("clerk", Role::RecordsClerk));
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let (store, clerk) = (l.store.clone(), clerk.clone());
            std::thread::spawn(move || {
                for i in 0..150 {
                    let s = stream(&format!("s{}", (t + i) % 5));
                    store
                        .append(AppendRequest {
                            stream: s,
                            expected: ExpectedVersion::Any,
                            commands: vec![record(&clerk, s, &format!("{t}-{i}"), "{}")],
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let head = l.store.head();
    let all = l.store.read_log(0, 10_000).unwrap();
    assert_eq!(all.len() as u64, head.len);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position(), i as u64);
    }
    let (_t, dir) = l.close();
    let r = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(r.is_ok(), "{:?}", r.fault);
    assert_eq!(r.entries_verified, head.len);
}

/// Retries racing with their originals, among other appenders: a retry is often decided in the
/// same group as its original, before the original is in sled. Each retry must still get the
/// original's receipt, recorded time included, and nothing may be appended twice.
#[test]
fn retries_racing_their_originals_get_the_first_receipt() {
    let l = Ledger::new();
    let clerk = Arc::new(l.principal("clerk", Role::RecordsClerk));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let mut unique = 0u64;
    for round in 0..30 {
        let receipts = rt.block_on(async {
            let mut tasks = Vec::new();
            for k in 0..8 {
                let s = stream(&format!("r{}", k % 3));
                let cmd = record(&clerk, s, &format!("retry-{round}-{k}"), "{\"retried\":true}");
                for _copy in 0..2 {
                    let (store, cmd) = (l.store.clone(), cmd.clone());
                    tasks.push(tokio::spawn(async move {
                        let req = AppendRequest { stream: s, expected: ExpectedVersion::Any, commands: vec![cmd] };
                        (Some(k), store.append_async(req).await.unwrap())
                    }));
                }
                // Unrelated traffic between the copies.
                let (store, clerk) = (l.store.clone(), clerk.clone());
                tasks.push(tokio::spawn(async move {
                    let s = stream(&format!("other{k}"));
                    let cmd = record(&clerk, s, &format!("other-{round}-{k}"), "{}");
                    let req = AppendRequest { stream: s, expected: ExpectedVersion::Any, commands: vec![cmd] };
                    (None, store.append_async(req).await.unwrap())
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        unique += 16;
        let mut by_key: BTreeMap<usize, Vec<chronicle_store::AppendReceipt>> = BTreeMap::new();
        for (k, r) in receipts {
            if let Some(k) = k {
                by_key.entry(k).or_default().push(r);
            } else {
                assert!(!r.duplicate);
            }
        }
        for (k, rs) in by_key {
            let [a, b] = &rs[..] else { panic!("two answers expected for key {k}") };
            assert_eq!(a.entries, b.entries, "round {round} key {k}: the copies got different entries");
            assert_eq!(a.recorded_time, b.recorded_time, "round {round} key {k}: different recorded times");
            assert!(a.duplicate != b.duplicate, "round {round} key {k}: exactly one copy is the original");
        }
    }
    let head = l.store.head();
    // Registry entries (genesis, the clerk) come first.
    let records = l
        .store
        .read_log(0, 10_000)
        .unwrap()
        .iter()
        .filter(|e| e.statement.stream != chronicle_core::StreamId::REGISTRY)
        .count();
    assert_eq!(records as u64, unique);
    drop(rt);
    let (_t, dir) = l.close();
    let r = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(r.is_ok(), "{:?}", r.fault);
    assert_eq!(r.entries_verified, head.len);
}

/// The writer reopens sled in place now and then (so that a start after a crash replays little;
/// see the store's `db` module). Appenders and readers carry on through it: every append is
/// answered, every acknowledged entry reads back the same from a reader running at the same
/// time, proofs keep working, and the log verifies afterwards.
#[test]
fn appends_and_reads_carry_on_while_sled_is_reopened() {
    let l = Ledger::new();
    // About every 20 entries (each writes about 1 KB to sled).
    l.store.set_settle_every(Some(20 * 1024));
    let clerk = Arc::new(l.principal("clerk", Role::RecordsClerk));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, done) = (l.store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let len = store.head().len;
                    let page = store.read_log(len.saturating_sub(20), 20).unwrap();
                    assert!(page.iter().all(|e| e.position() < len));
                    let s1 = store.read_stream(&stream("s1"), 0, 1000).unwrap();
                    assert!(s1.iter().enumerate().all(|(v, e)| e.header.stream_version == v as u64));
                    store.tree_root(len).unwrap();
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let (store, clerk) = (l.store.clone(), clerk.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..60 {
                    let s = stream(&format!("s{}", (t + i) % 3));
                    let r = store
                        .append(AppendRequest {
                            stream: s,
                            expected: ExpectedVersion::Any,
                            commands: vec![record(&clerk, s, &format!("{t}-{i}"), "{}")],
                        })
                        .unwrap();
                    acked.push(r.entries[0]);
                }
                acked
            })
        })
        .collect();
    let acked: Vec<_> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0);
    let (reopens, _) = l.store.settled();
    assert!(reopens >= 10, "sled was reopened {reopens} times for 480 entries");
    for a in &acked {
        assert_eq!(l.store.entry(a.position).unwrap().unwrap().hash(), a.hash);
    }
    let head = l.store.head();
    let proof = l.store.inclusion_proof(acked[0].position, head.len).unwrap();
    assert!(!proof.is_empty());
    let (_t, dir) = l.close();
    let r = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(r.is_ok(), "{:?}", r.fault);
    assert_eq!(r.entries_verified, head.len);
}

#[test]
fn persisting_while_records_are_written_loses_none_of_them() {
    // The first persist of a projection replayed from zero writes it whole; records written while
    // that (or any) persist runs must be in the next one, or a restart would load a projection
    // that claims a position it lacks.
    let b = common::Bureau::new();
    for i in 0..300 {
        b.enroll(&format!("SID-P{i}"), "EARLY", "PAT", "1980-01-01");
    }
    let written = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..150 {
                b.enroll(&format!("SID-Q{i}"), "DURING", "PAT", "1980-01-01");
            }
            written.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        while !written.load(std::sync::atomic::Ordering::SeqCst) {
            b.records.persist().unwrap();
        }
    });
    b.records.catch_up().unwrap();
    b.records.persist().unwrap();
    let live = b.records.projection().state.clone();
    assert_eq!(live.subjects.len(), 450);
    let reopened = chronicle_records::Records::open(b.ledger.store.clone()).unwrap();
    assert!(reopened.projection().restored, "the persisted projection was loaded");
    assert!(reopened.projection().state == live, "and holds every record written while it was persisted");
}

/// A persist seals projection parts on all cores while new streams take new data keys (the
/// vault's write lock) and catch-ups open payloads on all cores (its read lock). The persist used
/// to hold the read lock while it waited for its parallel loop; a rayon worker waiting there could
/// steal a catch-up's task, whose read lock queued behind the waiting writer, which waited for the
/// persist's guard: every thread of the server stuck. A watchdog turns a hang into a failure.
#[test]
fn persists_new_keys_and_catch_ups_together_never_deadlock() {
    let b = Arc::new(common::Bureau::new());
    for i in 0..200 {
        b.enroll(&format!("SID-D{i}"), "DOE", "JANE", "1990-01-01");
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            for _ in 0..600 {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            eprintln!("deadlock: persists, new keys and catch-ups stuck for 60 s");
            std::process::abort();
        })
    };
    std::thread::scope(|s| {
        // Whole persists, sealing every part on all cores.
        s.spawn(|| {
            for _ in 0..30 {
                b.records.set_snapshot_after(0);
                b.records.persist().unwrap();
            }
        });
        // New subjects: a new data key each, the vault's write lock every 64.
        for w in 0..2 {
            let b = b.clone();
            s.spawn(move || {
                for i in 0..300 {
                    b.enroll(&format!("SID-N{w}-{i}"), "ROE", "JOHN", "1980-01-01");
                }
            });
        }
        // Reads that bring the projection up to date, opening payloads on all cores.
        s.spawn(|| {
            for _ in 0..300 {
                b.records.refresh().unwrap();
            }
        });
    });
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    watchdog.join().unwrap();
}
