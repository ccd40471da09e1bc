//! Chronicle's core: the entry format, hashing, signing, the principal registry, payload sealing,
//! the key vault and the limits everything else enforces.
//!
//! This crate does no I/O except reading and writing the vault file. The format it defines is
//! specified in `docs/FORMAT.md` and pinned by known-answer tests: once written, an entry's bytes,
//! hash and signature never change meaning.

pub(crate) mod codec;
pub mod command;
pub mod entry;
pub mod error;
pub mod hash;
pub mod ids;
pub mod limits;
pub mod payload;
pub mod registry;
pub mod sign;
pub mod vault;

pub use command::{Command, CommandError, Draft};
pub use entry::{Entry, EventType, Header, PayloadKind, References, Statement};
pub use error::{DecodeError, FieldError, RegistryError, SealError};
pub use hash::Hash;
pub use ids::{KeyId, PrincipalId, StreamId, Timestamp};
pub use registry::{Registry, RegistryEvent, Role};
pub use sign::Signer;
pub use vault::{Anchor, DataKeyId, MasterKey, Vault, VaultError, VaultKeys};

/// Fills an array from the operating system's random source.
///
/// A machine without a working random source cannot produce keys, salts or nonces safely;
/// Chronicle stops rather than continue with predictable values.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random source is available");
    out
}

pub use ed25519_dalek::VerifyingKey;
