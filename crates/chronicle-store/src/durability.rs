//! The durability point: what must reach the disk before an append is acknowledged.
//!
//! sled 0.34's `flush()` writes its buffers with `pwrite` and `sync_file_range`, which survives a
//! killed process but not a power cut or kernel crash (it neither flushes the device's write cache
//! nor the file's metadata). So after each group's `flush()` the writer calls `fdatasync` on sled's
//! `db` file itself (an fsync of any descriptor of a file flushes that file), and on any blob file
//! sled created since the last group (entries are kept far below sled's blob threshold, so in
//! practice there are none; syncing them anyway means a future change of limits cannot silently
//! weaken durability). One `fdatasync` covers every append of the group: group commit.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

pub(crate) struct Durability {
    db_file: File,
    blobs_dir: PathBuf,
    synced_blobs: HashSet<OsString>,
}

impl Durability {
    pub(crate) fn new(log_dir: &Path) -> std::io::Result<Durability> {
        let db_file = File::open(log_dir.join("db"))?;
        let blobs_dir = log_dir.join("blobs");
        let mut synced_blobs = HashSet::new();
        if let Ok(rd) = std::fs::read_dir(&blobs_dir) {
            for e in rd.flatten() {
                synced_blobs.insert(e.file_name());
            }
        }
        // Make the directory entries themselves durable once (sled created them).
        File::open(log_dir)?.sync_all()?;
        Ok(Durability { db_file, blobs_dir, synced_blobs })
    }

    /// Call after `db.flush()`: makes everything flushed durable against power loss.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.db_file.sync_data()?;
        let mut new_blob = false;
        if let Ok(rd) = std::fs::read_dir(&self.blobs_dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                if !self.synced_blobs.contains(&name) {
                    File::open(e.path())?.sync_all()?;
                    self.synced_blobs.insert(name);
                    new_blob = true;
                }
            }
        }
        if new_blob {
            File::open(&self.blobs_dir)?.sync_all()?;
        }
        Ok(())
    }
}
