//! Attacks through tar bundles (`consentry import`, for air-gapped sites).
//! Bundles are written with the tar crate's `Header`/`Builder` and raw header
//! fields, so they carry exactly the names and entry types an attacker would
//! write. The store is synced at version 1; each bundle carries version 2
//! with one defect; the import must exit 2 naming the code, leave no staging
//! directory, write nothing outside the store, and the store must answer as
//! before.

use consentry::docs::paths;
use consentry_tests::attack::{TarEntry, assert_refused, site_entries, write_tar};
use consentry_tests::tamper::Site;

use super::fixture::{Fixture, walk};

/// A store at version 1, the registry at version 2, and version 2's site as
/// tar entries (sorted, regular files).
fn setup() -> (Fixture, String, Vec<TarEntry>) {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let entries = site_entries(&f.path("site"));
    (f, before, entries)
}

/// Import `entries` as `evil.tar`: refused with `code` and a message that
/// mentions `what` (the offending entry), nothing changed.
#[track_caller]
fn import_refused(f: &Fixture, entries: &[TarEntry], code: &str, what: &str, before: &str) {
    let tar = f.path("evil.tar");
    write_tar(&tar, entries);
    let run = f.verifier(&["import", "evil.tar"]);
    assert_refused(&run, code);
    assert!(
        run.stderr.contains(what),
        "the error does not name {what:?}:\n{}",
        run.stderr
    );
    assert_eq!(
        f.answers(),
        before,
        "answers changed after a refused import"
    );
    f.assert_no_staging_left();
}

fn entry(entries: &[TarEntry], name: &str) -> TarEntry {
    entries
        .iter()
        .find(|e| e.name == name.as_bytes())
        .unwrap_or_else(|| panic!("no entry {name}"))
        .clone()
}

/// No file whose name contains `needle` anywhere under the fixture.
#[track_caller]
fn nothing_named(f: &Fixture, needle: &str) {
    let found: Vec<String> = walk(f.root())
        .into_keys()
        .filter(|k| k.contains(needle))
        .collect();
    assert!(
        found.is_empty(),
        "written outside the staging area: {found:?}"
    );
}

#[test]
fn control_bundle_of_the_same_site_imports() {
    let (f, _, entries) = setup();
    write_tar(&f.path("good.tar"), &entries);
    let out = f.verifier(&["import", "good.tar"]).ok();
    assert!(out.stdout.contains("-> version 2"), "{}", out.stdout);
    f.verifier(&["verify"]).ok();
}

#[test]
fn bundle_with_dotdot_path_is_rejected() {
    let (f, before, entries) = setup();
    let head = entry(&entries, paths::HEAD).data;
    for name in [
        "../../../escaped-dotdot.cbor",
        "shard/../../../../escaped-dotdot.zst",
        "./../escaped-dotdot",
        "..",
    ] {
        let mut e = entries.clone();
        e.insert(0, TarEntry::file(name, &head));
        import_refused(&f, &e, "bad_bundle", name, &before);
    }
    nothing_named(&f, "escaped-dotdot");
}

#[test]
fn bundle_with_absolute_path_is_rejected() {
    let (f, before, entries) = setup();
    let head = entry(&entries, paths::HEAD).data;
    let target =
        std::env::temp_dir().join(format!("consentry-escaped-absolute-{}", std::process::id()));
    for name in [target.to_str().unwrap(), "/head.cbor"] {
        let mut e = entries.clone();
        e.push(TarEntry::file(name, &head));
        import_refused(&f, &e, "bad_bundle", name, &before);
    }
    assert!(!target.exists());
}

#[test]
fn bundle_with_symlink_entry_is_rejected() {
    let (f, before, entries) = setup();
    let cases = [
        (paths::HEAD, "/etc/passwd"),
        ("shard", "/tmp"),
        ("root/2.cbor", "../../local/trust.json"),
    ];
    for (name, target) in cases {
        let mut e: Vec<TarEntry> = entries
            .iter()
            .filter(|x| x.name != name.as_bytes())
            .cloned()
            .collect();
        let mut link = TarEntry::special(name, tar::EntryType::Symlink);
        link.link = Some(target.to_string());
        e.insert(0, link);
        import_refused(&f, &e, "bad_bundle", "symbolic link", &before);
    }
}

#[test]
fn bundle_with_hardlink_entry_is_rejected() {
    let (f, before, entries) = setup();
    for target in ["root/1.cbor", "/etc/passwd"] {
        let mut e: Vec<TarEntry> = entries
            .iter()
            .filter(|x| x.name != paths::HEAD.as_bytes())
            .cloned()
            .collect();
        let mut link = TarEntry::special(paths::HEAD, tar::EntryType::Link);
        link.link = Some(target.to_string());
        e.push(link);
        import_refused(&f, &e, "bad_bundle", "hard link", &before);
    }
}

#[test]
fn bundle_with_device_file_entries_is_rejected() {
    let (f, before, entries) = setup();
    for (kind, dev) in [
        (tar::EntryType::Char, (1, 3)),  // /dev/null
        (tar::EntryType::Block, (8, 0)), // /dev/sda
    ] {
        let mut e: Vec<TarEntry> = entries
            .iter()
            .filter(|x| x.name != paths::HEAD.as_bytes())
            .cloned()
            .collect();
        let mut d = TarEntry::special(paths::HEAD, kind);
        d.device = Some(dev);
        e.push(d);
        import_refused(&f, &e, "bad_bundle", "device", &before);
    }
}

#[test]
fn bundle_with_a_fifo_is_rejected() {
    let (f, before, entries) = setup();
    let mut e: Vec<TarEntry> = entries
        .iter()
        .filter(|x| x.name != paths::HEAD.as_bytes())
        .cloned()
        .collect();
    e.push(TarEntry::special(paths::HEAD, tar::EntryType::Fifo));
    import_refused(&f, &e, "bad_bundle", "FIFO", &before);
}

