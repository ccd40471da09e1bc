//! Reads of the log itself (subscriptions, inclusion proofs, consistency proofs, checkpoints),
//! evidence bundles for a recipient, and the refusals of callers who are no registered principal.

use chronicle_core::limits::LIST_PAGE_ITEMS_MAX;
use chronicle_core::{Signer, StreamId, Timestamp};

use crate::access::{self, Call, Caller, Logged};
use crate::date::Date;
use crate::history::{Reader, Scope};
use crate::model::{Purpose, RecordEvent, access_stream};
use crate::refusals::Denial;
use crate::service::{Records, ServiceError};

use super::{Asked, Target, check_authority, today};

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

impl Records {
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
            // An expunged record's entries are opaque, but they are still the log's: without
            // content they go out as a read of the log (with the orders that emptied them).
            Scope::Unknown => return Err(ServiceError::NotFound(target.not_found())),
            Scope::Expunged(_) if with_content => {
                let reason = "an expunged record has no content left to release: export it without content".to_string();
                return Err(asked.refused(None, reason));
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
