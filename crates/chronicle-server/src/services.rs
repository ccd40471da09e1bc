//! The three gRPC services over one records service: thin adapters.
//!
//! Every call resolves its caller first (the principal named by the client certificate, checked
//! against the registry; a caller that is not one is refused with UNAUTHENTICATED, and the refusal
//! is logged), turns the request into the records crate's terms (naming the field of any bad
//! input), and asks the records service, whose `access` module alone decides what the caller is
//! given and what is logged. The records service's work is synchronous (sled, decryption,
//! durable appends for what is logged), so it runs on tokio's blocking pool and never stalls the
//! reactor.

use std::sync::Arc;

use chronicle_core::{Command, StreamId, Timestamp};
use chronicle_proto::v1 as pb;
use chronicle_records::history::HistoryItem;
use chronicle_records::model::Purpose;
use chronicle_records::{Call, Caller, Denial, HistoryQuery, RecipientsQuery, RecordQuery, Records, Target};
use chronicle_store::ExpectedVersion;
use chronicle_tlog::NoteSigner;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::status::{self, invalid};

/// What every service shares.
pub struct Shared {
    /// The records service (and through it the store).
    pub records: Records,
    /// The ledger's own signer (signs dissemination, refusal and audit entries).
    pub ledger: chronicle_core::Signer,
    /// The checkpoint signer.
    pub note: NoteSigner,
    /// The log's origin.
    pub origin: String,
    /// Whether callers are identified by client certificates (false only on insecure loopback).
    pub tls: bool,
}

/// Runs blocking records work off the reactor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(format!("worker failed: {e}")))?
}

