//! Checkpoints of the manifest log and their witness cosignatures (SPEC.md
//! §15), in the C2SP formats every transparency-log witness speaks:
//! `signed-note` (the envelope), `tlog-checkpoint` (the body: origin, tree
//! size, root hash) and `tlog-cosignature` (a witness's timestamped
//! signature). Parsing and verification only: no I/O, no clock.
//!
//! The log is the manifest chain: leaf `i` is the SHA-256 of the file bytes
//! of manifest version `i + 1`, so a checkpoint of size `n` commits to every
//! manifest up to version `n` and a fork of the chain (two manifests with
//! one version shown to two verifiers) is two checkpoints that no
//! append-only growth reconciles.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// Ed25519 signature type byte of C2SP signed-note key hashes.
pub const ALG_ED25519: u8 = 0x01;
/// Signature type byte of C2SP `cosignature/v1` key hashes.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// The first line of a cosigned message.
pub const COSIGNATURE_HEADER: &str = "cosignature/v1";
/// The em dash that starts every signature line.
const DASH: &str = "\u{2014} ";

/// Most bytes of a checkpoint note (text and signature lines).
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
/// Most signature lines on one note.
pub const MAX_NOTE_SIGNATURES: usize = 64;

/// A checkpoint body: what the log and its witnesses sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
}

impl Checkpoint {
    /// The note text: origin, size and base64 root hash, one per line (no
    /// extension lines).
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parse a note text as a checkpoint body. Extension lines are refused:
    /// this log writes none, so one is a sign of another log's note.
    pub fn parse_text(text: &str) -> Result<Checkpoint, String> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err("the checkpoint text must end with a newline".into());
        };
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root] = lines.as_slice() else {
            return Err(format!(
                "a checkpoint has 3 lines (origin, tree size, root hash), this one {}",
                lines.len()
            ));
        };
        check_name(origin, "origin")?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(format!(
                "tree size {size:?} is not a decimal number without leading zeros"
            ));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| format!("tree size {size} is out of range"))?;
        let root = B64
            .decode(root)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .filter(|r| B64.encode(r) == *root)
            .ok_or_else(|| "the root hash is not 32 bytes of canonical base64".to_string())?;
        Ok(Checkpoint {
            origin: (*origin).to_string(),
            size,
            root,
        })
    }
}

/// A name (origin, key name): printable ASCII without spaces or `+`,
/// 1–255 bytes, as C2SP signed notes require of key names.
fn check_name(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'+') {
        return Err(format!(
            "{what} {s:?} must be 1 to 255 printable ASCII characters without spaces or '+'"
        ));
    }
    Ok(())
}

/// One signature line of a note, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigLine {
    pub name: String,
    pub key_hash: [u8; 4],
    /// The bytes after the key hash: a 64-byte signature, or for a
    /// cosignature an 8-byte timestamp and a 64-byte signature.
    pub sig: Vec<u8>,
}

impl SigLine {
    pub fn line(&self) -> String {
        let mut blob = self.key_hash.to_vec();
        blob.extend_from_slice(&self.sig);
        format!("{DASH}{} {}\n", self.name, B64.encode(blob))
    }
}

/// A parsed note: its text (what is signed) and signature lines, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub sigs: Vec<SigLine>,
}

impl Note {
    /// Parse a signed note strictly: UTF-8, at most [`MAX_NOTE_BYTES`], text
    /// ending in a newline, one blank line, then 1 to
    /// [`MAX_NOTE_SIGNATURES`] lines `— NAME BASE64` each ending in a
    /// newline, nothing after.
    pub fn parse(bytes: &[u8]) -> Result<Note, String> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(format!("a note is at most {MAX_NOTE_BYTES} bytes"));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| "a note must be UTF-8".to_string())?;
        let Some(split) = s.find("\n\n") else {
            return Err("a note needs a blank line between its text and signatures".into());
        };
        let (text, rest) = (&s[..=split], &s[split + 2..]);
        if rest.is_empty() {
            return Err("a note needs at least one signature line".into());
        }
        let Some(rest) = rest.strip_suffix('\n') else {
            return Err("the last signature line must end with a newline".into());
        };
        let mut sigs = Vec::new();
        for line in rest.split('\n') {
            if sigs.len() == MAX_NOTE_SIGNATURES {
                return Err(format!(
                    "a note carries at most {MAX_NOTE_SIGNATURES} signatures"
                ));
            }
            let Some(body) = line.strip_prefix(DASH) else {
                return Err(format!(
                    "signature line {line:?} does not start with an em dash and a space"
                ));
            };
            let Some((name, b64)) = body.split_once(' ') else {
                return Err(format!("signature line {line:?} has no signature"));
            };
            check_name(name, "key name")?;
            let blob = B64
                .decode(b64)
                .ok()
                .filter(|v| v.len() > 4 && B64.encode(v) == b64)
                .ok_or_else(|| {
                    format!("signature of {name} is not canonical base64 of more than 4 bytes")
                })?;
            let mut key_hash = [0u8; 4];
            key_hash.copy_from_slice(&blob[..4]);
            sigs.push(SigLine {
                name: name.to_string(),
                key_hash,
                sig: blob[4..].to_vec(),
            });
        }
        Ok(Note {
            text: text.to_string(),
            sigs,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = self.text.clone();
        s.push('\n');
        for l in &self.sigs {
            s.push_str(&l.line());
        }
        s.into_bytes()
    }
}

