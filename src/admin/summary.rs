//! A summary of observed values (latencies, fsync times, sizes) as ZooKeeper's metrics keep
//! them: count, sum, min, max and percentiles over the most recent samples.
//!
//! Owns: the figures only. Bounded: the percentiles come from a ring of the last
//! [`RING`] samples (ZooKeeper's own summaries also sample a sliding window).

/// Samples kept for percentiles.
pub const RING: usize = 1024;

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub count: u64,
    pub sum: i64,
    pub min: i64,
    pub max: i64,
    ring: Vec<i64>,
    next: usize,
}

impl Summary {
    /// An empty summary, usable in a `static`.
    pub const fn new_const() -> Summary {
        Summary {
            count: 0,
            sum: 0,
            min: 0,
            max: 0,
            ring: Vec::new(),
            next: 0,
        }
    }

    pub fn add(&mut self, v: i64) {
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        if self.count == 0 || v > self.max {
            self.max = v;
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        if self.ring.len() < RING {
            self.ring.push(v);
        } else {
            self.ring[self.next] = v;
            self.next = (self.next + 1) % RING;
        }
    }

    /// ZooKeeper's average: 0.0 with no samples.
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The `q` quantile (0..=1) of the recent samples; 0 with none.
    pub fn quantile(&self, q: f64) -> i64 {
        if self.ring.is_empty() {
            return 0;
        }
        let mut v = self.ring.clone();
        v.sort_unstable();
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_quantiles() {
        let mut s = Summary::default();
        assert_eq!((s.avg(), s.quantile(0.5)), (0.0, 0));
        for v in 1..=100 {
            s.add(v);
        }
        assert_eq!((s.count, s.sum, s.min, s.max), (100, 5050, 1, 100));
        assert_eq!(s.quantile(0.5), 50);
        assert_eq!(s.quantile(0.99), 99);
        assert_eq!(s.quantile(1.0), 100);
        for _ in 0..RING {
            s.add(7);
        }
        assert_eq!((s.quantile(0.5), s.max, s.min), (7, 100, 1));
    }
}
