//! The example filters that talk to other services or share state between worker threads —
//! `ext_auth`, `rate_limit`, `refresher` — through the gateway, against real servers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use wasmbridge_e2e::{
    Gateway, Proto, Reply, Upstream, callouts_total, chunked, filter, free_port, full, get, sample,
    scrape, send, serve,
};

type Body = BoxBody<Bytes, Infallible>;

/// A gateway on `threads` worker threads with a `backend` cluster and `extra_clusters`
/// (`name: address`), one route per `(prefix, plugin)` and a plugin per `(name, module,
/// configuration)`.
fn gateway_yaml(
    threads: usize,
    extra_clusters: &[(&str, String)],
    plugins: &[(&str, &str, String)],
    routes: &[(&str, &str)],
) -> String {
    let mut yaml = format!(
        "server: {{threads: {threads}}}\nlisteners: [{{address: \"{{listen}}\"}}]\nadmin: {{address: \"{{admin}}\"}}\nclusters:\n  - {{name: backend, endpoints: [\"{{upstream}}\"]}}\n"
    );
    for (name, addr) in extra_clusters {
        yaml.push_str(&format!("  - {{name: {name}, endpoints: [\"{addr}\"]}}\n"));
    }
    yaml.push_str("plugins:\n");
    for (name, module, configuration) in plugins {
        yaml.push_str(&format!(
            "  - name: {name}\n    module: {}\n    configuration: '{configuration}'\n",
            filter(module)
        ));
    }
    yaml.push_str("routes:\n");
    for (prefix, plugin) in routes {
        yaml.push_str(&format!(
            "  - match: {{prefix: {prefix}}}\n    cluster: backend\n    plugins: [{plugin}]\n"
        ));
    }
    yaml
}

/// Sends requests until `done` accepts a reply, or fails after 10 s: for changes that a
/// timer makes, where no event tells the test when they happened.
async fn poll_until(
    gw: &Gateway,
    request: impl Fn() -> Request<Body>,
    done: impl Fn(&Reply) -> bool,
) -> anyhow::Result<Reply> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = send(gw.addr, Proto::H1, request()).await?;
        if done(&reply) {
            return Ok(reply);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no matching reply within 10 s; the last was {} {:?}:\n{}",
            reply.status,
            reply.body,
            gw.log_text()
        );
        // Between polls of a timer-driven change, not a wait for a result.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- ext_auth --------------------------------------------------------------------------

/// What the authorization service saw of one check.
#[derive(Debug, Clone)]
struct Check {
    path: String,
    headers: BTreeMap<String, String>,
}

/// The authorization service: `authorization: Bearer good` is allowed as `x-user`, any
/// other token gets a 401 with a challenge, no token a 403; `/slow` never answers. Every
/// check is recorded in `checks`.
async fn auth(
    checks: Arc<Mutex<Vec<Check>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let headers: BTreeMap<String, String> = wasmbridge_e2e::header_pairs(req.headers())
        .into_iter()
        .collect();
    let path = req.uri().path().to_owned();
    checks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Check {
            path: path.clone(),
            headers: headers.clone(),
        });
    if path == "/slow" {
        std::future::pending::<()>().await;
    }
    let user = headers.get("x-user").cloned().unwrap_or_default();
    let response = match headers.get("authorization").map(String::as_str) {
        Some("Bearer good") => Response::builder()
            .status(200)
            .header("x-auth-user", user)
            .header("x-auth-internal", "not copied")
            .body(full("ok")),
        Some(_) => Response::builder()
            .status(401)
            .header("www-authenticate", "Bearer realm=\"test\"")
            .header("content-type", "text/plain")
            .body(full("bad token\n")),
        None => Response::builder()
            .status(403)
            .header("content-type", "text/plain")
            .body(full("forbidden by the auth service\n")),
    };
    Ok(response.expect("response"))
}

