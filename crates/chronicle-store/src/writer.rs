//! The append pipeline: a verifier thread, the writer thread that owns the log's tail, and a
//! syncer thread that makes it durable.
//!
//! Appenders hand their requests (already checked for shape) to a verifier thread, which checks
//! the signatures of every request waiting at once, each strictly, on all cores,
//! and passes them to the writer thread. The writer takes every request waiting, decides each
//! against the current state (idempotency, expected version, the
//! registry), builds the entries and applies the whole group to sled with one atomic
//! `apply_batch`. It then hands the group to the syncer thread and goes on with the next group
//! while the syncer runs `flush` and `fdatasync` (see `durability`) for every group waiting,
//! publishes the new durable head and only then answers the appenders: group commit, pipelined.
//!
//! A refused request changes nothing. A storage failure fails every unacknowledged request and
//! stops the store, because the in-memory state may no longer match the disk. Answers to retried
//! requests also go through the syncer, so a retry is never told "appended" before the original
//! is durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use chronicle_core::payload::{SymmetricKey, public_envelope, seal};
use chronicle_core::registry::RegistryEvent;
use chronicle_core::sign::verify_statement;
use chronicle_core::{
    DataKeyId, Entry, Hash, Header, PayloadKind, Registry, RegistryError, StreamId, Timestamp, VerifyingKey,
};
use rayon::prelude::*;
use tokio::sync::oneshot;

use crate::durability::Durability;
use crate::error::AppendError;
use crate::layout::{self, Head, IdemRecord, StreamHead};
use crate::store::{Prechecked, Shared};
use crate::tree::TreeTail;
use crate::{AppendReceipt, Appended};
use chronicle_tlog::tree::leaf_hash;

/// Most requests committed in one group.
const GROUP_REQUESTS_MAX: usize = 1024;

/// Where an append's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<AppendReceipt, AppendError>>;

pub(crate) struct Job {
    pub(crate) request: Prechecked,
    pub(crate) reply: Reply,
}

/// One signature to check: job index, command index, message, signature, key.
struct SignatureCheck {
    job: usize,
    command: usize,
    message: Vec<u8>,
    signature: [u8; 64],
    key: VerifyingKey,
}

/// The writer's view of the log's tail. Lives only on the writer thread.
pub(crate) struct State {
    pub(crate) head: Head,
    pub(crate) registry: Registry,
    streams: HashMap<StreamId, StreamHead>,
    /// The streams the group being built appends to, with their heads before it.
    touched: HashMap<StreamId, Option<StreamHead>>,
    /// The XOR of every stream head's MAC, as the head record keeps it.
    heads: [u8; crate::auth::MAC_LEN],
    stream_keys: HashMap<StreamId, DataKeyId>,
    key_epoch: u64,
    /// Idempotency records of the group being built, with their recorded time.
    pending_idem: HashMap<[u8; 33], (IdemRecord, Timestamp)>,
    tree: TreeTail,
    /// About how many bytes the group being built writes to sled.
    batch_bytes: u64,
}

enum Decision {
    Duplicate(AppendReceipt),
    Fresh,
}

impl State {
    pub(crate) fn new(opened: crate::repair::Opened) -> State {
        let crate::repair::Opened { record, registry, system, tree, .. } = opened;
        // The system streams' heads come from the checked open (their lengths are in the
        // authenticated head record); they are never looked up in the index again.
        let streams = system.into_iter().collect();
        State {
            head: record.head,
            registry,
            streams,
            touched: HashMap::new(),
            heads: record.heads,
            stream_keys: HashMap::new(),
            key_epoch: 0,
            pending_idem: HashMap::new(),
            tree,
            batch_bytes: 0,
        }
    }

