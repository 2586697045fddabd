//! Attacks on the signed documents and the update flow, one test per defect:
//! each builds a real snapshot with the real publisher, syncs a store to it,
//! serves a copy of the site with ONE planted defect (over HTTP on 127.0.0.1
//! and as a directory), and asserts that `consentry sync` exits 2 naming the
//! SPEC.md §9 code, and that the store still answers the golden questions
//! exactly as before.

use std::time::{Duration, Instant};

use consentry::cbor;
use consentry::columns::LayerDoc;
use consentry::docs::{Head, LayerRef, Role, paths};
use consentry::envelope::{HEAD_TYPE, ROOT_TYPE, sha256};
use consentry_publish::keys::{KeyPair, insecure_seed, sign_envelope, write_keypair};
use consentry_tests::attack::{
    assert_refused, columns_of, envelope_bytes, malleate, rows_of, sign,
};
use consentry_tests::tamper::{Site, key};
use consentry_tests::{Fault, Server};

use super::fixture::{EARLIER, Fixture, LATER, NOW, RUN_LIMIT, T0};

fn ts(t: &str) -> u64 {
    consentry::time::parse_timestamp(t).unwrap() as u64
}

/// The head of `site`, one version newer, unchanged otherwise.
fn next_head(site: &Site) -> Head {
    let mut h = site.head();
    h.version += 1;
    h
}

fn write_head_bytes(site: &Site, bytes: &[u8]) {
    site.write(paths::HEAD, bytes);
}

/// Replace the head key: the old one moves out of `keys/`, a new INSECURE
/// head key (n = 2) comes in, and `root rotate` writes root 2 (signed by the
/// unchanged root key, which satisfies both the old and the new root role).
/// Returns the old head key.
fn rotate_head_key(f: &Fixture) -> KeyPair {
    let old = f.key("head");
    std::fs::create_dir_all(f.path("old-keys")).unwrap();
    for ext in ["key", "pub"] {
        std::fs::rename(
            f.path(&format!("keys/INSECURE-head-1.{ext}")),
            f.path(&format!("old-keys/INSECURE-head-1.{ext}")),
        )
        .unwrap();
    }
    write_keypair(
        &f.path("keys/INSECURE-head-2"),
        Role::Head,
        insecure_seed(Role::Head, 2),
        false,
    )
    .unwrap();
    f.publish(&[
        "root", "rotate", "--keys", "keys", "--site", "site", "--now", T0,
    ])
    .ok();
    old
}

/// A store that trusts root 2 (head key rotated) and snapshot version 2.
fn rotated() -> (Fixture, KeyPair) {
    let f = Fixture::synced();
    let old = rotate_head_key(&f);
    f.publish_change(17, &[]);
    let out = f.verifier(&["sync", "site"]).ok();
    assert!(
        out.stdout.contains("root rotated to version 2"),
        "{}",
        out.stdout
    );
    (f, old)
}

/// A fixture whose root requires two head signatures (`--threshold
/// head=2`, keys head-1 and head-2), published and synced. Returns both keys.
fn two_head_keys() -> (Fixture, KeyPair, KeyPair) {
    let f = Fixture::unpublished();
    write_keypair(
        &f.path("keys/INSECURE-head-2"),
        Role::Head,
        insecure_seed(Role::Head, 2),
        false,
    )
    .unwrap();
    f.publish(&[
        "root",
        "init",
        "--keys",
        "keys",
        "--site",
        "site",
        "--now",
        T0,
        "--threshold",
        "head=2",
        "--force",
    ])
    .ok();
    f.publish_next(&[]).ok();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", "site"]).ok();
    let h1 = f.key("head");
    let h2 = key(&f.path("keys/INSECURE-head-2.key"));
    (f, h1, h2)
}

// ---- rollback ---------------------------------------------------------------

#[test]
fn rollback_to_older_head_is_rejected() {
    let f = Fixture::synced();
    f.copy_site("old"); // version 1, as a stale mirror still serves it
    f.publish_change(17, &[]);
    f.verifier(&["sync", "site"]).ok();
    let before = f.answers();
    assert!(before.contains(",2,"), "synced to version 2: {before}");
    f.assert_sync_refused("old", "rollback", &before);
}

#[test]
fn rollback_to_older_manifest_version_is_rejected() {
    let f = Fixture::synced();
    let old = f.copy_site("evil");
    f.publish_change(17, &[]);
    f.verifier(&["sync", "site"]).ok();
    let before = f.answers();
    // A (stolen) head key signs a head newer than the trusted one (version 3
    // > 2) that names manifest version 1 again.
    let mut h = old.head();
    h.version = 3;
    old.put_head(&h, &[&f.key("head")]);
    f.assert_sync_refused("evil", "rollback", &before);
}

