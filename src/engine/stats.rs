//! Counters the four-letter words and metrics read: packets, latency, per-connection counts.

use crate::admin::summary::Summary;

/// ZooKeeper's default trace mask (`gtmk` before any `stmk`).
pub const DEFAULT_TRACE_MASK: i64 = 306;

/// ZAB's counters, by ZooKeeper's metric names (kept by the node, `src/node/`).
#[derive(Debug, Clone, Copy, Default)]
pub struct QuorumCounts {
    /// Transactions this member proposed as leader (`proposal_count`).
    pub proposals: u64,
    /// Commits this member made as leader (`commit_count`).
    pub commits: u64,
    /// PROPOSALs and COMMITs received as a learner (`learner_proposal_received_count`,
    /// `learner_commit_received_count`).
    pub learner_proposals: u64,
    pub learner_commits: u64,
    /// Learners brought up to date by DIFF and by SNAP as leader (`diff_count`, `snap_count`).
    pub diffs: u64,
    pub snaps: u64,
    /// Leader: REVALIDATE requests answered (`revalidate_count`); learner: sessions of
    /// reconnecting clients sent to the leader to revalidate (`connection_revalidate_count`).
    pub revalidates: u64,
    pub connection_revalidates: u64,
}

/// Where a write's time goes, in microseconds: zabd's own figures (ZooKeeper's summaries,
/// in ms, cannot show stages well below a millisecond). `mntr` shows them as
/// `zabd_write_*_us`; `benches/ensemble_hosts.rs` reads them for its breakdown.
#[derive(Debug, Clone, Default)]
pub struct WritePath {
    /// The member the client is on: a write's arrival in the engine to its reply.
    pub update_us: Summary,
    /// Leader: proposing a transaction to its own log sync covering it.
    pub leader_fsync_us: Summary,
    /// Leader: proposing a transaction to its commit by a quorum's ACKs.
    pub leader_quorum_us: Summary,
    /// Learner: a PROPOSAL's arrival to its log sync covering it (its ACK goes then).
    pub learner_fsync_us: Summary,
    /// Learner: a PROPOSAL's arrival to its COMMIT's.
    pub learner_commit_us: Summary,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// The write path's stage timings (microseconds).
    pub write_path: WritePath,
    /// ZAB's counters (ensemble members).
    pub quorum: QuorumCounts,
    /// Watchers one event fired, by event type: created, deleted, data changed, children
    /// changed (ZooKeeper's `node_*_watch_count`).
    pub watch_fired: [Summary; 4],
    /// Members: ms from a transaction's creation on the leader (its header's time) to its
    /// apply here (ZooKeeper's `propagation_latency`).
    pub propagation_latency: Summary,
    /// Leader: ms from proposing a transaction to its commit by a quorum's acks
    /// (ZooKeeper's `quorum_ack_latency`).
    pub quorum_ack_latency: Summary,
    /// Learners, from a transaction's creation on the leader (its header's time): to the
    /// PROPOSAL's arrival (`proposal_latency`), to this member's ACK after its log sync
    /// (`proposal_ack_creation_latency`), to its COMMIT here (`commit_propagation_latency`).
    pub proposal_latency: Summary,
    pub proposal_ack_creation_latency: Summary,
    pub commit_propagation_latency: Summary,
    /// Learners: ms from connecting to a leader to being up to date with it
    /// (`follower_sync_time`, `observer_sync_time`).
    pub follower_sync_time: Summary,
    pub observer_sync_time: Summary,
    /// Reads and writes answered, in ms (ZooKeeper's `readlatency`, `updatelatency`).
    pub read_latency: Summary,
    pub update_latency: Summary,
    /// Sizes of the replies sent: last, min, max (ZooKeeper's client_response_stats).
    pub response_size: Option<(usize, usize, usize)>,
    /// Sizes of the transactions this leader proposed: last, min, max (ZooKeeper's
    /// `proposalStats`).
    pub proposal_size: Option<(usize, usize, usize)>,
    /// Bytes of replies sent (`response_bytes`).
    pub response_bytes: u64,
    /// Authentications that failed (`auth_failed_count`).
    pub auth_failed: u64,
    /// ConnectRequests received (`connection_request_count`).
    pub connection_requests: u64,
    /// `stmk`'s mask; None: ZooKeeper's default.
    pub trace_mask: Option<i64>,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub latency_count: u64,
    pub latency_sum_ms: i64,
    pub latency_min_ms: i64,
    pub latency_max_ms: i64,
    /// Transactions after which the tree digest differed from the one prep logged.
    pub digest_mismatches: u64,
    /// Sessions this member expired: global ones as leader (or standalone), its local ones
    /// in any role (ZooKeeper's `stale_sessions_expired`).
    pub sessions_expired: u64,
    /// The longest single pass of the core loop, in microseconds: the longest any request
    /// could have waited for the server's attention (set by the server's core task).
    pub core_stall_max_us: u64,
}

