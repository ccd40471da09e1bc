//! Evidence bundles: one stream's entries with everything needed to check them with no data
//! directory and no trust in the bureau.
//!
//! A bundle holds one signed checkpoint; the last heads commitment it covers (a
//! `ledger.stream_heads` entry, see `commitment`) with its inclusion proof; an inclusion proof
//! for every entry of the stream up to that commitment's size, and for every entry of the
//! principal registry in the tree; the heads-map proofs of the stream's and the registry's heads
//! at the commitment's size, which show that nothing was left out of either (from the end or the
//! middle); and, optionally, the opened payloads (salt and content) so that a checker can match
//! the content against the commitment each author signed. [`verify_bundle`] checks all of it
//! against the log's verifier key given by the checker (never the key inside the bundle) and
//! says what it proved.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chronicle_core::payload::{SALT_LEN, commitment};
use chronicle_core::registry::RegistryEvent;
use chronicle_core::sign::verify_statement;
use chronicle_core::{Entry, Hash, PayloadKind, Registry, StreamId};
use chronicle_tlog::heads::HeadProof;
use chronicle_tlog::{InclusionProof, verify_checkpoint};
use serde::{Deserialize, Serialize};

use crate::commitment::commitment_of;
use crate::store::Store;

/// Format tag of a bundle.
pub const BUNDLE_FORMAT: &str = "chronicle-evidence/v2";

/// The orders stream of `stream`: `StreamId::derive("chronicle.orders", hex(stream))`. Each of its
/// entries notices an order covering `stream`, which it names by its causation hash; a bundle
/// carries the orders stream, proven complete (or proven to have no entry), and every order its
/// entries name.
pub fn orders_stream(stream: &StreamId) -> StreamId {
    StreamId::derive("chronicle.orders", &stream.to_hex())
}

/// What shows a bundle complete: the heads commitment and the heads it proves.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Completeness {
    /// The `ledger.stream_heads` entry, with its inclusion proof against the checkpoint.
    pub commitment: InclusionProof,
    /// The stream's head in the committed map.
    pub stream_head: HeadProof,
    /// The principal registry's head in the committed map.
    pub registry_head: HeadProof,
    /// The expungement orders that cover the stream.
    pub orders: OrdersEvidence,
}

/// The expungement orders that cover a stream: its orders stream ([`orders_stream`]) proven
/// complete at the commitment's size, or proven to have no entry, and every order its notices
/// name (by their causation hash). A stream whose content is gone shows here why.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OrdersEvidence {
    /// The orders stream's head in the committed map, if it has entries.
    pub head: Option<HeadProof>,
    /// Else the proof that it has none.
    pub absent: Option<chronicle_tlog::heads::AbsenceProof>,
    /// Its entries (one notice per order), each with its inclusion proof.
    pub notices: Vec<InclusionProof>,
    /// The entries the notices name (the orders), each with its inclusion proof.
    pub orders: Vec<InclusionProof>,
}

/// An opened payload: the salt and the content, both base64.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OpenedPayload {
    /// The entry's position.
    pub position: u64,
    /// The salt inside the sealed payload, base64.
    pub salt: String,
    /// The payload, base64.
    pub payload: String,
}

/// A self-contained evidence bundle.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The stream the bundle is about, hex.
    pub stream: String,
    /// The signed checkpoint note every proof is against.
    pub checkpoint: String,
    /// The log's verifier key as the bureau states it (informational: checkers bring their own).
    pub log_key: String,
    /// The stream's entries, each with its inclusion proof.
    pub entries: Vec<InclusionProof>,
    /// Every principal-registry entry in the tree, each with its inclusion proof.
    pub registry: Vec<InclusionProof>,
    /// The proof that the stream's entries (and the registry's, up to the commitment's size)
    /// are all there.
    pub completeness: Completeness,
    /// Opened payloads, if the bundle carries content.
    #[serde(default)]
    pub content: Vec<OpenedPayload>,
}

