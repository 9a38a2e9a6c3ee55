//! The wasmtime engine, the shared linker, and compiling modules with a compatibility
//! report ([`ModuleInfo`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use wasmbridge_abi::{AbiVersion, CALLBACKS, Support, ValType, callback_params, hostcall};
use wasmtime::{Config, Engine, ExternType, FuncType, Linker, Module};

use crate::cache::{CompileCache, CompileCacheMetrics, Lookup};
use crate::context::HostState;
use crate::error::{LoadError, LoadErrorKind};
use crate::hostcalls::{self, Registration};

/// How a module's start-up code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStyle {
    /// WASI reactor: `_initialize`.
    Initialize,
    /// `_initialize`, then `main(0, 0)` or `__main_void()`.
    InitializeAndMain,
    /// WASI command: `_start` (must not exit).
    Start,
    /// A wasm start section, run during instantiation.
    StartSection,
    /// No start-up code at all.
    None,
}

impl fmt::Display for EntryStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryStyle::Initialize => "_initialize",
            EntryStyle::InitializeAndMain => "_initialize + main",
            EntryStyle::Start => "_start",
            EntryStyle::StartSection => "start section",
            EntryStyle::None => "none",
        })
    }
}

/// What a module is and what it needs, found at compile time.
#[derive(Debug, Clone)]
pub struct ModuleInfo {
    /// The Proxy-Wasm ABI version the module declares.
    pub abi: AbiVersion,
    /// How its start-up code runs.
    pub entry: EntryStyle,
    /// The allocator the host uses to return data (`proxy_on_memory_allocate` or `malloc`).
    pub allocator: &'static str,
    /// Imports the catalogue does not know, as `module.name`; each is linked to a stub that
    /// returns UNIMPLEMENTED and logs once.
    pub unknown_imports: Vec<String>,
    /// Known imports wasmbridge does not implement yet (stubbed the same way).
    pub unimplemented_imports: Vec<String>,
    /// The `proxy_on_*` callbacks the module exports.
    pub callbacks: Vec<String>,
}

impl ModuleInfo {
    /// True when the module exports `name`.
    pub fn exports_callback(&self, name: &str) -> bool {
        self.callbacks.iter().any(|c| c == name)
    }
}

/// A compiled module with its report; cheap to clone.
#[derive(Clone)]
pub struct CompiledModule {
    pub(crate) module: Module,
    info: Arc<ModuleInfo>,
    path: PathBuf,
    /// SHA-256 of the module's bytes.
    digest: [u8; 32],
}

impl CompiledModule {
    /// The compatibility report.
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// The file the module came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SHA-256 of the module's bytes: modules with the same digest are the same code.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// The engine and the linker with every hostcall; one per process, cheap to clone.
///
/// Some plugin settings are settings of the engine: `per_stream` isolation needs wasmtime's
/// pooling allocator, fuel needs an engine that counts it, and the wasm stack size is the
/// engine's. A runtime therefore has sibling engines, made when first asked for by
/// [`Runtime::for_settings`] (or [`Runtime::per_stream`]); a sibling shares everything else
/// (shared data, queues, guest metrics, the compile cache's directory) with the runtime it
/// came from. Modules must be compiled by the runtime that loads them, and
/// [`Plugin::load`](crate::Plugin::load) refuses a plugin whose settings
/// ([`EngineSettings::for_plugin`]) are not its runtime's.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
    /// The engine this handle compiles and links for.
    engines: Arc<Engines>,
    /// Where compiled modules are kept between runs, if anywhere.
    cache: Option<Arc<CompileCache>>,
}

struct RuntimeInner {
    /// Shared data of every plugin built from this runtime (per `vm_id`).
    shared: Arc<crate::shared::SharedData>,
    /// Shared queues of every plugin built from this runtime.
    queues: Arc<crate::root::Queues>,
    /// Metrics the guests of every plugin built from this runtime define.
    guest_metrics: crate::GuestMetrics,
    /// Whether the engines check CPU deadlines (all but the benchmark's runtime do).
    deadlines: bool,
    /// The engines of this runtime by their settings, the first one included; the others
    /// are made when first asked for and live as long as the runtime.
    variants: std::sync::Mutex<Variants>,
}

