//! `chronicle demo`: writes a small sample ledger, verifies it, and says what happened.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use chronicle::datadir::DataDir;
use chronicle_core::{
    Command, Draft, EventType, PayloadKind, PrincipalId, References, RegistryEvent, Role, Signer, StreamId, Timestamp,
};
use chronicle_store::{AppendRequest, ExpectedVersion, Store, verify_log};

/// Write a small sample ledger into a data directory, verify it and describe each step.
///
/// Example: chronicle demo --data-dir /tmp/chronicle-demo
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the ledger here (default: a temporary directory, removed afterwards).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn record(signer: &Signer, stream: StreamId, event_type: &str, key: &str, body: serde_json::Value) -> Result<Command> {
    Ok(Command::sign(
        signer,
        Draft {
            stream,
            event_type: EventType::new(event_type)?,
            effective_time: Timestamp::now(),
            refs: References { idempotency_key: key.as_bytes().to_vec(), ..Default::default() },
            payload_kind: PayloadKind::Sealed,
            payload: serde_json::to_vec(&body)?,
        },
    )?)
}

fn append(
    store: &Store,
    stream: StreamId,
    expected: ExpectedVersion,
    commands: Vec<Command>,
) -> Result<chronicle_store::AppendReceipt> {
    Ok(store.append(AppendRequest { stream, expected, commands })?)
}

pub fn run(a: DemoArgs) -> Result<ExitCode> {
    let tmp;
    let root = match a.data_dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("ledger")
        }
    };
    let dir = DataDir::new(&root, None);
    println!("1. A new ledger in {}", root.display());
    let init = dir.init("demo.chronicle.localhost/ledger")?;
    let store = init.store;
    println!("   the ledger registered itself and the first admin (2 signed registry entries)");

    let clerk = Signer::generate(PrincipalId::new("clerk.rivera")?);
    let court = Signer::generate(PrincipalId::new("court.district-4")?);
    let regs = vec![
        Command::sign(
            &init.admin,
            RegistryEvent::register(clerk.principal().clone(), Role::RecordsClerk, &clerk.verifying_key()).draft(),
        )?,
        Command::sign(
            &init.admin,
            RegistryEvent::register(court.principal().clone(), Role::Court, &court.verifying_key()).draft(),
        )?,
    ];
    append(&store, StreamId::REGISTRY, ExpectedVersion::Any, regs)?;
    println!("2. The admin registered a records clerk ({}) and a court ({})", clerk.principal(), court.principal());

    let subject = StreamId::random();
    let case_a = StreamId::random();
    let case_b = StreamId::random();
    let r = append(
        &store,
        subject,
        ExpectedVersion::NoStream,
        vec![record(
            &clerk,
            subject,
            "records.subject_enrolled",
            "enroll-1",
            serde_json::json!({"name": "DOE, JANE", "dob": "1990-04-01", "sid": "SID-100"}),
        )?],
    )?;
    println!(
        "3. The clerk enrolled a subject: position {}, payload sealed under the subject's own data key",
        r.entries[0].position
    );
    let r = append(
        &store,
        case_a,
        ExpectedVersion::NoStream,
        vec![
            record(
                &clerk,
                case_a,
                "records.arrest_recorded",
                "arrest-1",
                serde_json::json!({"tracking": "OTN-1", "agency": "PD-1"}),
            )?,
            record(
                &clerk,
                case_a,
                "records.charge_filed",
                "charge-1",
                serde_json::json!({"seq": 1, "statute": "13-1802", "level": "misdemeanor"}),
            )?,
        ],
    )?;
    println!(
        "4. The clerk recorded an arrest and a charge in one atomic batch: positions {} and {}",
        r.entries[0].position, r.entries[1].position
    );
    append(
        &store,
        case_b,
        ExpectedVersion::NoStream,
        vec![record(&clerk, case_b, "records.arrest_recorded", "arrest-2", serde_json::json!({"tracking": "OTN-2"}))?],
    )?;
    let dispo = record(
        &court,
        case_a,
        "records.disposition_recorded",
        "dispo-1",
        serde_json::json!({"seq": 1, "disposition": "dismissed"}),
    )?;
    let r = append(&store, case_a, ExpectedVersion::Exact(1), vec![dispo.clone()])?;
    println!(
        "5. The court recorded a disposition, expecting the case at version 1 (arrest, charge): it became version {}",
        r.entries[0].stream_version
    );
    let again = append(&store, case_a, ExpectedVersion::Exact(1), vec![dispo])?;
    if !again.duplicate || again.entries != r.entries {
        bail!("a retried submission was appended twice");
    }
    println!(
        "   the court's system retried the same submission: same position {}, nothing appended twice",
        again.entries[0].position
    );
    let stale = append(
        &store,
        case_a,
        ExpectedVersion::Exact(1),
        vec![record(&court, case_a, "records.disposition_recorded", "dispo-2", serde_json::json!({"seq": 1}))?],
    );
    match stale {
        Err(e) => println!("6. A different submission still expecting version 1 was refused: {e}"),
        Ok(_) => bail!("a stale expected version was accepted"),
    }

    let new_key = Signer::generate(clerk.principal().clone());
    append(
        &store,
        StreamId::REGISTRY,
        ExpectedVersion::Any,
        vec![Command::sign(
            &clerk,
            RegistryEvent::rotate(clerk.principal().clone(), &new_key.verifying_key(), clerk.key_id()).draft(),
        )?],
    )?;
    println!("7. The clerk rotated their key ({} replaced by {})", clerk.key_id(), new_key.key_id());
    match append(
        &store,
        case_b,
        ExpectedVersion::Any,
        vec![record(&clerk, case_b, "records.charge_filed", "charge-2", serde_json::json!({"seq": 1}))?],
    ) {
        Err(e) => println!("   an entry signed with the retired key was refused: {e}"),
        Ok(_) => bail!("a retired key was accepted"),
    }
    let r = append(
        &store,
        case_b,
        ExpectedVersion::Any,
        vec![record(
            &new_key,
            case_b,
            "records.charge_filed",
            "charge-2",
            serde_json::json!({"seq": 1, "statute": "13-1502"}),
        )?],
    )?;
    println!("   the same entry signed with the new key was appended at position {}", r.entries[0].position);

    let first = store.read_stream(&case_a, 0, 10)?;
    let payload = store.open_payload(&first[0])?;
    println!(
        "8. Reading the case back: {} entries; the first decrypts to {}",
        first.len(),
        String::from_utf8_lossy(&payload)
    );
    let head = store.head();
    drop(store);

    let report = verify_log(&dir.log_dir(), |_, _| {})?;
    match &report.fault {
        None => println!(
            "9. verify: ok, {} entries, {} streams, {} principals, {} signatures checked, head {}",
            report.entries_verified, report.streams, report.principals, report.signatures_verified, head.last_hash
        ),
        Some(f) => {
            println!("9. verify FAILED at position {}: {}", f.position, f.fault);
            return Ok(ExitCode::from(super::EXIT_FAULT));
        }
    }
    Ok(ExitCode::SUCCESS)
}