/// A bundle cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The stream has no entries in the tree.
    #[error("stream {0} has no entries covered by the checkpoint's heads commitment")]
    EmptyStream(StreamId),
    /// The checkpoint's last entry is not a heads commitment.
    #[error("the checkpoint at size {0} does not end in a heads commitment (commit the stream heads, then sign)")]
    NoCommitment(u64),
    /// Reading failed.
    #[error("{0}")]
    Read(String),
}

/// Builds a bundle for `stream` against the checkpoint note `checkpoint` of `size` entries, whose
/// last entry is a heads commitment (see [`Store::checkpoint_with_heads`]): the stream's entries
/// up to the commitment's size (the caller commits the heads just before, so that they are all
/// of them). For a stream no order covers (see [`build_bundle_with_orders`]).
pub fn build_bundle(
    store: &Store,
    stream: &StreamId,
    checkpoint: &[u8],
    size: u64,
    log_key: &str,
    with_content: bool,
) -> Result<Bundle, BundleError> {
    build_bundle_with_orders(store, stream, checkpoint, size, log_key, with_content, &[])
}

/// [`build_bundle`], with the positions of the orders that cover the stream (the records layer
/// knows them): each notice in the stream's orders stream must name one of them.
pub fn build_bundle_with_orders(
    store: &Store,
    stream: &StreamId,
    checkpoint: &[u8],
    size: u64,
    log_key: &str,
    with_content: bool,
    order_positions: &[u64],
) -> Result<Bundle, BundleError> {
    let read = |e: &dyn std::fmt::Display| BundleError::Read(e.to_string());
    let proof_of = |e: &Entry| -> Result<InclusionProof, BundleError> {
        let path = store.inclusion_proof(e.position(), size).map_err(|x| read(&x))?;
        Ok(InclusionProof::new(e.position(), size, e.bytes(), &path))
    };
    // A stream's entries below `below`, from version 0 (it stops at the first one past).
    let collect = |s: &StreamId, below: u64| -> Result<Vec<Entry>, BundleError> {
        let mut out: Vec<Entry> = Vec::new();
        loop {
            let page = store.read_stream(s, out.len() as u64, 1000).map_err(|x| read(&x))?;
            let full = page.len() == 1000;
            let before = out.len();
            out.extend(page.into_iter().take_while(|e| e.position() < below));
            if !full || out.len() - before < 1000 {
                return Ok(out);
            }
        }
    };
    let last = size.checked_sub(1).ok_or(BundleError::NoCommitment(size))?;
    let commitment_entry = store.entry(last).map_err(|x| read(&x))?.ok_or(BundleError::NoCommitment(size))?;
    let commitment = match commitment_of(&commitment_entry) {
        Some(Ok(c)) => c,
        Some(Err(reason)) => return Err(read(&format!("the heads commitment at position {last}: {reason}"))),
        None => return Err(BundleError::NoCommitment(size)),
    };
    let map = store.heads_map_of(&commitment).map_err(|x| read(&x))?;
    let entries = collect(stream, commitment.size)?;
    let stream_head = map.prove(&stream.0).ok_or(BundleError::EmptyStream(*stream))?;
    if entries.is_empty() || entries.last().map(|e| e.hash().0) != Some(head_hash(&stream_head)) {
        return Err(read(&format!("the heads map's head of stream {stream} is not its last entry")));
    }
    let registry_head = map.prove(&StreamId::REGISTRY.0).ok_or_else(|| read(&"the heads map has no registry"))?;
    let registry = collect(&StreamId::REGISTRY, size)?;
    let os = orders_stream(stream);
    let notices = collect(&os, commitment.size)?;
    let (head, absent) = match map.prove(&os.0) {
        Some(p) => (Some(p), None),
        None => (
            None,
            Some(map.prove_absent(&os.0).ok_or_else(|| read(&"the orders stream is neither in the map nor absent"))?),
        ),
    };
    let mut orders = Vec::new();
    let registry_now = store.registry();
    for n in notices.iter().filter(|n| crate::store::ledger_stream_author(&registry_now, &n.statement)) {
        let named = n
            .statement
            .refs
            .causation
            .ok_or_else(|| read(&format!("the notice at {} names no order", n.position())))?;
        let found = order_positions
            .iter()
            .filter(|p| **p < n.position())
            .map(|p| store.entry(*p).map_err(|x| read(&x)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .find(|o| o.hash() == named)
            .ok_or_else(|| {
                read(&format!("the notice at {} names an order at none of the positions given", n.position()))
            })?;
        if !orders.iter().any(|o: &Entry| o.position() == found.position()) {
            orders.push(found);
        }
    }
    // Every order said to cover the stream must have its notice there: a bundle never says
    // "no order covers it" of a stream an order covers.
    if let Some(p) = order_positions.iter().find(|p| !orders.iter().any(|o| o.position() == **p)) {
        return Err(read(&format!(
            "the order at position {p} covers stream {stream} but its notice is not in the stream's orders stream \
             below size {} (open the records service with the ledger's signer, which writes it, then export again)",
            commitment.size
        )));
    }
    let mut content = Vec::new();
    if with_content {
        for e in entries.iter().chain(&notices) {
            // Only an expunged entry (its key destroyed) goes without its content; anything else
            // that keeps a payload from opening is damage, and no bundle is made over it.
            match store.open_payload_with_salt(e) {
                Ok(plain) => content.push(OpenedPayload {
                    position: e.position(),
                    salt: B64.encode(plain.0),
                    payload: B64.encode(&plain.1[..]),
                }),
                Err(crate::ReadError::Payload { source: chronicle_core::SealError::KeyDestroyed, .. }) => {}
                Err(other) => return Err(read(&other)),
            }
        }
    }
    Ok(Bundle {
        format: BUNDLE_FORMAT.into(),
        stream: stream.to_hex(),
        checkpoint: String::from_utf8_lossy(checkpoint).into_owned(),
        log_key: log_key.to_string(),
        entries: entries.iter().map(proof_of).collect::<Result<_, _>>()?,
        registry: registry.iter().map(proof_of).collect::<Result<_, _>>()?,
        completeness: Completeness {
            commitment: proof_of(&commitment_entry)?,
            stream_head,
            registry_head,
            orders: OrdersEvidence {
                head,
                absent,
                notices: notices.iter().map(proof_of).collect::<Result<_, _>>()?,
                orders: orders.iter().map(proof_of).collect::<Result<_, _>>()?,
            },
        },
        content,
    })
}

/// The entry hash a head proof names (its hex was written by the map; zero if malformed).
fn head_hash(p: &HeadProof) -> [u8; 32] {
    let mut h = [0u8; 32];
    if hex::decode_to_slice(&p.hash, &mut h).is_err() {
        return [0; 32];
    }
    h
}

/// A bundle does not check out. Each variant names what failed and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Not a bundle of a known format.
    #[error("not a Chronicle evidence bundle: {0}")]
    Format(String),
    /// The checkpoint is not signed by the given log key.
    #[error("the checkpoint is not signed by the given log key: {0}")]
    Checkpoint(String),
    /// An entry's inclusion proof fails.
    #[error("entry at position {position}: inclusion proof fails: {reason}")]
    Inclusion {
        /// The entry's position.
        position: u64,
        /// Why.
        reason: String,
    },
    /// An entry does not decode or is not what the bundle says it is.
    #[error("entry at position {position}: {reason}")]
    Entry {
        /// The entry's position.
        position: u64,
        /// Why.
        reason: String,
    },
    /// The stream's chain has a gap or a broken link.
    #[error("the stream chain is broken at version {version}: {reason}")]
    Chain {
        /// The stream version.
        version: u64,
        /// Why.
        reason: String,
    },
    /// An author's key was not valid, or a signature does not verify.
    #[error("entry at position {position}: author signature not valid: {reason}")]
    Signature {
        /// The entry's position.
        position: u64,
        /// Why.
        reason: String,
    },
    /// Opened content does not match the commitment its author signed.
    #[error("content given for position {0} does not match the commitment its author signed")]
    Content(u64),
    /// The heads commitment or a head proof does not hold, or entries are missing.
    #[error("incomplete: {0}")]
    Incomplete(String),
    /// The bundle proves the stream complete at a log size below the one the checker asked for.
    #[error(
        "stale: the bundle proves the stream complete among the log's first {proven} entries, fewer than the {asked} asked for (entries appended since, such as a seal order, would not be in it)"
    )]
    Stale {
        /// The size the bundle proves completeness at.
        proven: u64,
        /// The size asked for.
        asked: u64,
    },
}

