//! The probe's configuration: which steps run in which callback, and what callbacks return.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::value::StrDeserializer;

use crate::render::Decode;

/// The plugin (or VM) configuration.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Config {
    /// What the header, body and trailer callbacks return.
    #[serde(default, rename = "return")]
    pub(crate) returns: Returns,
    /// Makes `on_configure` return false after running its steps.
    #[serde(default)]
    pub(crate) fail_on_configure: bool,
    /// The steps per callback. Flattened: any other key must name a callback, which is how
    /// unknown keys are rejected (`deny_unknown_fields` does not combine with `flatten`).
    #[serde(flatten)]
    pub(crate) steps: BTreeMap<Callback, Vec<Step>>,
}

/// A callback that can run steps; deserialized from its name (`on_request_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub(crate) enum Callback {
    #[serde(rename = "on_vm_start")]
    VmStart,
    #[serde(rename = "on_configure")]
    Configure,
    #[serde(rename = "on_context_create")]
    ContextCreate,
    #[serde(rename = "on_request_headers")]
    RequestHeaders,
    #[serde(rename = "on_request_body")]
    RequestBody,
    #[serde(rename = "on_request_trailers")]
    RequestTrailers,
    #[serde(rename = "on_response_headers")]
    ResponseHeaders,
    #[serde(rename = "on_response_body")]
    ResponseBody,
    #[serde(rename = "on_response_trailers")]
    ResponseTrailers,
    #[serde(rename = "on_log")]
    Log,
    #[serde(rename = "on_done")]
    Done,
    #[serde(rename = "on_delete")]
    Delete,
    #[serde(rename = "on_tick")]
    Tick,
    #[serde(rename = "on_http_call_response")]
    HttpCallResponse,
    #[serde(rename = "on_queue_ready")]
    QueueReady,
}

/// The `return` object: one entry per header, body and trailer callback.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Returns {
    #[serde(default)]
    pub(crate) on_request_headers: Return,
    #[serde(default)]
    pub(crate) on_request_body: Return,
    #[serde(default)]
    pub(crate) on_request_trailers: Return,
    #[serde(default)]
    pub(crate) on_response_headers: Return,
    #[serde(default)]
    pub(crate) on_response_body: Return,
    #[serde(default)]
    pub(crate) on_response_trailers: Return,
}

/// What a callback returns.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Return {
    #[default]
    Continue,
    Pause,
    /// Pause unless `end_of_stream` is true.
    PauseUntilEos,
}

/// One hostcall to make. Arguments a call does not use are ignored; missing ones take the
/// defaults documented in the crate docs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Step {
    pub(crate) call: String,
    #[serde(default)]
    pub(crate) when: When,
    /// Runs only on these occurrences (1-based) of the step in the VM, counting each time
    /// its callback reached it and `when` matched.
    pub(crate) nth: Option<Vec<u32>>,
    #[serde(skip)]
    pub(crate) reached: std::cell::Cell<u32>,
    pub(crate) raw: Option<Vec<i64>>,
    /// A response header that gets the step's outcome (what its log line shows after
    /// `-> `), added when the stream's response headers arrive.
    pub(crate) report: Option<String>,

    pub(crate) level: Option<Arg<LogLevelName>>,
    pub(crate) message: Option<String>,
    pub(crate) period: Option<i64>,
    pub(crate) path: Option<PropertyPath>,
    #[serde(default)]
    pub(crate) decode: Decode,
    pub(crate) value: Option<Scalar>,
    pub(crate) buffer: Option<Arg<BufferName>>,
    pub(crate) start: Option<i64>,
    pub(crate) max_size: Option<i64>,
    pub(crate) size: Option<i64>,
    pub(crate) map: Option<Arg<MapName>>,
    pub(crate) key: Option<String>,
    pub(crate) pairs: Option<Vec<(String, String)>>,
    pub(crate) status: Option<i64>,
    pub(crate) details: Option<String>,
    pub(crate) body: Option<String>,
    pub(crate) headers: Option<Vec<(String, String)>>,
    pub(crate) grpc_status: Option<i64>,
    pub(crate) stream: Option<Arg<StreamName>>,
    pub(crate) context: Option<Arg<ContextName>>,
    pub(crate) name: Option<String>,
    pub(crate) args: Option<String>,
    pub(crate) cas: Option<i64>,
    pub(crate) vm_id: Option<String>,
    pub(crate) queue_id: Option<i64>,
    #[serde(rename = "type")]
    pub(crate) metric_type: Option<Arg<MetricTypeName>>,
    pub(crate) id: Option<MetricId>,
    pub(crate) delta: Option<i64>,
    pub(crate) upstream: Option<String>,
    pub(crate) trailers: Option<Vec<(String, String)>>,
    pub(crate) timeout: Option<i64>,
    /// `http_call` only: false calls the raw import instead of the SDK's wrapper.
    pub(crate) register: Option<bool>,
    pub(crate) service: Option<String>,
    pub(crate) method: Option<String>,
    pub(crate) metadata: Option<Vec<(String, String)>>,
    pub(crate) token: Option<i64>,
    pub(crate) end_stream: Option<bool>,
}

