//! `consentry-publish` through its binary.

use consentry::docs::Manifest;
use consentry_publish::site::Site;

use super::fixture::{Backend, Fixture, T0, on_both_backends, walk};

fn current(f: &Fixture) -> (Manifest, [u8; 32]) {
    let site = Site::new(&f.path("site"));
    let cur = site.current(&site.root().unwrap()).unwrap().unwrap();
    (cur.manifest, cur.manifest_sha256)
}

on_both_backends!(
    publish_writes_a_site_that_verifies,
    same_database_and_keys_give_byte_identical_sites,
    publishing_twice_without_change_writes_nothing,
    one_changed_declaration_becomes_a_one_change_delta_layer,
    bad_rows_exit_2_with_precise_messages_and_change_nothing,
    publish_failing_midway_leaves_the_old_head_valid,
    root_rotation_verifies_through_the_chain,
);

fn publish_writes_a_site_that_verifies(b: Backend) {
    let f = Fixture::published_on(b);
    let (m, _) = current(&f);
    assert_eq!(m.version, 1);
    assert_eq!(
        m.entries, 14,
        "16 declarations minus superseded D13 and revoked D9"
    );
    let site = Site::new(&f.path("site"));
    let st = consentry_publish::build::load_state(&site, &m).unwrap();
    assert_eq!(st.prefixes.len(), 5);
    for p in ["root/1.cbor", "head.cbor"] {
        assert!(f.path("site").join(p).exists(), "{p}");
    }
}

fn same_database_and_keys_give_byte_identical_sites(b: Backend) {
    let x = Fixture::published_on(b);
    let y = Fixture::published_on(b);
    assert_eq!(x.site_files(), y.site_files());
}

/// The registry rules are one implementation: the same imports give
/// byte-identical sites from SQLite and from PostgreSQL, first base and a
/// delta layer.
#[test]
fn sqlite_and_postgres_publish_byte_identical_sites() {
    if !Backend::Postgres.available("sqlite_and_postgres_publish_byte_identical_sites") {
        return;
    }
    let x = Fixture::published_on(Backend::Sqlite);
    let y = Fixture::published_on(Backend::Postgres);
    assert_eq!(x.site_files(), y.site_files());
    for f in [&x, &y] {
        f.import_rows(
            "change.csv",
            "D17,17,declare,D2,GBNWR2500017,Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,2026-11-02T00:00:00Z,active\n\
             D18,18,revoke,D14,GBNWR2500099,Northwind Records,ddex:PADPIDA2014021201U,label,,,,,,,,,,,,2026-11-02T00:00:00Z,active\n",
            "2026-11-02T00:00:00Z",
        )
        .ok();
        f.publish_next(&[]).ok();
    }
    assert_eq!(x.site_files(), y.site_files());
    assert_eq!(x.registry_state(), y.registry_state());
}

fn publishing_twice_without_change_writes_nothing(b: Backend) {
    let f = Fixture::published_on(b);
    let before = f.site_files();
    let out = f.publish_next(&[]).ok();
    assert!(out.stdout.contains("unchanged"), "{}", out.stdout);
    assert_eq!(before, f.site_files());
}

