//! The records vocabulary: events as they are written to the log, and the values they carry.
//!
//! Events are plain Rust values serialized as JSON payloads with an `"event"` tag; the entry's
//! event type is `records.` followed by the same tag. Subjects and cycles (an arrest and
//! everything that follows from it) each have their own stream, with a random id: no stream id or
//! index key carries a name, SID, docket number or any other plaintext identifier.

use chronicle_core::{EventType, Role, StreamId};
use serde::{Deserialize, Serialize};

use crate::date::Date;
use crate::policy::Policy;

/// A person's name as the record carries it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(deny_unknown_fields)]
pub struct Name {
    /// Family name.
    pub last: String,
    /// Given name.
    pub first: String,
    /// Middle name or initial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle: Option<String>,
}

/// Severity level of a charge.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Felony.
    Felony,
    /// Misdemeanor.
    Misdemeanor,
    /// Summary or petty offense.
    Summary,
    /// Infraction or violation.
    Infraction,
}

/// A charge as arrested or filed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChargeSpec {
    /// Sequence number within the cycle (1, 2, ...).
    pub seq: u32,
    /// Statute citation.
    pub statute: String,
    /// NCIC offense code.
    pub offense_code: String,
    /// Literal description.
    pub literal: String,
    /// Severity.
    pub level: Level,
    /// Number of counts.
    pub counts: u32,
}

/// How a charge was disposed of (NCSC vocabulary), or that it is still open or unknown.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum DispositionKind {
    GuiltyPlea,
    NoloContendere,
    ConvictedAtTrial,
    NolleProsequi,
    Declined,
    Dismissed,
    Acquitted,
    AcquittedInsanity,
    AdjudicationWithheld,
    Deferred,
    Diversion,
    ProbationBeforeConviction,
    ContinuedWithoutFinding,
    Mistrial,
    YouthfulOffender,
    SentenceCommuted,
    ExecutiveClemency,
    Open,
    Unknown,
}

impl DispositionKind {
    /// Whether the disposition is a conviction.
    pub fn is_conviction(&self) -> bool {
        matches!(self, Self::GuiltyPlea | Self::NoloContendere | Self::ConvictedAtTrial | Self::SentenceCommuted)
    }
    /// Whether the disposition ends the charge (everything but open and unknown).
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Open | Self::Unknown)
    }
}

/// Kind of sentence.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum SentenceKind {
    Incarceration,
    Probation,
    Fine,
    Restitution,
    CommunityService,
}

/// Kind of relief order.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ReliefKind {
    Seal,
    LimitedAccess,
    SetAside,
    Expunge,
    Pardon,
    Vacate,
}

impl ReliefKind {
    /// Whether the order restricts who may see the scope (content stays).
    pub fn restricts(&self) -> bool {
        matches!(self, Self::Seal | Self::LimitedAccess | Self::SetAside)
    }
}

/// What an order covers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// These charges of the cycle.
    Charges(Vec<u32>),
    /// The whole cycle.
    WholeCycle,
}

/// Purpose of a request (rap sheet purpose codes).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// Criminal justice.
    C,
    /// Criminal-justice employment.
    J,
    /// Employment.
    E,
    /// Firearms.
    F,
    /// Housing.
    H,
    /// Licensing.
    I,
    /// Security clearance.
    S,
    /// Volunteers.
    V,
    /// Other non-criminal-justice purpose.
    X,
    /// Administrative.
    A,
}

/// How a challenge to a record ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ChallengeOutcome {
    Corrected,
    Upheld,
    Withdrawn,
}

