//! Quorum TLS: members talking to each other over TLS on the election and quorum ports, as
//! ZooKeeper's `sslQuorum`, `portUnification` and `ssl.quorum.*`, with rustls.
//!
//! Owns: the member's rustls configurations (one to call others, one to be called; both
//! show this member's certificate and ask for the other's), reloading them when the store
//! files change (`sslQuorumReloadCertFiles`), and turning a fresh peer socket into a
//! [`PeerStream`]. Must not: read or write anything past the TLS handshake (the transport
//! and quorum SASL come after); hold its lock across `.await`.
//!
//! Who may talk: a certificate chaining to `ssl.quorum.trustStore`, on both sides. With
//! `ssl.quorum.hostnameVerification` (on by default, as in ZooKeeper) the certificate of a
//! member called must be valid for its address or for the host its `server.N` line names;
//! with `ssl.quorum.clientHostnameVerification` (default: the same) so must the certificate
//! of a member that calls, for its address or the host of any member at that address.
//! ZooKeeper's fallback is the reverse-DNS name of the address; zabd uses the configured
//! hosts instead, and checks subject alternative names only (no common-name fallback).
//!
//! Port unification (`portUnification`): an accepted connection whose first byte opens a
//! TLS handshake (0x16) is TLS, any other is plain; the election hello (a negative long,
//! 0xff...) and a learner's first packet (a small int, 0x00...) never start with 0x16.

use super::peer_stream::PeerStream;
use super::tls::{material, stamps};
use crate::config::QuorumTlsSettings;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;

/// How often the store files are checked when reloading is on.
const RELOAD_CHECK: Duration = Duration::from_secs(2);
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

struct Configs {
    dial: Arc<ClientConfig>,
    accept: Arc<ServerConfig>,
}

/// A member's quorum TLS.
pub struct QuorumTls {
    settings: QuorumTlsSettings,
    /// The configured hosts of the members at each address.
    hosts: HashMap<IpAddr, Vec<String>>,
    current: RwLock<Arc<Configs>>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl QuorumTls {
    /// Loads the stores when quorum TLS is on (None when it is off). `members`: each
    /// member's configured host and the address it resolved to.
    pub fn load(
        settings: &QuorumTlsSettings,
        members: &[(String, IpAddr)],
    ) -> Result<Option<Arc<QuorumTls>>, String> {
        if !settings.active() {
            return Ok(None);
        }
        let mut hosts: HashMap<IpAddr, Vec<String>> = HashMap::new();
        for (h, ip) in members {
            hosts.entry(*ip).or_default().push(h.clone());
        }
        let tls = Arc::new(QuorumTls {
            current: RwLock::new(configs(settings)?),
            stamps: Mutex::new(stamps(&settings.stores())),
            settings: settings.clone(),
            hosts,
        });
        tls.watch();
        tracing::info!(
            dial_tls = settings.enabled,
            port_unification = settings.port_unification,
            hostname_verification = settings.hostname_verification,
            "quorum TLS on"
        );
        Ok(Some(tls))
    }

    fn configs(&self) -> Arc<Configs> {
        self.current.read().expect("quorum tls lock").clone()
    }

    /// Checks the store files every few seconds while the member runs, when asked to.
    fn watch(self: &Arc<Self>) {
        if !self.settings.reload {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(RELOAD_CHECK);
            loop {
                t.tick().await;
                let Some(tls) = me.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            }
        });
    }

    fn reload_if_changed(&self) {
        let now = stamps(&self.settings.stores());
        {
            let mut seen = self.stamps.lock().expect("quorum tls stamps lock");
            if *seen == now {
                return;
            }
            *seen = now;
        }
        match configs(&self.settings) {
            Ok(c) => {
                *self.current.write().expect("quorum tls lock") = c;
                tracing::info!("quorum TLS key and trust stores reloaded");
            }
            Err(e) => tracing::error!(
                error = %e,
                "quorum TLS stores changed but do not load; keeping the previous ones"
            ),
        }
    }

