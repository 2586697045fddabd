//! The publisher's side of the witnessed manifest log (SPEC.md §15): after
//! each publish, the log's leaves (one entry per manifest version) and a
//! checkpoint signed by the manifest keys; then `log cosign` adds the
//! witnesses' cosignatures. Only for roots that name witnesses.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use consentry::docs::{Manifest, Root, Witnesses, paths};
use consentry::note::{self, Checkpoint, Note};
use consentry::tlog::{self, CHECKPOINT_PATH, LEAVES_PATH, LogEntry};

use crate::keys::KeyPair;
use crate::lock::SiteLock;
use crate::site::Site;

/// What [`update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    pub checkpoint: Checkpoint,
    /// Whether a new checkpoint was written (else the current one already
    /// covered the head's manifest and was kept, with its cosignatures).
    pub written: bool,
}

/// The leaves the site's log holds (empty when it has none yet).
fn stored_leaves(site: &Site) -> Result<Vec<[u8; 32]>> {
    match std::fs::read(site.path(LEAVES_PATH)) {
        Ok(b) => {
            note::parse_leaves(&b).map_err(|e| anyhow!("{}: {e}", site.path(LEAVES_PATH).display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(anyhow!(
            "cannot read {}: {e}",
            site.path(LEAVES_PATH).display()
        )),
    }
}

/// The log entries (SPEC.md §15.1) of manifest versions
/// `from..=cur.version`, oldest first, walking `previous` back from the
/// current manifest through the site's manifest files.
fn chain_entries(
    site: &Site,
    cur: &Manifest,
    cur_sha: [u8; 32],
    from: u64,
) -> Result<Vec<[u8; 32]>> {
    let mut out = vec![LogEntry::of(cur, &cur_sha).hash()];
    let mut m = cur.clone();
    // One step per version: bounded by the current version.
    while m.version > from {
        let Some(prev) = m.previous else {
            bail!("manifest version {} names no previous manifest", m.version);
        };
        let v = m.version - 1;
        let rel = paths::manifest(v, &prev);
        let bytes = std::fs::read(site.path(&rel)).map_err(|e| {
            crate::advise!(
                "the log needs manifest version {} ({}), which the site no longer holds: {}",
                "the log of a witnessed root starts from version 1: restore the manifest files gc removed, or keep them (gc --keep)",
                v,
                rel,
                e
            )
        })?;
        let env = consentry::envelope::Envelope::parse(&rel, &bytes, &site.limits)
            .map_err(|e| anyhow!("{e}"))?;
        m = consentry::cbor::from_slice_canonical(&env.payload)
            .map_err(|e| anyhow!("{rel}: {e}"))?;
        if consentry::envelope::sha256(&bytes) != prev {
            bail!("{rel} does not hash to the previous hash its successor names");
        }
        out.push(LogEntry::of(&m, &prev).hash());
    }
    out.reverse();
    Ok(out)
}

/// Bring the log up to the site's current manifest: append the missing
/// leaves (every manifest version from 1 is a leaf), then write a
/// checkpoint of the new size signed by the manifest keys (name = the
/// root's log origin). The leaves are written first: a checkpoint never
/// names more leaves than the file holds. Leaves already in the file are
/// never changed (append-only); a file that disagrees with the manifest
/// chain is an error, not rewritten. `None` for a root without witnesses.
pub fn update(
    site: &Site,
    lock: &SiteLock,
    root: &Root,
    signers: &[&KeyPair],
) -> Result<Option<LogReport>> {
    site.check_lock(lock)?;
    let Some(policy) = &root.witnesses else {
        return Ok(None);
    };
    let cur = site
        .current(root)?
        .ok_or_else(|| anyhow!("the site has no head yet: publish first"))?;
    let (m, sha) = (&cur.manifest, cur.manifest_sha256);
    let mut leaves = stored_leaves(site)?;
    let have = leaves.len() as u64;
    if have > m.version {
        bail!(
            "{} holds {have} leaves but the current manifest is version {}: the log is ahead of the head",
            site.path(LEAVES_PATH).display(),
            m.version
        );
    }
    let chain = chain_entries(site, m, sha, have.max(1))?;
    // The stored leaves must be the chain's first ones.
    if have > 0 && chain.first() != leaves.last() {
        bail!(
            "{}: leaf {} is not manifest version {have}: the log disagrees with the manifest chain (it is append-only and is not rewritten)",
            site.path(LEAVES_PATH).display(),
            have - 1
        );
    }
    let fresh = if have == 0 { &chain[..] } else { &chain[1..] };
    leaves.extend_from_slice(fresh);
    let cp = Checkpoint {
        origin: policy.origin.clone(),
        size: leaves.len() as u64,
        root: consentry::merkle::merkle_root(&leaves),
    };
    if let Some(current) = current_checkpoint(site)?
        && current == cp
    {
        return Ok(Some(LogReport {
            checkpoint: cp,
            written: false,
        }));
    }
    let leaf_bytes: Vec<u8> = leaves.iter().flatten().copied().collect();
    if !fresh.is_empty() {
        site.write_atomic(LEAVES_PATH, &leaf_bytes)?;
    }
    let text = cp.text();
    let mut sigs = Vec::new();
    for k in signers {
        let sig = k.sign(text.as_bytes())?;
        sigs.push(note::log_signature_line(&policy.origin, &k.public(), &sig));
    }
    let note_bytes = Note { text, sigs }.to_bytes();
    // Self-check as a witness would, before it is served.
    tlog::check_log(root, policy, &note_bytes, &leaf_bytes, None)
        .map_err(|e| anyhow!("self-check of the new checkpoint failed: {e}"))?;
    site.write_atomic(CHECKPOINT_PATH, &note_bytes)?;
    Ok(Some(LogReport {
        checkpoint: cp,
        written: true,
    }))
}

/// The checkpoint the site serves now, if any.
fn current_checkpoint(site: &Site) -> Result<Option<Checkpoint>> {
    match std::fs::read(site.path(CHECKPOINT_PATH)) {
        Ok(b) => {
            let n = Note::parse(&b)
                .map_err(|e| anyhow!("{}: {e}", site.path(CHECKPOINT_PATH).display()))?;
            Ok(Some(
                Checkpoint::parse_text(&n.text).map_err(|e| anyhow!("{e}"))?,
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!(
            "cannot read {}: {e}",
            site.path(CHECKPOINT_PATH).display()
        )),
    }
}

/// A C2SP tlog-witness add-checkpoint request (SPEC.md §15.6) for the
/// served checkpoint, with the consistency proof from tree size `old` (the
/// size the witness cosigned last), computed from the site's leaves.
pub fn request(site: &Site, old: u64) -> Result<Vec<u8>> {
    let path = site.path(CHECKPOINT_PATH);
    let note = std::fs::read(&path)
        .map_err(|e| anyhow!("cannot read {}: {e} (publish first)", path.display()))?;
    let n = Note::parse(&note).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let cp = Checkpoint::parse_text(&n.text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if old > cp.size {
        return Err(crate::advise!(
            "--old {} is larger than the served checkpoint's tree size {}",
            "give the size the witness cosigned last (its 409 answer, or the size in its state's checkpoint)",
            old,
            cp.size
        ));
    }
    let leaves = stored_leaves(site)?;
    let tree = leaves.get(..cp.size as usize).ok_or_else(|| {
        anyhow!(
            "{} holds fewer leaves than the checkpoint's size {}",
            site.path(LEAVES_PATH).display(),
            cp.size
        )
    })?;
    Ok(consentry::note::AddCheckpoint {
        old,
        proof: consentry::merkle::consistency_proof(tree, old as usize),
        note,
    }
    .to_bytes())
}

/// What `log cosign` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignReport {
    pub checkpoint: Checkpoint,
    /// Witnesses whose cosignature was added now.
    pub added: Vec<String>,
    /// Every witness that has cosigned the served checkpoint, after.
    pub cosigners: Vec<String>,
    /// Lines given that were not a valid cosignature of the served
    /// checkpoint by a witness of the root (another checkpoint, another
    /// key, altered).
    pub ignored: usize,
    pub threshold: u64,
}

/// Add the witnesses' cosignature lines in `files` (each the output of
/// `consentry witness cosign`) to the site's checkpoint: only lines that
/// verify as a `cosignature/v1` of the served checkpoint by a witness the
/// root lists count; each witness once (its newest).
pub fn cosign(site: &Site, lock: &SiteLock, root: &Root, files: &[&Path]) -> Result<CosignReport> {
    cosign_lines(site, lock, root, &read_texts(files)?)
}

/// The texts of files of cosignature lines.
pub fn read_texts(files: &[&Path]) -> Result<Vec<String>> {
    files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f).map_err(|e| anyhow!("cannot read {}: {e}", f.display()))
        })
        .collect()
}

/// Longest a witness may take to answer one request.
const WITNESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest answer read from a witness (a few cosignature lines).
const MAX_WITNESS_ANSWER: u64 = 64 * 1024;

/// Ask each witness service in `urls` (C2SP tlog-witness: its
/// add-checkpoint endpoint, or the prefix it lives under) to cosign the
/// served checkpoint, SPEC.md §15.6: first with old size 0; a 409 answer
/// names the size the witness cosigned last, and the request is sent once
/// more with the consistency proof from that size. Returns each witness's
/// answer (cosignature lines) for [`cosign_lines`], which keeps only valid
/// ones. A witness that refuses is an error naming it and its answer.
pub fn ask_witnesses(site: &Site, urls: &[String]) -> Result<Vec<String>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WITNESS_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut out = Vec::new();
    for url in urls {
        let endpoint = if url.ends_with("/add-checkpoint") {
            url.clone()
        } else {
            format!("{}/add-checkpoint", url.trim_end_matches('/'))
        };
        let post = |old: u64| -> Result<(u16, String)> {
            let body = request(site, old)?;
            let mut resp = agent
                .post(&endpoint)
                .header("Content-Type", "text/plain; charset=utf-8")
                .send(&body[..])
                .map_err(|e| anyhow!("witness {endpoint}: {e}"))?;
            let status = resp.status().as_u16();
            let text = resp
                .body_mut()
                .with_config()
                .limit(MAX_WITNESS_ANSWER)
                .read_to_string()
                .map_err(|e| anyhow!("witness {endpoint}: reading its answer: {e}"))?;
            Ok((status, text))
        };
        let (mut status, mut text) = post(0)?;
        if status == 409 {
            let size: u64 = text.trim().parse().map_err(|_| {
                anyhow!("witness {endpoint}: a 409 answer without a tree size: {text:?}")
            })?;
            (status, text) = post(size)?;
        }
        if status != 200 {
            return Err(crate::advise!(
                "witness {} refused to cosign (HTTP {}): {}",
                "a 422 means the witness saw another history of this log: find out which before publishing further",
                endpoint,
                status,
                text.trim()
            ));
        }
        out.push(text);
    }
    Ok(out)
}

/// [`cosign`] with the cosignature lines given as texts.
pub fn cosign_lines(
    site: &Site,
    lock: &SiteLock,
    root: &Root,
    texts: &[String],
) -> Result<CosignReport> {
    site.check_lock(lock)?;
    let Some(policy) = &root.witnesses else {
        return Err(crate::advise!(
            "root version {} names no witnesses",
            "add witnesses with `root rotate --witness VKEY --witness-threshold K --log-origin ORIGIN`",
            root.version
        ));
    };
    let path = site.path(CHECKPOINT_PATH);
    let bytes = std::fs::read(&path)
        .map_err(|e| anyhow!("cannot read {}: {e} (publish first)", path.display()))?;
    let mut n = Note::parse(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let cp = Checkpoint::parse_text(&n.text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let before: Vec<String> = tlog::cosigners(policy, &n)
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    let mut ignored = 0;
    let mut offered = Vec::new();
    for text in texts {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // A line alone is parsed as the signature part of a note.
            match Note::parse(format!("x\n\n{line}\n").as_bytes()) {
                Ok(mut p) if p.sigs.len() == 1 => offered.append(&mut p.sigs),
                _ => ignored += 1,
            }
        }
    }
    let mut added = Vec::new();
    for line in offered {
        let valid = policy.keys.iter().find_map(|w| {
            let k = consentry::envelope::load_key(&w.key).ok()?;
            note::cosignature_valid(&line, &w.name, &k, &n.text).map(|t| (w.name.clone(), t))
        });
        let Some((name, time)) = valid else {
            ignored += 1;
            continue;
        };
        // One line per witness: the newest (a held line that is not a
        // cosignature at all counts as older than any).
        let held = n
            .sigs
            .iter()
            .position(|l| l.name == name && l.key_hash == line.key_hash);
        match held {
            None => n.sigs.push(line),
            Some(i) if cosigned_at(&n.sigs[i]) < Some(time) => n.sigs[i] = line,
            Some(_) => continue,
        }
        if !added.contains(&name) && !before.contains(&name) {
            added.push(name);
        }
    }
    if n.sigs.len() > note::MAX_NOTE_SIGNATURES {
        bail!(
            "the checkpoint would carry more than {} signatures",
            note::MAX_NOTE_SIGNATURES
        );
    }
    site.write_atomic(CHECKPOINT_PATH, &n.to_bytes())?;
    let cosigners = tlog::cosigners(policy, &n)
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    Ok(CosignReport {
        checkpoint: cp,
        added,
        cosigners,
        ignored,
        threshold: policy.threshold,
    })
}

/// The time a cosignature line carries (its first 8 bytes, big-endian).
fn cosigned_at(l: &note::SigLine) -> Option<u64> {
    Some(u64::from_be_bytes(l.sig.get(..8)?.try_into().ok()?))
}

/// The witness policy `root init|rotate` puts in a root: `--log-origin`,
/// each `--witness` a C2SP verifier key (`NAME+HASH+BASE64`, or a file
/// holding one), `--witness-threshold` (default: all of them).
pub fn policy(
    origin: Option<&str>,
    vkeys: &[String],
    threshold: Option<u64>,
) -> Result<Option<Witnesses>> {
    if vkeys.is_empty() {
        if origin.is_some() || threshold.is_some() {
            bail!("--log-origin and --witness-threshold need at least one --witness");
        }
        return Ok(None);
    }
    let Some(origin) = origin else {
        return Err(crate::advise!(
            "witnesses need the log's origin",
            "pass --log-origin, e.g. --log-origin registry.example.org/consentry (a name that identifies this registry's log)",
        ));
    };
    let mut keys = Vec::new();
    for v in vkeys {
        let text = if Path::new(v).is_file() {
            std::fs::read_to_string(v).map_err(|e| anyhow!("cannot read {v}: {e}"))?
        } else {
            v.clone()
        };
        let (name, key) = note::parse_vkey(&text, note::ALG_COSIGNATURE_V1)
            .map_err(|e| anyhow!("--witness {v}: {e}"))?;
        keys.push(consentry::docs::WitnessKey { key, name });
    }
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    let w = Witnesses {
        threshold: threshold.unwrap_or(keys.len() as u64),
        keys,
        origin: origin.to_string(),
    };
    w.check().map_err(|e| anyhow!("witnesses: {e}"))?;
    Ok(Some(w))
}
