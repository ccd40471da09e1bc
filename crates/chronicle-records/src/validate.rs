//! Commands are checked against the current state before anything is appended. Every rule has
//! its own error, and a refused command appends nothing.
//!
//! Who may write what (by the author's registered role) is decided here too: an arrest by
//! records staff or law enforcement, a disposition by a court or records staff, and so on.

use chronicle_core::{PrincipalId, Registry, StreamId, Timestamp};

use crate::date::Date;
use crate::model::{
    RecordEvent, Scope, StreamKind, access_stream, audit_stream, denials_stream, destruction_stream, policy_stream,
};
use crate::state::State;

/// A command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// The payload is not a records event (or does not match its event type).
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The author's role may not write this event.
    #[error("a {role} may not record {event}")]
    RoleNotAllowed {
        /// The author's role.
        role: &'static str,
        /// The event.
        event: &'static str,
    },
    /// The author is not registered.
    #[error("unknown principal {0}")]
    UnknownPrincipal(PrincipalId),
    /// The event does not belong in the stream it names.
    #[error("{event} does not belong in this stream: {reason}")]
    WrongStream {
        /// The event.
        event: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A subject with this SID already exists.
    #[error("a subject with SID {0} already exists")]
    DuplicateSid(String),
    /// A subject with this FBI number already exists.
    #[error("a subject with FBI number {0} already exists")]
    DuplicateFbi(String),
    /// The subject named does not exist.
    #[error("no subject {0}")]
    UnknownSubject(String),
    /// The cycle does not exist.
    #[error("no cycle {0}")]
    UnknownCycle(StreamId),
    /// The charge does not exist in the cycle.
    #[error("cycle has no charge {0}")]
    UnknownCharge(u32),
    /// A charge with this sequence number exists already.
    #[error("charge {0} exists already")]
    DuplicateCharge(u32),
    /// The charge already has a final disposition; a change needs a correction.
    #[error(
        "charge {0} already has a final disposition; record a disposition_corrected with the authority for the change"
    )]
    DispositionExists(u32),
    /// A correction of a charge that has no disposition.
    #[error("charge {0} has no disposition to correct")]
    NothingToCorrect(u32),
    /// A sentence on a charge without a conviction.
    #[error("charge {0} has no conviction to sentence")]
    NotConvicted(u32),
    /// Dates in an impossible order.
    #[error("{what} ({later}) cannot be before {earlier_what} ({earlier})")]
    DateOrder {
        /// The later event.
        what: &'static str,
        /// Its date.
        later: Date,
        /// The earlier event.
        earlier_what: &'static str,
        /// Its date.
        earlier: Date,
    },
    /// A date in the future.
    #[error("{what} {date} is in the future")]
    FutureDate {
        /// What.
        what: &'static str,
        /// The date.
        date: Date,
    },
    /// The docket is already used by another case.
    #[error("docket {0} is already filed")]
    DuplicateDocket(String),
    /// An order whose scope names nothing.
    #[error("the order's scope names no charge")]
    EmptyScope,
    /// The scope (or part of it) was expunged: nothing more may be recorded on it.
    #[error("charge {0} was expunged; nothing more may be recorded on it")]
    AlreadyExpunged(u32),
    /// An order id used twice in the cycle.
    #[error("order {0} is already recorded on this cycle")]
    DuplicateOrder(String),
    /// The order to vacate does not exist or restricts nothing.
    #[error("no sealing, limited-access or set-aside order {0} in force on this cycle")]
    NoSuchRestriction(String),
    /// The cycle or subject was expunged by this order; nothing more may be recorded on it.
    #[error("expunged by order {0}: nothing more may be recorded on it")]
    Expunged(String),
    /// Expungement is final.
    #[error("order {0} is an expungement, which cannot be vacated")]
    CannotVacateExpungement(String),
    /// The re-attribution names the wrong current subject, or the same subject twice.
    #[error("re-attribution: {0}")]
    BadReassignment(&'static str),
    /// The author (a record subject, an attorney) is not bound to this record.
    #[error("{0}")]
    NotBound(String),
    /// A required text field is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// The challenge does not exist, or exists already.
    #[error("challenge {0}: {1}")]
    Challenge(String, &'static str),
}

fn not_after(what: &'static str, date: Date, earlier_what: &'static str, earlier: Date) -> Result<(), RecordsError> {
    if date < earlier { Err(RecordsError::DateOrder { what, later: date, earlier_what, earlier }) } else { Ok(()) }
}

fn not_future(what: &'static str, date: Date, today: Date) -> Result<(), RecordsError> {
    if date > today { Err(RecordsError::FutureDate { what, date }) } else { Ok(()) }
}

fn non_empty(field: &'static str, s: &str) -> Result<(), RecordsError> {
    if s.trim().is_empty() { Err(RecordsError::Empty(field)) } else { Ok(()) }
}

/// The streams whose keys an expungement of a cycle or a subject destroys: the cycle; or the
/// subject's identity, its access log and every cycle attributed to it now (cycles moved to
/// someone else are theirs and stay).
pub fn expungement_streams(state: &State, target: &StreamId, kind: &str) -> Result<Vec<String>, RecordsError> {
    match kind {
        "cycle" if state.cycles.contains_key(target) => Ok(vec![target.to_hex()]),
        "cycle" => Err(RecordsError::UnknownCycle(*target)),
        "subject" => {
            let sub = state.subjects.get(target).ok_or_else(|| RecordsError::UnknownSubject(target.to_hex()))?;
            let mut out = vec![target.to_hex(), access_stream(target).to_hex()];
            out.extend(sub.cycles.iter().map(StreamId::to_hex));
            Ok(out)
        }
        _ => Err(RecordsError::Malformed("target_kind must be cycle or subject".into())),
    }
}

/// Checks one event by `author` for `stream` against the state.
pub fn validate(
    state: &State,
    registry: &Registry,
    author: &PrincipalId,
    stream: StreamId,
    event: &RecordEvent,
    now: Timestamp,
) -> Result<(), RecordsError> {
    let role = registry.principal(author).ok_or_else(|| RecordsError::UnknownPrincipal(author.clone()))?.role;
    if !crate::access::may_author(role, event) {
        return Err(RecordsError::RoleNotAllowed { role: role.as_str(), event: event.tag() });
    }
    // A subject (or an attorney) writes only about their own record, and learns nothing of
    // another case from being refused: this comes before anything about the case is looked at.
    let subject_sid = state.cycles.get(&stream).and_then(|c| state.subjects.get(&c.subject)).map(|s| s.sid.as_str());
    crate::access::bound(&crate::access::Caller { principal: author.clone(), role }, subject_sid)
        .map_err(|r| RecordsError::NotBound(r.0))?;
    let today = Date::from_micros(now.0);
    let tag = event.tag();
    // Expunged is final: nothing more is recorded on an expunged cycle or subject.
    let expunged_ref = match event {
        RecordEvent::ArrestRecorded { subject, .. } => StreamId::from_hex(subject),
        RecordEvent::CycleReassigned { to_subject, .. } => StreamId::from_hex(to_subject),
        _ => None,
    };
    if let Some(t) = state.expunged.get(&stream).or_else(|| expunged_ref.and_then(|r| state.expunged.get(&r)))
        && !matches!(event, RecordEvent::ExpungementOrdered { .. })
    {
        return Err(RecordsError::Expunged(t.order_id.clone()));
    }
    let exists = state.versions.contains_key(&stream);
    match event.stream_kind() {
        StreamKind::Subject => {
            let is_new = matches!(event, RecordEvent::SubjectEnrolled { .. });
            if is_new == exists || (!is_new && !state.subjects.contains_key(&stream)) {
                return Err(RecordsError::WrongStream {
                    event: tag,
                    reason: if is_new { "enrollment needs a new stream" } else { "not a subject's stream" },
                });
            }
        }
        StreamKind::Cycle => {
            let is_new = matches!(event, RecordEvent::ArrestRecorded { .. });
            if is_new == exists || (!is_new && !state.cycles.contains_key(&stream)) {
                return Err(RecordsError::WrongStream {
                    event: tag,
                    reason: if is_new { "an arrest opens a new stream" } else { "not a cycle's stream" },
                });
            }
        }
        StreamKind::Access => {
            let subject = match event {
                RecordEvent::RecordDisseminated { subject, .. } => Some(subject),
                RecordEvent::AccessDenied { subject, .. } | RecordEvent::AuditRecorded { subject, .. } => {
                    subject.as_ref()
                }
                _ => None,
            };
            let expected = match (event, subject) {
                (RecordEvent::AccessDenied { .. }, None) => Some(denials_stream()),
                (RecordEvent::AuditRecorded { .. }, None) => Some(audit_stream()),
                (_, subject) => subject.and_then(|s| StreamId::from_hex(s)).map(|s| access_stream(&s)),
            };
            if expected != Some(stream) {
                return Err(RecordsError::WrongStream { event: tag, reason: "not the subject's access stream" });
            }
            // A subject's access log exists only for a subject that does: a request naming no
            // one is logged in the one denials stream, never in a stream of its own.
            if let Some(s) = subject
                && !StreamId::from_hex(s).is_some_and(|s| state.subjects.contains_key(&s))
            {
                return Err(RecordsError::UnknownSubject(s.clone()));
            }
        }
        StreamKind::Policy => {
            if stream != policy_stream() {
                return Err(RecordsError::WrongStream { event: tag, reason: "not the policy stream" });
            }
        }
        StreamKind::Destruction => {
            if stream != destruction_stream() {
                return Err(RecordsError::WrongStream { event: tag, reason: "not the destruction log" });
            }
        }
        // Which orders stream is checked with the event's fields, below.
        StreamKind::Orders => {}
    }
    let cycle = state.cycles.get(&stream);
    let cycle_or = || cycle.ok_or(RecordsError::UnknownCycle(stream));
    let live_charge = |seq: u32| -> Result<&crate::state::Charge, RecordsError> {
        let c = cycle_or()?;
        if c.expunged(seq, None) {
            return Err(RecordsError::AlreadyExpunged(seq));
        }
        c.charges.get(&seq).ok_or(RecordsError::UnknownCharge(seq))
    };
    // Nothing more may be recorded on a cycle whose every charge is expunged (the ledger's
    // restatement of what survives such an order excepted).
    if let Some(c) = cycle
        && c.orders.iter().any(|o| o.kind == crate::model::ReliefKind::Expunge)
        && c.charges.keys().all(|s| c.expunged(*s, None))
        && !matches!(
            event,
            RecordEvent::CycleRestated { .. }
                | RecordEvent::ReliefOrdered { kind: crate::model::ReliefKind::Expunge, .. }
        )
    {
        let first = c.orders.iter().find(|o| o.kind == crate::model::ReliefKind::Expunge);
        let seq = first.and_then(|o| match &o.scope {
            Scope::Charges(v) => v.first().copied(),
            Scope::WholeCycle => None,
        });
        let seq = seq.unwrap_or(0);
        return Err(RecordsError::AlreadyExpunged(seq));
    }
    match event {
        RecordEvent::SubjectEnrolled { sid, fbi, name, dob } => {
            non_empty("sid", sid)?;
            non_empty("name.last", &name.last)?;
            non_empty("name.first", &name.first)?;
            not_future("date of birth", *dob, today)?;
            if state.subject_by_sid(sid).is_some() {
                return Err(RecordsError::DuplicateSid(sid.clone()));
            }
            if let Some(f) = fbi
                && state.subject_by_fbi(f).is_some()
            {
                return Err(RecordsError::DuplicateFbi(f.clone()));
            }
        }
        RecordEvent::AliasAdded { name } => {
            non_empty("name.last", &name.last)?;
            non_empty("name.first", &name.first)?;
        }
        RecordEvent::IdentityCorrected { dob, fbi, reason, .. } => {
            non_empty("reason", reason)?;
            if let Some(d) = dob {
                not_future("date of birth", *d, today)?;
            }
            if let Some(f) = fbi
                && state.subject_by_fbi(f).is_some_and(|s| s != stream)
            {
                return Err(RecordsError::DuplicateFbi(f.clone()));
            }
        }
        RecordEvent::ArrestRecorded { subject, tracking_number, agency_ori, arrest_date, charges } => {
            let sub = StreamId::from_hex(subject)
                .and_then(|s| state.subjects.get(&s))
                .ok_or_else(|| RecordsError::UnknownSubject(subject.clone()))?;
            non_empty("tracking_number", tracking_number)?;
            non_empty("agency_ori", agency_ori)?;
            not_future("arrest date", *arrest_date, today)?;
            not_after("arrest date", *arrest_date, "date of birth", sub.dob)?;
            if charges.is_empty() {
                return Err(RecordsError::Empty("charges"));
            }
            let mut seen = std::collections::BTreeSet::new();
            for c in charges {
                if c.seq == 0 || !seen.insert(c.seq) {
                    return Err(RecordsError::DuplicateCharge(c.seq));
                }
                non_empty("statute", &c.statute)?;
            }
        }
        RecordEvent::ChargeFiled { charge } => {
            if cycle_or()?.charges.contains_key(&charge.seq) || charge.seq == 0 {
                return Err(RecordsError::DuplicateCharge(charge.seq));
            }
            non_empty("statute", &charge.statute)?;
        }
        RecordEvent::ChargeAmended { charge, reason } => {
            live_charge(charge.seq)?;
            non_empty("reason", reason)?;
        }
        RecordEvent::CourtCaseFiled { court_ori, docket } => {
            non_empty("court_ori", court_ori)?;
            non_empty("docket", docket)?;
            if state.cycle_by_docket(docket).is_some_and(|c| c != stream) {
                return Err(RecordsError::DuplicateDocket(docket.clone()));
            }
        }
        RecordEvent::DispositionRecorded { seq, date, .. } => {
            let ch = live_charge(*seq)?;
            if ch.disposition(None).is_some_and(|d| d.kind.is_final()) {
                return Err(RecordsError::DispositionExists(*seq));
            }
            not_after("disposition date", *date, "arrest date", cycle_or()?.arrest_date)?;
            not_future("disposition date", *date, today)?;
        }
        RecordEvent::DispositionCorrected { seq, date, reason, .. } => {
            let ch = live_charge(*seq)?;
            if ch.dispositions.is_empty() {
                return Err(RecordsError::NothingToCorrect(*seq));
            }
            non_empty("reason", reason)?;
            not_after("disposition date", *date, "arrest date", cycle_or()?.arrest_date)?;
            not_future("disposition date", *date, today)?;
        }
        RecordEvent::SentenceImposed { seq, date, .. } => {
            let ch = live_charge(*seq)?;
            let d = ch.disposition(None).filter(|d| d.kind.is_conviction()).ok_or(RecordsError::NotConvicted(*seq))?;
            not_after("sentence date", *date, "conviction date", d.date)?;
            not_future("sentence date", *date, today)?;
        }
        RecordEvent::SupervisionDischarged { date } => {
            not_after("discharge date", *date, "arrest date", cycle_or()?.arrest_date)?;
            not_future("discharge date", *date, today)?;
        }
        RecordEvent::CycleReassigned { from_subject, to_subject, reason, evidence } => {
            let c = cycle_or()?;
            non_empty("reason", reason)?;
            non_empty("evidence", evidence)?;
            let to = StreamId::from_hex(to_subject)
                .filter(|s| state.subjects.contains_key(s))
                .ok_or_else(|| RecordsError::UnknownSubject(to_subject.clone()))?;
            if StreamId::from_hex(from_subject) != Some(c.subject) {
                return Err(RecordsError::BadReassignment(
                    "from_subject is not the subject the cycle is attributed to",
                ));
            }
            if to == c.subject {
                return Err(RecordsError::BadReassignment("the cycle is already attributed to that subject"));
            }
        }
        RecordEvent::ReliefOrdered { kind: crate::model::ReliefKind::Expunge, scope: Scope::WholeCycle, .. } => {
            return Err(RecordsError::Malformed(
                "expunging a whole case is an expungement order for the case (it destroys the case's key); \
                 an expungement relief order names the charges it covers"
                    .into(),
            ));
        }
        RecordEvent::CycleRestated { order_id, snapshot } => {
            let c = cycle_or()?;
            if !c.orders.iter().any(|o| &o.order_id == order_id && o.kind == crate::model::ReliefKind::Expunge) {
                return Err(RecordsError::Malformed(format!("{order_id} is not an expungement order of this case")));
            }
            serde_json::from_value::<crate::state::Cycle>(snapshot.clone())
                .map_err(|e| RecordsError::Malformed(format!("snapshot: {e}")))?;
        }
        RecordEvent::ReliefOrdered { order_id, kind, scope, statute, .. } => {
            let c = cycle_or()?;
            non_empty("order_id", order_id)?;
            non_empty("statute", statute)?;
            if c.orders.iter().any(|o| &o.order_id == order_id) {
                return Err(RecordsError::DuplicateOrder(order_id.clone()));
            }
            let seqs: Vec<u32> = match scope {
                Scope::WholeCycle => c.charges.keys().copied().collect(),
                Scope::Charges(s) => s.clone(),
            };
            if seqs.is_empty() {
                return Err(RecordsError::EmptyScope);
            }
            for s in seqs {
                // A second expungement of an expunged charge is recorded (and finds nothing left
                // to destroy); anything else on it is refused.
                if !(*kind == crate::model::ReliefKind::Expunge && c.expunged(s, None)) {
                    live_charge(s)?;
                }
            }
        }
        RecordEvent::RestrictionVacated { order_id, reason } => {
            let c = cycle_or()?;
            non_empty("reason", reason)?;
            let order = c.orders.iter().rev().find(|o| &o.order_id == order_id);
            match order {
                Some(o) if o.kind == crate::model::ReliefKind::Expunge => {
                    return Err(RecordsError::CannotVacateExpungement(order_id.clone()));
                }
                Some(o) if o.kind.restricts() && o.vacated.is_none() => {}
                _ => return Err(RecordsError::NoSuchRestriction(order_id.clone())),
            }
        }
        RecordEvent::ChallengeFiled { challenge_id, statement } => {
            non_empty("statement", statement)?;
            if cycle_or()?.challenges.contains_key(challenge_id) {
                return Err(RecordsError::Challenge(challenge_id.clone(), "exists already"));
            }
        }
        RecordEvent::ChallengeResolved { challenge_id, .. } => match cycle_or()?.challenges.get(challenge_id) {
            Some(ch) if ch.outcome.is_none() => {}
            Some(_) => return Err(RecordsError::Challenge(challenge_id.clone(), "is already resolved")),
            None => return Err(RecordsError::Challenge(challenge_id.clone(), "does not exist")),
        },
        RecordEvent::RecordDisseminated { .. }
        | RecordEvent::AccessDenied { .. }
        | RecordEvent::AuditRecorded { .. } => {}
        RecordEvent::PolicyAdopted { policy } => {
            if let Some(problem) = policy.problem() {
                return Err(RecordsError::Malformed(format!("policy: {problem}")));
            }
        }
        RecordEvent::OrderNoticed { stream: covered, order_position, order_id, statute } => {
            let covered = StreamId::from_hex(covered)
                .ok_or_else(|| RecordsError::Malformed("stream must be 32 hex digits".into()))?;
            if stream != crate::model::orders_stream(&covered) {
                return Err(RecordsError::WrongStream { event: tag, reason: "not the covered stream's orders stream" });
            }
            // It notices an order carried out: one in the destruction log at that position,
            // covering that stream, with that id and statute.
            let noticed = state.expunged.values().any(|t| {
                t.position == *order_position
                    && t.streams.contains(&covered)
                    && &t.order_id == order_id
                    && &t.statute == statute
            });
            if !noticed {
                return Err(RecordsError::Malformed(format!(
                    "no expungement order at position {order_position} covers stream {covered} as noticed"
                )));
            }
        }
        RecordEvent::ExpungementOrdered { order_id, statute, target, target_kind, streams } => {
            non_empty("order_id", order_id)?;
            non_empty("statute", statute)?;
            let id = StreamId::from_hex(target).ok_or_else(|| RecordsError::UnknownSubject(target.clone()))?;
            let want = match state.expunged.get(&id) {
                Some(t) => t.streams.iter().map(StreamId::to_hex).collect(),
                None => expungement_streams(state, &id, target_kind)?,
            };
            if *streams != want {
                return Err(RecordsError::Malformed(format!(
                    "an expungement of {target} must name exactly the streams {want:?}"
                )));
            }
        }
    }
    Ok(())
}
