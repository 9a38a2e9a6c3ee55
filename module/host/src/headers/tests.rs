//! Unit tests of header maps: order, case, and the byte counter the caps rely on.

use super::*;

fn list() -> HeaderList {
    let mut h = HeaderList::new();
    h.push(":path", "/a");
    h.push("X-A", "1");
    h.push("x-b", "2");
    h.push("x-a", "3");
    h
}

#[test]
fn names_are_lower_cased_and_lookups_case_insensitive() {
    let h = list();
    assert_eq!(h.get(b"X-a").map(|v| &v[..]), Some(&b"1"[..]));
    assert!(
        h.iter()
            .all(|(k, _)| k.iter().all(|c| !c.is_ascii_uppercase()))
    );
    assert!(!h.is_modified());
    assert_eq!(h.status(), None);
    let mut r = HeaderList::new();
    r.push(":status", "404");
    assert_eq!(r.status(), Some(404));
    r.replace(b":status", b"nope");
    assert_eq!(r.status(), None);
}

#[test]
fn replace_keeps_one_entry_at_the_first_place() {
    let mut h = list();
    h.replace(b"x-a", b"9");
    let pairs: Vec<_> = h.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    assert_eq!(
        pairs,
        vec![
            (b":path".to_vec(), b"/a".to_vec()),
            (b"x-a".to_vec(), b"9".to_vec()),
            (b"x-b".to_vec(), b"2".to_vec()),
        ]
    );
    assert!(h.is_modified());
    h.replace(b"x-new", b"v");
    assert_eq!(h.get(b"x-new").map(|v| &v[..]), Some(&b"v"[..]));
}

#[test]
fn remove_drops_every_occurrence_and_size_sums_bytes() {
    let mut h = list();
    assert_eq!(h.byte_size(), 5 + 2 + 3 + 1 + 3 + 1 + 3 + 1);
    h.remove(b"X-A");
    assert_eq!(h.len(), 2);
    assert_eq!(h.regular().count(), 1);
}

/// The counter equals a fresh sum of names and values.
fn counted(h: &HeaderList) -> bool {
    h.byte_size() == h.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
}

#[test]
fn the_byte_counter_follows_every_change() {
    let mut h = list();
    assert!(counted(&h));
    h.add(b"X-New", b"value");
    assert!(counted(&h));
    h.replace(b"x-a", b"a longer value than before");
    assert!(counted(&h));
    h.replace(b"x-absent", b"v");
    assert!(counted(&h));
    h.remove(b"x-b");
    assert!(counted(&h));
    h.set_all([(&b"a"[..], &b"1"[..]), (b"bb", b"22")]);
    assert!(counted(&h));
    assert_eq!(h.byte_size(), 6);
    h.clear();
    assert_eq!(h.byte_size(), 0);
    let built: HeaderList = [(Bytes::from_static(b"k"), Bytes::from_static(b"vv"))]
        .into_iter()
        .collect();
    assert_eq!(built.byte_size(), 3);
}

#[test]
fn changes_past_a_cap_are_refused_and_leave_the_map_alone() {
    // list(): 4 entries, 7 + 4 + 4 + 4 = 19 bytes.
    let caps = MapCaps {
        bytes: 24,
        pairs: 5,
    };
    let mut h = list();
    assert_eq!(
        h.try_add(b"x-c".to_vec(), b"12".to_vec(), caps),
        Ok(()),
        "exactly at both caps"
    );
    assert_eq!((h.len(), h.byte_size()), (5, 24));
    let full = h.clone();
    assert_eq!(
        h.try_add(b"x-d".to_vec(), Vec::new(), caps),
        Err(OverCap::Pairs(6))
    );
    assert_eq!(h, full);
    // Two `x-a` (8 bytes) become one of 3 + 10.
    assert_eq!(
        h.try_replace(b"X-A", b"long value", caps),
        Err(OverCap::Bytes(29))
    );
    assert_eq!(h, full);
    assert_eq!(
        h.try_replace(b"x-b", b"123456", caps),
        Err(OverCap::Bytes(29))
    );
    assert_eq!(h, full);
    let six: Vec<(&[u8], &[u8])> = (0..6).map(|_| (&b"k"[..], &b"v"[..])).collect();
    assert_eq!(h.try_set_all(&six, |_| false, caps), Err(OverCap::Pairs(6)));
    assert_eq!(h, full);
    assert_eq!(h.try_replace(b"x-a", b"z", caps), Ok(()));
    assert_eq!((h.len(), h.byte_size()), (4, 20));
    assert!(counted(&h));
}

