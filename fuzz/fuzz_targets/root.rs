#![no_main]
//! `cargo fuzz run root`: see fuzz/README.md and `consentry::fuzzing::root`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::root(data));
