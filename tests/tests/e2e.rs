//! Workspace end-to-end tests: the real binaries, real SQLite files, real zstd,
//! real tar, a real HTTP server on 127.0.0.1. One test binary, several modules.
#![allow(clippy::unwrap_used, clippy::panic)]

mod e2e {
    mod attacks;
    mod bundles;
    mod ceremony;
    mod cli_ux;
    mod compact_receipts;
    mod data_defects;
    mod export;
    mod faults;
    pub mod fixture;
    mod fuzz_corpus;
    mod operations;
    mod postgres;
    mod properties;
    mod publisher;
    mod publisher_cli;
    mod push;
    mod receipts;
    mod snapshots;
    mod vectors;
    mod verifier;
    mod witnesses;
}
