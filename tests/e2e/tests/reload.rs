//! Hot reload through the real gateway: the admin API's `POST /reload`, SIGHUP and file
//! changes swap a module and its configuration under continuous load from real clients,
//! without a failed request; a broken reload leaves the old plugins serving.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wasmbridge_e2e::{
    Gateway, Proto, Reply, Upstream, filter, filters_dir, get, render, sample, scrape, scratch,
    send,
};

/// A gateway config whose one plugin, `stamp`, marks each response with `version`: the
/// Rust `add_header` filter (`x-version: <version>`) or the AssemblyScript `as_headers`
/// filter (`x-as-response: <version>`), from `module` (default: the built filter).
fn stamped(
    version: &str,
    assemblyscript: bool,
    module: Option<&Path>,
    extra_server: &str,
) -> String {
    let (root_id, default_module, configuration) = if assemblyscript {
        ("as_headers", filter("as_headers"), version.to_string())
    } else {
        (
            "add_header",
            filter("add_header"),
            format!(r#"{{"headers": {{"x-version": "{version}"}}}}"#),
        )
    };
    let module = module.map_or(default_module, |m| m.display().to_string());
    format!(
        r#"
server: {{threads: 2{extra_server}}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: stamp
    root_id: {root_id}
    module: {module}
    configuration: '{configuration}'
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [stamp]
"#
    )
}

/// The version a reply was stamped with, by either filter.
fn version_of(reply: &Reply) -> String {
    let rust = reply.header("x-version");
    if rust.is_empty() {
        reply.header("x-as-response").to_string()
    } else {
        rust.to_string()
    }
}

/// Replaces the gateway's config file in one step (a rename), as deployment tools do.
fn rewrite(gw: &Gateway, yaml: &str) -> Result<()> {
    let tmp = gw.file.with_extension("yaml.new");
    std::fs::write(&tmp, yaml)?;
    std::fs::rename(&tmp, &gw.file)?;
    Ok(())
}

/// Writes `template`, rendered for this gateway and `upstream`, as the gateway's file and
/// asks the admin API for a reload.
async fn reload_with(
    gw: &Gateway,
    upstream: std::net::SocketAddr,
    template: &str,
) -> Result<Reply> {
    rewrite(gw, &render(template, gw.addr, gw.admin, Some(upstream)))?;
    gw.admin("POST", "/reload", None).await
}

async fn plugins_json(gw: &Gateway) -> Result<serde_json::Value> {
    let reply = gw.admin("GET", "/plugins", None).await?;
    ensure!(reply.status == 200, "/plugins: {}", reply.status);
    Ok(reply.json())
}

/// Polls `/plugins` until `done` holds for it, or fails after `within`.
async fn until_plugins(
    gw: &Gateway,
    within: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let json = plugins_json(gw).await?;
        if done(&json) {
            return Ok(json);
        }
        if Instant::now() > deadline {
            bail!("{what}: still {json:#}\n{}", gw.log_text());
        }
        // Polling the admin API for a state change: a readiness check, not a timed wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the load clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: std::sync::Mutex<Vec<String>>,
    versions: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Tally {
    fn record(&self, reply: Result<Reply>) {
        match reply {
            Ok(r) if r.status == 200 && !version_of(&r).is_empty() => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.versions.lock().expect("lock").insert(version_of(&r));
            }
            Ok(r) => self.failed.lock().expect("lock").push(format!(
                "status {} version `{}`",
                r.status,
                version_of(&r)
            )),
            Err(e) => self.failed.lock().expect("lock").push(format!("{e:#}")),
        }
    }
}

/// Clients that send requests until `stop`: two open a connection per request and, with
/// `keep_alive`, two more keep one connection each across the reloads (a failure ends such
/// a client, after it was counted).
fn load(
    gw: &Gateway,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (addr, url, stop, tally) = (gw.addr, gw.url("/load"), stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tally.record(send(addr, Proto::H1, get(&url, &[])).await);
            }
        }));
    }
    for _ in 0..if keep_alive { 2 } else { 0 } {
        let (addr, url, stop, tally) = (gw.addr, gw.url("/kept"), stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let connect = async {
                let io = TokioIo::new(TcpStream::connect(addr).await?);
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(conn);
                anyhow::Ok(sender)
            };
            let mut sender = match connect.await {
                Ok(s) => s,
                Err(e) => return tally.record(Err(e)),
            };
            while !stop.load(Ordering::Relaxed) {
                let reply = async {
                    use http_body_util::BodyExt;
                    sender.ready().await?;
                    let resp = sender.send_request(get(&url, &[])).await?;
                    let (parts, body) = resp.into_parts();
                    let body = body.collect().await?.to_bytes();
                    anyhow::Ok(Reply {
                        status: parts.status,
                        headers: parts.headers,
                        body,
                        trailers: None,
                    })
                }
                .await;
                let failed = reply.is_err();
                tally.record(reply);
                if failed {
                    return;
                }
            }
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_reloads_under_continuous_load_lose_no_request() -> Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "reload-under-load",
        &stamped("v1", false, None, ", watch: false"),
        Some(upstream.addr),
    )
    .await?;
    let first = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(version_of(&first), "v1", "{}", gw.log_text());

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients = load(&gw, true, stop.clone(), tally.clone());
    for generation in 2..=11u64 {
        // Every reload swaps the module (Rust ↔ AssemblyScript) and its configuration.
        let version = format!("v{generation}");
        let yaml = render(
            &stamped(&version, generation % 2 == 0, None, ", watch: false"),
            gw.addr,
            gw.admin,
            Some(upstream.addr),
        );
        rewrite(&gw, &yaml)?;
        if generation % 3 == 0 {
            gw.signal("HUP")?;
            until_plugins(&gw, Duration::from_secs(30), "SIGHUP reload", |j| {
                j["generation"] == generation
            })
            .await?;
        } else {
            let reply = gw.admin("POST", "/reload", None).await?;
            assert_eq!(
                reply.status,
                200,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            assert_eq!(reply.json()["generation"], generation);
        }
        // The swap happened before the reload answered: a new request sees the new plugin.
        let after = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
        assert_eq!(version_of(&after), version, "{}", gw.log_text());
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    let failed = tally.failed.lock().expect("lock").clone();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    let ok = tally.ok.load(Ordering::Relaxed);
    assert!(ok >= 100, "only {ok} requests were served");
    let seen = tally.versions.lock().expect("lock").len();
    assert!(seen >= 6, "the clients saw {seen} versions only");

    let metrics = scrape(&gw).await?;
    assert_eq!(
        sample(
            &metrics,
            r#"wasmbridge_config_reloads_total{result="success"}"#
        )
        .as_deref(),
        Some("10")
    );
    assert_eq!(
        sample(
            &metrics,
            r#"wasmbridge_config_reloads_total{result="failure"}"#
        )
        .as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&metrics, "wasmbridge_config_generation").as_deref(),
        Some("11")
    );
    // With the clients gone, every old generation has ended and been dropped.
    until_plugins(
        &gw,
        Duration::from_secs(10),
        "old generations drained",
        |j| {
            j["draining_generations"]
                .as_array()
                .is_some_and(Vec::is_empty)
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reload_leaves_the_old_plugins_serving_and_says_why() -> Result<()> {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "reload-broken",
        &stamped("v1", false, None, ", watch: false"),
        Some(upstream.addr),
    )
    .await?;
    let dir = gw.file.parent().context("dir")?.to_path_buf();
    let broken = dir.join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x01\0\0\0this is not a module")?;

    let reply = reload_with(
        &gw,
        upstream.addr,
        &stamped("v2", false, Some(&broken), ", watch: false"),
    )
    .await?;
    assert_eq!(
        reply.status,
        500,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let answer = reply.json();
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["generation"], 1);
    let errors = answer["errors"].to_string();
    assert!(
        errors.contains("stamp") && errors.contains("broken.wasm"),
        "{errors}"
    );

    // The old plugin still serves.
    let still = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(
        (still.status.as_u16(), version_of(&still).as_str()),
        (200, "v1")
    );
    let plugins = plugins_json(&gw).await?;
    assert_eq!(plugins["generation"], 1);
    assert_eq!(plugins["last_reload"]["ok"], false);
    assert_eq!(plugins["last_reload"]["trigger"], "admin");
    assert!(
        plugins["last_reload"]["errors"]
            .to_string()
            .contains("broken.wasm"),
        "{plugins:#}"
    );
    let metrics = scrape(&gw).await?;
    assert_eq!(
        sample(
            &metrics,
            r#"wasmbridge_config_reloads_total{result="failure"}"#
        )
        .as_deref(),
        Some("1")
    );
    assert!(
        gw.log_text()
            .contains("reload failed, the running configuration stays")
    );

    // Every broken plugin is reported, not only the first.
    let other = dir.join("also-broken.wasm");
    std::fs::write(&other, b"not wasm at all")?;
    let two = stamped("v2", false, Some(&broken), ", watch: false").replace(
        "routes:",
        &format!(
            "  - name: second\n    root_id: add_header\n    module: {}\nroutes:",
            other.display()
        ),
    );
    let reply = reload_with(&gw, upstream.addr, &two).await?;
    assert_eq!(reply.status, 500);
    let errors = reply.json()["errors"].clone();
    let errors = errors.as_array().context("errors")?;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].to_string().contains("broken.wasm"), "{errors:?}");
    assert!(
        errors[1].to_string().contains("also-broken.wasm"),
        "{errors:?}"
    );

    // Settings a reload cannot change are refused by name.
    let moved =
        stamped("v2", false, None, ", watch: false, threads: 1").replacen("threads: 2, ", "", 1);
    let reply = reload_with(&gw, upstream.addr, &moved).await?;
    assert_eq!(reply.status, 500);
    assert!(
        reply.json()["errors"].to_string().contains("server"),
        "{:?}",
        reply.json()
    );

    // A config error names the key.
    let bad = stamped("v2", false, None, ", watch: false")
        .replace("cluster: backend", "cluster: nowhere");
    let reply = reload_with(&gw, upstream.addr, &bad).await?;
    assert_eq!(reply.status, 500);
    assert!(
        reply.json()["errors"].to_string().contains("routes[0]"),
        "{:?}",
        reply.json()
    );

    // Fixed, it reloads.
    let reply = reload_with(
        &gw,
        upstream.addr,
        &stamped("v2", false, None, ", watch: false"),
    )
    .await?;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["generation"], 2);
    let now = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    assert_eq!(version_of(&now), "v2");
    assert_eq!(plugins_json(&gw).await?["last_reload"]["ok"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_module_or_config_file_reloads_by_itself() -> Result<()> {
    let upstream = Upstream::start().await;
    let dir = scratch("reload-watch-modules");
    let module = dir.join("stamp.wasm");
    std::fs::copy(filters_dir().join("add_header.wasm"), &module)?;
    let gw = Gateway::start(
        "reload-watch",
        &stamped("v1", false, Some(&module), ""),
        Some(upstream.addr),
    )
    .await?;
    assert_eq!(
        version_of(&send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?),
        "v1"
    );

    // The config file changes: the new configuration is picked up.
    rewrite(
        &gw,
        &render(
            &stamped("v2", false, Some(&module), ""),
            gw.addr,
            gw.admin,
            Some(upstream.addr),
        ),
    )?;
    let plugins = until_plugins(
        &gw,
        Duration::from_secs(30),
        "reload after the config changed",
        |j| j["generation"] == 2,
    )
    .await?;
    assert!(
        plugins["last_reload"]["trigger"]
            .as_str()
            .is_some_and(|t| t.starts_with("file change")),
        "{plugins:#}"
    );
    assert_eq!(
        version_of(&send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?),
        "v2"
    );
    let before = plugins["plugins"][0]["module"]["sha256"].clone();

    // The module file is replaced by a fixed build (here: another filter with the same
    // root id and configuration shape): the new code is picked up.
    let tmp = dir.join("stamp.wasm.new");
    let mut patched = std::fs::read(filters_dir().join("add_header.wasm"))?;
    // A custom section at the end changes the bytes (and digest), not the behaviour.
    patched.extend_from_slice(&[0, 6, 5, b'b', b'u', b'i', b'l', b'd']);
    std::fs::write(&tmp, &patched)?;
    std::fs::rename(&tmp, &module)?;
    let plugins = until_plugins(
        &gw,
        Duration::from_secs(30),
        "reload after the module changed",
        |j| j["generation"] == 3,
    )
    .await?;
    assert_ne!(plugins["plugins"][0]["module"]["sha256"], before);
    assert_eq!(
        version_of(&send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?),
        "v2"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_reports_plugins_and_config_behind_its_token() -> Result<()> {
    let upstream = Upstream::start().await;
    let yaml = stamped("v1", false, None, ", watch: false")
        .replace(r#"admin: {address: "{admin}"}"#, r#"admin: {address: "{admin}", token: s3cret-t0ken}"#)
        .replace("    configuration: '{\"headers\"", "    environment_variables: {key_values: {DB_PASSWORD: hunter2}}\n    configuration: '{\"headers\"");
    let gw = Gateway::start("admin-api", &yaml, Some(upstream.addr)).await?;
    let token = Some("s3cret-t0ken");

    // Health and readiness need no token.
    assert_eq!(gw.admin("GET", "/healthz", None).await?.status, 200);
    let ready = gw.admin("GET", "/ready", None).await?;
    assert_eq!(
        ready.status,
        200,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    // Everything else does.
    for path in ["/plugins", "/config", "/metrics"] {
        assert_eq!(gw.admin("GET", path, None).await?.status, 401, "{path}");
        assert_eq!(
            gw.admin("GET", path, Some("wrong")).await?.status,
            401,
            "{path}"
        );
    }
    assert_eq!(gw.admin("POST", "/reload", None).await?.status, 401);
    assert_eq!(gw.admin("GET", "/reload", token).await?.status, 405);

    send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    let plugins = gw.admin("GET", "/plugins", token).await?;
    assert_eq!(plugins.status, 200);
    let json = plugins.json();
    let stamp = &json["plugins"][0];
    assert_eq!(stamp["name"], "stamp");
    assert_eq!(stamp["root_id"], "add_header");
    assert_eq!(stamp["abi"], "0.2.1");
    assert_eq!(stamp["replicas"], 2);
    assert_eq!(stamp["failures"], 0);
    assert!(stamp["served"].as_u64().is_some_and(|n| n >= 1), "{json:#}");
    let sha = stamp["module"]["sha256"].as_str().unwrap_or_default();
    let expected = std::process::Command::new("sha256sum")
        .arg(filters_dir().join("add_header.wasm"))
        .output()?;
    assert!(
        String::from_utf8_lossy(&expected.stdout).starts_with(sha) && sha.len() == 64,
        "{sha}"
    );

    let config = gw.admin("GET", "/config", token).await?;
    assert_eq!(config.status, 200);
    let text = String::from_utf8_lossy(&config.body);
    assert!(
        !text.contains("s3cret") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(
        text.contains("<redacted>") && text.contains("root_id: add_header"),
        "{text}"
    );
    Ok(())
}

/// A process killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_hands_the_listeners_over_without_a_failed_request() -> Result<()> {
    let upstream = Upstream::start().await;
    let extra = ", watch: false, upgrade_sock: upgrade.sock, grace_period_seconds: 1, shutdown_timeout_seconds: 5";
    let mut old = Gateway::start(
        "graceful-upgrade",
        &stamped("v1", false, None, extra),
        Some(upstream.addr),
    )
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    // Clients that open a connection per request: an idle keep-alive connection the old
    // process closes is the client's to retry, as with any HTTP/1.1 server that exits.
    let clients = load(&old, false, stop.clone(), tally.clone());

    let dir = old.file.parent().context("dir")?.to_path_buf();
    let log = dir.join("new-gateway.log");
    let new = Killed(
        std::process::Command::new(wasmbridge_e2e::binary())
            .args(["run", "--upgrade", "-c"])
            .arg(&old.file)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    // The old process sends its listening sockets once the new one takes them (Pingora
    // retries either side for a few seconds), then drains and exits.
    old.signal("QUIT")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while old.exited().is_none() {
        ensure!(
            Instant::now() < deadline,
            "the old gateway did not exit:\n{}",
            old.log_text()
        );
        // Polling a process for its exit: a readiness check, not a timed wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served_before = tally.ok.load(Ordering::Relaxed);
    // Only the new process is left on the listener and the admin address now.
    for _ in 0..20 {
        let reply = send(old.addr, Proto::H1, get(&old.url("/after"), &[])).await?;
        assert_eq!(
            (reply.status.as_u16(), version_of(&reply).as_str()),
            (200, "v1")
        );
    }
    assert_eq!(old.admin("GET", "/ready", None).await?.status, 200);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    drop(new);
    let failed = tally.failed.lock().expect("lock").clone();
    assert!(
        failed.is_empty(),
        "{} failed: {failed:?}\nnew: {}",
        failed.len(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        served_before >= 10,
        "only {served_before} requests during the upgrade"
    );
    assert!(
        old.log_text().contains("SIGQUIT received"),
        "{}",
        old.log_text()
    );
    Ok(())
}
