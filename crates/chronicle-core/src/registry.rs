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
}
