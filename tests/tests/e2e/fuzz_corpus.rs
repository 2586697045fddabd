//! The committed fuzz corpus (`fuzz/corpus/<target>/`), replayed on the stable
//! toolchain through the very functions the `cargo fuzz` targets call
//! (`consentry::fuzzing`, `consentry_publish::fuzzing`), so CI exercises
//! every seed without nightly. A missing or empty seed directory fails, and
//! so does a target without a replay or a corpus without a target.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every target: the verifier's, then the publisher's.
fn all_targets() -> Vec<(&'static str, consentry::fuzzing::Target)> {
    let mut t = consentry::fuzzing::TARGETS.to_vec();
    t.push(("import_rows", consentry_publish::fuzzing::import_rows));
    t
}

fn replay(target: &str) {
    let f = all_targets()
        .into_iter()
        .find(|(n, _)| *n == target)
        .map_or_else(|| panic!("no fuzzing function for {target}"), |(_, f)| f);
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no seeds", dir.display());
    for p in &files {
        let data = std::fs::read(p).unwrap();
        let r = std::panic::catch_unwind(|| f(&data));
        assert!(
            r.is_ok(),
            "{}: the target panicked on this seed",
            p.display()
        );
    }
}

macro_rules! replays {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        /// The replays above, the fuzzing functions, the `[[bin]]`s of
        /// fuzz/Cargo.toml and the corpus directories name the same targets.
        #[test]
        fn every_target_has_a_replay_a_binary_and_a_corpus() {
            let mut replayed = vec![$(stringify!($name)),*];
            replayed.sort_unstable();
            let mut functions: Vec<&str> = all_targets().iter().map(|(n, _)| *n).collect();
            functions.sort_unstable();
            assert_eq!(functions, replayed);
            let toml = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
            let mut bins: Vec<&str> = toml
                .split("[[bin]]")
                .skip(1)
                .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("name = ")))
                .map(|n| n.trim_matches('"'))
                .collect();
            bins.sort_unstable();
            assert_eq!(bins, replayed);
            let mut dirs: Vec<String> = std::fs::read_dir(fuzz_dir().join("corpus"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            dirs.sort_unstable();
            assert_eq!(dirs, replayed);
        }
    };
}

replays!(
    envelope,
    root,
    head,
    manifest,
    data_file,
    shard,
    layer,
    prefixes,
    bundle,
    isrc,
    receipt,
    checkpoint,
    index,
    import_rows,
);

/// The index target's seed comes from the library; whatever the committed
/// corpus holds, the current seed passes too.
#[test]
fn index_seed_of_the_library() {
    let seed = consentry::fuzzing::index_seed();
    assert!(!seed.is_empty());
    consentry::fuzzing::index(&seed);
}
