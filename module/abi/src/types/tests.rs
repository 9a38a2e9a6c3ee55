use super::*;

/// Checks that every value round-trips, codes are dense from 0 and one past the last value
/// is BAD_ARGUMENT.
fn check<T>(all: &[T], expected_len: usize)
where
    T: Copy + PartialEq + fmt::Debug + Into<u32> + TryFrom<u32, Error = Status>,
{
    assert_eq!(all.len(), expected_len);
    for (i, value) in all.iter().copied().enumerate() {
        let code: u32 = value.into();
        assert_eq!(code as usize, i, "{value:?}");
        assert_eq!(T::try_from(code), Ok(value));
    }
    let past = u32::try_from(all.len()).unwrap();
    assert_eq!(T::try_from(past), Err(Status::BadArgument));
    assert_eq!(T::try_from(u32::MAX), Err(Status::BadArgument));
}

#[test]
fn log_level_round_trips() {
    check(LogLevel::ALL, 6);
    assert_eq!(LogLevel::Critical.code(), 5);
    assert_eq!(LogLevel::Warn.to_string(), "WARN");
}

#[test]
fn stream_type_round_trips() {
    check(StreamType::ALL, 4);
    assert!(StreamType::HttpResponse.is_http());
    assert!(!StreamType::Upstream.is_http());
}

#[test]
fn map_type_round_trips() {
    check(MapType::ALL, 8);
    assert_eq!(MapType::HttpCallResponseTrailers.code(), 7);
    assert_eq!(MapType::HttpRequestHeaders.name(), "HTTP_REQUEST_HEADERS");
}

#[test]
fn buffer_type_round_trips() {
    check(BufferType::ALL, 9);
    assert_eq!(BufferType::CallData.code(), 8);
    assert_eq!(BufferType::HttpCallResponseBody.since(), AbiVersion::V0_1_0);
    assert_eq!(BufferType::PluginConfiguration.since(), AbiVersion::V0_2_0);
    assert!(!BufferType::HttpRequestBody.is_read_only());
    assert!(!BufferType::UpstreamData.is_read_only());
    assert!(BufferType::VmConfiguration.is_read_only());
    assert!(BufferType::HttpCallResponseBody.is_read_only());
}

#[test]
fn peer_type_round_trips() {
    check(PeerType::ALL, 3);
}

#[test]
fn metric_type_round_trips() {
    check(MetricType::ALL, 3);
    assert_eq!(MetricType::Histogram.code(), 2);
}

#[test]
fn headers_action_from_result() {
    use HeadersAction::*;
    let cases = [
        (0, false, Continue),
        (0, true, Continue),
        (1, false, StopAllIterationAndWatermark),
        (1, true, StopIteration),
        (2, false, Continue),
        (2, true, Continue),
        (3, false, StopAllIterationAndBuffer),
        (3, true, StopAllIterationAndBuffer),
        (4, false, StopAllIterationAndWatermark),
        (4, true, StopAllIterationAndWatermark),
        (5, true, StopAllIterationAndWatermark),
        (u32::MAX, false, StopAllIterationAndWatermark),
    ];
    for (raw, allow, expected) in cases {
        assert_eq!(
            HeadersAction::from_result(raw, allow),
            expected,
            "{raw} {allow}"
        );
    }
    assert!(Continue.is_continue());
    assert!(!StopIteration.is_continue());
    assert!(!HeadersAction::AFTER_LOCAL_RESPONSE.is_continue());
}

#[test]
fn body_action_from_result() {
    use BodyAction::*;
    let cases = [
        (0, Continue),
        (1, StopIterationAndBuffer),
        (2, StopIterationAndWatermark),
        (3, StopIterationNoBuffer),
        (4, StopIterationNoBuffer),
        (u32::MAX, StopIterationNoBuffer),
    ];
    for (raw, expected) in cases {
        assert_eq!(BodyAction::from_result(raw), expected, "{raw}");
    }
    assert!(Continue.is_continue());
    assert!(!StopIterationAndBuffer.is_continue());
    assert_eq!(BodyAction::AFTER_LOCAL_RESPONSE, StopIterationNoBuffer);
}

#[test]
fn trailers_action_from_result() {
    assert_eq!(TrailersAction::from_result(0), TrailersAction::Continue);
    assert_eq!(
        TrailersAction::from_result(1),
        TrailersAction::StopIteration
    );
    assert_eq!(
        TrailersAction::from_result(7),
        TrailersAction::StopIteration
    );
    assert!(TrailersAction::Continue.is_continue());
    assert!(!TrailersAction::StopIteration.is_continue());
}
