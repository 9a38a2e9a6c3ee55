//! Header maps as Proxy-Wasm sees them: ordered lists of lower-cased names and opaque byte
//! values, with the pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`, `:status`)
//! first. Adapters convert their framework's headers into a [`HeaderList`] once per phase and
//! write it back only when a plugin changed it.
//!
//! A map keeps its byte size (names plus values, Envoy's measure) as it changes, so that
//! the header-map hostcalls check a plugin's change against `plugins[].limits.headers`
//! ([`MapCaps`]) without summing the map again.

use std::borrow::Cow;

use bytes::Bytes;

/// One header map of a stream (request or response headers, or trailers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    entries: Vec<(Bytes, Bytes)>,
    /// The summed length of names and values of `entries`.
    bytes: usize,
    modified: bool,
}

/// The sizes a plugin's change may not grow a header map past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapCaps {
    /// Summed length of names and values.
    pub bytes: usize,
    /// Entries, pseudo-headers included.
    pub pairs: usize,
}

/// A change that would grow a map past a cap, with the size the map would have had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverCap {
    /// Too many entries.
    Pairs(usize),
    /// Too many bytes.
    Bytes(usize),
}

impl MapCaps {
    /// Whether a map may go from `before` to `after` (entries, bytes): a change may not
    /// grow a measure past its cap, but may always shrink it, also in a map that was over
    /// the cap already (the client sent it so).
    fn allow(&self, before: (usize, usize), after: (usize, usize)) -> Result<(), OverCap> {
        if after.0 > self.pairs && after.0 > before.0 {
            return Err(OverCap::Pairs(after.0));
        }
        if after.1 > self.bytes && after.1 > before.1 {
            return Err(OverCap::Bytes(after.1));
        }
        Ok(())
    }
}

/// `name` lower-cased, borrowed when it is already: the form entries are stored in, so
/// that a lookup compares bytes (`==`, a length check and a `memcmp`) instead of folding
/// the case of every entry it passes.
fn key(name: &[u8]) -> Cow<'_, [u8]> {
    if name.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

fn lower(name: &[u8]) -> Bytes {
    match key(name) {
        Cow::Owned(lowered) => Bytes::from(lowered),
        Cow::Borrowed(name) => well_known(name).unwrap_or_else(|| Bytes::copy_from_slice(name)),
    }
}

/// The pseudo-headers and the names most requests and responses carry, as static bytes:
/// a map built from a request or response then allocates for its values only.
fn well_known(name: &[u8]) -> Option<Bytes> {
    const NAMES: [&str; 24] = [
        ":method",
        ":path",
        ":authority",
        ":scheme",
        ":status",
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "date",
        "server",
        "cache-control",
        "authorization",
        "cookie",
        "set-cookie",
        "x-forwarded-for",
        "x-request-id",
        "vary",
    ];
    NAMES
        .iter()
        .find(|known| known.len() == name.len() && known.as_bytes() == name)
        .map(|known| Bytes::from_static(known.as_bytes()))
}

impl HeaderList {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `entries`.
    pub fn with_capacity(entries: usize) -> Self {
        HeaderList {
            entries: Vec::with_capacity(entries),
            ..Self::default()
        }
    }

    /// Appends an entry while an adapter builds the map; does not count as a change.
    pub fn push(&mut self, name: impl AsRef<[u8]>, value: impl Into<Bytes>) {
        let (name, value) = (lower(name.as_ref()), value.into());
        self.bytes += name.len() + value.len();
        self.entries.push((name, value));
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &[u8]) -> Option<&Bytes> {
        let name = key(name);
        self.entries
            .iter()
            .find(|(k, _)| k[..] == name[..])
            .map(|(_, v)| v)
    }

    /// Every value of `name` (case-insensitive) joined with `,`, as Envoy reads a repeated
    /// header (`request.headers.<name>`, route header matching); borrowed when it occurs
    /// once.
    pub fn joined(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
        let name = key(name);
        let mut values = self
            .entries
            .iter()
            .filter(|(k, _)| k[..] == name[..])
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
        self.append(lower(name), Bytes::copy_from_slice(value));
    }