/// The caller of a request, or UNAUTHENTICATED (logged: who claimed to call, and why refused).
async fn authenticate<T>(shared: &Arc<Shared>, req: &Request<T>, call: &'static str) -> Result<Caller, Status> {
    let (claimed, refusal) = match crate::auth::caller(shared, req) {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let s = shared.clone();
    let logged = blocking(move || {
        Ok(s.records.refuse_unidentified(&s.ledger, claimed.as_deref(), call, refusal.message()).map(|()| refusal))
    })
    .await?;
    Err(match logged {
        Ok(refusal) => refusal,
        Err(e) => Status::internal(format!("unauthenticated (and logging the refusal failed: {e})")),
    })
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

/// A time field: 0 is "not given"; the records service checks the range.
fn micros(t: i64) -> Option<Timestamp> {
    (t != 0).then_some(Timestamp(t))
}

fn authority(a: String) -> Option<String> {
    (!a.trim().is_empty()).then_some(a)
}

/// A subject named by SID or by id, exactly one.
fn subject_target(sid: &str, subject_id: &[u8]) -> Result<Target, Status> {
    match (sid.trim(), subject_id.is_empty()) {
        ("", true) => Err(invalid("sid", "name the subject by sid or subject_id")),
        (sid, true) => Ok(Target::Sid(sid.to_string())),
        ("", false) => Ok(Target::SubjectId(stream_id("subject_id", subject_id)?)),
        _ => Err(invalid("sid", "give sid or subject_id, not both")),
    }
}

fn record_response(r: chronicle_records::CheckResponse) -> pb::RecordResponse {
    pb::RecordResponse {
        view_json: r.bytes,
        content_hash: r.content_hash,
        dissemination_position: r.dissemination.unwrap_or(0),
    }
}

fn history_item(h: HistoryItem) -> pb::HistoryItem {
    pb::HistoryItem {
        position: h.position,
        recorded_micros: h.recorded,
        effective_micros: h.effective,
        event_type: h.event_type,
        author: h.author,
        role: h.role.map(|r| r.as_str().to_string()).unwrap_or_default(),
        court_order: h.court_order.unwrap_or_default(),
        event_json: h.event.map(|ev| serde_json::to_vec(&ev).unwrap_or_default()).unwrap_or_default(),
        stream: h.stream,
        destroyed: h.destroyed,
    }
}

impl Shared {
    /// Asks the records service, on the blocking pool, and maps its answer.
    async fn ask<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Records, &chronicle_core::Signer) -> Result<T, chronicle_records::ServiceError> + Send + 'static,
    ) -> Result<T, Status> {
        let s = self.clone();
        blocking(move || f(&s.records, &s.ledger).map_err(|e| status::of_service(&e))).await
    }

    /// Asks the records service for a read: a caller outside the bureau is answered on the
    /// blocking pool (its release or refusal is a durable append), and so is a read that replays
    /// the log (`replays`); a caller inside the bureau reading the projection writes nothing unless
    /// refused, so it is answered right here, without a hand-off (64 clerks reading: 1,407 reads/s
    /// through the blocking pool, 12,928 on the reactor).
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        caller: &Caller,
        replays: bool,
        f: impl FnOnce(&Records, &chronicle_core::Signer) -> Result<T, chronicle_records::ServiceError> + Send + 'static,
    ) -> Result<T, Status> {
        if !replays && self.records.inside_bureau(caller.role) {
            f(&self.records, &self.ledger).map_err(|e| status::of_service(&e))
        } else {
            self.ask(f).await
        }
    }
}

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn submit(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResponse>, Status> {
        let caller = authenticate(&self.0, &req, "submit").await?;
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
            let refuse = |s: Status| -> Status {
                let d = Denial {
                    requester: caller.principal.as_str(),
                    role: Some(caller.role),
                    purpose: None,
                    subject: None,
                    action: &action,
                    reason: s.message(),
                };
                match shared.records.refuse(&shared.ledger, d) {
                    Ok(()) => s,
                    Err(e) => Status::internal(format!("{} (and logging the refusal failed: {e})", s.message())),
                }
            };
            // A principal submits its own signed commands: a command signed by someone else is
            // not the caller's to replay.
            if let Some((i, c)) = cmds.iter().enumerate().find(|(_, c)| c.statement().author != caller.principal) {
                return Err(refuse(Status::permission_denied(format!(
                    "commands[{i}]: signed by {}, but the caller is {}",
                    c.statement().author,
                    caller.principal
                ))));
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
                    if status::is_denial(&s) { Err(refuse(s)) } else { Err(s) }
                }
            }
        })
        .await
    }

    type SubscribeStream = ReceiverStream<Result<pb::LogEntry, Status>>;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = authenticate(&self.0, &req, Call::Subscribe.name()).await?;
        let from = req.into_inner().from_position;
        self.0.ask(move |r, l| r.log_read(l, &caller, Call::Subscribe, format!("from position {from}"))).await?;
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
    async fn read(&self, req: Request<pb::RecordRequest>, call: Call) -> Result<Response<pb::RecordResponse>, Status> {
        let caller = authenticate(&self.0, &req, call.name()).await?;
        let r = req.into_inner();
        let q = RecordQuery {
            call,
            target: subject_target(&r.sid, &r.subject_id)?,
            purpose: purpose(r.purpose)?,
            authority: authority(r.authority),
            as_effective: micros(r.as_effective_micros),
            as_recorded: micros(r.as_recorded_micros),
        };
        let (who, replays) = (caller.clone(), q.as_recorded.is_some());
        let answer = self.0.read(&who, replays, move |records, ledger| records.read_record(ledger, &caller, q)).await?;
        Ok(Response::new(record_response(answer)))
    }
}

#[tonic::async_trait]
impl pb::records_server::Records for RecordsService {
    async fn get_record(&self, req: Request<pb::RecordRequest>) -> Result<Response<pb::RecordResponse>, Status> {
        self.read(req, Call::GetRecord).await
    }

    async fn background_check(&self, req: Request<pb::RecordRequest>) -> Result<Response<pb::RecordResponse>, Status> {
        self.read(req, Call::BackgroundCheck).await
    }

    async fn get_case(&self, req: Request<pb::CaseRequest>) -> Result<Response<pb::RecordResponse>, Status> {
        let caller = authenticate(&self.0, &req, Call::GetCase.name()).await?;
        let r = req.into_inner();
        let purpose = purpose(r.purpose)?;
        if r.docket.trim().is_empty() {
            return Err(invalid("docket", "required"));
        }
        let q = RecordQuery {
            call: Call::GetCase,
            target: Target::Docket(r.docket.trim().to_string()),
            purpose,
            authority: authority(r.authority),
            as_effective: micros(r.as_effective_micros),
            as_recorded: None,
        };
        let who = caller.clone();
        let answer = self.0.read(&who, false, move |records, ledger| records.read_record(ledger, &caller, q)).await?;
        Ok(Response::new(record_response(answer)))
    }