impl Stats {
    pub fn record_latency(&mut self, ms: i64) {
        let ms = ms.max(0);
        if self.latency_count == 0 || ms < self.latency_min_ms {
            self.latency_min_ms = ms;
        }
        self.latency_max_ms = self.latency_max_ms.max(ms);
        self.latency_sum_ms += ms;
        self.latency_count += 1;
    }

    pub fn avg_latency(&self) -> f64 {
        if self.latency_count == 0 {
            0.0
        } else {
            self.latency_sum_ms as f64 / self.latency_count as f64
        }
    }

    /// `srst`: ZooKeeper's `ServerStats.reset` (latency, packets, response sizes).
    pub fn reset(&mut self) {
        *self = Stats {
            digest_mismatches: self.digest_mismatches,
            auth_failed: self.auth_failed,
            response_bytes: self.response_bytes,
            proposal_size: self.proposal_size,
            quorum: self.quorum,
            watch_fired: std::mem::take(&mut self.watch_fired),
            propagation_latency: std::mem::take(&mut self.propagation_latency),
            quorum_ack_latency: std::mem::take(&mut self.quorum_ack_latency),
            proposal_latency: std::mem::take(&mut self.proposal_latency),
            proposal_ack_creation_latency: std::mem::take(&mut self.proposal_ack_creation_latency),
            commit_propagation_latency: std::mem::take(&mut self.commit_propagation_latency),
            follower_sync_time: std::mem::take(&mut self.follower_sync_time),
            observer_sync_time: std::mem::take(&mut self.observer_sync_time),
            connection_requests: self.connection_requests,
            trace_mask: self.trace_mask,
            read_latency: std::mem::take(&mut self.read_latency),
            update_latency: std::mem::take(&mut self.update_latency),
            ..Stats::default()
        };
    }

    pub fn trace_mask(&self) -> i64 {
        self.trace_mask.unwrap_or(DEFAULT_TRACE_MASK)
    }

    pub fn record_proposal_size(&mut self, n: usize) {
        self.proposal_size = Some(match self.proposal_size {
            None => (n, n, n),
            Some((_, lo, hi)) => (n, lo.min(n), hi.max(n)),
        });
    }

    /// (last, min, max), -1 each before the first, as ZooKeeper's `BufferStats`.
    pub fn proposal_sizes(&self) -> (i64, i64, i64) {
        self.proposal_size
            .map_or((-1, -1, -1), |(a, b, c)| (a as i64, b as i64, c as i64))
    }

    pub fn record_response_size(&mut self, n: usize) {
        self.response_bytes += n as u64;
        self.response_size = Some(match self.response_size {
            None => (n, n, n),
            Some((_, lo, hi)) => (n, lo.min(n), hi.max(n)),
        });
    }
}

/// One connection's counters, as ZooKeeper's `cons` shows them (`ServerCnxn`).
#[derive(Debug, Clone, Copy)]
pub struct ConnStats {
    pub received: u64,
    pub sent: u64,
    /// ZooKeeper's short name of the last request answered (`GETD`, `PING`...), or `NA`.
    pub last_op: &'static str,
    /// Wall-clock ms when the session was established on this connection (0: none yet).
    pub established_ms: i64,
    pub last_cxid: i64,
    pub last_zxid: i64,
    /// Wall-clock ms of the last reply.
    pub last_response_ms: i64,
    pub last_latency: i64,
    pub min_latency: i64,
    pub max_latency: i64,
    latency_sum: i64,
    latency_count: u64,
}

