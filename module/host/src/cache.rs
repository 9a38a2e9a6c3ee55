//! The compile cache: compiled modules kept on disk, so that a restart loads them instead of
//! compiling them again.
//!
//! An entry's file name is its key: the SHA-256 of the module bytes and a fingerprint of
//! the engine (wasmtime's `precompile_compatibility_hash`, which covers the wasmtime
//! version, the target and every setting that changes the compiled code, plus this file's
//! format version). A module compiled by an engine with other settings therefore never
//! finds another engine's entry, whatever settings are added to the engine later.
//!
//! The file is a [`HEADER_LEN`]-byte header followed by what `Module::serialize` wrote:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `wbcwasm\0` |
//! | 8 | 4 | format version, little endian ([`FORMAT_VERSION`]) |
//! | 12 | 4 | header length, little endian ([`HEADER_LEN`]) |
//! | 16 | 32 | SHA-256 of the module bytes |
//! | 48 | 32 | engine fingerprint |
//! | 80 | 8 | payload length, little endian |
//! | 88 | 32 | SHA-256 of the payload |
//! | 120 | … | payload |
//!
//! Loading native code is `unsafe` in wasmtime: it trusts the bytes to be what it
//! serialized. An entry reaches wasmtime only after every header field and the payload's
//! checksum match, so a corrupt, truncated or foreign file is reported and replaced, never
//! deserialized. Entries are written to a temporary file in the same directory and renamed
//! into place, so a reader (another process, or the next start after a crash) sees a whole
//! entry or none.
//!
//! What the checksum cannot stop is someone who writes a valid entry on purpose: whoever
//! can write the cache directory can run native code in the gateway, exactly as whoever can
//! replace its binary. A directory every user may write to is therefore not used.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, Opts};
use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// The version of the entry format; part of the key, so a new format never reads an old
/// entry.
const FORMAT_VERSION: u32 = 1;
const MAGIC: [u8; 8] = *b"wbcwasm\0";
/// Bytes before the payload.
const HEADER_LEN: usize = 120;
const EXTENSION: &str = "cwasm";

/// The `outcome` label values of `wasmbridge_compile_cache_total`.
const OUTCOMES: [&str; 4] = ["hit", "miss", "corrupt", "write_error"];

/// A directory of compiled modules for one engine.
pub(crate) struct CompileCache {
    dir: PathBuf,
    engine: [u8; 32],
    metrics: CompileCacheMetrics,
}

/// Where a module's entry is, and what its header must say.
pub(crate) struct Entry {
    path: PathBuf,
    module: [u8; 32],
    engine: [u8; 32],
}

/// What looking a module up found.
pub(crate) enum Lookup {
    /// A verified entry, deserialized.
    Hit(Module),
    /// No usable entry: compile, then [`CompileCache::store`] the module under this entry.
    Compile {
        /// Where to store it.
        entry: Entry,
        /// `miss`, or `corrupt` when an entry was there (it is replaced).
        outcome: &'static str,
    },
    /// The directory must not be used: compile, store nothing.
    Off,
}

/// How often modules came from the compile cache: `wasmbridge_compile_cache_total{outcome}`
/// with `hit`, `miss` and `corrupt` (one per module compiled with a cache) and
/// `write_error` (an entry that could not be written). Register it on a prometheus registry
/// to export it; without a cache it has no series.
#[derive(Clone)]
pub struct CompileCacheMetrics {
    outcomes: IntCounterVec,
}

/// Bytes whose header and checksum were verified against the expected entry; only
/// [`verify`] makes one.
struct Verified<'a>(&'a [u8]);

/// A `Hasher` that feeds everything it is given into SHA-256, so that wasmtime's `Hash`
/// of the engine settings becomes a digest that is the same in every process (std's
/// hashers are seeded or may change between Rust releases).
struct Sha256Hasher(Sha256);

