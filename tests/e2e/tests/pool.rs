//! VM pools through the gateway: `per_stream` isolation makes a trap fail exactly its own
//! request under load; `fail_reload` backs off before rebuilding; a recycled replica
//! finishes the streams it serves; a log-only plugin lets a request it would deny through
//! and counts the would-be reply; the pool metrics are on `/metrics`; plugins with the
//! same module and `vm_id` share their VMs.

use std::time::{Duration, Instant};

use wasmbridge_e2e::{
    Gateway, Proto, Upstream, filter, get, one_trap_in_ten, sample, scrape, send,
};

/// A gateway on `threads` workers whose only route runs plugin `name` (module `module`)
/// with the extra plugin keys `keys` (YAML lines at the plugin's indentation).
fn yaml(threads: usize, name: &str, module: &str, keys: &str) -> String {
    format!(
        r#"
server: {{threads: {threads}}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: {name}
    module: {module}
{keys}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [{name}]
"#,
        module = filter(module),
    )
}

async fn metric(gw: &Gateway, series: &str) -> anyhow::Result<Option<String>> {
    Ok(sample(&scrape(gw).await?, series))
}

/// One request in ten traps, from ten concurrent clients on two worker threads; with a VM
/// per stream every trap gets the 503 and every other request succeeds — exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_stream_isolation_fails_exactly_the_trapping_requests() -> anyhow::Result<()> {
    const CLIENTS: usize = 10;
    const EACH: usize = CLIENTS;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "pool-per-stream",
        &yaml(2, "misbehave", "misbehave", "    isolation: per_stream"),
        Some(upstream.addr),
    )
    .await?;
    let (mut traps, mut ok) = (0, 0);
    for reply in one_trap_in_ten(&gw, CLIENTS).await? {
        match (reply.trap, reply.status, reply.by.as_str()) {
            (true, 503, _) => traps += 1,
            (false, 200, "ok") => ok += 1,
            _ => panic!("unexpected {reply:?}:\n{}", gw.log_text()),
        }
    }
    assert_eq!((traps, ok), (CLIENTS, CLIENTS * (EACH - 1)));
    assert_eq!(
        metric(
            &gw,
            r#"wasmbridge_plugin_poisonings_total{plugin="misbehave",reason="trap"}"#
        )
        .await?,
        Some(CLIENTS.to_string())
    );
    let per_stream_starts = metric(
        &gw,
        r#"wasmbridge_pool_instantiation_seconds_count{isolation="per_stream",plugin="misbehave"}"#,
    )
    .await?;
    // One VM per request, and the one started at load to check the module.
    assert_eq!(
        per_stream_starts,
        Some((CLIENTS * EACH + 1).to_string()),
        "{}",
        gw.log_text()
    );
    Ok(())
}

/// `fail_reload`: after a trap the replica is rebuilt only once the base back-off passed;
/// a request meanwhile gets the policy's 503 without reaching the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_reload_rebuilds_the_replica_after_its_back_off() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "pool-fail-reload",
        &yaml(
            1,
            "misbehave",
            "misbehave",
            "    failure_policy: fail_reload\n    reload: {backoff: {base_interval: 1s}}",
        ),
        Some(upstream.addr),
    )
    .await?;
    // Taken before the trap, so the back-off measured from it is never short.
    let failed_at = Instant::now();
    let trapped = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/"), &[("x-misbehave", "trap-request-headers")]),
    )
    .await?;
    assert_eq!(trapped.status, 503);
    let waiting = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    if failed_at.elapsed() < Duration::from_millis(900) {
        assert_eq!(waiting.status, 503, "{}", gw.log_text());
        assert!(
            gw.log_text()
                .contains("fail_reload back-off after 1 failure(s) in a row"),
            "{}",
            gw.log_text()
        );
    }
    // Served again once the back-off is over, and never before.
    let deadline = failed_at + Duration::from_secs(20);
    loop {
        let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
        if reply.status == 200 {
            assert_eq!(reply.header("x-misbehave"), "ok");
            break;
        }
        assert_eq!(reply.status, 503);
        assert!(
            Instant::now() < deadline,
            "never rebuilt:\n{}",
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        failed_at.elapsed() >= Duration::from_secs(1),
        "rebuilt before the back-off ended"
    );
    Ok(())
}

/// Recycling after a few streams under concurrent load: replicas are replaced while
/// requests are in flight on them, and every request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycled_replicas_drop_no_stream_in_flight() -> anyhow::Result<()> {
    const CLIENTS: usize = 10;
    const EACH: usize = 20;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "pool-recycle",
        &yaml(
            1,
            "misbehave",
            "misbehave",
            "    pool: {recycle: {streams: 5}}",
        ),
        Some(upstream.addr),
    )
    .await?;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, url) = (gw.addr, gw.url("/"));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..EACH {
                    let reply = send(addr, Proto::H1, get(&url, &[])).await?;
                    statuses.push((
                        reply.status.as_u16(),
                        reply.header("x-misbehave").to_string(),
                    ));
                }
                anyhow::Ok(statuses)
            })
        })
        .collect();
    for task in tasks {
        for (status, by) in task.await?? {
            assert_eq!((status, by.as_str()), (200, "ok"), "{}", gw.log_text());
        }
    }
    gw.wait_for_stream_end().await;
    let recycles: u64 = metric(
        &gw,
        r#"wasmbridge_pool_recycles_total{plugin="misbehave",reason="streams"}"#,
    )
    .await?
    .expect("recycles counted")
    .parse()?;
    // 200 streams, a replica per 5 (some streams may have joined a replica as it became due).
    assert!(recycles >= 10, "{recycles} recycles");
    let log = gw.log_text();
    assert!(
        log.lines()
            .filter(|l| l.contains("recycled a replica"))
            .any(|l| !l.contains("streams_left=0")),
        "some recycle happened with streams in flight on the old replica:\n{log}"
    );
    assert!(!log.contains("plugin failed for this stream"), "{log}");
    Ok(())
}

