//! The store's public face: open or create a log, append, read, subscribe.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use chronicle_core::command::Command;
use chronicle_core::limits::{BATCH_BYTES_MAX, BATCH_ENTRIES_MAX, READ_PAGE_ENTRIES_MAX};
use chronicle_core::payload::{open_public, open_sealed};
use chronicle_core::registry::RegistryEvent;
use chronicle_core::{Entry, KeyId, MasterKey, PayloadKind, Registry, StreamId, Vault};
use chronicle_tlog::{TreeError, TreeHash};
use tokio::sync::{oneshot, watch};
use zeroize::Zeroizing;

use crate::auth::IntegrityKeys;
use crate::db::{DbCell, DbRef};
use crate::derived::check_indexed;
use crate::durability::Durability;
use crate::error::{AppendError, OpenError, ReadError};
use crate::layout::{self, Head, STORE_FORMAT};
use crate::subscribe::Subscription;
use crate::tree::SledTree;
use crate::writer::{self, Job, State};
use crate::{AppendReceipt, AppendRequest};

/// Where the store keeps its parts inside a data directory.
#[derive(Clone, Debug)]
pub struct StorePaths {
    /// sled's directory.
    pub log: PathBuf,
    /// The key vault's directory.
    pub vault: PathBuf,
    /// Where the persisted projection's snapshot files are.
    pub projection: PathBuf,
}

impl StorePaths {
    /// The standard layout: `D/log`, `D/vault` and `D/projection`.
    pub fn in_data_dir(data_dir: &Path) -> StorePaths {
        StorePaths { log: data_dir.join("log"), vault: data_dir.join("vault"), projection: data_dir.join("projection") }
    }
}

/// A command that passed the checks that need no state, with a note of whether the writer's
/// batch check already verified its signature (and under which key id).
pub(crate) struct PrecheckedCommand {
    pub(crate) command: Command,
    pub(crate) verified_with: Option<KeyId>,
}

/// A request that passed the stateless checks. Only [`Store::precheck`] builds one.
pub(crate) struct Prechecked {
    pub(crate) stream: StreamId,
    pub(crate) expected: crate::ExpectedVersion,
    pub(crate) commands: Vec<PrecheckedCommand>,
}

/// An append handed to the writer by [`Store::append_queued`], not yet answered.
#[must_use = "an append's answer says whether it was appended"]
pub struct Queued(oneshot::Receiver<Result<AppendReceipt, AppendError>>);

impl Queued {
    /// Waits for the answer. Must not be called from inside an async runtime.
    pub fn wait(self) -> Result<AppendReceipt, AppendError> {
        self.0.blocking_recv().unwrap_or_else(|_| Err(AppendError::Unavailable("the writer has stopped".into())))
    }
}

/// State shared by every handle and the writer thread.
pub(crate) struct Shared {
    pub(crate) db: DbCell,
    log_dir: PathBuf,
    pub(crate) projection_dir: PathBuf,
    checkpoint_lock: Mutex<()>,
    last_checkpoint: Mutex<Option<std::time::Instant>>,
    pub(crate) vault: RwLock<Vault>,
    registry: RwLock<Arc<Registry>>,
    committed: watch::Sender<Head>,
    failed: Mutex<Option<String>>,
    /// Bumped whenever a stream's data key is rotated: the writer drops its cache of stream keys.
    pub(crate) key_epoch: std::sync::atomic::AtomicU64,
    /// The keys that authenticate derived state.
    pub(crate) keys: IntegrityKeys,
    /// What the open repaired, if derived state was found damaged.
    repaired: Option<String>,
    /// How long the open's checks of derived state took (and its repair, if there was one).
    open_checks: std::time::Duration,
    /// The persisted projection's overlay digest as last established: (generation, digest).
    pub(crate) projection_digest: Mutex<Option<(u64, [u8; 32])>>,
    /// Set once a reader found derived state damaged (the next open rebuilds it).
    damage_found: std::sync::atomic::AtomicBool,
    /// Held by the writer while it builds and applies a group, and by key destruction: while it
    /// is held by the latter, every entry wrapped under a key is in sled, and none is being
    /// wrapped (see `rekey`).
    pub(crate) building: Mutex<()>,
    /// The history the log recorded itself in when it was opened (see `repair::Opened`).
    history: u64,
    /// Every stream's head at the published length (see `commitment`).
    pub(crate) live_heads: Mutex<crate::commitment::LiveHeads>,
    /// The heads commitments this process made, with their maps; one made at a time.
    pub(crate) commitments: Mutex<crate::commitment::Kept>,
}

impl Shared {
    /// sled, for one operation (see `db` for the rules).
    pub(crate) fn db(&self) -> Result<DbRef<'_>, sled::Error> {
        self.db.get()
    }
    pub(crate) fn failure(&self) -> Option<String> {
        self.failed.lock().map(|f| f.clone()).unwrap_or_else(|_| Some("lock poisoned".into()))
    }
    pub(crate) fn fail(&self, reason: String) {
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert(reason);
        }
    }
    /// A reader found derived state that does not match the entries: nothing is answered from
    /// it, the store stops accepting appends (the writer trusts the same state), and the next
    /// open rebuilds it from the entries (the repair key says so, even if this process dies
    /// first). Returns the error to give the reader.
    pub(crate) fn damaged(&self, db: &sled::Db, space: char, reason: String) -> ReadError {
        let said = format!("derived state damaged (key space {space}): {reason}");
        eprintln!(
            "chronicle: {said}; the store stops accepting appends, and rebuilds it from the log at its next start"
        );
        let _ = db
            .insert(layout::REPAIR_KEY, said.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|_| crate::db::flush_within(db, crate::db::FLUSH_LIMIT));
        self.damage_found.store(true, std::sync::atomic::Ordering::Release);
        self.fail(format!("{said}; restart to rebuild it from the log"));
        ReadError::Derived { space, reason }
    }
    /// Reads one entry and the wrapped content key stored beside it, checked against the tree:
    /// its Merkle leaf must be the one the authenticated tree holds at its position. The stored
    /// hash beside an entry is no protection against someone who rewrites both; the tree's chunks
    /// carry MACs, and were written with the entry.
    pub(crate) fn read_entry_and_key(
        &self,
        db: &sled::Db,
        position: u64,
    ) -> Result<(Entry, Option<Vec<u8>>), ReadError> {
        let (e, wrapped) = read_entry_and_key(db, position)?;
        self.check_leaves(db, std::slice::from_ref(&e))?;
        Ok((e, wrapped))
    }

    /// A stream's head as its `h` value authenticates it (`None`: the stream has no entries; the
    /// open checked the heads against the head record, so none is missing or older). A head
    /// below `len` is checked against the entry it names; one at or past it is a group being
    /// written, returned unchecked for the caller to tell apart.
    pub(crate) fn stream_head(
        &self,
        db: &sled::Db,
        stream: &StreamId,
        len: u64,
    ) -> Result<Option<layout::StreamHead>, ReadError> {
        let Some(v) = db.get(layout::stream_head_key(stream))? else { return Ok(None) };
        let h = layout::StreamHead::decode(Some(&self.keys), stream, &v)
            .map_err(|reason| self.damaged(db, 'h', format!("{reason} ({stream})")))?;
        if h.position < len {
            let e = self.read_entry(db, h.position)?;
            crate::derived::check_indexed(&e, stream, h.version, &h.hash)
                .map_err(|reason| self.damaged(db, 'h', format!("the head of stream {stream}: {reason}")))?;
        }
        Ok(Some(h))
    }

    /// [`Shared::read_entry_and_key`] without the wrapped key.
    pub(crate) fn read_entry(&self, db: &sled::Db, position: u64) -> Result<Entry, ReadError> {
        self.read_entry_and_key(db, position).map(|(e, _)| e)
    }

    /// Checks entries against the tree's leaves (reading each chunk they fall in once).
    pub(crate) fn check_leaves<'e>(
        &self,
        db: &sled::Db,
        entries: impl IntoIterator<Item = &'e Entry> + Clone,
    ) -> Result<(), ReadError> {
        let Some(first) = entries.clone().into_iter().next().map(Entry::position) else { return Ok(()) };
        match crate::tree::changed_entry(db, &self.keys, entries) {
            Ok(None) => Ok(()),
            Ok(Some(position)) => Err(ReadError::Damaged {
                position,
                reason: "it is not the entry the tree holds at its position (changed outside the ledger)".into(),
            }),
            Err(_) => Err(self.damaged(
                db,
                't',
                format!("the tree's leaves from entry {first} on are missing or do not authenticate"),
            )),
        }
    }

    /// Checks a run of consecutive entries: each names the hash of the one before it (the log's
    /// own chain), and the last is the one the tree holds at its position; the chain then vouches
    /// for every entry before it. One leaf per run rather than one per entry: bulk reads (a
    /// replay of the whole log) pay a hash comparison per entry.
    pub(crate) fn check_run(&self, db: &sled::Db, run: &[&Entry]) -> Result<(), ReadError> {
        for w in run.windows(2) {
            if w[1].position() != w[0].position() + 1 || w[1].header.prev_hash != w[0].hash() {
                return Err(ReadError::Damaged {
                    position: w[0].position(),
                    reason: "the entry after it does not name it (changed outside the ledger)".into(),
                });
            }
        }
        match run.last() {
            Some(last) => self.check_leaves(db, std::iter::once(*last)),
            None => Ok(()),
        }
    }

    pub(crate) fn registry_snapshot(&self) -> Arc<Registry> {
        self.registry.read().map(|r| r.clone()).unwrap_or_default()
    }
    /// Publishes the groups up to `head`: the heads they moved go into the heads map first, so
    /// that the map is never behind what a reader can see.
    pub(crate) fn publish(
        &self,
        head: Head,
        registry: Option<Registry>,
        moved: impl IntoIterator<Item = chronicle_tlog::heads::StreamHead>,
    ) {
        self.live_heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).publish(moved, head.len);
        if let Some(r) = registry
            && let Ok(mut g) = self.registry.write()
        {
            *g = Arc::new(r);
        }
        self.committed.send_replace(head);
    }
}

