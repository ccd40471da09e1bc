//! Errors of the store, one enum per operation.

use chronicle_core::{CommandError, DecodeError, RegistryError, SealError, StreamId, VaultError};

use crate::ExpectedVersion;

/// The store cannot be opened or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// sled refused to open the directory (missing, locked by another process, damaged).
    #[error("cannot open the log at {path}: {reason}")]
    Sled {
        /// The log directory.
        path: String,
        /// sled's reason.
        reason: String,
    },
    /// The directory holds no Chronicle log.
    #[error("{0} holds no Chronicle log (run `chronicle init` first)")]
    NotInitialized(String),
    /// The directory already holds a log.
    #[error("{0} already holds a Chronicle log")]
    AlreadyInitialized(String),
    /// The log was written by an incompatible version.
    #[error("unsupported store format {0}")]
    UnsupportedFormat(u8),
    /// The vault cannot be opened.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The log does not reach the last checkpoint the ledger signed (the vault's anchor): it was
    /// restored from an older copy or cut short. The store refuses to open it, unless an operator
    /// accepts the rollback (which is recorded in the log).
    #[error(
        "the log was rolled back: the ledger signed a checkpoint at tree size {anchor_size} (root {anchor_root}), \
         but {found}; restore the log that reaches it, or accept the rollback explicitly \
         (`chronicle serve --accept-rollback REASON`, recorded in the log)"
    )]
    RolledBack {
        /// The size of the last checkpoint signed.
        anchor_size: u64,
        /// Its root, hex.
        anchor_root: String,
        /// What the log holds instead.
        found: String,
    },
    /// The log and the vault are in different histories (each accepted rollback starts one): the
    /// log is from before the last rollback accepted (a history given up, or an older copy), or
    /// the vault lost its later anchors. An operator may accept the log as a rollback.
    #[error(
        "the log and the vault are from different histories: {0}; restore the log and the vault that belong together"
    )]
    OtherHistory(String),
    /// The stored state does not hold together (run `chronicle verify`).
    #[error("the log is damaged: {0} (run `chronicle verify` for details)")]
    Damaged(String),
    /// Another I/O failure.
    #[error("i/o: {0}")]
    Io(String),
}

/// An append was refused. Nothing of the request was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The request holds no commands.
    #[error("the request holds no commands")]
    Empty,
    /// The request holds more commands than allowed.
    #[error("{count} commands exceed the batch limit of {max}")]
    TooManyCommands {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The request's payloads are larger than allowed in total.
    #[error("{bytes} payload bytes exceed the batch limit of {max}")]
    TooLarge {
        /// How many bytes.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A command is malformed.
    #[error("command {index}: {source}")]
    Malformed {
        /// Index of the command in the request.
        index: usize,
        /// What is wrong.
        source: CommandError,
    },
    /// A command names another stream than the request.
    #[error("command {index}: names stream {found}, the request appends to {expected}")]
    StreamMismatch {
        /// Index of the command.
        index: usize,
        /// The request's stream.
        expected: StreamId,
        /// The command's stream.
        found: StreamId,
    },
    /// The stream is not at the version the request expected.
    #[error("stream {stream}: expected {expected}, but the stream is at {}", match actual { Some(v) => format!("version {v}"), None => "no entries".to_string() })]
    WrongExpectedVersion {
        /// The stream.
        stream: StreamId,
        /// What the request expected.
        expected: ExpectedVersion,
        /// The stream's last version, or `None` when it has no entries.
        actual: Option<u64>,
    },
    /// A command's author, key or signature is not acceptable.
    #[error("command {index}: {source}")]
    Unauthorized {
        /// Index of the command.
        index: usize,
        /// The registry's reason.
        source: RegistryError,
    },
    /// A registry command is not acceptable.
    #[error("command {index}: {source}")]
    Registry {
        /// Index of the command.
        index: usize,
        /// The registry's reason.
        source: RegistryError,
    },
    /// The command's event type or payload kind does not belong in its stream.
    #[error("command {index}: {reason}")]
    NotAllowedInStream {
        /// Index of the command.
        index: usize,
        /// Why, in words.
        reason: &'static str,
    },
    /// An idempotency key was used before for a different command, or only part of a retried
    /// request matches what was appended.
    #[error("command {index}: idempotency key already used for a different command")]
    IdempotencyConflict {
        /// Index of the command.
        index: usize,
    },
    /// Two commands of the request share an idempotency key.
    #[error("commands {first} and {second} share an idempotency key")]
    DuplicateIdempotencyKey {
        /// The first.
        first: usize,
        /// The second.
        second: usize,
    },
    /// The vault refused to seal a payload.
    #[error("sealing: {0}")]
    Seal(SealError),
    /// Writing failed; the store stops accepting appends until it is reopened.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The store has failed or is shutting down.
    #[error("the store is not accepting appends: {0}")]
    Unavailable(String),
}

/// A read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Stored bytes do not match the hash stored beside them, or do not decode.
    #[error("entry at position {position} is damaged: {reason}")]
    Damaged {
        /// Where.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// Decoding failed.
    #[error("entry at position {position}: {source}")]
    Decode {
        /// Where.
        position: u64,
        /// Why.
        source: DecodeError,
    },
    /// The page size asked for is over the limit.
    #[error("page of {asked} entries exceeds the limit of {max}")]
    PageTooLarge {
        /// Asked for.
        asked: usize,
        /// The limit.
        max: usize,
    },
    /// The payload cannot be opened.
    #[error("payload of position {position}: {source}")]
    Payload {
        /// Where.
        position: u64,
        /// Why.
        source: SealError,
    },
    /// sled failed.
    #[error("storage: {0}")]
    Storage(String),
    /// Something the store derives from the entries (an index, a binding, the tree) does not
    /// match them. Nothing is answered from it; the store stops accepting appends and rebuilds
    /// it from the entries at its next start.
    #[error("derived state damaged ({space}): {reason}; it is rebuilt from the log at the next start")]
    Derived {
        /// The key space, as docs/FORMAT.md names it (`s`, `i`, `c`, `t`, `p`, `w`, `m`, `r`).
        space: char,
        /// What is wrong.
        reason: String,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

impl From<sled::Error> for ReadError {
    fn from(e: sled::Error) -> Self {
        ReadError::Storage(e.to_string())
    }
}
