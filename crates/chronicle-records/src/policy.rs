//! The access policy, as data: who may see what, by role, purpose and record status.
//!
//! A jurisdiction changes the policy by adopting a new one (a `policy_adopted` event in the policy
//! stream), not by changing code. Because the policy is in the log, replaying the log to a
//! position also gives the policy that was in force there, which is what makes a past
//! background-check response reproducible byte for byte.

use chronicle_core::Role;
use serde::{Deserialize, Serialize};

use crate::model::Purpose;

/// How much of a class of items a requester sees.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Everything.
    Full,
    /// Convictions, and non-convictions whose arrest is recent (FCRA 605(a)(2): 7 years).
    Reportable,
    /// That items exist (ids, counts, orders carried out), no content.
    Metadata,
    /// Nothing.
    None,
}

/// One row of the matrix.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The requester's role.
    pub role: Role,
    /// Purposes the row applies to; empty means any purpose.
    #[serde(default)]
    pub purposes: Vec<Purpose>,
    /// What the requester sees of unrestricted items.
    pub unrestricted: Access,
    /// What the requester sees of sealed, limited-access or set-aside items (unless an order lists
    /// the requester's role among its audiences).
    pub restricted: Access,
    /// Of expunged items: [`Access::Metadata`] shows that an order was carried out (order, date,
    /// by whom) and nothing of the content; anything else shows nothing at all.
    #[serde(default = "no_access")]
    pub expunged: Access,
    /// How much of a record's history, entry by entry, the requester may replay:
    /// [`Access::Full`] (each entry with its content), [`Access::Metadata`] (who, when, what kind)
    /// or [`Access::None`]. Each entry is further limited to what the row shows of the items it
    /// concerns. A row that may withhold items (see [`Rule::may_withhold`]) cannot grant a history:
    /// entries carry charge numbers and counts that would reveal what is withheld, so such a
    /// policy is refused when it is adopted.
    #[serde(default = "no_access")]
    pub history: Access,
}

fn no_access() -> Access {
    Access::None
}

impl Rule {
    /// Whether the row can leave items out of a view altogether (rather than show them, with or
    /// without their content). Such a requester must not be able to tell a withheld item from one
    /// that never existed: charges are numbered as shown, and a record or case of which nothing is
    /// shown answers as an unknown one.
    pub fn may_withhold(&self) -> bool {
        [self.unrestricted, self.restricted].iter().any(|a| matches!(a, Access::Reportable | Access::None))
    }
}

/// The whole policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Version number, recorded with every dissemination.
    pub version: u32,
    /// How long a non-conviction stays reportable under [`Access::Reportable`], in years.
    pub non_conviction_reportable_years: i32,
    /// The matrix; the first row matching role and purpose applies; no row means denied.
    pub rules: Vec<Rule>,
    /// Roles inside the bureau: what they read is not a dissemination (it is not logged as a
    /// release; their refusals are logged like anyone's).
    #[serde(default = "default_bureau")]
    pub bureau: Vec<Role>,
    /// Roles that may read the log itself: entry bytes (inclusion proofs that return the entry,
    /// evidence exports), and subscriptions to the log. Anyone registered may check the inclusion
    /// of an entry it already holds (leaf hash in, audit path out).
    #[serde(default = "default_log_readers")]
    pub log_readers: Vec<Role>,
    /// Roles that may look up a subject or case id by SID or docket, for the commands they write
    /// (the answer is ids only, so it is not a release).
    #[serde(default = "default_resolvers")]
    pub resolvers: Vec<Role>,
    /// Roles that oversee releases: they may reproduce a past release and list who received a
    /// record. A subject may list who received their own record.
    #[serde(default = "default_overseers")]
    pub overseers: Vec<Role>,
}

fn default_bureau() -> Vec<Role> {
    vec![Role::Ledger, Role::Admin, Role::RecordsClerk, Role::Auditor]
}

