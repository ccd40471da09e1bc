//! What a requester may see of a subject's record, as [`crate::access`] decides.
//!
//! A view is computed from the state, the requester's role and purpose, an optional effective
//! time ("as effective at T") and the check date, and is capped by the restrictions and policy in
//! force when the request is answered ([`Now`]): an as-of view selects which state of the record
//! is shown, never more than is shown now. Its JSON bytes are canonical (fixed field order, cases
//! by arrest date, charges by number), so computing the same view from the same log prefix gives
//! the same bytes, and their blake3 hash identifies exactly what was released.
//!
//! A requester from whom the policy may withhold items sees charges numbered 1, 2, ... as shown
//! (item ids `case:n` by that number), and no count of what was withheld: the view is the one
//! they would get had the withheld items never existed. The real item ids and the count go to
//! the dissemination entry ([`Computed`]).

use chronicle_core::{Role, StreamId, Timestamp};
use serde::Serialize;

use crate::access::{self, Clock, Shown};
use crate::date::Date;
use crate::model::{DispositionKind, Level, Name, Purpose, ReliefKind, SentenceKind};
use crate::policy::Policy;
use crate::state::State;

/// The subject's identity as shown.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct IdentityView {
    /// SID.
    pub sid: String,
    /// FBI number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fbi: Option<String>,
    /// Name of record.
    pub name: Name,
    /// Aliases.
    pub aliases: Vec<Name>,
    /// Date of birth.
    pub dob: Date,
}

/// One charge as shown. Content fields are absent from metadata-only views.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ChargeView {
    /// Item id: `cycle:seq`.
    pub item: String,
    /// Sequence number.
    pub seq: u32,
    /// Statute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statute: Option<String>,
    /// NCIC code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offense_code: Option<String>,
    /// Literal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub literal: Option<String>,
    /// Level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// Counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<u32>,
    /// Disposition in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<DispositionKind>,
    /// Its court date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition_date: Option<Date>,
    /// Relief status: `none`, `sealed`, `limited_access`, `set_aside`, plus `vacated` / `pardoned`.
    pub status: String,
    /// Sentences on this charge.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sentences: Vec<SentenceView>,
}

/// A sentence as shown.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct SentenceView {
    /// Kind.
    pub kind: SentenceKind,
    /// Term in days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term_days: Option<u32>,
    /// Amount in cents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<u64>,
    /// Date.
    pub date: Date,
}

/// One cycle as shown.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct CycleView {
    /// Cycle id.
    pub cycle: String,
    /// Tracking number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// Arresting agency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agency_ori: Option<String>,
    /// Arrest date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrest_date: Option<Date>,
    /// Court ORI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub court_ori: Option<String>,
    /// Docket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docket: Option<String>,
    /// Charges shown.
    pub charges: Vec<ChargeView>,
}

/// That an expungement order was carried out, without anything of what it destroyed.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct NoticeView {
    /// The order.
    pub order_id: String,
    /// Its kind (always `expunge`).
    pub kind: ReliefKind,
    /// Effective date.
    pub effective: Date,
    /// Who entered it.
    pub entered_by: String,
}

/// A requester's view of one subject's record.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct RecordView {
    /// Subject id.
    pub subject: String,
    /// Identity, unless the view is metadata only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityView>,
    /// Cycles with at least one charge shown.
    pub cycles: Vec<CycleView>,
    /// Expungements carried out, for roles that may know of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<NoticeView>,
    /// The log position the view was computed at.
    pub as_of_position: u64,
    /// The effective time asked for, if any (microseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_effective: Option<i64>,
    /// The date the check was run on (decides what is recent enough to report).
    pub checked_on: Date,
    /// The policy version applied.
    pub policy_version: u32,
}

impl RecordView {
    /// The canonical bytes of the view.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain data: serializing cannot fail.
        serde_json::to_vec(self).expect("views serialize")
    }
    /// Item ids as shown.
    pub fn items(&self) -> Vec<String> {
        self.cycles.iter().flat_map(|c| c.charges.iter().map(|ch| ch.item.clone())).collect()
    }
}

