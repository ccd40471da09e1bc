//! Persisted projections, so that a restart does not replay the whole log.
//!
//! Each records stream's share of the projection (a subject, a cycle, the policy, the destruction
//! log; of other streams, such as a subject's access log, only the version) is serialized and
//! sealed under that stream's own data key (`Store::seal_for_streams`), and kept in the store with
//! the log position the whole set reaches (a snapshot file written whole after a replay from zero,
//! and the parts changed since over it in sled: see `chronicle_store::projection`). Because every
//! part is sealed under the key of the stream it describes, destroying a stream's key (expungement) makes
//! its persisted projection as unreadable as its entries: nothing readable of a record survives its
//! key in what is persisted. The lookup indexes (SID, FBI number, name and date of birth, docket)
//! are never persisted; they are rebuilt in memory from the opened parts.
//!
//! Parts are MessagePack with field names (`rmp-serde`): self-describing like JSON, so optional
//! and defaulted fields keep working, and at 1.15M entries a fifth smaller than JSON, a fifth
//! faster to write and a tenth faster to load (BENCHMARKS.md).
//!
//! Loading is all or nothing: if any part cannot be opened or parsed (a destroyed key, a re-keyed
//! stream, a damaged blob), the service replays the log from zero instead, which is always right.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chronicle_core::StreamId;
use chronicle_store::{PROJECTION_BATCH, ProjectionShape, Store};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use crate::state::{Cycle, State, Subject, Tombstone};

// Externally tagged: an internally tagged enum buffers its content, and maps with integer keys
// (charges by number) do not survive that buffering.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Part {
    Subject {
        version: u64,
        subject: Subject,
    },
    Cycle {
        version: u64,
        cycle: Cycle,
    },
    Policy {
        version: u64,
        position: u64,
        policy: Policy,
    },
    Destruction {
        version: u64,
        expunged: BTreeMap<StreamId, Tombstone>,
    },
    /// A stream the projection keeps nothing of but its version (a subject's access log, the
    /// denials and audit logs): without it, the next append to the stream after a restart would
    /// expect a new stream.
    Stream {
        version: u64,
    },
}

