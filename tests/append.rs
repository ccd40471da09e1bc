//! The append path: atomicity, idempotency, expected versions, bad input, reads, subscriptions.

mod common;

use chronicle_core::limits::{BATCH_ENTRIES_MAX, PAYLOAD_BYTES_MAX};
use chronicle_core::{
    Command, CommandError, Draft, EventType, PayloadKind, PrincipalId, References, RegistryError, RegistryEvent, Role,
    Signer, StreamId, Timestamp,
};
use chronicle_store::{AppendError, ExpectedVersion, verify_log};
use common::{Ledger, record, stream};

fn log_len(l: &Ledger) -> u64 {
    l.store.head().len
}

#[test]
fn same_request_twice_appends_once_and_returns_the_same_positions() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    let s = stream("a");
    let cmds = vec![record(&clerk, s, "k1", "{}"), record(&clerk, s, "k2", "{}")];
    let first = l.append(s, ExpectedVersion::NoStream, cmds.clone()).unwrap();
    let len = log_len(&l);
    // The retry still says NoStream: it must get the first answer, not a version conflict.
    let second = l.append(s, ExpectedVersion::NoStream, cmds).unwrap();
    assert!(!first.duplicate && second.duplicate);
    assert_eq!(first.entries, second.entries);
    assert_eq!(first.recorded_time, second.recorded_time);
    assert_eq!(log_len(&l), len);
}

#[test]
fn reusing_an_idempotency_key_for_another_command_is_refused() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    let s = stream("a");
    l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "k1", "{\"a\":1}")]).unwrap();
    let len = log_len(&l);
    let e = l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "k1", "{\"a\":2}")]).unwrap_err();
    assert_eq!(e, AppendError::IdempotencyConflict { index: 0 });
    // Part of a request already appended, part new: refused as a whole.
    let e = l
        .append(s, ExpectedVersion::Any, vec![record(&clerk, s, "k9", "{}"), record(&clerk, s, "k1", "{\"a\":1}")])
        .unwrap_err();
    assert!(matches!(e, AppendError::IdempotencyConflict { .. }));
    let e = l
        .append(s, ExpectedVersion::Any, vec![record(&clerk, s, "k5", "{}"), record(&clerk, s, "k5", "{}")])
        .unwrap_err();
    assert_eq!(e, AppendError::DuplicateIdempotencyKey { first: 0, second: 1 });
    assert_eq!(log_len(&l), len);
}

#[test]
fn a_batch_with_one_invalid_entry_appends_nothing() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    let stranger = Signer::generate(PrincipalId::new("stranger").unwrap());
    let s = stream("a");
    let len = log_len(&l);
    let head = l.store.head();
    let batch = vec![record(&clerk, s, "k1", "{}"), record(&clerk, s, "k2", "{}"), record(&stranger, s, "k3", "{}")];
    let e = l.append(s, ExpectedVersion::Any, batch).unwrap_err();
    assert!(matches!(e, AppendError::Unauthorized { index: 2, source: RegistryError::UnknownPrincipal(_) }), "{e:?}");
    assert_eq!(l.store.head(), head);
    assert_eq!(l.store.stream_version(&s).unwrap(), None);
    assert_eq!(log_len(&l), len);
    // The valid commands alone go through afterwards: nothing of the refused batch was kept.
    let r = l.append(s, ExpectedVersion::NoStream, vec![record(&clerk, s, "k1", "{}")]).unwrap();
    assert_eq!(r.entries[0].stream_version, 0);
}

