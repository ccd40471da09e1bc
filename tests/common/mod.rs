//! Helpers shared by the integration tests: a fresh ledger in a temporary directory, principals,
//! and commands.
#![allow(dead_code)]

use chronicle::datadir::DataDir;
use chronicle_core::{
    Command, Draft, EventType, PayloadKind, PrincipalId, References, RegistryEvent, Role, Signer, StreamId, Timestamp,
};
use chronicle_store::{AppendReceipt, AppendRequest, ExpectedVersion, Store};

pub struct Ledger {
    pub tmp: tempfile::TempDir,
    pub dir: DataDir,
    pub store: Store,
    pub admin: Signer,
    pub ledger: Signer,
}

impl Ledger {
    pub fn new() -> Ledger {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(tmp.path().join("data"), None);
        let init = dir.init("test.chronicle.localhost/ledger").expect("init");
        Ledger { tmp, dir, store: init.store, admin: init.admin, ledger: init.ledger }
    }

    /// Registers a principal with a fresh key and returns its signer.
    pub fn principal(&self, id: &str, role: Role) -> Signer {
        let s = Signer::generate(PrincipalId::new(id).unwrap());
        let cmd = Command::sign(
            &self.admin,
            RegistryEvent::register(s.principal().clone(), role, &s.verifying_key()).draft(),
        )
        .unwrap();
        self.store
            .append(AppendRequest { stream: StreamId::REGISTRY, expected: ExpectedVersion::Any, commands: vec![cmd] })
            .expect("register principal");
        s
    }

    pub fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        commands: Vec<Command>,
    ) -> Result<AppendReceipt, chronicle_store::AppendError> {
        self.store.append(AppendRequest { stream, expected, commands })
    }

    /// Opens a closed ledger's data directory again.
    pub fn reopen(tmp: tempfile::TempDir, dir: DataDir) -> Ledger {
        let store = dir.open().expect("open the store again");
        Ledger { admin: dir.admin().unwrap(), ledger: dir.ledger().unwrap(), tmp, dir, store }
    }

    /// Wraps a store opened otherwise (as after accepting a rollback).
    pub fn over(tmp: tempfile::TempDir, dir: DataDir, store: Store) -> Ledger {
        Ledger { admin: dir.admin().unwrap(), ledger: dir.ledger().unwrap(), tmp, dir, store }
    }

    /// Closes the store (so sled's lock is released) and returns the log directory.
    pub fn close(self) -> (tempfile::TempDir, DataDir) {
        drop(self.store);
        (self.tmp, self.dir)
    }
}

/// A sealed record command with the given idempotency key and JSON body.
pub fn record(signer: &Signer, stream: StreamId, key: &str, body: &str) -> Command {
    Command::sign(
        signer,
        Draft {
            stream,
            event_type: EventType::new("test.recorded").unwrap(),
            effective_time: Timestamp::now(),
            refs: References { idempotency_key: key.as_bytes().to_vec(), ..Default::default() },
            payload_kind: PayloadKind::Sealed,
            payload: body.as_bytes().to_vec(),
        },
    )
    .unwrap()
}

pub fn stream(name: &str) -> StreamId {
    StreamId::derive("test", name)
}

/// Opens a closed ledger's sled directory directly, as a tamperer would. No background flusher,
/// so dropping it releases the directory lock at once.
pub fn raw_db(log: &std::path::Path) -> sled::Db {
    for _ in 0..150 {
        match sled::Config::new().path(log).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("open sled: {e}"),
        }
    }
    panic!("sled directory still locked")
}

/// A ledger with the records service and one principal of each role the scenarios need.
pub struct Bureau {
    pub ledger: Ledger,
    pub records: chronicle_records::Records,
    pub clerk: Signer,
    pub court: Signer,
    pub police: Signer,
    pub employer: Signer,
    pub auditor: Signer,
}

impl Bureau {
    pub fn new() -> Bureau {
        let ledger = Ledger::new();
        let clerk = ledger.principal("clerk", Role::RecordsClerk);
        let court = ledger.principal("court.district-4", Role::Court);
        let police = ledger.principal("pd.metro", Role::LawEnforcement);
        let employer = ledger.principal("acme.hr", Role::Employer);
        let auditor = ledger.principal("auditor", Role::Auditor);
        let records = chronicle_records::Records::open(ledger.store.clone()).expect("open records");
        let own = Signer::from_pem(ledger.ledger.principal().clone(), &ledger.ledger.to_pem()).unwrap();
        records.set_ledger(own).expect("ledger signer");
        Bureau { ledger, records, clerk, court, police, employer, auditor }
    }

