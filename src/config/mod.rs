//! Configuration: zabd's own TOML or an Apache ZooKeeper `zoo.cfg`, into one typed [`Settings`].
//!
//! Owns: parsing, defaults and validation. A bad value is a [`ConfigError`] naming the file
//! and key (zabd exits with code 2); an unknown key is a warning. `conf/zabd.toml` is both
//! the documentation of every setting and the embedded default.

pub mod zoo_cfg;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The embedded default configuration (conf/zabd.toml).
pub const DEFAULT_TOML: &str = include_str!("../../conf/zabd.toml");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {msg}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub msg: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Participant,
    Observer,
}

/// One `server.N` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub id: i64,
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub role: Role,
    pub client: Option<(String, u16)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub tick_time: u64,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    pub client_port: u16,
    pub client_port_address: String,
    pub max_client_cnxns: u32,
    pub max_cnxns: u32,
    pub min_session_timeout: i32,
    pub max_session_timeout: i32,
    pub four_letter_words: Vec<String>,
    pub extended_types_enabled: bool,
    pub container_check_interval_ms: u64,
    pub jute_max_buffer: usize,
    pub max_outstanding_per_connection: usize,
    /// Requests read and not yet answered, over all connections (ZooKeeper's
    /// `globalOutstandingLimit`); past it connections with a request outstanding are not
    /// read until answers go out. 0: no limit.
    pub global_outstanding_limit: usize,
    /// Watches one session may hold on this member; 0: no limit.
    pub max_watches_per_session: usize,
    pub max_queued_bytes_per_connection: usize,
    /// Reply bytes queued over all connections; past it, a connection that has more than
    /// 1 MiB of its own waiting is closed as a slow reader.
    pub max_queued_bytes_total: usize,
    pub super_digest: String,
    pub enforce_quota: bool,
    pub snap_count: u64,
    pub force_sync: bool,
    pub pre_alloc_size_kb: u64,
    pub autopurge_snap_retain_count: u32,
    pub autopurge_purge_interval_hours: u64,
    /// This member's id; `<dataDir>/myid`, when present, must agree.
    #[serde(alias = "myid")]
    pub server_id: i64,
    pub init_limit: u32,
    pub sync_limit: u32,
    pub commit_log_count: usize,
    pub read_only_mode: bool,
    /// `leaderServes`: the leader accepts client connections. With it off, the leader
    /// refuses new ones (clients sit on followers) and keeps those it had as a follower.
    pub leader_serves: bool,
    /// `localSessionsEnabled`: a new session on an ensemble member is local to it until
    /// it creates an ephemeral node (see `engine/local.rs`).
    pub local_sessions: bool,
    /// `localSessionsUpgradingEnabled`: a local session that creates an ephemeral node
    /// becomes global; without it, that create fails with EphemeralOnLocalSession.
    pub local_sessions_upgrading: bool,
    /// `reconfigEnabled`: clients (super, or with WRITE on `/zookeeper/config`) may change
    /// the membership with `reconfig`; off, they get ReconfigDisabled.
    pub reconfig_enabled: bool,
    /// `standaloneEnabled`: a membership needs two voters (a reconfig down to one is
    /// refused), and one server alone runs standalone.
    pub standalone_enabled: bool,
    /// Testing only: the log writer waits this long before every fdatasync (a slow disk).
    pub test_log_sync_delay_ms: u64,
    /// A log sync slower than this is logged and counted (zoo.cfg:
    /// `fsync.warningthresholdms`).
    pub fsync_warning_threshold_ms: u64,
    /// The AdminServer (HTTP `/commands`), as ZooKeeper's `admin.*`.
    pub admin: AdminSettings,
    /// The Prometheus endpoint, as ZooKeeper's `metricsProvider.*`.
    pub metrics: MetricsSettings,
    /// TLS on the client port, as ZooKeeper's `secureClientPort` and `ssl.*`.
    pub tls: TlsSettings,
    /// SASL on the client port and authentication enforcement.
    pub sasl: SaslSettings,
    /// TLS between members, as ZooKeeper's `sslQuorum` and `ssl.quorum.*`.
    pub quorum_tls: QuorumTlsSettings,
    #[serde(skip)]
    pub servers: Vec<ServerSpec>,
    /// The membership's version (zoo.cfg's `dynamicConfigFile` name suffix, hex; 0 when
    /// static), printed in `/zookeeper/config`.
    #[serde(skip)]
    pub config_version: i64,
    /// The text of the file the settings came from (the AdminServer's
    /// `initial_configuration`).
    #[serde(skip)]
    pub source_text: String,
    /// The file the settings came from (none: the embedded default); a reconfig rewrites
    /// its `dynamicConfigFile` line (`dynamic_config_file` in TOML).
    #[serde(skip)]
    pub config_file: Option<std::path::PathBuf>,
    /// The dynamic configuration file the members came from, if any (zoo.cfg's
    /// `dynamicConfigFile`, TOML's `dynamic_config_file`).
    #[serde(rename = "dynamic_config_file")]
    pub dynamic_file: Option<String>,
    #[serde(rename = "servers")]
    servers_raw: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tick_time: 2000,
            data_dir: PathBuf::from("./data"),
            data_log_dir: PathBuf::new(),
            client_port: 2181,
            client_port_address: "0.0.0.0".into(),
            max_client_cnxns: 60,
            max_cnxns: 0,
            min_session_timeout: 0,
            max_session_timeout: 0,
            four_letter_words: ["ruok", "srvr", "stat", "mntr", "isro"]
                .map(String::from)
                .to_vec(),
            extended_types_enabled: false,
            container_check_interval_ms: 60000,
            jute_max_buffer: crate::proto::frame::DEFAULT_MAX_BUFFER,
            max_outstanding_per_connection: 1000,
            global_outstanding_limit: 1000,
            max_watches_per_session: 1_000_000,
            max_queued_bytes_per_connection: 64 << 20,
            max_queued_bytes_total: 256 << 20,
            super_digest: String::new(),
            enforce_quota: false,
            snap_count: 100_000,
            force_sync: true,
            pre_alloc_size_kb: 65536,
            autopurge_snap_retain_count: 3,
            autopurge_purge_interval_hours: 0,
            server_id: 0,
            init_limit: 10,
            sync_limit: 5,
            commit_log_count: 500,
            read_only_mode: false,
            leader_serves: true,
            local_sessions: false,
            local_sessions_upgrading: false,
            reconfig_enabled: false,
            standalone_enabled: true,
            test_log_sync_delay_ms: 0,
            fsync_warning_threshold_ms: 1000,
            admin: AdminSettings::default(),
            metrics: MetricsSettings::default(),
            tls: TlsSettings::default(),
            sasl: SaslSettings::default(),
            quorum_tls: QuorumTlsSettings::default(),
            servers: Vec::new(),
            config_version: 0,
            source_text: String::new(),
            config_file: None,
            dynamic_file: None,
            servers_raw: BTreeMap::new(),
        }
    }
}

