//! The records projection at scale: rebuild throughput, rap-sheet read latency and
//! restart-to-ready time (after a clean stop, after a crash, and after the worst crash: just
//! before sled's next reopen) on a generated log of realistic shape (subjects with several cycles,
//! several charges each, dispositions, sentences, about 10% of cycles sealed).
//!
//! The log is written through the real append path (signed, sealed, durable); the records
//! validation is skipped while generating because the generator only makes valid events.
//! Run with `cargo bench --bench records -- [--subjects N] [--rounds R] [--keep DIR]
//! [--restart-only]` (`--keep`: generate into DIR once and reuse it; `--restart-only`: on a kept
//! DIR, measure only restarts after a clean stop, each in this process).

mod common;

use std::time::Instant;

use chronicle_core::{Command, Role, Signer, StreamId, Timestamp};
use chronicle_records::model::{
    ChargeSpec, DispositionKind, Level, Name, Purpose, RecordEvent, ReliefKind, Scope, SentenceKind,
};
use chronicle_records::service::draft;
use chronicle_records::{Date, Records};
use chronicle_store::{AppendRequest, ExpectedVersion, Store};
use rayon::prelude::*;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn d(y: u64, m: u64, day: u64) -> Date {
    Date::parse(&format!("{y:04}-{m:02}-{day:02}")).unwrap()
}

/// The requests for one subject: its enrollment, then each cycle as one atomic request.
fn subject_requests(signer: &Signer, i: u64) -> Vec<(StreamId, Vec<Command>)> {
    let mut rng = Lcg(i.wrapping_mul(2654435761) + 1);
    let subject = StreamId::random();
    let mut out = Vec::new();
    let sign = |stream, ev: &RecordEvent, k: String| {
        Command::sign(signer, draft(stream, ev, Timestamp::now(), None, k.into_bytes())).unwrap()
    };
    let dob = d(1950 + rng.below(50), 1 + rng.below(12), 1 + rng.below(28));
    let enroll = RecordEvent::SubjectEnrolled {
        sid: format!("SID-{i:08}"),
        fbi: Some(format!("FBI{i:09}")),
        name: Name { last: format!("LAST{}", i % 5000), first: format!("FIRST{}", i % 700), middle: None },
        dob,
    };
    out.push((subject, vec![sign(subject, &enroll, format!("e{i}"))]));
    let cycles = 1 + rng.below(5);
    for c in 0..cycles {
        let cycle = StreamId::random();
        let year = 2010 + rng.below(15);
        let arrest = d(year, 1 + rng.below(12), 1 + rng.below(28));
        let n = 1 + rng.below(3) as u32;
        let charges: Vec<ChargeSpec> = (1..=n)
            .map(|seq| ChargeSpec {
                seq,
                statute: format!("13-{}", 1000 + rng.below(900)),
                offense_code: format!("{}", 1000 + rng.below(8000)),
                literal: "THEFT OF PROPERTY".into(),
                level: if rng.below(4) == 0 { Level::Felony } else { Level::Misdemeanor },
                counts: 1,
            })
            .collect();
        let mut evs = vec![
            RecordEvent::ArrestRecorded {
                subject: subject.to_hex(),
                tracking_number: format!("OTN-{i}-{c}"),
                agency_ori: "AZ0070000".into(),
                arrest_date: arrest,
                charges,
            },
            RecordEvent::CourtCaseFiled { court_ori: "AZ007015J".into(), docket: format!("CR-{year}-{i:07}-{c}") },
        ];
        let on = d(year.min(2025) + 1, 1 + rng.below(12), 1 + rng.below(28));
        for seq in 1..=n {
            let kind = [
                DispositionKind::GuiltyPlea,
                DispositionKind::Dismissed,
                DispositionKind::NolleProsequi,
                DispositionKind::ConvictedAtTrial,
                DispositionKind::Acquitted,
            ][rng.below(5) as usize];
            evs.push(RecordEvent::DispositionRecorded { seq, disposition: kind, date: on });
            if kind.is_conviction() {
                evs.push(RecordEvent::SentenceImposed {
                    seq,
                    kind: SentenceKind::Probation,
                    term_days: Some(365),
                    amount_cents: None,
                    date: on,
                });
            }
        }
        if rng.below(10) == 0 {
            evs.push(RecordEvent::ReliefOrdered {
                order_id: format!("SEAL-{i}-{c}"),
                kind: ReliefKind::Seal,
                scope: Scope::WholeCycle,
                statute: "18 Pa.C.S. 9122.2".into(),
                audiences: vec![],
            });
        }
        out.push((cycle, evs.iter().enumerate().map(|(k, ev)| sign(cycle, ev, format!("c{i}-{c}-{k}"))).collect()));
    }
    out
}

