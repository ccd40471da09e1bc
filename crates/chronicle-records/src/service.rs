//! The records service: commands in, projections out, over one store.
//!
//! The projection lives in memory and is brought up to date from the log ("catch up") before
//! every command is validated and after it is appended; it is a pure function of the log, so the
//! service can always be rebuilt from zero. Commands are validated against the state and then
//! appended with the stream version the state saw: if another writer got there first, the append
//! is refused with a version conflict and the command is validated again against the newer
//! state. Commands whose rules span streams (a unique SID or docket) are serialized.
//!
//! Decrypting payloads dominates catching up, so pages of entries are opened on all cores and
//! then applied in log order.

use std::collections::BTreeSet;
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use chronicle_core::{Command, Draft, Entry, PayloadKind, PrincipalId, References, Signer, StreamId, Timestamp};
use chronicle_store::{AppendError, AppendReceipt, AppendRequest, ExpectedVersion, ReadError, Store};

use crate::model::{EVENT_PREFIX, RecordEvent, Scope, destruction_stream};
use crate::state::{Meta, State};
use crate::validate::{RecordsError, validate};
use crate::view::ViewError;

/// Entries read from the store at a time.
pub(crate) const PAGE: usize = 2048;

/// A records operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The command breaks a records rule.
    #[error(transparent)]
    Invalid(#[from] RecordsError),
    /// The store refused the append.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// Reading the log failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The view was refused or the subject is unknown.
    #[error(transparent)]
    View(#[from] ViewError),
    /// Nothing at that position or id.
    #[error("not found: {0}")]
    NotFound(String),
    /// The scope was expunged: this is all that may be said of it.
    #[error("expunged by order {order_id} (effective {effective}, entered by {by}); nothing else remains")]
    Expunged {
        /// The order.
        order_id: String,
        /// When it took effect (µs).
        effective: i64,
        /// Who entered it.
        by: String,
    },
    /// The projection could not be persisted.
    #[error("persisting the projection: {0}")]
    Persist(String),
    /// The policy refuses the call (the refusal is logged).
    #[error("{0}")]
    Refused(String),
    /// The call was refused, and logging the refusal failed.
    #[error("{refusal} (and logging the refusal failed: {error})")]
    RefusalNotLogged {
        /// The refusal.
        refusal: String,
        /// Why it could not be logged.
        error: String,
    },
    /// A field of the request is out of range.
    #[error("{field}: {reason}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The requester is over its rate of logged refusals: every call is refused until it slows.
    #[error("too many refused requests: try again in {retry_after_s} s")]
    RateLimited {
        /// Seconds until the next call can be answered.
        retry_after_s: u64,
    },
    /// A page larger than allowed was asked for.
    #[error("{field}: {asked} exceeds the limit of {max}")]
    PageTooLarge {
        /// The field.
        field: &'static str,
        /// What was asked for.
        asked: u32,
        /// The most allowed.
        max: u32,
    },
}

/// One records entry, decoded.
// Decoded entries live only in one page's vector while catching up; boxing the common variant
// would cost an allocation per entry for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Decoded {
    /// A records event.
    Event(Meta, RecordEvent),
    /// Not a records entry (the registry, another system stream).
    Other,
    /// A records entry whose payload cannot be read (its key was destroyed).
    Unreadable(Meta),
}

/// Decodes an entry: opens its payload and parses the records event in it. An entry whose key
/// was destroyed is [`Decoded::Unreadable`]; one that cannot be opened for any other reason is
/// damage, an error: it is never skipped as if expunged.
pub fn decode(store: &Store, e: &Entry) -> Result<Decoded, ReadError> {
    decode_with(e, || store.open_payload(e))
}

fn decode_with<P: std::ops::Deref<Target = Vec<u8>>>(
    e: &Entry,
    payload: impl FnOnce() -> Result<P, ReadError>,
) -> Result<Decoded, ReadError> {
    let st = &e.statement;
    if !st.event_type.as_str().starts_with(EVENT_PREFIX) || st.payload_kind != PayloadKind::Sealed {
        return Ok(Decoded::Other);
    }
    let meta = Meta {
        position: e.position(),
        stream: st.stream,
        stream_version: e.header.stream_version,
        recorded: e.header.recorded_time,
        effective: st.effective_time,
        author: st.author.clone(),
        court_order: st.refs.court_order.clone(),
    };
    match payload() {
        Ok(p) => Ok(match RecordEvent::parse(&st.event_type, &p) {
            Ok(ev) => Decoded::Event(meta, ev),
            // Authentic (the payload opened under its key and matches what its author signed),
            // validated when appended, yet not an event this build knows.
            Err(_) => Decoded::Unreadable(meta),
        }),
        Err(ReadError::Payload { source: chronicle_core::SealError::KeyDestroyed, .. }) => {
            Ok(Decoded::Unreadable(meta))
        }
        Err(e) => Err(e),
    }
}

/// Whether an event holds anything of these charges (so that it must become unreadable when they
/// are expunged). Earlier restatements hold every charge of their time.
fn mentions_charges(ev: &RecordEvent, seqs: &BTreeSet<u32>) -> bool {
    match ev {
        RecordEvent::ArrestRecorded { charges, .. } => charges.iter().any(|c| seqs.contains(&c.seq)),
        RecordEvent::ChargeFiled { charge } | RecordEvent::ChargeAmended { charge, .. } => seqs.contains(&charge.seq),
        RecordEvent::DispositionRecorded { seq, .. }
        | RecordEvent::DispositionCorrected { seq, .. }
        | RecordEvent::SentenceImposed { seq, .. } => seqs.contains(seq),
        RecordEvent::CycleRestated { .. } => true,
        _ => false,
    }
}

