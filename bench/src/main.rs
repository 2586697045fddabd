//! `consentry-bench`: the measuring helpers `bench/run` calls. Nothing here is
//! a timing test; every figure goes to stdout as `name value` lines for the
//! script to put into BENCHMARKS.md.
//!
//! - `export`: the live entries of a registry database as the two baselines
//!   of the size comparison — a compact SQLite file (one `WITHOUT ROWID` table
//!   keyed by `(key, seq)`, policies in their own table) and JSONL (one entry
//!   per line, its policy inline);
//! - `keys`: a batch of ISRCs to check, a given fraction of them present in
//!   the registry, optionally sorted, streamed to a file or stdout;
//! - `lookup`: in-process lookups through the verifier library (first lookup
//!   after opening a store, a batch, warm single lookups);
//! - `csv`: a generated registry as an import CSV (import throughput);
//! - `sqlite-lookup`: the same keys as indexed point queries on the SQLite
//!   export;
//! - `entries`: the entries of a site's full snapshot, decoded from its
//!   shards, as TSV for `bench/baselines.py` (the tuned Parquet baseline) at
//!   any size, without the registry database.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use consentry::isrc::{Isrc, KEY_SPACE};
use consentry::limits::Limits;
use consentry::lookup::Question;
use consentry::model::{Decision, Policy, Use};
use consentry::store::Store;
use consentry::verify::Expiry;
use consentry_publish::generate::Rng;

#[derive(Debug, Parser)]
#[command(name = "consentry-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the live entries of a registry database as a SQLite file and as JSONL.
    Export {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        sqlite: PathBuf,
        #[arg(long)]
        jsonl: PathBuf,
        /// The site just published from `db`: limit the JSONL to the first
        /// base ranges holding at least `--slice` entries and print the
        /// snapshot bytes of the same ranges.
        #[arg(long)]
        site: Option<PathBuf>,
        #[arg(long, default_value_t = u64::MAX)]
        slice: u64,
    },
    /// Write `n` ISRCs, a fraction `hits` of them present in the export
    /// (`--sqlite`) or, where there is no export (10^8), in the registry
    /// itself (`--registry`, sampled by rowid).
    Keys {
        #[arg(long, required_unless_present = "registry")]
        sqlite: Option<PathBuf>,
        #[arg(long, conflicts_with = "sqlite")]
        registry: Option<PathBuf>,
        #[arg(long)]
        n: u64,
        #[arg(long, default_value_t = 0.5)]
        hits: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        sorted: bool,
        /// File to write, or - for stdout.
        #[arg(long)]
        out: String,
    },
    /// Time lookups through the verifier library on a synced store.
    Lookup {
        #[arg(long)]
        store: PathBuf,
        /// RFC 3339 time to answer at (the store's clock must not be later).
        #[arg(long)]
        now: String,
        #[arg(long)]
        keys: PathBuf,
        /// Warm single lookups to time (random keys of the file).
        #[arg(long, default_value_t = 200_000)]
        warm: usize,
        /// Only open, first lookup and the batch (first and warm): no
        /// per-key `answer` check, no warm single lookups (for a second key
        /// order of the same keys).
        #[arg(long)]
        batch_only: bool,
    },
    /// Time `Reader::decide_inputs` (the language bindings' batch path:
    /// parse, sort, dedupe, decide) on the lines of a file as given, in one
    /// call, first after open and then warm (best of 3): the Rust side of
    /// python/bench.py's `check_arrow`, to measure the Python overhead.
    DecideInputs {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        now: String,
        #[arg(long)]
        keys: PathBuf,
    },
    /// Write a generated registry of `records` declarations as an import
    /// CSV (the rows `consentry-publish generate` would write), for import
    /// throughput.
    Csv {
        #[arg(long)]
        records: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Time the same keys as indexed point queries on the SQLite export.
    SqliteLookup {
        #[arg(long)]
        sqlite: PathBuf,
        #[arg(long)]
        keys: PathBuf,
    },
    /// Write the entries of a site's newest manifest (right after a full
    /// publish: base shards only), decoded from its shards range by range:
    /// exact entries as TSV lines `key seq id policy` in (key, seq) order
    /// (`key` the packed ISRC key, `policy` an index into the policies
    /// file), the policies as JSON lines `{"policy":N,"value":{…}}`, the
    /// prefix entries as TSV lines `scope seq id policy`.
    Entries {
        #[arg(long)]
        site: PathBuf,
        /// File to write, or - for stdout.
        #[arg(long)]
        entries: String,
        #[arg(long)]
        policies: PathBuf,
        #[arg(long)]
        prefixes: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Export {
            db,
            sqlite,
            jsonl,
            site,
            slice,
        } => export(&db, &sqlite, &jsonl, site.as_deref(), slice),
        Command::Keys {
            sqlite,
            registry,
            n,
            hits,
            seed,
            sorted,
            out,
        } => present_keys(sqlite.as_deref(), registry.as_deref(), seed)
            .and_then(|present| keys(present, n, hits, seed, sorted, &out)),
        Command::Lookup {
            store,
            now,
            keys,
            warm,
            batch_only,
        } => lookup(&store, &now, &keys, warm, batch_only),
        Command::DecideInputs { store, now, keys } => decide_inputs(&store, &now, &keys),
        Command::SqliteLookup { sqlite, keys } => sqlite_lookup(&sqlite, &keys),
        Command::Csv { records, seed, out } => csv(records, seed, &out),
        Command::Entries {
            site,
            entries: out,
            policies,
            prefixes,
        } => entries(&site, &out, &policies, &prefixes),
    };
    if let Err(e) = r {
        eprintln!("consentry-bench: {e:#}");
        std::process::exit(2);
    }
}

