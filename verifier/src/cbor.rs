//! Canonical CBOR: the only encoding consentry writes or accepts.
//!
//! Every struct that goes on the wire declares its fields in RFC 8949 §4.2.1
//! deterministic key order (shorter keys first, then bytewise), so serde's field
//! order *is* the canonical order. Decoding is strict: after decoding, the value
//! is encoded again and must reproduce the received bytes exactly. That one
//! comparison refuses duplicate or unknown keys, reordered keys, non-minimal
//! integers, indefinite lengths, tags and trailing data, without a hand-written
//! CBOR parser.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encode `v` canonically.
pub fn to_vec<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and our types contain nothing that CBOR
    // cannot represent.
    ciborium::ser::into_writer(v, &mut out).unwrap_or_else(|e| unreachable!("cbor encode: {e}"));
    out
}

/// Decode `bytes` as a `T`, refusing anything but its canonical encoding.
pub fn from_slice_canonical<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    // Recursion is bounded by ciborium's default limit (256 levels), so nesting
    // attacks fail cleanly instead of overflowing the stack.
    let v: T = ciborium::de::from_reader(bytes)
        .map_err(|e| format!("not valid CBOR for this document: {}", describe(&e)))?;
    if to_vec(&v) != bytes {
        return Err(
            "not in canonical CBOR form (key order, integer width, extra or trailing data)".into(),
        );
    }
    Ok(v)
}

/// A decode error in words (ciborium's Display is its Debug form).
fn describe<E: std::fmt::Debug>(e: &ciborium::de::Error<E>) -> String {
    use ciborium::de::Error;
    let at = |o: Option<usize>| o.map_or_else(String::new, |o| format!(" at byte {o}"));
    match e {
        Error::Io(_) => "it ends early".into(),
        Error::Syntax(o) => format!("malformed CBOR at byte {o}"),
        Error::Semantic(o, msg) => format!("{msg}{}", at(*o)),
        Error::RecursionLimitExceeded => "nested too deeply".into(),
    }
}

/// Serde adapter for a 32-byte digest as a CBOR byte string.
pub mod bytes32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let b: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        b.into_vec()
            .try_into()
            .map_err(|_| serde::de::Error::custom("expected a 32-byte string"))
    }
}

/// Serde adapter for an optional 32-byte digest (`null` when absent).
pub mod opt_bytes32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let b: Option<serde_bytes::ByteBuf> = Deserialize::deserialize(d)?;
        b.map(|b| {
            b.into_vec()
                .try_into()
                .map_err(|_| serde::de::Error::custom("expected a 32-byte string"))
        })
        .transpose()
    }
}

/// Serde adapter for a list of 32-byte strings.
pub mod vec_bytes32 {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(serde_bytes::Bytes::new(b))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        let v: Vec<serde_bytes::ByteBuf> = Deserialize::deserialize(d)?;
        v.into_iter()
            .map(|b| {
                b.into_vec()
                    .try_into()
                    .map_err(|_| serde::de::Error::custom("expected 32-byte strings"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct T {
        a: u64,
        bb: String,
    }

    #[test]
    fn canonical_round_trip_and_refusals() {
        let t = T {
            a: 5,
            bb: "x".into(),
        };
        let bytes = to_vec(&t);
        assert_eq!(bytes, to_vec(&t), "encoding is deterministic");
        assert_eq!(from_slice_canonical::<T>(&bytes).unwrap(), t);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(from_slice_canonical::<T>(&trailing).is_err());
        // {"bb": "x", "a": 5}: right keys, wrong order.
        let reordered = [0xa2, 0x62, b'b', b'b', 0x61, b'x', 0x61, b'a', 0x05];
        assert!(from_slice_canonical::<T>(&reordered).is_err());
        // a = 5 as a two-byte integer.
        let wide = [0xa2, 0x61, b'a', 0x18, 0x05, 0x62, b'b', b'b', 0x61, b'x'];
        assert!(from_slice_canonical::<T>(&wide).is_err());
        // An unknown extra key.
        let extra = [
            0xa3, 0x61, b'a', 0x05, 0x61, b'c', 0x00, 0x62, b'b', b'b', 0x61, b'x',
        ];
        assert!(from_slice_canonical::<T>(&extra).is_err());
    }
}
