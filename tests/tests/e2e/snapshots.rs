//! The committed example snapshot (`snapshots/example/`) is byte-reproducible
//! from the example registry and the INSECURE keys, and still verifies.
//! Regenerate it after a deliberate format change with
//! `CONSENTRY_REGENERATE_EXAMPLE=1 cargo test -p consentry-tests snapshots`.

use std::path::Path;

use consentry_publish::site::Site;
use consentry_tests::{compare_or_regenerate, publish_example, tree};

const T: &str = "2026-11-01T00:00:00Z";

#[test]
fn example_snapshot_is_byte_reproducible_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    publish_example(tmp.path(), T, Some("3650d"));
    let committed_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snapshots/example");
    compare_or_regenerate(
        &tree(&tmp.path().join("site")),
        &committed_dir,
        "CONSENTRY_REGENERATE_EXAMPLE",
    );
    let site = Site::new(&committed_dir);
    let cur = site.current(&site.root().unwrap()).unwrap().unwrap();
    consentry_publish::build::load_state(&site, &cur.manifest).unwrap();
}
