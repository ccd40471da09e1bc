//! Where the records projection is persisted: a snapshot file written whole, and an overlay of
//! the parts changed since, in sled.
//!
//! The store does not know what a part holds: each is one stream's share of the projection,
//! sealed under that stream's data key by [`Store::seal_for_streams`], so that destroying the key
//! makes the part unreadable together with the stream's entries.
//!
//! - A **snapshot** is every part of a projection replayed from zero, written once, in stream id
//!   order, to one file `projection/<generation>.snap` beside the log. Writing 250 MB to a file
//!   sequentially takes a fraction of a second; the same parts as sled keys took seconds.
//! - The **overlay** holds what the persists after it write: sled keys `r ‖ generation ‖ stream id`,
//!   each the stream's newer part, or empty when the stream has no part any more (an expunged
//!   subject or case: its part in the snapshot is then never opened).
//! - The **marker** `mprojection` = `next position ‖ generation ‖ MAC` says which generation is
//!   the projection and the log position it reaches; `mprojection-snapshot` = `generation ‖ length
//!   ‖ parts ‖ BLAKE3 of the file` binds the snapshot file to it. Generation 0 is the empty
//!   snapshot, with no file.
//! - The marker's **MAC** (under a key derived from the master key) covers its fields, the
//!   snapshot record, and a digest of the overlay: the XOR of a keyed hash of each overlay key's
//!   stream and value. The digest itself is never stored (only inside the MAC), so nobody without
//!   the key learns anything that would let them find two overlays with one digest. A load
//!   recomputes it from what it reads: an overlay key deleted, swapped with another, or put back
//!   to an earlier value makes the load fail, and the log is replayed instead. A persist over the
//!   overlay updates it from the values it replaces (read just before), starting from the digest
//!   the last load or write established.
//!
//! A new snapshot takes the next generation, so the projection persisted before (its file, its
//! overlay) is untouched until one sled batch switches the marker over: a crash at any point
//! leaves one whole projection or the other, never a mix. The earlier generation's file is then
//! deleted, and its overlay keys are removed a batch at a time by later persists
//! ([`Store::sweep_projection`]); they are never read, since a load reads only the marker's
//! generation. An overlay write of more than one batch removes the marker first and writes it
//! last, so a crash in between leaves no projection (the next open replays the log).
//!
//! Loading checks the marker's MAC, the file's length and hash against its record, and refuses
//! anything that does not match: the caller then replays the log, which is always right.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chronicle_core::{Hash, StreamId};

use crate::auth::{self, IntegrityKeys, MAC_LEN};
use crate::error::ReadError;
use crate::store::Store;

/// Most projection parts written or removed in one sled batch.
pub const PROJECTION_BATCH: usize = 8192;
/// The overlay's keys: this, the generation (u64 BE), the stream id.
const OVERLAY: u8 = b'r';
const MARKER: &[u8] = b"mprojection";
const SNAPSHOT: &[u8] = b"mprojection-snapshot";
/// First bytes of a snapshot file, then the generation (u64 BE), then the parts.
const FILE_MAGIC: &[u8] = b"chronicle.projection-snapshot.v1\n";

/// A persisted projection, as [`Store::read_projection`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistedProjection {
    /// The log position it reaches.
    pub next: u64,
    /// One sealed part per stream, in stream id order.
    pub parts: Vec<(StreamId, Vec<u8>)>,
    /// What it was made of.
    pub shape: ProjectionShape,
}

/// The snapshot a generation's overlay lies over, as `mprojection-snapshot` records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Snapshot {
    generation: u64,
    bytes: u64,
    parts: u64,
    hash: [u8; 32],
}

impl Snapshot {
    fn encode(&self) -> [u8; 56] {
        let mut out = [0u8; 56];
        out[..8].copy_from_slice(&self.generation.to_be_bytes());
        out[8..16].copy_from_slice(&self.bytes.to_be_bytes());
        out[16..24].copy_from_slice(&self.parts.to_be_bytes());
        out[24..].copy_from_slice(&self.hash);
        out
    }