/// The engines of a runtime.
struct Variants {
    by_key: std::collections::HashMap<EngineKey, Arc<Engines>>,
    /// The capacity of the first pooling engine, which later ones take too.
    pool: Option<PerStreamPool>,
}

/// What tells engines apart: the settings that are the engine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct EngineKey {
    pooled: bool,
    fuel: bool,
    stack_bytes: u64,
}

/// The engine-wide settings a plugin needs: which of a runtime's engines compiles and
/// loads it. Only a plugin that asks for `per_stream` isolation, fuel or a wasm stack
/// other than the default pays for an engine (and an epoch ticker thread) of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    /// `Some` for `per_stream` plugins: instances come from wasmtime's pooling allocator
    /// of this capacity (the first pooling engine of a runtime sets it; later ones share
    /// that capacity, each with its own pool).
    pub per_stream: Option<PerStreamPool>,
    /// The engine counts fuel ([`crate::Limits::fuel`]). Counting costs every plugin of
    /// the engine time, whether it sets fuel or not, so plugins without fuel never share
    /// such an engine.
    pub fuel: bool,
    /// The wasm stack of a call in bytes ([`crate::Limits::stack_bytes`]).
    pub stack_bytes: u64,
}

impl Default for EngineSettings {
    /// The engine of [`Runtime::new`]: on-demand instances, no fuel, the default stack.
    fn default() -> Self {
        EngineSettings {
            per_stream: None,
            fuel: false,
            stack_bytes: crate::Limits::DEFAULT_STACK_BYTES,
        }
    }
}

impl EngineSettings {
    /// What a plugin loaded with `spec` needs; a `per_stream` one gets a pool of `pool`.
    pub fn for_plugin(spec: &crate::PluginSpec, pool: PerStreamPool) -> EngineSettings {
        EngineSettings {
            per_stream: (spec.pool.isolation == crate::Isolation::PerStream).then_some(pool),
            fuel: spec.limits.uses_fuel(),
            stack_bytes: spec.limits.stack_bytes,
        }
    }

    fn key(&self) -> EngineKey {
        EngineKey {
            pooled: self.per_stream.is_some(),
            fuel: self.fuel,
            stack_bytes: self.stack_bytes,
        }
    }

    /// How `self` (a runtime's) differs from `needed` (a plugin's), in words; `None` when
    /// the runtime can load the plugin.
    pub(crate) fn mismatch(&self, needed: &EngineSettings) -> Option<String> {
        let mut differences = Vec::new();
        if self.per_stream.is_some() != needed.per_stream.is_some() {
            differences.push(if needed.per_stream.is_some() {
                "per_stream isolation needs an engine with the pooling allocator".to_string()
            } else {
                "shared isolation needs an engine without the pooling allocator".to_string()
            });
        }
        if self.fuel != needed.fuel {
            differences.push(if needed.fuel {
                "plugins[].limits.fuel needs an engine that counts fuel".to_string()
            } else {
                "a plugin without plugins[].limits.fuel needs an engine that does not count fuel"
                    .to_string()
            });
        }
        if self.stack_bytes != needed.stack_bytes {
            differences.push(format!(
                "plugins[].limits.stack of {} bytes needs an engine with that wasm stack, not {} bytes",
                needed.stack_bytes, self.stack_bytes
            ));
        }
        (!differences.is_empty()).then(|| differences.join("; "))
    }
}

/// An engine, its linker, and the ticker that ends callbacks at their deadline.
struct Engines {
    engine: Engine,
    /// What the engine was made with.
    settings: EngineSettings,
    linker: Linker<HostState>,
    registrations: Vec<Registration>,
    /// Advances the engine's epoch while the engine is used.
    _ticker: EpochTicker,
}

