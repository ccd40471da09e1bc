//! Live subscriptions: catch-up from a position, then live, with no gap and no duplicate.
//!
//! A subscription is a cursor over positions, not a queue of pushed entries. It reads committed
//! entries from the log up to the committed head, and when it reaches the head it waits for the
//! head to move. The switch from catch-up to live is therefore not a switch at all: the same
//! cursor keeps reading, so nothing can be skipped or delivered twice. The head only moves after
//! a group is durable, so a subscriber never sees an entry that a crash could take back.

use std::collections::VecDeque;

use chronicle_core::Entry;
use tokio::sync::watch;

use crate::error::ReadError;
use crate::layout::Head;
use crate::store::Store;

const READ_AHEAD: usize = 256;

/// A cursor that yields every committed entry from its start position, in order.
pub struct Subscription {
    store: Store,
    next: u64,
    head: watch::Receiver<Head>,
    buffered: VecDeque<Entry>,
}

impl Subscription {
    pub(crate) fn new(store: Store, from: u64) -> Subscription {
        let head = store.watch_head();
        Subscription { store, next: from, head, buffered: VecDeque::new() }
    }

    /// The position of the next entry this subscription will yield.
    pub fn position(&self) -> u64 {
        self.next - self.buffered.len() as u64
    }

    /// The next entry; waits for one to be committed when caught up. Fails with
    /// [`ReadError::Closed`] once the store is gone and everything committed was delivered.
    pub async fn next(&mut self) -> Result<Entry, ReadError> {
        loop {
            if let Some(e) = self.buffered.pop_front() {
                return Ok(e);
            }
            let len = self.head.borrow_and_update().len;
            if self.next < len {
                let page = self.store.read_log(self.next, READ_AHEAD.min((len - self.next) as usize))?;
                self.next += page.len() as u64;
                self.buffered.extend(page);
                continue;
            }
            if self.head.changed().await.is_err() {
                return Err(ReadError::Closed);
            }
        }
    }
}
