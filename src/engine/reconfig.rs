//! The leader's preparation of a `reconfig` request, in Apache ZooKeeper's order of checks
//! (PrepRequestProcessor, `case OpCode.reconfig`), and its reply.
//!
//! Owns: the membership view a reconfig is checked against ([`View`]: the active
//! membership, the last one seen, the followers synced with the leader), which the node
//! sets (`node::Node`), and the engine's notion of "in progress": from the prep of a
//! reconfig until the node reports its activation or the role changes. Must not: decide
//! membership semantics (that is `quorum::reconfig::plan`) or touch ZAB.
//!
//! Order: reconfigEnabled (ReconfigDisabled), standalone (Unimplemented), one in progress
//! (ReconfigInProgress), `-from` (BadVersion), the new membership (BadArguments), a quorum
//! of its voters synced with the leader (NewConfigNoQuorum), WRITE on `/zookeeper/config`
//! (NoAuth; super passes). The transaction is `SetDataTxn(/zookeeper/config, text, -1)`
//! under type 16, the text carrying `version=<the reconfig's zxid>`.
//!
//! The reply is a GetDataResponse: the new text and `/zookeeper/config`'s Stat.

use super::Engine;
use crate::jute::Record;
use crate::prep::Requester;
use crate::proto::ZkError;
use crate::quorum::membership::Membership;
use crate::quorum::reconfig::{plan, ReconfigAsk, Refusal};
use crate::txn::Txn;
use bytes::Bytes;

/// What a reconfig is checked against.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub active: Membership,
    /// The last membership proposed (equal to `active` when none is pending).
    pub last_seen: Membership,
    /// Leader: the followers synced with it, itself included.
    pub synced: Vec<u64>,
}

impl Engine {
    /// An ensemble member's membership (the node sets it at start, on activation and on
    /// every role change).
    pub fn set_membership(&mut self, active: Membership, last_seen: Membership) {
        let synced = self.membership.take().map(|v| v.synced).unwrap_or_default();
        self.membership = Some(View {
            active,
            last_seen,
            synced,
        });
    }

    /// Leader: the followers synced with it now (the node sets it before a reconfig).
    pub fn set_synced_followers(&mut self, synced: Vec<u64>) {
        if let Some(v) = &mut self.membership {
            v.synced = synced;
        }
    }

    pub(super) fn prepare_reconfig(
        &mut self,
        who: &Requester,
        ask: &ReconfigAsk,
        zxid: i64,
        now: i64,
    ) -> Result<Txn, ZkError> {
        if !self.cfg.reconfig_enabled {
            return Err(ZkError::ReconfigDisabled);
        }
        let Some(view) = &self.membership else {
            return Err(ZkError::Unimplemented);
        };
        if view.last_seen.version != view.active.version {
            return Err(ZkError::ReconfigInProgress);
        }
        let mut next = plan(&view.last_seen, ask, self.cfg.standalone_enabled).map_err(|r| {
            tracing::info!(refusal = ?r, "reconfig refused");
            match r {
                Refusal::BadVersion(_) => ZkError::BadVersion,
                Refusal::BadArguments(_) => ZkError::BadArguments,
            }
        })?;
        let voters = next.voters();
        let synced = voters
            .iter()
            .filter(|v| view.synced.contains(&(**v as u64)))
            .count();
        if synced < crate::quorum::quorum_of(voters.len()) {
            tracing::info!(
                voters = ?voters,
                synced = ?view.synced,
                "reconfig refused: too few of the new voters are synced with the leader"
            );
            return Err(ZkError::NewConfigNoQuorum);
        }
        next.version = zxid;
        let text = Bytes::from(next.to_text());
        let txn = self
            .prep
            .prepare_reconfig(&self.tree, who, text, zxid, now)?;
        if let Some(v) = &mut self.membership {
            v.last_seen = next;
        }
        Ok(txn)
    }
}

/// A reconfig's reply body: the new membership's text, then the Stat.
pub(super) fn write_reply(
    w: &mut crate::jute::Writer,
    txn: &Txn,
    stat: &crate::jute::records::Stat,
) {
    if let Txn::Reconfig { data, .. } = txn {
        w.buffer(data.as_deref());
    }
    stat.write(w);
}
