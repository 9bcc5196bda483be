//! What a `reconfig` request asks for, checked as Apache ZooKeeper's PrepRequestProcessor
//! checks it, and the membership it would make. Pure: no quorum, no file, no clock.
//!
//! Owns: reading the request's three strings and its config version into a
//! [`Membership`], and the refusals that depend only on them and on the last membership
//! seen. Must not: decide whether reconfig is enabled, whether another one is in
//! progress, whether the caller may change `/zookeeper/config`, or whether a quorum of the
//! new members is synced: the leader's prep knows those, and refuses first.
//!
//! The request (`ReconfigRequest` in zookeeper.jute): `ustring joiningServers, ustring
//! leavingServers, ustring newMembers, long curConfigId`.
//! - `newMembers` (non-incremental, zkCli `-members`): the whole new membership, as
//!   `server.N=spec` entries separated by commas or newlines.
//! - otherwise incremental (`-add`, `-remove`): `leavingServers` is a comma-separated list
//!   of ids to remove; `joiningServers` a comma-separated list of `server.N=spec` entries,
//!   each with its client address, that join or replace member N.
//! - `curConfigId` (`-from`): -1, or the version the change must start from.
//!
//! The result keeps `last_seen`'s version: the reconfig's zxid becomes the new version
//! when it is proposed.
//!
//! [`membership_in`] reads the membership back out of a proposal: the txn log entry body
//! (`TxnHeader`: long clientId, int cxid, long zxid, long time, int type = 16 at bytes
//! 28..32; then `SetDataTxn`: ustring path, buffer data = the membership text, int version).

use super::membership::Membership;
use crate::config::ServerSpec;

/// A `reconfig` request's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconfigAsk {
    pub joining: Option<String>,
    pub leaving: Option<String>,
    pub new_members: Option<String>,
    pub cur_config_id: i64,
}

/// Why a reconfig is refused, with the message ZooKeeper logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `-from` names another version than the last seen (ZooKeeper's BadVersion).
    BadVersion(String),
    /// The new membership does not parse, or has too few voters (BadArguments).
    BadArguments(String),
}

/// The membership `ask` makes from `last_seen`. `standalone_enabled`
/// (`standaloneEnabled`, on by default): the new membership needs two voters, else one.
pub fn plan(
    last_seen: &Membership,
    ask: &ReconfigAsk,
    standalone_enabled: bool,
) -> Result<Membership, Refusal> {
    if ask.cur_config_id != -1 && ask.cur_config_id != last_seen.version {
        return Err(Refusal::BadVersion(format!(
            "Reconfiguration from version {} failed -- last seen version is {}",
            ask.cur_config_id, last_seen.version
        )));
    }
    let next = match &ask.new_members {
        Some(members) => whole(last_seen, members)?,
        None => incremental(last_seen, ask)?,
    };
    let voters = next.voters().len();
    if standalone_enabled && voters < 2 {
        return Err(Refusal::BadArguments(
            "Reconfig failed - new configuration must include at least 2 followers".into(),
        ));
    }
    if voters < 1 {
        return Err(Refusal::BadArguments(
            "Reconfig failed - new configuration must include at least 1 follower".into(),
        ));
    }
    Ok(next)
}

/// The membership a reconfig proposal carries (see the module header); None for any
/// other transaction, or one whose text does not parse.
pub fn membership_in(payload: &[u8]) -> Option<Membership> {
    let int = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(
            payload.get(at..at + 4)?.try_into().ok()?,
        ))
    };
    if int(28)? != crate::proto::op::RECONFIG {
        return None;
    }
    let path_len = usize::try_from(int(32)?).ok()?;
    let data_at = 36usize.checked_add(path_len)?;
    let data_len = usize::try_from(int(data_at)?).ok()?;
    let text = payload.get(data_at + 4..(data_at + 4).checked_add(data_len)?)?;
    Membership::parse(std::str::from_utf8(text).ok()?).ok()
}