fn default_log_readers() -> Vec<Role> {
    vec![Role::Ledger, Role::Admin, Role::RecordsClerk, Role::Auditor, Role::Court]
}

fn default_resolvers() -> Vec<Role> {
    vec![Role::RecordsClerk, Role::Court, Role::LawEnforcement, Role::Prosecutor]
}

fn default_overseers() -> Vec<Role> {
    vec![Role::Ledger, Role::Admin, Role::RecordsClerk, Role::Auditor]
}

impl Policy {
    /// The default access matrix (docs/API.md, "Who may do what").
    pub fn default_policy() -> Policy {
        use Access::*;
        use Purpose::*;
        let r = |role, purposes: &[Purpose], unrestricted, restricted, history| {
            let expunged =
                if matches!(role, Role::RecordsClerk | Role::Subject | Role::Auditor) { Metadata } else { None };
            Rule { role, purposes: purposes.to_vec(), unrestricted, restricted, expunged, history }
        };
        let non_cj = [E, F, H, I, S, V, X];
        Policy {
            version: 1,
            non_conviction_reportable_years: 7,
            rules: vec![
                r(Role::RecordsClerk, &[], Full, Full, Full),
                r(Role::Court, &[], Full, Full, Full),
                r(Role::LawEnforcement, &[C], Full, Full, Full),
                r(Role::LawEnforcement, &[J], Full, Full, None),
                r(Role::LawEnforcement, &[], Full, None, None),
                r(Role::Prosecutor, &[C], Full, Full, Full),
                r(Role::Prosecutor, &[J], Full, Full, None),
                r(Role::DefenseAttorney, &[], Full, None, None),
                r(Role::Subject, &[], Full, Full, None),
                r(Role::BackgroundCheck, &non_cj, Reportable, None, None),
                r(Role::Employer, &non_cj, Reportable, None, None),
                r(Role::LicensingAgency, &[I], Reportable, None, None),
                r(Role::Auditor, &[], Metadata, Metadata, Metadata),
                r(Role::Admin, &[], Metadata, Metadata, Metadata),
                r(Role::Ledger, &[], Metadata, Metadata, Metadata),
            ],
            bureau: default_bureau(),
            log_readers: default_log_readers(),
            resolvers: default_resolvers(),
            overseers: default_overseers(),
        }
    }

    /// The row that applies, if any.
    pub fn rule(&self, role: Role, purpose: Purpose) -> Option<&Rule> {
        self.rules.iter().find(|r| r.role == role && (r.purposes.is_empty() || r.purposes.contains(&purpose)))
    }

    /// Why the policy cannot be adopted, if it cannot: a row that may withhold items may not
    /// grant a history (see [`Rule::history`]).
    pub fn problem(&self) -> Option<String> {
        self.rules.iter().find(|r| r.may_withhold() && r.history != Access::None).map(|r| {
            format!(
                "the row for {} may withhold items, so it cannot grant a history (entries would reveal them)",
                r.role.as_str()
            )
        })
    }

    /// blake3 of the policy's JSON, hex.
    pub fn hash(&self) -> String {
        // Plain data: serializing cannot fail.
        blake3::hash(&serde_json::to_vec(self).expect("policy serializes")).to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matrix_follows_the_domain_notes() {
        let p = Policy::default_policy();
        assert_eq!(p.rule(Role::LawEnforcement, Purpose::C).unwrap().restricted, Access::Full);
        assert_eq!(p.rule(Role::LawEnforcement, Purpose::E).unwrap().restricted, Access::None);
        assert_eq!(p.rule(Role::Employer, Purpose::E).unwrap().unrestricted, Access::Reportable);
        assert_eq!(p.rule(Role::Employer, Purpose::E).unwrap().restricted, Access::None);
        assert!(p.rule(Role::Employer, Purpose::C).is_none(), "an employer has no criminal-justice purpose");
        assert_eq!(p.rule(Role::Auditor, Purpose::A).unwrap().unrestricted, Access::Metadata);
        let round: Policy = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(round, p);
    }
}
