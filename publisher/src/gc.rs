//! Removing files no recent manifest references. The current head's manifest
//! and everything it names are never removed.

use std::collections::BTreeSet;
use std::fs;

use anyhow::{Context, Result};
use consentry::docs::{Manifest, paths};
use consentry::envelope::Envelope;
use consentry::{cbor, limits::Limits};

use crate::site::Site;

/// What gc did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    pub kept_manifests: u64,
    pub removed_files: u64,
    pub removed_bytes: u64,
    /// Site-relative names and sizes of the files removed (or that a dry run
    /// would remove), sorted.
    pub removed: Vec<(String, u64)>,
    /// Nothing was removed: the report says what would be.
    pub dry_run: bool,
}

/// Add a manifest and every data file it names to `keep`.
pub(crate) fn referenced(m: &Manifest, manifest_rel: &str, keep: &mut BTreeSet<String>) {
    keep.insert(manifest_rel.to_string());
    keep.extend(m.data_files().into_iter().map(|(rel, _)| rel));
}

/// The manifest in a manifest file of our own site (its payload; the
/// signatures are the verifier's business), or `None` when it is unreadable.
pub(crate) fn read_manifest(rel: &str, bytes: &[u8]) -> Option<Manifest> {
    let env = Envelope::parse(rel, bytes, &Limits::DEFAULT).ok()?;
    cbor::from_slice_canonical::<Manifest>(&env.payload).ok()
}

/// Keep the files of the `keep` newest manifest versions (at least the
/// current); remove the other manifests and data files, or with `dry_run`
/// only list them.
pub fn gc(site: &Site, lock: &crate::lock::SiteLock, keep: u64, dry_run: bool) -> Result<GcReport> {
    site.check_lock(lock)?;
    let root = site.root()?;
    let cur = site.current(&root)?.ok_or_else(|| {
        crate::advise!(
            "{} has nothing published yet",
            "run consentry-publish publish first",
            site.dir.display()
        )
    })?;
    let mut manifests: Vec<(u64, String)> = Vec::new();
    if let Ok(rd) = fs::read_dir(site.path("manifest")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(v) = name.split('.').next().and_then(|v| v.parse::<u64>().ok()) {
                manifests.push((v, format!("manifest/{name}")));
            }
        }
    }
    manifests.sort();
    let mut keep_set = BTreeSet::new();
    referenced(
        &cur.manifest,
        &paths::manifest(cur.manifest.version, &cur.manifest_sha256),
        &mut keep_set,
    );
    let floor = cur.manifest.version.saturating_sub(keep.max(1) - 1);
    let mut report = GcReport {
        kept_manifests: 1,
        dry_run,
        ..GcReport::default()
    };
    for (v, rel) in &manifests {
        if *v < floor || *v > cur.manifest.version || keep_set.contains(rel) {
            continue;
        }
        // An older manifest of our own site: read its payload to learn what it
        // names. A file we cannot read is kept, never guessed about.
        let Ok(bytes) = site.read(rel) else { continue };
        let Some(m) = read_manifest(rel, &bytes) else {
            continue;
        };
        referenced(&m, rel, &mut keep_set);
        report.kept_manifests += 1;
    }
    // Manifests and data files only: roots and the head are never removed.
    let data_dirs = ["manifest", "shard", "layer", "prefix"];
    for e in walkdir::WalkDir::new(&site.dir)
        .min_depth(2)
        .max_depth(2)
        .sort_by_file_name()
        .into_iter()
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let Ok(rel) = e.path().strip_prefix(&site.dir) else {
            continue;
        };
        let rel = rel.to_string_lossy().to_string();
        let in_data_dir = rel
            .split_once('/')
            .is_some_and(|(d, _)| data_dirs.contains(&d));
        if !in_data_dir || keep_set.contains(&rel) {
            continue;
        }
        let len = e.metadata().map_or(0, |m| m.len());
        if !dry_run {
            fs::remove_file(e.path()).with_context(|| format!("removing {rel}"))?;
        }
        report.removed_files += 1;
        report.removed_bytes += len;
        report.removed.push((rel, len));
    }
    Ok(report)
}