#[test]
fn expected_versions_are_enforced() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    let s = stream("a");
    assert!(matches!(
        l.append(s, ExpectedVersion::Exact(0), vec![record(&clerk, s, "a", "{}")]),
        Err(AppendError::WrongExpectedVersion { actual: None, .. })
    ));
    l.append(s, ExpectedVersion::NoStream, vec![record(&clerk, s, "b", "{}")]).unwrap();
    assert!(matches!(
        l.append(s, ExpectedVersion::NoStream, vec![record(&clerk, s, "c", "{}")]),
        Err(AppendError::WrongExpectedVersion { actual: Some(0), .. })
    ));
    assert!(matches!(
        l.append(s, ExpectedVersion::Exact(5), vec![record(&clerk, s, "d", "{}")]),
        Err(AppendError::WrongExpectedVersion { actual: Some(0), .. })
    ));
    let r = l.append(s, ExpectedVersion::Exact(0), vec![record(&clerk, s, "e", "{}")]).unwrap();
    assert_eq!(r.entries[0].stream_version, 1);
    let r = l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "f", "{}")]).unwrap();
    assert_eq!(r.entries[0].stream_version, 2);
}

#[test]
fn bad_input_gets_a_precise_error_and_leaves_the_log_unchanged() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    let s = stream("a");
    l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "first", "{}")]).unwrap();
    let head = l.store.head();

    // Malformed: statement bytes that do not decode, a payload that does not match its commitment.
    let good = record(&clerk, s, "x", "{}");
    let mut bad_statement = good.statement_bytes().to_vec();
    bad_statement[0] = 9;
    assert!(matches!(
        Command::from_parts(bad_statement, *good.salt(), good.payload().to_vec(), *good.signature()),
        Err(CommandError::Statement(_))
    ));
    assert_eq!(
        Command::from_parts(
            good.statement_bytes().to_vec(),
            *good.salt(),
            b"{\"other\":1}".to_vec(),
            *good.signature()
        ),
        Err(CommandError::CommitmentMismatch)
    );
    let truncated = &good.statement_bytes()[..good.statement_bytes().len() - 3];
    assert!(Command::from_parts(truncated.to_vec(), *good.salt(), good.payload().to_vec(), *good.signature()).is_err());

    // Oversize payload, refused before signing and when rebuilt from parts.
    let big = vec![b'x'; PAYLOAD_BYTES_MAX + 1];
    let draft = Draft {
        stream: s,
        event_type: EventType::new("test.recorded").unwrap(),
        effective_time: Timestamp::now(),
        refs: References { idempotency_key: b"big".to_vec(), ..Default::default() },
        payload_kind: PayloadKind::Sealed,
        payload: big.clone(),
    };
    assert!(matches!(Command::sign(&clerk, draft), Err(CommandError::PayloadTooLarge { .. })));
    assert!(matches!(
        Command::from_parts(good.statement_bytes().to_vec(), *good.salt(), big, *good.signature()),
        Err(CommandError::PayloadTooLarge { .. })
    ));

    // Too many commands in one batch; an empty batch.
    let many: Vec<Command> = (0..=BATCH_ENTRIES_MAX).map(|i| good_with_key(&clerk, s, i)).collect();
    assert!(matches!(l.append(s, ExpectedVersion::Any, many), Err(AppendError::TooManyCommands { .. })));
    assert_eq!(l.append(s, ExpectedVersion::Any, vec![]), Err(AppendError::Empty));

    // Wrong signature: a signature over other bytes.
    let other = record(&clerk, s, "y", "{}");
    let forged =
        Command::from_parts(good.statement_bytes().to_vec(), *good.salt(), good.payload().to_vec(), *other.signature())
            .unwrap();
    assert_eq!(
        l.append(s, ExpectedVersion::Any, vec![forged]),
        Err(AppendError::Unauthorized { index: 0, source: RegistryError::BadSignature })
    );

    // Unknown principal; a key registered to someone else.
    let stranger = Signer::generate(PrincipalId::new("stranger").unwrap());
    assert!(matches!(
        l.append(s, ExpectedVersion::Any, vec![record(&stranger, s, "z", "{}")]),
        Err(AppendError::Unauthorized { source: RegistryError::UnknownPrincipal(_), .. })
    ));
    let impostor = Signer::new(PrincipalId::new("clerk").unwrap(), ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    assert!(matches!(
        l.append(s, ExpectedVersion::Any, vec![record(&impostor, s, "w", "{}")]),
        Err(AppendError::Unauthorized { source: RegistryError::UnknownKey { .. }, .. })
    ));

    // Wrong stream version.
    assert!(matches!(
        l.append(s, ExpectedVersion::Exact(3), vec![record(&clerk, s, "v", "{}")]),
        Err(AppendError::WrongExpectedVersion { .. })
    ));

    // A command naming another stream than its request; a record event in the registry stream;
    // a registry event outside it; a public payload in a record stream; a reserved system stream.
    assert!(matches!(
        l.append(stream("b"), ExpectedVersion::Any, vec![record(&clerk, s, "u", "{}")]),
        Err(AppendError::StreamMismatch { index: 0, .. })
    ));
    assert!(matches!(
        l.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![record(&clerk, StreamId::REGISTRY, "t", "{}")]),
        Err(AppendError::NotAllowedInStream { .. })
    ));
    let mut reg = RegistryEvent::register(
        PrincipalId::new("p2").unwrap(),
        Role::Court,
        &Signer::generate(PrincipalId::new("p2").unwrap()).verifying_key(),
    )
    .draft();
    reg.stream = s;
    assert!(matches!(
        l.append(s, ExpectedVersion::Any, vec![Command::sign(&l.admin, reg).unwrap()]),
        Err(AppendError::NotAllowedInStream { .. })
    ));
    let mut public = Draft {
        stream: s,
        event_type: EventType::new("test.recorded").unwrap(),
        effective_time: Timestamp::now(),
        refs: References { idempotency_key: b"pub".to_vec(), ..Default::default() },
        payload_kind: PayloadKind::Public,
        payload: b"{}".to_vec(),
    };
    assert!(matches!(
        l.append(s, ExpectedVersion::Any, vec![Command::sign(&clerk, public.clone()).unwrap()]),
        Err(AppendError::NotAllowedInStream { .. })
    ));
    public.stream = StreamId([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    public.payload_kind = PayloadKind::Sealed;
    assert!(matches!(
        l.append(public.stream, ExpectedVersion::Any, vec![Command::sign(&clerk, public).unwrap()]),
        Err(AppendError::NotAllowedInStream { reason: "reserved system stream", .. })
    ));

    // A clerk may not register principals.
    let newcomer = Signer::generate(PrincipalId::new("newcomer").unwrap());
    let by_clerk = Command::sign(
        &clerk,
        RegistryEvent::register(newcomer.principal().clone(), Role::Admin, &newcomer.verifying_key()).draft(),
    )
    .unwrap();
    assert!(matches!(
        l.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![by_clerk]),
        Err(AppendError::Registry { source: RegistryError::NotAllowed { .. }, .. })
    ));

    assert_eq!(l.store.head(), head, "no refused request changed the log");
    let (_t, dir) = l.close();
    assert!(verify_log(&dir.log_dir(), |_, _| {}).unwrap().is_ok());
}

