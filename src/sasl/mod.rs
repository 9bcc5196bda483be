//! SASL authentication on the client port, as ZooKeeper's server does it: DIGEST-MD5
//! against the users of a JAAS `Server` section, and GSSAPI (Kerberos; the mechanism runs
//! in `server::sasl`, on the system's GSSAPI library). Pure: the JAAS file format
//! (`jaas.rs`), the DIGEST-MD5 exchange (`digest_md5.rs`), and what a finished exchange
//! proves (`identities`).
//!
//! Wire: the client sends opcode 102 (`sasl`) requests whose record is `GetSASLRequest
//! { buffer token }`; each is answered by `SetSASLResponse { buffer token }` with the
//! request's xid. When the mechanism completes, the connection gets `sasl:<id>` (and
//! `super` when `<id>` is a configured super user); when it fails, the reply carries
//! AuthFailed (SessionClosedRequireSaslAuth when SASL is enforced) and the connection is
//! closed.

pub mod digest_md5;
pub mod jaas;

use crate::jute::records::Id;
use bytes::Bytes;

/// A SASL token the connection's mechanism has evaluated, on its way to the engine, which
/// answers it in the connection's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslOutcome {
    /// The token for the SetSASLResponse (None: a null buffer).
    pub reply: Option<Bytes>,
    /// What the exchange proved, once complete (empty before).
    pub ids: Vec<Id>,
    /// The exchange failed: the client gets an error and the connection closes.
    pub failed: bool,
}

/// What turns an authenticated principal into ZooKeeper identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaslPolicy {
    /// `zookeeper.superUser`: these ids also get `super`.
    pub super_users: Vec<String>,
    /// `zookeeper.kerberos.removeHostFromPrincipal`.
    pub remove_host: bool,
    /// `zookeeper.kerberos.removeRealmFromPrincipal`.
    pub remove_realm: bool,
}

impl SaslPolicy {
    /// The authorized id of an authenticated one, as ZooKeeper's SaslServerCallbackHandler
    /// canonicalizes it: a Kerberos principal `name/host@REALM` keeps its host and realm
    /// unless told to remove them; a DIGEST-MD5 user name is itself.
    pub fn authorized_id(&self, authenticated: &str) -> String {
        let (name_host, realm) = match authenticated.split_once('@') {
            Some((n, r)) => (n, Some(r)),
            None => (authenticated, None),
        };
        let (name, host) = match name_host.split_once('/') {
            Some((n, h)) => (n, Some(h)),
            None => (name_host, None),
        };
        let mut id = name.to_string();
        if let (Some(h), false) = (host, self.remove_host) {
            id.push('/');
            id.push_str(h);
        }
        if let (Some(r), false) = (realm, self.remove_realm) {
            id.push('@');
            id.push_str(r);
        }
        id
    }

    /// The identities a completed exchange gives: `sasl:<authorized id>`, and `super` for a
    /// super user.
    pub fn identities(&self, authenticated: &str) -> Vec<Id> {
        let id = self.authorized_id(authenticated);
        let mut ids = vec![Id::new("sasl", &id)];
        if self.super_users.contains(&id) {
            ids.push(Id::new("super", ""));
        }
        ids
    }
}

/// Whether a member's Kerberos principal may join the quorum, as ZooKeeper's
/// SaslQuorumServerCallbackHandler decides: a `name/host@REALM` principal must name the
/// host of a configured member; one without a host is let in.
pub fn quorum_principal_allowed(principal: &str, member_hosts: &[String]) -> bool {
    let parts: Vec<&str> = principal.split(['/', '@']).collect();
    parts.len() != 3 || member_hosts.iter().any(|h| h == parts[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_principal_must_name_a_member_host() {
        let hosts = vec!["10.0.0.1".to_string(), "zk2".to_string()];
        assert!(quorum_principal_allowed("zkquorum/zk2@EXAMPLE.COM", &hosts));
        assert!(!quorum_principal_allowed(
            "zkquorum/evil@EXAMPLE.COM",
            &hosts
        ));
        assert!(quorum_principal_allowed("member@EXAMPLE.COM", &hosts));
    }

    #[test]
    fn principals_are_canonicalized_as_zookeeper_does() {
        let keep = SaslPolicy::default();
        assert_eq!(
            keep.authorized_id("zkcli/host1@EXAMPLE.COM"),
            "zkcli/host1@EXAMPLE.COM"
        );
        assert_eq!(keep.authorized_id("bob"), "bob");
        let strip = SaslPolicy {
            remove_host: true,
            remove_realm: true,
            ..Default::default()
        };
        assert_eq!(strip.authorized_id("zkcli/host1@EXAMPLE.COM"), "zkcli");
        assert_eq!(strip.authorized_id("flink@EXAMPLE.COM"), "flink");
        let supers = SaslPolicy {
            super_users: vec!["admin".into()],
            ..Default::default()
        };
        assert_eq!(
            supers.identities("admin"),
            vec![Id::new("sasl", "admin"), Id::new("super", "")]
        );
    }
}
