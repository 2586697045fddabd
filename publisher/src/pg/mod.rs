//! The registry in PostgreSQL (the `postgres` crate, synchronous; plain TCP
//! or a Unix socket, no TLS): `--db postgres://…` or `postgresql://…`, with
//! the libpq `PG*` environment variables filling what the URL leaves out.
//!
//! The schema has the shape of SQLite's (`crate::db`): the same tables,
//! columns, indexes and change log, with PostgreSQL types (`BIGINT` keys and
//! times, `BOOLEAN` flags, `BYTEA` policies). The registry rules are not
//! here: import planning, [`crate::registry::apply`] and the change-log fold
//! run over both backends; this module stores and reads.
//!
//! Concurrency:
//! - a write (import, churn, generate) runs in one transaction that first
//!   takes a transaction-scoped advisory lock ([`WRITE_LOCK`]): writers
//!   serialise, so `seq` checks, declaration ids and change ids (numbered by
//!   the writer, gapless) never race, and changes commit in change-id order;
//! - a publish reads in one `REPEATABLE READ READ ONLY` transaction: one
//!   snapshot, which — writers committing in change-id order — holds exactly
//!   the change log up to its newest id. The publication it records is
//!   written after that transaction, in its own.
//!
//! Schema versions: `meta.schema_version`; `init` creates the schema or
//! applies [`MIGRATIONS`] up to [`SCHEMA_VERSION`], and refuses a newer one.

mod source;
mod write;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use consentry::declaration::{Action, Declaration};
use postgres::{Client, Config, NoTls, Row};

use crate::db::{Counts, SCHEMA_VERSION};
use crate::registry::InitOutcome;
use crate::source::Publication;

/// The advisory lock every registry write holds for its transaction
/// (`pg_advisory_xact_lock`): the bytes of "consentr".
pub const WRITE_LOCK: i64 = 0x636f_6e73_656e_7472;

/// How long a write waits for another writer's lock, and a connection for
/// the server.
const LOCK_WAIT: &str = "15min";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Schema version 1, the shape of SQLite's (see `crate::db`).
const SCHEMA: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE declarants (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL
);

CREATE TABLE declarations (
    id                  TEXT PRIMARY KEY,
    seq                 BIGINT UNIQUE NOT NULL CHECK (seq > 0),
    action              TEXT NOT NULL CHECK (action IN ('declare', 'revoke')),
    supersedes          TEXT,
    scope               TEXT NOT NULL,
    scope_lo            BIGINT NOT NULL,
    specificity         SMALLINT NOT NULL CHECK (specificity BETWEEN 1 AND 3),
    exact               BOOLEAN NOT NULL,
    declarant_id        TEXT NOT NULL,
    declarant_name      TEXT NOT NULL,
    declarant_role      TEXT NOT NULL,
    all_use             TEXT CHECK (all_use IN ('y', 'n', 'c')),
    train_ai            TEXT CHECK (train_ai IN ('y', 'n', 'c')),
    train_genai         TEXT CHECK (train_genai IN ('y', 'n', 'c')),
    ai_use              TEXT CHECK (ai_use IN ('y', 'n', 'c')),
    search              TEXT CHECK (search IN ('y', 'n', 'c')),
    policy_url          TEXT,
    policy_sha256       TEXT,
    territories_include TEXT NOT NULL,
    territories_exclude TEXT NOT NULL,
    valid_from          TEXT,
    valid_until         TEXT,
    declared_at         BIGINT NOT NULL,
    recorded_at         BIGINT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('active', 'disputed')),
    live                BOOLEAN NOT NULL,
    superseded_by       TEXT,
    policy              BYTEA NOT NULL
);

CREATE TABLE change_log (
    change_id      BIGINT PRIMARY KEY,
    declaration_id TEXT NOT NULL,
    scope_lo       BIGINT NOT NULL,
    seq            BIGINT NOT NULL,
    exact          BOOLEAN NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('insert', 'delete', 'update')),
    recorded_at    BIGINT NOT NULL
);

CREATE TABLE publications (
    version         BIGINT PRIMARY KEY,
    change_id       BIGINT NOT NULL,
    manifest_sha256 BYTEA NOT NULL CHECK (length(manifest_sha256) = 32)
);
";