/// One policy of the JSONL export's table.
#[derive(serde::Serialize)]
struct JsonPolicy<'a> {
    policy: i64,
    value: &'a Policy,
}

/// One entry as a JSON line.
#[derive(serde::Serialize)]
struct JsonEntry<'a> {
    scope: &'a str,
    seq: u64,
    id: &'a str,
    policy: i64,
}

/// The newest manifest of a site, read without verification (the bench's
/// own site).
fn newest_manifest(site: &Path) -> Result<consentry::docs::Manifest> {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(site.join("manifest"))? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(v) = name.split('.').next().and_then(|v| v.parse::<u64>().ok())
            && best.as_ref().is_none_or(|(b, _)| v > *b)
        {
            best = Some((v, p));
        }
    }
    let (_, p) = best.ok_or_else(|| anyhow!("{} has no manifest", site.display()))?;
    let bytes = std::fs::read(&p)?;
    let env = consentry::envelope::Envelope::parse("manifest", &bytes, &Limits::DEFAULT)
        .map_err(|e| anyhow!("{e}"))?;
    consentry::cbor::from_slice_canonical(&env.payload).map_err(|e| anyhow!("manifest: {e}"))
}

/// Reads the registry's `declarations` table directly (a full scan in rowid
/// order: the cheapest read SQLite offers), decoding each distinct policy
/// once. JSONL lines: the policy table first (`{"policy":N,"value":{…}}`),
/// then the prefix entries, then the exact entries in key order
/// (`{"scope":…,"seq":…,"id":…,"policy":N}`) — the same content and order as
/// the snapshot. With `site`, the JSONL holds only the exact entries of the
/// first base ranges that reach `slice` entries, and the snapshot's bytes
/// for exactly those ranges (plus the prefix table) are printed beside it.
fn export(db: &Path, sqlite: &Path, jsonl: &Path, site: Option<&Path>, slice: u64) -> Result<()> {
    let src = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", db.display()))?;
    for p in [sqlite, jsonl] {
        if p.exists() {
            std::fs::remove_file(p)?;
        }
    }
    let mut pols: HashMap<Vec<u8>, (i64, Policy)> = HashMap::new();
    let mut rows: Vec<(u64, u64, String, i64)> = Vec::new();
    // (scope start, specificity, seq, scope, id, policy): the prefix table's order.
    let mut prefix_rows: Vec<(u64, i64, u64, String, String, i64)> = Vec::new();
    {
        let mut stmt = src.prepare(
            "SELECT scope_lo, scope, seq, id, policy, exact, specificity
             FROM declarations NOT INDEXED WHERE live = 1",
        )?;
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            let key: i64 = r.get(0)?;
            let seq: i64 = r.get(2)?;
            let id: String = r.get(3)?;
            let blob = r.get_ref(4)?.as_blob()?;
            let next = pols.len() as i64;
            let pid = if let Some(v) = pols.get(blob) {
                v.0
            } else {
                let p: Policy = consentry::cbor::from_slice_canonical(blob)
                    .map_err(|e| anyhow!("policy of {id}: {e}"))?;
                pols.insert(blob.to_vec(), (next, p));
                next
            };
            if r.get::<_, bool>(5)? {
                rows.push((key as u64, seq as u64, id, pid));
            } else {
                prefix_rows.push((key as u64, r.get(6)?, seq as u64, r.get(1)?, id, pid));
            }
        }
    }
    rows.sort_unstable();
    prefix_rows.sort_unstable();

    // The JSONL slice and the snapshot bytes of the same entries.
    let (hi, snapshot_bytes) = match site {
        None => (KEY_SPACE, None),
        Some(site) => {
            let m = newest_manifest(site)?;
            if m.base != m.version {
                bail!("the newest manifest has layers; export right after a full publish");
            }
            let (mut n, mut bytes, mut hi) = (0u64, m.prefixes.length, KEY_SPACE);
            for r in &m.ranges {
                if n >= slice {
                    hi = r.lo;
                    break;
                }
                n += r.count;
                bytes += r.shard.length;
            }
            (hi, Some(bytes))
        }
    };
    let by_pid: HashMap<i64, &Policy> = pols.values().map(|(i, p)| (*i, p)).collect();
    let mut used: Vec<i64> = rows
        .iter()
        .filter(|r| r.0 < hi)
        .map(|r| r.3)
        .chain(prefix_rows.iter().map(|r| r.5))
        .collect();
    used.sort_unstable();
    used.dedup();
    let mut j = BufWriter::with_capacity(1 << 20, std::fs::File::create(jsonl)?);
    let put = |j: &mut BufWriter<std::fs::File>, line: String| -> Result<u64> {
        j.write_all(line.as_bytes())?;
        j.write_all(b"\n")?;
        Ok(line.len() as u64 + 1)
    };
    let (mut jbytes, mut jentries) = (0u64, 0u64);
    for pid in &used {
        jbytes += put(
            &mut j,
            serde_json::to_string(&JsonPolicy {
                policy: *pid,
                value: by_pid[pid],
            })?,
        )?;
    }
    for (_, _, seq, scope, id, pid) in &prefix_rows {
        jbytes += put(
            &mut j,
            serde_json::to_string(&JsonEntry {
                scope,
                seq: *seq,
                id,
                policy: *pid,
            })?,
        )?;
        jentries += 1;
    }
    for (key, seq, id, pid) in rows.iter().filter(|r| r.0 < hi) {
        let scope = Isrc::from_key(*key)
            .ok_or_else(|| anyhow!("key {key}"))?
            .compact();
        jbytes += put(
            &mut j,
            serde_json::to_string(&JsonEntry {
                scope: &scope,
                seq: *seq,
                id,
                policy: *pid,
            })?,
        )?;
        jentries += 1;
    }
    j.flush()?;

    // The SQLite file: every live entry.
    let mut out = rusqlite::Connection::open(sqlite)?;
    out.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE TABLE policies (id INTEGER PRIMARY KEY, policy BLOB NOT NULL);
         CREATE TABLE entries (key INTEGER NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,
             policy INTEGER NOT NULL, PRIMARY KEY (key, seq)) WITHOUT ROWID;
         CREATE TABLE prefixes (scope TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,
             policy INTEGER NOT NULL);",
    )?;
    let tx = out.transaction()?;
    {
        let mut ins = tx.prepare("INSERT INTO policies (id, policy) VALUES (?1, ?2)")?;
        for (blob, (pid, _)) in &pols {
            ins.execute(rusqlite::params![pid, blob])?;
        }
        let mut ins =
            tx.prepare("INSERT INTO entries (key, seq, id, policy) VALUES (?1, ?2, ?3, ?4)")?;
        for (k, s, id, p) in &rows {
            ins.execute(rusqlite::params![*k as i64, *s as i64, id, p])?;
        }
        let mut ins =
            tx.prepare("INSERT INTO prefixes (scope, seq, id, policy) VALUES (?1, ?2, ?3, ?4)")?;
        for (_, _, s, scope, id, p) in &prefix_rows {
            ins.execute(rusqlite::params![scope, *s as i64, id, p])?;
        }
    }
    tx.commit()?;
    out.execute_batch("VACUUM")?;
    drop(out);
    println!("entries {}", rows.len() + prefix_rows.len());
    println!("exact_entries {}", rows.len());
    println!("policies {}", pols.len());
    println!("sqlite_bytes {}", std::fs::metadata(sqlite)?.len());
    println!("jsonl_entries {jentries}");
    println!("jsonl_bytes {jbytes}");
    if let Some(b) = snapshot_bytes {
        println!("snapshot_slice_bytes {b}");
    }
    Ok(())
}

