//! Quotas, as Apache ZooKeeper keeps them under `/zookeeper/quota`.
//!
//! Owns: parsing and printing StatsTrack strings, and the set of quota'd paths. A path P has
//! a quota when `/zookeeper/quota<P>/zookeeper_limits` exists; its usage lives in
//! `/zookeeper/quota<P>/zookeeper_stats`, which the tree updates on every create, delete and
//! setData below P. Pure.
//!
//! StatsTrack text: `count=<n>,bytes=<n>` followed, when other keys are present, by
//! `=;key=value` pairs sorted by key (e.g. `count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=5`).
//! Pairs may be separated by `,` or `;`; a missing key reads as -1.

use super::path;
use std::collections::{BTreeMap, BTreeSet};

pub const LIMITS: &str = "zookeeper_limits";
pub const STATS: &str = "zookeeper_stats";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsTrack(BTreeMap<String, i64>);

impl StatsTrack {
    pub fn parse(text: &[u8]) -> StatsTrack {
        let mut m = BTreeMap::new();
        for pair in String::from_utf8_lossy(text).split([',', ';']) {
            let mut kv = pair.split('=');
            if let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                if !k.is_empty() {
                    m.insert(k.to_string(), v.trim().parse().unwrap_or(-1));
                }
            }
        }
        StatsTrack(m)
    }

    pub fn get(&self, key: &str) -> i64 {
        self.0.get(key).copied().unwrap_or(-1)
    }

    pub fn set(&mut self, key: &str, v: i64) {
        self.0.insert(key.to_string(), v);
    }

    pub fn count(&self) -> i64 {
        self.get("count")
    }

    pub fn bytes(&self) -> i64 {
        self.get("bytes")
    }

    pub fn to_text(&self) -> String {
        let mut s = format!("count={},bytes={}", self.count(), self.bytes());
        let rest: Vec<_> = self
            .0
            .iter()
            .filter(|(k, _)| *k != "count" && *k != "bytes")
            .collect();
        if !rest.is_empty() {
            s.push('=');
            for (k, v) in rest {
                s.push_str(&format!(";{k}={v}"));
            }
        }
        s
    }
}

/// The quota'd paths.
#[derive(Default)]
pub struct Quotas {
    prefixes: BTreeSet<String>,
}

impl Quotas {
    /// For a node created or deleted under /zookeeper/quota: the quota'd path it concerns,
    /// when it is a limits or stats node.
    pub fn node_kind(p: &str) -> Option<(&'static str, String)> {
        let rest = p.strip_prefix(super::QUOTA_PATH)?;
        for kind in [LIMITS, STATS] {
            if let Some(prefix) = rest.strip_suffix(kind) {
                let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
                let prefix = if prefix.is_empty() { "/" } else { prefix };
                return Some((kind, prefix.to_string()));
            }
        }
        None
    }

    pub fn add(&mut self, prefix: String) {
        self.prefixes.insert(prefix);
    }

    pub fn all(&self) -> Vec<String> {
        self.prefixes.iter().cloned().collect()
    }

    pub fn remove(&mut self, prefix: &str) {
        self.prefixes.remove(prefix);
    }

    /// The longest quota'd path `p` is under (never `/` itself, nor anything in /zookeeper).
    pub fn prefix_for(&self, p: &str) -> Option<&str> {
        if self.prefixes.is_empty() || path::is_under(p, super::ZOOKEEPER_PATH) {
            return None;
        }
        self.prefixes
            .iter()
            .filter(|q| q.as_str() != "/" && path::is_under(p, q))
            .max_by_key(|q| q.len())
            .map(String::as_str)
    }

    pub fn limits_path(prefix: &str) -> String {
        format!("{}{}/{}", super::QUOTA_PATH, prefix, LIMITS)
    }

    pub fn stats_path(prefix: &str) -> String {
        format!("{}{}/{}", super::QUOTA_PATH, prefix, STATS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_track_text() {
        let t = StatsTrack::parse(b"count=10,bytes=-1");
        assert_eq!((t.count(), t.bytes()), (10, -1));
        assert_eq!(t.to_text(), "count=10,bytes=-1");
        let t = StatsTrack::parse(b"count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=5");
        assert_eq!(t.get("countHardLimit"), 5);
        assert_eq!(
            t.to_text(),
            "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=5"
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            Quotas::node_kind("/zookeeper/quota/a/b/zookeeper_limits"),
            Some((LIMITS, "/a/b".to_string()))
        );
        let mut q = Quotas::default();
        q.add("/a".into());
        q.add("/a/b".into());
        assert_eq!(q.prefix_for("/a/b/c"), Some("/a/b"));
        assert_eq!(q.prefix_for("/a/x"), Some("/a"));
        assert_eq!(q.prefix_for("/ab"), None);
        assert_eq!(
            Quotas::stats_path("/a"),
            "/zookeeper/quota/a/zookeeper_stats"
        );
    }
}
