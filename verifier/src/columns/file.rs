//! A data file around its payload (SPEC.md §5.1, §7 step 7): the signed
//! lengths and hash, the zstd frame header, bounded decompression.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Compress a canonical payload.
#[cfg(feature = "zstd-c")]
pub fn compress(raw: &[u8]) -> Vec<u8> {
    crate::zframe::compress(raw, ZSTD_LEVEL)
}

/// SPEC.md §7 step 7, in its order: the signed length against the cap, the
/// file's length and hash against the signed ones (the *compressed* bytes,
/// before anything is decompressed), the signed decompressed length against
/// its cap, the zstd frame (§5.1), then decompression with a hard cap and the
/// exact signed decompressed length.
pub fn open_file(
    file: &str,
    bytes: &[u8],
    fref: &crate::docs::FileRef,
    limits: &Limits,
) -> VResult<Vec<u8>> {
    if fref.length > limits.max_file_bytes {
        return Err(reject(
            file,
            Code::LimitExceeded,
            format!(
                "declared length {} exceeds the limit {}",
                fref.length, limits.max_file_bytes
            ),
        ));
    }
    if bytes.len() as u64 != fref.length {
        return Err(reject(
            file,
            Code::LengthMismatch,
            format!(
                "is {} bytes; the manifest says {}",
                bytes.len(),
                fref.length
            ),
        ));
    }
    if sha256(bytes) != fref.sha256 {
        return Err(reject(
            file,
            Code::HashMismatch,
            "SHA-256 differs from the manifest; the file was altered or belongs to another snapshot",
        ));
    }
    if fref.raw_length > limits.max_raw_bytes {
        return Err(reject(
            file,
            Code::LimitExceeded,
            format!(
                "declared decompressed length {} exceeds the limit {}",
                fref.raw_length, limits.max_raw_bytes
            ),
        ));
    }
    // Exactly one zstd frame, covering every byte: no skippable frames, no
    // second frame, nothing after it.
    match crate::zframe::frame_size(bytes) {
        Some(n) if n == bytes.len() => {}
        _ => {
            return Err(reject(
                file,
                Code::MalformedData,
                "is not exactly one zstd frame",
            ));
        }
    }
    check_frame_header(file, bytes, fref.raw_length)?;
    let raw = crate::zframe::decompress_capped(bytes, ZSTD_WINDOW_LOG_MAX, fref.raw_length)
        .map_err(|e| reject(file, Code::MalformedData, e))?;
    if raw.len() as u64 != fref.raw_length {
        return Err(reject(
            file,
            Code::LengthMismatch,
            format!(
                "decompresses to {}{} bytes; the manifest says {}",
                raw.len(),
                if raw.len() as u64 > fref.raw_length {
                    "+"
                } else {
                    ""
                },
                fref.raw_length
            ),
        ));
    }
    Ok(raw)
}

/// SPEC.md §5.1: the zstd frame header must declare its content size, equal
/// to the signed decompressed length, and a window of at most 2^27 bytes. libzstd
/// ignores its window limit when a frame declares a size that fits the output,
/// so the header is read here rather than trusted to the decoder.
pub(super) fn check_frame_header(file: &str, bytes: &[u8], raw_length: u64) -> VResult<()> {
    let bad = |d: String| reject(file, Code::MalformedData, format!("zstd frame header: {d}"));
    if bytes.len() < 6 || bytes[..4] != [0x28, 0xB5, 0x2F, 0xFD] {
        return Err(bad("missing zstd magic number".into()));
    }
    let fhd = bytes[4];
    let fcs_flag = fhd >> 6;
    let single_segment = fhd & 0x20 != 0;
    if fhd & 0x08 != 0 {
        return Err(bad("reserved bit is set".into()));
    }
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 0x03)];
    let mut pos = 5;
    let mut window: Option<u64> = None;
    if !single_segment {
        let wd = bytes[pos];
        let exponent = u32::from(wd >> 3);
        let base = 1u64 << (10 + exponent);
        window = Some(base + (base / 8) * u64::from(wd & 0x07));
        pos += 1;
    }
    if dict_len != 0 {
        return Err(bad("a dictionary id is not allowed".into()));
    }
    let fcs_len = match (fcs_flag, single_segment) {
        (0, true) => 1,
        (0, false) => 0,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let Some(field) = bytes.get(pos..pos + fcs_len).filter(|_| fcs_len > 0) else {
        return Err(bad("the content size is not declared".into()));
    };
    let mut fcs = field
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if fcs_len == 2 {
        fcs += 256;
    }
    if fcs != raw_length {
        return Err(reject(
            file,
            Code::LengthMismatch,
            format!("zstd frame declares {fcs} decompressed bytes; the manifest says {raw_length}"),
        ));
    }
    let window = window.unwrap_or(fcs);
    if window > 1 << ZSTD_WINDOW_LOG_MAX {
        return Err(reject(
            file,
            Code::LimitExceeded,
            format!("zstd window of {window} bytes exceeds 2^{ZSTD_WINDOW_LOG_MAX}"),
        ));
    }
    Ok(())
}

/// A data file's signed entry count must not exceed `max_records_per_file`
/// (`limit_exceeded`); checked before its payload is decoded.
pub(super) fn check_count(file: &str, count: u64, limits: &Limits) -> VResult<()> {
    if count > limits.max_records_per_file {
        return Err(reject(
            file,
            Code::LimitExceeded,
            format!(
                "the manifest declares {count} entries; at most {} are accepted per file",
                limits.max_records_per_file
            ),
        ));
    }
    Ok(())
}