    /// Appends a lower-cased name and its value as a change.
    fn append(&mut self, name: Bytes, value: Bytes) {
        self.bytes += name.len() + value.len();
        self.entries.push((name, value));
        self.modified = true;
    }

    /// [`HeaderList::add`] of bytes the caller owns (copied out of guest memory), kept
    /// without another copy, unless that grows the map past `caps`; the map is unchanged
    /// then.
    pub(crate) fn try_add(
        &mut self,
        mut name: Vec<u8>,
        value: Vec<u8>,
        caps: MapCaps,
    ) -> Result<(), OverCap> {
        let after = (self.len() + 1, self.bytes + name.len() + value.len());
        caps.allow(self.size(), after)?;
        name.make_ascii_lowercase();
        self.append(Bytes::from(name), Bytes::from(value));
        Ok(())
    }

    /// Leaves exactly one entry `name: value`, in the place of the first occurrence, or
    /// appended when absent (`proxy_replace_header_map_value`).
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        let value = Bytes::copy_from_slice(value);
        let name = &key(name)[..];
        match self.entries.iter().position(|(k, _)| k[..] == *name) {
            Some(first) => {
                self.bytes = self.bytes - self.entries[first].1.len() + value.len();
                self.entries[first].1 = value;
                let mut index = 0;
                let mut removed = 0;
                self.entries.retain(|(k, v)| {
                    let keep = index <= first || k[..] != *name;
                    index += 1;
                    if !keep {
                        removed += k.len() + v.len();
                    }
                    keep
                });
                self.bytes -= removed;
            }
            None => {
                self.bytes += name.len() + value.len();
                self.entries.push((Bytes::copy_from_slice(name), value));
            }
        }
        self.modified = true;
    }

    /// [`HeaderList::replace`] unless that grows the map past `caps`; the map is unchanged
    /// then.
    pub(crate) fn try_replace(
        &mut self,
        name: &[u8],
        value: &[u8],
        caps: MapCaps,
    ) -> Result<(), OverCap> {
        let (mut count, mut bytes) = (0, 0);
        let lowered = key(name);
        for (k, v) in self.entries.iter().filter(|(k, _)| k[..] == lowered[..]) {
            count += 1;
            bytes += k.len() + v.len();
        }
        let after = (
            self.len() - count + 1,
            self.bytes - bytes + name.len() + value.len(),
        );
        caps.allow(self.size(), after)?;
        self.replace(name, value);
        Ok(())
    }

    /// Removes every occurrence of `name` (`proxy_remove_header_map_value`).
    pub fn remove(&mut self, name: &[u8]) {
        let name = &key(name)[..];
        let mut removed = 0;
        self.entries.retain(|(k, v)| {
            let keep = k[..] != *name;
            if !keep {
                removed += k.len() + v.len();
            }
            keep
        });
        self.bytes -= removed;
        self.modified = true;
    }

    /// Replaces the whole map (`proxy_set_header_map_pairs`).
    pub fn set_all<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
        let mut bytes = 0;
        self.entries = pairs
            .into_iter()
            .map(|(k, v)| {
                bytes += k.len() + v.len();
                (lower(k), Bytes::copy_from_slice(v))
            })
            .collect();
        self.bytes = bytes;
        self.modified = true;
    }

    /// [`HeaderList::set_all`], keeping the entries `keep` names (redacted headers, after
    /// the given pairs, in their order), unless the new map is larger than the old one and
    /// than `caps`; the map is unchanged then.
    pub(crate) fn try_set_all(
        &mut self,
        pairs: &[(&[u8], &[u8])],
        keep: impl Fn(&[u8]) -> bool,
        caps: MapCaps,
    ) -> Result<(), OverCap> {
        let kept: Vec<(Bytes, Bytes)> = self
            .entries
            .iter()
            .filter(|(k, _)| keep(k))
            .cloned()
            .collect();
        let bytes = pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + kept.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        caps.allow(self.size(), (pairs.len() + kept.len(), bytes))?;
        self.set_all(pairs.iter().copied());
        for (k, v) in kept {
            self.push(k, v);
        }
        Ok(())
    }

    /// The length of the map in Proxy-Wasm's serialized form (count, length table, each
    /// name and value NUL-terminated), from the sizes the map keeps: no walk. 0 when empty.
    pub(crate) fn serialized_len(&self) -> usize {
        match self.entries.len() {
            0 => 0,
            n => 4 + 10 * n + self.bytes,
        }
    }

    /// Writes the map in serialized form into `out`, which is [`Self::serialized_len`]
    /// bytes (a region of guest memory): one pass, table and data written side by side.
    /// Entries whose name or value is 4 GiB or longer cannot be in a map (the limits are
    /// far below), so the lengths fit the table's u32s.
    pub(crate) fn serialize_into(&self, out: &mut [u8]) {
        debug_assert_eq!(out.len(), self.serialized_len());
        if self.entries.is_empty() {
            return;
        }
        out[..4].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let (table, data) = out[4..].split_at_mut(8 * self.entries.len());
        let mut at = 0;
        for ((k, v), lens) in self.entries.iter().zip(table.chunks_exact_mut(8)) {
            lens[..4].copy_from_slice(&(k.len() as u32).to_le_bytes());
            lens[4..].copy_from_slice(&(v.len() as u32).to_le_bytes());
            for part in [k, v] {
                data[at..at + part.len()].copy_from_slice(part);
                data[at + part.len()] = 0;
                at += part.len() + 1;
            }
        }
    }

    /// Summed byte length of names and values (Envoy's `proxy_get_header_map_size`).
    pub fn byte_size(&self) -> usize {
        self.bytes
    }

    /// (entries, bytes).
    fn size(&self) -> (usize, usize) {
        (self.len(), self.bytes)
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
        self.bytes = 0;
        self.modified = true;
    }
}

