//! What a failure leaves behind, made to happen at a chosen point by the store's test hooks.
//!
//! A storage failure while the writer built a group used to leave the commands built before it
//! in the group's batch, which was then written (part of a request on disk, its appender told it
//! failed), and the writer went on accepting writes with its state ahead of the disk.

mod common;

use chronicle_store::{AppendError, ExpectedVersion};
use common::{Ledger, record, stream};

#[test]
fn a_storage_failure_halfway_through_a_request_writes_none_of_it_and_stops_the_store() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", chronicle_core::Role::RecordsClerk);
    let s = stream("half");
    l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "first", "{}")]).unwrap();
    let before = l.store.head();
    let cmds: Vec<_> = (0..3).map(|i| record(&clerk, s, &format!("k{i}"), "{}")).collect();
    chronicle_store::hooks::fail_building_at(1);
    let e = l.append(s, ExpectedVersion::Any, cmds.clone()).unwrap_err();
    assert!(matches!(e, AppendError::Storage(_)), "{e:?}");
    assert_eq!(l.store.head(), before, "nothing of the request was published");
    assert!(l.store.read_log(before.len, 10).unwrap().is_empty());
    // The store stops: its state in memory was ahead of the disk.
    let e = l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "after", "{}")]).unwrap_err();
    assert!(matches!(e, AppendError::Unavailable(_)), "{e:?}");
    // After a restart the log is as it was, verifies, and takes the request whole.
    let (tmp, dir) = l.close();
    let l = Ledger::reopen(tmp, dir);
    assert_eq!(l.store.head(), before);
    let r = l.append(s, ExpectedVersion::Any, cmds).unwrap();
    assert_eq!(r.entries.len(), 3);
    let (_tmp, dir) = l.close();
    let report = chronicle_store::verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.fault);
    assert_eq!(report.entries_verified, before.len + 3);
}