#[test]
fn rollback_to_older_root_version_is_rejected() {
    let (f, _) = rotated();
    let before = f.answers();
    // root/3.cbor replays root version 1: validly signed by the root key, but
    // older than the trusted root 2.
    let evil = f.copy_site("evil");
    evil.write("root/3.cbor", &evil.read("root/1.cbor"));
    f.assert_sync_refused("evil", "root_version", &before);
    assert!(!f.path("store/root/3.cbor").exists());
}

// ---- root rotation ----------------------------------------------------------

#[test]
fn root_chain_that_loops_is_rejected() {
    let (f, _) = rotated();
    let before = f.answers();
    let evil = f.copy_site("evil");
    evil.write("root/3.cbor", &evil.read("root/2.cbor"));
    f.assert_sync_refused("evil", "root_version", &before);
    assert!(!f.path("store/root/3.cbor").exists());
}

#[test]
fn root_chain_that_runs_backwards_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    evil.write("root/2.cbor", &evil.read("root/1.cbor"));
    f.assert_sync_refused("evil", "root_version", &before);
    assert!(!f.path("store/root/2.cbor").exists());
}

#[test]
fn skipped_root_version_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    // root/2.cbor holds a root claiming version 3, signed by the root key.
    let mut r = evil.root(1);
    r.version = 3;
    let bytes = sign_envelope(ROOT_TYPE, cbor::to_vec(&r), &[&f.key("root")])
        .unwrap()
        .to_bytes();
    evil.write("root/2.cbor", &bytes);
    f.assert_sync_refused("evil", "root_version", &before);
    assert!(!f.path("store/root/2.cbor").exists());
}

/// A new root whose root role is a new key: signed by `signers` only.
fn rotation_signed_by(f: &Fixture, evil: &Site, signers: &[&KeyPair]) {
    let new_root_key = new_root_key();
    let mut r = evil.root(1);
    let old_id = f.key("root").id();
    r.keys.retain(|k| consentry::envelope::key_id(k) != old_id);
    r.keys.push(new_root_key.public());
    r.keys.sort_by_key(consentry::envelope::key_id);
    r.roles.root.keyids = vec![new_root_key.id()];
    r.version = 2;
    let bytes = sign_envelope(ROOT_TYPE, cbor::to_vec(&r), signers)
        .unwrap()
        .to_bytes();
    evil.write("root/2.cbor", &bytes);
}

fn new_root_key() -> KeyPair {
    KeyPair::from_seed(
        Role::Root,
        ed25519_dalek::SigningKey::from_bytes(&insecure_seed(Role::Root, 2)),
        std::path::PathBuf::from("INSECURE-root-2.key"),
    )
}

#[test]
fn root_rotation_not_signed_by_the_old_root_threshold_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let k = new_root_key();
    rotation_signed_by(&f, &evil, &[&k]);
    f.assert_sync_refused("evil", "threshold_not_met", &before);
    assert!(!f.path("store/root/2.cbor").exists());
}

#[test]
fn root_rotation_not_signed_by_the_new_root_threshold_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    rotation_signed_by(&f, &evil, &[&f.key("root")]);
    f.assert_sync_refused("evil", "threshold_not_met", &before);
    assert!(!f.path("store/root/2.cbor").exists());
    // Control: signed by both, the same rotation is accepted.
    rotation_signed_by(&f, &evil, &[&f.key("root"), &new_root_key()]);
    let out = f.verifier(&["sync", "evil"]).ok();
    assert!(
        out.stdout.contains("root rotated to version 2"),
        "{}",
        out.stdout
    );
}

#[test]
fn expired_root_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    // The registry rotates to a root that expires one hour after T0 (so it is
    // expired at NOW).
    f.publish(&[
        "root",
        "rotate",
        "--keys",
        "keys",
        "--site",
        "site",
        "--now",
        T0,
        "--expires-in",
        "1h",
        "--force",
    ])
    .ok();
    f.copy_site("evil");
    f.assert_sync_refused("evil", "expired", &before);
}

// ---- freeze -----------------------------------------------------------------

#[test]
fn expired_head_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let mut h = next_head(&evil);
    h.expires = ts(NOW); // expired at the instant itself
    evil.put_head(&h, &[&f.key("head")]);
    f.assert_sync_refused("evil", "expired", &before);
}

#[test]
fn expired_manifest_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    // The real publisher, with a manifest that lives one hour (expired at NOW)
    // under a head that lives 72 hours.
    f.publish_change(17, &["--manifest-ttl", "1h"]);
    f.copy_site("evil");
    f.assert_sync_refused("evil", "expired", &before);
}

