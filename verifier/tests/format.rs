//! Round trips, determinism and limits of the wire format through the public
//! API: documents, shards, layers, the prefix table, and capped decompression.
#![allow(clippy::unwrap_used)]

use consentry::cbor;
use consentry::columns::{self, PolicySet, Rows};
use consentry::declaration::Record;
use consentry::docs::{FileRef, Head, Manifest, ManifestRef, Range, RoleKeys, Roles, Root};
use consentry::envelope::sha256;
use consentry::error::Code;
use consentry::model::{Declarant, Policy};
use consentry::{Isrc, Limits, Scope};

fn policy(uses: [u8; 5]) -> Policy {
    Policy {
        from: None,
        uses,
        terms: None,
        until: None,
        revoke: false,
        status: "active".into(),
        exclude: vec![],
        include: vec!["WW".into()],
        declarant: Declarant {
            id: "ddex:PADPIDA1".into(),
            name: "L".into(),
            role: "label".into(),
        },
    }
}

fn rows(n: u64) -> (Rows, PolicySet) {
    let mut set = PolicySet::default();
    let (a, b) = (
        set.intern(&policy([2, 0, 0, 0, 0])),
        set.intern(&policy([0, 1, 0, 0, 0])),
    );
    let mut r = Rows::default();
    let base = Isrc::parse("GBNWR2500000").unwrap().key();
    for i in 0..n {
        r.push(
            base + i * 3,
            100 + i,
            &format!("D{i}"),
            if i % 3 == 0 { a } else { b },
        );
    }
    (r, set)
}

#[test]
fn documents_round_trip_and_encode_deterministically() {
    let id = [7u8; 32];
    let root = Root {
        keys: vec![[9; 32]],
        roles: Roles {
            head: RoleKeys {
                keyids: vec![id],
                threshold: 1,
            },
            root: RoleKeys {
                keyids: vec![id],
                threshold: 1,
            },
            manifest: RoleKeys {
                keyids: vec![id],
                threshold: 1,
            },
        },
        expires: 2_000_000_000,
        version: 1,
        witnesses: None,
    };
    let head = Head {
        expires: 5,
        version: 2,
        manifest: ManifestRef {
            length: 10,
            sha256: [1; 32],
            version: 3,
        },
    };
    let fr = FileRef {
        count: 1,
        length: 2,
        sha256: [3; 32],
        raw_length: 4,
    };
    let manifest = Manifest {
        base: 1,
        delta: None,
        layers: vec![],
        ranges: vec![Range {
            lo: 0,
            leaf: [4; 32],
            count: 1,
            shard: fr.clone(),
        }],
        created: 1,
        entries: 2,
        expires: 9,
        version: 1,
        prefixes: fr,
        previous: None,
        state_root: [0; 32],
        prefix_leaf: [5; 32],
    };
    for (bytes, again) in [
        (
            cbor::to_vec(&root),
            cbor::to_vec(&cbor::from_slice_canonical::<Root>(&cbor::to_vec(&root)).unwrap()),
        ),
        (
            cbor::to_vec(&head),
            cbor::to_vec(&cbor::from_slice_canonical::<Head>(&cbor::to_vec(&head)).unwrap()),
        ),
        (
            cbor::to_vec(&manifest),
            cbor::to_vec(
                &cbor::from_slice_canonical::<Manifest>(&cbor::to_vec(&manifest)).unwrap(),
            ),
        ),
    ] {
        assert_eq!(bytes, again);
    }
    assert_eq!(
        cbor::from_slice_canonical::<Head>(&cbor::to_vec(&head)).unwrap(),
        head
    );
}

