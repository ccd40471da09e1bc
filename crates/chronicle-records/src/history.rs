//! Histories: a record's entries in log order, one page at a time, each shown as far as the
//! policy lets the caller see what it concerns.
//!
//! A page is read from the store stream by stream (a subject's identity, its access log and its
//! cases; or one case), merged by position, from a position and up to a limit: a history is never
//! loaded whole. Each entry is shown with its content, as metadata (who, when, what kind) or not
//! at all, by [`crate::access`]: the least of the row's history column and what the row shows of
//! every charge the entry concerns, under the restrictions in force when the request is answered.
//! An entry the caller may not see is absent, not marked.
//!
//! A case moved to another person (a wrong attribution corrected) belongs to that person's
//! history whole; in the history of the person it was wrongly attributed to, its entries up to
//! the move are shown to the bureau only.

use std::collections::VecDeque;

use chronicle_core::{Entry, Role, StreamId};
use serde::Serialize;

use crate::access::{self, Call, Caller, Logged, Shown};
use crate::date::Date;
use crate::disclose::{Asked, Target, check_limit, check_time, locate};
use crate::model::{HistoryPage as LoggedPage, Purpose};
use crate::model::{RecordEvent, Scope as OrderScope, access_stream, policy_stream};
use crate::policy::{Policy, Rule};
use crate::service::{Decoded, Records, ServiceError, decode};
use crate::state::{Cycle, State, Tombstone};
use chronicle_core::{Signer, Timestamp};

/// One entry of a history, in words a person can follow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryItem {
    /// Position in the log.
    pub position: u64,
    /// When the ledger recorded it (µs).
    pub recorded: i64,
    /// When it took effect (µs).
    pub effective: i64,
    /// The stream.
    pub stream: String,
    /// The event type.
    pub event_type: String,
    /// Who submitted it.
    pub author: String,
    /// The author's role.
    pub role: Option<Role>,
    /// The authority named.
    pub court_order: Option<String>,
    /// The event, where the caller sees content and it still exists.
    pub event: Option<serde_json::Value>,
    /// Whether the entry's content was destroyed (by an expungement order).
    pub destroyed: bool,
}

/// One page of a history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The entries shown, in log order.
    pub items: Vec<HistoryItem>,
    /// Where the next page starts, if there may be more.
    pub next: Option<u64>,
    /// blake3 over the items' canonical JSON, hex: what a release logs.
    pub content_hash: String,
    /// Where the release was logged, for callers outside the bureau.
    pub dissemination: Option<u64>,
    /// Entries left out (withheld from this caller), for the dissemination entry.
    pub withheld: u32,
}

/// What a history names, as found in a state.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// A subject's record.
    Subject(StreamId),
    /// One case, attributed to a subject now.
    Case { cycle: StreamId, subject: StreamId },
    /// A stream of the ledger's own (the registry, the policy, the destruction log, ...).
    System(StreamId),
    /// An expunged case or subject: its order is all that remains.
    Expunged(Tombstone),
    /// Nothing by that id.
    Unknown,
}

impl Scope {
    pub(crate) fn of(state: &State, store_has: impl Fn(&StreamId) -> bool, stream: StreamId) -> Scope {
        if state.subjects.contains_key(&stream) {
            return Scope::Subject(stream);
        }
        if let Some(c) = state.cycles.get(&stream) {
            return Scope::Case { cycle: stream, subject: c.subject };
        }
        if let Some(t) = tombstone(state, &stream) {
            return Scope::Expunged(t);
        }
        if store_has(&stream) { Scope::System(stream) } else { Scope::Unknown }
    }

    /// The subject whose record this is.
    pub(crate) fn subject(&self) -> Option<StreamId> {
        match self {
            Scope::Subject(s) | Scope::Case { subject: s, .. } => Some(*s),
            _ => None,
        }
    }
}

/// The expungement that covers a case or subject, if any: the order only, never content.
pub(crate) fn tombstone(state: &State, target: &StreamId) -> Option<Tombstone> {
    state
        .expunged
        .get(target)
        .cloned()
        .or_else(|| state.expunged.values().find(|t| t.streams.contains(target)).cloned())
}

/// Which stream a history reads, and which positions of it belong to the history.
struct Source {
    stream: StreamId,
    /// Positions of the stream in the history: from, to (inclusive).
    window: (u64, u64),
    /// Shown to the bureau only (a case's entries in the history of someone it was moved from).
    bureau_only: bool,
}

