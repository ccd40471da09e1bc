//! Shared by the benchmarks: a fresh ledger, pre-signed commands, percentiles.
#![allow(dead_code)]

use chronicle::datadir::DataDir;
use chronicle_core::{
    Command, Draft, EventType, PayloadKind, PrincipalId, References, RegistryEvent, Role, Signer, StreamId, Timestamp,
};
use chronicle_store::{AppendRequest, ExpectedVersion, Store};

pub fn ledger(tmp: &std::path::Path) -> (DataDir, Store, Signer) {
    let dir = DataDir::new(tmp.join("data"), None);
    let init = dir.init("bench.chronicle.localhost/ledger").expect("init");
    let clerk = Signer::generate(PrincipalId::new("clerk").unwrap());
    let cmd = Command::sign(
        &init.admin,
        RegistryEvent::register(clerk.principal().clone(), Role::RecordsClerk, &clerk.verifying_key()).draft(),
    )
    .unwrap();
    init.store
        .append(AppendRequest { stream: StreamId::REGISTRY, expected: ExpectedVersion::Any, commands: vec![cmd] })
        .unwrap();
    (dir, init.store, clerk)
}

/// A realistic record command (~200 bytes of JSON).
pub fn command(signer: &Signer, stream: StreamId, key: &str) -> Command {
    let body = format!(
        r#"{{"seq":1,"statute":"13-1802","offense_code":"2399","literal":"THEFT OF PROPERTY","level":"misdemeanor","counts":1,"agency":"AZ0070000","tracking":"{key}"}}"#
    );
    Command::sign(
        signer,
        Draft {
            stream,
            event_type: EventType::new("records.charge_filed").unwrap(),
            effective_time: Timestamp::now(),
            refs: References { idempotency_key: key.as_bytes().to_vec(), ..Default::default() },
            payload_kind: PayloadKind::Sealed,
            payload: body.into_bytes(),
        },
    )
    .unwrap()
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(&v, 0.5)
}

pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time (user + system, seconds) used so far by each live thread of this process, by thread
/// name, from `/proc/self/task` (Linux). Threads that share a name are summed.
#[allow(dead_code)]
pub fn cpu_by_thread() -> std::collections::BTreeMap<(String, u64), f64> {
    // The kernel reports these in clock ticks, which are 1/100 s on Linux.
    const TICKS: f64 = 100.0;
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for t in tasks.flatten() {
        let tid: u64 = t.file_name().to_string_lossy().parse().unwrap_or(0);
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string();
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        out.insert((name, tid), (ticks(14) + ticks(15)) / TICKS);
    }
    out
}

/// CPU seconds used between two `cpu_by_thread` readings, summed by thread name.
#[allow(dead_code)]
pub fn cpu_between(
    before: &std::collections::BTreeMap<(String, u64), f64>,
    after: &std::collections::BTreeMap<(String, u64), f64>,
) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for ((name, tid), t) in after {
        let start = before.get(&(name.clone(), *tid)).copied().unwrap_or(0.0);
        *out.entry(name.clone()).or_insert(0.0) += t - start;
    }
    out
}