    fn decode(v: &[u8]) -> Option<Snapshot> {
        let v: &[u8; 56] = v.try_into().ok()?;
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(v[r].try_into().unwrap_or_default());
        Some(Snapshot { generation: u(0..8), bytes: u(8..16), parts: u(16..24), hash: v[24..].try_into().ok()? })
    }
}

/// What a persisted projection is made of, for deciding when to write a new snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProjectionShape {
    /// Parts in the snapshot file.
    pub snapshot_parts: u64,
    /// Keys in the overlay (newer parts and removals).
    pub overlay: u64,
}

/// The overlay's digest: XOR of each key's share ([`IntegrityKeys::projection_part`]).
type Digest = [u8; 32];

/// A stored marker: position, generation, and the MAC over them, the snapshot record, the
/// overlay's digest and the hash of the log's entry before the position.
fn marker(
    keys: &IntegrityKeys,
    next: u64,
    generation: u64,
    snapshot: &Snapshot,
    overlay: &Digest,
    log: &Hash,
) -> [u8; 48] {
    let mut m = [0u8; 48];
    m[..8].copy_from_slice(&next.to_be_bytes());
    m[8..16].copy_from_slice(&generation.to_be_bytes());
    let mac = keys.projection_marker(&marker_fields(&m[..16], snapshot, log), overlay);
    m[16..].copy_from_slice(&mac);
    m
}

fn marker_fields(head: &[u8], snapshot: &Snapshot, log: &Hash) -> Vec<u8> {
    let mut f = head.to_vec();
    f.extend_from_slice(&snapshot.encode());
    f.extend_from_slice(&log.0);
    f
}

/// Whether a stored marker authenticates the snapshot record, the overlay digest and the log it
/// was written over (`log`: the hash of the entry before the marker's position, in the log as it
/// is now). A projection persisted over a history since discarded (a rollback an operator
/// accepted) names a position whose entry is another: it does not authenticate.
fn marker_authenticates(keys: &IntegrityKeys, m: &[u8], snapshot: &Snapshot, overlay: &Digest, log: &Hash) -> bool {
    m.len() == 16 + MAC_LEN
        && auth::same(&keys.projection_marker(&marker_fields(&m[..16], snapshot, log), overlay), &m[16..])
}

/// The hash of the log's entry before `next` (zero for none): what a marker at `next` is bound to.
fn log_hash_before(db: &sled::Db, next: u64) -> Result<Hash, ReadError> {
    match next.checked_sub(1) {
        None => Ok(Hash::ZERO),
        Some(p) => crate::store::read_entry(db, p).map(|e| e.hash()),
    }
}

fn overlay_prefix(generation: u64) -> [u8; 9] {
    let mut k = [OVERLAY; 9];
    k[1..].copy_from_slice(&generation.to_be_bytes());
    k
}

fn overlay_key(generation: u64, s: &StreamId) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..9].copy_from_slice(&overlay_prefix(generation));
    k[9..].copy_from_slice(&s.0);
    k
}

fn snapshot_file(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:016x}.snap"))
}

fn storage(what: &str) -> impl Fn(std::io::Error) -> ReadError + '_ {
    move |e| ReadError::Storage(format!("{what}: {e}"))
}

fn damaged(why: String) -> ReadError {
    ReadError::Storage(format!("persisted projection: {why}"))
}

fn unauthenticated() -> ReadError {
    ReadError::Derived {
        space: 'r',
        reason: "the persisted projection's marker does not authenticate its snapshot record and overlay".into(),
    }
}

impl Store {
    fn projection_dir(&self) -> &Path {
        &self.shared.projection_dir
    }

    fn snapshot(&self) -> Result<Snapshot, ReadError> {
        match self.shared.db()?.get(SNAPSHOT)? {
            None => Ok(Snapshot::default()),
            Some(v) => Snapshot::decode(&v).ok_or_else(|| damaged("malformed snapshot record".into())),
        }
    }

