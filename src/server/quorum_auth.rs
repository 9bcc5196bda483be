//! Quorum SASL: members authenticating to each other on the election and quorum ports, as
//! ZooKeeper's `quorum.auth.*` (SaslQuorumAuthLearner / SaslQuorumAuthServer), with
//! DIGEST-MD5 (JAAS sections `QuorumServer`: `user_<name>="<password>"`, and
//! `QuorumLearner`: `username`, `password`) or, with the `kerberos` feature, GSSAPI
//! (Krb5LoginModule sections; `gssapi.rs`; the learner asks for
//! `quorum.auth.kerberos.servicePrincipal` with `_HOST` the member called, the server
//! accepts a principal whose host is a member's).
//!
//! Owns: the exchange on a fresh peer connection, before anything else is read from it by
//! the peer transport. Must not: wait without a deadline (the caller bounds it).
//!
//! Where: the side that connects (a learner dialling its leader's quorum port, a member
//! dialling another's election port, after its election hello) authenticates as the
//! learner; the side that accepts (after reading the election hello, or first thing on the
//! quorum port) as the server.
//!
//! Wire: QuorumAuthPacket records back to back, no length prefix:
//!
//! ```text
//! long  magic  = 0x5f2435013501edcc (Java's -0xa0dbcafecafe1234L)
//! int   status   0 in progress, 1 success, -1 error
//! int   length   then that many token bytes (-1: no token)
//! ```
//!
//! The learner sends its first token (empty for DIGEST-MD5) with status 0; the server
//! answers each with a challenge (status 0) until it is complete (status 1, its last
//! token), or -1 on failure. A server that does not require SASL lets through a
//! connection whose first 8 bytes are not the magic; a learner that does not require it
//! does not authenticate at all.

use super::peer_stream::PeerStream;
use crate::config::SaslSettings;
use crate::sasl::digest_md5;
use crate::sasl::jaas;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Java's `-0xa0dbcafecafe1234L` (the literal is already negative as a long, so this is positive).
const MAGIC: i64 = (0xa0dbcafecafe1234u64 as i64).wrapping_neg();
const IN_PROGRESS: i32 = 0;
const SUCCESS: i32 = 1;
const ERROR: i32 = -1;
/// Largest token accepted from a peer.
const MAX_TOKEN: i32 = 64 << 10;
/// Most rounds of an exchange (ZooKeeper's MAX_RETRIES).
const MAX_ROUNDS: usize = 5;

pub struct QuorumAuth {
    learner_require: bool,
    server_require: bool,
    /// QuorumServer's users.
    users: BTreeMap<String, String>,
    /// QuorumLearner's user and password.
    learner: Option<(String, String)>,
    /// GSSAPI instead of DIGEST-MD5, when the sections are Krb5LoginModule ones.
    #[cfg(feature = "kerberos")]
    kerberos: Option<Kerberos>,
}

/// Quorum Kerberos: this member's acceptor (QuorumServer) and initiator (QuorumLearner).
#[cfg(feature = "kerberos")]
struct Kerberos {
    acceptor: super::gssapi::Acceptor,
    initiator: super::gssapi::Initiator,
    /// `quorum.auth.kerberos.servicePrincipal`; `_HOST` becomes the member called.
    service_principal: String,
    /// The members' hosts: a principal `name/host@REALM` must name one of them (ZooKeeper's
    /// authorized hosts).
    member_hosts: Vec<String>,
}