fn one_changed_declaration_becomes_a_one_change_delta_layer(b: Backend) {
    let f = Fixture::published_on(b);
    let (m1, h1) = current(&f);
    f.import_rows(
        "change.csv",
        "D17,17,declare,D2,GBNWR2500017,Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,2026-11-02T00:00:00Z,active\n",
        "2026-11-02T00:00:00Z",
    )
    .ok();
    let out = f.publish_next(&[]).ok();
    assert!(out.stdout.contains("delta layer"), "{}", out.stdout);
    let (m2, _) = current(&f);
    assert_eq!(m2.version, 2);
    assert_eq!(m2.previous, Some(h1), "manifest chain links to version 1");
    assert_eq!(m2.base, 1, "the base is reused");
    assert_eq!(
        m2.ranges.iter().map(|r| &r.shard).collect::<Vec<_>>(),
        m1.ranges.iter().map(|r| &r.shard).collect::<Vec<_>>()
    );
    let layer = m2.delta.clone().unwrap();
    assert_eq!(layer.count, 2, "D2 deleted, D17 put");
    let site = Site::new(&f.path("site"));
    let raw = consentry::columns::open_file(
        "layer",
        &std::fs::read(
            f.path("site")
                .join(consentry::docs::paths::layer(&layer.sha256)),
        )
        .unwrap(),
        &layer.file(),
        &consentry::Limits::DEFAULT,
    )
    .unwrap();
    let mut set = consentry::columns::PolicySet::default();
    let l = consentry::columns::decode_layer(
        "layer",
        &raw,
        layer.count,
        &consentry::Limits::DEFAULT,
        &mut set,
    )
    .unwrap();
    let d2 = consentry::Isrc::parse("GBNWR2500017").unwrap().key();
    assert_eq!(l.dels, vec![(d2, 2)]);
    assert_eq!(
        (
            l.puts.keys.clone(),
            l.puts.seqs.clone(),
            l.puts.id(0).to_string()
        ),
        (vec![d2], vec![17], "D17".to_string())
    );
    consentry_publish::build::load_state(&site, &m2).unwrap();

    // A full rebuild of the same database reaches the same state root.
    let mut g = Fixture::unpublished_on(b);
    match b {
        Backend::Sqlite => {
            std::fs::copy(f.path("reg.db"), g.path("reg.db")).unwrap();
        }
        Backend::Postgres => {
            g.db = consentry_publish::pg::test_database_copy(&f.db).unwrap();
        }
    }
    g.publish_next(&["--now", T0]).ok();
    let (full, _) = current(&g);
    assert_eq!(full.state_root, m2.state_root);

    // Compaction folds the layer into a new base with the same state root.
    f.publish_next(&["--compact"]).ok();
    let (m3, _) = current(&f);
    assert_eq!(
        (m3.base, m3.layers.len(), m3.state_root),
        (3, 0, m2.state_root)
    );
}

fn bad_rows_exit_2_with_precise_messages_and_change_nothing(b: Backend) {
    let f = Fixture::published_on(b);
    let db_before = f.registry_state();
    let out = f
        .import_rows(
            "bad.csv",
            "D20,20,declare,,GBNWR25000X1,X,ddex:PADPIDA1,label,,n,,,,,,WW,,,,2026-11-02T00:00:00Z,active\n\
             D21,21,declare,,GBNWR2500002,X,ddex:PADPIDA1,label,,q,,,,,,ZZ,,2026-02-01,2026-01-01,2026-11-02T00:00:00Z,active\n",
            "2026-11-02T00:00:00Z",
        )
        .expect_code(2);
    for needle in [
        "bad.csv:2:scope",
        "bad.csv:3:train-ai",
        "bad.csv:3:territories_include",
        "bad.csv:3:valid_until",
    ] {
        assert!(
            out.stderr.contains(needle),
            "missing {needle} in\n{}",
            out.stderr
        );
    }
    assert_eq!(db_before, f.registry_state(), "database unchanged");
}

