//! Conversions between Pingora's request/response headers and the host's [`HeaderList`],
//! which carries the Proxy-Wasm pseudo-headers (`:method`, `:path`, `:authority`,
//! `:scheme`, `:status`) even for HTTP/1.1, as Envoy does. Trailers are plain
//! [`HeaderMap`]s without pseudo-headers.

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderName, Method, Uri};
use pingora::http::{RequestHeader, ResponseHeader};
use wasmbridge_host::{HeaderList, http_header as header, method_value, status_value};

/// The request target when the request line is in absolute form
/// (`GET http://host/a?b HTTP/1.1`), parsed; `None` for origin form.
fn absolute_target(req: &RequestHeader) -> Option<Uri> {
    let raw = req.raw_path();
    if raw.starts_with(b"/") {
        None
    } else {
        Uri::try_from(raw).ok()
    }
}

/// `:path` as Envoy has it: path and query only, also for an absolute-form request line.
/// Origin-form paths keep their raw bytes.
fn path_of(req: &RequestHeader) -> Bytes {
    match absolute_target(req) {
        None if !req.raw_path().is_empty() => Bytes::copy_from_slice(req.raw_path()),
        None => Bytes::from_static(b"/"),
        Some(uri) => {
            let pq = uri.path_and_query().map_or("/", |p| p.as_str());
            Bytes::copy_from_slice(if pq.is_empty() { b"/" } else { pq.as_bytes() })
        }
    }
}

/// The request as a plugin sees it: pseudo-headers first, `Host` folded into `:authority`.
pub(crate) fn request_to_list(req: &RequestHeader, scheme: &'static str) -> HeaderList {
    let mut list = HeaderList::with_capacity(4 + req.headers.len());
    list.push(":method", method_value(&req.method));
    list.push(":path", path_of(req));
    let authority = absolute_target(req)
        .as_ref()
        .and_then(Uri::authority)
        .or_else(|| req.uri.authority())
        .map(|a| Bytes::copy_from_slice(a.as_str().as_bytes()))
        .or_else(|| {
            req.headers
                .get(HOST)
                .map(|h| Bytes::copy_from_slice(h.as_bytes()))
        })
        .unwrap_or_default();
    list.push(":authority", authority);
    list.push(":scheme", Bytes::from_static(scheme.as_bytes()));
    for (name, value) in req.headers.iter() {
        if name != HOST {
            list.push(name.as_str(), Bytes::copy_from_slice(value.as_bytes()));
        }
    }
    list
}

/// The response as a plugin sees it: `:status` first.
pub(crate) fn response_to_list(resp: &ResponseHeader) -> HeaderList {
    let mut list = HeaderList::with_capacity(1 + resp.headers.len());
    list.push(":status", status_value(resp.status));
    for (name, value) in resp.headers.iter() {
        list.push(name.as_str(), Bytes::copy_from_slice(value.as_bytes()));
    }
    list
}

/// Writes a plugin-changed request back: method, path, authority, then every header.
pub(crate) fn apply_request(list: &HeaderList, req: &mut RequestHeader) {
    if let Some(m) = list
        .get(b":method")
        .and_then(|m| Method::from_bytes(m).ok())
        && m != req.method
    {
        req.set_method(m);
    }
    if let Some(path) = list.get(b":path")
        && *path != path_of(req)
    {
        match Uri::try_from(&path[..]) {
            Ok(uri) => req.set_uri(uri),
            Err(_) => tracing::warn!("a plugin set an invalid :path; it is ignored"),
        }
    }
    let authority = list.get(b":authority").filter(|a| !a.is_empty());
    let host_unchanged = match (authority, req.headers.get(HOST)) {
        (Some(a), Some(h)) => a[..] == *h.as_bytes(),
        (None, None) => true,
        _ => false,
    };
    let regular = || list.regular().filter(|(k, _)| k.as_ref() != b"host");
    // The common change appends headers: then only the new ones are written.
    let kept = kept_prefix(req.headers.iter().filter(|(n, _)| **n != HOST), regular());
    if let (Some(kept), true) = (kept, host_unchanged) {
        for (k, v) in regular().skip(kept) {
            if let Some((n, v)) = header(k, v) {
                let _ = req.append_header(n, v);
            }
        }
        return;
    }
    let names: Vec<HeaderName> = req.headers.keys().cloned().collect();
    for name in names {
        req.remove_header(&name);
    }
    if let Some(authority) = authority
        && let Some((n, v)) = header(b"host", authority)
    {
        let _ = req.insert_header(n, v);
    }
    for (k, v) in regular() {
        if let Some((n, v)) = header(k, v) {
            let _ = req.append_header(n, v);
        }
    }
}

/// How many entries `list` starts with that are `original`'s, all of them and in order:
/// `Some(n)` when the list kept every original header (and may have appended more after
/// them), `None` when a plugin removed, replaced or reordered one.
fn kept_prefix<'a, 'b>(
    original: impl Iterator<Item = (&'a HeaderName, &'a http::HeaderValue)>,
    mut list: impl Iterator<Item = (&'b Bytes, &'b Bytes)>,
) -> Option<usize> {
    let mut kept = 0;
    for (name, value) in original {
        let (k, v) = list.next()?;
        if k.as_ref() != name.as_str().as_bytes() || v.as_ref() != value.as_bytes() {
            return None;
        }
        kept += 1;
    }
    Some(kept)
}

