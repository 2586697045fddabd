//! consentry-publish: the registry database, import, keys, signing, snapshot
//! building and bundling. The format itself lives in the `consentry` crate.

pub mod db;
pub mod import;
pub mod source;
