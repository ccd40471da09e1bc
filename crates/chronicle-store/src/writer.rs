//! The writer: one thread that owns the log's tail and commits appends in groups.
//!
//! Appenders hand their (already shape- and signature-checked) requests to this thread. It takes
//! every request waiting, decides each against the current state (idempotency, expected version,
//! the registry), builds the entries, and writes the whole group with one `apply_batch`, one
//! `flush` and one `fdatasync` (see `durability`). Only then does it publish the new head and
//! answer the appenders. A refused request changes nothing; a storage failure fails the whole
//! group and stops the writer, because the in-memory state may no longer match the disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use chronicle_core::payload::{SymmetricKey, public_envelope, seal};
use chronicle_core::registry::RegistryEvent;
use chronicle_core::sign::verify_statement;
use chronicle_core::{Entry, Hash, Header, PayloadKind, Registry, StreamId, Timestamp};
use tokio::sync::oneshot;

use crate::durability::Durability;
use crate::error::AppendError;
use crate::layout::{self, Head};
use crate::store::{Prechecked, Shared};
use crate::{AppendReceipt, Appended, ExpectedVersion};

/// Most requests committed in one group.
const GROUP_REQUESTS_MAX: usize = 1024;

pub(crate) struct Job {
    pub(crate) request: Prechecked,
    pub(crate) reply: oneshot::Sender<Result<AppendReceipt, AppendError>>,
}

#[derive(Clone, Copy)]
struct StreamHead {
    version: u64,
    hash: Hash,
}

#[derive(Clone, Copy)]
struct IdemRecord {
    digest: Hash,
    appended: Appended,
}

impl IdemRecord {
    fn encode(&self) -> [u8; 80] {
        let mut v = [0u8; 80];
        v[..32].copy_from_slice(&self.digest.0);
        v[32..40].copy_from_slice(&self.appended.position.to_be_bytes());
        v[40..48].copy_from_slice(&self.appended.stream_version.to_be_bytes());
        v[48..80].copy_from_slice(&self.appended.hash.0);
        v
    }
    fn decode(v: &[u8]) -> Option<IdemRecord> {
        if v.len() != 80 {
            return None;
        }
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(v[r].try_into().unwrap_or([0; 8]));
        let mut d = [0u8; 32];
        d.copy_from_slice(&v[..32]);
        let mut h = [0u8; 32];
        h.copy_from_slice(&v[48..80]);
        Some(IdemRecord {
            digest: Hash(d),
            appended: Appended {
                position: u(32..40),
                stream_version: u(40..48),
                hash: Hash(h),
            },
        })
    }
}

/// The writer's view of the log's tail. Lives only on the writer thread.
pub(crate) struct State {
    pub(crate) head: Head,
    pub(crate) registry: Registry,
    streams: HashMap<StreamId, StreamHead>,
    pending_idem: HashMap<[u8; 33], IdemRecord>,
}

enum Decision {
    Duplicate(AppendReceipt),
    Fresh,
}

impl State {
    pub(crate) fn new(head: Head, registry: Registry) -> State {
        State {
            head,
            registry,
            streams: HashMap::new(),
            pending_idem: HashMap::new(),
        }
    }

    fn stream_head(
        &mut self,
        db: &sled::Db,
        stream: &StreamId,
    ) -> Result<Option<StreamHead>, AppendError> {
        if let Some(h) = self.streams.get(stream) {
            return Ok(Some(*h));
        }
        let last = db.scan_prefix(layout::stream_prefix(stream)).next_back();
        match last {
            None => Ok(None),
            Some(Err(e)) => Err(AppendError::Storage(e.to_string())),
            Some(Ok((k, v))) => {
                let version = u64::from_be_bytes(
                    k[17..25]
                        .try_into()
                        .map_err(|_| AppendError::Storage("bad stream index key".into()))?,
                );
                let (_, hash) = layout::position_and_hash(&v)
                    .ok_or_else(|| AppendError::Storage("bad stream index value".into()))?;
                let h = StreamHead { version, hash };
                self.streams.insert(*stream, h);
                Ok(Some(h))
            }
        }
    }

