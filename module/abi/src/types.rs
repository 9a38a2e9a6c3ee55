//! The closed enumerations of the ABI (reference §1, §7, §8) and the conversion of callback
//! results into filter actions (reference §9).
//!
//! Each enumeration converts from its wire value with `TryFrom<u32>`; an unknown value is
//! [`Status::BadArgument`], which is what Envoy returns for an out-of-range type argument.

use std::fmt;

use crate::status::Status;
use crate::version::AbiVersion;

/// Defines a closed `#[repr(u32)]` ABI enumeration with its wire codes and spec names.
macro_rules! abi_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $spec:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $code, )+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire value.
            pub const fn code(self) -> u32 {
                self as u32
            }

            /// The spec name (upper snake case).
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $spec, )+
                }
            }
        }

        impl TryFrom<u32> for $name {
            type Error = Status;

            /// Converts a wire value; an unknown value is `BAD_ARGUMENT`.
            fn try_from(code: u32) -> Result<Self, Status> {
                match code {
                    $( $code => Ok($name::$variant), )+
                    _ => Err(Status::BadArgument),
                }
            }
        }

        impl From<$name> for u32 {
            fn from(value: $name) -> u32 {
                value.code()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

abi_enum! {
    /// The level of `proxy_log` and `proxy_get_log_level`. The host never reports a level
    /// above `Critical` (no "off").
    pub enum LogLevel {
        /// `TRACE` (0).
        Trace = 0 => "TRACE",
        /// `DEBUG` (1).
        Debug = 1 => "DEBUG",
        /// `INFO` (2).
        Info = 2 => "INFO",
        /// `WARN` (3).
        Warn = 3 => "WARN",
        /// `ERROR` (4).
        Error = 4 => "ERROR",
        /// `CRITICAL` (5).
        Critical = 5 => "CRITICAL",
    }
}

abi_enum! {
    /// The stream argument of `proxy_continue_stream` and `proxy_close_stream`.
    pub enum StreamType {
        /// `HTTP_REQUEST` (0): the request direction of an HTTP stream.
        HttpRequest = 0 => "HTTP_REQUEST",
        /// `HTTP_RESPONSE` (1): the response direction of an HTTP stream.
        HttpResponse = 1 => "HTTP_RESPONSE",
        /// `DOWNSTREAM` (2): the downstream side of a TCP stream.
        Downstream = 2 => "DOWNSTREAM",
        /// `UPSTREAM` (3): the upstream side of a TCP stream.
        Upstream = 3 => "UPSTREAM",
    }
}

abi_enum! {
    /// The header map a `proxy_*_header_map_*` hostcall addresses (reference §7.1).
    pub enum MapType {
        /// `HTTP_REQUEST_HEADERS` (0), with `:method`, `:path`, `:authority`, `:scheme`.
        HttpRequestHeaders = 0 => "HTTP_REQUEST_HEADERS",
        /// `HTTP_REQUEST_TRAILERS` (1).
        HttpRequestTrailers = 1 => "HTTP_REQUEST_TRAILERS",
        /// `HTTP_RESPONSE_HEADERS` (2), with `:status`.
        HttpResponseHeaders = 2 => "HTTP_RESPONSE_HEADERS",
        /// `HTTP_RESPONSE_TRAILERS` (3).
        HttpResponseTrailers = 3 => "HTTP_RESPONSE_TRAILERS",
        /// `GRPC_RECEIVE_INITIAL_METADATA` (4), readable in
        /// `proxy_on_grpc_receive_initial_metadata`.
        GrpcReceiveInitialMetadata = 4 => "GRPC_RECEIVE_INITIAL_METADATA",
        /// `GRPC_RECEIVE_TRAILING_METADATA` (5), readable in
        /// `proxy_on_grpc_receive_trailing_metadata`.
        GrpcReceiveTrailingMetadata = 5 => "GRPC_RECEIVE_TRAILING_METADATA",
        /// `HTTP_CALL_RESPONSE_HEADERS` (6), readable in `proxy_on_http_call_response`.
        HttpCallResponseHeaders = 6 => "HTTP_CALL_RESPONSE_HEADERS",
        /// `HTTP_CALL_RESPONSE_TRAILERS` (7), readable in `proxy_on_http_call_response`.
        HttpCallResponseTrailers = 7 => "HTTP_CALL_RESPONSE_TRAILERS",
    }
}

abi_enum! {
    /// The buffer a `proxy_*_buffer_*` hostcall addresses (reference §8).
    pub enum BufferType {
        /// `HTTP_REQUEST_BODY` (0).
        HttpRequestBody = 0 => "HTTP_REQUEST_BODY",
        /// `HTTP_RESPONSE_BODY` (1).
        HttpResponseBody = 1 => "HTTP_RESPONSE_BODY",
        /// `DOWNSTREAM_DATA` (2): TCP data from the client.
        DownstreamData = 2 => "DOWNSTREAM_DATA",
        /// `UPSTREAM_DATA` (3): TCP data from the upstream.
        UpstreamData = 3 => "UPSTREAM_DATA",
        /// `HTTP_CALL_RESPONSE_BODY` (4), readable in `proxy_on_http_call_response`.
        HttpCallResponseBody = 4 => "HTTP_CALL_RESPONSE_BODY",
        /// `GRPC_RECEIVE_BUFFER` (5): the message in `proxy_on_grpc_receive`.
        GrpcReceiveBuffer = 5 => "GRPC_RECEIVE_BUFFER",
        /// `VM_CONFIGURATION` (6), readable in `proxy_on_vm_start` (0.2.x).
        VmConfiguration = 6 => "VM_CONFIGURATION",
        /// `PLUGIN_CONFIGURATION` (7), readable in `proxy_on_configure` (0.2.x).
        PluginConfiguration = 7 => "PLUGIN_CONFIGURATION",
        /// `CALL_DATA` (8): foreign-function arguments (0.2.x).
        CallData = 8 => "CALL_DATA",
    }
}

abi_enum! {
    /// Who closed a TCP connection, passed to the `proxy_on_*_connection_close` callbacks.
    pub enum PeerType {
        /// `UNKNOWN` (0).
        Unknown = 0 => "UNKNOWN",
        /// `LOCAL` (1): the proxy closed it.
        Local = 1 => "LOCAL",
        /// `REMOTE` (2): the peer closed it.
        Remote = 2 => "REMOTE",
    }
}

abi_enum! {
    /// The type argument of `proxy_define_metric` (reference §12.3).
    pub enum MetricType {
        /// `COUNTER` (0): only grows.
        Counter = 0 => "COUNTER",
        /// `GAUGE` (1): goes up and down.
        Gauge = 1 => "GAUGE",
        /// `HISTOGRAM` (2): records samples.
        Histogram = 2 => "HISTOGRAM",
    }
}

/// What the host does after a request or response *headers* callback (reference §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadersAction {
    /// Forward the headers and go on (results 0 and 2, ContinueAndEndStream).
    Continue,
    /// Hold the headers but still run body callbacks (result 1 with
    /// `allow_on_headers_stop_iteration`).
    StopIteration,
    /// Hold headers and buffer the body without body callbacks until `continue_stream`
    /// (result 3).
    StopAllIterationAndBuffer,
    /// Hold headers and body without body callbacks until `continue_stream`, with
    /// watermark-based flow control (result 1 by default, 4 and anything larger).
    StopAllIterationAndWatermark,
}

/// What the host does after a request or response *body* callback (reference §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyAction {
    /// Forward what the buffer holds (result 0).
    Continue,
    /// Buffer; call the body callback again per chunk with the total buffered size
    /// (result 1, the SDKs' PAUSE).
    StopIterationAndBuffer,
    /// Buffer with watermark-based flow control (result 2).
    StopIterationAndWatermark,
    /// Stop without buffering (result 3 and anything larger).
    StopIterationNoBuffer,
}

