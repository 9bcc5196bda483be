//! Counters the four-letter words and metrics read: packets, latency, per-connection counts.

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub latency_count: u64,
    pub latency_sum_ms: i64,
    pub latency_min_ms: i64,
    pub latency_max_ms: i64,
    /// Transactions after which the tree digest differed from the one prep logged.
    pub digest_mismatches: u64,
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

    pub fn reset(&mut self) {
        *self = Stats {
            digest_mismatches: self.digest_mismatches,
            ..Stats::default()
        };
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ConnStats {
    pub received: u64,
    pub sent: u64,
}

/// What `cons` and `stat` show of one connection.
pub struct ConnView {
    pub ip: String,
    pub session: Option<i64>,
    pub queued: usize,
    pub received: u64,
    pub sent: u64,
}

impl super::Engine {
    /// `crst`: zero every connection's counters.
    pub fn reset_connection_stats(&mut self) {
        for c in self.conns.values_mut() {
            c.stats = ConnStats::default();
        }
    }

    pub fn connection_views(&self) -> Vec<ConnView> {
        let mut v: Vec<ConnView> = self
            .conns
            .values()
            .map(|c| ConnView {
                ip: c.ip.clone(),
                session: c.session,
                queued: c.queue.len(),
                received: c.stats.received,
                sent: c.stats.sent,
            })
            .collect();
        v.sort_by_key(|c| c.session);
        v
    }
}
