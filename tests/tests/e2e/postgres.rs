//! The PostgreSQL registry under concurrency: writers serialise, a publish
//! reads one consistent snapshot while imports commit.

use consentry_publish::generate::{GenOptions, generate, to_csv};

use super::fixture::{Backend, Fixture, T0};

/// A generated import of `records` declarations from `first_seq` on, with
/// ids `{prefix}{seq}`.
fn generated_csv(
    f: &Fixture,
    name: &str,
    records: u64,
    prefix: &str,
    seed: u64,
    first_seq: u64,
) -> usize {
    let rows = generate(&GenOptions {
        records,
        seed,
        first_seq,
        id_prefix: prefix.into(),
        ..GenOptions::default()
    });
    std::fs::write(f.path(name), to_csv(&rows)).unwrap();
    rows.len()
}

fn import(f: &Fixture, name: &str, at: &str) -> consentry_tests::Run {
    f.publish(&["import", "--db", &f.db, name, "--recorded-at", at])
}

/// Two imports at once end as if one ran after the other: either both
/// commit (the lower seqs first) or the one whose seqs are lower finds them
/// below the other's and is refused whole — never a mix, never a lost or
/// duplicated change id, never a change log whose commit order differs from
/// seq order. The big import has the lower seqs and starts first; the small
/// one, with higher seqs, starts while it runs: without the write lock the
/// small one commits first and the big one still passes its seq check (found
/// by this test with the lock taken out).
#[test]
fn concurrent_imports_serialise_like_one_after_the_other() {
    if !Backend::Postgres.available("concurrent_imports_serialise") {
        return;
    }
    for round in 0..2 {
        let f = Fixture::unpublished_on(Backend::Postgres);
        let n = generated_csv(&f, "a.csv", 20_000, "A", 7 + round, 17) as u64;
        // Small imports above the big one's seqs, one after another for as
        // long as the big one runs.
        let small = |k: u64| {
            let name = format!("b{k}.csv");
            generated_csv(&f, &name, 3, &format!("B{k}x"), 100 + k, 17 + n + 100 * k);
            name
        };
        let (a, bs) = std::thread::scope(|s| {
            let a = s.spawn(|| import(&f, "a.csv", "2026-11-02T00:00:00Z"));
            // Start the small ones once the big one is inside its
            // transaction, writing (it has a transaction id): the window a
            // missing write lock would let them commit into.
            let mut c = postgres::Client::connect(&f.db, postgres::NoTls).unwrap();
            while !a.is_finished() {
                let writing: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE datname = current_database() AND backend_xid IS NOT NULL
                           AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                if writing > 0 {
                    break;
                }
            }
            let mut bs = Vec::new();
            for k in 0..500 {
                let name = small(k);
                bs.push((name.clone(), import(&f, &name, "2026-11-03T00:00:00Z")));
                if a.is_finished() {
                    break;
                }
            }
            (a.join().unwrap(), bs)
        });
        let concurrent = f.registry_state();
        // The same imports one after the other, on SQLite, in the order
        // the outcome says they ran: every small one succeeds; the big one
        // either committed before them all, or was refused whole because
        // one had committed first.
        let serial = Fixture::unpublished_on(Backend::Sqlite);
        std::fs::copy(f.path("a.csv"), serial.path("a.csv")).unwrap();
        for (name, run) in &bs {
            assert_eq!(run.code, 0, "{name}: {}", run.stderr);
            std::fs::copy(f.path(name), serial.path(name)).unwrap();
        }
        if a.code == 0 {
            import(&serial, "a.csv", "2026-11-02T00:00:00Z").ok();
        } else {
            assert!(a.stderr.contains("is not greater than"), "{}", a.stderr);
        }
        for (name, _) in &bs {
            import(&serial, name, "2026-11-03T00:00:00Z").ok();
        }
        if a.code != 0 {
            import(&serial, "a.csv", "2026-11-02T00:00:00Z").expect_code(2);
        }
        assert_eq!(concurrent, serial.registry_state(), "round {round}");
    }
}

