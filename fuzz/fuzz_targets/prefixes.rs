#![no_main]
//! `cargo fuzz run prefixes`: see fuzz/README.md and `consentry::fuzzing::prefixes`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::prefixes(data));
