//! Every read of the ledger for someone: decided by [`crate::access`], answered from the
//! projection (or a replay of the log), and logged.
//!
//! Each call follows the same steps, in this order, so that no answer says more than the
//! decision allows:
//!
//! 1. bad input (times out of range, page sizes) is refused before anything is looked up, and
//!    nothing is logged;
//! 2. the policy decides whether the caller's role may make the call for the stated purpose, and
//!    a subject is held to their own record, before anything is said about the record asked for;
//! 3. the record is found; an unknown one, and one of which the policy shows the caller nothing,
//!    get the same answer ([`Target::not_found`]);
//! 4. the answer is computed, and a release outside the bureau is logged with the hash of exactly
//!    what is returned before it is returned; a refusal is logged before it is returned.
//!
//! A refusal of a caller outside the bureau is logged whatever its kind; inside the bureau, a
//! record not found is a clerk's typing and is not logged.

use chronicle_core::limits::{AUTHORITY_LEN_MAX, LIST_PAGE_ITEMS_DEFAULT, LIST_PAGE_ITEMS_MAX, TIME_MICROS_MAX};
use chronicle_core::{Entry, Role, Signer, StreamId, Timestamp};
use rayon::prelude::*;

use crate::access::{self, Call, Caller, Logged};
use crate::date::Date;
use crate::history::{HistoryPage, Reader, Scope, items_hash};
use crate::model::{HistoryPage as LoggedPage, Purpose, RecordEvent, access_stream, audit_stream, policy_stream};
use crate::refusals::Denial;
use crate::service::{Decoded, PAGE, Records, ServiceError, apply_all, decode};
use crate::state::State;
use crate::view::{Computed, Now, RecordView, Request, ViewError, view};

/// What a read names: a subject or a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A subject by SID.
    Sid(String),
    /// A subject by id.
    SubjectId(StreamId),
    /// A case by docket number.
    Docket(String),
    /// A subject, a case or a stream of the ledger's own, by id.
    Stream(StreamId),
}

impl Target {
    /// The one answer for a record that does not exist and for one the policy shows nothing of.
    pub fn not_found(&self) -> String {
        match self {
            Target::Sid(sid) => format!("no record for SID {sid}"),
            Target::SubjectId(id) => format!("no record for subject {id}"),
            Target::Docket(d) => format!("no case with docket {d}"),
            Target::Stream(id) => format!("no record or case {id}"),
        }
    }
}

/// A target as found in a state.
#[derive(Debug, Clone, Default)]
struct Located {
    subject: Option<StreamId>,
    case: Option<StreamId>,
    sid: Option<String>,
}

fn locate(state: &State, target: &Target) -> Located {
    let (subject, case) = match target {
        Target::Sid(sid) => (state.subject_by_sid(sid), None),
        Target::SubjectId(id) => (state.subjects.contains_key(id).then_some(*id), None),
        Target::Docket(d) => {
            let case = state.cycle_by_docket(d);
            (case.and_then(|c| state.cycles.get(&c)).map(|c| c.subject), case)
        }
        Target::Stream(id) => match state.cycles.get(id) {
            Some(c) => (Some(c.subject), Some(*id)),
            None => (state.subjects.contains_key(id).then_some(*id), None),
        },
    };
    let sid = subject.and_then(|s| state.subjects.get(&s)).map(|s| s.sid.clone());
    Located { subject, case, sid }
}

/// A read of a record, or of one case of it.
#[derive(Debug, Clone)]
pub struct RecordQuery {
    /// [`Call::GetRecord`], [`Call::BackgroundCheck`] or [`Call::GetCase`].
    pub call: Call,
    /// Whose record, or which case.
    pub target: Target,
    /// The purpose stated.
    pub purpose: Purpose,
    /// The legal authority or consent reference stated.
    pub authority: Option<String>,
    /// "As effective at".
    pub as_effective: Option<Timestamp>,
    /// "As recorded at": the record as the ledger showed it then (never more than now).
    pub as_recorded: Option<Timestamp>,
}

/// The answer to a read of a record.
#[derive(Debug, Clone)]
pub struct CheckResponse {
    /// Exactly the bytes returned to the requester.
    pub bytes: Vec<u8>,
    /// blake3 of the bytes, hex.
    pub content_hash: String,
    /// The view.
    pub view: RecordView,
    /// Where the release was logged (for requesters outside the bureau).
    pub dissemination: Option<u64>,
}

/// A read of a history page.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// A subject or a case (or, for the bureau, a stream of the ledger's own).
    pub target: Target,
    /// The purpose stated.
    pub purpose: Purpose,
    /// The first log position of the page.
    pub from: u64,
    /// The most entries in the page (0: the default).
    pub limit: u32,
    /// Only entries up to this position.
    pub up_to: Option<u64>,
    /// Only entries the ledger had recorded by this time.
    pub as_recorded: Option<Timestamp>,
}

/// Ids found for a writer's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The subject.
    pub subject: StreamId,
    /// The case, when a docket was named.
    pub case: Option<StreamId>,
}

