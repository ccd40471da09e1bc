//! sled's handle, which a running store closes and opens again now and then to bound the time a
//! restart after a crash takes.
//!
//! sled 0.34 writes the snapshot of its page table only when it opens, and an open replays its
//! log from the last snapshot. A store that stays open while millions of entries are appended
//! would, after a crash, replay all of them before it could serve (seconds per million). So sled
//! is reopened in place once enough was written since the last open (see [`settle_interval`]):
//! by the writer thread between two groups, and by the records service after it persists its
//! projection (through `Store::settle_if_due`), since those writes count too. A reopen takes the
//! handle's write lock (every read and every other writer of sled holds the read lock only while
//! it uses sled), flushes, closes, and opens again, which writes a fresh snapshot. Appends and
//! reads wait for it; nothing is refused.
//!
//! Rules for code using the handle: take a [`DbRef`] once per operation and pass `&DbRef` down
//! (never take a second one while holding one: a waiting reopen blocks new readers, so a nested
//! read would deadlock), take it before the vault's lock and never while holding the vault's lock,
//! and never let a sled iterator outlive the `DbRef` it came from.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::error::OpenError;

/// Fewest bytes written to sled between two reopens.
pub(crate) const SETTLE_BYTES_MIN: u64 = 128 << 20;
/// A reopen costs more as the data grows (sled reads every segment's header and the snapshot), so
/// the interval grows with it too: after a crash at most about this fraction of the data's size is
/// replayed, and reopens take a bounded share of the time spent writing. (Measured at 1M entries,
/// 4.4 GB: a reopen takes about 1.2 s; a start after a crash with 138 MiB to replay was ready in
/// 4.2 s, the store's part of it 1.0 s.)
pub(crate) const SETTLE_SIZE_FRACTION: u64 = 32;

/// The interval for a database of `size` bytes on disk.
/// How long a flush of sled may take before it is given up on (see [`flush_within`]).
pub(crate) const FLUSH_LIMIT: Duration = Duration::from_secs(20);

/// Flushes sled on a thread of its own, and gives up after `limit`: sled 0.34 can wait forever in
/// a flush after one of its background writes failed (it records the error but never wakes the
/// flush). A flush that does not return is an error to the caller, never a hang. For the rare
/// paths (checkpoints, projection markers, re-keying); the writer's syncer keeps its own thread.
pub(crate) fn flush_within(db: &sled::Db, limit: Duration) -> Result<(), String> {
    let db = db.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("chronicle-flush-once".into())
        .spawn(move || {
            let _ = tx.send(db.flush().map(|_| ()).map_err(|e| e.to_string()));
        })
        .map_err(|e| format!("starting a flush: {e}"))?;
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => Err(format!("flushing the log did not finish within {} s", limit.as_secs())),
    }
}

pub(crate) fn settle_interval(size: u64) -> u64 {
    SETTLE_BYTES_MIN.max(size / SETTLE_SIZE_FRACTION)
}

/// The sled handle; `None` only if a reopen failed (the store has then failed too).
pub(crate) struct DbCell {
    db: RwLock<Option<sled::Db>>,
    dir: PathBuf,
    /// About how many bytes were written to sled since it was last opened.
    written: AtomicU64,
    /// Reopen once `written` reaches this (0: `settle_interval` of the size at the last open).
    every: AtomicU64,
    /// The interval the policy chose at the last open.
    interval: AtomicU64,
    /// How many reopens there were, and the time they took in all.
    settled: Mutex<(u64, Duration)>,
}

/// Access to sled for one operation. Holds the handle's read lock.
pub(crate) struct DbRef<'a> {
    db: sled::Db,
    _guard: RwLockReadGuard<'a, Option<sled::Db>>,
}

impl Deref for DbRef<'_> {
    type Target = sled::Db;
    fn deref(&self) -> &sled::Db {
        &self.db
    }
}

impl DbCell {
    pub(crate) fn new(db: sled::Db, dir: &Path) -> DbCell {
        let interval = AtomicU64::new(settle_interval(db.size_on_disk().unwrap_or(0)));
        DbCell {
            db: RwLock::new(Some(db)),
            dir: dir.to_path_buf(),
            written: AtomicU64::new(0),
            every: AtomicU64::new(0),
            interval,
            settled: Mutex::new((0, Duration::ZERO)),
        }
    }

