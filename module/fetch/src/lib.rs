//! Module sources for wasmbridge: Wasm modules fetched over HTTPS (checked against a
//! required sha256) and pulled from OCI registries, kept in a local content-addressed
//! cache ([`ModuleCache`]), and pushed to registries for filter authors. It sits under
//! `wasmbridge-config` (which fetches a plugin's `module: https://…` or `oci://…` when it
//! builds the plugins) and the `wasmbridge pull` / `push` commands; it knows nothing of
//! proxies. A crate of its own so that the network stack (reqwest over rustls) stays out
//! of configuration parsing, which is offline.
//!
//! Registries speak the OCI distribution API. Pulled images may be the Wasm OCI artifact
//! (a layer of type `application/vnd.module.wasm.content.layer.v1+wasm`, as `wasme` and
//! Istio's "compat" format) or Istio's standard image (one tar layer, gzipped or not,
//! holding `plugin.wasm`); [`Fetcher::push`] writes either. Cleartext HTTP is used only for
//! loopback hosts, unless [`FetchOptions::insecure`] says otherwise.
//!
//! ```no_run
//! use wasmbridge_fetch::{Digest, FetchOptions, Fetcher, OciReference};
//!
//! let fetcher = Fetcher::new(FetchOptions::new("/var/cache/wasmbridge/modules"))?;
//! let sha256: Digest = "3b1f4f5e8bb2f3b0c1a2d3e4f5061728394a5b6c7d8e9f00112233445566778f".parse()?;
//! let module = fetcher.fetch_https("https://example.com/add_header.wasm", &sha256)?;
//! println!("{} at {}", module.digest, module.path.display());
//! let reference = OciReference::parse("oci://127.0.0.1:5000/filters/add_header:v1")?;
//! let module = fetcher.fetch_oci(&reference, None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

mod cache;
mod http;
mod oci;
mod reference;
mod tar;

pub use cache::ModuleCache;
pub use http::is_retryable_status;
pub use reference::{Digest, OciReference, ParseError, is_loopback};

/// Media types of the OCI formats read and written.
pub mod media_type {
    /// The config of a Wasm OCI artifact (wasme, Istio's compat format).
    pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
    /// The layer of a Wasm OCI artifact: the module itself.
    pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
    /// An OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// An OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// An OCI gzipped tar layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// An OCI tar layer.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// A Docker v2 (schema 2) manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// A Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// A Docker gzipped tar layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// How modules are fetched: where they are cached, what TLS trusts, retries and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The module cache directory.
    pub cache_dir: PathBuf,
    /// A PEM file of extra CA certificates to trust beside the system's and Mozilla's roots
    /// (default: `$WASMBRIDGE_CA_FILE` when set).
    pub ca_file: Option<PathBuf>,
    /// Speak cleartext HTTP to registries that are not loopback hosts (default false;
    /// loopback registries are always spoken to in cleartext).
    pub insecure: bool,
    /// How many times a request is retried after a connection error, a timeout, or a 5xx,
    /// 408 or 429 answer (default 3); other answers are not retried.
    pub retries: u32,
    /// The first wait before a retry (default 250 ms), doubled at each retry.
    pub backoff: Duration,
    /// The time allowed to connect (default 10 s).
    pub connect_timeout: Duration,
    /// The time allowed for one request, body included (default 120 s).
    pub timeout: Duration,
    /// The largest module, manifest or layer accepted, in bytes (default 256 MiB).
    pub max_bytes: u64,
}

/// Fetches modules into a [`ModuleCache`] and pushes them to registries. Each call blocks;
/// the network work runs on a thread of its own, so calling from inside an async runtime
/// is safe (if blocking).
#[derive(Debug, Clone)]
pub struct Fetcher {
    options: FetchOptions,
    cache: ModuleCache,
    ca_pem: Option<Vec<u8>>,
}

/// A module that is in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The module's SHA-256.
    pub digest: Digest,
    /// Where it is in the cache.
    pub path: PathBuf,
    /// The module.
    pub bytes: Vec<u8>,
    /// Whether it came from the cache without a download.
    pub from_cache: bool,
}

/// What [`Fetcher::push`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest's digest: pull `oci://registry/repository@sha256:<hex>` to get exactly
    /// this.
    pub manifest: Digest,
    /// The digest of the module itself.
    pub module: Digest,
}

/// The image format [`Fetcher::push`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PushFormat {
    /// The Wasm OCI artifact: a config of type [`media_type::WASM_CONFIG`] and one layer of
    /// type [`media_type::WASM_LAYER`] that is the module (wasme, Istio's compat format).
    #[default]
    WasmArtifact,
    /// Istio's standard image: an OCI image whose one gzipped tar layer holds
    /// `plugin.wasm`.
    Image,
}

/// Why a module could not be fetched or pushed. Displays as `<source>: <what went wrong>`.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {kind}")]
pub struct FetchError {
    origin: String,
    kind: FetchErrorKind,
}