/// A gateway with `ext_auth` on four routes: `/api` asks the live service, `/slow` asks
/// its never-answering path with a 200 ms timeout, `/down` asks a cluster with nothing
/// listening, `/nowhere` names a cluster that does not exist.
async fn ext_auth_gateway(
    name: &str,
    upstream: &Upstream,
    checks: Arc<Mutex<Vec<Check>>>,
) -> anyhow::Result<(Gateway, tokio::task::JoinHandle<()>)> {
    let (auth_addr, auth_task) = serve(move |req| auth(Arc::clone(&checks), req)).await?;
    let config = |cluster: &str, path: &str, timeout_ms: u32| {
        format!(
            r#"{{"cluster": "{cluster}", "path": "{path}", "timeout_ms": {timeout_ms}, "forward_headers": ["authorization", "x-user"], "allowed_headers": ["x-auth-user"]}}"#
        )
    };
    let yaml = gateway_yaml(
        2,
        &[
            ("auth", auth_addr.to_string()),
            ("down", format!("127.0.0.1:{}", free_port())),
        ],
        &[
            ("auth_api", "ext_auth", config("auth", "/check", 5000)),
            ("auth_slow", "ext_auth", config("auth", "/slow", 200)),
            ("auth_down", "ext_auth", config("down", "/check", 5000)),
            (
                "auth_nowhere",
                "ext_auth",
                config("nowhere", "/check", 5000),
            ),
        ],
        &[
            ("/api", "auth_api"),
            ("/slow", "auth_slow"),
            ("/down", "auth_down"),
            ("/nowhere", "auth_nowhere"),
        ],
    );
    let gw = Gateway::start(name, &yaml, Some(upstream.addr)).await?;
    Ok((gw, auth_task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_auth_forwards_an_allowed_request_with_the_granted_headers() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let checks = Arc::new(Mutex::new(Vec::new()));
    let (gw, _auth) = ext_auth_gateway("ext-auth-allow", &upstream, Arc::clone(&checks)).await?;
    let reply = send(
        gw.addr,
        Proto::H1,
        get(
            &gw.url("/api/items?page=2"),
            &[
                ("authorization", "Bearer good"),
                ("x-user", "alice"),
                ("x-auth-user", "mallory"),
                ("x-private", "not forwarded"),
            ],
        ),
    )
    .await?;
    assert_eq!(reply.status, 200, "{}", gw.log_text());
    assert_eq!(reply.json()["path"], "/api/items?page=2");
    // The service's value replaced the client's, and only listed headers were copied.
    assert_eq!(reply.upstream_headers("x-auth-user"), ["alice"]);
    assert!(reply.upstream_header("x-auth-internal").is_none());
    assert_eq!(upstream.requests(), 1);

    // A body waits for the verdict, then follows the headers whole.
    for proto in [Proto::H1, Proto::H2c] {
        let post = Request::post(gw.url("/api/upload"))
            .header("authorization", "Bearer good")
            .body(chunked(&[b"part one, ", b"part two"]))?;
        let reply = send(gw.addr, proto, post).await?;
        assert_eq!(reply.status, 200, "{proto:?}: {}", gw.log_text());
        assert_eq!(reply.json()["body"], "part one, part two", "{proto:?}");
    }
    assert_eq!(upstream.requests(), 3);

    let checks = checks.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(checks.len(), 3, "{checks:?}");
    let check = &checks[0];
    assert_eq!(check.path, "/check");
    assert_eq!(check.headers["authorization"], "Bearer good");
    assert_eq!(check.headers["x-user"], "alice");
    assert_eq!(check.headers["x-original-method"], "GET");
    assert_eq!(check.headers["x-original-uri"], "/api/items?page=2");
    assert!(!check.headers.contains_key("x-private"), "{check:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_auth_passes_a_denial_to_the_client_and_spares_the_upstream() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let checks = Arc::new(Mutex::new(Vec::new()));
    let (gw, _auth) = ext_auth_gateway("ext-auth-deny", &upstream, Arc::clone(&checks)).await?;

    let forbidden = send(gw.addr, Proto::H1, get(&gw.url("/api/items"), &[])).await?;
    assert_eq!(forbidden.status, 403, "{}", gw.log_text());
    assert_eq!(&forbidden.body[..], b"forbidden by the auth service\n");
    assert_eq!(forbidden.header("content-type"), "text/plain");

    let unauthorized = send(
        gw.addr,
        Proto::H2c,
        get(&gw.url("/api/items"), &[("authorization", "Bearer bad")]),
    )
    .await?;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(&unauthorized.body[..], b"bad token\n");
    assert_eq!(
        unauthorized.header("www-authenticate"),
        "Bearer realm=\"test\""
    );

    // A request body does not carry the request past a pending check.
    for proto in [Proto::H1, Proto::H2c] {
        let post =
            Request::post(gw.url("/api/upload")).body(chunked(&[b"part one, ", b"part two"]))?;
        let denied = send(gw.addr, proto, post).await?;
        assert_eq!(denied.status, 403, "{proto:?}: {}", gw.log_text());
        assert_eq!(&denied.body[..], b"forbidden by the auth service\n");
    }

    assert_eq!(
        upstream.requests(),
        0,
        "a denied request reached the upstream"
    );
    assert_eq!(checks.lock().unwrap_or_else(|e| e.into_inner()).len(), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_auth_fails_closed_when_the_service_is_down_or_slow() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let checks = Arc::new(Mutex::new(Vec::new()));
    let (gw, _auth) = ext_auth_gateway("ext-auth-fail", &upstream, Arc::clone(&checks)).await?;
    let good = [("authorization", "Bearer good")];

    let down = send(gw.addr, Proto::H1, get(&gw.url("/down"), &good)).await?;
    assert_eq!(down.status, 503, "{}", gw.log_text());
    assert_eq!(&down.body[..], b"auth service unavailable\n");

    let started = Instant::now();
    let slow = send(gw.addr, Proto::H1, get(&gw.url("/slow"), &good)).await?;
    assert_eq!(slow.status, 503, "{}", gw.log_text());
    assert_eq!(&slow.body[..], b"auth service unavailable\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the 200 ms timeout did not end the check"
    );
    // The slow check did reach the service: it was the answer that never came.
    assert!(
        checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|c| c.path == "/slow")
    );

    assert_eq!(upstream.requests(), 0);
    gw.wait_for_stream_end().await;
    let log = gw.log_text();
    assert!(
        log.contains("ext_auth: authorization service on cluster down unavailable (503)"),
        "{log}"
    );
    assert!(
        log.contains("ext_auth: authorization service on cluster auth unavailable (504)"),
        "{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_auth_replies_500_when_the_call_cannot_be_dispatched() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let checks = Arc::new(Mutex::new(Vec::new()));
    let (gw, _auth) = ext_auth_gateway("ext-auth-nowhere", &upstream, checks).await?;
    let reply = send(
        gw.addr,
        Proto::H1,
        get(&gw.url("/nowhere"), &[("authorization", "Bearer good")]),
    )
    .await?;
    assert_eq!(reply.status, 500, "{}", gw.log_text());
    assert_eq!(&reply.body[..], b"authorization check failed\n");
    assert_eq!(upstream.requests(), 0);
    gw.wait_for_stream_end().await;
    let log = gw.log_text();
    assert!(
        log.contains("ext_auth: cannot call the authorization service on cluster nowhere"),
        "{log}"
    );
    Ok(())
}

// ---- rate_limit ------------------------------------------------------------------------

/// A window of a year: a burst never straddles a window boundary.
const YEAR: u64 = 365 * 24 * 3600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_loses_no_count_across_worker_threads() -> anyhow::Result<()> {
    const LIMIT: usize = 50;
    const REQUESTS: usize = 200;
    let upstream = Upstream::start().await;
    let yaml = gateway_yaml(
        2,
        &[],
        &[(
            "limit",
            "rate_limit",
            format!(r#"{{"limit": {LIMIT}, "window_seconds": {YEAR}}}"#),
        )],
        &[("/", "limit")],
    );
    let gw = Gateway::start("rate-limit-burst", &yaml, Some(upstream.addr)).await?;

    // Every request on its own connection, all at once: the gateway's two worker threads
    // take connections as they come, so both count into the same shared data.
    let url = gw.url("/burst");
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (addr, url) = (gw.addr, url.clone());
            tokio::spawn(async move { send(addr, Proto::H1, get(&url, &[])).await })
        })
        .collect();
    let mut remaining = Vec::new();
    let mut limited = 0;
    for task in tasks {
        let reply = task.await??;
        assert_eq!(reply.header("x-ratelimit-limit"), LIMIT.to_string());
        match reply.status.as_u16() {
            200 => remaining.push(reply.header("x-ratelimit-remaining").parse::<usize>()?),
            429 => {
                assert_eq!(reply.header("x-ratelimit-remaining"), "0");
                assert!(reply.header("retry-after").parse::<u64>()? > 0);
                assert_eq!(&reply.body[..], b"rate limit exceeded\n");
                limited += 1;
            }
            other => panic!("unexpected status {other}: {}", gw.log_text()),
        }
    }
    assert_eq!(remaining.len(), LIMIT, "{}", gw.log_text());
    assert_eq!(limited, REQUESTS - LIMIT);
    assert_eq!(upstream.requests(), LIMIT);
    // Each allowed request saw its own count: no two increments read the same value.
    remaining.sort_unstable();
    assert_eq!(remaining, (0..LIMIT).collect::<Vec<_>>());
    let log = gw.log_text();
    assert!(!log.contains("request not counted"), "{log}");
    Ok(())
}

/// Status and `x-ratelimit-remaining` of five requests in a row as `client`.
async fn five_requests(gw: &Gateway, client: Option<&str>) -> anyhow::Result<Vec<(u16, String)>> {
    let headers: Vec<(&str, &str)> = client.map(|c| vec![("x-client", c)]).unwrap_or_default();
    let mut replies = Vec::new();
    for _ in 0..5 {
        let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &headers)).await?;
        replies.push((
            reply.status.as_u16(),
            reply.header("x-ratelimit-remaining").to_owned(),
        ));
    }
    Ok(replies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_keeps_one_bucket_per_key() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let yaml = gateway_yaml(
        2,
        &[],
        &[(
            "per_client",
            "rate_limit",
            format!(r#"{{"key_header": "x-client", "limit": 3, "window_seconds": {YEAR}}}"#),
        )],
        &[("/", "per_client")],
    );
    let gw = Gateway::start("rate-limit-keys", &yaml, Some(upstream.addr)).await?;
    let expected = [(200, "2"), (200, "1"), (200, "0"), (429, "0"), (429, "0")]
        .map(|(s, r)| (s, r.to_owned()));
    assert_eq!(five_requests(&gw, Some("alpha")).await?, expected);
    // Another key starts with its own full allowance, as do requests without the header.
    assert_eq!(five_requests(&gw, Some("beta")).await?, expected);
    assert_eq!(five_requests(&gw, None).await?, expected);
    assert_eq!(upstream.requests(), 9);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_starts_afresh_in_the_next_window() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let yaml = gateway_yaml(
        1,
        &[],
        &[(
            "per_second",
            "rate_limit",
            r#"{"limit": 1, "window_seconds": 1}"#.to_owned(),
        )],
        &[("/", "per_second")],
    );
    let gw = Gateway::start("rate-limit-window", &yaml, Some(upstream.addr)).await?;
    // Use up a window (the first request may land in the last instant of one, so the
    // second can still be allowed by the next), then wait for the allowance to return.
    let request = || get(&gw.url("/"), &[]);
    poll_until(&gw, request, |r| r.status == 429).await?;
    let allowed = poll_until(&gw, request, |r| r.status == 200).await?;
    assert_eq!(allowed.header("x-ratelimit-remaining"), "0");
    Ok(())
}

// ---- refresher -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresher_stamps_requests_with_the_latest_fetched_config() -> anyhow::Result<()> {
    // The config service answers the current version, or 500 while there is none.
    let version: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (config_addr, _config) = {
        let (version, fetches) = (Arc::clone(&version), Arc::clone(&fetches));
        serve(move |req: Request<Incoming>| {
            let current = version.lock().unwrap_or_else(|e| e.into_inner()).clone();
            fetches.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            async move {
                let response = match current {
                    Some(v) if path == "/config" => Response::builder().status(200).body(full(v)),
                    _ => Response::builder().status(500).body(full("no config")),
                };
                Ok::<_, Infallible>(response.expect("response"))
            }
        })
        .await?
    };
    let upstream = Upstream::start().await;
    let yaml = gateway_yaml(
        2,
        &[("config", config_addr.to_string())],
        &[(
            "refresher",
            "refresher",
            r#"{"cluster": "config", "path": "/config", "period_ms": 50, "header": "x-config-version"}"#
                .to_owned(),
        )],
        &[("/", "refresher")],
    );
    let gw = Gateway::start("refresher", &yaml, Some(upstream.addr)).await?;
    let forged = || get(&gw.url("/"), &[("x-config-version", "forged")]);
    let fetches_now = || fetches.load(Ordering::SeqCst);
    let set_version = |v: Option<&str>| {
        *version.lock().unwrap_or_else(|e| e.into_inner()) = v.map(str::to_owned);
    };

    // Until a fetch succeeds the header is absent, even when the client sent one.
    let after = fetches_now() + 4;
    poll_until(&gw, forged, |_| fetches_now() >= after).await?;
    let reply = send(gw.addr, Proto::H1, forged()).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.upstream_headers("x-config-version"),
        Vec::<String>::new()
    );

    set_version(Some("v1"));
    let reply = poll_until(&gw, forged, |r| {
        r.upstream_header("x-config-version").is_some()
    })
    .await?;
    assert_eq!(reply.upstream_headers("x-config-version"), ["v1"]);

    set_version(Some("v2"));
    poll_until(&gw, forged, |r| {
        r.upstream_header("x-config-version").as_deref() == Some("v2")
    })
    .await?;

    // A failing service leaves the last version in place.
    set_version(None);
    let after = fetches_now() + 4;
    poll_until(&gw, forged, |_| fetches_now() >= after).await?;
    let reply = send(gw.addr, Proto::H1, forged()).await?;
    assert_eq!(reply.upstream_headers("x-config-version"), ["v2"]);
    let log = gw.log_text();
    assert!(
        log.contains("refresher: x-config-version is now \"v2\""),
        "{log}"
    );
    assert!(
        log.contains("refresher: fetch from cluster config failed (status 500)"),
        "{log}"
    );

    // Each fetch was made by a tick: the host metrics count at least as many ticks as the
    // service saw fetches, and the answers by cluster.
    let fetched = fetches_now();
    let text = scrape(&gw).await?;
    let ticks: usize = sample(
        &text,
        r#"wasmbridge_plugin_callbacks_total{callback="proxy_on_tick",plugin="refresher"}"#,
    )
    .unwrap_or_default()
    .parse()?;
    assert!(
        ticks >= fetched,
        "{ticks} ticks, {fetched} fetches:\n{text}"
    );
    let answered: usize = callouts_total(&text, "refresher", "config", "http", "response")
        .unwrap_or_default()
        .parse()?;
    // At least the four failed fetches before v1 were answered (500 is an answer).
    assert!(
        answered >= 4,
        "{answered} answers of {fetched} fetches:\n{text}"
    );
    Ok(())
}
