//! Shared data (reference §12.1): one key-value store per [`crate::Runtime`], shared by
//! every plugin and VM replica built from it and partitioned by `vm_id`, as Envoy's is
//! process-wide per `vm_id`. Values carry a compare-and-swap number taken from one counter
//! for the whole store, never 0.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use wasmbridge_abi::Status;

/// The longest key `proxy_set_shared_data` accepts, in bytes.
pub const MAX_SHARED_KEY_BYTES: usize = 4 * 1024;
/// The largest value `proxy_set_shared_data` accepts, in bytes.
pub const MAX_SHARED_VALUE_BYTES: usize = 1024 * 1024;

/// The store. Reads and writes take one mutex: shared data is for counters, flags and
/// small documents, not bulk traffic.
#[derive(Debug, Default)]
pub(crate) struct SharedData {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(String, Vec<u8>), (Bytes, u32)>,
    last_cas: u32,
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetError {
    /// The key is longer than [`MAX_SHARED_KEY_BYTES`].
    KeyTooLong,
    /// The value is larger than [`MAX_SHARED_VALUE_BYTES`].
    ValueTooLarge,
    /// The caller's CAS is not the stored one.
    CasMismatch,
}

impl SetError {
    pub(crate) fn status(self) -> Status {
        match self {
            SetError::KeyTooLong | SetError::ValueTooLarge => Status::BadArgument,
            SetError::CasMismatch => Status::CasMismatch,
        }
    }
}

impl SharedData {
    /// The value and CAS stored under `key` for `vm_id`.
    pub(crate) fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Bytes, u32)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .entries
            .get(&(vm_id.to_string(), key.to_vec()))
            .cloned()
    }

    /// Stores `value` under `key` for `vm_id`: unconditionally when `cas` is 0 or the key
    /// is missing, else only when `cas` is the stored CAS. Returns the new CAS.
    pub(crate) fn set(
        &self,
        vm_id: &str,
        key: &[u8],
        value: Bytes,
        cas: u32,
    ) -> Result<u32, SetError> {
        if key.len() > MAX_SHARED_KEY_BYTES {
            return Err(SetError::KeyTooLong);
        }
        if value.len() > MAX_SHARED_VALUE_BYTES {
            return Err(SetError::ValueTooLarge);
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = (vm_id.to_string(), key.to_vec());
        if let Some((_, stored)) = inner.entries.get(&id)
            && cas != 0
            && cas != *stored
        {
            return Err(SetError::CasMismatch);
        }
        inner.last_cas = match inner.last_cas.wrapping_add(1) {
            0 => 1,
            next => next,
        };
        let new_cas = inner.last_cas;
        inner.entries.insert(id, (value, new_cas));
        Ok(new_cas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_rules_follow_envoy() {
        let s = SharedData::default();
        assert_eq!(s.get("", b"k"), None);
        // A missing key is set whatever the CAS.
        let c1 = s.set("", b"k", Bytes::from_static(b"a"), 77).expect("set");
        assert_eq!(s.get("", b"k"), Some((Bytes::from_static(b"a"), c1)));
        // The current CAS wins, a stale one loses, 0 always wins.
        let c2 = s.set("", b"k", Bytes::from_static(b"b"), c1).expect("set");
        assert_ne!(c2, c1);
        assert_eq!(
            s.set("", b"k", Bytes::from_static(b"c"), c1),
            Err(SetError::CasMismatch)
        );
        assert_eq!(
            s.get("", b"k").map(|(v, _)| v),
            Some(Bytes::from_static(b"b"))
        );
        let c3 = s.set("", b"k", Bytes::from_static(b"d"), 0).expect("set");
        assert!(c3 > c2);
    }

    #[test]
    fn vm_ids_partition_the_store() {
        let s = SharedData::default();
        s.set("a", b"k", Bytes::from_static(b"1"), 0).expect("set");
        assert_eq!(s.get("b", b"k"), None);
        assert!(s.get("a", b"k").is_some());
    }

    #[test]
    fn cas_is_never_zero_after_wrapping() {
        let s = SharedData::default();
        s.inner.lock().expect("lock").last_cas = u32::MAX;
        let cas = s.set("", b"k", Bytes::new(), 0).expect("set");
        assert_eq!(cas, 1);
    }

    #[test]
    fn oversized_keys_and_values_are_refused() {
        let s = SharedData::default();
        let key = vec![b'k'; MAX_SHARED_KEY_BYTES + 1];
        assert_eq!(s.set("", &key, Bytes::new(), 0), Err(SetError::KeyTooLong));
        let value = Bytes::from(vec![0u8; MAX_SHARED_VALUE_BYTES + 1]);
        assert_eq!(s.set("", b"k", value, 0), Err(SetError::ValueTooLarge));
        assert_eq!(s.get("", b"k"), None);
    }
}