/// A view and what its dissemination entry records of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Computed {
    /// What the requester gets.
    pub view: RecordView,
    /// The real ids (`case:charge number`) of the items shown.
    pub items: Vec<String>,
    /// How many items the policy withheld.
    pub withheld: u32,
}

/// The restrictions and the policy in force when a request is answered: what they withhold is
/// withheld from a view of any time.
#[derive(Clone, Copy)]
pub struct Now<'a> {
    /// The state now.
    pub state: &'a State,
    /// The policy in force now.
    pub policy: &'a Policy,
    /// The day the request is answered on.
    pub checked_on: Date,
    /// When the request is answered.
    pub time: Timestamp,
}

/// Why a view was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// No policy row lets this role ask for this purpose.
    #[error("the policy lets no {role:?} see records for purpose {purpose:?}")]
    Denied {
        /// Role.
        role: Role,
        /// Purpose.
        purpose: Purpose,
    },
    /// No such subject.
    #[error("no subject {0}")]
    UnknownSubject(StreamId),
    /// The policy withholds every item of the record (or case) from this requester, who must get
    /// the answer an unknown one gets.
    #[error("the policy withholds all {withheld} item(s) from this requester")]
    NothingShown {
        /// How many items were withheld.
        withheld: u32,
    },
}

/// What one requester asks for.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// The requester's role.
    pub role: Role,
    /// The stated purpose.
    pub purpose: Purpose,
    /// "As effective at": orders and dispositions in force at this time.
    pub as_effective: Option<Timestamp>,
    /// The date the check is run on.
    pub checked_on: Date,
    /// The time the view stands for: when the request is answered, or the time asked for "as
    /// recorded" (decides whether a vacatur has taken effect).
    pub answered: Timestamp,
}

