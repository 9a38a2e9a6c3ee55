use super::*;
use crate::deserialize_pairs;

#[test]
fn node_fields_use_envoys_field_numbers() {
    // id = "n1" (field 1), cluster = "c" (field 2), metadata {k: "v"} (field 3).
    let node = node_proto("n1", "c", &[("k".into(), StructValue::String("v".into()))]);
    let metadata = [
        0x0a, 0x08, // fields entry, 8 bytes
        0x0a, 0x01, b'k', // key
        0x12, 0x03, 0x1a, 0x01, b'v', // value: string_value "v"
    ];
    let mut want = vec![
        0x0a,
        0x02,
        b'n',
        b'1',
        0x12,
        0x01,
        b'c',
        0x1a,
        metadata.len() as u8,
    ];
    want.extend_from_slice(&metadata);
    assert_eq!(node, want);
}

#[test]
fn empty_node_is_empty_message() {
    assert!(node_proto("", "", &[]).is_empty());
}

#[test]
fn value_kinds_encode_with_their_wire_types() {
    assert_eq!(StructValue::Null.to_proto(), [0x08, 0x00]);
    assert_eq!(StructValue::Bool(true).to_proto(), [0x20, 0x01]);
    let mut number = vec![0x11];
    number.extend_from_slice(&1.5f64.to_le_bytes());
    assert_eq!(StructValue::Number(1.5).to_proto(), number);
    // A list of one string: list_value (6) { values (1) { string_value (3) "a" } }.
    assert_eq!(
        StructValue::List(vec![StructValue::String("a".into())]).to_proto(),
        [0x32, 0x05, 0x0a, 0x03, 0x1a, 0x01, b'a']
    );
}

#[test]
fn long_fields_use_multi_byte_lengths() {
    let long = "x".repeat(200);
    let node = node_proto(&long, "", &[]);
    assert_eq!(&node[..3], &[0x0a, 0xc8, 0x01]);
    assert_eq!(node.len(), 3 + 200);
}

#[test]
fn cel_forms_follow_envoys_serialization() {
    assert_eq!(StructValue::String("v".into()).to_cel(), b"v");
    assert_eq!(StructValue::Number(2.0).to_cel(), 2.0f64.to_le_bytes());
    assert_eq!(StructValue::Bool(false).to_cel(), [0]);
    assert!(StructValue::Null.to_cel().is_empty());
    let map = StructValue::Struct(vec![
        ("a".into(), StructValue::String("1".into())),
        ("b".into(), StructValue::Bool(true)),
    ])
    .to_cel();
    let pairs = deserialize_pairs(&map).expect("pairs");
    assert_eq!(pairs, [(&b"a"[..], &b"1"[..]), (&b"b"[..], &[1u8][..])]);
    let list = StructValue::List(vec![
        StructValue::String("x".into()),
        StructValue::String("y".into()),
    ])
    .to_cel();
    let pairs = deserialize_pairs(&list).expect("pairs");
    assert_eq!(pairs, [(&b"x"[..], &b""[..]), (&b"y"[..], &b""[..])]);
}
