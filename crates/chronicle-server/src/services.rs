//! The three gRPC services over one records service.
//!
//! Every call first resolves its caller (the principal named by the client certificate, checked
//! against the registry), then decides by the caller's role, and by the stated purpose where the
//! call reads a record. The records service's work is synchronous (sled, decryption, folding), so
//! it runs on tokio's blocking pool and never stalls the reactor.

use std::sync::Arc;

use chronicle_core::{Command, Role, StreamId, Timestamp};
use chronicle_proto::v1 as pb;
use chronicle_records::model::Purpose;
use chronicle_records::service::HistoryItem;
use chronicle_records::{Denial, Records, Release};
use chronicle_store::ExpectedVersion;
use chronicle_tlog::NoteSigner;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::Caller;
use crate::status::{self, invalid};

/// What every service shares.
pub struct Shared {
    /// The records service (and through it the store).
    pub records: Records,
    /// The ledger's own signer (signs dissemination and denial entries).
    pub ledger: chronicle_core::Signer,
    /// The checkpoint signer.
    pub note: NoteSigner,
    /// The log's origin.
    pub origin: String,
    /// Whether callers are identified by client certificates (false only on insecure loopback).
    pub tls: bool,
}

/// Runs records work: on the blocking pool if it may wait for the disk, else right here.
async fn run<T: Send + 'static>(
    may_block: bool,
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    if may_block { blocking(f).await } else { f() }
}

/// Runs blocking records work off the reactor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(format!("worker failed: {e}")))?
}

impl Shared {
    /// Records a refusal in the access log, then returns it. A failure to log is reported instead
    /// (a refusal that cannot be logged must still be a refusal).
    fn deny(&self, caller: &Caller, d: DenyArgs<'_>, refusal: Status) -> Status {
        let logged = self.records.deny(
            &self.ledger,
            Denial {
                requester: &caller.principal,
                role: caller.role,
                purpose: d.purpose,
                subject: d.subject,
                action: d.action,
                reason: refusal.message(),
            },
        );
        match logged {
            Ok(_) => refusal,
            Err(e) => Status::internal(format!("{} (and logging the refusal failed: {e})", refusal.message())),
        }
    }
}

impl Shared {
    /// A record subject sees only their own record; a defense attorney only their clients'.
    /// The subject's principal is bound to the record by its id, `subject:` and the SID (lower
    /// case, letters and digits only); representation by an attorney is not recorded yet, so an
    /// attorney's request is refused (and logged) rather than answered for anyone.
    fn check_binding(&self, caller: &Caller, purpose: Purpose, subject: StreamId, action: &str) -> Result<(), Status> {
        let reason = match caller.role {
            Role::Subject => {
                let sid = self.records.projection().state.subjects.get(&subject).map(|s| s.sid.clone());
                let own = sid.is_some_and(|sid| {
                    let want: String = chronicle_records::state::normalize(&sid).to_ascii_lowercase();
                    caller.principal.as_str() == format!("subject:{want}")
                });
                if own {
                    return Ok(());
                }
                "a record subject may see only their own record"
            }
            Role::DefenseAttorney => "no representation of this subject by the attorney is on record",
            _ => return Ok(()),
        };
        let refusal = Status::permission_denied(reason);
        Err(self.deny(caller, DenyArgs { purpose: Some(purpose), subject: Some(subject), action }, refusal))
    }
}

struct DenyArgs<'a> {
    purpose: Option<Purpose>,
    subject: Option<StreamId>,
    action: &'a str,
}

/// `chronicle.v1.Ledger`.
pub struct LedgerService(pub Arc<Shared>);
/// `chronicle.v1.Records`.
pub struct RecordsService(pub Arc<Shared>);
/// `chronicle.v1.Proofs`.
pub struct ProofsService(pub Arc<Shared>);

fn stream_id(field: &str, bytes: &[u8]) -> Result<StreamId, Status> {
    let arr: [u8; 16] =
        bytes.try_into().map_err(|_| invalid(field, format!("must be 16 bytes, got {}", bytes.len())))?;
    Ok(StreamId(arr))
}

fn expected(e: Option<pb::ExpectedVersion>) -> Result<ExpectedVersion, Status> {
    use pb::expected_version::Expected;
    Ok(match e.and_then(|e| e.expected) {
        None | Some(Expected::Any(_)) => ExpectedVersion::Any,
        Some(Expected::NoStream(_)) => ExpectedVersion::NoStream,
        Some(Expected::Exact(v)) => ExpectedVersion::Exact(v),
    })
}

