//! Plugins and their VM replicas.
//!
//! A plugin owns one replica per worker; each replica is a VM with its own root context,
//! started with `proxy_on_vm_start` and `proxy_on_configure`. Plugins with the same
//! module, `vm_id` and VM configuration share their replicas, as in Envoy: each VM then
//! holds one root context per plugin (its tenants), and a call runs in the tenancy of the
//! plugin it is made for. A stream is pinned to the
//! replica of the thread it started on and keeps it until `proxy_on_delete`; each callback
//! locks the replica only for that one synchronous call. A trap poisons only its replica:
//! the VM is dropped, streams that lived in it fail by the plugin's failure policy, and the
//! next stream gets a freshly started VM.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::Bytes;
use wasmtime::{ExternType, InstancePre, Val};

use crate::callout::Callouts;
use crate::context::{Action, HostState, Phase, PluginInfo};
use crate::error::{LoadError, LoadErrorKind};
use crate::hostcalls::unimplemented_called;
use crate::metrics::{HostMetrics, PluginMetrics};
use crate::pool::{
    Isolation, LiveGuard, Pin, PoolCounters, PoolOptions, PoolState, Replica, ReplicaState,
    Selection, Slot,
};
use crate::root::{RootEvent, RootLink};
use crate::runtime::{CompiledModule, ModuleInfo, Runtime};
use crate::vm::Vm;

/// What happens to a stream when its plugin fails (a trap, or a VM that cannot start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FailurePolicy {
    /// Reply 503 to the stream (Envoy's FAIL_CLOSED). The failed VM is replaced.
    #[default]
    FailClosed,
    /// Skip the plugin for the rest of the stream (Envoy's FAIL_OPEN).
    FailOpen,
    /// As `FailClosed` for the failed stream; the VM is rebuilt with an exponential
    /// back-off (Envoy's FAIL_RELOAD).
    FailReload,
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailurePolicy::FailClosed => "fail_closed",
            FailurePolicy::FailOpen => "fail_open",
            FailurePolicy::FailReload => "fail_reload",
        })
    }
}

/// Everything needed to load a plugin from a compiled module.
#[derive(Debug, Clone, Default)]
pub struct PluginSpec {
    /// `plugin_name`.
    pub name: String,
    /// `plugin_root_id`: SDKs pick the root context factory by it.
    pub root_id: String,
    /// `plugin_vm_id`.
    pub vm_id: String,
    /// Plugin configuration, readable in `proxy_on_configure`.
    pub configuration: Bytes,
    /// VM configuration, readable in `proxy_on_vm_start`.
    pub vm_configuration: Bytes,
    /// What a failure does to a stream.
    pub failure_policy: FailurePolicy,
    /// How many VM replicas to run (one per worker thread); at least 1.
    pub replicas: usize,
    /// Isolation, replica selection, recycling and the `fail_reload` back-off.
    pub pool: PoolOptions,
    /// Log-only mode: the plugin sees the traffic, but what it would change (maps, bodies,
    /// local replies, pauses, closes) is logged and counted, not applied; a failure skips it
    /// (its failure policy becomes `FailOpen`).
    pub log_only: bool,
    /// The proxy's identity, served as `xds.node` in every context.
    pub node: Arc<NodeInfo>,
    /// Where `proxy_http_call` and the gRPC calls go.
    pub callouts: Callouts,
    /// The proxy's foreign functions (`proxy_call_foreign_function`).
    pub foreign: crate::foreign::ForeignFunctions,
    /// Memory, CPU, fuel and stack limits of each VM, and caps on what the plugin makes
    /// the host hold. Fuel and a stack size other than the default need a runtime made
    /// for them ([`crate::EngineSettings::for_plugin`]).
    pub limits: crate::Limits,
    /// The hostcalls the plugin may call and the clusters its callouts may reach.
    pub capabilities: crate::Capabilities,
    /// The request headers and properties the plugin cannot see.
    pub redact: crate::Redaction,
    /// The plugin's WASI environment variables.
    pub environment_variables: crate::EnvironmentVariables,
}

/// The proxy's identity (Envoy's bootstrap `node`): filters read it as the `xds.node`
/// property, root contexts included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    /// `xds.node.id`.
    pub id: String,
    /// `xds.node.cluster`.
    pub cluster: String,
    /// `xds.node.metadata`, fields in order.
    pub metadata: Vec<(String, wasmbridge_abi::StructValue)>,
}