/// What a bundle proved.
#[derive(Debug, Clone, Serialize)]
pub struct Proven {
    /// The log's origin.
    pub origin: String,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The stream.
    pub stream: String,
    /// The stream's entries, versions 0..entries.
    pub entries: u64,
    /// The log size at which the stream and the registry are proven complete (the heads
    /// commitment's size).
    pub complete_at: u64,
    /// The position of the heads commitment.
    pub commitment_position: u64,
    /// The expungement orders that cover the stream (their notices proven complete).
    pub orders: u64,
    /// Registry entries used to judge signatures.
    pub registry_entries: u64,
    /// Payloads whose content matched the signed commitment.
    pub content_checked: u64,
    /// The last entry's hash.
    pub last_hash: Hash,
}

impl Proven {
    /// The findings, in plain words.
    pub fn describe(&self) -> String {
        format!(
            "verified: the checkpoint of log {origin} at tree size {size} is signed by the given log key; \
             all {n} entries of stream {stream} (versions 0 to {last}, chained from the stream's first entry, \
             last entry hash {hash}) are included in that tree, and the ledger's heads commitment at position \
             {cpos} (signed by the ledger, included in the tree) shows the stream had exactly these entries among \
             the log's first {at}: none is left out; {orders}; each was signed by its author with a key \
             that the ledger's registry ({r} registry entries, chained from the genesis entry, included in \
             the tree, and complete up to the same size by the same commitment) showed as valid at that point \
             of the log; {c}",
            origin = self.origin,
            size = self.tree_size,
            cpos = self.commitment_position,
            at = self.complete_at,
            n = self.entries,
            stream = self.stream,
            last = self.entries.saturating_sub(1),
            hash = self.last_hash,
            r = self.registry_entries,
            orders = match self.orders {
                0 => "no expungement order covers the stream (its orders stream is proven empty)".to_string(),
                n => format!(
                    "{n} expungement order(s) cover the stream, whose content they destroyed (their notices, signed by \
                     the ledger, are proven complete the same way, and the orders are included)"
                ),
            },
            c = if self.content_checked > 0 {
                format!("the content of {} entries matches what their authors signed", self.content_checked)
            } else {
                "no content was included, so only the entries' existence, order and authorship are proven".to_string()
            },
        )
    }
}

