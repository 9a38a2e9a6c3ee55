//! Hot reload: the gateway serves from one [`Generation`] at a time — the routes, clusters
//! and plugins built from one reading of the config file — and swaps in a new one without
//! dropping anything in flight.
//!
//! - A reload (SIGHUP, a change of the config file or of a local module file, or
//!   `POST /reload` on the admin listener) parses the file, compiles every module and
//!   starts every plugin on a thread of its own, while the old generation keeps serving.
//!   Only when all of that succeeded is the new generation swapped in, atomically.
//! - Each request is pinned to the generation that was current when it arrived
//!   ([`GatewayProxy`]): it finishes on the old plugins, and new requests use the new ones.
//!   An old generation is dropped (its VMs with it) when its last request ended.
//! - A failed reload changes nothing: the old generation keeps serving, and every error
//!   goes to the log, to the admin API (`/plugins`, and the answer to `POST /reload`) and
//!   to the `wasmbridge_config_reloads_total{result="failure"}` metric.
//! - What a reload cannot change (listeners, the admin listener, `server`) makes it fail
//!   with a message naming the key; those take a restart, or a graceful upgrade.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::sync::watch;
use wasmbridge_config::Config;
use wasmbridge_host::Plugin;

use crate::GatewayError;
use crate::gateway::{Generation, GenerationProxy, Shared};

/// What a reload did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The new generation's number.
    pub generation: u64,
    /// Its plugins' names.
    pub plugins: Vec<String>,
}

/// The last reload attempt, for the admin API.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// When it ended.
    pub at: Option<SystemTime>,
    /// What asked for it (`SIGHUP`, `admin`, `file change: <path>`).
    pub trigger: String,
    /// Every error it met; empty when it succeeded.
    pub errors: Vec<String>,
    /// Reloads that succeeded and failed since start.
    pub succeeded: u64,
    /// See `succeeded`.
    pub failed: u64,
}

/// Builds generations from the config file and swaps them in.
pub struct Reloader {
    shared: Arc<Shared>,
    current: Arc<ArcSwap<Generation>>,
    /// The plugins of the current generation, for the root drivers on the worker threads.
    drivers: watch::Sender<Arc<[Arc<Plugin>]>>,
    /// Generations swapped out whose last request has not ended yet.
    draining: Mutex<Vec<Weak<Generation>>>,
    status: Mutex<ReloadStatus>,
    /// One reload at a time.
    busy: Mutex<()>,
    /// Set while the listeners serve (the admin listener's `/ready`).
    pub(crate) ready: Arc<AtomicBool>,
    reloads: IntCounterVec,
    generation_gauge: IntGauge,
}

