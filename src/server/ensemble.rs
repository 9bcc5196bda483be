//! The ZAB host: runs one `quorum::Peer` on the peer transport, a tick at a time, and
//! performs its actions: messages to the transport, epoch files to disk, role changes to
//! the status that `srvr`/`mntr` will show.
//!
//! Files, as ZooKeeper keeps them in `dataDir`: `acceptedEpoch` and `currentEpoch`, each the
//! epoch in decimal with no newline, replaced atomically (write a temporary file, fsync,
//! rename, fsync the directory).
//!
//! After a reconfig ([`write_membership`]), as ZooKeeper's `QuorumPeer.setQuorumVerifier`:
//! the members go to `<config file>.dynamic.<version in hex>` (`server.N` lines, no
//! version line: the name carries it), the configuration file is rewritten to name it
//! (`config::zoo_cfg::static_text_after_reconfig`), and `<config file>.dynamic.next`,
//! written when the reconfig was proposed (with its `version=` line), is removed. Each file
//! is replaced atomically too.
//!
//! [`run_member`] sets a member up and hands over to `member.rs`, which runs the engine,
//! ZAB and the log together.

use super::peers::PeerAddrs;
use crate::quorum::{Config, Sid, State};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub leader: Option<Sid>,
    pub epoch: u32,
}

/// Where ZooKeeper keeps `acceptedEpoch` and `currentEpoch`: the snapshot directory,
/// `<dataDir>/version-2` (its `QuorumPeer.readLongFromFile`). zabd before this wrote them to
/// `<dataDir>` itself; [`read_member_epoch`] reads both.
pub fn epoch_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(crate::persist::VERSION_DIR)
}

/// A member's `acceptedEpoch` or `currentEpoch` at startup: the larger of the file where
/// ZooKeeper keeps it and the one older zabd versions wrote (an epoch never goes back, so
/// the larger is the true one); with neither, the epoch of the last logged zxid, as
/// ZooKeeper defaults it.
pub fn read_member_epoch(data_dir: &Path, name: &str, last_zxid: i64) -> std::io::Result<u32> {
    let path = |d: &Path| d.join(name);
    let zk = epoch_dir(data_dir);
    let found = [&zk, data_dir].iter().any(|d| path(d).exists());
    if !found {
        let e = (last_zxid >> 32) as u32;
        tracing::info!(
            file = name,
            epoch = e,
            "no epoch file; taking the last zxid's epoch, as ZooKeeper does"
        );
        return Ok(e);
    }
    Ok(read_epoch(&zk, name)?.max(read_epoch(data_dir, name)?))
}

