//! Plugins and their VM replicas.
//!
//! A plugin owns one replica per worker; each replica is a VM with its own root context,
//! started with `proxy_on_vm_start` and `proxy_on_configure`. A stream is pinned to the
//! replica of the thread it started on and keeps it until `proxy_on_delete`; each callback
//! locks the replica only for that one synchronous call. A trap poisons only its replica:
//! the VM is dropped, streams that lived in it fail by the plugin's failure policy, and the
//! next stream gets a freshly started VM.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use wasmtime::{ExternType, InstancePre, Val};

use crate::callout::Callouts;
use crate::context::{Action, HostState, Phase, PluginInfo};
use crate::error::{LoadError, LoadErrorKind};
use crate::hostcalls::unimplemented_called;
use crate::metrics::{HostMetrics, PluginMetrics};
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
    /// As `FailClosed` for the failed stream; the VM is rebuilt for the next one.
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
    /// The proxy's identity, served as `xds.node` in every context.
    pub node: Arc<NodeInfo>,
    /// Where `proxy_http_call` and the gRPC calls go.
    pub callouts: Callouts,
    /// The proxy's foreign functions (`proxy_call_foreign_function`).
    pub foreign: crate::foreign::ForeignFunctions,
    /// Memory and CPU limits of each VM.
    pub limits: crate::Limits,
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

/// A loaded plugin: its module, its facts and its VM replicas.
pub struct Plugin {
    pub(crate) info: Arc<PluginInfo>,
    module: CompiledModule,
    pre: InstancePre<HostState>,
    replicas: Box<[Replica]>,
    pub(crate) metrics: Option<PluginMetrics>,
    /// Whether the module exports the request and response body callbacks.
    body_callbacks: [bool; 2],
    /// Keeps the runtime's epoch ticker (CPU deadlines) running while the plugin lives.
    _runtime: Runtime,
}

struct Replica {
    slot: Mutex<Slot>,
    link: Arc<RootLink>,
    /// Taken by the replica's root driver.
    events: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<RootEvent>>>,
}

struct Slot {
    vm: Option<Vm>,
    generation: u64,
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
            .field("module", &self.module.path())
            .field("replicas", &self.replicas.len())
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

impl Plugin {
    /// Links the module (unknown imports become stubs that return UNIMPLEMENTED and log
    /// once), then starts every replica: start-up code, root context, `proxy_on_vm_start`,
    /// `proxy_on_configure`. Any failure is a [`LoadError`] naming the plugin and module.
    pub fn load(
        runtime: &Runtime,
        module: &CompiledModule,
        spec: PluginSpec,
        metrics: Option<HostMetrics>,
    ) -> Result<Arc<Plugin>, LoadError> {
        let metrics = metrics.map(|m| m.for_plugin(&spec.name));
        let err = |kind| LoadError::new(&spec.name, module.path(), kind);
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
        let pre = linker.instantiate_pre(&module.module).map_err(|e| {
            err(LoadErrorKind::Start {
                stage: "link",
                message: format!("{e:#}"),
            })
        })?;
        let info = Arc::new(PluginInfo {
            name: spec.name.clone(),
            root_id: spec.root_id.clone(),
            vm_id: spec.vm_id.clone(),
            configuration: spec.configuration.clone(),
            vm_configuration: spec.vm_configuration.clone(),
            abi: module.info().abi,
            failure_policy: spec.failure_policy,
            static_properties: crate::hostcalls::static_properties(&spec.node),
            shared: runtime.shared(),
            queues: runtime.queues(),
            upstreams: spec.callouts.0.clone(),
            foreign: spec.foreign.clone(),
            metrics: runtime.guest_metrics(),
            host_metrics: metrics.clone(),
            limits: spec.limits.clone(),
            cap_hits: Default::default(),
        });
        let mut replicas = Vec::new();
        for _ in 0..spec.replicas.max(1) {
            let (link, events) = RootLink::new();
            let vm = Vm::start(
                &pre,
                info.clone(),
                link.clone(),
                0,
                module.info().entry,
                module.info().allocator,
                metrics.as_ref(),
            )
            .map_err(err)?;
            replicas.push(Replica {
                slot: Mutex::new(Slot {
                    vm: Some(vm),
                    generation: 0,
                }),
                link,
                events: Mutex::new(Some(events)),
            });
        }
        Ok(Arc::new(Plugin {
            info,
            module: module.clone(),
            pre,
            replicas: replicas.into_boxed_slice(),
            metrics,
            body_callbacks: [
                module.info().exports_callback("proxy_on_request_body"),
                module.info().exports_callback("proxy_on_response_body"),
            ],
            _runtime: runtime.clone(),
        }))
    }

    /// The plugin name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The module's compatibility report.
    pub fn module_info(&self) -> &ModuleInfo {
        self.module.info()
    }

    /// The module file the plugin was loaded from.
    pub fn module_path(&self) -> &std::path::Path {
        self.module.path()
    }

    /// The failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.info.failure_policy
    }

