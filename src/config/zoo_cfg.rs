//! Apache ZooKeeper's `zoo.cfg` (Java properties: `key=value`, `#` comments) into [`Settings`].

use super::{parse_server_spec, ConfigError, Settings};
use std::path::PathBuf;

/// Reads a zoo.cfg's text into settings (not yet validated: `--property` values may follow).
pub fn parse(text: &str, file: &str) -> Result<Settings, ConfigError> {
    let mut s = Settings::default();
    let (mut saw_address, mut saw_port) = (false, false);
    let mut dynamic = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            return Err(ConfigError {
                file: format!("{file}:{}", n + 1),
                key: line.to_string(),
                msg: "expected key=value".into(),
            });
        };
        let (key, value) = (key.trim(), value.trim());
        saw_port |= key == "clientPort";
        saw_address |= key == "clientPortAddress";
        if key == "dynamicConfigFile" {
            dynamic = Some(value.to_string());
            continue;
        }
        apply(&mut s, key, value, file)?;
    }
    if let Some(path) = dynamic {
        read_dynamic_file(&mut s, &path)?;
    }
    if !saw_port && s.tls.secure_client_port != 0 {
        // ZooKeeper opens no plain client port then.
        s.tls.plain_port = false;
    }
    if saw_address && !saw_port {
        // Apache ZooKeeper refuses this too; a zoo.cfg must mean the same to both.
        return Err(ConfigError {
            file: file.to_string(),
            key: "clientPortAddress".into(),
            msg: "is set but clientPort is not set".into(),
        });
    }
    Ok(s)
}

