//! Heads commitments: the ledger's signed statement of where every stream ended at one log size.
//!
//! The store keeps the heads map (`chronicle_tlog::heads`) of every stream at the published
//! length: the syncer sets the heads a group moved when it publishes the group, so the map's
//! upkeep is a few pointer steps per entry, amortized over the group commit. A commitment takes a
//! snapshot of it (one pointer: the map is persistent), hashes the paths that changed since the
//! last one, and appends `ledger.stream_heads` (`{"root": hex, "size": N}`) to the ledger's own
//! stream, signed by the ledger: the root of the map over the log's first `N` entries. `N` is at
//! most the commitment's own position and past the previous commitment's position, so each
//! commitment covers the one before it, and `verify` can recompute every one in a single pass.
//!
//! A checkpoint that covers a commitment lets anyone check, with an `O(log n)` proof from the
//! snapshot, that a stream had exactly the entries an evidence bundle shows at size `N`.

use std::collections::VecDeque;

use chronicle_core::{Entry, PayloadKind, StreamId};
use chronicle_tlog::heads::{HeadsMap, StreamHead};
use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointError;
use crate::error::ReadError;
use crate::store::Store;

/// The event type of a heads commitment, in the ledger's own stream.
pub const STREAM_HEADS: &str = "ledger.stream_heads";

/// How many recent commitments keep their map's snapshot (older ones are rebuilt when asked).
const SNAPSHOTS_KEPT: usize = 4;

/// A heads commitment in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadsCommitment {
    /// The log size the map is of: every stream's head among the first `size` entries.
    pub size: u64,
    /// The map's root.
    pub root: [u8; 32],
    /// The position of the commitment entry (at least `size`).
    pub position: u64,
}

/// The payload of a `ledger.stream_heads` entry.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    root: String,
    size: u64,
}

/// The payload recording a commitment to `root` at `size`.
pub(crate) fn payload(size: u64, root: &[u8; 32]) -> Vec<u8> {
    // Fields in name order, no spaces: one spelling per commitment.
    format!("{{\"root\":\"{}\",\"size\":{size}}}", hex::encode(root)).into_bytes()
}

/// The commitment an entry records, if it is one (`None` for any other entry); an entry of the
/// ledger's stream with the type but not the shape is an error.
pub fn commitment_of(e: &Entry) -> Option<Result<HeadsCommitment, String>> {
    let st = &e.statement;
    if st.stream != StreamId::LEDGER || st.event_type.as_str() != STREAM_HEADS {
        return None;
    }
    Some(parse(e))
}

fn parse(e: &Entry) -> Result<HeadsCommitment, String> {
    let st = &e.statement;
    if st.payload_kind != PayloadKind::Public {
        return Err("a heads commitment's payload is not public".into());
    }
    let body = chronicle_core::payload::open_public(&st.commitment, e.envelope()).map_err(|x| x.to_string())?;
    let (size, root) = parse_payload(body)?;
    if size > e.position() {
        return Err(format!("a heads commitment at position {} names the later size {size}", e.position()));
    }
    Ok(HeadsCommitment { size, root, position: e.position() })
}

/// The size and root a heads commitment's payload names, if it is in its one spelling.
pub(crate) fn parse_payload(body: &[u8]) -> Result<(u64, [u8; 32]), String> {
    let p: Payload = serde_json::from_slice(body).map_err(|x| format!("a heads commitment's payload: {x}"))?;
    let mut root = [0u8; 32];
    if p.root.len() != 64 || p.root.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("a heads commitment's root is not 64 lowercase hex digits".into());
    }
    hex::decode_to_slice(&p.root, &mut root).map_err(|x| x.to_string())?;
    if payload(p.size, &root) != body {
        return Err("a heads commitment's payload is not in its one spelling".into());
    }
    Ok((p.size, root))
}

/// The heads map at the published length, kept by the syncer.
pub(crate) struct LiveHeads {
    map: HeadsMap,
    size: u64,
}

impl LiveHeads {
    pub(crate) fn new(heads: Vec<StreamHead>, size: u64) -> Result<LiveHeads, String> {
        let map = HeadsMap::new(heads).map_err(|e| format!("the stream heads: {e}"))?;
        Ok(LiveHeads { map, size })
    }

