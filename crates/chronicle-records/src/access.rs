//! Who may see what: the one place where every call decides what its caller is given.
//!
//! Every call that reads the ledger for someone (gRPC, the CLI's evidence export) asks this
//! module, with the policy in force (an adopted [`Policy`], which is data in the log) and the
//! orders recorded on each case (their audiences), and nothing else:
//!
//! - [`decide`]: may this role make this call for this purpose, with which row of the policy, and
//!   how is the call logged (a release, an audit entry, or not at all);
//! - [`bound`]: a subject reads only their own record (an attorney's representation is not
//!   recorded yet, so an attorney reads none);
//! - [`shown`] and [`identity_shown`]: what the requester sees of one charge and of the person;
//! - [`may_author`]: which roles may write which records event.
//!
//! The rules it keeps:
//!
//! - **Restrictions in force now govern disclosure now.** A view "as effective at" or "as
//!   recorded at" an earlier time selects which state of the record is shown; what is shown of
//!   each item is the lesser of what the policy allows under the restrictions in force now and
//!   under those of the time asked for. An as-of read can narrow a view, never widen it.
//! - **Withheld means absent.** A requester whose row may withhold items gets charges numbered as
//!   shown (no gap where a withheld one was), no count of what was withheld (that goes to the
//!   dissemination entry, which the requester never sees), and for a record or case of which
//!   nothing is shown the very answer an unknown one gets.
//! - **Log-level reads are bureau reads.** Entry bytes and subscriptions go to the roles the policy
//!   names; anyone registered may check the inclusion of an entry it already holds.

use chronicle_core::{PrincipalId, Role, Timestamp};

use crate::date::Date;
use crate::model::{Purpose, RecordEvent};
use crate::policy::{Access, Policy, Rule};
use crate::state::{Charge, Cycle};

/// Who is calling: a registered principal and its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The principal.
    pub principal: PrincipalId,
    /// Its role in the registry.
    pub role: Role,
}

/// Every call that reads the ledger for someone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Call {
    /// A subject's record (`Records.GetRecord`).
    GetRecord,
    /// A background check (`Records.BackgroundCheck`).
    BackgroundCheck,
    /// One case by docket (`Records.GetCase`).
    GetCase,
    /// A record's history, entry by entry (`Records.History`).
    History,
    /// A subject or case id by SID or docket, for a command (`Records.Resolve`).
    Resolve,
    /// Who received a record (`Records.Recipients`, `chronicle recipients`).
    Recipients,
    /// A past release rebuilt and checked (`Records.Reproduce`, `chronicle reproduce`).
    Reproduce,
    /// The log, entry by entry, live (`Ledger.Subscribe`).
    Subscribe,
    /// An inclusion proof that returns the entry's bytes (`Proofs.GetInclusionProof`).
    InclusionProof,
    /// An inclusion proof for an entry the caller holds: leaf hash in, audit path out
    /// (`Proofs.GetInclusionProof` with `leaf_hash`).
    InclusionCheck,
    /// A consistency proof between two tree sizes (`Proofs.GetConsistencyProof`).
    ConsistencyProof,
    /// A signed checkpoint (`Proofs.GetCheckpoint`).
    Checkpoint,
    /// An evidence bundle with content, for a recipient (`chronicle export-evidence`).
    EvidenceExport,
}

impl Call {
    /// Every call, in the order the API table lists them.
    pub const ALL: [Call; 13] = [
        Call::GetRecord,
        Call::BackgroundCheck,
        Call::GetCase,
        Call::History,
        Call::Resolve,
        Call::Recipients,
        Call::Reproduce,
        Call::Subscribe,
        Call::InclusionProof,
        Call::InclusionCheck,
        Call::ConsistencyProof,
        Call::Checkpoint,
        Call::EvidenceExport,
    ];