/// ZooKeeper 3.5+'s split configuration: the members live in `dynamicConfigFile` (path as
/// given), `server.N` lines only, and its name ends in the membership's version in hex
/// (`zoo.cfg.dynamic.100000000`; none: 0). As ZooKeeper, `server.N` lines in the static file
/// are then ignored, and a `version` line inside the dynamic file is an error. A reconfig
/// writes the next one (`server::dynamic_file`).
pub(super) fn read_dynamic_file(s: &mut Settings, path: &str) -> Result<(), ConfigError> {
    let err = |msg: String| ConfigError {
        file: path.to_string(),
        key: "dynamicConfigFile".into(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let has_version = text.lines().any(|l| {
        l.split_once('=')
            .is_some_and(|(k, _)| k.trim() == "version")
    });
    if has_version {
        return Err(err("dynamic file shouldn't have version inside".into()));
    }
    let members = crate::quorum::membership::Membership::parse(&text).map_err(err)?;
    if !s.servers.is_empty() {
        tracing::warn!(
            file = path,
            "server.N lines in the static file are ignored: the members are the dynamic file's"
        );
    }
    s.servers = members.servers;
    s.config_version = version_of_file_name(path);
    s.dynamic_file = Some(path.to_string());
    Ok(())
}

/// The configuration file's text once a reconfig has written the dynamic file
/// `dynamic_path`, as ZooKeeper's `QuorumPeerConfig.editStaticConfig` leaves a zoo.cfg:
/// without `server.N`, `group.N`, `weight.N` and `dynamicConfigFile` lines, and ending in
/// `dynamicConfigFile=<path>`. A TOML file (`toml`) gets `dynamic_config_file = "<path>"`
/// as its first line instead of any it had (its `[servers]` are then ignored).
pub fn static_text_after_reconfig(text: &str, dynamic_path: &str, toml: bool) -> String {
    let key_of = |l: &str| {
        l.split_once(['=', ':'])
            .map(|(k, _)| k.trim().to_string())
            .unwrap_or_default()
    };
    let mut out = String::new();
    if toml {
        out.push_str(&format!("dynamic_config_file = {dynamic_path:?}\n"));
        for line in text.lines() {
            if key_of(line) != "dynamic_config_file" {
                out.push_str(line);
                out.push('\n');
            }
        }
        return out;
    }
    for line in text.lines() {
        let key = key_of(line.trim());
        let dropped = key == "dynamicConfigFile"
            || ["server.", "group.", "weight."]
                .iter()
                .any(|p| key.starts_with(p));
        if !dropped || line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("dynamicConfigFile={dynamic_path}\n"));
    out
}

/// The version at the end of a dynamic file's name, after its last dot, in hex; 0 if none
/// (ZooKeeper's `getVersionFromFilename`).
fn version_of_file_name(path: &str) -> i64 {
    path.rsplit_once('.')
        .and_then(|(_, v)| i64::from_str_radix(v, 16).ok())
        .unwrap_or(0)
}

/// A system property as ZooKeeper reads it from JVMFLAGS (`-Dzookeeper.snapCount=...`):
/// ZooKeeper turns a zoo.cfg key `k` it does not know into the property `zookeeper.k`,
/// so the property `zookeeper.k` means what the zoo.cfg key `k` means.
pub fn apply_property(s: &mut Settings, key: &str, value: &str) -> Result<(), ConfigError> {
    let key = key.trim();
    apply(s, key, value.trim(), "--property").map_err(|e| ConfigError {
        key: key.to_string(),
        ..e
    })
}

/// Applies one zoo.cfg key: honoured, refused (a feature zabd lacks whose absence would
/// change safety or semantics), or accepted with a one-line warning.
pub fn apply(s: &mut Settings, key: &str, value: &str, file: &str) -> Result<(), ConfigError> {
    // A zoo.cfg may also spell a key as its system property.
    let key = match key.strip_prefix("zookeeper.") {
        Some(bare) if !bare.is_empty() => bare,
        _ => key,
    };
    let err = |msg: String| ConfigError {
        file: file.to_string(),
        key: key.to_string(),
        msg,
    };
    let num = |v: &str| -> Result<i64, ConfigError> {
        v.parse::<i64>()
            .map_err(|_| err(format!("{v:?} is not a number")))
    };
    let ranged = |v: &str, max: i64| -> Result<i64, ConfigError> {
        let n = num(v)?;
        if n < 0 || n > max {
            return Err(err(format!("{n} is out of range 0..={max}")));
        }
        Ok(n)
    };
    let boolean = |v: &str| -> Result<bool, ConfigError> {
        parse_bool(v).ok_or_else(|| err(format!("{v:?} is not true or false")))
    };
    if let Some(why) = refused(key, value) {
        return Err(err(format!("{why}; remove the key to run without it")));
    }
    match key {
        "tickTime" => s.tick_time = ranged(value, i32::MAX as i64)? as u64,
        "dataDir" => s.data_dir = PathBuf::from(value),
        "dataLogDir" => s.data_log_dir = PathBuf::from(value),
        "clientPort" => s.client_port = ranged(value, 65535)? as u16,
        "clientPortAddress" => s.client_port_address = value.to_string(),
        "maxClientCnxns" => s.max_client_cnxns = ranged(value, u32::MAX as i64)? as u32,
        "maxCnxns" => s.max_cnxns = ranged(value, u32::MAX as i64)? as u32,
        // A system property in ZooKeeper (zookeeper.globalOutstandingLimit), which
        // zoo.cfg also sets.
        "globalOutstandingLimit" => {
            // ZooKeeper treats a value below 1 as its default.
            let n = num(value)?;
            s.global_outstanding_limit = if n < 1 { 1000 } else { n as usize };
        }
        "minSessionTimeout" => s.min_session_timeout = num(value)? as i32,
        "maxSessionTimeout" => s.max_session_timeout = num(value)? as i32,
        "4lw.commands.whitelist" => {
            s.four_letter_words = value
                .split(',')
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty())
                .collect()
        }
        "extendedTypesEnabled" => s.extended_types_enabled = boolean(value)?,
        "enforceQuota" => s.enforce_quota = boolean(value)?,
        "znode.container.checkIntervalMs" => {
            s.container_check_interval_ms = ranged(value, i64::MAX)? as u64
        }
        "readonlymode.enabled" => s.read_only_mode = boolean(value)?,
        "leaderServes" => s.leader_serves = boolean(value)?,
        "localSessionsEnabled" => s.local_sessions = boolean(value)?,
        "localSessionsUpgradingEnabled" => s.local_sessions_upgrading = boolean(value)?,
        "reconfigEnabled" => s.reconfig_enabled = boolean(value)?,
        "standaloneEnabled" => s.standalone_enabled = boolean(value)?,
        "commitLogCount" => s.commit_log_count = ranged(value, i32::MAX as i64)?.max(1) as usize,
        "snapCount" => s.snap_count = ranged(value, i64::MAX)? as u64,
        "preAllocSize" => s.pre_alloc_size_kb = ranged(value, i64::MAX)? as u64,
        "forceSync" => s.force_sync = boolean(value)?,
        "autopurge.snapRetainCount" => {
            s.autopurge_snap_retain_count = ranged(value, u32::MAX as i64)? as u32
        }
        "autopurge.purgeInterval" => {
            s.autopurge_purge_interval_hours = ranged(value, i64::MAX)? as u64
        }
        "fsync.warningthresholdms" => {
            s.fsync_warning_threshold_ms = ranged(value, i64::MAX)? as u64
        }
        "jute.maxbuffer" => s.jute_max_buffer = ranged(value, i32::MAX as i64)? as usize,
        "initLimit" => s.init_limit = ranged(value, u32::MAX as i64)? as u32,
        "syncLimit" => s.sync_limit = ranged(value, u32::MAX as i64)? as u32,
        "superDigest" | "DigestAuthenticationProvider.superDigest" => {
            s.super_digest = value.to_string()
        }
        "secureClientPort" => s.tls.secure_client_port = ranged(value, 65535)? as u16,
        "secureClientPortAddress" => s.tls.secure_client_port_address = value.to_string(),
        "client.portUnification" => s.tls.port_unification = boolean(value)?,
        "ssl.keyStore.location" => s.tls.key_store = value.to_string(),
        "ssl.keyStore.password" => s.tls.key_store_password = value.to_string(),
        "ssl.keyStore.passwordPath" => s.tls.key_store_password = password_file(value).map_err(err)?,
        "ssl.keyStore.type" => s.tls.key_store_type = value.to_string(),
        "ssl.trustStore.location" => s.tls.trust_store = value.to_string(),
        "ssl.trustStore.password" => s.tls.trust_store_password = value.to_string(),
        "ssl.trustStore.passwordPath" => {
            s.tls.trust_store_password = password_file(value).map_err(err)?
        }
        "ssl.trustStore.type" => s.tls.trust_store_type = value.to_string(),
        "ssl.clientAuth" => s.tls.client_auth = value.to_string(),
        "ssl.protocol" if s.tls.protocols.is_empty() => s.tls.protocols = vec![value.to_string()],
        "ssl.protocol" => {}
        "ssl.enabledProtocols" => s.tls.protocols = list(value),
        "ssl.ciphersuites" => s.tls.cipher_suites = list(value),
        "X509AuthenticationProvider.superUser" => s.tls.x509_super_user = value.to_string(),
        "java.security.auth.login.config" => s.sasl.jaas_config = value.to_string(),
        "sasl.serverconfig" => s.sasl.server_section = value.to_string(),
        "superUser" => s.sasl.super_users.push(value.to_string()),
        "SaslAuthenticationProvider.superPassword" => s.sasl.super_password = value.to_string(),
        "kerberos.removeHostFromPrincipal" => s.sasl.remove_host_from_principal = boolean(value)?,
        "kerberos.removeRealmFromPrincipal" => s.sasl.remove_realm_from_principal = boolean(value)?,
        "allowSaslFailedClients" => s.sasl.allow_failed_clients = boolean(value)?,
        "enforce.auth.enabled" => s.sasl.enforce = boolean(value)?,
        "enforce.auth.schemes" | "requireClientAuthScheme" => s.sasl.enforce_schemes = list(value),
        "sessionRequireClientSASLAuth" => {
            if boolean(value)? {
                s.sasl.enforce = true;
                s.sasl.enforce_schemes = vec!["sasl".into()];
            }
        }
        "security.auth_to_local" => {}
        "quorum.auth.enableSasl" => s.sasl.quorum_enable = boolean(value)?,
        "quorum.auth.learnerRequireSasl" => s.sasl.quorum_learner_require = boolean(value)?,
        "quorum.auth.serverRequireSasl" => s.sasl.quorum_server_require = boolean(value)?,
        "quorum.auth.server.saslLoginContext" => s.sasl.quorum_server_section = value.to_string(),
        "quorum.auth.learner.saslLoginContext" => {
            s.sasl.quorum_learner_section = value.to_string()
        }
        "quorum.cnxn.threads.size" => {}
        "quorum.auth.kerberos.servicePrincipal" => {
            s.sasl.quorum_service_principal = value.to_string()
        }
        "client.certReload" => s.tls.reload = boolean(value)?,
        "sslQuorum" => s.quorum_tls.enabled = boolean(value)?,
        "portUnification" => s.quorum_tls.port_unification = boolean(value)?,
        "sslQuorumReloadCertFiles" => s.quorum_tls.reload = boolean(value)?,
        "ssl.quorum.keyStore.location" => s.quorum_tls.key_store = value.to_string(),
        "ssl.quorum.keyStore.password" => s.quorum_tls.key_store_password = value.to_string(),
        "ssl.quorum.keyStore.passwordPath" => {
            s.quorum_tls.key_store_password = password_file(value).map_err(err)?
        }
        "ssl.quorum.keyStore.type" => s.quorum_tls.key_store_type = value.to_string(),
        "ssl.quorum.trustStore.location" => s.quorum_tls.trust_store = value.to_string(),
        "ssl.quorum.trustStore.password" => s.quorum_tls.trust_store_password = value.to_string(),
        "ssl.quorum.trustStore.passwordPath" => {
            s.quorum_tls.trust_store_password = password_file(value).map_err(err)?
        }
        "ssl.quorum.trustStore.type" => s.quorum_tls.trust_store_type = value.to_string(),
        "ssl.quorum.protocol" if s.quorum_tls.protocols.is_empty() => {
            s.quorum_tls.protocols = vec![value.to_string()]
        }
        "ssl.quorum.protocol" => {}
        "ssl.quorum.enabledProtocols" => s.quorum_tls.protocols = list(value),
        "ssl.quorum.ciphersuites" => s.quorum_tls.cipher_suites = list(value),
        "ssl.quorum.hostnameVerification" => s.quorum_tls.hostname_verification = boolean(value)?,
        "ssl.quorum.clientHostnameVerification" => {
            s.quorum_tls.client_hostname_verification = Some(boolean(value)?)
        }
        "ssl.quorum.clientAuth" if value.eq_ignore_ascii_case("need") => {}
        "ssl.quorum.clientAuth" => {
            return Err(err(format!(
                "{value:?}: members always check each other's certificates in zabd (need)"
            )))
        }
        "ssl.quorum.authProvider" | "ssl.quorum.handshakeDetectionTimeoutMillis" => {}
        // What zabd's TLS does anyway, or what only a Java client reads.
        "ssl.authProvider"
        | "ssl.hostnameVerification"
        | "ssl.clientHostnameVerification"
        | "ssl.handshakeDetectionTimeoutMillis"
        | "ssl.crl"
        | "ssl.ocsp"
        | "serverCnxnFactory"
        | "client.secure"
        | "clientCnxnSocket" => {}
        "admin.enableServer" => s.admin.enable = boolean(value)?,
        "admin.serverAddress" => s.admin.address = value.to_string(),
        "admin.serverPort" => s.admin.port = ranged(value, 65535)? as u16,
        "admin.commandURL" => s.admin.command_url = value.to_string(),
        "admin.idleTimeout" => s.admin.idle_timeout_ms = ranged(value, i64::MAX)? as u64,
        "metricsProvider.className" => {
            s.metrics.enable = value.ends_with("PrometheusMetricsProvider");
            if !s.metrics.enable && value != "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider" {
                tracing::warn!(file, key, value, "unknown metrics provider: no metrics endpoint is served");
            }
        }
        "metricsProvider.httpHost" => s.metrics.host = value.to_string(),
        "metricsProvider.httpPort" => s.metrics.port = ranged(value, 65535)? as u16,
        "metricsProvider.exportJvmInfo" => {
            tracing::info!(file, key, "zabd has no JVM; its process metrics are always exported")
        }
        "electionAlg" if value == "3" => {}
        "electionAlg" => {
            return Err(err(format!(
                "{value:?}: only electionAlg=3 (FastLeaderElection) exists, as in ZooKeeper 3.8"
            )))
        }
        k if k.starts_with("server.") => {
            let id = num(&k["server.".len()..])?;
            let spec = parse_server_spec(id, value).map_err(err)?;
            s.servers.push(spec);
        }
        k => tracing::warn!(
            file,
            key = k,
            "configuration key not used by zabd (accepted as ZooKeeper would; it has no effect here)"
        ),
    }
    Ok(())
}

/// Why a key must be refused: zabd lacks the feature, and ignoring the key would serve
/// clients with less safety (no TLS, no authentication) or other semantics than asked for.
/// A key that only turns such a feature off is accepted.
fn refused(key: &str, value: &str) -> Option<&'static str> {
    let on = parse_bool(value).unwrap_or(true);
    match key {
        "ssl.crl" | "ssl.ocsp" | "ssl.quorum.crl" | "ssl.quorum.ocsp" if on => {
            Some("certificate revocation (CRL, OCSP) is not supported by zabd yet")
        }
        "ssl.context.supplier.class"
        | "ssl.keyManager"
        | "ssl.trustManager"
        | "ssl.quorum.context.supplier.class"
        | "ssl.quorum.keyManager"
        | "ssl.quorum.trustManager" => {
            Some("zabd has no Java SSL context or manager classes; use ssl.keyStore.* and ssl.trustStore.*")
        }
        "ssl.authProvider" if value != "x509" && !value.ends_with(".X509AuthenticationProvider") => {
            Some("only the x509 authentication provider exists for TLS clients")
        }
        k if k.starts_with("authProvider.") => {
            // The built-in providers need no key; naming them changes nothing.
            let builtin = value.ends_with(".DigestAuthenticationProvider")
                || value.ends_with(".IPAuthenticationProvider")
                || value.ends_with(".X509AuthenticationProvider")
                || value.ends_with(".SASLAuthenticationProvider");
            (!builtin).then_some(
                "only the digest, ip, x509 and sasl authentication providers exist in zabd",
            )
        }
        "security.auth_to_local" if value != "DEFAULT" => {
            Some("Kerberos auth_to_local rules are not supported by zabd; only DEFAULT")
        }
        "skipACL" if on => Some("zabd always checks ACLs"),
        "multiAddress.enabled" if on => {
            Some("multiple addresses per server are not supported by zabd yet")
        }
        _ => None,
    }
}