    pub fn rec(
        &self,
        who: &Signer,
        stream: StreamId,
        ev: chronicle_records::RecordEvent,
    ) -> Result<chronicle_store::AppendReceipt, chronicle_records::ServiceError> {
        self.records.record(who, stream, &ev, Timestamp::now(), None)
    }

    /// A whole history as the clerk sees it (for administration), page by page.
    pub fn history(
        &self,
        target: StreamId,
    ) -> Result<Vec<chronicle_records::history::HistoryItem>, chronicle_records::ServiceError> {
        let clerk = self.records.caller(self.clerk.principal())?;
        let mut q = chronicle_records::HistoryQuery {
            target: chronicle_records::Target::Stream(target),
            purpose: chronicle_records::Purpose::A,
            from: 0,
            limit: 0,
            up_to: None,
            as_recorded: None,
        };
        let mut out = Vec::new();
        loop {
            let page = self.records.history_page(&self.ledger.ledger, &clerk, q.clone())?;
            out.extend(page.items);
            match page.next {
                Some(n) => q.from = n,
                None => return Ok(out),
            }
        }
    }

    /// A subject's access log (releases, refusals, audit entries), read from the store.
    pub fn access_log(&self, subject: StreamId) -> Vec<chronicle_records::RecordEvent> {
        let stream = chronicle_records::model::access_stream(&subject);
        self.ledger
            .store
            .read_stream(&stream, 0, 10_000)
            .unwrap()
            .iter()
            .filter_map(|e| match chronicle_records::service::decode(&self.ledger.store, e).unwrap() {
                chronicle_records::service::Decoded::Event(_, ev) => Some(ev),
                _ => None,
            })
            .collect()
    }

    /// Enrolls a subject; returns its id.
    pub fn enroll(&self, sid: &str, last: &str, first: &str, dob: &str) -> StreamId {
        let id = StreamId::random();
        self.rec(
            &self.clerk,
            id,
            chronicle_records::RecordEvent::SubjectEnrolled {
                sid: sid.into(),
                fbi: None,
                name: chronicle_records::Name { last: last.into(), first: first.into(), middle: None },
                dob: chronicle_records::Date::parse(dob).unwrap(),
            },
        )
        .expect("enroll");
        id
    }

    /// Records an arrest with charges `(seq, statute, literal, level)`; returns the cycle id.
    pub fn arrest(
        &self,
        subject: StreamId,
        otn: &str,
        date: &str,
        charges: &[(u32, &str, &str, chronicle_records::Level)],
    ) -> StreamId {
        let cycle = StreamId::random();
        self.rec(
            &self.police,
            cycle,
            chronicle_records::RecordEvent::ArrestRecorded {
                subject: subject.to_hex(),
                tracking_number: otn.into(),
                agency_ori: "ZZ0000001".into(),
                arrest_date: chronicle_records::Date::parse(date).unwrap(),
                charges: charges
                    .iter()
                    .map(|(seq, statute, literal, level)| charge(*seq, statute, literal, *level))
                    .collect(),
            },
        )
        .expect("arrest");
        cycle
    }
}

pub fn charge(
    seq: u32,
    statute: &str,
    literal: &str,
    level: chronicle_records::Level,
) -> chronicle_records::ChargeSpec {
    chronicle_records::ChargeSpec {
        seq,
        statute: statute.into(),
        offense_code: "9999".into(),
        literal: literal.into(),
        level,
        counts: 1,
    }
}

pub fn date(s: &str) -> chronicle_records::Date {
    chronicle_records::Date::parse(s).unwrap()
}

/// A gRPC server over a real loopback socket, with mutual TLS, on a fresh ledger, and the
/// credentials of one principal of each role the tests need.
pub struct Served {
    pub tmp: Option<tempfile::TempDir>,
    pub dir: DataDir,
    pub addr: std::net::SocketAddr,
    pub rt: tokio::runtime::Runtime,
    pub store: Store,
    pub shared: std::sync::Arc<chronicle_server::Shared>,
    running: Option<chronicle_server::Running>,
}

