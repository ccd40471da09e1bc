//! `chronicle demo`: plays a records bureau's story on a fresh ledger and says what each party saw.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chronicle::datadir::DataDir;
use chronicle_core::{Command, PrincipalId, RegistryEvent, Role, Signer, StreamId, Timestamp};
use chronicle_records::model::{ChargeSpec, SentenceKind};
use chronicle_records::{
    Date, DispositionKind, HistoryQuery, Level, Name, Purpose, RecordEvent, Records, ReliefKind, Scope, Target,
};
use chronicle_store::evidence::{build_bundle, verify_bundle};
use chronicle_store::{AppendRequest, ExpectedVersion, verify_log};

/// Play a short records story on a new ledger: enrollments, an arrest, charges and dispositions
/// from a court, a sentence, a sealing order, background checks by an employer and by law
/// enforcement, a corrected disposition, a case moved from the wrong person to the right one, and
/// an expungement order; then verify the ledger and check an evidence bundle offline.
///
/// Example: chronicle demo --data-dir /tmp/chronicle-demo
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the ledger here (default: a temporary directory, removed afterwards).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn d(s: &str) -> Date {
    // The demo's dates are literals.
    Date::parse(s).expect("demo dates are valid")
}

fn charge(seq: u32, statute: &str, literal: &str, level: Level) -> ChargeSpec {
    ChargeSpec { seq, statute: statute.into(), offense_code: "2399".into(), literal: literal.into(), level, counts: 1 }
}

