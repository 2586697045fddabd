//! A published fixture registry: the example declarations, INSECURE test keys,
//! a site, all in a temp dir.

use std::path::{Path, PathBuf};

use consentry_tests::{data, publish};

/// Time the fixture's declarations are recorded at; snapshot times follow it.
pub const T0: &str = "2026-11-01T00:00:00Z";
/// The verifier's clock in these tests: after T0, before the head expires (72 h).
pub const NOW: &str = "2026-11-01T12:00:00Z";

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// init → import the example CSV → INSECURE keys → root init, nothing published.
    pub fn unpublished() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { dir };
        f.publish(&["init", "--db", "reg.db"]).ok();
        f.publish(&[
            "import",
            "--db",
            "reg.db",
            data("declarations.csv").to_str().unwrap(),
            "--recorded-at",
            T0,
        ])
        .ok();
        consentry_publish::keys::write_insecure_keys(&f.path("keys"), false).unwrap();
        f.publish(&[
            "root", "init", "--keys", "keys", "--site", "site", "--now", T0,
        ])
        .ok();
        f
    }

    /// The fixture with version 1 published.
    pub fn published() -> Fixture {
        let f = Fixture::unpublished();
        f.publish(&[
            "publish", "--db", "reg.db", "--keys", "keys", "--site", "site",
        ])
        .ok();
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn publish(&self, args: &[&str]) -> consentry_tests::Run {
        publish(args, self.dir.path())
    }

    /// Run `consentry --store store --now NOW ARGS…` in the fixture.
    pub fn verifier(&self, args: &[&str]) -> consentry_tests::Run {
        let mut full = vec!["--store", "store", "--now", NOW];
        full.extend_from_slice(args);
        consentry_tests::verifier(&full, self.dir.path())
    }

    /// Import CSV rows (header added) recorded at `at`.
    pub fn import_rows(&self, name: &str, rows: &str, at: &str) -> consentry_tests::Run {
        let header = consentry::declaration::COLUMNS.join(",");
        std::fs::write(self.path(name), format!("{header}\n{rows}")).unwrap();
        self.publish(&["import", "--db", "reg.db", name, "--recorded-at", at])
    }

    /// Publish the next version with the INSECURE keys.
    pub fn publish_next(&self, extra: &[&str]) -> consentry_tests::Run {
        let mut args = vec![
            "publish", "--db", "reg.db", "--keys", "keys", "--site", "site",
        ];
        args.extend_from_slice(extra);
        self.publish(&args)
    }

    /// All files of the site, relative path → bytes.
    pub fn site_files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        walk(&self.path("site"))
    }
}

pub fn walk(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}