fn included(p: &InclusionProof, size: u64, root: chronicle_tlog::TreeHash) -> Result<Entry, EvidenceError> {
    let position = p.leaf_index;
    if p.tree_size != size {
        return Err(EvidenceError::Inclusion {
            position,
            reason: format!("proof is for tree size {}, the checkpoint is {size}", p.tree_size),
        });
    }
    p.verify(root).map_err(|e| EvidenceError::Inclusion { position, reason: e.to_string() })?;
    let bytes = p.leaf_bytes().map_err(|e| EvidenceError::Entry { position, reason: e.to_string() })?;
    let e = Entry::decode(bytes).map_err(|e| EvidenceError::Entry { position, reason: e.to_string() })?;
    if e.position() != position {
        return Err(EvidenceError::Entry { position, reason: format!("the entry says position {}", e.position()) });
    }
    Ok(e)
}

fn check_chain(entries: &[Entry], stream: &StreamId) -> Result<(), EvidenceError> {
    let mut prev = Hash::ZERO;
    for (i, e) in entries.iter().enumerate() {
        let version = i as u64;
        if e.statement.stream != *stream {
            return Err(EvidenceError::Chain {
                version,
                reason: format!("entry {} belongs to another stream", e.position()),
            });
        }
        if e.header.stream_version != version {
            return Err(EvidenceError::Chain {
                version,
                reason: format!("found version {} instead", e.header.stream_version),
            });
        }
        if e.header.prev_stream_hash != prev {
            return Err(EvidenceError::Chain { version, reason: "does not name its predecessor's hash".into() });
        }
        prev = e.hash();
    }
    Ok(())
}