/// ZooKeeper's `admin.*` keys.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// `admin.enableServer` (ZooKeeper's default: on).
    pub enable: bool,
    /// `admin.serverAddress`.
    pub address: String,
    /// `admin.serverPort` (0 picks a free port; the chosen one is printed).
    pub port: u16,
    /// `admin.commandURL`.
    pub command_url: String,
    /// `admin.idleTimeout`: an idle HTTP connection is closed after this long.
    pub idle_timeout_ms: u64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            enable: true,
            address: "0.0.0.0".into(),
            port: 8080,
            command_url: "/commands".into(),
            idle_timeout_ms: 30_000,
        }
    }
}

/// ZooKeeper's `metricsProvider.*` keys for its `PrometheusMetricsProvider`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// On when `metricsProvider.className` names the Prometheus provider.
    pub enable: bool,
    /// `metricsProvider.httpHost`.
    pub host: String,
    /// `metricsProvider.httpPort` (0 picks a free port; the chosen one is printed).
    pub port: u16,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            enable: false,
            host: "0.0.0.0".into(),
            port: 7000,
        }
    }
}

/// TLS on the client port: ZooKeeper's `secureClientPort`, `client.portUnification` and
/// `ssl.*` keys (the zoo.cfg key of each field is in its comment).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// `secureClientPort`: a port that speaks only TLS (0: none). 0 in a TOML file with
    /// `port_unification` off means no TLS at all.
    pub secure_client_port: u16,
    /// `secureClientPortAddress` (default: `client_port_address`).
    pub secure_client_port_address: String,
    /// Whether the plain client port (`client_port`) is open. A zoo.cfg with
    /// `secureClientPort` and no `clientPort` turns it off, as ZooKeeper opens no plain
    /// port then.
    pub plain_port: bool,
    /// `client.portUnification`: the plain client port also accepts TLS (a connection whose
    /// first byte opens a TLS handshake), as ZooKeeper's port unification.
    pub port_unification: bool,
    /// `ssl.keyStore.location`: this server's key and certificate chain (PEM or PKCS12).
    pub key_store: String,
    /// `ssl.keyStore.password` (or `ssl.keyStore.passwordPath`, a file holding it).
    pub key_store_password: String,
    /// `ssl.keyStore.type`: PEM or PKCS12; empty: from the file name (.pem, .p12, .pfx).
    pub key_store_type: String,
    /// `ssl.trustStore.location`: the certificates client certificates are checked against.
    pub trust_store: String,
    /// `ssl.trustStore.password` (or `ssl.trustStore.passwordPath`).
    pub trust_store_password: String,
    /// `ssl.trustStore.type`.
    pub trust_store_type: String,
    /// `ssl.clientAuth`: need (ZooKeeper's default), want or none.
    pub client_auth: String,
    /// `ssl.enabledProtocols` (or `ssl.protocol` alone): TLSv1.2 and/or TLSv1.3; empty:
    /// both.
    pub protocols: Vec<String>,
    /// `ssl.ciphersuites`: IANA names (as Java prints them); empty: rustls' defaults.
    pub cipher_suites: Vec<String>,
    /// `X509AuthenticationProvider.superUser`: the certificate subject (RFC 2253, as Java
    /// prints it) that is also `super`.
    pub x509_super_user: String,
    /// Reload the key and trust stores when their files change (ZooKeeper 3.9's
    /// `client.certReload`); on by default here.
    pub reload: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            secure_client_port: 0,
            secure_client_port_address: String::new(),
            plain_port: true,
            port_unification: false,
            key_store: String::new(),
            key_store_password: String::new(),
            key_store_type: String::new(),
            trust_store: String::new(),
            trust_store_password: String::new(),
            trust_store_type: String::new(),
            client_auth: "need".into(),
            protocols: Vec::new(),
            cipher_suites: Vec::new(),
            x509_super_user: String::new(),
            reload: true,
        }
    }
}