/// The secondary indexes (a bulk load into an empty registry builds them
/// after the rows).
const INDEXES: [&str; 3] = [
    "CREATE INDEX declarations_live ON declarations (exact, live, scope_lo, seq)",
    "CREATE INDEX declarations_supersedes ON declarations (supersedes)",
    "CREATE INDEX change_log_exact ON change_log (exact, change_id)",
];

/// `MIGRATIONS[i]` takes a registry from schema version `i + 1` to `i + 2`.
/// Version 1 is the first; a change of [`SCHEMA`] adds its step here (and
/// bumps [`SCHEMA_VERSION`]), so `init` upgrades an existing registry in
/// place, in one transaction.
const MIGRATIONS: &[&str] = &[];

/// Columns that rebuild a [`Declaration`].
const DECL_COLUMNS: &str = "id, seq, action, supersedes, scope, declared_at, policy";

/// The registry in a PostgreSQL database.
pub struct PgDb {
    client: RefCell<Client>,
    /// How to open a second connection (the split scan).
    config: Config,
    /// The snapshot a publish's transaction exported, for a second
    /// connection to read exactly what this one reads.
    snapshot_id: Option<String>,
    /// Where the database is, for messages (no password).
    name: String,
    /// Publications recorded inside a publish's read-only snapshot, written
    /// when it ends.
    pending: Vec<Publication>,
    in_snapshot: bool,
    /// Inside `begin_write` … `end_write`.
    in_write: bool,
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb")
            .field("db", &self.name)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The connection settings of `url`, completed from the libpq environment
/// variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`) where
/// the URL leaves something out, then the libpq defaults.
pub fn config(url: &str) -> Result<Config> {
    let mut c: Config = url.parse().map_err(|e| {
        crate::advise!(
            "--db {}: not a PostgreSQL URL ({})",
            "write postgres://USER@HOST:PORT/DATABASE (the password from PGPASSWORD or ~/.pgpass is not read: use PGPASSWORD)",
            redact(url),
            e
        )
    })?;
    if c.get_hosts().is_empty() {
        let hosts = env("PGHOST").unwrap_or_else(|| "localhost".into());
        for h in hosts.split(',') {
            c.host(h);
        }
    }
    if c.get_ports().is_empty()
        && let Some(p) = env("PGPORT")
    {
        for p in p.split(',') {
            c.port(p.trim().parse().map_err(|_| {
                crate::advise!("PGPORT `{}` is not a port number", "set PGPORT=5432", p)
            })?);
        }
    }
    if c.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        c.user(&user);
    }
    if c.get_password().is_none()
        && let Some(p) = env("PGPASSWORD")
    {
        c.password(p);
    }
    if c.get_dbname().is_none() {
        let db = env("PGDATABASE")
            .or_else(|| c.get_user().map(str::to_string))
            .unwrap_or_else(|| "postgres".into());
        c.dbname(&db);
    }
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(CONNECT_TIMEOUT);
    }
    c.application_name("consentry-publish");
    Ok(c)
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &url[s + 3..at];
            match user.split_once(':') {
                Some((u, _)) => format!("{}{u}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn describe(c: &Config) -> String {
    let host = c.get_hosts().first().map_or_else(String::new, |h| match h {
        postgres::config::Host::Tcp(h) => h.clone(),
        postgres::config::Host::Unix(p) => p.display().to_string(),
    });
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        c.get_user().unwrap_or(""),
        c.get_dbname().unwrap_or("")
    )
}

/// A database error in plain words: the server's message when there is one.
/// By value: it is every `map_err` of this module.
#[allow(clippy::needless_pass_by_value)]
pub(crate) fn db_err(e: postgres::Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(d) => {
            let mut m = format!("PostgreSQL: {}", d.message());
            if let Some(detail) = d.detail() {
                let _ = write!(m, " ({detail})");
            }
            anyhow!(m)
        }
        None => anyhow!("PostgreSQL: {e}"),
    }
}

pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| anyhow!("{what} {v} is too large for the registry database"))
}

pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| anyhow!("corrupt registry database: negative {what} {v}"))
}

