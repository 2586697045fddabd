//! `push`: copy a site's current snapshot to S3-compatible object storage
//! (`s3://bucket/prefix`), in the order SPEC.md §2 requires of any site
//! writer: the data files the current manifest names, then the manifest,
//! then the root chain, and `head.cbor` **last**. A verifier reading the
//! bucket (directly or through a CDN) therefore sees the old head, naming
//! files that are all there, until the new head is in place; a push stopped
//! at any point leaves the old head, and the next push completes the new one.
//!
//! Content-addressed names never change content, so an object already in the
//! bucket is not uploaded again (push is idempotent and resumable); the head
//! and the roots are compared byte for byte. `--prune --keep N` deletes data
//! files and manifests that none of the newest N manifests in the bucket
//! names (the rule of `gc`, through the same `gc::referenced`); the head and
//! the roots are never deleted.
//!
//! Requests are signed with AWS Signature V4 by `rusty-s3` (a sans-IO
//! signer: presigned URLs) and sent by `ureq`, the HTTP client the verifier
//! already uses; path-style URLs for a custom endpoint. Every request has a
//! connect and an overall timeout, and is tried at most [`ATTEMPTS`] times.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use consentry::docs::{Manifest, paths};
pub use rusty_s3::Credentials;
use rusty_s3::{Bucket, S3Action, UrlStyle};

use crate::progress::{Progress, Unit};
use crate::site::Site;

/// How often one request is tried before push gives up.
pub const ATTEMPTS: u32 = 4;
/// How long a presigned request stays valid.
const SIGN_FOR: Duration = Duration::from_hours(1);
/// Cache-Control of content-addressed files, manifests and roots.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The largest object push reads back (a head, a root or a manifest).
const MAX_GET: u64 = 256 << 20;

/// Where to push and how.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// `s3://bucket/prefix`.
    pub to: String,
    /// The S3 endpoint (`--endpoint-url`, else `AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL`, else AWS's regional endpoint).
    pub endpoint_url: Option<String>,
    /// The region (`--region`, else `AWS_REGION`, `AWS_DEFAULT_REGION`,
    /// else `us-east-1`).
    pub region: Option<String>,
    /// `Cache-Control: public, max-age=N` of `head.cbor`.
    pub head_max_age: u64,
    /// Delete what none of the newest `keep` manifests names.
    pub prune: bool,
    pub keep: u64,
    /// Create the bucket first when it does not exist.
    pub create_bucket: bool,
    /// Upload with `x-amz-acl: public-read` (a bucket served directly, with
    /// ACLs enabled; behind a CDN with origin access, leave it off).
    pub public_read: bool,
    /// Connect and per-request timeouts.
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Test hook: stop with an error after this many uploads (proves a push
    /// stopped midway leaves the old head).
    pub stop_after: Option<u64>,
    /// Test hook: after this many uploads, say `push paused` on stderr and
    /// wait for stdin to close (so a test can SIGKILL a push at a known
    /// point).
    pub pause_after: Option<u64>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            to: String::new(),
            endpoint_url: None,
            region: None,
            head_max_age: 60,
            prune: false,
            keep: 2,
            create_bucket: false,
            public_read: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_mins(10),
            stop_after: None,
            pause_after: None,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// The snapshot (manifest) version pushed.
    pub version: u64,
    /// The head version pushed (or already there).
    pub head_version: u64,
    /// Objects uploaded, in upload order: site-relative name and bytes.
    pub uploaded: Vec<(String, u64)>,
    /// Files the bucket already held (not uploaded again).
    pub skipped: u64,
    pub bytes_uploaded: u64,
    /// Whether the head was uploaded (false: the bucket's head was the same).
    pub head_uploaded: bool,
    /// With `--prune`: objects deleted (site-relative name and bytes).
    pub deleted: Vec<(String, u64)>,
    /// With `--prune`: manifests whose files were kept.
    pub kept_manifests: u64,
}

/// A bucket and a key prefix (`""`, or ending in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub bucket: String,
    pub prefix: String,
}

