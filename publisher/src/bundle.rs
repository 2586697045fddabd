//! Tar bundles for air-gapped transfer: the root chain, the head, the current
//! manifest and every file it names, with fixed metadata so the same site gives
//! the same bytes. GNU tar lists and extracts them.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use consentry::docs::paths;

use crate::site::Site;

/// What went into a bundle.
#[derive(Debug, Clone, Default)]
pub struct BundleReport {
    pub entries: u64,
    pub bytes: u64,
    pub version: u64,
}

/// The site-relative names a bundle of the current snapshot holds, sorted.
pub fn bundle_names(site: &Site) -> Result<(Vec<String>, u64, u64)> {
    let roots = site.roots()?;
    let root = roots
        .last()
        .map(|(r, _)| r.clone())
        .ok_or_else(|| anyhow!("no root"))?;
    let cur = site.current(&root)?.ok_or_else(|| {
        crate::advise!(
            "{} has nothing published yet",
            "run consentry-publish publish first",
            site.dir.display()
        )
    })?;
    let m = &cur.manifest;
    let mut names: Vec<String> = (1..=root.version).map(paths::root).collect();
    names.push(paths::HEAD.to_string());
    names.push(paths::manifest(m.version, &cur.manifest_sha256));
    names.extend(m.data_files().into_iter().map(|(rel, _)| rel));
    // A witnessed root: the log's checkpoint and leaves travel with the
    // snapshot (an air-gapped import checks them as a sync does).
    if root.witnesses.is_some() {
        for rel in [
            consentry::tlog::CHECKPOINT_PATH,
            consentry::tlog::LEAVES_PATH,
        ] {
            if !site.path(rel).is_file() {
                return Err(crate::advise!(
                    "{} is missing: the root names witnesses, so a bundle carries the log",
                    "publish again (it writes the log), then collect the witnesses' cosignatures with `log cosign`",
                    site.path(rel).display()
                ));
            }
            names.push(rel.to_string());
        }
    }
    names.sort();
    names.dedup();
    Ok((names, m.version, m.created))
}

/// Write a bundle of the site's current snapshot to `out`.
pub fn write_bundle(site: &Site, lock: &crate::lock::SiteLock, out: &Path) -> Result<BundleReport> {
    site.check_lock(lock)?;
    let (names, version, created) = bundle_names(site)?;
    let tmp = out.with_extension("tar.partial");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut b = tar::Builder::new(BufWriter::new(file));
    b.mode(tar::HeaderMode::Deterministic);
    let mut report = BundleReport {
        version,
        ..BundleReport::default()
    };
    for name in &names {
        let bytes = site.read(name)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(created);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, bytes.as_slice())
            .with_context(|| format!("adding {name}"))?;
        report.entries += 1;
        report.bytes += bytes.len() as u64;
    }
    let w = b.into_inner().context("finishing the tar")?;
    w.into_inner()
        .map_err(|e| anyhow!("flushing {}: {e}", tmp.display()))?
        .sync_all()?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming into {}", out.display()))?;
    Ok(report)
}
