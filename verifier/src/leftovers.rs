//! Leftovers of killed runs: temporary files from atomic writes (`.tmp*`)
//! in a site or store directory. Sites and stores are served as they are,
//! so a temp file left by a kill would be junk on a CDN or mirror. Each
//! writer removes them at its next run, while it holds the directory's lock
//! (so no live writer's temp file is ever touched).

use std::path::Path;

use crate::fetch::SITE_DIRS;

/// The prefix every atomic write's temporary file starts with.
pub const TMP_PREFIX: &str = ".tmp";

/// Remove `.tmp*` regular files directly in `dir`, in its site directories
/// and in `extra` subdirectories. Returns how many were removed. Errors are
/// ignored: a leftover that cannot be removed is harmless to correctness.
pub fn remove_tmp_files(dir: &Path, extra: &[&str]) -> usize {
    let known = |parent: &Path| {
        parent == dir || SITE_DIRS.iter().chain(extra).any(|d| parent == dir.join(d))
    };
    let mut removed = 0;
    // Deep enough for `local/index/`; symlinks are never followed.
    for e in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .max_depth(3)
        .into_iter()
        .filter_map(Result::ok)
    {
        let is_tmp = e.file_name().to_string_lossy().starts_with(TMP_PREFIX);
        if is_tmp
            && e.file_type().is_file()
            && e.path().parent().is_some_and(known)
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tmp_files_in_known_directories_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for f in [
            ".tmp-a",
            "shard/.tmpXYZ",
            "local/.tmp-1",
            "head.cbor",
            "shard/ab.zst",
            "other/.tmp-x",
        ] {
            let f = p.join(f);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, b"x").unwrap();
        }
        std::fs::create_dir_all(p.join("layer/.tmp-dir")).unwrap();
        assert_eq!(remove_tmp_files(p, &["local"]), 3);
        assert!(p.join("head.cbor").exists() && p.join("shard/ab.zst").exists());
        assert!(
            p.join("other/.tmp-x").exists(),
            "unknown directories are left alone"
        );
        assert!(
            p.join("layer/.tmp-dir").is_dir(),
            "directories are left alone"
        );
    }
}
