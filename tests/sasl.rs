//! SASL on the client port: DIGEST-MD5 against a JAAS `Server` section through the
//! `zookeeper-client` crate (rsasl's DIGEST-MD5), the `sasl` ACL scheme, the SASL super
//! user, a wrong password, and ZooKeeper's enforcement (`enforce.auth.enabled`,
//! `sessionRequireClientSASLAuth`) answered with SessionClosedRequireSaslAuth.

mod common;

use common::raw::{connect_req, get_data_req, open, read_frame, reply_header, send_frame};
use common::Zabd;
use std::time::Duration;
use zookeeper_client::{Acls, Client, CreateMode, Error, SaslOptions};

const JAAS: &str = r#"
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="adminsecret"
    user_bob="bobsecret"
    user_alice="alicesecret";
};
"#;

fn start(extra: &str) -> Zabd {
    let dir = tempfile::tempdir().unwrap();
    let jaas = dir.path().join("jaas.conf");
    std::fs::write(&jaas, JAAS).unwrap();
    let data = dir.path().join("data");
    Zabd::start_at(
        dir,
        &data,
        &format!(
            "sasl.jaas_config = \"{}\"\nsasl.super_users = [\"super\"]\n{extra}",
            jaas.display()
        ),
    )
}

async fn as_user(z: &Zabd, user: &'static str, pw: &'static str) -> Result<Client, Error> {
    Client::connector()
        .with_sasl(SaslOptions::digest_md5(user, pw))
        .with_session_timeout(Duration::from_secs(10))
        .with_connection_timeout(Duration::from_secs(5))
        .connect(&z.addr)
        .await
}

#[tokio::test]
async fn digest_md5_users_and_the_sasl_scheme() {
    let z = start("");
    let bob = as_user(&z, "bob", "bobsecret").await.unwrap();
    let who = bob.list_auth_users().await.unwrap();
    assert!(
        who.iter()
            .any(|u| u.scheme() == "sasl" && u.user() == "bob"),
        "{who:?}"
    );
    bob.create(
        "/bob",
        b"b",
        &CreateMode::Persistent.with_acls(Acls::creator_all()),
    )
    .await
    .unwrap();
    let (acl, _) = bob.get_acl("/bob").await.unwrap();
    assert_eq!((acl[0].scheme(), acl[0].id()), ("sasl", "bob"));

    let alice = as_user(&z, "alice", "alicesecret").await.unwrap();
    assert_eq!(alice.get_data("/bob").await.unwrap_err(), Error::NoAuth);
    let anonymous = common::connect(&z).await;
    assert_eq!(anonymous.get_data("/bob").await.unwrap_err(), Error::NoAuth);
    let admin = as_user(&z, "super", "adminsecret").await.unwrap();
    assert_eq!(admin.get_data("/bob").await.unwrap().0, b"b", "super");
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let z = start("");
    let r = as_user(&z, "bob", "wrong").await;
    assert!(r.is_err(), "connected with a wrong password");
    common::wait_until("the failure is logged", || {
        z.log().contains("client failed to SASL authenticate")
    });
    assert!(z.log().contains("wrong password for bob"));
    // The server goes on serving.
    as_user(&z, "bob", "bobsecret").await.unwrap();
}

/// With SASL enforced, a connection that has not authenticated gets
/// SessionClosedRequireSaslAuth (-124) for its first request and is closed, as ZooKeeper's
/// AuthenticationHelper does; one that has authenticated is served.
#[tokio::test]
async fn enforced_sasl_closes_unauthenticated_connections() {
    let z = start("sasl.enforce = true\nsasl.enforce_schemes = [\"sasl\"]\n");
    let mut s = open(&z.addr);
    send_frame(&mut s, &connect_req(0, vec![0; 16], Some(false), 0));
    read_frame(&mut s).expect("connect response");
    send_frame(&mut s, &get_data_req(1, "/zookeeper"));
    let h = reply_header(&read_frame(&mut s).expect("a reply"));
    assert_eq!((h.xid, h.err), (1, -124));
    assert!(read_frame(&mut s).is_none(), "the connection is closed");
    let bob = as_user(&z, "bob", "bobsecret").await.unwrap();
    bob.get_data("/zookeeper").await.unwrap();
}

/// The same through a zoo.cfg key, as ZooKeeper 3.6's sessionRequireClientSASLAuth.
#[test]
fn session_require_client_sasl_auth_via_property() {
    let dir = tempfile::tempdir().unwrap();
    let jaas = dir.path().join("jaas.conf");
    std::fs::write(&jaas, JAAS).unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "dataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
             authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n\
             sessionRequireClientSASLAuth=true\njava.security.auth.login.config={}\n",
            dir.path().join("data").display(),
            jaas.display()
        ),
    )
    .unwrap();
    let (mut child, addr) = common::spawn(&cfg, &dir.path().join("log")).expect("starts");
    let mut s = open(&addr);
    send_frame(&mut s, &connect_req(0, vec![0; 16], Some(false), 0));
    read_frame(&mut s).expect("connect response");
    send_frame(&mut s, &get_data_req(1, "/"));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, -124);
    let _ = child.kill();
    let _ = child.wait();
}