impl Engines {
    fn new(settings: EngineSettings, deadlines: bool) -> Result<Engines, EngineError> {
        let stack = crate::Limits::MIN_STACK_BYTES..=crate::Limits::MAX_STACK_BYTES;
        if !stack.contains(&settings.stack_bytes) {
            return Err(EngineError(format!(
                "a wasm stack of {} bytes is outside {}..={} bytes",
                settings.stack_bytes,
                stack.start(),
                stack.end()
            )));
        }
        let mut config = Config::new();
        if let Some(pool) = settings.per_stream {
            let mut allocation = wasmtime::PoolingAllocationConfig::new();
            allocation
                .total_core_instances(pool.instances)
                .total_memories(pool.instances)
                .total_tables(pool.instances)
                .max_memory_size(usize::try_from(pool.memory).unwrap_or(usize::MAX))
                // A freed slot's memory goes back to the kernel (no keep-resident memset):
                // a Rust SDK filter's VM costs 24 us instead of 44 us with 1 MiB kept, and
                // the minimal one the same (benches/pool.rs).
                .table_keep_resident(64 << 10);
            config
                .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(allocation))
                .memory_init_cow(true);
        }
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // CPU deadlines (plugins[].limits.cpu): the ticker below advances the epoch.
        config.epoch_interruption(deadlines);
        // Fuel (plugins[].limits.fuel) adds a counter update to every block of every
        // module the engine compiles, so only engines of plugins that set it count it.
        config.consume_fuel(settings.fuel);
        config.max_wasm_stack(usize::try_from(settings.stack_bytes).unwrap_or(usize::MAX));
        let engine = Engine::new(&config).map_err(|e| EngineError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        let registrations = hostcalls::add_to_linker(&engine, &mut linker)
            .map_err(|e| EngineError(format!("{e:#}")))?;
        Ok(Engines {
            _ticker: EpochTicker::start(&engine)?,
            engine,
            settings,
            linker,
            registrations,
        })
    }
}

/// The capacity of the pooling allocator behind `per_stream` plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerStreamPool {
    /// How many `per_stream` VMs may exist at once, over all such plugins of one engine; a
    /// stream beyond that fails by its plugin's policy.
    pub instances: u32,
    /// The largest linear memory one of them may have, in bytes (each plugin's own
    /// `limits.memory` still applies below it).
    pub memory: u64,
}

impl Default for PerStreamPool {
    fn default() -> Self {
        PerStreamPool {
            instances: 1000,
            memory: crate::Limits::default().memory_bytes,
        }
    }
}

