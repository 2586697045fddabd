//! The signed state rebuilt from verified data files (SPEC.md §7 steps 7–9):
//! the one path every caller takes — sync (from the base shards, or from a
//! local state through the delta or layers), `Store::verify` and the store's
//! index rebuilds, and the publisher's self-check — so that what one of them
//! checks, all of them check. Which bytes a file holds is the caller's
//! business ([`DataFiles`]: the store, a source with a staging directory, a
//! publisher's site); opening a layer chain, decoding a range's shard, the
//! compacted base's delta and the prefix leaf are decided here, once.
//!
//! No I/O: files arrive through [`DataFiles`].

use crate::columns::{self, Layer, PolicySet, Rows};
use crate::declaration::Record;
use crate::docs::{FileRef, LayerRef, Manifest, paths};
use crate::error::{Code, VResult, reject};
use crate::limits::Limits;
use crate::state::{self, HashedPolicies, State};

/// Where the data files of a manifest come from.
pub trait DataFiles {
    /// Site file `rel` checked against its signed reference `fref` up to
    /// SPEC.md §7 step 7 item 6 — the declared length before a byte is read
    /// ([`check_declared_length`]), then [`columns::open_file`]: length,
    /// SHA-256, zstd — and returned decompressed, with the location it was
    /// read from (named in errors). Decoding (item 7) is this module's.
    fn open(&mut self, rel: &str, fref: &FileRef) -> VResult<(Vec<u8>, String)>;
}

/// SPEC.md §7 step 7 item 1: a reference longer than the cap is refused
/// before a byte is read (so a hostile manifest cannot make a reader pull
/// 256 MiB first).
pub fn check_declared_length(file: &str, fref: &FileRef, limits: &Limits) -> VResult<()> {
    if fref.length > limits.max_file_bytes {
        return Err(reject(
            file,
            Code::LimitExceeded,
            format!(
                "the manifest declares {} bytes; at most {} are accepted for a data file",
                fref.length, limits.max_file_bytes
            ),
        ));
    }
    Ok(())
}

