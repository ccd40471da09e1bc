//! Chronicle's append log on sled.
//!
//! Invariants this crate keeps (their byte-level detail is in docs/FORMAT.md):
//! - I1 append-only: nothing here rewrites or removes an entry; positions are gapless from 0.
//! - I2 chained: each entry names the hash of the entry before it, globally and in its stream;
//!   [`verify_log`] re-checks both chains from the stored bytes.
//! - I3 signed: an append is refused unless its author's key is valid in the registry as it stands
//!   at that point and the signature verifies.
//! - I4 atomic and durable: a request is appended wholly or not at all, and is acknowledged only
//!   after the group holding it passed `fdatasync` (see `durability`).
//! - I5 concurrency: appends state the stream version they expect; a mismatch is refused. A retry
//!   with the same idempotency keys returns the first answer and appends nothing.

pub mod auth;
pub mod checkpoint;
pub mod commitment;
mod db;
mod derived;
mod durability;
pub mod error;
pub mod evidence;
#[cfg(feature = "test-hooks")]
pub mod hooks;
pub mod layout;
pub mod projection;
mod rekey;
mod repair;
mod store;
mod subscribe;
pub mod tree;
pub mod verify;
mod writer;

pub use auth::IntegrityKeys;
pub use checkpoint::{CheckpointError, CheckpointPolicy};
pub use commitment::HeadsCommitment;
pub use error::{AppendError, OpenError, ReadError};
pub use layout::Head;
pub use projection::{PROJECTION_BATCH, PersistedProjection, ProjectionShape, ProjectionWrite};
pub use repair::ROLLBACK_ACCEPTED;
pub use store::{OpenedEntry, Queued, Store, StorePaths};
pub use subscribe::Subscription;
pub use verify::{Expected, Fault, Finding, Report, verify_log, verify_log_against, verify_log_holding};

use chronicle_core::{Command, Hash, StreamId, Timestamp};

/// The stream version an append expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must have no entries yet.
    NoStream,
    /// The stream's last entry must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `current` (`None`: no entries) meets the expectation.
    pub fn admits(self, current: Option<u64>) -> bool {
        match (self, current) {
            (ExpectedVersion::Any, _) | (ExpectedVersion::NoStream, None) => true,
            (ExpectedVersion::Exact(n), Some(v)) => v == n,
            _ => false,
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream yet"),
            ExpectedVersion::Exact(n) => write!(f, "version {n}"),
        }
    }
}

/// One atomic append: commands for one stream.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    /// The stream every command names.
    pub stream: StreamId,
    /// What the stream's version must be.
    pub expected: ExpectedVersion,
    /// The signed commands, in order.
    pub commands: Vec<Command>,
}

/// Where one command landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Appended {
    /// Global position.
    pub position: u64,
    /// Version within the stream.
    pub stream_version: u64,
    /// Entry hash.
    pub hash: Hash,
}

/// The answer to an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    /// The stream appended to.
    pub stream: StreamId,
    /// One per command, in order.
    pub entries: Vec<Appended>,
    /// The ledger's recorded time for these entries.
    pub recorded_time: Timestamp,
    /// True when this answers a retry: nothing new was appended.
    pub duplicate: bool,
}
