//! The committed example snapshot (`snapshots/example/`) is byte-reproducible
//! from the example registry and the INSECURE keys, and still verifies.
//! Regenerate it after a deliberate format change with
//! `CONSENTRY_REGENERATE_EXAMPLE=1 cargo test -p consentry-tests snapshots`.

use std::path::Path;

use consentry_publish::site::Site;
use consentry_tests::{data, publish};

use super::fixture::walk;

const T: &str = "2026-11-01T00:00:00Z";

fn build_example(dir: &Path) {
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys");
    publish(&["init", "--db", "reg.db"], dir).ok();
    publish(
        &[
            "import",
            "--db",
            "reg.db",
            data("declarations.csv").to_str().unwrap(),
            "--recorded-at",
            T,
        ],
        dir,
    )
    .ok();
    let k = keys.to_str().unwrap();
    publish(
        &[
            "root",
            "init",
            "--keys",
            k,
            "--site",
            "site",
            "--now",
            T,
            "--expires-in",
            "3650d",
        ],
        dir,
    )
    .ok();
    publish(
        &[
            "publish",
            "--db",
            "reg.db",
            "--keys",
            k,
            "--site",
            "site",
            "--now",
            T,
            "--manifest-ttl",
            "3650d",
            "--head-ttl",
            "3650d",
        ],
        dir,
    )
    .ok();
}

#[test]
fn example_snapshot_is_byte_reproducible_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    build_example(tmp.path());
    let built = walk(&tmp.path().join("site"));
    let committed_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snapshots/example");
    if std::env::var_os("CONSENTRY_REGENERATE_EXAMPLE").is_some() {
        let _ = std::fs::remove_dir_all(&committed_dir);
        for (rel, bytes) in &built {
            let p = committed_dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }
    let committed = walk(&committed_dir);
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        built.keys().collect::<Vec<_>>(),
        "snapshots/example lists other files than a rebuild"
    );
    assert!(
        committed == built,
        "snapshots/example differs from a rebuild: the format or the builder changed"
    );
    let site = Site::new(&committed_dir);
    let cur = site.current(&site.root().unwrap()).unwrap().unwrap();
    consentry_publish::build::load_state(&site, &cur.manifest).unwrap();
}