/// Computes a requester's view of a subject (or of one case of it) from `state` under `policy`,
/// capped by what `now` shows.
pub fn view(
    state: &State,
    policy: &Policy,
    subject: StreamId,
    req: Request,
    as_of_position: u64,
    case: Option<StreamId>,
    now: Now<'_>,
) -> Result<Computed, ViewError> {
    let role = req.role;
    let denied = ViewError::Denied { role, purpose: req.purpose };
    let rule_now = now.policy.rule(role, req.purpose).ok_or(denied.clone())?;
    // A row missing from the policy of the time asked for shows nothing of that time.
    let rule_then = policy.rule(role, req.purpose);
    let sub = state.subjects.get(&subject).ok_or(ViewError::UnknownSubject(subject))?;
    let at = req.as_effective;
    let on = at.map(|t| Date::from_micros(t.0)).unwrap_or(req.checked_on);
    let then_clock = Clock { at, checked_on: req.checked_on, now: req.answered };
    let now_clock = Clock { at: None, checked_on: now.checked_on, now: now.time };
    let renumber = rule_now.may_withhold() || rule_then.is_none_or(|r| r.may_withhold());
    let mut order: Vec<(Date, StreamId)> = sub
        .cycles
        .iter()
        .filter(|cid| case.is_none_or(|c| c == **cid))
        .filter_map(|cid| state.cycles.get(cid).map(|c| (c.arrest_date, *cid)))
        .collect();
    order.sort();
    let mut cycles = Vec::new();
    let mut notices = Vec::new();
    let mut items = Vec::new();
    let mut withheld = 0u32;
    // A view of the present is its own ceiling: nothing to compute twice.
    let present = std::ptr::eq(state, now.state)
        && std::ptr::eq(policy, now.policy)
        && at.is_none()
        && req.answered == now.time
        && req.checked_on == now.checked_on;
    for (_, cid) in order {
        let Some(c) = state.cycles.get(&cid) else { continue };
        // The case as it stands now, if it is still this subject's.
        let c_now = now.state.cycles.get(&cid).filter(|c| c.subject == subject);
        let mut charges = Vec::new();
        let mut content = false;
        for (seq, ch) in c.charges.iter() {
            let then = rule_then.map_or(Shown::Withheld, |r| access::shown(policy, r, role, c, *seq, ch, then_clock));
            let current = if present {
                then
            } else {
                c_now.and_then(|cn| cn.charges.get(seq).map(|chn| (cn, chn))).map_or(Shown::Withheld, |(cn, chn)| {
                    access::shown(now.policy, rule_now, role, cn, *seq, chn, now_clock)
                })
            };
            let shown = then.min(current);
            if shown == Shown::Withheld {
                if !c.expunged(*seq, at) {
                    withheld += 1;
                }
                continue;
            }
            let mut status = c
                .restriction(*seq, at)
                .map_or("none", |o| match o.kind {
                    ReliefKind::Seal => "sealed",
                    ReliefKind::LimitedAccess => "limited_access",
                    _ => "set_aside",
                })
                .to_string();
            for o in c.orders.iter().filter(|o| o.covers(*seq) && o.in_force(at)) {
                match o.kind {
                    ReliefKind::Vacate => status.push_str(",vacated"),
                    ReliefKind::Pardon => status.push_str(",pardoned"),
                    _ => {}
                }
            }
            items.push(format!("{}:{seq}", cid.to_hex()));
            let number = if renumber { charges.len() as u32 + 1 } else { *seq };
            let item = format!("{}:{number}", cid.to_hex());
            if shown == Shown::Metadata {
                charges.push(ChargeView {
                    item,
                    seq: number,
                    statute: None,
                    offense_code: None,
                    literal: None,
                    level: None,
                    counts: None,
                    disposition: None,
                    disposition_date: None,
                    status,
                    sentences: vec![],
                });
                continue;
            }
            content = true;
            let disposition = ch.disposition(Some(on));
            let sentences = c
                .sentences
                .iter()
                .filter(|s| s.seq == *seq && s.date <= on)
                .map(|s| SentenceView {
                    kind: s.kind,
                    term_days: s.term_days,
                    amount_cents: s.amount_cents,
                    date: s.date,
                })
                .collect();
            charges.push(ChargeView {
                item,
                seq: number,
                statute: Some(ch.spec.statute.clone()),
                offense_code: Some(ch.spec.offense_code.clone()),
                literal: Some(ch.spec.literal.clone()),
                level: Some(ch.spec.level),
                counts: Some(ch.spec.counts),
                disposition: disposition.map(|d| d.kind),
                disposition_date: disposition.map(|d| d.date),
                status,
                sentences,
            });
        }
        if access::notices_shown(rule_now) && rule_then.is_some_and(access::notices_shown) {
            for o in c.orders.iter().filter(|o| o.kind == ReliefKind::Expunge && at.is_none_or(|t| o.effective <= t)) {
                notices.push(NoticeView {
                    order_id: o.order_id.clone(),
                    kind: o.kind,
                    effective: Date::from_micros(o.effective.0),
                    entered_by: o.author.to_string(),
                });
            }
        }
        if charges.is_empty() {
            continue;
        }
        cycles.push(CycleView {
            cycle: cid.to_hex(),
            tracking_number: content.then(|| c.tracking_number.clone()),
            agency_ori: content.then(|| c.agency_ori.clone()),
            arrest_date: content.then_some(c.arrest_date),
            court_ori: c.court.as_ref().filter(|_| content).map(|(o, _)| o.clone()),
            docket: c.court.as_ref().filter(|_| content).map(|(_, d)| d.clone()),
            charges,
        });
    }
    // Withheld means absent: of a record (or case) the row may withhold from, nothing shown is
    // the same as nothing there.
    if renumber && cycles.is_empty() {
        return Err(ViewError::NothingShown { withheld });
    }
    let identity =
        (access::identity_shown(rule_now) && rule_then.is_some_and(access::identity_shown)).then(|| IdentityView {
            sid: sub.sid.clone(),
            fbi: sub.fbi.clone(),
            name: sub.name.clone(),
            aliases: sub.aliases.clone(),
            dob: sub.dob,
        });
    Ok(Computed {
        view: RecordView {
            subject: subject.to_hex(),
            identity,
            cycles,
            notices,
            as_of_position,
            as_effective: at.map(|t| t.0),
            checked_on: req.checked_on,
            policy_version: rule_then.map_or(now.policy.version, |_| policy.version),
        },
        items,
        withheld,
    })
}