/// `-members`: commas or newlines between entries; a `version` entry is ignored (the
/// reconfig's zxid is the version).
fn whole(last_seen: &Membership, members: &str) -> Result<Membership, Refusal> {
    let text: String = members
        .replace(',', "\n")
        .lines()
        .filter(|l| !l.trim_start().starts_with("version"))
        .collect::<Vec<_>>()
        .join("\n");
    let parsed = Membership::parse(&text).map_err(Refusal::BadArguments)?;
    if parsed.servers.is_empty() {
        return Err(Refusal::BadArguments(
            "no server.N entry in the new members".into(),
        ));
    }
    no_shared_addresses(&parsed.servers)?;
    Ok(Membership::new(parsed.servers, last_seen.version))
}

fn incremental(last_seen: &Membership, ask: &ReconfigAsk) -> Result<Membership, Refusal> {
    let list = |s: &Option<String>| -> Vec<String> {
        s.as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    let leaving = list(&ask.leaving)
        .iter()
        .map(|id| {
            id.parse::<i64>()
                .map_err(|_| Refusal::BadArguments(format!("{id:?} is not a server id")))
        })
        .collect::<Result<Vec<i64>, Refusal>>()?;
    let joining = list(&ask.joining);
    let joining: Vec<&str> = joining.iter().map(String::as_str).collect();
    let next = last_seen
        .incremental(&joining, &leaving)
        .map_err(Refusal::BadArguments)?;
    no_shared_addresses(&next.servers)?;
    Ok(next)
}

/// Two members may not share an address (quorum, election or client), loopback and
/// wildcard hosts aside, as ZooKeeper's `QuorumServer.checkAddressDuplicate`.
fn no_shared_addresses(servers: &[ServerSpec]) -> Result<(), Refusal> {
    let addrs = |s: &ServerSpec| -> Vec<(String, u16)> {
        let mut v = vec![
            (s.host.clone(), s.quorum_port),
            (s.host.clone(), s.election_port),
        ];
        v.extend(s.client.clone());
        v.retain(|(h, _)| !special_host(h));
        v
    };
    for (i, a) in servers.iter().enumerate() {
        for b in &servers[i + 1..] {
            let theirs = addrs(b);
            if let Some(shared) = addrs(a).into_iter().find(|x| theirs.contains(x)) {
                return Err(Refusal::BadArguments(format!(
                    "{}:{} of server.{} conflicts with server.{}",
                    shared.0, shared.1, a.id, b.id
                )));
            }
        }
    }
    Ok(())
}

/// Loopback or wildcard: never a conflict (ZooKeeper's `excludedSpecialAddresses`).
fn special_host(h: &str) -> bool {
    let h = h.trim_start_matches('[').trim_end_matches(']');
    match h.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified(),
        Err(_) => h.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn three() -> Membership {
        Membership::parse(
            "server.1=10.0.0.1:2888:3888:participant;10.0.0.1:2181\n\
             server.2=10.0.0.2:2888:3888:participant;10.0.0.2:2181\n\
             server.3=10.0.0.3:2888:3888:participant;10.0.0.3:2181\n\
             version=100000000",
        )
        .unwrap()
    }

    fn ask(
        joining: Option<&str>,
        leaving: Option<&str>,
        members: Option<&str>,
        from: i64,
    ) -> ReconfigAsk {
        ReconfigAsk {
            joining: joining.map(str::to_string),
            leaving: leaving.map(str::to_string),
            new_members: members.map(str::to_string),
            cur_config_id: from,
        }
    }

    #[test]
    fn a_reconfig_proposal_carries_its_membership() {
        use crate::txn::{Txn, TxnHeader};
        let mut m = three();
        m.version = 0x2_0000_0005;
        let hdr = TxnHeader {
            client_id: 1,
            cxid: 2,
            zxid: m.version,
            time: 3,
            op: crate::proto::op::RECONFIG,
        };
        let txn = Txn::Reconfig {
            path: "/zookeeper/config".into(),
            data: Some(m.to_text().into()),
            version: -1,
        };
        let body = crate::persist::txnlog::encode_body(&hdr, &txn, Some(7));
        assert_eq!(membership_in(&body), Some(m));
        let set = Txn::SetData {
            path: "/zookeeper/config".into(),
            data: Some(three().to_text().into()),
            version: -1,
        };
        let hdr = TxnHeader {
            op: crate::proto::op::SET_DATA,
            ..hdr
        };
        let body = crate::persist::txnlog::encode_body(&hdr, &set, None);
        assert_eq!(membership_in(&body), None, "a plain setData");
        assert_eq!(membership_in(&body[..30]), None);
    }

    #[test]
    fn add_and_remove_as_zkcli_sends_them() {
        let a = ask(
            Some("server.4=10.0.0.4:2888:3888:participant;10.0.0.4:2181"),
            Some("3"),
            None,
            -1,
        );
        let m = plan(&three(), &a, true).unwrap();
        assert_eq!(m.voters(), [1, 2, 4]);
        assert_eq!(m.version, 0x1_0000_0000, "the zxid is set when proposed");
        // A role change is a replacement of the same id.
        let a = ask(
            Some("server.2=10.0.0.2:2888:3888:observer;10.0.0.2:2181"),
            None,
            None,
            0x1_0000_0000,
        );
        let m = plan(&three(), &a, true).unwrap();
        assert_eq!((m.voters(), m.observers()), (vec![1, 3], vec![2]));
        assert_eq!(m.get(2).unwrap().role, Role::Observer);
    }

    #[test]
    fn members_replace_the_whole_membership_commas_or_newlines() {
        let a = ask(
            None,
            None,
            Some("server.1=10.0.0.1:2888:3888:participant;10.0.0.1:2181,server.5=10.0.0.5:2888:3888;10.0.0.5:2181"),
            -1,
        );
        let m = plan(&three(), &a, true).unwrap();
        assert_eq!(m.voters(), [1, 5]);
        let a = ask(
            None,
            None,
            Some("server.1=10.0.0.1:2888:3888;2181\nversion=5"),
            -1,
        );
        assert!(
            matches!(plan(&three(), &a, true), Err(Refusal::BadArguments(_))),
            "one voter"
        );
        assert_eq!(
            plan(&three(), &a, false).unwrap().voters(),
            [1],
            "without standaloneEnabled"
        );
    }

    #[test]
    fn refusals_as_zookeeper_gives_them() {
        let from_old = ask(None, Some("3"), None, 7);
        assert!(matches!(
            plan(&three(), &from_old, true),
            Err(Refusal::BadVersion(_))
        ));
        for a in [
            ask(Some("server.4=10.0.0.4:2888:3888"), None, None, -1), // no client address
            ask(Some("server.4"), None, None, -1),
            ask(None, Some("x"), None, -1),
            ask(None, Some("1,2,3"), None, -1),
            ask(None, Some("2,3"), None, -1), // one voter left
            ask(
                Some("server.4=10.0.0.1:2888:3999;10.0.0.4:2181"),
                None,
                None,
                -1,
            ), // shares 10.0.0.1:2888
            ask(None, None, Some("nonsense"), -1),
        ] {
            assert!(
                matches!(plan(&three(), &a, true), Err(Refusal::BadArguments(_))),
                "{a:?}"
            );
        }
        // ZooKeeper takes the id after the last dot, so a bare "4=" names server 4 too.
        let a = ask(Some("4=10.0.0.4:2888:3888;2181"), None, None, -1);
        assert_eq!(plan(&three(), &a, true).unwrap().voters(), [1, 2, 3, 4]);
        // Loopback members may share a host: only ports tell them apart, as in tests.
        let local = Membership::parse(
            "server.1=127.0.0.1:1:2;127.0.0.1:3\nserver.2=127.0.0.1:4:5;127.0.0.1:6",
        )
        .unwrap();
        let a = ask(Some("server.3=127.0.0.1:1:8;127.0.0.1:9"), None, None, -1);
        assert_eq!(plan(&local, &a, true).unwrap().voters(), [1, 2, 3]);
    }
}
