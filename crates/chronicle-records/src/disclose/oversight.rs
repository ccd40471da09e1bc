//! The bureau's questions about releases: who received a record (28 CFR 20.21(g)(4)), and what
//! exactly one release held, rebuilt by replay and checked against the hash it logged.

use chronicle_core::{Role, Signer, StreamId, Timestamp};

use crate::access::{self, Call, Caller};
use crate::history::{Reader, Scope};
use crate::model::{Purpose, RecordEvent, access_stream};
use crate::service::{Decoded, PAGE, Records, ServiceError, decode};
use crate::view::Now;

use super::record::RecordQuery;
use super::{Asked, Target, check_limit, check_time, locate};

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

impl Records {
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
            let known = self.projection().state.versions.get(&stream).copied();
            let page = crate::history::stream_page(self.store(), known, &stream, version, PAGE)?;
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
                ) = decode(self.store(), &e)?
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
        ) = decode(self.store(), &e)?
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
}
