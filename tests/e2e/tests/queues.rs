//! Shared queues through the gateway on two worker threads: items enqueued by streams on
//! either thread reach the root context that registered the queue, on its own thread, one
//! `proxy_on_queue_ready` per item; the admin `/metrics` page shows each queue's depth.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use wasmbridge_e2e::{Gateway, Proto, Upstream, filter, get, sample, scrape, send};

const ITEMS: usize = 40;

/// Three plugins of one `vm_id` built from the `hostcalls` probe. `idle` registers the
/// queue `parked` on every replica at start (id 1) and never reads it. `owner` registers
/// `jobs` (id 2) when it serves a request, and dequeues on each notification. `producer`
/// resolves both by name and enqueues one item into each.
fn yaml() -> String {
    let plugin = |name: &str, configuration: &str| {
        format!(
            "  - name: {name}\n    vm_id: queues\n    module: {}\n    configuration: '{configuration}'\n",
            filter("hostcalls")
        )
    };
    let idle = plugin(
        "idle",
        r#"{"on_configure": [{"call": "register_shared_queue", "name": "parked"}]}"#,
    );
    let owner = plugin(
        "owner",
        r#"{"on_request_headers": [{"call": "register_shared_queue", "name": "jobs"}],
            "on_queue_ready": [{"call": "dequeue_shared_queue", "queue_id": 2}]}"#,
    );
    let producer = plugin(
        "producer",
        r#"{"on_request_headers": [
              {"call": "resolve_shared_queue", "vm_id": "queues", "name": "parked"},
              {"call": "resolve_shared_queue", "vm_id": "queues", "name": "jobs"},
              {"call": "enqueue_shared_queue", "queue_id": 1, "value": "parcel"},
              {"call": "enqueue_shared_queue", "queue_id": 2, "value": "job"}]}"#,
    );
    format!(
        r#"
server: {{threads: 2}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
{idle}{owner}{producer}routes:
  - {{match: {{prefix: /register}}, cluster: backend, plugins: [owner]}}
  - {{match: {{prefix: /enqueue}}, cluster: backend, plugins: [producer]}}
"#
    )
    .replace("\n            ", " ")
}

/// The worker thread that logged `line` (the gateway logs thread ids).
fn thread_of(line: &str) -> &str {
    let start = line.find("ThreadId(").unwrap_or(0);
    let end = line[start..]
        .find(')')
        .map_or(line.len(), |e| start + e + 1);
    &line[start..end]
}

/// The log lines of plugin `plugin` that contain `needle`.
fn lines<'a>(log: &'a str, plugin: &str, needle: &str) -> Vec<&'a str> {
    let plugin = format!("plugin={plugin} ");
    log.lines()
        .filter(|l| l.contains(needle) && l.contains(&plugin))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_items_reach_the_registering_root_on_its_thread_from_both_workers()
-> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start("queues", &yaml(), Some(upstream.addr)).await?;

    let reply = send(gw.addr, Proto::H1, get(&gw.url("/register"), &[])).await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    // One connection per request, all at once: the two worker threads share them.
    let tasks: Vec<_> = (0..ITEMS)
        .map(|_| {
            let (addr, url) = (gw.addr, gw.url("/enqueue"));
            tokio::spawn(async move { send(addr, Proto::H1, get(&url, &[])).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await??.status, 200, "{}", gw.log_text());
    }

    // Notifications run on the owner's root driver after the replies went out: poll the
    // admin page until `jobs` is drained (a readiness check, not a timed wait).
    let deadline = Instant::now() + Duration::from_secs(10);
    let jobs = r#"wasmbridge_shared_queue_depth{queue="jobs",vm_id="queues"}"#;
    let text = loop {
        let text = scrape(&gw).await?;
        let drained = sample(&text, jobs).as_deref() == Some("0")
            && lines(
                &gw.log_text(),
                "owner",
                r#"dequeue_shared_queue -> Ok "job""#,
            )
            .len()
                == ITEMS;
        if drained || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = gw.log_text();
    assert_eq!(sample(&text, jobs).as_deref(), Some("0"), "{text}\n{log}");
    // Nobody reads `parked`: every item is still there.
    let parked = r#"wasmbridge_shared_queue_depth{queue="parked",vm_id="queues"}"#;
    assert_eq!(
        sample(&text, parked),
        Some(ITEMS.to_string()),
        "{text}\n{log}"
    );

    assert_eq!(
        lines(&log, "producer", "resolve_shared_queue -> Ok 1").len(),
        ITEMS,
        "{log}"
    );
    assert_eq!(
        lines(&log, "producer", "resolve_shared_queue -> Ok 2").len(),
        ITEMS,
        "{log}"
    );
    let enqueued = lines(&log, "producer", "enqueue_shared_queue -> Ok");
    assert_eq!(enqueued.len(), 2 * ITEMS, "{log}");
    let producers: BTreeSet<&str> = enqueued.iter().map(|l| thread_of(l)).collect();
    assert_eq!(
        producers.len(),
        2,
        "both workers enqueue: {producers:?}\n{log}"
    );

    // Exactly one notification per `jobs` item, none for `parked` (its owner's root has no
    // steps but logs its entry line), each dequeuing one item; all on the thread whose
    // replica registered `jobs`.
    let registered = lines(&log, "owner", "register_shared_queue -> Ok 2");
    assert_eq!(registered.len(), 1, "{log}");
    let notified = lines(&log, "owner", "probe on_queue_ready id=2");
    assert_eq!(notified.len(), ITEMS, "{log}");
    let dequeued = lines(&log, "owner", r#"dequeue_shared_queue -> Ok "job""#);
    assert_eq!(dequeued.len(), ITEMS, "{log}");
    let owner_thread = thread_of(registered[0]);
    for line in notified.iter().chain(&dequeued) {
        assert_eq!(thread_of(line), owner_thread, "{line}\n{log}");
    }
    assert_eq!(
        lines(&log, "idle", "probe on_queue_ready id=1").len(),
        ITEMS
    );
    assert!(
        lines(&log, "owner", "on_queue_ready id=1").is_empty(),
        "{log}"
    );
    Ok(())
}