/// A loaded plugin: its facts, and the VMs its root context lives in — its own, or those
/// it shares with plugins of the same `vm_id` and module (see [`Plugin::load_all`]).
pub struct Plugin {
    pub(crate) info: Arc<PluginInfo>,
    /// The plugin's place among the tenants of its VMs.
    tenant: usize,
    vms: Arc<Vms>,
}

/// The VMs of one plugin, or of several plugins that share them (each with its own root
/// context in every VM, as Envoy shares a VM between plugins with the same `vm_id`, code
/// and VM configuration).
struct Vms {
    /// The facts of each plugin with a root context in these VMs, by tenant index.
    tenants: Box<[Arc<PluginInfo>]>,
    /// The plugins themselves, to start the root drivers of replicas made later.
    plugins: OnceLock<Box<[Weak<Plugin>]>>,
    module: CompiledModule,
    pre: InstancePre<HostState>,
    /// The shared replicas (empty under `per_stream` isolation); a slot's replica is
    /// replaced when it is recycled.
    pool: Box<[Mutex<Arc<Replica>>]>,
    options: PoolOptions,
    counters: Arc<PoolCounters>,
    /// Whether the module exports the request and response body callbacks.
    body_callbacks: [bool; 2],
    /// Whether the module has root callbacks a driver must run (ticks, callout answers,
    /// queue notifications); a `per_stream` VM without them gets no driver.
    root_services: bool,
    /// Where drivers of replicas made outside a tokio runtime run.
    spawner: OnceLock<tokio::runtime::Handle>,
    /// Keeps the runtime's epoch ticker (CPU deadlines) running while the plugin lives.
    _runtime: Runtime,
}

/// Why a replica could not run a stream's callback.
#[derive(Debug)]
pub(crate) enum Gone {
    /// The VM the stream's context lived in failed and was dropped.
    Dead,
    /// A fresh VM could not be started.
    Unavailable(String),
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.info.name)
            .field("module", &self.vms.module.path())
            .field("isolation", &self.vms.options.isolation)
            .field("replicas", &self.vms.pool.len())
            .field("tenants", &self.vms.tenants.len())
            .finish()
    }
}

fn worker_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

/// Callbacks only a root driver makes.
const ROOT_SERVICES: [&str; 7] = [
    "proxy_on_tick",
    "proxy_on_queue_ready",
    "proxy_on_http_call_response",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_close",
    "proxy_on_grpc_receive_trailing_metadata",
];

/// One plugin to load with [`Plugin::load_all`]: the runtime that compiled its module,
/// the module and the spec.
pub struct PluginLoad {
    /// The runtime that compiled `module`.
    pub runtime: Runtime,
    /// The compiled module.
    pub module: CompiledModule,
    /// What the plugin is.
    pub spec: PluginSpec,
}

impl PluginSpec {
    /// Why a plugin of this spec cannot share VMs with one of `other` (same module and
    /// runtime assumed), or `None` when it can: the `vm_id`, the VM configuration, the
    /// pool and everything linked into or enforced on the VM as a whole (limits,
    /// capabilities, redaction, environment) must be the same, and isolation `shared`.
    /// Name, root id, configuration, failure policy and log-only are each plugin's own.
    pub fn vm_difference(&self, other: &PluginSpec) -> Option<&'static str> {
        if self.vm_id != other.vm_id {
            Some("vm_id")
        } else if self.vm_configuration != other.vm_configuration {
            Some("vm_configuration")
        } else if self.pool.isolation != Isolation::Shared
            || other.pool.isolation != Isolation::Shared
        {
            Some("isolation")
        } else if self.replicas.max(1) != other.replicas.max(1) || self.pool != other.pool {
            Some("pool")
        } else if self.limits != other.limits {
            Some("limits")
        } else if self.capabilities != other.capabilities {
            Some("capabilities")
        } else if self.redact != other.redact {
            Some("redact")
        } else if self.environment_variables != other.environment_variables {
            Some("environment_variables")
        } else {
            None
        }
    }
}

