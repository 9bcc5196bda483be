//! Quorum TLS on zabd ensembles (`quorum_tls`, ZooKeeper's `sslQuorum`/`ssl.quorum.*`):
//! members that trust each other's certificates form an ensemble over TLS, with quorum
//! SASL on top; a member whose certificate another CA signed, or that names another host,
//! is kept out; port
//! unification lets plain and TLS members form one ensemble (the rolling switch).

mod common;

use common::certs::Certs;
use common::ensemble::Ensemble;
use common::wait_until;
use std::time::Duration;
use zookeeper_client::{Client, CreateMode};

const JAAS: &str = include_str!("data/quorum-digest.jaas");

/// TOML for quorum TLS with `c`'s member certificate and CA.
fn quorum_tls(c: &Certs, dial_tls: bool, unification: bool) -> String {
    format!(
        "quorum_tls.enabled = {dial_tls}\nquorum_tls.port_unification = {unification}\n\
         quorum_tls.key_store = \"{}\"\nquorum_tls.key_store_password = \"{}\"\n\
         quorum_tls.trust_store = \"{}\"\n",
        c.path("server.p12"),
        common::certs::PASSWORD,
        c.path("ca.pem"),
    )
}

async fn client(addr: &str) -> Client {
    Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(addr)
        .await
        .unwrap()
}

/// A write through one member is read through another once it syncs.
async fn replicates(e: &Ensemble, from: usize, to: usize, path: &str) {
    let a = client(&e.members[from].addr).await;
    a.create(
        path,
        b"v",
        &CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all()),
    )
    .await
    .unwrap();
    let b = client(&e.members[to].addr).await;
    b.sync(path).await.unwrap();
    assert_eq!(b.get_data(path).await.unwrap().0, b"v");
}

#[tokio::test(flavor = "multi_thread")]
async fn members_form_over_tls_with_sasl_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &[]);
    let jaas = dir.path().join("jaas.conf");
    std::fs::write(&jaas, JAAS).unwrap();
    let e = Ensemble::start(
        3,
        &format!(
            "{}sasl.jaas_config = \"{}\"\nsasl.quorum_enable = true\n\
             sasl.quorum_learner_require = true\nsasl.quorum_server_require = true\n",
            quorum_tls(&c, true, false),
            jaas.display()
        ),
    );
    let leader = e.wait_settled();
    for i in 0..3 {
        let log = e.log(i);
        assert!(log.contains("quorum TLS on"), "member {i}: {log}");
        assert!(
            !log.contains("quorum TLS to a member failed"),
            "member {i}: {log}"
        );
    }
    assert!(
        (0..3).any(|i| e.log(i).contains("a member authenticated (quorum SASL)")),
        "SASL ran inside the TLS connections"
    );
    let follower = (0..3).find(|i| *i != leader).unwrap();
    replicates(&e, follower, leader, "/over-tls").await;
    replicates(&e, leader, 3 - leader - follower, "/over-tls-2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_with_a_certificate_from_another_ca_is_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    let good = Certs::make(&dir.path().join("good"), &[]);
    let rogue = Certs::make(&dir.path().join("rogue"), &[]);
    // Member 3 trusts the ensemble's CA, but its own certificate is signed by another.
    let e = Ensemble::start_each(3, |i| match i {
        2 => format!(
            "quorum_tls.enabled = true\nquorum_tls.key_store = \"{}\"\n\
             quorum_tls.trust_store = \"{}\"\n",
            rogue.path("server-bundle.pem"),
            good.path("ca.pem"),
        ),
        _ => quorum_tls(&good, true, false),
    });
    wait_until("members 1 and 2 lead and follow without member 3", || {
        let roles: Vec<Option<String>> = (0..2).map(|i| e.role(i).map(|r| r.0)).collect();
        roles.contains(&Some("leader".into())) && roles.contains(&Some("follower".into()))
    });
    wait_until("members 1 and 2 refuse member 3's certificate", || {
        (0..2).any(|i| e.log(i).contains("a connection failed quorum TLS"))
    });
    assert_eq!(
        e.role(2).map(|r| r.0).as_deref(),
        Some("looking"),
        "member 3 never joins: {}",
        e.log(2)
    );
    replicates(&e, 0, 1, "/without-the-rogue").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_another_host_is_refused_by_hostname_verification() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &[]);
    c.leaf_for("elsewhere", "/O=Test/CN=elsewhere", "DNS:elsewhere.example");
    let e = Ensemble::start_each(3, |i| match i {
        2 => format!(
            "quorum_tls.enabled = true\nquorum_tls.key_store = \"{}\"\n\
             quorum_tls.trust_store = \"{}\"\n",
            c.path("elsewhere-bundle.pem"),
            c.path("ca.pem"),
        ),
        _ => quorum_tls(&c, true, false),
    });
    wait_until("the certificate naming another host is refused", || {
        (0..3).any(|i| e.log(i).contains("ssl.quorum.hostnameVerification is on"))
    });
    wait_until("members 1 and 2 serve without member 3", || {
        let roles: Vec<Option<String>> = (0..2).map(|i| e.role(i).map(|r| r.0)).collect();
        roles.contains(&Some("leader".into())) && roles.contains(&Some("follower".into()))
    });
    assert_eq!(e.role(2).map(|r| r.0).as_deref(), Some("looking"));
}

#[tokio::test(flavor = "multi_thread")]
async fn port_unification_lets_plain_and_tls_members_form_one_ensemble() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &[]);
    // The middle of a rolling switch: member 1 still calls in plain text, members 2 and 3
    // already call with TLS; everyone takes both.
    let e = Ensemble::start_each(3, |i| quorum_tls(&c, i != 0, true));
    e.wait_settled();
    replicates(&e, 0, 1, "/mixed").await;
    replicates(&e, 2, 0, "/mixed-2").await;
}
