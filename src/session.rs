//! Sessions: the table of live sessions, their timeouts and expiry buckets.
//!
//! Owns: which sessions exist, when each expires, and session ids and passwords. Pure:
//! every call takes the current monotonic time in milliseconds.
//! Must not: delete ephemerals (a closeSession transaction does that, through prep).
//!
//! As ZooKeeper's SessionTrackerImpl: expiry times are rounded up to the next multiple of
//! the tick, so one pass expires a whole bucket. Session ids carry the server id in the top
//! byte and a time-derived counter below (unique across restarts); the 16-byte password is
//! Java's `new Random(id ^ 0xB3415C00).nextBytes`, so any member — zabd or Apache
//! ZooKeeper — can check a password without storing it.

use std::collections::{BTreeMap, HashMap, HashSet};

const SUPER_SECRET: i64 = 0xB341_5C00;

/// The password of a session, exactly as ZooKeeper derives it.
pub fn password(session_id: i64) -> [u8; 16] {
    let mut rng = JavaRandom::new(session_id ^ SUPER_SECRET);
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < out.len() {
        let mut rnd = rng.next_int();
        for _ in 0..4.min(out.len() - i) {
            out[i] = rnd as u8;
            rnd >>= 8;
            i += 1;
        }
    }
    out
}

/// java.util.Random's 48-bit linear congruential generator.
struct JavaRandom {
    seed: i64,
}

impl JavaRandom {
    const MULT: i64 = 0x5DEECE66D;
    const MASK: i64 = (1 << 48) - 1;

    fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed ^ Self::MULT) & Self::MASK,
        }
    }

    fn next_int(&mut self) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULT).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> 16) as i32
    }
}

/// The first session id of a server started at wall-clock `now_ms` (ZooKeeper's
/// initializeNextSessionId).
/// The id of the server that made session `id` (its top byte, as ZooKeeper's
/// `SessionTrackerImpl.initializeNextSessionId` puts it there).
pub fn server_of(id: i64) -> i64 {
    (id >> 56) & 0xff
}

pub fn first_session_id(server_id: i64, now_ms: i64) -> i64 {
    let base = ((now_ms << 24) as u64 >> 8) as i64;
    let sid = base | (server_id << 56);
    if sid == i64::MIN {
        sid + 1
    } else {
        sid
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub timeout: i32,
    expires_at: i64,
    pub closing: bool,
}

pub struct Sessions {
    sessions: HashMap<i64, Session>,
    buckets: BTreeMap<i64, HashSet<i64>>,
    interval: i64,
    next_id: i64,
}

impl Sessions {
    pub fn new(tick_ms: i64, first_id: i64) -> Self {
        Sessions {
            sessions: HashMap::new(),
            buckets: BTreeMap::new(),
            interval: tick_ms.max(1),
            next_id: first_id,
        }
    }

    fn round_up(&self, t: i64) -> i64 {
        (t / self.interval + 1) * self.interval
    }

    /// A fresh id for a new session (not yet in the table: the createSession txn adds it).
    pub fn next_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Adds (or re-adds, on replay) a session.
    pub fn add(&mut self, id: i64, timeout: i32, now: i64) {
        self.remove(id);
        let expires_at = self.round_up(now + timeout as i64);
        self.buckets.entry(expires_at).or_default().insert(id);
        self.sessions.insert(
            id,
            Session {
                id,
                timeout,
                expires_at,
                closing: false,
            },
        );
    }

    /// The expiry buckets (monotonic ms → the sessions expiring then), soonest first.
    pub fn expiry_sets(&self) -> Vec<(i64, Vec<i64>)> {
        self.buckets
            .iter()
            .map(|(t, ids)| {
                let mut ids: Vec<i64> = ids.iter().copied().collect();
                ids.sort_unstable();
                (*t, ids)
            })
            .collect()
    }

    pub fn get(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// Whether the session's expiry time has passed (false when it is gone).
    pub fn has_expired(&self, id: i64, now: i64) -> bool {
        self.sessions.get(&id).is_some_and(|s| s.expires_at <= now)
    }

    /// Is the session live (present and not closing)?
    pub fn is_live(&self, id: i64) -> bool {
        self.sessions.get(&id).is_some_and(|s| !s.closing)
    }

    /// Pushes the session's expiry out by its timeout. False if it is gone or closing.
    pub fn touch(&mut self, id: i64, now: i64) -> bool {
        let interval = self.interval;
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        if s.closing {
            return false;
        }
        let new_at = (now + s.timeout as i64) / interval * interval + interval;
        if new_at > s.expires_at {
            let old = s.expires_at;
            s.expires_at = new_at;
            if let Some(b) = self.buckets.get_mut(&old) {
                b.remove(&id);
                if b.is_empty() {
                    self.buckets.remove(&old);
                }
            }
            self.buckets.entry(new_at).or_default().insert(id);
        }
        true
    }

    pub fn set_closing(&mut self, id: i64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.closing = true;
        }
    }

    pub fn remove(&mut self, id: i64) {
        if let Some(s) = self.sessions.remove(&id) {
            if let Some(b) = self.buckets.get_mut(&s.expires_at) {
                b.remove(&id);
                if b.is_empty() {
                    self.buckets.remove(&s.expires_at);
                }
            }
        }
    }

    /// Sessions whose expiry time has passed, marked closing, in id order.
    pub fn expire(&mut self, now: i64) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some((&at, _)) = self.buckets.first_key_value() {
            if at > now {
                break;
            }
            let ids = self.buckets.remove(&at).expect("first key");
            out.extend(ids);
        }
        out.sort_unstable();
        for id in &out {
            if let Some(s) = self.sessions.get_mut(id) {
                s.closing = true;
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_matches_java_random() {
        // new java.util.Random(0x1234 ^ 0xB3415C00L).nextBytes(b) on a 16-byte array.
        let p = password(0x1234);
        let mut r = JavaRandom::new(0x1234 ^ SUPER_SECRET);
        let first = r.next_int();
        assert_eq!(p[0], first as u8);
        assert_eq!(p[1], (first >> 8) as u8);
        // Java: new Random(42).nextInt() == -1170105035
        assert_eq!(JavaRandom::new(42).next_int(), -1170105035);
    }

    #[test]
    fn expiry_and_touch() {
        let mut s = Sessions::new(2000, first_session_id(1, 1_700_000_000_000));
        let id = s.next_id();
        assert_eq!(id >> 56, 1);
        s.add(id, 4000, 0);
        assert!(s.expire(4000).is_empty());
        assert!(s.touch(id, 3000));
        assert!(s.expire(6000).is_empty());
        assert_eq!(s.expire(8000), vec![id]);
        assert!(!s.is_live(id));
        assert!(!s.touch(id, 8000));
    }
}
