//! Test hooks (feature `test-hooks`, enabled only for the tests): make the writer fail at a
//! chosen point, to test what a failure leaves behind. Each hook is armed for one use.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::AppendError;

const DISARMED: usize = usize::MAX;
static FAIL_BUILDING_AT: AtomicUsize = AtomicUsize::new(DISARMED);

/// The next request built fails, as storage would, before its command `index` is built (the
/// commands before it already are).
pub fn fail_building_at(index: usize) {
    FAIL_BUILDING_AT.store(index, Ordering::SeqCst);
}

pub(crate) fn before_building(index: usize) -> Result<(), AppendError> {
    if FAIL_BUILDING_AT.compare_exchange(index, DISARMED, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        return Err(AppendError::Storage(format!("injected: a storage failure before command {index} was built")));
    }
    Ok(())
}
