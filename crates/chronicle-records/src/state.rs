//! The projection: the current state of every record, a pure function of the log (I6).
//!
//! [`State::apply`] folds one records event into the state. It never fails and never panics:
//! the log is the truth, and an event that refers to something the state does not know is
//! recorded as far as it can be and otherwise ignored (validation keeps such events out of the
//! log in the first place). Maps are ordered so that two states built from the same log compare
//! equal, which is what the rebuild property test checks.

use std::collections::{BTreeMap, BTreeSet};

use litemap::LiteMap;

use rayon::prelude::*;

use chronicle_core::{PrincipalId, Role, StreamId, Timestamp};

use crate::date::Date;
use crate::model::{ChallengeOutcome, ChargeSpec, DispositionKind, Name, RecordEvent, ReliefKind, Scope, SentenceKind};
use crate::policy::Policy;

/// Where and when an event was written, and by whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Global position.
    pub position: u64,
    /// The stream.
    pub stream: StreamId,
    /// Version in the stream.
    pub stream_version: u64,
    /// The ledger's clock.
    pub recorded: Timestamp,
    /// When it takes legal effect.
    pub effective: Timestamp,
    /// Who submitted it.
    pub author: PrincipalId,
    /// The court order (or other authority) it names.
    pub court_order: Option<String>,
}

/// A person in the repository.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subject {
    /// State identification number.
    pub sid: String,
    /// FBI number.
    pub fbi: Option<String>,
    /// Name of record.
    pub name: Name,
    /// Other names.
    pub aliases: Vec<Name>,
    /// Date of birth.
    pub dob: Date,
    /// Cycles attributed to the subject now.
    pub cycles: BTreeSet<StreamId>,
    /// Cycles ever attributed to the subject (history and as-of queries need them).
    pub cycles_ever: BTreeSet<StreamId>,
    /// Position of enrollment.
    pub enrolled_at: u64,
}

/// One disposition as recorded (corrections keep the earlier ones).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DispositionRecord {
    /// The disposition.
    pub kind: DispositionKind,
    /// Court date.
    pub date: Date,
    /// Position recorded.
    pub position: u64,
    /// When it was recorded.
    pub recorded: Timestamp,
    /// The reason, if this corrected an earlier one.
    pub correction: Option<String>,
}

/// One charge.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Charge {
    /// As filed or last amended.
    pub spec: ChargeSpec,
    /// Dispositions, oldest first; the last is current.
    pub dispositions: Vec<DispositionRecord>,
}

impl Charge {
    /// The disposition in force: the latest recorded whose court date is on or before `on`
    /// (or the latest of all when `on` is `None`).
    pub fn disposition(&self, on: Option<Date>) -> Option<&DispositionRecord> {
        self.dispositions.iter().rev().find(|d| on.is_none_or(|on| d.date <= on))
    }
}

/// A sentence.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sentence {
    /// Charge sentenced.
    pub seq: u32,
    /// Kind.
    pub kind: SentenceKind,
    /// Term in days.
    pub term_days: Option<u32>,
    /// Amount in cents.
    pub amount_cents: Option<u64>,
    /// Date imposed.
    pub date: Date,
}

/// A relief order on a cycle.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    /// The court's order number.
    pub order_id: String,
    /// Kind.
    pub kind: ReliefKind,
    /// Scope.
    pub scope: Scope,
    /// Statute.
    pub statute: String,
    /// Roles that may still see what it restricts.
    pub audiences: Vec<Role>,
    /// When it takes effect.
    pub effective: Timestamp,
    /// Position recorded.
    pub position: u64,
    /// When recorded.
    pub recorded: Timestamp,
    /// Who entered it.
    pub author: PrincipalId,
    /// Vacated: when that took effect, at which position, why.
    pub vacated: Option<(Timestamp, u64, String)>,
}

