//! `rate_limit`: a fixed-window rate limiter, process-wide across worker threads.
//!
//! The plugin configuration is a JSON object; every key is optional and falls back to the
//! default shown (`key_header` absent means one bucket for all requests):
//!
//! ```json
//! {
//!   "key_header": "x-client",
//!   "limit": 100,
//!   "window_seconds": 60
//! }
//! ```
//!
//! Each request counts against its bucket — the value of `key_header`, all requests without
//! it sharing one bucket — in the current window (`now / window_seconds`, wall clock). Up to
//! `limit` requests per bucket and window go on, with response headers `x-ratelimit-limit`
//! and `x-ratelimit-remaining`; the others get a local 429 with the same headers
//! (`remaining` 0) and `retry-after` (seconds to the next window).
//!
//! The counters live in shared data, which every VM replica (one per worker thread) of the
//! plugin's `vm_id` sees. Buckets are spread over [`SLOTS`] keys named
//! `rate_limit/<plugin name>/<slot>`, each holding the current window and its counts as
//! JSON. A count is a read, then a write with the CAS of that read: a write that lost a race
//! (CAS mismatch) reads again, so no increment is lost. After [`MAX_ATTEMPTS`] lost races, or
//! any other failure of the store, the request goes on uncounted and a warning is logged
//! (fail open).
//!
//! Shared data, as in Envoy, cannot create a key atomically (a missing key is written
//! whatever the CAS), so `on_configure` creates every slot key that is missing; VM replicas
//! are configured before they serve. Invalid JSON or a zero `window_seconds` makes
//! `on_configure` fail.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};
use serde::{Deserialize, Serialize};

/// How many shared-data keys the buckets are spread over.
const SLOTS: u64 = 16;
/// How many times a count is retried after losing a CAS race before failing open.
const MAX_ATTEMPTS: usize = 64;

/// The plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct Config {
    key_header: Option<String>,
    limit: u64,
    window_seconds: u64,
}

/// The configuration with the shared-data key prefix of this plugin.
#[derive(Debug, Default)]
struct Limiter {
    config: Config,
    prefix: String,
}

/// One slot's value in shared data: the window it counts and the counts per bucket.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Slot {
    window: u64,
    counts: BTreeMap<String, u64>,
}

/// What counting one request decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow {
        remaining: u64,
    },
    Deny {
        retry_after: u64,
    },
    /// The store could not count it: let it through without headers.
    Uncounted,
}

struct RateLimitRoot {
    limiter: Rc<Limiter>,
}

struct RateLimit {
    limiter: Rc<Limiter>,
    /// `x-ratelimit-remaining` for an allowed request's response.
    remaining: Option<u64>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(RateLimitRoot { limiter: Rc::default() })
    });
}}

impl Default for Config {
    fn default() -> Self {
        Config {
            key_header: None,
            limit: 100,
            window_seconds: 60,
        }
    }
}

impl Limiter {
    /// The shared-data key of the slot holding `bucket` (FNV-1a, stable across replicas).
    fn slot_key(&self, bucket: &str) -> String {
        let hash = bucket.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        self.slot_name(hash % SLOTS)
    }

    fn slot_name(&self, slot: u64) -> String {
        format!("{}{slot}", self.prefix)
    }
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let config: Config = if raw.iter().all(u8::is_ascii_whitespace) {
            Config::default()
        } else {
            match serde_json::from_slice(&raw) {
                Ok(config) => config,
                Err(err) => {
                    log::error!("rate_limit: invalid plugin configuration: {err}");
                    return false;
                }
            }
        };
        if config.window_seconds == 0 {
            log::error!(
                "rate_limit: invalid plugin configuration: `window_seconds` must be above 0"
            );
            return false;
        }
        let name = self
            .get_property(vec!["plugin_name"])
            .map(|name| String::from_utf8_lossy(&name).into_owned())
            .unwrap_or_default();
        let limiter = Limiter {
            config,
            prefix: format!("rate_limit/{name}/"),
        };
        let empty = serde_json::to_vec(&Slot::default()).unwrap_or_default();
        for slot in 0..SLOTS {
            let key = limiter.slot_name(slot);
            // A missing key has no CAS; an existing one (another replica's) is left alone.
            if self.get_shared_data(&key).1.is_none()
                && let Err(status) = self.set_shared_data(&key, Some(&empty), None)
            {
                log::error!("rate_limit: cannot create shared data {key}: {status:?}");
                return false;
            }
        }
        self.limiter = Rc::new(limiter);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RateLimit {
            limiter: Rc::clone(&self.limiter),
            remaining: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl RateLimit {
    /// Counts one request for `bucket` at `now` (seconds since the epoch).
    fn count(&self, bucket: &str, now: u64) -> Verdict {
        let Config {
            limit,
            window_seconds,
            ..
        } = self.limiter.config;
        let key = self.limiter.slot_key(bucket);
        for _ in 0..MAX_ATTEMPTS {
            let (value, cas) = self.get_shared_data(&key);
            let mut slot: Slot = value
                .and_then(|v| serde_json::from_slice(&v).ok())
                .unwrap_or_default();
            // A slot still on an older window starts afresh; one that another worker already
            // moved to a newer window than our clock reading counts us in that window.
            let window = now / window_seconds;
            if slot.window < window {
                slot = Slot {
                    window,
                    counts: BTreeMap::new(),
                };
            }
            let count = slot.counts.get(bucket).copied().unwrap_or(0);
            if count >= limit {
                let next = (slot.window + 1).saturating_mul(window_seconds);
                return Verdict::Deny {
                    retry_after: next.saturating_sub(now).max(1),
                };
            }
            slot.counts.insert(bucket.to_owned(), count + 1);
            let value = match serde_json::to_vec(&slot) {
                Ok(value) => value,
                Err(err) => {
                    log::warn!("rate_limit: cannot encode {key}: {err}; request not counted");
                    return Verdict::Uncounted;
                }
            };
            match self.set_shared_data(&key, Some(&value), cas) {
                Ok(()) => {
                    return Verdict::Allow {
                        remaining: limit - count - 1,
                    };
                }
                Err(Status::CasMismatch) => continue,
                Err(status) => {
                    log::warn!("rate_limit: cannot write {key}: {status:?}; request not counted");
                    return Verdict::Uncounted;
                }
            }
        }
        log::warn!(
            "rate_limit: {MAX_ATTEMPTS} writes to {key} lost their CAS race; request not counted"
        );
        Verdict::Uncounted
    }
}

impl Context for RateLimit {}

impl HttpContext for RateLimit {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let bucket = self
            .limiter
            .config
            .key_header
            .as_deref()
            .and_then(|name| self.get_http_request_header(name))
            .unwrap_or_default();
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match self.count(&bucket, now) {
            Verdict::Allow { remaining } => {
                self.remaining = Some(remaining);
                Action::Continue
            }
            Verdict::Uncounted => Action::Continue,
            Verdict::Deny { retry_after } => {
                let limit = self.limiter.config.limit.to_string();
                let retry_after = retry_after.to_string();
                self.send_http_response(
                    429,
                    vec![
                        ("x-ratelimit-limit", &limit),
                        ("x-ratelimit-remaining", "0"),
                        ("retry-after", &retry_after),
                        ("content-type", "text/plain"),
                    ],
                    Some(b"rate limit exceeded\n"),
                );
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(remaining) = self.remaining {
            let limit = self.limiter.config.limit.to_string();
            self.set_http_response_header("x-ratelimit-limit", Some(&limit));
            self.set_http_response_header("x-ratelimit-remaining", Some(&remaining.to_string()));
        }
        Action::Continue
    }
}
