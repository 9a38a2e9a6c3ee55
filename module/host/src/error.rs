//! Errors of loading plugins and of running their callbacks.

use std::path::PathBuf;

use wasmbridge_abi::AbiVersionError;

/// Why a plugin could not be loaded. Displayed with the plugin name and module file, so an
/// operator sees who is at fault without reading logs.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` (module {}): {kind}", module.display())]
pub struct LoadError {
    /// The plugin's name from the configuration.
    pub plugin: String,
    /// The module file (or a label for in-memory modules).
    pub module: PathBuf,
    /// What went wrong.
    pub kind: LoadErrorKind,
}

impl LoadError {
    pub(crate) fn new(plugin: &str, module: &std::path::Path, kind: LoadErrorKind) -> Self {
        LoadError {
            plugin: plugin.to_string(),
            module: module.to_path_buf(),
            kind,
        }
    }

    /// True when the module file could not be read.
    pub fn is_io(&self) -> bool {
        matches!(self.kind, LoadErrorKind::Io(_))
    }

    /// True when the file is not a WebAssembly module at all.
    pub fn is_not_wasm(&self) -> bool {
        matches!(self.kind, LoadErrorKind::NotWasm { .. })
    }
}

/// The reason part of a [`LoadError`].
#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    /// The module file could not be read.
    #[error("cannot read the module file: {0}")]
    Io(#[from] std::io::Error),
    /// The file does not start with the WebAssembly magic bytes.
    #[error("not a WebAssembly module (the file starts with {found})")]
    NotWasm {
        /// The first bytes of the file, in hex.
        found: String,
    },
    /// wasmtime refused to compile the module.
    #[error("the module does not compile: {0}")]
    Compile(String),
    /// The Proxy-Wasm ABI version marker is missing or unknown.
    #[error("{0}")]
    Abi(#[from] AbiVersionError),
    /// The module exports neither `proxy_on_memory_allocate` nor `malloc`.
    #[error(
        "the module exports no allocator (`proxy_on_memory_allocate` or `malloc`), so the host cannot return data to it"
    )]
    NoAllocator,
    /// An import or export has the wrong type.
    #[error("{0}")]
    Signature(String),
    /// An import that is not a function (memory, table, global) cannot be satisfied.
    #[error("unsupported import `{module}.{name}`: only function imports can be provided")]
    UnsupportedImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// Instantiation or a start-up function trapped.
    #[error("{stage} failed: {message}")]
    Start {
        /// Which start-up step (`instantiate`, `_initialize`, `proxy_on_vm_start`, ...).
        stage: &'static str,
        /// The trap or error text.
        message: String,
    },
    /// `proxy_on_vm_start` returned false.
    #[error("proxy_on_vm_start returned false: the VM configuration was rejected")]
    VmStartRejected,
    /// `proxy_on_configure` returned false.
    #[error("proxy_on_configure returned false: the plugin configuration was rejected")]
    ConfigureRejected,
    /// The plugin's capabilities, redaction or environment variables are not valid.
    #[error("{0}")]
    Policy(String),
    /// The engine could not be set up.
    #[error("engine: {0}")]
    Engine(String),
}
