//! Signed envelopes: DSSE's pre-authentication encoding over the exact payload
//! bytes, carried in a canonical CBOR envelope, signed with ed25519.
//!
//! Verification only: signing lives in the publisher, so a verifier binary has
//! no signing code to misuse.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

use crate::cbor;
use crate::error::{Code, VResult, reject};
use crate::limits::Limits;

/// Payload type of a root document.
pub const ROOT_TYPE: &str = "application/vnd.consentry.root+cbor;v=1";
/// Payload type of a head document.
pub const HEAD_TYPE: &str = "application/vnd.consentry.head+cbor;v=1";
/// Payload type of a manifest document.
pub const MANIFEST_TYPE: &str = "application/vnd.consentry.manifest+cbor;v=1";

/// One signature: the key id and the 64-byte ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sig {
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
    #[serde(with = "crate::cbor::bytes32")]
    pub keyid: [u8; 32],
}

/// The envelope. Field order is canonical CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub signatures: Vec<Sig>,
    pub payload_type: String,
}

/// DSSE v1 pre-authentication encoding: the exact bytes that are signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    m.extend_from_slice(b"DSSEv1 ");
    m.extend_from_slice(payload_type.len().to_string().as_bytes());
    m.push(b' ');
    m.extend_from_slice(payload_type.as_bytes());
    m.push(b' ');
    m.extend_from_slice(payload.len().to_string().as_bytes());
    m.push(b' ');
    m.extend_from_slice(payload);
    m
}

/// A key id: SHA-256 of the 32-byte ed25519 public key.
pub fn key_id(public: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(public).into()
}

/// SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Load an ed25519 public key, refusing weak (small-order) keys.
pub fn load_key(public: &[u8; 32]) -> Result<VerifyingKey, String> {
    let k =
        VerifyingKey::from_bytes(public).map_err(|e| format!("not an ed25519 public key: {e}"))?;
    // Refuse non-canonical encodings (a y coordinate ≥ p): one key, one byte
    // string. `to_bytes` would return the bytes as given, so compare with the
    // point's own (canonical) compression.
    if k.to_edwards().compress().to_bytes() != *public {
        return Err("non-canonical ed25519 public key encoding".into());
    }
    if k.is_weak() {
        return Err("weak (small-order) ed25519 public key".into());
    }
    Ok(k)
}

impl Envelope {
    /// Parse an envelope strictly (canonical CBOR, bounded signature count).
    pub fn parse(file: &str, bytes: &[u8], limits: &Limits) -> VResult<Envelope> {
        let env: Envelope = cbor::from_slice_canonical(bytes)
            .map_err(|e| reject(file, Code::MalformedEnvelope, format!("envelope is {e}")))?;
        if env.signatures.len() > limits.max_signatures {
            return Err(reject(
                file,
                Code::TooManySignatures,
                format!(
                    "{} signatures; at most {} are read",
                    env.signatures.len(),
                    limits.max_signatures
                ),
            ));
        }
        Ok(env)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::to_vec(self)
    }