pub fn read_epoch(dir: &Path, name: &str) -> std::io::Result<u32> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(t) => t.trim().parse().map_err(|_| {
            std::io::Error::other(format!(
                "{}: {t:?} is not an epoch",
                dir.join(name).display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

pub fn write_epoch(dir: &Path, name: &str, epoch: u32) -> std::io::Result<()> {
    replace_file(&dir.join(name), epoch.to_string().as_bytes())
}

/// Writes `path` whole or not at all: a temporary file, fsync, rename, fsync the directory.
fn replace_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!("{name}.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    super::disk::sync_dir(dir.unwrap_or(Path::new(".")));
    Ok(())
}

/// `<config file>.dynamic.next`, or None when the settings came from no file.
fn next_file(s: &crate::config::Settings) -> Option<std::path::PathBuf> {
    let cfg = s.config_file.as_ref()?;
    Some(std::path::PathBuf::from(format!(
        "{}.dynamic.next",
        cfg.display()
    )))
}

/// A reconfig was proposed: its membership, with its version, as the `.next` file.
pub fn write_next_membership(
    s: &crate::config::Settings,
    m: &crate::quorum::membership::Membership,
) -> std::io::Result<()> {
    match next_file(s) {
        Some(path) => replace_file(&path, m.to_text().as_bytes()),
        None => Ok(()),
    }
}

/// A reconfig activated: the new dynamic file, the configuration file naming it, no
/// `.next` (see the module header). Returns the dynamic file's path (None when the
/// settings came from no file, and nothing is written).
pub fn write_membership(
    s: &crate::config::Settings,
    m: &crate::quorum::membership::Membership,
) -> std::io::Result<Option<String>> {
    let Some(cfg) = s.config_file.as_ref() else {
        return Ok(None);
    };
    let dynamic = format!("{}.dynamic.{:x}", cfg.display(), m.version);
    let members = crate::quorum::membership::Membership::new(m.servers.clone(), 0);
    let text: String = members
        .to_text()
        .lines()
        .filter(|l| !l.starts_with("version="))
        .map(|l| format!("{l}\n"))
        .collect();
    replace_file(Path::new(&dynamic), text.as_bytes())?;
    let old = std::fs::read_to_string(cfg)?;
    let toml = cfg.extension().is_none_or(|e| e != "cfg");
    let new = crate::config::zoo_cfg::static_text_after_reconfig(&old, &dynamic, toml);
    replace_file(cfg, new.as_bytes())?;
    if let Some(next) = next_file(s) {
        match std::fs::remove_file(&next) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(Some(dynamic))
}

/// `/zookeeper/config` as ZooKeeper 3.8 writes it (`quorum::membership`; the version is
/// the dynamic file's, 0 for a static ensemble). A server line without a client address gets none
/// here either: ZooKeeper fills its own member's from `clientPort` but leaves that out of
/// the text, and Curator's ensemble tracker, on by default, rewrites the client's connect
/// string from these lines, so an address made up here would send every client to one
/// member.
pub fn config_node_text(s: &crate::config::Settings) -> String {
    crate::quorum::membership::Membership::new(s.servers.clone(), s.config_version).to_text()
}

/// The membership text the transport sends in notifications and NEWLEADER: none for a
/// static membership (version 0), as zabd always sent (a ZooKeeper learner then keeps its
/// own), the membership's once a reconfig has made it.
pub fn transport_config(s: &crate::config::Settings) -> bytes::Bytes {
    match s.config_version {
        0 => bytes::Bytes::new(),
        _ => bytes::Bytes::from(config_node_text(s)),
    }
}

/// Core ticks per second: election back-off and the init/sync limits run on this clock,
/// while ZooKeeper's tickTime keeps its meaning (limits are converted).
const CORE_TICK_MS: u64 = 50;

/// The election and quorum addresses of the members' `server.N` lines.
pub fn peer_addrs(
    servers: &[crate::config::ServerSpec],
) -> std::io::Result<HashMap<Sid, PeerAddrs>> {
    let mut peers = HashMap::new();
    for x in servers {
        let resolve = |port: u16| -> std::io::Result<std::net::SocketAddr> {
            use std::net::ToSocketAddrs;
            (x.host.as_str(), port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other(format!("cannot resolve {}", x.host)))
        };
        peers.insert(
            x.id as Sid,
            PeerAddrs {
                host: x.host.clone(),
                election: resolve(x.election_port)?,
                quorum: resolve(x.quorum_port)?,
            },
        );
    }
    Ok(peers)
}

/// Runs this member of the configured ensemble: election and quorum ports, and the client
/// port answering four-letter words from the current role.
pub async fn run_member(
    s: &crate::config::Settings,
    stop: impl std::future::Future<Output = &'static str> + Send + 'static,
) -> std::io::Result<()> {
    use crate::config::Role;
    let me = s.server_id as Sid;
    let mine = s
        .servers
        .iter()
        .find(|x| x.id as Sid == me)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "server id {me} (myid) is not among the server.N lines"
            ))
        })?;
    let peers = peer_addrs(&s.servers)?;
    let per_tick = (s.tick_time / CORE_TICK_MS).max(1) as u32;
    let ids = |role: Role| -> Vec<Sid> {
        s.servers
            .iter()
            .filter(|x| x.role == role)
            .map(|x| x.id as Sid)
            .collect()
    };
    let cfg = Config {
        id: me,
        voters: ids(Role::Participant),
        observers: ids(Role::Observer),
        init_limit: s.init_limit * per_tick,
        sync_limit: s.sync_limit * per_tick,
        // 50–100 ms for a better vote once a quorum agrees (ZooKeeper waits 200 ms). Safety
        // does not depend on it: a quorum only ever votes for a history at least as new as
        // each voter's own; the wait only lets a better candidate win.
        finalize_ticks: 1,
        snap_threshold: s.commit_log_count,
        log_window: s.commit_log_count,
        batched: true,
        config_version: s.config_version,
    };
    let election = super::bind("leader election", peers[&me].election.to_string()).await?;
    let quorum = super::bind("the quorum", peers[&me].quorum.to_string()).await?;
    let client_addr = match &mine.client {
        Some((h, p)) => super::client_addr(h, *p),
        None => super::client_addr(&s.client_port_address, s.client_port),
    };
    let clients = match s.tls.plain_port || mine.client.is_some() {
        true => Some(super::bind("clients", &client_addr).await?),
        false => None,
    };
    tracing::info!(id = me, election = %peers[&me].election, quorum = %peers[&me].quorum, "ensemble member starting; waiting for a quorum");
    let status = Arc::new(Mutex::new(Status {
        state: State::Looking,
        leader: None,
        epoch: 0,
    }));
    let mut settings = s.clone();
    if let Some(c) = &clients {
        settings.client_port = c.local_addr()?.port();
    }
    super::member::run(super::member::Setup {
        settings,
        cfg,
        peers,
        election,
        quorum,
        clients,
        core_tick: Duration::from_millis(CORE_TICK_MS),
        status,
        stop: Box::pin(stop),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(lines: &[&str]) -> crate::config::Settings {
        let mut s = crate::config::Settings::default();
        for (i, l) in lines.iter().enumerate() {
            let id = i as i64 + 1;
            s.servers
                .push(crate::config::parse_server_spec(id, l).expect("spec"));
        }
        s
    }

    #[test]
    fn epochs_live_where_zookeeper_keeps_them_and_older_files_still_count() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        std::fs::create_dir_all(epoch_dir(data)).unwrap();
        // Neither file: the last zxid's epoch, as ZooKeeper defaults it.
        assert_eq!(
            read_member_epoch(data, "currentEpoch", 0x3_0000_0007).unwrap(),
            3
        );
        // ZooKeeper's file, in version-2.
        write_epoch(&epoch_dir(data), "currentEpoch", 5).unwrap();
        assert_eq!(read_member_epoch(data, "currentEpoch", 0).unwrap(), 5);
        // An older zabd's file beside it: the larger wins.
        write_epoch(data, "currentEpoch", 7).unwrap();
        assert_eq!(read_member_epoch(data, "currentEpoch", 0).unwrap(), 7);
        write_epoch(&epoch_dir(data), "currentEpoch", 9).unwrap();
        assert_eq!(read_member_epoch(data, "currentEpoch", 0).unwrap(), 9);
    }

    #[test]
    fn config_node_leaves_out_unknown_client_addresses() {
        let s = settings(&["h1:2888:3888", "h2:2888:3888:observer", "h3:2888:3888"]);
        assert_eq!(
            config_node_text(&s),
            "server.1=h1:2888:3888:participant\nserver.2=h2:2888:3888:observer\n\
             server.3=h3:2888:3888:participant\nversion=0"
        );
    }

    #[test]
    fn a_reconfig_writes_next_then_the_dynamic_file_and_repoints_zoo_cfg() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("zoo.cfg");
        let first = dir.path().join("zoo.cfg.dynamic.100000000");
        std::fs::write(
            &cfg,
            format!("tickTime=2000\ndynamicConfigFile={}\n", first.display()),
        )
        .unwrap();
        let mut s = settings(&["h1:1:2;h1:3", "h2:1:2;h2:3"]);
        s.config_file = Some(cfg.clone());
        let mut m = crate::quorum::membership::Membership::new(s.servers.clone(), 0x1_0000_0005);
        write_next_membership(&s, &m).unwrap();
        let next = dir.path().join("zoo.cfg.dynamic.next");
        let text = std::fs::read_to_string(&next).unwrap();
        assert!(text.ends_with("version=100000005"), "{text}");
        m.servers.pop();
        let dynamic = write_membership(&s, &m).unwrap().unwrap();
        assert!(dynamic.ends_with("zoo.cfg.dynamic.100000005"), "{dynamic}");
        assert_eq!(
            std::fs::read_to_string(&dynamic).unwrap(),
            "server.1=h1:1:2:participant;h1:3\n",
            "members only: the name carries the version"
        );
        assert_eq!(
            std::fs::read_to_string(&cfg).unwrap(),
            format!("tickTime=2000\ndynamicConfigFile={dynamic}\n")
        );
        assert!(!next.exists(), "no .next once active");
    }

    #[test]
    fn config_node_keeps_configured_client_addresses() {
        let s = settings(&["h1:1:2;10.0.0.1:2181", "h2:1:2:participant;2182"]);
        assert_eq!(
            config_node_text(&s),
            "server.1=h1:1:2:participant;10.0.0.1:2181\n\
             server.2=h2:1:2:participant;0.0.0.0:2182\nversion=0"
        );
    }
}