impl Default for ConnStats {
    fn default() -> Self {
        ConnStats {
            received: 0,
            sent: 0,
            last_op: "NA",
            established_ms: 0,
            last_cxid: -1,
            last_zxid: -1,
            last_response_ms: 0,
            last_latency: 0,
            min_latency: 0,
            max_latency: 0,
            latency_sum: 0,
            latency_count: 0,
        }
    }
}

impl ConnStats {
    /// A request answered: `op` is its opcode, `latency` in ms.
    pub fn answered(&mut self, op: i32, cxid: i32, zxid: i64, latency: i64, wall_ms: i64) {
        let latency = latency.max(0);
        self.last_op = op_short_name(op);
        if cxid >= 0 {
            self.last_cxid = cxid as i64;
        }
        self.last_zxid = zxid;
        self.last_response_ms = wall_ms;
        self.last_latency = latency;
        if self.latency_count == 0 || latency < self.min_latency {
            self.min_latency = latency;
        }
        self.max_latency = self.max_latency.max(latency);
        self.latency_sum += latency;
        self.latency_count += 1;
    }

    /// ZooKeeper prints the average as a whole number of ms.
    pub fn avg_latency(&self) -> i64 {
        if self.latency_count == 0 {
            0
        } else {
            self.latency_sum / self.latency_count as i64
        }
    }

    /// `crst`: ZooKeeper's `resetStats` (the established time and session stay).
    pub fn reset(&mut self) {
        *self = ConnStats {
            established_ms: self.established_ms,
            ..ConnStats::default()
        };
    }
}

/// ZooKeeper's `lastOp` names (`FinalRequestProcessor`).
pub fn op_short_name(op: i32) -> &'static str {
    use crate::proto::op;
    match op {
        op::PING => "PING",
        op::CREATE_SESSION => "SESS",
        op::MULTI => "MULT",
        op::MULTI_READ => "MLTR",
        op::CREATE | op::CREATE2 | op::CREATE_TTL | op::CREATE_CONTAINER => "CREA",
        op::DELETE | op::DELETE_CONTAINER => "DELE",
        op::SET_DATA => "SETD",
        op::RECONFIG => "RECO",
        op::SET_ACL => "SETA",
        op::CLOSE_SESSION => "CLOS",
        op::SYNC => "SYNC",
        op::CHECK => "CHEC",
        op::EXISTS => "EXIS",
        op::GET_DATA => "GETD",
        op::SET_WATCHES => "SETW",
        op::SET_WATCHES2 => "STW2",
        op::ADD_WATCH => "ADDW",
        op::GET_ACL => "GETA",
        op::GET_CHILDREN | op::GET_CHILDREN2 => "GETC",
        op::GET_ALL_CHILDREN_NUMBER => "GETACN",
        op::CHECK_WATCHES => "CHKW",
        op::REMOVE_WATCHES => "REMW",
        op::WHO_AM_I => "HOMI",
        op::GET_EPHEMERALS => "GETE",
        _ => "NA",
    }
}

/// What `cons` and `stat` show of one connection.
pub struct ConnView {
    pub conn: super::ConnId,
    pub ip: String,
    pub session: Option<i64>,
    pub session_timeout: i32,
    pub queued: usize,
    pub stats: ConnStats,
}

impl super::Engine {
    /// `crst`: zero every connection's counters.
    pub fn reset_connection_stats(&mut self) {
        for c in self.conns.values_mut() {
            c.stats.reset();
        }
    }

    pub fn connection_views(&self) -> Vec<ConnView> {
        let mut v: Vec<ConnView> = self
            .conns
            .iter()
            .map(|(id, c)| ConnView {
                conn: *id,
                ip: c.ip.clone(),
                session: c.session,
                session_timeout: c
                    .session
                    .and_then(|s| self.sessions.get(s).map(|x| x.timeout))
                    .unwrap_or(0),
                queued: c.queue.len(),
                stats: c.stats,
            })
            .collect();
        v.sort_by_key(|c| c.conn);
        v
    }
}
