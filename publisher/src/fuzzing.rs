//! Fuzzing entry point of the publisher: the `import_rows` target of
//! `cargo fuzz` (`fuzz/`), shared with the stable replay of the committed
//! corpus (`tests/tests/e2e/fuzz_corpus.rs`). The verifier's targets are in
//! [`consentry::fuzzing`]. Must never panic; the assertions are invariants,
//! and a failing one is a finding. Not a supported API.

use consentry::cbor;
use consentry::columns::{self, PolicySet, Rows};
use consentry::declaration::{Action, Record, check_relations, resolve};
use consentry::isrc::{KEY_SPACE, Scope};
use consentry::model::Policy;

use crate::import;

/// `import_rows`: the first byte picks the format (even: CSV, odd: JSONL),
/// the rest is one import file, read by the importer's own row parsers
/// without a registry. Every declaration it accepts has a valid id, seq and
/// policy; and when a file is accepted as a whole (no problems, relations
/// hold), its live entries, encoded as a shard and a prefix table by the
/// publisher, must be accepted by the verifier's decoders unchanged: what
/// the importer lets in, a verifier never refuses.
pub fn import_rows(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let jsonl = mode & 1 == 1;
    let name = if jsonl { "fuzz.jsonl" } else { "fuzz.csv" };
    let (decls, rows, problems) = import::read_bytes(name, jsonl, body);
    assert!(decls.len() <= rows, "no more declarations than rows");
    for p in &problems {
        assert_eq!(p.file, name);
        assert!(!p.message.is_empty());
    }
    for d in &decls {
        assert!(
            !d.id.is_empty() && d.id.len() <= 255 && d.id.bytes().all(|b| b.is_ascii_graphic()),
            "declaration ids are 1-255 bytes of printable ASCII: {:?}",
            d.id
        );
        assert!(d.seq >= 1, "seq 0 is refused");
        assert!(
            d.policy.validate().is_ok(),
            "an accepted row has a valid policy: {:?}",
            d.policy.validate()
        );
        let back: Result<Policy, String> = cbor::from_slice_canonical(&cbor::to_vec(&d.policy));
        assert_eq!(back.as_ref().ok(), Some(&d.policy));
        assert_eq!(d.action == Action::Revoke, d.policy.revoke);
        if d.action == Action::Revoke {
            assert!(d.supersedes.is_some(), "a revocation names its target");
        }
    }
    if !problems.is_empty()
        || !check_relations(&decls).is_empty()
        || decls.iter().any(|d| i64::try_from(d.seq).is_err())
    {
        return;
    }
    let records = resolve(&decls);
    let (prefix, exact): (Vec<Record>, Vec<Record>) = records
        .into_iter()
        .partition(|r| !matches!(r.scope, Scope::Exact(_)));
    let mut set = PolicySet::default();
    let mut rows = Rows::default();
    for r in &exact {
        let p = set.intern(&r.policy);
        rows.push(r.scope.key_range().0, r.seq, &r.id, p);
    }
    let limits = consentry::fuzzing::LIMITS;
    let shard = columns::encode_shard(0, KEY_SPACE, &rows, &set);
    let mut set2 = PolicySet::default();
    let back = columns::decode_shard(
        "fuzz",
        &shard,
        0,
        KEY_SPACE,
        rows.len() as u64,
        &limits,
        &mut set2,
    );
    assert!(
        back.is_ok(),
        "the verifier accepts the shard of an accepted import: {:?}",
        back.as_ref().err()
    );
    if let Ok(back) = back {
        assert_eq!(back.keys, rows.keys);
        assert_eq!(back.seqs, rows.seqs);
        for i in 0..rows.len() {
            assert_eq!(back.id(i), rows.id(i));
            assert_eq!(set2.get(back.pol[i]), set.get(rows.pol[i]));
        }
    }
    let table = columns::encode_prefixes(&prefix);
    let back = columns::decode_prefixes("fuzz", &table, prefix.len() as u64, &limits);
    assert!(
        back.is_ok(),
        "the verifier accepts the prefix table of an accepted import: {:?}",
        back.as_ref().err()
    );
    if let Ok(back) = back {
        assert_eq!(back, prefix);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_data_passes_through_import_rows() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");
        for (mode, file) in [(0u8, "declarations.csv"), (1, "declarations.jsonl")] {
            let mut input = vec![mode];
            input.extend(std::fs::read(format!("{dir}{file}")).unwrap_or_default());
            assert!(input.len() > 100, "{file}");
            let (decls, _, problems) = crate::import::read_bytes(file, mode == 1, &input[1..]);
            assert!(
                problems.is_empty() && decls.len() == 16,
                "{file}: {problems:?}"
            );
            super::import_rows(&input);
        }
    }
}