    /// Moves the map on to `size`, setting the heads that moved to get there.
    pub(crate) fn publish(&mut self, moved: impl IntoIterator<Item = StreamHead>, size: u64) {
        for h in moved {
            self.map.set(h);
        }
        self.size = size;
    }
}

/// The commitments made by this process, newest last, each with its map's snapshot.
#[derive(Default)]
pub(crate) struct Kept {
    made: VecDeque<(HeadsCommitment, HeadsMap)>,
}

impl Store {
    /// Commits the heads of every stream at the published length, in a `ledger.stream_heads`
    /// entry signed by `ledger` (the ledger's own principal), unless the last commitment is the
    /// log's last entry already. Returns the commitment; a checkpoint signed at any size past its
    /// position covers it.
    pub fn commit_stream_heads(&self, ledger: &chronicle_core::Signer) -> Result<HeadsCommitment, CheckpointError> {
        let mut kept = self.shared.commitments.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (snapshot, size) = {
            let live = self.shared.live_heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (live.map.clone(), live.size)
        };
        // Nothing appended since the last commitment (by this process or before it): that one.
        if let Some(last) = size.checked_sub(1)
            && let Some(e) = self.entry(last).map_err(|e| CheckpointError::Storage(e.to_string()))?
            && let Some(c) = commitment_of(&e)
        {
            return c.map_err(|reason| CheckpointError::Storage(format!("the log's last entry: {reason}")));
        }
        // Hashing the paths moved since the last commitment happens outside the live map's lock.
        let root = snapshot.root();
        let body = payload(size, &root);
        let idempotency_key = chronicle_core::Hash::of(b"chronicle.stream-heads.v1\n", &[&body]).0.to_vec();
        let draft = chronicle_core::Draft {
            stream: StreamId::LEDGER,
            event_type: chronicle_core::EventType::new(STREAM_HEADS)
                .map_err(|e| CheckpointError::Storage(e.to_string()))?,
            effective_time: chronicle_core::Timestamp::now(),
            refs: chronicle_core::References { idempotency_key, ..Default::default() },
            payload_kind: PayloadKind::Public,
            payload: body,
        };
        let cmd = chronicle_core::Command::sign(ledger, draft).map_err(|e| CheckpointError::Signing(e.to_string()))?;
        let req = crate::AppendRequest {
            stream: StreamId::LEDGER,
            expected: crate::ExpectedVersion::Any,
            commands: vec![cmd],
        };
        let receipt =
            self.append(req).map_err(|e| CheckpointError::Storage(format!("recording the stream heads: {e}")))?;
        let position = receipt.entries.first().map(|a| a.position).unwrap_or(0);
        // The map was of the published length when the entry was built after it.
        crate::writer::invariant(position >= size, "a heads commitment lies at or past the size it commits to");
        let c = HeadsCommitment { size, root, position };
        kept.made.push_back((c, snapshot));
        while kept.made.len() > SNAPSHOTS_KEPT {
            kept.made.pop_front();
        }
        Ok(c)
    }

    /// The heads map a commitment is the root of: its snapshot if this process made it recently,
    /// else rebuilt from the stream heads at its size (one read per stream) and checked against
    /// its root.
    pub fn heads_map_of(&self, c: &HeadsCommitment) -> Result<HeadsMap, ReadError> {
        {
            let kept = self.shared.commitments.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, map)) = kept.made.iter().find(|(k, _)| k == c) {
                return Ok(map.clone());
            }
        }
        let map = HeadsMap::new(self.stream_heads_at(c.size)?)
            .map_err(|e| self.report_damage('h', format!("the stream heads at size {}: {e}", c.size)))?;
        // Either the commitment (a signed entry, which no rebuild changes) or the stream heads
        // are wrong: `verify` tells which. Nothing is answered from either.
        if map.root() != c.root {
            return Err(ReadError::Damaged {
                position: c.position,
                reason: format!(
                    "the stream heads at size {} are not the ones this commitment names (run `chronicle verify`)",
                    c.size
                ),
            });
        }
        Ok(map)
    }
}
