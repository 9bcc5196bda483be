//! Throwaway certificates for TLS tests, made with the `openssl` and `keytool` commands (as
//! an operator makes them): a CA, a server certificate for 127.0.0.1/localhost, and client
//! certificates, as PEM files, PKCS12 stores (openssl) and a PKCS12 trust store (keytool).

use std::path::{Path, PathBuf};
use std::process::Command;

pub const PASSWORD: &str = "changeit";

pub struct Certs {
    pub dir: PathBuf,
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// A CA, `server` and the named client certificates (subject `/O=Test/OU=zabd/CN=<name>`,
    /// so RFC 2253 `CN=<name>,OU=zabd,O=Test`) in `dir`.
    pub fn make(dir: &Path, clients: &[&str]) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        run(
            dir,
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "3",
                "-subj",
                "/O=Test/CN=zabd test CA",
            ],
        );
        let c = Certs {
            dir: dir.to_path_buf(),
        };
        c.leaf("server", "/O=Test/CN=localhost");
        for name in clients {
            c.leaf(name, &format!("/O=Test/OU=zabd/CN={name}"));
        }
        run(
            dir,
            "keytool",
            &[
                "-importcert",
                "-noprompt",
                "-alias",
                "ca",
                "-file",
                "ca.pem",
                "-keystore",
                "truststore.p12",
                "-storetype",
                "PKCS12",
                "-storepass",
                PASSWORD,
            ],
        );
        c
    }

    /// `<name>.key`, `<name>.pem` (the certificate), `<name>-bundle.pem` (key and
    /// certificate, as ZooKeeper's PEM key store), `<name>.p12`.
    pub fn leaf(&self, name: &str, subject: &str) {
        self.leaf_for(name, subject, "IP:127.0.0.1,DNS:localhost")
    }

    /// [`Certs::leaf`] with other subject alternative names (`san`, openssl's syntax).
    pub fn leaf_for(&self, name: &str, subject: &str, san: &str) {
        let dir = &self.dir;
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={san}\n"
            ),
        )
        .unwrap();
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        run(
            dir,
            "openssl",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                subject,
            ],
        );
        run(
            dir,
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "3",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
        let bundle = format!(
            "{}{}",
            std::fs::read_to_string(dir.join(&key)).unwrap(),
            std::fs::read_to_string(dir.join(&pem)).unwrap()
        );
        std::fs::write(dir.join(format!("{name}-bundle.pem")), bundle).unwrap();
        run(
            dir,
            "openssl",
            &[
                "pkcs12",
                "-export",
                "-in",
                &pem,
                "-inkey",
                &key,
                "-out",
                &format!("{name}.p12"),
                "-passout",
                &format!("pass:{PASSWORD}"),
                "-name",
                name,
            ],
        );
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap()
    }
}

/// A port free on loopback right now (for settings that cannot take 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The zookeeper-client crate brings rustls with another crypto provider too: say which.
pub fn provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS client through the zookeeper-client crate, trusting the test CA, with `who`'s
/// certificate (or none).
pub async fn tls_client(
    c: &Certs,
    addr: &str,
    who: Option<&str>,
) -> Result<zookeeper_client::Client, zookeeper_client::Error> {
    provider();
    let mut opts = zookeeper_client::TlsOptions::new()
        .with_pem_ca(&c.read("ca.pem"))
        .unwrap();
    if let Some(name) = who {
        opts = opts
            .with_pem_identity(
                &c.read(&format!("{name}.pem")),
                &c.read(&format!("{name}.key")),
            )
            .unwrap();
    }
    zookeeper_client::Client::connector()
        .with_tls(opts)
        .with_session_timeout(std::time::Duration::from_secs(10))
        .with_connection_timeout(std::time::Duration::from_secs(5))
        .connect(&format!("tcp+tls://{addr}"))
        .await
}
