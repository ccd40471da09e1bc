//! Errors of the core layer: one enum per operation, each variant documented.

use crate::ids::{KeyId, PrincipalId};

/// A field of an entry, a statement or a command is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// The field is longer (or shorter) than allowed.
    #[error("{field}: length {len} is outside 1..={max}")]
    Length {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// The field holds characters outside its alphabet.
    #[error("{field}: only {allowed} are allowed")]
    Charset {
        /// Which field.
        field: &'static str,
        /// The alphabet, in words.
        allowed: &'static str,
    },
    /// The field is required and missing.
    #[error("{field}: required")]
    Missing {
        /// Which field.
        field: &'static str,
    },
}

/// Stored or received bytes do not decode as an entry or statement of a known version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end before the structure does.
    #[error("truncated: {what} needs {needed} more bytes")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// Bytes remain after the structure ends.
    #[error("{count} trailing bytes after the {what}")]
    Trailing {
        /// What was decoded.
        what: &'static str,
        /// How many bytes remain.
        count: usize,
    },
    /// The version byte is not one this build understands.
    #[error("unknown {what} version {version}")]
    UnknownVersion {
        /// What was decoded.
        what: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// A tag or flag byte has a value outside its range.
    #[error("{field}: invalid tag {value}")]
    BadTag {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u8,
    },
    /// A field decoded but is not valid.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The whole is larger than the format allows.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// What was decoded.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Sealing or opening a payload failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The AEAD rejected the ciphertext: it was altered, or the key is wrong.
    #[error("payload does not authenticate under its content key")]
    Unauthentic,
    /// The opened payload does not match the commitment its author signed.
    #[error("payload does not match its signed commitment")]
    CommitmentMismatch,
    /// The envelope is shorter than its fixed parts.
    #[error("envelope of {len} bytes is too short")]
    Short {
        /// Its length.
        len: usize,
    },
    /// The data key needed was destroyed (the content was expunged).
    #[error("data key destroyed")]
    KeyDestroyed,
    /// A content key is still wrapped under a data key that was destroyed: expunging replaces
    /// every such wrapping, so this one was put back from before (damage, not an expunged entry).
    #[error("content key wrapped under a destroyed data key, where the expungement left none")]
    DestroyedUnmarked,
    /// The data key needed is not in the vault.
    #[error("data key unknown to the vault")]
    KeyUnknown,
}

/// The registry refuses an event or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The author is not a registered principal.
    #[error("unknown principal {0}")]
    UnknownPrincipal(PrincipalId),
    /// The key id is not registered to the author.
    #[error("key {key} is not registered to {principal}")]
    UnknownKey {
        /// The author.
        principal: PrincipalId,
        /// The key id named.
        key: KeyId,
    },
    /// The key was revoked before this entry.
    #[error("key {key} of {principal} was revoked at position {at}")]
    KeyRevoked {
        /// The author.
        principal: PrincipalId,
        /// The key id.
        key: KeyId,
        /// Position of the revocation entry.
        at: u64,
    },
    /// The key was replaced by a rotation before this entry.
    #[error("key {key} of {principal} was retired by rotation at position {at}")]
    KeyRetired {
        /// The author.
        principal: PrincipalId,
        /// The key id.
        key: KeyId,
        /// Position of the rotation entry.
        at: u64,
    },
    /// The signature does not verify under the named key.
    #[error("signature does not verify")]
    BadSignature,
    /// The principal id is already registered.
    #[error("principal {0} is already registered")]
    DuplicatePrincipal(PrincipalId),
    /// The public key is already registered (to anyone).
    #[error("key {0} is already registered")]
    DuplicateKey(KeyId),
    /// The author's role may not write this event.
    #[error("{author} may not {action}")]
    NotAllowed {
        /// The author.
        author: PrincipalId,
        /// What was attempted, in words.
        action: &'static str,
    },
    /// A registry event's payload is malformed.
    #[error("malformed registry event: {0}")]
    Malformed(String),
    /// A principal holds too many keys.
    #[error("{0} holds the maximum number of keys")]
    TooManyKeys(PrincipalId),
    /// The first entry of a log must register the ledger itself.
    #[error("the first entry must register the ledger principal, self-signed")]
    BadGenesis,
}
