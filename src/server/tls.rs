//! TLS on the client port: ZooKeeper's `secureClientPort` (TLS only) and port unification
//! (`client.portUnification`: the plain port takes TLS too), with rustls.
//!
//! Owns: loading the key and trust stores (PEM or PKCS12; JKS is refused with the
//! `keytool` command that converts it), the rustls server configuration built from them
//! (protocols, cipher suites, `ssl.clientAuth`), reloading both when their files change,
//! and turning an accepted socket into the byte streams a connection reads and writes, with
//! the identities its client certificate gives (`auth::x509_ids`). Must not: decide
//! anything about requests; hold its lock across `.await` (the current configuration is an
//! `Arc` cloned out of a std `RwLock`).
//!
//! Port unification: a TLS connection opens with a handshake record, whose first byte is
//! 0x16; a plain ZooKeeper connection opens with a frame length (first byte 0x00 for any
//! frame under 16 MiB) or a four-letter word (a lowercase letter).

use crate::config::TlsSettings;
use crate::jute::records::Id;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// What a connection reads from.
pub type ClientRead = Box<dyn AsyncRead + Send + Unpin>;
/// What a connection writes to.
pub type ClientWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// How often the key and trust store files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a listening port speaks.
#[derive(Clone)]
pub enum Transport {
    Plain,
    /// `secureClientPort`: TLS only.
    Tls(Arc<Tls>),
    /// The client port with port unification: TLS or plain, by the first byte.
    Unified(Arc<Tls>),
}

/// An accepted connection, ready for frames.
pub struct Opened {
    pub rd: ClientRead,
    pub wr: ClientWrite,
    /// What its client certificate proves (x509, perhaps super); empty for plain TCP.
    pub ids: Vec<Id>,
}

/// The client port's TLS: the current configuration, and what it was built from.
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl Tls {
    /// Loads the stores; an error names the file and what is wrong with it.
    pub fn load(settings: &TlsSettings) -> Result<Arc<Tls>, String> {
        let cfg = server_config(settings)?;
        Ok(Arc::new(Tls {
            stamps: Mutex::new(stamps(settings)),
            settings: settings.clone(),
            current: RwLock::new(cfg),
        }))
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current.read().expect("tls config lock").clone()
    }

    /// Reloads the stores when their files changed; a store that no longer loads is
    /// logged and the previous configuration kept.
    fn reload_if_changed(&self) {
        let now = stamps(&self.settings);
        {
            let mut seen = self.stamps.lock().expect("tls stamps lock");
            if *seen == now {
                return;
            }
            *seen = now;
        }
        match server_config(&self.settings) {
            Ok(cfg) => {
                *self.current.write().expect("tls config lock") = cfg;
                tracing::info!("TLS key and trust stores reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS stores changed but do not load; keeping the previous ones")
            }
        }
    }

    /// Checks the store files every few seconds, for as long as the server runs.
    pub fn watch(self: &Arc<Self>) {
        if !self.settings.reload {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(RELOAD_CHECK);
            loop {
                t.tick().await;
                let tls = me.clone();
                let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            }
        });
    }

    /// The TLS handshake, and the identities of the client's certificate.
    async fn accept(&self, stream: TcpStream) -> Result<Opened, String> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
        let tls = acceptor
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let ids = match tls.get_ref().1.peer_certificates() {
            Some([leaf, ..]) => {
                let ids = crate::auth::x509_ids(leaf.as_ref(), &self.settings.x509_super_user);
                if ids.is_empty() {
                    return Err("the client certificate's subject does not parse".into());
                }
                tracing::info!(id = %ids[ids.len() - 1].id, "authenticated a client certificate (x509)");
                ids
            }
            _ => Vec::new(),
        };
        let (rd, wr) = tokio::io::split(tls);
        Ok(Opened {
            rd: Box::new(rd),
            wr: Box::new(wr),
            ids,
        })
    }
}

/// Opens an accepted socket as its port's transport says.
pub async fn open(stream: TcpStream, transport: &Transport) -> Result<Opened, String> {
    match transport {
        Transport::Plain => Ok(plain(stream)),
        Transport::Tls(tls) => tls.accept(stream).await,
        Transport::Unified(tls) => {
            let mut first = [0u8; 1];
            let n = stream
                .peek(&mut first)
                .await
                .map_err(|e| format!("read error: {e}"))?;
            if n == 1 && first[0] == TLS_HANDSHAKE {
                tls.accept(stream).await
            } else {
                Ok(plain(stream))
            }
        }
    }
}

