//! consentry: the format, verification and offline lookup of signed
//! AI-training consent snapshots.
//!
//! Core modules (`isrc`, `text`, `model`, `declaration`, `lookup`, `cbor`, `envelope`,
//! `docs`, `columns`, `state`, `rebuild`, `verify`, `limits`) do no filesystem or network
//! I/O, so they compile for wasm32 and can be wrapped by other bindings. The
//! store, sources and CLI sit beside them.

pub mod cbor;
pub mod columns;
pub mod declaration;
pub mod docs;
pub mod envelope;
pub mod error;
pub mod isrc;
pub mod limits;
pub mod lookup;
pub mod model;
pub mod rebuild;
pub mod receipt;
pub mod state;
pub mod text;
pub mod time;
pub mod verify;

pub use error::{Code, Rejection};
pub use isrc::{Isrc, Scope};
pub use limits::Limits;

// I/O around the core: where files come from, where verified state lives.
pub mod bundle;
pub mod cli;
pub mod fetch;
pub mod fsio;
pub mod index;
pub mod leftovers;
pub mod par;
pub mod serve;
pub mod store;
pub mod sync;

// Entry points of the `cargo fuzz` targets (fuzz/) and of their corpus replay.
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod testsite;