impl QuorumAuth {
    /// From the settings and the JAAS file; None when quorum SASL is off.
    pub fn load(
        s: &SaslSettings,
        member_hosts: Vec<String>,
    ) -> Result<Option<Arc<QuorumAuth>>, String> {
        if !s.quorum_enable {
            return Ok(None);
        }
        #[cfg(not(feature = "kerberos"))]
        let _ = member_hosts;
        let what = "java.security.auth.login.config";
        let text = std::fs::read_to_string(&s.jaas_config)
            .map_err(|e| format!("{what} {}: {e}", s.jaas_config))?;
        let file = jaas::parse(&text).map_err(|e| format!("{what} {}: {e}", s.jaas_config))?;
        let section = |name: &str| -> Result<&jaas::LoginModule, String> {
            let m = file.get(name).and_then(|v| v.first()).ok_or_else(|| {
                format!("{what} {}: no {name} section (quorum SASL)", s.jaas_config)
            })?;
            if m.is_kerberos() && !cfg!(feature = "kerberos") {
                return Err(format!(
                    "{what} {}: {name}: Kerberos between members needs zabd built with the \
                     `kerberos` feature",
                    s.jaas_config
                ));
            }
            if !m.is_digest() && !m.is_kerberos() {
                return Err(format!(
                    "{what} {}: {name}: login module {} is not supported",
                    s.jaas_config, m.class
                ));
            }
            Ok(m)
        };
        // As ZooKeeper, both sections are needed once quorum SASL is on, whatever is required.
        let server_module = section(&s.quorum_server_section)?;
        #[cfg(feature = "kerberos")]
        if server_module.is_kerberos() {
            let at = |e: String| format!("{what} {}: {e}", s.jaas_config);
            let kerberos = Kerberos {
                acceptor: super::gssapi::Acceptor::from_jaas(server_module).map_err(at)?,
                initiator: super::gssapi::Initiator::from_jaas(section(&s.quorum_learner_section)?)
                    .map_err(at)?,
                service_principal: s.quorum_service_principal.clone(),
                member_hosts,
            };
            tracing::info!(
                learner_require = s.quorum_learner_require,
                server_require = s.quorum_server_require,
                principal = kerberos.initiator.principal(),
                "quorum SASL (GSSAPI) on"
            );
            return Ok(Some(Arc::new(QuorumAuth {
                learner_require: s.quorum_learner_require,
                server_require: s.quorum_server_require,
                users: BTreeMap::new(),
                learner: None,
                kerberos: Some(kerberos),
            })));
        }
        let users = server_module.users();
        let m = section(&s.quorum_learner_section)?;
        let get = |k: &str| {
            m.options.get(k).cloned().ok_or_else(|| {
                format!(
                    "{what} {}: {}: no {k}",
                    s.jaas_config, s.quorum_learner_section
                )
            })
        };
        let learner = Some((get("username")?, get("password")?));
        tracing::info!(
            learner_require = s.quorum_learner_require,
            server_require = s.quorum_server_require,
            users = users.len(),
            "quorum SASL (DIGEST-MD5) on"
        );
        Ok(Some(Arc::new(QuorumAuth {
            learner_require: s.quorum_learner_require,
            server_require: s.quorum_server_require,
            users,
            learner,
            #[cfg(feature = "kerberos")]
            kerberos: None,
        })))
    }

