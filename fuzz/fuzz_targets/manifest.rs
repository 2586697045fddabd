#![no_main]
//! `cargo fuzz run manifest`: see fuzz/README.md and `consentry::fuzzing::manifest`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::manifest(data));