/// CSV answers without the `expired` column, and that column.
fn split_expired(csv_text: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let h = r.headers().unwrap().clone();
    let e = h.iter().position(|c| c == "expired").unwrap();
    let mut rest = Vec::new();
    let mut flags = Vec::new();
    for rec in r.records() {
        let rec = rec.unwrap();
        flags.push(rec[e].to_string());
        rest.push(
            rec.iter()
                .enumerate()
                .filter(|(i, _)| *i != e)
                .map(|(_, v)| v.to_string())
                .collect(),
        );
    }
    (rest, flags)
}

#[test]
fn frozen_mirror_is_refused_once_its_head_expires_and_answers_only_under_the_override() {
    let f = Fixture::published();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.copy_site("mirror"); // this mirror stops updating now
    let server = Server::serve(&f.path("mirror"));
    f.verifier(&["sync", &server.url]).ok();
    let before = f.answers();
    f.publish_change(17, &[]); // the registry moves on; the mirror does not
    // Past the head's expiry the frozen mirror is refused...
    let run = f.verifier_at(LATER, &["sync", &server.url]);
    assert_refused(&run, "expired");
    // ...and the store refuses to answer from the stale snapshot...
    assert_refused(&f.answers_at(LATER, &[]), "expired");
    // ...unless told to, loudly, with every answer marked.
    let run = f.answers_at(LATER, &["--allow-expired"]).ok();
    assert!(run.stderr.contains("EXPIRED"), "{}", run.stderr);
    let (then, _) = split_expired(&before);
    let (now, flags) = split_expired(&run.stdout);
    assert_eq!(then, now, "same answers, same snapshot");
    assert!(flags.iter().all(|e| e == "true"), "{flags:?}");
    let text = f
        .verifier_at(LATER, &["--allow-expired", "check", "GBNWR2500017"])
        .ok();
    assert!(text.stdout.contains("EXPIRED"), "{}", text.stdout);
    // An up-to-date source recovers the store.
    f.publish(&[
        "refresh", "--keys", "keys", "--site", "site", "--now", LATER,
    ])
    .ok();
    f.verifier_at(LATER, &["sync", "site"]).ok();
    let (_, flags) = split_expired(&f.answers_at(LATER, &[]).ok().stdout);
    assert!(flags.iter().all(|e| e == "false"), "{flags:?}");
}

// ---- clock ------------------------------------------------------------------

#[test]
fn clock_behind_the_signed_snapshot_time_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let run = f.verifier_at(EARLIER, &["sync", "site"]);
    assert_refused(&run, "clock_backwards");
    assert_refused(&f.answers_at(EARLIER, &[]), "clock_backwards");
    // The override for expiry is not an override for the clock.
    assert_refused(
        &f.answers_at(EARLIER, &["--allow-expired"]),
        "clock_backwards",
    );
    assert_eq!(f.answers(), before);
}

#[test]
fn expired_head_is_accepted_only_with_the_override_and_marked() {
    let f = Fixture::published();
    f.verifier_at(LATER, &["init", "--root", "site/root/1.cbor"])
        .ok();
    // The site's head expired at T0 + 72 h; LATER is after that.
    assert_refused(&f.verifier_at(LATER, &["sync", "site"]), "expired");
    assert_refused(&f.answers_at(LATER, &[]), "no_snapshot");
    let run = f
        .verifier_at(LATER, &["--allow-expired", "sync", "site"])
        .ok();
    assert!(run.stderr.contains("--allow-expired"), "{}", run.stderr);
    // Without the override, nothing is answered from it.
    assert_refused(&f.answers_at(LATER, &[]), "expired");
    let run = f.answers_at(LATER, &["--allow-expired"]).ok();
    let (_, flags) = split_expired(&run.stdout);
    assert!(!flags.is_empty() && flags.iter().all(|e| e == "true"));
    let json = f
        .verifier_at(
            LATER,
            &["--allow-expired", "check", "GBNWR2500017", "--json"],
        )
        .ok();
    let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(v["expired"], true);
    assert_eq!(v["decision"], "allow");
}

// ---- mix-and-match ------------------------------------------------------------

#[test]
fn head_naming_a_manifest_hash_that_does_not_match_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let evil = f.copy_site("evil");
    let (_, rel) = evil.manifest();
    // The head names hash X for manifest 2; the file at manifest/2.X.cbor is
    // the real manifest 2 (same length, other hash).
    let fake = sha256(b"a manifest the registry never published");
    evil.write(&paths::manifest(2, &fake), &evil.read(&rel));
    evil.remove(&rel);
    let mut h = next_head(&evil);
    h.manifest.sha256 = fake;
    evil.put_head(&h, &[&f.key("head")]);
    f.assert_sync_refused("evil", "hash_mismatch", &before);
}