    async fn history(&self, req: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryPage>, Status> {
        let caller = authenticate(&self.0, &req, Call::History.name()).await?;
        let r = req.into_inner();
        let purpose = purpose(r.purpose)?;
        let target = match (r.stream.is_empty(), r.docket.trim()) {
            (true, "") => return Err(invalid("stream", "name a subject or case by stream or docket")),
            (false, "") => Target::Stream(stream_id("stream", &r.stream)?),
            (true, docket) => Target::Docket(docket.to_string()),
            (false, _) => return Err(invalid("docket", "give stream or docket, not both")),
        };
        let q = HistoryQuery {
            target,
            purpose,
            from: r.from_position,
            limit: r.limit,
            up_to: (r.up_to_position > 0).then_some(r.up_to_position),
            as_recorded: micros(r.as_recorded_micros),
        };
        let page = self.0.ask(move |records, ledger| records.history_page(ledger, &caller, q)).await?;
        Ok(Response::new(pb::HistoryPage {
            items: page.items.into_iter().map(history_item).collect(),
            next_position: page.next.unwrap_or(0),
            more_items: page.next.is_some(),
            content_hash: page.content_hash,
            dissemination_position: page.dissemination.unwrap_or(0),
        }))
    }

    async fn resolve(&self, req: Request<pb::ResolveRequest>) -> Result<Response<pb::ResolveResponse>, Status> {
        let caller = authenticate(&self.0, &req, Call::Resolve.name()).await?;
        let r = req.into_inner();
        let purpose = purpose(r.purpose)?;
        let target = match (r.sid.trim(), r.docket.trim()) {
            ("", "") => return Err(invalid("sid", "name a subject by sid or a case by docket")),
            (sid, "") => Target::Sid(sid.to_string()),
            ("", docket) => Target::Docket(docket.to_string()),
            _ => return Err(invalid("docket", "give sid or docket, not both")),
        };
        let found = self.0.ask(move |records, ledger| records.resolve(ledger, &caller, target, purpose)).await?;
        Ok(Response::new(pb::ResolveResponse {
            subject_id: found.subject.0.to_vec(),
            case_id: found.case.map(|c| c.0.to_vec()).unwrap_or_default(),
        }))
    }

    async fn recipients(
        &self,
        req: Request<pb::RecipientsRequest>,
    ) -> Result<Response<pb::RecipientsResponse>, Status> {
        let caller = authenticate(&self.0, &req, Call::Recipients.name()).await?;
        let r = req.into_inner();
        let q = RecipientsQuery {
            subject: subject_target(&r.sid, &r.subject_id)?,
            case: (!r.docket.trim().is_empty()).then(|| r.docket.trim().to_string()),
            since: micros(r.since_micros),
            from: r.from_position,
            limit: r.limit,
        };
        let (list, next) = self.0.ask(move |records, ledger| records.recipients(ledger, &caller, q)).await?;
        Ok(Response::new(pb::RecipientsResponse {
            recipients: list
                .into_iter()
                .map(|x| pb::Recipient {
                    position: x.position,
                    recorded_micros: x.recorded,
                    requester: x.requester,
                    role: x.role.as_str().to_string(),
                    purpose: format!("{:?}", x.purpose),
                    method: x.method,
                    authority: x.authority.unwrap_or_default(),
                    content_hash: x.content_hash,
                    items: x.items,
                    case_id: x.case.unwrap_or_default(),
                })
                .collect(),
            next_position: next.unwrap_or(0),
            more_items: next.is_some(),
        }))
    }

    async fn reproduce(&self, req: Request<pb::ReproduceRequest>) -> Result<Response<pb::ReproduceResponse>, Status> {
        let caller = authenticate(&self.0, &req, Call::Reproduce.name()).await?;
        let position = req.into_inner().position;
        let r = self.0.ask(move |records, ledger| records.reproduce_for(ledger, &caller, position)).await?;
        Ok(Response::new(pb::ReproduceResponse {
            matches: r.matches(),
            content: r.bytes,
            content_hash: r.content_hash,
            logged_hash: r.logged_hash,
            method: r.method,
        }))
    }
}

#[tonic::async_trait]
impl pb::proofs_server::Proofs for ProofsService {
    async fn get_checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        let caller = authenticate(&self.0, &req, Call::Checkpoint.name()).await?;
        let size = req.into_inner().tree_size;
        let shared = self.0.clone();
        blocking(move || {
            let records = &shared.records;
            let store = records.store();
            records
                .log_read(&shared.ledger, &caller, Call::Checkpoint, format!("tree size {size}"))
                .map_err(|e| status::of_service(&e))?;
            // With witnesses adopted, the latest checkpoint is the published one: the latest that
            // every adopted witness cosigned.
            let witnessed = !store.witnesses().map_err(|e| status::of_checkpoint(&e))?.is_empty();
            if size == 0 && witnessed {
                return match store.published_checkpoint().map_err(|e| status::of_checkpoint(&e))? {
                    Some((_, note)) => Ok(Response::new(pb::CheckpointResponse { note })),
                    None => Err(Status::not_found("no checkpoint is cosigned by every adopted witness yet")),
                };
            }
            let size = match size {
                0 => match store.latest_checkpoint().map_err(|e| status::of_checkpoint(&e))? {
                    Some((s, _)) => s,
                    None => {
                        store
                            .checkpoint_with_heads(&shared.ledger, &shared.note, &shared.origin)
                            .map_err(|e| status::of_checkpoint(&e))?
                            .1
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
        let caller = authenticate(&self.0, &req, Call::InclusionProof.name()).await?;
        let r = req.into_inner();
        let held: Option<[u8; 32]> = match r.leaf_hash.len() {
            0 => None,
            32 => r.leaf_hash.as_slice().try_into().ok(),
            n => return Err(invalid("leaf_hash", format!("must be 32 bytes, got {n}"))),
        };
        let shared = self.0.clone();
        blocking(move || {
            let records = &shared.records;
            let store = records.store();
            let size = if r.tree_size == 0 { store.head().len } else { r.tree_size };
            // Bad input is refused before anything is logged.
            let path = store.inclusion_proof(r.position, size).map_err(|e| status::of_tree(&e))?;
            let entry = store
                .entry(r.position)
                .map_err(|e| status::of_read(&e))?
                .ok_or_else(|| Status::not_found(format!("no entry at position {}", r.position)))?;
            let leaf = match held {
                Some(h) => {
                    let matches = chronicle_tlog::tree::leaf_hash(entry.bytes()).0 == h;
                    records
                        .inclusion_check(&shared.ledger, &caller, r.position, size, matches)
                        .map_err(|e| status::of_service(&e))?;
                    Vec::new()
                }
                None => {
                    let detail = format!("position {} in tree size {size}", r.position);
                    records
                        .log_read(&shared.ledger, &caller, Call::InclusionProof, detail)
                        .map_err(|e| status::of_service(&e))?;
                    entry.into_bytes()
                }
            };
            Ok(Response::new(pb::InclusionProofResponse {
                leaf_index: r.position,
                tree_size: size,
                leaf,
                audit_path: path.iter().map(|h| h.0.to_vec()).collect(),
            }))
        })
        .await
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::ConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProofResponse>, Status> {
        let caller = authenticate(&self.0, &req, Call::ConsistencyProof.name()).await?;
        let r = req.into_inner();
        let shared = self.0.clone();
        blocking(move || {
            let store = shared.records.store();
            let second = if r.second == 0 { store.head().len } else { r.second };
            let proof = store.consistency_proof(r.first, second).map_err(|e| status::of_tree(&e))?;
            let detail = format!("from {} to {second}", r.first);
            shared
                .records
                .log_read(&shared.ledger, &caller, Call::ConsistencyProof, detail)
                .map_err(|e| status::of_service(&e))?;
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