    fn stream_head(
        &mut self,
        shared: &Shared,
        db: &sled::Db,
        stream: &StreamId,
    ) -> Result<Option<StreamHead>, AppendError> {
        if let Some(h) = self.streams.get(stream) {
            return Ok(Some(*h));
        }
        if stream.is_system() {
            // Loaded at open, kept since: not there means no entries.
            return Ok(None);
        }
        // The stream's authenticated head (the open checked the heads against the head record):
        // the entry it names must be there, be this stream's at this version, and hash as the
        // head says; the next entry's version and chain come from it.
        let h = shared.stream_head(db, stream, self.head.len).map_err(|e| AppendError::Storage(e.to_string()))?;
        if let Some(h) = h {
            if h.position >= self.head.len {
                let reason = format!("the head of stream {stream} names position {}, beyond the log", h.position);
                return Err(AppendError::Storage(shared.damaged(db, 'h', reason).to_string()));
            }
            self.streams.insert(*stream, h);
        }
        Ok(h)
    }

    /// The stream's current data key, creating (and binding) one for a stream that has none.
    fn stream_key(
        &mut self,
        shared: &Shared,
        db: &sled::Db,
        stream: &StreamId,
        batch: &mut sled::Batch,
    ) -> Result<DataKeyId, AppendError> {
        let epoch = shared.key_epoch.load(std::sync::atomic::Ordering::Acquire);
        if epoch != self.key_epoch {
            // A stream's key was rotated (to carry out an expungement): re-read every binding.
            self.stream_keys.clear();
            self.key_epoch = epoch;
        }
        if let Some(k) = self.stream_keys.get(stream) {
            return Ok(*k);
        }
        let bound = db.get(layout::stream_data_key(stream)).map_err(|e| AppendError::Storage(e.to_string()))?;
        let id = match bound {
            Some(v) => layout::decode_binding(Some(&shared.keys), stream, &v).map_err(|reason| {
                AppendError::Storage(shared.damaged(db, 'c', format!("{reason} ({stream})")).to_string())
            })?,
            None => {
                let mut vault = shared.vault.write().map_err(|_| AppendError::Storage("vault lock poisoned".into()))?;
                let id = vault.new_key().map_err(|e| AppendError::Storage(e.to_string()))?;
                batch.insert(
                    &layout::stream_data_key(stream)[..],
                    &layout::encode_binding(&shared.keys, stream, &id)[..],
                );
                id
            }
        };
        self.stream_keys.insert(*stream, id);
        Ok(id)
    }