impl Order {
    /// Whether the order covers charge `seq`.
    pub fn covers(&self, seq: u32) -> bool {
        match &self.scope {
            Scope::WholeCycle => true,
            Scope::Charges(c) => c.contains(&seq),
        }
    }
    /// Whether the order is in force at effective time `at` (`None`: now, as recorded).
    pub fn in_force(&self, at: Option<Timestamp>) -> bool {
        let started = at.is_none_or(|t| self.effective <= t);
        let ended = self.vacated.as_ref().is_some_and(|(v, _, _)| at.is_none_or(|t| *v <= t));
        started && !ended
    }
}

/// A move of the cycle from one subject to another.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reassignment {
    /// From.
    pub from: StreamId,
    /// To.
    pub to: StreamId,
    /// Why.
    pub reason: String,
    /// Evidence relied on.
    pub evidence: String,
    /// By whom.
    pub author: PrincipalId,
    /// Position.
    pub position: u64,
}

/// A challenge to the record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Challenge {
    /// What the subject says.
    pub statement: String,
    /// Outcome, once resolved.
    pub outcome: Option<ChallengeOutcome>,
}

/// One arrest and everything that follows from it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cycle {
    /// The subject it is attributed to now.
    pub subject: StreamId,
    /// Tracking number (OTN).
    pub tracking_number: String,
    /// Arresting agency ORI.
    pub agency_ori: String,
    /// Date of arrest.
    pub arrest_date: Date,
    /// Charges by sequence number. A sorted vector: a case has a few charges, for which a
    /// `BTreeMap` allocates a node of eleven (a fifth of the projection's memory at 1M entries).
    /// Serialized as a map, as a `BTreeMap` is.
    pub charges: LiteMap<u32, Charge>,
    /// Court ORI and docket.
    pub court: Option<(String, String)>,
    /// Sentences.
    pub sentences: Vec<Sentence>,
    /// Supervision discharge date.
    pub supervision_discharged: Option<Date>,
    /// Relief orders, in the order recorded.
    pub orders: Vec<Order>,
    /// Challenges by id.
    pub challenges: BTreeMap<String, Challenge>,
    /// Moves between subjects.
    pub reassignments: Vec<Reassignment>,
    /// Position of the arrest entry.
    pub opened_at: u64,
    /// Expungement orders whose surviving content the ledger has restated (see
    /// `RecordEvent::CycleRestated`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restated: Vec<String>,
}

impl Cycle {
    /// Whether charge `seq` is expunged at effective time `at` (expungement cannot be vacated).
    pub fn expunged(&self, seq: u32, at: Option<Timestamp>) -> bool {
        self.orders
            .iter()
            .any(|o| o.kind == ReliefKind::Expunge && o.covers(seq) && at.is_none_or(|t| o.effective <= t))
    }
    /// The restricting order in force over charge `seq` at `at`, if any (the latest).
    pub fn restriction(&self, seq: u32, at: Option<Timestamp>) -> Option<&Order> {
        self.orders.iter().rev().find(|o| o.kind.restricts() && o.covers(seq) && o.in_force(at))
    }
}

/// What remains of an expunged cycle or subject: that an order was carried out, never content.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tombstone {
    /// The order.
    pub order_id: String,
    /// The statute cited.
    pub statute: String,
    /// `cycle` or `subject`.
    pub kind: String,
    /// When the order took effect.
    pub effective: Timestamp,
    /// Position of the order.
    pub position: u64,
    /// Who entered it.
    pub author: PrincipalId,
    /// Streams whose keys the order destroys.
    pub streams: Vec<StreamId>,
}

/// The state's maps: persistent (structurally shared) ordered maps, so that cloning a state is
/// O(1) and a clone that is changed copies only the paths it changes. Validating a batch of
/// commands works on such a clone (see `service`), and would otherwise copy the whole projection
/// for every batch.
pub type Map<K, V> = imbl::OrdMap<K, V>;