/// Another registry with its own (random) keys, at version 2.
fn other_repository() -> Fixture {
    let g = Fixture::unpublished();
    std::fs::remove_dir_all(g.path("keys")).unwrap();
    for r in ["root", "manifest", "head"] {
        g.publish(&["keygen", "--role", r, "--out", &format!("keys/{r}-1")])
            .ok();
    }
    g.publish(&[
        "root", "init", "--keys", "keys", "--site", "site", "--now", T0, "--force",
    ])
    .ok();
    g.publish_next(&[]).ok();
    g.publish_change(17, &[]);
    g
}

#[test]
fn manifest_from_another_repository_signed_by_other_keys_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let g = other_repository();
    let theirs = Site::new(&g.path("site"));
    let (m, rel) = theirs.manifest();
    assert_eq!(m.version, 2);
    let evil = f.copy_site("evil");
    // Our (stolen) head key names their manifest, byte for byte.
    evil.put_manifest_bytes(2, &theirs.read(&rel), &[&f.key("head")]);
    f.assert_sync_refused("evil", "threshold_not_met", &before);
}

/// Version 2 (a delta) and version 3 (a compaction: new base shards) on top
/// of a store synced at version 1, so that syncing version 3 must fetch the
/// new base shards (it cannot use the 2 → 3 delta from version 1).
fn needs_new_base() -> (Fixture, String) {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    f.publish_change(18, &["--compact"]);
    (f, before)
}

#[test]
fn shard_from_another_manifest_is_rejected() {
    let (f, before) = needs_new_base();
    let evil = f.copy_site("evil");
    let (m3, _) = evil.manifest();
    assert_eq!((m3.version, m3.base), (3, 3));
    // Version 1's base shard, served under the name of version 3's.
    let v1 = Site::new(&f.path("store"));
    let (m1, _) = v1.manifest();
    let old = v1.read(&paths::shard(&m1.ranges[0].shard.sha256));
    let rel = paths::shard(&m3.ranges[0].shard.sha256);
    assert!(
        (old.len() as u64) < m3.ranges[0].shard.length,
        "the older shard is shorter"
    );
    evil.write(&rel, &old);
    f.assert_sync_refused("evil", "length_mismatch", &before);
}

// ---- endless data and slow retrieval -----------------------------------------

#[test]
fn head_larger_than_its_limit_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let mut b = evil.read(paths::HEAD);
    b.resize(4 << 20, 0); // 4 MiB: far past the 16 KiB head cap
    evil.write(paths::HEAD, &b);
    f.assert_sync_refused("evil", "limit_exceeded", &before);
}

#[test]
fn manifest_larger_than_its_declared_length_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let evil = f.copy_site("evil");
    let (_, rel) = evil.manifest();
    let mut b = evil.read(&rel);
    b.resize(b.len() + (4 << 20), 0xa5);
    evil.write(&rel, &b);
    f.assert_sync_refused("evil", "limit_exceeded", &before);
}

#[test]
fn manifest_larger_than_the_8_mib_limit_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    // The head (a stolen head key) declares a 9 MiB manifest and the file is
    // exactly that: only the hard cap can stop it.
    let junk = vec![0x5a; 9 << 20];
    evil.put_manifest_bytes(2, &junk, &[&f.key("head")]);
    f.assert_sync_refused("evil", "limit_exceeded", &before);
}

#[test]
fn shard_larger_than_its_declared_length_is_rejected() {
    let (f, before) = needs_new_base();
    let evil = f.copy_site("evil");
    let (m3, _) = evil.manifest();
    let rel = paths::shard(&m3.ranges[0].shard.sha256);
    let mut b = evil.read(&rel);
    b.resize(b.len() + (4 << 20), 0);
    evil.write(&rel, &b);
    f.assert_sync_refused("evil", "limit_exceeded", &before);
}

#[test]
fn shard_declared_larger_than_max_file_bytes_is_refused_before_reading() {
    let (f, before) = needs_new_base();
    let evil = f.copy_site("evil");
    let (mut m3, _) = evil.manifest();
    // A manifest (stolen manifest key) declares a 256 MiB + 1 shard: SPEC.md
    // §7 step 7 refuses the reference before reading a byte.
    m3.ranges[0].shard.length = (256 << 20) + 1;
    evil.put_manifest(&m3, &[&f.key("manifest")], &[&f.key("head")]);
    f.assert_sync_refused("evil", "limit_exceeded", &before);
}

