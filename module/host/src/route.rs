//! What an adapter needs to pick a request's plugin chain: the [`RouteSelection`] a route makes,
//! the [`ChainSelector`] that makes it from the request head, and the header values route
//! matching reads ([`request_header`]). Pingora and tower both select through these.

use std::borrow::Cow;
use std::sync::Arc;

use crate::{FilterChain, LocalReply};

/// What runs for one request: its plugin chain, and optionally a direct response that
/// replaces forwarding the request.
#[derive(Debug, Clone, Default)]
pub struct RouteSelection {
    /// The route's plugins (`None` or empty: no plugin runs).
    pub chain: Option<Arc<FilterChain>>,
    /// A response to send instead of forwarding, after the request callbacks continued.
    pub direct: Option<LocalReply>,
    /// The route name, for metrics and the `xds.route_name` property.
    pub route: Option<Arc<str>>,
    /// The cluster the route forwards to (`xds.cluster_name`).
    pub cluster: Option<Arc<str>>,
    /// How many endpoints that cluster has (`upstream.num_endpoints`).
    pub endpoints: Option<u32>,
}

impl RouteSelection {
    /// Records the route it picked in a stream's facts (`xds.route_name`,
    /// `xds.cluster_name`, `upstream.num_endpoints`).
    pub fn record(&self, info: &mut crate::StreamInfo) {
        info.route_name = self.route.as_deref().map(str::to_string);
        info.cluster_name = self.cluster.as_deref().map(str::to_string);
        info.upstream.endpoints = self.endpoints;
    }
}

/// Picks the plugin chain for a request from its head as the client sent it; asked again
/// after the request-header callbacks when a plugin changed the request headers or
/// cleared the route cache, to re-select the route (the chain already running stays).
pub trait ChainSelector: Send + Sync + 'static {
    /// The selection for a request.
    fn select(&self, req: &http::request::Parts) -> RouteSelection;
}

/// One chain for every request.
impl ChainSelector for Arc<FilterChain> {
    fn select(&self, _req: &http::request::Parts) -> RouteSelection {
        RouteSelection {
            chain: Some(self.clone()),
            ..RouteSelection::default()
        }
    }
}

/// A request header's value for route matching: pseudo-headers from the request line
/// (`:authority` falls back to `host`), repeated headers joined with `,` (borrowed unless
/// they repeat).
pub fn request_header<'r>(req: &'r http::request::Parts, name: &str) -> Option<Cow<'r, [u8]>> {
    let bytes = |s: &'r str| Some(Cow::Borrowed(s.as_bytes()));
    match name {
        ":method" => bytes(req.method.as_str()),
        ":path" => bytes(req.uri.path_and_query().map_or("/", |p| p.as_str())),
        ":scheme" => bytes(req.uri.scheme_str().unwrap_or("http")),
        ":authority" => match req.uri.authority() {
            Some(a) => bytes(a.as_str()),
            None => req
                .headers
                .get(http::header::HOST)
                .map(|h| Cow::Borrowed(h.as_bytes())),
        },
        _ => {
            let mut values = req.headers.get_all(name).iter();
            let first = values.next()?.as_bytes();
            let mut rest = values.peekable();
            if rest.peek().is_none() {
                return Some(Cow::Borrowed(first));
            }
            let mut out = first.to_vec();
            for v in rest {
                out.push(b',');
                out.extend_from_slice(v.as_bytes());
            }
            Some(Cow::Owned(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_headers_come_from_the_request_line_and_repeats_are_joined() {
        let (parts, ()) = http::Request::get("/a?b=1")
            .header("host", "example.com")
            .header("x-v", "1")
            .header("x-v", "2")
            .body(())
            .expect("request")
            .into_parts();
        let get = |name| request_header(&parts, name).map(|v| v.into_owned());
        assert_eq!(get(":path"), Some(b"/a?b=1".to_vec()));
        assert_eq!(get(":method"), Some(b"GET".to_vec()));
        assert_eq!(get(":authority"), Some(b"example.com".to_vec()));
        assert_eq!(get("x-v"), Some(b"1,2".to_vec()));
        assert_eq!(get("x-none"), None);
    }
}
