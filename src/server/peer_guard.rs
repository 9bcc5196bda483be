//! The gate of a fresh peer connection (election or quorum port), before the transport
//! reads anything from it: quorum TLS (`quorum_tls.rs`), then quorum SASL
//! (`quorum_auth.rs`), each when on, with a deadline and a log line when it fails.
//!
//! Owns nothing but the two configurations. Must not: read past the handshakes (the
//! transport in `peers.rs` does), or decide who may join (the TLS and SASL modules do).

use super::peer_stream::PeerStream;
use super::peers::HANDSHAKE_DEADLINE;
use super::quorum_auth::QuorumAuth;
use super::quorum_tls::QuorumTls;
use crate::quorum::Sid;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// What a fresh peer connection goes through before the transport reads it: quorum TLS,
/// then quorum SASL, each when on.
#[derive(Clone)]
pub(super) struct Guard {
    pub(super) auth: Option<Arc<QuorumAuth>>,
    pub(super) tls: Option<Arc<QuorumTls>>,
}

impl Guard {
    /// Opens a connection to a member's peer port (2 s to connect), made TLS when quorum
    /// TLS says so; None (logged when it was not a plain refusal) when it failed.
    pub(super) async fn dial(
        &self,
        addr: SocketAddr,
        host: &str,
        sid: Sid,
        port: &str,
    ) -> Option<PeerStream> {
        let wait = std::time::Duration::from_secs(2);
        let Ok(Ok(tcp)) = tokio::time::timeout(wait, TcpStream::connect(addr)).await else {
            return None;
        };
        self.secure(tcp, host, sid, port).await
    }

    /// A connection this member opened to `sid`, made TLS when quorum TLS says so.
    pub(super) async fn secure(
        &self,
        tcp: TcpStream,
        host: &str,
        sid: Sid,
        port: &str,
    ) -> Option<PeerStream> {
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            let peer = tcp.peer_addr().ok()?;
            return Some(PeerStream::plain(tcp, peer));
        };
        match tokio::time::timeout(HANDSHAKE_DEADLINE, tls.dial(tcp, host)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::warn!(sid, port, error = %e, "quorum TLS to a member failed; closing");
                None
            }
            Err(_) => {
                tracing::warn!(
                    sid,
                    port,
                    "quorum TLS handshake with a member timed out; closing"
                );
                None
            }
        }
    }

    /// A connection another member opened here, made TLS when it speaks it.
    pub(super) async fn accepted(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        port: &str,
    ) -> Option<PeerStream> {
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Some(PeerStream::plain(tcp, peer));
        };
        match tokio::time::timeout(HANDSHAKE_DEADLINE, tls.accept(tcp, peer)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::warn!(%peer, port, error = %e, "a connection failed quorum TLS; closing");
                None
            }
            Err(_) => {
                tracing::warn!(%peer, port, "quorum TLS handshake timed out; closing");
                None
            }
        }
    }

    /// Quorum SASL as the side that connected to `sid`; false (logged) when it failed.
    pub(super) async fn authenticate_to(&self, s: &mut PeerStream, sid: Sid, port: &str) -> bool {
        let Some(auth) = &self.auth else {
            return true;
        };
        let host = s.peer_addr().ip().to_string();
        match tokio::time::timeout(HANDSHAKE_DEADLINE, auth.as_learner(s, &host)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(sid, port, error = %e, "quorum SASL authentication to a member failed; closing");
                false
            }
            Err(_) => {
                tracing::warn!(
                    sid,
                    port,
                    "quorum SASL authentication to a member timed out; closing"
                );
                false
            }
        }
    }

    /// Quorum SASL as the side that accepted a connection; false (logged) when the
    /// connection must close.
    pub(super) async fn authenticate_from(
        &self,
        s: &mut PeerStream,
        peer: SocketAddr,
        port: &str,
    ) -> bool {
        let Some(auth) = &self.auth else {
            return true;
        };
        match tokio::time::timeout(HANDSHAKE_DEADLINE, auth.as_server(s)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!(%peer, port, error = %e, "a member failed quorum SASL authentication; closing");
                false
            }
            Err(_) => {
                tracing::warn!(%peer, port, "quorum SASL authentication timed out; closing");
                false
            }
        }
    }
}