    /// A connection this member opened to the member configured as `host`: TLS when
    /// `sslQuorum` is on, plain otherwise (port unification alone only listens).
    pub async fn dial(&self, tcp: TcpStream, host: &str) -> Result<PeerStream, String> {
        let peer = tcp.peer_addr().map_err(|e| e.to_string())?;
        if !self.settings.enabled {
            return Ok(PeerStream::plain(tcp, peer));
        }
        let name = ServerName::from(peer.ip());
        let connector = tokio_rustls::TlsConnector::from(self.configs().dial.clone());
        let s = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {peer} failed: {e}"))?;
        if self.settings.hostname_verification {
            let names = [host.to_string()];
            check_names(s.get_ref().1.peer_certificates(), peer.ip(), &names)
                .map_err(|e| format!("{peer}'s certificate: {e}"))?;
        }
        Ok(PeerStream::tls(s.into(), peer))
    }

    /// A connection another member opened here: TLS, or with port unification whatever its
    /// first byte says.
    pub async fn accept(&self, tcp: TcpStream, peer: SocketAddr) -> Result<PeerStream, String> {
        if self.settings.port_unification {
            let mut first = [0u8; 1];
            let n = tcp.peek(&mut first).await.map_err(|e| e.to_string())?;
            if n == 0 || first[0] != TLS_HANDSHAKE {
                return Ok(PeerStream::plain(tcp, peer));
            }
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(self.configs().accept.clone());
        let s = acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let verify = self
            .settings
            .client_hostname_verification
            .unwrap_or(self.settings.hostname_verification);
        if verify {
            let names = self.hosts.get(&peer.ip()).cloned().unwrap_or_default();
            check_names(s.get_ref().1.peer_certificates(), peer.ip(), &names)?;
        }
        Ok(PeerStream::tls(s.into(), peer))
    }
}

/// Whether the other side's certificate is valid for its address or one of `hosts`.
fn check_names(
    chain: Option<&[CertificateDer<'static>]>,
    ip: IpAddr,
    hosts: &[String],
) -> Result<(), String> {
    let Some([leaf, ..]) = chain else {
        return Err("no certificate".into());
    };
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("{e:?}"))?;
    let candidates = std::iter::once(ServerName::from(ip)).chain(
        hosts
            .iter()
            .filter_map(|h| ServerName::try_from(h.as_str()).ok()),
    );
    for name in candidates {
        if cert.verify_is_valid_for_subject_name(&name).is_ok() {
            return Ok(());
        }
    }
    Err(format!(
        "not valid for {ip} nor for {hosts:?} (ssl.quorum.hostnameVerification is on)"
    ))
}

/// Both configurations from the settings.
fn configs(s: &QuorumTlsSettings) -> Result<Arc<Configs>, String> {
    let prefix = "ssl.quorum";
    let m = material(&s.stores(), prefix)?;
    let roots = m
        .roots
        .clone()
        .ok_or("ssl.quorum.trustStore.location: needed to check other members")?;
    let bad_versions = |e: rustls::Error| format!("{prefix}.enabledProtocols / ciphersuites: {e}");
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), m.provider.clone())
            .build()
            .map_err(|e| format!("{prefix}.trustStore.location: {e}"))?;
    let accept = ServerConfig::builder_with_provider(m.provider.clone())
        .with_protocol_versions(&m.versions)
        .map_err(bad_versions)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| format!("{prefix}.keyStore.location: {e}"))?;
    let chain_only = WebPkiServerVerifier::builder_with_provider(roots, m.provider.clone())
        .build()
        .map_err(|e| format!("{prefix}.trustStore.location: {e}"))?;
    let dial = ClientConfig::builder_with_provider(m.provider.clone())
        .with_protocol_versions(&m.versions)
        .map_err(bad_versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(chain_only)))
        .with_client_auth_cert(m.chain, m.key)
        .map_err(|e| format!("{prefix}.keyStore.location: {e}"))?;
    Ok(Arc::new(Configs {
        dial: Arc::new(dial),
        accept: Arc::new(accept),
    }))
}

/// Checks the called member's chain against the trust store and leaves its names to
/// [`check_names`] (which knows the configured host as well as the address).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        // The chain is checked before the name: a name error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(NotValidForName))
            | Err(rustls::Error::InvalidCertificate(NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