    /// Number of VM replicas.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// True when the module can see and change request bodies.
    pub fn handles_request_body(&self) -> bool {
        self.body_callbacks[0]
    }

    /// True when the module can see and change response bodies.
    pub fn handles_response_body(&self) -> bool {
        self.body_callbacks[1]
    }

    /// The replica the streams started on this thread use.
    pub fn current_replica(&self) -> usize {
        worker_slot() % self.replicas.len()
    }

    fn lock(&self, replica: usize) -> MutexGuard<'_, Slot> {
        self.replicas[replica]
            .slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the replica's VM. With `generation`, the stream's context must still
    /// live in that VM; without, a dropped VM is rebuilt first. When `f` says the guest
    /// failed, the VM is dropped and every other stream waiting on it is told.
    pub(crate) fn with_vm<R>(
        &self,
        replica: usize,
        generation: Option<u64>,
        f: impl FnOnce(&mut Vm, u64) -> (R, Option<String>),
    ) -> Result<R, Gone> {
        let mut slot = self.lock(replica);
        if let Some(g) = generation
            && (g != slot.generation || slot.vm.is_none())
        {
            return Err(Gone::Dead);
        }
        if slot.vm.is_none() {
            match Vm::start(
                &self.pre,
                self.info.clone(),
                self.replicas[replica].link.clone(),
                slot.generation,
                self.module.info().entry,
                self.module.info().allocator,
                self.metrics.as_ref(),
            ) {
                Ok(vm) => {
                    tracing::info!(plugin = %self.info.name, replica, "started a fresh VM after a failure");
                    slot.vm = Some(vm);
                }
                Err(kind) => {
                    let message = kind.to_string();
                    tracing::error!(plugin = %self.info.name, replica, "cannot start a fresh VM: {message}");
                    return Err(Gone::Unavailable(message));
                }
            }
        }
        let generation = slot.generation;
        let Some(vm) = slot.vm.as_mut() else {
            return Err(Gone::Dead);
        };
        let (result, failure) = f(vm, generation);
        if let Some(message) = failure {
            let reason = vm
                .store
                .data()
                .failure
                .unwrap_or(crate::limits::FailureReason::Trap);
            let why = reason.describe(&self.info.limits);
            tracing::error!(plugin = %self.info.name, root_id = %self.info.root_id, replica, reason = reason.label(), "VM failed and is replaced: {why}: {message}");
            if let Some(m) = &self.metrics {
                m.poisoned(reason.label());
            }
            if let Some(dead) = slot.vm.take() {
                for signal in dead.store.data().streams.values() {
                    signal.push(Action::VmFailed);
                }
            }
            slot.generation += 1;
            // No ticks after a failure; a new VM sets its own period.
            self.replicas[replica].link.set_tick(None);
        }
        Ok(result)
    }
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
        let r = self.replicas.get(replica)?;
        let events = r.events.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(crate::root::drive(
            Arc::downgrade(self),
            replica,
            r.link.clone(),
            events,
        ))
    }

    /// Completes once the plugin's root services have nothing left to do: no event queued,
    /// no callout running, no tick set (drivers must be running). Test harnesses use it to
    /// tell a stream that waits for a callout from one nothing will ever resume.
    pub async fn root_settled(&self) {
        // Settled means all replicas at once: one may get work while another is awaited.
        loop {
            for replica in self.replicas.iter() {
                replica.link.settled().await;
            }
            if self.replicas.iter().all(|r| r.link.is_settled()) {
                return;
            }
        }
    }

    pub(crate) fn tick_period(&self, replica: usize) -> Option<std::time::Duration> {
        self.replicas[replica].link.tick()
    }

    /// Runs `f` on the replica's VM if it is alive and of `generation` (any when `None`);
    /// never starts a VM.
    fn with_live_vm(
        &self,
        replica: usize,
        generation: Option<u64>,
        f: impl FnOnce(&mut Vm) -> Option<String>,
    ) {
        let current = self.lock(replica).generation;
        if generation.is_some_and(|g| g != current) {
            return;
        }
        let _ = self.with_vm(replica, Some(current), |vm, _| ((), f(vm)));
    }

    /// Fires `proxy_on_tick` on the replica's root.
    pub(crate) fn tick(&self, replica: usize) {
        let metrics = self.metrics.as_ref();
        self.with_live_vm(replica, None, |vm| {
            let f = vm.cb.tick.clone()?;
            let root = vm.store.data().root_context_id;
            let called = vm.call("proxy_on_tick", root, Phase::Tick, None, metrics, |s| {
                f.call(s, root as i32)
            });
            called.result.err().map(|e| format!("proxy_on_tick: {e:?}"))
        });
    }

    /// Delivers a queue notification or a callout result to the replica's root.
    pub(crate) fn deliver(&self, replica: usize, event: RootEvent) {
        let metrics = self.metrics.as_ref();
        match event {
            RootEvent::QueueReady { generation, queue } => {
                self.with_live_vm(replica, Some(generation), |vm| {
                    let f = vm.cb.queue_ready.clone()?;
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