    /// The call's name as logged.
    pub fn name(self) -> &'static str {
        match self {
            Call::GetRecord => "get_record",
            Call::BackgroundCheck => "background_check",
            Call::GetCase => "get_case",
            Call::History => "history",
            Call::Resolve => "resolve",
            Call::Recipients => "recipients",
            Call::Reproduce => "reproduce",
            Call::Subscribe => "subscribe",
            Call::InclusionProof => "inclusion_proof",
            Call::InclusionCheck => "inclusion_check",
            Call::ConsistencyProof => "consistency_proof",
            Call::Checkpoint => "checkpoint",
            Call::EvidenceExport => "evidence_export",
        }
    }

    /// Whether the call states a purpose (every read of a record does).
    pub fn has_purpose(self) -> bool {
        matches!(
            self,
            Call::GetRecord
                | Call::BackgroundCheck
                | Call::GetCase
                | Call::History
                | Call::Resolve
                | Call::EvidenceExport
        )
    }
}

/// How a granted call is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    /// As a release of the record (`record_disseminated`, in the subject's access log): the
    /// requester, purpose, authority, the items released, the hash of exactly what was sent,
    /// and how many items were withheld.
    Release,
    /// As an audit entry (`audit_recorded`): who did what, when; nothing is released.
    Audit,
    /// Not at all: nothing about any record leaves (ids for a writer's own command, published
    /// checkpoints and consistency proofs, reads inside the bureau).
    No,
}

/// What a granted call may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The row of the policy that decides what is shown, for calls that read a record.
    pub rule: Option<Rule>,
    /// How the call is logged.
    pub logged: Logged,
}

/// Why a call was refused (its words are the refusal's message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Whether a role is inside the bureau (its reads are not releases).
pub fn inside_bureau(policy: &Policy, role: Role) -> bool {
    policy.bureau.contains(&role)
}

/// Decides whether `role` may make `call` (for `purpose`, where the call states one).
pub fn decide(policy: &Policy, role: Role, call: Call, purpose: Option<Purpose>) -> Result<Grant, Refusal> {
    let release = if inside_bureau(policy, role) { Logged::No } else { Logged::Release };
    let rule = || -> Result<Rule, Refusal> {
        let purpose = purpose.ok_or_else(|| Refusal("a purpose is required".into()))?;
        policy
            .rule(role, purpose)
            .cloned()
            .ok_or_else(|| Refusal(format!("the policy lets no {} see records for purpose {purpose:?}", role.as_str())))
    };
    let among = |roles: &[Role], what: &str| -> Result<(), Refusal> {
        if roles.contains(&role) { Ok(()) } else { Err(Refusal(format!("a {} may not {what}", role.as_str()))) }
    };
    Ok(match call {
        Call::GetRecord | Call::BackgroundCheck | Call::GetCase => Grant { rule: Some(rule()?), logged: release },
        Call::History => {
            let r = rule()?;
            if r.history == Access::None || r.may_withhold() {
                return Err(Refusal(format!(
                    "the policy lets no {} replay histories for purpose {}",
                    role.as_str(),
                    r.purposes_or(purpose)
                )));
            }
            Grant { rule: Some(r), logged: release }
        }
        Call::Resolve => {
            among(&policy.resolvers, "look up case or subject ids")?;
            // Ids for a writer's command, for a purpose under which the writer sees the whole
            // record: a row that may withhold would make the look-up an oracle of what it hides.
            let r = rule()?;
            if r.may_withhold() {
                return Err(Refusal(format!(
                    "a {} looks up ids only for a purpose under which it sees whole records, not {}",
                    role.as_str(),
                    r.purposes_or(purpose)
                )));
            }
            let logged = if inside_bureau(policy, role) { Logged::No } else { Logged::Audit };
            Grant { rule: Some(r), logged }
        }
        Call::Recipients => {
            if role != Role::Subject {
                among(&policy.overseers, "list who received a record")?;
            }
            Grant { rule: None, logged: Logged::Audit }
        }
        Call::Reproduce => {
            among(&policy.overseers, "reproduce a release")?;
            // The overseer's own row for administration says whether the bytes rebuilt are
            // returned, or only checked against the hash logged.
            Grant { rule: policy.rule(role, Purpose::A).cloned(), logged: Logged::Audit }
        }
        Call::Subscribe => {
            among(&policy.log_readers, "follow the log")?;
            Grant { rule: None, logged: Logged::Audit }
        }
        Call::InclusionProof => {
            among(&policy.log_readers, "read log entries (ask with the leaf hash of an entry you hold)")?;
            Grant { rule: None, logged: Logged::Audit }
        }
        Call::InclusionCheck => Grant { rule: None, logged: Logged::Audit },
        Call::ConsistencyProof | Call::Checkpoint => Grant { rule: None, logged: Logged::No },
        Call::EvidenceExport => {
            let r = rule()?;
            if r.history != Access::Full || r.may_withhold() {
                return Err(Refusal(format!(
                    "the policy lets no {} receive a record's entries with their content for purpose {}",
                    role.as_str(),
                    r.purposes_or(purpose)
                )));
            }
            Grant { rule: Some(r), logged: Logged::Release }
        }
    })
}

