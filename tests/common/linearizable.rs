//! Checkers for the consistency test (`tests/jepsen.rs`), usable on any recorded history.
//!
//! **Registers** are checked for linearizability first by the witness ZooKeeper's versions
//! point to (every successful write names the version it made, so the order of writes is
//! known and only the timing has to be checked), then, if that finds none, by the
//! Wing–Gong search as Lowe improved it, with memoization of (operations linearized,
//! register state): a configuration reached once is never explored again. A violation is
//! only ever reported by the search. A register is a znode's (data,
//! version); operations are unconditional `setData`, compare-and-set (`setData` with an
//! expected version) and `sync`+`getData`. An operation whose outcome is unknown
//! (connection loss, timeout) may take effect at any point after it was invoked, or never.
//!
//! **Sessions**: plain reads are checked for the session guarantees only (monotonic reads
//! and read-your-writes, by the register's mzxid), see [`SessionFloor`].
//!
//! **Sets**: every acknowledged create must be there at the end ([`check_set`]).

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// setData(value, -1).
    Write(String),
    /// setData(value, expected version).
    Cas { expect: i32, value: String },
    /// sync, then getData.
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A write or CAS that took effect, with the version it produced.
    Written(i32),
    /// A read's (data, version).
    Read(String, i32),
    /// Known not to have taken effect (BadVersion).
    Failed,
    /// Unknown: it may or may not have taken effect.
    Unknown,
}

/// One operation: invoked at `call`, answered at `ret` (ns since the start; `None` when
/// the outcome is unknown).
#[derive(Debug, Clone)]
pub struct Op {
    pub process: usize,
    pub call: u64,
    pub ret: Option<u64>,
    pub kind: Call,
    pub out: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Reg {
    value: String,
    version: i32,
}

/// The register's next state if `op` can take effect now with its recorded outcome;
/// `None` if it cannot.
fn step(s: &Reg, op: &Op) -> Option<Reg> {
    let written = |value: &String| Reg {
        value: value.clone(),
        version: s.version + 1,
    };
    match (&op.kind, &op.out) {
        (Call::Write(v), Outcome::Written(ver)) if *ver == s.version + 1 => Some(written(v)),
        (Call::Write(v), Outcome::Unknown) => Some(written(v)),
        (Call::Cas { expect, value }, Outcome::Written(ver))
            if *expect == s.version && *ver == s.version + 1 =>
        {
            Some(written(value))
        }
        // An unknown CAS that would fail has no effect: the same as not linearizing it.
        (Call::Cas { expect, value }, Outcome::Unknown) if *expect == s.version => {
            Some(written(value))
        }
        (Call::Cas { expect, .. }, Outcome::Failed) if *expect != s.version => Some(s.clone()),
        (Call::Read, Outcome::Read(v, ver)) if *v == s.value && *ver == s.version => {
            Some(s.clone())
        }
        _ => None,
    }
}

/// Which operations are linearized, compactly: every answered operation before `frontier`
/// (in call order) is, and `extra` (sorted) names the others that are: answered ones past
/// the frontier and unknown ones anywhere. Both stay small, so a configuration costs a few
/// words however long the history is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Placed {
    frontier: usize,
    extra: Vec<u32>,
}

impl Placed {
    fn has(&self, ops: &[Op], i: usize) -> bool {
        (i < self.frontier && ops[i].ret.is_some()) || self.extra.binary_search(&(i as u32)).is_ok()
    }

    fn with(&self, ops: &[Op], i: usize) -> Placed {
        let mut p = self.clone();
        let at = p.extra.binary_search(&(i as u32)).unwrap_err();
        p.extra.insert(at, i as u32);
        p.advance(ops);
        p
    }

    fn with_nothing(mut self, ops: &[Op]) -> Placed {
        self.advance(ops);
        self
    }

    /// Moves the frontier past every answered operation placed (and unknown ones, which
    /// `extra` tracks wherever they are).
    fn advance(&mut self, ops: &[Op]) {
        let p = self;
        while p.frontier < ops.len() {
            let f = p.frontier;
            if ops[f].ret.is_none() {
                p.frontier += 1;
            } else if let Ok(k) = p.extra.binary_search(&(f as u32)) {
                p.extra.remove(k);
                p.frontier += 1;
            } else {
                break;
            }
        }
    }
}