    /// Step "signatures": require `threshold` distinct key ids from `allowed`
    /// with valid strict signatures over PAE(type, payload). Unknown keys and bad
    /// signatures are ignored (they neither count nor fail the file), each key id
    /// counts once.
    pub fn verify(
        &self,
        file: &str,
        expected_type: &str,
        allowed: &[([u8; 32], VerifyingKey)],
        threshold: u64,
        role: &str,
    ) -> VResult<()> {
        if self.payload_type != expected_type {
            return Err(reject(
                file,
                Code::WrongPayloadType,
                format!(
                    "payload type is {:?}, expected {expected_type:?}",
                    self.payload_type
                ),
            ));
        }
        let msg = pae(&self.payload_type, &self.payload);
        let mut good: BTreeSet<[u8; 32]> = BTreeSet::new();
        for s in &self.signatures {
            let Some((_, key)) = allowed.iter().find(|(id, _)| *id == s.keyid) else {
                continue;
            };
            let Ok(bytes) = <[u8; 64]>::try_from(s.sig.as_slice()) else {
                continue;
            };
            if key
                .verify_strict(&msg, &Signature::from_bytes(&bytes))
                .is_ok()
            {
                good.insert(s.keyid);
            }
        }
        if (good.len() as u64) < threshold {
            return Err(reject(
                file,
                Code::ThresholdNotMet,
                format!(
                    "{} valid signature(s) from distinct {role} keys; the root requires {threshold}",
                    good.len()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn allowed(keys: &[&SigningKey]) -> Vec<([u8; 32], VerifyingKey)> {
        keys.iter()
            .map(|k| (key_id(&k.verifying_key().to_bytes()), k.verifying_key()))
            .collect()
    }

    fn sign(payload: &[u8], ty: &str, keys: &[&SigningKey]) -> Envelope {
        let msg = pae(ty, payload);
        Envelope {
            payload: payload.to_vec(),
            signatures: keys
                .iter()
                .map(|k| Sig {
                    sig: k.sign(&msg).to_bytes().to_vec(),
                    keyid: key_id(&k.verifying_key().to_bytes()),
                })
                .collect(),
            payload_type: ty.to_string(),
        }
    }

    fn code(r: VResult<()>) -> Option<Code> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab");
    }

    #[test]
    fn threshold_of_distinct_role_keys_verifies() {
        let (a, b) = (key(1), key(2));
        let env = sign(b"payload", HEAD_TYPE, &[&a, &b]);
        assert_eq!(
            code(env.verify("f", HEAD_TYPE, &allowed(&[&a, &b]), 2, "head")),
            None
        );
    }

    #[test]
    fn signature_by_a_key_outside_the_role_does_not_count() {
        let (a, other) = (key(1), key(9));
        let env = sign(b"payload", HEAD_TYPE, &[&other]);
        assert_eq!(
            code(env.verify("f", HEAD_TYPE, &allowed(&[&a]), 1, "head")),
            Some(Code::ThresholdNotMet)
        );
    }

    #[test]
    fn wrong_payload_type_is_rejected_before_signatures() {
        let a = key(1);
        let env = sign(b"payload", MANIFEST_TYPE, &[&a]);
        assert_eq!(
            code(env.verify("f", HEAD_TYPE, &allowed(&[&a]), 1, "head")),
            Some(Code::WrongPayloadType)
        );
    }

    #[test]
    fn tampered_payload_byte_fails() {
        let a = key(1);
        let mut env = sign(b"payload", HEAD_TYPE, &[&a]);
        env.payload[0] ^= 1;
        assert_eq!(
            code(env.verify("f", HEAD_TYPE, &allowed(&[&a]), 1, "head")),
            Some(Code::ThresholdNotMet)
        );
    }

    #[test]
    fn same_key_twice_counts_once() {
        let (a, b) = (key(1), key(2));
        let mut env = sign(b"payload", HEAD_TYPE, &[&a]);
        env.signatures.push(env.signatures[0].clone());
        assert_eq!(
            code(env.verify("f", HEAD_TYPE, &allowed(&[&a, &b]), 2, "head")),
            Some(Code::ThresholdNotMet)
        );
    }

    #[test]
    fn extra_bad_and_unknown_signatures_do_not_spoil_a_valid_file() {
        let (a, stranger) = (key(1), key(7));
        let mut env = sign(b"payload", HEAD_TYPE, &[&a, &stranger]);
        env.signatures.push(Sig {
            sig: vec![0; 64],
            keyid: key_id(&a.verifying_key().to_bytes()),
        });
        env.signatures.push(Sig {
            sig: vec![1; 3],
            keyid: [5; 32],
        });
        assert_eq!(
            code(env.verify("f", HEAD_TYPE, &allowed(&[&a]), 1, "head")),
            None
        );
    }

    #[test]
    fn malleable_signature_with_s_plus_l_is_rejected() {
        // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let a = key(1);
        let mut env = sign(b"payload", HEAD_TYPE, &[&a]);
        let s = &mut env.signatures[0].sig[32..];
        let mut carry = 0u16;
        for (x, l) in s.iter_mut().zip(L) {
            let t = u16::from(*x) + u16::from(l) + carry;
            *x = t as u8;
            carry = t >> 8;
        }
        assert_eq!(
            code(env.verify("f", HEAD_TYPE, &allowed(&[&a]), 1, "head")),
            Some(Code::ThresholdNotMet)
        );
    }

    #[test]
    fn envelopes_encode_deterministically_and_parse_strictly() {
        let a = key(1);
        let env = sign(b"payload", HEAD_TYPE, &[&a]);
        let bytes = env.to_bytes();
        assert_eq!(
            bytes,
            sign(b"payload", HEAD_TYPE, &[&a]).to_bytes(),
            "same input, same bytes"
        );
        assert_eq!(Envelope::parse("f", &bytes, &Limits::DEFAULT).unwrap(), env);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Envelope::parse("f", &trailing, &Limits::DEFAULT)
                .unwrap_err()
                .code,
            Code::MalformedEnvelope
        );
        let mut many = env.clone();
        many.signatures = vec![env.signatures[0].clone(); Limits::DEFAULT.max_signatures + 1];
        assert_eq!(
            Envelope::parse("f", &many.to_bytes(), &Limits::DEFAULT)
                .unwrap_err()
                .code,
            Code::TooManySignatures
        );
    }

    #[test]
    fn signature_count_is_checked_after_canonical_decoding() {
        // SPEC.md §4.0.1: the envelope is decoded canonically first; only a
        // canonical envelope is counted.
        let a = key(1);
        let env = sign(b"payload", HEAD_TYPE, &[&a]);
        let max = Limits::DEFAULT.max_signatures;
        let parse = |sigs: usize, trailing: bool| {
            let mut e = env.clone();
            e.signatures = vec![env.signatures[0].clone(); sigs];
            let mut b = e.to_bytes();
            if trailing {
                b.push(0);
            }
            Envelope::parse("f", &b, &Limits::DEFAULT)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(parse(max, false), None);
        assert_eq!(parse(max + 1, false), Some(Code::TooManySignatures));
        assert_eq!(parse(max + 1, true), Some(Code::MalformedEnvelope));
        assert_eq!(
            parse(0, false),
            None,
            "zero signatures parse; the threshold refuses"
        );
    }

    #[test]
    fn weak_and_non_canonical_public_keys_are_refused() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(load_key(&identity).is_err());
        // y = p (non-canonical encoding of y = 0).
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed;
        non_canonical[31] = 0x7f;
        assert!(load_key(&non_canonical).is_err());
        assert!(load_key(&key(1).verifying_key().to_bytes()).is_ok());
        // y + p for a small y whose point is valid and not of small order:
        // the same point as the canonical encoding of y, refused.
        let mut found = 0;
        for y in 2u8..19 {
            let mut canonical = [0u8; 32];
            canonical[0] = y;
            let Ok(k) = VerifyingKey::from_bytes(&canonical) else {
                continue;
            };
            if k.is_weak() {
                continue;
            }
            assert!(load_key(&canonical).is_ok(), "y = {y}");
            let mut alias = [0xffu8; 32];
            alias[0] = 0xed + y;
            alias[31] = 0x7f;
            let a = VerifyingKey::from_bytes(&alias).expect("decodes to the same point");
            assert_eq!(a.to_edwards(), k.to_edwards());
            assert!(load_key(&alias).is_err(), "non-canonical alias of y = {y}");
            found += 1;
        }
        assert!(found > 0, "no small y gives a valid point");
    }
}
