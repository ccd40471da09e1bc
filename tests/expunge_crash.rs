//! Crash consistency of expungement: a child process records cases and expunges them in a loop
//! and is killed with SIGKILL at random moments, at least 20 times. After each restart every
//! expungement order in the log is wholly carried out (opening the records service finishes an
//! order whose keys were not yet destroyed), an order that is not in the log destroyed nothing,
//! and verify passes. Set CHRONICLE_CRASH_SEED to replay a schedule.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use chronicle::datadir::DataDir;
use chronicle_records::Records;
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
        orders_seen = common::check_orders(&records, &store, &log, &format!("round {round} (seed {seed})"));
    }
    println!("{orders_seen} expungement orders carried out across 22 kills");
    assert!(orders_seen >= 5, "the loop must have made progress");
}
