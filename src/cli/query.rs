//! Reading over gRPC: a subject's record, a case, a history, a background check. Every read
//! states a purpose; reads by callers outside the bureau are logged by the server as
//! disseminations, and refused ones as denials.

use std::process::ExitCode;

use anyhow::{Result, bail};
use chronicle_client::v1 as pb;
use chronicle_core::StreamId;
use serde_json::{Value, json};

use super::client::{self, Conn};

fn print_view(r: &pb::RecordResponse, json: bool) -> Result<()> {
    let view: Value = serde_json::from_slice(&r.view_json)?;
    if json {
        let out = json!({
            "view": view,
            "content_hash": r.content_hash,
            "dissemination_position": (r.dissemination_position > 0).then_some(r.dissemination_position),
        });
        println!("{out}");
    } else {
        print!("{}", client::render_view(&view));
        println!("content hash {}", r.content_hash);
        if r.dissemination_position > 0 {
            println!("this release was logged at position {}", r.dissemination_position);
        }
    }
    Ok(())
}

/// A subject's record, as the caller may see it for the stated purpose.
///
/// Example: chronicle record PA-1001 --creds pd/ --purpose C
#[derive(clap::Args)]
pub struct RecordArgs {
    #[command(flatten)]
    conn: Conn,
    /// The subject: SID or subject id.
    subject: String,
    /// The purpose code: C J E F H I S V X A.
    #[arg(long)]
    purpose: String,
    /// The legal authority or consent reference.
    #[arg(long)]
    authority: Option<String>,
    /// The record as it stood at this effective time (YYYY-MM-DD, ...THH:MM:SSZ, or µs).
    #[arg(long)]
    as_effective: Option<String>,
    /// The record as the ledger showed it at this recorded time.
    #[arg(long)]
    as_of: Option<String>,
    /// Print the view as JSON.
    #[arg(long)]
    json: bool,
}

fn record_request(subject: &str, purpose: pb::Purpose, authority: Option<String>) -> pb::RecordRequest {
    let mut req =
        pb::RecordRequest { purpose: purpose as i32, authority: authority.unwrap_or_default(), ..Default::default() };
    match StreamId::from_hex(subject) {
        Some(id) => req.subject_id = id.0.to_vec(),
        None => req.sid = subject.into(),
    }
    req
}

pub fn record(a: RecordArgs) -> Result<ExitCode> {
    client::run(async move {
        let mut req = record_request(&a.subject, client::purpose(&a.purpose)?, a.authority);
        req.as_effective_micros = a.as_effective.as_deref().map(client::time).transpose()?.unwrap_or(0);
        req.as_recorded_micros = a.as_of.as_deref().map(client::time).transpose()?.unwrap_or(0);
        let mut c = a.conn.connect().await?;
        let r = c.record(req).await?;
        print_view(&r, a.json)
    })
}

/// A case by docket number, as the caller may see it for the stated purpose.
///
/// Example: chronicle case CP-23-CR-0001234-2024 --creds court/ --purpose C
#[derive(clap::Args)]
pub struct CaseArgs {
    #[command(flatten)]
    conn: Conn,
    /// The docket number.
    docket: String,
    /// The purpose code: C J E F H I S V X A.
    #[arg(long)]
    purpose: String,
    /// Print the view as JSON.
    #[arg(long)]
    json: bool,
}

pub fn case(a: CaseArgs) -> Result<ExitCode> {
    client::run(async move {
        let req =
            pb::CaseRequest { docket: a.docket, purpose: client::purpose(&a.purpose)? as i32, ..Default::default() };
        let mut c = a.conn.connect().await?;
        let r = c.case(req).await?;
        print_view(&r, a.json)
    })
}

/// A background check: what this requester may see for the purpose, logged with a hash of
/// exactly the bytes returned.
///
/// Example: chronicle check --creds employer/ --purpose E --sid PA-1001 --authority "consent form 2025-88"
#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    conn: Conn,
    /// The purpose code: C J E F H I S V X A.
    #[arg(long)]
    purpose: String,
    /// The subject's SID (or subject id).
    #[arg(long)]
    sid: String,
    /// The legal authority or consent reference.
    #[arg(long)]
    authority: Option<String>,
    /// Print the view as JSON.
    #[arg(long)]
    json: bool,
}

pub fn check(a: CheckArgs) -> Result<ExitCode> {
    client::run(async move {
        let req = record_request(&a.sid, client::purpose(&a.purpose)?, a.authority);
        let mut c = a.conn.connect().await?;
        let r = c.background_check(req).await?;
        print_view(&r, a.json)
    })
}

/// A case's or subject's whole history as a timeline: who did what, when, under what authority.
///
/// Example: chronicle history --creds pd/ --case CP-23-CR-0001234-2024 --as-of 2025-01-31 --effective
#[derive(clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    conn: Conn,
    /// The case: docket number or case id.
    #[arg(long, conflicts_with = "subject")]
    case: Option<String>,
    /// Or the subject: subject id.
    #[arg(long)]
    subject: Option<String>,
    /// The purpose code (C for criminal justice, A for the bureau's administration).
    #[arg(long, default_value = "C")]
    purpose: String,
    /// Only what the ledger had recorded by then (YYYY-MM-DD, ...THH:MM:SSZ, or µs).
    #[arg(long)]
    as_of: Option<String>,
    /// Order by effective time (when things took legal effect) instead of when they were recorded.
    #[arg(long)]
    effective: bool,
    /// Print the items as JSON, one per line.
    #[arg(long)]
    json: bool,
}

pub fn history(a: HistoryArgs) -> Result<ExitCode> {
    client::run(async move {
        let mut req = pb::HistoryRequest { purpose: client::purpose(&a.purpose)? as i32, ..Default::default() };
        match (&a.case, &a.subject) {
            (Some(c), _) => match StreamId::from_hex(c) {
                Some(id) => req.stream = id.0.to_vec(),
                None => req.docket = c.clone(),
            },
            (None, Some(s)) => match StreamId::from_hex(s) {
                Some(id) => req.stream = id.0.to_vec(),
                None => bail!("--subject: give the subject id (32 hex digits); `chronicle record SID` shows it"),
            },
            (None, None) => bail!("say whose history: --case DOCKET or --subject ID"),
        }
        req.as_recorded_micros = a.as_of.as_deref().map(client::time).transpose()?.unwrap_or(0);
        let mut c = a.conn.connect().await?;
        let mut items = c.history(req).await?;
        if a.effective {
            items.sort_by_key(|i| (i.effective_micros, i.position));
        }
        for i in &items {
            if a.json {
                let event: Value =
                    if i.event_json.is_empty() { Value::Null } else { serde_json::from_slice(&i.event_json)? };
                let out = json!({
                    "position": i.position,
                    "recorded_micros": i.recorded_micros,
                    "effective_micros": i.effective_micros,
                    "stream": i.stream,
                    "event_type": i.event_type,
                    "author": i.author,
                    "role": i.role,
                    "court_order": (!i.court_order.is_empty()).then_some(&i.court_order),
                    "event": event,
                });
                println!("{out}");
            } else {
                println!("{}", client::render_item(i));
            }
        }
        if !a.json {
            println!("{} entries", items.len());
        }
        Ok(())
    })
}