fn good_with_key(clerk: &Signer, s: StreamId, i: usize) -> Command {
    record(clerk, s, &format!("many-{i}"), "{}")
}

#[test]
fn rotated_and_revoked_keys_are_refused_from_their_position_on() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    let s = stream("a");
    l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "1", "{}")]).unwrap();
    let next = Signer::generate(clerk.principal().clone());
    let rot = Command::sign(
        &clerk,
        RegistryEvent::rotate(clerk.principal().clone(), &next.verifying_key(), clerk.key_id()).draft(),
    )
    .unwrap();
    l.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![rot]).unwrap();
    assert!(matches!(
        l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, "2", "{}")]),
        Err(AppendError::Unauthorized { source: RegistryError::KeyRetired { .. }, .. })
    ));
    l.append(s, ExpectedVersion::Any, vec![record(&next, s, "3", "{}")]).unwrap();
    let rev = Command::sign(
        &l.admin,
        RegistryEvent::revoke(clerk.principal().clone(), next.key_id(), "laptop stolen").draft(),
    )
    .unwrap();
    l.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![rev]).unwrap();
    assert!(matches!(
        l.append(s, ExpectedVersion::Any, vec![record(&next, s, "4", "{}")]),
        Err(AppendError::Unauthorized { source: RegistryError::KeyRevoked { .. }, .. })
    ));
    // Earlier entries signed by keys that are no longer valid still verify: history is not rewritten.
    let (_t, dir) = l.close();
    let report = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.fault);
    // And the registry survives a reopen.
    let store = dir.open().unwrap();
    assert!(store.registry().key(&next.key_id()).unwrap().revoked_at.is_some());
}