    /// Authenticates this member to the peer it connected to (when it must).
    pub async fn as_learner<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        s: &mut S,
        host: &str,
    ) -> Result<(), String> {
        if !self.learner_require {
            return Ok(());
        }
        #[cfg(feature = "kerberos")]
        if let Some(k) = &self.kerberos {
            return k.as_learner(s, host).await;
        }
        let _ = host;
        let Some((user, password)) = self.learner.as_ref().filter(|_| self.learner_require) else {
            return Ok(());
        };
        let cnonce = super::sasl::nonce();
        let mut client = digest_md5::Client::new(
            user,
            password,
            digest_md5::QUORUM_SERVICE,
            digest_md5::QUORUM_REALM,
            cnonce,
        );
        write_packet(s, IN_PROGRESS, Some(&[])).await?;
        for _ in 0..MAX_ROUNDS {
            let (status, token) = read_packet(s).await?;
            match status {
                SUCCESS => {
                    client.step(token.as_deref().unwrap_or_default())?;
                    return match client.is_complete() {
                        true => Ok(()),
                        false => {
                            Err("the server said success before the exchange was complete".into())
                        }
                    };
                }
                IN_PROGRESS => {
                    let reply = client.step(token.as_deref().unwrap_or_default())?;
                    write_packet(s, IN_PROGRESS, reply.as_deref()).await?;
                }
                _ => return Err("the server refused this member's credentials".into()),
            }
        }
        Err("too many rounds".into())
    }

    /// Authenticates the member that connected here. Ok(true): it authenticated; Ok(false):
    /// it did not try, or failed, and that is allowed; Err: the connection must close.
    pub async fn as_server(&self, s: &mut PeerStream) -> Result<bool, String> {
        if !starts_with_magic(s).await? {
            return match self.server_require {
                true => Err(
                    "the member did not authenticate and quorum.auth.serverRequireSasl is on"
                        .into(),
                ),
                false => Ok(false),
            };
        }
        match self.exchange(s).await {
            Ok(()) => Ok(true),
            Err(e) => {
                let _ = write_packet(s, ERROR, Some(&[])).await;
                match self.server_require {
                    true => Err(e),
                    false => {
                        tracing::warn!(error = %e, "a member failed quorum SASL; let in (quorum.auth.serverRequireSasl is off)");
                        Ok(false)
                    }
                }
            }
        }
    }

    async fn exchange(&self, s: &mut PeerStream) -> Result<(), String> {
        #[cfg(feature = "kerberos")]
        if let Some(k) = &self.kerberos {
            return k.as_server(s).await;
        }
        let mut server = digest_md5::Server::for_service(
            super::sasl::nonce(),
            digest_md5::QUORUM_SERVICE,
            digest_md5::QUORUM_REALM,
        );
        for _ in 0..MAX_ROUNDS {
            let (_, token) = read_packet(s).await?;
            match server.step(token.as_deref().unwrap_or_default(), |u| {
                self.users.get(u).cloned()
            })? {
                digest_md5::Step::Challenge(c) => write_packet(s, IN_PROGRESS, Some(&c)).await?,
                digest_md5::Step::Complete { reply, user } => {
                    write_packet(s, SUCCESS, Some(&reply)).await?;
                    tracing::info!(user, "a member authenticated (quorum SASL)");
                    return Ok(());
                }
            }
        }
        Err("too many rounds".into())
    }
}

#[cfg(feature = "kerberos")]
impl Kerberos {
    /// RFC 4752 as the client, driven by the server's statuses (SaslQuorumAuthLearner).
    async fn as_learner<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        s: &mut S,
        host: &str,
    ) -> Result<(), String> {
        let target = self
            .service_principal
            .replace("_HOST", &host.to_ascii_lowercase());
        let mut ex = tokio::task::block_in_place(|| self.initiator.start(&target))?;
        let first = tokio::task::block_in_place(|| ex.step(None))?;
        write_packet(s, IN_PROGRESS, Some(&first)).await?;
        for _ in 0..MAX_ROUNDS {
            let (status, token) = read_packet(s).await?;
            match status {
                SUCCESS if ex.is_complete() => return Ok(()),
                SUCCESS => {
                    return Err("the server said success before the exchange was complete".into())
                }
                IN_PROGRESS => {
                    let t = token.unwrap_or_default();
                    let out = tokio::task::block_in_place(|| ex.step(Some(&t)))?;
                    write_packet(s, IN_PROGRESS, Some(&out)).await?;
                }
                _ => {
                    return Err(format!(
                        "{target} refused this member's Kerberos credentials"
                    ))
                }
            }
        }
        Err("too many rounds".into())
    }

    /// RFC 4752 as the server; the principal must name a member's host.
    async fn as_server(&self, s: &mut PeerStream) -> Result<(), String> {
        let mut ex = self.acceptor.exchange();
        for _ in 0..MAX_ROUNDS {
            let (_, token) = read_packet(s).await?;
            let t = token.unwrap_or_default();
            let (reply, who) = tokio::task::block_in_place(|| ex.step(&t))?;
            let Some(who) = who else {
                write_packet(s, IN_PROGRESS, reply.as_deref()).await?;
                continue;
            };
            if !crate::sasl::quorum_principal_allowed(&who, &self.member_hosts) {
                return Err(format!("{who} names a host that is not a member"));
            }
            write_packet(s, SUCCESS, None).await?;
            tracing::info!(principal = %who, "a member authenticated (quorum SASL, GSSAPI)");
            return Ok(());
        }
        Err("too many rounds".into())
    }
}