#[test]
fn trickling_server_fails_within_a_bounded_time() {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let server = Server::serve_with(&f.path("site"), Fault::Trickle(Duration::from_millis(50)));
    let start = Instant::now();
    let run = f.verifier(&["sync", &server.url, "--timeout", "2"]);
    let took = start.elapsed();
    assert_refused(&run, "fetch_failed");
    assert!(
        took < Duration::from_secs(8),
        "a 2 s timeout took {took:?} to give up"
    );
    drop(server);
    assert_eq!(f.answers(), before);
    f.assert_no_staging_left();
}

// ---- signatures ----------------------------------------------------------------

#[test]
fn head_below_threshold_is_rejected() {
    let (f, h1, h2) = two_head_keys();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let h = next_head(&evil);
    evil.put_head(&h, &[&h1]);
    f.assert_sync_refused("evil", "threshold_not_met", &before);
    // Control: both keys meet the threshold.
    evil.put_head(&h, &[&h1, &h2]);
    f.verifier(&["sync", "evil"]).ok();
}

#[test]
fn same_key_counted_twice_does_not_meet_threshold() {
    let (f, h1, _) = two_head_keys();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let payload = cbor::to_vec(&next_head(&evil));
    let s = sign(&h1, HEAD_TYPE, &payload);
    write_head_bytes(
        &evil,
        &envelope_bytes(HEAD_TYPE, payload, vec![s.clone(), s]),
    );
    f.assert_sync_refused("evil", "threshold_not_met", &before);
}

#[test]
fn signature_by_a_key_of_the_wrong_role_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let h = next_head(&evil);
    // The manifest key is listed in the root, but not for the head role.
    evil.put_head(&h, &[&f.key("manifest")]);
    f.assert_sync_refused("evil", "threshold_not_met", &before);
    evil.put_head(&h, &[&f.key("root")]);
    f.assert_sync_refused("evil", "threshold_not_met", &before);
}

#[test]
fn signature_over_different_bytes_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    // The genuine signature of head version 1, on a payload saying version 2.
    let genuine = evil.envelope(paths::HEAD);
    let payload = cbor::to_vec(&next_head(&evil));
    write_head_bytes(
        &evil,
        &envelope_bytes(HEAD_TYPE, payload, genuine.signatures),
    );
    f.assert_sync_refused("evil", "threshold_not_met", &before);
}

#[test]
fn unknown_payload_type_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let payload = cbor::to_vec(&next_head(&evil));
    for t in [
        "application/vnd.consentry.head+cbor;v=2",
        consentry::envelope::MANIFEST_TYPE,
    ] {
        // Validly signed by the head key under the other type.
        let s = sign(&f.key("head"), t, &payload);
        write_head_bytes(&evil, &envelope_bytes(t, payload.clone(), vec![s]));
        f.assert_sync_refused("evil", "wrong_payload_type", &before);
    }
}

#[test]
fn malleable_ed25519_signature_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let payload = cbor::to_vec(&next_head(&evil));
    let mut s = sign(&f.key("head"), HEAD_TYPE, &payload);
    let genuine = s.clone();
    s.sig = malleate(&s.sig);
    assert_ne!(s.sig, genuine.sig);
    write_head_bytes(&evil, &envelope_bytes(HEAD_TYPE, payload.clone(), vec![s]));
    f.assert_sync_refused("evil", "threshold_not_met", &before);
    // Control: the unmalleated signature is accepted.
    write_head_bytes(&evil, &envelope_bytes(HEAD_TYPE, payload, vec![genuine]));
    f.verifier(&["sync", "evil"]).ok();
}

#[test]
fn head_signed_by_a_key_removed_in_a_root_rotation_is_rejected() {
    let (f, old_head_key) = rotated();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let mut h = next_head(&evil);
    h.version = 1 << 40;
    evil.put_head(&h, &[&old_head_key]);
    f.assert_sync_refused("evil", "threshold_not_met", &before);
}

// ---- fast-forward recovery -------------------------------------------------------

#[test]
fn fast_forward_attack_is_recovered_by_rotating_the_head_key() {
    let f = Fixture::synced();
    // A stolen head key signs a head with a huge version for the current
    // manifest; the store accepts it (it is validly signed).
    let evil = f.copy_site("evil");
    let mut h = evil.head();
    h.version = 1 << 62;
    evil.put_head(&h, &[&f.key("head")]);
    f.verifier(&["sync", "evil"]).ok();
    // The registry publishes version 2 with head version 2: frozen out.
    f.publish_change(17, &[]);
    assert_refused(&f.verifier(&["sync", "site"]), "rollback");
    // Recovery: the registry replaces the head key (root 2) and publishes.
    rotate_head_key(&f);
    f.publish_change(18, &[]);
    let out = f.verifier(&["sync", "site"]).ok();
    assert!(out.stderr.contains("fast-forward"), "{}", out.stderr);
    assert!(out.stdout.contains("-> version 3"), "{}", out.stdout);
    let v = f.verifier(&["check", "GBNWR2600018", "--json"]).ok();
    assert!(v.stdout.contains("\"D18\""), "{}", v.stdout);
    f.verifier(&["verify"]).ok();
}