fn plain(stream: TcpStream) -> Opened {
    let (rd, wr) = stream.into_split();
    Opened {
        rd: Box::new(rd),
        wr: Box::new(wr),
        ids: Vec::new(),
    }
}

/// The modification times of the store files (what a reload watches).
pub(super) fn stamps(s: &TlsSettings) -> Vec<Option<SystemTime>> {
    [&s.key_store, &s.trust_store]
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// What a TLS configuration is built from: the crypto provider (its cipher suites
/// narrowed by `<prefix>.ciphersuites`), the protocol versions, this side's certificate
/// chain and key, and the trust store when one is configured. `prefix` is `ssl` for the
/// client port, `ssl.quorum` for members; errors name its keys.
pub(super) struct Material {
    pub provider: Arc<rustls::crypto::CryptoProvider>,
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Option<Arc<RootCertStore>>,
}

/// Loads the stores and options of `s`, naming its keys with `prefix`.
pub(super) fn material(s: &TlsSettings, prefix: &str) -> Result<Material, String> {
    let (chain, key) = key_store(s, prefix)?;
    let mut provider = rustls::crypto::ring::default_provider();
    if !s.cipher_suites.is_empty() {
        provider
            .cipher_suites
            .retain(|cs| s.cipher_suites.iter().any(|n| suite_matches(cs, n)));
        if provider.cipher_suites.is_empty() {
            return Err(format!(
                "{prefix}.ciphersuites: none of {:?} is supported (rustls offers the TLS 1.3 \
                 suites and the ECDHE AES-GCM and ChaCha20-Poly1305 suites of TLS 1.2)",
                s.cipher_suites
            ));
        }
    }
    let versions = protocol_versions(&s.protocols, prefix)?;
    let roots = match s.trust_store.is_empty() {
        true => None,
        false => Some(Arc::new(trust_store(s, prefix)?)),
    };
    Ok(Material {
        provider: Arc::new(provider),
        versions,
        chain,
        key,
        roots,
    })
}

/// Builds rustls' server configuration for the client port from the settings.
fn server_config(s: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let m = material(s, "ssl")?;
    let builder = ServerConfig::builder_with_provider(m.provider.clone())
        .with_protocol_versions(&m.versions)
        .map_err(|e| format!("ssl.enabledProtocols / ssl.ciphersuites: {e}"))?;
    let builder = match (&m.roots, s.client_auth.as_str()) {
        (_, "none") => builder.with_no_client_auth(),
        (None, _) => {
            return Err("ssl.trustStore.location: needed to check client certificates".into())
        }
        (Some(roots), mode) => {
            let v = WebPkiClientVerifier::builder_with_provider(roots.clone(), m.provider.clone());
            let v = if mode == "want" {
                v.allow_unauthenticated()
            } else {
                v
            };
            let v = v
                .build()
                .map_err(|e| format!("ssl.trustStore.location {}: {e}", s.trust_store))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let cfg = builder
        .with_single_cert(m.chain, m.key)
        .map_err(|e| format!("ssl.keyStore.location {}: {e}", s.key_store))?;
    Ok(Arc::new(cfg))
}

/// `<prefix>.enabledProtocols` as rustls versions.
fn protocol_versions(
    names: &[String],
    prefix: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    if names.is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    names
        .iter()
        .map(|n| match n.as_str() {
            "TLSv1.3" => Ok(&rustls::version::TLS13),
            "TLSv1.2" => Ok(&rustls::version::TLS12),
            other => Err(format!(
                "{prefix}.enabledProtocols: {other:?} is not supported (TLSv1.2 and TLSv1.3 are)"
            )),
        })
        .collect()
}

/// A rustls suite against an IANA name as Java spells it (`TLS_AES_128_GCM_SHA256`,
/// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`); rustls spells TLS 1.3's `TLS13_...`.
fn suite_matches(cs: &rustls::SupportedCipherSuite, name: &str) -> bool {
    let ours = format!("{:?}", cs.suite());
    ours == name || ours.replacen("TLS13_", "TLS_", 1) == name
}

/// A store's type: the setting, or the file name's extension, as ZooKeeper guesses it.
fn store_type(kind: &str, path: &str, what: &str) -> Result<&'static str, String> {
    let t = if kind.is_empty() {
        let ext = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "p12" | "pfx" | "pkcs12" => "PKCS12",
            "jks" => "JKS",
            "bcfks" => "BCFKS",
            _ => "PEM",
        }
        .to_string()
    } else {
        kind.to_ascii_uppercase()
    };
    match t.as_str() {
        "PEM" => Ok("PEM"),
        "PKCS12" => Ok("PKCS12"),
        "JKS" => Err(format!(
            "{what} {path}: JKS stores are not read by zabd; convert it to PKCS12 with \
             `keytool -importkeystore -srckeystore {path} -srcstoretype JKS -destkeystore \
             {}.p12 -deststoretype PKCS12` and point {what} at the new file",
            path.trim_end_matches(".jks")
        )),
        other => Err(format!(
            "{what} {path}: store type {other} is not supported (PEM and PKCS12 are)"
        )),
    }
}

fn read(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {path}: {e}"))
}

/// The server's certificate chain and private key.
fn key_store(
    s: &TlsSettings,
    prefix: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let what = &format!("{prefix}.keyStore.location");
    let path = &s.key_store;
    let kind = store_type(&s.key_store_type, path, what)?;
    let bytes = read(path, what)?;
    match kind {
        "PKCS12" => {
            let ks = p12_keystore::KeyStore::from_pkcs12(&bytes, &s.key_store_password).map_err(
                |e| format!("{what} {path}: {e} (is {prefix}.keyStore.password right?)"),
            )?;
            let (_, chain) = ks
                .private_key_chain()
                .ok_or_else(|| format!("{what} {path}: no private key entry"))?;
            let certs = chain
                .chain()
                .iter()
                .map(|c| CertificateDer::from(c.as_der().to_vec()))
                .collect();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().to_vec()));
            Ok((certs, key))
        }
        _ => {
            if bytes
                .windows(b"ENCRYPTED PRIVATE KEY".len())
                .any(|w| w == b"ENCRYPTED PRIVATE KEY")
            {
                return Err(format!(
                    "{what} {path}: encrypted PEM keys are not supported; use a PKCS12 store \
                     (with its password), or decrypt the key with `openssl pkcs8 -in {path}`"
                ));
            }
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut bytes.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{what} {path}: {e}"))?;
            let key = rustls_pemfile::private_key(&mut bytes.as_slice())
                .map_err(|e| format!("{what} {path}: {e}"))?
                .ok_or_else(|| format!("{what} {path}: no private key in the PEM file"))?;
            if certs.is_empty() {
                return Err(format!("{what} {path}: no certificate in the PEM file"));
            }
            Ok((certs, key))
        }
    }
}

/// The certificates the other side's certificates are checked against.
fn trust_store(s: &TlsSettings, prefix: &str) -> Result<RootCertStore, String> {
    let what = &format!("{prefix}.trustStore.location");
    let path = &s.trust_store;
    let kind = store_type(&s.trust_store_type, path, what)?;
    let bytes = read(path, what)?;
    let certs: Vec<CertificateDer<'static>> = match kind {
        "PKCS12" => {
            let ks = p12_keystore::KeyStore::from_pkcs12(&bytes, &s.trust_store_password).map_err(
                |e| format!("{what} {path}: {e} (is {prefix}.trustStore.password right?)"),
            )?;
            ks.entries()
                .flat_map(|(_, e)| match e {
                    p12_keystore::KeyStoreEntry::Certificate(c) => vec![c.as_der().to_vec()],
                    p12_keystore::KeyStoreEntry::PrivateKeyChain(k) => {
                        k.chain().iter().map(|c| c.as_der().to_vec()).collect()
                    }
                    _ => Vec::new(),
                })
                .map(CertificateDer::from)
                .collect()
        }
        _ => rustls_pemfile::certs(&mut bytes.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{what} {path}: {e}"))?,
    };
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{what} {path}: no usable certificate"));
    }
    Ok(roots)
}
