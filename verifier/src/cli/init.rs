//! `consentry init`: pin the registry's root.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{Ctx, w};
use crate::error::Rejection;
use crate::store::{Store, role_summary};
use crate::time::format_timestamp;

/// Pin the registry's root (obtained out of band) as the store's trust anchor
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The root file (root/N.cbor from the registry)
    #[arg(long, value_name = "FILE")]
    root: PathBuf,
    /// Re-pin an already initialized store
    #[arg(long)]
    force: bool,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &InitArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let InitArgs { root, force } = args;
    let dir = &ctx.dir;

    let bytes =
        std::fs::read(root).map_err(|e| crate::fetch::io_error(&root.display().to_string(), &e))?;
    let (_, r) = Store::init(dir, &bytes, *force)?;
    let mut s = format!(
        "pinned root version {} (sha256 {}) in {}\nexpires {}\n",
        r.version,
        hex::encode(crate::envelope::sha256(&bytes)),
        dir.display(),
        format_timestamp(r.expires as i64)
    );
    for role in role_summary(&r) {
        let _ = writeln!(
            s,
            "{:<9} threshold {} of {}: {}",
            role.role,
            role.threshold,
            role.keyids.len(),
            role.keyids.join(" ")
        );
    }
    w(stdout, &s)?;
    Ok(0)
}
