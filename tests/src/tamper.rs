//! Tools to plant one defect in a published site: read its documents, change
//! them, re-sign them with chosen keys, and write them back — so an attack test
//! can build exactly the file an attacker (or a stolen key) would serve.

use std::path::{Path, PathBuf};

use consentry::cbor;
use consentry::columns;
use consentry::docs::{FileRef, Head, Manifest, Root, paths};
use consentry::envelope::{Envelope, HEAD_TYPE, MANIFEST_TYPE, ROOT_TYPE, sha256};
use consentry_publish::keys::{KeyPair, load_secret, sign_envelope};

/// A site directory being tampered with.
#[derive(Debug, Clone)]
pub struct Site {
    pub dir: PathBuf,
}

/// Load a secret key file.
pub fn key(path: &Path) -> KeyPair {
    load_secret(path).expect("load key")
}

impl Site {
    pub fn new(dir: &Path) -> Site {
        Site {
            dir: dir.to_path_buf(),
        }
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.join(rel)).unwrap_or_else(|e| panic!("remove {rel}: {e}"));
    }

    pub fn envelope(&self, rel: &str) -> Envelope {
        cbor::from_slice_canonical(&self.read(rel)).expect("envelope")
    }

    pub fn head(&self) -> Head {
        cbor::from_slice_canonical(&self.envelope(paths::HEAD).payload).expect("head")
    }

    /// The manifest the head names, and its file name.
    pub fn manifest(&self) -> (Manifest, String) {
        let h = self.head();
        let rel = paths::manifest(h.manifest.version, &h.manifest.sha256);
        (
            cbor::from_slice_canonical(&self.envelope(&rel).payload).expect("manifest"),
            rel,
        )
    }

    pub fn root(&self, version: u64) -> Root {
        cbor::from_slice_canonical(&self.envelope(&paths::root(version)).payload).expect("root")
    }

    /// Sign and write a head.
    pub fn put_head(&self, head: &Head, signers: &[&KeyPair]) {
        self.write(
            paths::HEAD,
            &sign_envelope(HEAD_TYPE, cbor::to_vec(head), signers)
                .unwrap()
                .to_bytes(),
        );
    }

    /// Sign and write a manifest, and a head (version + 1, signed by
    /// `head_signers`) that names it. Returns the manifest's file name.
    pub fn put_manifest(
        &self,
        m: &Manifest,
        manifest_signers: &[&KeyPair],
        head_signers: &[&KeyPair],
    ) -> String {
        let bytes = sign_envelope(MANIFEST_TYPE, cbor::to_vec(m), manifest_signers)
            .unwrap()
            .to_bytes();
        self.put_manifest_bytes(m.version, &bytes, head_signers)
    }

    /// Write raw manifest envelope bytes and a head naming them.
    pub fn put_manifest_bytes(
        &self,
        version: u64,
        bytes: &[u8],
        head_signers: &[&KeyPair],
    ) -> String {
        let h = sha256(bytes);
        let rel = paths::manifest(version, &h);
        self.write(&rel, bytes);
        let mut head = self.head();
        head.version += 1;
        head.manifest.version = version;
        head.manifest.sha256 = h;
        head.manifest.length = bytes.len() as u64;
        self.put_head(&head, head_signers);
        rel
    }

    /// Sign and write a root version.
    pub fn put_root(&self, root: &Root, signers: &[&KeyPair]) {
        self.write(
            &paths::root(root.version),
            &sign_envelope(ROOT_TYPE, cbor::to_vec(root), signers)
                .unwrap()
                .to_bytes(),
        );
    }

    /// Write a data file from a raw (uncompressed) payload under `dir`
    /// (`shard`, `layer` or `prefix`) and return its reference.
    pub fn put_data(&self, dir: &str, raw: &[u8], count: u64) -> FileRef {
        let bytes = columns::compress(raw);
        self.put_data_bytes(dir, &bytes, raw.len() as u64, count)
    }

    /// Write already-compressed bytes as a data file.
    pub fn put_data_bytes(&self, dir: &str, bytes: &[u8], raw_length: u64, count: u64) -> FileRef {
        let h = sha256(bytes);
        self.write(&format!("{dir}/{}.zst", hex::encode(h)), bytes);
        FileRef {
            count,
            length: bytes.len() as u64,
            sha256: h,
            raw_length,
        }
    }

    /// Decompressed payload of a data file.
    pub fn raw(&self, rel: &str) -> Vec<u8> {
        zstd::decode_all(self.read(rel).as_slice()).expect("zstd")
    }
}

/// Recompute a manifest's state root after its leaves or files changed.
pub fn reroot(m: &mut Manifest) {
    m.state_root = consentry::state::merkle_root(&consentry::state::leaves_of(m));
}

/// Copy a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in walk(from) {
        let rel = e.strip_prefix(from).expect("prefix");
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&e, &dest).expect("copy");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