#[test]
fn bundle_with_duplicate_entries_is_rejected() {
    let (f, before, mut entries) = setup();
    // The older head (version 1) after the current one: a reader that kept
    // the last copy would silently import the older head.
    let old_head = Site::new(&f.path("store")).read(paths::HEAD);
    entries.push(TarEntry::file(paths::HEAD, &old_head));
    import_refused(&f, &entries, "bad_bundle", "twice", &before);
    // The same bytes twice are a duplicate too.
    let (g, before, mut entries) = setup();
    let again = entry(&entries, "root/1.cbor");
    entries.push(again);
    import_refused(&g, &entries, "bad_bundle", "twice", &before);
}

#[test]
fn bundle_missing_a_shard_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    // Version 3 is a new base that a store at version 1 can only reach by
    // fetching the new base shard.
    f.publish_change(17, &[]);
    f.publish_change(18, &["--compact"]);
    let (m, _) = Site::new(&f.path("site")).manifest();
    assert_eq!(m.base, 3);
    let shard = paths::shard(&m.ranges[0].shard.sha256);
    let entries: Vec<TarEntry> = site_entries(&f.path("site"))
        .into_iter()
        .filter(|e| e.name != shard.as_bytes())
        .collect();
    import_refused(&f, &entries, "not_found", &shard, &before);
}

#[test]
fn bundle_with_an_unknown_file_name_is_rejected() {
    let (f, before, entries) = setup();
    for name in [
        "README.txt",
        "shard/not-a-hash.zst",
        "manifest/2.cbor",
        "root/01.cbor",
        "local/trust.json",
    ] {
        let mut e = entries.clone();
        e.push(TarEntry::file(name, b"x"));
        import_refused(&f, &e, "bad_bundle", name, &before);
    }
}

#[test]
fn bundle_with_an_unexpected_directory_is_rejected() {
    let (f, before, entries) = setup();
    let mut e = entries.clone();
    e.insert(0, TarEntry::special("local/", tar::EntryType::Directory));
    import_refused(&f, &e, "bad_bundle", "local/", &before);
}

#[test]
fn bundle_with_an_oversized_head_entry_is_rejected() {
    let (f, before, entries) = setup();
    let mut e: Vec<TarEntry> = entries
        .iter()
        .filter(|x| x.name != paths::HEAD.as_bytes())
        .cloned()
        .collect();
    let mut head = entry(&entries, paths::HEAD).data;
    head.resize(20 << 10, 0); // 20 KiB > the 16 KiB head cap
    e.push(TarEntry::file(paths::HEAD, &head));
    import_refused(&f, &e, "limit_exceeded", paths::HEAD, &before);
}

#[test]
fn bundle_with_a_pax_extended_header_is_rejected() {
    let (f, before, entries) = setup();
    // A pax header renaming the next entry (a classic way to smuggle a path
    // past a reader that checks only the ustar name).
    let record = "31 path=../../escaped-pax.cbor\n";
    assert_eq!(record.len(), 31);
    let mut pax = TarEntry::special("PaxHeaders/head.cbor", tar::EntryType::XHeader);
    pax.data = record.as_bytes().to_vec();
    let mut e = entries.clone();
    let i = e
        .iter()
        .position(|x| x.name == paths::HEAD.as_bytes())
        .unwrap();
    e.insert(i, pax);
    import_refused(&f, &e, "bad_bundle", "pax", &before);
    nothing_named(&f, "escaped-pax");
}

#[test]
fn bundle_with_a_gnu_long_name_header_is_rejected() {
    let (f, before, entries) = setup();
    let mut long = TarEntry::special("././@LongLink", tar::EntryType::GNULongName);
    long.data = b"../../escaped-longname.cbor\0".to_vec();
    let mut e = entries.clone();
    let i = e
        .iter()
        .position(|x| x.name == paths::HEAD.as_bytes())
        .unwrap();
    e.insert(i, long);
    import_refused(&f, &e, "bad_bundle", "long-name", &before);
    nothing_named(&f, "escaped-longname");
}

#[test]
fn bundle_with_a_tampered_layer_is_rejected() {
    let (f, before, mut entries) = setup();
    let (m, _) = Site::new(&f.path("site")).manifest();
    let rel = paths::layer(&m.delta.unwrap().sha256);
    let e = entries
        .iter_mut()
        .find(|e| e.name == rel.as_bytes())
        .unwrap();
    let last = e.data.len() - 1;
    e.data[last] ^= 0x01;
    import_refused(&f, &entries, "hash_mismatch", &rel, &before);
}

#[test]
fn bundle_that_is_not_a_tar_archive_is_rejected() {
    let (f, before, _) = setup();
    std::fs::write(f.path("evil.tar"), vec![0x42u8; 4096]).unwrap();
    assert_refused(&f.verifier(&["import", "evil.tar"]), "bad_bundle");
    assert_eq!(f.answers(), before);
}

#[test]
fn truncated_bundle_is_rejected() {
    let (f, before, entries) = setup();
    write_tar(&f.path("full.tar"), &entries);
    let b = std::fs::read(f.path("full.tar")).unwrap();
    // Cut in the middle of the last entry's data.
    let last = entries.last().unwrap().data.len();
    let data_start = b.len() - 1024 - last.div_ceil(512) * 512;
    std::fs::write(f.path("evil.tar"), &b[..data_start + last / 2]).unwrap();
    assert_refused(&f.verifier(&["import", "evil.tar"]), "bad_bundle");
    assert_eq!(f.answers(), before);
    f.assert_no_staging_left();
}
