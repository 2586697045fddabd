//! consentry-publish: the registry database, import, keys, signing, snapshot
//! building and bundling. The format itself lives in the `consentry` crate.

pub mod build;
pub mod bundle;
pub mod cli;
pub mod db;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
pub mod generate;
pub mod import;
pub mod keys;
pub mod root;
pub mod site;
pub mod source;