impl Plugin {
    /// Links the module (unknown imports become stubs that return UNIMPLEMENTED and log
    /// once), then starts every replica: start-up code, root context, `proxy_on_vm_start`,
    /// `proxy_on_configure`. Any failure is a [`LoadError`] naming the plugin and module.
    /// Under `per_stream` isolation one VM is started and dropped, to find such failures
    /// now rather than at the first request.
    pub fn load(
        runtime: &Runtime,
        module: &CompiledModule,
        spec: PluginSpec,
        metrics: Option<HostMetrics>,
    ) -> Result<Arc<Plugin>, LoadError> {
        let mut loaded = Plugin::load_group(runtime, module, vec![spec], metrics)?;
        Ok(loaded.remove(0))
    }

    /// Loads plugins as Envoy does a configuration: plugins with the same module (by
    /// content), runtime engine, `vm_id` and VM configuration share their VMs — one root
    /// context each in every replica, created, started and configured in order — unless
    /// something enforced on a VM as a whole differs between them
    /// ([`PluginSpec::vm_difference`]; that is logged). A trap in a shared VM fails the
    /// streams of every plugin in it, each by its own policy. Returns the plugins in the
    /// order given.
    pub fn load_all(
        loads: Vec<PluginLoad>,
        metrics: Option<HostMetrics>,
    ) -> Result<Vec<Arc<Plugin>>, LoadError> {
        // Groups of indices into `loads`, in order of their first member.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, load) in loads.iter().enumerate() {
            let joined = groups.iter_mut().find(|g| {
                let first = &loads[g[0]];
                if first.module.digest() != load.module.digest()
                    || !first.runtime.same_engine(&load.runtime)
                    || first.spec.vm_id != load.spec.vm_id
                    || first.spec.vm_configuration != load.spec.vm_configuration
                {
                    return false;
                }
                match first.spec.vm_difference(&load.spec) {
                    None => true,
                    Some(field) => {
                        tracing::info!(plugin = %load.spec.name, other = %first.spec.name, vm_id = %load.spec.vm_id, "the plugins have the same module and vm_id but do not share VMs: their `{field}` differs");
                        false
                    }
                }
            });
            match joined {
                Some(group) => group.push(i),
                None => groups.push(vec![i]),
            }
        }
        let mut loaded: Vec<Option<Arc<Plugin>>> = vec![None; loads.len()];
        for group in groups {
            let first = &loads[group[0]];
            let specs = group.iter().map(|&i| loads[i].spec.clone()).collect();
            let plugins =
                Plugin::load_group(&first.runtime, &first.module, specs, metrics.clone())?;
            for (i, plugin) in group.into_iter().zip(plugins) {
                loaded[i] = Some(plugin);
            }
        }
        Ok(loaded.into_iter().flatten().collect())
    }

    /// Loads `specs` (at least one; all able to share, see [`PluginSpec::vm_difference`])
    /// as the tenants of one set of VMs.
    fn load_group(
        runtime: &Runtime,
        module: &CompiledModule,
        specs: Vec<PluginSpec>,
        metrics: Option<HostMetrics>,
    ) -> Result<Vec<Arc<Plugin>>, LoadError> {
        let spec = &specs[0];
        let err = |kind| LoadError::new(&spec.name, module.path(), kind);
        if let Some(other) = specs
            .iter()
            .skip(1)
            .find(|s| spec.vm_difference(s).is_some())
        {
            return Err(err(LoadErrorKind::Engine(format!(
                "cannot share VMs with plugin `{}`: their `{}` differs",
                other.name,
                spec.vm_difference(other).unwrap_or_default()
            ))));
        }
        // Isolation, fuel and the stack size are the engine's: the runtime must be the one
        // made for them (its pool's capacity aside).
        let needed = crate::EngineSettings::for_plugin(spec, crate::PerStreamPool::default());
        if let Some(difference) = runtime.settings().mismatch(&needed) {
            return Err(err(LoadErrorKind::Engine(format!(
                "{difference}: compile and load the module with \
                 runtime.for_settings(EngineSettings::for_plugin(..))"
            ))));
        }
        let mut tenants = Vec::with_capacity(specs.len());
        for spec in &specs {
            let policy = crate::policy::Policy::new(
                &spec.name,
                &spec.capabilities,
                &spec.redact,
                &spec.environment_variables,
            )
            .map_err(|e| LoadError::new(&spec.name, module.path(), LoadErrorKind::Policy(e)))?;
            tenants.push(Arc::new(PluginInfo {
                name: spec.name.clone(),
                root_id: spec.root_id.clone(),
                vm_id: spec.vm_id.clone(),
                configuration: spec.configuration.clone(),
                vm_configuration: spec.vm_configuration.clone(),
                abi: module.info().abi,
                // A log-only plugin must never change the traffic, failing included.
                failure_policy: if spec.log_only {
                    FailurePolicy::FailOpen
                } else {
                    spec.failure_policy
                },
                log_only: spec.log_only,
                static_properties: crate::hostcalls::static_properties(&spec.node),
                shared: runtime.shared(),
                queues: runtime.queues(),
                upstreams: spec.callouts.0.clone(),
                foreign: spec.foreign.clone(),
                metrics: runtime.guest_metrics(),
                host_metrics: metrics.as_ref().map(|m| m.for_plugin(&spec.name)),
                limits: spec.limits.clone(),
                cap_hits: Default::default(),
                failures: Default::default(),
                policy,
            }));
        }
        let mut linker = runtime.linker().clone();
        for import in module.module.imports() {
            let qualified = format!("{}.{}", import.module(), import.name());
            if !module.info().unknown_imports.contains(&qualified) {
                continue;
            }
            let ExternType::Func(ty) = import.ty() else {
                continue;
            };
            let (m, n) = (import.module().to_string(), import.name().to_string());
            let results: Vec<wasmtime::ValType> = ty.results().collect();
            linker
                .func_new(
                    import.module(),
                    import.name(),
                    ty,
                    move |mut caller, _args, out| {
                        unimplemented_called(&mut caller, &m, &n);
                        for (i, (slot, t)) in out.iter_mut().zip(&results).enumerate() {
                            *slot = match t {
                                wasmtime::ValType::I32 if i == 0 => {
                                    Val::I32(wasmbridge_abi::Status::Unimplemented.code() as i32)
                                }
                                wasmtime::ValType::I64 => Val::I64(0),
                                wasmtime::ValType::F32 => Val::F32(0),
                                wasmtime::ValType::F64 => Val::F64(0),
                                _ => Val::I32(0),
                            };
                        }
                        Ok(())
                    },
                )
                .map_err(|e| err(LoadErrorKind::Engine(format!("{e:#}"))))?;
        }
        // Capabilities are linked into the VM, so they are the same for every tenant.
        crate::policy::link_denied(&mut linker, &module.module, &tenants[0].policy)
            .map_err(|e| err(LoadErrorKind::Engine(format!("{e:#}"))))?;
        let pre = linker.instantiate_pre(&module.module).map_err(|e| {
            err(LoadErrorKind::Start {
                stage: "link",
                message: format!("{e:#}"),
            })
        })?;
        let mut vms = Vms {
            tenants: tenants.into(),
            plugins: OnceLock::new(),
            module: module.clone(),
            pre,
            pool: Box::new([]),
            options: spec.pool.clone(),
            counters: Arc::default(),
            body_callbacks: [
                module.info().exports_callback("proxy_on_request_body"),
                module.info().exports_callback("proxy_on_response_body"),
            ],
            root_services: ROOT_SERVICES
                .iter()
                .any(|c| module.info().exports_callback(c))
                || module
                    .info()
                    .exports_callback("proxy_on_grpc_trailing_metadata"),
            spawner: OnceLock::new(),
            _runtime: runtime.clone(),
        };
        let tenant_err =
            |(t, kind): (usize, LoadErrorKind)| LoadError::new(&specs[t].name, module.path(), kind);
        match vms.options.isolation {
            Isolation::Shared => {
                let mut pool = Vec::new();
                for index in 0..spec.replicas.max(1) {
                    let replica = vms.fresh_replica(Some(index)).map_err(tenant_err)?;
                    pool.push(Mutex::new(replica));
                }
                vms.pool = pool.into_boxed_slice();
            }
            Isolation::PerStream => {
                drop(vms.fresh_replica(None).map_err(tenant_err)?);
            }
        }
        let vms = Arc::new(vms);
        let plugins: Vec<Arc<Plugin>> = vms
            .tenants
            .iter()
            .enumerate()
            .map(|(tenant, info)| {
                Arc::new(Plugin {
                    info: info.clone(),
                    tenant,
                    vms: vms.clone(),
                })
            })
            .collect();
        let _ = vms
            .plugins
            .set(plugins.iter().map(Arc::downgrade).collect());
        Ok(plugins)
    }

    /// Starts one VM as a `per_stream` stream does (instantiate, start-up code, root
    /// context, `proxy_on_vm_start`, `proxy_on_configure`) and drops it: a health check,
    /// and what the instantiation benchmark measures.
    pub fn start_and_drop_vm(&self) -> Result<(), LoadError> {
        self.vms.fresh_replica(None).map(drop).map_err(|(t, kind)| {
            LoadError::new(&self.vms.tenants[t].name, self.vms.module.path(), kind)
        })
    }

    /// The plugin name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The module's compatibility report.
    pub fn module_info(&self) -> &ModuleInfo {
        self.vms.module.info()
    }

    /// The module file the plugin was loaded from.
    pub fn module_path(&self) -> &std::path::Path {
        self.vms.module.path()
    }

    /// The SHA-256 of the module's bytes, in lower-case hex.
    pub fn module_sha256(&self) -> String {
        self.vms
            .module
            .digest()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// How many streams the plugin failed since it was loaded (a trap, a limit, a VM that
    /// could not start), and the reason of the last one.
    pub fn failures(&self) -> (u64, Option<String>) {
        self.info.failures.snapshot()
    }

    /// The names of the plugins whose root contexts live in the same VMs as this one's
    /// (itself included), in load order.
    pub fn vm_tenants(&self) -> Vec<&str> {
        self.vms.tenants.iter().map(|t| t.name.as_str()).collect()
    }

    /// The failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.info.failure_policy
    }

    /// True in log-only mode (see [`PluginSpec::log_only`]).
    pub fn log_only(&self) -> bool {
        self.info.log_only
    }

    /// The plugin's host metric handles, when the embedding registered host metrics.
    pub(crate) fn metrics(&self) -> Option<&PluginMetrics> {
        self.info.host_metrics.as_ref()
    }

    /// How the plugin's streams share VMs.
    pub fn isolation(&self) -> Isolation {
        self.vms.options.isolation
    }

    /// Number of VM replicas in the pool (0 under `per_stream` isolation).
    pub fn replica_count(&self) -> usize {
        self.vms.pool.len()
    }

    /// True when the module can see and change request bodies.
    pub fn handles_request_body(&self) -> bool {
        self.vms.body_callbacks[0]
    }

    /// True when the module can see and change response bodies.
    pub fn handles_response_body(&self) -> bool {
        self.vms.body_callbacks[1]
    }

    /// The pool replica of the current worker thread (see [`Selection::Thread`]).
    pub fn current_replica(&self) -> usize {
        worker_slot() % self.vms.pool.len().max(1)
    }

    /// A snapshot of the pool, for metrics and the admin API (plugins that share VMs
    /// report the same pool).
    pub fn pool_state(&self) -> PoolState {
        let vms = &self.vms;
        let replicas: Vec<Arc<Replica>> = vms.pool.iter().map(|s| lock(s).clone()).collect();
        let each: Vec<ReplicaState> = replicas.iter().map(|r| ReplicaState::of(r)).collect();
        PoolState {
            replicas: match vms.options.isolation {
                Isolation::Shared => each.len(),
                Isolation::PerStream => vms.counters.per_stream_live.load(Ordering::Relaxed),
            },
            // A replica whose VM is locked is running a callback: nothing on the call path
            // counts it.
            busy: replicas
                .iter()
                .filter(|r| r.slot.try_lock().is_err())
                .count(),
            waited: vms.counters.waited.load(Ordering::Relaxed),
            each,
        }
    }

    /// Where the drivers of replicas made later (recycled, or `per_stream` VMs) run when
    /// they are made outside a tokio runtime; within one, they run on the current thread's.
    pub fn set_root_runtime(&self, handle: tokio::runtime::Handle) {
        let _ = self.vms.spawner.set(handle);
    }

    /// The replica a new stream is pinned to: a fresh VM under `per_stream` isolation, else
    /// one of the pool by the selection rule — recycled first when it is due, and passed
    /// over while it backs off from failures if another is ready.
    pub(crate) fn checkout(self: &Arc<Self>) -> Result<Pin, Gone> {
        let vms = &self.vms;
        if vms.options.isolation == Isolation::PerStream {
            let replica = vms.fresh_replica(None).map_err(|(_, kind)| {
                let message = kind.to_string();
                tracing::error!(plugin = %self.info.name, "cannot start a per-stream VM: {message}");
                Gone::Unavailable(message)
            })?;
            if vms.root_services {
                vms.spawn_drivers(&replica);
            }
            return Ok(Pin::new(replica));
        }
        let n = vms.pool.len();
        let first = match vms.options.selection {
            Selection::Thread => self.current_replica(),
            Selection::LeastLoaded => (0..n)
                .min_by_key(|&i| lock(&vms.pool[i]).streams.load(Ordering::Relaxed))
                .unwrap_or(0),
        };
        let mut index = first;
        let mut replica = lock(&vms.pool[first]).clone();
        // Only `fail_reload` leaves a failed slot empty for a while.
        if self.info.failure_policy == FailurePolicy::FailReload && replica.backing_off() {
            // Another replica that is ready serves the stream meanwhile.
            if let Some((i, r)) = (1..n)
                .map(|k| (first + k) % n)
                .map(|i| (i, lock(&vms.pool[i]).clone()))
                .find(|(_, r)| !r.backing_off())
            {
                index = i;
                replica = r;
            }
        }
        if let Some(reason) = vms.recycle_due(&replica) {
            replica = vms.recycle(index, replica, reason);
        }
        Ok(Pin::new(replica))
    }

    /// Runs `f` on the replica's VM, in this plugin's root context's tenancy. With
    /// `generation`, the stream's context must still live in that VM; without, a dropped
    /// VM is rebuilt first (under `fail_reload`, not before its back-off ended). When `f`
    /// says the guest failed, the VM is dropped and every other stream waiting on it —
    /// of every plugin sharing it — is told.
    pub(crate) fn with_vm<R>(
        &self,
        replica: &Replica,
        generation: Option<u64>,
        f: impl FnOnce(&mut Vm, u64) -> (R, Option<String>),
    ) -> Result<R, Gone> {
        let vms = &self.vms;
        let mut slot = replica.lock(&vms.counters.waited);
        if let Some(g) = generation
            && (g != slot.generation || slot.vm.is_none())
        {
            return Err(Gone::Dead);
        }
        if slot.vm.is_none() {
            if let Some(at) = slot.retry_at {
                let now = std::time::Instant::now();
                if now < at {
                    return Err(Gone::Unavailable(format!(
                        "the VM is rebuilt in {} ms (fail_reload back-off after {} failure(s) in a row)",
                        (at - now).as_millis(),
                        slot.failures
                    )));
                }
            }
            match vms.start_vm(&replica.links, slot.generation) {
                Ok(vm) => {
                    tracing::info!(plugin = %self.info.name, replica = %replica.label(), "started a fresh VM after a failure");
                    slot.vm = Some(vm);
                    slot.started = std::time::Instant::now();
                    slot.retry_at = None;
                }
                Err((t, kind)) => {
                    let message = kind.to_string();
                    tracing::error!(plugin = %vms.tenants[t].name, replica = %replica.label(), "cannot start a fresh VM: {message}");
                    self.back_off(&mut slot, None);
                    return Err(Gone::Unavailable(message));
                }
            }
        }
        let generation = slot.generation;
        let Some(vm) = slot.vm.as_mut() else {
            return Err(Gone::Dead);
        };
        vm.store.data_mut().enter(self.tenant);
        let (result, failure) = f(vm, generation);
        replica.memory.store(vm.memory_size(), Ordering::Relaxed);
        if let Some(message) = failure {
            let reason = vm
                .store
                .data()
                .failure
                .unwrap_or(crate::limits::FailureReason::Trap);
            let why = reason.describe(&self.info.limits);
            tracing::error!(plugin = %self.info.name, root_id = %self.info.root_id, replica = %replica.label(), reason = reason.label(), "VM failed and is replaced: {why}: {message}");
            if let Some(m) = self.metrics() {
                m.poisoned(reason.label());
            }
            if let Some(dead) = slot.vm.take() {
                for signal in dead.store.data().streams.values() {
                    signal.push(Action::VmFailed);
                }
            }
            slot.generation += 1;
            let lived = slot.started.elapsed();
            self.back_off(&mut slot, Some(lived));
            // No ticks after a failure; a new VM's roots set their own periods.
            for link in &replica.links {
                link.set_tick(None);
            }
        }
        Ok(result)
    }

    /// Under `fail_reload`, delays the next rebuild of a failed slot: the base back-off
    /// after a first failure, doubling for each further one in a row. A VM that failed
    /// after living longer than the longest back-off (`lived`) starts the count again; a
    /// VM that could not start (`None`) continues it.
    fn back_off(&self, slot: &mut Slot, lived: Option<std::time::Duration>) {
        if self.info.failure_policy != FailurePolicy::FailReload {
            return;
        }
        let backoff = self.vms.options.backoff;
        slot.failures = match lived {
            Some(lived) if lived > backoff.max => 1,
            _ => slot.failures + 1,
        };
        let wait = backoff.after(slot.failures);
        slot.retry_at = Some(std::time::Instant::now() + wait);
        tracing::warn!(plugin = %self.info.name, failures = slot.failures, "fail_reload: the next VM starts in {} ms", wait.as_millis());
    }
}

