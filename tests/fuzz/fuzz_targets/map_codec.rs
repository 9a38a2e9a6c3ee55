//! The serialized header-map codec (reference §7.2) against arbitrary bytes.
//!
//! Decoding: no panic; an error is a decoding `MapError` with a message; a map that decodes
//! re-serializes to exactly the input (the four-byte zero-count form, which serializes as
//! no bytes, aside) and re-decodes to the same pairs. Encoding: the input cut into pairs
//! serializes to `serialized_len` bytes, `serialize_pairs_into` writes the same bytes, and
//! they decode back to the same pairs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmbridge_abi::{
    MAX_MAP_BYTES, MAX_MAP_PAIRS, MapError, Pair, deserialize_pairs, serialize_pairs,
    serialize_pairs_into, serialized_len,
};

fuzz_target!(|data: &[u8]| {
    decode(data);
    encode(data);
});

fn decode(data: &[u8]) {
    let pairs = match deserialize_pairs(data) {
        Ok(pairs) => pairs,
        Err(err) => {
            assert!(
                !matches!(
                    err,
                    MapError::LengthOverflow { .. }
                        | MapError::CountOverflow { .. }
                        | MapError::OutputSize { .. }
                ),
                "decoding returned a serialization-only error: {err:?}"
            );
            assert!(!err.to_string().is_empty(), "empty message for {err:?}");
            return;
        }
    };
    assert!(data.len() <= MAX_MAP_BYTES && pairs.len() <= MAX_MAP_PAIRS);
    let bytes = serialize_pairs(pairs.iter().copied());
    if pairs.is_empty() {
        assert!(
            data.is_empty() || data == [0, 0, 0, 0],
            "{data:?} decoded to no pairs"
        );
        assert!(bytes.is_empty(), "no pairs serialized to {bytes:?}");
    } else {
        assert_eq!(bytes, data, "re-serialization is not byte-exact");
    }
    check_encoded(&pairs, &bytes);
}

/// Cuts the input at every 0xFF into alternating keys and values (keys and values may hold
/// NULs: nothing requires them to be text), then serializes.
fn encode(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0xFF);
    let mut pairs: Vec<Pair<'_>> = Vec::new();
    while let Some(key) = parts.next() {
        if pairs.len() == MAX_MAP_PAIRS {
            break;
        }
        pairs.push((key, parts.next().unwrap_or_default()));
    }
    let bytes = serialize_pairs(pairs.iter().copied());
    check_encoded(&pairs, &bytes);
}

fn check_encoded(pairs: &[Pair<'_>], bytes: &[u8]) {
    assert_eq!(serialized_len(pairs.iter().copied()), bytes.len());
    let mut out = vec![0u8; bytes.len()];
    serialize_pairs_into(pairs.iter().copied(), &mut out).expect("exact-size output");
    assert_eq!(
        out, bytes,
        "serialize_pairs_into differs from serialize_pairs"
    );
    let mut wrong = vec![0u8; bytes.len() + 1];
    assert!(matches!(
        serialize_pairs_into(pairs.iter().copied(), &mut wrong),
        Err(MapError::OutputSize { .. })
    ));
    if bytes.len() > MAX_MAP_BYTES {
        return; // a guest may not send it; the decoder refuses it by design
    }
    let again = deserialize_pairs(bytes).expect("serialized pairs decode");
    assert_eq!(again, pairs, "pairs changed across a round trip");
}
