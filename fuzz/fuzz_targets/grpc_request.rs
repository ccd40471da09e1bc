//! cargo-fuzz target `grpc_request`: see chronicle_fuzz::targets::grpc_request.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle_fuzz::targets::grpc_request(data));
