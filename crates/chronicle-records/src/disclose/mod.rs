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
//! record not found is a clerk's typing and is not logged. A caller outside the bureau over its
//! rate of logged refusals is refused every call before step 3 (see `refusals`).
//!
//! By call: `record` (records, background checks, cases, look-ups of ids for a command, states as
//! recorded), `crate::history` (history pages), `oversight` (recipients, reproductions), `log`
//! (log-level reads, evidence bundles, unidentified callers).

mod log;
mod oversight;
mod record;

pub use log::EvidenceExport;
pub use oversight::{Recipient, RecipientsQuery, Reproduced};
pub use record::{CheckResponse, RecordQuery, Resolved};

use chronicle_core::limits::{AUTHORITY_LEN_MAX, LIST_PAGE_ITEMS_DEFAULT, LIST_PAGE_ITEMS_MAX, TIME_MICROS_MAX};
use chronicle_core::{Role, Signer, StreamId, Timestamp};

use crate::access::{self, Call, Caller};
use crate::date::Date;
use crate::model::{Purpose, RecordEvent, access_stream, audit_stream};
use crate::refusals::Denial;
use crate::service::{Records, ServiceError};
use crate::state::State;
use crate::view::Now;

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
pub(crate) struct Located {
    pub(crate) subject: Option<StreamId>,
    pub(crate) case: Option<StreamId>,
    pub(crate) sid: Option<String>,
}

pub(crate) fn locate(state: &State, target: &Target) -> Located {
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

pub(crate) fn check_time(field: &'static str, t: Option<Timestamp>) -> Result<(), ServiceError> {
    match t {
        Some(t) if t.0 < 0 => Err(ServiceError::BadField { field, reason: "must not be negative".into() }),
        Some(t) if t.0 > TIME_MICROS_MAX => Err(ServiceError::BadField {
            field,
            reason: format!("must be at most {TIME_MICROS_MAX} (the end of 9999-12-31)"),
        }),
        _ => Ok(()),
    }
}

pub(crate) fn check_authority(authority: Option<&str>) -> Result<(), ServiceError> {
    match authority {
        Some(a) if a.len() > AUTHORITY_LEN_MAX => Err(ServiceError::BadField {
            field: "authority",
            reason: format!("{} bytes exceed the limit of {AUTHORITY_LEN_MAX}", a.len()),
        }),
        _ => Ok(()),
    }
}

pub(crate) fn check_limit(field: &'static str, limit: u32) -> Result<u32, ServiceError> {
    match limit {
        0 => Ok(LIST_PAGE_ITEMS_DEFAULT),
        n if n > LIST_PAGE_ITEMS_MAX => Err(ServiceError::PageTooLarge { field, asked: n, max: LIST_PAGE_ITEMS_MAX }),
        n => Ok(n),
    }
}

/// One call being answered: who asks, for what, and how its refusals are logged.
pub(crate) struct Asked<'a> {
    pub(crate) records: &'a Records,
    pub(crate) ledger: &'a Signer,
    pub(crate) caller: &'a Caller,
    pub(crate) call: Call,
    pub(crate) purpose: Option<Purpose>,
}

impl Asked<'_> {
    /// Logs a refusal and returns it.
    pub(crate) fn refused(&self, subject: Option<StreamId>, reason: String) -> ServiceError {
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
    pub(crate) fn not_found(
        &self,
        outside: bool,
        subject: Option<StreamId>,
        target: &Target,
        why: &str,
    ) -> ServiceError {
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

pub(crate) fn today() -> Date {
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
    pub(crate) fn audit(
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
    pub(crate) fn snapshot(&self) -> Result<(State, u64), ServiceError> {
        self.refresh()?;
        let p = self.projection();
        Ok((p.state.clone(), p.next.saturating_sub(1)))
    }

    /// Whether a role is inside the bureau under the policy in force: its reads write nothing
    /// unless refused (the server answers them without a hand-off to its blocking pool).
    pub fn inside_bureau(&self, role: Role) -> bool {
        access::inside_bureau(self.projection().state.policy_in_force(), role)
    }
}
