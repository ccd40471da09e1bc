//! Bulk import of a backlog from JSON Lines (see `docs/IMPORT.md`).
//!
//! Every line becomes one signed command. Everything about it is derived deterministically from
//! the importer's key and the line itself: stream ids from the line's references (a keyed hash,
//! so no plaintext identifier appears in a stream id), the idempotency key and the payload salt
//! from the line's bytes. Importing the same file again with the same key therefore produces the
//! same commands, which the ledger recognises as retries: nothing is appended twice.

use chronicle_core::{Command, References, Signer, StreamId, Timestamp};
use serde::Deserialize;

use crate::date::Date;
use crate::model::{ChargeSpec, DispositionKind, Name, RecordEvent, ReliefKind, Scope, SentenceKind};
use crate::service::draft;

/// One line of an import file.
#[derive(Deserialize, Debug, Clone)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)]
pub enum Line {
    Enroll {
        /// The source system's stable id for the person.
        #[serde(rename = "ref")]
        reference: String,
        sid: String,
        #[serde(default)]
        fbi: Option<String>,
        name: Name,
        dob: Date,
    },
    Arrest {
        /// The source system's stable id for the case.
        #[serde(rename = "ref")]
        reference: String,
        /// The person's `ref`.
        subject: String,
        tracking_number: String,
        agency_ori: String,
        arrest_date: Date,
        charges: Vec<ChargeSpec>,
    },
    CourtCase {
        case: String,
        court_ori: String,
        docket: String,
    },
    Disposition {
        case: String,
        seq: u32,
        disposition: DispositionKind,
        date: Date,
    },
    Sentence {
        case: String,
        seq: u32,
        kind: SentenceKind,
        #[serde(default)]
        term_days: Option<u32>,
        #[serde(default)]
        amount_cents: Option<u64>,
        date: Date,
    },
    Order {
        case: String,
        order_id: String,
        kind: ReliefKind,
        scope: Scope,
        statute: String,
        /// When the order takes effect.
        effective: Date,
    },
    Expunge {
        #[serde(default)]
        case: Option<String>,
        #[serde(default)]
        subject: Option<String>,
        order_id: String,
        statute: String,
        effective: Date,
    },
}

/// What one line asks for, resolved.
pub enum Planned {
    /// A command to submit.
    Command(Box<Command>),
    /// An expungement order to record and carry out: target, kind, order, statute, effective.
    Expunge(StreamId, &'static str, String, String, Timestamp),
}

/// Derives stream ids and salts from the importer's key.
pub struct Importer<'a> {
    signer: &'a Signer,
    key: [u8; 32],
}

fn midnight(d: Date) -> Timestamp {
    // Days since the epoch by Howard Hinnant's days_from_civil.
    let (y, m, day) = (i64::from(d.year), i64::from(d.month), i64::from(d.day));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Timestamp((era * 146_097 + doe - 719_468) * 86_400_000_000)
}

impl<'a> Importer<'a> {
    /// An importer signing with `signer`; its derivations are keyed by the signer's secret key.
    pub fn new(signer: &'a Signer) -> Importer<'a> {
        let key = blake3::derive_key("chronicle import v1 derivation key", &signer.signing_key().to_bytes());
        Importer { signer, key }
    }

    /// The stream of a person or case reference.
    pub fn stream(&self, kind: &str, reference: &str) -> StreamId {
        let h = blake3::keyed_hash(&self.key, format!("{kind}\n{reference}").as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.as_bytes()[..16]);
        StreamId(id)
    }

    /// Turns one parsed line (with its exact bytes) into what to submit.
    pub fn plan(&self, line: &Line, raw: &[u8]) -> Result<Planned, String> {
        let (stream, event, effective) = match line.clone() {
            Line::Enroll { reference, sid, fbi, name, dob } => (
                self.stream("subject", &reference),
                RecordEvent::SubjectEnrolled { sid, fbi, name, dob },
                midnight(dob),
            ),
            Line::Arrest { reference, subject, tracking_number, agency_ori, arrest_date, charges } => (
                self.stream("case", &reference),
                RecordEvent::ArrestRecorded {
                    subject: self.stream("subject", &subject).to_hex(),
                    tracking_number,
                    agency_ori,
                    arrest_date,
                    charges,
                },
                midnight(arrest_date),
            ),
            Line::CourtCase { case, court_ori, docket } => {
                (self.stream("case", &case), RecordEvent::CourtCaseFiled { court_ori, docket }, Timestamp(0))
            }
            Line::Disposition { case, seq, disposition, date } => (
                self.stream("case", &case),
                RecordEvent::DispositionRecorded { seq, disposition, date },
                midnight(date),
            ),
            Line::Sentence { case, seq, kind, term_days, amount_cents, date } => (
                self.stream("case", &case),
                RecordEvent::SentenceImposed { seq, kind, term_days, amount_cents, date },
                midnight(date),
            ),
            Line::Order { case, order_id, kind, scope, statute, effective } => (
                self.stream("case", &case),
                RecordEvent::ReliefOrdered { order_id, kind, scope, statute, audiences: vec![] },
                midnight(effective),
            ),
            Line::Expunge { case, subject, order_id, statute, effective } => {
                let (target, kind) = match (case, subject) {
                    (Some(c), None) => (self.stream("case", &c), "cycle"),
                    (None, Some(s)) => (self.stream("subject", &s), "subject"),
                    _ => return Err("an expunge line names exactly one of case or subject".into()),
                };
                return Ok(Planned::Expunge(target, kind, order_id, statute, midnight(effective)));
            }
        };
        let digest = blake3::keyed_hash(&self.key, raw);
        let mut d = draft(stream, &event, effective, None, format!("import-{}", &digest.to_hex()[..32]).into_bytes());
        if let RecordEvent::ReliefOrdered { order_id, .. } = &event {
            d.refs = References { court_order: Some(order_id.clone()), ..d.refs };
        }
        let salt = *blake3::keyed_hash(&self.key, &[b"salt\n".as_slice(), raw].concat()).as_bytes();
        Command::sign_with_salt(self.signer, d, salt).map(|c| Planned::Command(Box::new(c))).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midnight_matches_the_calendar() {
        assert_eq!(midnight(Date::parse("1970-01-01").unwrap()), Timestamp(0));
        assert_eq!(Date::from_micros(midnight(Date::parse("2024-02-29").unwrap()).0).to_string(), "2024-02-29");
        assert_eq!(Date::from_micros(midnight(Date::parse("1961-07-13").unwrap()).0).to_string(), "1961-07-13");
    }
}