/// A read of who received a record.
#[derive(Debug, Clone)]
pub struct RecipientsQuery {
    /// Whose record.
    pub subject: Target,
    /// Only releases that included this case (by docket).
    pub case: Option<String>,
    /// Only releases recorded at or after this time.
    pub since: Option<Timestamp>,
    /// The first log position of the page.
    pub from: u64,
    /// The most releases in the page (0: the default).
    pub limit: u32,
}

/// One release of a record outside the bureau, as logged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Recipient {
    /// Where the release is logged.
    pub position: u64,
    /// When (µs).
    pub recorded: i64,
    /// Who received it.
    pub requester: String,
    /// In what role.
    pub role: Role,
    /// For what purpose.
    pub purpose: Purpose,
    /// By what call.
    pub method: String,
    /// The authority stated.
    pub authority: Option<String>,
    /// blake3 of exactly what was released, hex.
    pub content_hash: String,
    /// The items released.
    pub items: Vec<String>,
    /// The case the release was limited to, if it was.
    pub case: Option<String>,
}

/// An evidence bundle asked for, for a recipient.
#[derive(Debug, Clone)]
pub struct EvidenceExport {
    /// Who receives it.
    pub recipient: Caller,
    /// For what purpose.
    pub purpose: Purpose,
    /// Under what authority (a subpoena, a court order).
    pub authority: Option<String>,
    /// The stream exported.
    pub stream: StreamId,
    /// Whether the bundle carries the entries' content.
    pub with_content: bool,
}

/// A past release rebuilt.
#[derive(Debug, Clone)]
pub struct Reproduced {
    /// Where the release is logged.
    pub position: u64,
    /// The call that released it.
    pub method: String,
    /// The bytes rebuilt.
    pub bytes: Vec<u8>,
    /// Their blake3, hex.
    pub content_hash: String,
    /// The hash the release logged.
    pub logged_hash: String,
}

impl Reproduced {
    /// Whether the rebuilt bytes are exactly those released.
    pub fn matches(&self) -> bool {
        self.content_hash == self.logged_hash
    }
}

fn check_time(field: &'static str, t: Option<Timestamp>) -> Result<(), ServiceError> {
    match t {
        Some(t) if t.0 < 0 => Err(ServiceError::BadField { field, reason: "must not be negative".into() }),
        Some(t) if t.0 > TIME_MICROS_MAX => Err(ServiceError::BadField {
            field,
            reason: format!("must be at most {TIME_MICROS_MAX} (the end of 9999-12-31)"),
        }),
        _ => Ok(()),
    }
}

fn check_authority(authority: Option<&str>) -> Result<(), ServiceError> {
    match authority {
        Some(a) if a.len() > AUTHORITY_LEN_MAX => Err(ServiceError::BadField {
            field: "authority",
            reason: format!("{} bytes exceed the limit of {AUTHORITY_LEN_MAX}", a.len()),
        }),
        _ => Ok(()),
    }
}

fn check_limit(field: &'static str, limit: u32) -> Result<u32, ServiceError> {
    match limit {
        0 => Ok(LIST_PAGE_ITEMS_DEFAULT),
        n if n > LIST_PAGE_ITEMS_MAX => Err(ServiceError::PageTooLarge { field, asked: n, max: LIST_PAGE_ITEMS_MAX }),
        n => Ok(n),
    }
}

/// One call being answered: who asks, for what, and how its refusals are logged.
struct Asked<'a> {
    records: &'a Records,
    ledger: &'a Signer,
    caller: &'a Caller,
    call: Call,
    purpose: Option<Purpose>,
}

impl Asked<'_> {
    /// Logs a refusal and returns it.
    fn refused(&self, subject: Option<StreamId>, reason: String) -> ServiceError {
        let d = Denial {
            requester: self.caller.principal.as_str(),
            role: Some(self.caller.role),
            purpose: self.purpose,
            subject,
            action: self.call.name(),
            reason: &reason,
        };
        match self.records.refuse(self.ledger, d) {
            Ok(()) => ServiceError::Refused(reason),
            Err(e) => ServiceError::RefusalNotLogged { refusal: reason, error: e.to_string() },
        }
    }

    /// Answers "not found" (the same for an unknown record and one the caller sees nothing of),
    /// logged for callers outside the bureau.
    fn not_found(&self, outside: bool, subject: Option<StreamId>, target: &Target, why: &str) -> ServiceError {
        let answer = target.not_found();
        if outside {
            let d = Denial {
                requester: self.caller.principal.as_str(),
                role: Some(self.caller.role),
                purpose: self.purpose,
                subject,
                action: self.call.name(),
                reason: why,
            };
            if let Err(e) = self.records.refuse(self.ledger, d) {
                return ServiceError::RefusalNotLogged { refusal: answer, error: e.to_string() };
            }
        }
        ServiceError::NotFound(answer)
    }
}

fn today() -> Date {
    Date::from_micros(Timestamp::now().0)
}

impl<'a> Now<'a> {
    /// The state and policy as a request is answered at `time`.
    fn at(state: &'a State, policy: &'a crate::policy::Policy, time: Timestamp) -> Now<'a> {
        Now { state, policy, checked_on: Date::from_micros(time.0), time }
    }
}

