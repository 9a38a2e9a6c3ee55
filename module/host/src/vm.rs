//! One VM: a wasmtime store and instance with its exported callbacks looked up once, and
//! the single place where the host calls into the guest.

use std::sync::Arc;
use std::time::Instant;

use wasmbridge_abi::AbiVersion;
use wasmtime::{InstancePre, Store, TypedFunc, UpdateDeadline};

use crate::context::{Action, CallState, HostState, Phase, PluginInfo, StreamData};
use crate::error::LoadErrorKind;
use crate::limits::{CpuWatch, FailureReason};
use crate::metrics::PluginMetrics;
use crate::root::RootLink;
use crate::runtime::EntryStyle;

/// `proxy_on_request_headers` and `proxy_on_response_headers` have one argument less in
/// ABI 0.1.0.
#[derive(Clone)]
pub(crate) enum HeadersFn {
    V1(TypedFunc<(i32, i32), i32>),
    V2(TypedFunc<(i32, i32, i32), i32>),
}

/// `proxy_on_http_call_response(root, token, headers, body_size, trailers)`.
type HttpCallResponseFn = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The callbacks a module exports; `None` when absent.
#[derive(Clone, Default)]
pub(crate) struct Callbacks {
    pub context_create: Option<TypedFunc<(i32, i32), ()>>,
    pub vm_start: Option<TypedFunc<(i32, i32), i32>>,
    pub configure: Option<TypedFunc<(i32, i32), i32>>,
    pub request_headers: Option<HeadersFn>,
    pub response_headers: Option<HeadersFn>,
    pub request_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub response_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub request_trailers: Option<TypedFunc<(i32, i32), i32>>,
    pub response_trailers: Option<TypedFunc<(i32, i32), i32>>,
    pub log: Option<TypedFunc<i32, ()>>,
    pub done: Option<TypedFunc<i32, i32>>,
    pub delete: Option<TypedFunc<i32, ()>>,
    pub tick: Option<TypedFunc<i32, ()>>,
    pub queue_ready: Option<TypedFunc<(i32, i32), ()>>,
    pub http_call_response: Option<HttpCallResponseFn>,
    pub grpc_receive_initial_metadata: Option<TypedFunc<(i32, i32, i32), ()>>,
    pub grpc_receive: Option<TypedFunc<(i32, i32, i32), ()>>,
    pub grpc_receive_trailing_metadata: Option<TypedFunc<(i32, i32, i32), ()>>,
    pub grpc_close: Option<TypedFunc<(i32, i32, i32), ()>>,
}

/// The result of one guest call.
pub(crate) struct Called<R> {
    pub result: wasmtime::Result<R>,
    /// Actions the callback recorded for its own context.
    pub actions: Vec<Action>,
}

pub(crate) struct Vm {
    pub store: Store<HostState>,
    /// Shared so that a call site holds the callback it runs without cloning it (a typed
    /// function's clone registers its type again) while the store is borrowed.
    pub cb: Arc<Callbacks>,
}

fn start_err(stage: &'static str) -> impl Fn(wasmtime::Error) -> LoadErrorKind {
    move |e| {
        // The limits only configuration can raise, named before the trap and its backtrace.
        let why = match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::OutOfFuel) => {
                "it used up its fuel (plugins[].limits.fuel, or callbacks.<name>.fuel for one callback): "
            }
            Some(wasmtime::Trap::StackOverflow) => {
                "its wasm stack overflowed (plugins[].limits.stack): "
            }
            _ => "",
        };
        LoadErrorKind::Start {
            stage,
            message: format!("{why}{e:?}"),
        }
    }
}

/// Gives the store the fuel of one call of `callback` when the plugin's calls are
/// fuelled (the engine then counts fuel: `Plugin::load` checked); a call without a budget
/// of its own gets all there is.
fn refuel(store: &mut Store<HostState>, callback: &str) -> wasmtime::Result<()> {
    let limits = &store.data().plugin.limits;
    if !limits.uses_fuel() {
        return Ok(());
    }
    let fuel = limits.fuel_for(callback).unwrap_or(u64::MAX);
    store.set_fuel(fuel)
}

impl Vm {
    /// Instantiates, runs start-up code, creates the root context and runs
    /// `proxy_on_vm_start` and `proxy_on_configure`.
    ///
    /// A VM shared by several plugins (`tenants`, the same `vm_id` and module) gets one
    /// root context per plugin, each created, started and configured in turn, as Envoy
    /// does. A failure names the index of the tenant it happened for.
    pub fn start(
        pre: &InstancePre<HostState>,
        tenants: Vec<(Arc<PluginInfo>, Arc<RootLink>)>,
        generation: u64,
        entry: EntryStyle,
        allocator: &str,
    ) -> Result<Vm, (usize, LoadErrorKind)> {
        let abi = tenants[0].0.abi;
        // A new VM starts without ticks; its roots set them if they want.
        for (_, root) in &tenants {
            root.set_tick(None);
        }
        let start_cpu = tenants[0].0.limits.cpu_for("_start", true);
        let mut store = Store::new(pre.module().engine(), HostState::new(tenants, generation));
        let cb = Vm::instantiate(pre, &mut store, abi, start_cpu, entry, allocator)
            .map_err(|e| (0, e))?;
        let mut vm = Vm {
            store,
            cb: Arc::new(cb),
        };
        for t in 0..vm.store.data().tenants.len() {
            vm.start_root(t).map_err(|e| (t, e))?;
        }
        vm.store.data_mut().starting = false;
        Ok(vm)
    }

