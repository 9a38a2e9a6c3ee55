//! Rendering of statuses and values in probe lines, and the serialized map codec (reference
//! §7.2).

use std::fmt::Write as _;

/// The status name of a hostcall's return value, as in the SDK's `Status` enum.
pub(crate) fn status(code: i32) -> String {
    let name = match code {
        0 => "Ok",
        1 => "NotFound",
        2 => "BadArgument",
        3 => "SerializationFailure",
        4 => "ParseFailure",
        5 => "BadExpression",
        6 => "InvalidMemoryAccess",
        7 => "Empty",
        8 => "CasMismatch",
        9 => "ResultMismatch",
        10 => "InternalFailure",
        11 => "BrokenConnection",
        12 => "Unimplemented",
        other => return format!("Status({other})"),
    };
    name.to_owned()
}

/// Appends `bytes` escaped: `\\ \" \n \r \t \0`, printable ASCII as is, `\xNN` otherwise.
pub(crate) fn escape_into(out: &mut String, bytes: &[u8]) {
    for &byte in bytes {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
}

/// `bytes` escaped and double-quoted.
pub(crate) fn quoted(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    escape_into(&mut out, bytes);
    out.push('"');
    out
}

/// A serialized map rendered as `[key="value", ...]`, or `undecodable "<bytes>"` when it
/// does not follow the layout. Empty input is the empty map.
pub(crate) fn pairs(bytes: &[u8]) -> String {
    let Some(pairs) = parse_pairs(bytes) else {
        return format!("undecodable {}", quoted(bytes));
    };
    let mut out = String::from("[");
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        escape_into(&mut out, key);
        out.push('=');
        out.push_str(&quoted(value));
    }
    out.push(']');
    out
}

/// A property value decoded as `decode` says (reference §13.1). Empty data renders `""`
/// (`[]` for `map`).
pub(crate) fn decoded(bytes: &[u8], decode: Decode) -> String {
    if bytes.is_empty() && !matches!(decode, Decode::Map) {
        return quoted(bytes);
    }
    let undecodable = || format!("undecodable {}", quoted(bytes));
    match decode {
        Decode::String => quoted(bytes),
        Decode::U64 => <[u8; 8]>::try_from(bytes)
            .map_or_else(|_| undecodable(), |b| u64::from_le_bytes(b).to_string()),
        Decode::I64 => <[u8; 8]>::try_from(bytes)
            .map_or_else(|_| undecodable(), |b| i64::from_le_bytes(b).to_string()),
        Decode::F64 => <[u8; 8]>::try_from(bytes)
            .map_or_else(|_| undecodable(), |b| f64::from_le_bytes(b).to_string()),
        Decode::Bool => match bytes {
            [0] => "false".to_owned(),
            [1] => "true".to_owned(),
            _ => undecodable(),
        },
        Decode::Map => pairs(bytes),
        Decode::Hex => bytes.iter().fold(String::new(), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        }),
    }
}

/// How `get_property` renders the value it got.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Decode {
    /// Quoted, escaped bytes.
    #[default]
    String,
    /// 8 bytes little-endian, unsigned decimal.
    U64,
    /// 8 bytes little-endian, signed decimal.
    I64,
    /// 8 bytes IEEE 754 little-endian.
    F64,
    /// 1 byte, `true` or `false`.
    Bool,
    /// Serialized pairs, rendered like `get_header_map_pairs`.
    Map,
    /// Lowercase hex, unquoted.
    Hex,
}

/// Serializes pairs: count, then (key length, value length) per pair, then each key and
/// value followed by a NUL; integers u32 little-endian.
pub(crate) fn serialize_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (key, value) in pairs {
        out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Parses serialized pairs; `None` unless every length, NUL and the exact end check out.
fn parse_pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        usize::try_from(u32::from_le_bytes(b.try_into().ok()?)).ok()
    };
    let count = word(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    let mut pairs = Vec::new();
    for i in 0..count {
        let key_len = word(4 + 8 * i)?;
        let value_len = word(8 + 8 * i)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data += key_len;
        if bytes.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data += value_len;
        if bytes.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        pairs.push((key, value));
    }
    (data == bytes.len()).then_some(pairs)
}

/// A length as the u32 the ABI carries; wasm32 lengths always fit.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_byte() {
        let bytes = b"a\\\"\n\r\t\0\x7f\xc3~ ";
        assert_eq!(quoted(bytes), r#""a\\\"\n\r\t\0\x7f\xc3~ ""#);
    }

    #[test]
    fn pairs_round_trip_and_render() {
        let map = vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "22".to_owned()),
        ];
        let bytes = serialize_pairs(&map);
        assert_eq!(bytes.len(), 29);
        assert_eq!(pairs(&bytes), r#"[a="1", b="22"]"#);
        assert_eq!(pairs(&[]), "[]");
        assert_eq!(pairs(&serialize_pairs(&[])), "[]");
        assert_eq!(
            pairs(&bytes[..28]),
            format!("undecodable {}", quoted(&bytes[..28]))
        );
    }

    #[test]
    fn decodes_properties() {
        assert_eq!(decoded(&443u64.to_le_bytes(), Decode::U64), "443");
        assert_eq!(decoded(&(-2i64).to_le_bytes(), Decode::I64), "-2");
        assert_eq!(decoded(&1.5f64.to_le_bytes(), Decode::F64), "1.5");
        assert_eq!(decoded(&[1], Decode::Bool), "true");
        assert_eq!(decoded(&[1, 2], Decode::U64), r#"undecodable "\x01\x02""#);
        assert_eq!(decoded(&[0xab, 1], Decode::Hex), "ab01");
        assert_eq!(decoded(&[], Decode::U64), r#""""#);
        assert_eq!(decoded(&[], Decode::Map), "[]");
    }

    #[test]
    fn names_statuses() {
        assert_eq!(status(0), "Ok");
        assert_eq!(status(12), "Unimplemented");
        assert_eq!(status(13), "Status(13)");
        assert_eq!(status(-1), "Status(-1)");
    }
}
