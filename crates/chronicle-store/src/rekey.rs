//! Re-keying a stream, for an expungement narrower than the stream's data key.
//!
//! Every sealed entry has its own content key, kept wrapped by its stream's data key beside the
//! entry (outside the hashed and signed bytes). To destroy some of a stream's entries and keep the
//! rest: rotate the stream to a fresh data key (new entries are sealed under it), re-wrap the
//! survivors' content keys under it, then destroy the old key. The destroyed entries stay in the
//! log as ciphertext; no entry's bytes change, so hashes, chains, signatures and the Merkle tree
//! all still verify.
//!
//! Each step is durable before the next begins, and each is idempotent, so a crash at any point
//! leaves a state the caller finishes by running the steps again: an entry is re-wrapped only if
//! it is not under the current key already, and destroying a destroyed key does nothing.

use std::fs::File;
use std::sync::atomic::Ordering;

use chronicle_core::{DataKeyId, StreamId, Vault};

use crate::error::ReadError;
use crate::layout;
use crate::store::Store;

fn storage(e: impl std::fmt::Display) -> ReadError {
    ReadError::Storage(e.to_string())
}

impl Store {
    fn sync_db(&self) -> Result<(), ReadError> {
        crate::db::flush_within(&*self.shared.db()?, crate::db::FLUSH_LIMIT).map_err(storage)?;
        File::open(self.log_dir().join("db")).and_then(|f| f.sync_data()).map_err(storage)
    }

    /// The data key a stream's new entries are sealed under, if it has one.
    pub fn current_stream_key(&self, stream: &StreamId) -> Result<Option<DataKeyId>, ReadError> {
        let db = self.shared.db()?;
        match db.get(layout::stream_data_key(stream))? {
            None => Ok(None),
            Some(v) => match layout::decode_binding(Some(&self.shared.keys), stream, &v) {
                Ok(id) => Ok(Some(id)),
                Err(reason) => Err(self.shared.damaged(&db, 'c', format!("{reason} ({stream})"))),
            },
        }
    }

    /// Binds a stream to a fresh data key: entries appended from now on are sealed under it.
    /// Durable when it returns. The old key stays until destroyed.
    pub fn rotate_stream_key(&self, stream: &StreamId) -> Result<DataKeyId, ReadError> {
        let id = {
            let mut vault = self.shared.vault.write().map_err(|_| storage("vault lock poisoned"))?;
            vault.new_key().map_err(storage)?
        };
        self.shared
            .db()?
            .insert(layout::stream_data_key(stream), &layout::encode_binding(&self.shared.keys, stream, &id)[..])?;
        self.sync_db()?;
        self.shared.key_epoch.fetch_add(1, Ordering::AcqRel);
        Ok(id)
    }

    /// The positions of a stream's committed entries and, for sealed ones, the data key their
    /// content key is wrapped under.
    pub fn entry_keys(&self, stream: &StreamId) -> Result<Vec<(u64, Option<DataKeyId>)>, ReadError> {
        let len = self.head().len;
        let mut out = Vec::new();
        let db = self.shared.db()?;
        // Every entry, found through the index checked to have no gap and against each entry: one
        // left out would keep its content under the key about to be destroyed, or lose it.
        for (position, hash, version) in self.stream_index(&db, stream, 0, len)? {
            let (e, wrapped) = self.shared.read_entry_and_key(&db, position)?;
            if let Err(reason) = crate::derived::check_indexed(&e, stream, version, &hash) {
                return Err(self.shared.damaged(&db, 's', reason));
            }
            out.push((position, wrapped.as_deref().and_then(Vault::wrapped_key_id)));
        }
        Ok(out)
    }

