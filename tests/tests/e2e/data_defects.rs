//! Defects inside data files: shards, delta layers, the prefix table, their
//! zstd frames and their CBOR. Where a defect would otherwise be caught by
//! the length or hash check, the manifest is re-signed (a stolen manifest key,
//! or a buggy publisher) so that only the targeted check can fire.
//!
//! The store is synced at version 1; the registry publishes version 2 as a
//! new base (`--compact`), and the evil copy drops the manifest's delta, so a
//! sync must fetch and decode the new base shard. A control test syncs that
//! re-signed manifest untampered.

use consentry::cbor;
use consentry::columns::{LayerDoc, ShardDoc};
use consentry::docs::{Manifest, paths};
use consentry::isrc::{Isrc, KEY_SPACE};
use consentry_tests::attack::{
    RawRow, columns_of, key_columns_of, rows_of, zstd_raw_frame, zstd_rle_bomb,
};
use consentry_tests::tamper::{Site, reroot};

use super::attacks::{delta_layer, replace_delta, replace_delta_raw};
use super::fixture::Fixture;

/// A store at version 1 and an evil copy of version 2 (a new base) whose
/// re-signed manifest forces the new base shard to be fetched.
struct NewBase {
    f: Fixture,
    before: String,
    evil: Site,
    /// Version 2's manifest without its delta: the template every test edits.
    m: Manifest,
}

impl NewBase {
    fn new() -> NewBase {
        let f = Fixture::synced();
        let before = f.answers();
        f.publish_change(17, &["--compact"]);
        let evil = f.copy_site("evil");
        let (mut m, _) = evil.manifest();
        assert_eq!((m.version, m.base, m.ranges.len()), (2, 2, 1));
        m.delta = None;
        NewBase { f, before, evil, m }
    }

    fn shard_rel(&self) -> String {
        paths::shard(&self.m.ranges[0].shard.sha256)
    }

    fn shard_doc(&self) -> ShardDoc {
        cbor::from_slice_canonical(&self.evil.raw(&self.shard_rel())).unwrap()
    }

    /// Sign `m` with the manifest key and a newer head naming it.
    fn sign(&self, m: &Manifest) {
        self.evil
            .put_manifest(m, &[&self.f.key("manifest")], &[&self.f.key("head")]);
    }

    /// Range 0's shard becomes `bytes` (compressed), declared with
    /// `raw_length` and `count`; the manifest is re-signed.
    fn plant_bytes(&self, bytes: &[u8], raw_length: u64, count: u64) {
        let mut m = self.m.clone();
        m.ranges[0].shard = self.evil.put_data_bytes("shard", bytes, raw_length, count);
        self.sign(&m);
    }

    /// Range 0's shard becomes `raw`, compressed as the publisher does.
    fn plant_raw(&self, raw: &[u8], count: u64) {
        let mut m = self.m.clone();
        m.ranges[0].shard = self.evil.put_data("shard", raw, count);
        self.sign(&m);
    }

    fn plant_doc(&self, doc: &ShardDoc) {
        self.plant_raw(&cbor::to_vec(doc), doc.rows.count);
    }

    #[track_caller]
    fn refused(&self, code: &str) {
        self.f.assert_sync_refused("evil", code, &self.before);
    }
}

#[test]
fn control_resigned_new_base_without_a_defect_is_accepted() {
    let t = NewBase::new();
    let doc = t.shard_doc();
    t.plant_doc(&doc);
    let out = t.f.verifier(&["sync", "evil"]).ok();
    assert!(out.stdout.contains("(full)"), "{}", out.stdout);
    t.f.verifier(&["verify"]).ok();
}

// ---- bytes of the shard file ------------------------------------------------

#[test]
fn shard_with_one_flipped_byte_is_rejected() {
    let t = NewBase::new();
    t.sign(&t.m);
    let rel = t.shard_rel();
    let mut b = t.evil.read(&rel);
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    t.evil.write(&rel, &b);
    t.refused("hash_mismatch");
}