    /// The position and generation the marker names, and the stored marker, if a projection is
    /// persisted. A marker of another shape counts as none: the projection is replayed again.
    fn marker(&self) -> Result<Option<(u64, u64, Vec<u8>)>, ReadError> {
        let Some(m) = self.shared.db()?.get(MARKER)? else { return Ok(None) };
        if m.len() != 16 + MAC_LEN {
            return Ok(None);
        }
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(m[r].try_into().unwrap_or_default());
        Ok(Some((u(0..8), u(8..16), m.to_vec())))
    }

    /// The digest of `generation`'s overlay as the last load or write established it; if none
    /// did in this process, recomputed from the overlay and checked against the marker (an
    /// overlay write never builds on a digest it has not authenticated).
    fn overlay_digest(&self, generation: u64) -> Result<Digest, ReadError> {
        if let Some((g, d)) = *self.shared.projection_digest.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            && g == generation
        {
            return Ok(d);
        }
        let snapshot = self.snapshot()?;
        let Some((next, marked, m)) = self.marker()? else {
            // Nothing persisted: an overlay may be started only on an empty one (keys left there
            // by a write that never finished are not authenticated by anything, and a new marker
            // must not vouch for them; a whole write starts a clean generation instead).
            if self.shared.db()?.scan_prefix(overlay_prefix(generation)).next().is_some() {
                return Err(damaged("an unfinished overlay without a marker: write the projection whole".into()));
            }
            self.set_overlay_digest(generation, [0; 32]);
            return Ok([0; 32]);
        };
        if marked != generation || snapshot.generation != generation {
            return Err(damaged("the marker names another generation".into()));
        }
        let keys = &self.shared.keys;
        let mut d = [0u8; 32];
        for kv in self.shared.db()?.scan_prefix(overlay_prefix(generation)) {
            let (k, v) = kv?;
            let id: [u8; 16] = k[9..].try_into().map_err(|_| damaged("malformed overlay key".into()))?;
            crate::auth::xor_into(&mut d, &keys.projection_part(&StreamId(id), &v));
        }
        let log = log_hash_before(&*self.shared.db()?, next)?;
        if !marker_authenticates(keys, &m, &snapshot, &d, &log) {
            return Err(unauthenticated());
        }
        self.set_overlay_digest(generation, d);
        Ok(d)
    }

    fn set_overlay_digest(&self, generation: u64, d: Digest) {
        *self.shared.projection_digest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((generation, d));
    }

    /// Applies one batch of overlay changes to the digest `d`: each changed stream's old share
    /// (of the value it replaces, read now) out, its new share in.
    fn overlay_changes(
        &self,
        generation: u64,
        blobs: &[(StreamId, Vec<u8>)],
        removed: &[StreamId],
        d: &mut Digest,
    ) -> Result<(), ReadError> {
        let keys = &self.shared.keys;
        let db = self.shared.db()?;
        let mut seen = std::collections::HashSet::with_capacity(blobs.len() + removed.len());
        for (s, new) in blobs.iter().map(|(s, b)| (s, &b[..])).chain(removed.iter().map(|s| (s, &[][..]))) {
            if !seen.insert(*s) {
                return Err(damaged(format!("stream {s} written twice in one batch")));
            }
            if let Some(old) = db.get(overlay_key(generation, s))? {
                crate::auth::xor_into(d, &keys.projection_part(s, &old));
            }
            crate::auth::xor_into(d, &keys.projection_part(s, new));
        }
        Ok(())
    }

    /// The log position the persisted projection reaches, if one is persisted.
    pub fn projection_marker(&self) -> Result<Option<u64>, ReadError> {
        Ok(self.marker()?.map(|(next, _, _)| next))
    }