impl Records {
    /// Writes an audit entry (in the subject's access log when it concerns one).
    fn audit(
        &self,
        ledger: &Signer,
        caller: &Caller,
        call: Call,
        subject: Option<StreamId>,
        detail: String,
    ) -> Result<u64, ServiceError> {
        self.audit_token(caller, self.inside_bureau(caller.role))?;
        let ev = RecordEvent::AuditRecorded {
            requester: caller.principal.to_string(),
            role: Some(caller.role),
            action: call.name().into(),
            subject: subject.map(|s| s.to_hex()),
            detail,
        };
        let stream = subject.map_or_else(audit_stream, |s| access_stream(&s));
        Ok(self.record(ledger, stream, &ev, Timestamp::now(), None)?.entries[0].position)
    }

    /// The projection brought up to date, as an O(1) copy (so that no lock is held while a
    /// release is logged), and the last log position it holds.
    fn snapshot(&self) -> Result<(State, u64), ServiceError> {
        self.refresh()?;
        let p = self.projection();
        Ok((p.state.clone(), p.next.saturating_sub(1)))
    }

    /// A read of a record (or one case of it) for a caller: the view the policy allows, logged as
    /// a release when the caller is outside the bureau.
    pub fn read_record(&self, ledger: &Signer, caller: &Caller, q: RecordQuery) -> Result<CheckResponse, ServiceError> {
        check_time("as_effective_micros", q.as_effective)?;
        check_time("as_recorded_micros", q.as_recorded)?;
        check_authority(q.authority.as_deref())?;
        let (state, as_of) = self.snapshot()?;
        let policy = state.policy_in_force();
        let found = locate(&state, &q.target);
        let purpose = Some(q.purpose);
        let asked = Asked { records: self, ledger, caller, call: q.call, purpose };
        self.throttle(caller, access::inside_bureau(policy, caller.role))?;
        let grant =
            access::decide(policy, caller.role, q.call, purpose).map_err(|r| asked.refused(found.subject, r.0))?;
        access::bound(caller, found.sid.as_deref()).map_err(|r| asked.refused(found.subject, r.0))?;
        let outside = grant.logged == Logged::Release;
        let not_found = |subject, why: &str| asked.not_found(outside, subject, &q.target, why);
        let Some(subject) = found.subject else { return Err(not_found(None, "no such record")) };
        let time = Timestamp::now();
        let checked_on = Date::from_micros(time.0);
        let now = Now { state: &state, policy, checked_on, time };
        let computed = self.compute_view(&state, now, subject, found.case, caller.role, &q, as_of);
        let computed = match computed {
            Ok(c) => c,
            Err(ServiceError::View(ViewError::NothingShown { withheld })) => {
                let why = format!("nothing the policy shows: {withheld} item(s) withheld");
                return Err(not_found(Some(subject), &why));
            }
            Err(ServiceError::View(ViewError::UnknownSubject(_))) => {
                return Err(not_found(Some(subject), "no such record at the time asked for"));
            }
            Err(e) => return Err(e),
        };
        let bytes = computed.view.to_bytes();
        let content_hash = blake3::hash(&bytes).to_hex().to_string();
        let mut dissemination = None;
        if outside {
            let ev = RecordEvent::RecordDisseminated {
                request_id: hex::encode(chronicle_core::random_array::<8>()),
                requester: caller.principal.to_string(),
                role: caller.role,
                purpose: q.purpose,
                authority: q.authority.clone(),
                subject: subject.to_hex(),
                as_of_position: as_of,
                content_hash: content_hash.clone(),
                items: computed.items,
                suppressed: computed.withheld,
                checked_on,
                as_effective: q.as_effective.map(|t| t.0),
                method: q.call.name().into(),
                case: found.case.filter(|_| q.call == Call::GetCase).map(|c| c.to_hex()),
                as_recorded: q.as_recorded.map(|t| t.0),
                page: None,
                answered_at: Some(time.0),
            };
            // The authority stays inside the sealed payload, never in the entry's clear part.
            let r = self.record(ledger, access_stream(&subject), &ev, Timestamp::now(), None)?;
            dissemination = Some(r.entries[0].position);
        }
        Ok(CheckResponse { bytes, content_hash, view: computed.view, dissemination })
    }

    /// The view of a read: of the state now, or of the state as recorded at the time asked for
    /// (no later than `as_of`), capped by `now`.
    #[allow(clippy::too_many_arguments)]
    fn compute_view(
        &self,
        state: &State,
        now: Now<'_>,
        subject: StreamId,
        case: Option<StreamId>,
        role: Role,
        q: &RecordQuery,
        as_of: u64,
    ) -> Result<Computed, ServiceError> {
        let case = case.filter(|_| q.call == Call::GetCase);
        let answered = q.as_recorded.unwrap_or(now.time);
        let checked_on = Date::from_micros(answered.0);
        let req = Request { role, purpose: q.purpose, as_effective: q.as_effective, checked_on, answered };
        match q.as_recorded {
            None => Ok(view(state, now.policy, subject, req, as_of, case, now)?),
            Some(t) => {
                let Some(position) = self.position_at(t)?.map(|p| p.min(as_of)) else {
                    return Err(ViewError::UnknownSubject(subject).into());
                };
                let then = self.state_as_recorded(state, subject, position)?;
                Ok(view(&then, then.policy_in_force(), subject, req, position, case, now)?)
            }
        }
    }