#[test]
fn truncated_shard_is_rejected() {
    let t = NewBase::new();
    t.sign(&t.m);
    let rel = t.shard_rel();
    let b = t.evil.read(&rel);
    t.evil.write(&rel, &b[..b.len() - 7]);
    t.refused("length_mismatch");
}

#[test]
fn truncated_zstd_frame_under_a_resigned_manifest_is_rejected() {
    let t = NewBase::new();
    let b = t.evil.read(&t.shard_rel());
    let r = &t.m.ranges[0].shard;
    t.plant_bytes(&b[..b.len() - 7], r.raw_length, r.count);
    t.refused("malformed_data");
}

#[test]
fn shard_with_extra_bytes_appended_under_a_resigned_manifest_is_rejected() {
    let t = NewBase::new();
    let mut b = t.evil.read(&t.shard_rel());
    b.extend_from_slice(b"trailing garbage after the zstd frame");
    let r = &t.m.ranges[0].shard;
    t.plant_bytes(&b, r.raw_length, r.count);
    t.refused("malformed_data");
}

#[test]
fn shard_with_a_second_zstd_frame_appended_is_rejected() {
    let t = NewBase::new();
    let mut b = t.evil.read(&t.shard_rel());
    b.extend_from_slice(&consentry::columns::compress(b"\xf6"));
    let r = &t.m.ranges[0].shard;
    t.plant_bytes(&b, r.raw_length, r.count);
    t.refused("malformed_data");
}

// ---- zstd ---------------------------------------------------------------------

