//! The principal registry: who may sign, with which keys, in which role.
//!
//! The registry is event-sourced in the system stream [`StreamId::REGISTRY`], whose payloads are
//! public JSON (public keys and roles are not secret, and anyone checking the log, or an evidence
//! bundle, must be able to rebuild the registry without the vault). [`Registry`] is a pure fold of
//! those events: the store applies them as it appends, and `verify` replays them in log order, so
//! each entry's signature is judged against the registry exactly as it stood just before it.
//!
//! Rules:
//! - The log's first entry registers the ledger's own principal (role `ledger`), self-signed.
//! - Registering a principal takes an `admin` or the `ledger`; only the genesis entry may create a
//!   `ledger` principal.
//! - A rotation adds a new key and retires an old one from the rotation's position on; a
//!   revocation ends a key from its position on. Either may be done by an admin, the ledger or the
//!   principal itself (with a key that is still valid).
//! - A key is valid for entries after the one that registered it and before the one that retired
//!   or revoked it. Entries before stay valid: a later revocation does not rewrite history.
//! - A TLS client certificate is recorded by its fingerprint (by an admin or the ledger) and may
//!   be revoked (by them or the principal) on its own: certificates and signing keys are separate
//!   credentials, and revoking one leaves the other as it was.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::entry::{EventType, Statement};
use crate::error::RegistryError;
use crate::ids::{KeyId, PrincipalId};
use crate::limits::PRINCIPAL_KEYS_MAX;

/// Event type: a principal is registered with a role and a first key.
pub const PRINCIPAL_REGISTERED: &str = "registry.principal_registered";
/// Event type: a principal's key is replaced by a new one.
pub const KEY_ROTATED: &str = "registry.key_rotated";
/// Event type: a key is revoked.
pub const KEY_REVOKED: &str = "registry.key_revoked";
/// Event type: a TLS client certificate is issued to a principal.
pub const CERTIFICATE_ISSUED: &str = "registry.certificate_issued";
/// Event type: a TLS client certificate is revoked.
pub const CERTIFICATE_REVOKED: &str = "registry.certificate_revoked";

/// What a principal is, for authorization.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The ledger itself (signs the genesis entry and checkpoints).
    Ledger,
    /// Manages principals.
    Admin,
    /// Records bureau staff: enters and maintains records, carries out orders.
    RecordsClerk,
    /// A court or its case-management system.
    Court,
    /// A law-enforcement agency.
    LawEnforcement,
    /// A prosecutor's office.
    Prosecutor,
    /// A defense attorney.
    DefenseAttorney,
    /// The record's subject.
    Subject,
    /// A background-check company.
    BackgroundCheck,
    /// An employer.
    Employer,
    /// A licensing agency.
    LicensingAgency,
    /// An auditor.
    Auditor,
}

impl Role {
    /// The role's name as written in registry events.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Ledger => "ledger",
            Role::Admin => "admin",
            Role::RecordsClerk => "records_clerk",
            Role::Court => "court",
            Role::LawEnforcement => "law_enforcement",
            Role::Prosecutor => "prosecutor",
            Role::DefenseAttorney => "defense_attorney",
            Role::Subject => "subject",
            Role::BackgroundCheck => "background_check",
            Role::Employer => "employer",
            Role::LicensingAgency => "licensing_agency",
            Role::Auditor => "auditor",
        }
    }
}

/// A registry event, as carried in a registry entry's public JSON payload.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RegistryEvent {
    /// `registry.principal_registered`.
    Registered(PrincipalRegistered),
    /// `registry.key_rotated`.
    Rotated(KeyRotated),
    /// `registry.key_revoked`.
    Revoked(KeyRevoked),
    /// `registry.certificate_issued`.
    CertificateIssued(CertificateIssued),
    /// `registry.certificate_revoked`.
    CertificateRevoked(CertificateRevoked),
}

/// Payload of `registry.certificate_issued`: the certificate a principal connects with, by its
/// fingerprint. The server serves a client certificate only while the registry shows it issued
/// to the principal it names and not revoked.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateIssued {
    /// Whose certificate.
    pub principal: PrincipalId,
    /// SHA-256 of the certificate's DER, 64 lowercase hex digits.
    pub fingerprint: String,
    /// The end of its validity, seconds since 1970-01-01T00:00:00Z.
    pub not_after: i64,
}

