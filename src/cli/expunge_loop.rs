//! `chronicle expunge-loop` (hidden): records cases and expunges them in a loop.
//!
//! Used by the crash tests: the test kills this process at random moments, including while an
//! expungement is being carried out, and checks after each restart that every order is either
//! wholly carried out or not recorded at all.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chronicle::datadir::DataDir;
use chronicle_core::{Command, PrincipalId, RegistryEvent, Role, Signer, StreamId, Timestamp};
use chronicle_records::model::ChargeSpec;
use chronicle_records::{Date, DispositionKind, Level, Name, RecordEvent, Records, ReliefKind, Scope};
use chronicle_store::{AppendRequest, ExpectedVersion};

/// Record cases and expunge them in a loop, noting each target before and after its order.
#[derive(clap::Args)]
pub struct ExpungeLoopArgs {
    /// The data directory (created by `init`).
    #[arg(long)]
    data_dir: PathBuf,
    /// File to which "pending <kind> <target>" and "done <target>" lines are appended.
    #[arg(long)]
    log: PathBuf,
    /// Stop after this many rounds (default: never).
    #[arg(long)]
    count: Option<u64>,
}

pub fn run(a: ExpungeLoopArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir, None);
    let store = dir.open()?;
    let clerk =
        Signer::generate(PrincipalId::new(format!("clerk-{}", hex::encode(chronicle_core::random_array::<4>())))?);
    let reg = Command::sign(
        &dir.admin()?,
        RegistryEvent::register(clerk.principal().clone(), Role::RecordsClerk, &clerk.verifying_key()).draft(),
    )?;
    store.append(AppendRequest { stream: StreamId::REGISTRY, expected: ExpectedVersion::Any, commands: vec![reg] })?;
    let records = Records::open(store)?;
    records.set_ledger(dir.ledger()?)?;
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&a.log)?;
    let d = |s: &str| Date::parse(s).ok_or_else(|| anyhow::anyhow!("bad date"));
    for i in 0..a.count.unwrap_or(u64::MAX) {
        let now = Timestamp::now();
        let subject = StreamId::random();
        records.record(
            &clerk,
            subject,
            &RecordEvent::SubjectEnrolled {
                sid: format!("SID-{}-{i}", clerk.principal()),
                fbi: None,
                name: Name { last: "CRASH".into(), first: format!("N{i}"), middle: None },
                dob: d("1985-05-05")?,
            },
            now,
            None,
        )?;
        let cycle = StreamId::random();
        let charge = ChargeSpec {
            seq: 1,
            statute: "13-1802".into(),
            offense_code: "2399".into(),
            literal: "THEFT".into(),
            level: Level::Misdemeanor,
            counts: 1,
        };
        let doomed = ChargeSpec { seq: 2, literal: "DOOMED".into(), ..charge.clone() };
        records.record(
            &clerk,
            cycle,
            &RecordEvent::ArrestRecorded {
                subject: subject.to_hex(),
                tracking_number: format!("OTN-{i}"),
                agency_ori: "ZZ".into(),
                arrest_date: d("2024-01-01")?,
                charges: vec![charge, doomed],
            },
            now,
            None,
        )?;
        records.record(
            &clerk,
            cycle,
            &RecordEvent::DispositionRecorded {
                seq: 1,
                disposition: DispositionKind::Dismissed,
                date: d("2024-02-01")?,
            },
            now,
            None,
        )?;
        if i % 3 == 2 {
            // Charge 2 only: the case is re-keyed and restated, charge 1 survives.
            writeln!(log, "pending charges {}", cycle.to_hex())?;
            let order = RecordEvent::ReliefOrdered {
                order_id: format!("EXP-{i}"),
                kind: ReliefKind::Expunge,
                scope: Scope::Charges(vec![2]),
                statute: "PC 1203.4".into(),
                audiences: vec![],
            };
            records.record(&clerk, cycle, &order, now, None)?;
            writeln!(log, "done {}", cycle.to_hex())?;
            continue;
        }
        let (kind, target) = if i % 3 == 0 { ("cycle", cycle) } else { ("subject", subject) };
        writeln!(log, "pending {kind} {}", target.to_hex())?;
        records.expunge(&clerk, target, kind, &format!("EXP-{i}"), "PC 851.93", now)?;
        writeln!(log, "done {}", target.to_hex())?;
    }
    Ok(ExitCode::SUCCESS)
}
