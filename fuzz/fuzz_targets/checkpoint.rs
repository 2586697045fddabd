#![no_main]
//! `cargo fuzz run checkpoint`: see fuzz/README.md and `consentry::fuzzing::checkpoint`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::checkpoint(data));
