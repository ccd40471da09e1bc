//! cargo-fuzz target `checkpoint_note`: see chronicle_fuzz::targets::checkpoint_note.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle_fuzz::targets::checkpoint_note(data));