/// Principals every served ledger has: (id, role).
pub const SERVED_PRINCIPALS: &[(&str, Role)] = &[
    ("clerk", Role::RecordsClerk),
    ("court.district-4", Role::Court),
    ("pd.metro", Role::LawEnforcement),
    ("acme.hr", Role::Employer),
    ("auditor", Role::Auditor),
    ("former.clerk", Role::RecordsClerk),
    ("subject:pa100", Role::Subject),
    ("da.smith", Role::DefenseAttorney),
];

impl Served {
    /// Starts a server with mutual TLS (or plaintext on loopback when `tls` is false).
    pub fn start(tls: bool) -> Served {
        let ledger = Ledger::new();
        for (id, role) in SERVED_PRINCIPALS {
            let s = ledger.principal(id, *role);
            let (_, record) = ledger.dir.issue_credentials(&s, None, true).expect("credentials");
            ledger.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![record]).expect("record the certificate");
        }
        // former.clerk's key is revoked: its certificate is still valid, its principal is not.
        let former = chronicle_client::Credentials::load(&ledger.dir.credentials_dir("former.clerk")).unwrap();
        let key_id = former.signer.as_ref().unwrap().key_id();
        let revoke = Command::sign(
            &ledger.admin,
            RegistryEvent::Revoked(chronicle_core::registry::KeyRevoked {
                principal: PrincipalId::new("former.clerk").unwrap(),
                key_id: key_id.to_string(),
                reason: "left the bureau".into(),
            })
            .draft(),
        )
        .unwrap();
        ledger.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![revoke]).expect("revoke");
        let Ledger { tmp, dir, store, .. } = ledger;
        Served::serve(tmp, dir, store, tls)
    }

    /// Serves a ledger closed by [`Served::close`] again, as a restarted server would.
    pub fn reopen(tmp: tempfile::TempDir, dir: DataDir) -> Served {
        let store = dir.open().expect("open the store again");
        Served::serve(tmp, dir, store, true)
    }

    fn serve(tmp: tempfile::TempDir, dir: DataDir, store: Store, tls: bool) -> Served {
        let records = chronicle_records::Records::open(store.clone()).expect("records");
        records.set_ledger(dir.ledger().unwrap()).expect("ledger signer");
        let shared = std::sync::Arc::new(chronicle_server::Shared {
            records,
            ledger: dir.ledger().unwrap(),
            note: dir.note_signer().unwrap(),
            origin: dir.info().unwrap().origin,
            tls,
        });
        let transport = if tls {
            chronicle_server::Transport::MutualTls(dir.tls_files().unwrap())
        } else {
            chronicle_server::Transport::InsecureLoopback
        };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let loopback = "127.0.0.1:0".parse().unwrap();
        let limits = chronicle_server::Limits::default();
        let running = rt.block_on(chronicle_server::start(shared.clone(), loopback, transport, limits)).expect("serve");
        let addr = running.addr;
        // The server signs its first checkpoint (committing the stream heads, an entry of the
        // ledger's own stream) at once, and the next only after a minute: waited for here, so
        // that what a test counts in the log is what the test did.
        let started = std::time::Instant::now();
        while store.latest_checkpoint().unwrap().is_none_or(|(size, _)| size < store.head().len) {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "the server signed no checkpoint");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Served { tmp: Some(tmp), dir, addr, rt, store, shared, running: Some(running) }
    }

    /// Logs the refusals folded since the last flush (as the server's ticker does every few
    /// seconds); returns how many entries were written.
    pub fn flush_refusals(&self) -> usize {
        self.shared.records.flush_refusals(&self.shared.ledger).expect("flush refusals")
    }

    pub fn creds(&self, principal: &str) -> chronicle_client::Credentials {
        chronicle_client::Credentials::load(&self.dir.credentials_dir(principal)).expect("credentials")
    }

    /// A client connected as `principal`, from inside the test's runtime.
    pub async fn client_async(&self, principal: &str) -> chronicle_client::Client {
        let creds = self.creds(principal);
        chronicle_client::Client::connect(&self.addr.to_string(), &creds).await.expect("connect")
    }

    /// A client connected as `principal`.
    pub fn client(&self, principal: &str) -> chronicle_client::Client {
        let creds = self.creds(principal);
        self.rt.block_on(chronicle_client::Client::connect(&self.addr.to_string(), &creds)).expect("connect")
    }

    /// Stops the server gracefully and waits for it.
    pub fn stop(&mut self) -> Result<(), chronicle_server::ServeError> {
        match self.running.take() {
            Some(r) => self.rt.block_on(r.stop()),
            None => Ok(()),
        }
    }
}