/// The 4-byte key hash of C2SP signed notes: SHA-256(name ‖ LF ‖ type ‖ key).
pub fn key_hash(name: &str, alg: u8, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public);
    let d: [u8; 32] = h.finalize().into();
    [d[0], d[1], d[2], d[3]]
}

/// The message a witness signs: `cosignature/v1`, `time T`, the checkpoint
/// text.
pub fn cosigned_message(text: &str, time: u64) -> Vec<u8> {
    format!("{COSIGNATURE_HEADER}\ntime {time}\n{text}").into_bytes()
}

/// Whether `line` is a valid log signature by `key` named `name` over `text`.
pub fn log_signature_valid(line: &SigLine, name: &str, key: &VerifyingKey, text: &str) -> bool {
    line.name == name
        && line.key_hash == key_hash(name, ALG_ED25519, key.as_bytes())
        && <[u8; 64]>::try_from(line.sig.as_slice()).is_ok_and(|b| {
            key.verify_strict(text.as_bytes(), &Signature::from_bytes(&b))
                .is_ok()
        })
}

/// The timestamp of `line` if it is a valid `cosignature/v1` by `key` named
/// `name` over `text`.
pub fn cosignature_valid(
    line: &SigLine,
    name: &str,
    key: &VerifyingKey,
    text: &str,
) -> Option<u64> {
    if line.name != name
        || line.key_hash != key_hash(name, ALG_COSIGNATURE_V1, key.as_bytes())
        || line.sig.len() != 72
    {
        return None;
    }
    let time = u64::from_be_bytes(line.sig[..8].try_into().ok()?);
    let sig = <[u8; 64]>::try_from(&line.sig[8..]).ok()?;
    key.verify_strict(&cosigned_message(text, time), &Signature::from_bytes(&sig))
        .is_ok()
        .then_some(time)
}

/// A cosignature line for `text` at `time`, from the 64-byte signature of
/// [`cosigned_message`].
pub fn cosignature_line(name: &str, public: &[u8; 32], time: u64, sig: &[u8; 64]) -> SigLine {
    let mut blob = time.to_be_bytes().to_vec();
    blob.extend_from_slice(sig);
    SigLine {
        name: name.to_string(),
        key_hash: key_hash(name, ALG_COSIGNATURE_V1, public),
        sig: blob,
    }
}

/// A log signature line for `text`, from its 64-byte signature.
pub fn log_signature_line(name: &str, public: &[u8; 32], sig: &[u8; 64]) -> SigLine {
    SigLine {
        name: name.to_string(),
        key_hash: key_hash(name, ALG_ED25519, public),
        sig: sig.to_vec(),
    }
}

/// A C2SP verifier key: `NAME+KEYHASH+BASE64(type ‖ public key)`, the
/// form witnesses and logs publish their keys in.
pub fn vkey(name: &str, alg: u8, public: &[u8; 32]) -> String {
    let mut blob = vec![alg];
    blob.extend_from_slice(public);
    format!(
        "{name}+{}+{}",
        hex::encode(key_hash(name, alg, public)),
        B64.encode(blob)
    )
}