fn say_view(who: &str, v: &chronicle_records::RecordView) {
    let shown: Vec<String> = v
        .cycles
        .iter()
        .flat_map(|c| {
            c.charges.iter().map(|ch| {
                format!(
                    "{} ({}, {})",
                    ch.literal.as_deref().unwrap_or("[no content]"),
                    ch.disposition.map_or("open".into(), |d| format!("{d:?}")),
                    ch.status
                )
            })
        })
        .collect();
    println!(
        "   {who} sees {} charge(s): {}",
        shown.len(),
        if shown.is_empty() { "none".into() } else { shown.join("; ") }
    );
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
    let store = init.store.clone();
    let mut people = Vec::new();
    let mut regs = Vec::new();
    for (id, role) in [
        ("clerk.rivera", Role::RecordsClerk),
        ("court.district-4", Role::Court),
        ("pd.metro", Role::LawEnforcement),
        ("acme.hr", Role::Employer),
    ] {
        let s = Signer::generate(PrincipalId::new(id)?);
        regs.push(Command::sign(
            &init.admin,
            RegistryEvent::register(s.principal().clone(), role, &s.verifying_key()).draft(),
        )?);
        people.push(s);
    }
    store.append(AppendRequest { stream: StreamId::REGISTRY, expected: ExpectedVersion::Any, commands: regs })?;
    let [clerk, court, police, employer] =
        <[Signer; 4]>::try_from(people).map_err(|_| anyhow::anyhow!("four principals"))?;
    println!(
        "   the admin registered a records clerk, a court, a police department and an employer; every entry from here on is signed by one of them"
    );
    let records = Records::open(store.clone())?;
    records.set_ledger(dir.ledger()?)?;
    let now = Timestamp::now();
    let rec = |who: &Signer, stream, ev: RecordEvent| records.record(who, stream, &ev, now, None);

    let jane = StreamId::random();
    rec(
        &clerk,
        jane,
        RecordEvent::SubjectEnrolled {
            sid: "SID-100".into(),
            fbi: Some("FBI-100".into()),
            name: Name { last: "DOE".into(), first: "JANE".into(), middle: None },
            dob: d("1990-04-01"),
        },
    )?;
    let john = StreamId::random();
    rec(
        &clerk,
        john,
        RecordEvent::SubjectEnrolled {
            sid: "SID-200".into(),
            fbi: None,
            name: Name { last: "ROE".into(), first: "JOHN".into(), middle: None },
            dob: d("1988-01-15"),
        },
    )?;
    println!(
        "2. The clerk enrolled two people, Jane Doe (SID-100) and John Roe (SID-200); each record has its own random id and its own data key"
    );

    let case = StreamId::random();
    rec(
        &police,
        case,
        RecordEvent::ArrestRecorded {
            subject: jane.to_hex(),
            tracking_number: "OTN-2024-0001".into(),
            agency_ori: "ZZ0070000".into(),
            arrest_date: d("2024-03-01"),
            charges: vec![
                charge(1, "13-1802", "THEFT", Level::Misdemeanor),
                charge(2, "13-1502", "CRIMINAL TRESPASS", Level::Misdemeanor),
            ],
        },
    )?;
    rec(&court, case, RecordEvent::CourtCaseFiled { court_ori: "ZZ007015J".into(), docket: "CR-2024-001".into() })?;
    println!("3. Police arrested Jane on two charges (theft, criminal trespass); the court filed case CR-2024-001");
    rec(
        &court,
        case,
        RecordEvent::DispositionRecorded { seq: 2, disposition: DispositionKind::Dismissed, date: d("2024-05-01") },
    )?;
    rec(
        &court,
        case,
        RecordEvent::DispositionRecorded { seq: 1, disposition: DispositionKind::GuiltyPlea, date: d("2024-05-01") },
    )?;
    rec(
        &court,
        case,
        RecordEvent::SentenceImposed {
            seq: 1,
            kind: SentenceKind::Probation,
            term_days: Some(365),
            amount_cents: None,
            date: d("2024-05-01"),
        },
    )?;
    println!(
        "4. The court dismissed the trespass charge, took a guilty plea on the theft charge and imposed a year's probation"
    );
    records.record(
        &court,
        case,
        &RecordEvent::ReliefOrdered {
            order_id: "SEAL-2024-17".into(),
            kind: ReliefKind::Seal,
            scope: Scope::Charges(vec![2]),
            statute: "18 Pa.C.S. 9122.2".into(),
            audiences: vec![],
        },
        now,
        Some("SEAL-2024-17".into()),
    )?;
    println!("5. The court sealed the dismissed charge (order SEAL-2024-17)");

    println!("6. Background checks:");
    let emp = records.background_check(
        &init.ledger,
        employer.principal(),
        Purpose::E,
        jane,
        Some("applicant consent #77".into()),
        None,
    )?;
    say_view("the employer (purpose E)", &emp.view);
    let le = records.background_check(&init.ledger, police.principal(), Purpose::C, jane, None, None)?;
    say_view("law enforcement (purpose C)", &le.view);
    println!("   both releases were logged with a hash of exactly the bytes returned ({}…)", &emp.content_hash[..16]);
    match records.background_check(&init.ledger, employer.principal(), Purpose::C, jane, None, None) {
        Err(e) => {
            println!("   the employer asking for a criminal-justice purpose was refused and the refusal logged: {e}")
        }
        Ok(_) => bail!("an employer was given a criminal-justice view"),
    }

    rec(
        &court,
        case,
        RecordEvent::DispositionCorrected {
            seq: 1,
            disposition: DispositionKind::NoloContendere,
            date: d("2024-05-01"),
            reason: "plea was entered as nolo contendere; clerical error".into(),
        },
    )?;
    println!(
        "7. The court corrected the theft disposition to nolo contendere, with the reason; the first disposition stays in the history"
    );

    let wrong = StreamId::random();
    rec(
        &police,
        wrong,
        RecordEvent::ArrestRecorded {
            subject: john.to_hex(),
            tracking_number: "OTN-2024-0002".into(),
            agency_ori: "ZZ0070000".into(),
            arrest_date: d("2024-06-10"),
            charges: vec![charge(1, "13-3405", "POSSESSION OF MARIJUANA", Level::Misdemeanor)],
        },
    )?;
    say_view("before the move, John Roe's record, to a court,", &records.view(john, Role::Court, Purpose::C, None)?);
    rec(
        &clerk,
        wrong,
        RecordEvent::CycleReassigned {
            from_subject: john.to_hex(),
            to_subject: jane.to_hex(),
            reason: "fingerprints match SID-100, not SID-200".into(),
            evidence: "AFIS response 2024-07-01-0042".into(),
        },
    )?;
    println!(
        "8. A June arrest was recorded against John by mistake; the clerk moved it to Jane, with the reason and the evidence"
    );
    say_view("after the move, John Roe's record, to a court,", &records.view(john, Role::Court, Purpose::C, None)?);
    let clerk_caller = records.caller(clerk.principal())?;
    let history = |stream| HistoryQuery {
        target: Target::Stream(stream),
        purpose: Purpose::A,
        from: 0,
        limit: 0,
        up_to: None,
        as_recorded: None,
    };
    let moved = records
        .history_page(&init.ledger, &clerk_caller, history(wrong))?
        .items
        .into_iter()
        .find(|h| h.event_type == "records.cycle_reassigned")
        .context("the move is in the history")?;
    println!(
        "   the case's history shows the move at position {} by {} ({:?})",
        moved.position,
        moved.author,
        moved.role.map(|r| r.as_str())
    );

    let (_, destroyed) = records.expunge(&court, wrong, "cycle", "EXP-2024-3", "PC 851.93", now)?;
    println!(
        "9. The court ordered the June arrest expunged (EXP-2024-3): {destroyed} data key(s) destroyed, so its entries can never be read again"
    );
    say_view("a court", &records.view(jane, Role::Court, Purpose::C, None)?);
    let t = records.tombstone(&wrong).context("the order is on record")?;
    println!("   what remains of it: order {} under {}, entered by {}", t.order_id, t.statute, t.author);
    match records.history_page(&init.ledger, &clerk_caller, history(wrong)) {
        Err(e) => println!("   history of the expunged case: {e}"),
        Ok(_) => bail!("the history of an expunged case was shown"),
    }

    let again = records.reproduce_for(
        &init.ledger,
        &clerk_caller,
        emp.dissemination.context("the employer's check was logged")?,
    )?;
    let same = again.matches();
    println!(
        "10. Replaying the log to the employer's check reproduces its {} bytes: {}",
        again.bytes.len(),
        if same { "same hash" } else { "DIFFERENT" }
    );
    if !same {
        bail!("a past background check did not reproduce");
    }

    let (_, size, note) = store.checkpoint_with_heads(&dir.ledger()?, &dir.note_signer()?, &dir.info()?.origin)?;
    let log_key = dir.log_key()?;
    let bundle = build_bundle(&store, &case, &note, size, &log_key, true)?;
    let proven = verify_bundle(&serde_json::from_slice(&serde_json::to_vec(&bundle)?)?, &log_key)?;
    println!("11. An evidence bundle for case CR-2024-001, checked offline with only the log key:");
    println!("   {}", proven.describe());
    drop(records);
    drop(init);
    drop(store);

    let report = verify_log(&dir.log_dir(), |_, _| {})?;
    match &report.fault {
        None => println!(
            "12. verify: ok, {} entries, {} streams, {} principals, {} signatures checked ({} entries' keys destroyed, their signatures still verify), {} checkpoint(s)",
            report.entries_verified,
            report.streams,
            report.principals,
            report.signatures_verified,
            report.keys_destroyed,
            report.checkpoints
        ),
        Some(f) => {
            println!("12. verify FAILED at position {}: {}", f.position, f.fault);
            return Ok(ExitCode::from(super::EXIT_FAULT));
        }
    }
    Ok(ExitCode::SUCCESS)
}
