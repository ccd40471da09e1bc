//! Bad input over the wire: garbage and truncated protobuf, oversize messages, wrong signatures,
//! unknown principals, revoked keys, missing purposes, certificates from another CA. Each gets
//! the right code, the server stays healthy, and the log does not change but for the refusals it
//! must log (a forged signature, callers that are no registered principal), each in the one
//! denials stream.

mod common;

use chronicle_client::v1 as pb;
use chronicle_client::{ClientError, Code, Credentials, Status};
use chronicle_core::{Command, StreamId, Timestamp};
use chronicle_records::service::draft;
use chronicle_records::{Date, Name, RecordEvent};
use common::Served;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Sends bytes as they are, reads bytes as they are.
#[derive(Default, Clone)]
struct Raw;
struct RawEnc;
struct RawDec;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}
impl Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}
impl Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

async fn channel(addr: &str, creds: &Credentials, identity: bool) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&creds.ca_pem)).domain_name("127.0.0.1");
    if identity {
        tls = tls.identity(Identity::from_pem(&creds.cert_pem, &creds.key_pem));
    }
    Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls)?.connect().await
}

async fn raw_call(ch: Channel, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, Raw).await.map(|r| r.into_inner())
}

async fn healthy(ch: Channel) -> bool {
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    let r = h.check(tonic_health::pb::HealthCheckRequest { service: "chronicle.v1.Ledger".into() }).await;
    r.is_ok_and(|r| r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
}

fn status_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> Status {
    match r {
        Err(ClientError::Status(s)) => s,
        other => panic!("expected a status, got {other:?}"),
    }
}

fn enroll_cmd(signer: &chronicle_core::Signer, stream: StreamId) -> Command {
    let ev = RecordEvent::SubjectEnrolled {
        sid: "BI-1".into(),
        fbi: None,
        name: Name { last: "Poe".into(), first: "Ed".into(), middle: None },
        dob: Date::parse("1970-01-19").unwrap(),
    };
    Command::sign(signer, draft(stream, &ev, Timestamp::now(), None, b"bad-input-1".to_vec())).unwrap()
}

#[test]
fn bad_input_over_the_wire_gets_the_right_code_and_changes_nothing() {
    let s = Served::start(true);
    let addr = s.addr.to_string();
    let clerk_creds = s.creds("clerk");
    let mut clerk = s.client("clerk");
    let signer = clerk_creds.signer.clone().unwrap();
    let len = s.store.head().len;
    s.rt.block_on(async {
        let ch = channel(&addr, &clerk_creds, true).await.unwrap();
        assert!(healthy(ch.clone()).await);

        // Garbage bytes as a Submit request.
        let st = raw_call(ch.clone(), "/chronicle.v1.Ledger/Submit", vec![0xff; 40]).await.unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
        // A valid request cut short.
        let stream = StreamId::random();
        let good = pb::SubmitRequest {
            stream: stream.0.to_vec(),
            expected: None,
            commands: vec![chronicle_client::signed(&enroll_cmd(&signer, stream))],
        };
        let bytes = good.encode_to_vec();
        let st =
            raw_call(ch.clone(), "/chronicle.v1.Ledger/Submit", bytes[..bytes.len() - 5].to_vec()).await.unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
        // Oversize: 6 MiB in one message.
        let mut big = good.clone();
        big.commands[0].payload = vec![b'x'; 6 * 1024 * 1024];
        let st = raw_call(ch.clone(), "/chronicle.v1.Ledger/Submit", big.encode_to_vec()).await.unwrap_err();
        assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
        // Too many commands in one batch.
        let mut many = good.clone();
        many.commands = vec![good.commands[0].clone(); 513];
        let st = raw_call(ch.clone(), "/chronicle.v1.Ledger/Submit", many.encode_to_vec()).await.unwrap_err();
        assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");

        // Malformed fields are named.
        let mut short_stream = good.clone();
        short_stream.stream = vec![1, 2, 3];
        let st = raw_call(ch.clone(), "/chronicle.v1.Ledger/Submit", short_stream.encode_to_vec()).await.unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument);
        assert!(st.message().starts_with("stream:"), "{st:?}");
        let mut short_salt = good.clone();
        short_salt.commands[0].salt.truncate(10);
        let st = raw_call(ch.clone(), "/chronicle.v1.Ledger/Submit", short_salt.encode_to_vec()).await.unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument);
        assert!(st.message().starts_with("commands[0].salt:"), "{st:?}");
        let mut changed = good.clone();
        changed.commands[0].payload = b"{\"event\":\"tampered\"}".to_vec();
        let st = raw_call(ch.clone(), "/chronicle.v1.Ledger/Submit", changed.encode_to_vec()).await.unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument, "a payload that does not match its commitment: {st:?}");

        // A wrong signature.
        let mut forged = good.clone();
        forged.commands[0].signature[5] ^= 1;
        let st = raw_call(ch.clone(), "/chronicle.v1.Ledger/Submit", forged.encode_to_vec()).await.unwrap_err();
        assert_eq!(st.code(), Code::Unauthenticated, "{st:?}");

        // A missing purpose, an unknown purpose code, no subject named.
        let st = status_of(clerk.record(pb::RecordRequest { sid: "BI-1".into(), ..Default::default() }).await);
        assert_eq!(st.code(), Code::InvalidArgument);
        assert!(st.message().starts_with("purpose:"), "{st:?}");
        let st =
            status_of(clerk.record(pb::RecordRequest { sid: "BI-1".into(), purpose: 99, ..Default::default() }).await);
        assert_eq!(st.code(), Code::InvalidArgument);
        let st =
            status_of(clerk.record(pb::RecordRequest { purpose: pb::Purpose::A as i32, ..Default::default() }).await);
        assert_eq!(st.code(), Code::InvalidArgument);
        // Unknown subject, unknown docket, a proof past the end of the log.
        let st = status_of(
            clerk
                .record(pb::RecordRequest { sid: "NOPE".into(), purpose: pb::Purpose::A as i32, ..Default::default() })
                .await,
        );
        assert_eq!(st.code(), Code::NotFound);
        let st = status_of(
            clerk
                .case(pb::CaseRequest { docket: "NOPE".into(), purpose: pb::Purpose::A as i32, ..Default::default() })
                .await,
        );
        assert_eq!(st.code(), Code::NotFound);
        let st = status_of(clerk.inclusion_proof(1_000_000, 0).await);
        assert_eq!(st.code(), Code::OutOfRange);
        assert!(healthy(ch.clone()).await);
    });

    // A registered principal whose keys are revoked: its certificate still chains, but it is
    // no longer anyone the ledger serves.
    let mut former = s.client("former.clerk");
    let st = status_of(s.rt.block_on(former.record(pb::RecordRequest {
        sid: "BI-1".into(),
        purpose: pb::Purpose::A as i32,
        ..Default::default()
    })));
    assert_eq!(st.code(), Code::Unauthenticated, "{st:?}");

    // A certificate from this CA for a principal the registry does not know.
    let ghost = {
        let signer = chronicle_core::Signer::generate(chronicle_core::PrincipalId::new("ghost").unwrap());
        let (dir, _) = s.dir.issue_credentials(&signer, Some(s.dir.root.join("ghost-creds")), true).unwrap();
        Credentials::load(&dir).unwrap()
    };
    let mut g = s.rt.block_on(chronicle_client::Client::connect(&addr, &ghost)).unwrap();
    let stream = StreamId::random();
    let st = status_of(s.rt.block_on(g.submit(stream, None, &[enroll_cmd(ghost.signer.as_ref().unwrap(), stream)])));
    assert_eq!(st.code(), Code::Unauthenticated, "{st:?}");

    // A certificate from another CA, and no certificate at all: the handshake is refused.
    let other_dir = tempfile::tempdir().unwrap();
    let other = chronicle::datadir::DataDir::new(other_dir.path().join("other"), None);
    drop(other.init("other.example/ledger").unwrap());
    let mut foreign = Credentials::load(&other.credentials_dir("admin")).unwrap();
    foreign.ca_pem = clerk_creds.ca_pem.clone(); // trusts our server, presents the other CA's cert
    let refused = s.rt.block_on(async {
        match chronicle_client::Client::connect(&addr, &foreign).await {
            Err(e) => Err(e),
            Ok(mut c) => c.checkpoint(0).await.map(|_| ()),
        }
    });
    assert!(refused.is_err(), "a certificate from another CA was accepted");
    let anonymous = s.rt.block_on(async {
        match channel(&addr, &clerk_creds, false).await {
            Err(e) => Err(e.to_string()),
            Ok(ch) => raw_call(ch, "/chronicle.v1.Proofs/GetCheckpoint", vec![]).await.map_err(|s| s.to_string()),
        }
    });
    assert!(anonymous.is_err(), "a client without a certificate was served");

    // Still serving, nothing written by any of it.
    s.rt.block_on(async {
        let ch = channel(&addr, &clerk_creds, true).await.unwrap();
        assert!(healthy(ch).await);
    });
    let written = s.store.read_log(len, 100).unwrap();
    // (The server's own checkpoints, with their heads commitments in the ledger's stream, aside.)
    let kinds: Vec<(&str, StreamId)> = written
        .iter()
        .filter(|e| e.statement.stream != StreamId::LEDGER)
        .map(|e| (e.statement.event_type.as_str(), e.statement.stream))
        .collect();
    let denials = chronicle_records::model::denials_stream();
    assert_eq!(
        kinds,
        vec![("records.access_denied", denials); 3],
        "bad input changed the log beyond logging the forged signature and the two unidentified callers"
    );
}
