//! The registry database: one SQLite file (rusqlite, bundled SQLite).
//!
//! The database holds every declaration the registry ever recorded, which of
//! them are *live* (what a snapshot publishes: [`consentry::declaration::resolve`]
//! of all declarations), an append-only change log of the live set that the
//! snapshot builder turns into delta layers, and the publications made so far.
//!
//! # Schema (version 1)
//!
//! All tables are `STRICT`. Keys are packed ISRC values (`< 2^49`) stored as
//! SQLite `INTEGER`.
//!
//! `meta (key TEXT PRIMARY KEY, value ANY)`
//! : `schema_version = 1`. [`Db::open`] refuses a file without it.
//!
//! `declarations` — one row per declaration, never deleted:
//!
//! | column | meaning |
//! |---|---|
//! | `id TEXT PRIMARY KEY` | declaration id |
//! | `seq INTEGER UNIQUE NOT NULL` | registry sequence number (> 0) |
//! | `action TEXT` | `declare` or `revoke` |
//! | `supersedes TEXT` | id it replaces or revokes, or NULL |
//! | `scope TEXT` | canonical scope text ([`Scope::canonical`]) |
//! | `scope_lo INTEGER` | first key of the scope ([`Scope::key_range`]`.0`) |
//! | `specificity INTEGER` | 1 registrant, 2 registrant-year, 3 exact ISRC |
//! | `exact INTEGER` | 1 for an ISRC scope, 0 for a prefix |
//! | `declarant_id`, `declarant_name`, `declarant_role` | who declares |
//! | `all_use`, `train_ai`, `train_genai`, `ai_use`, `search` | `y`, `n`, `c` or NULL (silent) |
//! | `policy_url`, `policy_sha256` | terms of `c`; digest as lower-case hex |
//! | `territories_include`, `territories_exclude` | space-separated codes (`WW` = worldwide) |
//! | `valid_from`, `valid_until` | `YYYY-MM-DD` or NULL |
//! | `declared_at`, `recorded_at` | Unix seconds |
//! | `status TEXT` | `active` or `disputed` |
//! | `live INTEGER` | 1 when the entry is published (not superseded or revoked) |
//! | `superseded_by TEXT` | id of the declaration that replaced or revoked it |
//! | `policy BLOB` | canonical CBOR of [`Policy`] (the source of truth; the columns above it are for people and queries) |
//!
//! Indexes: `(exact, live, scope_lo, seq)` for the live listings and batch
//! fetches, `(supersedes)` for relation checks.
//!
//! `declarants (id TEXT PRIMARY KEY, name, role)` — the latest name and role
//! each declarant used.
//!
//! `change_log (change_id INTEGER PRIMARY KEY AUTOINCREMENT, declaration_id,
//! scope_lo, seq, exact, kind, recorded_at)` — append-only; `kind` is
//! `insert` (an entry became live), `delete` (a live entry was superseded or
//! revoked) or `update` (a live entry's policy changed, e.g. its status). An
//! entry is identified by `(scope_lo, seq)`. `change_id` is the rowid, so
//! windows `(after, upto]` are range scans; index `(exact, change_id)`.
//!
//! `publications (version INTEGER PRIMARY KEY, change_id, manifest_sha256 BLOB)`
//! — which change-log position each published manifest version reflects.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use consentry::Scope;
use consentry::columns::PolicySet;
use consentry::declaration::{Action, Declaration, Record};
use consentry::model::{Policy, Pref};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

// CHECKs spell out `a = x OR a = y`: SQLite evaluates `a IN (x, y, z)` with a
// temporary table on every insert, which doubles the cost of a large import.
const SCHEMA: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value ANY
) STRICT;

CREATE TABLE declarants (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL
) STRICT;

CREATE TABLE declarations (
    id                  TEXT PRIMARY KEY,
    seq                 INTEGER UNIQUE NOT NULL CHECK (seq > 0),
    action              TEXT NOT NULL CHECK (action IN ('declare', 'revoke')),
    supersedes          TEXT,
    scope               TEXT NOT NULL,
    scope_lo            INTEGER NOT NULL,
    specificity         INTEGER NOT NULL CHECK (specificity BETWEEN 1 AND 3),
    exact               INTEGER NOT NULL CHECK (exact IN (0, 1)),
    declarant_id        TEXT NOT NULL,
    declarant_name      TEXT NOT NULL,
    declarant_role      TEXT NOT NULL,
    all_use             TEXT CHECK (all_use = 'y' OR all_use = 'n' OR all_use = 'c'),
    train_ai            TEXT CHECK (train_ai = 'y' OR train_ai = 'n' OR train_ai = 'c'),
    train_genai         TEXT CHECK (train_genai = 'y' OR train_genai = 'n' OR train_genai = 'c'),
    ai_use              TEXT CHECK (ai_use = 'y' OR ai_use = 'n' OR ai_use = 'c'),
    search              TEXT CHECK (search = 'y' OR search = 'n' OR search = 'c'),
    policy_url          TEXT,
    policy_sha256       TEXT,
    territories_include TEXT NOT NULL,
    territories_exclude TEXT NOT NULL,
    valid_from          TEXT,
    valid_until         TEXT,
    declared_at         INTEGER NOT NULL,
    recorded_at         INTEGER NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('active', 'disputed')),
    live                INTEGER NOT NULL CHECK (live IN (0, 1)),
    superseded_by       TEXT,
    policy              BLOB NOT NULL
) STRICT;
CREATE INDEX declarations_live ON declarations (exact, live, scope_lo, seq);
CREATE INDEX declarations_supersedes ON declarations (supersedes);

