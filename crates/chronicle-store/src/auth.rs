//! The keys that bind what the store keeps beside the entries to the log.
//!
//! The entries authenticate themselves (hashes, chains, signatures, the Merkle tree). What the
//! store derives from them and trusts while running does not: the head record, the streams' data
//! key bindings, the Merkle tree's stored hashes, the persisted projection. Each of these carries
//! a MAC under a key derived from the master key (which lives outside the data directory), so an
//! insider who can edit sled but does not hold the master key cannot flip, swap or forge one
//! without the store noticing when it reads it. What a MAC cannot show by itself (a value
//! replaced by an older one of the same key, a key deleted) is caught by checking the value
//! against the log where it is used: see docs/FORMAT.md, "Derived state".
//!
//! A MAC is keyed BLAKE3 over the parts, each preceded by its length (u64 BE), so that no two
//! different sequences of parts hash alike. Comparisons are in constant time.

use chronicle_core::{DataKeyId, Hash, MasterKey, StreamId, Vault};
use zeroize::Zeroizing;

const CONTEXT_HEAD: &str = "chronicle 2026-11 store head record v1";
const CONTEXT_BINDING: &str = "chronicle 2026-11 store stream key binding v1";
const CONTEXT_TREE: &str = "chronicle 2026-11 store tree chunk v1";
const CONTEXT_PROJECTION: &str = "chronicle 2026-11 store projection marker v1";
const CONTEXT_WRAP: &str = "chronicle 2026-11 store wrapped content key v1";
const CONTEXT_STREAM_HEAD: &str = "chronicle 2026-11 store stream head v1";

/// Length of every MAC.
pub const MAC_LEN: usize = 32;

/// The keys, one per kind of derived state.
#[derive(Clone)]
pub struct IntegrityKeys {
    head: Zeroizing<[u8; 32]>,
    binding: Zeroizing<[u8; 32]>,
    tree: Zeroizing<[u8; 32]>,
    projection: Zeroizing<[u8; 32]>,
    wrap: Zeroizing<[u8; 32]>,
    stream_head: Zeroizing<[u8; 32]>,
    /// The history the log is in (`chronicle_core::Anchor::epoch`), bound into the tree's MACs.
    epoch: u64,
}