/// A thread that advances the engine's epoch every [`crate::EPOCH_TICK`], which is what
/// ends a callback at its deadline; it stops when dropped (with its runtime).
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Result<EpochTicker, EngineError> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (engine, stopped) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(crate::EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| EngineError(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The engine could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the wasm engine: {0}")]
pub struct EngineError(String);

impl Runtime {
    /// Creates the engine and links every hostcall of the catalogue.
    pub fn new() -> Result<Runtime, EngineError> {
        Runtime::with_deadlines(true)
    }

    /// A runtime whose engine does not check CPU deadlines: `limits.cpu` is not enforced
    /// and a plugin that loops never returns. It exists to measure what the deadline
    /// checks cost (`benches/pool.rs`); do not serve traffic with it.
    #[doc(hidden)]
    pub fn without_cpu_deadlines() -> Result<Runtime, EngineError> {
        Runtime::with_deadlines(false)
    }

    fn with_deadlines(deadlines: bool) -> Result<Runtime, EngineError> {
        let settings = EngineSettings::default();
        let base = Arc::new(Engines::new(settings, deadlines)?);
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                shared: Arc::default(),
                queues: Arc::default(),
                guest_metrics: crate::GuestMetrics::new(),
                deadlines,
                variants: std::sync::Mutex::new(Variants {
                    by_key: [(settings.key(), base.clone())].into(),
                    pool: None,
                }),
            }),
            engines: base,
            cache: None,
        })
    }

    /// This runtime's sibling whose engine has `settings`, made when first asked for and
    /// shared by later calls. It shares shared data, queues, guest metrics and the compile
    /// cache's directory with this runtime. Fails when the engine cannot be made, e.g. for
    /// a stack size outside [`Limits::MIN_STACK_BYTES`](crate::Limits::MIN_STACK_BYTES)..=
    /// [`Limits::MAX_STACK_BYTES`](crate::Limits::MAX_STACK_BYTES).
    pub fn for_settings(&self, settings: EngineSettings) -> Result<Runtime, EngineError> {
        let key = settings.key();
        let engines = {
            let mut variants = self
                .inner
                .variants
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match variants.by_key.get(&key) {
                Some(e) => e.clone(),
                None => {
                    let per_stream = settings
                        .per_stream
                        .map(|pool| *variants.pool.get_or_insert(pool));
                    let e = Arc::new(Engines::new(
                        EngineSettings {
                            per_stream,
                            ..settings
                        },
                        self.inner.deadlines,
                    )?);
                    variants.by_key.insert(key, e.clone());
                    e
                }
            }
        };
        let cache = self.cache.as_ref().map(|c| {
            Arc::new(CompileCache::new(
                c.dir().to_path_buf(),
                &engines.engine,
                c.metrics(),
            ))
        });
        Ok(Runtime {
            inner: self.inner.clone(),
            engines,
            cache,
        })
    }

    /// This runtime's sibling for `per_stream` plugins: an engine whose instances come
    /// from wasmtime's pooling allocator (memory slots reserved once, data segments mapped
    /// copy-on-write), so that a fresh VM per stream costs microseconds; its fuel and
    /// stack settings are this runtime's. Modules must be compiled by the runtime that
    /// loads them. The first pooling engine sets the pool's capacity; later ones share it.
    pub fn per_stream(&self, pool: PerStreamPool) -> Result<Runtime, EngineError> {
        self.for_settings(EngineSettings {
            per_stream: Some(pool),
            ..self.settings()
        })
    }

    /// The settings of this runtime's engine.
    pub fn settings(&self) -> EngineSettings {
        self.engines.settings
    }

    /// This runtime with a compile cache in `dir`: [`Runtime::compile`] loads a module
    /// compiled before by an engine with the same wasmtime version and settings from
    /// there, and stores the modules it compiles. The directory is created when the first
    /// entry is written; a corrupt entry is compiled again and replaced, and an entry that
    /// cannot be written is logged, so the cache never makes a load fail.
    pub fn with_compile_cache(mut self, dir: impl Into<PathBuf>) -> Runtime {
        let metrics = self
            .cache
            .as_ref()
            .map_or_else(CompileCacheMetrics::new, |c| c.metrics());
        self.cache = Some(Arc::new(CompileCache::new(
            dir.into(),
            &self.engines.engine,
            metrics,
        )));
        self
    }

    /// How modules came out of this runtime's compile cache,
    /// `wasmbridge_compile_cache_total{outcome}`; register it on a prometheus registry
    /// after [`Runtime::with_compile_cache`]. Without a cache it has no series.
    pub fn compile_cache_metrics(&self) -> CompileCacheMetrics {
        self.cache
            .as_ref()
            .map_or_else(CompileCacheMetrics::new, |c| c.metrics())
    }

    /// The shared-data store plugins of this runtime share.
    pub(crate) fn shared(&self) -> Arc<crate::shared::SharedData> {
        self.inner.shared.clone()
    }

    /// The shared queues plugins of this runtime share.
    pub(crate) fn queues(&self) -> Arc<crate::root::Queues> {
        self.inner.queues.clone()
    }

    /// The metrics guests define with `proxy_define_metric`, shared by every plugin of this
    /// runtime; register it on a prometheus registry to export them.
    pub fn guest_metrics(&self) -> crate::GuestMetrics {
        self.inner.guest_metrics.clone()
    }

    /// The depth of this runtime's shared queues; register it on a prometheus registry to
    /// export `wasmbridge_shared_queue_depth`.
    pub fn queue_metrics(&self) -> crate::root::QueueMetrics {
        crate::root::QueueMetrics::new(self.queues())
    }

    /// True when both handles compile and link for the same engine.
    pub fn same_engine(&self, other: &Runtime) -> bool {
        Arc::ptr_eq(&self.engines, &other.engines)
    }

    /// True for a runtime whose engine has the pooling allocator (`per_stream` plugins).
    pub fn is_per_stream(&self) -> bool {
        self.engines.settings.per_stream.is_some()
    }

    /// Every registration the linker received (for the catalogue check).
    pub fn registrations(&self) -> &[Registration] {
        &self.engines.registrations
    }

    #[cfg(test)]
    pub(crate) fn engine(&self) -> &Engine {
        &self.engines.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.engines.linker
    }

    /// Reads and compiles a module file for `plugin`.
    pub fn compile_file(&self, plugin: &str, path: &Path) -> Result<CompiledModule, LoadError> {
        let bytes =
            std::fs::read(path).map_err(|e| LoadError::new(plugin, path, LoadErrorKind::Io(e)))?;
        self.compile(plugin, path, &bytes)
    }

    /// Compiles module bytes for `plugin`, or loads them from the compile cache; `path`
    /// labels messages.
    pub fn compile(
        &self,
        plugin: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Result<CompiledModule, LoadError> {
        let err = |kind| LoadError::new(plugin, path, kind);
        if !bytes.starts_with(b"\0asm") {
            let found = bytes
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ");
            let found = if found.is_empty() {
                "nothing (empty file)".to_string()
            } else {
                found
            };
            return Err(err(LoadErrorKind::NotWasm { found }));
        }
        let engine = &self.engines.engine;
        let compile = |cache: &'static str| {
            let started = Instant::now();
            let module = Module::new(engine, bytes)
                .map_err(|e| err(LoadErrorKind::Compile(format!("{e:#}"))))?;
            release_freed_memory();
            tracing::info!(
                plugin,
                module = %path.display(),
                cache,
                took_ms = crate::cache::millis(started),
                "module compiled"
            );
            Ok::<_, LoadError>(module)
        };
        let (module, store) = match &self.cache {
            None => (compile("off")?, None),
            Some(cache) => match cache.lookup(engine, plugin, path, bytes) {
                Lookup::Hit(module) => (module, None),
                Lookup::Compile { entry, outcome } => (compile(outcome)?, Some((cache, entry))),
                Lookup::Off => (compile("not used")?, None),
            },
        };
        let info = inspect(&module, bytes).map_err(err)?;
        // Only modules that load are kept.
        if let Some((cache, entry)) = store {
            cache.store(plugin, &entry, &module);
        }
        Ok(CompiledModule {
            module,
            info: Arc::new(info),
            path: path.to_path_buf(),
            digest: sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(bytes))
                .into(),
        })
    }
}

