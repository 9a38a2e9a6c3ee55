//! Guest metrics end to end: the `metrics` example filter on a gateway with two worker
//! threads (two VM replicas), real requests, and the admin `/metrics` page.

use std::time::{Duration, Instant};

use http::Request;
use wasmbridge_e2e::{Gateway, Proto, Upstream, filter, full, get, sample, scrape, send};

const GETS: usize = 12;
const POSTS: usize = 8;

fn yaml() -> String {
    format!(
        r#"
server: {{threads: 2}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: metrics
    root_id: metrics
    module: {}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [metrics]
"#,
        filter("metrics")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_metrics_aggregate_across_replicas_on_the_admin_endpoint() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start("guest-metrics", &yaml(), Some(upstream.addr)).await?;

    // One connection per request: Pingora hands each to a random worker thread, so the
    // requests are spread over both replicas. Request i gets a response body of i * 100
    // bytes (the echo upstream's `x-reply-body`).
    let (mut get_counts, mut post_counts) = (Vec::new(), Vec::new());
    for i in 1..=GETS + POSTS {
        let body = "a".repeat(i * 100);
        let url = gw.url("/count");
        let req = if i <= GETS {
            get(&url, &[("x-reply-body", &body)])
        } else {
            Request::post(&url)
                .header("x-reply-body", &body)
                .body(full("payload"))?
        };
        let reply = send(gw.addr, Proto::H1, req).await?;
        assert_eq!(reply.status, 200, "{}", gw.log_text());
        assert_eq!(reply.body.len(), i * 100);
        let count: u64 = reply.header("x-method-count").parse()?;
        if i <= GETS {
            get_counts.push(count);
        } else {
            post_counts.push(count);
        }
    }
    // Each request read its method's counter right after incrementing it: one counter for
    // both replicas counts 1, 2, 3, ... whichever replica served the request.
    assert_eq!(get_counts, (1..=GETS as u64).collect::<Vec<_>>());
    assert_eq!(post_counts, (1..=POSTS as u64).collect::<Vec<_>>());

    // `on_log` (which records the histogram and lowers the gauge) runs after the reply is
    // written, so wait until the last request's has run.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(&gw).await?;
        let done = sample(&text, "wasmcustom_response_body_bytes_count")
            .is_some_and(|n| n == (GETS + POSTS).to_string());
        if done || Instant::now() > deadline {
            break text;
        }
        // Polling the admin page for the last on_log: a readiness check, not a timed wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let expect = |name: &str, value: &str| {
        assert_eq!(
            sample(&text, name).as_deref(),
            Some(value),
            "{name}:\n{text}"
        );
    };
    expect("wasmcustom_requests_total_method_GET", &GETS.to_string());
    expect("wasmcustom_requests_total_method_POST", &POSTS.to_string());
    expect("wasmcustom_requests_in_flight", "0");
    let n = GETS + POSTS;
    expect("wasmcustom_response_body_bytes_count", &n.to_string());
    expect(
        "wasmcustom_response_body_bytes_sum",
        &(100 * n * (n + 1) / 2).to_string(),
    );
    // Envoy's default buckets: 100..=500 bytes is 5 requests, ..=1000 is 10, all by 2500.
    expect(r#"wasmcustom_response_body_bytes_bucket{le="50"}"#, "0");
    expect(r#"wasmcustom_response_body_bytes_bucket{le="100"}"#, "1");
    expect(r#"wasmcustom_response_body_bytes_bucket{le="500"}"#, "5");
    expect(r#"wasmcustom_response_body_bytes_bucket{le="1000"}"#, "10");
    expect(
        r#"wasmcustom_response_body_bytes_bucket{le="2500"}"#,
        &n.to_string(),
    );
    expect(
        r#"wasmcustom_response_body_bytes_bucket{le="+Inf"}"#,
        &n.to_string(),
    );
    for (name, kind) in [
        ("wasmcustom_requests_total_method_GET", "counter"),
        ("wasmcustom_requests_in_flight", "gauge"),
        ("wasmcustom_response_body_bytes", "histogram"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}:\n{text}"
        );
    }
    // The host's own metrics are still there.
    expect(
        r#"wasmbridge_plugin_callbacks_total{callback="proxy_on_request_headers",plugin="metrics"}"#,
        &n.to_string(),
    );
    Ok(())
}