    /// Writes parts changed since the last persist (sealed with [`Store::seal_for_streams`]) into
    /// the overlay, removes the parts of `removed`, and moves the marker to `next_position`.
    /// Derived data: not synced, a crash just means replaying more.
    ///
    /// Up to [`PROJECTION_BATCH`] changes are written atomically with the marker in one sled
    /// batch; more go through [`Store::begin_projection_write`].
    pub fn write_projection(
        &self,
        blobs: Vec<(StreamId, Vec<u8>)>,
        removed: Vec<StreamId>,
        next_position: u64,
    ) -> Result<(), ReadError> {
        if blobs.len() + removed.len() <= PROJECTION_BATCH {
            let snapshot = self.snapshot()?;
            let generation = snapshot.generation;
            let mut d = self.overlay_digest(generation)?;
            self.overlay_changes(generation, &blobs, &removed, &mut d)?;
            let bytes: u64 = blobs.iter().map(|(_, b)| 25 + b.len() as u64).sum();
            let mut batch = overlay_batch(generation, blobs, removed);
            let log = log_hash_before(&*self.shared.db()?, next_position)?;
            batch.insert(MARKER, &marker(&self.shared.keys, next_position, generation, &snapshot, &d, &log)[..]);
            self.shared.db()?.apply_batch(batch)?;
            self.set_overlay_digest(generation, d);
            // Counts towards the next reopen of sled; see [`Store::settle_if_due`].
            self.shared.db.wrote(bytes);
            return Ok(());
        }
        let mut w = self.begin_projection_write(false)?;
        let mut blobs = blobs.into_iter().peekable();
        let mut removed = removed.into_iter().peekable();
        while blobs.peek().is_some() || removed.peek().is_some() {
            let b: Vec<_> = blobs.by_ref().take(PROJECTION_BATCH).collect();
            let r: Vec<_> = removed.by_ref().take(PROJECTION_BATCH - b.len()).collect();
            w.write(b, r)?;
        }
        w.finish(next_position)
    }

