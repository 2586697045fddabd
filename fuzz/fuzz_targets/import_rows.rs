#![no_main]
//! `cargo fuzz run import_rows`: see fuzz/README.md and
//! `consentry_publish::fuzzing::import_rows`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry_publish::fuzzing::import_rows(data));
