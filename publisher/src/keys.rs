//! Signing keys: generation, key files, and signing envelopes.
//!
//! A key pair is two small JSON files: `NAME.key` (the 32-byte ed25519 seed,
//! mode 0600, never overwritten without `--force`) and `NAME.pub`. Each names
//! its role and key id, so a keys directory can be searched by key id when a
//! root lists which keys must sign.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use consentry::docs::Role;
use consentry::envelope::{Envelope, Sig, key_id, pae};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use serde::{Deserialize, Serialize};

/// `type` field of a secret key file.
pub const SECRET_TYPE: &str = "consentry-secret-key-v1";
/// `type` field of a public key file.
pub const PUBLIC_TYPE: &str = "consentry-public-key-v1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    #[serde(rename = "type")]
    kind: String,
    role: String,
    keyid: String,
    /// Hex of the 32-byte ed25519 seed.
    secret: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicFile {
    #[serde(rename = "type")]
    kind: String,
    role: String,
    keyid: String,
    public: String,
}

/// A key that signs: a secret key file, or a public key whose secret an
/// external signer program holds (an HSM or KMS behind a small wrapper: the
/// secret never touches this machine's disk).
#[derive(Debug)]
pub struct KeyPair {
    pub role: Role,
    pub secret: Secret,
    /// The `.key` file, or the `.pub` file of an external key.
    pub path: PathBuf,
}

/// Where a [`KeyPair`]'s signatures come from.
#[derive(Debug)]
pub enum Secret {
    /// The ed25519 seed, from a `.key` file.
    Seed(SigningKey),
    /// `program sign ROLE KEYID` (docs/external-signer.md) signs; `public`
    /// checks every signature it returns before it is used.
    External {
        program: PathBuf,
        public: [u8; 32],
        timeout: std::time::Duration,
    },
}

impl KeyPair {
    /// A key pair from a seed held in memory (tests, the INSECURE keys).
    pub fn from_seed(role: Role, signing: SigningKey, path: PathBuf) -> KeyPair {
        KeyPair {
            role,
            secret: Secret::Seed(signing),
            path,
        }
    }

    pub fn public(&self) -> [u8; 32] {
        match &self.secret {
            Secret::Seed(k) => k.verifying_key().to_bytes(),
            Secret::External { public, .. } => *public,
        }
    }

    pub fn id(&self) -> [u8; 32] {
        key_id(&self.public())
    }

    /// The ed25519 signature of `msg` (a PAE message): made here, or by the
    /// external signer and then checked against the public key, so a signer
    /// that answers with anything else stops the run before a file is
    /// written.
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; 64]> {
        match &self.secret {
            Secret::Seed(k) => Ok(k.sign(msg).to_bytes()),
            Secret::External {
                program,
                public,
                timeout,
            } => {
                let sig = crate::signer::run(program, self.role, &key_id(public), msg, *timeout)?;
                let vk = consentry::envelope::load_key(public)
                    .map_err(|e| anyhow!("{}: {e}", self.path.display()))?;
                vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
                    .map_err(|_| {
                        crate::advise!(
                            "the external signer {} returned a signature that does not verify under {} key {}",
                            "check that the signer holds the secret of that key id (and signs the bytes on its stdin, unchanged)",
                            program.display(),
                            self.role.name(),
                            hex::encode(key_id(public))
                        )
                    })?;
                Ok(sig)
            }
        }
    }
}

/// A loaded public key.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub role: Role,
    pub public: [u8; 32],
    pub path: PathBuf,
}

