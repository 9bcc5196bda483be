//! `zabd bench`: a load generator for any ZooKeeper-compatible server or ensemble.
//!
//! Owns: client sessions (the `zookeeper-client` crate), the op mix, latency histograms and
//! the report. It is a client, so it does network I/O, but it never touches the server's
//! own state or files; nothing in the server depends on it.
//!
//! N sessions spread over the connect string, K requests in flight per session (K tasks
//! sharing the session, so requests are pipelined on its connection), for a warm-up and
//! then a measured period, bounded by time and by a total operation count. Every measured
//! request's latency goes into an HDR histogram (microseconds, 3 significant digits). A
//! progress line goes to stderr every second; the report goes to stdout and, as JSON, to a
//! file. The watch fan-out mode instead times one setData until W watching sessions have
//! all seen its event.

mod mix;
mod staleness;

pub use mix::{Mix, Op};
pub use staleness::Staleness;

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zookeeper_client::{Acls, Client, CreateMode};

#[derive(Debug, Clone)]
pub struct Options {
    pub servers: String,
    pub sessions: usize,
    pub inflight: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Upper bound on measured operations, whatever the speed.
    pub max_ops: u64,
    pub mix: Mix,
    pub value_size: usize,
    /// Existing nodes that reads and setData pick from.
    pub keys: usize,
    /// Watch fan-out: watching sessions (0: the ordinary load).
    pub watchers: usize,
    pub session_timeout: Duration,
    pub progress: bool,
    /// Also measure staleness between the first two servers (see `staleness.rs`).
    pub staleness: bool,
    /// Session i connects to server i mod n of `servers` only.
    pub round_robin: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub servers: String,
    pub mix: String,
    pub sessions: usize,
    pub inflight: usize,
    pub value_size: usize,
    pub seconds: f64,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub latency_us: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness: Option<Staleness>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.latency_us;
        write!(
            f,
            "{}: {} ops in {:.1} s = {:.0} ops/s, {} errors; latency us p50 {} p99 {} p99.9 {} max {} ({} sessions x {} in flight, {} B values)",
            self.mix, self.ops, self.seconds, self.ops_per_sec, self.errors, l.p50, l.p99, l.p999, l.max,
            self.sessions, self.inflight, self.value_size
        )?;
        if let Some(s) = &self.staleness {
            let l = &s.latency_us;
            write!(
                f,
                "\nstaleness (acknowledged on the first server -> seen on the second): {} writes, us p50 {} p99 {} max {}, {} never seen",
                s.writes, l.p50, l.p99, l.max, s.unseen
            )?;
        }
        Ok(())
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn open() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

/// The root of this run's nodes (unique per process, so runs do not collide).
fn root() -> String {
    format!("/zabd-bench-{:x}", std::process::id())
}

async fn connect(o: &Options) -> Result<Client, String> {
    connect_to(o, &o.servers).await
}

async fn connect_to(o: &Options, servers: &str) -> Result<Client, String> {
    Client::connector()
        .with_session_timeout(o.session_timeout)
        .connect(servers)
        .await
        .map_err(|e| format!("cannot connect to {servers}: {e}"))
}

/// Session `i`'s connect string: one server of the list in turn with `round_robin`, else
/// the whole list.
fn servers_for(o: &Options, i: usize) -> String {
    let all: Vec<&str> = o.servers.split(',').collect();
    if o.round_robin && !all.is_empty() {
        all[i % all.len()].to_string()
    } else {
        o.servers.clone()
    }
}

/// Creates the run's root and `keys` nodes of `value_size` bytes.
async fn populate(c: &Client, o: &Options) -> Result<(), String> {
    let root = root();
    let value = vec![b'x'; o.value_size];
    let _ = c.create(&root, b"", &open()).await;
    for dir in ["k", "n", "e"] {
        let _ = c.create(&format!("{root}/{dir}"), b"", &open()).await;
    }
    let mut pending = Vec::new();
    for k in 0..o.keys {
        let (c, path, v) = (c.clone(), format!("{root}/k/{k}"), value.clone());
        pending.push(tokio::spawn(
            async move { c.create(&path, &v, &open()).await },
        ));
        if pending.len() >= 256 {
            for p in pending.drain(..) {
                let _ = p.await;
            }
        }
    }
    for p in pending {
        let _ = p.await;
    }
    Ok(())
}

/// Runs the load described by `o` and reports the measured period.
pub async fn run(o: &Options) -> Result<Report, String> {
    if o.watchers > 0 {
        return fan_out(o).await;
    }
    let first = connect_to(o, &servers_for(o, 0)).await?;
    populate(&first, o).await?;
    let mut clients = vec![first];
    while clients.len() < o.sessions {
        clients.push(connect_to(o, &servers_for(o, clients.len())).await?);
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(histogram()));
    let mut tasks = Vec::new();
    for (ci, c) in clients.iter().enumerate() {
        for k in 0..o.inflight {
            let w = Worker {
                c: c.clone(),
                id: (ci * o.inflight + k) as u64,
                o: o.clone(),
                measuring: measuring.clone(),
                stop: stop.clone(),
                done: done.clone(),
                errors: errors.clone(),
            };
            let hist = hist.clone();
            tasks.push(tokio::spawn(async move {
                let h = w.run().await;
                hist.lock()
                    .expect("histogram lock")
                    .add(h)
                    .expect("same bounds");
            }));
        }
    }
    tokio::time::sleep(o.warmup).await;
    let probe = if o.staleness {
        let node = format!("{}-staleness", root());
        let (w, r) = staleness::prepare(o, &node).await?;
        Some(tokio::spawn(staleness::run(
            w,
            r,
            node,
            o.clone(),
            stop.clone(),
        )))
    } else {
        None
    };
    measuring.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let end = start + o.duration;
    let mut last = (start, 0u64);
    while Instant::now() < end && done.load(Ordering::Relaxed) < o.max_ops {
        tokio::time::sleep(Duration::from_millis(100).min(end - Instant::now())).await;
        if o.progress && last.0.elapsed() >= Duration::from_secs(1) {
            let n = done.load(Ordering::Relaxed);
            let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
            eprintln!(
                "  {:>5.1} s  {n} ops  {rate:.0} ops/s  {} errors",
                start.elapsed().as_secs_f64(),
                errors.load(Ordering::Relaxed)
            );
            last = (Instant::now(), n);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let staleness = match probe {
        Some(p) => p.await.ok(),
        None => None,
    };
    let ops = done.load(Ordering::Relaxed);
    let h = hist.lock().expect("histogram lock");
    Ok(Report {
        servers: o.servers.clone(),
        mix: o.mix.to_string(),
        sessions: o.sessions,
        inflight: o.inflight,
        value_size: o.value_size,
        seconds,
        ops,
        errors: errors.load(Ordering::Relaxed),
        ops_per_sec: ops as f64 / seconds,
        latency_us: Latency::of(&h),
        staleness,
    })
}

struct Worker {
    c: Client,
    id: u64,
    o: Options,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
}

impl Worker {
    async fn run(self) -> Histogram<u64> {
        let mut h = histogram();
        let mut rng = mix::Rng::new(self.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let value = vec![b'v'; self.o.value_size];
        let root = root();
        let mut seq = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let op = self.o.mix.pick(&mut rng);
            let key = format!("{root}/k/{}", rng.below(self.o.keys.max(1) as u64));
            seq += 1;
            let fresh = format!("{root}/n/{:x}-{seq:x}", self.id);
            let t = Instant::now();
            let ok = self.one(op, &key, &fresh, &value).await;
            let us = t.elapsed().as_micros() as u64;
            if self.measuring.load(Ordering::Relaxed) && !self.stop.load(Ordering::Relaxed) {
                if ok {
                    let _ = h.record(us.max(1));
                    self.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        h
    }

    async fn one(&self, op: Op, key: &str, fresh: &str, value: &[u8]) -> bool {
        let c = &self.c;
        match op {
            Op::Create => c.create(fresh, value, &open()).await.is_ok(),
            Op::SetData => c.set_data(key, value, None).await.is_ok(),
            Op::GetData => c.get_data(key).await.is_ok(),
            Op::Exists => c.check_stat(key).await.is_ok(),
            Op::GetChildren => c.list_children(&format!("{}/e", root())).await.is_ok(),
            Op::Multi => {
                let mut m = c.new_multi_writer();
                let a = m.add_create(fresh, value, &open());
                let b = m.add_set_data(key, value, None);
                a.is_ok() && b.is_ok() && m.commit().await.is_ok()
            }
            Op::EphemeralChurn => {
                let path = fresh.replacen("/n/", "/e/", 1);
                let eph = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
                c.create(&path, b"", &eph).await.is_ok() && c.delete(&path, None).await.is_ok()
            }
        }
    }
}

/// Watch fan-out: W sessions watch one node; each round one setData wakes them all; the
/// figure per round is the time from sending setData until the last watcher has its event.
async fn fan_out(o: &Options) -> Result<Report, String> {
    let setter = connect(o).await?;
    let node = format!("{}-fanout", root());
    let _ = setter.create(&node, b"", &open()).await;
    let mut watchers = Vec::new();
    for _ in 0..o.watchers {
        watchers.push(connect(o).await?);
    }
    let mut h = histogram();
    let start = Instant::now();
    let end = start + o.warmup + o.duration;
    let mut rounds = 0u64;
    let mut errors = 0u64;
    while Instant::now() < end && rounds < o.max_ops {
        let mut pending = Vec::new();
        for w in &watchers {
            let w = w.clone();
            let node = node.clone();
            pending.push(tokio::spawn(async move {
                match w.get_and_watch_data(&node).await {
                    Ok((_, _, watch)) => Some(watch),
                    Err(_) => None,
                }
            }));
        }
        let mut watches = Vec::new();
        for p in pending {
            if let Ok(Some(w)) = p.await {
                watches.push(w);
            }
        }
        let t = Instant::now();
        if setter.set_data(&node, b"x", None).await.is_err() {
            errors += 1;
            continue;
        }
        let waits: Vec<_> = watches
            .into_iter()
            .map(|w| tokio::spawn(async move { w.changed().await }))
            .collect();
        for w in waits {
            let _ = w.await;
        }
        let us = t.elapsed().as_micros() as u64;
        if start.elapsed() >= o.warmup {
            let _ = h.record(us.max(1));
            rounds += 1;
        }
        if o.progress {
            eprintln!("  round {rounds}: {} watchers woken in {us} us", o.watchers);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Report {
        servers: o.servers.clone(),
        mix: format!("watch-fanout-{}", o.watchers),
        sessions: o.watchers + 1,
        inflight: 1,
        value_size: 1,
        seconds,
        ops: rounds,
        errors,
        ops_per_sec: rounds as f64 / seconds,
        latency_us: Latency::of(&h),
        staleness: None,
    })
}