/// What went wrong, without the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// The bytes do not have the expected sha256; nothing was cached.
    #[error(
        "sha256 mismatch: expected {expected}, got {actual}; the module was refused and not cached"
    )]
    HashMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what was received.
        actual: Digest,
    },
    /// The registry answered something other than what was asked: a manifest or blob
    /// whose digest is not the one requested.
    #[error("{0}")]
    Integrity(String),
    /// The server or registry has no such thing (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// An answer that is neither success nor retried.
    #[error("{url} answered {status}{detail}")]
    Status {
        /// What was asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body, when it had one.
        detail: String,
    },
    /// The server could not be reached or did not answer in time, after every retry.
    #[error("{url}: {message} (after {attempts} attempt(s))")]
    Network {
        /// What was asked.
        url: String,
        /// How many times.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// The image or answer is not something wasmbridge can load.
    #[error("{0}")]
    Unsupported(String),
    /// The source is refused as written (cleartext to a remote host, a bad URL).
    #[error("{0}")]
    Refused(String),
    /// The cache or a local file could not be written or read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        message: String,
    },
    /// The TLS trust settings could not be used.
    #[error("{0}")]
    Tls(String),
}

impl FetchOptions {
    /// Defaults, caching in `cache_dir`, trusting `$WASMBRIDGE_CA_FILE` when set.
    pub fn new(cache_dir: impl Into<PathBuf>) -> FetchOptions {
        FetchOptions {
            cache_dir: cache_dir.into(),
            ca_file: std::env::var_os("WASMBRIDGE_CA_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            insecure: false,
            retries: 3,
            backoff: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            max_bytes: 256 << 20,
        }
    }
}

impl FetchError {
    /// What was being fetched or pushed (a URL, a reference, a file).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// What went wrong.
    pub fn kind(&self) -> &FetchErrorKind {
        &self.kind
    }

    /// Whether the module did not have the expected sha256.
    pub fn is_hash_mismatch(&self) -> bool {
        matches!(self.kind, FetchErrorKind::HashMismatch { .. })
    }

    /// Whether the server or registry does not have what was asked.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, FetchErrorKind::NotFound(_))
    }

    pub(crate) fn new(origin: impl Into<String>, kind: FetchErrorKind) -> FetchError {
        FetchError {
            origin: origin.into(),
            kind,
        }
    }
}