impl Rule {
    fn purposes_or(&self, purpose: Option<Purpose>) -> String {
        purpose.map_or_else(|| "(none)".into(), |p| format!("{p:?}"))
    }
}

/// Whether `caller` may read the record of the subject with this SID (`None`: no such subject,
/// or it is not known which). A record subject reads only their own record: their principal is
/// `subject:` and their SID (letters and digits, lower case). An attorney's representation of
/// a subject is not recorded yet, so an attorney reads no record. Everyone else is decided by the
/// policy alone.
///
/// The answer is the same for a subject that does not exist and for someone else's: a subject
/// learns nothing about other records from being refused.
pub fn bound(caller: &Caller, subject_sid: Option<&str>) -> Result<(), Refusal> {
    match caller.role {
        Role::Subject => {
            let own = subject_sid.is_some_and(|sid| caller.principal.as_str() == subject_principal(sid));
            if own { Ok(()) } else { Err(Refusal("a record subject may see only their own record".into())) }
        }
        Role::DefenseAttorney => Err(Refusal("no representation of this subject by the attorney is on record".into())),
        _ => Ok(()),
    }
}

/// The principal id a record subject holds: `subject:` and the SID's letters and digits, lower case.
pub fn subject_principal(sid: &str) -> String {
    format!("subject:{}", crate::state::normalize(sid).to_ascii_lowercase())
}

/// What a requester is shown of one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shown {
    /// Nothing: the item is absent.
    Withheld,
    /// That it exists and its status, without content.
    Metadata,
    /// Everything.
    Content,
}

/// When a view is computed, and what "recent" means for a non-conviction.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// "As effective at": orders in force at this time (`None`: as the request is answered).
    pub at: Option<Timestamp>,
    /// The day the request is answered for (decides what is recent enough to report).
    pub checked_on: Date,
    /// When the request is answered.
    pub now: Timestamp,
}

/// Whether a restricting order holds at the clock's time. As the request is answered (`at` is
/// `None`), every order recorded holds, even one that takes effect later, until a vacatur that
/// has taken effect: a restriction is never lifted early.
fn restricts_at(o: &crate::state::Order, clock: Clock) -> bool {
    let started = clock.at.is_none_or(|t| o.effective <= t);
    let until = clock.at.unwrap_or(clock.now);
    let ended = o.vacated.as_ref().is_some_and(|(v, _, _)| *v <= until);
    o.kind.restricts() && started && !ended
}

