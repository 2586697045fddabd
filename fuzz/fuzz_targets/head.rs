#![no_main]
//! `cargo fuzz run head`: see fuzz/README.md and `consentry::fuzzing::head`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::head(data));