/// [`verify_bundle`], and the stream is proven complete among at least the log's first
/// `at_least` entries: a checker holding a checkpoint of that size (the latest published one) so
/// refuses an older bundle, which could be missing what was appended since.
pub fn verify_bundle_at_least(bundle: &Bundle, log_key: &str, at_least: u64) -> Result<Proven, EvidenceError> {
    let proven = verify_bundle(bundle, log_key)?;
    if proven.complete_at < at_least {
        return Err(EvidenceError::Stale { proven: proven.complete_at, asked: at_least });
    }
    Ok(proven)
}

/// Checks a bundle against the log's verifier key.
pub fn verify_bundle(bundle: &Bundle, log_key: &str) -> Result<Proven, EvidenceError> {
    if bundle.format != BUNDLE_FORMAT {
        return Err(EvidenceError::Format(format!("format {:?}", bundle.format)));
    }
    let stream = StreamId::from_hex(&bundle.stream)
        .ok_or_else(|| EvidenceError::Format("stream is not 32 hex digits".into()))?;
    let cp = verify_checkpoint(bundle.checkpoint.as_bytes(), log_key)
        .map_err(|e| EvidenceError::Checkpoint(e.to_string()))?;
    let registry: Vec<Entry> =
        bundle.registry.iter().map(|p| included(p, cp.size, cp.root)).collect::<Result<_, _>>()?;
    let mut entries: Vec<Entry> =
        bundle.entries.iter().map(|p| included(p, cp.size, cp.root)).collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.header.stream_version);
    if entries.is_empty() {
        return Err(EvidenceError::Format("the bundle holds no entries".into()));
    }
    check_chain(&registry, &StreamId::REGISTRY)?;
    check_chain(&entries, &stream)?;
    if registry.first().map(Entry::position) != Some(0) {
        return Err(EvidenceError::Chain {
            version: 0,
            reason: "the registry does not start at the genesis entry".into(),
        });
    }
    let commitment_entry = included(&bundle.completeness.commitment, cp.size, cp.root)?;
    let heads = complete(bundle, cp.size, &commitment_entry, &stream, &entries, &registry)?;
    let (notices, orders) = orders_of(&bundle.completeness.orders, &heads, &stream, cp.size, cp.root)?;

    // Replay the registry and the stream together in log order: each signature is judged against
    // the registry as it stood just before the entry.
    let mut timeline: BTreeMap<u64, (&Entry, bool)> = BTreeMap::new();
    for e in &registry {
        timeline.insert(e.position(), (e, true));
    }
    for e in entries.iter().chain([&commitment_entry]).chain(&notices).chain(&orders) {
        // A bundle about the registry stream itself lists its entries twice: keep them as registry.
        timeline.entry(e.position()).or_insert((e, false));
    }
    let mut reg = Registry::new();
    let mut ledger_notices: Vec<u64> = Vec::new();
    for (position, (e, is_registry)) in timeline {
        let st = &e.statement;
        let public = (st.payload_kind == PayloadKind::Public)
            .then(|| chronicle_core::payload::open_public(&st.commitment, e.envelope()))
            .transpose()
            .map_err(|x| EvidenceError::Entry { position, reason: x.to_string() })?;
        let key =
            reg.signing_key(st, public).map_err(|x| EvidenceError::Signature { position, reason: x.to_string() })?;
        if !verify_statement(&key, e.statement_bytes(), &e.signature) {
            return Err(EvidenceError::Signature { position, reason: "signature does not verify".into() });
        }
        if position == heads.position && !crate::store::ledger_stream_author(&reg, st) {
            return Err(EvidenceError::Signature {
                position,
                reason: "the heads commitment is not signed by the ledger's own principal".into(),
            });
        }
        // In the orders stream, only the ledger's entries are notices (anything else someone
        // with write rights put there is proven in its chain but notices nothing).
        if notices.iter().any(|n| n.position() == position) && crate::store::ledger_stream_author(&reg, st) {
            ledger_notices.push(position);
        }
        if is_registry {
            let payload = public
                .ok_or_else(|| EvidenceError::Entry { position, reason: "registry payload is not public".into() })?;
            let ev = RegistryEvent::parse(&st.event_type, payload)
                .map_err(|x| EvidenceError::Entry { position, reason: x.to_string() })?;
            reg.apply(position, &st.author, &ev)
                .map_err(|x| EvidenceError::Entry { position, reason: x.to_string() })?;
        }
    }

    named(&notices, &ledger_notices, &orders)?;
    let mut content_checked = 0;
    for c in &bundle.content {
        let e = entries
            .iter()
            .chain(&notices)
            .find(|e| e.position() == c.position)
            .ok_or(EvidenceError::Content(c.position))?;
        let salt: [u8; SALT_LEN] =
            B64.decode(&c.salt).ok().and_then(|s| s.try_into().ok()).ok_or(EvidenceError::Content(c.position))?;
        let payload = B64.decode(&c.payload).map_err(|_| EvidenceError::Content(c.position))?;
        if !commitment(&salt, &payload).ct_eq(&e.statement.commitment) {
            return Err(EvidenceError::Content(c.position));
        }
        content_checked += 1;
    }
    Ok(Proven {
        origin: cp.origin,
        tree_size: cp.size,
        stream: bundle.stream.clone(),
        entries: entries.len() as u64,
        complete_at: heads.size,
        commitment_position: heads.position,
        registry_entries: registry.len() as u64,
        orders: orders.len() as u64,
        content_checked,
        last_hash: entries.last().map(Entry::hash).unwrap_or(Hash::ZERO),
    })
}

