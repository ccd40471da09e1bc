//! Property test over random valid command sequences, against a simple model: rebuilding the
//! projection from zero gives exactly the incremental state (I6), and no requester's view ever
//! holds an item that the policy withholds from that role and purpose. Prints the failing case;
//! proptest's seed file replays it.

mod common;

use std::collections::BTreeMap;

use chronicle_core::{Role, StreamId, Timestamp};
use chronicle_records::{DispositionKind, Level, Purpose, RecordEvent, Records, ReliefKind, Scope};
use common::{Bureau, charge, date};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Enroll,
    Arrest { subject: usize, charges: u32 },
    Dispose { cycle: usize, seq: u32, conviction: bool },
    Correct { cycle: usize, seq: u32, conviction: bool },
    Seal { cycle: usize, seq: u32, law_enforcement_may_see: bool },
    Vacate { cycle: usize },
    Expunge { cycle: usize, seq: u32 },
    Reassign { cycle: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Enroll),
        3 => (0..6usize, 1..4u32).prop_map(|(subject, charges)| Op::Arrest { subject, charges }),
        3 => (0..8usize, 1..4u32, any::<bool>()).prop_map(|(cycle, seq, conviction)| Op::Dispose { cycle, seq, conviction }),
        1 => (0..8usize, 1..4u32, any::<bool>()).prop_map(|(cycle, seq, conviction)| Op::Correct { cycle, seq, conviction }),
        2 => (0..8usize, 1..4u32, any::<bool>()).prop_map(|(cycle, seq, law_enforcement_may_see)| Op::Seal { cycle, seq, law_enforcement_may_see }),
        1 => (0..8usize).prop_map(|cycle| Op::Vacate { cycle }),
        1 => (0..8usize, 1..4u32).prop_map(|(cycle, seq)| Op::Expunge { cycle, seq }),
        1 => (0..8usize, 0..6usize).prop_map(|(cycle, to)| Op::Reassign { cycle, to }),
    ]
}

/// What the model knows of each charge.
#[derive(Default, Clone, Debug)]
struct ChargeModel {
    sealed: Vec<(String, bool)>,
    expunged: bool,
}

struct Model {
    subjects: Vec<StreamId>,
    cycles: Vec<StreamId>,
    charges: BTreeMap<(StreamId, u32), ChargeModel>,
    orders: u32,
}

