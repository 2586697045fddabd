//! consentry-publish: the registry database, import, keys, signing, snapshot
//! building and bundling. The format itself lives in the `consentry` crate.

/// `println!` that never panics: a closed stdout (`consentry-publish … | head`)
/// becomes an [`cli::StdoutClosed`] error, which the binary turns into a quiet
/// exit instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))?
    };
}

pub mod advice;
pub mod build;
pub mod bundle;
pub mod cli;
pub mod db;
pub mod demo;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
pub mod generate;
pub mod guard;
pub mod import;
pub mod keys;
pub mod lock;
pub mod log;
pub mod pg;
pub mod progress;
pub mod push;
pub mod registry;
pub mod root;
pub mod signer;
pub mod site;
pub mod source;