/// What `rule` shows `role` of charge `seq` of a case: the row's column for an unrestricted item,
/// or for a restricted one (sealed, limited access, set aside) unless every order restricting it
/// lists the role among its audiences. A reportable item is shown when it is a conviction, or when
/// its arrest is within the policy's reporting period of `checked_on`. An expunged item is
/// never shown.
pub fn shown(
    policy: &Policy,
    rule: &Rule,
    role: Role,
    cycle: &Cycle,
    seq: u32,
    charge: &Charge,
    clock: Clock,
) -> Shown {
    if cycle.expunged(seq, clock.at) {
        return Shown::Withheld;
    }
    let mut restricting = cycle.orders.iter().filter(|o| o.covers(seq) && restricts_at(o, clock));
    let access = if restricting.all(|o| o.audiences.contains(&role)) { rule.unrestricted } else { rule.restricted };
    match access {
        Access::Full => Shown::Content,
        Access::Metadata => Shown::Metadata,
        Access::Reportable => {
            let on = clock.at.map_or(clock.checked_on, |t| Date::from_micros(t.0));
            let recent_from = clock.checked_on.plus_years(-policy.non_conviction_reportable_years);
            let conviction = charge.disposition(Some(on)).is_some_and(|d| d.kind.is_conviction());
            if conviction || cycle.arrest_date >= recent_from { Shown::Content } else { Shown::Withheld }
        }
        Access::None => Shown::Withheld,
    }
}

/// Whether a reproduction returns the bytes rebuilt, or only says whether they match the hash
/// logged: the bytes go to an overseer whose row shows everything (the bureau's clerks), not to
/// one shown ids and status only (auditors: minimum content).
pub fn reproduction_shows_content(grant: &Grant) -> bool {
    grant.rule.as_ref().is_some_and(|r| r.unrestricted == Access::Full && r.restricted == Access::Full)
}

/// Whether the row shows who the person is (name, date of birth, SID).
pub fn identity_shown(rule: &Rule) -> bool {
    matches!(rule.unrestricted, Access::Full | Access::Reportable)
}

/// What the row shows of expungements carried out: the order only ([`Access::Metadata`]), or
/// nothing.
pub fn notices_shown(rule: &Rule) -> bool {
    rule.expunged == Access::Metadata
}

/// What a history shows of an entry about the person (identity, aliases, corrections): as the
/// row shows unrestricted items, with a reportable row's person shown in full (a row that may
/// withhold gets no history anyway).
pub fn identity_entry(rule: &Rule) -> Shown {
    match rule.unrestricted {
        Access::Full | Access::Reportable => Shown::Content,
        Access::Metadata => Shown::Metadata,
        Access::None => Shown::Withheld,
    }
}

/// What a history shows of an expungement order on some charges of a case, and of the ledger's
/// restatement of what survives it: the order, to the rows that may know an order was carried
/// out; nothing to the others (an expunged charge is absent for them, and so is its order).
pub fn expungement_entry(rule: &Rule) -> Shown {
    if notices_shown(rule) { Shown::Content } else { Shown::Withheld }
}

/// What a history shows of an entry about a whole case that concerns no charge still in it.
pub fn case_entry(rule: &Rule) -> Shown {
    match rule.unrestricted {
        Access::Full => Shown::Content,
        Access::Metadata => Shown::Metadata,
        Access::Reportable | Access::None => Shown::Withheld,
    }
}

/// What a history shows of an entry whose content was destroyed by an expungement: that it was
/// there, to the rows that may know an order was carried out; else nothing.
pub fn destroyed_entry(rule: &Rule) -> Shown {
    if notices_shown(rule) { Shown::Metadata } else { Shown::Withheld }
}

/// What a history shows of an entry of the access log (a release, a refusal, an audit entry), of
/// an entry of a case in the history of someone it was moved away from, and of the ledger's own
/// streams: the bureau's business, withheld from everyone else.
pub fn bureau_entry(policy: &Policy, role: Role) -> Shown {
    if inside_bureau(policy, role) { Shown::Content } else { Shown::Withheld }
}

/// The most a history shows of any entry under this row.
pub fn history_ceiling(rule: &Rule) -> Shown {
    match rule.history {
        Access::Full => Shown::Content,
        Access::Metadata => Shown::Metadata,
        Access::Reportable | Access::None => Shown::Withheld,
    }
}

