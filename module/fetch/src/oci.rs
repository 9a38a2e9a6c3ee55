//! A small client of the OCI distribution API: what pulling and pushing a Wasm module
//! needs (manifests, blobs, monolithic uploads, anonymous bearer tokens).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Mutex;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::Deserialize;

use crate::http::{Http, Reply, status_error};
use crate::media_type::{
    DOCKER_LAYER_GZIP, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP,
    OCI_LAYER_TAR, OCI_MANIFEST, WASM_CONFIG, WASM_LAYER,
};
use crate::reference::is_loopback;
use crate::{
    Digest, FetchError, FetchErrorKind, ModuleCache, OciReference, PushFormat, Pushed, tar,
};

/// What a pull gave.
pub(crate) struct Pulled {
    pub module: Vec<u8>,
    pub manifest: Digest,
    pub from_cache: bool,
}

/// An image manifest, an image index or a Docker manifest list: what is read of them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

/// One repository of one registry, with the bearer token it handed out, if any.
struct Repository<'a> {
    http: &'a Http,
    /// `scheme://registry/v2/repository`.
    base: String,
    repository: String,
    /// The actions a token is asked for (`pull` or `pull,push`).
    actions: &'static str,
    token: Mutex<Option<String>>,
}

/// Pulls the module of `reference`: the manifest (through an index to the Wasm platform's
/// entry), then the module layer, unless `cache` has it.
pub(crate) async fn pull(
    http: &Http,
    reference: &OciReference,
    cache: &ModuleCache,
) -> Result<Pulled, FetchError> {
    let origin = reference.to_string();
    let fail = |kind| FetchError::new(&origin, kind);
    let repo = Repository::new(http, reference, "pull");
    let wanted = reference.manifest_reference();
    let (mut bytes, mut manifest) = repo
        .manifest(&wanted, reference.digest)
        .await
        .map_err(fail)?;
    if is_index(&manifest) {
        let entry = pick_entry(&manifest.manifests).map_err(fail)?;
        let digest = Digest::parse_oci(&entry.digest)
            .map_err(|e| fail(FetchErrorKind::Unsupported(e.to_string())))?;
        (bytes, manifest) = repo
            .manifest(&entry.digest, Some(digest))
            .await
            .map_err(fail)?;
    }
    let manifest_digest = Digest::of(&bytes);
    let layer = module_layer(&manifest).map_err(fail)?;
    let layer_digest = Digest::parse_oci(&layer.digest).map_err(|e| {
        fail(FetchErrorKind::Unsupported(format!(
            "the module layer: {e}"
        )))
    })?;
    let packed = layer.media_type != WASM_LAYER;
    // A packed layer's digest is not the module's; the index remembers what it unpacked to.
    let blob_key = format!("blob:{}", layer_digest.oci());
    let known = if packed {
        cache.lookup(&blob_key)
    } else {
        Some(layer_digest)
    };
    if let Some(module) = known.and_then(|d| cache.get(&d)) {
        return Ok(Pulled {
            module,
            manifest: manifest_digest,
            from_cache: true,
        });
    }
    let blob = repo.blob(&layer_digest, layer.size).await.map_err(fail)?;
    let module = if packed {
        let archive = if blob.starts_with(&[0x1f, 0x8b]) {
            gunzip(&blob, http.max_bytes()).map_err(fail)?
        } else {
            blob
        };
        let module = tar::find_plugin(&archive).map_err(|why| {
            fail(FetchErrorKind::Unsupported(format!(
                "layer {}: {why}",
                layer.digest
            )))
        })?;
        let _ = cache.record(&blob_key, &Digest::of(&module));
        module
    } else {
        blob
    };
    Ok(Pulled {
        module,
        manifest: manifest_digest,
        from_cache: false,
    })
}

