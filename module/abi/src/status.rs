//! Hostcall status codes (reference §1) and the WASI errno values the WASI stubs return
//! (reference §14.1).

use std::fmt;

/// The status a `proxy_*` hostcall returns to the guest.
///
/// The Rust SDK treats any status it does not expect as a host bug and traps, so each
/// hostcall must return exactly the statuses Envoy returns in the same situation.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// `OK` (0): success.
    Ok = 0,
    /// `NOT_FOUND` (1): the key, buffer, queue, metric or context does not exist now.
    NotFound = 1,
    /// `BAD_ARGUMENT` (2): an enum value out of range, or a call not valid in this phase.
    BadArgument = 2,
    /// `SERIALIZATION_FAILURE` (3): a value could not be serialized.
    SerializationFailure = 3,
    /// `PARSE_FAILURE` (4): an argument could not be parsed (e.g. a gRPC service).
    ParseFailure = 4,
    /// `BAD_EXPRESSION` (5): unused by Envoy.
    BadExpression = 5,
    /// `INVALID_MEMORY_ACCESS` (6): a guest pointer/length is out of bounds, or the guest
    /// allocator failed.
    InvalidMemoryAccess = 6,
    /// `EMPTY` (7): the shared queue has nothing to dequeue.
    Empty = 7,
    /// `CAS_MISMATCH` (8): the shared-data compare-and-swap value is stale.
    CasMismatch = 8,
    /// `RESULT_MISMATCH` (9): unused by Envoy.
    ResultMismatch = 9,
    /// `INTERNAL_FAILURE` (10): the host failed (also a restricted capability in Envoy).
    InternalFailure = 10,
    /// `BROKEN_CONNECTION` (11): only as the code `proxy_get_status` reports after a reset
    /// HTTP call.
    BrokenConnection = 11,
    /// `UNIMPLEMENTED` (12): the host does not implement this call or this variant of it.
    Unimplemented = 12,
}

/// WASI preview1 errno values returned by the WASI functions (reference §14.1), as the
/// `i32` the functions return.
pub mod errno {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Bad file descriptor; `fd_prestat_get` returns it to end wasi-libc's pre-open scan.
    pub const BADF: i32 = 8;
    /// Bad address: a pointer or length outside the guest's memory.
    pub const FAULT: i32 = 21;
    /// Invalid argument (e.g. `random_get` above its per-call limit).
    pub const INVAL: i32 = 28;
    /// No such file or directory (`path_open`).
    pub const NOENT: i32 = 44;
    /// Function not supported (`fd_read`, `fd_pread`, ...).
    pub const NOSYS: i32 = 52;
    /// Not a directory (`fd_readdir`).
    pub const NOTDIR: i32 = 54;
    /// Not supported (unknown clock ids, `path_*`, `sock_*`, ...).
    pub const NOTSUP: i32 = 58;
    /// Capability not granted (Envoy's capability restriction).
    pub const NOTCAPABLE: i32 = 76;
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 13] = [
        Status::Ok,
        Status::NotFound,
        Status::BadArgument,
        Status::SerializationFailure,
        Status::ParseFailure,
        Status::BadExpression,
        Status::InvalidMemoryAccess,
        Status::Empty,
        Status::CasMismatch,
        Status::ResultMismatch,
        Status::InternalFailure,
        Status::BrokenConnection,
        Status::Unimplemented,
    ];

    /// The wire value returned to the guest.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The status with this wire value, if any.
    pub fn from_code(code: u32) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The spec name, e.g. `"BAD_ARGUMENT"`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NotFound => "NOT_FOUND",
            Status::BadArgument => "BAD_ARGUMENT",
            Status::SerializationFailure => "SERIALIZATION_FAILURE",
            Status::ParseFailure => "PARSE_FAILURE",
            Status::BadExpression => "BAD_EXPRESSION",
            Status::InvalidMemoryAccess => "INVALID_MEMORY_ACCESS",
            Status::Empty => "EMPTY",
            Status::CasMismatch => "CAS_MISMATCH",
            Status::ResultMismatch => "RESULT_MISMATCH",
            Status::InternalFailure => "INTERNAL_FAILURE",
            Status::BrokenConnection => "BROKEN_CONNECTION",
            Status::Unimplemented => "UNIMPLEMENTED",
        }
    }

    /// Whether this is [`Status::Ok`].
    pub const fn is_ok(self) -> bool {
        matches!(self, Status::Ok)
    }
}

impl fmt::Display for Status {
    /// Writes the spec name and the code, e.g. `BAD_ARGUMENT (2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl From<Status> for u32 {
    fn from(status: Status) -> u32 {
        status.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for (i, status) in Status::ALL.into_iter().enumerate() {
            assert_eq!(status.code() as usize, i);
            assert_eq!(Status::from_code(status.code()), Some(status));
        }
        assert_eq!(Status::from_code(13), None);
        assert_eq!(Status::from_code(u32::MAX), None);
    }

    #[test]
    fn names() {
        assert_eq!(Status::BadArgument.name(), "BAD_ARGUMENT");
        assert_eq!(
            Status::InvalidMemoryAccess.to_string(),
            "INVALID_MEMORY_ACCESS (6)"
        );
        assert_eq!(u32::from(Status::Unimplemented), 12);
        assert!(Status::Ok.is_ok() && !Status::Empty.is_ok());
    }
}
