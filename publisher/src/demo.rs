//! `consentry-publish demo`: the whole job on an embedded registry, with real
//! parts — a SQLite file, CSV import, INSECURE keys, a signed site, a real HTTP
//! server on 127.0.0.1, the verifier library syncing from it, lookups, and a
//! nightly delta.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use consentry::Isrc;
use consentry::fetch::{HttpFetch, Timeouts};
use consentry::lookup::Question;
use consentry::model::Use;
use consentry::store::Store;
use consentry::sync::{SyncOptions, sync};
use consentry::verify::Expiry;

use crate::build::{self, PublishOptions};
use crate::db::Db;
use crate::generate::{GenOptions, generate, to_csv};
use crate::import::{ImportOptions, import_files};
use crate::keys;
use crate::root::{self, Thresholds};
use crate::site::Site;

/// The example registry, embedded so the demo needs no files. A copy of the
/// golden `tests/data/declarations.csv` kept inside the crate so that
/// `cargo package` holds it; a test keeps the two equal.
const EXAMPLE_CSV: &str = include_str!("../data/demo-declarations.csv");
/// Marks a directory as made by the demo, so `--force` only ever removes one of ours.
const MARKER: &str = ".consentry-demo";

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The wall clock (Unix seconds) the demo publishes and checks at.
    pub now: i64,
    pub dir: PathBuf,
    pub force: bool,
    /// Synthetic per-ISRC declarations added to the example registry.
    pub records: u64,
}

/// A static file server on 127.0.0.1 for the demo's site.
fn prepare_dir(o: &DemoOptions) -> Result<()> {
    if o.dir.exists() && fs::read_dir(&o.dir).map_or(true, |mut d| d.next().is_some()) {
        if !o.force {
            return Err(crate::advise!(
                "{} already exists and is not empty",
                "pass another directory, or --force to replace an earlier demo there",
                o.dir.display()
            ));
        }
        if !o.dir.join(MARKER).exists() {
            bail!(
                "{} was not made by the demo; refusing to remove it even with --force",
                o.dir.display()
            );
        }
        fs::remove_dir_all(&o.dir).with_context(|| format!("removing {}", o.dir.display()))?;
    }
    fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    fs::write(o.dir.join(MARKER), "made by consentry-publish demo\n")?;
    Ok(())
}

fn step(n: u32, what: &str) -> Result<()> {
    out!("\n{n}. {what}");
    Ok(())
}

