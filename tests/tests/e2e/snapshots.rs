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

/// SPEC.md's worked documents (§4.1 root, §4.2 head, §4.3 manifest and its
/// version 2, §6 leaves) are the committed example and vector 02, byte for
/// byte where SPEC.md prints bytes.
#[test]
fn spec_examples_are_the_committed_example_and_vectors() {
    use consentry::cbor;
    use consentry::docs::{Head, Manifest, Root, paths};
    use consentry::envelope::{Envelope, key_id};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec = std::fs::read_to_string(root.join("SPEC.md")).unwrap();
    // Hex is printed in wrapped lines: compare without line breaks and indents.
    let flat: String = spec
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("")
        .replace("hex:", "");
    let has = |what: &str, hex: &str| {
        assert!(
            spec.contains(hex) || flat.contains(hex),
            "SPEC.md lacks {what} {hex}"
        );
    };
    let env =
        |p: &Path| -> Envelope { cbor::from_slice_canonical(&std::fs::read(p).unwrap()).unwrap() };
    let ex = root.join("snapshots/example");
    let r: Root = cbor::from_slice_canonical(&env(&ex.join("root/1.cbor")).payload).unwrap();
    for k in &r.keys {
        has("root key", &hex::encode(k));
        has("key id", &hex::encode(key_id(k)));
    }
    has("root expiry", &format!("\"expires\": {},", r.expires));
    let head_bytes = std::fs::read(ex.join("head.cbor")).unwrap();
    has("head file", &hex::encode(&head_bytes));
    let he = env(&ex.join("head.cbor"));
    has("head payload", &hex::encode(&he.payload));
    let h: Head = cbor::from_slice_canonical(&he.payload).unwrap();
    let mrel = paths::manifest(h.manifest.version, &h.manifest.sha256);
    has("manifest name", &mrel);
    let m: Manifest = cbor::from_slice_canonical(&env(&ex.join(&mrel)).payload).unwrap();
    assert_eq!(m.ranges.len(), 1, "SPEC.md §4.3 shows one range");
    for hex in [
        hex::encode(m.state_root),
        hex::encode(m.prefix_leaf),
        hex::encode(m.ranges[0].leaf),
        hex::encode(m.ranges[0].shard.sha256),
        hex::encode(m.prefixes.sha256),
    ] {
        has("manifest value", &hex);
    }
    let v2 = root.join("verifier/tests/vectors/02-valid-delta/site");
    let h2: Head = cbor::from_slice_canonical(&env(&v2.join("head.cbor")).payload).unwrap();
    let m2: Manifest = cbor::from_slice_canonical(
        &env(&v2.join(paths::manifest(h2.manifest.version, &h2.manifest.sha256))).payload,
    )
    .unwrap();
    has("v2 state root", &hex::encode(m2.state_root));
    has("v2 range leaf", &hex::encode(m2.ranges[0].leaf));
    has("v2 previous", &hex::encode(m2.previous.unwrap()));
}