    /// A background check by a registered principal (for in-process callers: the demo, tests).
    pub fn background_check(
        &self,
        ledger: &Signer,
        requester: &chronicle_core::PrincipalId,
        purpose: Purpose,
        subject: StreamId,
        authority: Option<String>,
        as_effective: Option<Timestamp>,
    ) -> Result<CheckResponse, ServiceError> {
        let caller = self.caller(requester)?;
        let q = RecordQuery {
            call: Call::BackgroundCheck,
            target: Target::SubjectId(subject),
            purpose,
            authority,
            as_effective,
            as_recorded: None,
        };
        self.read_record(ledger, &caller, q)
    }

    /// The caller a registered principal is.
    pub fn caller(&self, principal: &chronicle_core::PrincipalId) -> Result<Caller, ServiceError> {
        let role = self
            .store()
            .registry()
            .principal(principal)
            .map(|p| p.role)
            .ok_or_else(|| crate::RecordsError::UnknownPrincipal(principal.clone()))?;
        Ok(Caller { principal: principal.clone(), role })
    }

    /// What a role would see of a subject now (or as effective at a time), without logging it:
    /// for the bureau's own tools (the demo, tests), never for a caller.
    pub fn view(
        &self,
        subject: StreamId,
        role: Role,
        purpose: Purpose,
        as_effective: Option<Timestamp>,
    ) -> Result<RecordView, ServiceError> {
        let (state, as_of) = self.snapshot()?;
        let policy = state.policy_in_force();
        let now = Now::at(&state, policy, Timestamp::now());
        let req = Request { role, purpose, as_effective, checked_on: now.checked_on, answered: now.time };
        Ok(view(&state, policy, subject, req, as_of, None, now)?.view)
    }

    /// What a role would have been shown of a subject as recorded at `t` (never more than it is
    /// shown now), without logging it: for the bureau's own tools and tests.
    pub fn view_as_recorded(
        &self,
        subject: StreamId,
        role: Role,
        purpose: Purpose,
        t: Timestamp,
    ) -> Result<RecordView, ServiceError> {
        let (state, as_of) = self.snapshot()?;
        let policy = state.policy_in_force();
        let now = Now::at(&state, policy, Timestamp::now());
        let q = RecordQuery {
            call: Call::GetRecord,
            target: Target::SubjectId(subject),
            purpose,
            authority: None,
            as_effective: None,
            as_recorded: Some(t),
        };
        Ok(self.compute_view(&state, now, subject, None, role, &q, as_of)?.view)
    }

    /// Looks up the ids a writer's command needs (a subject by SID, a case by docket), for a
    /// purpose: ids only, so not a release; a record the purpose shows nothing of is not found.
    pub fn resolve(
        &self,
        ledger: &Signer,
        caller: &Caller,
        target: Target,
        purpose: Purpose,
    ) -> Result<Resolved, ServiceError> {
        let (state, as_of) = self.snapshot()?;
        let policy = state.policy_in_force();
        let found = locate(&state, &target);
        let asked = Asked { records: self, ledger, caller, call: Call::Resolve, purpose: Some(purpose) };
        self.throttle(caller, access::inside_bureau(policy, caller.role))?;
        let grant = access::decide(policy, caller.role, Call::Resolve, Some(purpose))
            .map_err(|r| asked.refused(found.subject, r.0))?;
        access::bound(caller, found.sid.as_deref()).map_err(|r| asked.refused(found.subject, r.0))?;
        let outside = !access::inside_bureau(policy, caller.role);
        let not_found = |subject, why: &str| asked.not_found(outside, subject, &target, why);
        let Some(subject) = found.subject else { return Err(not_found(None, "no such record")) };
        let _ = as_of;
        if grant.logged == Logged::Audit {
            // Not a release (ids only), but the subject's access log shows who looked them up.
            let what = match &target {
                Target::Docket(_) => "the ids of a case, for a command",
                _ => "the id of the subject, for a command",
            };
            self.audit(ledger, caller, Call::Resolve, Some(subject), what.into())?;
        }
        Ok(Resolved { subject, case: found.case })
    }

