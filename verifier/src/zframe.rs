//! One zstd frame, read without trusting it (SPEC.md §5.1): its exact size,
//! walked block by block from the bytes themselves, and decompression capped
//! at a given output length.
//!
//! Two decoders sit behind one function: libzstd (feature `zstd-c`, the
//! native default: fastest, and the encoder the publisher writes with) and
//! ruzstd, pure Rust, for builds where C cannot be compiled (wasm32). The
//! frame checks that decide acceptance — one frame covering every byte, the
//! header rules of `columns::check_frame_header`, the exact signed output
//! length — run before either decoder and do not depend on which one runs.

use std::io::Read;

/// The zstd frame magic number, little-endian on the wire.
pub const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Block types of RFC 8878 §3.1.1.2.2.
const BLOCK_RAW: u8 = 0;
const BLOCK_RLE: u8 = 1;
const BLOCK_COMPRESSED: u8 = 2;

/// The size in bytes of the zstd frame that starts `bytes` (header, every
/// block, the optional checksum), or `None` when `bytes` does not start with
/// a whole, well-formed frame. Skippable frames are not frames here.
pub fn frame_size(bytes: &[u8]) -> Option<usize> {
    if bytes.get(..4)? != MAGIC {
        return None;
    }
    let fhd = *bytes.get(4)?;
    let fcs_flag = fhd >> 6;
    let single_segment = (fhd >> 5) & 1 == 1;
    let reserved = (fhd >> 3) & 1 == 1;
    let checksum = (fhd >> 2) & 1 == 1;
    let dict_flag = fhd & 3;
    if reserved {
        return None;
    }
    let window = usize::from(!single_segment);
    let dict = [0, 1, 2, 4][usize::from(dict_flag)];
    let fcs = match fcs_flag {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut at = 5 + window + dict + fcs;
    // Each turn consumes at least a 3-byte block header: bounded by the input.
    loop {
        let h = bytes.get(at..at + 3)?;
        let header = u32::from(h[0]) | (u32::from(h[1]) << 8) | (u32::from(h[2]) << 16);
        let last = header & 1 == 1;
        let kind = ((header >> 1) & 3) as u8;
        let size = (header >> 3) as usize;
        at += 3;
        at += match kind {
            BLOCK_RAW | BLOCK_COMPRESSED => size,
            BLOCK_RLE => 1,
            _ => return None,
        };
        if at > bytes.len() {
            return None;
        }
        if last {
            break;
        }
    }
    if checksum {
        at += 4;
    }
    (at <= bytes.len()).then_some(at)
}

/// Decompress the one frame in `bytes`, producing at most `cap + 1` bytes
/// (so the caller sees an overlong output without decoding it all), with a
/// window of at most `2^window_log_max`.
pub fn decompress_capped(bytes: &[u8], window_log_max: u32, cap: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(cap.min(1 << 26) as usize);
    decoder(bytes, window_log_max)?
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    Ok(out)
}

#[cfg(feature = "zstd-c")]
fn decoder(bytes: &[u8], window_log_max: u32) -> Result<Box<dyn Read + '_>, String> {
    let mut d =
        zstd::stream::read::Decoder::with_buffer(bytes).map_err(|e| format!("zstd: {e}"))?;
    d.window_log_max(window_log_max)
        .map_err(|e| format!("zstd: {e}"))?;
    Ok(Box::new(d))
}

#[cfg(not(feature = "zstd-c"))]
fn decoder(bytes: &[u8], _window_log_max: u32) -> Result<Box<dyn Read + '_>, String> {
    pure_decoder(bytes)
}

/// ruzstd; the window is bounded by the header check the caller ran first.
#[cfg(any(test, not(feature = "zstd-c")))]
fn pure_decoder(bytes: &[u8]) -> Result<Box<dyn Read + '_>, String> {
    let d = ruzstd::decoding::StreamingDecoder::new(bytes).map_err(|e| format!("zstd: {e}"))?;
    Ok(Box::new(d))
}

/// Compress `raw` as one frame at `level` (libzstd only: the format's
/// reference encoder; a reader never needs it).
#[cfg(feature = "zstd-c")]
pub fn compress(raw: &[u8], level: i32) -> Vec<u8> {
    zstd::bulk::compress(raw, level).unwrap_or_else(|e| unreachable!("zstd compress: {e}"))
}

#[cfg(test)]
#[cfg(feature = "zstd-c")]
mod tests {
    use super::*;

    #[test]
    fn frame_size_agrees_with_libzstd_on_real_and_broken_frames() {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for n in [0usize, 1, 100, 70_000, 300_000] {
            let raw: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let z = compress(&raw, 19);
            assert_eq!(decompress_capped(&z, 27, n as u64).unwrap(), raw);
            inputs.push(z.clone());
            let mut two = z.clone();
            two.extend_from_slice(&z);
            inputs.push(two);
            inputs.push(z[..z.len() / 2].to_vec());
            inputs.push(z[..z.len() - 1].to_vec());
        }
        inputs.push(vec![0x28, 0xB5, 0x2F, 0xFD]);
        inputs.push(b"not zstd at all".to_vec());
        for z in &inputs {
            let ours = frame_size(z);
            let theirs = zstd::zstd_safe::find_frame_compressed_size(z).ok();
            assert_eq!(ours, theirs, "{} bytes", z.len());
        }
    }

    #[test]
    fn the_pure_rust_decoder_gives_libzstd_s_output() {
        for (n, level) in [
            (0usize, 3),
            (1, 19),
            (5_000, 3),
            (200_000, 19),
            (1 << 20, 9),
        ] {
            let raw: Vec<u8> = (0..n).map(|i| ((i * 31) ^ (i >> 7)) as u8).collect();
            let z = compress(&raw, level);
            let mut out = Vec::new();
            pure_decoder(&z).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, raw, "{n} bytes at level {level}");
        }
    }

    #[test]
    fn output_is_capped_one_byte_past_the_limit() {
        let raw = vec![7u8; 10_000];
        let z = compress(&raw, 3);
        assert_eq!(decompress_capped(&z, 27, 100).unwrap().len(), 101);
    }
}