/// Log-only mode: `deny` sees a request without its key; the would-be 403 is logged and
/// counted; the request reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_only_plugin_lets_a_request_it_would_deny_through() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "pool-log-only",
        &yaml(1, "deny", "deny", "    log_only: true"),
        Some(upstream.addr),
    )
    .await?;
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(upstream.requests(), 1, "the upstream saw the request");
    let log = gw.log_text();
    assert!(
        log.contains("log-only: the plugin would send a local reply 403"),
        "{log}"
    );
    assert_eq!(
        metric(
            &gw,
            r#"wasmbridge_plugin_log_only_total{action="local_reply",plugin="deny"}"#
        )
        .await?
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(
            &gw,
            r#"wasmbridge_plugin_log_only_total{action="pause",plugin="deny"}"#
        )
        .await?
        .as_deref(),
        Some("1"),
        "deny also returns Pause after its reply"
    );
    Ok(())
}

/// The pool's gauges: one replica per worker thread, no callback running between
/// requests, and each replica's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_metrics_describe_the_replicas() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "pool-metrics",
        &yaml(2, "misbehave", "misbehave", ""),
        Some(upstream.addr),
    )
    .await?;
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 200);
    gw.wait_for_stream_end().await;
    let text = scrape(&gw).await?;
    assert_eq!(
        sample(&text, r#"wasmbridge_pool_replicas{plugin="misbehave"}"#).as_deref(),
        Some("2")
    );
    assert_eq!(
        sample(&text, r#"wasmbridge_pool_busy{plugin="misbehave"}"#).as_deref(),
        Some("0")
    );
    for replica in ["0", "1"] {
        let memory: u64 = sample(
            &text,
            &format!(
                r#"wasmbridge_pool_replica_memory_bytes{{plugin="misbehave",replica="{replica}"}}"#
            ),
        )
        .expect("memory per replica")
        .parse()?;
        assert!(memory >= 65536, "replica {replica}: {memory} bytes");
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"wasmbridge_pool_replica_streams{{plugin="misbehave",replica="{replica}"}}"#
                ),
            )
            .as_deref(),
            Some("0")
        );
    }
    assert_eq!(
        sample(
            &text,
            r#"wasmbridge_pool_instantiation_seconds_count{isolation="shared",plugin="misbehave"}"#
        )
        .as_deref(),
        Some("2")
    );
    Ok(())
}

/// Plugins a and b have the same module and `vm_id`: one VM holds both their root
/// contexts and counts the streams of both, and a trap in b's stream kills it for a too.
/// Plugin c has the same module and `vm_id` but other limits, so it keeps a VM of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_with_the_same_module_and_vm_id_share_a_vm() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let module = filter("vm_share");
    let config = format!(
        r#"
server: {{threads: 1}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - {{name: a, module: {module}, vm_id: shared, root_id: ra, configuration: a}}
  - {{name: b, module: {module}, vm_id: shared, root_id: rb, configuration: b}}
  - {{name: c, module: {module}, vm_id: shared, configuration: c, limits: {{cpu: 50ms}}}}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [a, b, c]
"#
    );
    let gw = Gateway::start("pool-vm-share", &config, Some(upstream.addr)).await?;
    let seen = |reply: &wasmbridge_e2e::Reply| {
        ["a", "b", "c"].map(|n| reply.header(&format!("x-vm-share-{n}")).to_string())
    };
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(
        seen(&reply),
        [
            "roots=2 streams=1 root=1",
            "roots=2 streams=2 root=2",
            "roots=1 streams=1 root=1"
        ]
    );
    // b traps (fail_closed): the VM a and b share is replaced, c's is not.
    let reply = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/"), &[("x-vm-share-trap", "b")]),
    )
    .await?;
    assert_eq!(reply.status, 503);
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(
        seen(&reply),
        [
            "roots=2 streams=1 root=1",
            "roots=2 streams=2 root=2",
            "roots=1 streams=3 root=1"
        ],
        "{}",
        gw.log_text()
    );
    assert_eq!(
        metric(
            &gw,
            r#"wasmbridge_plugin_poisonings_total{plugin="b",reason="trap"}"#
        )
        .await?,
        Some("1".to_string())
    );
    assert!(
        gw.log_text().contains("their `limits` differs"),
        "{}",
        gw.log_text()
    );
    Ok(())
}