CREATE TABLE change_log (
    change_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    declaration_id TEXT NOT NULL,
    scope_lo       INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    exact          INTEGER NOT NULL CHECK (exact IN (0, 1)),
    kind           TEXT NOT NULL CHECK (kind = 'insert' OR kind = 'delete' OR kind = 'update'),
    recorded_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX change_log_exact ON change_log (exact, change_id);

CREATE TABLE publications (
    version         INTEGER PRIMARY KEY,
    change_id       INTEGER NOT NULL,
    manifest_sha256 BLOB NOT NULL CHECK (length(manifest_sha256) = 32)
) STRICT;
";

/// The explicit indexes of [`SCHEMA`] (a test checks they are its text), which
/// a bulk insert into an empty registry drops and rebuilds.
const INDEXES: [&str; 3] = [
    "CREATE INDEX declarations_live ON declarations (exact, live, scope_lo, seq);",
    "CREATE INDEX declarations_supersedes ON declarations (supersedes);",
    "CREATE INDEX change_log_exact ON change_log (exact, change_id);",
];

/// How long to wait for another process's lock on the database.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Columns that rebuild a [`Declaration`].
const DECL_COLUMNS: &str = "id, seq, action, supersedes, scope, declared_at, policy";

/// How many rows the registry holds, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Every declaration ever recorded (live or not).
    pub declarations: u64,
    /// Live entries (what a snapshot publishes), revocations included.
    pub live: u64,
    /// Live entries with an ISRC scope.
    pub exact: u64,
    /// Live entries with a prefix scope (`CC-XXX`, `CC-XXX-YY`).
    pub prefix: u64,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} declarations, {} live entries ({} ISRC, {} prefix)",
            self.declarations, self.live, self.exact, self.prefix
        )
    }
}

/// A validated set of changes for [`Db::apply`]: new declarations and
/// status-only updates of existing ones. The importer builds it after checking
/// every rule; `apply` writes it in one transaction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Batch {
    /// New declarations; applied in `seq` order.
    pub adds: Vec<Declaration>,
    /// Existing declarations whose `status` changed (the new version).
    pub status_updates: Vec<Declaration>,
    /// Unix seconds written as `recorded_at`.
    pub recorded_at: i64,
}

/// The registry database.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
}

fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| anyhow!("{what} {v} is too large for the registry database"))
}

fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| anyhow!("corrupt registry database: negative {what} {v}"))
}

pub(crate) fn letter(code: u8) -> Option<&'static str> {
    match Pref::from_code(code) {
        Some(Pref::Allow) => Some("y"),
        Some(Pref::Disallow) => Some("n"),
        Some(Pref::Constrained) => Some("c"),
        Some(Pref::Silent) | None => None,
    }
}

pub(crate) fn decode_policy(blob: &[u8], id: &str) -> Result<Policy> {
    consentry::cbor::from_slice_canonical(blob)
        .map_err(|e| anyhow!("corrupt registry database: policy of {id}: {e}"))
}

fn parse_scope(text: &str, id: &str) -> Result<Scope> {
    Scope::parse(text).map_err(|e| anyhow!("corrupt registry database: scope of {id}: {e}"))
}

/// Rebuild a declaration from a row selected with [`DECL_COLUMNS`].
fn declaration_from_row(row: &Row<'_>) -> Result<Declaration> {
    let id: String = row.get(0)?;
    let seq = to_u64(row.get(1)?, "seq")?;
    let action = match row.get_ref(2)?.as_str()? {
        "declare" => Action::Declare,
        "revoke" => Action::Revoke,
        other => bail!("corrupt registry database: action `{other}` of {id}"),
    };
    let supersedes: Option<String> = row.get(3)?;
    let scope = parse_scope(row.get_ref(4)?.as_str()?, &id)?;
    let declared_at: i64 = row.get(5)?;
    let policy = decode_policy(row.get_ref(6)?.as_blob()?, &id)?;
    Ok(Declaration {
        id,
        seq,
        action,
        supersedes,
        scope,
        policy,
        declared_at,
    })
}

/// Decodes policy blobs, decoding each distinct blob once (entries share
/// policies: a label's ten thousand opt-outs are one policy).
#[derive(Default)]
pub(crate) struct PolicyCache(HashMap<Vec<u8>, Policy>);

impl PolicyCache {
    pub(crate) fn get(&mut self, blob: &[u8], id: &str) -> Result<Policy> {
        if let Some(p) = self.0.get(blob) {
            return Ok(p.clone());
        }
        let p = decode_policy(blob, id)?;
        self.0.insert(blob.to_vec(), p.clone());
        Ok(p)
    }
}

/// Interns policy blobs into a [`PolicySet`], decoding each distinct blob
/// once.
#[derive(Default)]
pub(crate) struct BlobInterner(HashMap<Vec<u8>, u32, consentry::index::FastHash>);

impl BlobInterner {
    pub(crate) fn get(&mut self, blob: &[u8], id: &str, set: &mut PolicySet) -> Result<u32> {
        if let Some(&i) = self.0.get(blob) {
            return Ok(i);
        }
        let i = set.intern(&decode_policy(blob, id)?);
        self.0.insert(blob.to_vec(), i);
        Ok(i)
    }
}