/// Every records event. Subject events go to the subject's stream, cycle events to the cycle's,
/// dissemination and access events to the subject's dissemination stream, policy events to the
/// policy stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)]
pub enum RecordEvent {
    /// A person enters the repository.
    SubjectEnrolled {
        sid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fbi: Option<String>,
        name: Name,
        dob: Date,
    },
    /// Another name the person is known by.
    AliasAdded { name: Name },
    /// The person's identity data was wrong.
    IdentityCorrected {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<Name>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dob: Option<Date>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fbi: Option<String>,
        reason: String,
    },
    /// An arrest opens a cycle.
    ArrestRecorded {
        /// The subject's id (hex of the subject stream).
        subject: String,
        tracking_number: String,
        agency_ori: String,
        arrest_date: Date,
        charges: Vec<ChargeSpec>,
    },
    /// A charge filed by the prosecution (added to the cycle).
    ChargeFiled { charge: ChargeSpec },
    /// A charge amended.
    ChargeAmended { charge: ChargeSpec, reason: String },
    /// The case in court.
    CourtCaseFiled { court_ori: String, docket: String },
    /// The court's disposition of one charge.
    DispositionRecorded { seq: u32, disposition: DispositionKind, date: Date },
    /// A disposition replaced by a corrected one.
    DispositionCorrected { seq: u32, disposition: DispositionKind, date: Date, reason: String },
    /// A sentence on one charge.
    SentenceImposed {
        seq: u32,
        kind: SentenceKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        term_days: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount_cents: Option<u64>,
        date: Date,
    },
    /// Supervision ended.
    SupervisionDischarged { date: Date },
    /// The cycle was attributed to the wrong person and moves to the right one.
    CycleReassigned { from_subject: String, to_subject: String, reason: String, evidence: String },
    /// A relief order (seal, limited access, set aside, expunge, pardon, vacate).
    ReliefOrdered {
        order_id: String,
        kind: ReliefKind,
        scope: Scope,
        statute: String,
        /// Roles that may still see what the order restricts.
        #[serde(default)]
        audiences: Vec<Role>,
    },
    /// A restricting order vacated (unsealing).
    RestrictionVacated { order_id: String, reason: String },
    /// What survives of a case after an order expunged some of its charges, restated by the
    /// ledger as it carries the order out: the entries that held the expunged charges (the arrest
    /// with all its charges, the charge's filings, dispositions and sentences, earlier
    /// restatements) become unreadable, so the case as it stands (a `state::Cycle`, as JSON) is
    /// written again under the case's new key.
    CycleRestated { order_id: String, snapshot: serde_json::Value },
    /// The subject challenges the record.
    ChallengeFiled { challenge_id: String, statement: String },
    /// A challenge decided.
    ChallengeResolved { challenge_id: String, outcome: ChallengeOutcome, note: String },
    /// Something about the subject was released to a requester.
    RecordDisseminated {
        request_id: String,
        requester: String,
        role: Role,
        purpose: Purpose,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authority: Option<String>,
        subject: String,
        /// The log position the response was computed at (replaying to it reproduces the response).
        as_of_position: u64,
        /// blake3 of exactly the bytes returned, hex.
        content_hash: String,
        /// Ids of the items returned (`cycle:charge`).
        items: Vec<String>,
        /// How many items the policy withheld.
        suppressed: u32,
        /// The date the check was run on.
        checked_on: Date,
        /// "As effective at", if the request asked for it (microseconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        as_effective: Option<i64>,
        method: String,
        /// The one case (cycle id) the release was limited to, if it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        case: Option<String>,
    },
    /// A request refused by the policy.
    AccessDenied {
        requester: String,
        role: Role,
        /// The purpose stated, where the request stated one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purpose: Option<Purpose>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// What was asked for (`get_record`, `history`, `submit records.arrest_recorded`, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
        reason: String,
    },
    /// The access policy in force from this entry on.
    PolicyAdopted { policy: Policy },
    /// An expungement order for a whole case (cycle) or a subject's whole record. Written to the
    /// destruction log, which is never expunged itself, so that the order, its time and its author
    /// survive what it destroys. `streams` are the streams whose data keys it destroys.
    ExpungementOrdered {
        order_id: String,
        statute: String,
        /// The cycle or subject id ordered expunged.
        target: String,
        /// `cycle` or `subject`.
        target_kind: String,
        /// Every stream whose keys are destroyed (hex ids).
        streams: Vec<String>,
    },
}

/// Prefix of every records event type.
pub const EVENT_PREFIX: &str = "records.";