/// Decode the opened shard of range `i` of `m` (§5.3: its bounds and signed
/// count), interning its policies into `set`.
pub fn decode_shard_of(
    m: &Manifest,
    i: usize,
    loc: &str,
    raw: &[u8],
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<Rows> {
    let (lo, hi) = m.range_bounds(i);
    columns::decode_shard(loc, raw, lo, hi, m.ranges[i].shard.count, limits, set)
}

/// Open and decode the base shard of range `i` of `m`.
pub fn open_shard(
    files: &mut dyn DataFiles,
    m: &Manifest,
    i: usize,
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<Rows> {
    let shard = &m.ranges[i].shard;
    let (raw, loc) = files.open(&paths::shard(&shard.sha256), shard)?;
    decode_shard_of(m, i, &loc, &raw, limits, set)
}

/// The rows of range `i` of `m`: its base shard (opened and decoded) with
/// each of `layers` applied to its part inside the range, in order. Policies
/// are interned into `set`, which must already hold the layers' policies.
pub fn range_rows(
    files: &mut dyn DataFiles,
    m: &Manifest,
    i: usize,
    layers: &[(String, Layer)],
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<Rows> {
    let (lo, hi) = m.range_bounds(i);
    let shard = &m.ranges[i].shard;
    let (raw, loc) = files.open(&paths::shard(&shard.sha256), shard)?;
    columns::range_rows(&loc, &raw, lo, hi, shard.count, layers, limits, set)
}

/// Decode the opened layer `lr` (§5.4) and check that it goes from `from`
/// to `lr.version` (§7 step 8, `layer_mismatch`): `decode_layer` checks only
/// that a layer spans one version (SPEC.md §9.1 note 1).
pub fn decode_layer_at(
    loc: &str,
    raw: &[u8],
    lr: &LayerRef,
    from: u64,
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<Layer> {
    let layer = columns::decode_layer(loc, raw, lr.count, limits, set)?;
    if layer.from != from || layer.to != lr.version {
        return Err(reject(
            loc,
            Code::LayerMismatch,
            format!(
                "layer goes from version {} to {}; expected {from} to {}",
                layer.from, layer.to, lr.version
            ),
        ));
    }
    Ok(layer)
}

/// The layer `lr` (hash and decoding checked, policies interned into `set`),
/// which must continue from version `from`; with where it was read.
pub fn open_layer(
    files: &mut dyn DataFiles,
    lr: &LayerRef,
    from: u64,
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<(String, Layer)> {
    let (raw, loc) = files.open(&paths::layer(&lr.sha256), &lr.file())?;
    let layer = decode_layer_at(&loc, &raw, lr, from, limits, set)?;
    Ok((loc, layer))
}

/// The layers `m.base + 1 ..= m.version`, in version order, each continuing
/// from the one before (the first from the base).
pub fn open_layers(
    files: &mut dyn DataFiles,
    m: &Manifest,
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<Vec<(String, Layer)>> {
    let mut from = m.base;
    let mut out = Vec::with_capacity(m.layers.len());
    for lr in &m.layers {
        out.push(open_layer(files, lr, from, limits, set)?);
        from = lr.version;
    }
    Ok(out)
}

/// The `delta` a compacted base carries (SPEC.md §4.3: `layers` empty) is
/// applied by no one rebuilding from that base, but mirrors serve it to
/// clients one version behind: so it is opened and decoded as the layer from
/// version − 1 to version (`layer_mismatch`, vector
/// `37-compacted-delta-wrong-versions`). A delta that is the last of
/// `layers` is checked with them.
pub fn check_compacted_delta(
    files: &mut dyn DataFiles,
    m: &Manifest,
    limits: &Limits,
) -> VResult<()> {
    if let Some(d) = m.delta.as_ref().filter(|_| m.layers.is_empty()) {
        open_layer(files, d, m.version - 1, limits, &mut PolicySet::default())?;
    }
    Ok(())
}

/// Open and decode the prefix table `m` names (§5.5). Its leaf is checked
/// in step 9 ([`state::check_prefix_leaf`]).
pub fn open_prefixes(
    files: &mut dyn DataFiles,
    m: &Manifest,
    limits: &Limits,
) -> VResult<Vec<Record>> {
    let (raw, loc) = files.open(&paths::prefixes(&m.prefixes.sha256), &m.prefixes)?;
    columns::decode_prefixes(&loc, &raw, m.prefixes.count, limits)
}

/// SPEC.md §7 steps 7–9 from the base, in the order of step 7 ("Order of the
/// files", full path): every base shard in range order, then every layer in
/// version order (each applied), then the prefix table; the result must
/// match every leaf of `m`.
pub fn full_state(files: &mut dyn DataFiles, m: &Manifest, limits: &Limits) -> VResult<State> {
    let (st, all) = base_and_layers(files, m, limits)?;
    finish(files, st, &all, m, limits)
}

/// Every base shard of `m` in range order, then every layer in version
/// order (each applied): the rows, and a state holding their policies.
fn base_and_layers(
    files: &mut dyn DataFiles,
    m: &Manifest,
    limits: &Limits,
) -> VResult<(State, Rows)> {
    let mut st = State::default();
    let mut all = Rows::default();
    for i in 0..m.ranges.len() {
        all.append(&open_shard(files, m, i, limits, &mut st.policies)?);
    }
    let mut from = m.base;
    for lr in &m.layers {
        apply_layer(files, &mut all, lr, from, limits, &mut st.policies)?;
        from = lr.version;
    }
    Ok((st, all))
}

/// The state of `m` — the store's current manifest, verified when it was
/// synced — from the store's own base shards and layers, each checked
/// against its signed length and SHA-256 as it is opened, without
/// recomputing the leaves: what a delta sync starts from. Sound because the
/// state a delta sync ends at is checked against every leaf of the new
/// manifest (step 9) before anything is switched; and cheap, because the
/// compressed files are ~1.2 bytes per entry where re-reading and
/// re-hashing the index is ~64.
pub fn trusted_state(files: &mut dyn DataFiles, m: &Manifest, limits: &Limits) -> VResult<State> {
    let (mut st, all) = base_and_layers(files, m, limits)?;
    st.ranges = State::split(&all, m);
    Ok(st)
}

/// Steps 7–9 from `local`, the verified state of version `l` (`m.base` ≤ `l`,
/// or `l` = `m.version` − 1 with a `delta`): the delta or the layers after
/// `l` in version order (each applied), then the prefix table; the result
/// must match every leaf of `m`. Also returns how many layers were applied.
pub fn incremental_state(
    files: &mut dyn DataFiles,
    local: State,
    l: u64,
    m: &Manifest,
    limits: &Limits,
) -> VResult<(State, u64)> {
    let mut st = State {
        ranges: Vec::new(),
        policies: local.policies.clone(),
        prefixes: Vec::new(),
    };
    let mut all = local.flatten();
    drop(local);
    let layers: Vec<&LayerRef> = match &m.delta {
        Some(d) if l + 1 == m.version => vec![d],
        _ => m.layers[(l - m.base) as usize..].iter().collect(),
    };
    let mut from = l;
    for lr in &layers {
        apply_layer(files, &mut all, lr, from, limits, &mut st.policies)?;
        from = lr.version;
    }
    Ok((finish(files, st, &all, m, limits)?, layers.len() as u64))
}

/// Step 8 for one layer: open `lr` as continuing from `from` and merge it
/// into `all`.
fn apply_layer(
    files: &mut dyn DataFiles,
    all: &mut Rows,
    lr: &LayerRef,
    from: u64,
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<()> {
    let (loc, layer) = open_layer(files, lr, from, limits, set)?;
    *all = all.apply(&layer.dels, &layer.puts, &loc)?;
    Ok(())
}

/// The end of both paths: the prefix table, then step 9 on the rows split
/// at the manifest's ranges.
fn finish(
    files: &mut dyn DataFiles,
    mut st: State,
    all: &Rows,
    m: &Manifest,
    limits: &Limits,
) -> VResult<State> {
    st.prefixes = open_prefixes(files, m, limits)?;
    st.ranges = State::split(all, m);
    st.check_against(m, "manifest")?;
    Ok(st)
}

/// What a range-by-range check needs before the ranges: the layers (opened
/// in order, each continuing the previous), the policies they bring, and
/// the prefix table — with the compacted base's delta and the prefix leaf
/// already checked.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    pub layers: Vec<(String, Layer)>,
    pub policies: PolicySet,
    pub prefixes: Vec<Record>,
}

/// Open everything of `m` but the base shards, in version order: the layers,
/// the compacted base's delta, the prefix table and its leaf (step 9).
pub fn open_overlay(files: &mut dyn DataFiles, m: &Manifest, limits: &Limits) -> VResult<Overlay> {
    let mut policies = PolicySet::default();
    let layers = open_layers(files, m, limits, &mut policies)?;
    check_compacted_delta(files, m, limits)?;
    let prefixes = open_prefixes(files, m, limits)?;
    state::check_prefix_leaf(m, &prefixes, "manifest")?;
    Ok(Overlay {
        layers,
        policies,
        prefixes,
    })
}

/// Steps 7 and 9 for every range of `m`, one range per worker on all cores
/// (memory stays at about one range per core): its shard opened and decoded
/// from a worker's own `files()`, `overlay`'s layers applied to its part,
/// and its count and leaf compared with the manifest's. `chunks(i, rows,
/// policy_hashes)` gives the range's chunk hashes (§6) and anything else the
/// caller wants from the verified rows (`Store::verify` compares its index
/// block, built in the same pass); results in range order, and of several
/// failing ranges the first is reported.
pub fn check_ranges<F: DataFiles, T: Send>(
    m: &Manifest,
    overlay: &Overlay,
    limits: &Limits,
    files: impl Fn() -> F + Sync,
    chunks: impl Fn(usize, &Rows, &[[u8; 32]]) -> (Vec<[u8; 32]>, T) + Sync,
) -> VResult<Vec<T>> {
    let base = HashedPolicies::new(&overlay.policies);
    crate::par::map(
        m.ranges.len(),
        || (base.clone(), files()),
        |(h, files), i| {
            let rows = range_rows(files, m, i, &overlay.layers, limits, &mut h.set)?;
            let (hashes, out) = chunks(i, &rows, h.hashes());
            state::check_range(m, i, rows.len() as u64, || hashes, "manifest")?;
            Ok(out)
        },
        || {
            reject(
                "verify",
                Code::IoError,
                "a worker thread stopped before finishing its ranges",
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsite::{self, Opts, TestSite, policy, record};
    use std::path::Path;

    /// A site directory's files, checked as every caller checks them.
    struct Dir<'a>(&'a Path);

    impl DataFiles for Dir<'_> {
        fn open(&mut self, rel: &str, fref: &FileRef) -> VResult<(Vec<u8>, String)> {
            check_declared_length(rel, fref, &Limits::DEFAULT)?;
            let bytes = std::fs::read(self.0.join(rel)).expect("a site file");
            Ok((
                columns::open_file(rel, &bytes, fref, &Limits::DEFAULT)?,
                rel.to_string(),
            ))
        }
    }

    /// Versions 1 (base), 2 (a delta) and 3 (a compaction carrying its delta).
    fn site(dir: &Path) -> (TestSite, Vec<Manifest>) {
        let mut site = TestSite::new(dir.join("site"));
        let mut records = testsite::example_records();
        let mut ms = vec![site.publish(&records, &Opts::default()).manifest];
        records.push(record("GBZZZ2600001", 1000, "X1", policy("Extra", false)));
        ms.push(site.publish(&records, &Opts::default()).manifest);
        records.push(record("USZZZ2600002", 1001, "X2", policy("Extra", true)));
        let compact = Opts {
            compact: true,
            ..Opts::default()
        };
        ms.push(site.publish(&records, &compact).manifest);
        (site, ms)
    }

    /// The ranges' rows `check_ranges` sees, in range order.
    fn ranges_of(files: &Path, m: &Manifest, overlay: &Overlay) -> Vec<Rows> {
        check_ranges(
            m,
            overlay,
            &Limits::DEFAULT,
            || Dir(files),
            |_, rows, hashes| (state::chunk_hashes(rows, hashes), rows.clone()),
        )
        .unwrap()
    }

    #[test]
    fn every_path_rebuilds_the_same_state() {
        let tmp = tempfile::tempdir().unwrap();
        let (site, ms) = site(tmp.path());
        let limits = Limits::DEFAULT;
        let mut states = Vec::new();
        for m in &ms {
            let full = full_state(&mut Dir(&site.dir), m, &limits).unwrap();
            let overlay = open_overlay(&mut Dir(&site.dir), m, &limits).unwrap();
            assert_eq!(overlay.prefixes, full.prefixes);
            let ranges = ranges_of(&site.dir, m, &overlay);
            // Policy indexes differ between the two paths' sets: compare
            // keys, seqs and ids.
            for (r, (_, _, f)) in ranges.iter().zip(&full.ranges) {
                assert_eq!((&r.keys, &r.seqs), (&f.keys, &f.seqs));
                assert_eq!(
                    (0..r.len()).map(|i| r.id(i)).collect::<Vec<_>>(),
                    (0..f.len()).map(|i| f.id(i)).collect::<Vec<_>>()
                );
            }
            states.push(full);
        }
        // From version 1 through the delta to 2, and through version 2's
        // state to the compacted 3 (its delta).
        for (l, next) in [(0, 1), (1, 2)] {
            let (st, n) = incremental_state(
                &mut Dir(&site.dir),
                states[l].clone(),
                ms[l].version,
                &ms[next],
                &limits,
            )
            .unwrap();
            assert_eq!(n, 1);
            assert_eq!(st.flatten().keys, states[next].flatten().keys);
        }
    }

    #[test]
    fn a_compacted_base_s_delta_from_the_wrong_version_is_refused_by_every_check() {
        let tmp = tempfile::tempdir().unwrap();
        let (site, ms) = site(tmp.path());
        let mut m = ms[2].clone();
        assert!(m.layers.is_empty() && m.delta.is_some());
        // Version 2's delta (1 → 2) named as version 3's.
        let mut d = ms[1].delta.clone().unwrap();
        d.version = m.version;
        m.delta = Some(d);
        let limits = Limits::DEFAULT;
        let code = |r: VResult<()>| r.unwrap_err().code;
        assert_eq!(
            code(check_compacted_delta(&mut Dir(&site.dir), &m, &limits)),
            Code::LayerMismatch
        );
        assert_eq!(
            code(open_overlay(&mut Dir(&site.dir), &m, &limits).map(drop)),
            Code::LayerMismatch
        );
        // Rebuilding from the base does not read it (sync checks it last).
        full_state(&mut Dir(&site.dir), &m, &limits).unwrap();
    }

    #[test]
    fn a_layer_not_following_the_state_and_a_wrong_prefix_leaf_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (site, ms) = site(tmp.path());
        let limits = Limits::DEFAULT;
        let lr = ms[1].delta.clone().unwrap();
        let err = open_layer(
            &mut Dir(&site.dir),
            &lr,
            0,
            &limits,
            &mut PolicySet::default(),
        )
        .unwrap_err();
        assert_eq!(err.code, Code::LayerMismatch);

        let mut m = ms[0].clone();
        m.prefix_leaf[0] ^= 1;
        for r in [
            full_state(&mut Dir(&site.dir), &m, &limits).map(drop),
            open_overlay(&mut Dir(&site.dir), &m, &limits).map(drop),
        ] {
            assert_eq!(r.unwrap_err().code, Code::StateMismatch);
        }

        let mut m = ms[0].clone();
        m.ranges[1].leaf[0] ^= 1;
        let overlay = open_overlay(&mut Dir(&site.dir), &m, &limits).unwrap();
        let e = check_ranges(
            &m,
            &overlay,
            &limits,
            || Dir(&site.dir),
            |_, rows, hashes| (state::chunk_hashes(rows, hashes), ()),
        )
        .unwrap_err();
        assert_eq!(e.code, Code::StateMismatch);
        assert!(e.detail.contains("range 1"), "{e}");
    }
}