#[test]
fn reads_by_position_stream_and_log_and_payloads_open() {
    let l = Ledger::new();
    let clerk = l.principal("clerk", Role::RecordsClerk);
    let (a, b) = (stream("a"), stream("b"));
    for i in 0..5 {
        l.append(a, ExpectedVersion::Any, vec![record(&clerk, a, &format!("a{i}"), &format!("{{\"a\":{i}}}"))])
            .unwrap();
        l.append(b, ExpectedVersion::Any, vec![record(&clerk, b, &format!("b{i}"), &format!("{{\"b\":{i}}}"))])
            .unwrap();
    }
    let from2 = l.store.read_stream(&a, 2, 10).unwrap();
    assert_eq!(from2.len(), 3);
    assert_eq!(from2[0].header.stream_version, 2);
    assert_eq!(&l.store.open_payload(&from2[0]).unwrap()[..], b"{\"a\":2}");
    let head = l.store.head();
    let log = l.store.read_log(0, 100).unwrap();
    assert_eq!(log.len() as u64, head.len);
    assert_eq!(log.last().unwrap().hash(), head.last_hash);
    assert_eq!(l.store.entry(head.len).unwrap(), None);
    assert_eq!(l.store.entry(3).unwrap().unwrap(), log[3]);
    assert!(l.store.read_log(0, 1_000_000).is_err(), "page limit enforced");
}

#[test]
fn subscription_catches_up_then_goes_live_with_no_gap_and_no_duplicate() {
    let l = Ledger::new();
    let clerk = std::sync::Arc::new(l.principal("clerk", Role::RecordsClerk));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(subscription_body(l, clerk));
}