/// Pushes `module` as `reference`'s tag in `format`.
pub(crate) async fn push(
    http: &Http,
    reference: &OciReference,
    module: &[u8],
    format: PushFormat,
) -> Result<Pushed, FetchError> {
    let origin = reference.to_string();
    let fail = |kind| FetchError::new(&origin, kind);
    let Some(tag) = reference
        .tag
        .as_deref()
        .filter(|_| reference.digest.is_none())
    else {
        return Err(fail(FetchErrorKind::Refused(
            "a push needs a tag (`oci://registry/repository:tag`), not a digest".into(),
        )));
    };
    let (config_type, config, layer_type, layer) = match format {
        PushFormat::WasmArtifact => (WASM_CONFIG, b"{}".to_vec(), WASM_LAYER, module.to_vec()),
        PushFormat::Image => {
            let archive = tar::plugin_archive(module);
            let config = serde_json::json!({
                "architecture": "wasm",
                "os": "wasip1",
                "rootfs": {"type": "layers", "diff_ids": [Digest::of(&archive).oci()]},
                "config": {},
            });
            let layer = gzip(&archive).map_err(fail)?;
            (
                OCI_CONFIG,
                config.to_string().into_bytes(),
                OCI_LAYER_GZIP,
                layer,
            )
        }
    };
    let repo = Repository::new(http, reference, "pull,push");
    repo.upload(&config).await.map_err(fail)?;
    repo.upload(&layer).await.map_err(fail)?;
    let descriptor = |media_type: &str, blob: &[u8]| {
        serde_json::json!({
            "mediaType": media_type,
            "digest": Digest::of(blob).oci(),
            "size": blob.len(),
        })
    };
    let mut layer_descriptor = descriptor(layer_type, &layer);
    if format == PushFormat::WasmArtifact {
        layer_descriptor["annotations"] =
            serde_json::json!({"org.opencontainers.image.title": tar::PLUGIN_FILE});
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_type, &config),
        "layers": [layer_descriptor],
    })
    .to_string()
    .into_bytes();
    let url = format!("{}/manifests/{tag}", repo.base);
    let reply = repo
        .request(&url, |c| {
            c.put(&url)
                .header(CONTENT_TYPE, OCI_MANIFEST)
                .body(manifest.clone())
        })
        .await
        .map_err(fail)?;
    if !reply.status.is_success() {
        return Err(fail(status_error(&url, reply.status, &reply.body)));
    }
    Ok(Pushed {
        manifest: Digest::of(&manifest),
        module: Digest::of(module),
    })
}

fn is_index(manifest: &Manifest) -> bool {
    matches!(
        manifest.media_type.as_deref(),
        Some(OCI_INDEX | DOCKER_LIST)
    ) || (manifest.layers.is_empty() && !manifest.manifests.is_empty())
}

