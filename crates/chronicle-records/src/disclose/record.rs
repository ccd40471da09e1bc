//! Reads of a record or of one case of it (records, background checks, cases), the look-ups of
//! ids for a writer's command, and the states of a record as recorded at a past time.

use chronicle_core::{Entry, Role, Signer, StreamId, Timestamp};
use rayon::prelude::*;

use crate::access::{self, Call, Caller, Logged};
use crate::date::Date;
use crate::model::{Purpose, RecordEvent, access_stream, policy_stream};
use crate::service::{Decoded, PAGE, Records, ServiceError, apply_all, decode};
use crate::state::State;
use crate::view::{Computed, Now, RecordView, Request, ViewError, view};

use super::{Asked, Target, check_authority, check_time, locate};

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

/// Ids found for a writer's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The subject.
    pub subject: StreamId,
    /// The case, when a docket was named.
    pub case: Option<StreamId>,
}

impl Records {
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
    pub(super) fn compute_view(
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

    /// The state of a subject's record exactly as the ledger showed it after `position`: its
    /// identity, every case ever attributed to it (as `state` knows them), and the policy.
    pub fn state_as_recorded(&self, state: &State, subject: StreamId, position: u64) -> Result<State, ServiceError> {
        let mut streams = vec![subject, policy_stream()];
        if let Some(s) = state.subjects.get(&subject) {
            streams.extend(s.cycles_ever.iter().copied());
        }
        let entries = self.entries_of(state, &streams, position)?;
        let decoded: Vec<Decoded> =
            entries.par_iter().map(|e| decode(self.store(), e)).collect::<Result<_, chronicle_store::ReadError>>()?;
        let mut out = State::new();
        apply_all(&mut out, decoded, None);
        Ok(out)
    }

    fn entries_of(&self, state: &State, streams: &[StreamId], up_to: u64) -> Result<Vec<Entry>, ServiceError> {
        let mut all = Vec::new();
        for s in streams {
            let mut from = 0;
            loop {
                let known = state.versions.get(s).copied();
                let page = crate::history::stream_page(self.store(), known, s, from, PAGE)?;
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
}