struct WriterHandle {
    tx: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        // The verifier stops when its channel closes, the writer when the verifier is gone, and
        // the syncer when the writer is gone; joining all three means every accepted request
        // was answered.
        if let Ok(mut threads) = self.threads.lock() {
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// An open log. Cheap to clone; the last clone dropped stops the writer after it finishes the
/// work it has accepted.
#[derive(Clone)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
    writer: Arc<WriterHandle>,
}

impl Store {
    /// Creates an empty log and vault. Fails if either exists.
    pub fn create(paths: &StorePaths, master: MasterKey) -> Result<Store, OpenError> {
        if paths.log.join("db").exists() {
            return Err(OpenError::AlreadyInitialized(paths.log.display().to_string()));
        }
        let vault = Vault::create(&paths.vault, master)?;
        let db = open_sled(&paths.log)?;
        db.insert(layout::FORMAT_KEY, &[STORE_FORMAT]).map_err(|e| OpenError::Io(e.to_string()))?;
        crate::db::flush_within(&db, crate::db::FLUSH_LIMIT).map_err(OpenError::Io)?;
        Store::start(paths, db, vault, false)
    }

    /// Opens an existing log and vault. A log that does not reach the last checkpoint the ledger
    /// signed is refused ([`OpenError::RolledBack`]).
    pub fn open(paths: &StorePaths, master: MasterKey) -> Result<Store, OpenError> {
        Store::open_with(paths, master, false).map(|(s, _)| s)
    }

    /// [`Store::open`], and with `accept_rollback` a log that does not reach the last checkpoint
    /// signed is opened all the same: the anchor it fails is returned, for the caller to record
    /// the rollback in the log and mark the anchor recovered ([`Store::accept_rollback`]).
    pub fn open_with(
        paths: &StorePaths,
        master: MasterKey,
        accept_rollback: bool,
    ) -> Result<(Store, Option<(chronicle_core::Anchor, String)>), OpenError> {
        Store::open_inner(paths, master, accept_rollback, false)
    }

    /// Opens the store and rebuilds its derived state from the entries, as an operator asks with
    /// `chronicle rebuild --store`. Unlike a start, this also goes ahead when the entries do not
    /// agree with the head record (a log cut short, or entries found beyond it), accepting the log
    /// as it is, but only once every entry's signature, author and stream rule check from the
    /// genesis entry on; and a log that does not reach the vault's anchor is still refused.
    pub fn open_rebuilding(paths: &StorePaths, master: MasterKey) -> Result<Store, OpenError> {
        Store::open_inner(paths, master, false, true).map(|(s, _)| s)
    }

    fn open_inner(
        paths: &StorePaths,
        master: MasterKey,
        accept_rollback: bool,
        operator_rebuild: bool,
    ) -> Result<(Store, Option<(chronicle_core::Anchor, String)>), OpenError> {
        if !paths.log.join("db").exists() {
            return Err(OpenError::NotInitialized(paths.log.display().to_string()));
        }
        let hex = master.to_hex();
        let mut master = Some(master);
        let mut attempts = 0;
        let (store, rollback) = loop {
            attempts += 1;
            let master = match master.take() {
                Some(m) => m,
                None => MasterKey::from_hex(&hex)?,
            };
            // The two are independent, and each takes a while on a large ledger: side by side.
            let (vault, db) = std::thread::scope(|s| {
                let vault = s.spawn(|| Vault::open(&paths.vault, master));
                let db = open_sled(&paths.log);
                (vault.join(), db)
            });
            let vault = vault.map_err(|_| OpenError::Io("opening the vault panicked".into()))??;
            let store = Store::start(paths, db?, vault, operator_rebuild && attempts == 1)?;
            let rollback = store.rollback();
            // Checking the anchor read a tree hash that does not authenticate: opening again
            // rebuilds the tree from the log (and says so), and checks again, once.
            if rollback.is_err() && store.damage_found() && store.repaired().is_none() && attempts < 2 {
                continue;
            }
            break (store, rollback);
        };
        // Every accepted rollback is recorded in the log (naming the history it starts) before the
        // vault moves to it. A log in an earlier history than the vault's is from before the last
        // rollback accepted: a history given up, put back, or a copy older than that rollback. A
        // log in a later one goes with a vault that lost its later anchors, or an acceptance was
        // cut short. Either is refused, unless the operator accepts it as a rollback (recorded
        // in the log again, and the vault moved to a history after both).
        let (recorded, counted) = (store.shared.history, store.anchor().map_or(0, |a| a.epoch));
        let rollback = match rollback {
            Ok(found) if recorded != counted => {
                let why = format!(
                    "the log records itself in history {recorded}, the vault is in history {counted} (each accepted \
                     rollback starts one)"
                );
                if !accept_rollback {
                    return Err(OpenError::OtherHistory(format!(
                        "{why}: if this log is the one to keep, accept it (`chronicle serve --accept-rollback REASON`, \
                         recorded in the log)"
                    )));
                }
                let anchor = store.anchor().unwrap_or(chronicle_core::Anchor {
                    size: 0,
                    root: [0; 32],
                    recovered: true,
                    epoch: counted,
                });
                Ok(Some(found.map_or((anchor, why.clone()), |(a, f)| (a, format!("{f}; {why}")))))
            }
            other => other,
        };
        match rollback {
            Ok(None) => Ok((store, None)),
            Ok(Some((anchor, found))) if accept_rollback => Ok((store, Some((anchor, found)))),
            Ok(Some((anchor, found))) => Err(OpenError::RolledBack {
                anchor_size: anchor.size,
                anchor_root: chronicle_core::Hash(anchor.root).to_hex(),
                found,
            }),
            Err(e) => Err(OpenError::Damaged(e.to_string())),
        }
    }