fn sources(state: &State, scope: &Scope) -> Vec<Source> {
    let all = (0, u64::MAX);
    let src = |stream, window, bureau_only| Source { stream, window, bureau_only };
    match scope {
        Scope::Subject(s) => {
            let mut out = vec![src(*s, all, false), src(access_stream(s), all, false)];
            for cid in
                state.subjects.get(s).map(|sub| sub.cycles_ever.iter().copied().collect::<Vec<_>>()).unwrap_or_default()
            {
                let Some(c) = state.cycles.get(&cid) else { continue };
                if c.subject == *s {
                    out.push(src(cid, all, false));
                } else if let Some(moved) = c.reassignments.iter().rev().find(|r| r.from == *s) {
                    out.push(src(cid, (0, moved.position), true));
                }
            }
            out
        }
        Scope::Case { cycle, .. } => vec![src(*cycle, all, false)],
        Scope::System(s) => vec![src(*s, all, true)],
        Scope::Expunged(_) | Scope::Unknown => vec![],
    }
}

/// The charges of a case an event concerns (every charge, for what concerns the whole case).
fn concerned(ev: &RecordEvent, cycle: &Cycle) -> Vec<u32> {
    let all = || cycle.charges.keys().copied().collect();
    match ev {
        RecordEvent::ArrestRecorded { charges, .. } => charges.iter().map(|c| c.seq).collect(),
        RecordEvent::ChargeFiled { charge } | RecordEvent::ChargeAmended { charge, .. } => vec![charge.seq],
        RecordEvent::DispositionRecorded { seq, .. }
        | RecordEvent::DispositionCorrected { seq, .. }
        | RecordEvent::SentenceImposed { seq, .. } => vec![*seq],
        RecordEvent::ReliefOrdered { scope: OrderScope::Charges(seqs), .. } => seqs.clone(),
        RecordEvent::RestrictionVacated { order_id, .. } => {
            match cycle.orders.iter().rev().find(|o| &o.order_id == order_id).map(|o| &o.scope) {
                Some(OrderScope::Charges(seqs)) => seqs.clone(),
                _ => all(),
            }
        }
        _ => all(),
    }
}

/// How a page is computed: by whom, under which policy, against which state.
pub(crate) struct Reader<'a> {
    pub(crate) state: &'a State,
    pub(crate) policy: &'a Policy,
    pub(crate) rule: &'a Rule,
    pub(crate) role: Role,
    pub(crate) checked_on: crate::date::Date,
    pub(crate) now: chronicle_core::Timestamp,
}