    /// Re-wraps these entries' content keys under data key `to`, in one durable batch. Entries
    /// already under `to` are left alone. Returns how many were re-wrapped.
    pub fn rewrap(&self, positions: &[u64], to: DataKeyId) -> Result<usize, ReadError> {
        // No key is destroyed (and no entry marked) while this reads and writes wrappings back:
        // one re-wrapped after being marked would be a live wrapping under a destroyed key.
        let _writer = self.shared.building.lock().map_err(|_| storage("writer lock poisoned"))?;
        // sled's handle before the vault's lock (see `db`).
        let db = self.shared.db()?;
        let vault = self.shared.vault.read().map_err(|_| storage("vault lock poisoned"))?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for &position in positions {
            let stored = db.get(layout::entry_key(position))?.ok_or_else(|| storage("entry missing"))?;
            let ev = layout::decode_entry_value(&stored).ok_or_else(|| storage("bad entry value"))?;
            // The bytes written back are the entry the tree holds at its position.
            let (e, _) = crate::store::decode_stored(position, &stored)?;
            self.shared.check_leaves(&db, std::slice::from_ref(&e))?;
            let Some(stored_wrap) = ev.wrapped_key else { continue };
            let site = layout::WrapSite::of(&e);
            let wrapped = layout::open_wrap(Some(&self.shared.keys), &site, stored_wrap).ok_or_else(|| {
                ReadError::Damaged { position, reason: "its wrapped content key does not authenticate".into() }
            })?;
            if Vault::wrapped_key_id(wrapped) == Some(to) || Vault::is_expunged_wrapping(wrapped) {
                continue;
            }
            let cek = vault
                .unwrap_content_key(position, wrapped)
                .map_err(|source| ReadError::Payload { position, source })?;
            let rewrapped = vault
                .wrap_content_key(&to, position, &cek)
                .map_err(|source| ReadError::Payload { position, source })?;
            batch.insert(
                &layout::entry_key(position)[..],
                layout::encode_entry_value(
                    ev.bytes,
                    &ev.hash,
                    Some(&layout::seal_wrap(&self.shared.keys, &site, &rewrapped)),
                ),
            );
            n += 1;
        }
        drop(vault);
        if n > 0 {
            db.apply_batch(batch)?;
            drop(db);
            self.sync_db()?;
        }
        Ok(n)
    }

    /// Destroys these data keys of a stream (the vault file is rewritten without them, durably),
    /// first marking every entry of the stream sealed under one of them expunged. Returns how
    /// many were live.
    pub fn destroy_data_keys(&self, stream: &StreamId, ids: &[DataKeyId]) -> Result<usize, ReadError> {
        self.destroy_keys_of(std::slice::from_ref(stream), ids)
    }

    /// Destroys data keys, after replacing, durably, the wrapped content key of every entry of
    /// `streams` sealed under one of them with the expunged wrapping (`Vault::expunged_wrapping`):
    /// from then on a wrapping under a destroyed key is damage, never an expunged entry, so an
    /// older wrapping put back beside an entry a charge expungement kept is caught, and no
    /// wrapped content key of an expunged entry is left at all. A crash in between leaves entries
    /// marked under a key still live: they read as expunged, and carrying the order out again
    /// destroys the key.
    ///
    /// The writer is held off meanwhile: every entry wrapped under these keys is then in sled
    /// (committed or in a group applied but not yet synced, which this finds through the index
    /// too), and none is wrapped under them until they are destroyed, after which the vault
    /// refuses to.
    pub(crate) fn destroy_keys_of(&self, streams: &[StreamId], ids: &[DataKeyId]) -> Result<usize, ReadError> {
        let doomed: std::collections::BTreeSet<DataKeyId> = ids.iter().copied().collect();
        let _writer = self.shared.building.lock().map_err(|_| storage("writer lock poisoned"))?;
        let db = self.shared.db()?;
        let mut batch = sled::Batch::default();
        let mut marked = 0;
        for stream in streams {
            for (position, hash, version) in self.stream_index(&db, stream, 0, u64::MAX)? {
                let (e, stored) = self.shared.read_entry_and_key(&db, position)?;
                if let Err(reason) = crate::derived::check_indexed(&e, stream, version, &hash) {
                    return Err(self.shared.damaged(&db, 's', reason));
                }
                let Some(stored) = stored else { continue };
                let site = layout::WrapSite::of(&e);
                let wrapped = layout::open_wrap(Some(&self.shared.keys), &site, &stored).ok_or_else(|| {
                    ReadError::Damaged { position, reason: "its wrapped content key does not authenticate".into() }
                })?;
                let Some(id) = Vault::wrapped_key_id(wrapped).filter(|id| doomed.contains(id)) else { continue };
                if Vault::is_expunged_wrapping(wrapped) {
                    continue;
                }
                let mark = layout::seal_wrap(&self.shared.keys, &site, &Vault::expunged_wrapping(&id));
                batch.insert(
                    &layout::entry_key(position)[..],
                    layout::encode_entry_value(e.bytes(), &hash, Some(&mark)),
                );
                marked += 1;
            }
        }
        if marked > 0 {
            db.apply_batch(batch)?;
            crate::db::flush_within(&db, crate::db::FLUSH_LIMIT).map_err(storage)?;
            File::open(self.log_dir().join("db")).and_then(|f| f.sync_data()).map_err(storage)?;
        }
        drop(db);
        let mut vault = self.shared.vault.write().map_err(|_| storage("vault lock poisoned"))?;
        vault.destroy(ids).map_err(storage)
    }

    /// Whether a data key was destroyed.
    pub fn data_key_destroyed(&self, id: &DataKeyId) -> Result<bool, ReadError> {
        let vault = self.shared.vault.read().map_err(|_| storage("vault lock poisoned"))?;
        Ok(vault.is_destroyed(id))
    }
}