/// What the host does after a *trailers* callback, or a TCP data callback (reference §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrailersAction {
    /// Go on (result 0).
    Continue,
    /// Hold until `continue_stream` (any non-zero result).
    StopIteration,
}

impl BufferType {
    /// The oldest ABI version in which this buffer type exists: types 6–8 came with 0.2.0.
    pub const fn since(self) -> AbiVersion {
        match self {
            BufferType::VmConfiguration
            | BufferType::PluginConfiguration
            | BufferType::CallData => AbiVersion::V0_2_0,
            _ => AbiVersion::V0_1_0,
        }
    }

    /// Whether `proxy_set_buffer_bytes` must refuse this buffer with BAD_ARGUMENT (call
    /// response, gRPC message, configuration and foreign-function arguments).
    pub const fn is_read_only(self) -> bool {
        !matches!(
            self,
            BufferType::HttpRequestBody
                | BufferType::HttpResponseBody
                | BufferType::DownstreamData
                | BufferType::UpstreamData
        )
    }
}

impl StreamType {
    /// Whether this is one direction of an HTTP stream (as opposed to TCP).
    pub const fn is_http(self) -> bool {
        matches!(self, StreamType::HttpRequest | StreamType::HttpResponse)
    }
}

impl HeadersAction {
    /// The action forced when the guest called `proxy_send_local_response` during the
    /// callback, whatever it returned.
    pub const AFTER_LOCAL_RESPONSE: HeadersAction = HeadersAction::StopAllIterationAndWatermark;

    /// Converts a headers callback result. `allow_stop_iteration` is Envoy's
    /// `allow_on_headers_stop_iteration`: without it a PAUSE (1) stops headers *and* body.
    pub const fn from_result(raw: u32, allow_stop_iteration: bool) -> HeadersAction {
        match raw {
            0 | 2 => HeadersAction::Continue,
            1 if allow_stop_iteration => HeadersAction::StopIteration,
            3 => HeadersAction::StopAllIterationAndBuffer,
            _ => HeadersAction::StopAllIterationAndWatermark,
        }
    }

    /// Whether the stream goes on now.
    pub const fn is_continue(self) -> bool {
        matches!(self, HeadersAction::Continue)
    }
}

impl BodyAction {
    /// The action forced when the guest called `proxy_send_local_response` during the
    /// callback, whatever it returned.
    pub const AFTER_LOCAL_RESPONSE: BodyAction = BodyAction::StopIterationNoBuffer;

    /// Converts a body callback result.
    pub const fn from_result(raw: u32) -> BodyAction {
        match raw {
            0 => BodyAction::Continue,
            1 => BodyAction::StopIterationAndBuffer,
            2 => BodyAction::StopIterationAndWatermark,
            _ => BodyAction::StopIterationNoBuffer,
        }
    }

    /// Whether the stream goes on now.
    pub const fn is_continue(self) -> bool {
        matches!(self, BodyAction::Continue)
    }
}

impl TrailersAction {
    /// The action forced when the guest called `proxy_send_local_response` during the
    /// callback, whatever it returned.
    pub const AFTER_LOCAL_RESPONSE: TrailersAction = TrailersAction::StopIteration;

    /// Converts a trailers (or TCP data / new connection) callback result.
    pub const fn from_result(raw: u32) -> TrailersAction {
        match raw {
            0 => TrailersAction::Continue,
            _ => TrailersAction::StopIteration,
        }
    }

    /// Whether the stream goes on now.
    pub const fn is_continue(self) -> bool {
        matches!(self, TrailersAction::Continue)
    }
}

#[cfg(test)]
mod tests;