    fn idem(&self, db: &sled::Db, key: &[u8; 33]) -> Result<Option<IdemRecord>, AppendError> {
        if let Some(r) = self.pending_idem.get(key) {
            return Ok(Some(*r));
        }
        match db.get(key) {
            Ok(Some(v)) => IdemRecord::decode(&v)
                .map(Some)
                .ok_or_else(|| AppendError::Storage("bad idempotency record".into())),
            Ok(None) => Ok(None),
            Err(e) => Err(AppendError::Storage(e.to_string())),
        }
    }

    /// Decides a request against the current state, without changing anything but (on success)
    /// the registry.
    fn decide(&mut self, db: &sled::Db, req: &Prechecked) -> Result<Decision, AppendError> {
        let cmds = &req.commands;
        // Idempotency first: a retry of an appended request must get its first answer even though
        // the stream has moved on since.
        let mut found = Vec::with_capacity(cmds.len());
        for c in cmds {
            let st = c.command.statement();
            found.push(self.idem(
                db,
                &layout::idempotency_key(&st.author, &st.refs.idempotency_key),
            )?);
        }
        if found.iter().any(Option::is_some) {
            for (i, (f, c)) in found.iter().zip(cmds).enumerate() {
                match f {
                    Some(r) if r.digest == c.command.digest() => {}
                    _ => return Err(AppendError::IdempotencyConflict { index: i }),
                }
            }
            let appended: Vec<Appended> = found.iter().flatten().map(|r| r.appended).collect();
            let recorded_time = recorded_time_of(db, appended[0].position)?;
            return Ok(Decision::Duplicate(AppendReceipt {
                stream: req.stream,
                entries: appended,
                recorded_time,
                duplicate: true,
            }));
        }

        let head = self.stream_head(db, &req.stream)?;
        let ok = match (req.expected, head) {
            (ExpectedVersion::Any, _) => true,
            (ExpectedVersion::NoStream, None) => true,
            (ExpectedVersion::Exact(n), Some(h)) => h.version == n,
            _ => false,
        };
        if !ok {
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
            let key = reg
                .signing_key(st, public)
                .map_err(|source| AppendError::Unauthorized { index: i, source })?;
            if (genesis || c.verified_with != Some(st.key_id))
                && !verify_statement(&key, c.command.statement_bytes(), c.command.signature())
            {
                return Err(AppendError::Unauthorized {
                    index: i,
                    source: chronicle_core::RegistryError::BadSignature,
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
        req: &Prechecked,
        recorded: Timestamp,
        batch: &mut sled::Batch,
        vault_dirty: &mut bool,
    ) -> Result<AppendReceipt, AppendError> {
        let mut head = self.stream_head(&shared.db, &req.stream)?;
        let mut appended = Vec::with_capacity(req.commands.len());
        for c in &req.commands {
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
            let envelope = match st.payload_kind {
                PayloadKind::Public => public_envelope(cmd.salt(), cmd.payload()),
                PayloadKind::Sealed => {
                    let mut vault = shared
                        .vault
                        .write()
                        .map_err(|_| AppendError::Storage("vault lock poisoned".into()))?;
                    let kid = match vault.current_key(&req.stream) {
                        Some((id, _)) => id,
                        None => {
                            *vault_dirty = true;
                            vault
                                .create_key(req.stream)
                                .map_err(|e| AppendError::Storage(e.to_string()))?
                        }
                    };
                    let cek = SymmetricKey::random();
                    let wrapped = vault
                        .wrap_content_key(&kid, position, &cek)
                        .map_err(AppendError::Seal)?;
                    batch.insert(&layout::content_key_key(position)[..], wrapped);
                    seal(&cek, &st.commitment, cmd.salt(), cmd.payload())
                }
            };
            let entry = Entry::assemble(&header, cmd.statement_bytes(), &envelope, cmd.signature())
                .map_err(|e| AppendError::Storage(format!("entry does not assemble: {e}")))?;
            let hash = entry.hash();
            let mut value = entry.into_bytes();
            value.extend_from_slice(&hash.0);
            batch.insert(&layout::entry_key(position)[..], value);
            batch.insert(
                &layout::stream_key(&req.stream, header.stream_version)[..],
                &layout::encode_position_and_hash(position, &hash)[..],
            );
            let a = Appended {
                position,
                stream_version: header.stream_version,
                hash,
            };
            let idem_key = layout::idempotency_key(&st.author, &st.refs.idempotency_key);
            let rec = IdemRecord {
                digest: cmd.digest(),
                appended: a,
            };
            batch.insert(&idem_key[..], &rec.encode()[..]);
            self.pending_idem.insert(idem_key, rec);
            appended.push(a);
            self.head = Head {
                len: position + 1,
                last_hash: hash,
                last_recorded: recorded,
            };
            head = Some(StreamHead {
                version: header.stream_version,
                hash,
            });
        }
        if let Some(h) = head {
            self.streams.insert(req.stream, h);
        }
        Ok(AppendReceipt {
            stream: req.stream,
            entries: appended,
            recorded_time: recorded,
            duplicate: false,
        })
    }
}

fn recorded_time_of(db: &sled::Db, position: u64) -> Result<Timestamp, AppendError> {
    let v = db
        .get(layout::entry_key(position))
        .map_err(|e| AppendError::Storage(e.to_string()))?;
    let v = v.ok_or_else(|| {
        AppendError::Storage(format!(
            "entry {position} named by an idempotency record is missing"
        ))
    })?;
    let (bytes, _) =
        layout::split_entry_value(&v).ok_or_else(|| AppendError::Storage("short entry".into()))?;
    Entry::decode(bytes.to_vec())
        .map(|e| e.header.recorded_time)
        .map_err(|e| AppendError::Storage(format!("entry {position}: {e}")))
}

/// The writer thread's loop; returns when every sender is gone.
pub(crate) fn run(
    shared: Arc<Shared>,
    mut state: State,
    mut durability: Durability,
    rx: Receiver<Job>,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_REQUESTS_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Some(reason) = shared.failure() {
            for j in jobs {
                let _ = j.reply.send(Err(AppendError::Unavailable(reason.clone())));
            }
            continue;
        }
        commit_group(&shared, &mut state, &mut durability, jobs);
    }
}

fn commit_group(shared: &Shared, state: &mut State, durability: &mut Durability, jobs: Vec<Job>) {
    // The ledger clock never runs backwards along the log, whatever the system clock does.
    let recorded = Timestamp::now().max(state.head.last_recorded);
    let mut batch = sled::Batch::default();
    let mut vault_dirty = false;
    let registry_before = state.registry.principal_count();
    let mut answers = Vec::with_capacity(jobs.len());
    let mut wrote = false;
    for job in jobs {
        let result = match state.decide(&shared.db, &job.request) {
            Err(e) => Err(e),
            Ok(Decision::Duplicate(r)) => Ok(r),
            Ok(Decision::Fresh) => {
                wrote = true;
                state.build(shared, &job.request, recorded, &mut batch, &mut vault_dirty)
            }
        };
        answers.push((job.reply, result));
    }
    if wrote {
        batch.insert(layout::HEAD_KEY, &state.head.encode()[..]);
        let outcome = (|| -> Result<(), String> {
            if vault_dirty {
                shared
                    .vault
                    .write()
                    .map_err(|_| "vault lock poisoned".to_string())?
                    .sync()
                    .map_err(|e| e.to_string())?;
            }
            shared.db.apply_batch(batch).map_err(|e| e.to_string())?;
            shared.db.flush().map_err(|e| e.to_string())?;
            durability.sync().map_err(|e| e.to_string())
        })();
        if let Err(reason) = outcome {
            shared.fail(reason.clone());
            for (reply, r) in answers {
                let _ = reply.send(r.and(Err(AppendError::Storage(reason.clone()))));
            }
            return;
        }
        state.pending_idem.clear();
        let registry_changed = state.registry.principal_count() != registry_before
            || answers.iter().any(
                |(_, r)| matches!(r, Ok(rc) if rc.stream == StreamId::REGISTRY && !rc.duplicate),
            );
        shared.publish(state.head, registry_changed.then(|| state.registry.clone()));
    }
    for (reply, r) in answers {
        let _ = reply.send(r);
    }
}