/// Which roles may write a records event. The access log (releases, refusals, audit entries) is
/// written by the ledger alone: no one may author a release or a refusal of their own.
pub fn may_author(role: Role, event: &RecordEvent) -> bool {
    authors(event.tag()).contains(&role)
}

/// The roles that may write the records event with this tag (none for an unknown tag).
pub fn authors(tag: &str) -> &'static [Role] {
    use Role::*;
    match tag {
        "subject_enrolled" | "alias_added" | "identity_corrected" | "arrest_recorded" => {
            &[RecordsClerk, LawEnforcement]
        }
        "charge_filed" | "charge_amended" => &[RecordsClerk, Prosecutor, Court],
        "court_case_filed"
        | "disposition_recorded"
        | "disposition_corrected"
        | "sentence_imposed"
        | "supervision_discharged"
        | "relief_ordered"
        | "restriction_vacated" => &[RecordsClerk, Court],
        // The ledger writes an order for a case that reached an expunged subject after its order.
        "expungement_ordered" => &[RecordsClerk, Court, Ledger],
        "cycle_reassigned" | "challenge_resolved" => &[RecordsClerk],
        "challenge_filed" => &[Subject, DefenseAttorney, RecordsClerk],
        "cycle_restated" | "record_disseminated" | "access_denied" | "audit_recorded" | "order_noticed" => &[Ledger],
        "policy_adopted" => &[Admin],
        _ => &[],
    }
}

/// The table of who may write which records event (docs/API.md), from [`authors`].
pub fn authors_table() -> String {
    let mut rows: Vec<(String, Vec<&'static str>)> = Vec::new();
    for tag in crate::model::TAGS {
        let roles: Vec<&str> = authors(tag).iter().map(|r| r.as_str()).collect();
        let roles = roles.join(", ");
        match rows.iter_mut().find(|(r, _)| *r == roles) {
            Some((_, tags)) => tags.push(tag),
            None => rows.push((roles, vec![tag])),
        }
    }
    let mut out = String::from("| events (`records.`...) | who may write them |\n|---|---|\n");
    for (roles, tags) in rows {
        let tags: Vec<String> = tags.iter().map(|t| format!("`{t}`")).collect();
        out.push_str(&format!("| {} | {roles} |\n", tags.join(", ")));
    }
    out
}

/// Every role, in the order the API table lists them.
pub const ROLES: [Role; 12] = [
    Role::RecordsClerk,
    Role::Admin,
    Role::Ledger,
    Role::Auditor,
    Role::Court,
    Role::LawEnforcement,
    Role::Prosecutor,
    Role::DefenseAttorney,
    Role::Subject,
    Role::BackgroundCheck,
    Role::Employer,
    Role::LicensingAgency,
];

fn access_words(a: Access) -> &'static str {
    match a {
        Access::Full => "all",
        Access::Reportable => "reportable only",
        Access::Metadata => "ids and status only",
        Access::None => "none",
    }
}