/// Keys present in the registry: every key of the export, or up to 10^6
/// keys of live exact-scope declarations of the registry found by random
/// rowid probes (a full scan of a 10^8-declaration registry takes minutes).
fn present_keys(sqlite: Option<&Path>, registry: Option<&Path>, seed: u64) -> Result<Vec<u64>> {
    let mut present: Vec<u64> = Vec::new();
    let (path, sql) = match (sqlite, registry) {
        (Some(p), _) => (p, "SELECT DISTINCT key FROM entries"),
        (None, Some(p)) => (
            p,
            "SELECT scope_lo FROM declarations WHERE rowid = ?1 AND exact = 1 AND live = 1",
        ),
        (None, None) => bail!("--sqlite or --registry is required"),
    };
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut s = db.prepare(sql)?;
    if sqlite.is_some() {
        let mut q = s.query([])?;
        while let Some(r) = q.next()? {
            present.push(r.get::<_, i64>(0)? as u64);
        }
    } else {
        let max: i64 = db.query_row("SELECT MAX(rowid) FROM declarations", [], |r| r.get(0))?;
        let mut rng = Rng::new(seed ^ 0x5eed);
        // Bounded: 2·10^6 probes at most.
        for _ in 0..2_000_000 {
            if present.len() >= 1_000_000 {
                break;
            }
            let rowid = 1 + rng.below(max.max(1) as u64) as i64;
            let mut q = s.query([rowid])?;
            if let Some(r) = q.next()? {
                present.push(r.get::<_, i64>(0)? as u64);
            }
        }
    }
    if present.is_empty() {
        bail!("{} holds no entries", path.display());
    }
    Ok(present)
}