impl Vms {
    /// Starts a VM with a root context per tenant (generation 0 on new links, or the next
    /// one of a replica rebuilt after a failure), timing it; a failure names its tenant.
    fn start_vm(
        &self,
        links: &[Arc<RootLink>],
        generation: u64,
    ) -> Result<Vm, (usize, LoadErrorKind)> {
        let started = std::time::Instant::now();
        let tenants = self
            .tenants
            .iter()
            .cloned()
            .zip(links.iter().cloned())
            .collect();
        let vm = Vm::start(
            &self.pre,
            tenants,
            generation,
            self.module.info().entry,
            self.module.info().allocator,
        )?;
        let took = started.elapsed();
        for info in &self.tenants {
            if let Some(m) = &info.host_metrics {
                m.instantiated(self.options.isolation, took);
            }
        }
        Ok(vm)
    }

    /// A new replica with a started VM; its drivers are not running yet.
    fn fresh_replica(&self, index: Option<usize>) -> Result<Arc<Replica>, (usize, LoadErrorKind)> {
        let (links, events): (Vec<_>, Vec<_>) = self
            .tenants
            .iter()
            .map(|_| {
                let (link, events) = RootLink::new();
                (link, Some(events))
            })
            .unzip();
        let vm = self.start_vm(&links, 0)?;
        let memory = vm.memory_size();
        let mut replica = Replica::new(index, Some(vm), links.into_boxed_slice(), events);
        *replica.memory.get_mut() = memory;
        if index.is_none() {
            replica.live = Some(LiveGuard::new(self.counters.clone()));
        }
        Ok(Arc::new(replica))
    }

