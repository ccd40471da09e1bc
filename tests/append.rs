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

#[test]
fn a_projection_larger_than_one_batch_is_written_in_chunks_read_back_whole_and_cleared() {
    use chronicle_store::PROJECTION_BATCH;
    let l = Ledger::new();
    let n = 2 * PROJECTION_BATCH + 17;
    let blobs: Vec<(StreamId, Vec<u8>)> =
        (0..n as u32).map(|i| (StreamId::random(), i.to_be_bytes().repeat(8))).collect();
    l.store.write_projection(blobs.clone(), vec![], 42).unwrap();
    let (next, read) = l.store.read_projection().unwrap().expect("a projection is persisted");
    assert_eq!(next, 42);
    let mut want = blobs.clone();
    want.sort();
    assert_eq!(read, want, "every chunk is read back");
    // A second persist removes some streams and rewrites others, more than one batch of each.
    let (gone, kept) = want.split_at(PROJECTION_BATCH + 3);
    let removed: Vec<StreamId> = gone.iter().map(|(s, _)| *s).collect();
    let rewritten: Vec<(StreamId, Vec<u8>)> = kept.iter().map(|(s, _)| (*s, b"new".to_vec())).collect();
    l.store.write_projection(rewritten.clone(), removed, 99).unwrap();
    assert_eq!(l.store.read_projection().unwrap(), Some((99, rewritten)));
    l.store.clear_projection().unwrap();
    assert_eq!(l.store.read_projection().unwrap(), None, "no marker: nothing is persisted");
    assert!(l.store.read_projection_page(None, 10).unwrap().is_empty(), "and no blob is left");
}

#[test]
fn a_whole_projection_write_replaces_every_part_and_has_no_marker_until_it_finishes() {
    use chronicle_store::PROJECTION_BATCH;
    let l = Ledger::new();
    let old: Vec<(StreamId, Vec<u8>)> =
        (0..PROJECTION_BATCH as u32 + 5).map(|i| (StreamId::random(), i.to_be_bytes().to_vec())).collect();
    l.store.write_projection(old.clone(), vec![], 7).unwrap();
    // The new projection keeps half of the old streams (rewritten) and adds streams of its own.
    let mut new: Vec<(StreamId, Vec<u8>)> = old.iter().step_by(2).map(|(s, _)| (*s, b"again".to_vec())).collect();
    new.extend((0..100).map(|_| (StreamId::random(), b"fresh".to_vec())));
    // A key in the projection's space that is no part at all (damage) goes too.
    let (_tmp, dir) = l.close();
    {
        let raw = common::raw_db(&dir.log_dir());
        raw.insert(b"rdamaged", &b"?"[..]).unwrap();
        raw.flush().unwrap();
    }
    let store = dir.open().unwrap();
    let mut w = store.begin_projection_write(true).unwrap();
    assert_eq!(store.projection_marker().unwrap(), None, "no projection while it is being replaced");
    let (first, rest) = new.split_at(PROJECTION_BATCH / 2);
    w.write(first.to_vec(), vec![]).unwrap();
    assert_eq!(store.projection_marker().unwrap(), None, "nor between its batches");
    w.write(rest.to_vec(), vec![]).unwrap();
    w.finish(11).unwrap();
    new.sort();
    assert_eq!(store.read_projection().unwrap(), Some((11, new)), "exactly the new parts, none of the old");
    // A batch larger than the limit is refused, and writes nothing.
    let mut w = store.begin_projection_write(false).unwrap();
    let too_many: Vec<StreamId> = (0..=PROJECTION_BATCH).map(|_| StreamId::random()).collect();
    assert!(w.write(vec![], too_many).is_err());
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