/// Parse a C2SP verifier key of signature type `alg`: the name and the
/// ed25519 public key, the key hash checked.
pub fn parse_vkey(s: &str, alg: u8) -> Result<(String, [u8; 32]), String> {
    let s = s.trim();
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(hash), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{s:?} is not a verifier key NAME+KEYHASH+BASE64"));
    };
    check_name(name, "key name")?;
    let blob = B64
        .decode(b64)
        .map_err(|_| format!("the key of {name} is not base64"))?;
    if blob.len() != 33 || blob[0] != alg {
        return Err(format!(
            "the key of {name} is not a type 0x{alg:02x} ed25519 key (a witness key is a cosignature/v1 key, type 0x04)"
        ));
    }
    let mut public = [0u8; 32];
    public.copy_from_slice(&blob[1..]);
    if hash != hex::encode(key_hash(name, alg, &public)) {
        return Err(format!("the key hash of {name} does not match its key"));
    }
    Ok((name.to_string(), public))
}

/// The log's leaves from a `log/leaves` file: concatenated 32-byte hashes.
pub fn parse_leaves(bytes: &[u8]) -> Result<Vec<[u8; 32]>, String> {
    if !bytes.len().is_multiple_of(32) {
        return Err(format!(
            "{} bytes is not a whole number of 32-byte leaves",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut l = [0u8; 32];
            l.copy_from_slice(c);
            l
        })
        .collect())
}

/// Most consistency-proof lines an add-checkpoint request may carry
/// (C2SP tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;

/// A C2SP `tlog-witness` add-checkpoint request body (SPEC.md §15.6): the size the
/// client believes the witness cosigned last, a consistency proof from it,
/// and the checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<[u8; 32]>,
    pub note: Vec<u8>,
}