impl Reader<'_> {
    /// What the caller sees of one entry: every decision is the access module's.
    fn shown(&self, source: &Source, decoded: &Decoded) -> Shown {
        let ceiling = access::history_ceiling(self.rule);
        let bureau = access::bureau_entry(self.policy, self.role);
        if source.bureau_only && bureau == Shown::Withheld {
            return Shown::Withheld;
        }
        let item = match decoded {
            Decoded::Unreadable(_) => access::destroyed_entry(self.rule),
            Decoded::Other => bureau,
            Decoded::Event(meta, ev) => {
                if meta.stream == policy_stream() {
                    Shown::Content
                } else if matches!(ev, RecordEvent::ReliefOrdered { kind: crate::model::ReliefKind::Expunge, .. })
                    || matches!(ev, RecordEvent::CycleRestated { .. })
                {
                    access::expungement_entry(self.rule)
                } else if let Some(c) = self.state.cycles.get(&meta.stream) {
                    let clock = access::Clock { at: None, checked_on: self.checked_on, now: self.now };
                    let seqs: Vec<u32> = concerned(ev, c).into_iter().filter(|s| c.charges.contains_key(s)).collect();
                    if seqs.is_empty() {
                        access::case_entry(self.rule)
                    } else {
                        seqs.iter()
                            .map(|seq| {
                                access::shown(self.policy, self.rule, self.role, c, *seq, &c.charges[seq], clock)
                            })
                            .min()
                            .unwrap_or(Shown::Withheld)
                    }
                } else if self.state.subjects.contains_key(&meta.stream) {
                    access::identity_entry(self.rule)
                } else {
                    // The access log (who received the record, who was refused), the ledger's own.
                    bureau
                }
            }
        };
        item.min(ceiling)
    }

    /// A page of the history of `scope`: entries at positions `from..=up_to`, at most `limit`
    /// shown.
    pub(crate) fn page(
        &self,
        records: &Records,
        scope: &Scope,
        from: u64,
        limit: u32,
        up_to: u64,
    ) -> Result<(Vec<HistoryItem>, Option<u64>, u32), ServiceError> {
        const CHUNK: usize = 64;
        let store = records.store();
        let registry = store.registry();
        struct Cursor {
            source: Source,
            version: u64,
            buf: VecDeque<Entry>,
            done: bool,
        }
        let mut cursors = Vec::new();
        for source in sources(self.state, scope) {
            let start = from.max(source.window.0);
            let version = store.stream_version_from(&source.stream, start)?;
            cursors.push(Cursor { source, version, buf: VecDeque::new(), done: false });
        }
        let (mut items, mut withheld) = (Vec::new(), 0u32);
        loop {
            // Refill, then take the cursor whose next entry comes first.
            for c in cursors.iter_mut().filter(|c| c.buf.is_empty() && !c.done) {
                let known = self.state.versions.get(&c.source.stream).copied();
                let page = stream_page(store, known, &c.source.stream, c.version, CHUNK)?;
                c.done = page.len() < CHUNK;
                c.version += page.len() as u64;
                let end = c.source.window.1.min(up_to);
                let before = page.len();
                c.buf.extend(page.into_iter().filter(|e| e.position() <= end));
                c.done |= c.buf.len() < before;
            }
            let Some(i) = (0..cursors.len())
                .filter(|i| !cursors[*i].buf.is_empty())
                .min_by_key(|i| cursors[*i].buf.front().map(Entry::position))
            else {
                return Ok((items, None, withheld));
            };
            let e = cursors[i].buf.pop_front().expect("the cursor chosen has an entry");
            if e.position() < from {
                continue;
            }
            let decoded = decode(store, &e)?;
            let shown = self.shown(&cursors[i].source, &decoded);
            if shown == Shown::Withheld {
                // Entries withheld after a full page are not this page's: they are neither counted
                // nor pointed at (the next page starts at the next entry the caller may see).
                if items.len() < limit as usize {
                    withheld += 1;
                }
                continue;
            }
            if items.len() >= limit as usize {
                return Ok((items, Some(e.position()), withheld));
            }
            let st = &e.statement;
            let event = match (&decoded, shown) {
                (Decoded::Event(_, ev), Shown::Content) => serde_json::to_value(ev).ok(),
                _ => None,
            };
            items.push(HistoryItem {
                position: e.position(),
                recorded: e.header.recorded_time.0,
                effective: st.effective_time.0,
                stream: st.stream.to_hex(),
                event_type: st.event_type.as_str().to_string(),
                author: st.author.to_string(),
                role: registry.principal(&st.author).map(|p| p.role),
                court_order: st.refs.court_order.clone(),
                event,
                destroyed: matches!(decoded, Decoded::Unreadable(_)),
            });
        }
    }
}

/// blake3 over the items' canonical JSON, hex.
pub fn items_hash(items: &[HistoryItem]) -> String {
    // Plain data: serializing cannot fail.
    blake3::hash(&serde_json::to_vec(items).expect("history items serialize")).to_hex().to_string()
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

impl Records {
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
}

/// A page of a stream read through the store's index (which checks each entry it names, and that
/// versions run without a gap) and, when the page reaches the end of the index, a check that the
/// index reaches the stream's last version as the projection knows it: an index that lost its
/// last keys would otherwise end a history early (a seal order, a dismissal left out). `known`
/// is the projection's version of the stream; the log may have more, never fewer.
pub(crate) fn stream_page(
    store: &chronicle_store::Store,
    known: Option<u64>,
    stream: &chronicle_core::StreamId,
    from: u64,
    limit: usize,
) -> Result<Vec<Entry>, ServiceError> {
    let page = store.read_stream(stream, from, limit)?;
    if page.len() < limit
        && let Some(known) = known
    {
        let reached = (from + page.len() as u64).checked_sub(1);
        if reached.is_none_or(|r| r < known) {
            let reason = format!("the index of stream {stream} ends before version {known}, which the log holds");
            return Err(store.report_damage('s', reason).into());
        }
    }
    Ok(page)
}