/// Gives the heap pages the allocator holds free back to the kernel. Compiling a module
/// allocates many times the size of the code it keeps, and glibc's malloc keeps freed
/// pages in the middle of its heaps: compiling the Rust SDK `add_header` filter left the
/// process 19.0 MiB larger without this and 14.6 MiB with it (benches/memory.rs).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes no pointers and has no preconditions; it only returns
    // free pages of the allocator's own heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn simple(t: &wasmtime::ValType) -> Option<ValType> {
    match t {
        wasmtime::ValType::I32 => Some(ValType::I32),
        wasmtime::ValType::I64 => Some(ValType::I64),
        _ => None,
    }
}

fn same_signature(ty: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let p: Vec<_> = ty.params().map(|t| simple(&t)).collect();
    let r: Vec<_> = ty.results().map(|t| simple(&t)).collect();
    p.iter().copied().eq(params.iter().map(|v| Some(*v)))
        && r.iter().copied().eq(results.iter().map(|v| Some(*v)))
}

fn show(params: &[ValType], results: &[ValType]) -> String {
    let name = |v: &ValType| match v {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
    };
    let p: Vec<_> = params.iter().map(name).collect();
    let r: Vec<_> = results.iter().map(name).collect();
    format!("({}) -> ({})", p.join(", "), r.join(", "))
}

