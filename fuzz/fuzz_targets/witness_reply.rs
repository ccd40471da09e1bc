//! cargo-fuzz target `witness_reply`: see chronicle_fuzz::targets::witness_reply.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle_fuzz::targets::witness_reply(data));
