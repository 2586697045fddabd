//! Offline key ceremonies (issue 19): a threshold root proposed without any
//! secret key (`root init|rotate --unsigned`), signed by separate key
//! holders each with only their own key (`root sign`), and published only
//! once the thresholds are reached (`root assemble`). Every key here is a
//! fresh `keygen` key (not the INSECURE test keys), each holder's in a
//! directory of its own, and the online keys never sit beside a root key.

use std::path::Path;

use consentry::envelope::Envelope;

use super::fixture::{Fixture, NOW, T0};

/// The publisher in `dir`.
fn publish(dir: &Path, args: &[&str]) -> consentry_tests::Run {
    consentry_tests::run_bounded("consentry-publish", args, dir, super::fixture::RUN_LIMIT)
}

/// Generate `holder/name` (role `role`) and copy its public key into `pubs`.
fn keygen(dir: &Path, role: &str, holder: &str, name: &str, pubs: &[&str]) {
    let out = format!("{holder}/{name}");
    publish(dir, &["keygen", "--role", role, "--out", &out]).ok();
    for p in pubs {
        std::fs::create_dir_all(dir.join(p)).unwrap();
        std::fs::copy(
            dir.join(format!("{out}.pub")),
            dir.join(format!("{p}/{name}.pub")),
        )
        .unwrap();
    }
}

/// Root holders a, b, c (threshold 2), online keys apart, public keys of
/// all in `pubs`; the example registry imported.
fn ceremony() -> Fixture {
    let f = Fixture {
        dir: tempfile::tempdir().unwrap(),
        db: "reg.db".into(),
        backend: super::fixture::Backend::Sqlite,
    };
    let d = f.root();
    for h in ["a", "b", "c"] {
        keygen(
            d,
            "root",
            &format!("holder-{h}"),
            &format!("root-{h}"),
            &["pubs"],
        );
    }
    keygen(d, "manifest", "online", "manifest-1", &["pubs", "pubs2"]);
    keygen(d, "head", "online", "head-1", &["pubs", "pubs2"]);
    publish(d, &["init", "--db", "reg.db"]).ok();
    publish(
        d,
        &[
            "import",
            "--db",
            "reg.db",
            consentry_tests::data("declarations.csv").to_str().unwrap(),
            "--recorded-at",
            T0,
        ],
    )
    .ok();
    f
}

fn propose_root_1(f: &Fixture) {
    let out = f
        .publish(&[
            "root",
            "init",
            "--keys",
            "pubs",
            "--site",
            "site",
            "--threshold",
            "root=2",
            "--now",
            T0,
            "--expires-in",
            "3650d",
            "--unsigned",
            "proposal.cbor",
        ])
        .ok();
    assert!(
        out.stdout.contains("proposal (0 valid signatures)"),
        "{}",
        out.stdout
    );
    assert!(
        !f.path("site/root/1.cbor").exists(),
        "a proposal publishes nothing"
    );
}

/// Publish with the online keys, then pin root 1 in a store and sync it.
fn publish_online_and_sync(f: &Fixture) {
    f.publish(&[
        "publish", "--db", "reg.db", "--keys", "online", "--site", "site",
    ])
    .ok();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", "site"]).ok();
}

fn sign(f: &Fixture, file: &str, key: &str, extra: &[&str]) -> consentry_tests::Run {
    let mut args = vec!["root", "sign", file, "--key", key];
    args.extend_from_slice(extra);
    f.publish(&args)
}

fn assemble(f: &Fixture, file: &str) -> consentry_tests::Run {
    f.publish(&["root", "assemble", file, "--site", "site", "--now", T0])
}