/// Parse `s3://bucket` or `s3://bucket/some/prefix`.
pub fn parse_target(to: &str) -> Result<Target> {
    let rest = to.strip_prefix("s3://").ok_or_else(|| {
        crate::advise!(
            "--to `{}` is not an s3:// URL",
            "write --to s3://BUCKET/PREFIX (the endpoint comes from --endpoint-url or AWS_ENDPOINT_URL)",
            to
        )
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !ok_bucket {
        return Err(crate::advise!(
            "--to `{}`: `{}` is not a bucket name",
            "bucket names are 3 to 63 lower-case letters, digits, dots and hyphens",
            to,
            bucket
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|c| c == "." || c == "..") {
        bail!("--to `{to}`: the prefix may not contain `.` or `..` components");
    }
    Ok(Target {
        bucket: bucket.to_string(),
        prefix: if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        },
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A signed connection to one bucket.
pub struct S3 {
    bucket: Bucket,
    creds: Option<Credentials>,
    agent: ureq::Agent,
    prefix: String,
    /// `s3://bucket/prefix`, for messages.
    shown: String,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("to", &self.shown)
            .finish_non_exhaustive()
    }
}

/// One response: status and body.
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// The `<Code>` and `<Message>` of an S3 error body, if it has them.
fn s3_error(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let tag = |t: &str| -> Option<String> {
        let open = format!("<{t}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{t}>"))? + start;
        Some(text[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => text.chars().take(200).collect(),
    }
}

impl S3 {
    /// Connect settings from the options and the standard AWS environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3` /
    /// `AWS_ENDPOINT_URL`). Without credentials requests go unsigned.
    pub fn new(o: &PushOptions) -> Result<S3> {
        let creds = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => Some(match env("AWS_SESSION_TOKEN") {
                Some(t) => Credentials::new_with_token(k, s, t),
                None => Credentials::new(k, s),
            }),
            (None, None) => None,
            _ => {
                return Err(crate::advise!(
                    "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set",
                    "set both (and AWS_SESSION_TOKEN for temporary credentials), or neither for a bucket that takes unsigned requests"
                ));
            }
        };
        S3::with_credentials(o, creds)
    }

    /// [`S3::new`] with these credentials instead of the environment's.
    pub fn with_credentials(o: &PushOptions, creds: Option<Credentials>) -> Result<S3> {
        let target = parse_target(&o.to)?;
        let region = o
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let custom = o
            .endpoint_url
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"));
        let (endpoint, style) = match &custom {
            // A custom endpoint (MinIO, Ceph, R2, a test server): path style,
            // which needs no wildcard DNS or certificate.
            Some(e) => (e.clone(), UrlStyle::Path),
            None => (
                format!("https://s3.{region}.amazonaws.com"),
                UrlStyle::VirtualHost,
            ),
        };
        let url: url::Url = endpoint.parse().map_err(|e| {
            crate::advise!(
                "endpoint `{}` is not a URL ({})",
                "pass --endpoint-url http://HOST:PORT (or https://…)",
                endpoint,
                e
            )
        })?;
        let bucket = Bucket::new(url, style, target.bucket.clone(), region).map_err(|e| {
            crate::advise!(
                "cannot address bucket {} at {}: {}",
                "use an http(s) endpoint with a host name; for an IP address or a non-DNS bucket name pass --endpoint-url (path-style)",
                target.bucket,
                endpoint,
                e
            )
        })?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(o.connect_timeout))
            .timeout_global(Some(o.request_timeout))
            .http_status_as_error(false)
            .user_agent(concat!("consentry-publish/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(S3 {
            shown: format!("s3://{}/{}", target.bucket, target.prefix),
            bucket,
            creds,
            agent,
            prefix: target.prefix,
        })
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    /// Send one request, tried up to [`ATTEMPTS`] times on a connection
    /// failure or a 5xx / 429 answer (every request push sends is
    /// idempotent), with a growing pause between tries.
    fn send(
        &self,
        what: &str,
        make: &dyn Fn() -> (rusty_s3::Method, url::Url, Vec<(String, String)>),
        body: Option<&[u8]>,
    ) -> Result<Response> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(250 << attempt));
            }
            let (method, url, headers) = make();
            let m = match method {
                rusty_s3::Method::Get => "GET",
                rusty_s3::Method::Head => "HEAD",
                rusty_s3::Method::Put => "PUT",
                rusty_s3::Method::Post => "POST",
                rusty_s3::Method::Delete => "DELETE",
            };
            let mut req = ureq::http::Request::builder().method(m).uri(url.as_str());
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let req = req
                .body(body.map(<[u8]>::to_vec).unwrap_or_default())
                .map_err(|e| anyhow!("{what}: cannot build the request: {e}"))?;
            match self.agent.run(req) {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let mut out = Vec::new();
                    let read = resp
                        .body_mut()
                        .with_config()
                        .limit(MAX_GET)
                        .reader()
                        .read_to_end(&mut out);
                    if let Err(e) = read {
                        last = format!("reading the answer: {e}");
                        continue;
                    }
                    if status >= 500 || status == 429 {
                        last = format!("HTTP {status} ({})", s3_error(&out));
                        continue;
                    }
                    return Ok(Response { status, body: out });
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(crate::advise!(
            "{} at {} failed {} times; last: {}",
            "check --endpoint-url, the network and the credentials; push is resumable: run it again",
            what,
            self.shown,
            ATTEMPTS,
            last
        ))
    }

    fn check(&self, what: &str, r: &Response) -> Result<()> {
        if (200..300).contains(&r.status) {
            return Ok(());
        }
        let hint = match r.status {
            403 => {
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and the bucket policy"
            }
            404 => "check the bucket name in --to (or pass --create-bucket)",
            301 | 307 | 400 => "check the region (--region or AWS_REGION) and --endpoint-url",
            _ => "see the message from the server",
        };
        Err(anyhow::Error::new(crate::advice::Advice {
            message: format!(
                "{what} at {}: HTTP {} ({})",
                self.shown,
                r.status,
                s3_error(&r.body)
            ),
            hint: hint.to_string(),
        }))
    }

    /// Create the bucket unless it exists.
    pub fn create_bucket(&self) -> Result<()> {
        let Some(creds) = &self.creds else {
            bail!("creating a bucket needs credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)");
        };
        // Outside us-east-1, S3 wants the region in the body.
        let region = self.bucket.region();
        let body = if region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            )
        };
        let r = self.send(
            "create bucket",
            &|| {
                let a = self.bucket.create_bucket(creds);
                (rusty_s3::Method::Put, a.sign(SIGN_FOR), Vec::new())
            },
            Some(body.as_bytes()),
        )?;
        if r.status == 409 {
            return Ok(()); // BucketAlreadyOwnedByYou / exists
        }
        self.check("create bucket", &r)
    }

    /// Every object under the prefix: site-relative name → size.
    pub fn list(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        // A bucket of 10^9 objects is 10^6 pages; more means a server loop.
        for _ in 0..1_000_000 {
            let r = self.send(
                "listing the bucket",
                &|| {
                    let mut a = self.bucket.list_objects_v2(self.creds.as_ref());
                    if !self.prefix.is_empty() {
                        a.with_prefix(self.prefix.as_str());
                    }
                    if let Some(t) = &token {
                        a.with_continuation_token(t.as_str());
                    }
                    (rusty_s3::Method::Get, a.sign(SIGN_FOR), Vec::new())
                },
                None,
            )?;
            self.check("listing the bucket", &r)?;
            let text = String::from_utf8_lossy(&r.body);
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text)
                .map_err(|e| anyhow!("listing {}: unreadable answer: {e}", self.shown))?;
            for c in page.contents {
                if let Some(rel) = c.key.strip_prefix(self.prefix.as_str()) {
                    out.insert(rel.to_string(), c.size.unwrap_or(0));
                }
            }
            match page.next_continuation_token {
                Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                _ => return Ok(out),
            }
        }
        bail!("listing {}: more than 10^6 pages", self.shown)
    }

    /// An object's bytes, or `None` when it does not exist.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let key = self.key(rel);
        let r = self.send(
            &format!("reading {rel}"),
            &|| {
                let a = self.bucket.get_object(self.creds.as_ref(), &key);
                (rusty_s3::Method::Get, a.sign(SIGN_FOR), Vec::new())
            },
            None,
        )?;
        if r.status == 404 {
            return Ok(None);
        }
        self.check(&format!("reading {rel}"), &r)?;
        Ok(Some(r.body))
    }

    /// Upload one object with its Cache-Control.
    pub fn put(&self, rel: &str, bytes: &[u8], cache_control: &str, public: bool) -> Result<()> {
        let key = self.key(rel);
        let r = self.send(
            &format!("uploading {rel}"),
            &|| {
                let mut a = self.bucket.put_object(self.creds.as_ref(), &key);
                let mut headers = vec![
                    ("cache-control", cache_control),
                    ("content-type", "application/octet-stream"),
                ];
                if public {
                    headers.push(("x-amz-acl", "public-read"));
                }
                for (k, v) in &headers {
                    a.headers_mut().insert(*k, *v);
                }
                (
                    rusty_s3::Method::Put,
                    a.sign(SIGN_FOR),
                    headers
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                        .collect(),
                )
            },
            Some(bytes),
        )?;
        self.check(&format!("uploading {rel}"), &r)
    }

    /// Delete one object.
    pub fn delete(&self, rel: &str) -> Result<()> {
        let key = self.key(rel);
        let r = self.send(
            &format!("deleting {rel}"),
            &|| {
                let a = self.bucket.delete_object(self.creds.as_ref(), &key);
                (rusty_s3::Method::Delete, a.sign(SIGN_FOR), Vec::new())
            },
            None,
        )?;
        if r.status == 404 {
            return Ok(());
        }
        self.check(&format!("deleting {rel}"), &r)
    }
}

