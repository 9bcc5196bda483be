//! TLS on the client port through the `zookeeper-client` crate (rustls) and a raw rustls
//! client: secureClientPort, port unification, PEM and PKCS12 stores, ssl.clientAuth, the
//! x509 ACL scheme and its super user, JKS refused, and a key store reloaded in place.
//! Certificates are made by `openssl` and `keytool` (tests/common/certs.rs).

mod common;

use common::certs::{free_port, provider, Certs, PASSWORD};
use common::{wait_until, Zabd};
use std::sync::Arc;
use std::time::Duration;
use zookeeper_client::{Acls, AuthId, Client, CreateMode, Error, Permission};

const ALICE: &str = "CN=alice,OU=zabd,O=Test";

fn pem_settings(c: &Certs, port: u16, client_auth: &str) -> String {
    format!(
        "tls.secure_client_port = {port}\ntls.secure_client_port_address = \"127.0.0.1\"\n\
         tls.key_store = \"{}\"\ntls.trust_store = \"{}\"\ntls.client_auth = \"{client_auth}\"\n\
         tls.x509_super_user = \"CN=admin,OU=zabd,O=Test\"\n",
        c.path("server-bundle.pem"),
        c.path("ca.pem"),
    )
}

async fn tls_client(c: &Certs, port: u16, who: Option<&str>) -> Result<Client, Error> {
    common::certs::tls_client(c, &format!("127.0.0.1:{port}"), who).await
}

/// A raw TLS handshake (no ZooKeeper traffic): the server certificate it got, or why not.
async fn handshake(c: &Certs, addr: &str, who: Option<&str>) -> Result<Vec<u8>, String> {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    handshake_with(c, addr, who, &versions)
        .await
        .map(|(cert, _)| cert)
}