/// Conversions from and to `http`'s header maps, the vocabulary the adapters share.
impl HeaderList {
    /// A map of `http` headers (trailers, or the regular headers of a request or response)
    /// in order, names lower-case; not marked modified.
    pub fn from_header_map(map: &http::HeaderMap) -> HeaderList {
        let mut list = HeaderList::with_capacity(map.len());
        for (k, v) in map {
            list.push(k.as_str(), Bytes::copy_from_slice(v.as_bytes()));
        }
        list.mark_clean();
        list
    }

    /// Replaces `map`'s entries with this list's regular (non-pseudo) headers, in order;
    /// a pair that is not valid HTTP is dropped with a warning.
    pub fn write_header_map(&self, map: &mut http::HeaderMap) {
        map.clear();
        for (k, v) in self.regular() {
            if let Some((n, v)) = http_header(k, v) {
                map.append(n, v);
            }
        }
    }
}

/// A method as the `:method` value an adapter puts in a map: static bytes for the
/// standard methods.
pub fn method_value(method: &http::Method) -> Bytes {
    let text: &'static str = match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => return Bytes::copy_from_slice(method.as_str().as_bytes()),
    };
    Bytes::from_static(text.as_bytes())
}

/// A status code as the `:status` value an adapter puts in a map: static bytes for the
/// common codes.
pub fn status_value(status: http::StatusCode) -> Bytes {
    let text: &'static str = match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        code => return Bytes::from(code.to_string()),
    };
    Bytes::from_static(text.as_bytes())
}

/// A plugin's header pair as an `http` header, or `None` (logged) when it is not valid HTTP.
pub fn http_header(name: &[u8], value: &[u8]) -> Option<(http::HeaderName, http::HeaderValue)> {
    match (
        http::HeaderName::from_bytes(name),
        http::HeaderValue::from_bytes(value),
    ) {
        (Ok(n), Ok(v)) => Some((n, v)),
        _ => {
            tracing::warn!(
                name = %String::from_utf8_lossy(name),
                "a plugin set a header that is not valid HTTP; it is dropped"
            );
            None
        }
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
mod tests;