    /// Whether the log fails to reach the vault's anchor (the last checkpoint signed), and how.
    /// An anchor marked recovered is not required of the log.
    pub fn rollback(&self) -> Result<Option<(chronicle_core::Anchor, String)>, TreeError> {
        let Some(anchor) = self.anchor() else { return Ok(None) };
        if anchor.recovered {
            return Ok(None);
        }
        let len = self.head().len;
        if len < anchor.size {
            return Ok(Some((anchor, format!("the log holds only {len} entries"))));
        }
        let root = self.tree_root(anchor.size)?;
        if root.0 != anchor.root {
            return Ok(Some((
                anchor,
                format!("its tree at that size has root {}", chronicle_core::Hash(root.0).to_hex()),
            )));
        }
        Ok(None)
    }

    /// The last checkpoint the ledger signed, as the vault keeps it.
    pub fn anchor(&self) -> Option<chronicle_core::Anchor> {
        self.shared.vault.read().unwrap_or_else(std::sync::PoisonError::into_inner).anchor()
    }

    pub(crate) fn set_anchor(&self, anchor: chronicle_core::Anchor) -> Result<(), chronicle_core::VaultError> {
        self.shared.vault.write().unwrap_or_else(std::sync::PoisonError::into_inner).set_anchor(anchor)
    }

    /// The history an accepted rollback starts: one past both the vault's and the one the log
    /// recorded itself in when opened. The caller records it in the rollback's entry, then
    /// passes it to [`Store::accept_rollback`].
    pub fn next_history(&self) -> u64 {
        self.shared.history.max(self.anchor().map_or(0, |a| a.epoch)) + 1
    }

    /// Marks the vault's anchor recovered and moves it to history `epoch`, after the rollback was
    /// recorded in the log naming it: from then on the log need not reach the anchor, the ledger
    /// signs no checkpoint at a size up to it, and the tree's MACs of the history before no
    /// longer authenticate (the caller reopens the store, which rebuilds the tree from the log).
    pub fn accept_rollback(&self, epoch: u64) -> Result<(), OpenError> {
        let mut v = self.shared.vault.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let a = v.anchor().unwrap_or(chronicle_core::Anchor { size: 0, root: [0; 32], recovered: true, epoch: 0 });
        v.set_anchor(chronicle_core::Anchor { recovered: true, epoch, ..a })?;
        Ok(())
    }

    fn start(paths: &StorePaths, db: sled::Db, vault: Vault, operator_rebuild: bool) -> Result<Store, OpenError> {
        match db.get(layout::FORMAT_KEY).map_err(|e| OpenError::Io(e.to_string()))? {
            Some(v) if v.as_ref() == [STORE_FORMAT] => {}
            Some(v) => {
                return Err(OpenError::UnsupportedFormat(v.first().copied().unwrap_or(0)));
            }
            None => return Err(OpenError::NotInitialized(paths.log.display().to_string())),
        }
        let keys = IntegrityKeys::from_vault(&vault);
        let checking = std::time::Instant::now();
        let (mut opened, repaired) = crate::repair::open_checked(&db, &keys, &vault, operator_rebuild)?;
        let history = opened.history;
        let open_checks = checking.elapsed();
        if let Some(r) = &repaired {
            eprintln!("chronicle: {r}");
        }
        let head = opened.record.head;
        let live_heads = crate::commitment::LiveHeads::new(std::mem::take(&mut opened.heads), head.len)
            .map_err(OpenError::Damaged)?;
        let durability = Durability::new(&paths.log).map_err(|e| OpenError::Io(e.to_string()))?;
        let (committed, _) = watch::channel(head);
        let shared = Arc::new(Shared {
            db: DbCell::new(db, &paths.log),
            log_dir: paths.log.clone(),
            projection_dir: paths.projection.clone(),
            checkpoint_lock: Mutex::new(()),
            last_checkpoint: Mutex::new(None),
            vault: RwLock::new(vault),
            registry: RwLock::new(Arc::new(opened.registry.clone())),
            committed,
            failed: Mutex::new(None),
            key_epoch: std::sync::atomic::AtomicU64::new(0),
            building: Mutex::new(()),
            history,
            live_heads: Mutex::new(live_heads),
            commitments: Mutex::new(Default::default()),
            keys,
            repaired,
            open_checks,
            projection_digest: Mutex::new(None),
            damage_found: std::sync::atomic::AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let (write_tx, write_rx) = mpsc::channel();
        let (sync_tx, sync_rx) = mpsc::channel();
        let state = State::new(opened);
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("chronicle-writer".into())
            .spawn(move || writer::run(s, state, write_rx, sync_tx))
            .map_err(|e| OpenError::Io(e.to_string()))?;
        let s = shared.clone();
        let verifier = std::thread::Builder::new()
            .name("chronicle-verifier".into())
            .spawn(move || writer::verify_loop(s, rx, write_tx))
            .map_err(|e| OpenError::Io(e.to_string()))?;
        let s = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("chronicle-syncer".into())
            .spawn(move || writer::sync_loop(s, durability, sync_rx))
            .map_err(|e| OpenError::Io(e.to_string()))?;
        Ok(Store {
            shared,
            writer: Arc::new(WriterHandle {
                tx: Mutex::new(Some(tx)),
                threads: Mutex::new(vec![verifier, writer, syncer]),
            }),
        })
    }

    /// The checks that need no state: limits, stream and payload rules, idempotency keys unique
    /// within the request. Signatures are checked by the writer, in batches.
    pub(crate) fn precheck(&self, req: AppendRequest) -> Result<Prechecked, AppendError> {
        let n = req.commands.len();
        if n == 0 {
            return Err(AppendError::Empty);
        }
        if n > BATCH_ENTRIES_MAX {
            return Err(AppendError::TooManyCommands { count: n, max: BATCH_ENTRIES_MAX });
        }
        let bytes: usize = req.commands.iter().map(|c| c.payload().len()).sum();
        if bytes > BATCH_BYTES_MAX {
            return Err(AppendError::TooLarge { bytes, max: BATCH_BYTES_MAX });
        }
        let mut out = Vec::with_capacity(n);
        let mut idem = std::collections::HashMap::new();
        for (index, command) in req.commands.into_iter().enumerate() {
            let st = command.statement();
            if st.stream != req.stream {
                return Err(AppendError::StreamMismatch { index, expected: req.stream, found: st.stream });
            }
            check_stream_rules(index, &req.stream, st)?;
            if req.stream == StreamId::LEDGER
                && st.event_type.as_str() == crate::commitment::STREAM_HEADS
                && crate::commitment::parse_payload(command.payload()).is_err()
            {
                let reason = "a heads commitment's payload must be {\"root\":\"<64 hex>\",\"size\":N}, exactly";
                return Err(AppendError::NotAllowedInStream { index, reason });
            }
            if let Some(first) = idem.insert((st.author.clone(), st.refs.idempotency_key.clone()), index) {
                return Err(AppendError::DuplicateIdempotencyKey { first, second: index });
            }
            out.push(PrecheckedCommand { command, verified_with: None });
        }
        Ok(Prechecked { stream: req.stream, expected: req.expected, commands: out })
    }

    fn submit(&self, req: Prechecked) -> Result<oneshot::Receiver<Result<AppendReceipt, AppendError>>, AppendError> {
        if let Some(reason) = self.shared.failure() {
            return Err(AppendError::Unavailable(reason));
        }
        let (reply, rx) = oneshot::channel();
        let tx = self.writer.tx.lock().map_err(|_| AppendError::Unavailable("writer lock poisoned".into()))?;
        let tx = tx.as_ref().ok_or_else(|| AppendError::Unavailable("shutting down".into()))?;
        tx.send(Job { request: req, reply }).map_err(|_| AppendError::Unavailable("the writer has stopped".into()))?;
        Ok(rx)
    }

    /// Appends a request atomically and durably; blocks until the group holding it is on disk.
    /// Must not be called from inside an async runtime (use [`Store::append_async`]).
    pub fn append(&self, req: AppendRequest) -> Result<AppendReceipt, AppendError> {
        self.append_queued(req)?.wait()
    }

    /// Hands an append to the writer and returns at once, without waiting for it to be decided.
    /// Appends queued from one thread are decided, and land in the log, in the order they were
    /// queued: a bulk loader keeps many in flight, so that group commit shares the `fdatasync`s
    /// among them, and still gets the order of its input. Each answer is as from
    /// [`Store::append`]; an `Ok` is durable.
    pub fn append_queued(&self, req: AppendRequest) -> Result<Queued, AppendError> {
        Ok(Queued(self.submit(self.precheck(req)?)?))
    }

    /// [`Store::append`] for async callers. The signature checks run on the calling task; callers
    /// with large batches may prefer `spawn_blocking` around [`Store::append`].
    pub async fn append_async(&self, req: AppendRequest) -> Result<AppendReceipt, AppendError> {
        let rx = self.submit(self.precheck(req)?)?;
        rx.await.unwrap_or_else(|_| Err(AppendError::Unavailable("the writer has stopped".into())))
    }

    /// If this exact command was appended before (same author, idempotency key and content), the
    /// receipt of that append; `None` if it was not. Lets a caller answer a retry with the first
    /// result without re-validating it against a state that already includes it.
    pub fn find_retry(&self, cmd: &Command) -> Result<Option<AppendReceipt>, ReadError> {
        let st = cmd.statement();
        let db = self.shared.db()?;
        let key = layout::idempotency_key(&st.author, &st.refs.idempotency_key);
        let Some(v) = db.get(key)? else {
            return Ok(None);
        };
        let Some(rec) = layout::IdemRecord::decode(&v) else {
            return Err(self.shared.damaged(&db, 'i', "a malformed idempotency record".into()));
        };
        if rec.appended.position >= self.head().len {
            return Ok(None);
        }
        // A claim about the log, checked against the entry it names before it answers anything.
        let e = self.shared.read_entry(&db, rec.appended.position)?;
        if let Err(reason) = crate::derived::check_idem(&e, &key, &rec) {
            return Err(self.shared.damaged(&db, 'i', reason));
        }
        if rec.digest != cmd.digest() {
            return Ok(None);
        }
        let recorded_time = e.header.recorded_time;
        Ok(Some(AppendReceipt { stream: st.stream, entries: vec![rec.appended], recorded_time, duplicate: true }))
    }

    /// Seals derived data (each part the projection of one stream) under each stream's current
    /// data key, so that it becomes unreadable together with the stream's entries when the key is
    /// destroyed. The parts come in stream id order: their keys are found by one sequential scan
    /// rather than one lookup each ([`Store::stream_keys`]), and the sealing runs on all cores.
    pub fn seal_for_streams(&self, parts: Vec<(StreamId, Vec<u8>)>) -> Result<Vec<(StreamId, Vec<u8>)>, ReadError> {
        let streams: Vec<StreamId> = parts.iter().map(|(s, _)| *s).collect();
        let keys = self.stream_keys(&streams)?;
        self.seal_under(parts.into_iter().zip(keys).map(|((s, p), k)| (s, k, p)).collect())
    }

    /// The current data key of each of `streams` (in strictly increasing order), by one
    /// sequential scan; `None` for a stream bound to no key.
    pub fn stream_keys(&self, streams: &[StreamId]) -> Result<Vec<Option<chronicle_core::DataKeyId>>, ReadError> {
        let (Some(first), Some(last)) = (streams.first(), streams.last()) else { return Ok(Vec::new()) };
        if streams.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ReadError::Storage("projection parts out of stream id order".into()));
        }
        let bound: Vec<(sled::IVec, sled::IVec)> = self
            .shared
            .db()?
            .range(layout::stream_data_key(first)..=layout::stream_data_key(last))
            .collect::<Result<_, _>>()?;
        let mut ids = Vec::with_capacity(streams.len());
        let mut j = 0;
        for s in streams {
            let want = layout::stream_data_key(s);
            while j < bound.len() && bound[j].0.as_ref() < &want[..] {
                j += 1;
            }
            let id = match bound.get(j).filter(|(k, _)| k.as_ref() == &want[..]) {
                Some((_, v)) => match layout::decode_binding(Some(&self.shared.keys), s, v) {
                    Ok(id) => Some(id),
                    Err(reason) => {
                        return Err(self.shared.damaged(&*self.shared.db()?, 'c', format!("{reason} ({s})")));
                    }
                },
                None => None,
            };
            ids.push(id);
        }
        Ok(ids)
    }

