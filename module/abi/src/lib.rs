//! The Proxy-Wasm ABI as data, for wasmbridge's host: the ABI versions and their detection,
//! the status codes and closed enumerations, the conversion of callback results into filter
//! actions, the serialized header-map codec, property paths and encodings, and the one
//! catalogue of every hostcall and callback with its signature, ABI versions and support
//! level. It sits at the bottom of the workspace: `wasmbridge-host` builds its linker, stubs
//! and compatibility report from it, and the docs' support table is generated from it. It
//! knows nothing of wasmtime or tokio.
//!
//! ```
//! use wasmbridge_abi::{AbiVersion, MapType, Status, ValType, deserialize_pairs, hostcall,
//!     serialize_pairs};
//!
//! // A module declares its ABI version with a marker export.
//! let version = AbiVersion::detect(["memory", "proxy_abi_version_0_2_1", "proxy_on_log"])?;
//! assert_eq!(version.to_string(), "0.2.1");
//!
//! // Every import the host links is in the catalogue, with its exact signature.
//! let log = hostcall("env", "proxy_log").ok_or("not catalogued")?;
//! assert_eq!(log.params, &[ValType::I32; 3]);
//! assert!(log.versions.contains(version));
//!
//! // Enum arguments from the guest are validated; an unknown value is BAD_ARGUMENT.
//! assert_eq!(MapType::try_from(0), Ok(MapType::HttpRequestHeaders));
//! assert_eq!(MapType::try_from(8), Err(Status::BadArgument));
//!
//! // Header maps cross the boundary in the serialized form of the spec.
//! let bytes = serialize_pairs([(&b":status"[..], &b"200"[..])]);
//! assert_eq!(deserialize_pairs(&bytes)?, [(&b":status"[..], &b"200"[..])]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod capability;
pub mod catalogue;
pub mod map;
pub mod property;
pub mod proto;
pub mod status;
pub mod types;
pub mod version;

pub use catalogue::{
    CALLBACKS, CallbackSpec, HOSTCALLS, HostcallSpec, Namespace, Support, Usage, ValType, Versions,
    callback, callback_params, called_callbacks, hostcall,
};
pub use map::{
    MAX_MAP_BYTES, MAX_MAP_PAIRS, MapError, MapPart, Pair, deserialize_pairs, serialize_pairs,
    serialize_pairs_into, serialized_len,
};
pub use property::{
    LEGACY_ALIASES, PROPERTIES, PropertyKind, PropertySpec, alias_target, decode, encode, property,
    resolve, split_path,
};
pub use proto::StructValue;
pub use status::{Status, errno};
pub use types::{
    BodyAction, BufferType, HeadersAction, LogLevel, MapType, MetricType, PeerType, StreamType,
    TrailersAction,
};
pub use version::{ABI_MARKER_PREFIX, ABI_MARKERS, AbiVersion, AbiVersionError};
