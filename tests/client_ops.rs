//! Every opcode through a real third-party client (the `zookeeper-client` crate) against
//! the real `zabd` binary: replies, Stat fields, error codes.

mod common;

use common::{connect, Zabd};
use zookeeper_client::{Acl, Acls, AuthId, CreateMode, Error, MultiReadResult, Permission};

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

#[tokio::test]
async fn create_get_set_delete_with_exact_stats() {
    let z = Zabd::start();
    let c = connect(&z).await;
    let (s, _) = c.create("/a", b"hello", &persistent()).await.unwrap();
    assert_eq!(s.czxid, s.mzxid);
    assert_eq!(s.czxid, s.pzxid);
    assert_eq!((s.version, s.cversion, s.aversion), (0, 0, 0));
    assert_eq!(
        (s.data_length, s.num_children, s.ephemeral_owner),
        (5, 0, 0)
    );
    assert_eq!(s.ctime, s.mtime);

    let (data, g) = c.get_data("/a").await.unwrap();
    assert_eq!(data, b"hello");
    assert_eq!(g, s);

    let s2 = c.set_data("/a", b"hi", Some(0)).await.unwrap();
    assert_eq!(s2.version, 1);
    assert!(s2.mzxid > s.mzxid);
    assert_eq!(s2.czxid, s.czxid);
    assert_eq!(s2.data_length, 2);
    assert_eq!(
        c.set_data("/a", b"x", Some(0)).await,
        Err(Error::BadVersion)
    );

    let (child, _) = c.create("/a/b", b"", &persistent()).await.unwrap();
    let (_, parent) = c.get_data("/a").await.unwrap();
    assert_eq!((parent.cversion, parent.num_children), (1, 1));
    assert_eq!(parent.pzxid, child.czxid);
    assert_eq!(c.delete("/a", None).await, Err(Error::NotEmpty));
    c.delete("/a/b", Some(0)).await.unwrap();
    let (_, parent) = c.get_data("/a").await.unwrap();
    // Clients see every child change in cversion (ZooKeeper's DataNode.copyStat).
    assert_eq!((parent.cversion, parent.num_children), (2, 0));
    assert!(parent.pzxid > child.czxid);
    assert_eq!(c.delete("/a", Some(7)).await, Err(Error::BadVersion));
    c.delete("/a", Some(1)).await.unwrap();
    assert_eq!(c.get_data("/a").await, Err(Error::NoNode));
    assert_eq!(c.check_stat("/a").await, Ok(None));
}

#[tokio::test]
async fn error_codes() {
    let z = Zabd::start();
    let c = connect(&z).await;
    assert_eq!(
        c.create("/x/y", b"", &persistent()).await.unwrap_err(),
        Error::NoNode
    );
    c.create("/x", b"", &persistent()).await.unwrap();
    assert_eq!(
        c.create("/x", b"", &persistent()).await.unwrap_err(),
        Error::NodeExists
    );
    let eph = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    c.create("/e", b"", &eph).await.unwrap();
    assert_eq!(
        c.create("/e/c", b"", &persistent()).await.unwrap_err(),
        Error::NoChildrenForEphemerals
    );
    assert!(matches!(
        c.delete("/zookeeper", None).await,
        Err(Error::BadArguments(_))
    ));
    assert_eq!(c.get_children("/nope").await.unwrap_err(), Error::NoNode);
    let ttl = persistent().with_ttl(std::time::Duration::from_secs(5));
    assert_eq!(
        c.create("/t", b"", &ttl).await.unwrap_err(),
        Error::Unimplemented
    );
}

