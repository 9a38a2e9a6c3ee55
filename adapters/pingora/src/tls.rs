//! TLS listeners' certificates, read from PEM files at start and again on every reload, so
//! that a renewed certificate takes effect without a restart: the listener asks
//! [`ReloadableCertificate`] for the current one at each handshake.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{CertificateDer, ClientHello, CryptoProvider, ResolvesServerCert};
use wasmbridge_config::ListenerTls;

/// A listener's certificate and key, replaceable while the listener serves.
pub struct ReloadableCertificate {
    files: ListenerTls,
    current: ArcSwap<CertifiedKey>,
}

impl std::fmt::Debug for ReloadableCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableCertificate")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish_non_exhaustive()
    }
}

impl ReloadableCertificate {
    /// Reads the files; the error names the file and what is wrong with it.
    pub fn load(files: &ListenerTls) -> Result<ReloadableCertificate, String> {
        let key = read(files)?;
        Ok(ReloadableCertificate {
            files: files.clone(),
            current: ArcSwap::from_pointee(key),
        })
    }

    /// Reads the files again, without using what they hold yet.
    pub fn read(&self) -> Result<CertifiedKey, String> {
        read(&self.files)
    }

    /// Serves `key` from the next handshake on.
    pub fn set(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The certificates of a PEM file, at least one; the error names the file.
pub(crate) fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{shown}: not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{shown}: no PEM certificate in the file"));
    }
    Ok(certs)
}

fn read(files: &ListenerTls) -> Result<CertifiedKey, String> {
    pingora::tls::install_default_crypto_provider();
    let cert_path = files.cert.display().to_string();
    let key_path = files.key.display().to_string();
    let certs = pem_certificates(&files.cert)?;
    let pem = std::fs::read(&files.key).map_err(|e| format!("{key_path}: {e}"))?;
    let key = rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| format!("{key_path}: not a PEM private key: {e}"))?
        .ok_or_else(|| format!("{key_path}: no PEM private key in the file"))?;
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| "no TLS crypto provider is installed".to_string())?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{key_path}: unusable private key: {e}"))?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{key_path}: the key does not belong to {cert_path}: {e}"))?;
    Ok(certified)
}