/// Run the demo, printing what happens on stdout.
#[allow(clippy::many_single_char_names)]
pub fn run(o: &DemoOptions) -> Result<()> {
    prepare_dir(o)?;
    let d = &o.dir;
    let now = o.now;
    out!("consentry demo in {}", d.display());

    step(
        1,
        "registry: create a SQLite database and import declarations (CSV, all or nothing)",
    )?;
    let db_path = d.join("registry.db");
    let mut db = Db::create(&db_path)?;
    fs::create_dir_all(d.join("import"))?;
    fs::write(d.join("import/example.csv"), EXAMPLE_CSV)?;
    let rows = generate(&GenOptions {
        records: o.records,
        seed: 2026,
        first_seq: 17,
        id_prefix: "G".into(),
        ..GenOptions::default()
    });
    fs::write(d.join("import/synthetic.csv"), to_csv(&rows))?;
    let rep = import_files(
        &mut db,
        &[d.join("import/example.csv"), d.join("import/synthetic.csv")],
        &ImportOptions { recorded_at: now },
    )?;
    out!("   {rep}");
    out!(
        "   (labels with catalogue-wide CC-XXX declarations, per-ISRC opt-ins and opt-outs, territories,"
    );
    out!(
        "    validity windows, revocations, superseded declarations, artists disagreeing with labels)"
    );

    step(
        2,
        "keys and trust root: INSECURE demo keys (never use them for real data), and two witnesses of the manifest log",
    )?;
    let kdir = d.join("keys");
    let secrets = keys::write_insecure_keys(&kdir, false)?;
    let site = Site::new(&d.join("site"));
    let lock = site.lock("demo", crate::lock::DEFAULT_WAIT, &|m| eprintln!("{m}"))?;
    // The demo is the one place the INSECURE keys are meant for.
    let guard = crate::guard::Guard {
        wall_clock: Some(now),
        allow_short_expiry: false,
        allow_insecure_keys: true,
    };
    // Two witnesses of the manifest log, each with a key of its own (in
    // real life: other organisations, other machines).
    let witnesses = demo_witnesses()?;
    let policy = consentry::docs::Witnesses {
        keys: witnesses
            .iter()
            .map(|w| consentry::docs::WitnessKey {
                key: w.public(),
                name: w.name.clone(),
            })
            .collect(),
        origin: DEMO_ORIGIN.to_string(),
        threshold: 2,
    };
    let (r, root_bytes) = root::init(
        &site,
        &lock,
        &kdir,
        &secrets,
        &root::RootOptions {
            witnesses: Some(policy),
            thresholds: Thresholds::default(),
            expires: (now.max(0) as u64) + 365 * 86_400,
            now,
            guard,
        },
        false,
    )?;
    for (role, rk) in [
        ("root", &r.roles.root),
        ("manifest", &r.roles.manifest),
        ("head", &r.roles.head),
    ] {
        out!("   {role:<9} key {}", hex::encode(rk.keyids[0]));
    }
    // Each witness runs as a C2SP tlog-witness HTTP service on 127.0.0.1
    // with its own key and state, as another organisation would run it.
    let mut services = Vec::new();
    for w in witnesses {
        out!("   witness   {}", w.vkey());
        let state = d.join(format!("{}-state", w.name));
        consentry::witness::init(&state, &root_bytes, &site.limits)?;
        services.push(consentry::serve::WitnessService::start(
            "127.0.0.1:0",
            &state,
            w,
            None,
            &site.limits,
        )?);
    }
    let witness_urls: Vec<String> = services
        .iter()
        .map(|s| format!("{}add-checkpoint", s.url))
        .collect();
    for u in &witness_urls {
        out!("   witness service {u}");
    }

    step(
        3,
        "publish: signed, zstd-compressed, sharded snapshot (self-checked before the head switches)",
    )?;
    let popts = PublishOptions {
        now: Some(now),
        target_rows: 4096,
        guard,
        ..PublishOptions::default()
    };
    let p1 = build::publish(&mut db, &secrets, &site, &lock, &popts)?;
    for line in p1.to_string().lines() {
        out!("   {line}");
    }
    witness_round(&site, &lock, &witness_urls)?;

    step(
        4,
        "serve the site over HTTP on 127.0.0.1 (any static web server or CDN will do)",
    )?;
    let server = consentry::serve::Mirror::start(&site.dir, "127.0.0.1:0", &site.limits)
        .map_err(|e| anyhow!("starting the demo web server: {e}"))?;
    out!("   {}", server.url);

    step(
        5,
        "verifier: pin the root, sync over HTTP, verify every signature and hash",
    )?;
    let store_dir = d.join("store");
    let (store, _) = Store::init(&store_dir, &root_bytes, false)?;
    let fetch = HttpFetch::new(&server.url, Timeouts::default())?;
    let sopts = SyncOptions {
        now,
        expiry: Expiry::Enforce,
        keep_history: None,
    };
    let s1 = sync(&store, &fetch, &sopts)?;
    out!(
        "   synced to version {}: {} files fetched, {} bytes",
        s1.to,
        s1.files_fetched,
        s1.bytes_fetched
    );
    let v = store.verify(now, Expiry::Enforce)?;
    out!(
        "   verify: root v{}, snapshot v{}, {} entries; {} files ({} bytes) re-hashed; index {}",
        v.root_version,
        v.version,
        v.entries,
        v.files_checked,
        v.bytes_checked,
        match &v.index {
            consentry::store::IndexCheck::Intact => "intact".to_string(),
            consentry::store::IndexCheck::Missing => "missing".to_string(),
            consentry::store::IndexCheck::Built => "built".to_string(),
            consentry::store::IndexCheck::Corrupt(why) => format!("corrupt ({why})"),
            consentry::store::IndexCheck::Rebuilt(why) => format!("rebuilt ({why})"),
        }
    );

    step(6, "lookups, answered offline from the verified store")?;
    let questions: [(&str, Use, Option<&str>); 9] = [
        ("GB-NWR-25-00001", Use::TrainAi, None),
        ("GBNWR2500017", Use::TrainAi, None),
        ("USQZ92400123", Use::TrainGenai, None),
        ("FRAB10012345", Use::TrainAi, Some("US")),
        ("DEXY12300001", Use::TrainAi, None),
        ("JPAB02500010", Use::TrainAi, None),
        ("SEABC2200001", Use::TrainAi, None),
        ("ZZABC0000000", Use::TrainAi, None),
        ("NOTANISRC", Use::TrainAi, None),
    ];
    let today = consentry::time::day_of(now);
    print_answers(&store, &questions, today, now)?;

    step(
        7,
        "nightly: a label changes its mind; publish writes only a delta layer; sync fetches only it",
    )?;
    let change = format!(
        "{}\nD1000000,1000000,declare,D2,GBNWR2500017,Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,{},active\n",
        consentry::declaration::COLUMNS.join(","),
        consentry::time::format_timestamp(now)
    );
    fs::write(d.join("import/nightly.csv"), change)?;
    let rep = import_files(
        &mut db,
        &[d.join("import/nightly.csv")],
        &ImportOptions { recorded_at: now },
    )?;
    out!("   {rep}");
    let p2 = build::publish(
        &mut db,
        &secrets,
        &site,
        &lock,
        &PublishOptions {
            now: Some(now),
            ..popts
        },
    )?;
    out!(
        "   published version {} ({}): {} bytes written",
        p2.version,
        p2.mode,
        p2.bytes_written
    );
    witness_round(&site, &lock, &witness_urls)?;
    let s2 = sync(&store, &fetch, &sopts)?;
    out!(
        "   synced {} -> {} ({}): {} file(s), {} bytes fetched; {} reused",
        s2.from.unwrap_or(0),
        s2.to,
        s2.mode.name(),
        s2.files_fetched,
        s2.bytes_fetched,
        s2.files_reused
    );
    print_answers(&store, &questions[1..2], today, now)?;
    compact_receipt(d, &store, &root_bytes, "GBNWR2500017", now)?;
    drop(server);

    step(8, "try next")?;
    for line in try_next(d, &store_dir, &site.dir)? {
        out!("   {line}");
    }
    out!("   (the binaries are in target/debug or target/release after `cargo build`)");
    Ok(())
}

