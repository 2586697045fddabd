#![no_main]
//! `cargo fuzz run receipt`: see fuzz/README.md and `consentry::fuzzing::receipt`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::receipt(data));