impl std::fmt::Debug for IntegrityKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntegrityKeys(..)")
    }
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut h = blake3::Hasher::new_keyed(key);
    for p in parts {
        h.update(&(p.len() as u64).to_be_bytes());
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// XORs a keyed share into (or, again, out of) a digest that is the XOR of such shares: the
/// projection overlay's and the stream heads'.
pub(crate) fn xor_into(digest: &mut [u8; MAC_LEN], share: &[u8; MAC_LEN]) {
    for (d, s) in digest.iter_mut().zip(share) {
        *d ^= s;
    }
}

/// Whether `found` is the MAC expected, compared in constant time.
pub(crate) fn same(expected: &[u8; MAC_LEN], found: &[u8]) -> bool {
    <[u8; MAC_LEN]>::try_from(found).is_ok_and(|f| blake3::Hash::from(*expected) == blake3::Hash::from(f))
}

impl IntegrityKeys {
    /// The keys derived from a master key, in history `epoch` (for `verify`, which opens no vault
    /// and reads the epoch from the vault's anchor).
    pub fn from_master(master: &MasterKey, epoch: u64) -> IntegrityKeys {
        IntegrityKeys {
            head: master.derive(CONTEXT_HEAD),
            binding: master.derive(CONTEXT_BINDING),
            tree: master.derive(CONTEXT_TREE),
            projection: master.derive(CONTEXT_PROJECTION),
            wrap: master.derive(CONTEXT_WRAP),
            stream_head: master.derive(CONTEXT_STREAM_HEAD),
            epoch,
        }
    }

    pub(crate) fn from_vault(vault: &Vault) -> IntegrityKeys {
        IntegrityKeys {
            head: vault.derive(CONTEXT_HEAD),
            binding: vault.derive(CONTEXT_BINDING),
            tree: vault.derive(CONTEXT_TREE),
            projection: vault.derive(CONTEXT_PROJECTION),
            wrap: vault.derive(CONTEXT_WRAP),
            stream_head: vault.derive(CONTEXT_STREAM_HEAD),
            epoch: vault.epoch(),
        }
    }

    /// The head record's MAC, over the record before it.
    pub(crate) fn head(&self, body: &[u8]) -> [u8; MAC_LEN] {
        mac(&self.head, &[body])
    }

    /// A stream key binding's MAC: this stream, this data key.
    pub(crate) fn binding(&self, stream: &StreamId, key: &DataKeyId) -> [u8; MAC_LEN] {
        mac(&self.binding, &[&stream.0, &key.0])
    }

    /// A stream head's MAC: this stream's last version is at this position and hashes so.
    pub(crate) fn stream_head(&self, stream: &StreamId, version: u64, position: u64, hash: &Hash) -> [u8; MAC_LEN] {
        mac(&self.stream_head, &[&stream.0, &version.to_be_bytes(), &position.to_be_bytes(), &hash.0])
    }

    /// The MAC stored after an entry's wrapped content key: this entry (its position, recorded
    /// time and signed payload commitment), this wrapping. The wrapping lies outside
    /// the entry's hash, and decides, before anything can be unwrapped, whether the entry reads
    /// as expunged: without the MAC, a destroyed key's id copied into a seal order's wrapping
    /// would make a replay skip the order; without the entry's identity, an expunged entry's
    /// marked wrapping from a history given up (an accepted rollback) would authenticate beside
    /// the entry now at its position.
    pub(crate) fn wrap(&self, site: &crate::layout::WrapSite, wrapped: &[u8]) -> [u8; MAC_LEN] {
        mac(&self.wrap, &[&site.position.to_be_bytes(), &site.recorded.0.to_be_bytes(), &site.commitment.0, wrapped])
    }

    /// A stream head's share of the head record's digest: a second keyed function of the head,
    /// stored nowhere, so that the digest (their XOR) cannot be steered by combining changes whose
    /// effect on it an insider could compute (as it could from the MACs stored in the clear).
    pub(crate) fn stream_head_share(
        &self,
        stream: &StreamId,
        version: u64,
        position: u64,
        hash: &Hash,
    ) -> [u8; MAC_LEN] {
        mac(&self.stream_head, &[b"digest share", &stream.0, &version.to_be_bytes(), &position.to_be_bytes(), &hash.0])
    }

    /// A tree chunk's MAC: this history, this chunk number, these stored hashes. Chunks kept from
    /// a history an operator gave up (an accepted rollback) do not authenticate in the next: the
    /// tree is rebuilt from the log when the rollback is accepted.
    pub(crate) fn chunk(&self, chunk: u64, hashes: &[u8]) -> [u8; MAC_LEN] {
        mac(&self.tree, &[&self.epoch.to_be_bytes(), &chunk.to_be_bytes(), hashes])
    }

    /// One overlay key's share of the projection marker's digest: this stream, this value.
    pub(crate) fn projection_part(&self, stream: &StreamId, value: &[u8]) -> [u8; MAC_LEN] {
        mac(&self.projection, &[b"part", &stream.0, blake3::hash(value).as_bytes()])
    }

    /// The projection marker's MAC, over the marker's fields and the digest of the overlay.
    pub(crate) fn projection_marker(&self, fields: &[u8], overlay: &[u8; 32]) -> [u8; MAC_LEN] {
        mac(&self.projection, &[b"marker", fields, overlay])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_key_and_parts_are_framed() {
        let k = IntegrityKeys::from_master(&MasterKey::from_hex(&"11".repeat(32)).unwrap(), 0);
        // Another history, another chunk MAC.
        let later = IntegrityKeys::from_master(&MasterKey::from_hex(&"11".repeat(32)).unwrap(), 1);
        assert_ne!(k.chunk(3, b"hashes"), later.chunk(3, b"hashes"));
        assert_eq!(k.head(b"x"), later.head(b"x"));
        // The same bytes under two purposes give two MACs.
        assert_ne!(k.head(b"x"), mac(&k.tree, &[b"x"]));
        // Moving a byte from one part to the next changes the MAC.
        assert_ne!(mac(&k.head, &[b"ab", b"c"]), mac(&k.head, &[b"a", b"bc"]));
        let m = k.head(b"body");
        assert!(same(&m, &m));
        let mut other = m;
        other[31] ^= 1;
        assert!(!same(&m, &other));
        assert!(!same(&m, &m[..31]));
    }
}
