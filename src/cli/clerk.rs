//! The clerk's actions against a running server: enroll a subject, record an arrest, file a court
//! case and charges, record and correct dispositions, enter orders, re-attribute a case. Each
//! signs one command with the caller's key and submits it over gRPC.

use std::process::ExitCode;

use anyhow::{Result, bail};
use chronicle_client::Client;
use chronicle_client::v1 as pb;
use chronicle_core::{StreamId, Timestamp};
use chronicle_records::model::{ChargeSpec, EXPUNGEMENT_ORDERED_TYPE, destruction_stream};
use chronicle_records::service::draft;
use chronicle_records::{Date, DispositionKind, Level, Name, RecordEvent, ReliefKind, Scope};

use super::client::{self, Conn};

const LEVELS: &str = "felony misdemeanor summary infraction";
const DISPOSITIONS: &str = "guilty_plea nolo_contendere convicted_at_trial nolle_prosequi declined dismissed acquitted \
                            acquitted_insanity adjudication_withheld deferred diversion probation_before_conviction ...";
const ORDERS: &str = "seal limited_access set_aside expunge pardon vacate";

fn date(s: &str) -> Result<Date> {
    Date::parse(s).ok_or_else(|| anyhow::anyhow!("date {s:?}: give YYYY-MM-DD"))
}

/// When an event takes legal effect: the date it carries (an arrest's, a disposition's), else now.
fn effective(ev: &RecordEvent) -> Timestamp {
    match ev {
        RecordEvent::ArrestRecorded { arrest_date: d, .. } | RecordEvent::DispositionRecorded { date: d, .. } => {
            Timestamp(d.to_micros())
        }
        _ => Timestamp::now(),
    }
}

/// Signs and submits one event; prints where it landed.
async fn submit(
    c: &mut Client,
    stream: StreamId,
    ev: &RecordEvent,
    court_order: Option<String>,
    json: bool,
    what: &str,
) -> Result<()> {
    let key = chronicle_core::random_array::<16>().to_vec();
    let r = c.sign_and_submit(draft(stream, ev, effective(ev), court_order, key)).await?;
    let a = r.entries.first().ok_or_else(|| anyhow::anyhow!("the server appended nothing"))?;
    if json {
        let out = serde_json::json!({
            "stream": stream.to_hex(),
            "position": a.position,
            "stream_version": a.stream_version,
            "hash": hex::encode(&a.hash),
            "recorded_time_micros": r.recorded_time_micros,
            "duplicate": r.duplicate,
        });
        println!("{out}");
    } else {
        println!("{what}: position {}, stream {} version {}", a.position, stream.to_hex(), a.stream_version);
    }
    Ok(())
}

/// Enroll a subject (a person) under a state identification number.
///
/// Example: chronicle enroll --creds clerk/ --sid PA-1001 --last Doe --first Jane --dob 1990-04-01
#[derive(clap::Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    conn: Conn,
    /// The state identification number.
    #[arg(long)]
    sid: String,
    /// Family name.
    #[arg(long)]
    last: String,
    /// Given name.
    #[arg(long)]
    first: String,
    /// Middle name or initial.
    #[arg(long)]
    middle: Option<String>,
    /// Date of birth, YYYY-MM-DD.
    #[arg(long)]
    dob: String,
    /// FBI number, if known.
    #[arg(long)]
    fbi: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn enroll(a: EnrollArgs) -> Result<ExitCode> {
    client::run(async move {
        let ev = RecordEvent::SubjectEnrolled {
            sid: a.sid.clone(),
            fbi: a.fbi,
            name: Name { last: a.last, first: a.first, middle: a.middle },
            dob: date(&a.dob)?,
        };
        let mut c = a.conn.connect().await?;
        submit(&mut c, StreamId::random(), &ev, None, a.json, &format!("enrolled {}", a.sid)).await
    })
}

fn parse_charge(s: &str) -> Result<ChargeSpec> {
    let parts: Vec<&str> = s.split('|').collect();
    let [seq, statute, literal, level] = parts[..] else {
        bail!("charge {s:?}: give SEQ|STATUTE|LITERAL|LEVEL, e.g. \"1|18 Pa.C.S. 3921|Theft|misdemeanor\"")
    };
    Ok(ChargeSpec {
        seq: seq.trim().parse().map_err(|_| anyhow::anyhow!("charge {s:?}: SEQ must be a number"))?,
        statute: statute.trim().into(),
        offense_code: "9999".into(),
        literal: literal.trim().into(),
        level: client::named::<Level>("level", level.trim(), LEVELS)?,
        counts: 1,
    })
}