/// A comma-separated list.
fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// A password kept in a file (`ssl.*.passwordPath`), without its trailing newline.
fn password_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|p| p.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| format!("cannot read the password file {path}: {e}"))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_zoo_cfg() {
        let mut s = parse(
            "# c\ntickTime=1000\ndataDir=/tmp/z\nclientPort=2999\nmaxClientCnxns=0\n\
             4lw.commands.whitelist=ruok, stat\nextendedTypesEnabled=true\n\
             server.1=127.0.0.1:2888:3888;2181\nadmin.enableServer=false\n",
            "zoo.cfg",
        )
        .unwrap();
        s.validate("zoo.cfg").unwrap();
        assert_eq!(s.tick_time, 1000);
        assert_eq!(s.client_port, 2999);
        assert_eq!(s.max_client_cnxns, 0);
        assert_eq!(s.four_letter_words, vec!["ruok", "stat"]);
        assert!(s.extended_types_enabled);
        assert_eq!(s.min_session_timeout, 2000);
        assert_eq!(s.servers.len(), 1);
    }

    #[test]
    fn client_port_address_needs_client_port_as_in_zookeeper() {
        let e = parse("clientPortAddress=127.0.0.1\n", "zoo.cfg").unwrap_err();
        assert_eq!(e.key, "clientPortAddress");
        assert!(parse("clientPortAddress=127.0.0.1\nclientPort=2999\n", "zoo.cfg").is_ok());
    }

    #[test]
    fn the_members_of_a_dynamic_file_replace_the_static_ones_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let dynamic = dir.path().join("zoo.cfg.dynamic.100000000");
        std::fs::write(
            &dynamic,
            "server.1=10.0.0.1:2888:3888:participant;2181\n\
             server.2=10.0.0.2:2888:3888:participant;2181\n\
             server.3=10.0.0.3:2888:3888:observer;2181\n",
        )
        .unwrap();
        let text = format!(
            "tickTime=2000\nserver.9=old:1:2\ndynamicConfigFile={}\n",
            dynamic.display()
        );
        let s = parse(&text, "zoo.cfg").unwrap();
        let ids: Vec<i64> = s.servers.iter().map(|x| x.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(s.config_version, 0x1_0000_0000);
        assert_eq!(s.servers[2].role, crate::config::Role::Observer);
        // No version in the name: 0. A version inside: refused, as ZooKeeper does.
        let plain = dir.path().join("zoo.cfg.dynamic");
        std::fs::write(&plain, "server.1=h:1:2\nserver.2=h2:1:2\n").unwrap();
        let s = parse(
            &format!("dynamicConfigFile={}\n", plain.display()),
            "zoo.cfg",
        )
        .unwrap();
        assert_eq!((s.servers.len(), s.config_version), (2, 0));
        std::fs::write(&plain, "server.1=h:1:2\nversion=5\n").unwrap();
        let e = parse(
            &format!("dynamicConfigFile={}\n", plain.display()),
            "zoo.cfg",
        )
        .unwrap_err();
        assert!(e.msg.contains("version inside"), "{e}");
        let e = parse(
            "dynamicConfigFile=/nonexistent/zoo.cfg.dynamic\n",
            "zoo.cfg",
        )
        .unwrap_err();
        assert_eq!(e.key, "dynamicConfigFile");
    }

    #[test]
    fn features_zabd_lacks_are_refused_not_ignored() {
        for line in [
            "ssl.quorum.ocsp=true",
            "ssl.crl=true",
            "ssl.quorum.clientAuth=want",
            "authProvider.1=com.example.LdapAuthenticationProvider",
            "zookeeper.security.auth_to_local=RULE:[1:$1]",
            "skipACL=yes",
            "zookeeper.skipACL=yes",
            "electionAlg=1",
        ] {
            let e = parse(&format!("{line}\n"), "zoo.cfg").unwrap_err();
            let key = line.split('=').next().unwrap();
            assert_eq!(e.key, key.trim_start_matches("zookeeper."), "{line}: {e}");
        }
        // Turning such a feature off, or naming a built-in provider, changes nothing.
        for line in [
            "sslQuorum=false",
            "quorum.auth.enableSasl=false",
            "skipACL=no",
            "authProvider.1=org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
            "electionAlg=3",
            "some.future.key=1",
        ] {
            parse(&format!("{line}\n"), "zoo.cfg").unwrap();
        }
    }

    #[test]
    fn a_reconfig_rewrites_the_static_file_as_zookeeper_does() {
        let cfg = "tickTime=2000\n# server.9 was here\nserver.1=a:1:2\ndataDir=/d\n\
                   dynamicConfigFile=/c/zoo.cfg.dynamic.0\ngroup.1=1:2\nweight.1=1\n";
        assert_eq!(
            static_text_after_reconfig(cfg, "/c/zoo.cfg.dynamic.100000003", false),
            "tickTime=2000\n# server.9 was here\ndataDir=/d\n\
             dynamicConfigFile=/c/zoo.cfg.dynamic.100000003\n"
        );
        let toml = "dynamic_config_file = \"x\"\ntick_time = 2000\n[servers]\n1 = \"a:1:2\"\n";
        let t = static_text_after_reconfig(toml, "/c/z.toml.dynamic.5", true);
        assert_eq!(
            t,
            "dynamic_config_file = \"/c/z.toml.dynamic.5\"\ntick_time = 2000\n[servers]\n1 = \"a:1:2\"\n"
        );
    }

    #[test]
    fn local_sessions_are_read() {
        let s = parse(
            "localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true\n",
            "zoo.cfg",
        )
        .unwrap();
        assert!(s.local_sessions && s.local_sessions_upgrading);
        let s = parse("localSessionsEnabled=true\n", "zoo.cfg").unwrap();
        assert!(
            s.local_sessions && !s.local_sessions_upgrading,
            "upgrading is off by default, as in ZooKeeper"
        );
    }

    #[test]
    fn tls_keys_as_zookeeper_names_them() {
        let mut s = parse(
            "clientPort=2181\nsecureClientPort=2281\nssl.keyStore.location=/k.p12\n\
             ssl.keyStore.password=pw\nssl.trustStore.location=/t.pem\nssl.clientAuth=WANT\n\
             ssl.enabledProtocols=TLSv1.3\nssl.ciphersuites=TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384\n\
             zookeeper.X509AuthenticationProvider.superUser=CN=admin\n\
             authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n\
             serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n",
            "zoo.cfg",
        )
        .unwrap();
        s.validate("zoo.cfg").unwrap();
        let t = &s.tls;
        assert_eq!(t.secure_client_port, 2281);
        assert_eq!(t.secure_client_port_address, "0.0.0.0");
        assert_eq!(
            (t.key_store.as_str(), t.key_store_password.as_str()),
            ("/k.p12", "pw")
        );
        assert_eq!(t.client_auth, "want");
        assert_eq!(t.protocols, vec!["TLSv1.3"]);
        assert_eq!(t.cipher_suites.len(), 2);
        assert_eq!(t.x509_super_user, "CN=admin");
        assert!(t.plain_port, "clientPort is set");
        // Client certificates need something to be checked against.
        let mut s = parse(
            "secureClientPort=2281\nssl.keyStore.location=/k.p12\n",
            "zoo.cfg",
        )
        .unwrap();
        assert_eq!(
            s.validate("zoo.cfg").unwrap_err().key,
            "ssl.trustStore.location"
        );
        let s = parse("secureClientPort=2281\n", "zoo.cfg").unwrap();
        assert!(
            !s.tls.plain_port,
            "no clientPort: no plain port, as in ZooKeeper"
        );
        let mut s = parse("client.portUnification=true\n", "zoo.cfg").unwrap();
        assert_eq!(
            s.validate("zoo.cfg").unwrap_err().key,
            "ssl.keyStore.location"
        );
    }

    #[test]
    fn admin_and_metrics_keys() {
        let s = parse(
            "admin.enableServer=false\nadmin.serverPort=9090\nadmin.serverAddress=127.0.0.1\n\
             metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
             metricsProvider.httpPort=7001\n",
            "zoo.cfg",
        )
        .unwrap();
        assert!(!s.admin.enable);
        assert_eq!(
            (s.admin.address.as_str(), s.admin.port),
            ("127.0.0.1", 9090)
        );
        assert!(s.metrics.enable);
        assert_eq!(s.metrics.port, 7001);
    }

    #[test]
    fn bad_value_names_key_and_file() {
        let e = parse("clientPort=abc\n", "/etc/zoo.cfg").unwrap_err();
        assert_eq!(e.key, "clientPort");
        assert_eq!(
            e.to_string(),
            "/etc/zoo.cfg: clientPort: \"abc\" is not a number"
        );
    }
}