    /// [`Store::seal_for_streams`] with each part's key already found ([`Store::stream_keys`]):
    /// a part with no key is refused.
    pub fn seal_under(
        &self,
        parts: Vec<(StreamId, Option<chronicle_core::DataKeyId>, Vec<u8>)>,
    ) -> Result<Vec<(StreamId, Vec<u8>)>, ReadError> {
        use rayon::prelude::*;
        // The keys are copied out and the vault's lock let go before any parallel work: a rayon
        // worker waiting for this loop may steal another task that takes the vault's read lock,
        // which waits behind a writer waiting for this guard (a whole-server deadlock).
        let keys: std::collections::HashMap<chronicle_core::DataKeyId, chronicle_core::payload::SymmetricKey> = {
            let vault = self.shared.vault.read().map_err(|_| ReadError::Storage("vault lock poisoned".into()))?;
            let mut keys = std::collections::HashMap::new();
            for id in parts.iter().filter_map(|(_, id, _)| *id) {
                if let std::collections::hash_map::Entry::Vacant(v) = keys.entry(id) {
                    let key = vault.key(&id).map_err(|source| ReadError::Payload { position: u64::MAX, source })?;
                    v.insert(key.clone());
                }
            }
            keys
        };
        parts
            .into_par_iter()
            .map(|(stream, id, plaintext)| {
                let id =
                    id.ok_or(ReadError::Payload { position: u64::MAX, source: chronicle_core::SealError::KeyUnknown })?;
                let key = &keys[&id];
                let sealed = chronicle_core::payload::aead_seal(key, &[PROJECTION_AAD, &stream.0], &plaintext);
                let mut out = Vec::with_capacity(16 + sealed.len());
                out.extend_from_slice(&id.0);
                out.extend_from_slice(&sealed);
                Ok((stream, out))
            })
            .collect()
    }

