//! Test hooks (feature `test-hooks`, enabled only for the tests): pause the service at a chosen
//! point, to make a race happen on purpose. Each hook is armed for one use.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

type Pause = (Sender<()>, Receiver<()>);

static PERSIST_CLONED: Mutex<Option<Pause>> = Mutex::new(None);

/// The next persist, once it has copied the state, says so on the first channel and waits for a
/// word on the second before it seals and writes anything.
pub fn pause_next_persist_after_cloning() -> (Receiver<()>, Sender<()>) {
    let (cloned_tx, cloned_rx) = channel();
    let (go_tx, go_rx) = channel();
    *PERSIST_CLONED.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((cloned_tx, go_rx));
    (cloned_rx, go_tx)
}

pub(crate) fn persist_cloned() {
    let armed = PERSIST_CLONED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    if let Some((cloned, go)) = armed {
        let _ = cloned.send(());
        let _ = go.recv();
    }
}

static VALIDATED: Mutex<Option<Pause>> = Mutex::new(None);

/// The next command validated says so on the first channel and waits for a word on the second
/// before it is appended.
pub fn pause_next_append_after_validation() -> (Receiver<()>, Sender<()>) {
    let (validated_tx, validated_rx) = channel();
    let (go_tx, go_rx) = channel();
    *VALIDATED.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((validated_tx, go_rx));
    (validated_rx, go_tx)
}

pub(crate) fn validated() {
    let armed = VALIDATED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    if let Some((validated, go)) = armed {
        let _ = validated.send(());
        let _ = go.recv();
    }
}