// ---- delta layers -------------------------------------------------------------------

/// The delta layer of the site's current manifest, decoded.
pub(super) fn delta_layer(site: &Site) -> (LayerDoc, LayerRef) {
    let (m, _) = site.manifest();
    let lr = m.delta.clone().expect("a delta layer");
    let doc: LayerDoc = cbor::from_slice_canonical(&site.raw(&paths::layer(&lr.sha256))).unwrap();
    (doc, lr)
}

/// Write `doc` as a layer file and re-sign the current manifest with it as
/// its delta (and last layer).
pub(super) fn replace_delta(f: &Fixture, site: &Site, doc: &LayerDoc) {
    replace_delta_raw(f, site, &cbor::to_vec(doc), doc.dels.count + doc.puts.count);
}

/// Write `raw` (compressed) as a layer file declaring `count` changes and
/// re-sign the current manifest with it as its delta (and last layer).
pub(super) fn replace_delta_raw(f: &Fixture, site: &Site, raw: &[u8], count: u64) {
    let (mut m, _) = site.manifest();
    let fr = site.put_data("layer", raw, count);
    let lr = LayerRef {
        count,
        length: fr.length,
        sha256: fr.sha256,
        version: m.version,
        raw_length: fr.raw_length,
    };
    m.delta = Some(lr.clone());
    *m.layers.last_mut().unwrap() = lr;
    site.put_manifest(&m, &[&f.key("manifest")], &[&f.key("head")]);
}

#[test]
fn layer_whose_result_does_not_match_the_manifest_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let evil = f.copy_site("evil");
    let (mut doc, _) = delta_layer(&evil);
    // The layer puts D17 under another id: well-formed, but the state it
    // produces is not the one the manifest's leaves commit to.
    let mut rows = rows_of(&doc.puts);
    assert_eq!(rows[0].id, "D17");
    rows[0].id = "D99".into();
    doc.puts = columns_of(&rows, doc.puts.policies.clone());
    replace_delta(&f, &evil, &doc);
    f.assert_sync_refused("evil", "state_mismatch", &before);
}

#[test]
fn layer_for_another_base_version_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let evil = f.copy_site("evil");
    let (mut doc, _) = delta_layer(&evil);
    doc.from = 5;
    doc.to = 6;
    replace_delta(&f, &evil, &doc);
    f.assert_sync_refused("evil", "layer_mismatch", &before);
}

#[test]
fn missing_layer_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let evil = f.copy_site("evil");
    let (_, lr) = delta_layer(&evil);
    evil.remove(&paths::layer(&lr.sha256));
    f.assert_sync_refused("evil", "not_found", &before);
}

/// Versions 2 and 3 as two delta layers on top of a store at version 1.
///
/// The publisher compacts a registry this small at version 3 (its layers
/// outweigh its base), so the version-3 manifest is re-signed in the form it
/// would have for a larger registry: base 1 (version 1's shards), layers
/// 1 → 2 and 2 → 3, the same ranges, leaves and state root. A copy of the
/// store syncs it untampered first, so any refusal below is the defect's.
fn two_layers() -> (Fixture, String, Site) {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let (m2, _) = Site::new(&f.path("site")).manifest();
    f.publish_change(18, &[]);
    let evil = f.copy_site("evil");
    let (mut m, _) = evil.manifest();
    let l3 = m.delta.clone().expect("delta 2 -> 3");
    m.base = 1;
    m.layers = vec![m2.delta.clone().expect("delta 1 -> 2"), l3];
    for (r, old) in m.ranges.iter_mut().zip(&m2.ranges) {
        r.shard = old.shard.clone();
    }
    evil.put_manifest(&m, &[&f.key("manifest")], &[&f.key("head")]);
    // Control, on a copy of the store.
    consentry_tests::tamper::copy_dir(&f.path("store"), &f.path("store-control"));
    let out = consentry_tests::run_bounded(
        "consentry",
        &["--store", "store-control", "--now", NOW, "sync", "evil"],
        f.root(),
        RUN_LIMIT,
    )
    .ok();
    assert!(out.stdout.contains("(layers)"), "{}", out.stdout);
    (f, before, evil)
}

