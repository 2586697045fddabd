//! A published site on disk, read back through the verifier's own checks, and
//! atomic writes into it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use consentry::columns;
use consentry::docs::{FileRef, Head, Manifest, Root, paths};
use consentry::envelope::sha256;
use consentry::error::VResult;
use consentry::fetch::io_error;
use consentry::limits::Limits;
use consentry::rebuild;
use consentry::verify::{self, Expiry};

/// The site's current, verified state.
#[derive(Debug, Clone)]
pub struct Current {
    pub head: Head,
    pub head_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_sha256: [u8; 32],
}

/// A site directory.
#[derive(Debug, Clone)]
pub struct Site {
    pub dir: PathBuf,
    pub limits: Limits,
}

impl Site {
    pub fn new(dir: &Path) -> Site {
        Site {
            dir: dir.to_path_buf(),
            limits: Limits::DEFAULT,
        }
    }

    /// Take the site's writer lock (see [`crate::lock`]) and remove what
    /// killed runs left behind (`.tmp*` files), which only the holder may do.
    pub fn lock(
        &self,
        command: &str,
        wait: std::time::Duration,
        waiting: &dyn Fn(&str),
    ) -> Result<crate::lock::SiteLock> {
        let lock = crate::lock::SiteLock::acquire(&self.dir, command, wait, waiting)?;
        consentry::leftovers::remove_tmp_files(&self.dir, &[]);
        Ok(lock)
    }

    /// Refuse to write under a lock taken on another directory.
    pub fn check_lock(&self, lock: &crate::lock::SiteLock) -> Result<()> {
        if lock.path() != self.dir.as_path() {
            bail!(
                "internal: the lock held ({}) is not the lock of site {}",
                lock.path().display(),
                self.dir.display()
            );
        }
        Ok(())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn read(&self, rel: &str) -> Result<Vec<u8>> {
        fs::read(self.path(rel)).with_context(|| format!("reading {}", self.path(rel).display()))
    }

    /// The root chain, verified from `root/1.cbor` up to the newest version.
    pub fn roots(&self) -> Result<Vec<(Root, Vec<u8>)>> {
        let first = self.path(&paths::root(1));
        if !first.exists() {
            return Err(crate::advise!(
                "{} has no root/1.cbor",
                "create the trust root first: consentry-publish root init --keys DIR --site {}",
                self.dir.display(),
                self.dir.display()
            ));
        }
        let bytes = self.read(&paths::root(1))?;
        let root = verify::verify_pinned_root("root/1.cbor", &bytes, &self.limits)?;
        let mut chain = vec![(root.clone(), bytes)];
        // Every root the site holds: it publishes its whole chain.
        verify::walk_roots(
            root,
            u64::MAX,
            &self.limits,
            |v| {
                let rel = paths::root(v);
                match fs::read(self.path(&rel)) {
                    Ok(b) => Ok(Some((rel, b))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_error(&self.path(&rel).display().to_string(), &e)),
                }
            },
            |r, b| chain.push((r.clone(), b)),
        )?;
        Ok(chain)
    }

    /// The newest verified root.
    pub fn root(&self) -> Result<Root> {
        Ok(self.roots()?.pop().map_or_else(
            || unreachable!("roots() returns at least root 1"),
            |(r, _)| r,
        ))
    }

    /// The current head and manifest, verified under `root` or, after a key
    /// rotation, under the newest older root that signed them (expiry ignored:
    /// the publisher reads its own possibly stale state to replace it).
    pub fn current(&self, root: &Root) -> Result<Option<Current>> {
        if !self.path(paths::HEAD).exists() {
            return Ok(None);
        }
        let head_bytes = self.read(paths::HEAD)?;
        let mut roots: Vec<Root> = self
            .roots()?
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| r.version < root.version)
            .collect();
        roots.push(root.clone());
        let mut first_err = None;
        for r in roots.iter().rev() {
            match self.current_under(r, &head_bytes) {
                Ok(c) => return Ok(Some(c)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| anyhow::anyhow!("no root verifies head.cbor")))
    }

    fn current_under(&self, root: &Root, head_bytes: &[u8]) -> Result<Current> {
        let head = verify::verify_head(
            root,
            paths::HEAD,
            head_bytes,
            0,
            Expiry::AllowExpired,
            &self.limits,
        )?;
        let rel = paths::manifest(head.manifest.version, &head.manifest.sha256);
        let manifest_bytes = self.read(&rel)?;
        let manifest = verify::verify_manifest(
            root,
            &head,
            &rel,
            &manifest_bytes,
            0,
            Expiry::AllowExpired,
            &self.limits,
        )?;
        Ok(Current {
            manifest_sha256: sha256(&manifest_bytes),
            head: head.clone(),
            head_bytes: head_bytes.to_vec(),
            manifest,
            manifest_bytes,
        })
    }

    /// Write `bytes` at `rel` atomically (temp file, fsync, rename).
    pub fn write_atomic(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path(rel), bytes)
    }

    /// Write an immutable content-addressed file unless it already holds these
    /// bytes. Returns whether it was written.
    pub fn write_immutable(&self, rel: &str, bytes: &[u8]) -> Result<bool> {
        let p = self.path(rel);
        if let Ok(existing) = fs::read(&p)
            && existing == bytes
        {
            return Ok(false);
        }
        write_atomic(&p, bytes)?;
        Ok(true)
    }
}

/// Temp file in the same directory, fsync, rename, fsync the directory:
/// the verifier's own [`consentry::fsio::write_atomic`], so sites and stores
/// are written (and their leftovers named) the same way.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    consentry::fsio::write_atomic(path, bytes).map_err(anyhow::Error::new)
}

/// The site's data files for the verifier's [`rebuild`] path (the publisher's
/// self-check reads back what it wrote exactly as a verifier would): each
/// refused before reading when its signed length is over the cap, then
/// checked against its signed reference; named by its site name in errors.
#[derive(Debug, Clone, Copy)]
pub struct SiteFiles<'a> {
    site: &'a Site,
}

impl<'a> SiteFiles<'a> {
    pub fn new(site: &'a Site) -> SiteFiles<'a> {
        SiteFiles { site }
    }
}

impl rebuild::DataFiles for SiteFiles<'_> {
    fn open(&mut self, rel: &str, fref: &FileRef) -> VResult<(Vec<u8>, String)> {
        let limits = &self.site.limits;
        rebuild::check_declared_length(rel, fref, limits)?;
        let path = self.site.path(rel);
        let bytes = fs::read(&path).map_err(|e| io_error(&path.display().to_string(), &e))?;
        Ok((
            columns::open_file(rel, &bytes, fref, limits)?,
            rel.to_string(),
        ))
    }
}
