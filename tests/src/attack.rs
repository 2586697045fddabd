//! Building blocks for the adversarial suite: how a refusal is recognised,
//! hand-made envelopes and signatures (duplicates, wrong roles, malleated
//! `S`), column blobs that break one rule at a time, zstd frames that expand
//! without bound, and raw tar headers that the tar crate's safe setters refuse.

use std::io::Write;
use std::path::Path;

use consentry::columns::{Columns, KeyColumns};
use consentry::envelope::{Envelope, Sig, pae};
use consentry_publish::keys::KeyPair;

use crate::Run;

/// Whether `stderr` names the SPEC.md §9 error `code` — as the CLI prints it
/// (`error: CODE: …`) or as a [`consentry::Rejection`] displays it (`… [CODE]`).
pub fn names_code(stderr: &str, code: &str) -> bool {
    stderr.contains(&format!("[{code}]")) || stderr.contains(&format!("error: {code}:"))
}

/// Assert a run was refused: exit 2 and stderr naming `code`.
#[track_caller]
pub fn assert_refused(run: &Run, code: &str) {
    assert!(
        run.code == 2 && names_code(&run.stderr, code),
        "expected exit 2 naming [{code}], got exit {}\n--- stdout\n{}\n--- stderr\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
}

/// One ed25519 signature by `key` over PAE(`payload_type`, `payload`).
pub fn sign(key: &KeyPair, payload_type: &str, payload: &[u8]) -> Sig {
    Sig {
        sig: key
            .sign(&pae(payload_type, payload))
            .expect("a seed key signs")
            .to_vec(),
        keyid: key.id(),
    }
}

/// Envelope bytes with exactly these signatures, in this order (no sorting,
/// no de-duplication — unlike the publisher's `sign_envelope`).
pub fn envelope_bytes(payload_type: &str, payload: Vec<u8>, signatures: Vec<Sig>) -> Vec<u8> {
    Envelope {
        payload,
        signatures,
        payload_type: payload_type.to_string(),
    }
    .to_bytes()
}

/// The order of the ed25519 base point group, ℓ = 2^252 +
/// 27742317777372353535851937790883648493, little-endian.
pub const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The malleated twin of a valid signature: `S + ℓ` in place of `S`. It is the
/// same scalar mod ℓ, so a verifier that reduces `S` instead of refusing
/// `S ≥ ℓ` accepts it; `verify_strict` must not.
pub fn malleate(sig: &[u8]) -> Vec<u8> {
    assert_eq!(sig.len(), 64);
    let mut out = sig.to_vec();
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(out[32 + i]) + u16::from(ELL[i]) + carry;
        out[32 + i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "S + ℓ fits in 256 bits for any S < ℓ");
    out
}

/// A minimal LEB128 varint.
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One row of a column blob as written: key, seq, id, index into the file's
/// own policy table.
pub use consentry::columns::RawRow;

/// The rows of a (valid) column blob.
pub fn rows_of(c: &Columns) -> Vec<RawRow> {
    consentry::columns::raw_of_columns(c).expect("well-formed column blobs")
}

/// Column blobs holding exactly `rows` in the given order — which may break
/// the order rules — with `policies` as the table (ids written literally,
/// key deltas as plain varints). Keys must not decrease (they are
/// delta-coded); equal keys with a smaller seq make rows unsorted.
pub fn columns_of(rows: &[RawRow], policies: Vec<consentry::model::Policy>) -> Columns {
    assert!(
        rows.windows(2).all(|w| w[0].key <= w[1].key),
        "keys never decrease"
    );
    consentry::columns::columns_from_raw(rows, policies, "", 0)
}

/// The `(key, seq)` pairs of a deletion column.
pub fn dels_of(k: &KeyColumns) -> Vec<(u64, u64)> {
    consentry::columns::raw_of_key_columns(k).expect("a well-formed deletion column")
}

/// A deletion column holding `dels` in order.
pub fn key_columns_of(dels: &[(u64, u64)]) -> KeyColumns {
    consentry::columns::key_columns_from_raw(dels, 0)
}

/// A zstd frame (RFC 8878) built by hand from RLE blocks: `content` bytes of
/// `byte`, declared in the frame header, with a window of 2^`window_log`. Each
/// 4-byte block expands to up to 128 KiB, so 4 GiB of output costs 128 KiB of
/// input: a decompression bomb that is also a perfectly valid frame.
pub fn zstd_rle_bomb(content: u64, window_log: u32, byte: u8) -> Vec<u8> {
    assert!((10..=41).contains(&window_log));
    let mut out = vec![0x28, 0xB5, 0x2F, 0xFD];
    // Frame header descriptor: 8-byte content size, not single-segment, no
    // checksum, no dictionary.
    out.push(0b1100_0000);
    // Window descriptor: exponent only.
    out.push(((window_log - 10) << 3) as u8);
    out.extend_from_slice(&content.to_le_bytes());
    let block_max = (1u64 << window_log).min(128 * 1024);
    let mut left = content;
    while left > 0 {
        let n = left.min(block_max);
        left -= n;
        let header = u32::from(left == 0) | (1 << 1) | ((n as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(byte);
    }
    out
}

/// A zstd frame holding `content` in raw (stored) blocks, declaring a window
/// of 2^`window_log`: a valid frame whose only fault, if any, is its window.
pub fn zstd_raw_frame(content: &[u8], window_log: u32) -> Vec<u8> {
    assert!((10..=41).contains(&window_log));
    let mut out = vec![
        0x28,
        0xB5,
        0x2F,
        0xFD,
        0b1100_0000,
        ((window_log - 10) << 3) as u8,
    ];
    out.extend_from_slice(&(content.len() as u64).to_le_bytes());
    let block_max = (1usize << window_log.min(20)).min(128 * 1024);
    let mut chunks = content.chunks(block_max).peekable();
    if content.is_empty() {
        out.extend_from_slice(&1u32.to_le_bytes()[..3]);
    }
    while let Some(c) = chunks.next() {
        let header = u32::from(chunks.peek().is_none()) | ((c.len() as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(c);
    }
    out
}

/// One tar entry written with a raw header.
#[derive(Debug, Clone)]
pub struct TarEntry {
    /// The name bytes exactly as they go into the 100-byte name field.
    pub name: Vec<u8>,
    pub kind: tar::EntryType,
    pub data: Vec<u8>,
    /// Link target (symlinks, hard links).
    pub link: Option<String>,
    /// Device numbers (character and block devices).
    pub device: Option<(u32, u32)>,
}

impl TarEntry {
    pub fn file(name: &str, data: &[u8]) -> TarEntry {
        TarEntry {
            name: name.as_bytes().to_vec(),
            kind: tar::EntryType::Regular,
            data: data.to_vec(),
            link: None,
            device: None,
        }
    }

    pub fn special(name: &str, kind: tar::EntryType) -> TarEntry {
        TarEntry {
            name: name.as_bytes().to_vec(),
            kind,
            data: Vec::new(),
            link: None,
            device: None,
        }
    }
}

/// Write a tar archive whose headers carry exactly the given names and types:
/// the name field is set byte for byte (the tar crate's `set_path` refuses
/// `..` and absolute names, which is precisely what an attacker would write).
pub fn write_tar(path: &Path, entries: &[TarEntry]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).expect("create tar"));
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..e.name.len()].copy_from_slice(&e.name);
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        if let Some(l) = &e.link {
            // Raw bytes: an absolute or `..` target is exactly the point.
            let old = h.as_old_mut();
            old.linkname = [0; 100];
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        if let Some((major, minor)) = e.device {
            h.set_device_major(major).expect("major");
            h.set_device_minor(minor).expect("minor");
        }
        h.set_cksum();
        b.append(&h, e.data.as_slice()).expect("append");
    }
    b.into_inner().expect("finish").flush().expect("flush");
}

/// Every file of a site directory as a regular tar entry, sorted by name.
pub fn site_entries(dir: &Path) -> Vec<TarEntry> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned();
                files.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    files.sort();
    files.iter().map(|(n, b)| TarEntry::file(n, b)).collect()
}