/// A compact receipt (SPEC.md §13.4) of one answer, written next to the
/// store and verified with nothing but the pinned root's bytes.
fn compact_receipt(d: &Path, store: &Store, pinned: &[u8], isrc: &str, now: i64) -> Result<()> {
    let reader = store.reader(now, Expiry::Enforce)?;
    let mut builder = reader.receipt_builder()?;
    let q = Question {
        isrc: Isrc::parse(isrc).map_err(|e| anyhow!("{e}"))?,
        use_: Use::TrainAi,
        territory: None,
        at: consentry::time::day_of(now),
    };
    reader.answer_into(&mut builder, isrc, q.use_, None, q.at, Some(&q))?;
    let r = builder
        .finish_compact()
        .ok_or_else(|| anyhow!("the demo store holds no witnessed log"))?;
    let bytes = consentry::receipt::AnyReceipt::Compact(r).to_bytes();
    let path = d.join("receipt.cbor");
    fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    let verified = consentry::receipt::verify("receipt.cbor", &bytes, pinned, store.limits())?;
    let (size, by) = verified.checkpoint.clone().unwrap_or_default();
    out!(
        "   compact receipt for {isrc}: {} bytes (receipt.cbor), verified from the pinned root alone: {} {}, snapshot v{}, log size {size} cosigned by {}",
        bytes.len(),
        verified.answers[0].answer.decision.name(),
        verified.answers[0].answer.reason.name(),
        verified.manifest_version,
        by.join(", ")
    );
    Ok(())
}

/// The log's origin line in the demo's root.
const DEMO_ORIGIN: &str = "demo.consentry.invalid/log";

/// The demo's two witnesses: INSECURE keys from fixed seeds
/// (SHA-256("consentry INSECURE demo witness N")), like the demo's keys.
fn demo_witnesses() -> Result<Vec<consentry::witness::WitnessKey>> {
    (1..=2)
        .map(|n| {
            let seed = consentry::envelope::sha256(
                format!("consentry INSECURE demo witness {n}").as_bytes(),
            );
            consentry::witness::WitnessKey::from_seed(&format!("witness-{n}.demo.invalid"), seed)
                .map_err(|e| anyhow!("{e}"))
        })
        .collect()
}