impl Fetcher {
    /// A fetcher with these options; reads the CA file now, so a bad one is reported here.
    pub fn new(options: FetchOptions) -> Result<Fetcher, FetchError> {
        let ca_pem = match &options.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                FetchError::new(
                    path.display().to_string(),
                    FetchErrorKind::Tls(format!("cannot read the CA file: {e}")),
                )
            })?),
            None => None,
        };
        Ok(Fetcher {
            cache: ModuleCache::new(&options.cache_dir),
            options,
            ca_pem,
        })
    }

    /// The cache modules go to.
    pub fn cache(&self) -> &ModuleCache {
        &self.cache
    }

    /// The options.
    pub fn options(&self) -> &FetchOptions {
        &self.options
    }

    /// The module at an `https://` URL (`http://` only for a loopback host, or with
    /// [`FetchOptions::insecure`]), which must have the digest `sha256`. A module already in
    /// the cache under that digest is used without a download; one with another digest is
    /// refused and not cached.
    pub fn fetch_https(&self, url: &str, sha256: &Digest) -> Result<Fetched, FetchError> {
        if let Some(bytes) = self.cache.get(sha256) {
            tracing::debug!(url, digest = %sha256, "module found in the cache");
            return Ok(Fetched {
                digest: *sha256,
                path: self.cache.path(sha256),
                bytes,
                from_cache: true,
            });
        }
        self.check_url(url)?;
        let bytes = self.run(url, |http| async move { http.download(url).await })?;
        let actual = Digest::of(&bytes);
        if actual != *sha256 {
            return Err(FetchError::new(
                url,
                FetchErrorKind::HashMismatch {
                    expected: *sha256,
                    actual,
                },
            ));
        }
        let fetched = self.keep(url, bytes)?;
        tracing::info!(url, digest = %fetched.digest, path = %fetched.path.display(), "module downloaded");
        Ok(fetched)
    }

    /// The module of an OCI image (either format the crate reads). With `sha256`, the module
    /// must have that digest (or the image manifest must: Istio's meaning of the key). A
    /// reference by digest found in the cache needs no network; a tag is asked of the
    /// registry each time, and when the registry cannot be reached the module the tag gave
    /// last is used from the cache, with a warning.
    pub fn fetch_oci(
        &self,
        reference: &OciReference,
        sha256: Option<&Digest>,
    ) -> Result<Fetched, FetchError> {
        let origin = reference.to_string();
        let check = |module: Digest, manifest: Option<Digest>| match sha256 {
            Some(want) if *want != module && Some(*want) != manifest => Err(FetchError::new(
                &origin,
                FetchErrorKind::HashMismatch {
                    expected: *want,
                    actual: module,
                },
            )),
            _ => Ok(()),
        };
        let cached = |digest: Digest| {
            self.cache.get(&digest).map(|bytes| Fetched {
                digest,
                path: self.cache.path(&digest),
                bytes,
                from_cache: true,
            })
        };
        if reference.digest.is_some()
            && let Some(found) = self.cache.lookup(&origin).and_then(cached)
        {
            check(found.digest, reference.digest)?;
            return Ok(found);
        }
        let pulled = self.run(&origin, |http| async move {
            oci::pull(&http, reference, &self.cache).await
        });
        let pulled = match pulled {
            Ok(pulled) => pulled,
            Err(err) if matches!(err.kind, FetchErrorKind::Network { .. }) => {
                match self.cache.lookup(&origin).and_then(cached) {
                    Some(found) => {
                        tracing::warn!(reference = %origin, digest = %found.digest, "the registry cannot be reached ({err}); using the module this reference gave last");
                        check(found.digest, None)?;
                        return Ok(found);
                    }
                    None => return Err(err),
                }
            }
            Err(err) => return Err(err),
        };
        let digest = Digest::of(&pulled.module);
        check(digest, Some(pulled.manifest))?;
        let fetched = if pulled.from_cache {
            // Already in the cache: only the index may need the reference.
            if self.cache.lookup(&origin) != Some(digest) {
                let _ = self.cache.record(&origin, &digest);
            }
            Fetched {
                digest,
                path: self.cache.path(&digest),
                bytes: pulled.module,
                from_cache: true,
            }
        } else {
            self.keep(&origin, pulled.module)?
        };
        tracing::info!(reference = %origin, manifest = %pulled.manifest.oci(), digest = %fetched.digest, "module pulled");
        Ok(fetched)
    }

    /// Pushes `module` to the registry as `reference` (which names a tag) in `format`:
    /// blobs by monolithic upload (skipped when the registry has them), then the manifest.
    pub fn push(
        &self,
        module: &[u8],
        reference: &OciReference,
        format: PushFormat,
    ) -> Result<Pushed, FetchError> {
        let origin = reference.to_string();
        if !module.starts_with(b"\0asm") {
            return Err(FetchError::new(
                &origin,
                FetchErrorKind::Refused("the module is not a WebAssembly binary".into()),
            ));
        }
        self.run(&origin, |http| async move {
            oci::push(&http, reference, module, format).await
        })
    }

    /// Stores fetched bytes and records which source gave them.
    fn keep(&self, origin: &str, bytes: Vec<u8>) -> Result<Fetched, FetchError> {
        let io = |e: std::io::Error| {
            FetchError::new(
                origin,
                FetchErrorKind::Io {
                    path: self.cache.dir().display().to_string(),
                    message: format!("cannot write the module cache: {e}"),
                },
            )
        };
        let (digest, path) = self.cache.put(&bytes).map_err(io)?;
        self.cache.record(origin, &digest).map_err(io)?;
        Ok(Fetched {
            digest,
            path,
            bytes,
            from_cache: false,
        })
    }

    fn check_url(&self, url: &str) -> Result<(), FetchError> {
        check_url(url, self.options.insecure)
            .map_err(|why| FetchError::new(url, FetchErrorKind::Refused(why)))
    }

    /// Runs network work on a thread of its own with a current-thread runtime (callers may
    /// be inside another runtime) and a client made for it.
    fn run<T, F, Fut>(&self, origin: &str, work: F) -> Result<T, FetchError>
    where
        T: Send,
        F: FnOnce(http::Http) -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, FetchError>>,
    {
        let http = http::Http::new(&self.options, self.ca_pem.as_deref())
            .map_err(|kind| FetchError::new(origin, kind))?;
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        FetchError::new(
                            origin,
                            FetchErrorKind::Io {
                                path: String::from("<runtime>"),
                                message: e.to_string(),
                            },
                        )
                    })?;
                runtime.block_on(work(http))
            });
            worker.join().unwrap_or_else(|_| {
                Err(FetchError::new(
                    origin,
                    FetchErrorKind::Io {
                        path: String::from("<fetch thread>"),
                        message: "the fetch thread panicked".into(),
                    },
                ))
            })
        })
    }
}

/// Whether `url` is one modules may be fetched from: an `https://` URL, or an `http://`
/// one whose host is loopback (any host with `insecure`); the error says why not.
pub fn check_url(url: &str, insecure: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL `{url}`: {e}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid URL `{url}`: no host"));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if insecure || parsed.host_str().is_some_and(reference::is_loopback) => Ok(()),
        "http" => Err(format!(
            "cleartext http:// is accepted only for loopback hosts (localhost, 127.0.0.0/8, \
             ::1); use https:// for `{url}`"
        )),
        other => Err(format!("unsupported scheme `{other}` in `{url}`")),
    }
}

/// Reads a local module, checking it against `sha256` when given.
pub fn read_file(path: &Path, sha256: Option<&Digest>) -> Result<Vec<u8>, FetchError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        FetchError::new(
            &origin,
            FetchErrorKind::Io {
                path: origin.clone(),
                message: e.to_string(),
            },
        )
    })?;
    if let Some(expected) = sha256 {
        let actual = Digest::of(&bytes);
        if actual != *expected {
            return Err(FetchError::new(
                &origin,
                FetchErrorKind::HashMismatch {
                    expected: *expected,
                    actual,
                },
            ));
        }
    }
    Ok(bytes)
}