/// The records events of a batch for one stream, in order.
fn parse_for(stream: StreamId, cmds: &[Command]) -> Result<Vec<RecordEvent>, ServiceError> {
    if cmds.is_empty() {
        return Err(AppendError::Empty.into());
    }
    let mut events = Vec::with_capacity(cmds.len());
    for (index, cmd) in cmds.iter().enumerate() {
        let st = cmd.statement();
        if st.stream != stream {
            return Err(AppendError::StreamMismatch { index, expected: stream, found: st.stream }.into());
        }
        events.push(RecordEvent::parse(&st.event_type, cmd.payload()).map_err(RecordsError::Malformed)?);
    }
    Ok(events)
}

/// Checks each command's signature against the key the registry holds for it now.
fn check_signatures(registry: &chronicle_core::Registry, cmds: &[Command]) -> Result<(), AppendError> {
    for (index, cmd) in cmds.iter().enumerate() {
        let key = registry
            .signing_key(cmd.statement(), None)
            .map_err(|source| AppendError::Unauthorized { index, source })?;
        if !chronicle_core::sign::verify_statement(&key, cmd.statement_bytes(), cmd.signature()) {
            return Err(AppendError::Unauthorized { index, source: chronicle_core::RegistryError::BadSignature });
        }
    }
    Ok(())
}

/// Validates a batch of commands for one stream in order, each against the state the earlier
/// ones leave behind (their commands depend on each other, e.g. an arrest and its court case).
/// That state is a clone of the projection's, which is O(1): applying the batch to it copies
/// only the map nodes the batch changes (see `state::Map`).
fn validate_in_order(
    state: &State,
    registry: &chronicle_core::Registry,
    cmds: &[Command],
    events: &[RecordEvent],
) -> Result<(), RecordsError> {
    let mut scratch = state.clone();
    let first = state.last_position.map_or(0, |p| p + 1);
    for (position, (cmd, ev)) in (first..).zip(cmds.iter().zip(events)) {
        let st = cmd.statement();
        validate(&scratch, registry, &st.author, st.stream, ev, Timestamp::now())?;
        let meta = Meta {
            position,
            stream: st.stream,
            stream_version: scratch.versions.get(&st.stream).map_or(0, |v| v + 1),
            recorded: Timestamp::now(),
            effective: st.effective_time,
            author: st.author.clone(),
            court_order: st.refs.court_order.clone(),
        };
        scratch.apply(&meta, ev);
    }
    Ok(())
}

/// Applies decoded entries to a state, in order, noting the streams whose projection changed.
pub(crate) fn apply_all(state: &mut State, decoded: Vec<Decoded>, mut dirty: Option<&mut BTreeSet<StreamId>>) {
    for d in decoded {
        if let Decoded::Event(m, ev) = d {
            if let Some(dirty) = dirty.as_deref_mut() {
                dirty.extend(state.touched(&m, &ev));
            }
            state.apply(&m, &ev);
        }
    }
}

/// Persist the projection once this many entries were applied since the last time, unless set
/// otherwise ([`Records::set_persist_every`]).
pub const PERSIST_EVERY: u64 = 20_000;

/// Builds a draft of a records event for a stream.
pub fn draft(
    stream: StreamId,
    event: &RecordEvent,
    effective: Timestamp,
    court_order: Option<String>,
    idempotency_key: Vec<u8>,
) -> Draft {
    Draft {
        stream,
        event_type: event.event_type(),
        effective_time: effective,
        refs: References { court_order, idempotency_key, ..Default::default() },
        payload_kind: PayloadKind::Sealed,
        payload: event.to_payload(),
    }
}

/// The projection and how far into the log it reaches.
pub struct Projection {
    /// The state.
    pub state: State,
    /// The next log position to apply.
    pub next: u64,
    /// Streams changed since the projection was last persisted.
    dirty: BTreeSet<StreamId>,
    /// Where the persisted projection reaches.
    persisted: u64,
    /// Whether the projection was restored from what was persisted (rather than replayed).
    pub restored: bool,
    /// Whether the next persist writes every stream as a new snapshot, replacing whatever is
    /// persisted: the state was replayed from zero and not persisted since, or the overlay over
    /// the snapshot grew past half of it (see [`needs_snapshot`]).
    whole: bool,
    /// What the persisted projection is made of: the parts in its snapshot, and the parts written
    /// over it since (counted each time they are written).
    shape: chronicle_store::ProjectionShape,
    /// Whether a persist is writing a snapshot of the state taken earlier: what is applied
    /// meanwhile is not in it, and must be tracked as changed even if the next persist is whole.
    saving: bool,
}

/// Whether a persisted projection of this shape is better written anew as one snapshot: once the
/// overlay holds more than half as many parts as the snapshot (and a few thousand at least), a
/// load reads more from sled than from the file. Writing the snapshot costs about as much as
/// writing each stream once, so the overlay's writes pay for it at least twice over.
fn needs_snapshot(shape: &chronicle_store::ProjectionShape, min: u64) -> bool {
    shape.overlay > (shape.snapshot_parts / 2).max(min)
}

/// Fewest overlay parts that make a persist write a new snapshot, unless set otherwise (see
/// [`needs_snapshot`] and [`Records::set_snapshot_after`]).
pub const SNAPSHOT_AFTER_MIN: u64 = 4096;

/// How long each phase of a rebuild took.
#[derive(Debug, Clone, Copy, Default)]
pub struct RebuildPhases {
    /// Entries replayed.
    pub entries: u64,
    /// Streams whose projection was persisted.
    pub streams: usize,
    /// Bytes of their sealed projection.
    pub bytes: u64,
    /// Reading, opening and applying every entry (and carrying out pending orders).
    pub replay: std::time::Duration,
    /// Serializing, sealing and writing every stream's projection.
    pub persisting: std::time::Duration,
    /// Of which serializing the parts.
    pub serializing: std::time::Duration,
    /// Of which sealing them.
    pub sealing: std::time::Duration,
    /// Of which writing to the store (while the next batch is being serialized and sealed).
    pub writing: std::time::Duration,
    /// Reopening the store's sled afterwards (see `Store::settle_if_due`), if that was due.
    pub settling: std::time::Duration,
}