fn keys(present: Vec<u64>, n: u64, hits: f64, seed: u64, sorted: bool, out: &str) -> Result<()> {
    let mut rng = Rng::new(seed);
    let mut pick = move || {
        if rng.chance(hits) {
            present[rng.below(present.len() as u64) as usize]
        } else {
            rng.below(KEY_SPACE)
        }
    };
    let mut w: Box<dyn Write> = if out == "-" {
        Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))
    } else {
        Box::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(out)?,
        ))
    };
    let line = |w: &mut dyn Write, k: u64| -> Result<()> {
        let i = Isrc::from_key(k).ok_or_else(|| anyhow!("key {k}"))?;
        w.write_all(i.compact().as_bytes())?;
        w.write_all(b"\n")?;
        Ok(())
    };
    if sorted {
        let mut all: Vec<u64> = (0..n).map(|_| pick()).collect();
        all.sort_unstable();
        for k in all {
            line(&mut *w, k)?;
        }
    } else {
        for _ in 0..n {
            line(&mut *w, pick())?;
        }
    }
    w.flush()?;
    Ok(())
}

fn read_keys(path: &Path) -> Result<Vec<Isrc>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for line in BufReader::with_capacity(1 << 20, f).lines() {
        let line = line?;
        out.push(Isrc::parse(&line).map_err(|e| anyhow!("{line}: {e}"))?);
    }
    Ok(out)
}

