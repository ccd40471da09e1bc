//! cargo-fuzz target `record_event`: see chronicle_fuzz::targets::record_event.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle_fuzz::targets::record_event(data));
