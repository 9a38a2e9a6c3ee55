//! The serialized header-map codec (reference §7.2).
//!
//! The layout, all integers u32 little-endian:
//!
//! | Offset | Size | Content |
//! |---|---|---|
//! | 0 | 4 | N, the number of pairs |
//! | 4 | 8·N | per pair: key length, value length (NULs excluded) |
//! | 4 + 8·N | Σ(klen + 1 + vlen + 1) | per pair: key bytes, `0x00`, value bytes, `0x00` |
//!
//! The same layout carries header maps, local-reply headers, callout headers and trailers,
//! gRPC metadata, map-typed properties and (with empty values) list-typed properties.
//! Keys and values are bytes: nothing here requires UTF-8.
//!
//! Host → guest, an empty map is *no bytes at all* (pointer 0, size 0): the Rust SDK reads
//! four bytes from any non-empty buffer, so the spec's one-byte empty form must never be
//! sent. Guest → host, both the empty buffer and the four-byte zero-count form mean empty.

use std::fmt;

/// The largest serialized map accepted from a guest, in bytes (as cpp-host).
pub const MAX_MAP_BYTES: usize = 1 << 20;

/// The most pairs accepted from a guest in one serialized map (as cpp-host).
pub const MAX_MAP_PAIRS: usize = 1024;

/// One header-map entry as borrowed bytes: (key, value).
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// Which half of a pair an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapPart {
    /// The key (header name).
    Key,
    /// The value.
    Value,
}

/// Why a serialized map could not be decoded, or a map could not be serialized.
///
/// cpp-host treats an invalid map from the guest as empty (bad local-reply headers are
/// dropped, not errored); the error says exactly what was wrong so the host can log it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The buffer is larger than [`MAX_MAP_BYTES`].
    #[error("serialized map is {size} bytes, above the limit of {max} bytes")]
    TooLarge {
        /// The buffer size.
        size: usize,
        /// The limit, [`MAX_MAP_BYTES`].
        max: usize,
    },
    /// The pair count at offset 0 is larger than [`MAX_MAP_PAIRS`].
    #[error("serialized map declares {count} pairs at offset 0, above the limit of {max}")]
    TooManyPairs {
        /// The declared pair count.
        count: u32,
        /// The limit, [`MAX_MAP_PAIRS`].
        max: usize,
    },
    /// The buffer is non-empty but shorter than the four-byte pair count.
    #[error("serialized map of {len} bytes is too short for the 4-byte pair count at offset 0")]
    TruncatedCount {
        /// The buffer size.
        len: usize,
    },
    /// The buffer ends inside the length table.
    #[error(
        "serialized map of {len} bytes is too short for the length table of {pairs} pairs, \
         which ends at offset {needed}"
    )]
    TruncatedLengths {
        /// The declared pair count.
        pairs: usize,
        /// The offset where the length table ends.
        needed: usize,
        /// The buffer size.
        len: usize,
    },
    /// A key or value, or the NUL after it, runs past the end of the buffer.
    #[error(
        "serialized map pair {pair}: the {part} of {part_len} bytes at offset {offset} and its \
         NUL run past the end of the {len}-byte buffer"
    )]
    TruncatedData {
        /// The index of the pair, from 0.
        pair: usize,
        /// Key or value.
        part: MapPart,
        /// Where the key or value starts.
        offset: usize,
        /// Its declared length.
        part_len: u32,
        /// The buffer size.
        len: usize,
    },
    /// The byte after a key or value is not a NUL.
    #[error(
        "serialized map pair {pair}: expected a NUL after the {part} at offset {offset}, \
         found {found:#04x}"
    )]
    MissingNul {
        /// The index of the pair, from 0.
        pair: usize,
        /// Key or value.
        part: MapPart,
        /// Where the NUL should be.
        offset: usize,
        /// The byte found instead.
        found: u8,
    },
    /// Bytes follow the last pair.
    #[error("serialized map has {extra} trailing bytes after the last pair, from offset {offset}")]
    TrailingBytes {
        /// Where the last pair ends.
        offset: usize,
        /// How many bytes follow it.
        extra: usize,
    },
    /// A key or value is too long for a u32 length (serialization only).
    #[error("map pair {pair}: the {part} of {part_len} bytes does not fit a u32 length")]
    LengthOverflow {
        /// The index of the pair, from 0.
        pair: usize,
        /// Key or value.
        part: MapPart,
        /// Its length.
        part_len: usize,
    },
    /// The map has more pairs than a u32 count can say (serialization only).
    #[error("map of {count} pairs does not fit a u32 pair count")]
    CountOverflow {
        /// The number of pairs.
        count: usize,
    },
    /// The output slice does not have exactly the serialized size (serialization only).
    #[error("output buffer is {actual} bytes but the serialized map needs exactly {expected}")]
    OutputSize {
        /// [`serialized_len`] of the pairs.
        expected: usize,
        /// The size of the slice passed in.
        actual: usize,
    },
}

impl fmt::Display for MapPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapPart::Key => "key",
            MapPart::Value => "value",
        })
    }
}

/// The size of the serialized form of `pairs`; 0 for no pairs (host → guest, an empty map
/// is pointer 0 / size 0).
///
/// Saturates at `usize::MAX` instead of overflowing.
pub fn serialized_len<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> usize {
    measure(pairs).1
}