/// Read `scope, seq, id, policy` rows into records.
fn records_from_query(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    cache: &mut PolicyCache,
    out: &mut Vec<Record>,
) -> Result<()> {
    let mut rows = stmt.query(params)?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(2)?;
        let scope = parse_scope(row.get_ref(0)?.as_str()?, &id)?;
        let seq = to_u64(row.get(1)?, "seq")?;
        let policy = cache.get(row.get_ref(3)?.as_blob()?, &id)?;
        out.push(Record {
            scope,
            seq,
            id,
            policy,
        });
    }
    Ok(())
}

mod backend;
pub(crate) mod scan;
mod source;
mod write;

use write::CLOCK_KEY;
pub use write::{BulkWriter, RowSink};

impl Db {
    /// Create a new, empty registry database at `path`. Refuses to touch an
    /// existing file.
    pub fn create(path: &Path) -> Result<Db> {
        // `create_new` makes the existence check and the creation one step.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
                "{p} already exists; refusing to overwrite it (to add declarations to it, run \
                 `consentry-publish import --db {p} FILE`; for a new registry, choose another path)",
                p = path.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", path.display()));
            }
        }
        let made = (|| -> Result<Db> {
            let mut conn = Connection::open(path)?;
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION],
            )?;
            tx.commit()?;
            Db::tuned(conn)
        })();
        if made.is_err() {
            // We created the file a moment ago; leave nothing half-made behind.
            let _ = std::fs::remove_file(path);
        }
        made.with_context(|| format!("cannot create registry database {}", path.display()))
    }

    /// Open an existing registry database. Refuses a missing file and any file
    /// that is not a registry database of this schema version.
    pub fn open(path: &Path) -> Result<Db> {
        let hint = "create one with `consentry-publish init`";
        if !path.is_file() {
            bail!("{} does not exist or is not a file; {hint}", path.display());
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open {}", path.display()))?;
        // Wait for another process's lock before deciding what the file is.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let version: Option<rusqlite::types::Value> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| {
                anyhow!(
                    "{} is not a consentry registry database ({e}); {hint}",
                    path.display()
                )
            })?;
        match version {
            Some(rusqlite::types::Value::Integer(SCHEMA_VERSION)) => Db::tuned(conn),
            Some(v) => bail!(
                "{} has registry schema version {}; this build reads version {SCHEMA_VERSION}",
                path.display(),
                match v {
                    rusqlite::types::Value::Integer(n) => n.to_string(),
                    rusqlite::types::Value::Real(f) => f.to_string(),
                    rusqlite::types::Value::Text(t) => format!("`{t}`"),
                    rusqlite::types::Value::Null => "NULL".to_string(),
                    rusqlite::types::Value::Blob(b) => format!("a {}-byte blob", b.len()),
                }
            ),
            None => bail!(
                "{} is not a consentry registry database (no schema_version); {hint}",
                path.display()
            ),
        }
    }

    /// A second, read-only connection that sees exactly this connection's
    /// snapshot, or `None` when that cannot be guaranteed. It can when this
    /// connection is inside a read transaction (it holds the SHARED lock from
    /// its first read on) on a rollback-journal database: no writer commits
    /// while a SHARED lock is held, so a reader that starts later reads the
    /// same committed state. In WAL mode, or for an in-memory database, a
    /// publish scans on one thread.
    fn second_reader(&self) -> Result<Option<Connection>> {
        let Some(path) = self.conn.path().filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        if self.conn.is_autocommit() {
            return Ok(None);
        }
        // A read inside the transaction: from here on the lock is held.
        self.conn
            .query_row("SELECT COUNT(*) FROM meta", [], |r| r.get::<_, i64>(0))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if mode.eq_ignore_ascii_case("wal") || mode.eq_ignore_ascii_case("memory") {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open {path} a second time for reading"))?;
        conn.execute_batch("PRAGMA cache_size = -65536")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(Some(conn))
    }

    fn tuned(conn: Connection) -> Result<Db> {
        // The default page cache (2 MB) thrashes on the indexes of a large
        // import; 64 MiB keeps them in memory.
        conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA foreign_keys = ON")?;
        // Another process (a publish reading, an import writing) holds a lock
        // for seconds at most: wait for it rather than fail at once.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(Db { conn })
    }

    /// Run `f` inside one write transaction (`BEGIN IMMEDIATE`): `f` reads a
    /// registry that no other writer can change between its checks and its
    /// writes, and the reads share one lock instead of taking one each. Commits
    /// when `f` returns `Ok`, rolls back when it returns `Err`.
    pub(crate) fn write_transaction<T, E: From<anyhow::Error>>(
        &mut self,
        f: impl FnOnce(&mut Db) -> Result<T, E>,
    ) -> Result<T, E> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .context("cannot lock the registry database for writing")?;
        match f(self) {
            Ok(v) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(v),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(anyhow::Error::from(e)
                        .context("cannot commit to the registry database")
                        .into())
                }
            },
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        }
    }

    /// Set a text value in the `meta` table. `schema_version` is reserved.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        if key == "schema_version" || key == CLOCK_KEY {
            bail!("meta key {key} is managed by the database itself");
        }
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
impl Db {
    /// Every row of every table, as text: equal dumps mean equal content.
    pub(crate) fn dump(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for table in [
            "meta",
            "declarants",
            "declarations",
            "change_log",
            "publications",
        ] {
            let mut stmt = self
                .conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
                .unwrap();
            let n = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            writeln!(out, "[{table}]").unwrap();
            while let Some(row) = rows.next().unwrap() {
                for i in 0..n {
                    let v: rusqlite::types::Value = row.get(i).unwrap();
                    write!(out, "{v:?}|").unwrap();
                }
                out.push('\n');
            }
        }
        out
    }