#[test]
fn shards_round_trip_and_encode_deterministically() {
    let (r, set) = rows(1000);
    let (lo, hi) = (0, consentry::isrc::KEY_SPACE);
    let raw = columns::encode_shard(lo, hi, &r, &set);
    assert_eq!(raw, columns::encode_shard(lo, hi, &r, &set));
    let file = columns::compress(&raw);
    assert_eq!(
        file,
        columns::compress(&raw),
        "same payload, same compressed bytes"
    );
    let fref = FileRef {
        count: 1000,
        length: file.len() as u64,
        sha256: sha256(&file),
        raw_length: raw.len() as u64,
    };
    let raw2 = columns::open_file("s", &file, &fref, &Limits::DEFAULT).unwrap();
    let mut set2 = PolicySet::default();
    let back =
        columns::decode_shard("s", &raw2, lo, hi, 1000, &Limits::DEFAULT, &mut set2).unwrap();
    assert_eq!(back.keys, r.keys);
    assert_eq!(back.seqs, r.seqs);
    assert_eq!(
        (0..1000)
            .map(|i| back.id(i).to_string())
            .collect::<Vec<_>>(),
        (0..1000).map(|i| r.id(i).to_string()).collect::<Vec<_>>()
    );
    assert_eq!(set2.list.len(), 2);
}

#[test]
fn layers_and_prefix_tables_round_trip() {
    let (puts, set) = rows(10);
    let dels = vec![(5, 1), (6, 2)];
    let raw = columns::encode_layer(3, 4, &dels, &puts, &set);
    let mut set2 = PolicySet::default();
    let l = columns::decode_layer("l", &raw, 12, &Limits::DEFAULT, &mut set2).unwrap();
    assert_eq!(
        (l.from, l.to, l.dels.clone(), l.puts.keys.clone()),
        (3, 4, dels, puts.keys.clone())
    );
    let recs = vec![
        Record {
            scope: Scope::parse("US-QZ9-24").unwrap(),
            seq: 3,
            id: "D3".into(),
            policy: policy([0, 1, 2, 0, 0]),
        },
        Record {
            scope: Scope::parse("GB-NWR").unwrap(),
            seq: 1,
            id: "D1".into(),
            policy: policy([2, 0, 0, 0, 0]),
        },
    ];
    let raw = columns::encode_prefixes(&recs);
    let back = columns::decode_prefixes("p", &raw, 2, &Limits::DEFAULT).unwrap();
    assert_eq!(
        back.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["D1", "D3"],
        "sorted by scope start"
    );
}

#[test]
fn limits_are_enforced_before_and_while_decompressing() {
    let raw = vec![0u8; 1 << 20];
    let file = columns::compress(&raw);
    let good = FileRef {
        count: 0,
        length: file.len() as u64,
        sha256: sha256(&file),
        raw_length: raw.len() as u64,
    };
    assert!(columns::open_file("f", &file, &good, &Limits::DEFAULT).is_ok());
    // A declared decompressed length above the limit is refused before decompressing.
    let tight = Limits {
        max_raw_bytes: 1024,
        ..Limits::DEFAULT
    };
    assert_eq!(
        columns::open_file("f", &file, &good, &tight)
            .unwrap_err()
            .code,
        Code::LimitExceeded
    );
    // A declared compressed length above the limit is refused.
    let tiny = Limits {
        max_file_bytes: 8,
        ..Limits::DEFAULT
    };
    assert_eq!(
        columns::open_file("f", &file, &good, &tiny)
            .unwrap_err()
            .code,
        Code::LimitExceeded
    );
    // A file that expands past its signed length (a bomb with a lying manifest).
    let bomb = FileRef {
        raw_length: 1000,
        ..good.clone()
    };
    assert_eq!(
        columns::open_file("f", &file, &bomb, &Limits::DEFAULT)
            .unwrap_err()
            .code,
        Code::LengthMismatch
    );
    // Wrong hash is checked before anything is decompressed.
    let other = FileRef {
        sha256: [0; 32],
        ..good
    };
    assert_eq!(
        columns::open_file("f", &file, &other, &Limits::DEFAULT)
            .unwrap_err()
            .code,
        Code::HashMismatch
    );
}

#[test]
fn row_counts_above_the_per_file_limit_are_refused() {
    let (r, set) = rows(100);
    let raw = columns::encode_shard(0, consentry::isrc::KEY_SPACE, &r, &set);
    let tight = Limits {
        max_records_per_file: 10,
        ..Limits::DEFAULT
    };
    let mut s = PolicySet::default();
    let e = columns::decode_shard(
        "s",
        &raw,
        0,
        consentry::isrc::KEY_SPACE,
        100,
        &tight,
        &mut s,
    )
    .unwrap_err();
    assert_eq!(e.code, Code::LimitExceeded);
}