#[tokio::test]
async fn sequential_ephemeral_and_container_nodes() {
    let z = Zabd::start_with("extended_types_enabled = true\ncontainer_check_interval_ms = 100");
    let c = connect(&z).await;
    c.create("/q", b"", &persistent()).await.unwrap();
    let seq = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    let (s1, n1) = c.create("/q/n-", b"", &seq).await.unwrap();
    let (_, n2) = c.create("/q/n-", b"", &seq).await.unwrap();
    assert_eq!(
        (n1.to_string(), n2.to_string()),
        ("0000000000".into(), "0000000001".into())
    );
    assert_eq!(s1.ephemeral_owner, c.session_id().0);
    assert_eq!(
        c.list_children("/q").await.unwrap(),
        vec!["n-0000000000", "n-0000000001"]
    );
    let eph = c.list_ephemerals("/").await.unwrap();
    assert_eq!(eph.len(), 2);
    assert_eq!(c.count_descendants_number("/q").await.unwrap(), 2);

    // A container is deleted by the server once it had a child and has none.
    let cont = CreateMode::Container.with_acls(Acls::anyone_all());
    let (cs, _) = c.create("/cont", b"", &cont).await.unwrap();
    assert_eq!(cs.ephemeral_owner, 0);
    c.create("/cont/x", b"", &persistent()).await.unwrap();
    c.delete("/cont/x", None).await.unwrap();
    common::wait_for("container deleted", || async {
        c.check_stat("/cont").await.unwrap().is_none()
    })
    .await;

    // A TTL node with no children goes after its TTL.
    let ttl = persistent().with_ttl(std::time::Duration::from_millis(200));
    c.create("/ttl", b"", &ttl).await.unwrap();
    common::wait_for("ttl node deleted", || async {
        c.check_stat("/ttl").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn multi_is_all_or_nothing() {
    let z = Zabd::start();
    let c = connect(&z).await;
    let mut m = c.new_multi_writer();
    m.add_create("/m", b"1", &persistent()).unwrap();
    m.add_create("/m/locks", b"", &persistent()).unwrap();
    m.add_create(
        "/m/locks/l",
        b"",
        &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
    )
    .unwrap();
    let results = m.commit().await.unwrap();
    assert_eq!(results.len(), 3);

    let mut m = c.new_multi_writer();
    m.add_set_data("/m", b"2", Some(0)).unwrap();
    m.add_create("/m", b"", &persistent()).unwrap();
    m.add_delete("/m/locks/l", None).unwrap();
    match m.commit().await {
        Err(zookeeper_client::MultiWriteError::OperationFailed { index, source }) => {
            assert_eq!((index, source), (1, Error::NodeExists));
        }
        other => panic!("expected failure at op 1, got {other:?}"),
    }
    let (data, stat) = c.get_data("/m").await.unwrap();
    assert_eq!((data.as_slice(), stat.version), (&b"1"[..], 0));
    assert!(c.check_stat("/m/locks/l").await.unwrap().is_some());

    let mut r = c.new_multi_reader();
    r.add_get_data("/m").unwrap();
    r.add_get_children("/m").unwrap();
    r.add_get_data("/missing").unwrap();
    let res = r.commit().await.unwrap();
    assert!(matches!(&res[0], MultiReadResult::Data { data, .. } if data == b"1"));
    assert!(
        matches!(&res[1], MultiReadResult::Children { children } if children == &vec!["locks".to_string()])
    );
    assert!(matches!(
        &res[2],
        MultiReadResult::Error { err: Error::NoNode }
    ));

    let mut cw = c.new_check_writer("/m", Some(0)).unwrap();
    cw.add_set_data("/m", b"3", None).unwrap();
    cw.commit().await.unwrap();
    assert_eq!(c.get_data("/m").await.unwrap().0, b"3");
}

#[tokio::test]
async fn acls_and_digest_auth() {
    let z = Zabd::start();
    let c = connect(&z).await;
    c.auth("digest", b"alice:secret").await.unwrap();
    let creator = CreateMode::Persistent.with_acls(Acls::creator_all());
    c.create("/private", b"p", &creator).await.unwrap();
    let (acl, stat) = c.get_acl("/private").await.unwrap();
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].scheme(), "digest");
    assert_eq!(acl[0].id(), zabd::auth::digest_id("alice:secret"));
    assert_eq!(stat.aversion, 0);

    let other = connect(&z).await;
    assert_eq!(other.get_data("/private").await.unwrap_err(), Error::NoAuth);
    assert_eq!(other.get_acl("/private").await.unwrap_err(), Error::NoAuth);
    other.auth("digest", b"alice:secret").await.unwrap();
    assert_eq!(other.get_data("/private").await.unwrap().0, b"p");

    let users = c.list_auth_users().await.unwrap();
    assert!(users
        .iter()
        .any(|u| u.scheme() == "digest" && u.user() == "alice"));
    assert!(users
        .iter()
        .any(|u| u.scheme() == "ip" && u.user() == "127.0.0.1"));

    let read_only = [Acl::new(Permission::READ, AuthId::anyone())];
    assert_eq!(
        c.set_acl("/private", &read_only, Some(3))
            .await
            .unwrap_err(),
        Error::BadVersion
    );
    let s = c.set_acl("/private", &read_only, Some(0)).await.unwrap();
    assert_eq!(s.aversion, 1);
    // ADMIN is checked before the version, as in ZooKeeper.
    assert_eq!(
        c.set_acl("/private", &read_only, Some(0))
            .await
            .unwrap_err(),
        Error::NoAuth
    );
    assert_eq!(
        c.set_data("/private", b"x", None).await.unwrap_err(),
        Error::NoAuth
    );
    let (acl, _) = c.get_acl("/zookeeper/config").await.unwrap();
    assert_eq!(acl[0].permission(), Permission::READ);
}

#[tokio::test]
async fn system_nodes_and_sync() {
    let z = Zabd::start();
    let c = connect(&z).await;
    let mut root = c.list_children("/").await.unwrap();
    root.sort();
    assert_eq!(root, vec!["zookeeper"]);
    let mut sys = c.list_children("/zookeeper").await.unwrap();
    sys.sort();
    assert_eq!(sys, vec!["config", "quota"]);
    let (cfg, _) = c.get_config().await.unwrap();
    assert!(cfg.is_empty());
    c.sync("/").await.unwrap();
}

#[tokio::test]
async fn ip_acls_and_the_super_digest() {
    let digest = zabd::auth::digest_id("super:test");
    let z = Zabd::start_with(&format!("super_digest = \"{digest}\""));
    let c = connect(&z).await;
    let loopback = [Acl::new(Permission::ALL, AuthId::new("ip", "127.0.0.0/8"))];
    let elsewhere = [Acl::new(Permission::ALL, AuthId::new("ip", "10.0.0.0/8"))];
    c.create(
        "/lo",
        b"",
        &CreateMode::Persistent.with_acls(Acls::new(&loopback)),
    )
    .await
    .unwrap();
    c.create(
        "/far",
        b"",
        &CreateMode::Persistent.with_acls(Acls::new(&elsewhere)),
    )
    .await
    .unwrap();
    assert!(
        c.get_data("/lo").await.is_ok(),
        "127.0.0.1 is inside 127.0.0.0/8"
    );
    assert_eq!(c.get_data("/far").await.unwrap_err(), Error::NoAuth);
    let bad = [Acl::new(Permission::ALL, AuthId::new("ip", "300.1.1.1"))];
    assert_eq!(
        c.create(
            "/bad",
            b"",
            &CreateMode::Persistent.with_acls(Acls::new(&bad))
        )
        .await
        .unwrap_err(),
        Error::InvalidAcl
    );
    let admin = connect(&z).await;
    admin.auth("digest", b"super:test").await.unwrap();
    assert!(
        admin.get_data("/far").await.is_ok(),
        "super passes every ACL"
    );
    admin.delete("/far", None).await.unwrap();
    assert_eq!(
        c.auth("nosuchscheme", b"x").await.unwrap_err(),
        Error::AuthFailed
    );
}