impl Reloader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        first: Generation,
    ) -> Result<Reloader, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "wasmbridge_config_reloads_total",
                "Configuration reloads, by result (success, failure).",
            ),
            &["result"],
        )?;
        let generation_gauge = IntGauge::new(
            "wasmbridge_config_generation",
            "The number of the configuration generation serving new requests (1 at start).",
        )?;
        shared.registry.register(Box::new(reloads.clone()))?;
        shared
            .registry
            .register(Box::new(generation_gauge.clone()))?;
        // Both series exist from the start, so a failure shows as an increase.
        reloads.with_label_values(&["success"]);
        reloads.with_label_values(&["failure"]);
        generation_gauge.set(i64::try_from(first.id).unwrap_or(i64::MAX));
        let (drivers, _) = watch::channel(Arc::from(first.plugins.clone()));
        Ok(Reloader {
            current: Arc::new(ArcSwap::from_pointee(first)),
            shared,
            drivers,
            draining: Mutex::new(Vec::new()),
            status: Mutex::new(ReloadStatus::default()),
            busy: Mutex::new(()),
            ready: Arc::new(AtomicBool::new(false)),
            reloads,
            generation_gauge,
        })
    }

    /// The metrics registry every generation reports to.
    pub(crate) fn registry(&self) -> &prometheus::Registry {
        &self.shared.registry
    }

    /// The certificate of TLS listener `listener`, if it is one.
    pub(crate) fn certificate(
        &self,
        listener: usize,
    ) -> Option<Arc<crate::tls::ReloadableCertificate>> {
        self.shared
            .certificates
            .iter()
            .find(|(i, _)| *i == listener)
            .map(|(_, c)| c.clone())
    }

    /// The generation serving new requests.
    pub(crate) fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// The request-facing proxy: each request pinned to the generation current when it
    /// arrived.
    pub(crate) fn proxy(&self) -> GatewayProxy {
        GatewayProxy {
            current: self.current.clone(),
        }
    }

    /// Where the root drivers learn of each new generation's plugins.
    pub(crate) fn driver_sets(&self) -> watch::Receiver<Arc<[Arc<Plugin>]>> {
        self.drivers.subscribe()
    }

    /// The numbers of the generations swapped out that still serve requests.
    pub fn draining(&self) -> Vec<u64> {
        let mut draining = lock(&self.draining);
        draining.retain(|g| g.strong_count() > 0);
        draining
            .iter()
            .filter_map(Weak::upgrade)
            .map(|g| g.id)
            .collect()
    }

    /// The last reload attempt.
    pub fn status(&self) -> ReloadStatus {
        lock(&self.status).clone()
    }

    /// Reads the config file again and, when everything in it builds, serves from it.
    /// Blocks while modules compile: call it from a thread that may block.
    pub fn reload(&self, trigger: &str) -> Result<Reloaded, Vec<String>> {
        let _one = lock(&self.busy);
        let old = self.current();
        let result = self.build_next(&old);
        let mut status = lock(&self.status);
        status.at = Some(SystemTime::now());
        status.trigger = trigger.to_string();
        match result {
            Ok(next) => {
                let reloaded = Reloaded {
                    generation: next.id,
                    plugins: next.plugins.iter().map(|p| p.name().to_string()).collect(),
                };
                let plugins: Arc<[Arc<Plugin>]> = Arc::from(next.plugins.clone());
                self.shared.pool_metrics.track(&plugins);
                let next = Arc::new(next);
                self.current.store(next);
                self.drivers.send_replace(plugins);
                lock(&self.draining).push(Arc::downgrade(&old));
                self.generation_gauge
                    .set(i64::try_from(reloaded.generation).unwrap_or(i64::MAX));
                self.reloads.with_label_values(&["success"]).inc();
                status.errors.clear();
                status.succeeded += 1;
                tracing::info!(
                    trigger,
                    generation = reloaded.generation,
                    previous = old.id,
                    plugins = ?reloaded.plugins,
                    "configuration reloaded; requests in flight finish on generation {}",
                    old.id
                );
                Ok(reloaded)
            }
            Err(errors) => {
                for error in &errors {
                    tracing::error!(
                        trigger,
                        generation = old.id,
                        "reload failed, the running configuration stays: {error}"
                    );
                }
                self.reloads.with_label_values(&["failure"]).inc();
                status.errors = errors.clone();
                status.failed += 1;
                Err(errors)
            }
        }
    }

    fn build_next(&self, old: &Generation) -> Result<Generation, Vec<String>> {
        let source = &old.config.source;
        if !source.is_file() {
            return Err(vec![format!(
                "{}: the configuration was not read from a file, so there is nothing to reload",
                source.display()
            )]);
        }
        let (config, text) =
            Config::from_file_with_text(source).map_err(|e| vec![e.to_string()])?;
        let fixed = fixed_differences(&old.config, &config);
        if !fixed.is_empty() {
            return Err(fixed);
        }
        // Reloads take turns, so the next number is free; a failed one uses none.
        let next = Generation::build(&self.shared, config, Some(text), old.id + 1).map_err(
            |e| match e {
                GatewayError::Build(build) => build.all().iter().map(|e| e.to_string()).collect(),
                other => vec![other.to_string()],
            },
        )?;
        // The listeners' certificates are read again (a renewed one takes effect now); all
        // of them, or none.
        let mut renewed = Vec::new();
        let mut errors = Vec::new();
        for (i, certificate) in &self.shared.certificates {
            match certificate.read() {
                Ok(key) => renewed.push((certificate, key)),
                Err(e) => errors.push(format!("{}: listeners[{i}].tls: {e}", source.display())),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for (certificate, key) in renewed {
            certificate.set(key);
        }
        Ok(next)
    }
}

/// What a reload cannot change, each as a message naming the key.
fn fixed_differences(old: &Config, new: &Config) -> Vec<String> {
    let file = new.source.display();
    let mut errors = Vec::new();
    if old.listeners != new.listeners {
        errors.push(format!(
            "{file}: listeners: the listeners cannot change on a reload (restart, or use a graceful upgrade: `wasmbridge run --upgrade`)"
        ));
    }
    if old.admin != new.admin {
        errors.push(format!(
            "{file}: admin: the admin listener cannot change on a reload (restart, or use a graceful upgrade)"
        ));
    }
    if old.server != new.server {
        errors.push(format!(
            "{file}: server: the server settings cannot change on a reload (restart, or use a graceful upgrade)"
        ));
    }
    errors
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reloads on SIGHUP, on a thread of its own, for as long as the process runs.
pub(crate) fn reload_on_sighup(reloader: Arc<Reloader>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("wasmbridge-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                let _ = reloader.reload("SIGHUP");
            }
        })?;
    Ok(())
}

