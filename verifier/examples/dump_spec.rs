#![allow(clippy::unwrap_used)]
use consentry::cbor;
use consentry::columns::{LayerDoc, PrefixDoc, ShardDoc};
use consentry::docs::{Head, Manifest, Root};
use consentry::envelope::{Envelope, key_id, sha256};

fn env(p: &std::path::Path) -> Envelope {
    cbor::from_slice_canonical(&std::fs::read(p).unwrap()).unwrap()
}
fn h(b: &[u8]) -> String {
    hex::encode(b)
}
fn raw(p: &std::path::Path) -> Vec<u8> {
    zstd::decode_all(std::fs::read(p).unwrap().as_slice()).unwrap()
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let r = env(&dir.join("root/1.cbor"));
    let root: Root = cbor::from_slice_canonical(&r.payload).unwrap();
    println!(
        "ROOT file len {} expires {} version {}",
        std::fs::read(dir.join("root/1.cbor")).unwrap().len(),
        root.expires,
        root.version
    );
    for k in &root.keys {
        println!("  key {} id {}", h(k), h(&key_id(k)));
    }
    println!(
        "  head {:?} root {:?} manifest {:?}",
        root.roles
            .head
            .keyids
            .iter()
            .map(|x| h(x))
            .collect::<Vec<_>>(),
        root.roles
            .root
            .keyids
            .iter()
            .map(|x| h(x))
            .collect::<Vec<_>>(),
        root.roles
            .manifest
            .keyids
            .iter()
            .map(|x| h(x))
            .collect::<Vec<_>>()
    );
    let hb = std::fs::read(dir.join("head.cbor")).unwrap();
    let he = env(&dir.join("head.cbor"));
    let head: Head = cbor::from_slice_canonical(&he.payload).unwrap();
    println!(
        "HEAD file {} bytes payload {} bytes: {:?}",
        hb.len(),
        he.payload.len(),
        head
    );
    println!("  payload hex {}", h(&he.payload));
    println!("  file hex {}", h(&hb));
    let mrel = format!(
        "manifest/{}.{}.cbor",
        head.manifest.version,
        h(&head.manifest.sha256)
    );
    let mb = std::fs::read(dir.join(&mrel)).unwrap();
    println!("MANIFEST {mrel} len {} sha {}", mb.len(), h(&sha256(&mb)));
    let m: Manifest = cbor::from_slice_canonical(&env(&dir.join(&mrel)).payload).unwrap();
    println!(
        "  base {} delta {:?} layers {:?}",
        m.base,
        m.delta
            .as_ref()
            .map(|d| (d.count, d.length, h(&d.sha256), d.version, d.raw_length)),
        m.layers.len()
    );
    for r in &m.ranges {
        println!(
            "  range lo {} leaf {} count {} shard count {} len {} sha {} raw {}",
            r.lo,
            h(&r.leaf),
            r.count,
            r.shard.count,
            r.shard.length,
            h(&r.shard.sha256),
            r.shard.raw_length
        );
    }
    println!(
        "  created {} entries {} expires {} version {}",
        m.created, m.entries, m.expires, m.version
    );
    println!(
        "  prefixes count {} len {} sha {} raw {}",
        m.prefixes.count,
        m.prefixes.length,
        h(&m.prefixes.sha256),
        m.prefixes.raw_length
    );
    println!(
        "  previous {:?} state_root {} prefix_leaf {}",
        m.previous.map(|p| h(&p)),
        h(&m.state_root),
        h(&m.prefix_leaf)
    );
    for r in &m.ranges {
        let doc: ShardDoc = cbor::from_slice_canonical(&raw(
            &dir.join(format!("shard/{}.zst", h(&r.shard.sha256)))
        ))
        .unwrap();
        let c = &doc.rows;
        println!(
            "SHARD hi {} lo {} ids {} keys {} seqs {} count {} policy {} key_low {} id_prefix {:?} policies {}",
            doc.hi,
            doc.lo,
            h(&c.ids),
            h(&c.keys),
            h(&c.seqs),
            c.count,
            h(&c.policy),
            h(&c.key_low),
            c.id_prefix,
            c.policies.len()
        );
        for row in consentry::columns::raw_of_columns(c).unwrap() {
            println!(
                "   row key {} seq {} id {} pol {} isrc {}",
                row.key,
                row.seq,
                row.id,
                row.policy,
                consentry::Isrc::from_key(row.key).unwrap()
            );
        }
        for (i, p) in c.policies.iter().enumerate() {
            println!("   pol {i}: {} uses {:?}", p.declarant.name, p.uses);
        }
    }
    let pd: PrefixDoc = cbor::from_slice_canonical(&raw(
        &dir.join(format!("prefix/{}.zst", h(&m.prefixes.sha256)))
    ))
    .unwrap();
    for r in &pd.rows {
        println!("PREFIX {} {} {}", r.scope, r.id, r.seq);
    }
    for l in &m.layers {
        let doc: LayerDoc =
            cbor::from_slice_canonical(&raw(&dir.join(format!("layer/{}.zst", h(&l.sha256)))))
                .unwrap();
        println!(
            "LAYER to {} from {} dels keys {} seqs {} count {} key_low {} ; puts ids {} keys {} seqs {} count {} policy {} key_low {} prefix {:?} pol {:?}",
            doc.to,
            doc.from,
            h(&doc.dels.keys),
            h(&doc.dels.seqs),
            doc.dels.count,
            h(&doc.dels.key_low),
            h(&doc.puts.ids),
            h(&doc.puts.keys),
            h(&doc.puts.seqs),
            doc.puts.count,
            h(&doc.puts.policy),
            h(&doc.puts.key_low),
            doc.puts.id_prefix,
            doc.puts
                .policies
                .iter()
                .map(|p| (p.declarant.name.clone(), p.uses))
                .collect::<Vec<_>>()
        );
    }
}