    /// Opens a part [`Store::seal_for_streams`] sealed.
    pub fn open_for_stream(&self, stream: &StreamId, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ReadError> {
        let bad = |source| ReadError::Payload { position: u64::MAX, source };
        let id = chronicle_core::Vault::wrapped_key_id(sealed)
            .ok_or(bad(chronicle_core::SealError::Short { len: sealed.len() }))?;
        let vault = self.shared.vault.read().map_err(|_| ReadError::Storage("vault lock poisoned".into()))?;
        let key = vault.key(&id).map_err(bad)?;
        chronicle_core::payload::aead_open(key, &[PROJECTION_AAD, &stream.0], &sealed[16..]).map_err(bad)
    }

    /// Every data key any entry of these streams is sealed under, plus each stream's current key.
    fn stream_key_ids(&self, streams: &[StreamId]) -> Result<Vec<chronicle_core::DataKeyId>, ReadError> {
        let mut ids = std::collections::BTreeSet::new();
        let len = self.head().len;
        let db = self.shared.db()?;
        for s in streams {
            if let Some(id) = self.stream_data_key(&db, s)? {
                ids.insert(id);
            }
            // Every entry of the stream, found through its index and checked against it: an index
            // missing a version would leave that entry's key alive.
            for (position, hash, version) in self.stream_index(&db, s, 0, len)? {
                let (e, wrapped) = self.shared.read_entry_and_key(&db, position)?;
                if let Err(reason) = check_indexed(&e, s, version, &hash) {
                    return Err(self.shared.damaged(&db, 's', reason));
                }
                if let Some(id) = wrapped.as_deref().and_then(chronicle_core::Vault::wrapped_key_id) {
                    ids.insert(id);
                }
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// An index value naming a position at or past the committed head is the first of a group
    /// being written (its entries and index values go to sled in one batch before the head is
    /// published): its entry must be there and be what the value says. Anything else (a position
    /// made up to end a read early, say) is damage.
    fn in_flight(
        &self,
        db: &sled::Db,
        stream: &StreamId,
        version: u64,
        position: u64,
        hash: &chronicle_core::Hash,
    ) -> Result<(), ReadError> {
        let found = match db.get(layout::entry_key(position))? {
            None => Err(format!(
                "the index of stream {stream} version {version} names position {position}, where no entry is"
            )),
            Some(v) => decode_stored(position, &v)
                .map_err(|e| e.to_string())
                .and_then(|(e, _)| check_indexed(&e, stream, version, hash)),
        };
        found.map_err(|reason| self.shared.damaged(db, 's', reason))
    }

    /// A stream's index from version `from` up to the committed head, checked to run without a
    /// gap: (position, hash, version) of each entry. The caller checks each against its entry.
    pub(crate) fn stream_index(
        &self,
        db: &sled::Db,
        stream: &StreamId,
        from: u64,
        len: u64,
    ) -> Result<Vec<(u64, chronicle_core::Hash, u64)>, ReadError> {
        let mut out = Vec::new();
        for kv in db.range(layout::stream_key(stream, from)..=layout::stream_key(stream, u64::MAX)) {
            let (k, v) = kv?;
            let want = from + out.len() as u64;
            let (Some(version), Some((position, hash))) =
                (layout::stream_key_version(&k), layout::position_and_hash(&v))
            else {
                return Err(self.shared.damaged(db, 's', format!("a malformed index entry of stream {stream}")));
            };
            if position >= len {
                self.in_flight(db, stream, version, position, &hash)?;
                break;
            }
            if version != want {
                return Err(self.shared.damaged(db, 's', format!("the index of stream {stream} lacks version {want}")));
            }
            out.push((position, hash, version));
        }
        self.index_reaches_head(db, stream, from + out.len() as u64, len)?;
        Ok(out)
    }

    /// An index read from a stream that ran out at version `next` (exclusive) must have reached
    /// the stream's authenticated head: index keys deleted from its end would otherwise make the
    /// stream read shorter (an evidence bundle short of its last entries, an expungement missing
    /// keys).
    fn index_reaches_head(&self, db: &sled::Db, stream: &StreamId, next: u64, len: u64) -> Result<(), ReadError> {
        let last = self.committed_version(db, stream, len)?;
        match last {
            Some(last) if next <= last => Err(self.shared.damaged(
                db,
                's',
                format!("the index of stream {stream} ends before version {next}, its head is at version {last}"),
            )),
            _ => Ok(()),
        }
    }

    /// The last version of a stream committed below `len`, from its authenticated head; for a
    /// stream whose head is in a group being written, from its index (checked against the entry).
    fn committed_version(&self, db: &sled::Db, stream: &StreamId, len: u64) -> Result<Option<u64>, ReadError> {
        let Some(h) = self.shared.stream_head(db, stream, len)? else { return Ok(None) };
        Ok(self.head_below(db, stream, &h, len)?.map(|(version, _)| version))
    }

    /// A stream's last version below log position `len`, and that entry's hash, from its head
    /// `h`: the head itself if it lies below `len` (its index value checked to be there: every
    /// reader of the stream goes through the index); otherwise (a group being written, or a size
    /// the stream has grown past) found by walking the index down from the head version by
    /// version, each value checked, the one found checked against its entry.
    fn head_below(
        &self,
        db: &sled::Db,
        stream: &StreamId,
        h: &layout::StreamHead,
        len: u64,
    ) -> Result<Option<(u64, chronicle_core::Hash)>, ReadError> {
        if h.position < len {
            let indexed = db.get(layout::stream_key(stream, h.version))?;
            if indexed.as_deref().and_then(layout::position_and_hash) != Some((h.position, h.hash)) {
                let reason = format!("the index of stream {stream} lacks its last version {}", h.version);
                return Err(self.shared.damaged(db, 's', reason));
            }
            // Nor does the index go on below `len` past the head (a head put back older).
            let after = db.get(layout::stream_key(stream, h.version + 1))?;
            if after.as_deref().and_then(layout::position_and_hash).is_some_and(|(p, _)| p < len) {
                let reason = format!("the head of stream {stream} names version {}, the index goes on", h.version);
                return Err(self.shared.damaged(db, 'h', reason));
            }
            return Ok(Some((h.version, h.hash)));
        }
        let mut want = h.version;
        for kv in db.range(layout::stream_key(stream, 0)..=layout::stream_key(stream, h.version)).rev() {
            let (k, v) = kv?;
            let (Some(version), Some((position, hash))) =
                (layout::stream_key_version(&k), layout::position_and_hash(&v))
            else {
                return Err(self.shared.damaged(db, 's', format!("a malformed index entry of stream {stream}")));
            };
            if version != want {
                let reason = format!("the index of stream {stream} lacks version {want}");
                return Err(self.shared.damaged(db, 's', reason));
            }
            want = want.wrapping_sub(1);
            if position < len {
                let e = self.shared.read_entry(db, position)?;
                if let Err(reason) = check_indexed(&e, stream, version, &hash) {
                    return Err(self.shared.damaged(db, 's', reason));
                }
                return Ok(Some((version, hash)));
            }
        }
        if want != u64::MAX {
            let reason = format!("the index of stream {stream} lacks version {want}");
            return Err(self.shared.damaged(db, 's', reason));
        }
        Ok(None)
    }

    /// Every stream's head at log size `size` (at most the committed length), in stream id
    /// order: the leaves of the heads map at that size (`chronicle_tlog::heads`). Needs no lock:
    /// a stream whose head has moved to `size` or past since is walked back through its index.
    /// One read per stream, plus the entries appended since `size`.
    pub fn stream_heads_at(&self, size: u64) -> Result<Vec<chronicle_tlog::heads::StreamHead>, ReadError> {
        let len = self.head().len;
        if size > len {
            return Err(ReadError::Storage(format!("no heads at size {size}: the log holds {len} entries")));
        }
        let db = self.shared.db()?;
        let mut out = Vec::new();
        for kv in db.scan_prefix([layout::STREAM_HEAD]) {
            let (k, v) = kv?;
            let Some(stream) = layout::stream_head_stream(&k) else {
                return Err(self.shared.damaged(&db, 'h', "a malformed stream head key".into()));
            };
            let h = layout::StreamHead::decode(Some(&self.shared.keys), &stream, &v)
                .map_err(|reason| self.shared.damaged(&db, 'h', format!("{reason} ({stream})")))?;
            if let Some((version, hash)) = self.head_below(&db, &stream, &h, size)? {
                out.push(chronicle_tlog::heads::StreamHead { stream: stream.0, version, hash: hash.0 });
            }
        }
        Ok(out)
    }

    /// The data key a stream is bound to now, its binding checked.
    fn stream_data_key(
        &self,
        db: &sled::Db,
        stream: &StreamId,
    ) -> Result<Option<chronicle_core::DataKeyId>, ReadError> {
        match db.get(layout::stream_data_key(stream))? {
            None => Ok(None),
            Some(v) => match layout::decode_binding(Some(&self.shared.keys), stream, &v) {
                Ok(id) => Ok(Some(id)),
                Err(reason) => Err(self.shared.damaged(db, 'c', format!("{reason} ({stream})"))),
            },
        }
    }

    /// Destroys every data key of these streams (crypto-shredding): their payloads, and anything
    /// sealed for them, become unreadable for good. Idempotent; returns how many keys were live.
    pub fn destroy_stream_keys(&self, streams: &[StreamId]) -> Result<usize, ReadError> {
        let ids = self.stream_key_ids(streams)?;
        self.destroy_keys_of(streams, &ids)
    }

    /// The raw bytes of a stream's current data key. For tests that prove a destroyed key is
    /// gone from every file; never for production use.
    pub fn danger_data_key_bytes(&self, stream: &StreamId) -> Option<[u8; 32]> {
        let db = self.shared.db().ok()?;
        let id = self.stream_data_key(&db, stream).ok()??;
        let vault = self.shared.vault.read().ok()?;
        vault.key(&id).ok().map(|k| *k.as_bytes())
    }

    /// Whether every data key of these streams is destroyed.
    pub fn stream_keys_destroyed(&self, streams: &[StreamId]) -> Result<bool, ReadError> {
        let ids = self.stream_key_ids(streams)?;
        let vault = self.shared.vault.read().map_err(|_| ReadError::Storage("vault lock poisoned".into()))?;
        Ok(ids.iter().all(|id| vault.is_destroyed(id)))
    }

    /// The committed head: every entry below `len` is durable.
    pub fn head(&self) -> Head {
        *self.shared.committed.borrow()
    }

    pub(crate) fn watch_head(&self) -> watch::Receiver<Head> {
        self.shared.committed.subscribe()
    }

    /// The registry as of the committed head.
    pub fn registry(&self) -> Arc<Registry> {
        self.shared.registry_snapshot()
    }

    /// Sets about how many bytes are written to sled between two reopens of it (`None`: the
    /// default, at least 128 MiB and growing with the data; see docs/FORMAT.md, "Restart after a
    /// crash"). Each reopen writes sled's snapshot, which bounds what a start after a crash
    /// replays; appends and reads of sled wait while it runs.
    pub fn set_settle_every(&self, bytes: Option<u64>) {
        self.shared.db.set_every(bytes);
    }

    /// Reopens sled now if enough was written since it was last opened (see
    /// [`Store::set_settle_every`]). The writer does this between groups of appends; whoever
    /// writes much else (the persisted projection) calls this afterwards, holding no lock that
    /// readers need, since sled's readers wait while it runs. An error means sled could not be
    /// opened again, and the store has failed.
    pub fn settle_if_due(&self) -> Result<(), ReadError> {
        self.shared.db.settle_if_due().map_err(|reason| {
            self.shared.fail(reason.clone());
            ReadError::Storage(reason)
        })
    }

    /// About how many bytes were written to sled since it was last opened, and how many will
    /// make the next reopen due. A start after a crash replays the first.
    pub fn settle_progress(&self) -> (u64, u64) {
        self.shared.db.progress()
    }

    /// How many times sled was reopened while this store ran, and the time that took in all.
    pub fn settled(&self) -> (u64, std::time::Duration) {
        self.shared.db.settled()
    }

    /// Why the store stopped accepting appends, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// One committed entry by position.
    pub fn entry(&self, position: u64) -> Result<Option<Entry>, ReadError> {
        if position >= self.head().len {
            return Ok(None);
        }
        self.shared.read_entry(&*self.shared.db()?, position).map(Some)
    }

    /// Committed entries from `from`, at most `limit`.
    pub fn read_log(&self, from: u64, limit: usize) -> Result<Vec<Entry>, ReadError> {
        check_page(limit)?;
        let end = self.head().len.min(from.saturating_add(limit as u64));
        let db = self.shared.db()?;
        let entries = (from..end).map(|p| read_entry(&db, p)).collect::<Result<Vec<_>, _>>()?;
        self.shared.check_run(&db, &entries.iter().collect::<Vec<_>>())?;
        Ok(entries)
    }

    /// Committed entries of a stream from `from_version`, at most `limit`.
    pub fn read_stream(&self, stream: &StreamId, from_version: u64, limit: usize) -> Result<Vec<Entry>, ReadError> {
        check_page(limit)?;
        let len = self.head().len;
        let db = self.shared.db()?;
        // The index is checked to run without a gap from `from_version`, each value against its
        // entry, and each entry against its predecessor (the first one's through the index).
        let mut prev = match from_version.checked_sub(1) {
            None => Some(chronicle_core::Hash::ZERO),
            Some(v) => {
                db.get(layout::stream_key(stream, v))?.and_then(|v| layout::position_and_hash(&v)).map(|(_, h)| h)
            }
        };
        let mut out = Vec::new();
        for kv in db.range(layout::stream_key(stream, from_version)..=layout::stream_key(stream, u64::MAX)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            let want = from_version + out.len() as u64;
            let (Some(version), Some((position, hash))) =
                (layout::stream_key_version(&k), layout::position_and_hash(&v))
            else {
                return Err(self.shared.damaged(&db, 's', format!("a malformed index entry of stream {stream}")));
            };
            if position >= len {
                self.in_flight(&db, stream, version, position, &hash)?;
                break;
            }
            if version != want {
                return Err(self.shared.damaged(
                    &db,
                    's',
                    format!("the index of stream {stream} lacks version {want}"),
                ));
            }
            let e = self.shared.read_entry(&db, position)?;
            if let Err(reason) = check_indexed(&e, stream, version, &hash) {
                return Err(self.shared.damaged(&db, 's', reason));
            }
            if prev != Some(e.header.prev_stream_hash) {
                let reason =
                    format!("the index of stream {stream} does not lead to version {version} from the one before");
                return Err(self.shared.damaged(&db, 's', reason));
            }
            prev = Some(hash);
            out.push(e);
        }
        if out.len() < limit {
            self.index_reaches_head(&db, stream, from_version + out.len() as u64, len)?;
        }
        Ok(out)
    }

    /// The first version of a stream at or after log position `position` (one past its last
    /// version if it has none there): where a read of the stream from that position starts. A
    /// binary search over the stream index, whose positions grow with the version; each value it
    /// steers by is checked against the entry it names (a changed position would skip entries).
    pub fn stream_version_from(&self, stream: &StreamId, position: u64) -> Result<u64, ReadError> {
        let Some(last) = self.stream_version(stream)? else { return Ok(0) };
        let len = self.head().len;
        let db = self.shared.db()?;
        let (mut lo, mut hi) = (0u64, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some((at, hash)) = db.get(layout::stream_key(stream, mid))?.and_then(|v| layout::position_and_hash(&v))
            else {
                return Err(self.shared.damaged(&db, 's', format!("the index of stream {stream} lacks version {mid}")));
            };
            if at >= len {
                let reason = format!("the index of stream {stream} version {mid} names position {at}, beyond the log");
                return Err(self.shared.damaged(&db, 's', reason));
            }
            if let Err(reason) = check_indexed(&self.shared.read_entry(&db, at)?, stream, mid, &hash) {
                return Err(self.shared.damaged(&db, 's', reason));
            }
            if at < position { lo = mid + 1 } else { hi = mid }
        }
        Ok(lo)
    }

    /// The last committed version of a stream, or `None` if it has no entries.
    pub fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, ReadError> {
        let len = self.head().len;
        let db = self.shared.db()?;
        self.committed_version(&db, stream, len)
    }

    /// Reports derived state found damaged by a reader above the store (one that knows from the
    /// log what the store's index should hold): the store stops accepting appends and rebuilds it
    /// at its next start, as when it finds damage itself. Returns the error to give the reader.
    pub fn report_damage(&self, space: char, reason: String) -> ReadError {
        match self.shared.db() {
            Ok(db) => self.shared.damaged(&db, space, reason),
            Err(e) => ReadError::Storage(e.to_string()),
        }
    }

    /// Whether a reader found derived state damaged since this store was opened: it accepts no
    /// more appends, and the next open rebuilds that state from the log.
    pub fn damage_found(&self) -> bool {
        self.shared.damage_found.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How long this open spent checking derived state against the log (head record, system
    /// streams, cosignatures kept, the tree's tail) and repairing it if it had to.
    pub fn open_checks_took(&self) -> std::time::Duration {
        self.shared.open_checks
    }

    /// What the open repaired, if it found derived state damaged (and rebuilt it from the log).
    pub fn repaired(&self) -> Option<&str> {
        self.shared.repaired.as_deref()
    }

    /// sled, for one operation (see `db` for the rules).
    pub(crate) fn db(&self) -> Result<DbRef<'_>, sled::Error> {
        self.shared.db()
    }

    pub(crate) fn log_dir(&self) -> &Path {
        &self.shared.log_dir
    }

    pub(crate) fn checkpoint_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.shared.checkpoint_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn note_checkpoint_signed(&self) {
        if let Ok(mut t) = self.shared.last_checkpoint.lock() {
            *t = Some(std::time::Instant::now());
        }
    }

    pub(crate) fn since_last_checkpoint(&self) -> Option<std::time::Instant> {
        crate::checkpoint::since(&self.shared.last_checkpoint)
    }

    /// The Merkle tree root of the first `size` entries (`size` at most the committed head).
    pub fn tree_root(&self, size: u64) -> Result<TreeHash, TreeError> {
        self.check_size(size)?;
        self.with_tree(|t| chronicle_tlog::tree::root(size, t))
    }

    /// Runs `f` over the stored tree. Every stored hash it reads is authenticated; one that is
    /// not (or is missing below the committed head) is damage, reported as such.
    fn with_tree<T>(&self, f: impl FnOnce(&SledTree<'_>) -> Result<T, TreeError>) -> Result<T, TreeError> {
        let db = self.db().map_err(storage_tree)?;
        f(&SledTree::new(&db, Some(&self.shared.keys))).map_err(|e| match e {
            TreeError::Storage(reason) => {
                let said = format!("a stored hash is missing or does not authenticate ({reason})");
                TreeError::Storage(self.shared.damaged(&db, 't', said).to_string())
            }
            other => other,
        })
    }

    /// The audit path of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<TreeHash>, TreeError> {
        self.check_size(size)?;
        self.with_tree(|t| chronicle_tlog::tree::inclusion_proof(index, size, t))
    }

    /// The consistency proof from the tree of `first` entries to the tree of `second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<TreeHash>, TreeError> {
        self.check_size(second)?;
        self.with_tree(|t| chronicle_tlog::tree::consistency_proof(first, second, t))
    }

    fn check_size(&self, size: u64) -> Result<(), TreeError> {
        let len = self.head().len;
        if size > len {
            return Err(TreeError::SizeOutOfRange { size, len });
        }
        Ok(())
    }

    /// Catch-up then live delivery of every committed entry from `from`, in order, with no gap
    /// and no duplicate.
    pub fn subscribe(&self, from: u64) -> Subscription {
        Subscription::new(self.clone(), from)
    }

    /// Opens an entry's payload and returns its salt with it (for evidence bundles, whose checkers
    /// match salt and content against the signed commitment).
    pub fn open_payload_with_salt(&self, entry: &Entry) -> Result<([u8; 32], Zeroizing<Vec<u8>>), ReadError> {
        let position = entry.position();
        let plain = match entry.statement.payload_kind {
            PayloadKind::Public => Zeroizing::new(entry.envelope().to_vec()),
            PayloadKind::Sealed => {
                let v = self
                    .shared
                    .db()?
                    .get(layout::entry_key(position))?
                    .ok_or(ReadError::Payload { position, source: chronicle_core::SealError::KeyUnknown })?;
                let wrapped = layout::decode_entry_value(&v)
                    .and_then(|ev| ev.wrapped_key)
                    .and_then(|w| layout::open_wrap(Some(&self.shared.keys), &layout::WrapSite::of(entry), w))
                    .ok_or_else(|| ReadError::Damaged {
                        position,
                        reason: "its wrapped content key is missing or does not authenticate".into(),
                    })?;
                let vault = self.shared.vault.read().map_err(|_| ReadError::Storage("vault lock poisoned".into()))?;
                let cek = vault
                    .unwrap_content_key(position, wrapped)
                    .map_err(|source| ReadError::Payload { position, source })?;
                chronicle_core::payload::aead_open(
                    &cek,
                    &[chronicle_core::hash::DOMAIN_PAYLOAD_AAD, &entry.statement.commitment.0],
                    entry.envelope(),
                )
                .map_err(|source| ReadError::Payload { position, source })?
            }
        };
        if plain.len() < 32 {
            return Err(ReadError::Payload { position, source: chronicle_core::SealError::Short { len: plain.len() } });
        }
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&plain[..32]);
        if !chronicle_core::payload::commitment(&salt, &plain[32..]).ct_eq(&entry.statement.commitment) {
            return Err(ReadError::Payload { position, source: chronicle_core::SealError::CommitmentMismatch });
        }
        Ok((salt, Zeroizing::new(plain[32..].to_vec())))
    }

    /// Opens an entry's payload: checks it against the signed commitment and returns it.
    pub fn open_payload(&self, entry: &Entry) -> Result<Zeroizing<Vec<u8>>, ReadError> {
        let wrapped = match entry.statement.payload_kind {
            PayloadKind::Public => None,
            PayloadKind::Sealed => self.shared.read_entry_and_key(&*self.shared.db()?, entry.position())?.1,
        };
        self.open_with_key(entry, wrapped.as_deref())
    }

    /// One committed entry, read once, with its payload opened (or why it cannot be: a destroyed
    /// key is `ReadError::Payload` with `SealError::KeyDestroyed`). For replaying the log.
    pub fn entry_with_payload(&self, position: u64) -> Result<Option<OpenedEntry>, ReadError> {
        if position >= self.head().len {
            return Ok(None);
        }
        let (entry, wrapped) = self.shared.read_entry_and_key(&*self.shared.db()?, position)?;
        let payload = self.open_with_key(&entry, wrapped.as_deref());
        Ok(Some((entry, payload)))
    }

    /// Committed entries from `from` (at most `limit`), each read once by one sequential scan and
    /// then checked, decoded and opened on all cores, and handed with its opened payload (or why
    /// it cannot be opened) to `f` in the same task (a replay parses it there, rather than in a
    /// second pass over the page). Returns what `f` made of each, in log order.
    pub fn read_log_map<T: Send>(
        &self,
        from: u64,
        limit: usize,
        f: impl Fn(Entry, Result<Zeroizing<Vec<u8>>, ReadError>) -> T + Sync,
    ) -> Result<Vec<T>, ReadError> {
        use rayon::prelude::*;
        let end = self.head().len.min(from.saturating_add(limit as u64));
        if from >= end {
            return Ok(Vec::new());
        }
        // Slices of the range are read (each by one sequential scan) and opened as separate
        // tasks, so that reading sled is spread over the cores too.
        const SLICE: u64 = 256;
        let slices: Vec<(u64, u64)> = (from..end).step_by(SLICE as usize).map(|a| (a, (a + SLICE).min(end))).collect();
        let opened: Vec<Vec<T>> = slices
            .into_par_iter()
            .map(|(a, b)| -> Result<Vec<T>, ReadError> {
                let mut raw = Vec::with_capacity((b - a) as usize);
                {
                    let db = self.shared.db()?;
                    for kv in db.range(layout::entry_key(a)..layout::entry_key(b)) {
                        raw.push(kv?.1);
                    }
                }
                if raw.len() as u64 != b - a {
                    return Err(ReadError::Damaged { position: a + raw.len() as u64, reason: "missing".into() });
                }
                let decoded =
                    (a..b).zip(&raw).map(|(position, v)| decode_stored(position, v)).collect::<Result<Vec<_>, _>>()?;
                let run: Vec<&Entry> = decoded.iter().map(|(e, _)| e).collect();
                self.shared.check_run(&*self.shared.db()?, &run)?;
                decoded
                    .into_iter()
                    .map(|(entry, wrapped)| {
                        let payload = self.open_with_key(&entry, wrapped);
                        Ok(f(entry, payload))
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        let mut all = Vec::with_capacity((end - from) as usize);
        for slice in opened {
            all.extend(slice);
        }
        Ok(all)
    }

    fn open_with_key(&self, entry: &Entry, wrapped: Option<&[u8]>) -> Result<Zeroizing<Vec<u8>>, ReadError> {
        let position = entry.position();
        let st = &entry.statement;
        match st.payload_kind {
            PayloadKind::Public => open_public(&st.commitment, entry.envelope())
                .map(|p| Zeroizing::new(p.to_vec()))
                .map_err(|source| ReadError::Payload { position, source }),
            PayloadKind::Sealed => {
                // Only a destroyed key makes a sealed payload unreadable by right (it was
                // expunged). Any other failure (no wrapped key beside the entry, a key the vault
                // never held, a wrap or payload that does not authenticate) is damage to the log:
                // reported as such, never taken for an expunged entry (a reader that skipped it
                // would serve the record without it, a seal order for one).
                let damaged = |reason: String| ReadError::Damaged { position, reason };
                let wrapped = wrapped
                    .ok_or_else(|| damaged("a sealed entry is stored without its wrapped content key".into()))?;
                let wrapped = layout::open_wrap(Some(&self.shared.keys), &layout::WrapSite::of(entry), wrapped)
                    .ok_or_else(|| damaged("its wrapped content key does not authenticate".into()))?;
                let vault = self.shared.vault.read().map_err(|_| ReadError::Storage("vault lock poisoned".into()))?;
                let cek = match vault.unwrap_content_key(position, wrapped) {
                    Ok(k) => k,
                    Err(source @ chronicle_core::SealError::KeyDestroyed) => {
                        return Err(ReadError::Payload { position, source });
                    }
                    Err(e) => return Err(damaged(format!("its wrapped content key: {e}"))),
                };
                drop(vault);
                open_sealed(&cek, &st.commitment, entry.envelope()).map_err(|e| damaged(format!("its payload: {e}")))
            }
        }
    }
}

/// An entry with its payload opened, or the reason it could not be.
pub type OpenedEntry = (Entry, Result<Zeroizing<Vec<u8>>, ReadError>);

/// Associated data of a sealed projection part: this, then the stream id.
const PROJECTION_AAD: &[u8] = b"chronicle.projection.v2\n";

fn check_page(limit: usize) -> Result<(), ReadError> {
    if limit > READ_PAGE_ENTRIES_MAX {
        return Err(ReadError::PageTooLarge { asked: limit, max: READ_PAGE_ENTRIES_MAX });
    }
    Ok(())
}

fn check_stream_rules(index: usize, stream: &StreamId, st: &chronicle_core::Statement) -> Result<(), AppendError> {
    match stream_rule(stream, st) {
        Some(reason) => Err(AppendError::NotAllowedInStream { index, reason }),
        None => Ok(()),
    }
}

/// What may go in which stream, the one rule for appends and for `verify`: the registry holds
/// registry events, in the clear; the ledger's own stream holds `ledger.` events, in the clear (and
/// only the ledger writes it: see [`ledger_stream_author`]); other system ids are reserved;
/// every other stream holds sealed payloads.
pub(crate) fn stream_rule(stream: &StreamId, st: &chronicle_core::Statement) -> Option<&'static str> {
    let registry_type = RegistryEvent::is_registry_type(&st.event_type);
    let ledger_type = st.event_type.as_str().starts_with(LEDGER_EVENT_PREFIX);
    if *stream == StreamId::REGISTRY {
        if !registry_type {
            Some("the registry stream takes only registry events")
        } else if st.payload_kind != PayloadKind::Public {
            Some("registry payloads must be public")
        } else {
            None
        }
    } else if *stream == StreamId::LEDGER {
        if !ledger_type {
            Some("the ledger's own stream takes only ledger events")
        } else if st.payload_kind != PayloadKind::Public {
            Some("the ledger's own statements are public")
        } else {
            None
        }
    } else if stream.is_system() {
        Some("reserved system stream")
    } else if registry_type || ledger_type {
        Some("registry and ledger events belong in their own streams")
    } else if st.payload_kind != PayloadKind::Sealed {
        Some("record payloads must be sealed")
    } else {
        None
    }
}

/// The prefix of the events of the ledger's own stream.
pub const LEDGER_EVENT_PREFIX: &str = "ledger.";

/// Whether `st`, in the ledger's own stream, is by the ledger principal.
pub(crate) fn ledger_stream_author(registry: &Registry, st: &chronicle_core::Statement) -> bool {
    registry.principal(&st.author).is_some_and(|p| p.role == chronicle_core::Role::Ledger)
}

pub(crate) fn open_sled(dir: &Path) -> Result<sled::Db, OpenError> {
    // sled releases its directory lock only when its last I/O task drops the file, which can be a
    // moment after the previous owner closed it; wait a little for that rather than fail.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let result = sled::Config::new()
            .path(dir)
            .cache_capacity(1024 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            // Every group is flushed and fdatasync'd by the syncer; a background flusher would only
            // compete with it (and hold the directory lock after the store is dropped).
            .flush_every_ms(None)
            .open();
        match result {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(sled::Error::Corruption { .. }) if remove_unfinished_snapshots(dir)? > 0 => {}
            Err(e) => return Err(OpenError::Sled { path: dir.display().to_string(), reason: e.to_string() }),
        }
    }
}

/// Removes the snapshot files sled was still writing when its process died, and says how many.
///
/// sled 0.34 writes its snapshot (at every open) to `snap.<lsn>.generating`, syncs it, then
/// renames it to `snap.<lsn>`, and only after that removes the older snapshot. But when it looks
/// for a snapshot to start from it takes the greatest file name starting with `snap.`, and an
/// unfinished `.generating` file (which sorts after the finished one it was to replace) makes the
/// open fail as corrupt (upstream issue spacejam/sled#1527). A `.generating` file is by
/// construction not yet part of the database; the finished snapshot before it, with the log
/// after it, is what sled recovers from. Called only after sled, holding the directory's lock,
/// reported corruption.
fn remove_unfinished_snapshots(dir: &Path) -> Result<usize, OpenError> {
    let io =
        |e: std::io::Error| OpenError::Io(format!("removing an unfinished sled snapshot in {}: {e}", dir.display()));
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).map_err(io)?;
            removed += 1;
        }
    }
    if removed > 0 {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(removed)
}

/// Reads one entry, checking its bytes against the hash stored beside them right after reading.
pub(crate) fn read_entry(db: &sled::Db, position: u64) -> Result<Entry, ReadError> {
    read_entry_and_key(db, position).map(|(e, _)| e)
}

/// Reads one entry and the wrapped content key stored beside it.
pub(crate) fn read_entry_and_key(db: &sled::Db, position: u64) -> Result<(Entry, Option<Vec<u8>>), ReadError> {
    let v = db
        .get(layout::entry_key(position))?
        .ok_or_else(|| ReadError::Damaged { position, reason: "missing".into() })?;
    decode_stored(position, &v).map(|(e, wrapped)| (e, wrapped.map(<[u8]>::to_vec)))
}

/// Checks a stored `e` value right after reading it and decodes the entry in it.
pub(crate) fn decode_stored(position: u64, v: &[u8]) -> Result<(Entry, Option<&[u8]>), ReadError> {
    let ev = layout::decode_entry_value(v)
        .ok_or_else(|| ReadError::Damaged { position, reason: "malformed stored value".into() })?;
    let (bytes, stored) = (ev.bytes, ev.hash);
    if chronicle_core::Hash::entry(bytes) != stored {
        return Err(ReadError::Damaged { position, reason: "bytes do not match their stored hash".into() });
    }
    let e = Entry::decode(bytes.to_vec()).map_err(|source| ReadError::Decode { position, source })?;
    if e.position() != position {
        return Err(ReadError::Damaged { position, reason: format!("holds position {}", e.position()) });
    }
    Ok((e, ev.wrapped_key))
}

fn storage_tree(e: sled::Error) -> TreeError {
    TreeError::Storage(e.to_string())
}
