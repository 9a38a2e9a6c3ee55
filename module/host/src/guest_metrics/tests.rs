use prometheus::{Encoder, Registry, TextEncoder};

use super::*;

const COUNTER: MetricType = MetricType::Counter;
const GAUGE: MetricType = MetricType::Gauge;
const HISTOGRAM: MetricType = MetricType::Histogram;

fn define(m: &GuestMetrics, t: MetricType, name: &str) -> u32 {
    m.define(t, name.as_bytes(), "test").expect("define")
}

/// The text `/metrics` would serve for `m` alone.
fn exposition(m: &GuestMetrics) -> String {
    let registry = Registry::new();
    registry.register(Box::new(m.clone())).expect("register");
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encode");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn ids_are_stable_per_type_and_name_with_the_type_in_the_low_bits() {
    let m = GuestMetrics::new();
    let c = define(&m, COUNTER, "a");
    let g = define(&m, GAUGE, "a");
    let h = define(&m, HISTOGRAM, "a");
    assert_eq!((c & 3, g & 3, h & 3), (0, 1, 2));
    assert_eq!(define(&m, COUNTER, "a"), c);
    assert_eq!(define(&m, GAUGE, "a"), g);
    let other = define(&m, COUNTER, "b");
    assert_ne!(other, c);
    let ids = [c, g, h, other];
    for (i, a) in ids.iter().enumerate() {
        assert!(ids[i + 1..].iter().all(|b| a != b), "{ids:?}");
    }
    // Every clone of the handle (every plugin of the runtime) sees the same ids.
    assert_eq!(define(&m.clone(), COUNTER, "b"), other);
}

#[test]
fn counters_grow_by_positive_deltas_and_records() {
    let m = GuestMetrics::new();
    let id = define(&m, COUNTER, "c");
    assert_eq!(m.get(id), Ok(0));
    assert_eq!(m.increment(id, 5), Ok(()));
    assert_eq!(m.increment(id, 0), Err(Status::BadArgument));
    assert_eq!(m.increment(id, -1), Err(Status::BadArgument));
    assert_eq!(m.record(id, 10), Ok(()), "record adds to a counter");
    assert_eq!(m.get(id), Ok(15));
}

#[test]
fn gauges_go_both_ways_and_record_sets() {
    let m = GuestMetrics::new();
    let id = define(&m, GAUGE, "g");
    assert_eq!(m.increment(id, 7), Ok(()));
    assert_eq!(m.increment(id, -2), Ok(()));
    assert_eq!(m.increment(id, 0), Ok(()));
    assert_eq!(m.get(id), Ok(5));
    assert_eq!(m.record(id, 42), Ok(()));
    assert_eq!(m.get(id), Ok(42));
    assert_eq!(m.record(id, u64::MAX), Ok(()));
    assert_eq!(
        m.get(id),
        Ok(u64::MAX),
        "record and get round-trip every u64"
    );
    // Below zero reads as the wrapped u64, like Envoy's gauges.
    assert_eq!(m.record(id, 0), Ok(()));
    assert_eq!(m.increment(id, -1), Ok(()));
    assert_eq!(m.get(id), Ok(u64::MAX));
    assert_eq!(m.increment(id, i64::MIN), Ok(()), "no overflow panic");
}

