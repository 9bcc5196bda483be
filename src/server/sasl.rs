//! SASL on the client port: the server's mechanisms, loaded once from the JAAS file, and
//! one exchange per connection, run by the connection's reader before the token goes to
//! the engine (which answers it in order; see `sasl`).
//!
//! Owns: the JAAS `Server` section's DIGEST-MD5 users or Kerberos keytab and principal, the
//! nonces (from the system's random source), and the GSSAPI calls (feature `kerberos`, on
//! the system's MIT Kerberos library through `libgssapi`). Must not: touch the engine's
//! state; block the runtime (GSSAPI steps run in `block_in_place`).
//!
//! The mechanism is the one the `Server` section configures (DigestLoginModule: DIGEST-MD5;
//! Krb5LoginModule: GSSAPI), as in ZooKeeper; with both, a client's empty first token
//! means DIGEST-MD5 and a non-empty one GSSAPI.

use crate::config::SaslSettings;
use crate::proto::request::Sasl;
use crate::sasl::{digest_md5, jaas, SaslOutcome, SaslPolicy};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The server's side of SASL, shared by every connection.
pub struct SaslServer {
    users: BTreeMap<String, String>,
    policy: SaslPolicy,
    #[cfg(feature = "kerberos")]
    kerberos: Option<super::gssapi::Acceptor>,
}

impl std::fmt::Debug for SaslServer {
    /// Never the passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslServer")
            .field("digest_users", &self.users.len())
            .field("policy", &self.policy)
            .finish()
    }
}

impl SaslServer {
    /// Loads the JAAS file's server section; None when SASL is not configured.
    pub fn load(s: &SaslSettings) -> Result<Option<Arc<SaslServer>>, String> {
        if s.jaas_config.is_empty() {
            return Ok(None);
        }
        let what = "java.security.auth.login.config";
        let text = std::fs::read_to_string(&s.jaas_config)
            .map_err(|e| format!("{what} {}: {e}", s.jaas_config))?;
        let file = jaas::parse(&text).map_err(|e| format!("{what} {}: {e}", s.jaas_config))?;
        let Some(section) = file.get(&s.server_section) else {
            return Err(format!(
                "{what} {}: no {} section (zookeeper.sasl.serverconfig)",
                s.jaas_config, s.server_section
            ));
        };
        let mut users = BTreeMap::new();
        let mut kerberos = None;
        for m in section {
            if m.is_digest() {
                users.extend(m.users());
            } else if m.is_kerberos() {
                kerberos = Some(m);
            } else {
                return Err(format!(
                    "{what} {}: login module {} is not supported (DigestLoginModule and \
                     Krb5LoginModule are)",
                    s.jaas_config, m.class
                ));
            }
        }
        if !s.super_password.is_empty() {
            users.insert("super".into(), s.super_password.clone());
        }
        let policy = SaslPolicy {
            super_users: s.super_users.clone(),
            remove_host: s.remove_host_from_principal,
            remove_realm: s.remove_realm_from_principal,
        };
        #[cfg(feature = "kerberos")]
        let kerberos = match kerberos {
            Some(m) => Some(
                super::gssapi::Acceptor::from_jaas(m)
                    .map_err(|e| format!("{what} {}: {e}", s.jaas_config))?,
            ),
            None => None,
        };
        #[cfg(not(feature = "kerberos"))]
        if kerberos.is_some() {
            return Err(format!(
                "{what} {}: Kerberos (Krb5LoginModule) needs zabd built with the `kerberos` \
                 feature (cargo build --release --features kerberos, with libkrb5-dev and \
                 libclang-dev installed)",
                s.jaas_config
            ));
        }
        tracing::info!(
            digest_users = users.len(),
            kerberos = cfg!(feature = "kerberos") && kerberos.is_some(),
            "SASL configured for clients"
        );
        Ok(Some(Arc::new(SaslServer {
            users,
            policy,
            #[cfg(feature = "kerberos")]
            kerberos,
        })))
    }
}

/// A fresh DIGEST-MD5 nonce (or cnonce) from the system's random source.
pub(super) fn nonce() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut b = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source");
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// One connection's exchange.
pub struct SaslConn {
    server: Arc<SaslServer>,
    mech: Option<Mech>,
}

enum Mech {
    Digest(digest_md5::Server),
    #[cfg(feature = "kerberos")]
    Gssapi(super::gssapi::Exchange),
}

impl SaslConn {
    pub fn new(server: Arc<SaslServer>) -> SaslConn {
        SaslConn { server, mech: None }
    }

    /// Evaluates a decoded `sasl` request's token; anything else passes through.
    pub fn evaluate(&mut self, sasl: Sasl) -> Sasl {
        match sasl {
            Sasl::Token(t) => Sasl::Evaluated(self.step(t)),
            done => done,
        }
    }

    fn step(&mut self, token: Bytes) -> SaslOutcome {
        if self.mech.is_none() {
            self.mech = Some(self.choose(&token));
        }
        let server = self.server.clone();
        let result = match self.mech.as_mut().expect("chosen") {
            Mech::Digest(d) => d
                .step(&token, |u| server.users.get(u).cloned())
                .map(|s| match s {
                    digest_md5::Step::Challenge(c) => (Some(c), None),
                    digest_md5::Step::Complete { reply, user } => (Some(reply), Some(user)),
                }),
            #[cfg(feature = "kerberos")]
            Mech::Gssapi(g) => tokio::task::block_in_place(|| g.step(&token)),
        };
        match result {
            Ok((reply, None)) => SaslOutcome {
                reply: reply.map(Bytes::from),
                ids: Vec::new(),
                failed: false,
            },
            Ok((reply, Some(who))) => {
                let ids = self.server.policy.identities(&who);
                tracing::info!(authenticated = %who, authorized = %ids[0].id, "SASL authentication complete");
                SaslOutcome {
                    reply: reply.map(Bytes::from),
                    ids,
                    failed: false,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "client failed to SASL authenticate");
                SaslOutcome {
                    reply: None,
                    ids: Vec::new(),
                    failed: true,
                }
            }
        }
    }

    #[allow(unused_variables)]
    fn choose(&self, first: &Bytes) -> Mech {
        #[cfg(feature = "kerberos")]
        if let Some(k) = &self.server.kerberos {
            if !first.is_empty() || self.server.users.is_empty() {
                return Mech::Gssapi(k.exchange());
            }
        }
        Mech::Digest(digest_md5::Server::new(nonce()))
    }
}
