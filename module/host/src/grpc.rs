//! The gRPC wire format the adapters' callout transports share: message framing (the
//! 5-byte prefix, uncompressed), `grpc-timeout`, and Envoy's mapping of trailers and HTTP
//! statuses to a gRPC status.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

/// gRPC status CANCELLED.
pub const CANCELLED: u32 = 1;
/// gRPC status UNKNOWN.
pub const UNKNOWN: u32 = 2;
/// gRPC status DEADLINE_EXCEEDED.
pub const DEADLINE_EXCEEDED: u32 = 4;
/// gRPC status INTERNAL.
pub const INTERNAL: u32 = 13;
/// gRPC status UNAVAILABLE.
pub const UNAVAILABLE: u32 = 14;

/// The gRPC message prefix: a compressed flag and a big-endian length.
pub const PREFIX_LEN: usize = 5;

/// Metadata the transport sets itself; a plugin's values for these are dropped.
pub const RESERVED_METADATA: [&str; 9] = [
    "content-type",
    "te",
    "grpc-timeout",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "host",
];

/// Header pairs, names lower-case, without those in `skip`.
pub fn pairs(headers: &HeaderMap, skip: &[&str]) -> crate::Pairs {
    headers
        .iter()
        .filter(|(name, _)| !skip.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                Bytes::copy_from_slice(name.as_str().as_bytes()),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect()
}

/// The next complete message at the front of `buffer`, if there is one.
pub fn next_message(buffer: &mut BytesMut) -> Result<Option<Bytes>, String> {
    if buffer.len() < PREFIX_LEN {
        return Ok(None);
    }
    let compressed = buffer[0];
    if compressed != 0 {
        return Err(format!(
            "message with compressed flag {compressed}, but no compression was negotiated"
        ));
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() - PREFIX_LEN < len {
        return Ok(None);
    }
    buffer.advance(PREFIX_LEN);
    Ok(Some(buffer.split_to(len).freeze()))
}

/// A message with its gRPC prefix (uncompressed).
pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(PREFIX_LEN + message.len());
    framed.put_u8(0);
    // A message over 4 GiB cannot be framed; the length wraps and the server rejects it.
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

/// `grpc-status` and the decoded `grpc-message`; UNKNOWN when the status is missing or
/// not a number.
pub fn status_of(trailers: &HeaderMap) -> (u32, String) {
    let status = trailers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(UNKNOWN);
    let message = trailers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default();
    (status, message)
}

/// A non-200 response without a gRPC status, mapped as gRPC's HTTP-to-gRPC table says.
pub fn http_status_error(status: StatusCode) -> (u32, String) {
    let code = match status.as_u16() {
        400 => INTERNAL,
        401 => 16, // UNAUTHENTICATED
        403 => 7,  // PERMISSION_DENIED
        404 => 12, // UNIMPLEMENTED
        429 | 502..=504 => UNAVAILABLE,
        _ => UNKNOWN,
    };
    (code, format!("HTTP status {}", status.as_u16()))
}

/// `grpc-message` is percent-encoded; invalid escapes stay as they are.
pub fn percent_decode(value: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                value.get(i + 1).and_then(|b| hex(*b)),
                value.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `grpc-timeout` for a deadline: the finest unit that fits the 8 digits gRPC allows,
/// rounded up.
pub fn timeout_header(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    for (unit, per) in [
        ("n", 1u128),
        ("u", 1_000),
        ("m", 1_000_000),
        ("S", 1_000_000_000),
        ("M", 60_000_000_000),
        ("H", 3_600_000_000_000),
    ] {
        let value = nanos.div_ceil(per);
        if value <= MAX {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX}H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_chunks() {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&frame(b"hello"));
        wire.extend_from_slice(&frame(b""));
        wire.extend_from_slice(&frame(b"world!"));
        let mut buffer = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire {
            buffer.put_u8(byte);
            while let Some(message) = next_message(&mut buffer).expect("valid frames") {
                got.push(message);
            }
        }
        assert_eq!(got, [&b"hello"[..], b"", b"world!"]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn compressed_frames_are_refused() {
        let mut buffer = BytesMut::from(&[1u8, 0, 0, 0, 1, b'x'][..]);
        assert!(next_message(&mut buffer).is_err());
    }

    #[test]
    fn timeouts_use_the_finest_unit_that_fits() {
        assert_eq!(timeout_header(Duration::from_nanos(1500)), "1500n");
        assert_eq!(timeout_header(Duration::from_millis(1500)), "1500000u");
        assert_eq!(timeout_header(Duration::from_secs(5)), "5000000u");
        assert_eq!(timeout_header(Duration::from_secs(500)), "500000m");
        assert_eq!(timeout_header(Duration::from_secs(86_400)), "86400000m");
        assert_eq!(timeout_header(Duration::from_secs(10 * 86_400)), "864000S");
        assert_eq!(timeout_header(Duration::ZERO), "0n");
    }

    #[test]
    fn messages_are_percent_decoded() {
        assert_eq!(percent_decode(b"not found"), "not found");
        assert_eq!(percent_decode(b"caf%C3%A9 %zz %"), "café %zz %");
    }

    #[test]
    fn http_statuses_map_like_grpc() {
        assert_eq!(http_status_error(StatusCode::NOT_FOUND).0, 12);
        assert_eq!(
            http_status_error(StatusCode::SERVICE_UNAVAILABLE).0,
            UNAVAILABLE
        );
        assert_eq!(http_status_error(StatusCode::IM_A_TEAPOT).0, UNKNOWN);
    }
}
