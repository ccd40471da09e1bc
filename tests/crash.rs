//! Crash consistency: a child process appends from several threads and is killed with SIGKILL at
//! random moments. After every kill the log must verify, and every append the child saw
//! acknowledged (it writes them to a side file after each acknowledgement) must be present with
//! the same hash. Prints the seed; set CHRONICLE_CRASH_SEED to replay a run.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use chronicle::datadir::DataDir;
use chronicle_core::Hash;
use chronicle_store::verify_log;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn acked(path: &std::path::Path) -> BTreeMap<u64, Hash> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        // The child may die in the middle of writing a line; a torn last line was not complete,
        // so the acknowledgement it records had not been fully reported.
        let mut it = line.split(' ');
        if let (Some(p), Some(h)) = (it.next(), it.next())
            && let (Ok(p), Some(h)) = (p.parse::<u64>(), Hash::from_hex(h))
        {
            out.insert(p, h);
        }
    }
    out
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_append() {
    let seed = std::env::var("CHRONICLE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("crash test seed: {seed} (CHRONICLE_CRASH_SEED={seed} replays the schedule)");
    let mut rng = Lcg(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"), None);
    drop(dir.init("crash.chronicle.localhost/ledger").unwrap());
    let acked_file = tmp.path().join("acked.txt");
    let mut total_len = 0;
    for round in 0..24 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .args([
                "append-loop",
                "--data-dir",
                dir.root.to_str().unwrap(),
                "--acked",
                acked_file.to_str().unwrap(),
                "--threads",
                "4",
                // The store reopens sled about every 40 entries, so some kills land in a reopen.
                "--settle-every",
                "40000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng.next() % 400));
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("round {round}: the appender exited early ({status}): {err}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let report = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
        assert!(report.is_ok(), "round {round} (seed {seed}): {:?}", report.fault);
        let store = dir.open().unwrap();
        let head = store.head();
        assert!(head.len >= total_len, "round {round}: the log shrank from {total_len} to {}", head.len);
        total_len = head.len;
        for (p, h) in acked(&acked_file) {
            let e = store
                .entry(p)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round} (seed {seed}): acknowledged position {p} lost"));
            assert_eq!(e.hash(), h, "round {round}: position {p} holds another entry than was acknowledged");
        }
    }
    let n = acked(&acked_file).len();
    println!("{n} acknowledged entries survived 24 kills; log length {total_len}");
    assert!(n > 100, "the appender must have made progress between kills");
}

#[test]
fn an_unfinished_sled_snapshot_left_by_a_kill_does_not_stop_the_next_start() {
    // sled writes its snapshot at every open to `snap.<lsn>.generating` and renames it when done;
    // a kill in between leaves the file, which sled itself then takes for a corrupt snapshot.
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"), None);
    let store = dir.init("crash.chronicle.localhost/ledger").unwrap().store;
    let head = store.head();
    assert!(head.len > 0);
    drop(store);
    let log = dir.log_dir();
    for (name, bytes) in [("snap.FFFFFFFFFFFFFFF0.generating", &b""[..]), ("snap.FFFFFFFFFFFFFFF1.generating", b"torn")]
    {
        std::fs::write(log.join(name), bytes).unwrap();
    }
    let store = dir.open().expect("the store opens");
    assert_eq!(store.head(), head, "with everything it held");
    drop(store);
    let names: Vec<String> =
        std::fs::read_dir(&log).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".generating")), "{names:?}");
    let report = verify_log(&log, |_, _| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.fault);
}
