//! Foreign functions (`proxy_call_foreign_function`): the host's own — Envoy's
//! `clear_route_cache` and `set_envoy_filter_state`, which act on the effective stream —
//! and a registry the embedding proxy extends with functions of its own.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use wasmbridge_abi::Status;

/// A foreign function the proxy provides: takes the guest's argument bytes and returns the
/// result bytes, or a status for the guest.
pub type ForeignFunction = Arc<dyn Fn(&[u8]) -> Result<Bytes, Status> + Send + Sync>;

/// Foreign functions by name, shared by the plugins that get it.
#[derive(Clone, Default)]
pub struct ForeignFunctions {
    functions: HashMap<String, ForeignFunction>,
}

impl ForeignFunctions {
    /// An empty registry (the host's own functions are always there).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `name`. The host's own names (`clear_route_cache`,
    /// `set_envoy_filter_state`) are answered by the host first.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        function: impl Fn(&[u8]) -> Result<Bytes, Status> + Send + Sync + 'static,
    ) -> &mut Self {
        self.functions.insert(name.into(), Arc::new(function));
        self
    }

    pub(crate) fn get(&self, name: &[u8]) -> Option<&ForeignFunction> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|name| self.functions.get(name))
    }
}

impl fmt::Debug for ForeignFunctions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.functions.keys().collect();
        names.sort();
        f.debug_struct("ForeignFunctions")
            .field("names", &names)
            .finish()
    }
}