    /// Creates tenant `t`'s root context, then runs its `proxy_on_vm_start` and
    /// `proxy_on_configure`.
    fn start_root(&mut self, t: usize) -> Result<(), LoadErrorKind> {
        let state = self.store.data_mut();
        let root = state.next_context_id;
        state.next_context_id += 1;
        state.tenants[t].root_context_id = root;
        // Entering sets the current root context from the tenant's.
        state.tenant = usize::MAX;
        state.enter(t);
        let info = state.plugin.clone();
        let metrics = info.host_metrics.as_ref();
        let root_i = root as i32;
        let cb = self.cb.clone();
        if let Some(f) = &cb.context_create {
            self.call(
                "proxy_on_context_create",
                root,
                Phase::Start,
                None,
                metrics,
                |s| f.call(s, (root_i, 0)),
            )
            .result
            .map_err(start_err("proxy_on_context_create"))?;
        }
        if let Some(f) = &cb.vm_start {
            let size = info.vm_configuration.len() as i32;
            let ok = self
                .call(
                    "proxy_on_vm_start",
                    root,
                    Phase::VmStart,
                    None,
                    metrics,
                    |s| f.call(s, (root_i, size)),
                )
                .result
                .map_err(start_err("proxy_on_vm_start"))?;
            if ok == 0 {
                return Err(LoadErrorKind::VmStartRejected);
            }
        }
        if let Some(f) = &cb.configure {
            let size = info.configuration.len() as i32;
            let ok = self
                .call(
                    "proxy_on_configure",
                    root,
                    Phase::Configure,
                    None,
                    metrics,
                    |s| f.call(s, (root_i, size)),
                )
                .result
                .map_err(start_err("proxy_on_configure"))?;
            if ok == 0 {
                return Err(LoadErrorKind::ConfigureRejected);
            }
        }
        Ok(())
    }

    /// Instantiates into `store`, looks up the callbacks and runs the module's start-up
    /// code.
    fn instantiate(
        pre: &InstancePre<HostState>,
        store: &mut Store<HostState>,
        abi: AbiVersion,
        start_cpu: std::time::Duration,
        entry: EntryStyle,
        allocator: &str,
    ) -> Result<Callbacks, LoadErrorKind> {
        store.limiter(|state| &mut state.limiter);
        // Each epoch tick a guest call runs into checks its CPU budget.
        store.epoch_deadline_callback(|mut cx| {
            Ok(if cx.data_mut().cpu.may_continue() {
                UpdateDeadline::Continue(1)
            } else {
                UpdateDeadline::Interrupt
            })
        });
        // Instantiation may run a start section; start-up code gets the start budget.
        store.data_mut().cpu = CpuWatch::new(start_cpu, Instant::now());
        store.set_epoch_deadline(1);
        refuel(store, "_start").map_err(start_err("instantiate"))?;
        let instance = pre
            .instantiate(&mut *store)
            .map_err(start_err("instantiate"))?;
        store.data_mut().memory = instance.get_memory(&mut *store, "memory");
        let sig = |name: &str, e: wasmtime::Error| {
            LoadErrorKind::Signature(format!("export `{name}` has the wrong type: {e:#}"))
        };
        let allocator_fn = instance
            .get_typed_func::<i32, i32>(&mut *store, allocator)
            .map_err(|e| sig(allocator, e))?;
        store.data_mut().allocator = Some(std::sync::Arc::new(allocator_fn));

        macro_rules! typed {
            ($name:literal) => {
                match instance.get_func(&mut *store, $name) {
                    Some(f) => Some(f.typed(&*store).map_err(|e| sig($name, e))?),
                    None => None,
                }
            };
        }
        let headers = |store: &mut Store<HostState>,
                       name: &str|
         -> Result<Option<HeadersFn>, LoadErrorKind> {
            let Some(f) = instance.get_func(&mut *store, name) else {
                return Ok(None);
            };
            Ok(Some(if abi == AbiVersion::V0_1_0 {
                HeadersFn::V1(f.typed(&*store).map_err(|e| sig(name, e))?)
            } else {
                HeadersFn::V2(f.typed(&*store).map_err(|e| sig(name, e))?)
            }))
        };
        let cb = Callbacks {
            context_create: typed!("proxy_on_context_create"),
            vm_start: typed!("proxy_on_vm_start"),
            configure: typed!("proxy_on_configure"),
            request_headers: headers(&mut *store, "proxy_on_request_headers")?,
            response_headers: headers(&mut *store, "proxy_on_response_headers")?,
            request_body: typed!("proxy_on_request_body"),
            response_body: typed!("proxy_on_response_body"),
            request_trailers: typed!("proxy_on_request_trailers"),
            response_trailers: typed!("proxy_on_response_trailers"),
            log: typed!("proxy_on_log"),
            done: typed!("proxy_on_done"),
            delete: typed!("proxy_on_delete"),
            tick: typed!("proxy_on_tick"),
            queue_ready: typed!("proxy_on_queue_ready"),
            http_call_response: typed!("proxy_on_http_call_response"),
            grpc_receive_initial_metadata: typed!("proxy_on_grpc_receive_initial_metadata"),
            grpc_receive: typed!("proxy_on_grpc_receive"),
            grpc_receive_trailing_metadata: match typed!("proxy_on_grpc_receive_trailing_metadata")
            {
                Some(f) => Some(f),
                // AssemblyScript runtimes export the callback under this name.
                None => typed!("proxy_on_grpc_trailing_metadata"),
            },
            grpc_close: typed!("proxy_on_grpc_close"),
        };

        store.data_mut().cpu = CpuWatch::new(start_cpu, Instant::now());
        store.set_epoch_deadline(1);
        refuel(store, "_start").map_err(start_err("start-up code"))?;
        match entry {
            EntryStyle::Initialize | EntryStyle::InitializeAndMain => {
                let init = instance
                    .get_typed_func::<(), ()>(&mut *store, "_initialize")
                    .map_err(|e| sig("_initialize", e))?;
                init.call(&mut *store, ())
                    .map_err(start_err("_initialize"))?;
                // Looked up without the error a missing export makes (which captures a
                // backtrace when RUST_BACKTRACE is set).
                if entry == EntryStyle::InitializeAndMain {
                    let main = instance.get_func(&mut *store, "main");
                    if let Some(Ok(main)) = main.map(|f| f.typed::<(i32, i32), i32>(&*store)) {
                        main.call(&mut *store, (0, 0)).map_err(start_err("main"))?;
                    } else if let Some(main) = instance.get_func(&mut *store, "__main_void") {
                        let main = main
                            .typed::<(), i32>(&*store)
                            .map_err(|e| sig("__main_void", e))?;
                        main.call(&mut *store, ())
                            .map_err(start_err("__main_void"))?;
                    }
                }
            }
            EntryStyle::Start => {
                let start = instance
                    .get_typed_func::<(), ()>(&mut *store, "_start")
                    .map_err(|e| sig("_start", e))?;
                if let Err(e) = start.call(&mut *store, ()) {
                    // A command that ends with proc_exit(0) finished its start-up.
                    if store.data().call.exit_code != Some(0) {
                        return Err(start_err("_start")(e));
                    }
                    store.data_mut().call.exit_code = None;
                }
            }
            EntryStyle::StartSection | EntryStyle::None => {}
        }
        Ok(cb)
    }

