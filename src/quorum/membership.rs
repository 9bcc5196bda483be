//! An ensemble's membership as Apache ZooKeeper writes it: the text of `/zookeeper/config`,
//! of a dynamic configuration file (`zoo.cfg.dynamic.<version>`), and of NEWLEADER's data
//! (`QuorumVerifier.toString`), and the changes a `reconfig` asks for. Pure: parses and
//! prints text, touches no file and decides no quorum.
//!
//! Layout (UTF-8 lines, `\n`, no newline after the last):
//!
//! ```text
//! server.<id>=<host>:<quorumPort>:<electionPort>:<participant|observer>[;<clientHost>:<clientPort>]
//! ...                                   one line per member, ids ascending
//! version=<version in lower-case hex>   the zxid of the reconfig that made it; 0 if static
//! ```
//!
//! A member's client address is printed only when it was given in its `server.N` line
//! (ZooKeeper leaves out one it filled in from `clientPort`: `isClientAddrFromStatic`).
//! An IPv6 host is printed in brackets.

use crate::config::{parse_server_spec, Role, ServerSpec};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// Ascending by id, one per id.
    pub servers: Vec<ServerSpec>,
    /// The zxid of the `reconfig` that made this membership; 0 for a static one.
    pub version: i64,
}

impl Membership {
    pub fn new(mut servers: Vec<ServerSpec>, version: i64) -> Membership {
        servers.sort_by_key(|s| s.id);
        servers.dedup_by_key(|s| s.id);
        Membership { servers, version }
    }

    /// Reads `server.N=...` lines and an optional `version=<hex>` line (blank lines and `#`
    /// comments are skipped). Any other key, or a spec that does not parse, is an error
    /// naming the line.
    pub fn parse(text: &str) -> Result<Membership, String> {
        let mut servers = Vec::new();
        let mut version = 0;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("{line:?} is not key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            if key == "version" {
                version = i64::from_str_radix(value, 16)
                    .map_err(|_| format!("version {value:?} is not hexadecimal"))?;
            } else if let Some(id) = key.strip_prefix("server.") {
                let id: i64 = id
                    .parse()
                    .map_err(|_| format!("{key:?}: {id:?} is not a server id"))?;
                if servers.iter().any(|s: &ServerSpec| s.id == id) {
                    return Err(format!("server.{id} is listed twice"));
                }
                servers.push(parse_server_spec(id, value).map_err(|e| format!("{key}: {e}"))?);
            } else {
                return Err(format!("{key:?} does not belong in a membership"));
            }
        }
        Ok(Membership::new(servers, version))
    }

    /// The text, as ZooKeeper prints it (see the module header).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for x in &self.servers {
            let role = match x.role {
                Role::Observer => "observer",
                Role::Participant => "participant",
            };
            out.push_str(&format!(
                "server.{}={}:{}:{}:{role}",
                x.id,
                bracketed(&x.host),
                x.quorum_port,
                x.election_port
            ));
            if let Some((host, port)) = &x.client {
                out.push_str(&format!(";{}:{port}", bracketed(host)));
            }
            out.push('\n');
        }
        out.push_str(&format!("version={:x}", self.version));
        out
    }

    pub fn get(&self, id: i64) -> Option<&ServerSpec> {
        self.servers.iter().find(|s| s.id == id)
    }

    /// The ids of the participants (voters).
    pub fn voters(&self) -> Vec<i64> {
        self.with_role(Role::Participant)
    }

    pub fn observers(&self) -> Vec<i64> {
        self.with_role(Role::Observer)
    }

    fn with_role(&self, role: Role) -> Vec<i64> {
        self.servers
            .iter()
            .filter(|s| s.role == role)
            .map(|s| s.id)
            .collect()
    }

    /// An incremental `reconfig`, as ZooKeeper's PrepRequestProcessor builds it: `leaving`
    /// ids go, then each `joining` entry (`server.N=spec`, with a client address) comes in
    /// or replaces the member with its id. The version is left as it was (the reconfig's
    /// zxid is set by whoever proposes it).
    pub fn incremental(&self, joining: &[&str], leaving: &[i64]) -> Result<Membership, String> {
        let mut next: Vec<ServerSpec> = self
            .servers
            .iter()
            .filter(|s| !leaving.contains(&s.id))
            .cloned()
            .collect();
        for j in joining {
            let (key, spec) = j
                .split_once('=')
                .ok_or_else(|| "Wrong format of server string".to_string())?;
            let id: i64 = key
                .trim()
                .rsplit('.')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("{key:?} does not name a server id"))?;
            let s = parse_server_spec(id, spec)?;
            if s.client.is_none() {
                return Err(
                    "Wrong format of server string - each server should have at least \
                            3 ports specified"
                        .into(),
                );
            }
            next.retain(|x| x.id != id);
            next.push(s);
        }
        Ok(Membership::new(next, self.version))
    }
}

/// An IPv6 host in brackets, as ZooKeeper's `delimitedHostString`.
pub fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = "server.1=10.0.0.1:2888:3888:participant;0.0.0.0:2181\n\
                         server.2=10.0.0.2:2888:3888:participant;0.0.0.0:2181\n\
                         server.3=10.0.0.3:2888:3888:observer\n\
                         version=100000000";

    #[test]
    fn zookeepers_text_reads_and_prints_back_the_same() {
        let m = Membership::parse(THREE).unwrap();
        assert_eq!(m.version, 0x1_0000_0000);
        assert_eq!(m.voters(), [1, 2]);
        assert_eq!(m.observers(), [3]);
        assert_eq!(m.get(1).unwrap().client, Some(("0.0.0.0".into(), 2181)));
        assert_eq!(m.get(3).unwrap().client, None);
        assert_eq!(m.to_text(), THREE);
    }

    #[test]
    fn ids_come_out_ascending_and_a_static_membership_is_version_0() {
        let m = Membership::parse("server.3=h3:1:2\nserver.1=h1:1:2").unwrap();
        assert_eq!(
            m.to_text(),
            "server.1=h1:1:2:participant\nserver.3=h3:1:2:participant\nversion=0"
        );
    }

    #[test]
    fn bad_lines_are_errors_that_name_them() {
        for (text, needle) in [
            ("server.x=h:1:2", "server id"),
            ("server.1=h:1", "host:quorumPort"),
            ("server.1=h:1:2\nserver.1=h:3:4", "twice"),
            ("version=zz", "hexadecimal"),
            ("clientPort=2181", "does not belong"),
        ] {
            let e = Membership::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn an_incremental_change_adds_replaces_and_removes() {
        let m = Membership::parse(THREE).unwrap();
        let next = m
            .incremental(
                &[
                    "server.4=10.0.0.4:2888:3888:participant;2181",
                    "server.3=10.0.0.3:2888:3888:participant;10.0.0.3:2181",
                ],
                &[2],
            )
            .unwrap();
        assert_eq!(next.voters(), [1, 3, 4]);
        assert!(next.observers().is_empty());
        assert_eq!(next.version, m.version);
        assert_eq!(next.get(4).unwrap().client, Some(("0.0.0.0".into(), 2181)));
        let e = m.incremental(&["server.5=h:1:2"], &[]).unwrap_err();
        assert!(e.contains("3 ports"), "{e}");
        assert!(m.incremental(&["garbage"], &[]).is_err());
    }
}
