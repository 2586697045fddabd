//! `consentry-publish push` against a real S3-compatible server on
//! 127.0.0.1 (moto, `tests/s3-server`), and `consentry sync` from the
//! bucket's plain HTTP endpoint.

use consentry_publish::push::{Credentials, PushOptions, S3};
use consentry_tests::Run;

use super::fixture::{Fixture, NOW};

/// The test server's credentials (moto accepts any).
const ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "consentry-test"),
    ("AWS_SECRET_ACCESS_KEY", "consentry-test"),
    ("AWS_REGION", "us-east-1"),
];

/// A bucket of its own for one test, on the test server.
struct Bucket {
    endpoint: String,
    to: String,
    /// The HTTP URL a verifier syncs from.
    url: String,
}

fn bucket(test: &str) -> Option<Bucket> {
    let endpoint = consentry_tests::s3_endpoint(test)?;
    let name: String = format!("t-{}-{}", std::process::id(), test.replace('_', "-"))
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string();
    Some(Bucket {
        to: format!("s3://{name}/snap"),
        url: format!("{endpoint}/{name}/snap/"),
        endpoint,
    })
}

impl Bucket {
    fn push(&self, f: &Fixture, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let mut args = vec![
            "push",
            "--site",
            "site",
            "--to",
            &self.to,
            "--endpoint-url",
            &self.endpoint,
            "--create-bucket",
            "--public-read",
        ];
        args.extend_from_slice(extra);
        let mut all: Vec<(&str, &str)> = ENV.to_vec();
        all.extend_from_slice(env);
        consentry_tests::run_env("consentry-publish", &args, f.root(), &all)
    }

    /// The object `rel` as the bucket holds it.
    fn get(&self, rel: &str) -> Option<Vec<u8>> {
        let s3 = S3::with_credentials(
            &PushOptions {
                to: self.to.clone(),
                endpoint_url: Some(self.endpoint.clone()),
                region: Some("us-east-1".into()),
                ..PushOptions::default()
            },
            Some(Credentials::new("consentry-test", "consentry-test")),
        )
        .unwrap();
        s3.get(rel).unwrap()
    }
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(run.stdout.trim()).unwrap()
}

#[test]
fn push_then_sync_over_http_answers_the_golden_lookups() {
    let Some(b) = bucket("push_then_sync") else {
        return;
    };
    let f = Fixture::published();
    let out = b.push(&f, &["--json"], &[]).ok();
    let v = json(&out);
    let keys: std::collections::BTreeSet<&str> =
        v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "to",
            "version",
            "head_version",
            "uploaded_files",
            "uploaded_bytes",
            "skipped_files",
            "head_uploaded",
            "uploaded",
            "pruned",
            "kept_manifests",
            "deleted"
        ]
        .into_iter()
        .collect(),
        "docs/publisher-json.md lists these"
    );
    let uploaded: Vec<&str> = v["uploaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        uploaded.last(),
        Some(&"head.cbor"),
        "head last: {uploaded:?}"
    );
    let manifest_at = uploaded
        .iter()
        .position(|p| p.starts_with("manifest/"))
        .unwrap();
    let root_at = uploaded
        .iter()
        .position(|p| p.starts_with("root/"))
        .unwrap();
    assert!(
        uploaded[..manifest_at]
            .iter()
            .all(|p| p.starts_with("shard/")
                || p.starts_with("layer/")
                || p.starts_with("prefix/")),
        "data files first: {uploaded:?}"
    );
    assert!(manifest_at < root_at, "{uploaded:?}");
    assert_eq!(v["head_uploaded"], true);
    assert_eq!(uploaded.len(), f.site_files().len(), "every site file once");

    // The bucket's plain HTTP endpoint is a site: sync and check from it.
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", &b.url]).ok();
    let from_bucket = f.answers();
    let g = Fixture::synced();
    assert_eq!(
        from_bucket,
        g.answers(),
        "the bucket answers as the site does"
    );

    // Idempotent: a second push uploads nothing, and leaves the head alone.
    let again = json(&b.push(&f, &["--json"], &[]).ok());
    assert_eq!(again["uploaded_files"], 0, "{again}");
    assert_eq!(again["head_uploaded"], false);
    assert_eq!(again["skipped_files"], v["uploaded_files"]);
    assert_eq!(
        b.get("head.cbor").unwrap(),
        std::fs::read(f.path("site/head.cbor")).unwrap()
    );
}