    /// Starts a persist of projection parts written a batch at a time.
    ///
    /// Without `whole`, the parts go into the overlay: the marker is removed first, so that until
    /// [`ProjectionWrite::finish`] writes it again no projection is persisted at all and an open
    /// in between replays the log, never loads a mix of two positions. sled applies a batch one
    /// key at a time under its write lock, and one batch of hundreds of thousands of parts costs
    /// far more per part than batches of a few thousand: at most [`PROJECTION_BATCH`] per batch.
    ///
    /// With `whole`, the parts written are the whole projection, in stream id order: they go to a
    /// new snapshot file, and the projection persisted before stays whole and in force until
    /// `finish` switches the marker over to the new one.
    pub fn begin_projection_write(&self, whole: bool) -> Result<ProjectionWrite<'_>, ReadError> {
        if !whole {
            let generation = self.snapshot()?.generation;
            // Established (and authenticated) before the marker goes.
            let digest = self.overlay_digest(generation)?;
            self.shared.db()?.remove(MARKER)?;
            return Ok(ProjectionWrite { store: self, generation, file: None, digest });
        }
        let generation = match self.snapshot() {
            Ok(s) => s.generation,
            // A damaged record cannot say which generations exist: everything persisted is
            // dropped, and the new snapshot starts them again.
            Err(_) => {
                self.clear_projection()?;
                0
            }
        };
        let generation = generation
            .checked_add(1)
            .ok_or_else(|| damaged("no generation is left after the snapshot record's".into()))?;
        let dir = self.projection_dir();
        std::fs::create_dir_all(dir).map_err(storage("creating the projection directory"))?;
        let path = dir.join(format!("{generation:016x}.snap.partial"));
        let f = File::create(&path).map_err(storage("creating a projection snapshot"))?;
        let mut file = SnapshotFile {
            out: BufWriter::with_capacity(1 << 20, f),
            path,
            hash: blake3::Hasher::new(),
            bytes: 0,
            parts: 0,
            last: None,
        };
        file.put(FILE_MAGIC)?;
        file.put(&generation.to_be_bytes())?;
        Ok(ProjectionWrite { store: self, generation, file: Some(file), digest: [0; 32] })
    }

    /// What the persisted projection is made of (both counts 0 if none is persisted).
    pub fn projection_shape(&self) -> Result<ProjectionShape, ReadError> {
        let Some((_, generation, _)) = self.marker()? else { return Ok(ProjectionShape::default()) };
        let snapshot = self.snapshot()?;
        let overlay = self.shared.db()?.scan_prefix(overlay_prefix(generation)).keys().count() as u64;
        Ok(ProjectionShape { snapshot_parts: snapshot.parts, overlay })
    }

    /// The persisted projection: the position it reaches and every part (the snapshot's, with the
    /// overlay's in their place). An error if what the marker names is missing or damaged.
    pub fn read_projection(&self) -> Result<Option<PersistedProjection>, ReadError> {
        let Some((next, generation, stored_marker)) = self.marker()? else { return Ok(None) };
        let snapshot = self.snapshot()?;
        if snapshot.generation != generation {
            return Err(damaged(format!(
                "the marker names generation {generation}, the snapshot record {}",
                snapshot.generation
            )));
        }
        // The file and the overlay are independent reads: side by side.
        let (file, overlay) = rayon::join(
            || read_snapshot(self.projection_dir(), &snapshot),
            || -> Result<Vec<(StreamId, Vec<u8>)>, ReadError> {
                let mut out = Vec::new();
                for kv in self.shared.db()?.scan_prefix(overlay_prefix(generation)) {
                    let (k, v) = kv?;
                    let id: [u8; 16] = k[9..].try_into().map_err(|_| damaged("malformed overlay key".into()))?;
                    out.push((StreamId(id), v.to_vec()));
                }
                Ok(out)
            },
        );
        let (file, overlay) = (file?, overlay?);
        // The overlay as read, and the snapshot record, must be what the marker authenticates.
        let keys = &self.shared.keys;
        let mut d = [0u8; 32];
        for (s, v) in &overlay {
            crate::auth::xor_into(&mut d, &keys.projection_part(s, v));
        }
        let log = log_hash_before(&*self.shared.db()?, next)?;
        if !marker_authenticates(keys, &stored_marker, &snapshot, &d, &log) {
            return Err(unauthenticated());
        }
        self.set_overlay_digest(generation, d);
        let shape = ProjectionShape { snapshot_parts: file.len() as u64, overlay: overlay.len() as u64 };
        // Both in stream id order: merged in one pass, the overlay's part (or its removal) winning.
        let mut parts = Vec::with_capacity(file.len() + overlay.len());
        let (mut file, mut overlay) = (file.into_iter().peekable(), overlay.into_iter().peekable());
        loop {
            let order = match (file.peek(), overlay.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((f, _)), Some((o, _))) => f.cmp(o),
            };
            if order == std::cmp::Ordering::Equal {
                // The overlay's part (or removal) replaces the snapshot's.
                file.next();
            }
            let from_overlay = order != std::cmp::Ordering::Less;
            let next_part = if from_overlay { overlay.next() } else { file.next() };
            if let Some((s, blob)) = next_part.filter(|(_, b)| !b.is_empty()) {
                parts.push((s, blob));
            }
        }
        Ok(Some(PersistedProjection { next, parts, shape }))
    }

    /// Removes up to `limit` leftovers of earlier generations (overlay keys, and keys in the
    /// overlay's space of no valid shape), and snapshot files other than the current one.
    /// Returns how many keys were removed; fewer than `limit` means none are left. Not to be
    /// called while a whole write is under way (it would remove its unfinished file): the
    /// records service runs both under one lock.
    pub fn sweep_projection(&self, limit: usize) -> Result<usize, ReadError> {
        let generation = self.snapshot()?.generation;
        let live = overlay_prefix(generation);
        let db = self.shared.db()?;
        let mut stale = Vec::new();
        // Everything under the overlay's prefix except the live generation: below it, then above.
        // (A key of a wrong shape inside the live generation makes the load fail, and the
        // replayed projection is then written as a new generation, leaving it behind.)
        let below = db.range(&[OVERLAY][..]..&live[..]).keys();
        let above = generation.checked_add(1).map(|g| db.range(&overlay_prefix(g)[..]..).keys());
        for k in below.chain(above.into_iter().flatten()) {
            let k = k?;
            if k.first() != Some(&OVERLAY) || stale.len() >= limit {
                break;
            }
            stale.push(k);
        }
        let removed = stale.len();
        for chunk in stale.chunks(PROJECTION_BATCH) {
            let mut batch = sled::Batch::default();
            for k in chunk {
                batch.remove(k.clone());
            }
            db.apply_batch(batch)?;
        }
        drop(db);
        self.remove_other_snapshots(Some(generation))?;
        Ok(removed)
    }

    /// Removes every file of the projection directory but `keep`'s snapshot (all with `None`):
    /// earlier snapshots, and unfinished ones.
    fn remove_other_snapshots(&self, keep: Option<u64>) -> Result<(), ReadError> {
        let Ok(entries) = std::fs::read_dir(self.projection_dir()) else { return Ok(()) };
        let keep = keep.map(|g| format!("{g:016x}.snap"));
        for e in entries {
            let e = e.map_err(storage("listing the projection directory"))?;
            if e.file_name().to_str() != keep.as_deref() {
                std::fs::remove_file(e.path()).map_err(storage("removing an old projection snapshot"))?;
            }
        }
        Ok(())
    }

    /// Drops the persisted projection (the next open replays the whole log): the marker first,
    /// then the snapshot record and files, then every overlay key, [`PROJECTION_BATCH`] at a time.
    pub fn clear_projection(&self) -> Result<(), ReadError> {
        *self.shared.projection_digest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        let db = self.shared.db()?;
        db.remove(MARKER)?;
        db.remove(SNAPSHOT)?;
        drop(db);
        self.remove_other_snapshots(None)?;
        let db = self.shared.db()?;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for k in db.scan_prefix([OVERLAY]).keys().take(PROJECTION_BATCH) {
                batch.remove(k?);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            db.apply_batch(batch)?;
        }
    }
}