    /// A page of a record's history for a caller, each entry shown as the policy allows; logged
    /// as a release when the caller is outside the bureau.
    pub fn history_page(&self, ledger: &Signer, caller: &Caller, q: HistoryQuery) -> Result<HistoryPage, ServiceError> {
        check_time("as_recorded_micros", q.as_recorded)?;
        let limit = check_limit("limit", q.limit)?;
        let (state, as_of) = self.snapshot()?;
        let policy = state.policy_in_force();
        let purpose = Some(q.purpose);
        let scope = match &q.target {
            Target::Stream(id) | Target::SubjectId(id) => {
                Scope::of(&state, |s| self.store().stream_version(s).ok().flatten().is_some(), *id)
            }
            Target::Docket(_) | Target::Sid(_) => {
                let found = locate(&state, &q.target);
                match (found.case, found.subject) {
                    (Some(cycle), Some(subject)) => Scope::Case { cycle, subject },
                    (None, Some(subject)) => Scope::Subject(subject),
                    _ => Scope::Unknown,
                }
            }
        };
        let subject = scope.subject();
        let asked = Asked { records: self, ledger, caller, call: Call::History, purpose };
        self.throttle(caller, access::inside_bureau(policy, caller.role))?;
        let grant =
            access::decide(policy, caller.role, Call::History, purpose).map_err(|r| asked.refused(subject, r.0))?;
        let rule = grant.rule.clone().ok_or_else(|| ServiceError::Refused("no policy row".into()))?;
        let sid = subject.and_then(|s| state.subjects.get(&s)).map(|s| s.sid.clone());
        access::bound(caller, sid.as_deref()).map_err(|r| asked.refused(subject, r.0))?;
        let outside = grant.logged == Logged::Release;
        match &scope {
            Scope::Unknown => {
                return Err(asked.not_found(outside, None, &q.target, "no such record"));
            }
            Scope::Expunged(t) if access::notices_shown(&rule) => {
                return Err(ServiceError::Expunged {
                    order_id: t.order_id.clone(),
                    effective: t.effective.0,
                    by: t.author.to_string(),
                });
            }
            Scope::Expunged(_) => {
                let why = "expunged";
                return Err(asked.not_found(outside, None, &q.target, why));
            }
            Scope::System(_) if access::bureau_entry(policy, caller.role) == access::Shown::Withheld => {
                // The ledger's own streams (access logs, the denials log, the registry) are the
                // bureau's: to anyone else they answer as if they did not exist.
                let why = "a stream of the ledger's own";
                return Err(asked.not_found(outside, None, &q.target, why));
            }
            _ => {}
        }
        let mut up_to = q.up_to.unwrap_or(u64::MAX).min(as_of);
        if let Some(t) = q.as_recorded {
            match self.position_at(t)? {
                Some(p) => up_to = up_to.min(p),
                None => {
                    return Err(asked.not_found(outside, subject, &q.target, "nothing recorded by then"));
                }
            }
        }
        let time = Timestamp::now();
        let checked_on = Date::from_micros(time.0);
        let reader = Reader { state: &state, policy, rule: &rule, role: caller.role, checked_on, now: time };
        let (items, next, withheld) = reader.page(self, &scope, q.from, limit, up_to)?;
        let content_hash = items_hash(&items);
        let mut dissemination = None;
        if let (true, Some(subject)) = (outside, subject) {
            let case = match scope {
                Scope::Case { cycle, .. } => Some(cycle.to_hex()),
                _ => None,
            };
            let ev = RecordEvent::RecordDisseminated {
                request_id: hex::encode(chronicle_core::random_array::<8>()),
                requester: caller.principal.to_string(),
                role: caller.role,
                purpose: q.purpose,
                authority: None,
                subject: subject.to_hex(),
                as_of_position: as_of,
                content_hash: content_hash.clone(),
                items: items.iter().map(|i| i.position.to_string()).collect(),
                suppressed: withheld,
                checked_on,
                as_effective: None,
                method: Call::History.name().into(),
                case,
                as_recorded: q.as_recorded.map(|t| t.0),
                page: Some(LoggedPage { from: q.from, limit, up_to }),
                answered_at: Some(time.0),
            };
            dissemination =
                Some(self.record(ledger, access_stream(&subject), &ev, Timestamp::now(), None)?.entries[0].position);
        }
        Ok(HistoryPage { items, next, content_hash, dissemination, withheld })
    }

    /// Authorizes a read of the log itself (a subscription, an inclusion proof, a consistency
    /// proof, a checkpoint), logging it as the policy says; a refusal is logged and returned.
    pub fn log_read(&self, ledger: &Signer, caller: &Caller, call: Call, detail: String) -> Result<(), ServiceError> {
        self.refresh()?;
        let policy = &self.projection().state.policy();
        let asked = Asked { records: self, ledger, caller, call, purpose: None };
        self.throttle(caller, access::inside_bureau(policy, caller.role))?;
        let grant = access::decide(policy, caller.role, call, None).map_err(|r| asked.refused(None, r.0))?;
        if grant.logged == Logged::Audit {
            self.audit(ledger, caller, call, None, detail)?;
        }
        Ok(())
    }