/// TLS between members on the election and quorum ports: ZooKeeper's `sslQuorum`,
/// `portUnification` and `ssl.quorum.*` keys (the zoo.cfg key of each field is in its
/// comment). Members always present and ask for certificates (`ssl.quorum.clientAuth` is
/// need, as ZooKeeper's default).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct QuorumTlsSettings {
    /// `sslQuorum`: connections this member opens to others speak TLS, and its peer ports
    /// take only TLS (unless `port_unification`).
    pub enabled: bool,
    /// `portUnification`: the peer ports take TLS and plain connections alike (for a rolling
    /// switch of an ensemble to TLS, as in ZooKeeper).
    pub port_unification: bool,
    /// `ssl.quorum.keyStore.location`: this member's key and certificate (PEM or PKCS12),
    /// shown to the members it calls and to those that call it.
    pub key_store: String,
    /// `ssl.quorum.keyStore.password` (or `.passwordPath`).
    pub key_store_password: String,
    /// `ssl.quorum.keyStore.type`.
    pub key_store_type: String,
    /// `ssl.quorum.trustStore.location`: what other members' certificates are checked
    /// against.
    pub trust_store: String,
    /// `ssl.quorum.trustStore.password` (or `.passwordPath`).
    pub trust_store_password: String,
    /// `ssl.quorum.trustStore.type`.
    pub trust_store_type: String,
    /// `ssl.quorum.enabledProtocols` (or `ssl.quorum.protocol` alone).
    pub protocols: Vec<String>,
    /// `ssl.quorum.ciphersuites`.
    pub cipher_suites: Vec<String>,
    /// `ssl.quorum.hostnameVerification`: the certificate of a member called must name its
    /// address or its configured host.
    pub hostname_verification: bool,
    /// `ssl.quorum.clientHostnameVerification` (default: `hostname_verification`): the
    /// same check on the certificate of a member that calls.
    pub client_hostname_verification: Option<bool>,
    /// `sslQuorumReloadCertFiles`: reload the stores when their files change.
    pub reload: bool,
}