/// The entry of an index for Wasm: the one whose platform is `wasm` / `wasi*`, or the only
/// one.
fn pick_entry(entries: &[Descriptor]) -> Result<&Descriptor, FetchErrorKind> {
    let wasm = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.architecture == "wasm" || p.os.starts_with("wasi"))
    };
    if let Some(entry) = entries.iter().find(wasm) {
        return Ok(entry);
    }
    match entries {
        [only] => Ok(only),
        _ => Err(FetchErrorKind::Unsupported(format!(
            "the image index has {} entries and none for the wasm platform ({})",
            entries.len(),
            entries
                .iter()
                .map(|d| d
                    .platform
                    .as_ref()
                    .map_or("no platform".to_string(), |p| format!(
                        "{}/{}",
                        p.os, p.architecture
                    )))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The layer that holds the module: a Wasm artifact's module layer, or the one tar layer of
/// Istio's standard image.
fn module_layer(manifest: &Manifest) -> Result<&Descriptor, FetchErrorKind> {
    if let Some(layer) = manifest.layers.iter().find(|l| l.media_type == WASM_LAYER) {
        return Ok(layer);
    }
    let tar_types = [OCI_LAYER_GZIP, OCI_LAYER_TAR, DOCKER_LAYER_GZIP];
    match manifest.layers.as_slice() {
        [only] if tar_types.contains(&only.media_type.as_str()) => Ok(only),
        layers => Err(FetchErrorKind::Unsupported(format!(
            "not a Wasm image: expected a layer of type {WASM_LAYER}, or exactly one tar layer \
             holding {} (Istio's image format); the image (config {}) has layers [{}]",
            tar::PLUGIN_FILE,
            manifest
                .config
                .as_ref()
                .map_or("none", |c| c.media_type.as_str()),
            layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn gunzip(bytes: &[u8], max: u64) -> Result<Vec<u8>, FetchErrorKind> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| FetchErrorKind::Unsupported(format!("the layer is not valid gzip: {e}")))?;
    if out.len() as u64 > max {
        return Err(FetchErrorKind::Unsupported(format!(
            "the unpacked layer is larger than the {max} bytes accepted"
        )));
    }
    Ok(out)
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, FetchErrorKind> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| FetchErrorKind::Io {
            path: "<gzip>".into(),
            message: e.to_string(),
        })
}

/// The parameters of a `WWW-Authenticate: Bearer k="v",…` challenge.
fn bearer_challenge(header: &str) -> Option<BTreeMap<String, String>> {
    let rest = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))?;
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
            value
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect()
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    Some(params)
}

impl<'a> Repository<'a> {
    fn new(http: &'a Http, reference: &OciReference, actions: &'static str) -> Repository<'a> {
        let scheme = if http.insecure || is_loopback(reference.host()) {
            "http"
        } else {
            "https"
        };
        Repository {
            http,
            base: format!(
                "{scheme}://{}/v2/{}",
                reference.registry, reference.repository
            ),
            repository: reference.repository.clone(),
            actions,
            token: Mutex::new(None),
        }
    }

    fn current_token(&self) -> Option<String> {
        self.token.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// An exchange with the registry; a 401 with a bearer challenge gets an anonymous token
    /// from the realm and is sent once more with it.
    async fn request(
        &self,
        url: &str,
        make: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Reply, FetchErrorKind> {
        let send = |token: Option<String>| {
            let make = &make;
            async move {
                self.http
                    .exchange(url, |c| match &token {
                        Some(token) => make(c).bearer_auth(token),
                        None => make(c),
                    })
                    .await
            }
        };
        let token = self.current_token();
        let had_token = token.is_some();
        let reply = send(token).await?;
        if reply.status != StatusCode::UNAUTHORIZED || had_token {
            return Ok(reply);
        }
        let challenge = reply
            .headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_challenge);
        let Some(challenge) = challenge else {
            return Err(FetchErrorKind::Refused(format!(
                "{url} asks for credentials (401) in a way wasmbridge does not support: only \
                 anonymous bearer tokens are"
            )));
        };
        let token = self.fetch_token(&challenge).await?;
        if let Ok(mut slot) = self.token.lock() {
            *slot = Some(token.clone());
        }
        send(Some(token)).await
    }

    async fn fetch_token(
        &self,
        challenge: &BTreeMap<String, String>,
    ) -> Result<String, FetchErrorKind> {
        let realm = challenge.get("realm").ok_or_else(|| {
            FetchErrorKind::Refused("the registry's bearer challenge has no realm".into())
        })?;
        let scope = challenge
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:{}", self.repository, self.actions));
        let mut query = vec![("scope", scope)];
        if let Some(service) = challenge.get("service") {
            query.push(("service", service.clone()));
        }
        let reply = self
            .http
            .exchange(realm, |c| c.get(realm).query(&query))
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(realm, reply.status, &reply.body));
        }
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = serde_json::from_slice(&reply.body).map_err(|e| {
            FetchErrorKind::Unsupported(format!("the token answer of {realm} is not JSON: {e}"))
        })?;
        token.token.or(token.access_token).ok_or_else(|| {
            FetchErrorKind::Unsupported(format!("the token answer of {realm} has no token"))
        })
    }

    /// A manifest by tag or digest, checked against `digest` when given.
    async fn manifest(
        &self,
        reference: &str,
        digest: Option<Digest>,
    ) -> Result<(Vec<u8>, Manifest), FetchErrorKind> {
        let url = format!("{}/manifests/{reference}", self.base);
        let accept = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST].join(", ");
        let reply = self
            .request(&url, |c| c.get(&url).header(ACCEPT, &accept))
            .await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(FetchErrorKind::NotFound(format!(
                    "the registry has no manifest `{reference}` in repository `{}`",
                    self.repository
                )));
            }
            status => return Err(status_error(&url, status, &reply.body)),
        }
        let actual = Digest::of(&reply.body);
        if let Some(expected) = digest
            && actual != expected
        {
            return Err(FetchErrorKind::Integrity(format!(
                "the registry answered {url} with a manifest of digest {}, not {}",
                actual.oci(),
                expected.oci()
            )));
        }
        let mut manifest: Manifest = serde_json::from_slice(&reply.body).map_err(|e| {
            FetchErrorKind::Unsupported(format!("the manifest is not one wasmbridge reads: {e}"))
        })?;
        if manifest.media_type.is_none() {
            manifest.media_type = reply
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        }
        Ok((reply.body, manifest))
    }

    /// A blob, checked against its digest and size.
    async fn blob(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, FetchErrorKind> {
        if size > self.http.max_bytes() {
            return Err(FetchErrorKind::Unsupported(format!(
                "the layer has {size} bytes, more than the {} accepted",
                self.http.max_bytes()
            )));
        }
        let url = format!("{}/blobs/{}", self.base, digest.oci());
        let reply = self.request(&url, |c| c.get(&url)).await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(FetchErrorKind::NotFound(format!(
                    "the registry has no blob {} in repository `{}`",
                    digest.oci(),
                    self.repository
                )));
            }
            status => return Err(status_error(&url, status, &reply.body)),
        }
        let actual = Digest::of(&reply.body);
        if actual != *digest {
            return Err(FetchErrorKind::Integrity(format!(
                "the registry answered {url} with a blob of digest {}",
                actual.oci()
            )));
        }
        Ok(reply.body)
    }

    /// Uploads a blob in one request (POST for a session, PUT with the digest), unless
    /// the registry has it already.
    async fn upload(&self, blob: &[u8]) -> Result<(), FetchErrorKind> {
        let digest = Digest::of(blob);
        let url = format!("{}/blobs/{}", self.base, digest.oci());
        let reply = self.request(&url, |c| c.head(&url)).await?;
        if reply.status == StatusCode::OK {
            return Ok(());
        }
        let url = format!("{}/blobs/uploads/", self.base);
        let reply = self.request(&url, |c| c.post(&url)).await?;
        if reply.status != StatusCode::ACCEPTED {
            return Err(status_error(&url, reply.status, &reply.body));
        }
        let location = reply
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                FetchErrorKind::Unsupported(format!("{url} started an upload without a Location"))
            })?;
        let mut put = Url::parse(&url)
            .and_then(|base| base.join(location))
            .map_err(|e| {
                FetchErrorKind::Unsupported(format!("{url} gave a bad upload Location: {e}"))
            })?;
        put.query_pairs_mut().append_pair("digest", &digest.oci());
        let put = put.to_string();
        let reply = self
            .request(&put, |c| {
                c.put(&put)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(blob.to_vec())
            })
            .await?;
        if reply.status != StatusCode::CREATED {
            return Err(status_error(&put, reply.status, &reply.body));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_parsed() {
        let params = bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#,
        )
        .expect("bearer");
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(params["scope"], "repository:library/ubuntu:pull,push");
        assert!(bearer_challenge(r#"Basic realm="x""#).is_none());
    }

    fn descriptor(media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: Digest::of(media_type.as_bytes()).oci(),
            size: 1,
            platform: None,
        }
    }

    #[test]
    fn the_module_layer_of_either_format() {
        let artifact = Manifest {
            media_type: Some(OCI_MANIFEST.into()),
            config: Some(descriptor(WASM_CONFIG)),
            layers: vec![descriptor(WASM_LAYER)],
            manifests: vec![],
        };
        assert_eq!(
            module_layer(&artifact).map(|l| l.media_type.as_str()).ok(),
            Some(WASM_LAYER)
        );
        let image = Manifest {
            media_type: Some(DOCKER_MANIFEST.into()),
            config: None,
            layers: vec![descriptor(DOCKER_LAYER_GZIP)],
            manifests: vec![],
        };
        assert!(module_layer(&image).is_ok());
        let two = Manifest {
            layers: vec![descriptor(OCI_LAYER_GZIP), descriptor(OCI_LAYER_GZIP)],
            ..image
        };
        let err = module_layer(&two).expect_err("two tar layers").to_string();
        assert!(err.contains("not a Wasm image"), "{err}");
    }
}
