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

impl Purpose {
    /// Every purpose code, in the order of the rap sheet standard's list.
    pub const ALL: [Purpose; 10] = [
        Purpose::C,
        Purpose::J,
        Purpose::E,
        Purpose::F,
        Purpose::H,
        Purpose::I,
        Purpose::S,
        Purpose::V,
        Purpose::X,
        Purpose::A,
    ];
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

/// Defines [`RecordEvent`] from one list of variants, each with its tag, and from the same list a
/// direct parser for each variant (`direct::parse`).
///
/// serde parses an internally tagged enum by first buffering the whole object (every key and
/// value copied into a tree of its own) to find the tag, then parsing the variant from the copy;
/// that was a third of the time spent opening and parsing entries while replaying the log. An
/// entry's event type already names the variant, so the payload can be parsed straight into that
/// variant's fields. The direct parser is generated from the same field list, attributes and all,
/// so the two cannot drift apart; and it is only a shortcut: whatever it does not accept goes to
/// the enum's own derived parser, whose answer (and error) stands.
macro_rules! record_events {
    (
        $(#[$enum_attr:meta])*
        pub enum RecordEvent {
            $(
                $(#[$variant_attr:meta])*
                $variant:ident = $tag:literal {
                    $( $(#[$field_attr:meta])* $field:ident : $ty:ty ),* $(,)?
                }
            ),* $(,)?
        }
    ) => {
        $(#[$enum_attr])*
        pub enum RecordEvent {
            $(
                $(#[$variant_attr])*
                #[serde(rename = $tag)]
                $variant { $( $(#[$field_attr])* $field: $ty ),* },
            )*
        }

        impl RecordEvent {
            /// The tag, e.g. `arrest_recorded`.
            pub fn tag(&self) -> &'static str {
                match self {
                    $( Self::$variant { .. } => $tag, )*
                }
            }
        }

        /// Every event's tag, in the order of the enum.
        pub const TAGS: &[&str] = &[$($tag),*];

        mod direct {
            use super::*;

            /// Parses the payload of a `tag` event straight into that variant, or gives up (on
            /// anything at all: an unknown tag, a payload whose `event` says otherwise, a field
            /// missing, unknown or malformed), leaving the derived parser to decide.
            pub(super) fn parse(tag: &str, payload: &[u8]) -> Option<RecordEvent> {
                match tag {
                    $(
                        $tag => {
                            // The variant's fields as the enum declares them, after the tag (first,
                            // as in the sequence form the derived parser also accepts).
                            #[derive(serde::Deserialize)]
                            #[serde(deny_unknown_fields)]
                            struct Wire {
                                event: String,
                                $( $(#[$field_attr])* $field: $ty, )*
                            }
                            let w: Wire = serde_json::from_slice(payload).ok()?;
                            (w.event == $tag).then(|| RecordEvent::$variant { $( $field: w.$field ),* })
                        }
                    )*
                    _ => None,
                }
            }
        }
    };
}

record_events! {
    /// Every records event. Subject events go to the subject's stream, cycle events to the cycle's,
    /// dissemination and access events to the subject's dissemination stream, policy events to the
    /// policy stream.
    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
    #[serde(tag = "event", deny_unknown_fields)]
    #[allow(missing_docs)]
    pub enum RecordEvent {
        /// A person enters the repository.
        SubjectEnrolled = "subject_enrolled" {
            sid: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            fbi: Option<String>,
            name: Name,
            dob: Date,
        },
        /// Another name the person is known by.
        AliasAdded = "alias_added" { name: Name },
        /// The person's identity data was wrong.
        IdentityCorrected = "identity_corrected" {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            name: Option<Name>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            dob: Option<Date>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            fbi: Option<String>,
            reason: String,
        },
        /// An arrest opens a cycle.
        ArrestRecorded = "arrest_recorded" {
            /// The subject's id (hex of the subject stream).
            subject: String,
            tracking_number: String,
            agency_ori: String,
            arrest_date: Date,
            charges: Vec<ChargeSpec>,
        },
        /// A charge filed by the prosecution (added to the cycle).
        ChargeFiled = "charge_filed" { charge: ChargeSpec },
        /// A charge amended.
        ChargeAmended = "charge_amended" { charge: ChargeSpec, reason: String },
        /// The case in court.
        CourtCaseFiled = "court_case_filed" { court_ori: String, docket: String },
        /// The court's disposition of one charge.
        DispositionRecorded = "disposition_recorded" { seq: u32, disposition: DispositionKind, date: Date },
        /// A disposition replaced by a corrected one.
        DispositionCorrected = "disposition_corrected" {
            seq: u32,
            disposition: DispositionKind,
            date: Date,
            reason: String,
        },
        /// A sentence on one charge.
        SentenceImposed = "sentence_imposed" {
            seq: u32,
            kind: SentenceKind,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            term_days: Option<u32>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            amount_cents: Option<u64>,
            date: Date,
        },
        /// Supervision ended.
        SupervisionDischarged = "supervision_discharged" { date: Date },
        /// The cycle was attributed to the wrong person and moves to the right one.
        CycleReassigned = "cycle_reassigned" {
            from_subject: String,
            to_subject: String,
            reason: String,
            evidence: String,
        },
        /// A relief order (seal, limited access, set aside, expunge, pardon, vacate).
        ReliefOrdered = "relief_ordered" {
            order_id: String,
            kind: ReliefKind,
            scope: Scope,
            statute: String,
            /// Roles that may still see what the order restricts.
            #[serde(default)]
            audiences: Vec<Role>,
        },
        /// A restricting order vacated (unsealing).
        RestrictionVacated = "restriction_vacated" { order_id: String, reason: String },
        /// What survives of a case after an order expunged some of its charges, restated by the
        /// ledger as it carries the order out: the entries that held the expunged charges (the arrest
        /// with all its charges, the charge's filings, dispositions and sentences, earlier
        /// restatements) become unreadable, so the case as it stands (a `state::Cycle`, as JSON) is
        /// written again under the case's new key.
        CycleRestated = "cycle_restated" { order_id: String, snapshot: serde_json::Value },
        /// The subject challenges the record.
        ChallengeFiled = "challenge_filed" { challenge_id: String, statement: String },
        /// A challenge decided.
        ChallengeResolved = "challenge_resolved" { challenge_id: String, outcome: ChallengeOutcome, note: String },
        /// Something about the subject was released to a requester outside the bureau. Written by
        /// the ledger alone; the requester never sees it.
        RecordDisseminated = "record_disseminated" {
            request_id: String,
            requester: String,
            role: Role,
            purpose: Purpose,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            authority: Option<String>,
            subject: String,
            /// The log position the request was answered at (replaying to it reproduces the response).
            as_of_position: u64,
            /// blake3 of exactly the bytes returned, hex.
            content_hash: String,
            /// Ids of the items returned (`cycle:charge`, with the charge's own number).
            items: Vec<String>,
            /// How many items the policy withheld.
            suppressed: u32,
            /// The date the request was answered on.
            checked_on: Date,
            /// "As effective at", if the request asked for it (microseconds).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            as_effective: Option<i64>,
            method: String,
            /// The one case (cycle id) the release was limited to, if it was.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            case: Option<String>,
            /// "As recorded at", if the request asked for it (microseconds).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            as_recorded: Option<i64>,
            /// For a history: the stream replayed and the page sent (first position, most
            /// entries, last position asked for).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            page: Option<HistoryPage>,
            /// When the request was answered (microseconds): whether a vacatur had taken effect is
            /// judged at this time, so a reproduction judges it the same.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            answered_at: Option<i64>,
        },
        /// A request refused, or answered as if nothing existed (a record the policy withholds
        /// whole). Written by the ledger alone.
        AccessDenied = "access_denied" {
            requester: String,
            /// The requester's role, when it is a registered principal.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            role: Option<Role>,
            /// The purpose stated, where the request stated one.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            purpose: Option<Purpose>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            subject: Option<String>,
            /// What was asked for (`get_record`, `history`, `submit records.arrest_recorded`, ...).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            action: Option<String>,
            reason: String,
            /// Further refusals of the same requester folded into this entry (beyond the rate at
            /// which each is logged on its own).
            #[serde(default, skip_serializing_if = "is_zero")]
            repeated: u32,
        },
        /// Something done with the log or the access log that releases no record: a log-level read
        /// (a subscription, an inclusion proof, an evidence export without content), a release
        /// reproduced, the recipients of a record listed. Written by the ledger alone.
        AuditRecorded = "audit_recorded" {
            requester: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            role: Option<Role>,
            /// What was done (`subscribe`, `inclusion_proof`, `reproduce`, ...).
            action: String,
            /// The subject concerned, if one is (the entry then goes to their access log).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            subject: Option<String>,
            /// What it was done to (positions, the release reproduced and whether it matched).
            detail: String,
        },
        /// The access policy in force from this entry on.
        PolicyAdopted = "policy_adopted" { policy: Policy },
        /// An expungement order for a whole case (cycle) or a subject's whole record. Written to the
        /// destruction log, which is never expunged itself, so that the order, its time and its author
        /// survive what it destroys. `streams` are the streams whose data keys it destroys.
        ExpungementOrdered = "expungement_ordered" {
            order_id: String,
            statute: String,
            /// The cycle or subject id ordered expunged.
            target: String,
            /// `cycle` or `subject`.
            target_kind: String,
            /// Every stream whose keys are destroyed (hex ids).
            streams: Vec<String>,
        },
        /// Notice, in a stream's orders stream (see [`orders_stream`]), of an expungement order
        /// that covers the stream: written by the ledger before the order's keys are destroyed,
        /// naming the order by its causation hash (in the clear) and its position, so that the
        /// stream's evidence can carry, proven complete, the orders that explain why its content is
        /// gone.
        OrderNoticed = "order_noticed" {
            /// The stream covered (hex id).
            stream: String,
            /// The order's position in the log.
            order_position: u64,
            order_id: String,
            statute: String,
        },
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A page of a history, as a release records it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HistoryPage {
    /// The first log position asked for.
    pub from: u64,
    /// The most entries asked for.
    pub limit: u32,
    /// The last log position asked for.
    pub up_to: u64,
}

/// Prefix of every records event type.
pub const EVENT_PREFIX: &str = "records.";

impl RecordEvent {
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
        let tag = event_type.as_str().strip_prefix(EVENT_PREFIX);
        if let Some(ev) = tag.and_then(|tag| direct::parse(tag, payload)) {
            return Ok(ev);
        }
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
            Self::RecordDisseminated { .. } | Self::AccessDenied { .. } | Self::AuditRecorded { .. } => {
                StreamKind::Access
            }
            Self::PolicyAdopted { .. } => StreamKind::Policy,
            Self::ExpungementOrdered { .. } => StreamKind::Destruction,
            Self::OrderNoticed { .. } => StreamKind::Orders,
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
    /// A stream's orders stream: notices of the expungement orders that cover it.
    Orders,
}

/// The orders stream of a stream: where notices of the expungement orders covering it go
/// (derived from its id, so that anyone holding an evidence bundle can tell which it is).
pub fn orders_stream(stream: &StreamId) -> StreamId {
    chronicle_store::evidence::orders_stream(stream)
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

/// The stream holding audit entries that concern no subject (log-level reads).
pub fn audit_stream() -> StreamId {
    StreamId::derive("chronicle.records", "audit-log")
}

/// The stream holding a subject's dissemination log: derived from the subject's (random) id.
pub fn access_stream(subject: &StreamId) -> StreamId {
    StreamId::derive("chronicle.records.access", &subject.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event of every kind, with every optional field set in one of two and left out in the
    /// other (`full`).
    fn every_event(full: bool) -> Vec<RecordEvent> {
        let d = |s| Date::parse(s).unwrap();
        let name = Name { last: "Doe".into(), first: "Jane".into(), middle: full.then(|| "Q".into()) };
        let charge = ChargeSpec {
            seq: 2,
            statute: "18 Pa.C.S. 3502".into(),
            offense_code: "2202".into(),
            literal: "Burglary \"quoted\" é".into(),
            level: Level::Felony,
            counts: 1,
        };
        let some = |s: &str| full.then(|| s.to_string());
        vec![
            RecordEvent::SubjectEnrolled {
                sid: "PA1".into(),
                fbi: some("F1"),
                name: name.clone(),
                dob: d("1990-02-03"),
            },
            RecordEvent::AliasAdded { name: name.clone() },
            RecordEvent::IdentityCorrected {
                name: full.then(|| name.clone()),
                dob: full.then(|| d("1990-02-04")),
                fbi: some("F2"),
                reason: "typo".into(),
            },
            RecordEvent::ArrestRecorded {
                subject: "ab".repeat(16),
                tracking_number: "T1".into(),
                agency_ori: "PA0000001".into(),
                arrest_date: d("2020-01-01"),
                charges: if full { vec![charge.clone(), ChargeSpec { seq: 3, ..charge.clone() }] } else { vec![] },
            },
            RecordEvent::ChargeFiled { charge: charge.clone() },
            RecordEvent::ChargeAmended { charge: charge.clone(), reason: "r".into() },
            RecordEvent::CourtCaseFiled { court_ori: "PA002".into(), docket: "CP-1".into() },
            RecordEvent::DispositionRecorded { seq: 2, disposition: DispositionKind::Dismissed, date: d("2020-03-01") },
            RecordEvent::DispositionCorrected {
                seq: 2,
                disposition: DispositionKind::GuiltyPlea,
                date: d("2020-03-02"),
                reason: "r".into(),
            },
            RecordEvent::SentenceImposed {
                seq: 2,
                kind: SentenceKind::Fine,
                term_days: full.then_some(30),
                amount_cents: full.then_some(u64::MAX),
                date: d("2020-04-01"),
            },
            RecordEvent::SupervisionDischarged { date: d("2021-01-01") },
            RecordEvent::CycleReassigned {
                from_subject: "a".into(),
                to_subject: "b".into(),
                reason: "r".into(),
                evidence: "e".into(),
            },
            RecordEvent::ReliefOrdered {
                order_id: "o1".into(),
                kind: ReliefKind::Seal,
                scope: if full { Scope::Charges(vec![2, 3]) } else { Scope::WholeCycle },
                statute: "s".into(),
                audiences: if full { vec![Role::Court, Role::LawEnforcement] } else { vec![] },
            },
            RecordEvent::RestrictionVacated { order_id: "o1".into(), reason: "r".into() },
            RecordEvent::CycleRestated {
                order_id: "o2".into(),
                snapshot: serde_json::json!({"charges": {"2": [1, 2.5, null, true]}, "event": "x"}),
            },
            RecordEvent::ChallengeFiled { challenge_id: "c1".into(), statement: "s".into() },
            RecordEvent::ChallengeResolved {
                challenge_id: "c1".into(),
                outcome: ChallengeOutcome::Upheld,
                note: "n".into(),
            },
            RecordEvent::RecordDisseminated {
                request_id: "q1".into(),
                requester: "r".into(),
                role: Role::Employer,
                purpose: Purpose::E,
                authority: some("auth"),
                subject: "s".into(),
                as_of_position: 7,
                content_hash: "00".repeat(32),
                items: vec!["a:1".into()],
                suppressed: 1,
                checked_on: d("2022-01-01"),
                as_effective: full.then_some(-5),
                method: "grpc".into(),
                case: some("c"),
                as_recorded: full.then_some(9),
                page: full.then_some(HistoryPage { from: 1, limit: 2, up_to: 3 }),
                answered_at: full.then_some(11),
            },
            RecordEvent::AccessDenied {
                requester: "r".into(),
                role: full.then_some(Role::Employer),
                purpose: full.then_some(Purpose::J),
                subject: some("s"),
                action: some("history"),
                reason: "r".into(),
                repeated: if full { 3 } else { 0 },
            },
            RecordEvent::AuditRecorded {
                requester: "r".into(),
                role: full.then_some(Role::Auditor),
                action: "subscribe".into(),
                subject: some("s"),
                detail: "from 0".into(),
            },
            RecordEvent::PolicyAdopted { policy: crate::policy::Policy::default_policy() },
            RecordEvent::ExpungementOrdered {
                order_id: "o3".into(),
                statute: "s".into(),
                target: "t".into(),
                target_kind: "cycle".into(),
                streams: vec!["t".into()],
            },
            RecordEvent::OrderNoticed {
                stream: "t".into(),
                order_position: 7,
                order_id: "o3".into(),
                statute: "s".into(),
            },
        ]
    }

    /// The derived parser alone, as `parse` was before the direct one.
    fn derived(event_type: &EventType, payload: &[u8]) -> Result<RecordEvent, String> {
        let ev: RecordEvent = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        if event_type.as_str().strip_prefix(EVENT_PREFIX) != Some(ev.tag()) {
            return Err("other tag".into());
        }
        Ok(ev)
    }

    /// The direct parser takes every kind of event, and gives what the derived parser gives.
    #[test]
    fn every_event_parses_directly_to_what_the_derived_parser_gives() {
        let mut kinds = std::collections::BTreeSet::new();
        for full in [true, false] {
            for ev in every_event(full) {
                kinds.insert(ev.tag());
                let payload = ev.to_payload();
                assert_eq!(direct::parse(ev.tag(), &payload).as_ref(), Some(&ev), "{}", ev.tag());
                assert_eq!(derived(&ev.event_type(), &payload), Ok(ev.clone()));
                assert_eq!(RecordEvent::parse(&ev.event_type(), &payload), Ok(ev));
            }
        }
        assert_eq!(kinds.len(), TAGS.len(), "a sample of every kind");
    }

    /// Payloads the direct parser must not take, for the derived parser to answer.
    #[test]
    fn the_direct_parser_leaves_what_it_does_not_take_to_the_derived_one() {
        let ev = &every_event(true)[0];
        let obj = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
            let mut v = serde_json::to_value(ev).unwrap();
            f(v.as_object_mut().unwrap());
            serde_json::to_vec(&v).unwrap()
        };
        let refused = [
            obj(&|m| drop(m.remove("event"))),
            obj(&|m| drop(m.insert("event".into(), "alias_added".into()))),
            obj(&|m| drop(m.insert("extra".into(), 1.into()))),
            obj(&|m| drop(m.remove("sid"))),
            obj(&|m| drop(m.insert("sid".into(), 5.into()))),
            br#"{"event":"subject_enrolled","event":"subject_enrolled","sid":"a","name":{"last":"a","first":"b"},"dob":"1990-01-01"}"#.to_vec(),
            b"[1]".to_vec(),
            b"".to_vec(),
        ];
        for p in &refused {
            assert_eq!(direct::parse("subject_enrolled", p), None, "{}", String::from_utf8_lossy(p));
            assert!(RecordEvent::parse(&ev.event_type(), p).is_err());
        }
        let payload = ev.to_payload();
        assert_eq!(direct::parse("alias_added", &payload), None, "the entry's type and the payload's tag differ");
        assert_eq!(direct::parse("no_such_event", &payload), None);
        let wrong_type = EventType::new("records.alias_added").unwrap();
        assert_eq!(
            RecordEvent::parse(&wrong_type, &payload),
            Err("payload is a subject_enrolled event, the entry says records.alias_added".into())
        );
        // Accepted by both, the same way: the tag anywhere, escapes, the sequence form.
        let escaped = br#"{"sid":"PA1","name":{"last":"Doe","first":"Jane","middle":"Q"},"dob":"1990-02-03","fbi":"F1","event":"subject_enrolled"}"#;
        let seq = serde_json::to_vec(&serde_json::json!(["subject_enrolled", "PA1", "F1", {"last": "Doe", "first": "Jane", "middle": "Q"}, "1990-02-03"])).unwrap();
        for p in [&escaped[..], &seq] {
            assert_eq!(direct::parse("subject_enrolled", p).as_ref(), Some(ev));
            assert_eq!(derived(&ev.event_type(), p).as_ref(), Ok(ev));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        /// Whatever the direct parser takes of a damaged payload, the derived parser takes too,
        /// as the same event. Damage: a top-level field removed, emptied, nulled, retyped,
        /// renamed or added, or bytes changed.
        #[test]
        fn the_direct_parser_never_takes_what_the_derived_one_would_not(
            which in 0..42usize,
            edits in proptest::collection::vec((0..10u8, proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..3),
        ) {
            use serde_json::Value;
            let ev = &every_event(which % 2 == 0)[which / 2];
            let mut v = serde_json::to_value(ev).unwrap();
            let mut bytes = Vec::new();
            for (op, at, byte) in edits {
                if op < 7 {
                    let m = v.as_object_mut().unwrap();
                    if m.is_empty() {
                        continue;
                    }
                    let key = m.keys().nth(at % m.len()).unwrap().clone();
                    let new = match op {
                        0 => None,
                        1 => Some(Value::Null),
                        2 => Some(Value::from(byte)),
                        3 => Some(Value::from("x")),
                        4 => Some(Value::Array(vec![])),
                        5 => Some(Value::Object(Default::default())),
                        _ => {
                            let value = m.remove(&key).unwrap();
                            m.insert(format!("{key}{}", byte % 3), value);
                            continue;
                        }
                    };
                    match new {
                        Some(new) => drop(m.insert(key, new)),
                        None => drop(m.remove(&key)),
                    }
                } else {
                    if bytes.is_empty() {
                        bytes = serde_json::to_vec(&v).unwrap();
                    }
                    let at = at % (bytes.len() + 1);
                    match op {
                        7 if at < bytes.len() => bytes[at] = byte,
                        8 if at < bytes.len() => drop(bytes.remove(at)),
                        _ => bytes.insert(at, b"{}[],:\"0123456789tfnue \\"[byte as usize % 24]),
                    }
                }
            }
            let p = if bytes.is_empty() { serde_json::to_vec(&v).unwrap() } else { bytes };
            if let Some(direct) = direct::parse(ev.tag(), &p) {
                proptest::prop_assert_eq!(derived(&ev.event_type(), &p), Ok(direct));
            }
        }
    }

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
