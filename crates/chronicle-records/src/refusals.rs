//! Refusals, logged: every refused request is written to the access log by the ledger, in the
//! access log of the subject it concerns when that subject exists, and otherwise in the one
//! denials stream. A request naming a subject that does not exist creates no stream and no key.
//!
//! Each refusal is a durable append, so a caller refused in a loop could grow the log without
//! bound. Refusals (and the audit entries of callers outside the bureau) are therefore logged one
//! by one up to a rate per requester (a token bucket: [`REFUSALS_LOGGED_BURST`] at once,
//! [`REFUSALS_LOGGED_PER_MINUTE`] a minute after that). A requester over its rate is refused
//! every call, before anything is looked up, until its bucket refills: nothing it asks while its
//! refusals are not logged one by one can tell it anything. Those refusals are counted and logged
//! together as one entry of the denials stream (`repeated` says how many) by
//! [`Records::flush_refusals`], which the server calls every few seconds and at shutdown.
//! Registered principals have a bucket each; callers that name no registered principal share
//! one, so the set of buckets is bounded by the registry. The bureau's own roles are not limited.

use std::collections::BTreeMap;
use std::time::Instant;

use chronicle_core::limits::{REFUSALS_LOGGED_BURST, REFUSALS_LOGGED_PER_MINUTE};
use chronicle_core::{Role, Signer, StreamId, Timestamp};

use crate::model::{Purpose, RecordEvent, access_stream, denials_stream};
use crate::service::{Records, ServiceError};

/// The bucket of every caller that names no registered principal.
const UNREGISTERED: &str = "(unregistered)";

/// A refused request, as the access log records it.
#[derive(Debug, Clone)]
pub struct Denial<'a> {
    /// Who asked: a principal id, or what an unidentified caller claimed.
    pub requester: &'a str,
    /// Their role, when they are a registered principal.
    pub role: Option<Role>,
    /// For what purpose, if one was stated.
    pub purpose: Option<Purpose>,
    /// Whose record, if it names one that exists.
    pub subject: Option<StreamId>,
    /// What was asked for (`get_record`, `history`, `submit records.arrest_recorded`, ...).
    pub action: &'a str,
    /// Why it was refused.
    pub reason: &'a str,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    filled: Instant,
    /// Refusals not logged one by one since the last flush.
    folded: u32,
    role: Option<Role>,
}

/// Token buckets per requester.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    buckets: BTreeMap<String, Bucket>,
}

impl Limiter {
    fn bucket(&mut self, key: &str, role: Option<Role>, now: Instant) -> &mut Bucket {
        let b = self.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: f64::from(REFUSALS_LOGGED_BURST),
            filled: now,
            folded: 0,
            role,
        });
        let rate = f64::from(REFUSALS_LOGGED_PER_MINUTE) / 60.0;
        b.tokens = (b.tokens + now.duration_since(b.filled).as_secs_f64() * rate).min(f64::from(REFUSALS_LOGGED_BURST));
        b.filled = now;
        b
    }

    /// Takes a token for `key` (logging one entry on its own), or counts a folded refusal.
    fn take(&mut self, key: &str, role: Option<Role>, now: Instant) -> bool {
        let b = self.bucket(key, role, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            b.folded = b.folded.saturating_add(1);
            false
        }
    }

    /// Whether `key` is over its rate (no token left); if so, counts a folded refusal. Takes no
    /// token.
    fn over(&mut self, key: &str, role: Option<Role>, now: Instant) -> Option<u64> {
        let b = self.bucket(key, role, now);
        if b.tokens >= 1.0 {
            return None;
        }
        b.folded = b.folded.saturating_add(1);
        let rate = f64::from(REFUSALS_LOGGED_PER_MINUTE) / 60.0;
        Some(((1.0 - b.tokens) / rate).ceil() as u64)
    }

    /// The folded counts to log, emptied.
    fn drain(&mut self) -> Vec<(String, Option<Role>, u32)> {
        let out = self
            .buckets
            .iter_mut()
            .filter(|(_, b)| b.folded > 0)
            .map(|(k, b)| (k.clone(), b.role, std::mem::take(&mut b.folded)))
            .collect();
        // Full buckets with nothing folded carry no state worth keeping.
        self.buckets.retain(|_, b| b.folded > 0 || b.tokens < f64::from(REFUSALS_LOGGED_BURST));
        out
    }

    /// Puts back folded counts that could not be logged.
    fn restore(&mut self, key: &str, role: Option<Role>, folded: u32, now: Instant) {
        let b = self.bucket(key, role, now);
        b.folded = b.folded.saturating_add(folded);
    }
}