/// Payload of `registry.certificate_revoked`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRevoked {
    /// Whose certificate.
    pub principal: PrincipalId,
    /// Its fingerprint, 64 lowercase hex digits.
    pub fingerprint: String,
    /// Why, in words.
    pub reason: String,
}

/// A certificate's state in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateState {
    /// Whose certificate.
    pub principal: PrincipalId,
    /// The end of its validity, seconds since 1970-01-01T00:00:00Z.
    pub not_after: i64,
    /// Position of the entry that recorded it.
    pub issued_at: u64,
    /// Position of its revocation.
    pub revoked_at: Option<u64>,
}

/// Payload of `registry.principal_registered`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRegistered {
    /// The new principal's id.
    pub principal: PrincipalId,
    /// Its role.
    pub role: Role,
    /// Its first ed25519 public key, 64 hex digits.
    pub public_key: String,
}

/// Payload of `registry.key_rotated`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotated {
    /// Whose key.
    pub principal: PrincipalId,
    /// The new public key, 64 hex digits.
    pub new_public_key: String,
    /// The key id retired, 16 hex digits.
    pub retires: String,
}

/// Payload of `registry.key_revoked`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRevoked {
    /// Whose key.
    pub principal: PrincipalId,
    /// The key id revoked, 16 hex digits.
    pub key_id: String,
    /// Why, in words.
    pub reason: String,
}

impl RegistryEvent {
    /// The event type this event is written under.
    pub fn event_type(&self) -> EventType {
        let name = match self {
            RegistryEvent::Registered(_) => PRINCIPAL_REGISTERED,
            RegistryEvent::Rotated(_) => KEY_ROTATED,
            RegistryEvent::Revoked(_) => KEY_REVOKED,
            RegistryEvent::CertificateIssued(_) => CERTIFICATE_ISSUED,
            RegistryEvent::CertificateRevoked(_) => CERTIFICATE_REVOKED,
        };
        // The three names are constants within the event-type alphabet.
        EventType::new(name).expect("registry event types are valid")
    }

    /// The JSON payload.
    pub fn to_payload(&self) -> Vec<u8> {
        // Serializing these plain structs to JSON cannot fail.
        serde_json::to_vec(self).expect("registry events serialize")
    }

    /// Parses a payload written under `event_type`.
    pub fn parse(event_type: &EventType, payload: &[u8]) -> Result<RegistryEvent, RegistryError> {
        let bad = |e: serde_json::Error| RegistryError::Malformed(e.to_string());
        match event_type.as_str() {
            PRINCIPAL_REGISTERED => serde_json::from_slice(payload).map(RegistryEvent::Registered).map_err(bad),
            KEY_ROTATED => serde_json::from_slice(payload).map(RegistryEvent::Rotated).map_err(bad),
            KEY_REVOKED => serde_json::from_slice(payload).map(RegistryEvent::Revoked).map_err(bad),
            CERTIFICATE_ISSUED => serde_json::from_slice(payload).map(RegistryEvent::CertificateIssued).map_err(bad),
            CERTIFICATE_REVOKED => serde_json::from_slice(payload).map(RegistryEvent::CertificateRevoked).map_err(bad),
            other => Err(RegistryError::Malformed(format!("unknown registry event type {other}"))),
        }
    }

    /// Whether an event type belongs to the registry.
    pub fn is_registry_type(event_type: &EventType) -> bool {
        event_type.as_str().starts_with("registry.")
    }
}

/// Parses 64 hex digits as an ed25519 public key, refusing weak (small-order) keys and keys with
/// a torsion component (mixed order): only a key in the prime-order subgroup is registered, so
/// that a signature that passes the strict check (see `sign`) has a torsion-free R as well, and
/// every check of it, strict or batched, gives the same answer.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, RegistryError> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut b)
        .map_err(|_| RegistryError::Malformed("public key must be 64 hex digits".into()))?;
    let k = VerifyingKey::from_bytes(&b).map_err(|_| RegistryError::Malformed("not an ed25519 public key".into()))?;
    if k.is_weak() {
        return Err(RegistryError::Malformed("weak ed25519 public key (small order)".into()));
    }
    if !k.to_edwards().is_torsion_free() {
        return Err(RegistryError::Malformed("ed25519 public key with a torsion component (mixed order)".into()));
    }
    Ok(k)
}