/// Rebuild a declaration from a row selected with [`DECL_COLUMNS`].
fn declaration_from_row(row: &Row) -> Result<Declaration> {
    let id: String = row.try_get(0).map_err(db_err)?;
    let seq = to_u64(row.try_get(1).map_err(db_err)?, "seq")?;
    let action = match row.try_get::<_, &str>(2).map_err(db_err)? {
        "declare" => Action::Declare,
        "revoke" => Action::Revoke,
        other => bail!("corrupt registry database: action `{other}` of {id}"),
    };
    let supersedes: Option<String> = row.try_get(3).map_err(db_err)?;
    let scope = consentry::Scope::parse(row.try_get::<_, &str>(4).map_err(db_err)?)
        .map_err(|e| anyhow!("corrupt registry database: scope of {id}: {e}"))?;
    let declared_at: i64 = row.try_get(5).map_err(db_err)?;
    let policy = crate::db::decode_policy(row.try_get::<_, &[u8]>(6).map_err(db_err)?, &id)?;
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

impl PgDb {
    fn connect(url: &str) -> Result<PgDb> {
        let config = config(url)?;
        let name = describe(&config);
        let client = config.connect(NoTls).map_err(|e| {
            crate::advise!(
                "cannot connect to the registry database {}: {}",
                "check that the server runs and accepts TCP connections there, and the user, password (PGPASSWORD) and database name; TLS is not supported: connect over a private network, a Unix socket or an SSH tunnel",
                name,
                db_err(e)
            )
        })?;
        Ok(PgDb {
            client: RefCell::new(client),
            config,
            snapshot_id: None,
            name,
            pending: Vec::new(),
            in_snapshot: false,
            in_write: false,
        })
    }

    /// The schema version recorded in the database, or `None` when it has no
    /// `meta` table (not a registry yet).
    fn schema_version(&self) -> Result<Option<i64>> {
        let mut c = self.client.borrow_mut();
        let has_meta: bool = c
            .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])
            .map_err(db_err)?
            .get(0);
        if !has_meta {
            return Ok(None);
        }
        let v: Option<String> = c
            .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
            .map_err(db_err)?
            .map(|r| r.get(0));
        match v {
            None => bail!(
                "{} has a `meta` table without schema_version: not a consentry registry; use an empty database",
                self.name
            ),
            Some(v) => Ok(Some(v.parse().map_err(|_| {
                anyhow!("{}: schema_version `{v}` is not a number", self.name)
            })?)),
        }
    }

    /// `init`: create the schema in an empty database, or migrate an older
    /// registry's schema to this build's; a newer one is refused.
    pub fn init(url: &str) -> Result<(PgDb, InitOutcome)> {
        let db = PgDb::connect(url)?;
        {
            let mut c = db.client.borrow_mut();
            c.batch_execute("BEGIN").map_err(db_err)?;
            // Two `init`s at once: one creates, the other then sees it.
            c.query("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                .map_err(db_err)?;
        }
        let run = || -> Result<InitOutcome> {
            let found = db.schema_version()?;
            let mut c = db.client.borrow_mut();
            match found {
                None => {
                    c.batch_execute(SCHEMA).map_err(db_err)?;
                    for i in INDEXES {
                        c.batch_execute(i).map_err(db_err)?;
                    }
                    c.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', $1)",
                        &[&SCHEMA_VERSION.to_string()],
                    )
                    .map_err(db_err)?;
                    Ok(InitOutcome::Created)
                }
                Some(v) if v == SCHEMA_VERSION => Ok(InitOutcome::Current),
                Some(v) if v > SCHEMA_VERSION => Err(newer(&db.name, v)),
                Some(v) => {
                    for step in v..SCHEMA_VERSION {
                        let sql = usize::try_from(step - 1)
                            .ok()
                            .and_then(|i| MIGRATIONS.get(i))
                            .ok_or_else(|| {
                                anyhow!("no migration from schema version {step}: this build cannot upgrade {}", db.name)
                            })?;
                        c.batch_execute(sql)
                            .map_err(db_err)
                            .with_context(|| format!("migrating from schema version {step}"))?;
                    }
                    c.execute(
                        "UPDATE meta SET value = $1 WHERE key = 'schema_version'",
                        &[&SCHEMA_VERSION.to_string()],
                    )
                    .map_err(db_err)?;
                    Ok(InitOutcome::Migrated { from: v })
                }
            }
        };
        let outcome = run();
        let end = if outcome.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = db.client.borrow_mut().batch_execute(end).map_err(db_err);
        let outcome = outcome?;
        ended?;
        Ok((db, outcome))
    }

    /// Open a registry of this build's schema version.
    pub fn open(url: &str) -> Result<PgDb> {
        let db = PgDb::connect(url)?;
        match db.schema_version()? {
            Some(SCHEMA_VERSION) => Ok(db),
            None => Err(crate::advise!(
                "{} holds no consentry registry",
                "create one with `consentry-publish init --db URL`",
                db.name
            )),
            Some(v) if v > SCHEMA_VERSION => Err(newer(&db.name, v)),
            Some(v) => Err(crate::advise!(
                "{} has registry schema version {}; this build reads version {}",
                "migrate it first: `consentry-publish init --db URL` (in one transaction; stop imports meanwhile)",
                db.name,
                v,
                SCHEMA_VERSION
            )),
        }
    }

    /// Where the database is (no password).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A value of the `meta` table.
    pub fn meta_value(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .client
            .borrow_mut()
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .map_err(db_err)?
            .map(|r| r.get(0)))
    }

    /// Counts straight from the tables.
    fn count_rows(&self) -> Result<Counts> {
        let row = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE live),
                        COUNT(*) FILTER (WHERE live AND exact) FROM declarations",
                &[],
            )
            .map_err(db_err)?;
        let (declarations, live, exact) = (
            to_u64(row.get(0), "count")?,
            to_u64(row.get(1), "count")?,
            to_u64(row.get(2), "count")?,
        );
        Ok(Counts {
            declarations,
            live,
            exact,
            prefix: live - exact,
        })
    }

    fn query_declarations(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Declaration>> {
        let rows = self
            .client
            .borrow_mut()
            .query(sql, params)
            .map_err(db_err)?;
        rows.iter().map(declaration_from_row).collect()
    }

    fn declarations_by_id(&self, ids: &[&str]) -> Result<HashMap<String, Declaration>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(50_000) {
            for d in self.query_declarations(
                &format!("SELECT {DECL_COLUMNS} FROM declarations WHERE id = ANY($1)"),
                &[&chunk],
            )? {
                out.insert(d.id.clone(), d);
            }
        }
        Ok(out)
    }
}