    fn recycle_due(&self, replica: &Replica) -> Option<&'static str> {
        if self
            .options
            .recycle_streams
            .is_some_and(|n| replica.served.load(Ordering::Relaxed) >= n)
        {
            Some("streams")
        } else if self
            .options
            .recycle_memory
            .is_some_and(|m| replica.memory.load(Ordering::Relaxed) >= m)
        {
            Some("memory")
        } else {
            None
        }
    }

    /// Replaces pool slot `index`'s replica `old` with a fresh one; `old` finishes the
    /// streams it has and is dropped after the last. Keeps `old` when no VM can start.
    fn recycle(&self, index: usize, old: Arc<Replica>, reason: &str) -> Arc<Replica> {
        let name = &self.tenants[0].name;
        let fresh = match self.fresh_replica(Some(index)) {
            Ok(r) => r,
            Err((t, e)) => {
                tracing::warn!(plugin = %self.tenants[t].name, replica = index, "cannot recycle the replica (it keeps serving): {e}");
                return old;
            }
        };
        let mut current = lock(&self.pool[index]);
        if !Arc::ptr_eq(&current, &old) {
            // Another thread recycled it first.
            return current.clone();
        }
        old.retired.store(true, Ordering::Relaxed);
        *current = fresh.clone();
        drop(current);
        self.spawn_drivers(&fresh);
        for info in &self.tenants {
            if let Some(m) = &info.host_metrics {
                m.recycled(reason);
            }
        }
        tracing::info!(
            plugin = %name,
            tenants = self.tenants.len(),
            replica = index,
            reason,
            served = old.served.load(Ordering::Relaxed),
            memory = old.memory.load(Ordering::Relaxed),
            streams_left = old.streams.load(Ordering::Relaxed),
            "recycled a replica; the old VM finishes its streams"
        );
        fresh
    }

    /// Starts the root driver of every tenant of a replica made after loading.
    fn spawn_drivers(&self, replica: &Arc<Replica>) {
        let Some(plugins) = self.plugins.get() else {
            return;
        };
        let handle = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.spawner.get().cloned());
        for (tenant, plugin) in plugins.iter().enumerate() {
            let Some(events) = replica
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(tenant)
                .and_then(Option::take)
            else {
                continue;
            };
            let driver =
                crate::root::drive(plugin.clone(), Arc::downgrade(replica), tenant, events);
            match &handle {
                Some(handle) => {
                    handle.spawn(driver);
                }
                None => {
                    tracing::warn!(plugin = %self.tenants[tenant].name, "no runtime to run a new replica's root services; its ticks and callouts will not run");
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Root services: the driver, ticks and the delivery of callout and queue events.
impl Plugin {
    /// The task that runs `replica`'s root services — `proxy_on_tick`, callout transports
    /// and their results, `proxy_on_queue_ready` — until the plugin is dropped. Spawn it
    /// once per replica on the thread whose streams use that replica (see
    /// [`Plugin::current_replica`]); `None` when it was taken already. Without it, ticks
    /// never fire and callouts never complete.
    pub fn root_driver(
        self: &Arc<Self>,
        replica: usize,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let r = lock(self.vms.pool.get(replica)?).clone();
        let events = r
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(self.tenant)?
            .take()?;
        Some(crate::root::drive(
            Arc::downgrade(self),
            Arc::downgrade(&r),
            self.tenant,
            events,
        ))
    }

    /// Completes once the plugin's root services have nothing left to do: no event queued,
    /// no callout running, no tick set (drivers must be running). Test harnesses use it to
    /// tell a stream that waits for a callout from one nothing will ever resume.
    pub async fn root_settled(&self) {
        // Settled means all replicas at once: one may get work while another is awaited.
        loop {
            let replicas: Vec<Arc<Replica>> =
                self.vms.pool.iter().map(|s| lock(s).clone()).collect();
            for replica in &replicas {
                replica.links[self.tenant].settled().await;
            }
            if replicas.iter().all(|r| r.links[self.tenant].is_settled()) {
                return;
            }
        }
    }

    /// Runs `f` on the replica's VM if it is alive and of `generation` (any when `None`);
    /// never starts a VM.
    fn with_live_vm(
        &self,
        replica: &Replica,
        generation: Option<u64>,
        f: impl FnOnce(&mut Vm) -> Option<String>,
    ) {
        let current = replica.lock(&self.vms.counters.waited).generation;
        if generation.is_some_and(|g| g != current) {
            return;
        }
        let _ = self.with_vm(replica, Some(current), |vm, _| ((), f(vm)));
    }

    /// Fires `proxy_on_tick` on the replica's root (not once it was recycled).
    pub(crate) fn tick(&self, replica: &Replica) {
        if replica.retired.load(Ordering::Relaxed) {
            return;
        }
        let metrics = self.metrics();
        self.with_live_vm(replica, None, |vm| {
            let cb = vm.cb.clone();
            let f = cb.tick.as_ref()?;
            let root = vm.store.data().root_context_id;
            let called = vm.call("proxy_on_tick", root, Phase::Tick, None, metrics, |s| {
                f.call(s, root as i32)
            });
            called.result.err().map(|e| format!("proxy_on_tick: {e:?}"))
        });
    }

    /// Delivers a queue notification or a callout result to the replica's root.
    pub(crate) fn deliver(&self, replica: &Replica, event: RootEvent) {
        let metrics = self.metrics();
        match event {
            RootEvent::QueueReady { generation, queue } => {
                self.with_live_vm(replica, Some(generation), |vm| {
                    let cb = vm.cb.clone();
                    let f = cb.queue_ready.as_ref()?;
                    let root = vm.store.data().root_context_id;
                    let called = vm.call(
                        "proxy_on_queue_ready",
                        root,
                        Phase::QueueReady,
                        None,
                        metrics,
                        |s| f.call(s, (root as i32, queue as i32)),
                    );
                    called
                        .result
                        .err()
                        .map(|e| format!("proxy_on_queue_ready: {e:?}"))
                });
            }
            RootEvent::Http {
                generation,
                token,
                result,
            } => {
                self.with_live_vm(replica, Some(generation), |vm| {
                    crate::root::http_response(vm, token, result, metrics)
                });
            }
            RootEvent::Grpc {
                generation,
                token,
                event,
            } => {
                self.with_live_vm(replica, Some(generation), |vm| {
                    crate::root::grpc_event(vm, token, event, metrics)
                });
            }
            RootEvent::TickChanged | RootEvent::Spawn(_) => {}
        }
    }
}