/// Publishes running while imports commit: every published version
/// verifies (the publisher's self-check, then a verifier's sync) and holds
/// exactly the registry as of one import boundary.
#[test]
fn publishing_while_imports_run_yields_a_consistent_snapshot() {
    const IMPORTS: u32 = 12;
    if !Backend::Postgres.available("publish_during_imports") {
        return;
    }
    let rows = |i: u32| -> String {
        let at = format!("2026-11-02T00:{i:02}:00Z");
        let seq = 100 + 2 * i;
        let mut r = format!(
            "X{i},{seq},declare,,GBNWR26{i:05},Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,{at},active\n"
        );
        if i > 1 {
            use std::fmt::Write as _;
            writeln!(
                r,
                "Y{i},{},declare,X{},GBNWR26{:05},Northwind Records,ddex:PADPIDA2014021201U,label,,y,,,,,,WW,,,,{at},active",
                seq + 1,
                i - 1,
                i - 1
            )
            .unwrap();
        }
        r
    };
    // The state root at every import boundary, from SQLite, one by one.
    let serial = Fixture::published_on(Backend::Sqlite);
    let root = |f: &Fixture| {
        let site = consentry_publish::site::Site::new(&f.path("site"));
        site.current(&site.root().unwrap())
            .unwrap()
            .unwrap()
            .manifest
            .state_root
    };
    let mut boundaries = vec![root(&serial)];
    for i in 1..=IMPORTS {
        serial
            .import_rows(
                &format!("i{i}.csv"),
                &rows(i),
                &format!("2026-11-02T00:{i:02}:00Z"),
            )
            .ok();
        serial.publish_next(&["--compact", "--now", T0]).ok();
        boundaries.push(root(&serial));
    }

    let f = Fixture::published_on(Backend::Postgres);
    let mut published = Vec::new();
    std::thread::scope(|s| {
        let importer = s.spawn(|| {
            for i in 1..=IMPORTS {
                f.import_rows(
                    &format!("i{i}.csv"),
                    &rows(i),
                    &format!("2026-11-02T00:{i:02}:00Z"),
                )
                .ok();
            }
        });
        while !importer.is_finished() {
            f.publish_next(&["--now", T0]).ok();
            published.push(root(&f));
        }
        importer.join().unwrap();
    });
    f.publish_next(&["--now", T0]).ok();
    published.push(root(&f));
    for r in &published {
        assert!(
            boundaries.contains(r),
            "a published state is no import boundary: {}",
            hex::encode(r)
        );
    }
    assert_eq!(published.last(), boundaries.last());
    // And a verifier takes the last one, through the whole chain.
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", "site"]).ok();
}

/// `init` on PostgreSQL is idempotent and versioned: it creates the schema,
/// then reports it current; a registry of a newer schema is refused by
/// `init` and by every command that opens it, with advice.
#[test]
fn init_creates_then_reports_current_and_a_newer_schema_is_refused() {
    let Some(db) = Backend::Postgres.new_db("init_versions") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let p = |args: &[&str]| consentry_tests::publish(args, d.path());
    let first: serde_json::Value =
        serde_json::from_str(&p(&["init", "--db", &db, "--json"]).ok().stdout).unwrap();
    assert_eq!(first["outcome"], "created");
    assert_eq!(first["backend"], "postgresql");
    let again: serde_json::Value =
        serde_json::from_str(&p(&["init", "--db", &db, "--json"]).ok().stdout).unwrap();
    assert_eq!(again["outcome"], "current");
    let mut c = postgres::Client::connect(&db, postgres::NoTls).unwrap();
    c.execute(
        "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
        &[],
    )
    .unwrap();
    for args in [
        vec!["init", "--db", &db],
        vec!["generate", "--db", &db, "--records", "10"],
    ] {
        let out = p(&args).expect_code(2);
        assert!(
            out.stderr.contains("schema version 99") && out.stderr.contains("hint:"),
            "{}",
            out.stderr
        );
    }
    // An unreachable server is an error with advice, not a hang or a panic.
    let out = p(&[
        "import",
        "--db",
        "postgres://nobody@127.0.0.1:1/nothing",
        "x.csv",
    ])
    .expect_code(2);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
}
