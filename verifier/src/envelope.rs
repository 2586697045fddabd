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
use crate::error::{VResult, reject};
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
    // Refuse non-canonical encodings (a y coordinate ≥ p): one key, one byte string.
    if k.to_bytes() != *public {
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
            .map_err(|e| reject(file, "malformed_envelope", format!("envelope is {e}")))?;
        if env.signatures.len() > limits.max_signatures {
            return Err(reject(
                file,
                "too_many_signatures",
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
                "wrong_payload_type",
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
                "threshold_not_met",
                format!(
                    "{} valid signature(s) from distinct {role} keys; the root requires {threshold}",
                    good.len()
                ),
            ));
        }
        Ok(())
    }
}