/// Checks the bundle's completeness proof: the commitment entry is a heads commitment, the
/// checkpoint's last entry, and the heads it proves are the stream's last entry and a registry entry the bundle holds (the chains,
/// already checked from version 0, then hold every version up to them).
fn complete(
    bundle: &Bundle,
    checkpoint_size: u64,
    commitment_entry: &Entry,
    stream: &StreamId,
    entries: &[Entry],
    registry: &[Entry],
) -> Result<crate::commitment::HeadsCommitment, EvidenceError> {
    let incomplete = |s: String| EvidenceError::Incomplete(s);
    let c = match commitment_of(commitment_entry) {
        Some(Ok(c)) => c,
        Some(Err(reason)) => return Err(incomplete(format!("the heads commitment: {reason}"))),
        None => {
            return Err(incomplete(format!(
                "the entry at position {} is not a heads commitment",
                commitment_entry.position()
            )));
        }
    };
    let proven = |p: &HeadProof, of: &StreamId, what: &str| {
        let head = p.verify(&c.root).map_err(|e| incomplete(format!("the {what}'s head: {e}")))?;
        if head.stream != of.0 {
            return Err(incomplete(format!("the {what}'s head proof is about stream {}", StreamId(head.stream))));
        }
        Ok(head)
    };
    // Only the checkpoint's last entry: no later commitment, showing more, lies below it.
    if c.position + 1 != checkpoint_size {
        return Err(incomplete(format!(
            "the heads commitment at position {} is not the last entry of the checkpoint (tree size {checkpoint_size})",
            c.position
        )));
    }
    let head = proven(&bundle.completeness.stream_head, stream, "stream")?;
    let last = entries.last().map(|e| (e.header.stream_version, e.hash().0));
    if last != Some((head.version, head.hash)) {
        let have = last.map_or("no entries".to_string(), |(v, _)| format!("entries up to version {v}"));
        return Err(incomplete(format!(
            "stream {stream} had {} entries among the log's first {} (its last, version {}, hash {}), the bundle \
             holds {have}: entries are missing or changed",
            head.version + 1,
            c.size,
            head.version,
            hex::encode(head.hash)
        )));
    }
    let reg = proven(&bundle.completeness.registry_head, &StreamId::REGISTRY, "registry")?;
    let held = registry.get(reg.version as usize).map(|e| e.hash().0);
    if held != Some(reg.hash) {
        return Err(incomplete(format!(
            "the registry had {} entries among the log's first {}, the bundle's registry does not hold its \
             version {} (hash {}): registry entries (registrations, rotations, revocations) are missing",
            reg.version + 1,
            c.size,
            reg.version,
            hex::encode(reg.hash)
        )));
    }
    Ok(c)
}

