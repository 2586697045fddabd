//! A published fixture registry: the example declarations, INSECURE test keys,
//! a site, all in a temp dir.

use std::path::{Path, PathBuf};

use consentry_tests::data;

/// Time the fixture's declarations are recorded at; snapshot times follow it.
pub const T0: &str = "2026-11-01T00:00:00Z";
/// The verifier's clock in these tests: after T0, before the head expires (72 h).
pub const NOW: &str = "2026-11-01T12:00:00Z";
/// The longest any one binary run on the fixture may take before it is
/// killed and the test fails (a hang is a failure, not a wait).
pub const RUN_LIMIT: std::time::Duration = std::time::Duration::from_mins(1);

/// The registry backend a fixture publishes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `reg.db` in the fixture's directory.
    Sqlite,
    /// A fresh database on the server `CONSENTRY_TEST_PG` names.
    Postgres,
}

impl Backend {
    /// The `--db` of a new registry on this backend, or `None` when the
    /// backend is not available here (PostgreSQL without `CONSENTRY_TEST_PG`:
    /// a `skipped:` line; with `CONSENTRY_REQUIRE_PG=1` the test fails
    /// instead).
    pub fn new_db(self, tag: &str) -> Option<String> {
        match self {
            Backend::Sqlite => Some("reg.db".to_string()),
            Backend::Postgres => consentry_publish::pg::test_database(tag).unwrap(),
        }
    }

    /// Whether this backend can run `test`, printing why not.
    pub fn available(self, test: &str) -> bool {
        match self {
            Backend::Sqlite => true,
            Backend::Postgres => consentry_publish::pg::test_database(test)
                .unwrap()
                .is_some(),
        }
    }
}

/// Generate, for each `name` (a `fn name(b: Backend)` in scope), a module
/// `name` with tests `sqlite` and `postgres` running it on each backend:
/// one suite, two registries.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::super::fixture::Backend;
                #[test]
                fn sqlite() {
                    super::$name(Backend::Sqlite);
                }
                #[test]
                fn postgres() {
                    if Backend::Postgres.available(stringify!($name)) {
                        super::$name(Backend::Postgres);
                    }
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// `--db`: `reg.db`, or a PostgreSQL URL.
    pub db: String,
    pub backend: Backend,
}

impl Fixture {
    /// init → import the example CSV → INSECURE keys → root init, nothing published.
    pub fn unpublished() -> Fixture {
        Fixture::unpublished_on(Backend::Sqlite)
    }