fn check_fingerprint(s: &str) -> Result<(), RegistryError> {
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(RegistryError::Malformed("a certificate fingerprint must be 64 lowercase hex digits".into()));
    }
    Ok(())
}

fn parse_key_id(s: &str) -> Result<KeyId, RegistryError> {
    KeyId::from_hex(s).ok_or_else(|| RegistryError::Malformed("key id must be 16 hex digits".into()))
}

/// One registered key and its lifetime in log positions.
#[derive(Clone, Debug)]
pub struct KeyState {
    /// Whose key.
    pub principal: PrincipalId,
    /// The public key.
    pub public: VerifyingKey,
    /// Position of the entry that registered it.
    pub added_at: u64,
    /// Position of the rotation that retired it.
    pub retired_at: Option<u64>,
    /// Position of the revocation.
    pub revoked_at: Option<u64>,
}

/// One registered principal.
#[derive(Clone, Debug)]
pub struct PrincipalState {
    /// Its role.
    pub role: Role,
    /// Its keys, oldest first.
    pub keys: Vec<KeyId>,
    /// Position of its registration.
    pub registered_at: u64,
}

/// The registry's state after some prefix of the log.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    principals: HashMap<PrincipalId, PrincipalState>,
    keys: HashMap<KeyId, KeyState>,
    certificates: HashMap<String, CertificateState>,
}