fn newer(name: &str, v: i64) -> anyhow::Error {
    crate::advise!(
        "{} has registry schema version {}, newer than this build's {}",
        "use the consentry-publish release that migrated it (or a newer one); an older build never writes a newer schema",
        name,
        v,
        SCHEMA_VERSION
    )
}

/// For tests: a fresh, empty database on the server `CONSENTRY_TEST_PG`
/// names (a URL of an existing database there, e.g. `postgres`), and its
/// URL. `Ok(None)`, with a `skipped:` line on stderr, when the variable is
/// unset; an error instead when `CONSENTRY_REQUIRE_PG=1` (CI), so a run that
/// should test PostgreSQL never skips it silently.
#[doc(hidden)]
pub fn test_database(tag: &str) -> Result<Option<String>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let Some(admin) = test_server(tag)? else {
        return Ok(None);
    };
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "t_{tag}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut c = config(&admin)?.connect(NoTls).map_err(db_err)?;
    c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .map_err(db_err)?;
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(b, _)| b)
        .to_string();
    Ok(Some(format!("{base}/{name}")))
}

/// For tests: the URL `CONSENTRY_TEST_PG` names, or `Ok(None)` with a
/// `skipped:` line when it is unset (an error under `CONSENTRY_REQUIRE_PG=1`).
#[doc(hidden)]
pub fn test_server(tag: &str) -> Result<Option<String>> {
    if let Some(url) = env("CONSENTRY_TEST_PG") {
        return Ok(Some(url));
    }
    if env("CONSENTRY_REQUIRE_PG").is_some_and(|v| v != "0") {
        bail!(
            "CONSENTRY_REQUIRE_PG is set but CONSENTRY_TEST_PG is not: start a server with `eval \"$(tests/pg-server start)\"`"
        );
    }
    eprintln!(
        "skipped: {tag}: no PostgreSQL (set CONSENTRY_TEST_PG, e.g. eval \"$(tests/pg-server start)\")"
    );
    Ok(None)
}

/// For tests: a copy of the database at `url` (`CREATE DATABASE … TEMPLATE`;
/// nothing may be connected to it), and the copy's URL.
#[doc(hidden)]
pub fn test_database_copy(url: &str) -> Result<String> {
    let (base, src) = url
        .rsplit_once('/')
        .ok_or_else(|| anyhow!("{url} names no database"))?;
    let name = format!("{src}_copy");
    let mut c = config(&format!("{base}/postgres"))?
        .connect(NoTls)
        .map_err(db_err)?;
    c.batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{src}\""))
        .map_err(db_err)?;
    Ok(format!("{base}/{name}"))
}