/// Record an arrest (opens a new case) with its charges.
///
/// Example: chronicle arrest --creds pd/ --subject PA-1001 --otn OTN-77 --agency PA0230100 --date 2024-03-01
///   --charge "1|18 Pa.C.S. 3921|Theft by unlawful taking|misdemeanor"
#[derive(clap::Args)]
pub struct ArrestArgs {
    #[command(flatten)]
    conn: Conn,
    /// The subject: SID or subject id.
    #[arg(long)]
    subject: String,
    /// Offense tracking number.
    #[arg(long)]
    otn: String,
    /// Arresting agency ORI.
    #[arg(long)]
    agency: String,
    /// Date of arrest, YYYY-MM-DD.
    #[arg(long)]
    date: String,
    /// A charge as SEQ|STATUTE|LITERAL|LEVEL (repeat for more).
    #[arg(long = "charge", required = true)]
    charges: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn arrest(a: ArrestArgs) -> Result<ExitCode> {
    client::run(async move {
        let charges = a.charges.iter().map(|c| parse_charge(c)).collect::<Result<Vec<_>>>()?;
        let mut c = a.conn.connect().await?;
        let subject = client::subject(&mut c, &a.subject, pb::Purpose::C).await?;
        let ev = RecordEvent::ArrestRecorded {
            subject: subject.to_hex(),
            tracking_number: a.otn,
            agency_ori: a.agency,
            arrest_date: date(&a.date)?,
            charges,
        };
        submit(&mut c, StreamId::random(), &ev, None, a.json, "arrest recorded, new case").await
    })
}

/// File a case in court: gives the case its docket number.
///
/// Example: chronicle court-case --creds court/ --case 5f0c...e1 --court PA023015J --docket CP-23-CR-0001234-2024
#[derive(clap::Args)]
pub struct CourtCaseArgs {
    #[command(flatten)]
    conn: Conn,
    /// The case's id (as `arrest` printed it).
    #[arg(long)]
    case: String,
    /// The court's ORI.
    #[arg(long)]
    court: String,
    /// The docket number.
    #[arg(long)]
    docket: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn court_case(a: CourtCaseArgs) -> Result<ExitCode> {
    client::run(async move {
        let Some(cycle) = StreamId::from_hex(&a.case) else { bail!("--case: give the case id (32 hex digits)") };
        let mut c = a.conn.connect().await?;
        let ev = RecordEvent::CourtCaseFiled { court_ori: a.court, docket: a.docket.clone() };
        submit(&mut c, cycle, &ev, None, a.json, &format!("case filed as {}", a.docket)).await
    })
}

/// File a charge in a case.
///
/// Example: chronicle charge --creds clerk/ --case CP-23-CR-0001234-2024 --seq 2 --statute "18 Pa.C.S. 3925"
///   --literal "Receiving stolen property" --level misdemeanor
#[derive(clap::Args)]
pub struct ChargeArgs {
    #[command(flatten)]
    conn: Conn,
    /// The case: docket number or case id.
    #[arg(long)]
    case: String,
    /// The charge's sequence number in the case.
    #[arg(long)]
    seq: u32,
    /// Statute citation.
    #[arg(long)]
    statute: String,
    /// Literal description.
    #[arg(long)]
    literal: String,
    /// felony, misdemeanor, summary or infraction.
    #[arg(long)]
    level: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn charge(a: ChargeArgs) -> Result<ExitCode> {
    client::run(async move {
        let level = client::named::<Level>("level", &a.level, LEVELS)?;
        let mut c = a.conn.connect().await?;
        let cycle = client::case(&mut c, &a.case, pb::Purpose::C).await?;
        let charge = ChargeSpec {
            seq: a.seq,
            statute: a.statute,
            offense_code: "9999".into(),
            literal: a.literal,
            level,
            counts: 1,
        };
        submit(&mut c, cycle, &RecordEvent::ChargeFiled { charge }, None, a.json, &format!("charge {} filed", a.seq))
            .await
    })
}

/// Record the court's disposition of a charge.
///
/// Example: chronicle disposition --creds court/ --case CP-23-CR-0001234-2024 --seq 1 --disposition guilty_plea --date 2024-06-01
#[derive(clap::Args)]
pub struct DispositionArgs {
    #[command(flatten)]
    d: DispositionOf,
}

/// A disposition of one charge of a case.
#[derive(clap::Args)]
struct DispositionOf {
    #[command(flatten)]
    conn: Conn,
    /// The case: docket number or case id.
    #[arg(long)]
    case: String,
    /// The charge's sequence number.
    #[arg(long)]
    seq: u32,
    /// The disposition, e.g. guilty_plea, dismissed, acquitted.
    #[arg(long)]
    disposition: String,
    /// Its date, YYYY-MM-DD.
    #[arg(long)]
    date: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl DispositionOf {
    /// Builds the event from the disposition and date, and submits it to the case.
    async fn submit(self, event: impl FnOnce(DispositionKind, Date) -> RecordEvent, what: &str) -> Result<()> {
        let disposition = client::named::<DispositionKind>("disposition", &self.disposition, DISPOSITIONS)?;
        let ev = event(disposition, date(&self.date)?);
        let mut c = self.conn.connect().await?;
        let cycle = client::case(&mut c, &self.case, pb::Purpose::C).await?;
        submit(&mut c, cycle, &ev, None, self.json, &format!("disposition of charge {} {what}", self.seq)).await
    }
}

pub fn disposition(a: DispositionArgs) -> Result<ExitCode> {
    let seq = a.d.seq;
    client::run(
        a.d.submit(move |disposition, date| RecordEvent::DispositionRecorded { seq, disposition, date }, "recorded"),
    )
}

/// Correct a disposition recorded wrongly (the wrong one stays in the history).
///
/// Example: chronicle correct --creds court/ --case CP-23-CR-0001234-2024 --seq 1 --disposition dismissed
///   --date 2024-06-01 --reason "clerical error in the transmitted disposition"
#[derive(clap::Args)]
pub struct CorrectArgs {
    /// The correct disposition.
    #[command(flatten)]
    d: DispositionOf,
    /// Why.
    #[arg(long)]
    reason: String,
}

pub fn correct(a: CorrectArgs) -> Result<ExitCode> {
    let (seq, reason) = (a.d.seq, a.reason);
    let event = move |disposition, date| RecordEvent::DispositionCorrected { seq, disposition, date, reason };
    client::run(a.d.submit(event, "corrected"))
}

/// Enter a court order on a case: seal, limited access, set aside, pardon, vacate, or expunge.
/// Expunging destroys: for the whole case its keys are destroyed; for some charges the server
/// moves what survives to a fresh key and destroys the old one. Either way the expunged content
/// can never be read again, and the server has done it before it answers.
///
/// Example: chronicle order --creds court/ --case CP-23-CR-0001234-2024 --kind seal --order-id ORD-2025-17
///   --statute "18 Pa.C.S. 9122.1" --audience court --audience law_enforcement
#[derive(clap::Args)]
pub struct OrderArgs {
    #[command(flatten)]
    conn: Conn,
    /// The case: docket number or case id.
    #[arg(long)]
    case: String,
    /// seal, limited_access, set_aside, expunge, pardon or vacate.
    #[arg(long)]
    kind: String,
    /// The order's number.
    #[arg(long)]
    order_id: String,
    /// The statute it is entered under.
    #[arg(long)]
    statute: String,
    /// Only these charges (default: the whole case).
    #[arg(long = "charge")]
    charges: Vec<u32>,
    /// Roles that may still see what the order restricts (repeat for more).
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn order(a: OrderArgs) -> Result<ExitCode> {
    client::run(async move {
        let kind = client::named::<ReliefKind>("order kind", &a.kind, ORDERS)?;
        let audiences = a
            .audiences
            .iter()
            .map(|r| client::named("role", r, "court law_enforcement prosecutor records_clerk ..."))
            .collect::<Result<Vec<_>>>()?;
        let mut c = a.conn.connect().await?;
        let cycle = client::case(&mut c, &a.case, pb::Purpose::C).await?;
        if kind == ReliefKind::Expunge && a.charges.is_empty() {
            // The whole case: an expungement order in the destruction log, carried out by the
            // server (its keys destroyed) before it answers.
            let ev = RecordEvent::ExpungementOrdered {
                order_id: a.order_id.clone(),
                statute: a.statute,
                target: cycle.to_hex(),
                target_kind: "cycle".into(),
                streams: vec![cycle.to_hex()],
            };
            debug_assert_eq!(ev.event_type().as_str(), EXPUNGEMENT_ORDERED_TYPE);
            let what = format!("case expunged by order {} (its content is destroyed)", a.order_id);
            return submit(&mut c, destruction_stream(), &ev, Some(a.order_id), a.json, &what).await;
        }
        let scope = if a.charges.is_empty() { Scope::WholeCycle } else { Scope::Charges(a.charges) };
        let ev =
            RecordEvent::ReliefOrdered { order_id: a.order_id.clone(), kind, scope, statute: a.statute, audiences };
        let what = format!("order {} ({}) entered", a.order_id, a.kind);
        submit(&mut c, cycle, &ev, Some(a.order_id), a.json, &what).await
    })
}

/// Move a case attributed to the wrong person to the right one.
///
/// Example: chronicle reattribute --creds clerk/ --case CP-23-CR-0001234-2024 --to PA-1002
///   --reason "fingerprints matched PA-1002" --evidence "AFIS 2025-000123"
#[derive(clap::Args)]
pub struct ReattributeArgs {
    #[command(flatten)]
    conn: Conn,
    /// The case: docket number.
    #[arg(long)]
    case: String,
    /// The right subject: SID or subject id.
    #[arg(long)]
    to: String,
    /// Why.
    #[arg(long)]
    reason: String,
    /// The evidence for it (a fingerprint comparison, a court finding).
    #[arg(long)]
    evidence: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn reattribute(a: ReattributeArgs) -> Result<ExitCode> {
    client::run(async move {
        let mut c = a.conn.connect().await?;
        let (cycle, from) = client::case_and_subject(&mut c, &a.case, pb::Purpose::C).await?;
        let to = client::subject(&mut c, &a.to, pb::Purpose::C).await?;
        let ev = RecordEvent::CycleReassigned {
            from_subject: from.to_hex(),
            to_subject: to.to_hex(),
            reason: a.reason,
            evidence: a.evidence,
        };
        submit(&mut c, cycle, &ev, None, a.json, &format!("case moved to {}", a.to)).await
    })
}
