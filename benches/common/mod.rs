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
