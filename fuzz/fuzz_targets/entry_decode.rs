//! cargo-fuzz target `entry_decode`: see chronicle_fuzz::targets::entry_decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle_fuzz::targets::entry_decode(data));