/// Checks one register's history for linearizability, starting from (`init`, 0): first by
/// building the witness the versions point to ([`version_order`]), in O(n log n); when that
/// finds none, by the exhaustive search ([`search`]), which proves a violation or gives up
/// after `budget` configurations. Ok gives the configurations the search explored (0 when
/// the witness sufficed).
pub fn check_register(init: &str, mut ops: Vec<Op>, budget: usize) -> Result<usize, String> {
    // Reads that failed or were lost have no effect: they constrain nothing.
    ops.retain(|o| o.kind != Call::Read || matches!(o.out, Outcome::Read(..)));
    ops.sort_by_key(|o| o.call);
    if version_order(init, &ops) {
        return Ok(0);
    }
    search(init, ops, budget)
}

/// Tries the linearization that ZooKeeper's versions point to: every successful write
/// names the version it produced, so the writes' order is known; each read goes between
/// the write of its version and the next; an unknown write or CAS fills a version nobody
/// else produced (the one whose value a read saw, else the earliest invoked that fits), and
/// the other unknown ones never happened. The order is then laid out in time, each
/// operation at the earliest moment at or after its call and the operation before it
/// (reads of one version by earliest answer), and must stay within every answer; a
/// BadVersion CAS needs a moment in its interval when the version was not its expected
/// one. True only with such a witness; false says nothing (the search decides).
fn version_order(init: &str, ops: &[Op]) -> bool {
    use std::collections::BTreeMap;
    let mut writer: BTreeMap<i32, usize> = BTreeMap::new();
    let mut reads: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut unknown = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        match &o.out {
            Outcome::Written(v) => {
                if writer.insert(*v, i).is_some() {
                    return false;
                }
            }
            Outcome::Read(_, v) => reads.entry(*v).or_default().push(i),
            Outcome::Failed => failed.push(i),
            Outcome::Unknown => unknown.push(i),
        }
    }
    let value_of = |i: usize| match &ops[i].kind {
        Call::Write(v) | Call::Cas { value: v, .. } => Some(v.as_str()),
        Call::Read => None,
    };
    let top = writer
        .keys()
        .chain(reads.keys())
        .copied()
        .max()
        .unwrap_or(0);
    let mut used = vec![false; ops.len()];
    for v in 1..=top {
        if writer.contains_key(&v) {
            continue;
        }
        let seen = reads
            .get(&v)
            .and_then(|r| r.first())
            .and_then(|&r| match &ops[r].out {
                Outcome::Read(value, _) => Some(value.clone()),
                _ => None,
            });
        let fits = |i: &usize| {
            !used[*i]
                && match &ops[*i].kind {
                    Call::Cas { expect, .. } => *expect == v - 1,
                    _ => true,
                }
                && seen.as_deref().is_none_or(|s| value_of(*i) == Some(s))
        };
        let Some(&i) = unknown.iter().find(|i| fits(i)) else {
            return false;
        };
        used[i] = true;
        writer.insert(v, i);
    }
    // Lay the order out in time: writes at their versions, reads of each version after it.
    let mut at = 0u64;
    let mut point = vec![0u64; top as usize + 2];
    let mut value = init;
    for v in 0..=top {
        if v > 0 {
            let w = &ops[writer[&v]];
            if let Call::Cas { expect, .. } = &w.kind {
                if *expect != v - 1 {
                    return false;
                }
            }
            at = at.max(w.call);
            if w.ret.is_some_and(|r| at > r) {
                return false;
            }
            point[v as usize] = at;
            value = value_of(writer[&v]).unwrap_or("");
        }
        let mut rs = reads.get(&v).cloned().unwrap_or_default();
        rs.sort_by_key(|&r| ops[r].ret);
        for r in rs {
            let Outcome::Read(seen, _) = &ops[r].out else {
                return false;
            };
            at = at.max(ops[r].call);
            if seen != value || ops[r].ret.is_some_and(|ret| at > ret) {
                return false;
            }
        }
    }
    point[top as usize + 1] = u64::MAX;
    // A BadVersion CAS: some moment in [call, ret] outside [write(expect), write(expect+1)).
    failed.iter().all(|&i| {
        let (Call::Cas { expect, .. }, Some(ret)) = (&ops[i].kind, ops[i].ret) else {
            return false;
        };
        if *expect < 0 || *expect > top {
            return true;
        }
        let from = if *expect == 0 {
            0
        } else {
            point[*expect as usize]
        };
        let until = point[*expect as usize + 1];
        ops[i].call < from || ret >= until
    })
}

