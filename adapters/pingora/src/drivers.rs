//! Where the plugins' root drivers run: on the worker threads of the first listener, one
//! thread per replica, so that `proxy_on_tick`, callout answers and queue notifications
//! run on the thread whose streams use that replica (Envoy runs them on the VM's worker).
//!
//! Pingora has no per-worker start-up hook, so the first listener's service is wrapped:
//! before it starts listening it sends a probe to its worker threads (Pingora hands out a
//! random thread's runtime each time) until every thread has taken the drivers of its
//! replica. Replicas no thread took (more replicas than threads) run where the service
//! starts.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ListenFds, RuntimeOpts, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};
use tokio::sync::watch;
use wasmbridge_host::Plugin;

/// A listening service that starts the plugins' root drivers on its worker threads: those
/// of the plugins it is made with, then those of every plugin set sent later (a reloaded
/// configuration's), each once per thread.
pub struct WithRootDrivers<S> {
    inner: S,
    plugins: watch::Receiver<Arc<[Arc<Plugin>]>>,
    threads: usize,
    started: Option<Arc<AtomicBool>>,
}

impl<S> WithRootDrivers<S> {
    /// Wraps `inner`, whose runtime has `threads` worker threads.
    pub fn new(inner: S, plugins: Vec<Arc<Plugin>>, threads: usize) -> Self {
        // The sender goes at once: this set is the only one.
        let (_, plugins) = watch::channel(Arc::from(plugins));
        Self::following(inner, plugins, threads)
    }

    /// Wraps `inner`, starting the drivers of the set `plugins` holds and of every set
    /// sent on it afterwards.
    pub fn following(
        inner: S,
        plugins: watch::Receiver<Arc<[Arc<Plugin>]>>,
        threads: usize,
    ) -> Self {
        WithRootDrivers {
            inner,
            plugins,
            threads: threads.max(1),
            started: None,
        }
    }

    /// Sets `flag` once the first set's drivers run, and clears it when the server shuts
    /// down (the admin listener's `/ready`).
    pub fn with_started_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.started = Some(flag);
        self
    }
}

thread_local! {
    /// The claim round this thread took its replicas in last (0: none).
    static CLAIMED: Cell<u64> = const { Cell::new(0) };
}

/// Takes this thread's replica of every plugin and spawns its driver here; true when this
/// thread had not done so in this `round` before.
fn claim_this_thread(round: u64, plugins: &[Arc<Plugin>]) -> bool {
    if CLAIMED.with(|c| c.replace(round)) == round {
        return false;
    }
    for plugin in plugins {
        let replica = plugin.current_replica();
        if let Some(driver) = plugin.root_driver(replica) {
            tokio::spawn(driver);
        }
    }
    true
}

/// Starts every plugin's root drivers on the service's worker threads.
pub async fn start_root_drivers(plugins: &[Arc<Plugin>], threads: usize) {
    static ROUNDS: AtomicU64 = AtomicU64::new(1);
    if plugins.is_empty() {
        return;
    }
    let round = ROUNDS.fetch_add(1, Ordering::Relaxed);
    let claimed = Arc::new(AtomicUsize::new(0));
    // Each probe lands on a random worker; a few dozen reach every thread with
    // overwhelming likelihood, and a bound keeps start-up finite regardless.
    for _ in 0..threads * 64 {
        if claimed.load(Ordering::Acquire) >= threads {
            break;
        }
        let plugins = plugins.to_vec();
        let counter = claimed.clone();
        let probe = pingora_runtime::current_handle().spawn(async move {
            if claim_this_thread(round, &plugins) {
                counter.fetch_add(1, Ordering::AcqRel);
            }
        });
        if tokio::time::timeout(Duration::from_secs(5), probe)
            .await
            .is_err()
        {
            tracing::warn!("a worker thread did not answer the root-driver probe");
        }
    }
    let mut elsewhere = 0;
    for plugin in plugins {
        for replica in 0..plugin.replica_count() {
            if let Some(driver) = plugin.root_driver(replica) {
                tokio::spawn(driver);
                elsewhere += 1;
            }
        }
    }
    tracing::debug!(
        threads = claimed.load(Ordering::Acquire),
        elsewhere,
        "root drivers started"
    );
}

#[async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for WithRootDrivers<S> {
    async fn start_service(
        &mut self,
        #[cfg(unix)] fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        let first = self.plugins.borrow_and_update().clone();
        start_root_drivers(&first, self.threads).await;
        drop(first);
        if let Some(flag) = &self.started {
            flag.store(true, Ordering::Release);
            let flag = flag.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _ = shutdown.changed().await;
                flag.store(false, Ordering::Release);
            });
        }
        // Later sets (reloads) start from a task on one of this service's threads, which
        // probes the others as above.
        let mut later = self.plugins.clone();
        let threads = self.threads;
        tokio::spawn(async move {
            while later.changed().await.is_ok() {
                let set = later.borrow_and_update().clone();
                start_root_drivers(&set, threads).await;
            }
        });
        self.inner
            .start_service(
                #[cfg(unix)]
                fds,
                shutdown,
                listeners_per_fd,
                ready_notifier,
            )
            .await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn runtime_opts_override(&self, global: &RuntimeOpts) -> Option<RuntimeOpts> {
        self.inner.runtime_opts_override(global)
    }

    fn on_startup_delay(&self, time_waited: Duration) {
        self.inner.on_startup_delay(time_waited)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}