impl Records {
    /// The bucket a requester's refusals are counted in.
    fn bucket_key<'a>(&self, requester: &'a str) -> &'a str {
        let registered = chronicle_core::PrincipalId::new(requester)
            .ok()
            .is_some_and(|p| self.store().registry().principal(&p).is_some());
        if registered { requester } else { UNREGISTERED }
    }

    /// Refuses a caller outside the bureau that is over its rate of logged refusals, before its
    /// call looks anything up (the refusal is counted, and logged with the others folded).
    pub(crate) fn throttle(&self, caller: &crate::access::Caller, inside: bool) -> Result<(), ServiceError> {
        if inside {
            return Ok(());
        }
        let key = self.bucket_key(caller.principal.as_str());
        let over = self.limiter().over(key, Some(caller.role), Instant::now());
        match over {
            None => Ok(()),
            Some(retry_after_s) => Err(ServiceError::RateLimited { retry_after_s }),
        }
    }

    /// Takes a token for an audit entry of a caller outside the bureau: over the rate, the call is
    /// refused (and counted) instead of logged.
    pub(crate) fn audit_token(&self, caller: &crate::access::Caller, inside: bool) -> Result<(), ServiceError> {
        if inside || self.limiter().take(self.bucket_key(caller.principal.as_str()), Some(caller.role), Instant::now())
        {
            Ok(())
        } else {
            Err(ServiceError::RateLimited { retry_after_s: 1 })
        }
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Logs a refusal: in the subject's access log when it names an existing subject, else in the
    /// denials stream; folded into a count instead when the requester is over its rate.
    pub fn refuse(&self, ledger: &Signer, d: Denial<'_>) -> Result<(), ServiceError> {
        let key = self.bucket_key(d.requester);
        let logged_alone = self.limiter().take(key, d.role, Instant::now());
        if !logged_alone {
            return Ok(());
        }
        let subject = d.subject.filter(|s| self.projection().state.subjects.contains_key(s));
        let ev = RecordEvent::AccessDenied {
            requester: d.requester.to_string(),
            role: d.role,
            purpose: d.purpose,
            subject: subject.map(|s| s.to_hex()),
            action: Some(d.action.to_string()),
            reason: d.reason.to_string(),
            repeated: 0,
        };
        let stream = subject.map_or_else(denials_stream, |s| access_stream(&s));
        self.record(ledger, stream, &ev, Timestamp::now(), None)?;
        Ok(())
    }

    /// Logs the refusals folded since the last flush: one entry per requester, in the denials
    /// stream. Returns how many entries were written.
    pub fn flush_refusals(&self, ledger: &Signer) -> Result<usize, ServiceError> {
        let mut folded = self.limiter().drain().into_iter();
        let mut n = 0;
        while let Some((requester, role, repeated)) = folded.next() {
            let ev = RecordEvent::AccessDenied {
                requester: requester.clone(),
                role,
                purpose: None,
                subject: None,
                action: None,
                reason: format!("{repeated} further refusal(s) beyond the rate logged one by one"),
                repeated,
            };
            if let Err(e) = self.record(ledger, denials_stream(), &ev, Timestamp::now(), None) {
                // Not logged: kept for the next flush, with the rest.
                let mut l = self.limiter();
                let now = Instant::now();
                l.restore(&requester, role, repeated, now);
                for (requester, role, repeated) in folded {
                    l.restore(&requester, role, repeated, now);
                }
                return Err(e);
            }
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_logged_one_by_one_then_folded_then_refilled() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let alone = (0..REFUSALS_LOGGED_BURST + 10).filter(|_| l.take("p", None, t0)).count();
        assert_eq!(alone, REFUSALS_LOGGED_BURST as usize);
        assert_eq!(l.drain(), vec![("p".to_string(), None, 10)]);
        assert!(l.drain().is_empty(), "drained once");
        // A minute later the bucket holds a minute's worth again.
        let later = t0 + std::time::Duration::from_secs(60);
        let alone = (0..REFUSALS_LOGGED_BURST).filter(|_| l.take("p", None, later)).count();
        assert_eq!(alone, REFUSALS_LOGGED_PER_MINUTE.min(REFUSALS_LOGGED_BURST) as usize);
        // Over the rate, a call is refused (and counted) without taking a token.
        let mut l = Limiter::default();
        for _ in 0..REFUSALS_LOGGED_BURST {
            assert!(l.take("p", None, t0));
        }
        assert!(l.over("p", None, t0).is_some());
        assert_eq!(l.drain(), vec![("p".to_string(), None, 1)]);
        assert!(l.over("q", None, t0).is_none(), "a requester with tokens is not over");
        // Another requester has a bucket of its own.
        assert!(l.take("q", None, later));
    }
}
