//! Resource limits and failure containment through the gateway: a plugin that loops, eats
//! memory, overflows its stack or traps is stopped; only its replica is replaced; the
//! gateway keeps serving; `/metrics` counts each poisoning by reason.

use wasmbridge_e2e::{Gateway, Proto, Upstream, filter, get, sample, scrape, send};

/// A gateway on `threads` workers whose only route runs the `misbehave` probe with
/// `limits` (YAML flow mapping) and `failure_policy`.
fn yaml(threads: usize, limits: &str, policy: &str) -> String {
    format!(
        r#"
server: {{threads: {threads}}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: misbehave
    module: {}
    failure_policy: {policy}
    limits: {limits}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [misbehave]
"#,
        filter("misbehave")
    )
}

/// `wasmbridge_plugin_poisonings_total` of the `misbehave` plugin for `reason`.
async fn poisonings(gw: &Gateway, reason: &str) -> anyhow::Result<Option<String>> {
    let text = scrape(gw).await?;
    Ok(sample(
        &text,
        &format!(r#"wasmbridge_plugin_poisonings_total{{plugin="misbehave",reason="{reason}"}}"#),
    ))
}

/// Asserts the poisoning count for `reason` (`None`: never counted).
async fn assert_poisoned(gw: &Gateway, reason: &str, count: Option<&str>) -> anyhow::Result<()> {
    let found = poisonings(gw, reason).await?;
    assert_eq!(found.as_deref(), count, "{reason}:\n{}", gw.log_text());
    Ok(())
}

/// Sends one request with `x-misbehave: mode`, expects the failure policy's 503, then one
/// well-behaved request, which the replaced VM serves.
async fn stopped_then_served(gw: &Gateway, mode: &str) -> anyhow::Result<()> {
    let failed = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/"), &[("x-misbehave", mode)]),
    )
    .await?;
    assert_eq!(failed.status, 503, "{mode}: {}", gw.log_text());
    let next = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(next.status, 200, "{mode}: the next request is served");
    assert_eq!(next.header("x-misbehave"), "ok", "{mode}: by the plugin");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_at_the_cpu_deadline() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-loop",
        &yaml(1, "{cpu: 20ms}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    stopped_then_served(&gw, "loop").await?;
    let log = gw.log_text();
    assert!(
        log.contains("ran past its CPU deadline (20ms"),
        "the reason is logged:\n{log}"
    );
    assert_poisoned(&gw, "deadline", Some("1")).await?;
    assert_poisoned(&gw, "trap", None).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strict_profile_stops_a_loop_within_milliseconds() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-strict",
        &yaml(1, "{profile: strict}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    stopped_then_served(&gw, "loop").await?;
    let log = gw.log_text();
    assert!(log.contains("ran past its CPU deadline (1ms"), "{log}");
    assert_poisoned(&gw, "deadline", Some("1")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_at_the_cap() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-memory",
        &yaml(1, "{memory: 8MiB}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    stopped_then_served(&gw, "memory-bomb").await?;
    let log = gw.log_text();
    assert!(
        log.contains("after its memory reached the cap of 8388608 bytes"),
        "{log}"
    );
    assert_poisoned(&gw, "memory", Some("1")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_overflow_is_contained() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-stack",
        &yaml(1, "{}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    stopped_then_served(&gw, "stack-overflow").await?;
    assert_poisoned(&gw, "stack_overflow", Some("1")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_open_loop_is_skipped_for_its_stream() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-open",
        &yaml(1, "{cpu: 20ms}", "fail_open"),
        Some(upstream.addr),
    )
    .await?;
    let reply = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/"), &[("x-misbehave", "loop")]),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(reply.header("x-upstream"), "echo");
    assert_eq!(
        reply.header("x-misbehave"),
        "",
        "skipped after the deadline"
    );
    assert_poisoned(&gw, "deadline", Some("1")).await?;
    Ok(())
}

/// One request in ten traps, from ten concurrent clients on two worker threads. Each trap
/// gets the 503; a stream that shared the trapped VM at that moment loses its context
/// with it and gets the policy too (Envoy does the same), and the gateway logs each such
/// stream; every other request succeeds, and the metric counts exactly the traps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trap_in_ten_under_load_fails_only_its_replica() -> anyhow::Result<()> {
    const CLIENTS: usize = 10;
    const EACH: usize = 10;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "limits-load",
        &yaml(2, "{}", "fail_closed"),
        Some(upstream.addr),
    )
    .await?;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (addr, url) = (gw.addr, gw.url("/"));
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for i in 0..EACH {
                    // The client's i-th request traps when i == client: one in ten overall.
                    let trap = i == client;
                    let headers: &[(&str, &str)] = if trap {
                        &[("x-misbehave", "trap-request-headers")]
                    } else {
                        &[]
                    };
                    let reply = send(addr, Proto::H1, get(&url, headers)).await?;
                    replies.push((trap, reply.status.as_u16()));
                }
                anyhow::Ok(replies)
            })
        })
        .collect();
    let mut traps = 0;
    let mut ok = 0;
    let mut bystanders_failed = 0;
    for task in tasks {
        for (trap, status) in task.await?? {
            match (trap, status) {
                (true, 503) => traps += 1,
                (false, 200) => ok += 1,
                (false, 503) => bystanders_failed += 1,
                other => panic!("unexpected {other:?}:\n{}", gw.log_text()),
            }
        }
    }
    assert_eq!(
        traps, CLIENTS,
        "every trapping request gets the policy's 503"
    );
    gw.wait_for_stream_end().await;
    let log = gw.log_text();
    // Streams that lost their VM, whether before their reply (then a 503) or after it
    // (in on_log or on_done, with the reply already sent).
    let lost = log.matches("the VM of this stream failed earlier").count()
        + log
            .matches("plugin failed for this stream: the VM is gone")
            .count();
    assert!(
        bystanders_failed <= lost,
        "only streams of a trapped VM fail besides the traps ({bystanders_failed} > {lost}):\n{log}"
    );
    assert_eq!(ok + bystanders_failed, CLIENTS * (EACH - 1));
    assert_eq!(
        poisonings(&gw, "trap").await?,
        Some(CLIENTS.to_string()),
        "{log}"
    );
    // Still serving.
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 200);
    Ok(())
}
