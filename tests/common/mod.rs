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
