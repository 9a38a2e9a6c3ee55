//! Conversions between `http`'s request and response parts and the host's [`HeaderList`],
//! which carries the Proxy-Wasm pseudo-headers (`:method`, `:path`, `:authority`,
//! `:scheme`, `:status`) for every HTTP version, as Envoy does.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, Method, Uri, request, response};
use wasmbridge_host::{HeaderList, LocalResponse, http_header, method_value, status_value};

/// `:path` as Envoy has it: path and query only.
fn path_of(uri: &Uri) -> Bytes {
    match uri.path_and_query().map(|p| p.as_str()) {
        Some(pq) if !pq.is_empty() => Bytes::copy_from_slice(pq.as_bytes()),
        _ => Bytes::from_static(b"/"),
    }
}

/// The request's authority: the URI's (HTTP/2, absolute form), else the `Host` header.
pub(crate) fn authority_of(parts: &request::Parts) -> Option<Bytes> {
    parts
        .uri
        .authority()
        .map(|a| Bytes::copy_from_slice(a.as_str().as_bytes()))
        .or_else(|| {
            parts
                .headers
                .get(HOST)
                .map(|h| Bytes::copy_from_slice(h.as_bytes()))
        })
}

/// The request as a plugin sees it: pseudo-headers first, `Host` folded into `:authority`.
pub(crate) fn request_to_list(parts: &request::Parts) -> HeaderList {
    let mut list = HeaderList::with_capacity(4 + parts.headers.len());
    list.push(":method", method_value(&parts.method));
    list.push(":path", path_of(&parts.uri));
    list.push(":authority", authority_of(parts).unwrap_or_default());
    let scheme = match parts.uri.scheme_str().unwrap_or("http") {
        "http" => Bytes::from_static(b"http"),
        "https" => Bytes::from_static(b"https"),
        other => Bytes::copy_from_slice(other.as_bytes()),
    };
    list.push(":scheme", scheme);
    for (name, value) in &parts.headers {
        if name != HOST {
            list.push(name.as_str(), Bytes::copy_from_slice(value.as_bytes()));
        }
    }
    list.mark_clean();
    list
}

/// Writes a plugin-changed request back: method, path, authority (as `Host`, and in the
/// URI when it has one), then every header.
pub(crate) fn apply_request(list: &HeaderList, parts: &mut request::Parts) {
    if let Some(m) = list
        .get(b":method")
        .and_then(|m| Method::from_bytes(m).ok())
    {
        parts.method = m;
    }
    let authority = list.get(b":authority").filter(|a| !a.is_empty()).cloned();
    if let Some(path) = list.get(b":path")
        && *path != path_of(&parts.uri)
    {
        let mut uri = http::uri::Builder::new();
        if let (Some(scheme), Some(a)) = (parts.uri.scheme_str(), parts.uri.authority()) {
            uri = uri.scheme(scheme).authority(a.as_str());
        }
        match uri.path_and_query(&path[..]).build() {
            Ok(uri) => parts.uri = uri,
            Err(_) => tracing::warn!("a plugin set an invalid :path; it is ignored"),
        }
    }
    if let (Some(a), Some(scheme)) = (&authority, parts.uri.scheme_str())
        && parts.uri.authority().map(|x| x.as_str().as_bytes()) != Some(&a[..])
    {
        let rebuilt = Uri::builder()
            .scheme(scheme)
            .authority(&a[..])
            .path_and_query(path_of(&parts.uri).as_ref())
            .build();
        match rebuilt {
            Ok(uri) => parts.uri = uri,
            Err(_) => tracing::warn!("a plugin set an invalid :authority; it is ignored"),
        }
    }
    let mut headers = HeaderMap::new();
    if let Some(a) = &authority
        && let Some((n, v)) = http_header(b"host", a)
    {
        headers.insert(n, v);
    }
    for (k, v) in list.regular() {
        if k.as_ref() == b"host" {
            continue;
        }
        if let Some((n, v)) = http_header(k, v) {
            headers.append(n, v);
        }
    }
    parts.headers = headers;
}

/// The response as a plugin sees it: `:status` first.
pub(crate) fn response_to_list(parts: &response::Parts) -> HeaderList {
    let mut list = HeaderList::with_capacity(1 + parts.headers.len());
    list.push(":status", status_value(parts.status));
    for (name, value) in &parts.headers {
        list.push(name.as_str(), Bytes::copy_from_slice(value.as_bytes()));
    }
    list.mark_clean();
    list
}

/// Writes plugin-changed response headers back: status and every header.
pub(crate) fn apply_response(list: &HeaderList, parts: &mut response::Parts) {
    if let Some(code) = list.status() {
        match http::StatusCode::from_u16(code) {
            Ok(s) => parts.status = s,
            Err(_) => tracing::warn!(code, "a plugin set an invalid :status; it is ignored"),
        }
    }
    list.write_header_map(&mut parts.headers);
}

/// The head of a complete local response (its headers include `content-length`).
pub(crate) fn local_head(resp: &LocalResponse) -> response::Parts {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers.write_header_map(&mut parts.headers);
    parts
}

/// True when a response with this head has no body.
pub(crate) fn response_is_bodyless(parts: &response::Parts, head: bool) -> bool {
    let code = parts.status.as_u16();
    head || (100..200).contains(&code)
        || code == 204
        || code == 304
        || parts
            .headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_keeps_pseudo_headers_and_applies_changes() {
        let req = http::Request::get("/a?b=1")
            .header("Host", "example.com")
            .header("X-One", "1")
            .body(())
            .expect("request");
        let (mut parts, ()) = req.into_parts();
        let mut list = request_to_list(&parts);
        let pairs: Vec<_> = list.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(pairs[0], (b":method".to_vec(), b"GET".to_vec()));
        assert_eq!(pairs[1], (b":path".to_vec(), b"/a?b=1".to_vec()));
        assert_eq!(pairs[2], (b":authority".to_vec(), b"example.com".to_vec()));
        assert_eq!(pairs[3], (b":scheme".to_vec(), b"http".to_vec()));
        list.replace(b":path", b"/rewritten");
        list.add(b"x-two", b"2");
        list.replace(b":authority", b"other.test");
        apply_request(&list, &mut parts);
        assert_eq!(parts.uri.path(), "/rewritten");
        assert_eq!(parts.headers["x-two"], "2");
        assert_eq!(parts.headers["host"], "other.test");
        assert_eq!(parts.headers["x-one"], "1");
    }

    #[test]
    fn http2_requests_take_the_authority_from_the_uri() {
        let req = http::Request::get("http://example.com:8080/a/b?q=1")
            .body(())
            .expect("request");
        let (mut parts, ()) = req.into_parts();
        let mut list = request_to_list(&parts);
        assert_eq!(
            list.get(b":authority").map(|v| &v[..]),
            Some(&b"example.com:8080"[..])
        );
        list.replace(b":authority", b"other:1");
        apply_request(&list, &mut parts);
        assert_eq!(parts.uri.to_string(), "http://other:1/a/b?q=1");
    }

    #[test]
    fn response_status_and_headers_apply() {
        let resp = http::Response::builder()
            .header("content-length", "3")
            .body(())
            .expect("response");
        let (mut parts, ()) = resp.into_parts();
        let mut list = response_to_list(&parts);
        list.replace(b":status", b"418");
        list.remove(b"content-length");
        list.add(b"x-added", b"yes");
        apply_response(&list, &mut parts);
        assert_eq!(parts.status.as_u16(), 418);
        assert!(parts.headers.get("content-length").is_none());
        assert_eq!(parts.headers["x-added"], "yes");
    }
}
