#![no_main]
//! `cargo fuzz run bundle`: see fuzz/README.md and `consentry::fuzzing::bundle`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::bundle(data));