    /// The kinds of the change-log rows, in order, as `kind:declaration_id`.
    pub(crate) fn change_kinds(&self) -> Vec<String> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, declaration_id FROM change_log ORDER BY change_id")
            .unwrap();
        stmt.query_map([], |r| {
            Ok(format!(
                "{}:{}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::scan::{SPLIT_SCAN_MIN_ROWS, merge_scans, scan_live_exact};
    use super::write::scan_registry_time;
    use super::*;
    use crate::import::{ImportOptions, import_files};
    use crate::registry::Backend;
    use crate::source::{Change, Publication, Source};
    use consentry::columns::Rows;
    use consentry::declaration::{COLUMNS, resolve};
    use std::collections::BTreeSet;
    use std::collections::{BTreeMap, HashSet};
    use std::fmt::Write as _;
    use std::path::PathBuf;

    const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    /// Change id, live exact entries and their policies at one moment.
    type Checkpoint = (u64, BTreeSet<(u64, u64)>, BTreeMap<u64, Policy>);

    fn data(name: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/")).join(name)
    }

    fn opts(t: i64) -> ImportOptions {
        ImportOptions { recorded_at: t }
    }

    /// The example CSV's header and its data lines.
    fn example_lines() -> (String, Vec<String>) {
        let text = std::fs::read_to_string(data("declarations.csv")).unwrap();
        let mut lines = text.lines().map(str::to_string);
        let header = lines.next().unwrap();
        (header, lines.collect())
    }

    /// Write a CSV of the example rows whose ids are in `ids`.
    fn example_subset(dir: &Path, name: &str, ids: &[&str]) -> PathBuf {
        let (header, lines) = example_lines();
        let mut text = header + "\n";
        for l in lines {
            if ids.contains(&l.split(',').next().unwrap()) {
                text.push_str(&l);
                text.push('\n');
            }
        }
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// [`Source::records`] as owned records.
    fn records(db: &Db, keys: &[(Scope, u64)]) -> Vec<Record> {
        let mut set = PolicySet::default();
        let rows = db.records(keys, &mut set).unwrap();
        crate::source::to_records(&rows, &set)
    }

    fn live_set(db: &dyn Backend) -> BTreeSet<(u64, u64)> {
        db.live_exact_records()
            .unwrap()
            .iter()
            .map(|r| (r.scope.key_range().0, r.seq))
            .collect()
    }

    fn assert_live_is_resolve(db: &Db) {
        assert_eq!(
            db.registry_time().unwrap(),
            scan_registry_time(&db.conn).unwrap(),
            "the cached registry clock differs from the tables"
        );
        assert_resolve(db);
    }

    /// The live set is `resolve` of all declarations, on any backend.
    fn assert_resolve(db: &dyn Backend) {
        let all = db.all_declarations().unwrap();
        assert!(consentry::declaration::check_relations(&all).is_empty());
        let expected = resolve(&all);
        let mut live = db.live_prefixes().unwrap();
        live.extend(db.live_exact_records().unwrap());
        live.sort_by(|a, b| {
            (a.scope.key_range().0, a.scope, a.seq).cmp(&(b.scope.key_range().0, b.scope, b.seq))
        });
        assert_eq!(live, expected);
        let c = db.counts().unwrap();
        assert_eq!(c.declarations as usize, all.len());
        assert_eq!(c.live as usize, expected.len());
        assert_eq!(c.exact + c.prefix, c.live);
    }

    /// PostgreSQL's two-connection scan of a large registry (an exported
    /// snapshot, two heap halves) reads exactly what SQLite reads, after a
    /// bulk generation and after a churn.
    #[test]
    fn postgres_split_scan_and_churn_equal_sqlite() {
        let Some(url) = crate::pg::test_database("split_scan").unwrap() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut lite = Db::create(&dir.path().join("r.db")).unwrap();
        let (mut pg, _) = crate::pg::PgDb::init(&url).unwrap();
        let o = crate::generate::GenOptions {
            records: 80_000,
            ..crate::generate::GenOptions::default()
        };
        crate::generate::generate_into(&mut lite, &o, T0).unwrap();
        crate::generate::generate_into(&mut pg, &o, T0).unwrap();
        let read = |b: &mut dyn Backend| {
            b.begin_snapshot().unwrap();
            let mut set = PolicySet::default();
            let rows = b.live_exact(&mut set).unwrap();
            b.end_snapshot(true).unwrap();
            let pols: Vec<Policy> = rows.pol.iter().map(|&p| set.get(p).clone()).collect();
            let ids: Vec<String> = (0..rows.len()).map(|i| rows.id(i).to_string()).collect();
            (rows.keys.clone(), rows.seqs.clone(), ids, pols)
        };
        let a = read(&mut lite);
        assert!(a.0.len() > 70_000);
        assert_eq!(a, read(&mut pg));
        // Nightly churn through the shared rules: the same changes, in the
        // same change-log order, on both.
        let churn = crate::generate::ChurnOptions {
            fraction: 0.01,
            seed: 3,
            id_prefix: "CH-".into(),
        };
        let r1 = crate::generate::churn(&mut lite, &churn, T0 + 86_400).unwrap();
        let r2 = crate::generate::churn(&mut pg, &churn, T0 + 86_400).unwrap();
        assert_eq!(r1, r2);
        assert_eq!(lite.change_log().unwrap(), pg.change_log().unwrap());
        assert_eq!(lite.counts().unwrap(), pg.counts().unwrap());
        let last = lite.last_change().unwrap();
        assert_eq!(last, pg.last_change().unwrap());
        let before = last - (r1.releases + 2 * (r1.changes + r1.revocations));
        assert_eq!(
            lite.exact_changes(before, last).unwrap(),
            pg.exact_changes(before, last).unwrap()
        );
        assert_eq!(read(&mut lite), read(&mut pg));
    }

    /// A registry large enough for the two-thread scan reads exactly what
    /// one scan over all rowids reads — same rows, order, ids and policies —
    /// and a WAL database (where a second connection could see a later
    /// snapshot) is scanned on one thread.
    #[test]
    fn split_scan_equals_one_scan_and_wal_is_not_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let mut db = Db::create(&path).unwrap();
        let o = crate::generate::GenOptions {
            records: 80_000,
            ..crate::generate::GenOptions::default()
        };
        crate::generate::generate_into(&mut db, &o, T0).unwrap();
        let (lo, hi): (i64, i64) = db
            .conn
            .query_row("SELECT MIN(rowid), MAX(rowid) FROM declarations", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert!(hi - lo >= SPLIT_SCAN_MIN_ROWS, "too small to split");
        let policies = |set: &PolicySet, rows: &Rows| -> Vec<Policy> {
            rows.pol.iter().map(|&p| set.get(p).clone()).collect()
        };

        let mut one_set = PolicySet::default();
        let one = merge_scans(&[scan_live_exact(&db.conn, lo, hi).unwrap()], &mut one_set).unwrap();
        assert!(one.len() > 70_000);

        db.begin_snapshot().unwrap();
        let mut set = PolicySet::default();
        let split = db.live_exact(&mut set).unwrap();
        assert!(
            db.second_reader().unwrap().is_some(),
            "the scan holds the lock"
        );
        db.end_snapshot(true).unwrap();
        assert_eq!(split.keys, one.keys);
        assert_eq!(split.seqs, one.seqs);
        assert!((0..one.len()).all(|i| split.id(i) == one.id(i)));
        assert_eq!(policies(&set, &split), policies(&one_set, &one));

        db.conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        db.begin_snapshot().unwrap();
        let mut wal_set = PolicySet::default();
        let wal = db.live_exact(&mut wal_set).unwrap();
        assert!(db.second_reader().unwrap().is_none(), "WAL: one thread");
        db.end_snapshot(true).unwrap();
        assert_eq!(wal, split);
    }

    #[test]
    fn bulk_indexes_are_the_schema_indexes() {
        for i in INDEXES {
            assert!(SCHEMA.contains(i), "{i}");
        }
        assert_eq!(SCHEMA.matches("CREATE INDEX").count(), INDEXES.len());
    }

    #[test]
    fn create_refuses_an_existing_file_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        std::fs::write(&path, b"precious").unwrap();
        let e = Db::create(&path).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");

        let fresh = dir.path().join("new.db");
        let db = Db::create(&fresh).unwrap();
        assert_eq!(db.counts().unwrap(), Counts::default());
        drop(db);
        assert!(Db::create(&fresh).is_err());
        let db = Db::open(&fresh).unwrap();
        assert_eq!(db.meta("schema_version").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn open_refuses_missing_foreign_and_other_version_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.db");
        let e = Db::open(&missing).unwrap_err().to_string();
        assert!(e.contains("consentry-publish init"), "{e}");
        assert!(!missing.exists(), "open must not create the file");

        let text = dir.path().join("notes.db");
        std::fs::write(&text, "not a database at all, just some text").unwrap();
        let e = format!("{:#}", Db::open(&text).unwrap_err());
        assert!(e.contains("not a consentry registry database"), "{e}");

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let e = Db::open(&other).unwrap_err().to_string();
        assert!(e.contains("consentry-publish init"), "{e}");

        let future = dir.path().join("future.db");
        drop(Db::create(&future).unwrap());
        Connection::open(&future)
            .unwrap()
            .execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'", [])
            .unwrap();
        let e = Db::open(&future).unwrap_err().to_string();
        assert!(e.contains("version"), "{e}");
    }

    #[test]
    fn empty_registry_has_time_zero_and_no_changes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::create(&dir.path().join("r.db")).unwrap();
        assert_eq!(db.registry_time().unwrap(), 0);
        assert_eq!(db.last_change().unwrap(), 0);
        assert_eq!(db.max_seq().unwrap(), 0);
        assert!(db.live_exact_records().unwrap().is_empty());
        assert!(db.exact_changes(0, 10).unwrap().is_empty());
        assert!(!db.prefixes_changed(0, 10).unwrap());
        assert!(db.all_declarations().unwrap().is_empty());
    }

    #[test]
    fn example_import_stores_every_column_and_the_live_set_is_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::create(&dir.path().join("r.db")).unwrap();
        import_files(&mut db, &[data("declarations.csv")], &opts(T0)).unwrap();
        assert_live_is_resolve(&db);
        assert_eq!(db.registry_time().unwrap(), T0);
        assert_eq!(db.max_seq().unwrap(), 16);
        let c = db.counts().unwrap();
        // D9 is revoked by D10 and D13 superseded by D14: 14 live entries, of
        // which the 6 prefix scopes D1, D3, D5, D11, D16 ... are counted apart.
        assert_eq!((c.declarations, c.live), (16, 14));
        assert_eq!(c.prefix, 5);

        let row: (
            String,
            i64,
            i64,
            Option<String>,
            Option<String>,
            String,
            String,
            String,
        ) = db
            .connection()
            .query_row(
                "SELECT scope, scope_lo, specificity, train_ai, policy_sha256,
                        territories_include, status, declarant_role
                 FROM declarations WHERE id = 'D6'",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                },
            )
            .unwrap();
        let key = consentry::Isrc::parse("DEXY12300001").unwrap().key();
        assert_eq!(row.0, "DEXY12300001");
        assert_eq!(row.1, key as i64);
        assert_eq!(row.2, 3);
        assert_eq!(row.3.as_deref(), Some("c"));
        assert_eq!(
            row.4.as_deref(),
            Some("2f0c1b5a7d9e3f41c6a8b2d4e6f80a1c3e5b7d9f1a2c4e6b8d0f2a4c6e8b0d2f")
        );
        assert_eq!(
            (row.5.as_str(), row.6.as_str(), row.7.as_str()),
            ("WW", "active", "rights_owner")
        );

        let (live, by): (bool, Option<String>) = db
            .connection()
            .query_row(
                "SELECT live, superseded_by FROM declarations WHERE id = 'D9'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(!live);
        assert_eq!(by.as_deref(), Some("D10"));
        let n: i64 = db
            .connection()
            .query_row("SELECT COUNT(*) FROM declarants", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 9);
        // The revocation is itself a live entry that says "revoked".
        let revocation = db
            .live_exact_records()
            .unwrap()
            .into_iter()
            .find(|r| r.id == "D10")
            .unwrap();
        assert!(revocation.policy.revoke);
        // Within one import, a declaration superseded by another of the same
        // import never enters the change log.
        let kinds = db.change_kinds();
        assert_eq!(kinds.len(), 14);
        assert!(kinds.iter().all(|k| k.starts_with("insert:")));
        assert!(!kinds.contains(&"insert:D9".to_string()));
        assert!(!kinds.contains(&"insert:D13".to_string()));
    }

    #[test]
    fn change_log_folds_per_entry_over_a_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::create(&dir.path().join("r.db")).unwrap();
        let ids = |r: std::ops::RangeInclusive<u32>| -> Vec<String> {
            r.map(|i| format!("D{i}")).collect()
        };
        let import = |db: &mut Db, name: &str, ids: Vec<String>, t: i64| {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let path = example_subset(dir.path(), name, &ids);
            import_files(db, &[path], &opts(t)).unwrap();
            db.last_change().unwrap()
        };
        let c1 = import(&mut db, "a.csv", ids(1..=9), T0);
        assert_eq!(c1, 9);
        assert!(db.prefixes_changed(0, c1).unwrap());
        let exact_first = db.exact_changes(0, c1).unwrap();
        assert_eq!(exact_first.len(), 6);
        assert!(
            exact_first
                .iter()
                .all(|c| !c.existed_before && c.exists_after)
        );
        assert!(
            exact_first
                .windows(2)
                .all(|w| (w[0].scope, w[0].seq) < (w[1].scope, w[1].seq))
        );

        let c2 = import(&mut db, "b.csv", ids(10..=13), T0 + 60);
        assert_eq!(
            db.change_kinds()[c1 as usize..],
            [
                "insert:D10",
                "delete:D9",
                "insert:D11",
                "insert:D12",
                "insert:D13"
            ]
        );
        let c3 = import(&mut db, "c.csv", ids(14..=15), T0 + 120);
        assert_eq!(
            db.change_kinds()[c2 as usize..],
            ["insert:D14", "delete:D13", "insert:D15"]
        );
        assert_eq!(db.registry_time().unwrap(), T0 + 120);
        assert!(db.prefixes_changed(c1, c2).unwrap()); // D11 is NL-A1B-25
        assert!(!db.prefixes_changed(c2, c3).unwrap());
        let ch = |s: &str, seq, before, after| Change {
            scope: Scope::parse(s).unwrap(),
            seq,
            existed_before: before,
            exists_after: after,
        };
        // Deletes of entries live before the window, inserts of new ones.
        assert_eq!(
            db.exact_changes(c2, c3).unwrap(),
            vec![
                ch("GBNWR2500099", 13, true, false),
                ch("GBNWR2500099", 14, false, true),
                ch("SEABC2200001", 15, false, true),
            ]
        );
        // D13 inserted and deleted inside the window: nothing.
        assert_eq!(
            db.exact_changes(c1, c3).unwrap(),
            vec![
                ch("GBNWR2500099", 14, false, true),
                ch("JPAB02500010", 9, true, false),
                ch("JPAB02500010", 10, false, true),
                ch("NLA1B2500005", 12, false, true),
                ch("SEABC2200001", 15, false, true),
            ]
        );
        let all = db.exact_changes(0, c3).unwrap();
        assert!(all.iter().all(|c| c.seq != 9 && c.seq != 13));
        assert!(all.iter().all(|c| !c.existed_before && c.exists_after));
        assert_eq!(all.len(), live_set(&db).len());
        // Empty and reversed windows.
        assert!(db.exact_changes(c3, c3).unwrap().is_empty());
        assert!(db.exact_changes(c3, c1).unwrap().is_empty());
        assert_live_is_resolve(&db);
    }

    #[test]
    fn records_fetches_live_exact_entries_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::create(&dir.path().join("r.db")).unwrap();
        import_files(&mut db, &[data("declarations.csv")], &opts(T0)).unwrap();
        let s = |t: &str| Scope::parse(t).unwrap();
        let got = records(
            &db,
            &[
                (s("USQZ92400123"), 4),
                (s("GBNWR2500017"), 2),
                (s("GBNWR2500099"), 13), // superseded: left out
                (s("GBNWR2500099"), 14),
                (s("GBNWR2500017"), 3), // wrong seq: left out
                (s("ZZZZZ9999999"), 2), // nothing there
                (s("GB-NWR"), 1),       // a prefix has no exact record
                (s("GBNWR2500017"), 2), // asked twice, returned once
            ],
        );
        let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["D2", "D14", "D4"]);
        let all = db.live_exact_records().unwrap();
        let keys: Vec<(Scope, u64)> = all.iter().map(|r| (r.scope, r.seq)).collect();
        assert_eq!(records(&db, &keys), all);
        // Each distinct policy is interned once: reading again adds nothing.
        let mut set = PolicySet::default();
        let rows = db.live_exact(&mut set).unwrap();
        assert_eq!(rows.len(), all.len());
        let n = set.list.len();
        assert_eq!(db.live_exact(&mut set).unwrap(), rows);
        db.records(&keys, &mut set).unwrap();
        assert_eq!(set.list.len(), n);
    }

    #[test]
    fn records_scales_to_a_hundred_thousand_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::create(&dir.path().join("r.db")).unwrap();
        let mut text = COLUMNS.join(",") + "\n";
        for i in 0..20_000u64 {
            writeln!(
                text,
                "B{i},{},declare,,GBXYZ25{:05},Big Label,ddex:PADPIDA2000000001B,label,n,,,,,,,,,,,2025-01-01T00:00:00Z,active",
                i + 1,
                i
            )
            .unwrap();
        }
        let path = dir.path().join("big.csv");
        std::fs::write(&path, text).unwrap();
        let r = import_files(&mut db, &[path], &opts(T0)).unwrap();
        assert_eq!(r.added, 20_000);
        let live = db.live_exact_records().unwrap();
        let mut keys: Vec<(Scope, u64)> = Vec::new();
        for _ in 0..5 {
            keys.extend(live.iter().map(|r| (r.scope, r.seq)));
        }
        keys.reverse();
        assert_eq!(keys.len(), 100_000);
        assert_eq!(records(&db, &keys), live);
    }

