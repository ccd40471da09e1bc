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

#[test]
fn concurrent_appenders_on_many_streams_share_group_commits_and_keep_the_log_gapless() {
    let l = Ledger::new();
    let clerk = Arc::new(l.principal("clerk", Role::RecordsClerk));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (store, clerk) = (l.store.clone(), clerk.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
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