impl Registry {
    /// An empty registry (before the genesis entry).
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Whether nothing is registered yet.
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }

    /// A principal's state.
    pub fn principal(&self, id: &PrincipalId) -> Option<&PrincipalState> {
        self.principals.get(id)
    }

    /// A key's state.
    pub fn key(&self, id: &KeyId) -> Option<&KeyState> {
        self.keys.get(id)
    }

    /// A certificate's state, by its fingerprint (64 lowercase hex digits).
    pub fn certificate(&self, fingerprint: &str) -> Option<&CertificateState> {
        self.certificates.get(fingerprint)
    }

    /// Every certificate recorded for a principal, with its fingerprint, oldest first.
    pub fn certificates_of(&self, principal: &PrincipalId) -> Vec<(&str, &CertificateState)> {
        let mut out: Vec<(&str, &CertificateState)> =
            self.certificates.iter().filter(|(_, c)| &c.principal == principal).map(|(f, c)| (f.as_str(), c)).collect();
        out.sort_by_key(|(_, c)| c.issued_at);
        out
    }

    /// Every registered principal.
    pub fn principals(&self) -> impl Iterator<Item = (&PrincipalId, &PrincipalState)> {
        self.principals.iter()
    }

    /// How many principals are registered.
    pub fn principal_count(&self) -> usize {
        self.principals.len()
    }

    /// The key an author's statement names, if it is valid for the next entry.
    ///
    /// For the genesis entry (empty registry) the key comes from the entry's own payload, which
    /// must register the ledger with that key.
    pub fn signing_key(
        &self,
        statement: &Statement,
        public_payload: Option<&[u8]>,
    ) -> Result<VerifyingKey, RegistryError> {
        if self.is_empty() {
            let payload = public_payload.ok_or(RegistryError::BadGenesis)?;
            let ev = RegistryEvent::parse(&statement.event_type, payload).map_err(|_| RegistryError::BadGenesis)?;
            let RegistryEvent::Registered(r) = ev else {
                return Err(RegistryError::BadGenesis);
            };
            let key = parse_public_key(&r.public_key).map_err(|_| RegistryError::BadGenesis)?;
            if r.role != Role::Ledger
                || r.principal != statement.author
                || KeyId::of(&key.to_bytes()) != statement.key_id
            {
                return Err(RegistryError::BadGenesis);
            }
            return Ok(key);
        }
        let author = &statement.author;
        if !self.principals.contains_key(author) {
            return Err(RegistryError::UnknownPrincipal(author.clone()));
        }
        let key = match self.keys.get(&statement.key_id) {
            Some(k) if &k.principal == author => k,
            _ => {
                return Err(RegistryError::UnknownKey { principal: author.clone(), key: statement.key_id });
            }
        };
        if let Some(at) = key.revoked_at {
            return Err(RegistryError::KeyRevoked { principal: author.clone(), key: statement.key_id, at });
        }
        if let Some(at) = key.retired_at {
            return Err(RegistryError::KeyRetired { principal: author.clone(), key: statement.key_id, at });
        }
        Ok(key.public)
    }

    /// Checks a registry event authored by `author` at `position` and applies it. The author's
    /// signature must already have been checked with [`Registry::signing_key`].
    pub fn apply(&mut self, position: u64, author: &PrincipalId, event: &RegistryEvent) -> Result<(), RegistryError> {
        let genesis = self.is_empty();
        let author_role = self.principals.get(author).map(|p| p.role);
        let privileged = matches!(author_role, Some(Role::Admin | Role::Ledger));
        match event {
            RegistryEvent::Registered(r) => {
                if genesis {
                    if r.role != Role::Ledger || &r.principal != author {
                        return Err(RegistryError::BadGenesis);
                    }
                } else {
                    if !privileged {
                        return Err(RegistryError::NotAllowed {
                            author: author.clone(),
                            action: "register principals",
                        });
                    }
                    if r.role == Role::Ledger {
                        return Err(RegistryError::NotAllowed {
                            author: author.clone(),
                            action: "register a second ledger principal",
                        });
                    }
                }
                if self.principals.contains_key(&r.principal) {
                    return Err(RegistryError::DuplicatePrincipal(r.principal.clone()));
                }
                let key = parse_public_key(&r.public_key)?;
                let kid = KeyId::of(&key.to_bytes());
                if self.keys.contains_key(&kid) {
                    return Err(RegistryError::DuplicateKey(kid));
                }
                self.keys.insert(
                    kid,
                    KeyState {
                        principal: r.principal.clone(),
                        public: key,
                        added_at: position,
                        retired_at: None,
                        revoked_at: None,
                    },
                );
                self.principals.insert(
                    r.principal.clone(),
                    PrincipalState { role: r.role, keys: vec![kid], registered_at: position },
                );
            }
            RegistryEvent::Rotated(r) => {
                if genesis {
                    return Err(RegistryError::BadGenesis);
                }
                self.ledger_only(author, &r.principal, "rotate the ledger's own key")?;
                if !privileged && author != &r.principal {
                    return Err(RegistryError::NotAllowed {
                        author: author.clone(),
                        action: "rotate another principal's key",
                    });
                }
                let retires = parse_key_id(&r.retires)?;
                self.live_key_of(&r.principal, retires)?;
                let key = parse_public_key(&r.new_public_key)?;
                let kid = KeyId::of(&key.to_bytes());
                if self.keys.contains_key(&kid) {
                    return Err(RegistryError::DuplicateKey(kid));
                }
                let p = self
                    .principals
                    .get_mut(&r.principal)
                    .ok_or_else(|| RegistryError::UnknownPrincipal(r.principal.clone()))?;
                if p.keys.len() >= PRINCIPAL_KEYS_MAX {
                    return Err(RegistryError::TooManyKeys(r.principal.clone()));
                }
                p.keys.push(kid);
                self.keys.insert(
                    kid,
                    KeyState {
                        principal: r.principal.clone(),
                        public: key,
                        added_at: position,
                        retired_at: None,
                        revoked_at: None,
                    },
                );
                if let Some(k) = self.keys.get_mut(&retires) {
                    k.retired_at = Some(position);
                }
            }
            RegistryEvent::Revoked(r) => {
                if genesis {
                    return Err(RegistryError::BadGenesis);
                }
                self.ledger_only(author, &r.principal, "revoke the ledger's own key")?;
                if !privileged && author != &r.principal {
                    return Err(RegistryError::NotAllowed {
                        author: author.clone(),
                        action: "revoke another principal's key",
                    });
                }
                let kid = parse_key_id(&r.key_id)?;
                self.live_key_of(&r.principal, kid)?;
                if let Some(k) = self.keys.get_mut(&kid) {
                    k.revoked_at = Some(position);
                }
            }
            RegistryEvent::CertificateIssued(c) => {
                if genesis {
                    return Err(RegistryError::BadGenesis);
                }
                if !privileged {
                    return Err(RegistryError::NotAllowed { author: author.clone(), action: "record certificates" });
                }
                self.ledger_only(author, &c.principal, "record the ledger's certificates")?;
                check_fingerprint(&c.fingerprint)?;
                if !self.principals.contains_key(&c.principal) {
                    return Err(RegistryError::UnknownPrincipal(c.principal.clone()));
                }
                if self.certificates.contains_key(&c.fingerprint) {
                    return Err(RegistryError::Malformed(format!("certificate {} is already recorded", c.fingerprint)));
                }
                self.certificates.insert(
                    c.fingerprint.clone(),
                    CertificateState {
                        principal: c.principal.clone(),
                        not_after: c.not_after,
                        issued_at: position,
                        revoked_at: None,
                    },
                );
            }
            RegistryEvent::CertificateRevoked(c) => {
                if genesis {
                    return Err(RegistryError::BadGenesis);
                }
                self.ledger_only(author, &c.principal, "revoke the ledger's certificates")?;
                if !privileged && author != &c.principal {
                    return Err(RegistryError::NotAllowed {
                        author: author.clone(),
                        action: "revoke another principal's certificate",
                    });
                }
                check_fingerprint(&c.fingerprint)?;
                match self.certificates.get_mut(&c.fingerprint) {
                    Some(cert) if cert.principal == c.principal && cert.revoked_at.is_none() => {
                        cert.revoked_at = Some(position);
                    }
                    Some(cert) if cert.principal == c.principal => {
                        return Err(RegistryError::Malformed(format!(
                            "certificate {} is already revoked",
                            c.fingerprint
                        )));
                    }
                    _ => {
                        return Err(RegistryError::Malformed(format!(
                            "no certificate {} is recorded for {}",
                            c.fingerprint, c.principal
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The ledger principal's keys are the ledger's alone to rotate or revoke: an admin (or
    /// anyone) who could revoke them could stop the ledger signing, or rotate in a key of their
    /// own and sign as the ledger.
    fn ledger_only(
        &self,
        author: &PrincipalId,
        target: &PrincipalId,
        action: &'static str,
    ) -> Result<(), RegistryError> {
        let target_is_ledger = self.principals.get(target).is_some_and(|p| p.role == Role::Ledger);
        if target_is_ledger && author != target {
            return Err(RegistryError::NotAllowed { author: author.clone(), action });
        }
        Ok(())
    }

    fn live_key_of(&self, principal: &PrincipalId, kid: KeyId) -> Result<(), RegistryError> {
        if !self.principals.contains_key(principal) {
            return Err(RegistryError::UnknownPrincipal(principal.clone()));
        }
        match self.keys.get(&kid) {
            Some(k) if &k.principal == principal => {
                if let Some(at) = k.revoked_at {
                    return Err(RegistryError::KeyRevoked { principal: principal.clone(), key: kid, at });
                }
                if let Some(at) = k.retired_at {
                    return Err(RegistryError::KeyRetired { principal: principal.clone(), key: kid, at });
                }
                Ok(())
            }
            _ => Err(RegistryError::UnknownKey { principal: principal.clone(), key: kid }),
        }
    }
}

impl RegistryEvent {
    /// A draft of this event for the registry stream, effective now, with a fresh idempotency
    /// key.
    pub fn draft(&self) -> crate::command::Draft {
        crate::command::Draft {
            stream: crate::ids::StreamId::REGISTRY,
            event_type: self.event_type(),
            effective_time: crate::ids::Timestamp::now(),
            refs: crate::entry::References {
                idempotency_key: hex::encode(crate::random_array::<16>()).into_bytes(),
                ..Default::default()
            },
            payload_kind: crate::entry::PayloadKind::Public,
            payload: self.to_payload(),
        }
    }

    /// `registry.principal_registered` for a principal and key.
    pub fn register(principal: PrincipalId, role: Role, key: &VerifyingKey) -> RegistryEvent {
        RegistryEvent::Registered(PrincipalRegistered { principal, role, public_key: hex::encode(key.to_bytes()) })
    }

    /// `registry.key_rotated`: `new_key` replaces `retires`.
    pub fn rotate(principal: PrincipalId, new_key: &VerifyingKey, retires: KeyId) -> RegistryEvent {
        RegistryEvent::Rotated(KeyRotated {
            principal,
            new_public_key: hex::encode(new_key.to_bytes()),
            retires: retires.to_hex(),
        })
    }

    /// `registry.key_revoked`.
    pub fn revoke(principal: PrincipalId, key_id: KeyId, reason: impl Into<String>) -> RegistryEvent {
        RegistryEvent::Revoked(KeyRevoked { principal, key_id: key_id.to_hex(), reason: reason.into() })
    }

    /// `registry.certificate_issued`.
    pub fn certificate_issued(principal: PrincipalId, fingerprint: String, not_after: i64) -> RegistryEvent {
        RegistryEvent::CertificateIssued(CertificateIssued { principal, fingerprint, not_after })
    }

    /// `registry.certificate_revoked`.
    pub fn certificate_revoked(
        principal: PrincipalId,
        fingerprint: String,
        reason: impl Into<String>,
    ) -> RegistryEvent {
        RegistryEvent::CertificateRevoked(CertificateRevoked { principal, fingerprint, reason: reason.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PrincipalId {
        PrincipalId::new(s).unwrap()
    }

    /// A registry with the ledger, an admin and a clerk.
    fn registry() -> Registry {
        let mut r = Registry::new();
        let key = |seed: u8| ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
        r.apply(0, &id("ledger"), &RegistryEvent::register(id("ledger"), Role::Ledger, &key(1))).unwrap();
        r.apply(1, &id("ledger"), &RegistryEvent::register(id("admin"), Role::Admin, &key(2))).unwrap();
        r.apply(2, &id("admin"), &RegistryEvent::register(id("clerk"), Role::RecordsClerk, &key(3))).unwrap();
        r
    }

    #[test]
    fn certificates_are_recorded_by_admins_and_revoked_once_apart_from_keys() {
        let mut r = registry();
        let fp = "ab".repeat(32);
        let issued = RegistryEvent::certificate_issued(id("clerk"), fp.clone(), 1_900_000_000);
        // Only an admin (or the ledger) records one; for a known principal; one spelling.
        assert!(matches!(r.apply(3, &id("clerk"), &issued), Err(RegistryError::NotAllowed { .. })));
        let unknown = RegistryEvent::certificate_issued(id("nobody"), fp.clone(), 0);
        assert!(matches!(r.apply(3, &id("admin"), &unknown), Err(RegistryError::UnknownPrincipal(_))));
        let upper = RegistryEvent::certificate_issued(id("clerk"), "AB".repeat(32), 0);
        assert!(matches!(r.apply(3, &id("admin"), &upper), Err(RegistryError::Malformed(_))));
        r.apply(3, &id("admin"), &issued).unwrap();
        assert!(r.apply(4, &id("admin"), &issued).is_err(), "recorded twice");
        let c = r.certificate(&fp).unwrap();
        assert_eq!((c.principal.as_str(), c.not_after, c.issued_at, c.revoked_at), ("clerk", 1_900_000_000, 3, None));
        // Another principal may not revoke it; the principal itself may, once.
        let revoke = RegistryEvent::certificate_revoked(id("clerk"), fp.clone(), "lost");
        r.apply(
            4,
            &id("admin"),
            &RegistryEvent::register(
                id("other"),
                Role::Court,
                &ed25519_dalek::SigningKey::from_bytes(&[4; 32]).verifying_key(),
            ),
        )
        .unwrap();
        assert!(matches!(r.apply(5, &id("other"), &revoke), Err(RegistryError::NotAllowed { .. })));
        r.apply(5, &id("clerk"), &revoke).unwrap();
        assert_eq!(r.certificate(&fp).unwrap().revoked_at, Some(5));
        assert!(r.apply(6, &id("admin"), &revoke).is_err(), "revoked twice");
        let wrong = RegistryEvent::certificate_revoked(id("other"), fp.clone(), "x");
        assert!(r.apply(6, &id("admin"), &wrong).is_err(), "not other's certificate");
        // The clerk's key is untouched.
        let p = r.principal(&id("clerk")).unwrap();
        assert!(p.keys.iter().all(|k| r.key(k).unwrap().revoked_at.is_none()));
        assert_eq!(r.certificates_of(&id("clerk")).len(), 1);
        // Payloads round-trip under their event types.
        for ev in [issued, revoke] {
            assert_eq!(RegistryEvent::parse(&ev.event_type(), &ev.to_payload()).unwrap(), ev);
        }
    }
}