/// A handshake offering only `versions`: the server's certificate and the version agreed.
async fn handshake_with(
    c: &Certs,
    addr: &str,
    who: Option<&str>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<(Vec<u8>, rustls::ProtocolVersion), String> {
    use rustls::pki_types::ServerName;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut c.read("ca.pem").as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match who {
        Some(name) => {
            let chain = rustls_pemfile::certs(&mut c.read(&format!("{name}.pem")).as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pemfile::private_key(&mut c.read(&format!("{name}.key")).as_bytes())
                .unwrap()
                .unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    // TLS 1.3 tells a refused client certificate only after the handshake: read once.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"ruok").await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    if answer != b"imok" {
        return Err(format!("answer {:?}", String::from_utf8_lossy(&answer)));
    }
    let session = tls.get_ref().1;
    let server_cert = session.peer_certificates().unwrap()[0].to_vec();
    Ok((server_cert, session.protocol_version().unwrap()))
}

#[tokio::test]
async fn secure_port_with_pem_stores_and_x509_acls() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &["alice", "bob", "admin"]);
    let port = free_port();
    let z = Zabd::start_with(&pem_settings(&c, port, "need"));
    assert!(
        z.four("conf").contains(&format!("secureClientPort={port}")),
        "conf shows the secure port"
    );

    let alice = tls_client(&c, port, Some("alice")).await.unwrap();
    let who = alice.list_auth_users().await.unwrap();
    assert!(
        who.iter()
            .any(|a| a.scheme() == "x509" && a.user() == ALICE),
        "alice's certificate gives x509:{ALICE}, got {who:?}"
    );
    let mine = CreateMode::Persistent.with_acls(Acls::creator_all());
    alice.create("/alice", b"v", &mine).await.unwrap();
    let (acl, _) = alice.get_acl("/alice").await.unwrap();
    assert_eq!(
        (acl[0].scheme(), acl[0].id()),
        ("x509", ALICE),
        "auth expands to x509"
    );
    let explicit = [zookeeper_client::Acl::new(
        Permission::ALL,
        AuthId::new("x509", ALICE),
    )];
    alice
        .create(
            "/alice2",
            b"v",
            &CreateMode::Persistent.with_acls(Acls::new(&explicit)),
        )
        .await
        .unwrap();

    let bob = tls_client(&c, port, Some("bob")).await.unwrap();
    assert_eq!(bob.get_data("/alice").await.unwrap_err(), Error::NoAuth);
    assert_eq!(bob.get_data("/alice2").await.unwrap_err(), Error::NoAuth);
    let admin = tls_client(&c, port, Some("admin")).await.unwrap();
    assert_eq!(admin.get_data("/alice").await.unwrap().0, b"v", "super");

    // The plain port is plain, and speaks no TLS.
    let plain = common::connect(&z).await;
    assert_eq!(plain.get_data("/alice").await.unwrap_err(), Error::NoAuth);
    assert!(handshake(&c, &z.addr, Some("alice")).await.is_err());

    // need: no certificate, no connection.
    let secure = format!("127.0.0.1:{port}");
    let refused = handshake(&c, &secure, None).await;
    assert!(
        refused.is_err(),
        "a client without a certificate is refused"
    );
    wait_until("the failed handshake is counted", || {
        z.four("mntr").contains("zk_unsuccessful_handshake\t1")
    });
    assert!(z.log().contains("TLS handshake failed"));
    handshake(&c, &secure, Some("bob")).await.unwrap();
}

#[tokio::test]
async fn port_unification_takes_tls_and_plain_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &["alice"]);
    let z = Zabd::start_with(&format!(
        "tls.port_unification = true\ntls.key_store = \"{}\"\ntls.trust_store = \"{}\"\n\
         tls.client_auth = \"want\"\n",
        c.path("server-bundle.pem"),
        c.path("ca.pem"),
    ));
    let port: u16 = z.addr.rsplit(':').next().unwrap().parse().unwrap();
    let alice = tls_client(&c, port, Some("alice")).await.unwrap();
    alice
        .create(
            "/u",
            b"1",
            &CreateMode::Persistent.with_acls(Acls::creator_all()),
        )
        .await
        .unwrap();
    // want: a client without a certificate is served, with no x509 identity.
    let anonymous = tls_client(&c, port, None).await.unwrap();
    assert_eq!(anonymous.get_data("/u").await.unwrap_err(), Error::NoAuth);
    let plain = common::connect(&z).await;
    assert_eq!(plain.get_data("/u").await.unwrap_err(), Error::NoAuth);
    plain
        .create(
            "/p",
            b"",
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
    assert_eq!(z.four("ruok"), "imok");
    handshake(&c, &z.addr, None).await.unwrap();
}

#[tokio::test]
async fn pkcs12_stores_made_by_openssl_and_keytool() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &["alice"]);
    let port = free_port();
    // As ZooKeeper's zoo.cfg keys, through --property (JVMFLAGS' -D).
    let z = Zabd::start_with(&format!(
        "tls.secure_client_port = {port}\ntls.secure_client_port_address = \"127.0.0.1\"\n\
         tls.key_store = \"{}\"\ntls.key_store_password = \"{PASSWORD}\"\n\
         tls.trust_store = \"{}\"\ntls.trust_store_password = \"{PASSWORD}\"\n",
        c.path("server.p12"),
        c.path("truststore.p12"),
    ));
    let alice = tls_client(&c, port, Some("alice")).await.unwrap();
    alice
        .create(
            "/p12",
            b"",
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
    drop(z);
}

#[test]
fn a_jks_store_is_refused_with_the_command_that_converts_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &[]);
    let jks = c.path("server.jks");
    std::fs::write(&jks, b"not read").unwrap();
    let out = std::process::Command::new(common::zabd_bin())
        .args([
            "--property",
            "clientPort=0",
            "--property",
            "admin.enableServer=false",
        ])
        .args(["--property", &format!("dataDir={}", c.path("data"))])
        .args(["--property", &format!("secureClientPort={}", free_port())])
        .args(["--property", &format!("ssl.keyStore.location={jks}")])
        .args(["--property", "ssl.clientAuth=none"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("keytool -importkeystore") && err.contains("server.jks"),
        "{err}"
    );
}