    /// The idempotency record under `key`, and its recorded time if it is not in sled yet.
    fn idem(
        &self,
        shared: &Shared,
        db: &sled::Db,
        key: &[u8; 33],
    ) -> Result<Option<(IdemRecord, Option<Timestamp>)>, AppendError> {
        if let Some((r, t)) = self.pending_idem.get(key) {
            return Ok(Some((*r, Some(*t))));
        }
        let damaged = |reason: String| AppendError::Storage(shared.damaged(db, 'i', reason).to_string());
        match db.get(key) {
            Ok(Some(v)) => {
                let rec = IdemRecord::decode(&v).ok_or_else(|| damaged("a malformed idempotency record".into()))?;
                // A retry is answered from the record only once the entry it names confirms it.
                if rec.appended.position >= self.head.len {
                    return Err(damaged(format!(
                        "an idempotency record names position {}, beyond the log",
                        rec.appended.position
                    )));
                }
                let e =
                    shared.read_entry(db, rec.appended.position).map_err(|e| AppendError::Storage(e.to_string()))?;
                crate::derived::check_idem(&e, key, &rec).map_err(damaged)?;
                Ok(Some((rec, None)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(AppendError::Storage(e.to_string())),
        }
    }

    /// Decides a request against the current state, without changing anything but (on success)
    /// the registry.
    fn decide(&mut self, shared: &Shared, db: &sled::Db, req: &Prechecked) -> Result<Decision, AppendError> {
        let cmds = &req.commands;
        // Idempotency first: a retry of an appended request must get its first answer even though
        // the stream has moved on since.
        let mut found = Vec::with_capacity(cmds.len());
        for c in cmds {
            let st = c.command.statement();
            found.push(self.idem(shared, db, &layout::idempotency_key(&st.author, &st.refs.idempotency_key))?);
        }
        if found.iter().any(Option::is_some) {
            for (i, (f, c)) in found.iter().zip(cmds).enumerate() {
                match f {
                    Some((r, _)) if r.digest == c.command.digest() => {}
                    _ => return Err(AppendError::IdempotencyConflict { index: i }),
                }
            }
            let appended: Vec<Appended> = found.iter().flatten().map(|(r, _)| r.appended).collect();
            // An original in the group being built is not in sled yet: its time comes with it.
            let recorded_time = match found.first().and_then(|f| f.and_then(|(_, t)| t)) {
                Some(t) => t,
                None => recorded_time_of(shared, db, appended[0].position)?,
            };
            return Ok(Decision::Duplicate(AppendReceipt {
                stream: req.stream,
                entries: appended,
                recorded_time,
                duplicate: true,
            }));
        }

        let head = self.stream_head(shared, db, &req.stream)?;
        if !req.expected.admits(head.map(|h| h.version)) {
            return Err(AppendError::WrongExpectedVersion {
                stream: req.stream,
                expected: req.expected,
                actual: head.map(|h| h.version),
            });
        }

        let mut staged: Option<Registry> = None;
        for (i, c) in cmds.iter().enumerate() {
            let reg = staged.as_ref().unwrap_or(&self.registry);
            let st = c.command.statement();
            let public = (st.payload_kind == PayloadKind::Public).then(|| c.command.payload());
            let genesis = reg.is_empty();
            let key = reg.signing_key(st, public).map_err(|source| AppendError::Unauthorized { index: i, source })?;
            if (genesis || c.verified_with != Some(st.key_id))
                && !verify_statement(&key, c.command.statement_bytes(), c.command.signature())
            {
                return Err(AppendError::Unauthorized {
                    index: i,
                    source: chronicle_core::RegistryError::BadSignature,
                });
            }
            if req.stream == StreamId::LEDGER && !crate::store::ledger_stream_author(reg, st) {
                return Err(AppendError::NotAllowedInStream {
                    index: i,
                    reason: "only the ledger writes the ledger's own stream",
                });
            }
            if req.stream == StreamId::REGISTRY {
                let ev = RegistryEvent::parse(&st.event_type, c.command.payload())
                    .map_err(|source| AppendError::Registry { index: i, source })?;
                let position = self.head.len + i as u64;
                staged
                    .get_or_insert_with(|| self.registry.clone())
                    .apply(position, &st.author, &ev)
                    .map_err(|source| AppendError::Registry { index: i, source })?;
            }
        }
        if let Some(r) = staged {
            self.registry = r;
        }
        Ok(Decision::Fresh)
    }

    /// Builds a decided request's entries into the batch and advances the in-memory tail.
    fn build(
        &mut self,
        shared: &Shared,
        db: &sled::Db,
        req: &Prechecked,
        recorded: Timestamp,
        batch: &mut sled::Batch,
    ) -> Result<AppendReceipt, AppendError> {
        let mut head = self.stream_head(shared, db, &req.stream)?;
        // A sealed request's data key, found (or made) and checked live before anything of the
        // request is built: a key destroyed since the request was checked (an expungement that
        // came first) refuses the request whole, changing nothing; a failure after this point is
        // a storage failure, which discards the whole group.
        let data_key = match req.commands.iter().any(|c| c.command.statement().payload_kind == PayloadKind::Sealed) {
            false => None,
            true => {
                let kid = self.stream_key(shared, db, &req.stream, batch)?;
                let vault = shared.vault.read().map_err(|_| AppendError::Storage("vault lock poisoned".into()))?;
                vault.key(&kid).map_err(AppendError::Seal)?;
                Some(kid)
            }
        };
        self.touched.entry(req.stream).or_insert(head);
        let mut appended = Vec::with_capacity(req.commands.len());
        for (i, c) in req.commands.iter().enumerate() {
            #[cfg(feature = "test-hooks")]
            crate::hooks::before_building(i)?;
            let _ = i;
            let cmd = &c.command;
            let st = cmd.statement();
            let position = self.head.len;
            let header = Header {
                position,
                stream_version: head.map_or(0, |h| h.version + 1),
                prev_hash: self.head.last_hash,
                prev_stream_hash: head.map_or(Hash::ZERO, |h| h.hash),
                recorded_time: recorded,
            };
            let mut wrapped_key = None;
            let envelope = match st.payload_kind {
                PayloadKind::Public => public_envelope(cmd.salt(), cmd.payload()),
                PayloadKind::Sealed => {
                    let kid =
                        data_key.ok_or_else(|| AppendError::Storage("a sealed command without a data key".into()))?;
                    let cek = SymmetricKey::random();
                    let vault = shared.vault.read().map_err(|_| AppendError::Storage("vault lock poisoned".into()))?;
                    let wrapped = vault
                        .wrap_content_key(&kid, position, &cek)
                        .map_err(|e| AppendError::Storage(format!("wrapping a content key: {e}")))?;
                    let site = layout::WrapSite { position, recorded, commitment: st.commitment };
                    wrapped_key = Some(layout::seal_wrap(&shared.keys, &site, &wrapped));
                    seal(&cek, &st.commitment, cmd.salt(), cmd.payload())
                }
            };
            let entry = Entry::assemble(&header, cmd.statement_bytes(), &envelope, cmd.signature())
                .map_err(|e| AppendError::Storage(format!("entry does not assemble: {e}")))?;
            let hash = entry.hash();
            self.tree.append(db, position, leaf_hash(entry.bytes())).map_err(AppendError::Storage)?;
            let value = layout::encode_entry_value(entry.bytes(), &hash, wrapped_key.as_deref());
            // The entry, its stream index and idempotency records, and its share of the tree.
            self.batch_bytes += value.len() as u64 + 256;
            batch.insert(&layout::entry_key(position)[..], value);
            batch.insert(
                &layout::stream_key(&req.stream, header.stream_version)[..],
                &layout::encode_position_and_hash(position, &hash)[..],
            );
            let a = Appended { position, stream_version: header.stream_version, hash };
            let idem_key = layout::idempotency_key(&st.author, &st.refs.idempotency_key);
            let rec = IdemRecord { digest: cmd.digest(), appended: a };
            batch.insert(&idem_key[..], &rec.encode()[..]);
            self.pending_idem.insert(idem_key, (rec, recorded));
            appended.push(a);
            self.head = Head { len: position + 1, last_hash: hash, last_recorded: recorded };
            head = Some(StreamHead { version: header.stream_version, position, hash });
        }
        // Within the request: positions and stream versions go up by one.
        invariant(
            appended
                .windows(2)
                .all(|w| w[1].position == w[0].position + 1 && w[1].stream_version == w[0].stream_version + 1),
            "a request's entries are consecutive in the log and in their stream",
        );
        if let Some(h) = head {
            self.streams.insert(req.stream, h);
        }
        Ok(AppendReceipt { stream: req.stream, entries: appended, recorded_time: recorded, duplicate: false })
    }
}

/// The recorded time of the entry a retry is answered with, read as every entry is (against the
/// tree's leaf).
pub(crate) fn recorded_time_of(shared: &Shared, db: &sled::Db, position: u64) -> Result<Timestamp, AppendError> {
    shared
        .read_entry(db, position)
        .map(|e| e.header.recorded_time)
        .map_err(|e| AppendError::Storage(format!("entry {position} named by an idempotency record: {e}")))
}

/// A group the writer applied to sled, waiting for the syncer.
pub(crate) struct Group {
    wrote: bool,
    head: Head,
    /// The heads of the streams the group appended to.
    moved: Vec<chronicle_tlog::heads::StreamHead>,
    registry: Option<Registry>,
    answers: Vec<(Reply, Result<AppendReceipt, AppendError>)>,
}

/// Waits for a request, then takes every other one already waiting (up to a group's worth).
/// `None` once every sender is gone.
fn next_group(rx: &Receiver<Job>) -> Option<Vec<Job>> {
    let mut jobs = vec![rx.recv().ok()?];
    while jobs.len() < GROUP_REQUESTS_MAX {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
    Some(jobs)
}

/// The writer thread's loop; returns when every sender is gone.
pub(crate) fn run(shared: Arc<Shared>, mut state: State, rx: Receiver<Job>, syncer: Sender<Group>) {
    while let Some(jobs) = next_group(&rx) {
        if let Some(reason) = shared.failure() {
            for j in jobs {
                let _ = j.reply.send(Err(AppendError::Unavailable(reason.clone())));
            }
            continue;
        }
        let group = apply_group(&shared, &mut state, jobs);
        if syncer.send(group).is_err() {
            shared.fail("the syncer has stopped".into());
        }
        // Between groups, sled is reopened now and then (see `db`); the next group waits for it.
        if let Err(reason) = shared.db.settle_if_due() {
            shared.fail(reason);
        }
    }
}

/// The verifier thread's loop: checks the signatures of every request waiting, in batches, and
/// passes the requests on to the writer. It runs beside the writer, so signature checks of one
/// group overlap with the writing of the previous one. A request with a bad signature is answered
/// at once: nothing of it was written.
pub(crate) fn verify_loop(shared: Arc<Shared>, rx: Receiver<Job>, writer: Sender<Job>) {
    while let Some(mut jobs) = next_group(&rx) {
        // Key ids name one public key forever, so a slightly old registry snapshot is as good
        // as the latest for the cryptographic check; whether the key is still valid is decided
        // by the writer against the state at the entry's position.
        let registry = shared.registry_snapshot();
        let errors = verify_group(&registry, &mut jobs);
        for (job, error) in jobs.into_iter().zip(errors) {
            match error {
                Some(e) => {
                    let _ = job.reply.send(Err(e));
                }
                None => {
                    if let Err(mpsc_err) = writer.send(job) {
                        let _ = mpsc_err.0.reply.send(Err(AppendError::Unavailable("the writer has stopped".into())));
                    }
                }
            }
        }
    }
}

/// Checks every signature of the group whose key the registry already knows, in batches on all
/// cores. Commands whose key is not known yet (registered since the snapshot, or the genesis
/// entry) are left for `decide`, which checks them one by one.
fn verify_group(registry: &Registry, jobs: &mut [Job]) -> Vec<Option<AppendError>> {
    let mut items: Vec<SignatureCheck> = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        for (i, c) in job.request.commands.iter().enumerate() {
            let st = c.command.statement();
            if let Some(k) = registry.key(&st.key_id)
                && k.principal == st.author
            {
                items.push(SignatureCheck {
                    job: j,
                    command: i,
                    message: chronicle_core::entry::signing_message(c.command.statement_bytes()),
                    signature: *c.command.signature(),
                    key: k.public,
                });
            }
        }
    }
    // Every signature strictly on its own, on all cores: a batch check would accept a signature
    // the strict rule refuses (see `chronicle_core::sign`).
    let bad: Vec<(usize, usize)> = items
        .par_chunks(items.len().div_ceil(rayon::current_num_threads()).clamp(16, 256))
        .flat_map_iter(|chunk| {
            chunk
                .iter()
                .filter(|it| !chronicle_core::sign::verify_message(&it.key, &it.message, &it.signature))
                .map(|it| (it.job, it.command))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut errors: Vec<Option<AppendError>> = (0..jobs.len()).map(|_| None).collect();
    for (j, i) in bad {
        let e = &mut errors[j];
        let earlier = matches!(e, Some(AppendError::Unauthorized { index, .. }) if *index < i);
        if !earlier {
            *e = Some(AppendError::Unauthorized { index: i, source: RegistryError::BadSignature });
        }
    }
    for it in &items {
        if errors[it.job].is_none() {
            let c = &mut jobs[it.job].request.commands[it.command];
            c.verified_with = Some(c.command.statement().key_id);
        }
    }
    errors
}

fn apply_group(shared: &Shared, state: &mut State, jobs: Vec<Job>) -> Group {
    // No key is destroyed while a group wraps content keys and goes to sled (see `rekey`).
    let _building = shared.building.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // The ledger clock never runs backwards along the log, whatever the system clock does.
    let recorded = Timestamp::now().max(state.head.last_recorded);
    let mut batch = sled::Batch::default();
    let mut registry_changed = false;
    let mut answers = Vec::with_capacity(jobs.len());
    let mut wrote = false;
    let mut moved = Vec::new();
    let db = match shared.db() {
        Ok(db) => db,
        Err(e) => {
            shared.fail(e.to_string());
            let answers = jobs.into_iter().map(|j| (j.reply, Err(AppendError::Storage(e.to_string())))).collect();
            return Group { wrote: false, head: state.head, moved: Vec::new(), registry: None, answers };
        }
    };
    let group_start = state.head;
    let mut jobs = jobs.into_iter();
    let mut broken = None;
    for job in jobs.by_ref() {
        let before = state.head;
        let result = match state.decide(shared, &db, &job.request) {
            Err(e) => Err(e),
            Ok(Decision::Duplicate(r)) => Ok(r),
            Ok(Decision::Fresh) => {
                wrote = true;
                registry_changed |= job.request.stream == StreamId::REGISTRY;
                state.build(shared, &db, &job.request, recorded, &mut batch)
            }
        };
        // The writer's invariants, checked before anything of the group is written: a fresh
        // request's entries continue the log exactly where it was, one position each, and a
        // refused one moved nothing.
        match &result {
            Ok(r) if !r.duplicate => {
                for (i, a) in r.entries.iter().enumerate() {
                    invariant(a.position == before.len + i as u64, "an entry's position is the log's length before it");
                }
                invariant(state.head.len == before.len + r.entries.len() as u64, "the head moved by the entries built");
            }
            Err(AppendError::Storage(_)) => {}
            Ok(_) | Err(_) => {
                invariant(state.head == before, "a request refused or answered from the past moved the head")
            }
        }
        // A storage failure while a group is built (reading sled, a new data key, sealing) may
        // leave part of a request in the group: nothing of the group is written, and the store
        // stops accepting writes, for the state in memory is ahead of what is on disk.
        if let Err(AppendError::Storage(reason)) = &result {
            broken = Some(reason.clone());
            answers.push((job.reply, result));
            break;
        }
        answers.push((job.reply, result));
    }
    if let Some(reason) = broken {
        shared.fail(format!("a storage failure while building a group ({reason}); restart the store"));
        let answers = answers
            .into_iter()
            .map(|(reply, r)| (reply, r.and(Err(AppendError::Storage(reason.clone())))))
            .chain(jobs.map(|j| (j.reply, Err(AppendError::Storage(reason.clone())))))
            .collect();
        state.pending_idem.clear();
        state.touched.clear();
        return Group { wrote: false, head: group_start, moved: Vec::new(), registry: None, answers };
    }
    if wrote {
        invariant(state.head.len >= group_start.len, "the log never shrinks");
        invariant(state.head.last_recorded >= group_start.last_recorded, "the ledger clock never runs backwards");
        state.tree.write_into(&mut batch);
        // Each stream appended to: its new head, and the digest of all heads moved with it.
        for (stream, before) in std::mem::take(&mut state.touched) {
            let Some(now) = state.streams.get(&stream).copied() else { continue };
            moved.push(chronicle_tlog::heads::StreamHead { stream: stream.0, version: now.version, hash: now.hash.0 });
            invariant(
                before.is_none_or(|b| now.version > b.version && now.position > b.position),
                "a stream's head only moves forward",
            );
            if let Some(b) = before {
                crate::auth::xor_into(&mut state.heads, &b.share(&shared.keys, &stream));
            }
            let stored = now.encode(&shared.keys, &stream);
            crate::auth::xor_into(&mut state.heads, &now.share(&shared.keys, &stream));
            batch.insert(&layout::stream_head_key(&stream)[..], &stored[..]);
        }
        let count = |s: &StreamId| state.streams.get(s).map_or(0, |h| h.version + 1);
        let record = layout::HeadRecord {
            head: state.head,
            registry: count(&StreamId::REGISTRY),
            ledger: count(&StreamId::LEDGER),
            heads: state.heads,
        };
        batch.insert(layout::HEAD_KEY, &record.encode(&shared.keys)[..]);
        shared.db.wrote(std::mem::take(&mut state.batch_bytes));
        if let Err(e) = db.apply_batch(batch) {
            shared.fail(format!("writing the log failed ({e}); restart the store"));
        }
    }
    state.pending_idem.clear();
    state.touched.clear();
    Group { wrote, head: state.head, moved, registry: registry_changed.then(|| state.registry.clone()), answers }
}

/// A broken invariant of the writer is a bug in this program, not bad input: the process stops
/// at once, before it writes anything more (as TigerBeetle does), and the next start opens the
/// log as it was last made durable.
#[track_caller]
pub(crate) fn invariant(holds: bool, what: &str) {
    if !holds {
        eprintln!("chronicle: broken invariant, stopping before writing: {what} ({})", std::panic::Location::caller());
        std::process::abort();
    }
}

/// The syncer thread's loop: makes groups durable, publishes them, answers their appenders.
pub(crate) fn sync_loop(shared: Arc<Shared>, mut durability: Durability, rx: Receiver<Group>) {
    // sled's flush runs on a thread of its own, so that one that never returns fails the store
    // (and answers every appender) instead of stopping it silently (see `db::flush_within`: seen
    // under injected write faults in `tests/io_faults.rs`, where appenders hung).
    let (flush_tx, flush_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let flusher = {
        let shared = shared.clone();
        std::thread::Builder::new().name("chronicle-flush".into()).spawn(move || {
            while flush_rx.recv().is_ok() {
                let r = shared
                    .db()
                    .map_err(|e| e.to_string())
                    .and_then(|db| db.flush().map(|_| ()).map_err(|e| e.to_string()));
                if done_tx.send(r).is_err() {
                    break;
                }
            }
        })
    };
    let flush = || -> Result<(), String> {
        if flusher.is_err() {
            return shared
                .db()
                .map_err(|e| e.to_string())
                .and_then(|db| db.flush().map(|_| ()).map_err(|e| e.to_string()));
        }
        flush_tx.send(()).map_err(|_| "the flushing thread is gone".to_string())?;
        match done_rx.recv_timeout(crate::db::FLUSH_LIMIT) {
            Ok(r) => r,
            Err(_) => Err(format!("it did not finish within {} s", crate::db::FLUSH_LIMIT.as_secs())),
        }
    };
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(g) = rx.try_recv() {
            groups.push(g);
        }
        let mut outcome = match shared.failure() {
            Some(reason) => Err(reason),
            None => Ok(()),
        };
        if outcome.is_ok() && groups.iter().any(|g| g.wrote) {
            // After a failed flush or sync nothing written since the last good one can be trusted
            // to be on disk (the kernel may have dropped the pages it could not write, and a
            // later sync would succeed without them): the store accepts no more appends until
            // it is opened again, which reads back what is really there.
            outcome = flush().map_err(|e| format!("flushing the log failed ({e}); restart the store")).and_then(|_| {
                durability.sync().map_err(|e| format!("syncing the log to disk failed ({e}); restart the store"))
            });
        }
        if let Err(reason) = &outcome {
            shared.fail(reason.clone());
        }
        let mut head = None;
        let mut registry = None;
        let mut moved = Vec::new();
        for g in &mut groups {
            head = Some(g.head);
            if g.registry.is_some() {
                registry = g.registry.take();
            }
            moved.append(&mut g.moved);
        }
        if outcome.is_ok()
            && let Some(h) = head
        {
            shared.publish(h, registry, moved);
        }
        for g in groups {
            for (reply, r) in g.answers {
                let r = match &outcome {
                    Ok(()) => r,
                    Err(reason) => r.and(Err(AppendError::Storage(reason.clone()))),
                };
                let _ = reply.send(r);
            }
        }
    }
}