fn main() {
    let subjects = common::arg("--subjects", 60_000);
    let rounds = common::arg("--rounds", 3) as usize;
    // `--keep DIR`: generate into DIR and keep it; a later run with the same DIR reuses it.
    let keep = std::env::args().skip_while(|a| a != "--keep").nth(1).map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let root = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    if root.join("data").exists() {
        return measure(chronicle::datadir::DataDir::new(root.join("data"), None), rounds, None);
    }
    let (dir, store, _) = common::ledger(&root);
    let clerk = register_clerk(&dir, &store, "bench.clerk");

    let t = Instant::now();
    let chunk = 2_000u64;
    let mut sample_subjects = Vec::new();
    for start in (0..subjects).step_by(chunk as usize) {
        let reqs: Vec<(StreamId, Vec<Command>)> = (start..(start + chunk).min(subjects))
            .into_par_iter()
            .flat_map_iter(|i| subject_requests(&clerk, i))
            .collect();
        sample_subjects.push(reqs[0].0);
        append_all(&store, reqs);
    }
    let len = store.head().len;
    println!("generated {len} entries ({subjects} subjects) in {:.0}s", t.elapsed().as_secs_f64());
    measure(dir, rounds, Some(store));
}

/// Appends requests from 32 threads, so that group commit amortizes the fsyncs.
fn append_all(store: &Store, reqs: Vec<(StreamId, Vec<Command>)>) {
    let queue = std::sync::Mutex::new(reqs.into_iter());
    std::thread::scope(|sc| {
        for _ in 0..32 {
            sc.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((s, cmds)) = next else { break };
                    store
                        .append(AppendRequest { stream: s, expected: ExpectedVersion::NoStream, commands: cmds })
                        .unwrap();
                }
            });
        }
    });
}

/// The worst restart after a crash: sled just short of its next reopen (so the start replays
/// nearly a whole interval of sled's log), and the persisted projection as far behind as the
/// records service lets it get (it persists every 20,000 entries). Writes new subjects through
/// the store, letting the records service catch up (and persist when due) after each chunk, as a
/// server does; then drops everything without the clean stop's reopen, and times the start.
/// Returns (seconds to ready, seconds to open the store, MiB of sled log since its last open,
/// entries the persisted projection is behind).
fn worst_crash_restart(dir: &chronicle::datadir::DataDir) -> (f64, f64, u64, u64) {
    let store = dir.open().unwrap();
    let records = Records::open(store.clone()).unwrap();
    let writer = register_clerk(dir, &store, "bench.crash");
    let mut next = 50_000_000u64;
    loop {
        let (written, interval) = store.settle_progress();
        // A chunk of 100 subjects writes about 2 MiB.
        if written + (4 << 20) >= interval {
            break;
        }
        let reqs = (next..next + 100).into_par_iter().flat_map_iter(|i| subject_requests(&writer, i)).collect();
        next += 100;
        append_all(&store, reqs);
        records.catch_up().unwrap();
    }
    let (written, _) = store.settle_progress();
    let behind = store.head().len - store.projection_marker().unwrap().unwrap_or(0);
    drop(records);
    drop(store);
    let (_, _, store_ready, ready) = start(dir);
    (ready, store_ready, written >> 20, behind)
}

/// A new records clerk, registered by the admin.
fn register_clerk(dir: &chronicle::datadir::DataDir, store: &Store, id: &str) -> Signer {
    // Unique in the log, so that a kept directory can be measured again.
    let id = format!("{id}.{}", store.head().len);
    let clerk = Signer::generate(chronicle_core::PrincipalId::new(&id).unwrap());
    let reg = Command::sign(
        &dir.admin().unwrap(),
        chronicle_core::RegistryEvent::register(clerk.principal().clone(), Role::RecordsClerk, &clerk.verifying_key())
            .draft(),
    )
    .unwrap();
    store
        .append(AppendRequest { stream: StreamId::REGISTRY, expected: ExpectedVersion::Any, commands: vec![reg] })
        .unwrap();
    clerk
}

