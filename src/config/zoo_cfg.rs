//! Apache ZooKeeper's `zoo.cfg` (Java properties: `key=value`, `#` comments) into [`Settings`].

use super::{parse_server_spec, ConfigError, Settings};
use std::path::PathBuf;

/// Keys ZooKeeper accepts that zabd reads but does not act on yet, or does not need.
const ACCEPTED_IGNORED: [&str; 6] = [
    "admin.enableServer",
    "admin.serverPort",
    "standaloneEnabled",
    "reconfigEnabled",
    "metricsProvider.className",
    "audit.enable",
];

pub fn parse(text: &str, file: &str) -> Result<Settings, ConfigError> {
    let mut s = Settings::default();
    let (mut saw_address, mut saw_port) = (false, false);
    let err = |key: &str, msg: String| ConfigError {
        file: file.to_string(),
        key: key.to_string(),
        msg,
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            return Err(err(line, "expected key=value".into()));
        };
        let (key, value) = (key.trim(), value.trim());
        let num = |v: &str| -> Result<i64, ConfigError> {
            v.parse::<i64>()
                .map_err(|_| err(key, format!("{v:?} is not a number")))
        };
        let ranged = |v: &str, max: i64| -> Result<i64, ConfigError> {
            let n = num(v)?;
            if n < 0 || n > max {
                return Err(err(key, format!("{n} is out of range 0..={max}")));
            }
            Ok(n)
        };
        match key {
            "tickTime" => s.tick_time = ranged(value, i32::MAX as i64)? as u64,
            "dataDir" => s.data_dir = PathBuf::from(value),
            "dataLogDir" => s.data_log_dir = PathBuf::from(value),
            "clientPort" => {
                saw_port = true;
                s.client_port = ranged(value, 65535)? as u16
            }
            "clientPortAddress" => {
                saw_address = true;
                s.client_port_address = value.to_string()
            }
            "maxClientCnxns" => s.max_client_cnxns = ranged(value, u32::MAX as i64)? as u32,
            "maxCnxns" => s.max_cnxns = ranged(value, u32::MAX as i64)? as u32,
            // A system property in ZooKeeper (zookeeper.globalOutstandingLimit), which
            // zoo.cfg also sets.
            "globalOutstandingLimit" | "zookeeper.globalOutstandingLimit" => {
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
            "extendedTypesEnabled" | "zookeeper.extendedTypesEnabled" => {
                s.extended_types_enabled = parse_bool(value)
                    .ok_or_else(|| err(key, format!("{value:?} is not true or false")))?
            }
            "enforceQuota" | "zookeeper.enforceQuota" => {
                s.enforce_quota = parse_bool(value)
                    .ok_or_else(|| err(key, format!("{value:?} is not true or false")))?
            }
            "znode.container.checkIntervalMs" => {
                s.container_check_interval_ms = ranged(value, i64::MAX)? as u64
            }
            "readonlymode.enabled" | "zookeeper.readonlymode.enabled" => {
                s.read_only_mode = parse_bool(value)
                    .ok_or_else(|| err(key, format!("{value:?} is not true or false")))?
            }
            "zookeeper.commitLogCount" => {
                s.commit_log_count = ranged(value, i32::MAX as i64)?.max(1) as usize
            }
            "snapCount" | "zookeeper.snapCount" => s.snap_count = ranged(value, i64::MAX)? as u64,
            "preAllocSize" | "zookeeper.preAllocSize" => {
                s.pre_alloc_size_kb = ranged(value, i64::MAX)? as u64
            }
            "forceSync" | "zookeeper.forceSync" => {
                s.force_sync = parse_bool(value)
                    .ok_or_else(|| err(key, format!("{value:?} is not yes or no")))?
            }
            "autopurge.snapRetainCount" => {
                s.autopurge_snap_retain_count = ranged(value, u32::MAX as i64)? as u32
            }
            "autopurge.purgeInterval" => {
                s.autopurge_purge_interval_hours = ranged(value, i64::MAX)? as u64
            }
            "jute.maxbuffer" => s.jute_max_buffer = ranged(value, i32::MAX as i64)? as usize,
            "initLimit" => s.init_limit = ranged(value, u32::MAX as i64)? as u32,
            "syncLimit" => s.sync_limit = ranged(value, u32::MAX as i64)? as u32,
            "superDigest" | "DigestAuthenticationProvider.superDigest" => {
                s.super_digest = value.to_string()
            }
            k if k.starts_with("server.") => {
                let id = num(&k["server.".len()..])?;
                let spec = parse_server_spec(id, value).map_err(|m| err(key, m))?;
                s.servers.push(spec);
            }
            k if ACCEPTED_IGNORED.contains(&k) => {
                tracing::info!(file, key = k, "setting accepted; zabd does not use it yet");
            }
            k => tracing::warn!(file, key = k, "unknown configuration key ignored"),
        }
    }
    if saw_address && !saw_port {
        // Apache ZooKeeper refuses this too; a zoo.cfg must mean the same to both.
        return Err(err(
            "clientPortAddress",
            "is set but clientPort is not set".into(),
        ));
    }
    s.validate(file)?;
    Ok(s)
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
        let s = parse(
            "# c\ntickTime=1000\ndataDir=/tmp/z\nclientPort=2999\nmaxClientCnxns=0\n\
             4lw.commands.whitelist=ruok, stat\nextendedTypesEnabled=true\n\
             server.1=127.0.0.1:2888:3888;2181\nadmin.enableServer=false\n",
            "zoo.cfg",
        )
        .unwrap();
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
    fn bad_value_names_key_and_file() {
        let e = parse("clientPort=abc\n", "/etc/zoo.cfg").unwrap_err();
        assert_eq!(e.key, "clientPort");
        assert_eq!(
            e.to_string(),
            "/etc/zoo.cfg: clientPort: \"abc\" is not a number"
        );
    }
}