    /// Authorizes and logs an inclusion proof asked for by the leaf hash of an entry the caller
    /// holds; `matches` says whether the entry at that position has that leaf hash. A mismatch
    /// is a refusal ("not found"), logged for callers outside the bureau; a match is logged as an
    /// audit entry.
    pub fn inclusion_check(
        &self,
        ledger: &Signer,
        caller: &Caller,
        position: u64,
        size: u64,
        matches: bool,
    ) -> Result<(), ServiceError> {
        if matches {
            return self.log_read(
                ledger,
                caller,
                Call::InclusionCheck,
                format!("position {position} in tree size {size}"),
            );
        }
        self.refresh()?;
        let policy = &self.projection().state.policy();
        let inside = access::inside_bureau(policy, caller.role);
        self.throttle(caller, inside)?;
        let answer = format!("the entry at position {position} does not have this leaf hash");
        if !inside {
            let asked = Asked { records: self, ledger, caller, call: Call::InclusionCheck, purpose: None };
            if let ServiceError::RefusalNotLogged { error, .. } = asked.refused(None, answer.clone()) {
                return Err(ServiceError::RefusalNotLogged { refusal: answer, error });
            }
        }
        Err(ServiceError::NotFound(answer))
    }

    /// Whether a role is inside the bureau under the policy in force: its reads write nothing
    /// unless refused (the server answers them without a hand-off to its blocking pool).
    pub fn inside_bureau(&self, role: Role) -> bool {
        access::inside_bureau(self.projection().state.policy_in_force(), role)
    }

    /// Logs the refusal of a caller that is not a registered principal with a valid key (no
    /// certificate, an unknown name, revoked keys).
    pub fn refuse_unidentified(
        &self,
        ledger: &Signer,
        claimed: Option<&str>,
        action: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let role = claimed
            .and_then(|c| chronicle_core::PrincipalId::new(c).ok())
            .and_then(|p| self.store().registry().principal(&p).map(|p| p.role));
        let requester = claimed.unwrap_or("(unidentified)");
        self.refuse(ledger, Denial { requester, role, purpose: None, subject: None, action, reason })
    }

