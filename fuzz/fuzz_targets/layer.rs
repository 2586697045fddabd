#![no_main]
//! `cargo fuzz run layer`: see fuzz/README.md and `consentry::fuzzing::layer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::layer(data));