#[test]
fn reordered_layers_are_rejected() {
    let (f, before, evil) = two_layers();
    let (mut m, _) = evil.manifest();
    // Swap the files, keep the versions the manifest's structure requires.
    let (a, b) = (m.layers[0].clone(), m.layers[1].clone());
    m.layers[0] = LayerRef { version: 2, ..b };
    m.layers[1] = LayerRef { version: 3, ..a };
    m.delta = Some(m.layers[1].clone());
    evil.put_manifest(&m, &[&f.key("manifest")], &[&f.key("head")]);
    f.assert_sync_refused("evil", "layer_mismatch", &before);
}

#[test]
fn replayed_layer_is_rejected() {
    let (f, before, evil) = two_layers();
    let (mut m, _) = evil.manifest();
    // Layer 1 → 2 listed again as the layer to version 3.
    m.layers[1] = LayerRef {
        version: 3,
        ..m.layers[0].clone()
    };
    m.delta = Some(m.layers[1].clone());
    evil.put_manifest(&m, &[&f.key("manifest")], &[&f.key("head")]);
    f.assert_sync_refused("evil", "layer_mismatch", &before);
}

// ---- split view, chain, structure ---------------------------------------------------

#[test]
fn split_view_two_heads_with_one_version_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    // Same head version, another expiry: a second head for one version.
    let mut h = evil.head();
    h.expires += 3600;
    evil.put_head(&h, &[&f.key("head")]);
    f.assert_sync_refused("evil", "split_view", &before);
}

#[test]
fn split_view_two_manifests_with_one_version_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    // Another manifest 1 (a different `created`), validly signed, under a
    // newer head.
    let (mut m, _) = evil.manifest();
    m.created += 1;
    evil.put_manifest(&m, &[&f.key("manifest")], &[&f.key("head")]);
    f.assert_sync_refused("evil", "split_view", &before);
}

#[test]
fn manifest_that_breaks_the_hash_chain_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let evil = f.copy_site("evil");
    let (mut m, _) = evil.manifest();
    m.previous = Some(sha256(b"a manifest 1 this store never saw"));
    evil.put_manifest(&m, &[&f.key("manifest")], &[&f.key("head")]);
    f.assert_sync_refused("evil", "chain_broken", &before);
}

#[test]
fn manifest_whose_version_differs_from_the_head_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let evil = f.copy_site("evil");
    let (_, rel) = evil.manifest();
    // The head names manifest version 3 for the bytes of manifest 2.
    let bytes = evil.read(&rel);
    evil.put_manifest_bytes(3, &bytes, &[&f.key("head")]);
    f.assert_sync_refused("evil", "version_mismatch", &before);
}

#[test]
fn head_with_too_many_signatures_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let payload = cbor::to_vec(&next_head(&evil));
    let s = sign(&f.key("head"), HEAD_TYPE, &payload);
    write_head_bytes(&evil, &envelope_bytes(HEAD_TYPE, payload, vec![s; 33]));
    f.assert_sync_refused("evil", "too_many_signatures", &before);
}

#[test]
fn head_envelope_with_trailing_bytes_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    evil.put_head(&next_head(&evil), &[&f.key("head")]);
    let mut b = evil.read(paths::HEAD);
    b.push(0xf6);
    write_head_bytes(&evil, &b);
    f.assert_sync_refused("evil", "malformed_envelope", &before);
}

#[test]
fn head_with_version_zero_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    let mut h = evil.head();
    h.version = 0;
    evil.put_head(&h, &[&f.key("head")]);
    f.assert_sync_refused("evil", "malformed_document", &before);
}

#[test]
fn root_with_a_weak_key_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    let evil = f.copy_site("evil");
    // A rotation that adds the identity point (small order) as a head key.
    let mut r = evil.root(1);
    let mut weak = [0u8; 32];
    weak[0] = 1;
    r.keys.push(weak);
    r.keys.sort_by_key(consentry::envelope::key_id);
    r.roles.head.keyids.push(consentry::envelope::key_id(&weak));
    r.roles.head.keyids.sort_unstable();
    r.version = 2;
    let bytes = sign_envelope(ROOT_TYPE, cbor::to_vec(&r), &[&f.key("root")])
        .unwrap()
        .to_bytes();
    evil.write("root/2.cbor", &bytes);
    f.assert_sync_refused("evil", "malformed_document", &before);
}

#[test]
fn expired_trusted_head_still_bounds_rollback() {
    let f = Fixture::synced();
    let old = f.copy_site("evil");
    f.publish_change(17, &[]);
    f.verifier(&["sync", "site"]).ok();
    // Days later both heads have expired; a stolen head key re-signs version
    // 1's head with a fresh expiry.
    let mut h = old.head();
    h.expires = ts(LATER) + 86_400;
    old.put_head(&h, &[&f.key("head")]);
    let run = f.verifier_at(LATER, &["sync", "evil"]);
    assert_refused(&run, "rollback");
    let run = f.verifier_at(LATER, &["--allow-expired", "sync", "evil"]);
    assert_refused(&run, "rollback");
}