fn run(mut ops: Vec<Op>) -> Result<(), TestCaseError> {
    // Every case starts with two subjects and an arrest, so that the random tail has material.
    ops.splice(0..0, [Op::Enroll, Op::Enroll, Op::Arrest { subject: 0, charges: 3 }]);
    let b = Bureau::new();
    let mut m = Model { subjects: vec![], cycles: vec![], charges: BTreeMap::new(), orders: 0 };
    for (i, op) in ops.into_iter().enumerate() {
        let now = Timestamp::now();
        let ok = |r: Result<_, chronicle_records::ServiceError>| match r {
            Ok(_) => Ok(true),
            Err(chronicle_records::ServiceError::Invalid(_)) => Ok(false),
            Err(e) => Err(TestCaseError::fail(format!("op {i}: {e}"))),
        };
        match op {
            Op::Enroll => {
                let s = b.enroll(&format!("SID-{i}"), &format!("NAME{i}"), "PAT", "1990-01-01");
                m.subjects.push(s);
            }
            Op::Arrest { subject, charges } if !m.subjects.is_empty() => {
                let s = m.subjects[subject % m.subjects.len()];
                let c = StreamId::random();
                let specs = (1..=charges)
                    .map(|q| charge(q, &format!("ST-{i}-{q}"), &format!("LITERAL-{i}-{q}"), Level::Misdemeanor))
                    .collect();
                let ev = RecordEvent::ArrestRecorded {
                    subject: s.to_hex(),
                    tracking_number: format!("OTN-{i}"),
                    agency_ori: "ZZ".into(),
                    arrest_date: date("2024-01-02"),
                    charges: specs,
                };
                if ok(b.rec(&b.police, c, ev))? {
                    m.cycles.push(c);
                    for q in 1..=charges {
                        m.charges.insert((c, q), ChargeModel::default());
                    }
                }
            }
            Op::Dispose { cycle, seq, conviction } | Op::Correct { cycle, seq, conviction } if !m.cycles.is_empty() => {
                let c = m.cycles[cycle % m.cycles.len()];
                let disposition = if conviction { DispositionKind::GuiltyPlea } else { DispositionKind::Dismissed };
                let ev = if matches!(op, Op::Dispose { .. }) {
                    RecordEvent::DispositionRecorded { seq, disposition, date: date("2024-02-02") }
                } else {
                    RecordEvent::DispositionCorrected {
                        seq,
                        disposition,
                        date: date("2024-02-03"),
                        reason: "correction".into(),
                    }
                };
                ok(b.rec(&b.court, c, ev))?;
            }
            Op::Seal { cycle, seq, law_enforcement_may_see } if !m.cycles.is_empty() => {
                let c = m.cycles[cycle % m.cycles.len()];
                m.orders += 1;
                let id = format!("SEAL-{}", m.orders);
                let audiences = if law_enforcement_may_see { vec![Role::LawEnforcement] } else { vec![] };
                let ev = RecordEvent::ReliefOrdered {
                    order_id: id.clone(),
                    kind: ReliefKind::Seal,
                    scope: Scope::Charges(vec![seq]),
                    statute: "s".into(),
                    audiences,
                };
                if ok(b.records.record(&b.court, c, &ev, now, None))? {
                    m.charges.entry((c, seq)).or_default().sealed.push((id, law_enforcement_may_see));
                }
            }
            Op::Vacate { cycle } if !m.cycles.is_empty() => {
                let c = m.cycles[cycle % m.cycles.len()];
                let last = m
                    .charges
                    .iter()
                    .filter(|((cc, _), _)| *cc == c)
                    .flat_map(|(k, v)| v.sealed.last().map(|(id, _)| (*k, id.clone())))
                    .next();
                if let Some((key, id)) = last
                    && ok(b.rec(
                        &b.court,
                        c,
                        RecordEvent::RestrictionVacated { order_id: id.clone(), reason: "vacated".into() },
                    ))?
                {
                    for v in m.charges.values_mut() {
                        v.sealed.retain(|(o, _)| *o != id);
                    }
                    let _ = key;
                }
            }
            Op::Expunge { cycle, seq } if !m.cycles.is_empty() => {
                let c = m.cycles[cycle % m.cycles.len()];
                m.orders += 1;
                let ev = RecordEvent::ReliefOrdered {
                    order_id: format!("EXP-{}", m.orders),
                    kind: ReliefKind::Expunge,
                    scope: Scope::Charges(vec![seq]),
                    statute: "s".into(),
                    audiences: vec![],
                };
                if ok(b.rec(&b.court, c, ev))? {
                    m.charges.entry((c, seq)).or_default().expunged = true;
                }
            }
            Op::Reassign { cycle, to } if !m.cycles.is_empty() && !m.subjects.is_empty() => {
                let c = m.cycles[cycle % m.cycles.len()];
                let from = b.records.projection().state.cycles[&c].subject;
                let to = m.subjects[to % m.subjects.len()];
                ok(b.rec(
                    &b.clerk,
                    c,
                    RecordEvent::CycleReassigned {
                        from_subject: from.to_hex(),
                        to_subject: to.to_hex(),
                        reason: "r".into(),
                        evidence: "e".into(),
                    },
                ))?;
            }
            _ => {}
        }
    }

    prop_assert!(b.ledger.store.head().len >= 10, "the case must have appended its setup");

    // I6: rebuilding from zero gives exactly the incremental state.
    b.records.catch_up().unwrap();
    let rebuilt = Records::open(b.ledger.store.clone()).unwrap();
    prop_assert!(
        rebuilt.projection().state == b.records.projection().state,
        "rebuilt state differs from the incremental one"
    );

    // No view holds what the policy withholds.
    for s in &m.subjects {
        for (role, purpose) in [
            (Role::Employer, Purpose::E),
            (Role::LawEnforcement, Purpose::C),
            (Role::LawEnforcement, Purpose::E),
            (Role::Auditor, Purpose::A),
            (Role::Court, Purpose::C),
        ] {
            let v = match b.records.view(*s, role, purpose, None) {
                Ok(v) => v,
                // Nothing shown to a requester the policy may withhold from: nothing to check.
                Err(chronicle_records::ServiceError::View(chronicle_records::view::ViewError::NothingShown {
                    ..
                })) => {
                    continue;
                }
                Err(e) => return Err(TestCaseError::fail(format!("{role:?}/{purpose:?}: {e}"))),
            };
            let text = String::from_utf8(v.to_bytes()).unwrap();
            for c in &v.cycles {
                for ch in &c.charges {
                    let cycle = StreamId::from_hex(&c.cycle).unwrap();
                    // Charges are numbered as shown to a requester the policy may withhold from:
                    // the literal ("LITERAL-<op>-<seq>") names the charge where content is shown.
                    let seq = ch
                        .literal
                        .as_deref()
                        .and_then(|l| l.rsplit('-').next())
                        .and_then(|q| q.parse().ok())
                        .unwrap_or(ch.seq);
                    let cm = m.charges.get(&(cycle, seq)).cloned().unwrap_or_default();
                    prop_assert!(!cm.expunged, "{role:?} sees expunged {}", ch.item);
                    let sealed_from_role =
                        cm.sealed.last().is_some_and(|(_, le)| !(*le && role == Role::LawEnforcement));
                    if sealed_from_role {
                        prop_assert!(
                            matches!(
                                (role, purpose),
                                (Role::LawEnforcement, Purpose::C) | (Role::Court, _) | (Role::Auditor, _)
                            ),
                            "{role:?}/{purpose:?} sees sealed {}",
                            ch.item
                        );
                    }
                    if role == Role::Auditor {
                        prop_assert!(ch.literal.is_none() && ch.statute.is_none(), "the auditor sees content");
                    }
                }
            }
            // Item ids carry the charge's own number only where the policy withholds nothing.
            let renumbered =
                chronicle_records::Policy::default_policy().rule(role, purpose).is_none_or(|r| r.may_withhold());
            for ((cycle, seq), cm) in &m.charges {
                if cm.expunged && !renumbered {
                    prop_assert!(!text.contains(&format!("{}:{seq}", cycle.to_hex())), "expunged item id shown");
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 40, ..ProptestConfig::default() })]
    #[test]
    fn rebuild_equals_incremental_and_views_respect_the_policy(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
