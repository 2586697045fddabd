#![no_main]
//! `cargo fuzz run index`: see fuzz/README.md and `consentry::fuzzing::index`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::index(data));