#[test]
fn mirror_directory_with_a_symlinked_file_is_rejected() {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    let evil = f.copy_site("evil");
    std::fs::remove_file(evil.dir.join(paths::HEAD)).unwrap();
    std::os::unix::fs::symlink(f.path("site/head.cbor"), evil.dir.join(paths::HEAD)).unwrap();
    assert_refused(&f.verifier(&["sync", "evil"]), "symlink_refused");
    assert_eq!(f.answers(), before);
}

#[test]
fn pinned_root_not_signed_by_its_own_root_keys_is_refused_at_init() {
    let f = Fixture::published();
    let site = Site::new(&f.path("site"));
    let r = site.root(1);
    let bytes = sign_envelope(ROOT_TYPE, cbor::to_vec(&r), &[&f.key("manifest")])
        .unwrap()
        .to_bytes();
    std::fs::write(f.path("fake-root.cbor"), bytes).unwrap();
    assert_refused(
        &f.verifier(&["init", "--root", "fake-root.cbor"]),
        "threshold_not_met",
    );
    assert!(!f.path("store/local/trust.json").exists());
}

#[test]
fn fast_forward_of_the_manifest_version_is_recovered_by_rotating_the_manifest_key() {
    let f = Fixture::synced();
    // Stolen manifest and head keys: manifest version 2^62 (a new "base" over
    // version 1's shards), named by a head.
    let evil = f.copy_site("evil");
    let (mut m, rel1) = evil.manifest();
    m.version = 1 << 62;
    m.base = m.version;
    m.previous = Some(sha256(&evil.read(&rel1)));
    evil.put_manifest(&m, &[&f.key("manifest")], &[&f.key("head")]);
    f.verifier(&["sync", "evil"]).ok();
    // The registry's own version 2 is now "older": frozen out.
    f.publish_change(17, &[]);
    assert_refused(&f.verifier(&["sync", "site"]), "rollback");
    // Recovery: a new manifest key in root 2, then the next publication.
    std::fs::create_dir_all(f.path("old-keys")).unwrap();
    for ext in ["key", "pub"] {
        std::fs::rename(
            f.path(&format!("keys/INSECURE-manifest-1.{ext}")),
            f.path(&format!("old-keys/INSECURE-manifest-1.{ext}")),
        )
        .unwrap();
    }
    write_keypair(
        &f.path("keys/INSECURE-manifest-2"),
        Role::Manifest,
        insecure_seed(Role::Manifest, 2),
        false,
    )
    .unwrap();
    f.publish(&[
        "root", "rotate", "--keys", "keys", "--site", "site", "--now", T0,
    ])
    .ok();
    f.publish_change(18, &[]);
    let out = f.verifier(&["sync", "site"]).ok();
    assert!(out.stderr.contains("fast-forward"), "{}", out.stderr);
    let v = f.verifier(&["check", "GBNWR2600018", "--json"]).ok();
    assert!(v.stdout.contains("\"D18\""), "{}", v.stdout);
    f.verifier(&["verify"]).ok();
}

#[test]
fn expired_intermediate_root_is_accepted_when_the_final_root_is_valid() {
    let f = Fixture::synced();
    // Root 2 expired long ago (one hour after T0), root 3 is valid.
    f.publish(&[
        "root",
        "rotate",
        "--keys",
        "keys",
        "--site",
        "site",
        "--now",
        T0,
        "--expires-in",
        "1h",
        "--force",
    ])
    .ok();
    f.publish(&[
        "root", "rotate", "--keys", "keys", "--site", "site", "--now", T0, "--force",
    ])
    .ok();
    f.publish_change(17, &[]);
    let out = f.verifier(&["sync", "site"]).ok();
    assert!(
        out.stdout.contains("root rotated to version 2, 3"),
        "{}",
        out.stdout
    );
}

#[test]
fn more_than_1024_root_rotations_stop_at_the_cap_and_resume() {
    let f = Fixture::synced();
    let evil = f.copy_site("evil");
    // 1 030 rotations that change nothing but the version.
    let mut r = evil.root(1);
    for v in 2..=1030 {
        r.version = v;
        evil.put_root(&r, &[&f.key("root")]);
    }
    let out = f.verifier(&["sync", "evil"]).ok();
    assert!(out.stderr.contains("1024 root rotations"), "{}", out.stderr);
    assert!(f.path("store/root/1025.cbor").exists());
    assert!(!f.path("store/root/1026.cbor").exists());
    f.verifier(&["sync", "evil"]).ok();
    assert!(f.path("store/root/1030.cbor").exists());
    f.verifier(&["verify"]).ok();
}