impl Step {
    /// Whether the step runs now (counts this occurrence).
    pub(crate) fn runs(&self, end_of_stream: Option<bool>) -> bool {
        if !self.when.matches(end_of_stream) {
            return false;
        }
        let n = self.reached.get() + 1;
        self.reached.set(n);
        self.nth.as_ref().is_none_or(|nth| nth.contains(&n))
    }
}

/// When a step runs, given the callback's `end_of_stream` flag.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum When {
    #[default]
    Always,
    /// Only when `end_of_stream` is true (never in callbacks without the flag).
    Eos,
    /// Only when `end_of_stream` is false (always in callbacks without the flag).
    NotEos,
}

/// An enumerated argument: its numeric value (any integer) or its name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<N> {
    Code(i64),
    Name(N),
}

/// `Arg` before its name is looked up.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawArg {
    Code(i64),
    Name(String),
}

/// A `value` argument: a string for byte values, an integer for `record_metric`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Int(i64),
    Text(String),
}

/// `id` of the metric calls: a number, or `"last"` for the id this VM's last successful
/// `define_metric` step returned.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub(crate) enum MetricId {
    Number(i64),
    Last(Last),
}

/// The word `last`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Last {
    Last,
}

/// A property path: a list of segments, or a dotted string split on `.`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PropertyPath {
    Segments(Vec<String>),
    Dotted(String),
}

/// `context` of `set_effective_context`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ContextName {
    /// The root context's id.
    Root,
    /// The id of the context running the step.
    #[serde(rename = "self")]
    Current,
}

/// Declares name enums whose discriminant is the ABI value.
macro_rules! names {
    ($( $(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal),* $(,)? } )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub(crate) enum $name {
            $($variant = $code),*
        }

        impl Arg<$name> {
            /// The ABI value.
            pub(crate) fn code(self) -> i64 {
                match self {
                    Arg::Code(code) => code,
                    Arg::Name(name) => name as i64,
                }
            }
        }
    )*};
}

names! {
    /// Log levels (reference §1).
    LogLevelName { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Critical = 5 }
    /// Buffer types (reference §8).
    BufferName {
        RequestBody = 0,
        ResponseBody = 1,
        DownstreamData = 2,
        UpstreamData = 3,
        HttpCallResponseBody = 4,
        GrpcMessage = 5,
        VmConfiguration = 6,
        PluginConfiguration = 7,
        ForeignFunctionArguments = 8,
    }
    /// Map types (reference §7.1).
    MapName {
        RequestHeaders = 0,
        RequestTrailers = 1,
        ResponseHeaders = 2,
        ResponseTrailers = 3,
        GrpcInitialMetadata = 4,
        GrpcTrailingMetadata = 5,
        HttpCallResponseHeaders = 6,
        HttpCallResponseTrailers = 7,
    }
    /// Stream types (reference §1).
    StreamName { Request = 0, Response = 1, Downstream = 2, Upstream = 3 }
    /// Metric types (reference §1).
    MetricTypeName { Counter = 0, Gauge = 1, Histogram = 2 }
}

impl<'de, N: Deserialize<'de>> Deserialize<'de> for Arg<N> {
    /// Like `#[serde(untagged)]`, but an unknown name reports the names expected.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match RawArg::deserialize(deserializer)? {
            RawArg::Code(code) => Ok(Self::Code(code)),
            RawArg::Name(name) => {
                N::deserialize(StrDeserializer::<D::Error>::new(&name)).map(Self::Name)
            }
        }
    }
}

impl Config {
    /// Parses a configuration; empty input is the default (no steps).
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(bytes)
    }

    /// The steps of `callback`, in order.
    pub(crate) fn steps(&self, callback: Callback) -> &[Step] {
        self.steps.get(&callback).map_or(&[], Vec::as_slice)
    }
}