/// A snapshot file being written.
struct SnapshotFile {
    out: BufWriter<File>,
    path: PathBuf,
    hash: blake3::Hasher,
    bytes: u64,
    parts: u64,
    last: Option<StreamId>,
}

impl SnapshotFile {
    fn put(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        self.out.write_all(bytes).map_err(storage("writing the projection snapshot"))?;
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

/// A persist of projection parts in several batches, from [`Store::begin_projection_write`].
pub struct ProjectionWrite<'s> {
    store: &'s Store,
    generation: u64,
    /// With `whole`: the new snapshot.
    file: Option<SnapshotFile>,
    /// The digest of the overlay as written so far.
    digest: Digest,
}

impl ProjectionWrite<'_> {
    /// Writes one batch (at most [`PROJECTION_BATCH`] changes, or the call is refused): the
    /// sealed parts of `blobs`, and the removal of the parts of `removed`. A whole write takes
    /// the parts in stream id order, each stream once, and has nothing to remove.
    pub fn write(&mut self, blobs: Vec<(StreamId, Vec<u8>)>, removed: Vec<StreamId>) -> Result<(), ReadError> {
        if blobs.len() + removed.len() > PROJECTION_BATCH {
            return Err(ReadError::Storage(format!(
                "{} projection changes in one batch, more than {PROJECTION_BATCH}",
                blobs.len() + removed.len()
            )));
        }
        let Some(file) = self.file.as_mut() else {
            self.store.overlay_changes(self.generation, &blobs, &removed, &mut self.digest)?;
            let bytes: u64 = blobs.iter().map(|(_, b)| 25 + b.len() as u64).sum();
            self.store.shared.db()?.apply_batch(overlay_batch(self.generation, blobs, removed))?;
            self.store.shared.db.wrote(bytes);
            return Ok(());
        };
        if !removed.is_empty() {
            return Err(ReadError::Storage("a whole projection removes nothing: it leaves parts out".into()));
        }
        // The batch is laid out in one buffer first: hashing large inputs runs on several
        // chunks at once, small pieces one block at a time.
        let mut buf = Vec::with_capacity(blobs.iter().map(|(_, b)| 20 + b.len()).sum());
        let mut last = file.last;
        for (s, blob) in &blobs {
            if last.is_some_and(|last| last >= *s) {
                return Err(ReadError::Storage("whole projection parts out of stream id order".into()));
            }
            let len = u32::try_from(blob.len()).map_err(|_| ReadError::Storage("projection part too large".into()))?;
            buf.extend_from_slice(&s.0);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(blob);
            last = Some(*s);
        }
        let n = blobs.len() as u64;
        drop(blobs);
        file.put(&buf)?;
        file.parts += n;
        file.last = last;
        Ok(())
    }