    /// Notes that about `bytes` were written to sled.
    pub(crate) fn wrote(&self, bytes: u64) {
        self.written.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Sets the interval between reopens in bytes written (`None`: the default policy).
    pub(crate) fn set_every(&self, bytes: Option<u64>) {
        self.every.store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// Bytes written since the last open, and the interval.
    pub(crate) fn progress(&self) -> (u64, u64) {
        let every = match self.every.load(Ordering::Relaxed) {
            0 => self.interval.load(Ordering::Relaxed),
            n => n,
        };
        (self.written.load(Ordering::Relaxed), every)
    }

    fn due(&self) -> bool {
        let (written, every) = self.progress();
        written >= every
    }

    /// How many reopens there were while running, and the time they took in all.
    pub(crate) fn settled(&self) -> (u64, Duration) {
        self.settled.lock().map(|s| *s).unwrap_or_default()
    }

    /// Reopens sled if enough was written since it was last opened. The caller must not hold a
    /// [`DbRef`]. Returns an error only if sled could not be opened again.
    pub(crate) fn settle_if_due(&self) -> Result<(), String> {
        if !self.due() {
            return Ok(());
        }
        self.reopen().map(|_| ())
    }

    /// The handle, for one operation.
    pub(crate) fn get(&self) -> Result<DbRef<'_>, sled::Error> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(db) => Ok(DbRef { db: db.clone(), _guard: guard }),
            None => Err(sled::Error::Io(std::io::Error::other("the store's sled handle is closed"))),
        }
    }

    /// Flushes, closes and opens sled again (which writes its snapshot). Waits for every
    /// operation in progress to finish first. Returns how long it took.
    pub(crate) fn reopen(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let mut guard = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have reopened it while this one waited for the lock.
        if self.written.load(Ordering::Relaxed) == 0 {
            return Ok(started.elapsed());
        }
        let Some(db) = guard.take() else { return Err("the store's sled handle is closed".into()) };
        if let Err(e) = flush_within(&db, FLUSH_LIMIT) {
            *guard = Some(db);
            return Err(format!("flushing sled before reopening it: {e}"));
        }
        drop(db);
        match crate::store::open_sled(&self.dir) {
            Ok(db) => {
                self.interval.store(settle_interval(db.size_on_disk().unwrap_or(0)), Ordering::Relaxed);
                self.written.store(0, Ordering::Relaxed);
                *guard = Some(db);
                let took = started.elapsed();
                if let Ok(mut s) = self.settled.lock() {
                    s.0 += 1;
                    s.1 += took;
                }
                Ok(took)
            }
            Err(e) => Err(match e {
                OpenError::Sled { reason, .. } => format!("reopening sled: {reason}"),
                other => format!("reopening sled: {other}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopens_grow_apart_with_the_data() {
        assert_eq!(settle_interval(0), SETTLE_BYTES_MIN);
        assert_eq!(settle_interval(32 * SETTLE_BYTES_MIN), SETTLE_BYTES_MIN);
        assert_eq!(settle_interval(320 * SETTLE_BYTES_MIN), 10 * SETTLE_BYTES_MIN);
    }

    #[test]
    fn a_reopen_is_due_after_the_interval_and_keeps_what_was_written() {
        let tmp = tempfile::tempdir().unwrap();
        let cell = DbCell::new(crate::store::open_sled(tmp.path()).unwrap(), tmp.path());
        cell.set_every(Some(100));
        cell.get().unwrap().insert(b"k", b"v").unwrap();
        cell.wrote(99);
        cell.settle_if_due().unwrap();
        assert_eq!(cell.settled().0, 0);
        cell.wrote(1);
        cell.settle_if_due().unwrap();
        assert_eq!(cell.settled().0, 1);
        assert_eq!(cell.get().unwrap().get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        // Nothing written since: a second reopen is not due, and one asked for does nothing.
        cell.settle_if_due().unwrap();
        cell.reopen().unwrap();
        assert_eq!(cell.settled().0, 1);
    }
}