fn lookup(store: &Path, now: &str, keys: &Path, warm: usize, batch_only: bool) -> Result<()> {
    let now = consentry::time::parse_timestamp(now).map_err(|e| anyhow!("--now: {e}"))?;
    let isrcs = read_keys(keys)?;
    let Some(&first) = isrcs.first() else {
        bail!("{} holds no keys", keys.display());
    };
    let question = |isrc: Isrc| Question {
        isrc,
        use_: Use::TrainAi,
        territory: None,
        at: consentry::time::day_of(now),
    };
    // First lookup after open: open the store, verify root chain, head and
    // manifest, load the prefix table, open the index, answer one question
    // (which reads and verifies one index block).
    // The documents alone (root chain, head, manifest), once, to show where
    // opening spends its time.
    let t = Instant::now();
    let s = Store::open(store).map_err(|e| anyhow!("{e}"))?;
    let snap = s
        .current(now, Expiry::Enforce)
        .map_err(|e| anyhow!("{e}"))?;
    println!("documents_us {:.1}", t.elapsed().as_secs_f64() * 1e6);
    let t = Instant::now();
    let m = &snap.manifest;
    let prel = consentry::docs::paths::prefixes(&m.prefixes.sha256);
    let bytes = std::fs::read(store.join(&prel))?;
    let raw = consentry::columns::open_file(&prel, &bytes, &m.prefixes, s.limits())
        .map_err(|e| anyhow!("{e}"))?;
    let prefixes = consentry::columns::decode_prefixes(&prel, &raw, m.prefixes.count, s.limits())
        .map_err(|e| anyhow!("{e}"))?;
    println!(
        "prefix_file_decode_us {:.1} ({} entries; not on the open path: the index holds the verified table)",
        t.elapsed().as_secs_f64() * 1e6,
        prefixes.len()
    );
    let t = Instant::now();
    let ix = consentry::index::Index::open(
        &s.index_path(&snap.manifest_sha256),
        m,
        &snap.manifest_sha256,
        s.limits(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    println!(
        "index_open_us {:.1} ({} policies)",
        t.elapsed().as_secs_f64() * 1e6,
        ix.map_or(0, |i| i.policy_count())
    );
    let t = Instant::now();
    let s = Store::open(store).map_err(|e| anyhow!("{e}"))?;
    let reader = s.reader(now, Expiry::Enforce).map_err(|e| anyhow!("{e}"))?;
    let opened = t.elapsed();
    let a = reader
        .answer(&question(first))
        .map_err(|e| anyhow!("{e}"))?;
    let first_lookup = t.elapsed();
    std::hint::black_box(a);
    println!("open_us {:.1}", opened.as_secs_f64() * 1e6);
    println!("first_lookup_us {:.1}", first_lookup.as_secs_f64() * 1e6);

    // The batch, in file order, through the batch call (decisions and
    // reasons), then through one full answer (with deciding ids) per key.
    let day = consentry::time::day_of(now);
    let t = Instant::now();
    let decided = reader
        .decide_batch(&isrcs, Use::TrainAi, None, day)
        .map_err(|e| anyhow!("{e}"))?;
    let batch = t.elapsed().as_secs_f64();
    let allow = decided.iter().filter(|d| d.0 == Decision::Allow).count();
    println!("batch_lookups {}", isrcs.len());
    println!("batch_s {batch:.4}");
    println!("batch_per_s {:.0}", isrcs.len() as f64 / batch);
    println!("batch_allow {allow}");
    // Again, with every index chunk already verified and cached.
    let t = Instant::now();
    let again = reader
        .decide_batch(&isrcs, Use::TrainAi, None, day)
        .map_err(|e| anyhow!("{e}"))?;
    let warm_s = t.elapsed().as_secs_f64();
    std::hint::black_box(again);
    println!("batch_warm_per_s {:.0}", isrcs.len() as f64 / warm_s);
    if batch_only {
        return Ok(());
    }
    let qs: Vec<Question> = isrcs.iter().map(|&i| question(i)).collect();
    let t = Instant::now();
    let mut same = 0usize;
    for (q, d) in qs.iter().zip(&decided) {
        let a = reader.answer(q).map_err(|e| anyhow!("{e}"))?;
        same += usize::from((a.decision, a.reason) == *d);
    }
    let answers = t.elapsed().as_secs_f64();
    if same != qs.len() {
        bail!(
            "decide_batch differs from answer() on {} keys",
            qs.len() - same
        );
    }
    println!("answer_per_s {:.0}", qs.len() as f64 / answers);

    // Warm single lookups: random keys of the batch, every block already
    // verified and cached.
    let mut rng = Rng::new(7);
    let picks: Vec<&Question> = (0..warm.max(1))
        .map(|_| &qs[rng.below(qs.len() as u64) as usize])
        .collect();
    for q in &picks {
        std::hint::black_box(reader.answer(q).map_err(|e| anyhow!("{e}"))?);
    }
    let t = Instant::now();
    for q in &picks {
        std::hint::black_box(reader.answer(q).map_err(|e| anyhow!("{e}"))?);
    }
    let per = t.elapsed().as_secs_f64() / picks.len() as f64;
    println!("warm_lookup_ns {:.0}", per * 1e9);
    Ok(())
}

fn decide_inputs(store: &Path, now: &str, keys: &Path) -> Result<()> {
    let now = consentry::time::parse_timestamp(now).map_err(|e| anyhow!("--now: {e}"))?;
    let text = std::fs::read_to_string(keys)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let day = consentry::time::day_of(now);
    let s = Store::open(store).map_err(|e| anyhow!("{e}"))?;
    let reader = s.reader(now, Expiry::Enforce).map_err(|e| anyhow!("{e}"))?;
    let run = || {
        let t = Instant::now();
        let d = reader
            .decide_inputs(lines.iter().map(|l| Some(*l)), Use::TrainAi, None, day)
            .map_err(|e| anyhow!("{e}"))?;
        Ok::<_, anyhow::Error>((t.elapsed().as_secs_f64(), d))
    };
    let (first, decided) = run()?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(run()?.0);
    }
    let allow = decided.iter().filter(|d| d.0 == Decision::Allow).count();
    let n = lines.len() as f64;
    println!("rust_decide_inputs {}", lines.len());
    println!("rust_decide_inputs_first_per_s {:.0}", n / first);
    println!("rust_decide_inputs_per_s {:.0}", n / best);
    println!("rust_decide_inputs_allow {allow}");
    Ok(())
}

fn sqlite_lookup(sqlite: &Path, keys: &Path) -> Result<()> {
    let isrcs = read_keys(keys)?;
    let Some(first) = isrcs.first() else {
        bail!("{} holds no keys", keys.display());
    };
    // First lookup after open: open the file, prepare, fetch one key's rows.
    let t = Instant::now();
    let db =
        rusqlite::Connection::open_with_flags(sqlite, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    db.execute_batch("PRAGMA cache_size = -262144")?;
    let mut stmt = db.prepare("SELECT seq, id, policy FROM entries WHERE key = ?1")?;
    {
        let mut q = stmt.query([first.key() as i64])?;
        while let Some(r) = q.next()? {
            std::hint::black_box(r.get_ref(1)?.as_str()?);
        }
    }
    println!("sqlite_first_us {:.1}", t.elapsed().as_secs_f64() * 1e6);
    let t = Instant::now();
    let mut found = 0u64;
    for i in &isrcs {
        let mut q = stmt.query([i.key() as i64])?;
        while let Some(r) = q.next()? {
            let _: i64 = r.get(0)?;
            let id = r.get_ref(1)?.as_str()?;
            let _: i64 = r.get(2)?;
            std::hint::black_box(id);
            found += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!("sqlite_lookups {}", isrcs.len());
    println!("sqlite_rows {found}");
    println!("sqlite_s {s:.4}");
    println!("sqlite_per_s {:.0}", isrcs.len() as f64 / s);
    Ok(())
}

/// The entries of the site's newest manifest, decoded from its base shards
/// one range at a time (memory: one range), as TSV for bench/baselines.py.
fn entries(site: &Path, out: &str, policies: &Path, prefixes: &Path) -> Result<()> {
    use consentry::columns::{PolicySet, decode_prefixes, decode_shard, open_file};
    let m = newest_manifest(site)?;
    if m.base != m.version {
        bail!("the newest manifest has layers; write entries right after a full publish");
    }
    let limits = Limits::DEFAULT;
    let mut set = PolicySet::default();
    let mut out_w: Box<dyn Write> = if out == "-" {
        Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))
    } else {
        Box::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(out).with_context(|| format!("creating {out}"))?,
        ))
    };
    let mut n = 0u64;
    for i in 0..m.ranges.len() {
        let r = &m.ranges[i];
        let (lo, hi) = m.range_bounds(i);
        let rel = consentry::docs::paths::shard(&r.shard.sha256);
        let bytes = std::fs::read(site.join(&rel)).with_context(|| format!("reading {rel}"))?;
        let raw = open_file(&rel, &bytes, &r.shard, &limits).map_err(|e| anyhow!("{e}"))?;
        let rows = decode_shard(&rel, &raw, lo, hi, r.count, &limits, &mut set)
            .map_err(|e| anyhow!("{e}"))?;
        for j in 0..rows.len() {
            writeln!(
                out_w,
                "{}\t{}\t{}\t{}",
                rows.keys[j],
                rows.seqs[j],
                rows.id(j),
                rows.pol[j]
            )?;
        }
        n += rows.len() as u64;
    }
    out_w.flush()?;
    drop(out_w);
    let prel = consentry::docs::paths::prefixes(&m.prefixes.sha256);
    let bytes = std::fs::read(site.join(&prel)).with_context(|| format!("reading {prel}"))?;
    let raw = open_file(&prel, &bytes, &m.prefixes, &limits).map_err(|e| anyhow!("{e}"))?;
    let records =
        decode_prefixes(&prel, &raw, m.prefixes.count, &limits).map_err(|e| anyhow!("{e}"))?;
    let mut pw = BufWriter::new(std::fs::File::create(prefixes)?);
    for rec in &records {
        let pid = set.intern(&rec.policy);
        writeln!(
            pw,
            "{}\t{}\t{}\t{pid}",
            rec.scope.canonical(),
            rec.seq,
            rec.id
        )?;
    }
    pw.flush()?;
    let mut jw = BufWriter::new(std::fs::File::create(policies)?);
    for (i, value) in set.list.iter().enumerate() {
        serde_json::to_writer(
            &mut jw,
            &JsonPolicy {
                policy: i as i64,
                value,
            },
        )?;
        jw.write_all(b"\n")?;
    }
    jw.flush()?;
    eprintln!(
        "entries {n} prefixes {} policies {}",
        records.len(),
        set.list.len()
    );
    Ok(())
}

/// A generated registry as an import CSV, streamed.
fn csv(records: u64, seed: u64, out: &Path) -> Result<()> {
    use consentry_publish::generate::{GenOptions, generate_each, row_of};
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    writeln!(w, "{}", consentry::declaration::COLUMNS.join(","))?;
    let o = GenOptions {
        records,
        seed,
        ..GenOptions::default()
    };
    let mut rows = 0u64;
    generate_each(&o, &mut |d| {
        let line: Vec<String> = row_of(&d)
            .into_iter()
            .map(|v| {
                if v.contains([',', '"', '\n']) {
                    format!("\"{}\"", v.replace('"', "\"\""))
                } else {
                    v
                }
            })
            .collect();
        writeln!(w, "{}", line.join(","))?;
        rows += 1;
        Ok(())
    })?;
    w.flush()?;
    println!("csv_rows {rows}");
    Ok(())
}
