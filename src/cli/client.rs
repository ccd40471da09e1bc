//! What the client commands share: the connection, references to subjects and cases, times, and
//! the plain-words rendering of records and histories.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use chronicle::datadir::DataDir;
use chronicle_client::v1 as pb;
use chronicle_client::{Client, ClientError, Credentials};
use chronicle_core::StreamId;
use chronicle_records::Date;
use serde_json::Value;

/// Exit code: the server refused the request (its status is printed).
pub const EXIT_REFUSED: u8 = 4;

/// How a client command reaches the server and as whom.
#[derive(clap::Args, Clone, Debug)]
pub struct Conn {
    /// The server's address (host:port).
    #[arg(long, env = "CHRONICLE_SERVER", default_value = "127.0.0.1:50051")]
    pub server: String,
    /// A credentials directory (written by `chronicle init` for the admin and by
    /// `chronicle principal add`).
    #[arg(long, env = "CHRONICLE_CREDS")]
    pub creds: Option<PathBuf>,
    /// Or: a data directory, with --as, to use SECRETS/principals/ID from it.
    #[arg(long, requires = "as_principal")]
    pub data_dir: Option<PathBuf>,
    /// The principal whose credentials to use from --data-dir.
    #[arg(long = "as", id = "as_principal")]
    pub as_principal: Option<String>,
    /// Plaintext to a server started with --insecure-loopback (development only).
    #[arg(long)]
    pub insecure_loopback: bool,
}

impl Conn {
    fn credentials(&self) -> Result<Credentials> {
        let dir = match (&self.creds, &self.data_dir, &self.as_principal) {
            (Some(c), _, _) => c.clone(),
            (None, Some(d), Some(p)) => DataDir::new(d, None).credentials_dir(p),
            _ => bail!("say who is calling: --creds DIR (or CHRONICLE_CREDS), or --data-dir D --as PRINCIPAL"),
        };
        Ok(Credentials::load(&dir)?)
    }

    /// Connects.
    pub async fn connect(&self) -> Result<Client> {
        let creds = self.credentials()?;
        if self.insecure_loopback {
            return Ok(Client::connect_insecure(&self.server, creds.principal.clone(), creds.signer.clone()).await?);
        }
        Ok(Client::connect(&self.server, &creds).await?)
    }
}

/// Runs a client command: a refusal by the server exits with [`EXIT_REFUSED`] and its status.
pub fn run<F>(f: F) -> Result<std::process::ExitCode>
where
    F: std::future::Future<Output = Result<()>>,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match rt.block_on(f) {
        Ok(()) => Ok(std::process::ExitCode::SUCCESS),
        Err(e) => match e.downcast_ref::<ClientError>() {
            Some(ClientError::Status(s)) => {
                eprintln!("refused: {:?}: {}", s.code(), s.message());
                Ok(std::process::ExitCode::from(EXIT_REFUSED))
            }
            _ => Err(e),
        },
    }
}

/// Parses a purpose code (C, J, E, F, H, I, S, V, X, A).
pub fn purpose(code: &str) -> Result<pb::Purpose> {
    Ok(match code.to_ascii_uppercase().as_str() {
        "C" => pb::Purpose::C,
        "J" => pb::Purpose::J,
        "E" => pb::Purpose::E,
        "F" => pb::Purpose::F,
        "H" => pb::Purpose::H,
        "I" => pb::Purpose::I,
        "S" => pb::Purpose::S,
        "V" => pb::Purpose::V,
        "X" => pb::Purpose::X,
        "A" => pb::Purpose::A,
        _ => bail!("unknown purpose {code:?}: one of C J E F H I S V X A"),
    })
}

/// Parses a purpose code into the records domain's purpose.
pub fn records_purpose(code: &str) -> Result<chronicle_records::Purpose> {
    purpose(code)?;
    named("purpose", &code.to_ascii_uppercase(), "C J E F H I S V X A")
}