fn show_ty(ty: &FuncType) -> String {
    let p: Vec<_> = ty.params().map(|t| t.to_string()).collect();
    let r: Vec<_> = ty.results().map(|t| t.to_string()).collect();
    format!("({}) -> ({})", p.join(", "), r.join(", "))
}

/// True when the module bytes contain a start section (id 8).
fn has_start_section(bytes: &[u8]) -> bool {
    let mut pos = 8;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let mut size: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&b) = bytes.get(pos) else {
                return false;
            };
            pos += 1;
            size |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 || shift > 35 {
                break;
            }
        }
        if id == 8 {
            return true;
        }
        pos = pos.saturating_add(size as usize);
    }
    false
}

fn inspect(module: &Module, bytes: &[u8]) -> Result<ModuleInfo, LoadErrorKind> {
    let export_names: Vec<&str> = module
        .exports()
        .filter(|e| matches!(e.ty(), ExternType::Func(_)))
        .map(|e| e.name())
        .collect();
    let abi = AbiVersion::detect(export_names.iter().copied())?;

    let mut callbacks = Vec::new();
    for export in module.exports() {
        let ExternType::Func(ty) = export.ty() else {
            continue;
        };
        let Some(spec) = CALLBACKS.iter().find(|c| c.name == export.name()) else {
            continue;
        };
        let params = callback_params(spec.name, abi).unwrap_or(spec.params);
        if !same_signature(&ty, params, spec.results) {
            return Err(LoadErrorKind::Signature(format!(
                "export `{}` has type {}, but ABI {abi} expects {}",
                spec.name,
                show_ty(&ty),
                show(params, spec.results)
            )));
        }
        if spec.name.starts_with("proxy_on_") {
            callbacks.push(spec.name.to_string());
        }
    }
    let has = |name: &str| export_names.contains(&name);
    let allocator = if has("proxy_on_memory_allocate") {
        "proxy_on_memory_allocate"
    } else if has("malloc") {
        "malloc"
    } else {
        return Err(LoadErrorKind::NoAllocator);
    };
    let entry = if has("_initialize") {
        if has("main") || has("__main_void") {
            EntryStyle::InitializeAndMain
        } else {
            EntryStyle::Initialize
        }
    } else if has("_start") {
        EntryStyle::Start
    } else if has_start_section(bytes) {
        EntryStyle::StartSection
    } else {
        EntryStyle::None
    };

    let mut unknown_imports = Vec::new();
    let mut unimplemented_imports = Vec::new();
    for import in module.imports() {
        let (m, n) = (import.module(), import.name());
        let ExternType::Func(ty) = import.ty() else {
            return Err(LoadErrorKind::UnsupportedImport {
                module: m.to_string(),
                name: n.to_string(),
            });
        };
        match hostcall(m, n) {
            Some(spec) => {
                if !same_signature(&ty, spec.params, spec.results) {
                    return Err(LoadErrorKind::Signature(format!(
                        "import `{m}.{n}` has type {}, but the host provides {}",
                        show_ty(&ty),
                        show(spec.params, spec.results)
                    )));
                }
                if matches!(spec.support, Support::Unimplemented(_)) {
                    unimplemented_imports.push(format!("{m}.{n}"));
                }
            }
            None => unknown_imports.push(format!("{m}.{n}")),
        }
    }
    Ok(ModuleInfo {
        abi,
        entry,
        allocator,
        unknown_imports,
        unimplemented_imports,
        callbacks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_section_is_found() {
        let with = wat::parse_str(r#"(module (func $f) (start $f))"#).ok();
        let without = wat::parse_str(r#"(module (func $f))"#).ok();
        assert!(with.as_deref().is_some_and(has_start_section));
        assert!(without.as_deref().is_some_and(|b| !has_start_section(b)));
    }
}
