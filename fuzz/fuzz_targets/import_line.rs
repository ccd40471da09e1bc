//! cargo-fuzz target `import_line`: see chronicle_fuzz::targets::import_line.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chronicle_fuzz::targets::import_line(data));