/// Parses a time: microseconds since the epoch, `YYYY-MM-DD` (the end of that day, UTC), or
/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn time(s: &str) -> Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let bad = || anyhow!("time {s:?}: give YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or microseconds since 1970");
    let (day, rest) = s.split_at(s.len().min(10));
    let date = Date::parse(day).ok_or_else(bad)?;
    if rest.is_empty() {
        return Ok(date.to_micros() + 86_400_000_000 - 1);
    }
    let hms = rest.strip_prefix('T').and_then(|r| r.strip_suffix('Z')).ok_or_else(bad)?;
    let parts: Vec<i64> = hms.split(':').map(|p| p.parse::<i64>()).collect::<Result<_, _>>().map_err(|_| bad())?;
    let [h, m, sec] = parts[..] else { return Err(bad()) };
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&sec) {
        return Err(bad());
    }
    Ok(date.to_micros() + ((h * 60 + m) * 60 + sec) * 1_000_000)
}

/// A time in words: `YYYY-MM-DD HH:MM:SSZ`.
pub fn fmt_time(micros: i64) -> String {
    let d = Date::from_micros(micros);
    let secs = (micros - d.to_micros()) / 1_000_000;
    format!("{d} {:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A subject given by SID or by its 32-hex-digit id: its id. A SID is looked up with `Resolve`,
/// which returns ids only: a command's own look-up is not a release of the record.
pub async fn subject(c: &mut Client, reference: &str, purpose: pb::Purpose) -> Result<StreamId> {
    if let Some(id) = StreamId::from_hex(reference) {
        return Ok(id);
    }
    let r =
        c.resolve(pb::ResolveRequest { sid: reference.into(), purpose: purpose as i32, ..Default::default() }).await?;
    StreamId::from_hex(&hex::encode(&r.subject_id)).context("the server's answer names no subject id")
}

/// A case given by docket or by its 32-hex-digit cycle id: its cycle id.
pub async fn case(c: &mut Client, reference: &str, purpose: pb::Purpose) -> Result<StreamId> {
    if let Some(id) = StreamId::from_hex(reference) {
        return Ok(id);
    }
    Ok(case_and_subject(c, reference, purpose).await?.0)
}

/// A case by docket: its cycle id and the subject it is attributed to now (ids only, see
/// [`subject`]).
pub async fn case_and_subject(c: &mut Client, docket: &str, purpose: pb::Purpose) -> Result<(StreamId, StreamId)> {
    let r =
        c.resolve(pb::ResolveRequest { docket: docket.into(), purpose: purpose as i32, ..Default::default() }).await?;
    let cycle = StreamId::from_hex(&hex::encode(&r.case_id));
    let subject = StreamId::from_hex(&hex::encode(&r.subject_id));
    cycle.zip(subject).context("the server's answer names no case or subject id")
}

/// Parses a snake_case name of a records enum (a level, a disposition, an order kind).
pub fn named<T: serde::de::DeserializeOwned>(what: &str, name: &str, choices: &str) -> Result<T> {
    serde_json::from_value(Value::String(name.to_string()))
        .map_err(|_| anyhow!("unknown {what} {name:?}: one of {choices}"))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// A record view (the server's JSON) in plain words.
pub fn render_view(v: &Value) -> String {
    let mut out = String::new();
    if let Some(id) = v.get("identity").filter(|i| !i.is_null()) {
        let n = &id["name"];
        out += &format!("{}, {} (SID {}, born {})\n", s(n, "last"), s(n, "first"), s(id, "sid"), s(id, "dob"));
    } else {
        out += "identity withheld\n";
    }
    out += &format!("subject {}\n", s(v, "subject"));
    let cycles = v["cycles"].as_array().cloned().unwrap_or_default();
    if cycles.is_empty() {
        out += "no cases shown\n";
    }
    for c in &cycles {
        out += &format!(
            "case {}: arrest {} by {} (OTN {}){}\n",
            s(c, "cycle"),
            s(c, "arrest_date"),
            s(c, "agency_ori"),
            s(c, "tracking_number"),
            match c["docket"].as_str() {
                Some(d) => format!(", court {} docket {d}", s(c, "court_ori")),
                None => String::new(),
            }
        );
        for ch in c["charges"].as_array().into_iter().flatten() {
            let disp = match ch["disposition"].as_str() {
                Some(d) => format!("{d} on {}", s(ch, "disposition_date")),
                None => "open".into(),
            };
            let status = match s(ch, "status") {
                "" | "none" => String::new(),
                st => format!(" [{st}]"),
            };
            out += &format!(
                "  {}. {} ({}, {}): {disp}{status}\n",
                ch["seq"],
                ch["literal"].as_str().unwrap_or("[content withheld]"),
                s(ch, "statute"),
                s(ch, "level")
            );
        }
    }
    for n in v["notices"].as_array().into_iter().flatten() {
        out += &format!("notice: {n}\n");
    }
    out += &format!("as of log position {}\n", v["as_of_position"]);
    out
}

/// One history item in words.
pub fn render_item(i: &pb::HistoryItem) -> String {
    let what = i.event_type.strip_prefix("records.").unwrap_or(&i.event_type).replace('_', " ");
    let role = if i.role.is_empty() { String::new() } else { format!(" ({})", i.role) };
    let order = if i.court_order.is_empty() { String::new() } else { format!(", under order {}", i.court_order) };
    let mut line = format!(
        "{}  #{:<6} {what} by {}{role}{order}; effective {}",
        fmt_time(i.recorded_micros),
        i.position,
        i.author,
        Date::from_micros(i.effective_micros)
    );
    if i.destroyed {
        line += "\n      [content destroyed by an expungement order]";
    } else if i.event_json.is_empty() {
        line += "\n      [content not shown to your role]";
    } else if let Ok(ev) = serde_json::from_slice::<Value>(&i.event_json) {
        let detail = summarize(&ev);
        if !detail.is_empty() {
            line += &format!("\n      {detail}");
        }
    }
    line
}

fn summarize(ev: &Value) -> String {
    match s(ev, "event") {
        "subject_enrolled" => {
            format!(
                "{}, {} (SID {}, born {})",
                s(&ev["name"], "last"),
                s(&ev["name"], "first"),
                s(ev, "sid"),
                s(ev, "dob")
            )
        }
        "arrest_recorded" => {
            let charges: Vec<String> = ev["charges"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{}. {} ({})", c["seq"], s(c, "literal"), s(c, "statute")))
                .collect();
            format!("arrested {} by {}: {}", s(ev, "arrest_date"), s(ev, "agency_ori"), charges.join("; "))
        }
        "charge_filed" => {
            format!("charge {}. {} ({})", ev["charge"]["seq"], s(&ev["charge"], "literal"), s(&ev["charge"], "statute"))
        }
        "court_case_filed" => format!("court {} docket {}", s(ev, "court_ori"), s(ev, "docket")),
        "disposition_recorded" => format!("charge {}: {} on {}", ev["seq"], s(ev, "disposition"), s(ev, "date")),
        "disposition_corrected" => {
            format!(
                "charge {}: corrected to {} on {} ({})",
                ev["seq"],
                s(ev, "disposition"),
                s(ev, "date"),
                s(ev, "reason")
            )
        }
        "relief_ordered" => {
            format!("order {}: {} of {} under {}", s(ev, "order_id"), s(ev, "kind"), ev["scope"], s(ev, "statute"))
        }
        "cycle_reassigned" => {
            format!("moved from {} to {}: {}", s(ev, "from_subject"), s(ev, "to_subject"), s(ev, "reason"))
        }
        "record_disseminated" => format!(
            "released to {} ({}) for purpose {} by {}, content {}",
            s(ev, "requester"),
            s(ev, "role"),
            s(ev, "purpose"),
            s(ev, "method"),
            &s(ev, "content_hash")[..s(ev, "content_hash").len().min(16)]
        ),
        "access_denied" => format!("refused {} ({}): {}", s(ev, "requester"), s(ev, "role"), s(ev, "reason")),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_print() {
        assert_eq!(time("0").unwrap(), 0);
        assert_eq!(time("1970-01-01T00:01:02Z").unwrap(), 62_000_000);
        assert_eq!(time("1970-01-01").unwrap(), 86_400_000_000 - 1);
        assert!(time("1970-13-01").is_err());
        assert!(time("1970-01-01T25:00:00Z").is_err());
        assert!(time("yesterday").is_err());
        assert_eq!(fmt_time(62_000_000), "1970-01-01 00:01:02Z");
        assert!(purpose("e").is_ok() && purpose("Q").is_err());
    }
}