/// How long the watched files must be quiet before a change reloads: a file written in
/// several steps (or replaced by rename) reloads once, when it is complete.
const SETTLE: Duration = Duration::from_millis(250);

/// Reloads when the config file or a local module file of the current generation changes.
/// The watch covers the files' directories (editors and `cp` replace files), and follows
/// the files each new generation names.
pub(crate) fn reload_on_change(reloader: Arc<Reloader>) -> notify::Result<()> {
    use notify::{RecursiveMode, Watcher};
    let (tx, rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(tx)?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut files = watched_files(&reloader.current());
    for dir in directories(&files) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        dirs.push(dir);
    }
    std::thread::Builder::new()
        .name("wasmbridge-watch".into())
        .spawn(move || {
            let touches =
                |event: &notify::Result<notify::Event>, files: &[PathBuf]| -> Option<PathBuf> {
                    let event = event.as_ref().ok()?;
                    if event.kind.is_access() {
                        return None;
                    }
                    event.paths.iter().find(|p| files.contains(p)).cloned()
                };
            while let Ok(event) = rx.recv() {
                let Some(path) = touches(&event, &files) else {
                    continue;
                };
                // Wait until the files are quiet.
                while let Ok(_more) = rx.recv_timeout(SETTLE) {}
                let _ = reloader.reload(&format!("file change: {}", path.display()));
                files = watched_files(&reloader.current());
                for dir in directories(&files) {
                    if !dirs.contains(&dir) {
                        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                            Ok(()) => dirs.push(dir),
                            Err(e) => tracing::warn!(dir = %dir.display(), "cannot watch: {e}"),
                        }
                    }
                }
            }
        })?;
    Ok(())
}

/// The config file and the local module files of a generation, absolute.
fn watched_files(generation: &Generation) -> Vec<PathBuf> {
    let config = &generation.config;
    let mut files = vec![config.source.clone()];
    // Remote modules (`https://`, `oci://`) are fetched at each reload, not watched.
    files.extend(
        config
            .plugins
            .iter()
            .filter(|p| !p.source.is_remote())
            .map(|p| p.module.clone()),
    );
    for tls in config.listeners.iter().filter_map(|l| l.tls.as_ref()) {
        files.push(tls.cert.clone());
        files.push(tls.key.clone());
    }
    let mut files: Vec<PathBuf> = files
        .into_iter()
        .filter_map(|f| std::path::absolute(&f).ok())
        .collect();
    files.sort();
    files.dedup();
    files
}

