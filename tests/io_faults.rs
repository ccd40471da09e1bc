//! Disk faults under a real `chronicle` process. A small LD_PRELOAD library (tests/io_faults/shim.c,
//! built here with the system's C compiler) makes one kind of file-system call (`fsync` and
//! `fdatasync`, `write` and its kin, or `rename`) fail with EIO or ENOSPC at its Nth use under the
//! data directory, once or from then on. Seeded runs across the three paths that write:
//!
//! - appends: nothing is acknowledged after a write or sync failed (the store stops and says so);
//!   after a restart every acknowledged entry is there and `verify` passes;
//! - expungements: an order whose keys could not be destroyed (the vault's rewrite failed) is
//!   carried out at the next start; every order in the log is wholly carried out;
//! - checkpoints: a checkpoint that failed is not handed out; the next one signs, and `verify`
//!   (with the vault's anchor) passes; one handed out is kept.
//!
//! The schedule is fixed unless CHRONICLE_FAULT_SEED gives another (it is printed, to replay).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use chronicle::datadir::DataDir;
use chronicle_core::{MasterKey, Vault};
use chronicle_store::{Expected, verify_log_against};
use common::copy_dir;

const BIN: &str = env!("CARGO_BIN_EXE_chronicle");

/// The shim, built once per test binary.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/io_faults/shim.c");
        let out =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chronicle-fault-shim-{}.so", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let built = Command::new(&cc)
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-ldl")
            .output()
            .unwrap_or_else(|e| panic!("building the fault shim needs a C compiler ({cc}): {e}"));
        assert!(built.status.success(), "building the fault shim: {}", String::from_utf8_lossy(&built.stderr));
        out
    })
}