#[test]
fn push_killed_midway_leaves_the_old_head_in_place() {
    let Some(b) = bucket("push_killed_midway") else {
        return;
    };
    let f = Fixture::published();
    b.push(&f, &[], &[]).ok();
    let head_v1 = std::fs::read(f.path("site/head.cbor")).unwrap();
    f.publish_change(17, &[]);
    f.publish_change(18, &["--compact"]);
    let files_now = f.site_files().len();
    assert!(files_now > 6);
    // Stopped after one upload: new data files may be there, the head is not.
    let out = b
        .push(&f, &[], &[("CONSENTRY_PUSH_STOP_AFTER", "1")])
        .expect_code(2);
    assert!(out.stderr.contains("head is unchanged"), "{}", out.stderr);
    assert_eq!(b.get("head.cbor").unwrap(), head_v1, "the old head stays");
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", &b.url]).ok();
    assert_eq!(store_version(&f), 1);
    // The next push completes: what the first one uploaded is not sent again.
    let v = json(&b.push(&f, &["--json"], &[]).ok());
    assert!(v["skipped_files"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["head_uploaded"], true);
    assert_eq!(
        b.get("head.cbor").unwrap(),
        std::fs::read(f.path("site/head.cbor")).unwrap()
    );
    f.verifier(&["sync", &b.url]).ok();
    assert_eq!(store_version(&f), 3);
}

/// A real SIGKILL in the middle of a push (paused by a test hook after two
/// uploads, then killed): the bucket keeps the old head, a verifier syncs the
/// old snapshot from it, and the next push completes.
#[test]
fn push_sigkilled_midway_leaves_the_old_head_in_place() {
    use std::io::BufRead as _;
    let Some(b) = bucket("push_sigkilled") else {
        return;
    };
    let f = Fixture::published();
    b.push(&f, &[], &[]).ok();
    let head_v1 = std::fs::read(f.path("site/head.cbor")).unwrap();
    f.publish_change(17, &["--compact"]);
    let mut child =
        std::process::Command::new(consentry_tests::bin_dir().join("consentry-publish"))
            .args([
                "push",
                "--site",
                "site",
                "--to",
                &b.to,
                "--endpoint-url",
                &b.endpoint,
                "--public-read",
            ])
            .current_dir(f.root())
            .envs(ENV)
            .env("CONSENTRY_PUSH_PAUSE_AFTER", "2")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("push paused") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "push ended unpaused");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(b.get("head.cbor").unwrap(), head_v1, "the old head stays");
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", &b.url]).ok();
    assert_eq!(store_version(&f), 1);
    let v = json(&b.push(&f, &["--json"], &[]).ok());
    assert!(v["skipped_files"].as_u64().unwrap() >= 2, "{v}");
    f.verifier(&["sync", &b.url]).ok();
    assert_eq!(store_version(&f), 2);
}

#[test]
fn a_verifier_syncing_during_a_push_always_sees_a_consistent_snapshot() {
    let Some(b) = bucket("sync_during_push") else {
        return;
    };
    let f = Fixture::published();
    b.push(&f, &[], &[]).ok();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", &b.url]).ok();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncer = {
        let (done, url, dir) = (done.clone(), b.url.clone(), f.root().to_path_buf());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            loop {
                let last = done.load(std::sync::atomic::Ordering::SeqCst);
                let out = consentry_tests::run(
                    "consentry",
                    &["--store", "store", "--now", NOW, "sync", &url],
                    &dir,
                );
                assert_eq!(
                    out.code, 0,
                    "a sync during a push failed:\n{}\n{}",
                    out.stdout, out.stderr
                );
                seen.push(out.stdout);
                if last {
                    return seen;
                }
            }
        })
    };
    for n in 17..=22 {
        // Every other version a new base: more files in flight per push.
        f.publish_change(n, if n % 2 == 0 { &["--compact"] } else { &[] });
        b.push(&f, &[], &[]).ok();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = syncer.join().unwrap();
    assert!(!seen.is_empty());
    // After the last push, the store holds the last version.
    f.verifier(&["sync", &b.url]).ok();
    assert_eq!(store_version(&f), 7);
}

#[test]
fn push_prune_deletes_only_what_no_recent_manifest_names() {
    let Some(b) = bucket("push_prune") else {
        return;
    };
    let f = Fixture::published();
    b.push(&f, &[], &[]).ok();
    for n in 17..=19 {
        f.publish_change(n, &["--compact"]);
        b.push(&f, &[], &[]).ok();
    }
    let out = b.push(&f, &["--prune", "--keep", "2", "--json"], &[]).ok();
    let v = json(&out);
    assert_eq!(v["kept_manifests"], 2, "{v}");
    let deleted: Vec<&str> = v["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(!deleted.is_empty(), "old bases are garbage: {v}");
    assert!(
        deleted
            .iter()
            .all(|p| !p.starts_with("root/") && *p != "head.cbor"),
        "{deleted:?}"
    );
    for rel in &deleted {
        assert!(b.get(rel).is_none(), "{rel} was deleted");
    }
    // What the current manifest names is all still there: the bucket
    // answers as the site directory does.
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", &b.url]).ok();
    let from_bucket = f.answers();
    std::fs::remove_dir_all(f.path("store")).unwrap();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", "site"]).ok();
    assert_eq!(from_bucket, f.answers());
}

/// The snapshot version the fixture's store holds.
fn store_version(f: &Fixture) -> u64 {
    fn find(v: &serde_json::Value) -> Option<u64> {
        match v {
            serde_json::Value::Object(m) => m
                .get("version")
                .and_then(serde_json::Value::as_u64)
                .or_else(|| m.values().find_map(find)),
            _ => None,
        }
    }
    let out = f.verifier(&["status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    find(&v).unwrap_or_else(|| panic!("no version in {}", out.stdout))
}
