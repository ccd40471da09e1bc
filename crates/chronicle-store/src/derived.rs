//! What the store derives from each entry (its stream index and idempotency records), and the
//! checks of a stored derived value against the entry it names.
//!
//! An index value is a claim about the log; the entry is the log. Every reader of an `s` or `i`
//! value (the writer, stream reads, retries, expungement's key search, `verify`, the rebuild)
//! checks it with these functions before acting on it, so a value flipped, swapped between keys,
//! or pointed at another entry is never acted on. A key deleted outright cannot be seen this way
//! from the key alone: stream reads check that versions run without a gap and that each entry
//! names its predecessor, the system streams' lengths are in the authenticated head record, and
//! `verify` checks every key against every entry.

use chronicle_core::command::request_digest;
use chronicle_core::{Entry, Hash, StreamId};

use crate::Appended;
use crate::layout::{self, IdemRecord};

/// Checks an `s` value (stream, version) -> (position, hash) against the entry at that position.
pub(crate) fn check_indexed(e: &Entry, stream: &StreamId, version: u64, hash: &Hash) -> Result<(), String> {
    let position = e.position();
    if e.statement.stream != *stream {
        return Err(format!(
            "the index of stream {stream} version {version} names position {position}, in another stream"
        ));
    }
    if e.header.stream_version != version {
        return Err(format!(
            "the index of stream {stream} version {version} names position {position}, which is version {}",
            e.header.stream_version
        ));
    }
    if e.hash() != *hash {
        return Err(format!("the index of stream {stream} version {version} holds another hash than its entry's"));
    }
    Ok(())
}

/// The idempotency record an entry makes: its key and value.
pub(crate) fn idem_record_of(e: &Entry) -> ([u8; 33], IdemRecord) {
    let st = &e.statement;
    let key = layout::idempotency_key(&st.author, &st.refs.idempotency_key);
    let rec = IdemRecord {
        digest: request_digest(e.statement_bytes(), &e.signature),
        appended: Appended { position: e.position(), stream_version: e.header.stream_version, hash: e.hash() },
    };
    (key, rec)
}

/// Checks an `i` record stored under `key` against the entry it names.
pub(crate) fn check_idem(e: &Entry, key: &[u8], rec: &IdemRecord) -> Result<(), String> {
    let (k, made) = idem_record_of(e);
    if k[..] != *key {
        return Err(format!(
            "an idempotency record names position {}, whose author and idempotency key are another's",
            rec.appended.position
        ));
    }
    if made != *rec {
        return Err(format!("the idempotency record of position {} does not match its entry", rec.appended.position));
    }
    Ok(())
}