/// Latency (ms, sorted) of submitting whole cycles as one request each (an arrest, its court
/// case, dispositions, sentences: several commands validated in order) to a records service
/// holding the whole generated state.
fn batch_latency(dir: &chronicle::datadir::DataDir, records: &Records) -> Vec<f64> {
    let clerk = register_clerk(dir, records.store(), "bench.court");
    let mut lat = Vec::new();
    // New subjects' numbers, unique in the log (see `register_clerk`).
    let first = 1_000_000_000 + records.store().head().len;
    for i in first..first + 100 {
        for (stream, cmds) in subject_requests(&clerk, i) {
            let several = cmds.len() > 1;
            let t = Instant::now();
            records.submit_batch(stream, ExpectedVersion::Any, cmds).unwrap();
            if several {
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    lat
}

/// Minor page faults of this process so far (Linux; 0 elsewhere): memory touched for the first
/// time shows here.
fn minor_faults() -> u64 {
    // Field 10 of /proc/self/stat, counted after the command name's closing parenthesis.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(7)?.parse().ok()))
        .unwrap_or(0)
}

/// Starts as a server does: opens the store, then the records service (persisted projection and
/// the log's tail). Returns both, and the seconds until the store was open and until the service
/// was ready. (Dropping a state of this size takes most of a second; it is not part of starting.)
fn start(dir: &chronicle::datadir::DataDir) -> (Store, Records, f64, f64) {
    let t = Instant::now();
    let store = dir.open().unwrap();
    let store_ready = t.elapsed().as_secs_f64();
    let r = Records::open(store.clone()).unwrap();
    (store, r, store_ready, t.elapsed().as_secs_f64())
}

fn measure(dir: chronicle::datadir::DataDir, rounds: usize, store: Option<Store>) {
    let generated = store.is_some();
    let store = match store {
        Some(s) => s,
        None => dir.open().unwrap(),
    };
    let len = store.head().len;
    if std::env::args().any(|a| a == "--restart-only") {
        // Only restart to ready, on a kept directory (for working on it).
        drop(store);
        for _ in 0..rounds {
            let (_, r, s, ready) = start(&dir);
            println!("restart to ready {ready:.2}s (store {s:.2}s)");
            drop(r);
        }
        return;
    }
    let (reopens, took) = store.settled();
    println!(
        "  sled reopened in place {reopens} times while writing, {:.2}s in all (bounds the replay after a crash)",
        took.as_secs_f64()
    );

    // Rebuild from zero (the time includes persisting the rebuilt projection).
    let mut rates = Vec::new();
    let mut replay_rates = Vec::new();
    let mut records = None;
    for round in 0..rounds {
        // The previous round's service goes first: a rebuild does not run beside another whole
        // projection in the same process (holding one made the round after it fault in as much
        // fresh memory again, the first round's cost).
        drop(records.take());
        let (faults, t) = (minor_faults(), Instant::now());
        let (r, phases) = Records::rebuild_timed(store.clone()).unwrap();
        rates.push(len as f64 / t.elapsed().as_secs_f64());
        println!(
            "  rebuild {}: {:.0} entries/s (replay {:.2}s, persist {:.2}s, reopen {:.2}s; {} minor page faults)",
            round + 1,
            rates[round],
            phases.replay.as_secs_f64(),
            phases.persisting.as_secs_f64(),
            phases.settling.as_secs_f64(),
            minor_faults().saturating_sub(faults),
        );
        let t = Instant::now();
        store.clear_projection().unwrap();
        drop(Records::open(store.clone()).unwrap());
        replay_rates.push(len as f64 / t.elapsed().as_secs_f64());
        records = Some(r);
    }
    let records = records.unwrap();
    let batches = batch_latency(&dir, &records);
    let (n_subjects, n_cycles, sealed) = {
        let p = records.projection();
        let sealed = p.state.cycles.values().filter(|c| !c.orders.is_empty()).count();
        (p.state.subjects.len(), p.state.cycles.len(), sealed)
    };

    // Rap-sheet reads in process.
    let ids: Vec<StreamId> = records.projection().state.subjects.keys().copied().collect();
    let mut rng = Lcg(99);
    let mut lat = Vec::new();
    for k in 0..20_000 {
        let s = ids[rng.below(ids.len() as u64) as usize];
        let (role, purpose) = if k % 2 == 0 { (Role::Court, Purpose::C) } else { (Role::Employer, Purpose::E) };
        let t = Instant::now();
        // An employer of whose record nothing is reportable is answered "not found".
        let bytes = match records.view(s, role, purpose, None) {
            Ok(v) => v.to_bytes(),
            Err(chronicle_records::ServiceError::View(chronicle_records::view::ViewError::NothingShown { .. })) => {
                Vec::new()
            }
            Err(e) => panic!("{e}"),
        };
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(bytes);
    }
    lat.sort_by(f64::total_cmp);
    drop(records);
    drop(store);

    // Restart to ready: open the store and the records service (persisted projection + tail).
    // The first open after the long write replays sled's log since its last open (a restart
    // after a crash); `DataDir::settle` is what a clean stop does so that the next start does not.
    let (_, r, crash_store_ready, crash_ready) = start(&dir);
    drop(r);
    if !generated {
        println!("(a kept data directory: the first open below is not after a crash)");
    }
    let mut ready = Vec::new();
    let mut store_ready = Vec::new();
    let (mut read_parts, mut load_parts, mut checks) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (store, r, s, t) = start(&dir);
        store_ready.push(s);
        ready.push(t);
        checks.push(store.open_checks_took().as_secs_f64());
        assert_eq!(r.projection().state.subjects.len(), n_subjects);
        drop(r);
        // The parts of that: reading the persisted projection, then opening and decoding it.
        let t = Instant::now();
        std::hint::black_box(store.read_projection().unwrap());
        read_parts.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(chronicle_records::persist::load(&store).unwrap());
        load_parts.push(t.elapsed().as_secs_f64());
    }
    println!(
        "{n_subjects} subjects, {n_cycles} cycles, {sealed} sealed ({:.1}%); median of {rounds} runs",
        100.0 * sealed as f64 / n_cycles as f64
    );
    println!("{:<40} {:>14}", "measure", "value");
    let each = |r: &[f64]| r.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    println!("  rebuild rounds (entries/s): {}; open with no projection: {}", each(&rates), each(&replay_rates));
    println!("{:<40} {:>14.0}", "rebuild from zero (entries/s)", common::median(rates.clone()));
    println!("{:<40} {:>14.0}", "  open with no persisted projection (entries/s)", common::median(replay_rates));
    println!("{:<40} {:>14.1}", "rap-sheet read p50 (µs)", common::percentile(&lat, 0.5));
    println!("{:<40} {:>14.1}", "rap-sheet read p99 (µs)", common::percentile(&lat, 0.99));
    println!("{:<40} {:>14.2}", "whole-cycle request p50 (ms)", common::percentile(&batches, 0.5));
    println!("{:<40} {:>14.2}", "whole-cycle request p99 (ms)", common::percentile(&batches, 0.99));
    println!("{:<40} {:>14.2}", "restart to ready after a crash (s)", crash_ready);
    println!("{:<40} {:>14.2}", "  of which opening the store (s)", crash_store_ready);
    println!("{:<40} {:>14.2}", "restart to ready after a clean stop (s)", common::median(ready));
    println!("{:<40} {:>14.2}", "  of which opening the store (s)", common::median(store_ready));
    println!("{:<40} {:>14.3}", "  checking derived state at open (s)", common::median(checks));
    println!("{:<40} {:>14.2}", "  reading the persisted projection (s)", common::median(read_parts));
    println!("{:<40} {:>14.2}", "  reading and loading it (s)", common::median(load_parts));
    let (worst, worst_store, mib, behind) = worst_crash_restart(&dir);
    println!("{:<40} {:>14.2}", "restart to ready after the worst crash (s)", worst);
    println!("{:<40} {:>14.2}", "  of which opening the store (s)", worst_store);
    println!("  (sled had {mib} MiB of log since its last open; the projection was {behind} entries behind)");
}