/// The current snapshot's files in upload order: data files, the manifest,
/// the roots, the head (last).
fn plan(site: &Site) -> Result<(Vec<String>, Manifest, u64)> {
    let roots = site.roots()?;
    let root = roots.last().map(|(r, _)| r.clone()).ok_or_else(|| {
        crate::advise!(
            "{} has no root",
            "create one with `consentry-publish root init`, then publish",
            site.dir.display()
        )
    })?;
    let cur = site.current(&root)?.ok_or_else(|| {
        crate::advise!(
            "{} has nothing published yet",
            "run consentry-publish publish first",
            site.dir.display()
        )
    })?;
    let mut order: Vec<String> = cur
        .manifest
        .data_files()
        .into_iter()
        .map(|(rel, _)| rel)
        .collect();
    order.push(paths::manifest(cur.manifest.version, &cur.manifest_sha256));
    for (r, _) in &roots {
        order.push(paths::root(r.version));
    }
    order.push(paths::HEAD.to_string());
    // A witnessed root's log, after the head as on the site (SPEC.md §15.1):
    // leaves, then the checkpoint.
    if root.witnesses.is_some() {
        for rel in [
            consentry::tlog::LEAVES_PATH,
            consentry::tlog::CHECKPOINT_PATH,
        ] {
            if site.path(rel).is_file() {
                order.push(rel.to_string());
            }
        }
    }
    Ok((order, cur.manifest, cur.head.version))
}