fn command(i: usize, c: pb::SignedCommand) -> Result<Command, Status> {
    let salt: [u8; 32] = c
        .salt
        .as_slice()
        .try_into()
        .map_err(|_| invalid(&format!("commands[{i}].salt"), format!("must be 32 bytes, got {}", c.salt.len())))?;
    let signature: [u8; 64] = c.signature.as_slice().try_into().map_err(|_| {
        invalid(&format!("commands[{i}].signature"), format!("must be 64 bytes, got {}", c.signature.len()))
    })?;
    Command::from_parts(c.statement, salt, c.payload, signature).map_err(|e| invalid(&format!("commands[{i}]"), e))
}

/// The purpose a request states; required on every read of a record.
pub fn purpose(p: i32) -> Result<Purpose, Status> {
    use pb::Purpose as P;
    Ok(match P::try_from(p).map_err(|_| invalid("purpose", format!("unknown purpose code {p}")))? {
        P::Unspecified => return Err(invalid("purpose", "required: state the purpose of the request")),
        P::C => Purpose::C,
        P::J => Purpose::J,
        P::E => Purpose::E,
        P::F => Purpose::F,
        P::H => Purpose::H,
        P::I => Purpose::I,
        P::S => Purpose::S,
        P::V => Purpose::V,
        P::X => Purpose::X,
        P::A => Purpose::A,
    })
}

fn micros(field: &str, t: i64) -> Result<Option<Timestamp>, Status> {
    match t {
        0 => Ok(None),
        t if t < 0 => Err(invalid(field, "must not be negative")),
        t => Ok(Some(Timestamp(t))),
    }
}

fn authority(a: String) -> Option<String> {
    (!a.trim().is_empty()).then_some(a)
}

fn record_response(r: chronicle_records::CheckResponse) -> pb::RecordResponse {
    pb::RecordResponse {
        view_json: r.bytes,
        content_hash: r.content_hash,
        dissemination_position: r.dissemination.unwrap_or(0),
    }
}

/// Roles that may follow the raw log: its payloads are sealed, but its metadata (streams, event
/// types, authors, times) is still the bureau's to give.
fn may_subscribe(role: Role) -> bool {
    matches!(role, Role::Ledger | Role::Admin | Role::RecordsClerk | Role::Auditor)
}

/// Who may replay a history, and how much of it they see.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HistoryAccess {
    /// Every entry with its content.
    Full,
    /// Who, when, what kind and under what authority; no content.
    Metadata,
}

fn history_access(role: Role, purpose: Purpose) -> Option<HistoryAccess> {
    match role {
        Role::Ledger | Role::Admin | Role::RecordsClerk | Role::Court => Some(HistoryAccess::Full),
        Role::LawEnforcement | Role::Prosecutor if purpose == Purpose::C => Some(HistoryAccess::Full),
        Role::Auditor => Some(HistoryAccess::Metadata),
        _ => None,
    }
}