fn directories(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .filter(|d| d.is_dir())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The gateway's `ProxyHttp`: pins each request to the generation current when it arrived
/// and hands every phase to that generation's proxy.
pub struct GatewayProxy {
    current: Arc<ArcSwap<Generation>>,
}

/// A request's generation and its context there.
pub struct Pinned {
    generation: Arc<Generation>,
    ctx: <GenerationProxy as ProxyHttp>::CTX,
}

// Every phase the generation's proxy implements is passed on (a unit test keeps the two
// lists equal); the others keep Pingora's defaults, as the generation's proxy does.
#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = Pinned;

    fn new_ctx(&self) -> Pinned {
        let generation = self.current.load_full();
        let ctx = generation.proxy.new_ctx();
        Pinned { generation, ctx }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Pinned) -> Result<bool> {
        ctx.generation
            .proxy
            .request_filter(session, &mut ctx.ctx)
            .await
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Pinned,
    ) -> Result<Box<HttpPeer>> {
        ctx.generation
            .proxy
            .upstream_peer(session, &mut ctx.ctx)
            .await
    }

    async fn connected_to_upstream(
        &self,
        session: &mut Session,
        reused: bool,
        peer: &HttpPeer,
        #[cfg(unix)] fd: std::os::unix::io::RawFd,
        #[cfg(windows)] sock: std::os::windows::io::RawSocket,
        digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Pinned,
    ) -> Result<()> {
        ctx.generation
            .proxy
            .connected_to_upstream(
                session,
                reused,
                peer,
                #[cfg(unix)]
                fd,
                #[cfg(windows)]
                sock,
                digest,
                &mut ctx.ctx,
            )
            .await
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Pinned,
        e: Box<pingora::Error>,
    ) -> Box<pingora::Error> {
        ctx.generation
            .proxy
            .fail_to_connect(session, peer, &mut ctx.ctx, e)
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Pinned) -> Result<()> {
        ctx.generation
            .proxy
            .early_request_filter(session, &mut ctx.ctx)
            .await
    }

    fn upstream_response_trailer_filter(
        &self,
        session: &mut Session,
        upstream_trailers: &mut http::HeaderMap,
        ctx: &mut Pinned,
    ) -> Result<()> {
        ctx.generation.proxy.upstream_response_trailer_filter(
            session,
            upstream_trailers,
            &mut ctx.ctx,
        )
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<pingora::Error>,
        ctx: &mut Pinned,
        client_reused: bool,
    ) -> Box<pingora::Error> {
        ctx.generation
            .proxy
            .error_while_proxy(peer, session, e, &mut ctx.ctx, client_reused)
    }

    fn suppress_error_log(&self, session: &Session, ctx: &Pinned, error: &pingora::Error) -> bool {
        ctx.generation
            .proxy
            .suppress_error_log(session, &ctx.ctx, error)
    }

    fn request_summary(&self, session: &Session, ctx: &Pinned) -> String {
        ctx.generation.proxy.request_summary(session, &ctx.ctx)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Pinned,
    ) -> Result<()> {
        ctx.generation
            .proxy
            .upstream_response_filter(session, upstream_response, &mut ctx.ctx)
            .await
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Pinned,
    ) -> Result<Option<Duration>> {
        ctx.generation.proxy.upstream_response_body_filter(
            session,
            body,
            end_of_stream,
            &mut ctx.ctx,
        )
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Pinned,
    ) -> Result<()> {
        ctx.generation
            .proxy
            .upstream_request_filter(session, upstream_request, &mut ctx.ctx)
            .await
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Pinned,
    ) -> Result<()> {
        ctx.generation
            .proxy
            .request_body_filter(session, body, end_of_stream, &mut ctx.ctx)
            .await
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Pinned,
    ) -> Result<()> {
        ctx.generation
            .proxy
            .response_filter(session, upstream_response, &mut ctx.ctx)
            .await
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Pinned,
    ) -> Result<Option<Duration>> {
        ctx.generation
            .proxy
            .response_body_filter(session, body, end_of_stream, &mut ctx.ctx)
    }

    async fn response_trailer_filter(
        &self,
        session: &mut Session,
        upstream_trailers: &mut http::HeaderMap,
        ctx: &mut Pinned,
    ) -> Result<Option<Bytes>> {
        ctx.generation
            .proxy
            .response_trailer_filter(session, upstream_trailers, &mut ctx.ctx)
            .await
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut Pinned,
    ) -> FailToProxy {
        ctx.generation
            .proxy
            .fail_to_proxy(session, e, &mut ctx.ctx)
            .await
    }

    async fn logging(&self, session: &mut Session, e: Option<&pingora::Error>, ctx: &mut Pinned) {
        ctx.generation.proxy.logging(session, e, &mut ctx.ctx).await
    }
}

#[cfg(test)]
mod tests {
    /// The names of the `ProxyHttp` methods an `impl ... ProxyHttp for <ty>` block in
    /// `source` defines.
    fn phases(source: &str, ty: &str) -> Vec<String> {
        let start = source
            .find(&format!("ProxyHttp for {ty}"))
            .expect("the impl block");
        let block = &source[start..];
        let end = block.find("\n}\n").unwrap_or(block.len());
        let mut names: Vec<String> = block[..end]
            .split("fn ")
            .skip(1)
            .filter_map(|rest| rest.split(['(', '<']).next())
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_gateway_proxy_passes_on_every_phase_the_filters_implement() {
        let filters = phases(include_str!("proxy.rs"), "WasmFilters<P>");
        let pinned = phases(include_str!("reload.rs"), "GatewayProxy");
        assert!(filters.len() >= 10, "{filters:?}");
        assert_eq!(filters, pinned);
    }
}
