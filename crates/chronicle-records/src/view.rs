//! What a requester may see of a subject's record, by the policy in force.
//!
//! A view is computed from the state, the requester's role and purpose, an optional effective
//! time ("as effective at T") and the check date. Its JSON bytes are canonical (fixed field order,
//! items ordered by cycle id and charge number), so computing the same view from the same log
//! prefix gives the same bytes, and their blake3 hash identifies exactly what was released.

use chronicle_core::{Role, StreamId, Timestamp};
use serde::Serialize;

use crate::date::Date;
use crate::model::{DispositionKind, Level, Name, Purpose, ReliefKind, SentenceKind};
use crate::policy::{Access, Policy};
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
    /// Charges the policy withheld from this requester.
    pub suppressed: u32,
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
    /// Item ids shown.
    pub fn items(&self) -> Vec<String> {
        self.cycles.iter().flat_map(|c| c.charges.iter().map(|ch| ch.item.clone())).collect()
    }
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
}

/// Computes a requester's view of a subject under `policy`.
pub fn view(
    state: &State,
    policy: &Policy,
    subject: StreamId,
    req: Request,
    as_of_position: u64,
) -> Result<RecordView, ViewError> {
    let rule = policy.rule(req.role, req.purpose).ok_or(ViewError::Denied { role: req.role, purpose: req.purpose })?;
    let sub = state.subjects.get(&subject).ok_or(ViewError::UnknownSubject(subject))?;
    let at = req.as_effective;
    let on = at.map(|t| Date::from_micros(t.0)).unwrap_or(req.checked_on);
    let recent_from = req.checked_on.plus_years(-policy.non_conviction_reportable_years);
    let mut cycles = Vec::new();
    let mut notices = Vec::new();
    let mut suppressed = 0u32;
    for cid in &sub.cycles {
        let Some(c) = state.cycles.get(cid) else { continue };
        let mut charges = Vec::new();
        let mut content = false;
        for (seq, ch) in &c.charges {
            if c.expunged(*seq, at) {
                continue;
            }
            let restriction = c.restriction(*seq, at);
            let access = match restriction {
                Some(o) if !o.audiences.contains(&req.role) => rule.restricted,
                _ => rule.unrestricted,
            };
            let disposition = ch.disposition(Some(on));
            let shown = match access {
                Access::Full | Access::Metadata => true,
                Access::Reportable => {
                    disposition.is_some_and(|d| d.kind.is_conviction()) || c.arrest_date >= recent_from
                }
                Access::None => false,
            };
            if !shown {
                suppressed += 1;
                continue;
            }
            let mut status = restriction
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
            let item = format!("{}:{seq}", cid.to_hex());
            if access == Access::Metadata {
                charges.push(ChargeView {
                    item,
                    seq: *seq,
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
                seq: *seq,
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
        if rule.expunged == Access::Metadata {
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
    let identity = matches!(rule.unrestricted, Access::Full | Access::Reportable).then(|| IdentityView {
        sid: sub.sid.clone(),
        fbi: sub.fbi.clone(),
        name: sub.name.clone(),
        aliases: sub.aliases.clone(),
        dob: sub.dob,
    });
    Ok(RecordView {
        subject: subject.to_hex(),
        identity,
        cycles,
        notices,
        suppressed,
        as_of_position,
        as_effective: at.map(|t| t.0),
        checked_on: req.checked_on,
        policy_version: policy.version,
    })
}