#[test]
fn a_map_over_a_cap_may_still_shrink() {
    let caps = MapCaps {
        bytes: 1000,
        pairs: 3,
    };
    let mut h = HeaderList::new();
    for name in ["a", "b", "c", "d", "e"] {
        h.push(name, "1");
    }
    let five = h.clone();
    assert_eq!(
        h.try_add(b"f".to_vec(), b"1".to_vec(), caps),
        Err(OverCap::Pairs(6))
    );
    assert_eq!(h, five);
    assert_eq!(
        h.try_replace(b"a", b"longer", caps),
        Ok(()),
        "as many entries"
    );
    let four: Vec<(&[u8], &[u8])> = (0..4).map(|_| (&b"k"[..], &b"v"[..])).collect();
    assert_eq!(
        h.try_set_all(&four, |_| false, caps),
        Ok(()),
        "fewer, though over the cap"
    );
    assert_eq!(h.len(), 4);
}

#[test]
fn a_map_serializes_itself_as_the_codec_does() {
    let mut h = list();
    h.add(b"X-Added", b"");
    h.try_add(
        b"X-Owned".to_vec(),
        b"value".to_vec(),
        MapCaps {
            bytes: 1 << 20,
            pairs: 100,
        },
    )
    .unwrap();
    let pairs: Vec<(&[u8], &[u8])> = h.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    let expected = wasmbridge_abi::serialize_pairs(pairs.iter().copied());
    assert_eq!(h.serialized_len(), expected.len());
    let mut out = vec![0xAA; h.serialized_len()];
    h.serialize_into(&mut out);
    assert_eq!(out, expected);
    assert_eq!(h.get(b"x-owned").map(|v| &v[..]), Some(&b"value"[..]));

    let empty = HeaderList::new();
    assert_eq!(empty.serialized_len(), 0);
    empty.serialize_into(&mut []);
}

#[test]
fn lookups_find_names_in_any_case_and_the_stored_name_is_lower_case() {
    let mut h = list();
    h.replace(b"X-B", b"two");
    assert_eq!(h.get(b"x-B").map(|v| &v[..]), Some(&b"two"[..]));
    h.replace(b"X-New", b"n");
    assert!(h.iter().any(|(k, _)| &k[..] == b"x-new"));
    h.remove(b"X-A");
    assert_eq!(h.get(b"x-a"), None);
    assert_eq!(h.joined(b"X-NEW").as_deref(), Some(&b"n"[..]));
}

#[test]
fn methods_and_statuses_become_their_text() {
    for method in ["GET", "POST", "PURGE"] {
        let method = http::Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(&method_value(&method)[..], method.as_str().as_bytes());
    }
    for code in [200, 404, 503, 299, 418] {
        let status = http::StatusCode::from_u16(code).unwrap();
        assert_eq!(&status_value(status)[..], code.to_string().as_bytes());
    }
}

#[test]
fn well_known_names_are_kept_as_static_bytes_and_others_copied() {
    let mut h = HeaderList::with_capacity(3);
    h.push("content-type", "text/plain");
    h.push("Content-Length", "3");
    h.push("x-custom", "1");
    let names: Vec<&[u8]> = h.iter().map(|(k, _)| &k[..]).collect();
    assert_eq!(
        names,
        [
            &b"content-type"[..],
            &b"content-length"[..],
            &b"x-custom"[..]
        ]
    );
    assert_eq!(
        well_known(b"content-type").as_deref(),
        Some(&b"content-type"[..])
    );
    assert_eq!(well_known(b":status").as_deref(), Some(&b":status"[..]));
    assert_eq!(well_known(b"x-custom"), None);
    assert_eq!(
        h.byte_size(),
        "content-typetext/plaincontent-length3x-custom1".len()
    );
}