impl Callback {
    /// The name in configuration keys and log lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::VmStart => "on_vm_start",
            Self::Configure => "on_configure",
            Self::ContextCreate => "on_context_create",
            Self::RequestHeaders => "on_request_headers",
            Self::RequestBody => "on_request_body",
            Self::RequestTrailers => "on_request_trailers",
            Self::ResponseHeaders => "on_response_headers",
            Self::ResponseBody => "on_response_body",
            Self::ResponseTrailers => "on_response_trailers",
            Self::Log => "on_log",
            Self::Done => "on_done",
            Self::Delete => "on_delete",
            Self::Tick => "on_tick",
            Self::HttpCallResponse => "on_http_call_response",
            Self::QueueReady => "on_queue_ready",
        }
    }
}

impl When {
    /// Whether a step runs, given the callback's `end_of_stream` (`None`: no such flag).
    pub(crate) fn matches(self, end_of_stream: Option<bool>) -> bool {
        match self {
            Self::Always => true,
            Self::Eos => end_of_stream == Some(true),
            Self::NotEos => end_of_stream != Some(true),
        }
    }
}

impl Return {
    /// Whether the callback pauses, given its `end_of_stream` (`None`: trailers, which end
    /// the stream).
    pub(crate) fn pauses(self, end_of_stream: Option<bool>) -> bool {
        match self {
            Self::Continue => false,
            Self::Pause => true,
            Self::PauseUntilEos => end_of_stream == Some(false),
        }
    }
}

impl Scalar {
    /// The value as bytes: a string as is, an integer in decimal.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Int(n) => n.to_string().into_bytes(),
            Self::Text(text) => text.clone().into_bytes(),
        }
    }

    /// The value as an integer: an integer as is, a string parsed (0 if it does not parse).
    pub(crate) fn int(&self) -> i64 {
        match self {
            Self::Int(n) => *n,
            Self::Text(text) => text.trim().parse().unwrap_or(0),
        }
    }
}

impl PropertyPath {
    /// The ABI encoding: segments joined by NUL, no trailing NUL.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let segments: Vec<&str> = match self {
            Self::Segments(segments) => segments.iter().map(String::as_str).collect(),
            Self::Dotted(dotted) => dotted.split('.').collect(),
        };
        segments.join("\0").into_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        Config::parse(json.as_bytes()).map_err(|err| err.to_string())
    }

    #[test]
    fn empty_configuration_runs_nothing() {
        let config = parse(" \n").unwrap();
        assert!(config.steps(Callback::RequestHeaders).is_empty());
        assert!(!config.fail_on_configure);
    }

    #[test]
    fn parses_steps_returns_and_names() {
        let config = parse(
            r#"{"on_request_headers": [
                    {"call": "get_header_map_value", "map": "response_trailers", "key": "k"},
                    {"call": "log", "level": 9, "raw": [2, -1, 4294967295]}],
                "return": {"on_request_body": "pause_until_eos"},
                "fail_on_configure": true}"#,
        )
        .unwrap();
        let steps = config.steps(Callback::RequestHeaders);
        assert_eq!(steps[0].map.map(|arg| arg.code()), Some(3));
        assert_eq!(steps[1].level.map(|arg| arg.code()), Some(9));
        assert_eq!(steps[1].raw.as_deref(), Some(&[2, -1, 4_294_967_295][..]));
        assert!(config.returns.on_request_body.pauses(Some(false)));
        assert!(!config.returns.on_request_body.pauses(Some(true)));
        assert!(!config.returns.on_request_headers.pauses(Some(false)));
        assert!(config.fail_on_configure);
    }

    #[test]
    fn rejects_unknown_keys_and_names() {
        for (json, needle) in [
            (
                r#"{"on_reqest_headers": []}"#,
                "unknown variant `on_reqest_headers`",
            ),
            (
                r#"{"on_log": [{"call": "log", "levl": 1}]}"#,
                "unknown field `levl`",
            ),
            (
                r#"{"on_log": [{"call": "x", "map": "headers"}]}"#,
                "unknown variant `headers`",
            ),
            (
                r#"{"return": {"on_log": "pause"}}"#,
                "unknown field `on_log`",
            ),
            (r#"{"on_log": [{"key": "k"}]}"#, "missing field `call`"),
            ("not json", "expected"),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn when_filters_on_end_of_stream() {
        assert!(When::Eos.matches(Some(true)));
        assert!(!When::Eos.matches(Some(false)));
        assert!(!When::Eos.matches(None));
        assert!(When::NotEos.matches(Some(false)));
        assert!(When::NotEos.matches(None));
        assert!(!When::NotEos.matches(Some(true)));
    }

    #[test]
    fn encodes_property_paths_with_nul_separators() {
        let dotted = PropertyPath::Dotted("request.path".to_owned());
        assert_eq!(dotted.encode(), b"request\0path");
        let list = PropertyPath::Segments(vec!["request".into(), "headers".into(), "x.y".into()]);
        assert_eq!(list.encode(), b"request\0headers\0x.y");
    }
}
