//! Header maps as Proxy-Wasm sees them: ordered lists of lower-cased names and opaque byte
//! values, with the pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`, `:status`)
//! first. Adapters convert their framework's headers into a [`HeaderList`] once per phase and
//! write it back only when a plugin changed it.

use std::borrow::Cow;

use bytes::Bytes;

/// One header map of a stream (request or response headers, or trailers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    entries: Vec<(Bytes, Bytes)>,
    modified: bool,
}

fn lower(name: &[u8]) -> Bytes {
    if name.iter().any(u8::is_ascii_uppercase) {
        Bytes::from(name.to_ascii_lowercase())
    } else {
        Bytes::copy_from_slice(name)
    }
}

impl HeaderList {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an entry while an adapter builds the map; does not count as a change.
    pub fn push(&mut self, name: impl AsRef<[u8]>, value: impl Into<Bytes>) {
        self.entries.push((lower(name.as_ref()), value.into()));
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &[u8]) -> Option<&Bytes> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every value of `name` (case-insensitive) joined with `,`, as Envoy reads a repeated
    /// header (`request.headers.<name>`, route header matching); borrowed when it occurs
    /// once.
    pub fn joined(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
        let mut values = self
            .entries
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..]);
        let first = values.next()?;
        let Some(second) = values.next() else {
            return Some(Cow::Borrowed(first));
        };
        let mut out = [first, second].join(&b","[..]);
        for v in values {
            out.push(b',');
            out.extend_from_slice(v);
        }
        Some(Cow::Owned(out))
    }

    /// Every entry in order, one per occurrence.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> + Clone {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The `:status` pseudo-header as a number, when present and valid.
    pub fn status(&self) -> Option<u16> {
        std::str::from_utf8(self.get(b":status")?)
            .ok()?
            .parse()
            .ok()
    }

    /// Entries that are not pseudo-headers.
    pub fn regular(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.iter().filter(|(k, _)| !k.starts_with(b":"))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an occurrence (`proxy_add_header_map_value`).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.entries
            .push((lower(name), Bytes::copy_from_slice(value)));
        self.modified = true;
    }

    /// Leaves exactly one entry `name: value`, in the place of the first occurrence, or
    /// appended when absent (`proxy_replace_header_map_value`).
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        let value = Bytes::copy_from_slice(value);
        match self
            .entries
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some(first) => {
                self.entries[first].1 = value;
                let mut index = 0;
                self.entries.retain(|(k, _)| {
                    let keep = index <= first || !k.eq_ignore_ascii_case(name);
                    index += 1;
                    keep
                });
            }
            None => self.entries.push((lower(name), value)),
        }
        self.modified = true;
    }

    /// Removes every occurrence of `name` (`proxy_remove_header_map_value`).
    pub fn remove(&mut self, name: &[u8]) {
        self.entries.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.modified = true;
    }

    /// Replaces the whole map (`proxy_set_header_map_pairs`).
    pub fn set_all<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
        self.entries = pairs
            .into_iter()
            .map(|(k, v)| (lower(k), Bytes::copy_from_slice(v)))
            .collect();
        self.modified = true;
    }

    /// Replaces every entry but those `keep` names (`proxy_set_header_map_pairs` around
    /// redacted headers): the given pairs, then the kept entries in their order.
    pub(crate) fn set_all_keeping<'a>(
        &mut self,
        pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        keep: impl Fn(&[u8]) -> bool,
    ) {
        let kept: Vec<(Bytes, Bytes)> = self.entries.drain(..).filter(|(k, _)| keep(k)).collect();
        self.set_all(pairs);
        self.entries.extend(kept);
    }

    /// Summed byte length of names and values (Envoy's `proxy_get_header_map_size`).
    pub fn byte_size(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// True when a plugin changed the map since it was built or last marked clean.
    pub fn is_modified(&self) -> bool {
        self.modified
    }

    /// Marks the map as written back.
    pub fn mark_clean(&mut self) {
        self.modified = false;
    }

    /// Removes every entry; counts as a change.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.modified = true;
    }
}

impl FromIterator<(Bytes, Bytes)> for HeaderList {
    /// A map of these pairs in order, names lower-cased.
    fn from_iter<I: IntoIterator<Item = (Bytes, Bytes)>>(pairs: I) -> Self {
        let mut list = HeaderList::new();
        for (name, value) in pairs {
            list.push(name, value);
        }
        list
    }
}

#[cfg(test)]
mod tests {
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
}