impl CompileCache {
    /// A cache in `dir` (created when the first entry is written) for modules compiled by
    /// `engine`.
    pub(crate) fn new(dir: PathBuf, engine: &Engine, metrics: CompileCacheMetrics) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        FORMAT_VERSION.hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        for outcome in OUTCOMES {
            // Present from the start, so that a scrape shows zeros rather than nothing.
            metrics.outcomes.with_label_values(&[outcome]);
        }
        CompileCache {
            dir,
            engine: hasher.0.finalize().into(),
            metrics,
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn metrics(&self) -> CompileCacheMetrics {
        self.metrics.clone()
    }

    /// The entry of `bytes` for this cache's engine.
    pub(crate) fn entry(&self, bytes: &[u8]) -> Entry {
        let module: [u8; 32] = Sha256::digest(bytes).into();
        let name = format!("{}-{}.{EXTENSION}", hex(&module), hex(&self.engine));
        Entry {
            path: self.dir.join(name),
            module,
            engine: self.engine,
        }
    }

    /// Looks up `bytes`'s module; logs and counts what it found.
    pub(crate) fn lookup(
        &self,
        engine: &Engine,
        plugin: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Lookup {
        if writable_by_everyone(&self.dir) {
            tracing::warn!(
                plugin,
                module = %path.display(),
                "compile cache {} is not used: every user may write to it, and its entries would run as native code",
                self.dir.display()
            );
            return Lookup::Off;
        }
        let entry = self.entry(bytes);
        let started = Instant::now();
        let file = match fs::read(&entry.path) {
            Ok(file) => file,
            // No entry, or no directory (a file in its place fails when writing).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                self.count("miss");
                return Lookup::Compile {
                    entry,
                    outcome: "miss",
                };
            }
            Err(e) => return self.corrupt(plugin, entry, &format!("cannot read it: {e}")),
        };
        let loaded = verify(&entry, &file).and_then(|verified| {
            deserialize(engine, verified).map_err(|e| format!("wasmtime refused it: {e:#}"))
        });
        match loaded {
            Ok(module) => {
                self.count("hit");
                tracing::info!(
                    plugin,
                    module = %path.display(),
                    entry = %entry.path.display(),
                    took_ms = millis(started),
                    "module loaded from the compile cache"
                );
                Lookup::Hit(module)
            }
            Err(reason) => self.corrupt(plugin, entry, &reason),
        }
    }

    /// Writes `module` as `entry`. A failure is logged and counted; the module is usable
    /// either way.
    pub(crate) fn store(&self, plugin: &str, entry: &Entry, module: &Module) {
        match self.write(entry, module) {
            Ok(()) => {
                tracing::debug!(plugin, entry = %entry.path.display(), "compile cache entry written")
            }
            Err(e) => {
                self.count("write_error");
                tracing::warn!(
                    plugin,
                    entry = %entry.path.display(),
                    "cannot write the compile cache entry, the module is used without it: {e}"
                );
            }
        }
    }

    fn write(&self, entry: &Entry, module: &Module) -> io::Result<()> {
        let payload = module.serialize().map_err(io::Error::other)?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        header.extend_from_slice(&entry.module);
        header.extend_from_slice(&entry.engine);
        header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        header.extend_from_slice(&Sha256::digest(&payload));
        debug_assert_eq!(header.len(), HEADER_LEN);

        fs::create_dir_all(&self.dir)?;
        // Unique per process and call, so that concurrent writers never share a file; the
        // rename then replaces the entry (or a corrupt one) in one step.
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
        let name = entry
            .path
            .file_name()
            .map(Path::new)
            .unwrap_or(Path::new("entry"));
        let temp = self.dir.join(format!(
            ".{}.{}-{}.tmp",
            name.display(),
            std::process::id(),
            hex(&nonce)
        ));
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(&header)?;
            file.write_all(&payload)?;
            // On disk before the rename, so that a crash cannot leave a renamed but empty
            // entry.
            file.sync_all()?;
            fs::rename(&temp, &entry.path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    fn corrupt(&self, plugin: &str, entry: Entry, reason: &str) -> Lookup {
        self.count("corrupt");
        tracing::warn!(
            plugin,
            "compile cache entry {} is corrupt ({reason}); compiling the module again and replacing it",
            entry.path.display()
        );
        Lookup::Compile {
            entry,
            outcome: "corrupt",
        }
    }

    fn count(&self, outcome: &str) {
        self.metrics.outcomes.with_label_values(&[outcome]).inc();
    }
}

impl CompileCacheMetrics {
    pub(crate) fn new() -> Self {
        let outcomes = IntCounterVec::new(
            Opts::new(
                "wasmbridge_compile_cache_total",
                "Modules looked up in the compile cache, by outcome (hit, miss, corrupt), and entries that could not be written (write_error).",
            ),
            &["outcome"],
        )
        .expect("a valid metric name and labels");
        CompileCacheMetrics { outcomes }
    }

    /// How many times `outcome` (`hit`, `miss`, `corrupt`, `write_error`) happened so far.
    pub fn get(&self, outcome: &str) -> u64 {
        if OUTCOMES.contains(&outcome) {
            self.outcomes.with_label_values(&[outcome]).get()
        } else {
            0
        }
    }
}

impl Collector for CompileCacheMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.outcomes.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.outcomes.collect()
    }
}

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

/// Checks `file` against what `entry` must hold; the reason when it does not.
fn verify<'a>(entry: &Entry, file: &'a [u8]) -> Result<Verified<'a>, String> {
    let Some((header, payload)) = file.split_at_checked(HEADER_LEN) else {
        return Err(format!(
            "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
            file.len()
        ));
    };
    let field = |at: usize, len: usize| &header[at..at + len];
    let u32_at = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(field(at, 4));
        u32::from_le_bytes(b)
    };
    if field(0, 8) != MAGIC {
        return Err("not a wasmbridge compile cache entry (wrong magic)".into());
    }
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, expected {FORMAT_VERSION}"
        ));
    }
    if u32_at(12) as usize != HEADER_LEN {
        return Err(format!(
            "header length {}, expected {HEADER_LEN}",
            u32_at(12)
        ));
    }
    if field(16, 32) != entry.module {
        return Err("made from other module bytes".into());
    }
    if field(48, 32) != entry.engine {
        return Err("made by an engine with other settings".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(field(80, 8));
    let len = u64::from_le_bytes(len);
    if len != payload.len() as u64 {
        return Err(format!(
            "the header announces {len} bytes of compiled code, the file holds {}",
            payload.len()
        ));
    }
    if Sha256::digest(payload).as_slice() != field(88, 32) {
        return Err("the compiled code does not match its checksum".into());
    }
    Ok(Verified(payload))
}

// The one place in the crate that needs `unsafe`.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, verified: Verified<'_>) -> wasmtime::Result<Module> {
    // SAFETY: `Module::deserialize` requires bytes that `Module::serialize` produced,
    // unmodified. `Verified` holds the payload of an entry whose header names this module
    // and this engine and whose SHA-256 matches the one `CompileCache::write` recorded
    // beside the output of `Module::serialize`; the bytes are in memory, so they cannot
    // change between the check and this call. The directory is one no other user can write
    // to (`writable_by_everyone`); trusting it is trusting whoever deployed the gateway, as
    // with its binary. wasmtime itself rejects, safely, output of another wasmtime version
    // or configuration.
    unsafe { Module::deserialize(engine, verified.0) }
}

/// True for a directory every user may write to (such as `/tmp` itself), on Unix.
fn writable_by_everyone(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(dir).is_ok_and(|meta| meta.permissions().mode() & 0o002 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        false
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Milliseconds since `started`, to the microsecond.
pub(crate) fn millis(started: Instant) -> f64 {
    started.elapsed().as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests;