    /// [`Fixture::unpublished`] with the registry on `backend`.
    pub fn unpublished_on(backend: Backend) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = backend
            .new_db("fixture")
            .expect("the backend is available (checked by the caller)");
        let f = Fixture { dir, db, backend };
        f.publish(&["init", "--db", &f.db]).ok();
        f.publish(&[
            "import",
            "--db",
            &f.db,
            data("declarations.csv").to_str().unwrap(),
            "--recorded-at",
            T0,
        ])
        .ok();
        consentry_publish::keys::write_insecure_keys(&f.path("keys"), false).unwrap();
        f.publish(&[
            "root",
            "init",
            "--keys",
            "keys",
            "--site",
            "site",
            "--now",
            T0,
            "--expires-in",
            "3650d",
        ])
        .ok();
        f
    }

    /// The fixture with version 1 published.
    pub fn published() -> Fixture {
        Fixture::published_on(Backend::Sqlite)
    }

    /// [`Fixture::published`] with the registry on `backend`.
    pub fn published_on(backend: Backend) -> Fixture {
        let f = Fixture::unpublished_on(backend);
        f.publish(&["publish", "--db", &f.db, "--keys", "keys", "--site", "site"])
            .ok();
        f
    }

    /// Everything the registry holds that a publish or an import could
    /// change, as text (equal text: equal registries), on either backend.
    pub fn registry_state(&self) -> String {
        use consentry_publish::registry::Registry;
        let db = if self.backend == Backend::Sqlite {
            self.path(&self.db).display().to_string()
        } else {
            self.db.clone()
        };
        let mut reg = Registry::open(std::path::Path::new(&db)).unwrap();
        let b = reg.backend();
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            b.all_declarations().unwrap(),
            b.counts().unwrap(),
            b.last_change().unwrap(),
            b.registry_time().unwrap(),
            b.exact_changes(0, b.last_change().unwrap()).unwrap(),
            b.change_log().unwrap(),
        )
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn publish(&self, args: &[&str]) -> consentry_tests::Run {
        consentry_tests::run_bounded("consentry-publish", args, self.dir.path(), RUN_LIMIT)
    }

    /// Run `consentry --store store --now NOW ARGS…` in the fixture.
    pub fn verifier(&self, args: &[&str]) -> consentry_tests::Run {
        let mut full = vec!["--store", "store", "--now", NOW];
        full.extend_from_slice(args);
        consentry_tests::run_bounded("consentry", &full, self.dir.path(), RUN_LIMIT)
    }

    /// Import CSV rows (header added) recorded at `at`.
    pub fn import_rows(&self, name: &str, rows: &str, at: &str) -> consentry_tests::Run {
        let header = consentry::declaration::COLUMNS.join(",");
        std::fs::write(self.path(name), format!("{header}\n{rows}")).unwrap();
        self.publish(&["import", "--db", &self.db, name, "--recorded-at", at])
    }

    /// Publish the next version with the INSECURE keys.
    pub fn publish_next(&self, extra: &[&str]) -> consentry_tests::Run {
        let mut args = vec![
            "publish", "--db", &self.db, "--keys", "keys", "--site", "site",
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

// ---- the adversarial suite's shared steps ---------------------------------

/// After the fixture head (T0 + 72 h) has expired.
pub const LATER: &str = "2026-11-05T00:00:00Z";
/// Before T0, the signed creation time of the fixture's snapshots, by more
/// than the 300 s skew tolerance: a clock that is behind the registry's.
pub const EARLIER: &str = "2026-10-31T23:54:00Z";

impl Fixture {
    /// Version 1 published, a store pinned to `site/root/1.cbor` and synced
    /// from the site directory.
    pub fn synced() -> Fixture {
        Fixture::synced_on(Backend::Sqlite)
    }

    /// [`Fixture::synced`] with the registry on `backend`.
    pub fn synced_on(backend: Backend) -> Fixture {
        let f = Fixture::published_on(backend);
        f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
        f.verifier(&["sync", "site"]).ok();
        f
    }

    /// `consentry --store store --now NOW_ ARGS…`.
    pub fn verifier_at(&self, now: &str, args: &[&str]) -> consentry_tests::Run {
        let mut full = vec!["--store", "store", "--now", now];
        full.extend_from_slice(args);
        consentry_tests::run_bounded("consentry", &full, self.dir.path(), RUN_LIMIT)
    }

    /// The golden questions (`tests/data/lookups.csv`) answered as CSV at
    /// `now`, with any extra global flags: every answer names its snapshot
    /// version and manifest hash, so equal output means the same snapshot.
    pub fn answers_at(&self, now: &str, flags: &[&str]) -> consentry_tests::Run {
        let input = data("lookups.csv");
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["check", "--input", input.to_str().unwrap(), "--csv"]);
        self.verifier_at(now, &args)
    }

    /// The golden answers at NOW (must succeed).
    pub fn answers(&self) -> String {
        self.answers_at(NOW, &[]).ok().stdout
    }

    /// Copy the published site to `name` and return it for tampering.
    pub fn copy_site(&self, name: &str) -> consentry_tests::tamper::Site {
        consentry_tests::tamper::copy_dir(&self.path("site"), &self.path(name));
        consentry_tests::tamper::Site::new(&self.path(name))
    }

    /// Declare one more ISRC (`GBNWR26000NN`, seq and id `D{n}`, n ≥ 17) and
    /// publish the next version with `extra` publish flags.
    pub fn publish_change(&self, n: u32, extra: &[&str]) {
        assert!((17..=80).contains(&n));
        let at = format!(
            "2026-11-01T{:02}:{:02}:00Z",
            (n - 16) / 8,
            ((n - 16) % 8) * 7
        );
        self.import_rows(
            &format!("change-{n}.csv"),
            &format!(
                "D{n},{n},declare,,GBNWR26{n:05},Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,{at},active\n"
            ),
            &at,
        )
        .ok();
        self.publish_next(extra).ok();
    }

    /// An INSECURE key of the fixture: `role` is root, manifest or head.
    pub fn key(&self, role: &str) -> consentry_publish::keys::KeyPair {
        consentry_tests::tamper::key(&self.path(&format!("keys/INSECURE-{role}-1.key")))
    }

    /// `sync` from `evil` (served over HTTP on 127.0.0.1, then as a
    /// directory) is refused with exit 2 naming `code`, and the store still
    /// answers exactly `before`.
    #[track_caller]
    pub fn assert_sync_refused(&self, evil: &str, code: &str, before: &str) {
        let server = consentry_tests::Server::serve(&self.path(evil));
        let run = self.verifier(&["sync", &server.url]);
        consentry_tests::attack::assert_refused(&run, code);
        assert_eq!(
            self.answers(),
            before,
            "answers changed after an HTTP sync refused with {code}"
        );
        drop(server);
        let run = self.verifier(&["sync", evil]);
        consentry_tests::attack::assert_refused(&run, code);
        assert_eq!(
            self.answers(),
            before,
            "answers changed after a directory sync refused with {code}"
        );
        self.assert_no_staging_left();
    }

    /// No staging directory survives a refused run.
    #[track_caller]
    pub fn assert_no_staging_left(&self) {
        if let Ok(rd) = std::fs::read_dir(self.path("store/local")) {
            for e in rd.flatten() {
                assert!(
                    !e.file_name().to_string_lossy().starts_with("staging-"),
                    "staging directory left behind: {}",
                    e.path().display()
                );
            }
        }
    }
}
