//! The bureau's and auditors' questions about releases: who received a record
//! (`chronicle recipients`, the 28 CFR 20.21(g)(4) list), and what exactly one release held
//! (`chronicle reproduce`). Both are answered by the server and logged there as audit entries,
//! not as new releases.

use std::process::ExitCode;

use anyhow::{Result, bail};
use chronicle_client::v1 as pb;
use chronicle_core::StreamId;
use serde_json::json;

use super::client::{self, Conn};

/// List every release of a subject's record outside the bureau: who received it, when, for what
/// purpose, and the hash of exactly what they received.
///
/// Example: chronicle recipients --creds auditor/ --subject PA-1001 --case CP-23-CR-1 --since 2025-01-01
#[derive(clap::Args)]
pub struct RecipientsArgs {
    #[command(flatten)]
    conn: Conn,
    /// The subject: SID or subject id.
    #[arg(long)]
    subject: String,
    /// Only releases that included this case (docket number).
    #[arg(long)]
    case: Option<String>,
    /// Only releases recorded at or after this time (YYYY-MM-DD, ...THH:MM:SSZ, or µs).
    #[arg(long)]
    since: Option<String>,
    /// Print one JSON object per release.
    #[arg(long)]
    json: bool,
}

pub fn recipients(a: RecipientsArgs) -> Result<ExitCode> {
    client::run(async move {
        let mut req = pb::RecipientsRequest {
            docket: a.case.clone().unwrap_or_default(),
            since_micros: a.since.as_deref().map(client::time).transpose()?.unwrap_or(0),
            ..Default::default()
        };
        match StreamId::from_hex(&a.subject) {
            Some(id) => req.subject_id = id.0.to_vec(),
            None => req.sid = a.subject.clone(),
        }
        let mut c = a.conn.connect().await?;
        let mut n = 0usize;
        loop {
            let page = c.recipients(req.clone()).await?;
            for r in &page.recipients {
                n += 1;
                if a.json {
                    println!(
                        "{}",
                        json!({
                            "position": r.position,
                            "recorded_micros": r.recorded_micros,
                            "requester": r.requester,
                            "role": r.role,
                            "purpose": r.purpose,
                            "method": r.method,
                            "authority": (!r.authority.is_empty()).then_some(&r.authority),
                            "content_hash": r.content_hash,
                            "items": r.items,
                            "case_id": (!r.case_id.is_empty()).then_some(&r.case_id),
                        })
                    );
                } else {
                    let authority =
                        if r.authority.is_empty() { String::new() } else { format!(", authority {:?}", r.authority) };
                    println!(
                        "{}  #{:<6} {} ({}) for purpose {} by {}{authority}; content {}",
                        client::fmt_time(r.recorded_micros),
                        r.position,
                        r.requester,
                        r.role.replace('_', " "),
                        r.purpose,
                        r.method.replace('_', " "),
                        r.content_hash
                    );
                }
            }
            if !page.more_items {
                break;
            }
            req.from_position = page.next_position;
        }
        if !a.json {
            println!("{n} release(s)");
        }
        Ok(())
    })
}

/// Rebuild exactly the bytes of a past release by replaying the log to where it was answered, and
/// check them against the hash the release logged. Exits 1 when they differ.
///
/// Example: chronicle reproduce --creds auditor/ --dissemination 4711 --out release-4711.json
#[derive(clap::Args)]
pub struct ReproduceArgs {
    #[command(flatten)]
    conn: Conn,
    /// The log position of the release (its record_disseminated entry).
    #[arg(long)]
    dissemination: u64,
    /// Write the rebuilt bytes to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn reproduce(a: ReproduceArgs) -> Result<ExitCode> {
    let mut matched = false;
    let code = client::run(async {
        let mut c = a.conn.connect().await?;
        let r = c.reproduce(a.dissemination).await?;
        if let Some(out) = &a.out
            && let Err(e) = std::fs::write(out, &r.content)
        {
            bail!("writing {}: {e}", out.display());
        }
        matched = r.matches;
        if a.json {
            println!(
                "{}",
                json!({
                    "position": a.dissemination,
                    "method": r.method,
                    "matches": r.matches,
                    "content_hash": r.content_hash,
                    "logged_hash": r.logged_hash,
                    "bytes": r.content.len(),
                })
            );
        } else if r.matches {
            let shown = if r.content.is_empty() {
                "the bytes are not shown to your role".to_string()
            } else {
                format!("{} bytes", r.content.len())
            };
            println!(
                "the release at position {} ({}) was rebuilt: blake3 {}, the hash it logged; {shown}",
                a.dissemination,
                r.method.replace('_', " "),
                r.content_hash
            );
        } else {
            println!(
                "the release at position {} was rebuilt, but its blake3 {} DIFFERS from the hash logged, {}",
                a.dissemination, r.content_hash, r.logged_hash
            );
        }
        Ok(())
    })?;
    if code == ExitCode::SUCCESS && !matched {
        return Ok(ExitCode::from(super::EXIT_FAULT));
    }
    Ok(code)
}
