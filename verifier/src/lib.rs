//! consentry: the format, verification and offline lookup of signed
//! AI-training consent snapshots.
//!
//! The core — `isrc`, `text`, `model`, `declaration`, `lookup`, `cbor`,
//! `envelope`, `docs`, `columns`, `zframe`, `merkle`, `state`, `verify`, `receipt`,
//! `limits`, `error`, `time` — builds with no cargo features: no filesystem,
//! network, clock or C code, so it compiles for wasm32 and can be wrapped by
//! other languages (CI builds it for `wasm32-unknown-unknown`). Features add
//! the layers around it: `store` (the local store, sync from a directory,
//! bundles, the lookup index, `rebuild`: state from verified files on
//! worker threads), `http` (HTTP sources, `serve`), `export` (the verified state as
//! Parquet, CSV or JSON lines: arrow and parquet), `cli` (the
//! command line; the default), `fuzzing` (the fuzz targets' entry points).

pub mod cbor;
pub mod columns;
pub mod declaration;
pub mod docs;
pub mod envelope;
pub mod error;
pub mod isrc;
pub mod limits;
pub mod lookup;
pub mod merkle;
pub mod model;
pub mod note;
pub mod receipt;
pub mod state;
pub mod text;
pub mod time;
pub mod tlog;
pub mod verify;
pub mod zframe;

pub use error::{Code, Rejection};
pub use isrc::{Isrc, Scope};
pub use limits::Limits;

// I/O around the core: where files come from, where verified state lives.
#[cfg(feature = "store")]
pub mod bundle;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "export")]
pub mod export;
#[cfg(feature = "store")]
pub mod fetch;
#[cfg(feature = "store")]
pub mod fsio;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "store")]
pub mod index;
#[cfg(feature = "store")]
pub mod leftovers;
#[cfg(feature = "store")]
pub mod par;
#[cfg(feature = "store")]
pub mod reader;
#[cfg(feature = "store")]
pub mod rebuild;
#[cfg(feature = "http")]
pub mod serve;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "store")]
pub mod sync;
#[cfg(feature = "store")]
pub mod witness;

// Entry points of the `cargo fuzz` targets (fuzz/) and of their corpus replay.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
#[cfg(feature = "store")]
mod testsite;