/// Write a file that must not exist yet (or may be replaced with `force`),
/// with `mode` set at creation so a secret is never world-readable.
fn write_new(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() && !force {
        bail!(
            "{} already exists; refusing to overwrite a key (pass --force to replace it, after backing it up)",
            path.display()
        );
    }
    let tmp = path.with_extension("tmp-new");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Generate a key pair from `seed` (32 random bytes, or fixed bytes for the
/// INSECURE test keys) and write `OUT.key` (0600) and `OUT.pub`. Signs and
/// verifies a test message before writing, so a broken key never lands.
pub fn write_keypair(out: &Path, role: Role, seed: [u8; 32], force: bool) -> Result<KeyPair> {
    let signing = SigningKey::from_bytes(&seed);
    let msg = b"consentry keygen self-check";
    signing
        .verifying_key()
        .verify(msg, &signing.sign(msg))
        .map_err(|e| anyhow!("key self-check failed: {e}"))?;
    let public = signing.verifying_key().to_bytes();
    let id = hex::encode(key_id(&public));
    let secret_path = out.with_extension("key");
    let public_path = out.with_extension("pub");
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if !force && public_path.exists() {
        bail!(
            "{} already exists; refusing to overwrite a key (pass --force)",
            public_path.display()
        );
    }
    let secret = serde_json::to_vec_pretty(&SecretFile {
        kind: SECRET_TYPE.into(),
        role: role.name().into(),
        keyid: id.clone(),
        secret: hex::encode(seed),
    })?;
    write_new(&secret_path, &secret, 0o600, force)?;
    let public_json = serde_json::to_vec_pretty(&PublicFile {
        kind: PUBLIC_TYPE.into(),
        role: role.name().into(),
        keyid: id,
        public: hex::encode(public),
    })?;
    write_new(&public_path, &public_json, 0o644, force)?;
    Ok(KeyPair::from_seed(role, signing, secret_path))
}

/// Generate a fresh random key pair.
pub fn generate(out: &Path, role: Role, force: bool) -> Result<KeyPair> {
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    write_keypair(out, role, seed, force)
}

fn hex32(s: &str, what: &str, path: &Path) -> Result<[u8; 32]> {
    let v = hex::decode(s).with_context(|| format!("{}: {what} is not hex", path.display()))?;
    v.try_into()
        .map_err(|_| anyhow!("{}: {what} must be 32 bytes", path.display()))
}

/// Load a secret key file, checking its key id.
pub fn load_secret(path: &Path) -> Result<KeyPair> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "warning: {} is readable by other users; run chmod 600 on it",
            path.display()
        );
    }
    let f: SecretFile = serde_json::from_slice(&fs::read(path)?)
        .with_context(|| format!("{} is not a consentry secret key file", path.display()))?;
    if f.kind != SECRET_TYPE {
        bail!(
            "{}: type is `{}`, expected `{SECRET_TYPE}`",
            path.display(),
            f.kind
        );
    }
    let role = Role::parse(&f.role).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let signing = SigningKey::from_bytes(&hex32(&f.secret, "secret", path)?);
    let kp = KeyPair::from_seed(role, signing, path.to_path_buf());
    if hex::encode(kp.id()) != f.keyid {
        bail!(
            "{}: keyid does not match the key; the file was edited or damaged",
            path.display()
        );
    }
    Ok(kp)
}

/// Load a public key file, checking its key id.
pub fn load_public(path: &Path) -> Result<PublicKey> {
    let f: PublicFile = serde_json::from_slice(
        &fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a consentry public key file", path.display()))?;
    if f.kind != PUBLIC_TYPE {
        bail!(
            "{}: type is `{}`, expected `{PUBLIC_TYPE}`",
            path.display(),
            f.kind
        );
    }
    let role = Role::parse(&f.role).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let public = hex32(&f.public, "public", path)?;
    if hex::encode(key_id(&public)) != f.keyid {
        bail!("{}: keyid does not match the key", path.display());
    }
    consentry::envelope::load_key(&public).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(PublicKey {
        role,
        public,
        path: path.to_path_buf(),
    })
}

fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading keys directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    Ok(out)
}

/// All secret keys in the given directories.
pub fn load_secrets(dirs: &[PathBuf]) -> Result<Vec<KeyPair>> {
    let mut out = Vec::new();
    for d in dirs {
        for p in files_with_ext(d, "key")? {
            out.push(load_secret(&p)?);
        }
    }
    Ok(out)
}

