//! The few protobuf messages properties expose as wire bytes: Envoy's `Node`
//! (`xds.node`) and `google.protobuf.Struct` metadata, plus the CEL form Envoy gives a
//! `Struct` value when a path walks into it (`xds.node.metadata.NAME`).
//!
//! Field numbers are those of `envoy.config.core.v3.Node` (`id` 1, `cluster` 2,
//! `metadata` 3) and `google/protobuf/struct.proto` (`Struct.fields` 1, a map entry's
//! `key` 1 and `value` 2; `Value` kinds `null_value` 1, `number_value` 2, `string_value`
//! 3, `bool_value` 4, `struct_value` 5, `list_value` 6; `ListValue.values` 1).

use crate::encode;
use crate::map::serialize_pairs;

/// A `google.protobuf.Value`: what node and route metadata hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StructValue {
    /// `null_value`.
    #[default]
    Null,
    /// `number_value` (JSON numbers are doubles).
    Number(f64),
    /// `string_value`.
    String(String),
    /// `bool_value`.
    Bool(bool),
    /// `struct_value`: fields in order.
    Struct(Vec<(String, StructValue)>),
    /// `list_value`.
    List(Vec<StructValue>),
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

fn key(out: &mut Vec<u8>, field: u8, wire: u8) {
    out.push((field << 3) | wire);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    key(out, field, LEN);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

impl StructValue {
    /// The `google.protobuf.Value` message bytes.
    pub fn to_proto(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            StructValue::Null => {
                key(&mut out, 1, VARINT);
                varint(&mut out, 0);
            }
            StructValue::Number(n) => {
                key(&mut out, 2, FIXED64);
                out.extend_from_slice(&n.to_le_bytes());
            }
            StructValue::String(s) => bytes_field(&mut out, 3, s.as_bytes()),
            StructValue::Bool(b) => {
                key(&mut out, 4, VARINT);
                varint(&mut out, u64::from(*b));
            }
            StructValue::Struct(fields) => bytes_field(&mut out, 5, &struct_proto(fields)),
            StructValue::List(items) => {
                let mut list = Vec::new();
                for item in items {
                    bytes_field(&mut list, 1, &item.to_proto());
                }
                bytes_field(&mut out, 6, &list);
            }
        }
        out
    }

    /// The value as Envoy serializes the CEL value it converts this to: strings raw,
    /// numbers as 8-byte doubles, bools as one byte, null as no bytes, structs as
    /// serialized pairs of their fields (values converted the same way) and lists as
    /// serialized pairs with the elements as keys.
    pub fn to_cel(&self) -> Vec<u8> {
        match self {
            StructValue::Null => Vec::new(),
            StructValue::Number(n) => encode::double(*n).to_vec(),
            StructValue::String(s) => s.as_bytes().to_vec(),
            StructValue::Bool(b) => encode::boolean(*b).to_vec(),
            StructValue::Struct(fields) => struct_cel(fields),
            StructValue::List(items) => {
                let encoded: Vec<Vec<u8>> = items.iter().map(StructValue::to_cel).collect();
                serialize_pairs(encoded.iter().map(|e| (&e[..], &[][..])))
            }
        }
    }
}

/// A `google.protobuf.Struct` with these fields, as message bytes.
pub fn struct_proto(fields: &[(String, StructValue)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        let mut entry = Vec::new();
        bytes_field(&mut entry, 1, name.as_bytes());
        bytes_field(&mut entry, 2, &value.to_proto());
        bytes_field(&mut out, 1, &entry);
    }
    out
}

/// A `Struct`'s fields in Envoy's CEL map form: serialized pairs, values per
/// [`StructValue::to_cel`].
pub fn struct_cel(fields: &[(String, StructValue)]) -> Vec<u8> {
    let values: Vec<Vec<u8>> = fields.iter().map(|(_, v)| v.to_cel()).collect();
    serialize_pairs(
        fields
            .iter()
            .zip(&values)
            .map(|((name, _), value)| (name.as_bytes(), &value[..])),
    )
}

/// An `envoy.config.core.v3.Node` with `id`, `cluster` and `metadata`; empty fields are
/// left out, as protobuf does.
pub fn node_proto(id: &str, cluster: &str, metadata: &[(String, StructValue)]) -> Vec<u8> {
    let mut out = Vec::new();
    if !id.is_empty() {
        bytes_field(&mut out, 1, id.as_bytes());
    }
    if !cluster.is_empty() {
        bytes_field(&mut out, 2, cluster.as_bytes());
    }
    if !metadata.is_empty() {
        bytes_field(&mut out, 3, &struct_proto(metadata));
    }
    out
}

#[cfg(test)]
mod tests;

/// The first length-delimited field `number` of a protobuf message in wire format (a
/// string, bytes or embedded message); `None` when absent or when the bytes do not parse.
pub fn field(mut bytes: &[u8], number: u64) -> Option<&[u8]> {
    fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut found = None;
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        match (key & 7) as u8 {
            VARINT => {
                read_varint(&mut bytes)?;
            }
            FIXED64 => bytes = bytes.get(8..)?,
            LEN => {
                let len = usize::try_from(read_varint(&mut bytes)?).ok()?;
                let value = bytes.get(..len)?;
                bytes = &bytes[len..];
                if key >> 3 == number && found.is_none() {
                    found = Some(value);
                }
            }
            5 => bytes = bytes.get(4..)?,
            _ => return None,
        }
    }
    found
}