#[tokio::test]
async fn a_changed_key_store_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &["alice"]);
    let port = free_port();
    let z = Zabd::start_with(&pem_settings(&c, port, "need"));
    let secure = format!("127.0.0.1:{port}");
    let before = handshake(&c, &secure, Some("alice")).await.unwrap();
    // A renewed certificate, written over the key store in place.
    c.leaf("renewed", "/O=Test/CN=localhost");
    std::fs::copy(
        dir.path().join("renewed-bundle.pem"),
        dir.path().join("server-bundle.pem"),
    )
    .unwrap();
    let renewed = std::fs::read(dir.path().join("renewed.pem")).unwrap();
    let renewed_der = rustls_pemfile::certs(&mut renewed.as_slice())
        .next()
        .unwrap()
        .unwrap()
        .to_vec();
    assert_ne!(before, renewed_der);
    let deadline = std::time::Instant::now() + common::DEADLINE;
    loop {
        let now = handshake(&c, &secure, Some("alice")).await.unwrap();
        if now == renewed_der {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate is never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(z.log().contains("TLS key and trust stores reloaded"));
}

/// A zoo.cfg with `secureClientPort` and no `clientPort`: ZooKeeper opens no plain port, and
/// neither does zabd; the clients' address it announces is the secure one.
#[tokio::test]
async fn a_zoo_cfg_with_only_a_secure_port_opens_no_plain_port() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &["alice"]);
    let port = free_port();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nsecureClientPort={port}\nsecureClientPortAddress=127.0.0.1\n\
             serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
             authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n\
             ssl.keyStore.location={}\nssl.keyStore.password={PASSWORD}\n\
             ssl.trustStore.location={}\nssl.trustStore.password={PASSWORD}\n\
             admin.enableServer=false\n",
            c.path("data"),
            c.path("server.p12"),
            c.path("truststore.p12"),
        ),
    )
    .unwrap();
    let (mut child, addr) = common::spawn(&cfg, &dir.path().join("zabd.log")).expect("starts");
    assert_eq!(addr, format!("127.0.0.1:{port}"));
    let alice = tls_client(&c, port, Some("alice")).await.unwrap();
    alice.get_data("/zookeeper").await.unwrap();
    let conf = String::from_utf8(
        std::process::Command::new(common::zabd_bin())
            .args(["4lw", "conf", &addr])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !conf.contains("clientPort="),
        "a TLS port answers no plain word: {conf}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `ssl.enabledProtocols=TLSv1.2`: a client offering only TLS 1.3 is refused, one offering
/// 1.2 gets 1.2; a cipher-suite list the server cannot use stops the start with a message.
#[tokio::test]
async fn protocols_and_cipher_suites_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certs::make(dir.path(), &["alice"]);
    let port = free_port();
    let z = Zabd::start_with(&format!(
        "{}tls.protocols = [\"TLSv1.2\"]\n\
         tls.cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]\n",
        pem_settings(&c, port, "need")
    ));
    let secure = format!("127.0.0.1:{port}");
    provider();
    let only13 = [&rustls::version::TLS13];
    assert!(handshake_with(&c, &secure, Some("alice"), &only13)
        .await
        .is_err());
    let both = [&rustls::version::TLS13, &rustls::version::TLS12];
    let (_, version) = handshake_with(&c, &secure, Some("alice"), &both)
        .await
        .unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
    drop(z);
    let out = std::process::Command::new(common::zabd_bin())
        .args([
            "--property",
            "clientPort=0",
            "--property",
            "admin.enableServer=false",
        ])
        .args(["--property", &format!("dataDir={}", c.path("data2"))])
        .args(["--property", &format!("secureClientPort={}", free_port())])
        .args([
            "--property",
            &format!("ssl.keyStore.location={}", c.path("server-bundle.pem")),
        ])
        .args(["--property", "ssl.clientAuth=none"])
        .args(["--property", "ssl.ciphersuites=TLS_RSA_WITH_NULL_MD5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ssl.ciphersuites"),
        "{err}"
    );
}