/// One fault: which call, at which use, with which error, once or from then on.
#[derive(Clone, Debug)]
struct Fault {
    op: &'static str,
    at: u64,
    errno: &'static str,
    sticky: bool,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A fault on one of `ops`, at a use up to the bound given for it.
    fn fault(&mut self, ops: &[(&'static str, u64)]) -> Fault {
        let (op, max) = ops[self.below(ops.len() as u64) as usize];
        Fault {
            op,
            at: 1 + self.below(max),
            errno: if self.below(2) == 0 { "EIO" } else { "ENOSPC" },
            sticky: self.below(3) == 0,
        }
    }
}

fn seed() -> u64 {
    // A fixed schedule by default, so that a run fails or passes alike every time (how many faults
    // land depends on the schedule); set the variable to explore others.
    let seed = std::env::var("CHRONICLE_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_130);
    println!("I/O fault seed: {seed} (CHRONICLE_FAULT_SEED={seed} replays it)");
    seed
}

/// Runs `chronicle args` with the fault injected under `data`; returns its output and the fault
/// report (`op n path` if it fired).
fn run_faulty(fault: &Fault, data: &Path, args: &[&str]) -> (Output, Option<String>) {
    let report = data.with_extension("fault-report");
    let _ = std::fs::remove_file(&report);
    let out = Command::new(BIN)
        .args(args)
        .env("LD_PRELOAD", shim())
        .env("CHRONICLE_FAULT_DIR", data)
        .env("CHRONICLE_FAULT_OP", fault.op)
        .env("CHRONICLE_FAULT_AT", fault.at.to_string())
        .env("CHRONICLE_FAULT_ERRNO", fault.errno)
        .env("CHRONICLE_FAULT_STICKY", if fault.sticky { "1" } else { "0" })
        .env("CHRONICLE_FAULT_REPORT", &report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A process that hangs after a fault (rather than failing and saying so) is a finding, not
    // something to wait for.
    let started = std::time::Instant::now();
    let mut child = out;
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(90) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{args:?} with {fault:?} hung for 90 s after the fault: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out, std::fs::read_to_string(&report).ok())
}

fn chronicle(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// A fresh data directory (a copy of one initialized once).
fn fresh(template: &Path, tmp: &Path, name: &str) -> PathBuf {
    let root = tmp.join(name);
    copy_dir(template, &root);
    root
}

fn template(tmp: &Path) -> PathBuf {
    let root = tmp.join("template");
    drop(DataDir::new(&root, None).init("faults.chronicle.localhost/ledger").unwrap());
    root
}

/// `verify` with the master key and the vault's anchor, as `chronicle verify` runs it.
fn verify(root: &Path, ctx: &str) {
    let dir = DataDir::new(root, None);
    let master = MasterKey::load(&dir.master_key_file()).unwrap();
    let expected: Vec<Expected> = Vault::read_anchor(&dir.store_paths().vault, &master)
        .unwrap()
        .filter(|a| !a.recovered)
        .map(|a| Expected {
            what: "the vault's anchor".into(),
            size: a.size,
            root: chronicle_tlog::TreeHash(a.root),
            kept: true,
        })
        .into_iter()
        .collect();
    let report = verify_log_against(&dir.log_dir(), &expected, Some(&master), |_, _| {}).unwrap();
    assert!(report.is_ok(), "{ctx}: verify after restart: {:?}", report.fault);
}

#[test]
fn a_failed_write_or_sync_is_never_acknowledged_and_stops_the_store_until_restarted() {
    let seed = seed();
    let mut rng = Rng(seed ^ 0xa11);
    let tmp = tempfile::tempdir().unwrap();
    let template = template(tmp.path());
    let mut fired = 0;
    for run in 0..20 {
        // Each group is one sled write and one sync; a run of 25 requests does about 25 of
        // each, plus what opening and the vault's new keys do.
        let fault = rng.fault(&[("fsync", 30), ("write", 60), ("rename", 3)]);
        let ctx = format!("append run {run} {fault:?} (seed {seed})");
        let root = fresh(&template, tmp.path(), &format!("append-{run}"));
        let acked = tmp.path().join(format!("append-{run}.acked"));
        let (out, report) = run_faulty(
            &fault,
            &root,
            &[
                "append-loop",
                "--data-dir",
                root.to_str().unwrap(),
                "--acked",
                acked.to_str().unwrap(),
                "--threads",
                "1",
                "--count",
                "25",
                "--after-error",
                "3",
            ],
        );
        let text = std::fs::read_to_string(&acked).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let first_error = lines.iter().position(|l| l.starts_with("error "));
        if let Some(at) = first_error {
            assert!(lines[at..].iter().all(|l| l.starts_with("error ")), "{ctx}: acknowledged after a failure: {text}");
            // After the first failure the store says it stopped, and why.
            for l in &lines[at + 1..] {
                assert!(l.contains("not accepting appends") && l.contains("restart"), "{ctx}: {l}");
            }
        }
        // (A fault may also land while the process closes the store, after its last answer.)
        if report.is_some() {
            fired += 1;
        } else {
            assert!(out.status.success() && first_error.is_none(), "{ctx}: no fault fired, yet: {out:?}");
        }
        // Restarted without the fault: every acknowledged entry is there, and the store writes.
        let dir = DataDir::new(&root, None);
        let store = dir.open().unwrap_or_else(|e| panic!("{ctx}: reopening: {e:#}"));
        for l in lines.iter().filter(|l| !l.starts_with("error ")) {
            let (pos, hash) = l.split_once(' ').unwrap();
            let e = store.entry(pos.parse().unwrap()).unwrap().unwrap_or_else(|| panic!("{ctx}: {l} lost"));
            assert_eq!(e.hash().to_string(), hash, "{ctx}: {l}");
        }
        drop(store);
        verify(&root, &ctx);
        let more = chronicle(&[
            "append-loop",
            "--data-dir",
            root.to_str().unwrap(),
            "--acked",
            acked.to_str().unwrap(),
            "--threads",
            "1",
            "--count",
            "1",
        ]);
        assert!(more.status.success(), "{ctx}: appending after the restart: {more:?}");
    }
    println!("{fired} of 20 append runs had their fault fire");
    assert!(fired >= 10, "most faults must land (seed {seed})");
}

#[test]
fn an_expungement_whose_keys_could_not_be_destroyed_is_carried_out_at_the_next_start() {
    let seed = seed();
    let mut rng = Rng(seed ^ 0xe4);
    let tmp = tempfile::tempdir().unwrap();
    let template = template(tmp.path());
    let mut fired = 0;
    for run in 0..16 {
        // Four rounds: cases, a charge expungement (a re-key), case and subject expungements,
        // each destroying keys by rewriting the vault (write, fsync, rename, fsync).
        let fault = rng.fault(&[("fsync", 60), ("write", 150), ("rename", 6)]);
        let ctx = format!("expunge run {run} {fault:?} (seed {seed})");
        let root = fresh(&template, tmp.path(), &format!("expunge-{run}"));
        let log = tmp.path().join(format!("expunge-{run}.log"));
        let (out, report) = run_faulty(
            &fault,
            &root,
            &["expunge-loop", "--data-dir", root.to_str().unwrap(), "--log", log.to_str().unwrap(), "--count", "4"],
        );
        if report.is_some() {
            fired += 1;
        } else {
            assert!(out.status.success(), "{ctx}: no fault fired, yet: {out:?}");
        }
        let dir = DataDir::new(&root, None);
        let store = dir.open().unwrap_or_else(|e| panic!("{ctx}: reopening: {e:#}"));
        // Opening the records service (as the server does) finishes every order in the log.
        let records = dir.open_records(store.clone()).unwrap_or_else(|e| panic!("{ctx}: {e:#}"));
        common::check_orders(&records, &store, &log, &ctx);
        drop(records);
        drop(store);
        verify(&root, &ctx);
    }
    println!("{fired} of 16 expunge runs had their fault fire");
    assert!(fired >= 9, "most faults must land (seed {seed})");
}

#[test]
fn a_checkpoint_that_failed_is_not_handed_out_and_the_next_one_signs() {
    let seed = seed();
    let mut rng = Rng(seed ^ 0xc4);
    let tmp = tempfile::tempdir().unwrap();
    let template = template(tmp.path());
    let mut fired = 0;
    for run in 0..16 {
        // A checkpoint writes the vault's anchor (write, fsync), the note into sled (write), and
        // syncs sled (fsync); opening the store writes sled's snapshot (write, fsync, rename).
        let fault = rng.fault(&[("fsync", 5), ("write", 8), ("rename", 1)]);
        let ctx = format!("checkpoint run {run} {fault:?} (seed {seed})");
        let root = fresh(&template, tmp.path(), &format!("checkpoint-{run}"));
        let d = root.to_str().unwrap();
        let acked = tmp.path().join(format!("checkpoint-{run}.acked"));
        let fill = chronicle(&["append-loop", "--data-dir", d, "--acked", acked.to_str().unwrap(), "--count", "3"]);
        assert!(fill.status.success(), "{ctx}: {fill:?}");
        if run % 2 == 1 {
            // Half of the runs sign one checkpoint first, so that the failing one moves an anchor.
            assert!(chronicle(&["checkpoint", "--data-dir", d]).status.success(), "{ctx}");
            let more = chronicle(&["append-loop", "--data-dir", d, "--acked", acked.to_str().unwrap(), "--count", "2"]);
            assert!(more.status.success(), "{ctx}");
        }
        let (out, report) = run_faulty(&fault, &root, &["checkpoint", "--data-dir", d]);
        let handed_out = out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string());
        if report.is_some() {
            fired += 1;
        } else {
            assert!(handed_out.is_some(), "{ctx}: no fault fired, yet: {out:?}");
        }
        // Without the fault: the next checkpoint signs (the same one, if the first was kept).
        let again = chronicle(&["checkpoint", "--data-dir", d]);
        assert!(again.status.success(), "{ctx}: the next checkpoint: {again:?}");
        if let Some(first) = handed_out {
            assert_eq!(String::from_utf8_lossy(&again.stdout), first, "{ctx}: the checkpoint handed out was not kept");
        }
        verify(&root, &ctx);
    }
    println!("{fired} of 16 checkpoint runs had their fault fire");
    assert!(fired >= 8, "most faults must land (seed {seed})");
}