#[test]
fn a_threshold_root_is_signed_by_separate_holders_and_published_only_at_its_threshold() {
    let f = ceremony();
    propose_root_1(&f);

    // One of two root signatures: refused, nothing written.
    sign(&f, "proposal.cbor", "holder-a/root-a.key", &[]).ok();
    let early = assemble(&f, "proposal.cbor");
    assert_eq!(early.code, 2, "{}", early.stdout);
    assert!(early.stderr.contains("threshold"), "{}", early.stderr);
    assert!(!f.path("site/root/1.cbor").exists());

    // The same holder again adds nothing.
    let again = sign(&f, "proposal.cbor", "holder-a/root-a.key", &[]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already signed"), "{}", again.stderr);

    // The second holder: the threshold is met and the root published as
    // received, byte for byte.
    let second = sign(&f, "proposal.cbor", "holder-b/root-b.key", &[]).ok();
    assert!(
        second.stdout.contains("2 valid signatures"),
        "{}",
        second.stdout
    );
    assemble(&f, "proposal.cbor").ok();
    assert_eq!(
        std::fs::read(f.path("site/root/1.cbor")).unwrap(),
        std::fs::read(f.path("proposal.cbor")).unwrap()
    );

    // The online keys publish under it, and a verifier pinned to it answers
    // the golden questions' first one.
    publish_online_and_sync(&f);
    let check = f
        .verifier(&["check", "GBNWR2500001", "--at", "2026-11-25"])
        .ok();
    assert!(
        check.stdout.contains("\tdisallow\tdeclared\tD1\t"),
        "{}",
        check.stdout
    );
}

#[test]
fn signing_a_root_proposal_with_a_key_it_does_not_list_is_refused() {
    let f = ceremony();
    propose_root_1(&f);
    let before = std::fs::read(f.path("proposal.cbor")).unwrap();
    let out = sign(&f, "proposal.cbor", "online/head-1.key", &[]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("may sign root version 1"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(f.path("proposal.cbor")).unwrap(), before);
}

#[test]
fn a_proposal_altered_after_signing_loses_its_signatures() {
    let f = ceremony();
    propose_root_1(&f);
    sign(&f, "proposal.cbor", "holder-a/root-a.key", &[]).ok();
    sign(&f, "proposal.cbor", "holder-b/root-b.key", &[]).ok();
    // Someone between the holders and the site extends the root's life and
    // keeps the signatures.
    let bytes = std::fs::read(f.path("proposal.cbor")).unwrap();
    let mut env = Envelope::parse("proposal", &bytes, &consentry::Limits::default()).unwrap();
    let mut root: consentry::docs::Root =
        consentry::cbor::from_slice_canonical(&env.payload).unwrap();
    root.expires += 86_400 * 365;
    env.payload = consentry::cbor::to_vec(&root);
    std::fs::write(f.path("altered.cbor"), env.to_bytes()).unwrap();
    let out = assemble(&f, "altered.cbor");
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stderr.contains("threshold_not_met"), "{}", out.stderr);
    assert!(!f.path("site/root/1.cbor").exists());
}

#[test]
fn a_rotation_needs_the_old_roots_threshold_as_well_as_the_new_ones() {
    let f = ceremony();
    propose_root_1(&f);
    sign(&f, "proposal.cbor", "holder-a/root-a.key", &[]).ok();
    sign(&f, "proposal.cbor", "holder-b/root-b.key", &[]).ok();
    assemble(&f, "proposal.cbor").ok();
    publish_online_and_sync(&f);

    // Root 2: holder c retires, holder d joins (a and b stay).
    let d = f.root();
    keygen(d, "root", "holder-d", "root-d", &["pubs2"]);
    for h in ["a", "b"] {
        std::fs::copy(
            f.path(&format!("pubs/root-{h}.pub")),
            f.path(&format!("pubs2/root-{h}.pub")),
        )
        .unwrap();
    }
    f.publish(&[
        "root",
        "rotate",
        "--keys",
        "pubs2",
        "--site",
        "site",
        "--threshold",
        "root=2",
        "--now",
        T0,
        "--expires-in",
        "3650d",
        "--unsigned",
        "rotation.cbor",
    ])
    .ok();
    // a and d: the new root's threshold, but only one of the old root's.
    sign(&f, "rotation.cbor", "holder-a/root-a.key", &[]).ok();
    sign(&f, "rotation.cbor", "holder-d/root-d.key", &[]).ok();
    let short = assemble(&f, "rotation.cbor");
    assert_eq!(short.code, 2, "{}", short.stdout);
    assert!(short.stderr.contains("previous root"), "{}", short.stderr);
    assert!(!f.path("site/root/2.cbor").exists());
    // c is only in the old root: it may sign once the old root is named.
    let unnamed = sign(&f, "rotation.cbor", "holder-c/root-c.key", &[]);
    assert_eq!(unnamed.code, 2);
    assert!(unnamed.stderr.contains("--previous"), "{}", unnamed.stderr);
    sign(
        &f,
        "rotation.cbor",
        "holder-c/root-c.key",
        &["--previous", "site/root/1.cbor"],
    )
    .ok();
    assemble(&f, "rotation.cbor").ok();
    f.publish(&[
        "publish", "--db", "reg.db", "--keys", "online", "--site", "site", "--now", NOW,
    ])
    .ok();
    let out = f.verifier(&["sync", "site"]).ok();
    assert!(
        out.stdout.contains("root rotated to version 2"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_proposal_is_never_written_over_an_existing_file() {
    let f = ceremony();
    propose_root_1(&f);
    sign(&f, "proposal.cbor", "holder-a/root-a.key", &[]).ok();
    let signed = std::fs::read(f.path("proposal.cbor")).unwrap();
    let out = f.publish(&[
        "root",
        "init",
        "--keys",
        "pubs",
        "--site",
        "site",
        "--now",
        T0,
        "--unsigned",
        "proposal.cbor",
    ]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("refusing to overwrite"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(f.path("proposal.cbor")).unwrap(), signed);
}

/// An executable script `name` in the fixture.
fn script(f: &Fixture, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = f.path(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("./{name}")
}

/// The INSECURE fixture with the online secret keys moved out of `keys/`
/// into `hsm/`, behind the reference external signer.
fn online_keys_behind_a_signer() -> (Fixture, String) {
    let f = Fixture::unpublished();
    std::fs::create_dir_all(f.path("hsm")).unwrap();
    for role in ["manifest", "head"] {
        std::fs::rename(
            f.path(&format!("keys/INSECURE-{role}-1.key")),
            f.path(&format!("hsm/INSECURE-{role}-1.key")),
        )
        .unwrap();
    }
    let bin = consentry_tests::bin_dir().join("consentry-publish");
    let signer = script(
        &f,
        "signer.sh",
        &format!("exec {} external-signer --keys hsm \"$@\"", bin.display()),
    );
    (f, signer)
}

#[test]
fn online_keys_held_by_an_external_signer_publish_and_refresh() {
    let (f, signer) = online_keys_behind_a_signer();
    // Without the signer the keys directory holds no online secret.
    let refused = f.publish_next(&[]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(!f.path("site/head.cbor").exists());
    f.publish_next(&["--signer", &signer]).ok();
    f.publish(&[
        "refresh", "--keys", "keys", "--site", "site", "--now", T0, "--signer", &signer,
    ])
    .ok();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", "site"]).ok();
    let check = f
        .verifier(&["check", "GBNWR2500001", "--at", "2026-11-25"])
        .ok();
    assert!(
        check.stdout.contains("\tdisallow\tdeclared\tD1\t"),
        "{}",
        check.stdout
    );
    // The same manifest bytes as signing with the key files (ed25519 is
    // deterministic): the signer signed exactly the message it was given.
    let manifests = |files: std::collections::BTreeMap<String, Vec<u8>>| {
        files
            .into_iter()
            .filter(|(p, _)| p.starts_with("manifest"))
            .collect::<Vec<_>>()
    };
    let external = manifests(f.site_files());
    assert!(!external.is_empty());
    assert_eq!(external, manifests(Fixture::published().site_files()));
}

#[test]
fn an_external_signer_returning_a_bad_signature_is_refused_and_nothing_is_published() {
    let (f, _) = online_keys_behind_a_signer();
    let zeros = "0".repeat(128);
    let liar = script(&f, "liar.sh", &format!("cat >/dev/null; echo {zeros}"));
    let out = f.publish_next(&["--signer", &liar]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stderr.contains("does not verify"), "{}", out.stderr);
    assert!(!f.path("site/head.cbor").exists(), "nothing published");
    let garbage = script(&f, "garbage.sh", "cat >/dev/null; echo not-a-signature");
    let out = f.publish_next(&["--signer", &garbage]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("not a signature"), "{}", out.stderr);
    let failing = script(&f, "failing.sh", "echo 'HSM offline' >&2; exit 3");
    let out = f.publish_next(&["--signer", &failing]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("HSM offline"), "{}", out.stderr);
    assert!(!f.path("site/head.cbor").exists(), "nothing published");
}

#[test]
fn an_external_signer_that_never_answers_is_stopped_at_its_timeout() {
    let (f, _) = online_keys_behind_a_signer();
    let stuck = script(&f, "stuck.sh", "exec sleep 60");
    let out = f.publish_next(&["--signer", &stuck, "--signer-timeout", "1s"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("did not answer within 1 s"),
        "{}",
        out.stderr
    );
    assert!(!f.path("site/head.cbor").exists());
}
