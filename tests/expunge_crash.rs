//! Crash consistency of expungement: a child process records cases and expunges them in a loop
//! and is killed with SIGKILL at random moments, at least 20 times. After each restart every
//! expungement order in the log is wholly carried out (opening the records service finishes an
//! order whose keys were not yet destroyed), an order that is not in the log destroyed nothing,
//! and verify passes. Set CHRONICLE_CRASH_SEED to replay a schedule.

use std::process::{Command, Stdio};
use std::time::Duration;

use chronicle::datadir::DataDir;
use chronicle_core::{Role, StreamId};
use chronicle_records::{Purpose, Records};
use chronicle_store::verify_log;

#[test]
fn sigkill_during_expungements_leaves_each_order_wholly_done_or_not_done() {
    let seed: u64 = std::env::var("CHRONICLE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("expungement crash test seed: {seed}");
    let mut rng = seed;
    let mut next = || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rng >> 33
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"), None);
    drop(dir.init("crash.chronicle.localhost/ledger").unwrap());
    let log = tmp.path().join("orders.txt");
    let mut orders_seen = 0;
    for round in 0..22 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .args(["expunge-loop", "--data-dir", dir.root.to_str().unwrap(), "--log", log.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(120 + next() % 300));
        child.kill().unwrap();
        child.wait().unwrap();

        let report = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
        assert!(report.is_ok(), "round {round} (seed {seed}): {:?}", report.fault);
        let store = dir.open().unwrap();
        let records = Records::open(store.clone()).unwrap();
        // Opening with the ledger's key finishes a charge expungement cut short.
        records.set_ledger(dir.ledger().unwrap()).unwrap();
        let tombstones: Vec<_> = records.projection().state.expunged.values().cloned().collect();
        for t in &tombstones {
            assert!(
                store.stream_keys_destroyed(&t.streams).unwrap(),
                "round {round} (seed {seed}): order {} recorded but not carried out",
                t.order_id
            );
        }
        orders_seen = tombstones.len();
        // Every target marked pending either has its order (done) or is wholly readable (not done).
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() != 3 || parts[0] != "pending" {
                continue;
            }
            let Some(target) = StreamId::from_hex(parts[2]) else { continue };
            if parts[1] == "charges" {
                check_charge_order(&records, &store, target, round, seed);
                continue;
            }
            if records.tombstone(&target).is_some() {
                continue;
            }
            let p = records.projection();
            let readable = if parts[1] == "cycle" {
                p.state.cycles.contains_key(&target)
            } else {
                p.state.subjects.contains_key(&target)
            };
            assert!(readable, "round {round} (seed {seed}): {line} has no order but is not readable either");
            drop(p);
            if parts[1] == "subject" {
                records.view(target, Role::Court, Purpose::C, None).unwrap();
            }
        }
    }
    println!("{orders_seen} expungement orders carried out across 22 kills");
    assert!(orders_seen >= 5, "the loop must have made progress");
}

/// A charge order is either not recorded (both charges readable) or wholly carried out: charge 2's
/// content gone, charge 1 readable, the case restated, and no entry left under a live old key.
fn check_charge_order(records: &Records, store: &chronicle_store::Store, cycle: StreamId, round: u32, seed: u64) {
    let p = records.projection();
    let Some(c) = p.state.cycles.get(&cycle) else {
        panic!("round {round} (seed {seed}): case {cycle} of a charge order is gone")
    };
    let ordered = c.orders.iter().any(|o| o.kind == chronicle_records::ReliefKind::Expunge);
    if !ordered {
        assert!(c.charges.contains_key(&1) && c.charges.contains_key(&2), "round {round} (seed {seed}): {cycle}");
        return;
    }
    assert!(c.charges.contains_key(&1), "round {round} (seed {seed}): charge 1 of {cycle} lost");
    assert!(!c.charges.contains_key(&2), "round {round} (seed {seed}): charge 2 of {cycle} still there");
    assert!(!c.restated.is_empty(), "round {round} (seed {seed}): {cycle} not restated");
    drop(p);
    let current = store.current_stream_key(&cycle).unwrap();
    for (position, key) in store.entry_keys(&cycle).unwrap() {
        if let Some(k) = key.filter(|k| Some(*k) != current) {
            assert!(
                store.data_key_destroyed(&k).unwrap(),
                "round {round} (seed {seed}): position {position} of {cycle} under a live old key"
            );
        }
    }
    let text = String::from_utf8(
        records.view(cycle_subject(records, cycle), Role::Court, Purpose::C, None).unwrap().to_bytes(),
    )
    .unwrap();
    assert!(text.contains("THEFT") && !text.contains("DOOMED"), "round {round} (seed {seed}): {text}");
}

fn cycle_subject(records: &Records, cycle: StreamId) -> StreamId {
    records.projection().state.cycles[&cycle].subject
}
