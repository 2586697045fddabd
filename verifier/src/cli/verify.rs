//! `consentry verify`: re-check the whole store; `--repair` rebuilds the index.

use std::io::Write;

use clap::Args;

use super::{Ctx, w};
use crate::error::Rejection;
use crate::store::IndexCheck;

/// Re-check the whole store from the pinned root; writes nothing (exit 1
/// if the local index is missing or damaged)
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Rebuild a missing or damaged local index from the verified files
    /// and remove leftovers of killed runs (the one write verify makes)
    #[arg(long)]
    repair: bool,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &VerifyArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let VerifyArgs { repair } = args;
    let now = ctx.now;
    let expiry = ctx.expiry;
    let open = || ctx.open();

    let store = open()?;
    let v = if *repair {
        store.verify_and_repair(now, expiry)?
    } else {
        store.verify(now, expiry)?
    };
    let index = match &v.index {
        IndexCheck::Intact => "index intact".to_string(),
        IndexCheck::Missing => {
            "index MISSING: lookups build a temporary one each run; `consentry verify --repair` rebuilds it".to_string()
        }
        IndexCheck::Corrupt(why) => format!(
            "index DAMAGED ({why}): lookups build a temporary one each run; `consentry verify --repair` rebuilds it"
        ),
        IndexCheck::Built => "index was missing: built".to_string(),
        IndexCheck::Rebuilt(why) => format!("index was corrupt ({why}): rebuilt"),
    };
    w(
        stdout,
        &format!(
            "verified snapshot version {} (manifest {}){}\n  root chain to version {}\n  {} files ({} bytes) re-hashed and decoded\n  state rebuilt from base and layers matches every signed leaf ({} entries)\n  {index}\n",
            v.version,
            v.manifest_sha256,
            if v.expired { " [EXPIRED]" } else { "" },
            v.root_version,
            v.files_checked,
            v.bytes_checked,
            v.entries
        ),
    )?;
    Ok(i32::from(v.index != IndexCheck::Intact))
}