impl Served {
    /// Stops the server, closes the store and hands back the directory (to verify it offline).
    pub fn close(mut self) -> (tempfile::TempDir, DataDir) {
        self.stop().expect("stop");
        let tmp = self.tmp.take().expect("tmp");
        let dir = self.dir.clone();
        drop(self);
        (tmp, dir)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Copies a directory tree (a data directory, or part of one).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Checks every expungement order of an expunge loop (see `chronicle expunge-loop`) after a crash
/// or a fault: each order in the log is wholly carried out (its keys destroyed), and each target
/// the loop marked pending either has its order or is wholly readable. Returns how many orders
/// the log holds.
pub fn check_orders(
    records: &chronicle_records::Records,
    store: &chronicle_store::Store,
    log: &std::path::Path,
    ctx: &str,
) -> usize {
    let tombstones: Vec<_> = records.projection().state.expunged.values().cloned().collect();
    for t in &tombstones {
        assert!(
            store.stream_keys_destroyed(&t.streams).unwrap(),
            "{ctx}: order {} recorded but not carried out",
            t.order_id
        );
    }
    let orders_seen = tombstones.len();
    // Every target marked pending either has its order (done) or is wholly readable (not done).
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts.len() != 3 || parts[0] != "pending" {
            continue;
        }
        let Some(target) = StreamId::from_hex(parts[2]) else { continue };
        if parts[1] == "charges" {
            check_charge_order(records, store, target, ctx);
            continue;
        }
        if records.tombstone(&target).is_some() {
            continue;
        }
        let p = records.projection();
        let readable = if parts[1] == "cycle" {
            p.state.cycles.contains_key(&target)
        } else {
            p.state.subjects.contains_key(&target)
        };
        assert!(readable, "{ctx}: {line} has no order but is not readable either");
        drop(p);
        if parts[1] == "subject" {
            records.view(target, Role::Court, chronicle_records::Purpose::C, None).unwrap();
        }
    }
    orders_seen
}

/// A charge order is either not recorded (both charges readable) or wholly carried out: charge 2's
/// content gone, charge 1 readable, the case restated, and no entry left under a live old key.
fn check_charge_order(
    records: &chronicle_records::Records,
    store: &chronicle_store::Store,
    cycle: StreamId,
    ctx: &str,
) {
    let p = records.projection();
    let Some(c) = p.state.cycles.get(&cycle) else { panic!("{ctx}: case {cycle} of a charge order is gone") };
    let ordered = c.orders.iter().any(|o| o.kind == chronicle_records::ReliefKind::Expunge);
    if !ordered {
        assert!(c.charges.contains_key(&1) && c.charges.contains_key(&2), "{ctx}: {cycle}");
        return;
    }
    assert!(c.charges.contains_key(&1), "{ctx}: charge 1 of {cycle} lost");
    assert!(!c.charges.contains_key(&2), "{ctx}: charge 2 of {cycle} still there");
    assert!(!c.restated.is_empty(), "{ctx}: {cycle} not restated");
    drop(p);
    let current = store.current_stream_key(&cycle).unwrap();
    for (position, key) in store.entry_keys(&cycle).unwrap() {
        if let Some(k) = key.filter(|k| Some(*k) != current) {
            assert!(
                store.data_key_destroyed(&k).unwrap(),
                "{ctx}: position {position} of {cycle} under a live old key"
            );
        }
    }
    let text = String::from_utf8(
        records
            .view(cycle_subject(records, cycle), Role::Court, chronicle_records::Purpose::C, None)
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert!(text.contains("THEFT") && !text.contains("DOOMED"), "{ctx}: {text}");
}

fn cycle_subject(records: &chronicle_records::Records, cycle: StreamId) -> StreamId {
    records.projection().state.cycles[&cycle].subject
}

/// Runs the `chronicle` binary built with the tests.
pub fn chronicle(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_chronicle")).args(args).output().expect("run chronicle")
}

/// Runs the `chronicle` binary, which must succeed; returns what it printed.
pub fn ok(args: &[&str]) -> String {
    let out = chronicle(args);
    assert!(
        out.status.success(),
        "chronicle {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