impl RecordEvent {
    /// The tag, e.g. `arrest_recorded`.
    pub fn tag(&self) -> &'static str {
        match self {
            Self::SubjectEnrolled { .. } => "subject_enrolled",
            Self::AliasAdded { .. } => "alias_added",
            Self::IdentityCorrected { .. } => "identity_corrected",
            Self::ArrestRecorded { .. } => "arrest_recorded",
            Self::ChargeFiled { .. } => "charge_filed",
            Self::ChargeAmended { .. } => "charge_amended",
            Self::CourtCaseFiled { .. } => "court_case_filed",
            Self::DispositionRecorded { .. } => "disposition_recorded",
            Self::DispositionCorrected { .. } => "disposition_corrected",
            Self::SentenceImposed { .. } => "sentence_imposed",
            Self::SupervisionDischarged { .. } => "supervision_discharged",
            Self::CycleReassigned { .. } => "cycle_reassigned",
            Self::ReliefOrdered { .. } => "relief_ordered",
            Self::RestrictionVacated { .. } => "restriction_vacated",
            Self::CycleRestated { .. } => "cycle_restated",
            Self::ChallengeFiled { .. } => "challenge_filed",
            Self::ChallengeResolved { .. } => "challenge_resolved",
            Self::RecordDisseminated { .. } => "record_disseminated",
            Self::AccessDenied { .. } => "access_denied",
            Self::PolicyAdopted { .. } => "policy_adopted",
            Self::ExpungementOrdered { .. } => "expungement_ordered",
        }
    }

    /// The entry's event type: `records.<tag>`.
    pub fn event_type(&self) -> EventType {
        // Tags are constants within the event-type alphabet.
        EventType::new(format!("{EVENT_PREFIX}{}", self.tag())).expect("records event types are valid")
    }

    /// The JSON payload.
    pub fn to_payload(&self) -> Vec<u8> {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_vec(self).expect("records events serialize")
    }

    /// Parses a payload, checking it matches the entry's event type.
    pub fn parse(event_type: &EventType, payload: &[u8]) -> Result<RecordEvent, String> {
        let ev: RecordEvent = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        if event_type.as_str().strip_prefix(EVENT_PREFIX) != Some(ev.tag()) {
            return Err(format!("payload is a {} event, the entry says {}", ev.tag(), event_type.as_str()));
        }
        Ok(ev)
    }

    /// Which kind of stream the event belongs in.
    pub fn stream_kind(&self) -> StreamKind {
        match self {
            Self::SubjectEnrolled { .. } | Self::AliasAdded { .. } | Self::IdentityCorrected { .. } => {
                StreamKind::Subject
            }
            Self::RecordDisseminated { .. } | Self::AccessDenied { .. } => StreamKind::Access,
            Self::PolicyAdopted { .. } => StreamKind::Policy,
            Self::ExpungementOrdered { .. } => StreamKind::Destruction,
            _ => StreamKind::Cycle,
        }
    }
}

/// The kinds of records streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// A subject's identity.
    Subject,
    /// One cycle: arrest, charges, court, dispositions, sentences, orders, challenges.
    Cycle,
    /// A subject's dissemination and access log.
    Access,
    /// The access policy.
    Policy,
    /// The destruction log: expungement orders, never expunged themselves.
    Destruction,
}

/// The stream holding the destruction log.
pub fn destruction_stream() -> StreamId {
    StreamId::derive("chronicle.records", "destruction-log")
}

/// The stream holding the access policy.
pub fn policy_stream() -> StreamId {
    StreamId::derive("chronicle.records", "access-policy")
}

/// The event type of an expungement order (submitting one means destroying keys).
pub const EXPUNGEMENT_ORDERED_TYPE: &str = "records.expungement_ordered";

/// The stream holding refusals that name no known subject (an unknown SID, a call outside the
/// caller's role).
pub fn denials_stream() -> StreamId {
    StreamId::derive("chronicle.records", "access-denied")
}

/// The stream holding a subject's dissemination log: derived from the subject's (random) id.
pub fn access_stream(subject: &StreamId) -> StreamId {
    StreamId::derive("chronicle.records.access", &subject.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expungement_event_type_constant_is_the_events_own() {
        let ev = RecordEvent::ExpungementOrdered {
            order_id: "o".into(),
            statute: "s".into(),
            target: "t".into(),
            target_kind: "cycle".into(),
            streams: vec![],
        };
        assert_eq!(ev.event_type().as_str(), EXPUNGEMENT_ORDERED_TYPE);
    }
}