/// The projection of the whole records domain.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Subjects by id.
    pub subjects: Map<StreamId, Subject>,
    /// Cycles by id.
    pub cycles: Map<StreamId, Cycle>,
    /// The adopted policy and the position it was adopted at.
    pub adopted_policy: Option<(u64, Policy)>,
    /// Last version of every records stream.
    pub versions: Map<StreamId, u64>,
    /// Position of the last records entry applied.
    pub last_position: Option<u64>,
    /// Expunged cycles and subjects: the order only.
    pub expunged: Map<StreamId, Tombstone>,
    by_sid: Map<String, StreamId>,
    by_fbi: Map<String, StreamId>,
    by_name_dob: Map<(String, Date), BTreeSet<StreamId>>,
    by_docket: Map<String, StreamId>,
}

/// Normalizes identifiers for lookup: upper case, no spaces or dashes.
pub fn normalize(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

fn name_key(n: &Name) -> String {
    format!("{}|{}", normalize(&n.last), normalize(&n.first))
}

fn parse_id(hex: &str) -> Option<StreamId> {
    StreamId::from_hex(hex)
}

impl State {
    /// An empty state.
    pub fn new() -> State {
        State::default()
    }

    /// The policy in force: the adopted one, or the default.
    pub fn policy(&self) -> Policy {
        self.policy_in_force().clone()
    }

    /// The policy in force, borrowed: the adopted one, or the default.
    pub fn policy_in_force(&self) -> &Policy {
        static DEFAULT: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(Policy::default_policy);
        self.adopted_policy.as_ref().map_or(&*DEFAULT, |(_, p)| p)
    }

    /// The subject with this SID.
    pub fn subject_by_sid(&self, sid: &str) -> Option<StreamId> {
        self.by_sid.get(&normalize(sid)).copied()
    }
    /// The subject with this FBI number.
    pub fn subject_by_fbi(&self, fbi: &str) -> Option<StreamId> {
        self.by_fbi.get(&normalize(fbi)).copied()
    }
    /// Subjects with this name (or alias) and date of birth.
    pub fn subjects_by_name_dob(&self, name: &Name, dob: Date) -> Vec<StreamId> {
        self.by_name_dob.get(&(name_key(name), dob)).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }
    /// The cycle whose court case has this docket.
    pub fn cycle_by_docket(&self, docket: &str) -> Option<StreamId> {
        self.by_docket.get(&normalize(docket)).copied()
    }

    /// Builds a state from persisted parts (see `persist`), rebuilding the lookup indexes.
    pub fn from_parts(
        subjects: Map<StreamId, Subject>,
        cycles: Map<StreamId, Cycle>,
        adopted_policy: Option<(u64, Policy)>,
        versions: Map<StreamId, u64>,
        last_position: Option<u64>,
    ) -> State {
        // Each index is built on its own, side by side, from sorted input: inserting in key order
        // into a persistent map touches one path at a time.
        let ((by_sid, by_fbi), (by_name_dob, by_docket)) = rayon::join(
            || {
                rayon::join(
                    || sorted_map(subjects.iter().map(|(id, sub)| (normalize(&sub.sid), *id)).collect()),
                    || {
                        sorted_map(
                            subjects.iter().filter_map(|(id, sub)| Some((normalize(sub.fbi.as_ref()?), *id))).collect(),
                        )
                    },
                )
            },
            || {
                rayon::join(
                    || name_index(&subjects),
                    || {
                        sorted_map(
                            cycles
                                .iter()
                                .filter_map(|(id, c)| c.court.as_ref().map(|(_, d)| (normalize(d), *id)))
                                .collect(),
                        )
                    },
                )
            },
        );
        State {
            subjects,
            cycles,
            adopted_policy,
            versions,
            last_position,
            by_sid,
            by_fbi,
            by_name_dob,
            by_docket,
            ..State::default()
        }
    }

    /// The streams an event changes the projection of: its own, and the subjects whose set of
    /// cycles it changes.
    pub fn touched(&self, meta: &Meta, event: &RecordEvent) -> Vec<StreamId> {
        let mut out = vec![meta.stream];
        match event {
            RecordEvent::ArrestRecorded { subject, .. } => out.extend(parse_id(subject)),
            RecordEvent::CycleRestated { snapshot, .. } => {
                out.extend(snapshot.get("subject").and_then(|v| v.as_str()).and_then(parse_id))
            }
            RecordEvent::CycleReassigned { from_subject, to_subject, .. } => {
                out.extend(parse_id(from_subject));
                out.extend(parse_id(to_subject));
            }
            RecordEvent::RecordDisseminated { subject, .. }
            | RecordEvent::AccessDenied { subject: Some(subject), .. }
            | RecordEvent::AuditRecorded { subject: Some(subject), .. } => {
                out.extend(parse_id(subject).map(|s| crate::model::access_stream(&s)))
            }
            // Everything `forget` changes: the streams expunged (their parts go), a subject's
            // access log, and the subjects that list an expunged cycle.
            RecordEvent::ExpungementOrdered { streams, .. } => {
                for s in streams.iter().filter_map(|s| parse_id(s)) {
                    out.push(s);
                    if self.subjects.contains_key(&s) {
                        out.push(crate::model::access_stream(&s));
                    }
                    if let Some(c) = self.cycles.get(&s) {
                        out.push(c.subject);
                        out.extend(c.reassignments.iter().flat_map(|r| [r.from, r.to]));
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// Removes everything the state holds from streams whose keys are destroyed, so that the
    /// state after an expungement is exactly what replaying the log (where those entries can no
    /// longer be read) gives.
    fn forget(&mut self, streams: &[StreamId]) {
        for s in streams {
            if let Some(sub) = self.subjects.remove(s) {
                self.by_sid.remove(&normalize(&sub.sid));
                if let Some(f) = &sub.fbi {
                    self.by_fbi.remove(&normalize(f));
                }
                for n in std::iter::once(&sub.name).chain(sub.aliases.iter()) {
                    unindex_name(&mut self.by_name_dob, (name_key(n), sub.dob), s);
                }
            }
            // A stream that is not a cycle this state knows (a subject's, or one forgotten
            // already) is listed by no subject.
            if let Some(c) = self.cycles.remove(s) {
                if let Some((_, d)) = &c.court {
                    self.by_docket.remove(&normalize(d));
                }
                // Only the subjects the cycle was ever attributed to list it: looking there, not
                // at every subject, keeps an expungement's cost independent of the state's size.
                let held_by = std::iter::once(c.subject).chain(c.reassignments.iter().flat_map(|r| [r.from, r.to]));
                for holder in held_by {
                    if let Some(sub) = self.subjects.get_mut(&holder) {
                        sub.cycles.remove(s);
                        sub.cycles_ever.remove(s);
                    }
                }
            }
            self.versions.remove(s);
        }
    }

    /// Folds one records event into the state.
    pub fn apply(&mut self, meta: &Meta, event: &RecordEvent) {
        self.versions.insert(meta.stream, meta.stream_version);
        self.last_position = Some(meta.position);
        let s = meta.stream;
        match event {
            RecordEvent::SubjectEnrolled { sid, fbi, name, dob } => {
                if self.subjects.contains_key(&s) {
                    return;
                }
                self.by_sid.insert(normalize(sid), s);
                if let Some(f) = fbi {
                    self.by_fbi.insert(normalize(f), s);
                }
                self.by_name_dob.entry((name_key(name), *dob)).or_default().insert(s);
                self.subjects.insert(
                    s,
                    Subject {
                        sid: sid.clone(),
                        fbi: fbi.clone(),
                        name: name.clone(),
                        aliases: vec![],
                        dob: *dob,
                        cycles: BTreeSet::new(),
                        cycles_ever: BTreeSet::new(),
                        enrolled_at: meta.position,
                    },
                );
            }
            RecordEvent::AliasAdded { name } => {
                if let Some(sub) = self.subjects.get_mut(&s) {
                    sub.aliases.push(name.clone());
                    self.by_name_dob.entry((name_key(name), sub.dob)).or_default().insert(s);
                }
            }
            RecordEvent::IdentityCorrected { name, dob, fbi, .. } => {
                let Some(sub) = self.subjects.get_mut(&s) else { return };
                let old_names: Vec<Name> =
                    std::iter::once(sub.name.clone()).chain(sub.aliases.iter().cloned()).collect();
                for n in &old_names {
                    unindex_name(&mut self.by_name_dob, (name_key(n), sub.dob), &s);
                }
                if let Some(n) = name {
                    sub.name = n.clone();
                }
                if let Some(d) = dob {
                    sub.dob = *d;
                }
                if let Some(f) = fbi {
                    if let Some(old) = &sub.fbi {
                        self.by_fbi.remove(&normalize(old));
                    }
                    self.by_fbi.insert(normalize(f), s);
                    sub.fbi = Some(f.clone());
                }
                for n in std::iter::once(&sub.name).chain(sub.aliases.iter()) {
                    self.by_name_dob.entry((name_key(n), sub.dob)).or_default().insert(s);
                }
            }
            RecordEvent::ArrestRecorded { subject, tracking_number, agency_ori, arrest_date, charges } => {
                let Some(subject) = parse_id(subject) else { return };
                if self.cycles.contains_key(&s) {
                    return;
                }
                if let Some(sub) = self.subjects.get_mut(&subject) {
                    sub.cycles.insert(s);
                    sub.cycles_ever.insert(s);
                }
                self.cycles.insert(
                    s,
                    Cycle {
                        subject,
                        tracking_number: tracking_number.clone(),
                        agency_ori: agency_ori.clone(),
                        arrest_date: *arrest_date,
                        charges: charges
                            .iter()
                            .map(|c| (c.seq, Charge { spec: c.clone(), dispositions: vec![] }))
                            .collect(),
                        court: None,
                        sentences: vec![],
                        supervision_discharged: None,
                        orders: vec![],
                        challenges: BTreeMap::new(),
                        reassignments: vec![],
                        opened_at: meta.position,
                        restated: vec![],
                    },
                );
            }
            RecordEvent::ChargeFiled { charge } | RecordEvent::ChargeAmended { charge, .. } => {
                if let Some(c) = self.cycles.get_mut(&s) {
                    let entry = c
                        .charges
                        .entry(charge.seq)
                        .or_insert_with(|| Charge { spec: charge.clone(), dispositions: vec![] });
                    entry.spec = charge.clone();
                }
            }
            RecordEvent::CourtCaseFiled { court_ori, docket } => {
                if let Some(c) = self.cycles.get_mut(&s) {
                    if let Some((_, old)) = &c.court {
                        self.by_docket.remove(&normalize(old));
                    }
                    c.court = Some((court_ori.clone(), docket.clone()));
                    self.by_docket.insert(normalize(docket), s);
                }
            }
            RecordEvent::DispositionRecorded { seq, disposition, date }
            | RecordEvent::DispositionCorrected { seq, disposition, date, .. } => {
                let correction = match event {
                    RecordEvent::DispositionCorrected { reason, .. } => Some(reason.clone()),
                    _ => None,
                };
                if let Some(ch) = self.cycles.get_mut(&s).and_then(|c| c.charges.get_mut(seq)) {
                    ch.dispositions.push(DispositionRecord {
                        kind: *disposition,
                        date: *date,
                        position: meta.position,
                        recorded: meta.recorded,
                        correction,
                    });
                }
            }
            RecordEvent::SentenceImposed { seq, kind, term_days, amount_cents, date } => {
                if let Some(c) = self.cycles.get_mut(&s) {
                    c.sentences.push(Sentence {
                        seq: *seq,
                        kind: *kind,
                        term_days: *term_days,
                        amount_cents: *amount_cents,
                        date: *date,
                    });
                }
            }
            RecordEvent::SupervisionDischarged { date } => {
                if let Some(c) = self.cycles.get_mut(&s) {
                    c.supervision_discharged = Some(*date);
                }
            }
            RecordEvent::CycleReassigned { from_subject, to_subject, reason, evidence } => {
                let (Some(from), Some(to)) = (parse_id(from_subject), parse_id(to_subject)) else { return };
                let Some(c) = self.cycles.get_mut(&s) else { return };
                c.subject = to;
                c.reassignments.push(Reassignment {
                    from,
                    to,
                    reason: reason.clone(),
                    evidence: evidence.clone(),
                    author: meta.author.clone(),
                    position: meta.position,
                });
                if let Some(sub) = self.subjects.get_mut(&from) {
                    sub.cycles.remove(&s);
                }
                if let Some(sub) = self.subjects.get_mut(&to) {
                    sub.cycles.insert(s);
                    sub.cycles_ever.insert(s);
                }
            }
            RecordEvent::ReliefOrdered { order_id, kind, scope, statute, audiences } => {
                if let Some(c) = self.cycles.get_mut(&s) {
                    // An order on charges expunged already has nothing left to destroy: there is
                    // nothing to restate either.
                    let nothing_new = *kind == ReliefKind::Expunge
                        && matches!(scope, Scope::Charges(seqs) if seqs.iter().all(|q| c.expunged(*q, None)));
                    if nothing_new {
                        c.restated.push(order_id.clone());
                    }
                    if *kind == ReliefKind::Expunge
                        && let Scope::Charges(seqs) = scope
                    {
                        // The content of an expunged charge is forgotten at once: the state is
                        // then what replaying the log gives once the order is carried out.
                        for seq in seqs {
                            c.charges.remove(seq);
                        }
                        c.sentences.retain(|x| !seqs.contains(&x.seq));
                    }
                    c.orders.push(Order {
                        order_id: order_id.clone(),
                        kind: *kind,
                        scope: scope.clone(),
                        statute: statute.clone(),
                        audiences: audiences.clone(),
                        effective: meta.effective,
                        position: meta.position,
                        recorded: meta.recorded,
                        author: meta.author.clone(),
                        vacated: None,
                    });
                }
            }
            RecordEvent::CycleRestated { order_id, snapshot } => {
                let Ok(mut c) = serde_json::from_value::<Cycle>(snapshot.clone()) else { return };
                if !c.restated.contains(order_id) {
                    c.restated.push(order_id.clone());
                }
                if let Some((_, d)) = &c.court {
                    self.by_docket.insert(normalize(d), s);
                }
                if let Some(sub) = self.subjects.get_mut(&c.subject) {
                    sub.cycles.insert(s);
                    sub.cycles_ever.insert(s);
                }
                self.cycles.insert(s, c);
            }
            RecordEvent::RestrictionVacated { order_id, reason } => {
                if let Some(o) =
                    self.cycles.get_mut(&s).and_then(|c| c.orders.iter_mut().rev().find(|o| &o.order_id == order_id))
                {
                    o.vacated = Some((meta.effective, meta.position, reason.clone()));
                }
            }
            RecordEvent::ChallengeFiled { challenge_id, statement } => {
                if let Some(c) = self.cycles.get_mut(&s) {
                    c.challenges
                        .insert(challenge_id.clone(), Challenge { statement: statement.clone(), outcome: None });
                }
            }
            RecordEvent::ChallengeResolved { challenge_id, outcome, .. } => {
                if let Some(ch) = self.cycles.get_mut(&s).and_then(|c| c.challenges.get_mut(challenge_id)) {
                    ch.outcome = Some(*outcome);
                }
            }
            // The access log is read from the store when asked for (a page at a time), never held
            // here: the projection keeps only its streams' versions.
            RecordEvent::RecordDisseminated { .. }
            | RecordEvent::AccessDenied { .. }
            | RecordEvent::AuditRecorded { .. } => {}
            RecordEvent::PolicyAdopted { policy } => self.adopted_policy = Some((meta.position, policy.clone())),
            // Evidence of an order for the covered stream's bundles; the order itself did the rest.
            RecordEvent::OrderNoticed { .. } => {}
            RecordEvent::ExpungementOrdered { order_id, statute, target, target_kind, streams } => {
                let Some(target) = parse_id(target) else { return };
                let streams: Vec<StreamId> = streams.iter().filter_map(|s| parse_id(s)).collect();
                self.expunged.entry(target).or_insert_with(|| Tombstone {
                    order_id: order_id.clone(),
                    statute: statute.clone(),
                    kind: target_kind.clone(),
                    effective: meta.effective,
                    position: meta.position,
                    author: meta.author.clone(),
                    streams: streams.clone(),
                });
                self.forget(&streams);
            }
        }
    }
}

/// A map from pairs sorted by key; of pairs with equal keys the last one wins, as if inserted in
/// the order given.
fn sorted_map<K: Ord + Clone + Send, V: Clone + Send>(mut pairs: Vec<(K, V)>) -> Map<K, V> {
    pairs.par_sort_by(|a, b| a.0.cmp(&b.0));
    pairs.into_iter().collect()
}

/// The name and date-of-birth index of these subjects: every name of record and alias.
fn name_index(subjects: &Map<StreamId, Subject>) -> Map<(String, Date), BTreeSet<StreamId>> {
    let mut names: Vec<((String, Date), StreamId)> = subjects
        .iter()
        .flat_map(|(id, sub)| {
            std::iter::once(&sub.name).chain(sub.aliases.iter()).map(move |n| ((name_key(n), sub.dob), *id))
        })
        .collect();
    names.par_sort_by(|a, b| a.0.cmp(&b.0));
    let mut grouped: Vec<((String, Date), BTreeSet<StreamId>)> = Vec::new();
    for (key, id) in names {
        match grouped.last_mut() {
            Some((k, set)) if *k == key => {
                set.insert(id);
            }
            _ => grouped.push((key, BTreeSet::from([id]))),
        }
    }
    grouped.into_iter().collect()
}

/// Removes a subject from the name and date-of-birth index, dropping the key once no subject is
/// left under it.
fn unindex_name(index: &mut Map<(String, Date), BTreeSet<StreamId>>, key: (String, Date), s: &StreamId) {
    if let Some(set) = index.get_mut(&key) {
        set.remove(s);
        if set.is_empty() {
            index.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Name, RecordEvent};

    /// A case's charges serialize exactly as the `BTreeMap` they were before, in JSON (case
    /// restatements in the log) and in MessagePack (persisted parts), and read back from it.
    #[test]
    fn charges_keep_the_form_of_a_map_by_number() {
        let charge = |seq: u32| Charge {
            spec: ChargeSpec {
                seq,
                statute: format!("s{seq}"),
                offense_code: "1".into(),
                literal: "l".into(),
                level: crate::model::Level::Misdemeanor,
                counts: 1,
            },
            dispositions: vec![],
        };
        // Out of order on the way in: a map by number either way.
        let pairs = [(10, charge(10)), (2, charge(2)), (3, charge(3))];
        let old: BTreeMap<u32, Charge> = pairs.iter().cloned().collect();
        let new: LiteMap<u32, Charge> = pairs.iter().cloned().collect();
        assert_eq!(serde_json::to_string(&new).unwrap(), serde_json::to_string(&old).unwrap());
        assert!(serde_json::to_string(&new).unwrap().starts_with(r#"{"2":{"spec":{"seq":2,"#));
        let packed = rmp_serde::encode::to_vec_named(&old).unwrap();
        assert_eq!(rmp_serde::encode::to_vec_named(&new).unwrap(), packed);
        assert_eq!(rmp_serde::from_slice::<LiteMap<u32, Charge>>(&packed).unwrap(), new);
        let json = serde_json::to_vec(&old).unwrap();
        assert_eq!(serde_json::from_slice::<LiteMap<u32, Charge>>(&json).unwrap(), new);
    }

    struct Log {
        state: State,
        position: u64,
    }

    impl Log {
        fn apply(&mut self, stream: StreamId, event: RecordEvent) {
            let meta = Meta {
                position: self.position,
                stream,
                stream_version: self.state.versions.get(&stream).map_or(0, |v| v + 1),
                recorded: Timestamp(self.position as i64),
                effective: Timestamp(self.position as i64),
                author: PrincipalId::new("clerk").unwrap(),
                court_order: None,
            };
            self.state.apply(&meta, &event);
            self.position += 1;
        }
        fn enroll(&mut self, sid: &str) -> StreamId {
            let s = StreamId::random();
            let name = Name { last: "Doe".into(), first: sid.into(), middle: None };
            let dob = Date::parse("1990-01-01").unwrap();
            self.apply(s, RecordEvent::SubjectEnrolled { sid: sid.into(), fbi: None, name, dob });
            s
        }
    }

    /// An expungement order destroying exactly `target`'s stream.
    fn expungement(order_id: &str, target: StreamId, kind: &str) -> RecordEvent {
        RecordEvent::ExpungementOrdered {
            order_id: order_id.into(),
            statute: "18 Pa.C.S. 9122".into(),
            target: target.to_hex(),
            target_kind: kind.into(),
            streams: vec![target.to_hex()],
        }
    }

    #[test]
    fn an_expunged_cycle_that_was_moved_is_listed_by_no_subject_it_ever_belonged_to() {
        let mut log = Log { state: State::default(), position: 0 };
        let (wrong, right, bystander) = (log.enroll("S-1"), log.enroll("S-2"), log.enroll("S-3"));
        let cycle = StreamId::random();
        let arrest = RecordEvent::ArrestRecorded {
            subject: wrong.to_hex(),
            tracking_number: "T-1".into(),
            agency_ori: "PA0000000".into(),
            arrest_date: Date::parse("2020-01-01").unwrap(),
            charges: vec![],
        };
        log.apply(cycle, arrest);
        let moved = RecordEvent::CycleReassigned {
            from_subject: wrong.to_hex(),
            to_subject: right.to_hex(),
            reason: "fingerprints".into(),
            evidence: "IDENT-1".into(),
        };
        log.apply(cycle, moved);
        assert!(log.state.subjects[&wrong].cycles_ever.contains(&cycle));
        assert!(log.state.subjects[&right].cycles.contains(&cycle));
        log.apply(crate::model::destruction_stream(), expungement("EXP-1", cycle, "cycle"));
        assert!(!log.state.cycles.contains_key(&cycle));
        for s in [wrong, right, bystander] {
            let sub = &log.state.subjects[&s];
            assert!(!sub.cycles.contains(&cycle) && !sub.cycles_ever.contains(&cycle));
        }
        // Forgetting a subject drops it from the name index, and the emptied key with it.
        log.apply(crate::model::destruction_stream(), expungement("EXP-2", bystander, "subject"));
        let name = Name { last: "Doe".into(), first: "S-3".into(), middle: None };
        assert!(log.state.subjects_by_name_dob(&name, Date::parse("1990-01-01").unwrap()).is_empty());
        assert!(!log.state.by_name_dob.keys().any(|(n, _)| n.contains("s-3") || n.contains("S-3")));
        assert_eq!(log.state.by_name_dob.len(), 2);
    }
}