/// Whether the connection's first 8 bytes are the auth magic (looked at and given back).
async fn starts_with_magic(s: &mut PeerStream) -> Result<bool, String> {
    let magic = MAGIC.to_be_bytes();
    let head = s
        .look(8, |h| magic.starts_with(h))
        .await
        .map_err(|e| e.to_string())?;
    if head.is_empty() {
        return Err("closed before authenticating".into());
    }
    Ok(head == magic)
}

async fn write_packet<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: i32,
    token: Option<&[u8]>,
) -> Result<(), String> {
    let mut b = Vec::with_capacity(16 + token.map_or(0, <[u8]>::len));
    b.extend_from_slice(&MAGIC.to_be_bytes());
    b.extend_from_slice(&status.to_be_bytes());
    match token {
        Some(t) => {
            b.extend_from_slice(&(t.len() as i32).to_be_bytes());
            b.extend_from_slice(t);
        }
        None => b.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    s.write_all(&b).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())
}

async fn read_packet<S: AsyncRead + Unpin>(s: &mut S) -> Result<(i32, Option<Vec<u8>>), String> {
    let mut head = [0u8; 16];
    s.read_exact(&mut head)
        .await
        .map_err(|e| format!("reading an auth packet: {e}"))?;
    let magic = i64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
    if magic != MAGIC {
        return Err("not a quorum auth packet".into());
    }
    let status = i32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
    let len = i32::from_be_bytes(head[12..16].try_into().expect("4 bytes"));
    if len > MAX_TOKEN {
        return Err(format!(
            "an auth token of {len} bytes (at most {MAX_TOKEN})"
        ));
    }
    if len < 0 {
        return Ok((status, None));
    }
    let mut token = vec![0u8; len as usize];
    s.read_exact(&mut token)
        .await
        .map_err(|e| format!("reading an auth packet: {e}"))?;
    Ok((status, Some(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(learner_pw: &str, require: bool) -> QuorumAuth {
        QuorumAuth {
            learner_require: true,
            server_require: require,
            users: [("member".to_string(), "memberpw".to_string())].into(),
            learner: Some(("member".into(), learner_pw.into())),
            #[cfg(feature = "kerberos")]
            kerberos: None,
        }
    }

    /// A connected pair on loopback: (the side that connected, the side that accepted).
    async fn pair() -> (tokio::net::TcpStream, PeerStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap());
        let (c, a) = tokio::join!(c, l.accept());
        let (a, from) = a.unwrap();
        (c.unwrap(), PeerStream::plain(a, from))
    }

    #[tokio::test]
    async fn the_right_password_passes_and_the_stream_goes_on() {
        let (mut c, mut a) = pair().await;
        let (learner, server) = (auth("memberpw", true), auth("memberpw", true));
        let (l, s) = tokio::join!(
            learner.as_learner(&mut c, "127.0.0.1"),
            server.as_server(&mut a)
        );
        assert_eq!((l, s), (Ok(()), Ok(true)));
        c.write_all(b"after").await.unwrap();
        let mut b = [0u8; 5];
        a.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"after", "nothing of the exchange is left unread");
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_on_both_sides() {
        let (mut c, mut a) = pair().await;
        let (learner, server) = (auth("wrong", true), auth("memberpw", true));
        let (l, s) = tokio::join!(
            learner.as_learner(&mut c, "127.0.0.1"),
            server.as_server(&mut a)
        );
        assert!(l.is_err() && s.is_err(), "{l:?} {s:?}");
    }

    #[tokio::test]
    async fn a_member_that_does_not_authenticate_passes_only_when_not_required() {
        for (require, expected) in [(false, Ok(false)), (true, Err(()))] {
            let (mut c, mut a) = pair().await;
            c.write_all(&[0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0])
                .await
                .unwrap();
            let r = auth("memberpw", require)
                .as_server(&mut a)
                .await
                .map_err(|_| ());
            assert_eq!(r, expected, "require {require}");
            if r.is_ok() {
                let mut b = [0u8; 12];
                a.read_exact(&mut b).await.unwrap();
                assert_eq!(
                    b[3], 11,
                    "the bytes looked at are read again by the transport"
                );
            }
        }
    }
}