#[test]
fn histograms_only_record() {
    let m = GuestMetrics::new();
    let id = define(&m, HISTOGRAM, "h");
    assert_eq!(m.increment(id, 1), Err(Status::BadArgument));
    assert_eq!(m.get(id), Err(Status::BadArgument));
    assert_eq!(m.record(id, 3), Ok(()));
    assert_eq!(m.record(id, 700), Ok(()));
    let text = exposition(&m);
    assert!(text.contains("wasmcustom_h_count 2\n"), "{text}");
    assert!(text.contains("wasmcustom_h_sum 703\n"), "{text}");
    assert!(text.contains("wasmcustom_h_bucket{le=\"5\"} 1\n"), "{text}");
    assert!(
        text.contains("wasmcustom_h_bucket{le=\"1000\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("wasmcustom_h_bucket{le=\"3600000\"} 2\n"),
        "{text}"
    );
}

#[test]
fn unknown_ids_follow_envoys_statuses() {
    let m = GuestMetrics::new();
    let c = define(&m, COUNTER, "c");
    let unknown = |t: u32| (1000 << 2) | t;
    // Counter and gauge ids that name nothing: NOT_FOUND.
    for id in [unknown(0), unknown(1)] {
        assert_eq!(m.increment(id, 1), Err(Status::NotFound), "{id}");
        assert_eq!(m.record(id, 1), Err(Status::NotFound), "{id}");
        assert_eq!(m.get(id), Err(Status::NotFound), "{id}");
    }
    // Increment and get refuse histogram ids and the unused type 3 before looking.
    for id in [unknown(2), unknown(3), c | 3] {
        assert_eq!(m.increment(id, 1), Err(Status::BadArgument), "{id}");
        assert_eq!(m.get(id), Err(Status::BadArgument), "{id}");
        assert_eq!(m.record(id, 1), Err(Status::NotFound), "{id}");
    }
    // The index of a counter with the type bits of a gauge names nothing.
    assert_eq!(m.increment(c | 1, 1), Err(Status::NotFound));
    assert_eq!(m.record(c | 1, 1), Err(Status::NotFound));
    assert_eq!(m.get(c | 1), Err(Status::NotFound));
    assert_eq!(m.record(c | 2, 1), Err(Status::NotFound));
    assert_eq!(m.get(c), Ok(0));
    assert_eq!(m.get(!3), Err(Status::NotFound));
}

#[test]
fn exported_names_replace_what_prometheus_does_not_allow() {
    assert_eq!(
        GuestMetrics::exported_name(b"requests_total.method.GET"),
        "wasmcustom_requests_total_method_GET"
    );
    assert_eq!(
        GuestMetrics::exported_name(b"a-b c:d/9"),
        "wasmcustom_a_b_c_d_9"
    );
    assert_eq!(GuestMetrics::exported_name("é".as_bytes()), "wasmcustom__");
    assert_eq!(GuestMetrics::exported_name(b"\xff\xfe"), "wasmcustom___");
    assert_eq!(GuestMetrics::exported_name(b""), "wasmcustom_");
}

#[test]
fn the_collector_exports_each_type_under_its_name() {
    let m = GuestMetrics::new();
    let c = define(&m, COUNTER, "requests.GET");
    let g = define(&m, GAUGE, "in_flight");
    define(&m, HISTOGRAM, "bytes");
    m.increment(c, 3).expect("increment");
    m.increment(g, 2).expect("increment");
    m.increment(g, -1).expect("increment");
    let text = exposition(&m);
    assert!(
        text.contains("# TYPE wasmcustom_requests_GET counter\nwasmcustom_requests_GET 3\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP wasmcustom_requests_GET Proxy-Wasm counter \"requests.GET\"\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE wasmcustom_in_flight gauge\nwasmcustom_in_flight 1\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE wasmcustom_bytes histogram\n"),
        "{text}"
    );
    assert!(text.contains("wasmcustom_bytes_count 0\n"), "{text}");
}

#[test]
fn colliding_exported_names_keep_the_first_metric() {
    let m = GuestMetrics::new();
    let dotted = define(&m, COUNTER, "a.b");
    let underscored = define(&m, COUNTER, "a_b");
    let gauge = define(&m, GAUGE, "a.b");
    assert_ne!(dotted, underscored);
    m.increment(dotted, 1).expect("increment");
    m.increment(underscored, 10).expect("increment");
    m.record(gauge, 100).expect("record");
    // Each still works for the guest ...
    assert_eq!(m.get(dotted), Ok(1));
    assert_eq!(m.get(underscored), Ok(10));
    assert_eq!(m.get(gauge), Ok(100));
    // ... but only the first one defined is exported, once.
    let text = exposition(&m);
    assert_eq!(text.matches("# TYPE wasmcustom_a_b ").count(), 1, "{text}");
    assert!(
        text.contains("# TYPE wasmcustom_a_b counter\nwasmcustom_a_b 1\n"),
        "{text}"
    );
}

#[test]
fn replicas_on_other_threads_aggregate_without_losing_updates() {
    let m = GuestMetrics::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                let c = define(&m, COUNTER, "shared");
                let g = define(&m, GAUGE, "level");
                let h = define(&m, HISTOGRAM, "sizes");
                for _ in 0..1000 {
                    m.increment(c, 1).expect("increment");
                    m.increment(g, 1).expect("increment");
                    m.record(h, 2).expect("record");
                    m.increment(g, -1).expect("increment");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(m.get(define(&m, COUNTER, "shared")), Ok(4000));
    assert_eq!(m.get(define(&m, GAUGE, "level")), Ok(0));
    let text = exposition(&m);
    assert!(text.contains("wasmcustom_sizes_count 4000\n"), "{text}");
    assert!(text.contains("wasmcustom_sizes_sum 8000\n"), "{text}");
}

#[test]
fn the_store_refuses_metrics_beyond_its_capacity() {
    let m = GuestMetrics::new();
    let mut last = 0;
    for i in 0..MAX_GUEST_METRICS {
        last = define(&m, COUNTER, &i.to_string());
    }
    assert_eq!(last >> 2, MAX_GUEST_METRICS as u32 - 1);
    assert_eq!(
        m.define(COUNTER, b"one-more", "test"),
        Err(Status::InternalFailure)
    );
    // Existing names still resolve, and the last slot works.
    assert_eq!(define(&m, COUNTER, "0"), 0);
    assert_eq!(m.increment(last, 1), Ok(()));
    assert_eq!(m.get(last), Ok(1));
}