    /// The size of the VM's linear memory in bytes (0 without an exported memory).
    pub fn memory_size(&self) -> u64 {
        self.store
            .data()
            .memory
            .map_or(0, |m| m.data_size(&self.store) as u64)
    }

    /// Runs one callback for context `ctx` in `phase`, with `stream` readable by hostcalls
    /// (it is moved into the store for the call and back afterwards). Actions aimed at other
    /// contexts of this VM are delivered to their signals; the caller gets the ones for `ctx`.
    pub fn call<R>(
        &mut self,
        callback: &'static str,
        ctx: u32,
        phase: Phase,
        mut stream: Option<&mut Box<StreamData>>,
        metrics: Option<&PluginMetrics>,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Called<R> {
        let state = self.store.data_mut();
        let parked = match stream.as_deref_mut() {
            Some(data) => {
                let mut b = state.spare.take().unwrap_or_default();
                std::mem::swap(&mut b, data);
                Some(b)
            }
            None => None,
        };
        state.call = CallState {
            callback,
            context_id: ctx,
            effective_context_id: ctx,
            phase,
            stream: parked,
            actions: Vec::new(),
            exit_code: None,
            borrowed: None,
            delivery: None,
            status: None,
        };
        state.limiter.refused = false;
        let started = Instant::now();
        state.cpu = CpuWatch::new(
            state.plugin.limits.cpu_for(callback, state.starting),
            started,
        );
        self.store.set_epoch_deadline(1);
        let result = refuel(&mut self.store, callback).and_then(|()| f(&mut self.store));
        if let Some(m) = metrics {
            m.observe(callback, started.elapsed(), result.is_err());
        }
        let state = self.store.data_mut();
        state.failure = result
            .as_ref()
            .err()
            .map(|e| FailureReason::of(e, state.limiter.refused));
        let mut call = std::mem::replace(&mut state.call, CallState::idle());
        call.give_back();
        if let (Some(data), Some(mut b)) = (stream, call.stream) {
            std::mem::swap(&mut b, data);
            state.spare = Some(b);
        }
        let mut own = Vec::new();
        for (target, action) in call.actions {
            if target == ctx {
                own.push(action);
            } else if let Some(signal) = state.streams.get(&target) {
                signal.push(action);
            }
        }
        Called {
            result,
            actions: own,
        }
    }
}
