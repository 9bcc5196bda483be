//! The staleness probe of `zabd bench --staleness`: how long after a write is acknowledged
//! on one member a reader polling another member first sees it.
//!
//! A writer session on the first server of the connect string sets a probe node to 1, 2,
//! 3, … one at a time and notes when each is acknowledged; a reader session on the second
//! server reads the node in a loop and notes when each value is first seen. A value's
//! staleness is (first seen − acknowledged), 0 when the reader saw it before the writer's
//! reply came back. The reader's poll round trip bounds the resolution.

use super::{histogram, open, Latency, Options};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zookeeper_client::Client;

/// What the probe measured: staleness percentiles (µs), writes seen, and writes the
/// reader never saw before the end.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Staleness {
    pub latency_us: Latency,
    pub writes: u64,
    pub unseen: u64,
}

/// The first two servers of the connect string: (writer's, reader's).
fn pair(servers: &str) -> Result<(String, String), String> {
    let v: Vec<&str> = servers.split(',').map(str::trim).collect();
    match v.as_slice() {
        [a, b, ..] => Ok((a.to_string(), b.to_string())),
        _ => Err("--staleness needs at least two servers in --servers".into()),
    }
}

async fn session(addr: &str, o: &Options) -> Result<Client, String> {
    Client::connector()
        .with_session_timeout(o.session_timeout)
        .connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// Connects the probe's two sessions and creates its node.
pub async fn prepare(o: &Options, node: &str) -> Result<(Client, Client), String> {
    let (wa, ra) = pair(&o.servers)?;
    let (w, r) = (session(&wa, o).await?, session(&ra, o).await?);
    let _ = w.create(node, &0u64.to_be_bytes(), &open()).await;
    Ok((w, r))
}

/// Runs until `stop`, bounded by `o.max_ops` writes.
pub async fn run(
    w: Client,
    r: Client,
    node: String,
    o: Options,
    stop: Arc<AtomicBool>,
) -> Staleness {
    let start = Instant::now();
    // The writer's final count once it has stopped (u64::MAX until then): the reader goes
    // on until it has seen that value, for a few seconds at most.
    let last = Arc::new(AtomicU64::new(u64::MAX));
    let reader_last = last.clone();
    let reader_node = node.clone();
    let reader = tokio::spawn(async move {
        let mut seen: Vec<Duration> = Vec::new();
        let mut deadline = None;
        loop {
            let want = reader_last.load(Ordering::Relaxed);
            if want != u64::MAX {
                let d = *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(5));
                if seen.len() as u64 >= want || Instant::now() > d {
                    break;
                }
            }
            let Ok((data, _)) = r.get_data(&reader_node).await else {
                continue;
            };
            let v = data
                .get(..8)
                .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
            let now = start.elapsed();
            while (seen.len() as u64) < v {
                seen.push(now);
            }
        }
        seen
    });
    let mut acked: HashMap<u64, Duration> = HashMap::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && n < o.max_ops {
        if w.set_data(&node, &(n + 1).to_be_bytes(), None)
            .await
            .is_ok()
        {
            n += 1;
            acked.insert(n, start.elapsed());
        }
    }
    last.store(n, Ordering::Relaxed);
    let seen = reader.await.unwrap_or_default();
    let mut h = histogram();
    let mut unseen = 0;
    for (v, at) in acked {
        match seen.get(v as usize - 1) {
            Some(s) => {
                let _ = h.record((s.saturating_sub(at).as_micros() as u64).max(1));
            }
            None => unseen += 1,
        }
    }
    Staleness {
        latency_us: Latency::of(&h),
        writes: n,
        unseen,
    }
}