fn history_item(h: HistoryItem, access: HistoryAccess) -> pb::HistoryItem {
    pb::HistoryItem {
        position: h.position,
        recorded_micros: h.recorded,
        effective_micros: h.effective,
        event_type: h.event_type,
        author: h.author,
        role: h.role.map(|r| r.as_str().to_string()).unwrap_or_default(),
        court_order: h.court_order.unwrap_or_default(),
        event_json: match (access, h.event) {
            (HistoryAccess::Full, Some(ev)) => serde_json::to_vec(&ev).unwrap_or_default(),
            _ => Vec::new(),
        },
        stream: h.stream,
    }
}

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn submit(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResponse>, Status> {
        let caller = crate::auth::caller(&self.0, &req)?;
        let r = req.into_inner();
        let stream = stream_id("stream", &r.stream)?;
        let expected = expected(r.expected)?;
        if r.commands.is_empty() {
            return Err(invalid("commands", "at least one command is required"));
        }
        if r.commands.len() > chronicle_core::limits::BATCH_ENTRIES_MAX {
            return Err(Status::resource_exhausted(format!(
                "commands: {} exceed the limit of {}",
                r.commands.len(),
                chronicle_core::limits::BATCH_ENTRIES_MAX
            )));
        }
        let cmds = r.commands.into_iter().enumerate().map(|(i, c)| command(i, c)).collect::<Result<Vec<_>, _>>()?;
        let shared = self.0.clone();
        blocking(move || {
            let action = format!("submit {}", cmds[0].statement().event_type.as_str());
            // A principal submits its own signed commands: a command signed by someone else is
            // not the caller's to replay.
            if let Some((i, c)) = cmds.iter().enumerate().find(|(_, c)| c.statement().author != caller.principal) {
                let refusal = Status::permission_denied(format!(
                    "commands[{i}]: signed by {}, but the caller is {}",
                    c.statement().author,
                    caller.principal
                ));
                return Err(shared.deny(&caller, DenyArgs { purpose: None, subject: None, action: &action }, refusal));
            }
            let submitted = if stream == StreamId::REGISTRY {
                // Registry changes (an admin registering a principal, anyone rotating or revoking
                // their own key) go to the store, whose registry rules decide them.
                let req = chronicle_store::AppendRequest { stream, expected, commands: cmds };
                shared.records.store().append(req).map_err(chronicle_records::ServiceError::from)
            } else {
                shared.records.submit_batch(stream, expected, cmds)
            };
            match submitted {
                Ok(receipt) => Ok(Response::new(pb::SubmitResponse {
                    entries: receipt
                        .entries
                        .iter()
                        .map(|a| pb::Appended {
                            position: a.position,
                            stream_version: a.stream_version,
                            hash: a.hash.0.to_vec(),
                        })
                        .collect(),
                    recorded_time_micros: receipt.recorded_time.0,
                    duplicate: receipt.duplicate,
                })),
                Err(e) => {
                    let s = status::of_service(&e);
                    if status::is_denial(&s) {
                        return Err(shared.deny(
                            &caller,
                            DenyArgs { purpose: None, subject: None, action: &action },
                            s,
                        ));
                    }
                    Err(s)
                }
            }
        })
        .await
    }

    type SubscribeStream = ReceiverStream<Result<pb::LogEntry, Status>>;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = crate::auth::caller(&self.0, &req)?;
        if !may_subscribe(caller.role) {
            let shared = self.0.clone();
            return Err(blocking(move || {
                let refusal = Status::permission_denied(format!("a {} may not follow the log", caller.role.as_str()));
                Ok(shared.deny(&caller, DenyArgs { purpose: None, subject: None, action: "subscribe" }, refusal))
            })
            .await?);
        }
        let from = req.into_inner().from_position;
        let mut sub = self.0.records.store().subscribe(from);
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let item = match sub.next().await {
                    Ok(e) => Ok(pb::LogEntry { position: e.position(), entry: e.into_bytes() }),
                    Err(e) => Err(status::of_read(&e)),
                };
                let last = item.is_err();
                if tx.send(item).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl RecordsService {
    fn subject_of(&self, sid: &str, subject_id: &[u8]) -> Result<StreamId, Status> {
        match (sid.trim(), subject_id.is_empty()) {
            ("", true) => Err(invalid("sid", "name the subject by sid or subject_id")),
            (sid, true) => {
                self.0.records.refresh().map_err(|e| status::of_service(&e))?;
                self.0
                    .records
                    .projection()
                    .state
                    .subject_by_sid(sid)
                    .ok_or_else(|| Status::not_found(format!("no subject with SID {sid}")))
            }
            ("", false) => stream_id("subject_id", subject_id),
            _ => Err(invalid("sid", "give sid or subject_id, not both")),
        }
    }

    async fn release(
        &self,
        req: Request<pb::RecordRequest>,
        method: &'static str,
    ) -> Result<pb::RecordResponse, Status> {
        let caller = crate::auth::caller(&self.0, &req)?;
        let r = req.into_inner();
        let purpose = purpose(r.purpose)?;
        let as_effective = micros("as_effective_micros", r.as_effective_micros)?;
        let as_recorded = micros("as_recorded_micros", r.as_recorded_micros)?;
        let this = RecordsService(self.0.clone());
        // A read inside the bureau writes nothing (unless refused): it is answered on the
        // reactor, without a hand-off to the blocking pool. A release outside the bureau is
        // logged (a durable append), so it waits on the blocking pool.
        let writes = !crate::auth::inside_bureau(caller.role) || as_recorded.is_some();
        run(writes, move || {
            let subject = this.subject_of(&r.sid, &r.subject_id)?;
            this.0.check_binding(&caller, purpose, subject, method)?;
            let release = Release {
                requester: &caller.principal,
                purpose,
                subject,
                case: None,
                authority: authority(r.authority),
                as_effective,
                as_recorded,
                method,
            };
            this.0.records.release(&this.0.ledger, release).map(record_response).map_err(|e| status::of_service(&e))
        })
        .await
    }
}

#[tonic::async_trait]
impl pb::records_server::Records for RecordsService {
    async fn get_record(&self, req: Request<pb::RecordRequest>) -> Result<Response<pb::RecordResponse>, Status> {
        self.release(req, "get_record").await.map(Response::new)
    }

    async fn background_check(&self, req: Request<pb::RecordRequest>) -> Result<Response<pb::RecordResponse>, Status> {
        self.release(req, "background_check").await.map(Response::new)
    }

    async fn get_case(&self, req: Request<pb::CaseRequest>) -> Result<Response<pb::RecordResponse>, Status> {
        let caller = crate::auth::caller(&self.0, &req)?;
        let r = req.into_inner();
        let purpose = purpose(r.purpose)?;
        if r.docket.trim().is_empty() {
            return Err(invalid("docket", "required"));
        }
        let as_effective = micros("as_effective_micros", r.as_effective_micros)?;
        let shared = self.0.clone();
        blocking(move || {
            shared.records.refresh().map_err(|e| status::of_service(&e))?;
            let (case, subject) = {
                let p = shared.records.projection();
                let case = p
                    .state
                    .cycle_by_docket(&r.docket)
                    .ok_or_else(|| Status::not_found(format!("no case with docket {}", r.docket)))?;
                let subject = p
                    .state
                    .cycles
                    .get(&case)
                    .map(|c| c.subject)
                    .ok_or_else(|| Status::not_found(format!("no case with docket {}", r.docket)))?;
                (case, subject)
            };
            shared.check_binding(&caller, purpose, subject, "get_case")?;
            let release = Release {
                requester: &caller.principal,
                purpose,
                subject,
                case: Some(case),
                authority: authority(r.authority),
                as_effective,
                as_recorded: None,
                method: "get_case",
            };
            shared.records.release(&shared.ledger, release).map(record_response).map_err(|e| status::of_service(&e))
        })
        .await
        .map(Response::new)
    }

    type HistoryStream = ReceiverStream<Result<pb::HistoryItem, Status>>;

    async fn history(&self, req: Request<pb::HistoryRequest>) -> Result<Response<Self::HistoryStream>, Status> {
        let caller = crate::auth::caller(&self.0, &req)?;
        let r = req.into_inner();
        let purpose = purpose(r.purpose)?;
        let as_recorded = micros("as_recorded_micros", r.as_recorded_micros)?;
        let shared = self.0.clone();
        let items = blocking(move || {
            let records = &shared.records;
            records.refresh().map_err(|e| status::of_service(&e))?;
            let stream = match (r.stream.is_empty(), r.docket.trim()) {
                (true, "") => return Err(invalid("stream", "name a subject or case by stream or docket")),
                (false, "") => stream_id("stream", &r.stream)?,
                (true, docket) => records
                    .projection()
                    .state
                    .cycle_by_docket(docket)
                    .ok_or_else(|| Status::not_found(format!("no case with docket {docket}")))?,
                (false, _) => return Err(invalid("docket", "give stream or docket, not both")),
            };
            let subject = {
                let p = records.projection();
                if p.state.subjects.contains_key(&stream) {
                    Some(stream)
                } else {
                    p.state.cycles.get(&stream).map(|c| c.subject)
                }
            };
            let Some(access) = history_access(caller.role, purpose) else {
                let refusal = Status::permission_denied(format!(
                    "a {} may not replay histories for purpose {purpose:?}",
                    caller.role.as_str()
                ));
                return Err(shared.deny(
                    &caller,
                    DenyArgs { purpose: Some(purpose), subject, action: "history" },
                    refusal,
                ));
            };
            if let Some(t) = records.tombstone(&stream) {
                // All that may be said of an expunged case or subject: the order.
                let e = chronicle_records::ServiceError::Expunged {
                    order_id: t.order_id,
                    effective: t.effective.0,
                    by: t.author.to_string(),
                };
                return Err(status::of_service(&e));
            }
            if subject.is_none() && caller.role != Role::Auditor && !crate::auth::inside_bureau(caller.role) {
                let refusal = Status::permission_denied("only the bureau and auditors replay system streams");
                return Err(shared.deny(
                    &caller,
                    DenyArgs { purpose: Some(purpose), subject, action: "history" },
                    refusal,
                ));
            }
            let mut up_to = (r.up_to_position > 0).then_some(r.up_to_position);
            if let Some(t) = as_recorded {
                let at = records
                    .position_at(t)
                    .map_err(|e| status::of_service(&e))?
                    .ok_or_else(|| Status::not_found("nothing was recorded by then"))?;
                up_to = Some(up_to.map_or(at, |u| u.min(at)));
            }
            let items: Vec<pb::HistoryItem> = records
                .history(stream, up_to)
                .map_err(|e| status::of_service(&e))?
                .into_iter()
                .map(|h| history_item(h, access))
                .collect();
            if let (Some(subject), false) = (subject, crate::auth::inside_bureau(caller.role)) {
                // A release outside the bureau: logged with a hash of exactly what was sent.
                let mut hasher = blake3::Hasher::new();
                for it in &items {
                    hasher.update(&prost::Message::encode_to_vec(it));
                }
                let release = chronicle_records::service::HistoryRelease {
                    requester: &caller.principal,
                    role: caller.role,
                    purpose,
                    subject,
                    stream,
                    as_of_position: items.last().map_or(0, |i| i.position),
                    content_hash: hasher.finalize().to_hex().to_string(),
                    items: items.len(),
                };
                records.log_history_release(&shared.ledger, release).map_err(|e| status::of_service(&e))?;
            }
            Ok(items)
        })
        .await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            for it in items {
                if tx.send(Ok(it)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl pb::proofs_server::Proofs for ProofsService {
    async fn get_checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        crate::auth::caller(&self.0, &req)?;
        let size = req.into_inner().tree_size;
        let shared = self.0.clone();
        blocking(move || {
            let store = shared.records.store();
            let size = match size {
                0 => match store.latest_checkpoint().map_err(|e| status::of_checkpoint(&e))? {
                    Some((s, _)) => s,
                    None => {
                        let len = store.head().len;
                        store
                            .sign_checkpoint(&shared.note, &shared.origin, len)
                            .map_err(|e| status::of_checkpoint(&e))?;
                        len
                    }
                },
                s => s,
            };
            let note = store.cosigned_checkpoint(size).map_err(|e| status::of_checkpoint(&e))?;
            Ok(Response::new(pb::CheckpointResponse { note }))
        })
        .await
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::InclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProofResponse>, Status> {
        crate::auth::caller(&self.0, &req)?;
        let r = req.into_inner();
        let shared = self.0.clone();
        blocking(move || {
            let store = shared.records.store();
            let size = if r.tree_size == 0 { store.head().len } else { r.tree_size };
            let path = store.inclusion_proof(r.position, size).map_err(|e| status::of_tree(&e))?;
            let leaf = store
                .entry(r.position)
                .map_err(|e| status::of_read(&e))?
                .ok_or_else(|| Status::not_found(format!("no entry at position {}", r.position)))?;
            Ok(Response::new(pb::InclusionProofResponse {
                leaf_index: r.position,
                tree_size: size,
                leaf: leaf.into_bytes(),
                audit_path: path.iter().map(|h| h.0.to_vec()).collect(),
            }))
        })
        .await
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::ConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProofResponse>, Status> {
        crate::auth::caller(&self.0, &req)?;
        let r = req.into_inner();
        let shared = self.0.clone();
        blocking(move || {
            let store = shared.records.store();
            let second = if r.second == 0 { store.head().len } else { r.second };
            let proof = store.consistency_proof(r.first, second).map_err(|e| status::of_tree(&e))?;
            Ok(Response::new(pb::ConsistencyProofResponse {
                first: r.first,
                second,
                consistency: proof.iter().map(|h| h.0.to_vec()).collect(),
            }))
        })
        .await
    }
}

/// The principal a test or tool means by a header on insecure loopback.
pub const PRINCIPAL_HEADER: &str = "x-chronicle-principal";