    #[test]
    fn publications_are_recorded_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::create(&dir.path().join("r.db")).unwrap();
        assert_eq!(db.publication(1).unwrap(), None);
        let p = Publication {
            version: 1,
            change_id: 7,
            manifest_sha256: [7; 32],
        };
        db.record_publication(&p).unwrap();
        assert_eq!(db.publication(1).unwrap(), Some(p.clone()));
        let q = Publication {
            change_id: 9,
            manifest_sha256: [9; 32],
            ..p
        };
        db.record_publication(&q).unwrap();
        assert_eq!(db.publication(1).unwrap(), Some(q));
        assert_eq!(db.publication(u64::MAX).unwrap(), None);
        let big = Publication {
            version: u64::MAX,
            change_id: 1,
            manifest_sha256: [0; 32],
        };
        assert!(db.record_publication(&big).is_err());
    }

    /// Random registries imported in batches (new declarations, replacements,
    /// revocations and status changes): after every batch the live set is
    /// `resolve` of all declarations, and the change log folded over any
    /// window is exactly the difference between the live sets at its ends.
    #[test]
    fn change_log_replays_the_live_set_over_random_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::create(&dir.path().join("r.db")).unwrap();
        replay_random_batches(&mut db, dir.path());
        assert_live_is_resolve(&db);
    }

    /// The same random batches imported into PostgreSQL and into SQLite give
    /// the same declarations, live sets, change log and change-log windows.
    #[test]
    fn postgres_replays_random_batches_exactly_as_sqlite() {
        let Some(url) = crate::pg::test_database("replay").unwrap() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut lite = Db::create(&dir.path().join("r.db")).unwrap();
        let (mut pg, _) = crate::pg::PgDb::init(&url).unwrap();
        let a = replay_random_batches(&mut lite, dir.path());
        let b = replay_random_batches(&mut pg, dir.path());
        assert_eq!(a, b, "change ids, live sets or policies differ");
        assert_eq!(
            lite.all_declarations().unwrap(),
            pg.all_declarations().unwrap()
        );
        assert_eq!(lite.counts().unwrap(), pg.counts().unwrap());
        assert_eq!(lite.registry_time().unwrap(), pg.registry_time().unwrap());
        assert_eq!(lite.live_prefixes().unwrap(), pg.live_prefixes().unwrap());
        let last = lite.last_change().unwrap();
        for after in 0..=last {
            assert_eq!(
                lite.exact_changes(after, last).unwrap(),
                pg.exact_changes(after, last).unwrap()
            );
        }
    }

    fn replay_random_batches(db: &mut dyn Backend, dir: &Path) -> Vec<Checkpoint> {
        let mut rng = crate::generate::Rng::new(42);
        let declarants = [
            ("ddex:PADPIDA0000000001A", "Label A", "label"),
            ("isni:0000000000000002", "Artist B", "artist"),
            ("ipi:00000000003", "Agent C", "agent"),
        ];
        let scopes = [
            "GBAAA2500001",
            "GBAAA2500002",
            "GBAAA2500003",
            "USBBB2400001",
            "USBBB2400002",
            "GB-AAA",
            "GB-AAA-25",
            "US-BBB",
        ];
        // id -> (row fields, declarant index, scope, is revocation)
        let mut rows: Vec<(Vec<String>, usize, &str, bool)> = Vec::new();
        let mut superseded: HashSet<usize> = HashSet::new();
        let mut seq = 0u64;
        let mut checkpoints: Vec<Checkpoint> = vec![(0, BTreeSet::new(), BTreeMap::new())];
        for batch in 0..25 {
            let mut lines: Vec<Vec<String>> = Vec::new();
            let mut touched: HashSet<usize> = HashSet::new();
            for _ in 0..=rng.below(12) {
                seq += 1;
                let who = rng.below(3) as usize;
                let open: Vec<usize> = (0..rows.len())
                    .filter(|i| !superseded.contains(i) && !rows[*i].3 && rows[*i].1 == who)
                    .collect();
                let mut f = vec![String::new(); COLUMNS.len()];
                let (pid, name, role) = declarants[who];
                f[0] = format!("R{seq}");
                f[1] = seq.to_string();
                f[5] = name.into();
                f[6] = pid.into();
                f[7] = role.into();
                f[19] = "2025-01-01T00:00:00Z".into();
                f[20] = "active".into();
                let mut revoke = false;
                let scope;
                if !open.is_empty() && rng.chance(0.4) {
                    let t = *rng.pick(&open);
                    superseded.insert(t);
                    f[3] = rows[t].0[0].clone();
                    if rng.chance(0.4) {
                        revoke = true;
                        scope = rows[t].2;
                    } else {
                        scope = *rng.pick(&scopes);
                    }
                } else {
                    scope = *rng.pick(&scopes);
                }
                f[2] = if revoke { "revoke" } else { "declare" }.into();
                f[4] = scope.into();
                if !revoke {
                    f[8 + rng.below(5) as usize] = (*rng.pick(&["y", "n"])).into();
                }
                lines.push(f.clone());
                rows.push((f, who, scope, revoke));
                touched.insert(rows.len() - 1);
            }
            // A few status flips of older declarations.
            for _ in 0..rng.below(3) {
                if rows.is_empty() {
                    break;
                }
                let i = rng.below(rows.len() as u64) as usize;
                if touched.insert(i) {
                    let f = &mut rows[i].0;
                    f[20] = if f[20] == "active" {
                        "disputed"
                    } else {
                        "active"
                    }
                    .into();
                    lines.push(f.clone());
                }
            }
            let mut text = COLUMNS.join(",") + "\n";
            for l in &lines {
                text.push_str(&l.join(","));
                text.push('\n');
            }
            let path = dir.join(format!("batch{batch}.csv"));
            std::fs::write(&path, &text).unwrap();
            if let Err(e) = import_files(db, &[path], &opts(T0 + batch)) {
                panic!("{e}\n{text}");
            }
            assert_resolve(db);
            let policies: BTreeMap<u64, Policy> = db
                .live_exact_records()
                .unwrap()
                .into_iter()
                .map(|r| (r.seq, r.policy))
                .collect();
            checkpoints.push((db.last_change().unwrap(), live_set(db), policies));
        }
        for (i, (a, live_a, pol_a)) in checkpoints.iter().enumerate() {
            for (b, live_b, pol_b) in &checkpoints[i..] {
                let changes = db.exact_changes(*a, *b).unwrap();
                let key = |c: &Change| (c.scope.key_range().0, c.seq);
                let inserted: BTreeSet<_> = changes
                    .iter()
                    .filter(|c| !c.existed_before && c.exists_after)
                    .map(key)
                    .collect();
                let deleted: BTreeSet<_> = changes
                    .iter()
                    .filter(|c| c.existed_before && !c.exists_after)
                    .map(key)
                    .collect();
                assert_eq!(inserted, live_b.difference(live_a).copied().collect());
                assert_eq!(deleted, live_a.difference(live_b).copied().collect());
                for c in changes
                    .iter()
                    .filter(|c| c.existed_before && c.exists_after)
                {
                    assert!(live_a.contains(&key(c)) && live_b.contains(&key(c)));
                }
                // Every entry whose policy differs between the ends is named.
                for k in live_a.intersection(live_b) {
                    if pol_a[&k.1] != pol_b[&k.1] {
                        assert!(changes.iter().any(|c| key(c) == *k));
                    }
                }
                assert!(changes.windows(2).all(|w| key(&w[0]) < key(&w[1])));
            }
        }
        checkpoints
    }
}