#[test]
fn zstd_bomb_is_rejected() {
    let t = NewBase::new();
    // 128 KiB that expand to 4 GiB of zeros.
    let bomb = zstd_rle_bomb(4 << 30, 17, 0);
    assert!(bomb.len() < 200 << 10);
    // It is a real frame: the first 64 MiB come out as declared.
    let mut dec = zstd::stream::read::Decoder::new(bomb.as_slice()).unwrap();
    let n = std::io::copy(
        &mut std::io::Read::take(&mut dec, 64 << 20),
        &mut std::io::sink(),
    )
    .unwrap();
    assert_eq!(n, 64 << 20);
    // Declared with the small decompressed length of a real shard.
    let r = &t.m.ranges[0].shard;
    t.plant_bytes(&bomb, r.raw_length, r.count);
    let start = std::time::Instant::now();
    t.refused("length_mismatch");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn zstd_bomb_lying_about_its_content_size_is_rejected() {
    let t = NewBase::new();
    // The frame header declares exactly the signed (small) decompressed
    // length, but the blocks expand to 4 GiB: only the output cap stops it.
    let r = &t.m.ranges[0].shard;
    let mut bomb = zstd_rle_bomb(4 << 30, 17, 0);
    bomb[6..14].copy_from_slice(&r.raw_length.to_le_bytes());
    t.plant_bytes(&bomb, r.raw_length, r.count);
    let start = std::time::Instant::now();
    t.refused("malformed_data");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn shard_declaring_more_than_1_gib_decompressed_is_rejected() {
    let t = NewBase::new();
    // Frame and manifest agree on 1 GiB + 1: only the 1 GiB cap refuses it.
    let n = (1 << 30) + 1;
    t.plant_bytes(&zstd_rle_bomb(n, 17, 0), n, t.m.ranges[0].shard.count);
    t.refused("limit_exceeded");
}

#[test]
fn zstd_frame_with_a_window_over_128_mib_is_rejected() {
    let t = NewBase::new();
    // The real shard, stored in a frame declaring a 2 GiB window: only the
    // window cap (SPEC.md §5.1, `limit_exceeded`) can refuse it.
    let raw = t.evil.raw(&t.shard_rel());
    let frame = zstd_raw_frame(&raw, 31);
    // The same content in the same kind of frame with a 128 KiB window is fine.
    let ok = zstd_raw_frame(&raw, 17);
    assert_eq!(zstd::stream::decode_all(ok.as_slice()).unwrap(), raw);
    // A streaming decoder capped at 2^27, reading small pieces, refuses it.
    let small_reads = |frame: &[u8]| -> std::io::Result<Vec<u8>> {
        let mut dec = zstd::stream::read::Decoder::new(frame)?;
        dec.window_log_max(27)?;
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = std::io::Read::read(&mut dec, &mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    };
    assert_eq!(small_reads(&ok).unwrap(), raw);
    assert!(
        small_reads(&frame).is_err(),
        "the frame's window is over the cap"
    );
    let r = &t.m.ranges[0].shard;
    t.plant_bytes(&frame, r.raw_length, r.count);
    t.refused("limit_exceeded");
}

#[test]
fn zstd_frame_without_a_declared_content_size_is_rejected() {
    let t = NewBase::new();
    let raw = t.evil.raw(&t.shard_rel());
    // The same frame with the Frame_Content_Size field left out.
    let mut frame = zstd_raw_frame(&raw, 17);
    frame[4] = 0;
    frame.drain(6..14);
    assert_eq!(zstd::stream::decode_all(frame.as_slice()).unwrap(), raw);
    let r = &t.m.ranges[0].shard;
    t.plant_bytes(&frame, r.raw_length, r.count);
    t.refused("malformed_data");
}

// ---- CBOR -----------------------------------------------------------------------

#[test]
fn shard_cbor_with_trailing_data_is_rejected() {
    let t = NewBase::new();
    let mut raw = t.evil.raw(&t.shard_rel());
    raw.push(0xf6); // a second top-level item: null
    t.plant_raw(&raw, t.m.ranges[0].shard.count);
    t.refused("malformed_data");
}

#[test]
fn shard_cbor_map_keys_out_of_canonical_order_are_rejected() {
    let t = NewBase::new();
    let doc = t.shard_doc();
    // {lo, hi, rows} instead of the canonical {hi, lo, rows}.
    let v = ciborium::Value::Map(vec![
        ("lo".into(), doc.lo.into()),
        ("hi".into(), doc.hi.into()),
        (
            "rows".into(),
            ciborium::Value::serialized(&doc.rows).unwrap(),
        ),
    ]);
    let mut raw = Vec::new();
    ciborium::into_writer(&v, &mut raw).unwrap();
    t.plant_raw(&raw, doc.rows.count);
    t.refused("malformed_data");
}

#[test]
fn shard_cbor_with_a_duplicate_map_key_is_rejected() {
    let t = NewBase::new();
    let doc = t.shard_doc();
    let v = ciborium::Value::Map(vec![
        ("hi".into(), doc.hi.into()),
        ("lo".into(), doc.lo.into()),
        ("lo".into(), doc.lo.into()),
        (
            "rows".into(),
            ciborium::Value::serialized(&doc.rows).unwrap(),
        ),
    ]);
    let mut raw = Vec::new();
    ciborium::into_writer(&v, &mut raw).unwrap();
    t.plant_raw(&raw, doc.rows.count);
    t.refused("malformed_data");
}

#[test]
fn shard_with_a_non_minimal_varint_is_rejected() {
    let t = NewBase::new();
    let mut doc = t.shard_doc();
    // Row 0's seq written with a redundant continuation byte.
    let rows = rows_of(&doc.rows);
    let mut seqs = vec![(rows[0].seq as u8 & 0x7f) | 0x80, 0x00];
    assert!(rows[0].seq < 0x80);
    for r in &rows[1..] {
        consentry_tests::attack::varint(&mut seqs, r.seq);
    }
    doc.rows.seqs = seqs;
    t.plant_doc(&doc);
    t.refused("malformed_data");
}

// ---- rows -----------------------------------------------------------------------

/// Re-sign the template with range 0 holding `rows` (its counts follow).
fn plant_rows(t: &NewBase, rows: &[RawRow]) {
    let mut doc = t.shard_doc();
    doc.rows = columns_of(rows, doc.rows.policies.clone());
    let mut m = t.m.clone();
    let n = rows.len() as u64;
    m.entries = m.entries - m.ranges[0].count + n;
    m.ranges[0].count = n;
    m.ranges[0].shard = t.evil.put_data("shard", &cbor::to_vec(&doc), n);
    t.sign(&m);
}

#[test]
fn shard_with_duplicate_keys_is_rejected() {
    let t = NewBase::new();
    let mut rows = rows_of(&t.shard_doc().rows);
    let dup = rows[2].clone();
    rows.insert(3, dup);
    plant_rows(&t, &rows);
    t.refused("unsorted_keys");
}

#[test]
fn shard_with_unsorted_keys_is_rejected() {
    let t = NewBase::new();
    let mut rows = rows_of(&t.shard_doc().rows);
    // Keys are delta-coded, so they cannot go down; two rows of one key with
    // their seqs in decreasing order can.
    let mut second = rows[2].clone();
    second.seq = rows[2].seq - 1;
    assert!(second.seq >= 1);
    rows.insert(3, second);
    plant_rows(&t, &rows);
    t.refused("unsorted_keys");
}

#[test]
fn shard_with_a_key_outside_its_declared_range_is_rejected() {
    let t = NewBase::new();
    let rows = rows_of(&t.shard_doc().rows);
    // Split the key space at row 3's key: shard A = [0, lo2), shard B =
    // [lo2, KEY_SPACE). Shard A also carries row 3, which belongs to B.
    let lo2 = rows[3].key;
    let a: Vec<RawRow> = rows[..4].to_vec();
    let b: Vec<RawRow> = rows[3..].to_vec();
    let policies = t.shard_doc().rows.policies;
    // Each shard's own policy table: keep only the policies it uses.
    let shard = |lo: u64, hi: u64, rows: &[RawRow]| -> ShardDoc {
        let mut used: Vec<u64> = rows.iter().map(|r| r.policy).collect();
        used.sort_unstable();
        used.dedup();
        let remapped: Vec<RawRow> = rows
            .iter()
            .map(|r| RawRow {
                policy: used.iter().position(|&u| u == r.policy).unwrap() as u64,
                ..r.clone()
            })
            .collect();
        let table = used.iter().map(|&u| policies[u as usize].clone()).collect();
        ShardDoc {
            hi,
            lo,
            rows: columns_of(&remapped, table),
        }
    };
    let (da, db) = (shard(0, lo2, &a), shard(lo2, KEY_SPACE, &b));
    let mut m = t.m.clone();
    let mut r1 = m.ranges[0].clone();
    r1.lo = lo2;
    r1.count = b.len() as u64;
    r1.shard = t.evil.put_data("shard", &cbor::to_vec(&db), r1.count);
    m.ranges[0].count = a.len() as u64;
    m.ranges[0].shard = t.evil.put_data("shard", &cbor::to_vec(&da), a.len() as u64);
    m.ranges.push(r1);
    m.entries += 1;
    reroot(&mut m);
    t.sign(&m);
    t.refused("key_out_of_range");
}

#[test]
fn shard_record_count_that_disagrees_with_the_manifest_is_rejected() {
    let t = NewBase::new();
    let mut m = t.m.clone();
    m.ranges[0].count += 1;
    m.ranges[0].shard.count += 1;
    m.entries += 1;
    t.sign(&m);
    t.refused("count_mismatch");
}

#[test]
fn shard_covering_another_range_than_the_manifest_is_rejected() {
    let t = NewBase::new();
    let mut doc = t.shard_doc();
    doc.hi -= 1;
    t.plant_doc(&doc);
    t.refused("range_mismatch");
}

// ---- delta layers and the prefix table ----------------------------------------------

/// A store at version 1 and an evil copy of version 2 (one delta layer).
fn delta() -> (Fixture, String, Site) {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let evil = f.copy_site("evil");
    (f, before, evil)
}

#[test]
fn layer_deleting_an_absent_row_is_rejected() {
    let (f, before, evil) = delta();
    let (mut doc, _) = delta_layer(&evil);
    let absent = Isrc::parse("GBNWR2500016").unwrap().key();
    doc.dels = key_columns_of(&[(absent, 1)]);
    replace_delta(&f, &evil, &doc);
    f.assert_sync_refused("evil", "layer_mismatch", &before);
}

#[test]
fn layer_with_a_row_both_deleted_and_put_is_rejected() {
    let (f, before, evil) = delta();
    let (mut doc, _) = delta_layer(&evil);
    let put = &rows_of(&doc.puts)[0];
    doc.dels = key_columns_of(&[(put.key, put.seq)]);
    replace_delta(&f, &evil, &doc);
    f.assert_sync_refused("evil", "malformed_data", &before);
}

#[test]
fn layer_cbor_with_trailing_data_is_rejected() {
    let (f, before, evil) = delta();
    let (doc, lr) = delta_layer(&evil);
    let mut raw = cbor::to_vec(&doc);
    raw.push(0x00);
    replace_delta_raw(&f, &evil, &raw, lr.count);
    f.assert_sync_refused("evil", "malformed_data", &before);
}

#[test]
fn layer_change_count_that_disagrees_with_the_manifest_is_rejected() {
    let (f, before, evil) = delta();
    let (doc, lr) = delta_layer(&evil);
    replace_delta_raw(&f, &evil, &cbor::to_vec(&doc), lr.count + 1);
    f.assert_sync_refused("evil", "count_mismatch", &before);
}

#[test]
fn layer_with_unsorted_puts_is_rejected() {
    let (f, before, evil) = delta();
    let (mut doc, _) = delta_layer(&evil);
    let mut rows = rows_of(&doc.puts);
    let mut twin = rows[0].clone();
    twin.seq += 1;
    rows.insert(0, twin); // (key, seq + 1) before (key, seq)
    doc.puts = columns_of(&rows, doc.puts.policies.clone());
    replace_delta(&f, &evil, &doc);
    f.assert_sync_refused("evil", "unsorted_keys", &before);
}

#[test]
fn layer_with_a_key_outside_the_key_space_is_rejected() {
    let (f, before, evil) = delta();
    let (mut doc, _) = delta_layer(&evil);
    let mut rows = rows_of(&doc.puts);
    rows.push(RawRow {
        key: KEY_SPACE,
        seq: 99,
        id: "D99".into(),
        policy: 0,
    });
    doc.puts = columns_of(&rows, doc.puts.policies.clone());
    let layer: LayerDoc = doc;
    replace_delta(&f, &evil, &layer);
    f.assert_sync_refused("evil", "key_out_of_range", &before);
}

#[test]
fn prefix_table_count_that_disagrees_with_the_manifest_is_rejected() {
    let (f, before, evil) = delta();
    let (mut m, _) = evil.manifest();
    m.prefixes.count += 1;
    m.entries += 1;
    evil.put_manifest(&m, &[&f.key("manifest")], &[&f.key("head")]);
    f.assert_sync_refused("evil", "count_mismatch", &before);
}

#[test]
fn prefix_table_that_does_not_hash_to_the_prefix_leaf_is_rejected() {
    // A well-formed prefix table with one entry's seq changed, named by a
    // re-signed manifest that keeps the published prefix_leaf.
    let (f, before, evil) = delta();
    let (mut m, _) = evil.manifest();
    let rel = paths::prefixes(&m.prefixes.sha256);
    let mut records = consentry::columns::decode_prefixes(
        &rel,
        &evil.raw(&rel),
        m.prefixes.count,
        &consentry::limits::Limits::default(),
    )
    .unwrap();
    records.last_mut().unwrap().seq += 1000;
    let raw = consentry::columns::encode_prefixes(&records);
    m.prefixes = evil.put_data("prefix", &raw, records.len() as u64);
    evil.put_manifest(&m, &[&f.key("manifest")], &[&f.key("head")]);
    f.assert_sync_refused("evil", "state_mismatch", &before);
}