impl AddCheckpoint {
    /// `old N\n`, one standard-base64 hash per line, an empty line, the note.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old);
        for h in &self.proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.note);
        out
    }

    /// Parse a request body; anything but the exact syntax is refused.
    pub fn parse(bytes: &[u8]) -> Result<AddCheckpoint, String> {
        if bytes.len() > MAX_NOTE_BYTES + 64 * (MAX_PROOF_LINES + 1) {
            return Err("the request is too large".into());
        }
        let mut rest = bytes;
        let mut line = || -> Result<&[u8], String> {
            let i = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or("a line does not end in a newline")?;
            let (l, r) = rest.split_at(i);
            rest = &r[1..];
            Ok(l)
        };
        let first = std::str::from_utf8(line()?).map_err(|_| "the old size line is not text")?;
        let old = first
            .strip_prefix("old ")
            .filter(|d| {
                !d.is_empty()
                    && d.bytes().all(|b| b.is_ascii_digit())
                    && (d == &"0" || !d.starts_with('0'))
            })
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or("the first line must be `old N` (N decimal, no leading zero)")?;
        let mut proof = Vec::new();
        loop {
            let l = line()?;
            if l.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(format!(
                    "more than {MAX_PROOF_LINES} consistency proof lines"
                ));
            }
            let h: [u8; 32] = B64
                .decode(l)
                .ok()
                .and_then(|v| v.try_into().ok())
                .filter(|h: &[u8; 32]| B64.encode(h).as_bytes() == l)
                .ok_or("a consistency proof line is not one canonical base64 SHA-256 hash")?;
            proof.push(h);
        }
        if old == 0 && !proof.is_empty() {
            return Err("a proof from size 0 must be empty".into());
        }
        Ok(AddCheckpoint {
            old,
            proof,
            note: rest.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn cp() -> Checkpoint {
        Checkpoint {
            origin: "example.org/consentry".into(),
            size: 7,
            root: [9u8; 32],
        }
    }

    #[test]
    fn a_checkpoint_round_trips_and_a_log_signature_verifies() {
        let sk = SigningKey::from_bytes(&[1u8; 32]);
        let c = cp();
        let text = c.text();
        assert_eq!(Checkpoint::parse_text(&text).unwrap(), c);
        let line = log_signature_line(
            &c.origin,
            &sk.verifying_key().to_bytes(),
            &sk.sign(text.as_bytes()).to_bytes(),
        );
        let note = Note {
            text: text.clone(),
            sigs: vec![line],
        };
        let back = Note::parse(&note.to_bytes()).unwrap();
        assert_eq!(back, note);
        assert!(log_signature_valid(
            &back.sigs[0],
            &c.origin,
            &sk.verifying_key(),
            &back.text
        ));
        // Another text, or another name: not valid.
        assert!(!log_signature_valid(
            &back.sigs[0],
            &c.origin,
            &sk.verifying_key(),
            "x\n1\nAA==\n"
        ));
        assert!(!log_signature_valid(
            &back.sigs[0],
            "other",
            &sk.verifying_key(),
            &back.text
        ));
    }

    #[test]
    fn a_cosignature_binds_its_time_and_text() {
        let sk = SigningKey::from_bytes(&[2u8; 32]);
        let text = cp().text();
        let sig = sk.sign(&cosigned_message(&text, 1_700_000_000)).to_bytes();
        let line = cosignature_line(
            "witness-1",
            &sk.verifying_key().to_bytes(),
            1_700_000_000,
            &sig,
        );
        assert_eq!(
            cosignature_valid(&line, "witness-1", &sk.verifying_key(), &text),
            Some(1_700_000_000)
        );
        let mut later = line.clone();
        later.sig[7] ^= 1;
        assert_eq!(
            cosignature_valid(&later, "witness-1", &sk.verifying_key(), &text),
            None
        );
    }

    #[test]
    fn malformed_notes_and_checkpoints_are_refused() {
        for bad in [
            "o\n1\n",                       // no blank line
            "o\n1\nAA==\n\n",               // no signature
            "o\n1\nAA==\n\n- k AAAAAAA=\n", // hyphen, not an em dash
        ] {
            assert!(Note::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let root = B64.encode([0u8; 32]);
        for bad in [
            format!("o\n01\n{root}\n"),
            format!("o\n1\n{root}\next\n"),
            format!("o o\n1\n{root}\n"),
            "o\n1\nAA==\n".to_string(),
            format!("o\n1\n{root}"),
        ] {
            assert!(Checkpoint::parse_text(&bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod vector {
    //! The known-answer example of SPEC.md §15.2: log key seed 32×0x01
    //! (origin `example.org/log`), leaves SHA-256("manifest 1".."manifest 3"),
    //! witness `witness.example` with seed 32×0x02 cosigning at 1767225600.
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    pub(super) fn example() -> (String, String) {
        let leaves: Vec<[u8; 32]> = (1..=3)
            .map(|i| Sha256::digest(format!("manifest {i}").as_bytes()).into())
            .collect();
        let cp = Checkpoint {
            origin: "example.org/log".into(),
            size: 3,
            root: crate::merkle::merkle_root(&leaves),
        };
        let text = cp.text();
        let log = SigningKey::from_bytes(&[1u8; 32]);
        let wit = SigningKey::from_bytes(&[2u8; 32]);
        let t = 1_767_225_600;
        let n = Note {
            text: text.clone(),
            sigs: vec![
                log_signature_line(
                    &cp.origin,
                    &log.verifying_key().to_bytes(),
                    &log.sign(text.as_bytes()).to_bytes(),
                ),
                cosignature_line(
                    "witness.example",
                    &wit.verifying_key().to_bytes(),
                    t,
                    &wit.sign(&cosigned_message(&text, t)).to_bytes(),
                ),
            ],
        };
        (
            String::from_utf8(n.to_bytes()).unwrap_or_default(),
            vkey(
                "witness.example",
                ALG_COSIGNATURE_V1,
                &wit.verifying_key().to_bytes(),
            ),
        )
    }

    #[test]
    fn spec_example_note_is_reproduced_byte_for_byte() {
        let (note, vk) = example();
        let spec = include_str!("../../SPEC.md");
        assert!(
            spec.contains(&note),
            "SPEC.md §15.2 example differs; now:\n{note}"
        );
        assert!(
            spec.contains(&vk),
            "SPEC.md §15.4 witness key differs; now: {vk}"
        );
    }
}

#[cfg(test)]
mod request_tests {
    use super::*;

    #[test]
    fn add_checkpoint_requests_round_trip_and_refuse_what_c2sp_does_not_allow() {
        let note = b"example.org/log\n2\nAAAA\n\n".to_vec();
        let req = AddCheckpoint {
            old: 1,
            proof: vec![[7u8; 32]],
            note: note.clone(),
        };
        let bytes = req.to_bytes();
        assert!(bytes.starts_with(b"old 1\nBwcH"));
        assert_eq!(AddCheckpoint::parse(&bytes).unwrap(), req);
        let line = B64.encode([7u8; 32]);
        for bad in [
            format!("old 01\n{line}\n\n"),
            "old -1\n\n".to_string(),
            format!("old 1\n{line}"),
            format!("old 1\n{}\n\n", &line[..40]),
            format!("old 0\n{line}\n\n"),
            "new 1\n\n".to_string(),
            format!("old 1\n{}\n\n", line.replace('=', "")),
            format!(
                "old 1\n{}\n",
                format!("{line}\n").repeat(MAX_PROOF_LINES + 1)
            ),
        ] {
            assert!(AddCheckpoint::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