impl Default for QuorumTlsSettings {
    fn default() -> Self {
        QuorumTlsSettings {
            enabled: false,
            port_unification: false,
            key_store: String::new(),
            key_store_password: String::new(),
            key_store_type: String::new(),
            trust_store: String::new(),
            trust_store_password: String::new(),
            trust_store_type: String::new(),
            protocols: Vec::new(),
            cipher_suites: Vec::new(),
            hostname_verification: true,
            client_hostname_verification: None,
            reload: false,
        }
    }
}

impl QuorumTlsSettings {
    /// Whether any peer connection may speak TLS.
    pub fn active(&self) -> bool {
        self.enabled || self.port_unification
    }

    /// The stores and their options, in the shape the client port's loader reads.
    pub fn stores(&self) -> TlsSettings {
        TlsSettings {
            key_store: self.key_store.clone(),
            key_store_password: self.key_store_password.clone(),
            key_store_type: self.key_store_type.clone(),
            trust_store: self.trust_store.clone(),
            trust_store_password: self.trust_store_password.clone(),
            trust_store_type: self.trust_store_type.clone(),
            client_auth: "need".into(),
            protocols: self.protocols.clone(),
            cipher_suites: self.cipher_suites.clone(),
            reload: self.reload,
            ..TlsSettings::default()
        }
    }
}

impl TlsSettings {
    /// Whether any client connection may speak TLS.
    pub fn enabled(&self) -> bool {
        self.secure_client_port != 0 || self.port_unification
    }
}

/// SASL for clients (DIGEST-MD5 and GSSAPI) and ZooKeeper's authentication enforcement
/// (the zoo.cfg key or system property of each field is in its comment).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SaslSettings {
    /// `java.security.auth.login.config`: the JAAS file whose `Server` section gives the
    /// DIGEST-MD5 users or the Kerberos keytab and principal. Empty: no SASL.
    pub jaas_config: String,
    /// `zookeeper.sasl.serverconfig`: the section of that file for clients.
    pub server_section: String,
    /// `zookeeper.superUser`: authorized ids that are also `super`.
    pub super_users: Vec<String>,
    /// `zookeeper.SaslAuthenticationProvider.superPassword`: the DIGEST-MD5 password of the
    /// user `super` (instead of a `user_super` line in the JAAS file).
    pub super_password: String,
    /// `zookeeper.kerberos.removeHostFromPrincipal`.
    pub remove_host_from_principal: bool,
    /// `zookeeper.kerberos.removeRealmFromPrincipal`.
    pub remove_realm_from_principal: bool,
    /// `zookeeper.allowSaslFailedClients`: a client whose SASL exchange fails stays
    /// connected (unless SASL is enforced).
    pub allow_failed_clients: bool,
    /// `enforce.auth.enabled`: every connection must authenticate with one of
    /// `enforce_schemes` before anything but auth and sasl requests
    /// (`sessionRequireClientSASLAuth=true` is enforce with `["sasl"]`).
    pub enforce: bool,
    /// `enforce.auth.schemes`: sasl, digest, x509 or ip.
    pub enforce_schemes: Vec<String>,
    /// `quorum.auth.enableSasl`: members authenticate to each other (DIGEST-MD5, the JAAS
    /// file's `QuorumServer` and `QuorumLearner` sections).
    pub quorum_enable: bool,
    /// `quorum.auth.learnerRequireSasl`: this member authenticates when it connects to
    /// another.
    pub quorum_learner_require: bool,
    /// `quorum.auth.serverRequireSasl`: members that connect here must authenticate.
    pub quorum_server_require: bool,
    /// `quorum.auth.server.saslLoginContext`.
    pub quorum_server_section: String,
    /// `quorum.auth.learner.saslLoginContext`.
    pub quorum_learner_section: String,
    /// `quorum.auth.kerberos.servicePrincipal`: the principal a member asks a ticket for
    /// when it calls another (`_HOST`: that member's host).
    pub quorum_service_principal: String,
}

impl Default for SaslSettings {
    fn default() -> Self {
        SaslSettings {
            jaas_config: String::new(),
            server_section: "Server".into(),
            super_users: Vec::new(),
            super_password: String::new(),
            remove_host_from_principal: false,
            remove_realm_from_principal: false,
            allow_failed_clients: false,
            enforce: false,
            enforce_schemes: Vec::new(),
            quorum_enable: false,
            quorum_learner_require: false,
            quorum_server_require: false,
            quorum_server_section: "QuorumServer".into(),
            quorum_learner_section: "QuorumLearner".into(),
            quorum_service_principal: "zkquorum/localhost".into(),
        }
    }
}