/// Files whose content may change under one name: compared byte for byte.
fn is_mutable(rel: &str) -> bool {
    rel == paths::HEAD || rel.starts_with("root/") || rel.starts_with("log/")
}

/// Push the site's current snapshot to the bucket, head last; then, with
/// `prune`, delete what none of the newest `keep` manifests names.
pub fn push(
    site: &Site,
    lock: &crate::lock::SiteLock,
    o: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport> {
    site.check_lock(lock)?;
    let s3 = S3::new(o)?;
    if o.create_bucket {
        s3.create_bucket()?;
    }
    let (order, manifest, head_version) = plan(site)?;
    let present = s3.list()?;
    let mut report = PushReport {
        version: manifest.version,
        head_version,
        ..PushReport::default()
    };
    // What to upload, with its size; data files are read only when they
    // are uploaded (a first push of a large registry is gigabytes).
    let mut todo: Vec<(String, u64)> = Vec::new();
    for rel in &order {
        let size = std::fs::metadata(site.path(rel))
            .map_err(|e| anyhow!("{}: {e}", site.path(rel).display()))?
            .len();
        let needed = if is_mutable(rel) {
            // Mutable (the head, the log), or re-issued with `root init
            // --force`: compared byte for byte.
            present.get(rel) != Some(&size) || s3.get(rel)? != Some(site.read(rel)?)
        } else {
            // Content-addressed: the name is the content.
            present.get(rel) != Some(&size)
        };
        if needed {
            todo.push((rel.clone(), size));
        } else {
            report.skipped += 1;
        }
    }
    let total: u64 = todo.iter().map(|(_, n)| n).sum();
    progress.start("uploading", Some(total), Unit::Bytes);
    let head_cc = format!("public, max-age={}", o.head_max_age);
    for (rel, _) in &todo {
        if o.stop_after
            .is_some_and(|k| report.uploaded.len() as u64 >= k)
        {
            progress.finish();
            bail!(
                "push stopped after {} uploads (CONSENTRY_PUSH_STOP_AFTER); the bucket's head is unchanged",
                report.uploaded.len()
            );
        }
        if o.pause_after
            .is_some_and(|k| report.uploaded.len() as u64 == k)
        {
            eprintln!("push paused after {} uploads", report.uploaded.len());
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        }
        let bytes = site.read(rel)?;
        let cc = if rel == paths::HEAD || rel.starts_with("log/") {
            &head_cc
        } else {
            IMMUTABLE
        };
        s3.put(rel, &bytes, cc, o.public_read)?;
        progress.inc(bytes.len() as u64);
        report.bytes_uploaded += bytes.len() as u64;
        report.uploaded.push((rel.clone(), bytes.len() as u64));
        report.head_uploaded |= rel == paths::HEAD;
    }
    progress.finish();
    if o.prune {
        prune(&s3, &manifest, o.keep, &mut report)?;
    }
    Ok(report)
}

/// Delete the manifests and data files in the bucket that none of the newest
/// `keep` manifests (versions up to the pushed one) names. A manifest in that
/// window that cannot be read stops the prune: nothing is guessed about.
fn prune(s3: &S3, current: &Manifest, keep: u64, report: &mut PushReport) -> Result<()> {
    let listed = s3.list()?;
    let floor = current.version.saturating_sub(keep.max(1) - 1);
    let mut keep_set: BTreeSet<String> = BTreeSet::new();
    for rel in listed.keys().filter(|r| r.starts_with("manifest/")) {
        let Some(v) = rel
            .strip_prefix("manifest/")
            .and_then(|n| n.split('.').next())
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        if v < floor || v > current.version {
            continue;
        }
        let bytes = s3
            .get(rel)?
            .ok_or_else(|| anyhow!("{rel} was listed but cannot be read; nothing pruned"))?;
        let m = crate::gc::read_manifest(rel, &bytes).ok_or_else(|| {
            anyhow!("{rel} in the bucket is not a readable manifest; nothing pruned")
        })?;
        crate::gc::referenced(&m, rel, &mut keep_set);
        report.kept_manifests += 1;
    }
    if report.kept_manifests == 0 {
        bail!("the pushed manifest is not in the bucket's listing; nothing pruned");
    }
    let data_dirs = ["manifest/", "shard/", "layer/", "prefix/"];
    for (rel, size) in &listed {
        if !data_dirs.iter().any(|d| rel.starts_with(d)) || keep_set.contains(rel) {
            continue;
        }
        s3.delete(rel)?;
        report.deleted.push((rel.clone(), *size));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_prefix() {
        let t = |s: &str| parse_target(s).map_err(|e| e.to_string());
        assert_eq!(
            t("s3://my-bucket"),
            Ok(Target {
                bucket: "my-bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            t("s3://my-bucket/a/b/"),
            Ok(Target {
                bucket: "my-bucket".into(),
                prefix: "a/b/".into()
            })
        );
        assert!(t("https://x/y").is_err());
        assert!(t("s3://UPPER/x").is_err());
        assert!(t("s3://ok-bucket/../x").is_err());
    }

    #[test]
    fn s3_error_bodies_read_as_code_and_message() {
        let body = b"<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(
            s3_error(body),
            "NoSuchBucket: The specified bucket does not exist"
        );
    }
}
