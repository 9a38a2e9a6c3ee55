use super::*;

/// `{a: "1", b: "22"}` from reference §7.2.
const EXAMPLE: [u8; 29] = [
    0x02, 0x00, 0x00, 0x00, // 2 pairs
    0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // a: 1 byte, "1": 1 byte
    0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // b: 1 byte, "22": 2 bytes
    0x61, 0x00, 0x31, 0x00, // a\0 1\0
    0x62, 0x00, 0x32, 0x32, 0x00, // b\0 22\0
];

fn example_pairs() -> Vec<(&'static [u8], &'static [u8])> {
    vec![(b"a", b"1"), (b"b", b"22")]
}

#[test]
fn serializes_the_reference_example_byte_for_byte() {
    let pairs = example_pairs();
    assert_eq!(serialized_len(pairs.iter().copied()), 29);
    assert_eq!(serialize_pairs(pairs.iter().copied()), EXAMPLE);

    let mut out = [0xffu8; 29];
    serialize_pairs_into(pairs.iter().copied(), &mut out).unwrap();
    assert_eq!(out, EXAMPLE);
}

#[test]
fn deserializes_the_reference_example() {
    assert_eq!(deserialize_pairs(&EXAMPLE).unwrap(), example_pairs());
}

#[test]
fn empty_map_is_no_bytes() {
    let none: [(&[u8], &[u8]); 0] = [];
    assert_eq!(serialized_len(none), 0);
    assert!(serialize_pairs(none).is_empty());
    serialize_pairs_into(none, &mut []).unwrap();
    assert!(deserialize_pairs(&[]).unwrap().is_empty());
}

#[test]
fn four_byte_zero_count_is_empty() {
    assert!(deserialize_pairs(&[0, 0, 0, 0]).unwrap().is_empty());
}

#[test]
fn round_trips_bytes_and_repeated_keys_in_order() {
    let pairs: Vec<(&[u8], &[u8])> = vec![
        (b"set-cookie", b"a=1"),
        (b"x-bin", &[0xff, 0xfe, 0x80, 0x01]),
        (b"set-cookie", b"b=2"),
        (b"", b""),
        (&[0xc3, 0x28], b"not utf-8 key"),
    ];
    let bytes = serialize_pairs(pairs.iter().copied());
    assert_eq!(bytes.len(), serialized_len(pairs.iter().copied()));
    assert_eq!(deserialize_pairs(&bytes).unwrap(), pairs);
}

#[test]
fn accepts_exactly_max_pairs() {
    let pairs = vec![(&b""[..], &b""[..]); MAX_MAP_PAIRS];
    let bytes = serialize_pairs(pairs.iter().copied());
    assert_eq!(deserialize_pairs(&bytes).unwrap().len(), MAX_MAP_PAIRS);
}

#[test]
fn rejects_too_many_pairs() {
    let count = u32::try_from(MAX_MAP_PAIRS + 1).unwrap();
    let err = deserialize_pairs(&count.to_le_bytes()).unwrap_err();
    assert_eq!(
        err,
        MapError::TooManyPairs {
            count,
            max: MAX_MAP_PAIRS
        }
    );
    assert!(err.to_string().contains("1025"));
}

#[test]
fn rejects_too_large() {
    let buf = vec![0u8; MAX_MAP_BYTES + 1];
    assert!(matches!(
        deserialize_pairs(&buf),
        Err(MapError::TooLarge { size, .. }) if size == MAX_MAP_BYTES + 1
    ));
}

#[test]
fn every_truncation_is_an_error() {
    for cut in 1..EXAMPLE.len() {
        assert!(deserialize_pairs(&EXAMPLE[..cut]).is_err(), "cut at {cut}");
    }
    assert_eq!(
        deserialize_pairs(&EXAMPLE[..2]),
        Err(MapError::TruncatedCount { len: 2 })
    );
    assert_eq!(
        deserialize_pairs(&EXAMPLE[..12]),
        Err(MapError::TruncatedLengths {
            pairs: 2,
            needed: 20,
            len: 12
        })
    );
    // Cut inside "22": pair 1's value starts at offset 26.
    let err = deserialize_pairs(&EXAMPLE[..27]).unwrap_err();
    assert_eq!(
        err,
        MapError::TruncatedData {
            pair: 1,
            part: MapPart::Value,
            offset: 26,
            part_len: 2,
            len: 27
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("pair 1") && msg.contains("offset 26"), "{msg}");
}

#[test]
fn huge_declared_length_is_truncation_not_a_panic() {
    let mut buf = EXAMPLE;
    buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        deserialize_pairs(&buf),
        Err(MapError::TruncatedData {
            pair: 0,
            part: MapPart::Key,
            offset: 20,
            ..
        })
    ));
}

#[test]
fn rejects_missing_nul() {
    let mut buf = EXAMPLE;
    buf[21] = b'x'; // the NUL after key "a"
    let err = deserialize_pairs(&buf).unwrap_err();
    assert_eq!(
        err,
        MapError::MissingNul {
            pair: 0,
            part: MapPart::Key,
            offset: 21,
            found: b'x'
        }
    );
    assert!(err.to_string().contains("offset 21"));

    let mut buf = EXAMPLE;
    buf[28] = b'!'; // the NUL after value "22"
    assert_eq!(
        deserialize_pairs(&buf),
        Err(MapError::MissingNul {
            pair: 1,
            part: MapPart::Value,
            offset: 28,
            found: b'!'
        })
    );
}

#[test]
fn rejects_trailing_bytes() {
    let mut buf = EXAMPLE.to_vec();
    buf.push(0);
    let err = deserialize_pairs(&buf).unwrap_err();
    assert_eq!(
        err,
        MapError::TrailingBytes {
            offset: 29,
            extra: 1
        }
    );
    assert!(err.to_string().contains("offset 29"));

    assert_eq!(
        deserialize_pairs(&[0, 0, 0, 0, 0]),
        Err(MapError::TrailingBytes {
            offset: 4,
            extra: 1
        })
    );
}

#[test]
fn serialize_into_needs_the_exact_size() {
    let pairs = example_pairs();
    let mut short = [0u8; 28];
    assert_eq!(
        serialize_pairs_into(pairs.iter().copied(), &mut short),
        Err(MapError::OutputSize {
            expected: 29,
            actual: 28
        })
    );
    let mut long = [0u8; 30];
    assert!(serialize_pairs_into(pairs.iter().copied(), &mut long).is_err());
}