    /// Writes the marker: the position the parts reach. A whole write first makes its file
    /// durable and then, in one sled batch, records it and points the marker at it; then it
    /// deletes earlier snapshot files (their overlay keys go later, see
    /// [`Store::sweep_projection`]).
    pub fn finish(self, next_position: u64) -> Result<(), ReadError> {
        let keys = &self.store.shared.keys;
        let log = log_hash_before(&*self.store.shared.db()?, next_position)?;
        let Some(file) = self.file else {
            let snapshot = self.store.snapshot()?;
            let m = marker(keys, next_position, self.generation, &snapshot, &self.digest, &log);
            self.store.shared.db()?.insert(MARKER, &m[..])?;
            self.store.set_overlay_digest(self.generation, self.digest);
            return Ok(());
        };
        let SnapshotFile { out, path, hash, bytes, parts, .. } = file;
        let f = out.into_inner().map_err(|e| storage("writing the projection snapshot")(e.into_error()))?;
        // Durable before the marker names it: after a power cut the projection is still there
        // (and if it were not, its hash would say so, and the log would be replayed).
        f.sync_data().map_err(storage("syncing the projection snapshot"))?;
        drop(f);
        let dir = self.store.projection_dir();
        let fin = snapshot_file(dir, self.generation);
        std::fs::rename(&path, &fin).map_err(storage("naming the projection snapshot"))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(storage("syncing the projection directory"))?;
        let snapshot = Snapshot { generation: self.generation, bytes, parts, hash: *hash.finalize().as_bytes() };
        let mut batch = sled::Batch::default();
        batch.insert(SNAPSHOT, &snapshot.encode()[..]);
        // A new generation's overlay is empty: its digest is zero.
        batch.insert(MARKER, &marker(keys, next_position, self.generation, &snapshot, &[0; 32], &log)[..]);
        self.store.shared.db()?.apply_batch(batch)?;
        self.store.set_overlay_digest(self.generation, [0; 32]);
        // The marker must be durable before the earlier snapshot goes: until then, a crash
        // comes back to the earlier marker, which names that file.
        crate::db::flush_within(&*self.store.shared.db()?, crate::db::FLUSH_LIMIT).map_err(ReadError::Storage)?;
        self.store.remove_other_snapshots(Some(self.generation))
    }
}

/// Reads and checks a snapshot file against its record: length, hash, generation, and parts
/// in strictly increasing stream id order.
fn read_snapshot(dir: &Path, snapshot: &Snapshot) -> Result<Vec<(StreamId, Vec<u8>)>, ReadError> {
    if snapshot.generation == 0 {
        return Ok(Vec::new());
    }
    let path = snapshot_file(dir, snapshot.generation);
    let mut f = File::open(&path).map_err(storage("opening the projection snapshot"))?;
    let len = f.metadata().map_err(storage("reading the projection snapshot"))?.len();
    if len != snapshot.bytes {
        return Err(damaged(format!("snapshot file is {len} bytes, its record says {}", snapshot.bytes)));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).map_err(|_| damaged("snapshot too large".into()))?);
    f.read_to_end(&mut buf).map_err(storage("reading the projection snapshot"))?;
    let hashed = blake3::Hasher::new().update_rayon(&buf).finalize();
    if *hashed.as_bytes() != snapshot.hash {
        return Err(damaged("snapshot file does not match its hash".into()));
    }
    let mut rest = buf
        .strip_prefix(FILE_MAGIC)
        .and_then(|r| r.strip_prefix(&snapshot.generation.to_be_bytes()[..]))
        .ok_or_else(|| damaged("snapshot file has the wrong header".into()))?;
    let mut parts: Vec<(StreamId, Vec<u8>)> = Vec::with_capacity(snapshot.parts.min(1 << 24) as usize);
    while !rest.is_empty() {
        let (id, after) = rest.split_at_checked(20).ok_or_else(|| damaged("snapshot file cut short".into()))?;
        let s = StreamId(id[..16].try_into().unwrap_or_default());
        let n = u32::from_be_bytes(id[16..20].try_into().unwrap_or_default()) as usize;
        let (blob, after) = after.split_at_checked(n).ok_or_else(|| damaged("snapshot file cut short".into()))?;
        if parts.last().is_some_and(|(last, _)| *last >= s) {
            return Err(damaged("snapshot parts out of stream id order".into()));
        }
        parts.push((s, blob.to_vec()));
        rest = after;
    }
    if parts.len() as u64 != snapshot.parts {
        return Err(damaged(format!("snapshot holds {} parts, its record says {}", parts.len(), snapshot.parts)));
    }
    Ok(parts)
}