/// Checks the orders that cover the stream: its orders stream proven complete (each notice in
/// it, from version 0 to the committed head) or proven empty at the commitment's size, and every
/// order a notice names (by its causation hash) present, before the notice, and named. Returns
/// the notices and the orders.
fn orders_of(
    o: &OrdersEvidence,
    c: &crate::commitment::HeadsCommitment,
    stream: &StreamId,
    size: u64,
    root: chronicle_tlog::TreeHash,
) -> Result<(Vec<Entry>, Vec<Entry>), EvidenceError> {
    let incomplete = |s: String| EvidenceError::Incomplete(s);
    let os = orders_stream(stream);
    let mut notices: Vec<Entry> = o.notices.iter().map(|p| included(p, size, root)).collect::<Result<_, _>>()?;
    notices.sort_by_key(|e| e.header.stream_version);
    match (&o.head, &o.absent) {
        (Some(h), None) => {
            let head = h.verify(&c.root).map_err(|e| incomplete(format!("the orders stream's head: {e}")))?;
            if head.stream != os.0 {
                return Err(incomplete("the orders head proof is about another stream".into()));
            }
            check_chain(&notices, &os)?;
            let last = notices.last().map(|e| (e.header.stream_version, e.hash().0));
            if last != Some((head.version, head.hash)) {
                return Err(incomplete(format!(
                    "{} orders covered stream {stream} among the log's first {}, the bundle holds {} of their notices",
                    head.version + 1,
                    c.size,
                    notices.len()
                )));
            }
        }
        (None, Some(a)) => {
            a.verify(&c.root, &os.0).map_err(|e| incomplete(format!("the orders stream's absence: {e}")))?;
            if !notices.is_empty() {
                return Err(incomplete("notices of orders beside a proof that there are none".into()));
            }
        }
        _ => return Err(incomplete("the orders stream is to be proven either complete or empty, once".into())),
    }
    let orders: Vec<Entry> = o.orders.iter().map(|p| included(p, size, root)).collect::<Result<_, _>>()?;
    let mut positions: Vec<u64> = orders.iter().map(Entry::position).collect();
    positions.sort_unstable();
    if positions.windows(2).any(|w| w[0] == w[1]) {
        return Err(EvidenceError::Format("an order is listed twice".into()));
    }
    Ok((notices, orders))
}

/// Every notice of the ledger's in the orders stream names (by its causation hash) an order the
/// bundle holds, before it; every order the bundle holds is named by one.
fn named(notices: &[Entry], ledger_notices: &[u64], orders: &[Entry]) -> Result<(), EvidenceError> {
    let real: Vec<&Entry> = notices.iter().filter(|n| ledger_notices.contains(&n.position())).collect();
    for n in &real {
        let named = n.statement.refs.causation;
        if !orders.iter().any(|order| Some(order.hash()) == named && order.position() < n.position()) {
            return Err(EvidenceError::Incomplete(format!(
                "the order the notice at position {} names is missing",
                n.position()
            )));
        }
    }
    for order in orders {
        if !real.iter().any(|n| n.statement.refs.causation == Some(order.hash())) {
            return Err(EvidenceError::Entry {
                position: order.position(),
                reason: "an order no notice of the ledger's in the stream's orders stream names".into(),
            });
        }
    }
    Ok(())
}