/// Writes plugin-changed response headers back: status and every header.
pub(crate) fn apply_response(list: &HeaderList, resp: &mut ResponseHeader) {
    if let Some(code) = list.status()
        && resp.set_status(code).is_err()
    {
        tracing::warn!(code, "a plugin set an invalid :status; it is ignored");
    }
    // The common change appends headers: then only the new ones are written.
    if let Some(kept) = kept_prefix(resp.headers.iter(), list.regular()) {
        for (k, v) in list.regular().skip(kept) {
            if let Some((n, v)) = header(k, v) {
                let _ = resp.append_header(n, v);
            }
        }
        return;
    }
    let names: Vec<HeaderName> = resp.headers.keys().cloned().collect();
    for name in names {
        resp.remove_header(&name);
    }
    for (k, v) in list.regular() {
        if let Some((n, v)) = header(k, v) {
            let _ = resp.append_header(n, v);
        }
    }
}

/// Trailers as a host header list, in order, names lower-case.
pub(crate) fn trailers_to_list(map: &HeaderMap) -> HeaderList {
    HeaderList::from_header_map(map)
}

/// Writes plugin-changed trailers back: every entry, in the list's order.
pub(crate) fn apply_trailers(list: &HeaderList, map: &mut HeaderMap) {
    list.write_header_map(map);
}

/// Builds a complete Pingora response header from a host header list.
pub(crate) fn build_response(status: u16, list: &HeaderList) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(list.len()))?;
    for (k, v) in list.regular() {
        if let Some((n, v)) = header(k, v) {
            resp.append_header(n, v)?;
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn appended_headers_are_added_and_other_changes_rewrite_the_map() {
        let mut resp = ResponseHeader::build(200, None).expect("response");
        resp.append_header("content-type", "text/plain")
            .expect("header");
        resp.append_header("x-a", "1").expect("header");
        resp.append_header("x-a", "2").expect("header");
        let header_pairs = |resp: &ResponseHeader| -> Vec<(String, String)> {
            resp.headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect()
        };
        let original = header_pairs(&resp);

        let mut added = response_to_list(&resp);
        added.add(b"x-new", b"n");
        let mut appended = resp.clone();
        apply_response(&added, &mut appended);
        let mut expected = original.clone();
        expected.push(("x-new".into(), "n".into()));
        assert_eq!(header_pairs(&appended), expected);

        let mut replaced = response_to_list(&resp);
        replaced.replace(b"x-a", b"3");
        replaced.add(b"x-new", b"n");
        let mut rewritten = resp.clone();
        apply_response(&replaced, &mut rewritten);
        assert_eq!(
            header_pairs(&rewritten),
            [("content-type", "text/plain"), ("x-a", "3"), ("x-new", "n")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );

        let mut removed = response_to_list(&resp);
        removed.remove(b"content-type");
        let mut shrunk = resp.clone();
        apply_response(&removed, &mut shrunk);
        assert_eq!(header_pairs(&shrunk), original[1..].to_vec());
    }

    #[test]
    fn request_round_trip_keeps_pseudo_headers_and_applies_changes() {
        let mut req = RequestHeader::build("GET", b"/a?b=1", None).expect("request");
        req.insert_header("Host", "example.com").expect("host");
        req.insert_header("X-One", "1").expect("header");
        let mut list = request_to_list(&req, "http");
        let pairs: Vec<_> = list.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(pairs[0], (b":method".to_vec(), b"GET".to_vec()));
        assert_eq!(pairs[1], (b":path".to_vec(), b"/a?b=1".to_vec()));
        assert_eq!(pairs[2], (b":authority".to_vec(), b"example.com".to_vec()));
        assert_eq!(pairs[3], (b":scheme".to_vec(), b"http".to_vec()));
        assert!(list.get(b"host").is_none());
        list.replace(b":path", b"/rewritten");
        list.add(b"x-two", b"2");
        list.replace(b":authority", b"other.test");
        apply_request(&list, &mut req);
        assert_eq!(req.raw_path(), b"/rewritten");
        assert_eq!(
            req.headers.get("x-two").map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
        assert_eq!(
            req.headers.get("host").map(|v| v.as_bytes()),
            Some(&b"other.test"[..])
        );
        assert_eq!(
            req.headers.get("x-one").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }

    #[test]
    fn absolute_form_request_lines_give_an_origin_form_path() {
        let req =
            RequestHeader::build("GET", b"http://example.com:8080/a/b?q=1", None).expect("request");
        let list = request_to_list(&req, "http");
        assert_eq!(list.get(b":path").map(|v| &v[..]), Some(&b"/a/b?q=1"[..]));
        assert_eq!(
            list.get(b":authority").map(|v| &v[..]),
            Some(&b"example.com:8080"[..])
        );
    }

    #[test]
    fn trailers_round_trip() {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", HeaderValue::from_static("0"));
        map.append("x-t", HeaderValue::from_static("a"));
        map.append("x-t", HeaderValue::from_static("b"));
        let mut list = trailers_to_list(&map);
        assert!(!list.is_modified());
        assert_eq!(list.len(), 3);
        list.remove(b"grpc-status");
        list.add(b"x-new", b"1");
        apply_trailers(&list, &mut map);
        assert!(map.get("grpc-status").is_none());
        let xt: Vec<_> = map.get_all("x-t").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(xt, [&b"a"[..], &b"b"[..]]);
        assert_eq!(map.get("x-new").map(|v| v.as_bytes()), Some(&b"1"[..]));
    }

    #[test]
    fn response_status_and_headers_apply() {
        let mut resp = ResponseHeader::build(200, None).expect("response");
        resp.insert_header("content-length", "3").expect("cl");
        let mut list = response_to_list(&resp);
        list.replace(b":status", b"418");
        list.remove(b"content-length");
        list.add(b"x-added", b"yes");
        apply_response(&list, &mut resp);
        assert_eq!(resp.status.as_u16(), 418);
        assert!(resp.headers.get("content-length").is_none());
        assert_eq!(
            resp.headers.get("x-added").map(|v| v.as_bytes()),
            Some(&b"yes"[..])
        );
    }
}