/// What one role gets from one call, in words, and how it is logged: one cell pair of the API
/// table (docs/API.md), computed by [`decide`] and [`bound`] themselves so that the table cannot
/// drift from them.
pub fn describe(policy: &Policy, role: Role, call: Call) -> (String, String) {
    let purposes: Vec<Option<Purpose>> =
        if call.has_purpose() { Purpose::ALL.iter().copied().map(Some).collect() } else { vec![None] };
    // A role no record is bound to (an attorney without representation) is refused every read.
    let unbound = call.has_purpose()
        && role != Role::Subject
        && bound(&Caller { principal: PrincipalId::new("x").expect("a valid id"), role }, None).is_err();
    /// A purpose, what it is given, how it is logged.
    type Answer = (Option<Purpose>, String, String);
    let answers: Vec<Answer> = purposes
        .into_iter()
        .map(|p| match decide(policy, role, call, p) {
            Ok(_) if unbound => (p, "refused (no representation on record)".to_string(), "refusal".to_string()),
            Err(_) => (p, "refused".to_string(), "refusal".to_string()),
            Ok(g) => (p, returned_words(role, call, g.rule.as_ref()), logged_words(g.logged).to_string()),
        })
        .collect();
    // Purposes with the same words share them, labelled where the purposes differ.
    let grouped = |pick: &dyn Fn(&Answer) -> &String| -> String {
        let mut groups: Vec<(String, Vec<Purpose>)> = Vec::new();
        for a in &answers {
            match groups.iter_mut().find(|(w, _)| w == pick(a)) {
                Some((_, ps)) => ps.extend(a.0),
                None => groups.push((pick(a).clone(), a.0.into_iter().collect())),
            }
        }
        let labelled = groups.len() > 1;
        groups
            .into_iter()
            .map(|(w, ps)| {
                if labelled {
                    format!("{}: {w}", ps.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(" "))
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    (grouped(&|a| &a.1), grouped(&|a| &a.2))
}

fn logged_words(l: Logged) -> &'static str {
    match l {
        Logged::Release => "release",
        Logged::Audit => "audit entry",
        Logged::No => "refusals only",
    }
}

fn returned_words(role: Role, call: Call, rule: Option<&Rule>) -> String {
    let own = if role == Role::Subject { " (own record)" } else { "" };
    match (call, rule) {
        (Call::GetRecord | Call::BackgroundCheck | Call::GetCase, Some(r)) => {
            let mut s =
                format!("unrestricted: {}; sealed: {}", access_words(r.unrestricted), access_words(r.restricted));
            if notices_shown(r) {
                s.push_str("; expunged: the order only");
            }
            if r.may_withhold() {
                s.push_str("; withheld items absent");
            }
            format!("{s}{own}")
        }
        (Call::History, Some(r)) => match r.history {
            Access::Full => "entries with content".into(),
            _ => "entries, no content".into(),
        },
        (Call::EvidenceExport, Some(_)) => "the stream's entries with content".into(),
        (Call::Resolve, Some(_)) => "ids only".into(),
        (Call::Recipients, _) => format!("releases of a record{own}"),
        (Call::Reproduce, r) => {
            let g = Grant { rule: r.cloned(), logged: Logged::Audit };
            if reproduction_shows_content(&g) {
                "the release's bytes, checked against its hash".into()
            } else {
                "whether the release's bytes, rebuilt, match its hash (not the bytes)".into()
            }
        }
        (Call::Subscribe, _) => "every entry's bytes".into(),
        (Call::InclusionProof, _) => "the entry's bytes and audit path".into(),
        (Call::InclusionCheck, _) => "the audit path of a leaf hash the caller holds".into(),
        (Call::ConsistencyProof, _) => "the proof".into(),
        (Call::Checkpoint, _) => "the signed checkpoint".into(),
        (_, None) => "refused".into(),
    }
}

/// The API table of docs/API.md: for every call and role, what is returned and what is logged,
/// roles with the same answer on one row.
pub fn api_table(policy: &Policy) -> String {
    let mut out = String::from("| call | roles | returned | logged |\n|---|---|---|---|\n");
    for call in Call::ALL {
        let mut rows: Vec<(Vec<&'static str>, String, String)> = Vec::new();
        for role in ROLES {
            let (returned, logged) = describe(policy, role, call);
            match rows.iter_mut().find(|(_, r, l)| *r == returned && *l == logged) {
                Some((roles, _, _)) => roles.push(role.as_str()),
                None => rows.push((vec![role.as_str()], returned, logged)),
            }
        }
        for (roles, returned, logged) in rows {
            out.push_str(&format!("| `{}` | {} | {returned} | {logged} |\n", call.name(), roles.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(id: &str, role: Role) -> Caller {
        Caller { principal: PrincipalId::new(id).unwrap(), role }
    }

    #[test]
    fn outside_reads_are_releases_and_bureau_reads_are_not() {
        let p = Policy::default_policy();
        let g = decide(&p, Role::Employer, Call::BackgroundCheck, Some(Purpose::E)).unwrap();
        assert_eq!(g.logged, Logged::Release);
        let g = decide(&p, Role::RecordsClerk, Call::GetRecord, Some(Purpose::A)).unwrap();
        assert_eq!(g.logged, Logged::No);
        assert!(decide(&p, Role::Employer, Call::GetRecord, Some(Purpose::C)).is_err());
        assert!(decide(&p, Role::Employer, Call::GetRecord, None).is_err());
    }

    #[test]
    fn log_level_reads_are_for_the_roles_the_policy_names() {
        let p = Policy::default_policy();
        for role in ROLES {
            let reader = p.log_readers.contains(&role);
            assert_eq!(decide(&p, role, Call::InclusionProof, None).is_ok(), reader, "{role:?}");
            assert_eq!(decide(&p, role, Call::Subscribe, None).is_ok(), reader, "{role:?}");
            // Anyone may check an entry they hold, and it is logged.
            assert_eq!(decide(&p, role, Call::InclusionCheck, None).unwrap().logged, Logged::Audit);
        }
        assert!(decide(&p, Role::Employer, Call::InclusionProof, None).is_err());
        assert!(decide(&p, Role::Court, Call::InclusionProof, None).is_ok());
    }

    #[test]
    fn histories_follow_the_policy_rows_and_never_go_to_a_row_that_withholds() {
        let mut p = Policy::default_policy();
        assert!(decide(&p, Role::Court, Call::History, Some(Purpose::C)).is_ok());
        assert!(decide(&p, Role::LawEnforcement, Call::History, Some(Purpose::C)).is_ok());
        assert!(decide(&p, Role::LawEnforcement, Call::History, Some(Purpose::E)).is_err());
        assert!(decide(&p, Role::Employer, Call::History, Some(Purpose::E)).is_err());
        // A stricter adopted policy: courts get no history.
        for r in p.rules.iter_mut().filter(|r| r.role == Role::Court) {
            r.history = Access::None;
        }
        assert!(decide(&p, Role::Court, Call::History, Some(Purpose::C)).is_err());
        // A policy giving employers a history cannot be adopted, and is not obeyed if it were.
        for r in p.rules.iter_mut().filter(|r| r.role == Role::Employer) {
            r.history = Access::Full;
        }
        assert!(p.problem().is_some());
        assert!(decide(&p, Role::Employer, Call::History, Some(Purpose::E)).is_err());
        assert!(Policy::default_policy().problem().is_none());
    }

    #[test]
    fn a_subject_reads_only_their_own_record_and_learns_nothing_of_others() {
        let me = caller("subject:pa100", Role::Subject);
        assert!(bound(&me, Some("PA-100")).is_ok());
        let other = bound(&me, Some("PA-200")).unwrap_err();
        let unknown = bound(&me, None).unwrap_err();
        assert_eq!(other, unknown);
        assert!(bound(&caller("da.smith", Role::DefenseAttorney), Some("PA-100")).is_err());
        assert!(bound(&caller("court", Role::Court), None).is_ok());
    }

    #[test]
    fn only_the_ledger_writes_the_access_log() {
        let ev = RecordEvent::AccessDenied {
            requester: "x".into(),
            role: Some(Role::Employer),
            purpose: None,
            subject: None,
            action: None,
            reason: "r".into(),
            repeated: 0,
        };
        for role in ROLES.into_iter().filter(|r| *r != Role::Ledger) {
            assert!(!may_author(role, &ev), "{role:?}");
        }
        assert!(may_author(Role::Ledger, &ev));
    }

    #[test]
    fn every_event_has_its_authors() {
        for tag in crate::model::TAGS {
            assert!(!authors(tag).is_empty(), "{tag}");
        }
        assert!(authors("no_such_event").is_empty());
    }

    #[test]
    fn the_api_table_names_every_call_and_role() {
        let t = api_table(&Policy::default_policy());
        for call in Call::ALL {
            assert!(t.contains(&format!("`{}`", call.name())), "{}", call.name());
        }
        for role in ROLES {
            assert!(t.contains(role.as_str()), "{role:?}");
        }
    }
}
