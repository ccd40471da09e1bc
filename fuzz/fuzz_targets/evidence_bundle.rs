//! cargo-fuzz target `evidence_bundle`: see chronicle_fuzz::targets::evidence_bundle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle_fuzz::targets::evidence_bundle(data));