/// What `verify` checks of the persisted projection, without opening any part (that needs the
/// streams' keys; a part that does not open only makes the load replay the log): the marker's
/// shape and position, the snapshot file against its record, the overlay's keys, and with the
/// keys the marker's MAC over the record and the overlay. `Err` names the key space (`m`, `r`,
/// or the snapshot file) and what is wrong.
pub(crate) fn check_persisted(
    db: &sled::Db,
    dir: &Path,
    keys: Option<&IntegrityKeys>,
    len: u64,
) -> Result<(), (&'static str, String)> {
    let storage = |e: sled::Error| ("sled", e.to_string());
    let Some(m) = db.get(MARKER).map_err(storage)? else { return Ok(()) };
    if m.len() != 16 + MAC_LEN {
        return Err(("m", "the projection marker is malformed".into()));
    }
    let u = |r: std::ops::Range<usize>| u64::from_be_bytes(m[r].try_into().unwrap_or_default());
    let (next, generation) = (u(0..8), u(8..16));
    if next > len {
        return Err(("m", format!("the projection marker reaches position {next}, beyond the log's {len}")));
    }
    let snapshot = match db.get(SNAPSHOT).map_err(storage)? {
        None => Snapshot::default(),
        Some(v) => Snapshot::decode(&v).ok_or(("m", "the projection snapshot record is malformed".to_string()))?,
    };
    if snapshot.generation != generation {
        return Err((
            "m",
            format!("the projection marker names generation {generation}, its record {}", snapshot.generation),
        ));
    }
    read_snapshot(dir, &snapshot).map_err(|e| ("snapshot file", e.to_string()))?;
    let mut d = [0u8; 32];
    for kv in db.scan_prefix(overlay_prefix(generation)) {
        let (k, v) = kv.map_err(storage)?;
        let Ok(id) = <[u8; 16]>::try_from(&k[9..]) else {
            return Err(("r", "a malformed overlay key".into()));
        };
        if let Some(keys) = keys {
            crate::auth::xor_into(&mut d, &keys.projection_part(&StreamId(id), &v));
        }
    }
    let log = log_hash_before(db, next).map_err(|e| ("m", format!("the entry before the projection marker: {e}")))?;
    if keys.is_some_and(|keys| !marker_authenticates(keys, &m, &snapshot, &d, &log)) {
        return Err(("r", "the projection's overlay (or its marker) does not authenticate".into()));
    }
    Ok(())
}

fn overlay_batch(generation: u64, blobs: Vec<(StreamId, Vec<u8>)>, removed: Vec<StreamId>) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (s, b) in blobs {
        batch.insert(&overlay_key(generation, &s)[..], b);
    }
    for s in removed {
        // Empty: the stream has no part, whatever the snapshot holds for it.
        batch.insert(&overlay_key(generation, &s)[..], &[][..]);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_records_round_trip_and_refuse_other_lengths() {
        let s = Snapshot { generation: 3, bytes: 1 << 40, parts: 293_301, hash: [7; 32] };
        assert_eq!(Snapshot::decode(&s.encode()), Some(s));
        assert_eq!(Snapshot::decode(&s.encode()[..55]), None);
        assert_eq!(Snapshot::decode(&[0; 57]), None);
    }

    #[test]
    fn overlay_keys_sort_by_generation_then_stream() {
        let (a, b) = (StreamId([0xff; 16]), StreamId([0; 16]));
        assert!(overlay_key(1, &a) < overlay_key(2, &b));
        assert!(overlay_key(2, &b) < overlay_key(2, &a));
        assert!(overlay_key(2, &a).starts_with(&overlay_prefix(2)));
    }
}
