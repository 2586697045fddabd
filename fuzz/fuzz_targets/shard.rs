#![no_main]
//! `cargo fuzz run shard`: see fuzz/README.md and `consentry::fuzzing::shard`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::shard(data));