const TOML_KEYS: [&str; 45] = [
    "quorum_tls",
    "sasl",
    "tls",
    "fsync_warning_threshold_ms",
    "admin",
    "metrics",
    "max_queued_bytes_total",
    "global_outstanding_limit",
    "max_watches_per_session",
    "commit_log_count",
    "test_log_sync_delay_ms",
    "read_only_mode",
    "leader_serves",
    "local_sessions",
    "local_sessions_upgrading",
    "reconfig_enabled",
    "dynamic_config_file",
    "standalone_enabled",
    "enforce_quota",
    "snap_count",
    "force_sync",
    "pre_alloc_size_kb",
    "autopurge_snap_retain_count",
    "autopurge_purge_interval_hours",
    "tick_time",
    "data_dir",
    "data_log_dir",
    "client_port",
    "client_port_address",
    "max_client_cnxns",
    "max_cnxns",
    "min_session_timeout",
    "max_session_timeout",
    "four_letter_words",
    "extended_types_enabled",
    "container_check_interval_ms",
    "jute_max_buffer",
    "max_outstanding_per_connection",
    "max_queued_bytes_per_connection",
    "super_digest",
    "server_id",
    "init_limit",
    "sync_limit",
    "servers",
    "myid",
];

impl Settings {
    /// Loads a file (`.cfg` is read as zoo.cfg, anything else as zabd TOML), then the
    /// `--property key=value` pairs on top, as ZooKeeper reads JVMFLAGS' `-D` properties.
    pub fn load(path: &Path, props: &[(String, String)]) -> Result<Settings, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "-".into(),
            msg: format!("cannot read the configuration file: {e}"),
        })?;
        let mut s = if path.extension().is_some_and(|e| e == "cfg") {
            zoo_cfg::parse(&text, &file)?
        } else {
            Settings::from_toml_unvalidated(&text, &file)?
        };
        s.apply_properties(props)?;
        s.validate(&file)?;
        s.source_text = text;
        s.config_file = Some(path.to_path_buf());
        Ok(s)
    }

    /// The embedded default with `--property` pairs on top.
    pub fn embedded_with(props: &[(String, String)]) -> Result<Settings, ConfigError> {
        let file = "<embedded conf/zabd.toml>";
        let mut s = Settings::from_toml_unvalidated(DEFAULT_TOML, file)?;
        s.apply_properties(props)?;
        s.validate(file)?;
        s.source_text = DEFAULT_TOML.to_string();
        Ok(s)
    }

    fn apply_properties(&mut self, props: &[(String, String)]) -> Result<(), ConfigError> {
        for (k, v) in props {
            zoo_cfg::apply_property(self, k, v)?;
        }
        Ok(())
    }

    pub fn from_toml(text: &str, file: &str) -> Result<Settings, ConfigError> {
        let mut s = Settings::from_toml_unvalidated(text, file)?;
        s.validate(file)?;
        Ok(s)
    }

    /// TOML errors name the line (`file:line`) and the key on it.
    fn from_toml_unvalidated(text: &str, file: &str) -> Result<Settings, ConfigError> {
        let at = |e: &toml::de::Error| -> ConfigError {
            let (line, key) = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    let key = text
                        .lines()
                        .nth(line - 1)
                        .and_then(|l| l.split_once('='))
                        .map(|(k, _)| k.trim().to_string())
                        .filter(|k| !k.is_empty())
                        .unwrap_or_else(|| "-".into());
                    (format!(":{line}"), key)
                }
                None => (String::new(), "-".into()),
            };
            ConfigError {
                file: format!("{file}{line}"),
                key,
                msg: e.message().trim().to_string(),
            }
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| at(&e))?;
        for k in table.keys() {
            if !TOML_KEYS.contains(&k.as_str()) {
                let line = text
                    .lines()
                    .position(|l| l.trim_start().starts_with(k.as_str()))
                    .map_or(String::new(), |n| format!(":{}", n + 1));
                tracing::warn!(file = %format!("{file}{line}"), key = %k, "unknown configuration key ignored");
            }
        }
        let mut s: Settings = toml::from_str(text).map_err(|e| at(&e))?;
        let err = |key: &str, msg: String| ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            msg,
        };
        let raw = std::mem::take(&mut s.servers_raw);
        for (id, spec) in raw {
            let id: i64 = id
                .parse()
                .map_err(|_| err("servers", format!("server id {id:?} is not a number")))?;
            let spec =
                parse_server_spec(id, &spec).map_err(|m| err(&format!("servers.{id}"), m))?;
            s.servers.push(spec);
        }
        if let Some(path) = s.dynamic_file.clone() {
            zoo_cfg::read_dynamic_file(&mut s, &path)?;
        }
        Ok(s)
    }

    /// Whether this server runs as an ensemble member: two members or more, or one with
    /// `standaloneEnabled=false` (ZooKeeper's rule: a quorum of one that a reconfig can
    /// grow, rather than a standalone server that cannot).
    pub fn is_ensemble(&self) -> bool {
        self.servers.len() > 1 || (self.servers.len() == 1 && !self.standalone_enabled)
    }

    /// The embedded default.
    pub fn embedded() -> Settings {
        Settings::from_toml(DEFAULT_TOML, "<embedded conf/zabd.toml>")
            .expect("default config is valid")
    }

    /// Checks ranges and fills in derived defaults.
    /// What TLS needs before a port opens: a key store, a known client-auth mode, a trust
    /// store whenever client certificates are asked for.
    fn validate_tls(&mut self) -> Result<(), (&'static str, String)> {
        let t = &mut self.tls;
        if !t.plain_port && t.secure_client_port == 0 {
            return Err((
                "clientPort",
                "neither clientPort nor secureClientPort is set: no port for clients".into(),
            ));
        }
        if !t.enabled() {
            return Ok(());
        }
        if t.key_store.is_empty() {
            return Err((
                "ssl.keyStore.location",
                "TLS needs the server's key and certificate (PEM or PKCS12)".into(),
            ));
        }
        t.client_auth = t.client_auth.to_ascii_lowercase();
        if !["need", "want", "none"].contains(&t.client_auth.as_str()) {
            return Err((
                "ssl.clientAuth",
                format!("{:?}: expected need, want or none", t.client_auth),
            ));
        }
        if t.client_auth != "none" && t.trust_store.is_empty() {
            return Err((
                "ssl.trustStore.location",
                "is needed to check client certificates (ssl.clientAuth=need or want); set \
                 ssl.clientAuth=none to accept clients without one"
                    .into(),
            ));
        }
        if t.secure_client_port_address.is_empty() {
            t.secure_client_port_address = self.client_port_address.clone();
        }
        Ok(())
    }

    /// Quorum TLS needs a key store and a trust store (members always check each other).
    fn validate_quorum_tls(&self) -> Result<(), (&'static str, String)> {
        let q = &self.quorum_tls;
        if !q.active() {
            return Ok(());
        }
        if q.key_store.is_empty() {
            return Err((
                "ssl.quorum.keyStore.location",
                "quorum TLS needs this member's key and certificate (PEM or PKCS12)".into(),
            ));
        }
        if q.trust_store.is_empty() {
            return Err((
                "ssl.quorum.trustStore.location",
                "quorum TLS needs the certificates other members' are checked against".into(),
            ));
        }
        Ok(())
    }

    /// Enforcement needs schemes that exist, and sasl needs a JAAS file.
    fn validate_sasl(&self) -> Result<(), (&'static str, String)> {
        let a = &self.sasl;
        for (on, key) in [
            (a.quorum_learner_require, "quorum.auth.learnerRequireSasl"),
            (a.quorum_server_require, "quorum.auth.serverRequireSasl"),
        ] {
            if on && !a.quorum_enable {
                return Err((
                    key,
                    "needs quorum.auth.enableSasl=true (as ZooKeeper refuses it)".into(),
                ));
            }
        }
        if a.quorum_enable && a.jaas_config.is_empty() {
            return Err((
                "quorum.auth.enableSasl",
                "needs java.security.auth.login.config (its QuorumServer and QuorumLearner sections)"
                    .into(),
            ));
        }
        if !a.enforce {
            return Ok(());
        }
        if a.enforce_schemes.is_empty() {
            return Err((
                "enforce.auth.schemes",
                "must name the schemes when enforce.auth.enabled is true".into(),
            ));
        }
        for scheme in &a.enforce_schemes {
            let available = match scheme.as_str() {
                "digest" | "ip" => true,
                "x509" => self.tls.enabled(),
                "sasl" => !a.jaas_config.is_empty(),
                _ => false,
            };
            if !available {
                return Err((
                    "enforce.auth.schemes",
                    format!("Authentication scheme {scheme} is not available"),
                ));
            }
        }
        Ok(())
    }

    pub fn validate(&mut self, file: &str) -> Result<(), ConfigError> {
        let err = |key: &str, msg: &str| ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            msg: msg.to_string(),
        };
        if self.tick_time == 0 {
            return Err(err("tickTime", "must be a positive number of milliseconds"));
        }
        if self.min_session_timeout <= 0 {
            self.min_session_timeout = 2 * self.tick_time as i32;
        }
        if self.max_session_timeout <= 0 {
            self.max_session_timeout = 20 * self.tick_time as i32;
        }
        if self.min_session_timeout > self.max_session_timeout {
            return Err(err(
                "minSessionTimeout",
                "must not be larger than maxSessionTimeout",
            ));
        }
        if self.jute_max_buffer == 0 {
            return Err(err("jute.maxbuffer", "must be positive"));
        }
        if self.extended_types_enabled && self.server_id > 254 {
            return Err(err(
                "server_id",
                "must be at most 254 with extended types enabled",
            ));
        }
        if self.snap_count < 2 {
            return Err(err("snapCount", "must be at least 2"));
        }
        self.validate_tls().map_err(|(k, m)| err(k, &m))?;
        self.validate_sasl().map_err(|(k, m)| err(k, &m))?;
        self.validate_quorum_tls().map_err(|(k, m)| err(k, &m))?;
        if self.autopurge_snap_retain_count < 3 {
            tracing::warn!(
                file,
                "autopurge.snapRetainCount below 3 is raised to 3, as ZooKeeper does"
            );
            self.autopurge_snap_retain_count = 3;
        }
        if self.max_outstanding_per_connection == 0 {
            return Err(err("max_outstanding_per_connection", "must be positive"));
        }
        Ok(())
    }

    pub fn data_log_dir(&self) -> &Path {
        if self.data_log_dir.as_os_str().is_empty() {
            &self.data_dir
        } else {
            &self.data_log_dir
        }
    }

    /// The configuration as ZooKeeper's `conf` word and `configuration` command show it:
    /// (zoo.cfg-style name, JSON name, value). `dataDir` is the snapshot directory
    /// (`<dataDir>/version-2`), as ZooKeeper prints it.
    pub fn conf_entries(&self) -> Vec<(&'static str, &'static str, serde_json::Value)> {
        use serde_json::json;
        let v2 = |d: &Path| d.join(crate::persist::VERSION_DIR).display().to_string();
        let mut v = vec![
            ("clientPort", "client_port", json!(self.client_port)),
            (
                "secureClientPort",
                "secure_client_port",
                json!(if self.tls.secure_client_port == 0 {
                    -1
                } else {
                    self.tls.secure_client_port as i64
                }),
            ),
            ("dataDir", "data_dir", json!(v2(&self.data_dir))),
            ("dataLogDir", "data_log_dir", json!(v2(self.data_log_dir()))),
            ("tickTime", "tick_time", json!(self.tick_time)),
            (
                "maxClientCnxns",
                "max_client_cnxns",
                json!(self.max_client_cnxns),
            ),
            (
                "minSessionTimeout",
                "min_session_timeout",
                json!(self.min_session_timeout),
            ),
            (
                "maxSessionTimeout",
                "max_session_timeout",
                json!(self.max_session_timeout),
            ),
            (
                "clientPortListenBacklog",
                "client_port_listen_backlog",
                json!(-1),
            ),
            ("serverId", "server_id", json!(self.server_id)),
        ];
        if self.is_ensemble() {
            let me = self.servers.iter().find(|x| x.id == self.server_id);
            v.extend([
                ("initLimit", "init_limit", json!(self.init_limit)),
                ("syncLimit", "sync_limit", json!(self.sync_limit)),
                ("electionAlg", "election_alg", json!(3)),
                (
                    "electionPort",
                    "election_port",
                    json!(me.map_or(0, |m| m.election_port)),
                ),
                (
                    "quorumPort",
                    "quorum_port",
                    json!(me.map_or(0, |m| m.quorum_port)),
                ),
                (
                    "peerType",
                    "peer_type",
                    json!(match me.map(|m| m.role) {
                        Some(Role::Observer) => 1,
                        _ => 0,
                    }),
                ),
            ]);
        }
        v
    }

    /// `key=value` lines for the `conf` four-letter word; `sizes` are the snapshot and log
    /// directories' bytes, which ZooKeeper prints after each directory.
    pub fn conf_lines(&self) -> Vec<String> {
        self.conf_entries()
            .into_iter()
            .map(|(k, _, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                v => format!("{k}={v}"),
            })
            .collect()
    }
}

