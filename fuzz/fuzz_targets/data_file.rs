#![no_main]
//! `cargo fuzz run data_file`: see fuzz/README.md and `consentry::fuzzing::data_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::data_file(data));
