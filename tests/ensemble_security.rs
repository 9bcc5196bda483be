//! Security on a 3-member zabd ensemble: members authenticate to each other with quorum
//! SASL (DIGEST-MD5, required both ways), clients with TLS certificates (x509) and SASL
//! DIGEST-MD5. A write made through a follower is prepared on the leader against the
//! identities the follower forwards, so `auth` ACLs expand to the client's x509 or sasl id
//! there, and every member enforces them.

mod common;

use common::certs::{tls_client, Certs};
use common::ensemble::Ensemble;
use std::time::Duration;
use zookeeper_client::{Acls, Client, CreateMode, Error, SaslOptions};

/// DIGEST-MD5 users for clients (Server) and between members (QuorumServer, QuorumLearner).
const JAAS: &str = include_str!("data/quorum-digest.jaas");

async fn sasl_client(addr: &str, user: &'static str, pw: &'static str) -> Client {
    Client::connector()
        .with_sasl(SaslOptions::digest_md5(user, pw))
        .with_session_timeout(Duration::from_secs(10))
        .connect(addr)
        .await
        .unwrap()
}

#[tokio::test]
async fn tls_and_sasl_identities_travel_from_followers_to_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &["alice", "bob"]);
    let jaas = dir.path().join("jaas.conf");
    std::fs::write(&jaas, JAAS).unwrap();
    let e = Ensemble::start(
        3,
        &format!(
            "tls.port_unification = true\ntls.key_store = \"{}\"\ntls.trust_store = \"{}\"\n\
             tls.client_auth = \"want\"\nsasl.jaas_config = \"{}\"\nsasl.quorum_enable = true\n\
             sasl.quorum_learner_require = true\nsasl.quorum_server_require = true\n",
            c.path("server-bundle.pem"),
            c.path("ca.pem"),
            jaas.display()
        ),
    );
    let leader = e.wait_settled();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for i in 0..3 {
        assert!(
            e.log(i).contains("quorum SASL (DIGEST-MD5) on"),
            "member {i}: {}",
            e.log(i)
        );
    }
    assert!(
        (0..3).any(|i| e.log(i).contains("a member authenticated (quorum SASL)")),
        "members authenticated each other"
    );
    let (f1, f2) = (&e.members[followers[0]].addr, &e.members[followers[1]].addr);
    let creator = CreateMode::Persistent.with_acls(Acls::creator_all());

    let alice = tls_client(&c, f1, Some("alice")).await.unwrap();
    alice.create("/x509", b"a", &creator).await.unwrap();
    let (acl, _) = alice.get_acl("/x509").await.unwrap();
    assert_eq!(
        (acl[0].scheme(), acl[0].id()),
        ("x509", "CN=alice,OU=zabd,O=Test"),
        "expanded on the leader from the forwarded x509 id"
    );
    let alice_elsewhere = tls_client(&c, f2, Some("alice")).await.unwrap();
    alice_elsewhere.sync("/x509").await.unwrap();
    assert_eq!(alice_elsewhere.get_data("/x509").await.unwrap().0, b"a");
    let bob_cert = tls_client(&c, f2, Some("bob")).await.unwrap();
    assert_eq!(bob_cert.get_data("/x509").await.unwrap_err(), Error::NoAuth);
    // A write needs the permission on the leader too: bob cannot change alice's node.
    assert_eq!(
        bob_cert.set_data("/x509", b"b", None).await.unwrap_err(),
        Error::NoAuth
    );

    let bob = sasl_client(f1, "bob", "bobsecret").await;
    bob.create("/sasl", b"b", &creator).await.unwrap();
    let (acl, _) = bob.get_acl("/sasl").await.unwrap();
    assert_eq!((acl[0].scheme(), acl[0].id()), ("sasl", "bob"));
    let alice_sasl = sasl_client(&e.members[leader].addr, "alice", "alicesecret").await;
    alice_sasl.sync("/sasl").await.unwrap();
    assert_eq!(
        alice_sasl.get_data("/sasl").await.unwrap_err(),
        Error::NoAuth
    );
    assert_eq!(
        alice_sasl.set_data("/sasl", b"x", None).await.unwrap_err(),
        Error::NoAuth
    );
    let bob_elsewhere = sasl_client(f2, "bob", "bobsecret").await;
    bob_elsewhere.sync("/sasl").await.unwrap();
    bob_elsewhere.set_data("/sasl", b"c", None).await.unwrap();
}