/// `host:quorumPort:electionPort[:participant|observer][;[clientHost:]clientPort]`
pub fn parse_server_spec(id: i64, spec: &str) -> Result<ServerSpec, String> {
    let (server, client) = match spec.split_once(';') {
        Some((s, c)) => (s.trim(), Some(c.trim())),
        None => (spec.trim(), None),
    };
    let parts: Vec<&str> = server.split(':').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return Err(format!(
            "{spec:?} is not host:quorumPort:electionPort[:role]"
        ));
    }
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("{s:?} is not a port number"))
    };
    let role = match parts.get(3).copied() {
        None | Some("participant") => Role::Participant,
        Some("observer") => Role::Observer,
        Some(other) => return Err(format!("unknown role {other:?}")),
    };
    let client = match client {
        None | Some("") => None,
        Some(c) => Some(match c.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), port(p)?),
            None => ("0.0.0.0".to_string(), port(c)?),
        }),
    };
    Ok(ServerSpec {
        id,
        host: parts[0].to_string(),
        quorum_port: port(parts[1])?,
        election_port: port(parts[2])?,
        role,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let s = Settings::embedded();
        assert_eq!(s.client_port, 2181);
        assert_eq!(s.min_session_timeout, 4000);
        assert_eq!(s.max_session_timeout, 40000);
        assert_eq!(s.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn bad_toml_value_names_the_key_and_line() {
        let e = Settings::from_toml("tick_time = 100\nclient_port = \"x\"", "f.toml").unwrap_err();
        assert_eq!(e.file, "f.toml:2");
        assert_eq!(e.key, "client_port");
        let e = Settings::from_toml("tick_time = 100\n\nclient_port = \n", "f.toml").unwrap_err();
        assert_eq!(e.file, "f.toml:3", "{e}");
        let e = Settings::from_toml("[admin]\nport = -1\n", "f.toml").unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.key.as_str()),
            ("f.toml:2", "port"),
            "{e}"
        );
    }

    #[test]
    fn myid_in_toml_is_the_server_id() {
        assert_eq!(Settings::from_toml("myid = 3", "f").unwrap().server_id, 3);
        assert_eq!(
            Settings::from_toml("server_id = 4", "f").unwrap().server_id,
            4
        );
    }

    #[test]
    fn properties_apply_over_the_file() {
        let props = vec![
            ("zookeeper.snapCount".to_string(), "5000".to_string()),
            (
                "zookeeper.4lw.commands.whitelist".to_string(),
                "*".to_string(),
            ),
            ("jute.maxbuffer".to_string(), "4096".to_string()),
        ];
        let s = Settings::embedded_with(&props).unwrap();
        assert_eq!(s.snap_count, 5000);
        assert_eq!(s.four_letter_words, vec!["*"]);
        assert_eq!(s.jute_max_buffer, 4096);
        let bad = vec![("zookeeper.ssl.quorum.ocsp".to_string(), "true".to_string())];
        let e = Settings::embedded_with(&bad).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.key.as_str()),
            ("--property", "zookeeper.ssl.quorum.ocsp")
        );
    }

    #[test]
    fn server_specs() {
        let s = parse_server_spec(1, "10.0.0.1:2888:3888:observer;127.0.0.1:2181").unwrap();
        assert_eq!(s.role, Role::Observer);
        assert_eq!(s.client, Some(("127.0.0.1".into(), 2181)));
        let s = parse_server_spec(2, "h:1:2;2181").unwrap();
        assert_eq!(s.client, Some(("0.0.0.0".into(), 2181)));
        assert!(parse_server_spec(3, "h:1").is_err());
        let t = Settings::from_toml("[servers]\n1 = \"a:1:2\"\n2 = \"b:1:2\"", "x").unwrap();
        assert_eq!(t.servers.len(), 2);
    }
}
