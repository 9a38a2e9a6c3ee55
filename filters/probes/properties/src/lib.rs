//! Probe filter `properties`: reads Envoy properties in the request headers callback and
//! reports them as response headers `x-prop-<path with dots>`, decoding Envoy's encodings
//! (strings raw, integers 8-byte little-endian, maps as serialized pairs with a count).
//! A missing property is reported as `<missing>`. Configuration is ignored.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Debug);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

const STRINGS: &[&str] = &[
    "request.path",
    "request.url_path",
    "request.host",
    "request.scheme",
    "request.method",
    "request.protocol",
    "request.query",
    "request.id",
    "source.address",
    "destination.address",
    "plugin_name",
    "plugin_root_id",
    "plugin_vm_id",
];
const INTEGERS: &[&str] = &["source.port", "destination.port"];

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { seen: Vec::new() }))
    }
}

struct Probe {
    seen: Vec<(String, String)>,
}

impl Context for Probe {}

fn path(dotted: &str) -> Vec<&str> {
    dotted.split('.').collect()
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for name in STRINGS {
            let value = match self.get_property(path(name)) {
                Some(v) => String::from_utf8_lossy(&v).into_owned(),
                None => "<missing>".to_string(),
            };
            self.seen.push((name.to_string(), value));
        }
        for name in INTEGERS {
            let value = match self.get_property(path(name)) {
                Some(v) if v.len() == 8 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&v);
                    i64::from_le_bytes(b).to_string()
                }
                Some(v) => format!("<{} bytes>", v.len()),
                None => "<missing>".to_string(),
            };
            self.seen.push((name.to_string(), value));
        }
        let headers = match self.get_property(vec!["request", "headers"]) {
            Some(v) if v.len() >= 4 => u32::from_le_bytes([v[0], v[1], v[2], v[3]]).to_string(),
            Some(_) => "<malformed>".to_string(),
            None => "<missing>".to_string(),
        };
        self.seen
            .push(("request.headers.count".to_string(), headers));
        let one = self
            .get_property(vec!["request", "headers", "x-probe"])
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|| "<missing>".to_string());
        self.seen.push(("request.headers.x-probe".to_string(), one));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.seen {
            self.add_http_response_header(&format!("x-prop-{name}"), value);
        }
        let code = match self.get_property(vec!["response", "code"]) {
            Some(v) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                i64::from_le_bytes(b).to_string()
            }
            _ => "<missing>".to_string(),
        };
        self.add_http_response_header("x-prop-response.code", &code);
        Action::Continue
    }
}
