#![no_main]
//! `cargo fuzz run isrc`: see fuzz/README.md and `consentry::fuzzing::isrc`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::isrc(data));
