//! Chronicle's gRPC definitions, version 1 (`proto/chronicle/v1`), and the code generated from
//! them. The domain types stay plain Rust; conversions live with the server.

pub mod codec;

/// Generated messages, clients and servers of package `chronicle.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("chronicle.v1");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/chronicle_v1_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::v1;

    #[test]
    fn messages_round_trip_and_the_descriptor_names_every_service() {
        let req = v1::SubmitRequest {
            stream: vec![7; 16],
            expected: Some(v1::ExpectedVersion { expected: Some(v1::expected_version::Expected::Exact(3)) }),
            commands: vec![v1::SignedCommand {
                statement: vec![1, 2],
                salt: vec![0; 32],
                payload: b"{}".to_vec(),
                signature: vec![9; 64],
            }],
        };
        let back = v1::SubmitRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, req);
        // Truncated input is an error, not a panic.
        let bytes = req.encode_to_vec();
        assert!(v1::SubmitRequest::decode(&bytes[..bytes.len() - 3]).is_err());
        let fds = prost_types_names(super::FILE_DESCRIPTOR_SET);
        for service in ["Ledger", "Records", "Proofs"] {
            assert!(fds.contains(&service.to_string()), "{service} missing from {fds:?}");
        }
    }

    /// Service names in an encoded FileDescriptorSet, read with prost's own wire decoding.
    fn prost_types_names(bytes: &[u8]) -> Vec<String> {
        #[derive(Clone, PartialEq, Message)]
        struct Fds {
            #[prost(message, repeated, tag = "1")]
            file: Vec<Fd>,
        }
        #[derive(Clone, PartialEq, Message)]
        struct Fd {
            #[prost(message, repeated, tag = "6")]
            service: Vec<Sd>,
        }
        #[derive(Clone, PartialEq, Message)]
        struct Sd {
            #[prost(string, tag = "1")]
            name: String,
        }
        Fds::decode(bytes).unwrap().file.into_iter().flat_map(|f| f.service.into_iter().map(|s| s.name)).collect()
    }
}