async fn subscription_body(l: Ledger, clerk: std::sync::Arc<Signer>) {
    let s = stream("a");
    for i in 0..300 {
        l.store
            .append_async(chronicle_store::AppendRequest {
                stream: s,
                expected: ExpectedVersion::Any,
                commands: vec![record(&clerk, s, &format!("pre{i}"), "{}")],
            })
            .await
            .unwrap();
    }
    let mut sub = l.store.subscribe(1);
    let store = l.store.clone();
    let c = clerk.clone();
    let writer = tokio::spawn(async move {
        for i in 0..300 {
            store
                .append_async(chronicle_store::AppendRequest {
                    stream: s,
                    expected: ExpectedVersion::Any,
                    commands: vec![record(&c, s, &format!("live{i}"), "{}")],
                })
                .await
                .unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let total = l.store.head().len + 300;
    let mut expected = 1;
    while expected < total {
        let e = sub.next().await.unwrap();
        assert_eq!(e.position(), expected, "no gap, no duplicate");
        expected += 1;
    }
    writer.await.unwrap();
    let none = tokio::time::timeout(std::time::Duration::from_millis(50), sub.next()).await;
    assert!(none.is_err(), "nothing past the head");
}

/// Sealed parts, by stream.
type Parts = Vec<(StreamId, Vec<u8>)>;

/// The persisted projection as (position, parts), or `None`.
fn persisted(store: &chronicle_store::Store) -> Option<(u64, Parts)> {
    store.read_projection().unwrap().map(|p| (p.next, p.parts))
}

/// A ledger whose log holds at least `len` entries: a persisted projection is bound to the entry
/// before the position it reaches, which must be in the log.
fn ledger_reaching(len: u64) -> Ledger {
    let l = Ledger::new();
    let clerk = l.principal("filler", chronicle_core::Role::RecordsClerk);
    let s = stream("filler");
    let mut i = 0;
    while l.store.head().len < len {
        l.append(s, ExpectedVersion::Any, vec![record(&clerk, s, &format!("f{i}"), "{}")]).unwrap();
        i += 1;
    }
    l
}

/// The snapshot files in a data directory's projection directory.
fn snapshot_files(dir: &chronicle::datadir::DataDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.store_paths().projection)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_projection_larger_than_one_batch_is_written_in_chunks_read_back_whole_and_cleared() {
    use chronicle_store::PROJECTION_BATCH;
    let l = ledger_reaching(100);
    let n = 2 * PROJECTION_BATCH + 17;
    let blobs: Vec<(StreamId, Vec<u8>)> =
        (0..n as u32).map(|i| (StreamId::random(), i.to_be_bytes().repeat(8))).collect();
    l.store.write_projection(blobs.clone(), vec![], 42).unwrap();
    let (next, read) = persisted(&l.store).expect("a projection is persisted");
    assert_eq!(next, 42);
    let mut want = blobs.clone();
    want.sort();
    assert_eq!(read, want, "every chunk is read back");
    // A second persist removes some streams and rewrites others, more than one batch of each.
    let (gone, kept) = want.split_at(PROJECTION_BATCH + 3);
    let removed: Vec<StreamId> = gone.iter().map(|(s, _)| *s).collect();
    let rewritten: Vec<(StreamId, Vec<u8>)> = kept.iter().map(|(s, _)| (*s, b"new".to_vec())).collect();
    l.store.write_projection(rewritten.clone(), removed, 99).unwrap();
    assert_eq!(persisted(&l.store), Some((99, rewritten)));
    l.store.clear_projection().unwrap();
    assert_eq!(persisted(&l.store), None, "no marker: nothing is persisted");
    assert_eq!(l.store.sweep_projection(usize::MAX).unwrap(), 0, "and no part is left");
}

#[test]
fn a_whole_projection_is_a_new_snapshot_and_the_old_one_holds_until_it_is_finished() {
    use chronicle_store::{PROJECTION_BATCH, ProjectionShape};
    let l = ledger_reaching(100);
    let old: Vec<(StreamId, Vec<u8>)> =
        (0..PROJECTION_BATCH as u32 + 5).map(|i| (StreamId::random(), i.to_be_bytes().to_vec())).collect();
    l.store.write_projection(old.clone(), vec![], 7).unwrap();
    let old_persisted = persisted(&l.store).unwrap();
    // The new projection keeps half of the old streams (rewritten) and adds streams of its own.
    let mut new: Vec<(StreamId, Vec<u8>)> = old.iter().step_by(2).map(|(s, _)| (*s, b"again".to_vec())).collect();
    new.extend((0..100).map(|_| (StreamId::random(), b"fresh".to_vec())));
    new.sort();
    // A key in the projection's space that is no part at all (damage) is swept too.
    let (_tmp, dir) = l.close();
    {
        let raw = common::raw_db(&dir.log_dir());
        raw.insert(b"rdamaged", &b"?"[..]).unwrap();
        raw.flush().unwrap();
    }
    let store = dir.open().unwrap();
    let mut w = store.begin_projection_write(true).unwrap();
    assert_eq!(persisted(&store), Some(old_persisted.clone()), "the old projection holds while the new is written");
    let (first, rest) = new.split_at(PROJECTION_BATCH / 2);
    w.write(first.to_vec(), vec![]).unwrap();
    assert_eq!(persisted(&store), Some(old_persisted.clone()), "and between its batches");
    // Parts of a snapshot come in stream id order, and a snapshot removes nothing.
    assert!(w.write(vec![first[0].clone()], vec![]).is_err(), "out of order is refused");
    assert!(w.write(vec![], vec![StreamId::random()]).is_err(), "so is a removal");
    w.write(rest.to_vec(), vec![]).unwrap();
    w.finish(11).unwrap();
    assert_eq!(persisted(&store), Some((11, new.clone())), "exactly the new parts, none of the old");
    assert_eq!(snapshot_files(&dir), vec!["0000000000000001.snap".to_string()]);
    assert_eq!(store.projection_shape().unwrap(), ProjectionShape { snapshot_parts: new.len() as u64, overlay: 0 });
    // The old overlay is never read again, and is swept: every old key and the damaged one.
    assert_eq!(store.sweep_projection(10).unwrap(), 10, "a sweep stops at its limit");
    assert_eq!(store.sweep_projection(usize::MAX).unwrap(), old.len() + 1 - 10);
    assert_eq!(store.sweep_projection(usize::MAX).unwrap(), 0);
    assert_eq!(persisted(&store), Some((11, new.clone())), "the sweep touched nothing live");

    // Persists over the snapshot: one stream rewritten, one removed, one added.
    let added = (StreamId::random(), b"added".to_vec());
    let rewritten = (new[3].0, b"rewritten".to_vec());
    store.write_projection(vec![rewritten.clone(), added.clone()], vec![new[5].0], 12).unwrap();
    let mut want = new.clone();
    want[3] = rewritten;
    want.remove(5);
    want.push(added);
    want.sort();
    assert_eq!(persisted(&store), Some((12, want.clone())), "the overlay wins over the snapshot");
    assert_eq!(store.projection_shape().unwrap().overlay, 3, "the removal is kept as a key too");

    // A batch larger than the limit is refused, and writes nothing.
    let mut w = store.begin_projection_write(false).unwrap();
    let too_many: Vec<StreamId> = (0..=PROJECTION_BATCH).map(|_| StreamId::random()).collect();
    assert!(w.write(vec![], too_many).is_err());
    w.finish(12).unwrap();
    assert_eq!(persisted(&store), Some((12, want)));
}

#[test]
fn a_snapshot_write_abandoned_midway_leaves_the_projection_before_it() {
    let l = ledger_reaching(100);
    let first: Vec<(StreamId, Vec<u8>)> = {
        let mut v: Vec<_> = (0..50u32).map(|i| (StreamId::random(), i.to_be_bytes().to_vec())).collect();
        v.sort();
        v
    };
    let mut w = l.store.begin_projection_write(true).unwrap();
    w.write(first.clone(), vec![]).unwrap();
    w.finish(3).unwrap();
    // A second snapshot is begun and never finished (a crash, or an error while writing it).
    let mut w = l.store.begin_projection_write(true).unwrap();
    w.write(vec![(StreamId::random(), b"never".to_vec())], vec![]).unwrap();
    drop(w);
    let (_tmp, dir) = l.close();
    assert_eq!(snapshot_files(&dir).len(), 2, "the unfinished file is there");
    let store = dir.open().unwrap();
    assert_eq!(persisted(&store), Some((3, first.clone())), "the first snapshot is still the projection");
    // The next snapshot takes the abandoned one's place, and the files of both earlier go.
    let mut w = store.begin_projection_write(true).unwrap();
    w.write(first[..10].to_vec(), vec![]).unwrap();
    w.finish(4).unwrap();
    assert_eq!(persisted(&store), Some((4, first[..10].to_vec())));
    assert_eq!(snapshot_files(&dir), vec!["0000000000000002.snap".to_string()]);
}

#[test]
fn a_damaged_or_missing_snapshot_is_refused_never_read_in_part() {
    let l = ledger_reaching(100);
    let parts: Vec<(StreamId, Vec<u8>)> = {
        let mut v: Vec<_> = (0..200u32).map(|i| (StreamId::random(), i.to_be_bytes().repeat(4))).collect();
        v.sort();
        v
    };
    let mut w = l.store.begin_projection_write(true).unwrap();
    w.write(parts.clone(), vec![]).unwrap();
    w.finish(9).unwrap();
    let (_tmp, dir) = l.close();
    let file = dir.store_paths().projection.join("0000000000000001.snap");
    let good = std::fs::read(&file).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("a flipped bit in a part", {
            let mut b = good.clone();
            let at = b.len() - 3;
            b[at] ^= 1;
            b
        }),
        ("cut short", good[..good.len() - 1].to_vec()),
        ("a byte too many", [good.clone(), vec![0]].concat()),
        ("the header of another generation", {
            let mut b = good.clone();
            let at = b"chronicle.projection-snapshot.v1\n".len() + 7;
            b[at] ^= 3;
            b
        }),
    ];
    for (what, bytes) in damages {
        std::fs::write(&file, &bytes).unwrap();
        let store = dir.open().unwrap();
        let err = store.read_projection().expect_err(what);
        assert!(err.to_string().contains("persisted projection"), "{what}: {err}");
        assert_eq!(store.projection_marker().unwrap(), Some(9), "{what}: nothing was changed");
    }
    std::fs::remove_file(&file).unwrap();
    let store = dir.open().unwrap();
    assert!(store.read_projection().is_err(), "a missing snapshot is an error, not an empty projection");
    std::fs::write(&file, &good).unwrap();
    assert_eq!(persisted(&store), Some((9, parts)), "the file as written reads again");
}

#[test]
fn projection_parts_are_sealed_many_at_once_under_each_streams_own_key() {
    let l = Ledger::new();
    let clerk = l.principal("clerk@example", Role::RecordsClerk);
    let mut streams: Vec<StreamId> = (0..40).map(|i| stream(&format!("sealed-{i}"))).collect();
    for (i, s) in streams.iter().enumerate() {
        l.append(*s, ExpectedVersion::Any, vec![record(&clerk, *s, &format!("k{i}"), "{}")]).unwrap();
    }
    streams.sort();
    let parts: Vec<(StreamId, Vec<u8>)> = streams.iter().map(|s| (*s, format!("part of {s}").into_bytes())).collect();
    let sealed = l.store.seal_for_streams(parts.clone()).unwrap();
    assert_eq!(sealed.len(), parts.len());
    for ((s, plain), (t, blob)) in parts.iter().zip(&sealed) {
        assert_eq!(s, t);
        assert_eq!(&l.store.open_for_stream(s, blob).unwrap()[..], &plain[..], "opens under its own stream");
        let other = if *s == streams[0] { streams[1] } else { streams[0] };
        assert!(l.store.open_for_stream(&other, blob).is_err(), "and under no other");
    }
    // Out of order, or a stream with no data key: refused.
    let mut shuffled = parts.clone();
    shuffled.swap(0, 1);
    assert!(l.store.seal_for_streams(shuffled).is_err());
    let mut unknown = parts;
    unknown.push((StreamId([0xff; 16]), b"x".to_vec()));
    assert!(l.store.seal_for_streams(unknown).is_err());
}

#[test]
fn a_damaged_snapshot_record_is_refused_and_the_next_snapshot_starts_over() {
    let l = ledger_reaching(100);
    let parts: Parts = {
        let mut v: Vec<_> = (0..20u32).map(|i| (StreamId::random(), i.to_be_bytes().to_vec())).collect();
        v.sort();
        v
    };
    let mut w = l.store.begin_projection_write(true).unwrap();
    w.write(parts.clone(), vec![]).unwrap();
    w.finish(5).unwrap();
    l.store.write_projection(vec![(parts[0].0, b"over".to_vec())], vec![], 6).unwrap();
    let (_tmp, dir) = l.close();
    {
        let raw = common::raw_db(&dir.log_dir());
        raw.insert(b"mprojection-snapshot", &b"short"[..]).unwrap();
        raw.flush().unwrap();
    }
    let store = dir.open().unwrap();
    assert!(store.read_projection().is_err(), "a malformed snapshot record is an error");
    assert!(store.write_projection(vec![], vec![], 7).is_err(), "and so is a persist over it");
    // A new snapshot drops everything persisted (it cannot tell which generations exist) and
    // starts again from the first.
    let mut w = store.begin_projection_write(true).unwrap();
    w.write(parts[..3].to_vec(), vec![]).unwrap();
    w.finish(8).unwrap();
    assert_eq!(persisted(&store), Some((8, parts[..3].to_vec())));
    assert_eq!(snapshot_files(&dir), vec!["0000000000000001.snap".to_string()]);
    assert_eq!(store.sweep_projection(usize::MAX).unwrap(), 0, "no overlay key was left behind");
}