/// [`Part`] by reference, for writing: the same serialized form without copying the state.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum PartRef<'a> {
    Subject { version: u64, subject: &'a Subject },
    Cycle { version: u64, cycle: &'a Cycle },
    Policy { version: u64, position: u64, policy: &'a Policy },
    Destruction { version: u64, expunged: BTreeMap<StreamId, &'a Tombstone> },
    Stream { version: u64 },
}

/// Sealed parts, the streams whose part is removed, and the time spent serializing and sealing.
type SealedBatch = (Vec<(StreamId, Vec<u8>)>, Vec<StreamId>, (Duration, Duration));

/// What a save did and how long it took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Saved {
    /// Parts written (streams with a projection).
    pub written: usize,
    /// The whole save.
    pub took: Duration,
    /// Of which serializing the parts (on all cores, while their keys are looked up).
    pub serializing: Duration,
    /// Of which sealing them (on all cores).
    pub sealing: Duration,
    /// Of which writing to the store (while the next batch is being serialized and sealed).
    pub writing: Duration,
    /// Bytes of the sealed parts written.
    pub bytes: u64,
    /// Parts removed (streams with nothing left to persist; none in a whole save).
    pub removed: usize,
    /// Whether this was a whole save (a new snapshot).
    pub whole: bool,
}

/// Writes the parts of `dirty` streams and the position the state reaches.
///
/// With `whole`, the state was replayed from zero and is persisted whole: every stream it holds
/// is written (not only `dirty`), and any other part persisted before is removed.
///
/// Parts are serialized and sealed on all cores a batch at a time, and each batch is written to
/// the store while the next is being sealed.
pub fn save(store: &Store, state: &State, dirty: &BTreeSet<StreamId>, next: u64, whole: bool) -> Result<Saved, String> {
    let started = Instant::now();
    let policy_stream = crate::model::policy_stream();
    let destruction_stream = crate::model::destruction_stream();
    let streams: Vec<StreamId> = if whole {
        // Every stream the state holds anything of, whether or not it was tracked as changed
        // (the destruction and policy streams are in `versions` once they have an entry).
        let mut all: BTreeSet<StreamId> = dirty.clone();
        all.extend(state.versions.keys().copied());
        all.extend(state.subjects.keys().copied());
        all.extend(state.cycles.keys().copied());
        all.into_iter().collect()
    } else {
        dirty.iter().copied().collect()
    };
    let serialize = |s: &StreamId| -> Result<(StreamId, Option<Vec<u8>>), String> {
        let version = state.versions.get(s).copied().unwrap_or(0);
        let part = if let Some(subject) = state.subjects.get(s) {
            Some(PartRef::Subject { version, subject })
        } else if let Some(cycle) = state.cycles.get(s) {
            Some(PartRef::Cycle { version, cycle })
        } else if *s == destruction_stream {
            Some(PartRef::Destruction { version, expunged: state.expunged.iter().map(|(k, v)| (*k, v)).collect() })
        } else if *s == policy_stream {
            state.adopted_policy.as_ref().map(|(position, policy)| PartRef::Policy {
                version,
                position: *position,
                policy,
            })
        } else {
            state.versions.get(s).map(|&version| PartRef::Stream { version })
        };
        let encoded = part.map(|p| {
            // Most parts are under a kilobyte: one allocation rather than a few doublings.
            let mut out = Vec::with_capacity(1024);
            rmp_serde::encode::write_named(&mut out, &p).map(|()| out).map_err(|e| format!("projection of {s}: {e}"))
        });
        Ok((*s, encoded.transpose()?))
    };
    // Serializes a batch of streams on all cores, then seals the parts (streams with nothing to
    // persist have their part removed).
    let seal_batch = |streams: &[StreamId]| -> Result<SealedBatch, String> {
        let t = Instant::now();
        // The streams' keys are found (one sequential scan of sled) while the parts are
        // serialized on the other cores.
        let (keys, serialized) = rayon::join(
            || store.stream_keys(streams),
            || streams.par_iter().map(serialize).collect::<Result<Vec<_>, String>>(),
        );
        let (keys, serialized) = (keys.map_err(|e| e.to_string())?, serialized?);
        let serializing = t.elapsed();
        let (mut plain, mut removed) = (Vec::new(), Vec::new());
        for ((s, encoded), key) in serialized.into_iter().zip(keys) {
            match encoded {
                Some(j) => plain.push((s, key, j)),
                None => removed.push(s),
            }
        }
        let t = Instant::now();
        let sealed = store.seal_under(plain).map_err(|e| e.to_string())?;
        Ok((sealed, removed, (serializing, t.elapsed())))
    };
    let mut saved = Saved { whole, ..Saved::default() };
    if !whole && streams.len() <= PROJECTION_BATCH {
        let (blobs, removed, (serializing, sealing)) = seal_batch(&streams)?;
        (saved.serializing, saved.sealing) = (serializing, sealing);
        saved.written = blobs.len();
        saved.removed = removed.len();
        saved.bytes = blobs.iter().map(|(_, b)| b.len() as u64).sum();
        let t = Instant::now();
        store.write_projection(blobs, removed, next).map_err(|e| e.to_string())?;
        saved.writing = t.elapsed();
    } else {
        let mut w = store.begin_projection_write(whole).map_err(|e| e.to_string())?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::scope(|scope| -> Result<(), String> {
            scope.spawn(|| {
                for chunk in streams.chunks(PROJECTION_BATCH) {
                    if tx.send(seal_batch(chunk)).is_err() {
                        return;
                    }
                }
                drop(tx);
            });
            for sealed in rx {
                let (blobs, mut removed, (serializing, sealing)) = sealed?;
                saved.serializing += serializing;
                saved.sealing += sealing;
                if whole {
                    // A snapshot leaves out what has no part.
                    removed.clear();
                }
                saved.written += blobs.len();
                saved.removed += removed.len();
                saved.bytes += blobs.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
                let t = Instant::now();
                w.write(blobs, removed).map_err(|e| e.to_string())?;
                saved.writing += t.elapsed();
            }
            Ok(())
        })?;
        let t = Instant::now();
        w.finish(next).map_err(|e| e.to_string())?;
        saved.writing += t.elapsed();
    }
    if !whole {
        // A batch of what earlier snapshots left behind goes with each persist over the overlay
        // (a rebuild's caller sweeps the rest at once).
        store.sweep_projection(PROJECTION_BATCH).map_err(|e| e.to_string())?;
    }
    saved.took = started.elapsed();
    Ok(saved)
}

/// A persisted projection loaded: the state, the position it reaches, what it was made of.
pub type Loaded = (State, u64, ProjectionShape);

/// Loads the persisted projection, if there is one and every part opens. Returns the state, the
/// position it reaches, and what the persisted projection was made of; `Ok(None)` when there is
/// none or a part's key was destroyed since it was written (an expungement: the log is replayed,
/// as it should be); `Err` saying why when what is persisted is damaged or does not authenticate
/// (the log is replayed too, and the caller reports it).
pub fn load(store: &Store) -> Result<Option<Loaded>, String> {
    let Some(next) = store.projection_marker().map_err(|e| e.to_string())? else { return Ok(None) };
    if next > store.head().len {
        return Err(format!("it reaches position {next}, beyond the log's {}", store.head().len));
    }
    let Some(persisted) = store.read_projection().map_err(|e| e.to_string())? else { return Ok(None) };
    let opened: Vec<Result<(StreamId, Part), Option<String>>> = persisted
        .parts
        .par_iter()
        .map(|(s, blob)| {
            let plain = store.open_for_stream(s, blob).map_err(|e| match e {
                chronicle_store::ReadError::Payload { source: chronicle_core::SealError::KeyDestroyed, .. } => None,
                other => Some(format!("the part of stream {s}: {other}")),
            })?;
            rmp_serde::from_slice::<Part>(&plain)
                .map(|p| (*s, p))
                .map_err(|e| Some(format!("the part of stream {s} does not parse: {e}")))
        })
        .collect();
    let mut parts = Vec::with_capacity(opened.len());
    for p in opened {
        match p {
            Ok(p) => parts.push(p),
            Err(None) => return Ok(None),
            Err(Some(why)) => return Err(why),
        }
    }
    // The blobs come in stream id order, so each map is built from sorted input in one pass
    // rather than by inserting one key at a time.
    let (mut subjects, mut cycles, mut versions) = (Vec::new(), Vec::new(), Vec::new());
    let mut policy = None;
    let mut expunged = BTreeMap::new();
    for (s, part) in parts {
        match part {
            Part::Subject { version, subject } => {
                versions.push((s, version));
                subjects.push((s, subject));
            }
            Part::Cycle { version, cycle } => {
                versions.push((s, version));
                cycles.push((s, cycle));
            }
            Part::Policy { version, position, policy: p } => {
                versions.push((s, version));
                policy = Some((position, p));
            }
            Part::Destruction { version, expunged: e } => {
                versions.push((s, version));
                expunged = e;
            }
            Part::Stream { version } => versions.push((s, version)),
        }
    }
    let ((subjects, cycles), versions) = rayon::join(
        || rayon::join(|| subjects.into_iter().collect(), || cycles.into_iter().collect()),
        || versions.into_iter().collect(),
    );
    let mut state = State::from_parts(subjects, cycles, policy, versions, next.checked_sub(1));
    state.expunged = expunged.into_iter().collect();
    Ok(Some((state, next, persisted.shape)))
}