/// Serializes `pairs` in order, one entry per pair (repeated keys stay repeated). No pairs
/// give an empty `Vec`, never the four-byte zero-count form.
///
/// A key or value longer than `u32::MAX` bytes cannot be represented: its length is written
/// as `u32::MAX`. Such a map could not fit a wasm32 guest anyway; callers bound header
/// sizes long before that. Use [`serialize_pairs_into`] to get an error instead.
pub fn serialize_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> Vec<u8> {
    let (count, len) = measure(pairs.clone());
    if count == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&saturate(count).to_le_bytes());
    for (key, value) in pairs.clone() {
        out.extend_from_slice(&saturate(key.len()).to_le_bytes());
        out.extend_from_slice(&saturate(value.len()).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// Serializes `pairs` into `out`, which must be exactly [`serialized_len`] bytes (for
/// example a region just allocated in guest memory). No pairs need an empty `out`.
pub fn serialize_pairs_into<'a>(
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
    out: &mut [u8],
) -> Result<(), MapError> {
    // The length table precedes the data, so the pairs are walked twice (measured, then
    // written) rather than collected: no allocation.
    let (count, expected) = measure(pairs.clone());
    if out.len() != expected {
        return Err(MapError::OutputSize {
            expected,
            actual: out.len(),
        });
    }
    if count == 0 {
        return Ok(());
    }
    let count_u32 = u32::try_from(count).map_err(|_| MapError::CountOverflow { count })?;
    out[..4].copy_from_slice(&count_u32.to_le_bytes());
    let mut table = 4;
    let mut data = 4 + 8 * count;
    for (pair, (key, value)) in pairs.into_iter().enumerate() {
        for (part, bytes) in [(MapPart::Key, key), (MapPart::Value, value)] {
            let part_len = u32::try_from(bytes.len()).map_err(|_| MapError::LengthOverflow {
                pair,
                part,
                part_len: bytes.len(),
            })?;
            out[table..table + 4].copy_from_slice(&part_len.to_le_bytes());
            table += 4;
            out[data..data + bytes.len()].copy_from_slice(bytes);
            out[data + bytes.len()] = 0;
            data += bytes.len() + 1;
        }
    }
    Ok(())
}

/// Decodes a serialized map from the guest, borrowing keys and values from `buf`.
///
/// An empty buffer and the four-byte zero-count form are the empty map. Every length, both
/// NULs of every pair and the exact end are checked; buffers above [`MAX_MAP_BYTES`] and
/// counts above [`MAX_MAP_PAIRS`] are refused.
pub fn deserialize_pairs(buf: &[u8]) -> Result<Vec<Pair<'_>>, MapError> {
    let len = buf.len();
    if len == 0 {
        return Ok(Vec::new());
    }
    if len > MAX_MAP_BYTES {
        return Err(MapError::TooLarge {
            size: len,
            max: MAX_MAP_BYTES,
        });
    }
    let count = read_u32(buf, 0).ok_or(MapError::TruncatedCount { len })?;
    if count as usize > MAX_MAP_PAIRS {
        return Err(MapError::TooManyPairs {
            count,
            max: MAX_MAP_PAIRS,
        });
    }
    let pairs = count as usize;
    let data_start = 4 + 8 * pairs;
    if data_start > len {
        return Err(MapError::TruncatedLengths {
            pairs,
            needed: data_start,
            len,
        });
    }
    let mut out = Vec::with_capacity(pairs);
    let mut offset = data_start;
    for pair in 0..pairs {
        let entry = 4 + 8 * pair;
        // Both reads are inside the length table checked above.
        let key_len = read_u32(buf, entry).unwrap_or(u32::MAX);
        let value_len = read_u32(buf, entry + 4).unwrap_or(u32::MAX);
        let key = take_part(buf, &mut offset, pair, MapPart::Key, key_len)?;
        let value = take_part(buf, &mut offset, pair, MapPart::Value, value_len)?;
        out.push((key, value));
    }
    if offset != len {
        return Err(MapError::TrailingBytes {
            offset,
            extra: len - offset,
        });
    }
    Ok(out)
}

/// Counts the pairs and computes the serialized size (0 for no pairs).
fn measure<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> (usize, usize) {
    let mut count = 0usize;
    let mut len = 4usize;
    for (key, value) in pairs {
        count += 1;
        len = len
            .saturating_add(8 + 2)
            .saturating_add(key.len())
            .saturating_add(value.len());
    }
    if count == 0 { (0, 0) } else { (count, len) }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Takes `part_len` bytes at `*offset` followed by a NUL, and advances past the NUL.
fn take_part<'a>(
    buf: &'a [u8],
    offset: &mut usize,
    pair: usize,
    part: MapPart,
    part_len: u32,
) -> Result<&'a [u8], MapError> {
    let start = *offset;
    let truncated = MapError::TruncatedData {
        pair,
        part,
        offset: start,
        part_len,
        len: buf.len(),
    };
    let nul_at = match start.checked_add(part_len as usize) {
        Some(at) if at < buf.len() => at,
        _ => return Err(truncated),
    };
    let bytes = buf.get(start..nul_at).ok_or(truncated)?;
    match buf.get(nul_at) {
        Some(0) => {}
        Some(&found) => {
            return Err(MapError::MissingNul {
                pair,
                part,
                offset: nul_at,
                found,
            });
        }
        None => {
            return Err(MapError::TruncatedData {
                pair,
                part,
                offset: start,
                part_len,
                len: buf.len(),
            });
        }
    }
    *offset = nul_at + 1;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