/// The exhaustive search for a linearization (Wing–Gong as Lowe improved it, memoized).
/// Err says why none exists, or that it was cut off after `budget` configurations.
fn search(init: &str, ops: Vec<Op>, budget: usize) -> Result<usize, String> {
    let n = ops.len();
    let unknown: Vec<usize> = (0..n).filter(|i| ops[*i].ret.is_none()).collect();
    let must: usize = n - unknown.len();
    let mut seen: HashSet<(Placed, Reg)> = HashSet::new();
    let start = Reg {
        value: init.to_string(),
        version: 0,
    };
    let first = Placed {
        frontier: 0,
        extra: Vec::new(),
    }
    .with_nothing(&ops);
    // Depth-first: (placed, state, how many answered ops are placed).
    let mut stack = vec![(first, start, 0usize)];
    let mut deepest = 0;
    while let Some((placed, state, done)) = stack.pop() {
        if done == must {
            return Ok(seen.len());
        }
        deepest = deepest.max(done);
        if seen.len() >= budget {
            return Err(format!(
                "inconclusive: {budget} configurations explored ({deepest} of {must} answered ops placed)"
            ));
        }
        if !seen.insert((placed.clone(), state.clone())) {
            continue;
        }
        // The earliest answer among the operations not yet placed: anything invoked after
        // it cannot come next. Past the frontier, calls only grow, so the scan stops once
        // a call is beyond the answer found so far.
        let mut bound = u64::MAX;
        let mut candidates: Vec<usize> = unknown
            .iter()
            .copied()
            .filter(|i| *i < placed.frontier && !placed.has(&ops, *i))
            .collect();
        for i in placed.frontier..n {
            if ops[i].call > bound {
                break;
            }
            if placed.has(&ops, i) {
                continue;
            }
            candidates.push(i);
            if let Some(r) = ops[i].ret {
                bound = bound.min(r);
            }
        }
        for i in candidates {
            if ops[i].call > bound {
                continue;
            }
            if let Some(next) = step(&state, &ops[i]) {
                let d = done + usize::from(ops[i].ret.is_some());
                stack.push((placed.with(&ops, i), next, d));
            }
        }
    }
    let first_stuck = ops.iter().filter(|o| o.ret.is_some()).nth(deepest);
    Err(format!(
        "not linearizable: at most {deepest} of {must} answered operations can be placed; \
         around {first_stuck:?}"
    ))
}

/// Session guarantees for one session and one register: every read (plain or after
/// sync) must show an mzxid at or above the highest this session has seen or written.
#[derive(Debug, Default, Clone)]
pub struct SessionFloor {
    floor: i64,
}

impl SessionFloor {
    /// This session's own write produced `mzxid`.
    pub fn wrote(&mut self, mzxid: i64) {
        self.floor = self.floor.max(mzxid);
    }

    /// A read returned `mzxid`: Err if it went back in time.
    pub fn read(&mut self, mzxid: i64) -> Result<(), String> {
        if mzxid < self.floor {
            return Err(format!(
                "read mzxid 0x{mzxid:x} after this session had seen 0x{:x}",
                self.floor
            ));
        }
        self.floor = mzxid;
        Ok(())
    }
}

/// Every acknowledged member of the set is present at the end.
pub fn check_set(acknowledged: &[String], present: &[String]) -> Result<(), String> {
    let have: HashSet<&String> = present.iter().collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|a| !have.contains(a)).collect();
    if lost.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} acknowledged creates lost: {lost:?}",
            lost.len()
        ))
    }
}