    /// Who received a record outside the bureau (28 CFR 20.21(g)(4)), a page at a time, from the
    /// subject's access log in the store. For overseers, and for a subject about their own record.
    pub fn recipients(
        &self,
        ledger: &Signer,
        caller: &Caller,
        q: RecipientsQuery,
    ) -> Result<(Vec<Recipient>, Option<u64>), ServiceError> {
        check_time("since_micros", q.since)?;
        let limit = check_limit("limit", q.limit)?;
        self.refresh()?;
        let state = self.projection().state.clone();
        let policy = state.policy_in_force();
        let found = locate(&state, &q.subject);
        let asked = Asked { records: self, ledger, caller, call: Call::Recipients, purpose: None };
        self.throttle(caller, access::inside_bureau(policy, caller.role))?;
        access::decide(policy, caller.role, Call::Recipients, None).map_err(|r| asked.refused(found.subject, r.0))?;
        access::bound(caller, found.sid.as_deref()).map_err(|r| asked.refused(found.subject, r.0))?;
        let outside = !access::inside_bureau(policy, caller.role);
        let Some(subject) = found.subject else {
            return Err(asked.not_found(outside, None, &q.subject, "no such record"));
        };
        let case = match &q.case {
            None => None,
            Some(d) => {
                match state.cycle_by_docket(d).filter(|c| state.cycles.get(c).is_some_and(|c| c.subject == subject)) {
                    Some(c) => Some(c.to_hex()),
                    None => {
                        let target = Target::Docket(d.clone());
                        return Err(asked.not_found(outside, Some(subject), &target, "no such case"));
                    }
                }
            }
        };
        let stream = access_stream(&subject);
        let mut version = self.store().stream_version_from(&stream, q.from)?;
        let mut out = Vec::new();
        let mut next = None;
        'pages: loop {
            let page = self.store().read_stream(&stream, version, PAGE)?;
            let n = page.len();
            version += n as u64;
            for e in page {
                if out.len() >= limit as usize {
                    next = Some(e.position());
                    break 'pages;
                }
                let Decoded::Event(
                    meta,
                    RecordEvent::RecordDisseminated {
                        requester,
                        role,
                        purpose,
                        method,
                        authority,
                        content_hash,
                        items,
                        case: released_case,
                        ..
                    },
                ) = decode(self.store(), &e)
                else {
                    continue;
                };
                if q.since.is_some_and(|t| meta.recorded < t) {
                    continue;
                }
                if let Some(c) = &case {
                    // A release of the whole record, or of a whole history, included the case.
                    let included = released_case.as_ref() == Some(c)
                        || (released_case.is_none() && method == Call::History.name())
                        || items.iter().any(|i| i.starts_with(&format!("{c}:")));
                    if !included {
                        continue;
                    }
                }
                out.push(Recipient {
                    position: meta.position,
                    recorded: meta.recorded.0,
                    requester,
                    role,
                    purpose,
                    method,
                    authority,
                    content_hash,
                    items,
                    case: released_case,
                });
            }
            if n < PAGE {
                break;
            }
        }
        self.audit(ledger, caller, Call::Recipients, Some(subject), format!("{} release(s) listed", out.len()))?;
        Ok((out, next))
    }

    /// Rebuilds a past release for an overseer, checks it against the hash logged, and logs
    /// that it was reproduced (an audit entry, not a new release). The bytes rebuilt are returned
    /// only to an overseer whose row shows content ([`access::reproduction_shows_content`]); to an
    /// auditor, only whether they match.
    pub fn reproduce_for(&self, ledger: &Signer, caller: &Caller, position: u64) -> Result<Reproduced, ServiceError> {
        self.refresh()?;
        let policy = &self.projection().state.policy();
        let asked = Asked { records: self, ledger, caller, call: Call::Reproduce, purpose: None };
        self.throttle(caller, access::inside_bureau(policy, caller.role))?;
        let grant = access::decide(policy, caller.role, Call::Reproduce, None).map_err(|r| asked.refused(None, r.0))?;
        let (mut r, subject) = self.reproduce_with_subject(position)?;
        if !access::reproduction_shows_content(&grant) {
            r.bytes = Vec::new();
        }
        let detail = format!(
            "release at position {position} ({}): {}",
            r.method,
            if r.matches() {
                "the bytes rebuilt match the hash logged"
            } else {
                "the bytes rebuilt DIFFER from the hash logged"
            }
        );
        let subject = subject.filter(|s| self.projection().state.subjects.contains_key(s));
        self.audit(ledger, caller, Call::Reproduce, subject, detail)?;
        Ok(r)
    }

    /// Recomputes a logged release by replaying the log to the position it was answered at.
    pub fn reproduce(&self, position: u64) -> Result<Reproduced, ServiceError> {
        self.reproduce_with_subject(position).map(|(r, _)| r)
    }

    fn reproduce_with_subject(&self, position: u64) -> Result<(Reproduced, Option<StreamId>), ServiceError> {
        let e = self
            .store()
            .entry(position)?
            .ok_or_else(|| ServiceError::NotFound(format!("no entry at position {position}")))?;
        let Decoded::Event(
            _,
            RecordEvent::RecordDisseminated {
                role,
                purpose,
                subject,
                as_of_position,
                content_hash,
                checked_on,
                as_effective,
                as_recorded,
                case,
                method,
                page,
                answered_at,
                ..
            },
        ) = decode(self.store(), &e)
        else {
            return Err(ServiceError::NotFound(format!("no release logged at position {position}")));
        };
        let subject = StreamId::from_hex(&subject).ok_or_else(|| ServiceError::NotFound("subject".into()))?;
        let answered_at = Timestamp(answered_at.unwrap_or(e.header.recorded_time.0));
        let projection = self.projection().state.clone();
        let now_state = self.state_as_recorded(&projection, subject, as_of_position)?;
        let policy = now_state.policy_in_force();
        let bytes = if method == Call::History.name() {
            let page =
                page.ok_or_else(|| ServiceError::NotFound(format!("the history release at {position} names no page")))?;
            let rule = policy
                .rule(role, purpose)
                .cloned()
                .ok_or_else(|| ServiceError::NotFound("the policy of the time has no row for the release".into()))?;
            let scope = match case.as_deref().and_then(StreamId::from_hex) {
                Some(cycle) => Scope::Case { cycle, subject },
                None => Scope::Subject(subject),
            };
            let reader = Reader { state: &now_state, policy, rule: &rule, role, checked_on, now: answered_at };
            let (items, _, _) = reader.page(self, &scope, page.from, page.limit, page.up_to)?;
            serde_json::to_vec(&items).map_err(|e| ServiceError::Persist(e.to_string()))?
        } else {
            let call = match method.as_str() {
                "get_case" => Call::GetCase,
                "get_record" => Call::GetRecord,
                _ => Call::BackgroundCheck,
            };
            let now = Now { state: &now_state, policy, checked_on, time: answered_at };
            let q = RecordQuery {
                call,
                target: Target::SubjectId(subject),
                purpose,
                authority: None,
                as_effective: as_effective.map(Timestamp),
                as_recorded: as_recorded.map(Timestamp),
            };
            let case = case.as_deref().and_then(StreamId::from_hex);
            let computed = self.compute_view(&now_state, now, subject, case, role, &q, as_of_position)?;
            computed.view.to_bytes()
        };
        let hash = blake3::hash(&bytes).to_hex().to_string();
        Ok((Reproduced { position, method, bytes, content_hash: hash, logged_hash: content_hash }, Some(subject)))
    }

    /// The state of a subject's record exactly as the ledger showed it after `position`: its
    /// identity, every case ever attributed to it (as `state` knows them), and the policy.
    pub fn state_as_recorded(&self, state: &State, subject: StreamId, position: u64) -> Result<State, ServiceError> {
        let mut streams = vec![subject, policy_stream()];
        if let Some(s) = state.subjects.get(&subject) {
            streams.extend(s.cycles_ever.iter().copied());
        }
        let entries = self.entries_of(&streams, position)?;
        let decoded: Vec<Decoded> = entries.par_iter().map(|e| decode(self.store(), e)).collect();
        let mut out = State::new();
        apply_all(&mut out, decoded, None);
        Ok(out)
    }

    fn entries_of(&self, streams: &[StreamId], up_to: u64) -> Result<Vec<Entry>, ServiceError> {
        let mut all = Vec::new();
        for s in streams {
            let mut from = 0;
            loop {
                let page = self.store().read_stream(s, from, PAGE)?;
                let n = page.len();
                let before = all.len();
                all.extend(page.into_iter().filter(|e| e.position() <= up_to));
                if n < PAGE || all.len() - before < n {
                    break;
                }
                from += n as u64;
            }
        }
        all.sort_by_key(Entry::position);
        all.dedup_by_key(|e| e.position());
        Ok(all)
    }

    /// The last position whose recorded time is at or before `t` (`None` if the log starts later).
    pub fn position_at(&self, t: Timestamp) -> Result<Option<u64>, ServiceError> {
        let len = self.store().head().len;
        let (mut lo, mut hi) = (0u64, len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.store().entry(mid)?.ok_or_else(|| ServiceError::NotFound(format!("position {mid}")))?;
            if e.header.recorded_time <= t { lo = mid + 1 } else { hi = mid }
        }
        Ok(lo.checked_sub(1))
    }

    /// Logs the release of an evidence bundle with content to a recipient, after checking that
    /// the policy lets the recipient receive every entry of the stream with its content. `build`
    /// makes the bundle and returns it with exactly the bytes handed over; the release is logged
    /// with their hash before they are returned. A bundle without content (entries, proofs) is a
    /// log-level read, logged as an audit entry.
    pub fn export_evidence<T>(
        &self,
        ledger: &Signer,
        export: &EvidenceExport,
        build: impl FnOnce() -> Result<(T, Vec<u8>), ServiceError>,
    ) -> Result<(T, Vec<u8>), ServiceError> {
        let EvidenceExport { recipient, purpose, authority, stream, with_content } = export;
        let (recipient, purpose, stream, with_content) = (recipient, *purpose, *stream, *with_content);
        check_authority(authority.as_deref())?;
        let (state, as_of) = self.snapshot()?;
        let policy = state.policy_in_force();
        let scope = Scope::of(&state, |s| self.store().stream_version(s).ok().flatten().is_some(), stream);
        let subject = scope.subject();
        // A record's entries with their content are a release of the record; anything else (the
        // entries alone, a stream of the ledger's own) is a read of the log.
        let call = if with_content && subject.is_some() { Call::EvidenceExport } else { Call::InclusionProof };
        let asked = Asked { records: self, ledger, caller: recipient, call, purpose: Some(purpose) };
        let grant =
            access::decide(policy, recipient.role, call, Some(purpose)).map_err(|r| asked.refused(subject, r.0))?;
        let target = Target::Stream(stream);
        match &scope {
            Scope::Unknown | Scope::Expunged(_) => {
                return Err(ServiceError::NotFound(target.not_found()));
            }
            Scope::System(_)
                if with_content && access::bureau_entry(policy, recipient.role) == access::Shown::Withheld =>
            {
                let reason = "only the bureau receives the ledger's own streams with content".to_string();
                return Err(asked.refused(None, reason));
            }
            _ => {}
        }
        if let (true, Some(rule), Scope::Subject(_) | Scope::Case { .. }) = (with_content, &grant.rule, &scope) {
            // Every entry goes out with its content: the recipient must be shown each in full.
            let time = Timestamp::now();
            let checked_on = Date::from_micros(time.0);
            let reader = Reader { state: &state, policy, rule, role: recipient.role, checked_on, now: time };
            let mut from = 0;
            loop {
                let (items, next, withheld) = reader.page(self, &scope, from, LIST_PAGE_ITEMS_MAX, as_of)?;
                if withheld > 0 || items.iter().any(|i| i.event.is_none() && !i.destroyed) {
                    let reason = "the policy withholds some of this record's entries from the recipient".to_string();
                    return Err(asked.refused(subject, reason));
                }
                match next {
                    Some(n) => from = n,
                    None => break,
                }
            }
        }
        let (built, bytes) = build()?;
        let content_hash = blake3::hash(&bytes).to_hex().to_string();
        match (with_content, subject) {
            (true, Some(subject)) => {
                let ev = RecordEvent::RecordDisseminated {
                    request_id: hex::encode(chronicle_core::random_array::<8>()),
                    requester: recipient.principal.to_string(),
                    role: recipient.role,
                    purpose,
                    authority: authority.clone(),
                    subject: subject.to_hex(),
                    as_of_position: as_of,
                    content_hash,
                    items: vec![stream.to_hex()],
                    suppressed: 0,
                    checked_on: today(),
                    as_effective: None,
                    method: Call::EvidenceExport.name().into(),
                    case: matches!(scope, Scope::Case { .. }).then(|| stream.to_hex()),
                    as_recorded: None,
                    page: None,
                    answered_at: None,
                };
                self.record(ledger, access_stream(&subject), &ev, Timestamp::now(), None)?;
            }
            _ => {
                let detail = format!(
                    "evidence bundle of stream {stream} {} content for {}, blake3 {content_hash}",
                    if with_content { "with" } else { "without" },
                    recipient.principal
                );
                self.audit(ledger, recipient, call, subject, detail)?;
            }
        }
        Ok((built, bytes))
    }
}
