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
}

fn no_access() -> Access {
    Access::None
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
}

impl Policy {
    /// The default matrix of DOMAIN.md.
    pub fn default_policy() -> Policy {
        use Access::*;
        use Purpose::*;
        let r = |role, purposes: &[Purpose], unrestricted, restricted| {
            let expunged =
                if matches!(role, Role::RecordsClerk | Role::Subject | Role::Auditor) { Metadata } else { None };
            Rule { role, purposes: purposes.to_vec(), unrestricted, restricted, expunged }
        };
        let non_cj = [E, F, H, I, S, V, X];
        Policy {
            version: 1,
            non_conviction_reportable_years: 7,
            rules: vec![
                r(Role::RecordsClerk, &[], Full, Full),
                r(Role::Court, &[], Full, Full),
                r(Role::LawEnforcement, &[C, J], Full, Full),
                r(Role::LawEnforcement, &[], Full, None),
                r(Role::Prosecutor, &[C, J], Full, Full),
                r(Role::DefenseAttorney, &[], Full, None),
                r(Role::Subject, &[], Full, Full),
                r(Role::BackgroundCheck, &non_cj, Reportable, None),
                r(Role::Employer, &non_cj, Reportable, None),
                r(Role::LicensingAgency, &[I], Reportable, None),
                r(Role::Auditor, &[], Metadata, Metadata),
                r(Role::Admin, &[], Metadata, Metadata),
                r(Role::Ledger, &[], Metadata, Metadata),
            ],
        }
    }

    /// The row that applies, if any.
    pub fn rule(&self, role: Role, purpose: Purpose) -> Option<&Rule> {
        self.rules.iter().find(|r| r.role == role && (r.purposes.is_empty() || r.purposes.contains(&purpose)))
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
