//! Native TLS: rustls with the `ring` provider, TLS 1.3 and 1.2 only, the certificate and key read from
//! `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM). A renewed certificate is taken up without a restart: on SIGHUP,
//! and when the files change (checked every `TLS_RELOAD_INTERVAL`). New handshakes get the new pair;
//! connections already open keep theirs. A pair that does not load (unreadable, not PEM, a key that does
//! not match the certificate) is refused, logged and counted, and the one in use stays.
//!
//! `spki_pin` and `pin_of_pem` compute the SPKI SHA-256 pins that `shopd pins` prints for the app.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::config::TlsConfig;
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Content { path: String, message: String },
    #[error("TLS set-up: {0}")]
    Setup(String),
}

/// rustls 0.23.48 deprecates its *ring* provider for having no post-quantum key exchange; shopd keeps it (one
/// crypto library, no C build of aws-lc, see deny.toml) and docs/supply-chain.md says what that means.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn content_error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::Content {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The certificate chain (leaf first) and private key of `files`, checked to belong together.
fn load_pair(files: &TlsConfig, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content_error(&files.cert_file, format!("is not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(content_error(
            &files.cert_file,
            "holds no CERTIFICATE section",
        ));
    }
    // The error of a private key file says what is wrong with it and nothing of the key itself.
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| {
        content_error(
            &files.key_file,
            "holds no PKCS#8, PKCS#1 or SEC1 private key in PEM",
        )
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        content_error(
            &files.key_file,
            format!(
                "does not fit the certificate in {} ({e})",
                files.cert_file.display()
            ),
        )
    })
}

fn fingerprint(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((cert_pem.len() as u64).to_be_bytes());
    hash.update(cert_pem);
    hash.update(key_pem);
    hash.finalize().into()
}

struct Current {
    key: Arc<CertifiedKey>,
    fingerprint: [u8; 32],
}

/// The certificate in use, swapped atomically when the files change.
pub struct CertificateStore {
    files: TlsConfig,
    current: RwLock<Current>,
    /// The fingerprint of files that failed to load, so that a broken pair is reported once, not each tick.
    last_failure: Mutex<Option<[u8; 32]>>,
}

impl fmt::Debug for CertificateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateStore")
            .field("cert_file", &self.files.cert_file)
            .finish_non_exhaustive()
    }
}

impl CertificateStore {
    pub fn load(files: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let (cert_pem, key_pem) = (read(&files.cert_file)?, read(&files.key_file)?);
        let key = load_pair(files, &cert_pem, &key_pem)?;
        Ok(Arc::new(Self {
            files: files.clone(),
            current: RwLock::new(Current {
                key: Arc::new(key),
                fingerprint: fingerprint(&cert_pem, &key_pem),
            }),
            last_failure: Mutex::new(None),
        }))
    }

    /// Reads the files again and takes up the pair if it changed and loads. `Ok(true)`: a new pair is in
    /// use. A pair that failed before is tried again only when `force`d (SIGHUP) or changed.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = (read(&self.files.cert_file)?, read(&self.files.key_file)?);
        let print = fingerprint(&cert_pem, &key_pem);
        if self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .fingerprint
            == print
        {
            return Ok(false);
        }
        let mut last_failure = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        if !force && *last_failure == Some(print) {
            return Ok(false);
        }
        match load_pair(&self.files, &cert_pem, &key_pem) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Current {
                    key: Arc::new(key),
                    fingerprint: print,
                };
                *last_failure = None;
                Ok(true)
            }
            Err(e) => {
                *last_failure = Some(print);
                Err(e)
            }
        }
    }

    /// The SPKI pin of the certificate in use.
    pub fn current_pin(&self) -> Option<String> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.key.cert.first().and_then(|c| spki_pin(c).ok())
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .key
                .clone(),
        )
    }
}

/// A rustls server configuration over `store`: TLS 1.3 and 1.2, no client certificates.
pub fn server_config(store: Arc<CertificateStore>) -> Result<ServerConfig, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    Ok(config)
}

/// Reloads `store` on SIGHUP and, when an interval is set, whenever its files change. Ends once the store
/// is dropped (checked at each wake-up).
pub fn spawn_reloader(store: &Arc<CertificateStore>, metrics: Metrics) {
    let weak = Arc::downgrade(store);
    let interval = store.files.reload_interval;
    tokio::spawn(async move {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut ticker = interval.map(|every| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        loop {
            let forced = tokio::select! {
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => true,
                _ = async { match ticker.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => false,
            };
            let Some(store) = weak.upgrade() else {
                break;
            };
            match store.reload(forced) {
                Ok(true) => {
                    metrics.tls_reload(true);
                    tracing::info!(
                        pin = store.current_pin().unwrap_or_default(),
                        "TLS certificate reloaded"
                    );
                }
                Ok(false) if forced => tracing::info!("SIGHUP: the TLS certificate is unchanged"),
                Ok(false) => {}
                Err(e) => {
                    metrics.tls_reload(false);
                    tracing::warn!(error = %e, "TLS certificate not reloaded; the current one stays");
                }
            }
        }
    });
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of a DER certificate: the pin that Android's network security
/// config (`<pin digest="SHA-256">`) and iOS's `NSPinnedDomains` (`SPKI-SHA256-BASE64`) take.
pub fn spki_pin(certificate: &CertificateDer<'_>) -> Result<String, String> {
    let parsed = ParsedCertificate::try_from(certificate)
        .map_err(|e| format!("is not a certificate rustls can read ({e})"))?;
    Ok(pin_of_spki(parsed.subject_public_key_info().as_ref()))
}

pub fn pin_of_spki(spki_der: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(spki_der))
}

/// The pin of a PEM file: of its first CERTIFICATE (the leaf of a chain), or of a PUBLIC KEY (a backup
/// key made ahead of its certificate: `openssl pkey -in next.key -pubout`).
pub fn pin_of_pem(pem: &[u8]) -> Result<String, String> {
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| format!("is not PEM: {e}"))?;
        match kind {
            SectionKind::Certificate => return spki_pin(&CertificateDer::from(der)),
            SectionKind::PublicKey => return Ok(pin_of_spki(&der)),
            _ => {}
        }
    }
    Err("holds no CERTIFICATE or PUBLIC KEY section".into())
}