/// The keys that sign online documents (manifest, head): every `.key` in
/// `dir`, and, with an external `signer`, every manifest or head `.pub` in
/// `dir` without its `.key` (the signer holds that secret).
pub fn load_online(
    dir: &Path,
    signer: Option<(&Path, std::time::Duration)>,
) -> Result<Vec<KeyPair>> {
    let mut out = load_secrets(&[dir.to_path_buf()])?;
    let Some((program, timeout)) = signer else {
        return Ok(out);
    };
    for p in load_publics(dir)? {
        if matches!(p.role, Role::Root) || out.iter().any(|k| k.public() == p.public) {
            continue;
        }
        out.push(KeyPair {
            role: p.role,
            secret: Secret::External {
                program: program.to_path_buf(),
                public: p.public,
                timeout,
            },
            path: p.path,
        });
    }
    Ok(out)
}

/// The reference external signer: sign standard input (at most a
/// manifest's size) with the secret key `keyid` of `role` found in `dir`.
pub fn sign_stdin(dir: &Path, role: Role, keyid: &str) -> Result<[u8; 64]> {
    use std::io::Read;
    let limit = consentry::Limits::default().max_manifest_bytes + 4096;
    let mut msg = Vec::new();
    std::io::stdin()
        .take(limit + 1)
        .read_to_end(&mut msg)
        .context("reading the message on stdin")?;
    if msg.len() as u64 > limit {
        bail!("the message on stdin is larger than any head or manifest ({limit} bytes)");
    }
    let keys = load_secrets(&[dir.to_path_buf()])?;
    let key = keys
        .iter()
        .find(|k| hex::encode(k.id()) == keyid.to_ascii_lowercase() && k.role == role)
        .ok_or_else(|| {
            crate::advise!(
                "no {} key {} in {}",
                "put that key's .key file in the signer's --keys directory",
                role.name(),
                keyid,
                dir.display()
            )
        })?;
    key.sign(&msg)
}

/// All public keys in a directory.
pub fn load_publics(dir: &Path) -> Result<Vec<PublicKey>> {
    files_with_ext(dir, "pub")?
        .iter()
        .map(|p| load_public(p))
        .collect()
}

/// Sign `payload` with every key in `signers` (sorted by key id, so the
/// envelope is deterministic: ed25519 signatures are deterministic too).
pub fn sign_envelope(
    payload_type: &str,
    payload: Vec<u8>,
    signers: &[&KeyPair],
) -> Result<Envelope> {
    let msg = pae(payload_type, &payload);
    let mut sigs: Vec<Sig> = signers
        .iter()
        .map(|k| {
            Ok(Sig {
                sig: k.sign(&msg)?.to_vec(),
                keyid: k.id(),
            })
        })
        .collect::<Result<_>>()?;
    sigs.sort_by_key(|s| s.keyid);
    sigs.dedup_by_key(|s| s.keyid);
    Ok(Envelope {
        payload,
        signatures: sigs,
        payload_type: payload_type.to_string(),
    })
}

/// The secret keys among `keys` whose ids a root lists for `role`, sorted by id.
pub fn signers_for<'a>(keys: &'a [KeyPair], keyids: &[[u8; 32]]) -> Vec<&'a KeyPair> {
    let mut out: Vec<&KeyPair> = keys.iter().filter(|k| keyids.contains(&k.id())).collect();
    out.sort_by_key(|k| k.id());
    out.dedup_by_key(|k| k.id());
    out
}

/// Seed of a well-known INSECURE test key: SHA-256 of
/// `"consentry INSECURE test key {role}-{n}"`. Anyone can recompute it; such
/// keys sign demos, tests and test vectors only.
pub fn insecure_seed(role: Role, n: u32) -> [u8; 32] {
    consentry::envelope::sha256(
        format!("consentry INSECURE test key {}-{n}", role.name()).as_bytes(),
    )
}

/// Write the INSECURE test key pairs `INSECURE-{role}-{n}` into `dir`, one per
/// role (n = 1), and return them.
pub fn write_insecure_keys(dir: &Path, force: bool) -> Result<Vec<KeyPair>> {
    [Role::Root, Role::Manifest, Role::Head]
        .into_iter()
        .map(|r| {
            write_keypair(
                &dir.join(format!("INSECURE-{}-1", r.name())),
                r,
                insecure_seed(r, 1),
                force,
            )
        })
        .collect()
}