/// After a rebuild: removing what earlier persisted projections left (see
/// [`Records::sweep_persisted`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Swept {
    /// Keys removed.
    pub keys: usize,
    /// How long it took.
    pub took: std::time::Duration,
}

/// The records service over a store.
pub struct Records {
    /// The ledger's own signer, which restates what survives a charge expungement (set with
    /// [`Records::set_ledger`]; without it such orders wait).
    ledger: std::sync::OnceLock<Signer>,
    store: Store,
    projection: RwLock<Projection>,
    unique: Mutex<()>,
    catching_up: Mutex<()>,
    persisting: Mutex<()>,
    /// Fewest parts written over the persisted snapshot that make the next persist write a new one.
    snapshot_after: std::sync::atomic::AtomicU64,
    /// Refusals logged per requester (see `refusals`).
    pub(crate) refusals: Mutex<crate::refusals::Limiter>,
    /// Entries applied between persists during catch-ups.
    persist_every: std::sync::atomic::AtomicU64,
    /// Why the last persist during a catch-up failed, until one succeeds.
    persist_failure: Mutex<Option<String>>,
    /// The positions of the orders whose notices this process found or wrote, all of them;
    /// held while notices are written (one writer of notices at a time).
    noticed: Mutex<BTreeSet<u64>>,
}

impl Records {
    fn over(store: Store, projection: Projection) -> Records {
        Records {
            store,
            projection: RwLock::new(projection),
            unique: Mutex::new(()),
            catching_up: Mutex::new(()),
            persisting: Mutex::new(()),
            ledger: std::sync::OnceLock::new(),
            snapshot_after: std::sync::atomic::AtomicU64::new(SNAPSHOT_AFTER_MIN),
            refusals: Mutex::new(crate::refusals::Limiter::default()),
            persist_every: std::sync::atomic::AtomicU64::new(PERSIST_EVERY),
            persist_failure: Mutex::new(None),
            noticed: Mutex::new(BTreeSet::new()),
        }
    }

    /// Opens the service: loads the persisted projection (if any) and replays the rest of the log.
    pub fn open(store: Store) -> Result<Records, ServiceError> {
        let loaded = crate::persist::load(&store).unwrap_or_else(|why| {
            eprintln!("chronicle: the persisted projection was not used ({why}); it is rebuilt from the log");
            None
        });
        let restored = loaded.is_some();
        let (state, next, shape) = loaded.unwrap_or_default();
        let projection = Projection {
            state,
            next,
            dirty: BTreeSet::new(),
            persisted: next,
            restored,
            whole: !restored || needs_snapshot(&shape, SNAPSHOT_AFTER_MIN),
            shape,
            saving: false,
        };
        let r = Records::over(store, projection);
        r.catch_up()?;
        // An order recorded just before a crash is carried out now.
        r.carry_out()?;
        Ok(r)
    }

    /// Opens the service replaying the whole log, ignoring (and then replacing) any persisted
    /// projection. What `chronicle rebuild` does.
    pub fn rebuild(store: Store) -> Result<Records, ServiceError> {
        Records::rebuild_timed(store).map(|(r, _)| r)
    }

    /// [`Records::rebuild`], saying how long each phase took.
    pub fn rebuild_timed(store: Store) -> Result<(Records, RebuildPhases), ServiceError> {
        let mut phases = RebuildPhases::default();
        let mut clock = std::time::Instant::now();
        let mut lap = || {
            let now = std::time::Instant::now();
            std::mem::replace(&mut clock, now).elapsed()
        };
        // The projection persisted before stays until the new one replaces it (see
        // `Store::begin_projection_write`).
        let projection = Projection {
            state: State::new(),
            next: 0,
            dirty: BTreeSet::new(),
            persisted: 0,
            restored: false,
            whole: true,
            shape: Default::default(),
            saving: false,
        };
        let r = Records::over(store, projection);
        // Every stream is persisted once, after the replay and its timing.
        let one = r.catching_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        phases.entries = r.catch_up_holding(one, false)?;
        r.carry_out()?;
        phases.replay = lap();
        let saved = r.persist_saved()?;
        phases.streams = saved.written;
        phases.bytes = saved.bytes;
        phases.persisting = saved.took;
        phases.writing = saved.writing;
        phases.serializing = saved.serializing;
        phases.sealing = saved.sealing;
        phases.settling = lap().saturating_sub(saved.took);
        Ok((r, phases))
    }

