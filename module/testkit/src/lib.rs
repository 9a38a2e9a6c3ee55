//! `wasmbridge-testkit` drives a plugin's HTTP callbacks in-process, without sockets or a
//! proxy: load a module, build a request, and see what the plugin did to it. It sits on
//! top of `wasmbridge-host` and is what the conformance suite's emulator target uses.
//!
//! ```no_run
//! use wasmbridge_testkit::{Emulator, Request};
//!
//! let emu = Emulator::load("add_header.wasm", "add_header", r#"{"headers": {"x-a": "1"}}"#)?;
//! let exchange = emu.run(Request::get("/").header("host", "example.com"));
//! assert_eq!(exchange.response_header("x-a"), Some("1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use wasmbridge_host::{
    BodyOutcome, FilterChain, HeaderList, HeadersOutcome, LoadError, Plugin, PluginSpec, Runtime,
    StreamData,
};

/// A request to run through the plugin.
#[derive(Debug, Clone, Default)]
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
}

impl Request {
    /// A GET for `path`.
    pub fn get(path: &str) -> Self {
        Request {
            method: "GET".into(),
            path: path.into(),
            ..Request::default()
        }
    }

    /// A POST for `path` with a body.
    pub fn post(path: &str, body: impl Into<Bytes>) -> Self {
        Request {
            method: "POST".into(),
            path: path.into(),
            body: Some(body.into()),
            ..Request::default()
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What happened to a request.
#[derive(Debug)]
pub struct Exchange {
    /// The request-headers outcome.
    pub request_outcome: HeadersOutcome,
    /// The request headers after the plugin ran.
    pub request_headers: HeaderList,
    /// The request body the upstream would receive.
    pub request_body: Option<Bytes>,
    /// The response status.
    pub status: u16,
    /// The response headers after the plugin ran.
    pub response_headers: HeaderList,
    /// The response body the client would receive.
    pub response_body: Bytes,
}

impl Exchange {
    /// A response header as text.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .get(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A request header as text.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .get(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// One plugin loaded in-process.
pub struct Emulator {
    chain: FilterChain,
}

impl Emulator {
    /// Compiles and starts `module` as plugin `name` (also its root id) with a plugin
    /// configuration.
    pub fn load(
        module: impl AsRef<Path>,
        name: &str,
        configuration: &str,
    ) -> Result<Emulator, LoadError> {
        let runtime = Runtime::new().map_err(|e| LoadError {
            plugin: name.to_string(),
            module: module.as_ref().to_path_buf(),
            kind: wasmbridge_host::LoadErrorKind::Engine(e.to_string()),
        })?;
        let compiled = runtime.compile_file(name, module.as_ref())?;
        let spec = PluginSpec {
            name: name.to_string(),
            root_id: name.to_string(),
            configuration: Bytes::copy_from_slice(configuration.as_bytes()),
            replicas: 1,
            ..PluginSpec::default()
        };
        let plugin: Arc<Plugin> = Plugin::load(&runtime, &compiled, spec, None)?;
        Ok(Emulator {
            chain: FilterChain::new(vec![plugin]),
        })
    }

    /// Runs `request` through the plugin against an upstream that answers 200 with
    /// `upstream body` (or the plugin's local reply), then ends the stream.
    pub fn run(&self, request: Request) -> Exchange {
        let mut data = StreamData::default();
        let h = &mut data.request_headers;
        h.push(":method", Bytes::from(request.method.clone()));
        h.push(":path", Bytes::from(request.path.clone()));
        let authority = request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        h.push(":authority", Bytes::from(authority));
        h.push(":scheme", Bytes::from_static(b"http"));
        for (k, v) in request
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        {
            h.push(k, Bytes::from(v.clone()));
        }
        data.info.protocol = "HTTP/1.1";
        let mut stream = self.chain.start(data);
        let outcome = stream.on_request_headers(request.body.is_none());
        let request_headers = stream.data().request_headers.clone();
        let mut request_body = None;
        let (status, response_headers, response_body) = match &outcome {
            HeadersOutcome::LocalReply(reply) => {
                let resp = stream.local_response(reply.clone());
                (resp.status, resp.headers, resp.body)
            }
            _ => {
                if let Some(body) = request.body
                    && let BodyOutcome::Forward(b) = stream.on_request_body(body, true)
                {
                    request_body = Some(b);
                }
                let mut resp = HeaderList::new();
                resp.push(":status", Bytes::from_static(b"200"));
                resp.push("content-type", Bytes::from_static(b"text/plain"));
                stream.data_mut().response_headers = resp;
                let _ = stream.on_response_headers(false);
                let body = match stream.on_response_body(Bytes::from_static(b"upstream body"), true)
                {
                    BodyOutcome::Forward(b) => b,
                    _ => Bytes::new(),
                };
                (200, stream.data().response_headers.clone(), body)
            }
        };
        stream.finish();
        Exchange {
            request_outcome: outcome,
            request_headers,
            request_body,
            status,
            response_headers,
            response_body,
        }
    }
}
