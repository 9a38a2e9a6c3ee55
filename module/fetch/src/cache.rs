//! The local module cache: content-addressed files `<dir>/sha256/<hex>.wasm`, and an index
//! `<dir>/index/<hex of the source's sha256>` from a source (a URL, an OCI reference) to
//! the digest it gave last. Every write is a temporary file renamed into place, so a reader
//! sees a whole file or none.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Digest;

/// A module cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// The cache in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> ModuleCache {
        ModuleCache { dir: dir.into() }
    }

    /// The default directory: `$XDG_CACHE_HOME/wasmbridge/modules`, else
    /// `$HOME/.cache/wasmbridge/modules`, else `wasmbridge-modules` in the temporary
    /// directory.
    pub fn default_dir() -> PathBuf {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
            return PathBuf::from(xdg).join("wasmbridge/modules");
        }
        if let Some(home) = non_empty("HOME") {
            return PathBuf::from(home).join(".cache/wasmbridge/modules");
        }
        std::env::temp_dir().join("wasmbridge-modules")
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the module with this digest is (or would be) kept.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("sha256")
            .join(format!("{}.wasm", digest.hex()))
    }

    /// The cached module with this digest, read and checked: a file whose content no
    /// longer has its digest (damaged on disk) is removed and reported as absent.
    pub fn get(&self, digest: &Digest) -> Option<Vec<u8>> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).ok()?;
        if Digest::of(&bytes) == *digest {
            Some(bytes)
        } else {
            tracing::warn!(path = %path.display(), "a cached module does not match its digest; removed");
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Keeps `bytes` under their digest (atomically) and returns the path.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<(Digest, PathBuf)> {
        let digest = Digest::of(bytes);
        let path = self.path(&digest);
        write_atomically(&path, bytes)?;
        Ok((digest, path))
    }

    /// The digest `source` gave last, if recorded.
    pub fn lookup(&self, source: &str) -> Option<Digest> {
        let text = std::fs::read_to_string(self.index_path(source)).ok()?;
        let (digest, recorded) = text.split_once('\n')?;
        // The file name is a hash of the source; the source itself is kept to be sure.
        if recorded.trim_end_matches('\n') != source {
            return None;
        }
        digest.parse().ok()
    }

    /// Records that `source` gave `digest`.
    pub fn record(&self, source: &str, digest: &Digest) -> std::io::Result<()> {
        write_atomically(
            &self.index_path(source),
            format!("{digest}\n{source}\n").as_bytes(),
        )
    }

    fn index_path(&self, source: &str) -> PathBuf {
        self.dir
            .join("index")
            .join(Digest::of(source.as_bytes()).hex())
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a cache path has no directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and call, so concurrent writers never share a temporary file.
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wasmbridge-fetch-cache-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn modules_are_kept_under_their_digest() {
        let cache = ModuleCache::new(temp("put"));
        let (digest, path) = cache.put(b"\0asm module").expect("put");
        assert_eq!(digest, Digest::of(b"\0asm module"));
        assert_eq!(
            path,
            cache.dir().join(format!("sha256/{}.wasm", digest.hex()))
        );
        assert_eq!(cache.get(&digest).as_deref(), Some(&b"\0asm module"[..]));
        assert_eq!(cache.get(&Digest::of(b"other")), None);
        // Only the module is left: the temporary file was renamed, not copied.
        let names: Vec<_> = std::fs::read_dir(cache.dir().join("sha256"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let _ = std::fs::remove_dir_all(cache.dir());
    }

    #[test]
    fn a_damaged_file_is_dropped() {
        let cache = ModuleCache::new(temp("damaged"));
        let (digest, path) = cache.put(b"good").expect("put");
        std::fs::write(&path, b"evil").expect("overwrite");
        assert_eq!(cache.get(&digest), None);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(cache.dir());
    }

    #[test]
    fn the_index_maps_sources_to_digests() {
        let cache = ModuleCache::new(temp("index"));
        let source = "oci://127.0.0.1:5000/filters/a:v1";
        assert_eq!(cache.lookup(source), None);
        let first = Digest::of(b"one");
        cache.record(source, &first).expect("record");
        assert_eq!(cache.lookup(source), Some(first));
        let second = Digest::of(b"two");
        cache.record(source, &second).expect("record");
        assert_eq!(cache.lookup(source), Some(second));
        assert_eq!(cache.lookup("oci://127.0.0.1:5000/filters/a:v2"), None);
        let _ = std::fs::remove_dir_all(cache.dir());
    }

    #[test]
    fn default_dir_follows_xdg() {
        let dir = ModuleCache::default_dir();
        assert!(dir.ends_with("wasmbridge/modules") || dir.ends_with("wasmbridge-modules"));
    }
}