    /// Sets how many entries applied since the last persist make a catch-up persist the
    /// projection; by default [`PERSIST_EVERY`].
    pub fn set_persist_every(&self, entries: u64) {
        self.persist_every.store(entries.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Why the last persist made by a catch-up failed, until one succeeds (for health reports).
    pub fn persist_failure(&self) -> Option<String> {
        self.persist_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Sets how many parts written over the persisted snapshot (at least) make the next persist
    /// write a new snapshot; by default [`SNAPSHOT_AFTER_MIN`]. A new snapshot is also due once
    /// they are more than half as many as the snapshot's parts.
    pub fn set_snapshot_after(&self, min: u64) {
        self.snapshot_after.store(min, std::sync::atomic::Ordering::Relaxed);
        let mut p = self.projection.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        p.whole = p.whole || needs_snapshot(&p.shape, min);
    }

    /// Removes everything that earlier persisted projections left behind (a rebuild writes a new
    /// snapshot and leaves the old overlay to be removed later: persists over the overlay remove
    /// it a batch at a time, and `chronicle rebuild` calls this once the rebuilt projection is
    /// in force).
    pub fn sweep_persisted(&self) -> Result<Swept, ServiceError> {
        let _one = self.persisting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = std::time::Instant::now();
        let mut keys = 0;
        loop {
            let n = self.store.sweep_projection(chronicle_store::PROJECTION_BATCH)?;
            keys += n;
            if n < chronicle_store::PROJECTION_BATCH {
                break;
            }
        }
        self.store.settle_if_due()?;
        Ok(Swept { keys, took: started.elapsed() })
    }

    /// Damage (reported, the store stopped for a rebuild at the next start) unless the store's index
    /// of `stream` reaches `known`, the version the projection, built from the entries, knows:
    /// store-level readers find a stream's entries through the index, and a tail deleted from it
    /// (nothing authenticated counts a record stream's versions) would be missed by `what`.
    fn index_reaches(&self, stream: &StreamId, known: u64, what: &str) -> Result<(), ReadError> {
        let indexed = self.store.stream_version(stream)?;
        if indexed.is_none_or(|i| i < known) {
            let reason = format!(
                "the index of stream {stream} ends at version {indexed:?}, the log holds version {known}: {what}"
            );
            return Err(self.store.report_damage('s', reason));
        }
        Ok(())
    }

    /// Records an expungement order for a cycle (`kind` = `cycle`) or a subject's whole record
    /// (`subject`) in the destruction log, then carries it out: destroys the data keys of every
    /// stream it covers. A second order for the same target is recorded too and destroys nothing.
    /// Returns the order's position and how many keys were destroyed.
    pub fn expunge(
        &self,
        signer: &Signer,
        target: StreamId,
        kind: &str,
        order_id: &str,
        statute: &str,
        effective: Timestamp,
    ) -> Result<(u64, usize), ServiceError> {
        self.catch_up()?;
        let (streams, known): (Vec<String>, Vec<(StreamId, u64)>) = {
            let p = self.projection();
            let streams = match p.state.expunged.get(&target) {
                Some(t) => t.streams.iter().map(StreamId::to_hex).collect(),
                None => crate::validate::expungement_streams(&p.state, &target, kind)?,
            };
            let known = streams
                .iter()
                .filter_map(|h| StreamId::from_hex(h))
                .filter_map(|s| p.state.versions.get(&s).map(|v| (s, *v)))
                .collect();
            (streams, known)
        };
        // The keys to destroy are found through each stream's index: it must reach every version
        // the projection (built from the entries) knows, or a hidden tail would keep its keys
        // alive while the order reads as carried out. Damage is refused and repaired at the next
        // start; the order is given again then.
        for (s, v) in known {
            self.index_reaches(&s, v, "the expungement would miss its keys")?;
        }
        let ev = RecordEvent::ExpungementOrdered {
            order_id: order_id.into(),
            statute: statute.into(),
            target: target.to_hex(),
            target_kind: kind.into(),
            streams,
        };
        let key = chronicle_core::random_array::<16>().to_vec();
        let cmd = Command::sign(signer, draft(destruction_stream(), &ev, effective, Some(order_id.into()), key))
            .map_err(|e| RecordsError::Malformed(e.to_string()))?;
        let r = self.append_checked(destruction_stream(), ExpectedVersion::Any, vec![cmd], vec![ev])?;
        let destroyed = self.carry_out()?;
        Ok((r.entries[0].position, destroyed))
    }

    /// Destroys the keys of every expungement order in the log whose keys are not destroyed yet
    /// (after a crash between recording an order and carrying it out, opening finishes it), then
    /// persists the projection so that nothing persisted depends on the destroyed keys.
    pub fn carry_out(&self) -> Result<usize, ServiceError> {
        // Each order's notices first, in the orders streams of what it covers (with the ledger's
        // signer; without it, as when the service is opened, destruction does not wait: the
        // notices follow when the signer is given). Destruction never waits on a notice that
        // could not be written: an evidence bundle is then refused until it is.
        if let Err(e) = self.notice_orders() {
            eprintln!(
                "chronicle: an expungement order's notice could not be written yet ({e}); its keys are destroyed anyway"
            );
        }
        let streams: Vec<StreamId> =
            self.projection().state.expunged.values().flat_map(|t| t.streams.iter().copied()).collect();
        let mut destroyed = 0;
        if !streams.is_empty() {
            destroyed += self.store.destroy_stream_keys(&streams)?;
        }
        if destroyed > 0 {
            self.persist()?;
        }
        destroyed += self.carry_out_charge_orders()?;
        Ok(destroyed)
    }

    /// Writes, signed by the ledger, the notice of every expungement order carried out in the
    /// orders stream of each stream it covers (`records.order_noticed`, naming the order by its
    /// causation hash), where it is not there yet: a notice is the ledger's entry in that stream
    /// naming the order (anything else someone put there is not one). Each order is looked at
    /// once per process; one writer at a time. Returns how many notices were written.
    pub fn notice_orders(&self) -> Result<usize, ServiceError> {
        let Some(ledger) = self.ledger.get() else { return Ok(0) };
        let mut noticed = self.noticed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tombstones: Vec<crate::state::Tombstone> =
            self.projection().state.expunged.values().filter(|t| !noticed.contains(&t.position)).cloned().collect();
        let mut written = 0;
        for t in &tombstones {
            let order = self.store.entry(t.position)?.ok_or_else(|| {
                RecordsError::Malformed(format!("the order at position {} is not in the log", t.position))
            })?;
            for s in &t.streams {
                let orders = crate::model::orders_stream(s);
                let has_notice = |store: &Store| -> Result<bool, ServiceError> {
                    let mut from = 0;
                    loop {
                        let page = store.read_stream(&orders, from, 256)?;
                        if page.iter().any(|e| {
                            e.statement.author == *ledger.principal()
                                && e.statement.refs.causation == Some(order.hash())
                        }) {
                            return Ok(true);
                        }
                        if page.len() < 256 {
                            return Ok(false);
                        }
                        from += 256;
                    }
                };
                if has_notice(&self.store)? {
                    continue;
                }
                let ev = RecordEvent::OrderNoticed {
                    stream: s.to_hex(),
                    order_position: t.position,
                    order_id: t.order_id.clone(),
                    statute: t.statute.clone(),
                };
                let key = format!("notice:{}:{}", t.position, s.to_hex()).into_bytes();
                let mut d = draft(orders, &ev, Timestamp::now(), None, key);
                d.refs.causation = Some(order.hash());
                let cmd = Command::sign(ledger, d).map_err(|e| RecordsError::Malformed(e.to_string()))?;
                match self.append_checked(orders, ExpectedVersion::Any, vec![cmd], vec![ev]) {
                    Ok(_) => written += 1,
                    // Written meanwhile (same idempotency key, another salt): noticed.
                    Err(_) if has_notice(&self.store)? => {}
                    Err(e) => return Err(e),
                }
            }
            noticed.insert(t.position);
        }
        Ok(written)
    }

    /// Gives the service the ledger's signer and finishes any charge expungement waiting for it.
    pub fn set_ledger(&self, ledger: Signer) -> Result<usize, ServiceError> {
        let _ = self.ledger.set(ledger);
        self.notice_orders()?;
        let destroyed = self.carry_out_charge_orders()?;
        // A case that reached an expunged subject just before a crash is expunged now.
        self.expunge_late_cases()?;
        Ok(destroyed)
    }

    /// Carries out expungement orders on some charges of a case (narrower than the case's data
    /// key). For each case with such an order:
    ///
    /// 1. If the latest order is not restated yet: rotate the case to a fresh data key, and append
    ///    (signed by the ledger) the case as it stands without the expunged charges, sealed under
    ///    the new key. The projection forgot the charges when it applied the order.
    /// 2. Re-wrap, under the new key, every entry still under an old key that holds nothing of an
    ///    expunged charge; the rest (the arrest with all its charges, the charge's own entries,
    ///    earlier restatements) stay under the old keys.
    /// 3. Persist the case's projection (sealed under the new key), then destroy the old keys.
    ///
    /// Every step is durable and idempotent, so after a crash the next run (at open, or the next
    /// order) finishes the work. Returns how many keys were destroyed.
    fn carry_out_charge_orders(&self) -> Result<usize, ServiceError> {
        let pending: Vec<(StreamId, String, BTreeSet<u32>, bool)> = {
            let p = self.projection();
            p.state
                .cycles
                .iter()
                .filter_map(|(id, c)| {
                    let orders: Vec<&crate::state::Order> = c
                        .orders
                        .iter()
                        .filter(|o| o.kind == crate::model::ReliefKind::Expunge && matches!(o.scope, Scope::Charges(_)))
                        .collect();
                    let last = orders.last()?;
                    let seqs = orders
                        .iter()
                        .flat_map(|o| match &o.scope {
                            Scope::Charges(v) => v.clone(),
                            Scope::WholeCycle => vec![],
                        })
                        .collect();
                    Some((*id, last.order_id.clone(), seqs, c.restated.contains(&last.order_id)))
                })
                .collect()
        };
        let mut destroyed = 0;
        for (cycle, order_id, seqs, restated) in pending {
            if !restated {
                let Some(ledger) = self.ledger.get() else { continue };
                {
                    // No persist may be under way while the key turns: one that copied the state
                    // before the order (the expunged charge still in it) would seal the case
                    // under the new key, which is never destroyed. One that started earlier
                    // finishes first and seals under the old key, which is.
                    let _no_persist = self.persisting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    self.store.rotate_stream_key(&cycle)?;
                }
                let snapshot = {
                    let p = self.projection();
                    let Some(c) = p.state.cycles.get(&cycle) else { continue };
                    serde_json::to_value(c).map_err(|e| ServiceError::Persist(e.to_string()))?
                };
                let ev = RecordEvent::CycleRestated { order_id: order_id.clone(), snapshot };
                // Order numbers are unique within a case only; the key must fit 64 bytes.
                let mut h = blake3::Hasher::new();
                h.update(&cycle.0).update(order_id.as_bytes());
                let key = format!("restate:{}", &h.finalize().to_hex()[..32]).into_bytes();
                let cmd = Command::sign(ledger, draft(cycle, &ev, Timestamp::now(), Some(order_id.clone()), key))
                    .map_err(|e| RecordsError::Malformed(e.to_string()))?;
                self.append_checked(cycle, ExpectedVersion::Any, vec![cmd], vec![ev])?;
            }
            let Some(current) = self.store.current_stream_key(&cycle)? else { continue };
            let mut survivors = Vec::new();
            let mut old = BTreeSet::new();
            let entries = self.store.entry_keys(&cycle)?;
            // Every version the projection knows must be found (a hidden tail would keep its
            // survivors under the key about to be destroyed, unreadable for good).
            if let Some(v) = self.projection().state.versions.get(&cycle).copied() {
                self.index_reaches(&cycle, v, "re-keying the case would miss entries")?;
            }
            for (position, key) in entries {
                let Some(key) = key.filter(|k| *k != current) else { continue };
                if self.store.data_key_destroyed(&key)? {
                    continue;
                }
                old.insert(key);
                let Some(e) = self.store.entry(position)? else { continue };
                let keep = match decode(&self.store, &e)? {
                    Decoded::Event(_, ev) => !mentions_charges(&ev, &seqs),
                    _ => false,
                };
                if keep {
                    survivors.push(position);
                }
            }
            if old.is_empty() {
                continue;
            }
            self.store.rewrap(&survivors, current)?;
            {
                let mut p = self.projection.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                p.dirty.insert(cycle);
            }
            self.persist()?;
            destroyed += self.store.destroy_data_keys(&cycle, &old.into_iter().collect::<Vec<_>>())?;
        }
        Ok(destroyed)
    }

    /// The expungement that covers a cycle or subject, if any: the order only, never content.
    pub fn tombstone(&self, target: &StreamId) -> Option<crate::state::Tombstone> {
        crate::history::tombstone(&self.projection().state, target)
    }

    /// Persists the parts of the projection that changed since the last time.
    ///
    /// The projection is locked only to take a snapshot of it (a clone of the state is O(1), see
    /// `state::Map`); the snapshot is serialized, sealed and written while reads and catch-ups go
    /// on. One persist at a time, so that what is written, and the position it reaches, only
    /// move forward. If writing fails, the changed streams are kept for the next persist: losing
    /// them would leave their persisted parts behind a newer marker.
    pub fn persist(&self) -> Result<(), ServiceError> {
        self.persist_saved().map(|_| ())
    }

    fn persist_saved(&self) -> Result<crate::persist::Saved, ServiceError> {
        let _one = self.persisting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (state, dirty, next, whole) = {
            let mut p = self.projection.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            p.saving = true;
            (p.state.clone(), std::mem::take(&mut p.dirty), p.next, p.whole)
        };
        #[cfg(feature = "test-hooks")]
        crate::hooks::persist_cloned();
        let saved = match crate::persist::save(&self.store, &state, &dirty, next, whole) {
            Ok(saved) => saved,
            Err(e) => {
                let mut p = self.projection.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                p.dirty.extend(dirty);
                p.saving = false;
                // The next persist writes the projection whole: a new snapshot depends on nothing
                // persisted before, whatever made this one fail.
                p.whole = true;
                return Err(ServiceError::Persist(e));
            }
        };
        {
            let mut p = self.projection.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            p.saving = false;
            p.persisted = next;
            if saved.whole {
                p.shape = chronicle_store::ProjectionShape { snapshot_parts: saved.written as u64, overlay: 0 };
            } else {
                p.shape.overlay += (saved.written + saved.removed) as u64;
            }
            p.whole = needs_snapshot(&p.shape, self.snapshot_after.load(std::sync::atomic::Ordering::Relaxed));
        }
        drop(state);
        // Holding no lock that reads need, since sled's readers wait while it reopens.
        self.store.settle_if_due()?;
        Ok(saved)
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The projection, for reading.
    pub fn projection(&self) -> RwLockReadGuard<'_, Projection> {
        self.projection.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies every committed entry not yet applied. Returns how many entries were read.
    pub fn catch_up(&self) -> Result<u64, ServiceError> {
        self.catch_up_to(self.store.head().len)
    }

    /// Applies committed entries until the projection holds every position below `len`. When
    /// another caller's catch-up already brought them in, returns without reading anything: many
    /// writers acknowledged by one group commit wait for one catch-up, not one each.
    fn catch_up_to(&self, len: u64) -> Result<u64, ServiceError> {
        if self.projection().next >= len {
            return Ok(0);
        }
        // One catch-up at a time; a second caller finds the work done when it gets the lock.
        let one = self.catching_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.projection().next >= len {
            return Ok(0);
        }
        self.catch_up_holding(one, true)
    }

    /// Brings the projection forward for a read, without waiting behind a catch-up already
    /// running. Every write made through this service is in the projection before it is
    /// acknowledged (the writer catches up before answering), so a read that does not wait still
    /// sees every acknowledged write; a catch-up in progress is bringing in writes not yet
    /// acknowledged. Entries appended to the store directly are brought in by the next read that
    /// finds no catch-up running.
    pub fn refresh(&self) -> Result<(), ServiceError> {
        if self.projection().next >= self.store.head().len {
            return Ok(());
        }
        match self.catching_up.try_lock() {
            Ok(one) => self.catch_up_holding(one, true).map(|_| ()),
            Err(std::sync::TryLockError::Poisoned(p)) => self.catch_up_holding(p.into_inner(), true).map(|_| ()),
            Err(std::sync::TryLockError::WouldBlock) => Ok(()),
        }
    }

    /// Replays what the projection lacks; then, if `persist_when_due` and enough changed since
    /// the last time, persists it.
    fn catch_up_holding(
        &self,
        one: std::sync::MutexGuard<'_, ()>,
        persist_when_due: bool,
    ) -> Result<u64, ServiceError> {
        let head = self.store.head().len;
        // Reads, opens and parses a page: one sequential read per slice of it, each slice opened
        // and parsed in the task that read it, on all cores.
        let decode_page = |from: u64| -> Result<Vec<Decoded>, ServiceError> {
            let limit = (head.saturating_sub(from) as usize).min(PAGE);
            let page = self.store.read_log_map(from, limit, |e, payload| decode_with(&e, || payload))?;
            Ok(page.into_iter().collect::<Result<Vec<_>, _>>()?)
        };
        let apply = |page: Vec<Decoded>, after: u64| {
            let mut p = self.projection.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Projection { state, dirty, whole, saving, .. } = &mut *p;
            // When the next persist writes every stream, what changed need not be tracked
            // (a rebuild's replay skips a set insert per entry), unless a persist is under
            // way: what is applied meanwhile is not in its snapshot, and must be in the next.
            let track = !*whole || *saving;
            apply_all(state, page, track.then_some(dirty));
            p.next = after;
            p.next - p.persisted >= self.persist_every.load(std::sync::atomic::Ordering::Relaxed)
        };
        let start = self.projection().next;
        let mut persist = false;
        let mut from = start;
        let mut current = decode_page(from)?;
        while !current.is_empty() {
            let after = from + current.len() as u64;
            let (persist_due, upcoming) = if after >= head {
                // The usual case while serving: a few entries, nothing after them.
                (apply(std::mem::take(&mut current), after), Ok(Vec::new()))
            } else {
                // Apply this page while the next one is being read, opened and parsed.
                rayon::join(|| apply(std::mem::take(&mut current), after), || decode_page(after))
            };
            from = after;
            persist |= persist_due;
            current = upcoming?;
        }
        let read = from - start;
        // Persist once the log is caught up, not page by page: replaying a long backlog would
        // otherwise spend its time re-sealing the same streams.
        if persist && persist_when_due {
            // Catch-ups go on while it is written (a new snapshot takes seconds on a large
            // ledger): what they apply is tracked as changed for the persist after.
            drop(one);
            // The persisted projection is a cache of the log: failing to write it (a full disk)
            // is reported, and retried with the next persist, but never fails the append or the
            // read that happened to trigger it (their entries are durable in the log).
            let failed = self.persist().err().map(|e| e.to_string());
            if let Some(reason) = &failed {
                eprintln!("chronicle: persisting the projection failed (retried later): {reason}");
            }
            *self.persist_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = failed;
        }
        Ok(read)
    }

    /// Checks a sequence of planned import lines by `author` against the current records plus
    /// the lines before them, without appending anything. Returns the lines that would be refused.
    pub fn dry_run<'l>(
        &self,
        author: &PrincipalId,
        lines: impl Iterator<Item = (usize, &'l str, &'l crate::import::Planned)>,
    ) -> Vec<(usize, &'l str, String)> {
        if let Err(e) = self.catch_up() {
            return vec![(0, "", e.to_string())];
        }
        let mut state = self.projection().state.clone();
        let registry = self.store.registry();
        let mut position = self.store.head().len;
        let mut bad = Vec::new();
        let mut touched = BTreeSet::new();
        for (n, raw, plan) in lines {
            let checked = match plan {
                crate::import::Planned::Command(cmd) => {
                    let st = cmd.statement();
                    // The first time a line touches a stream, its index must reach the version the
                    // projection knows: the store appends an import's lines after the index's last
                    // version, and a tail hidden from the index would get a second entry at a
                    // version the log already holds.
                    if touched.insert(st.stream)
                        && let Some(v) = state.versions.get(&st.stream).copied()
                        && let Err(e) = self.index_reaches(&st.stream, v, "an import would fork the stream")
                    {
                        return vec![(n, raw, e.to_string())];
                    }
                    RecordEvent::parse(&st.event_type, cmd.payload()).map_err(|e| e.to_string()).and_then(|ev| {
                        validate(&state, &registry, author, st.stream, &ev, Timestamp::now())
                            .map_err(|e| e.to_string())?;
                        Ok((st.stream, ev, st.effective_time))
                    })
                }
                crate::import::Planned::Expunge(target, kind, order, statute, effective) => {
                    let streams = match state.expunged.get(target) {
                        Some(t) => Ok(t.streams.iter().map(StreamId::to_hex).collect()),
                        None => crate::validate::expungement_streams(&state, target, kind).map_err(|e| e.to_string()),
                    };
                    streams.map(|streams| {
                        let ev = RecordEvent::ExpungementOrdered {
                            order_id: order.clone(),
                            statute: statute.clone(),
                            target: target.to_hex(),
                            target_kind: kind.to_string(),
                            streams,
                        };
                        (destruction_stream(), ev, *effective)
                    })
                }
            };
            match checked {
                Ok((stream, event, effective)) => {
                    let stream_version = state.versions.get(&stream).map_or(0, |v| v + 1);
                    let meta = Meta {
                        position,
                        stream,
                        stream_version,
                        recorded: Timestamp::now(),
                        effective,
                        author: author.clone(),
                        court_order: None,
                    };
                    state.apply(&meta, &event);
                    position += 1;
                }
                Err(reason) => bad.push((n, raw, reason)),
            }
        }
        bad
    }

    /// Validates a signed command against the current state and appends it.
    pub fn submit(&self, cmd: Command) -> Result<AppendReceipt, ServiceError> {
        let stream = cmd.statement().stream;
        self.submit_batch(stream, ExpectedVersion::Any, vec![cmd])
    }

    /// Validates signed commands for one stream, in order, against the current state and appends
    /// them atomically. With `ExpectedVersion::Any` a race with another writer is retried against
    /// the newer state; with `NoStream` or `Exact` the caller's expectation is checked and a
    /// conflict is returned to the caller. A retry of an earlier submission gets that
    /// submission's receipt.
    ///
    /// An expungement order is carried out (its keys destroyed) before this returns.
    pub fn submit_batch(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        cmds: Vec<Command>,
    ) -> Result<AppendReceipt, ServiceError> {
        let events = parse_for(stream, &cmds)?;
        // Seals and other restricting orders destroy nothing: only expungements are carried out.
        let orders = events.iter().any(|e| {
            matches!(
                e,
                RecordEvent::ExpungementOrdered { .. }
                    | RecordEvent::ReliefOrdered { kind: crate::model::ReliefKind::Expunge, .. }
            )
        });
        // Cases this request attributes to a subject (an arrest, a move).
        let attributed: Vec<StreamId> = events
            .iter()
            .filter_map(|e| match e {
                RecordEvent::ArrestRecorded { subject, .. } => StreamId::from_hex(subject),
                RecordEvent::CycleReassigned { to_subject, .. } => StreamId::from_hex(to_subject),
                _ => None,
            })
            .collect();
        let r = self.append_checked(stream, expected, cmds, events)?;
        if orders {
            self.carry_out()?;
        }
        // Validated before the subject's expungement was appended, appended after it: the case
        // is the expunged subject's, and goes the way of the rest of its record now.
        if attributed.iter().any(|s| self.projection().state.expunged.contains_key(s)) {
            self.expunge_late_cases()?;
        }
        Ok(r)
    }

    /// Expunges every case attributed to a subject whose whole record was expunged: a case that
    /// reached it after the order (an arrest or a move validated just before the order was
    /// appended, and appended just after). The ledger writes the order for the case, naming the
    /// subject's order, and its key is destroyed. Returns how many cases were expunged.
    pub fn expunge_late_cases(&self) -> Result<usize, ServiceError> {
        let Some(ledger) = self.ledger.get() else { return Ok(0) };
        let late: Vec<(StreamId, crate::state::Tombstone)> = {
            let p = self.projection();
            p.state
                .cycles
                .iter()
                .filter_map(|(id, c)| p.state.expunged.get(&c.subject).map(|t| (*id, t.clone())))
                .filter(|(id, _)| !p.state.expunged.contains_key(id))
                .collect()
        };
        for (cycle, t) in &late {
            let order_id = format!("{} (case {} reached the subject after the order)", t.order_id, cycle.to_hex());
            let ev = RecordEvent::ExpungementOrdered {
                order_id: order_id.clone(),
                statute: t.statute.clone(),
                target: cycle.to_hex(),
                target_kind: "cycle".into(),
                streams: vec![cycle.to_hex()],
            };
            let key = format!("late:{}", &blake3::hash(&cycle.0).to_hex()[..32]).into_bytes();
            let cmd = Command::sign(
                ledger,
                draft(destruction_stream(), &ev, Timestamp::now(), Some(t.order_id.clone()), key),
            )
            .map_err(|e| RecordsError::Malformed(e.to_string()))?;
            self.append_checked(destruction_stream(), ExpectedVersion::Any, vec![cmd], vec![ev])?;
        }
        if !late.is_empty() {
            self.carry_out()?;
        }
        Ok(late.len())
    }

    /// Validates and appends, without carrying out expungement orders.
    fn append_checked(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        cmds: Vec<Command>,
        events: Vec<RecordEvent>,
    ) -> Result<AppendReceipt, ServiceError> {
        let Some(first) = cmds.first() else { return Err(AppendError::Empty.into()) };
        // A retry of an appended request would often fail validation (the state has moved on) or
        // the expected version; before refusing, the store is asked whether it is a retry, and
        // answers it with the first receipt (or refuses a changed batch). A retry that passes
        // validation gets its first receipt from the store's own idempotency check on append.
        // Asking only on refusal keeps a read of sled (which waits for any batch being applied)
        // off the usual path.
        let retried = |cmds: &[Command]| -> Result<Option<AppendReceipt>, ServiceError> {
            if self.store.find_retry(first)?.is_none() {
                return Ok(None);
            }
            let req = AppendRequest { stream, expected: ExpectedVersion::Any, commands: cmds.to_vec() };
            Ok(Some(self.store.append(req)?))
        };
        let unique = events.iter().any(|ev| {
            matches!(
                ev,
                RecordEvent::SubjectEnrolled { .. }
                    | RecordEvent::CourtCaseFiled { .. }
                    | RecordEvent::IdentityCorrected { .. }
            )
        });
        let _serial = unique.then(|| self.unique.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let registry = self.store.registry();
        let mut last = None;
        for _ in 0..8 {
            self.catch_up()?;
            // Decided under the projection's read lock, which is let go before anything waits on
            // the store.
            // The records rules first (who may write what, where), the stream's version after: a
            // version is said only to a caller allowed to write to the stream, never to one
            // probing how many entries a stream it may not see holds (a subject's access log).
            let decided: Result<ExpectedVersion, ServiceError> = {
                let p = self.projection();
                let current = p.state.versions.get(&stream).copied();
                let valid = if cmds.len() == 1 {
                    validate(&p.state, &registry, &first.statement().author, stream, &events[0], Timestamp::now())
                } else {
                    validate_in_order(&p.state, &registry, &cmds, &events)
                };
                match valid {
                    Err(e) => Err(e.into()),
                    Ok(()) if !expected.admits(current) => {
                        Err(AppendError::WrongExpectedVersion { stream, expected, actual: current }.into())
                    }
                    Ok(()) => Ok(current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)),
                }
            };
            let version = match decided {
                Ok(v) => v,
                Err(e) => {
                    // A command that is not what its author signed is refused as such, whatever
                    // else is wrong with it (the store checks every signature again on append).
                    if !matches!(e, ServiceError::Append(_)) {
                        check_signatures(&registry, &cmds)?;
                    }
                    if let Some(r) = retried(&cmds)? {
                        return Ok(r);
                    }
                    return Err(e);
                }
            };
            #[cfg(feature = "test-hooks")]
            crate::hooks::validated();
            let req = AppendRequest { stream, expected: version, commands: cmds.clone() };
            let appended = self.store.append(req);
            // The version asked for is the projection's, read from the log: a store whose index
            // says the stream is shorter lost index keys (never a race: the log only grows).
            if let (Err(AppendError::WrongExpectedVersion { actual, .. }), ExpectedVersion::Exact(v)) =
                (&appended, version)
                && actual.is_none_or(|a| a < v)
            {
                let reason = format!("the index of stream {stream} ends before version {v}, which the log holds");
                return Err(self.store.report_damage('s', reason).into());
            }
            match appended {
                Ok(r) => {
                    // In the projection before it is acknowledged (see `refresh`).
                    self.catch_up_to(r.entries.last().map_or(0, |a| a.position + 1))?;
                    return Ok(r);
                }
                Err(e @ AppendError::WrongExpectedVersion { .. }) if expected == ExpectedVersion::Any => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or(ServiceError::NotFound("append".into()), ServiceError::Append))
    }

    /// Signs and submits an event (for in-process callers holding a key: the CLI, the demo, tests).
    pub fn record(
        &self,
        signer: &Signer,
        stream: StreamId,
        event: &RecordEvent,
        effective: Timestamp,
        court_order: Option<String>,
    ) -> Result<AppendReceipt, ServiceError> {
        let key = chronicle_core::random_array::<16>().to_vec();
        let cmd = Command::sign(signer, draft(stream, event, effective, court_order, key))
            .map_err(|e| RecordsError::Malformed(e.to_string()))?;
        self.submit(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronicle_store::ProjectionShape;

    #[test]
    fn a_new_snapshot_is_due_once_the_overlay_outgrows_half_of_the_snapshot() {
        let shape = |snapshot_parts, overlay| ProjectionShape { snapshot_parts, overlay };
        // Small projections: not before a few thousand parts are written over the snapshot.
        assert!(!needs_snapshot(&shape(0, SNAPSHOT_AFTER_MIN), SNAPSHOT_AFTER_MIN));
        assert!(needs_snapshot(&shape(0, SNAPSHOT_AFTER_MIN + 1), SNAPSHOT_AFTER_MIN));
        // Large ones: once the overlay holds more than half as many parts as the snapshot.
        assert!(!needs_snapshot(&shape(300_000, 150_000), SNAPSHOT_AFTER_MIN));
        assert!(needs_snapshot(&shape(300_000, 150_001), SNAPSHOT_AFTER_MIN));
    }
}