/// The publisher asks each witness service for its cosignature of the new
/// checkpoint (SPEC.md §15.6: an add-checkpoint request with the
/// consistency proof from the size the witness cosigned last, which checks
/// it against its own state) and adds the cosignatures.
fn witness_round(site: &Site, lock: &crate::lock::SiteLock, urls: &[String]) -> Result<()> {
    let texts = crate::log::ask_witnesses(site, urls)?;
    let r = crate::log::cosign_lines(site, lock, &site.root()?, &texts)?;
    out!(
        "   checkpoint {} size {}: cosigned over HTTP by {} ({} of {} needed; verifiers refuse it with fewer)",
        r.checkpoint.origin,
        r.checkpoint.size,
        r.cosigners.join(", "),
        r.cosigners.len(),
        r.threshold
    );
    Ok(())
}

/// The commands step 8 suggests, each runnable as printed from the directory
/// the demo ran in (a test runs every one). Program names are bare, never a
/// machine-specific path; the files they name exist.
fn try_next(d: &Path, store_dir: &Path, site_dir: &Path) -> Result<Vec<String>> {
    let questions = d.join("isrcs.txt");
    fs::write(&questions, "GBNWR2500017\nUS-QZ9-24-00123\nFRAB10012345\n")
        .with_context(|| format!("writing {}", questions.display()))?;
    let s = store_dir.display();
    let offline = d.join("offline");
    let tar = d.join("snapshot.tar");
    Ok(vec![
        format!("consentry --store {s} check GB-NWR-25-00017 USQZ92400123 --use train-genai"),
        format!(
            "consentry --store {s} check --input {} --csv",
            questions.display()
        ),
        format!("consentry --store {s} status"),
        format!("consentry --store {s} verify"),
        format!(
            "consentry receipt verify --root {}/root/1.cbor {}",
            site_dir.display(),
            d.join("receipt.cbor").display()
        ),
        format!(
            "consentry-publish bundle --site {} --out {}",
            site_dir.display(),
            tar.display()
        ),
        format!(
            "consentry --store {} init --root {}/root/1.cbor",
            offline.display(),
            site_dir.display()
        ),
        format!(
            "consentry --store {} import {}",
            offline.display(),
            tar.display()
        ),
    ])
}

fn print_answers(
    store: &Store,
    qs: &[(&str, Use, Option<&str>)],
    day: i32,
    now: i64,
) -> Result<()> {
    let mut parsed = Vec::new();
    for (isrc, u, t) in qs {
        if let Ok(i) = Isrc::parse(isrc) {
            parsed.push(Question {
                isrc: i,
                use_: *u,
                territory: t.map(str::to_string),
                at: day,
            });
        }
    }
    let res = store.check(&parsed, now, Expiry::Enforce)?;
    let mut answers = res.answers.iter();
    out!(
        "   {:<18} {:<12} {:<4} {:<12} {:<22} decided by",
        "isrc",
        "use",
        "terr",
        "decision",
        "reason"
    );
    for (isrc, u, t) in qs {
        let a = if Isrc::parse(isrc).is_ok() {
            answers
                .next()
                .cloned()
                .ok_or_else(|| anyhow!("missing answer"))?
        } else {
            consentry::lookup::Answer::invalid_isrc()
        };
        out!(
            "   {:<18} {:<12} {:<4} {:<12} {:<22} {}",
            isrc,
            u.name(),
            t.unwrap_or("-"),
            a.decision.name(),
            a.reason.name(),
            a.decided_by.join(" ")
        );
    }
    out!(
        "   (snapshot version {}, manifest {}…)",
        res.snapshot.version,
        &res.snapshot.manifest_sha256[..16]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The demo answers the golden questions only while its embedded
    /// registry is the golden one.
    #[test]
    fn embedded_example_is_the_golden_registry() {
        let golden = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/declarations.csv"
        ))
        .expect("tests/data/declarations.csv");
        assert_eq!(
            super::EXAMPLE_CSV,
            golden,
            "publisher/data/demo-declarations.csv differs from tests/data/declarations.csv: copy it again"
        );
    }
}
