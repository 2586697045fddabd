#![no_main]
//! `cargo fuzz run envelope`: see fuzz/README.md and `consentry::fuzzing::envelope`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::envelope(data));