#[test]
fn keygen_refuses_to_overwrite_and_writes_secrets_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    consentry_tests::publish(&["keygen", "--role", "head", "--out", "k/head-1"], d).ok();
    let mode = std::fs::metadata(d.join("k/head-1.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(d.join("k/head-1.key")).unwrap();
    let out = consentry_tests::publish(&["keygen", "--role", "head", "--out", "k/head-1"], d)
        .expect_code(2);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(before, std::fs::read(d.join("k/head-1.key")).unwrap());
    consentry_tests::publish(
        &["keygen", "--role", "head", "--out", "k/head-1", "--force"],
        d,
    )
    .ok();
    assert_ne!(before, std::fs::read(d.join("k/head-1.key")).unwrap());
}

fn publish_failing_midway_leaves_the_old_head_valid(b: Backend) {
    for point in ["after-data", "after-manifest", "before-head"] {
        let f = Fixture::published_on(b);
        let head_before = std::fs::read(f.path("site/head.cbor")).unwrap();
        f.import_rows(
            "change.csv",
            "D17,17,declare,,GBNWR2500018,Northwind Records,ddex:PADPIDA2014021201U,label,,y,,,,,,WW,,,,2026-11-02T00:00:00Z,active\n",
            "2026-11-02T00:00:00Z",
        )
        .ok();
        let out = consentry_tests::run_env(
            "consentry-publish",
            &["publish", "--db", &f.db, "--keys", "keys", "--site", "site"],
            f.root(),
            &[("CONSENTRY_PUBLISH_FAILPOINT", point)],
        )
        .expect_code(2);
        assert!(out.stderr.contains(point), "{}", out.stderr);
        assert_eq!(
            head_before,
            std::fs::read(f.path("site/head.cbor")).unwrap(),
            "{point}"
        );
        let (m, _) = current(&f);
        assert_eq!(m.version, 1, "{point}");
        consentry_publish::build::load_state(&Site::new(&f.path("site")), &m).unwrap();
        // The next publish succeeds and is a proper successor.
        f.publish_next(&[]).ok();
        assert_eq!(current(&f).0.version, 2, "{point}");
    }
}

fn root_rotation_verifies_through_the_chain(b: Backend) {
    let f = Fixture::published_on(b);
    // New root and head keys; the old root key signs the rotation too.
    std::fs::create_dir_all(f.path("keys2")).unwrap();
    std::fs::create_dir_all(f.path("old")).unwrap();
    for r in ["root", "head"] {
        for ext in ["key", "pub"] {
            std::fs::rename(
                f.path(&format!("keys/INSECURE-{r}-1.{ext}")),
                f.path(&format!("old/INSECURE-{r}-1.{ext}")),
            )
            .unwrap();
        }
    }
    f.publish(&["keygen", "--role", "root", "--out", "keys/root-2"])
        .ok();
    f.publish(&["keygen", "--role", "head", "--out", "keys/head-2"])
        .ok();
    // Without the old root key the rotation fails its self-check and writes nothing.
    let out = f
        .publish(&[
            "root", "rotate", "--keys", "keys", "--site", "site", "--now", T0,
        ])
        .expect_code(2);
    assert!(out.stderr.contains("threshold"), "{}", out.stderr);
    assert!(!f.path("site/root/2.cbor").exists());
    f.publish(&[
        "root",
        "rotate",
        "--keys",
        "keys",
        "--site",
        "site",
        "--sign-with",
        "old",
        "--now",
        T0,
    ])
    .ok();
    let site = Site::new(&f.path("site"));
    assert_eq!(site.roots().unwrap().len(), 2);
    // The old head is signed by a key the new root no longer lists...
    let root2 = site.root().unwrap();
    let head = std::fs::read(f.path("site/head.cbor")).unwrap();
    assert!(
        consentry::verify::verify_head(
            &root2,
            "head.cbor",
            &head,
            0,
            consentry::verify::Expiry::AllowExpired,
            &consentry::Limits::DEFAULT
        )
        .is_err()
    );
    // ...and the next publish, signed by the new head key, verifies through the chain.
    f.import_rows(
        "change.csv",
        "D17,17,declare,,GBNWR2500018,Northwind Records,ddex:PADPIDA2014021201U,label,,y,,,,,,WW,,,,2026-11-02T00:00:00Z,active\n",
        "2026-11-02T00:00:00Z",
    )
    .ok();
    f.publish_next(&[]).ok();
    let (m, _) = current(&f);
    consentry_publish::build::load_state(&site, &m).unwrap();
}

#[test]
fn bundle_lists_cleanly_with_gnu_tar() {
    let f = Fixture::published();
    f.publish(&["bundle", "--site", "site", "--out", "snap.tar"])
        .ok();
    let out = std::process::Command::new("tar")
        .arg("-tf")
        .arg(f.path("snap.tar"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    listed.sort();
    let mut files: Vec<String> = walk(&f.path("site")).into_keys().collect();
    files.sort();
    assert_eq!(listed, files);
}
