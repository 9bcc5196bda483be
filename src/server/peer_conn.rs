//! The outgoing side of one peer connection (election or quorum port): the queue the
//! transport (`peers.rs`) pushes packets into, its byte budget ([`MAX_PEER_QUEUE`]), the
//! writer task that gathers what is queued into large writes, and a SNAP's state streamed
//! from a thread of its own. Owns no protocol: bytes in, bytes out, in order.

use crate::quorum::Sid;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::peer_stream::PeerWrite;

/// Bytes queued for one peer connection and not yet written; past it the peer is too far
/// behind (stopped, or its network is) and the connection is closed. A SNAP's state is not
/// counted: it is sent once, whatever its size.
pub(super) const MAX_PEER_QUEUE: usize = 64 << 20;

/// What a connection's writer is given.
pub(super) enum Outgoing {
    /// Bytes to write; counted against [`MAX_PEER_QUEUE`].
    Counted(Bytes),
    /// A SNAP's state, produced on another thread: written chunk by chunk until the
    /// producer is done, before anything queued after it. Not counted (it is sent once,
    /// whatever its size); the channel's bound holds the producer back instead.
    Stream(mpsc::Receiver<Bytes>),
}

/// Chunks of a SNAP's state in flight between its producer thread and the writer.
const SNAP_CHUNKS_IN_FLIGHT: usize = 4;
/// Bytes per chunk of a SNAP's state.
const SNAP_CHUNK: usize = 1 << 20;

pub(super) struct Conn {
    pub(super) tx: mpsc::UnboundedSender<Outgoing>,
    /// Counted bytes queued and not yet written.
    pub(super) queued: Arc<AtomicUsize>,
    /// Distinguishes a connection from its replacement, so a stale reader's end is ignored.
    pub(super) id: u64,
    /// Cleared when the transport lets go of the connection (closed, or replaced by a newer
    /// one to the same member): its reader then passes nothing more on, so a packet read
    /// late from an old connection (a REQUEST a learner sends again once it has synced
    /// anew) never reaches the node.
    pub(super) alive: Arc<AtomicBool>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Release);
    }
}

impl Conn {
    /// Queues bytes for the writer; false (nothing queued) when the budget is spent.
    pub(super) fn push(&self, b: Bytes) -> bool {
        let n = b.len();
        if self.queued.load(Ordering::Relaxed) + n > MAX_PEER_QUEUE {
            return false;
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        let _ = self.tx.send(Outgoing::Counted(b));
        true
    }

    /// Streams a SNAP's state: `view` is serialized on a thread of its own while the
    /// writer sends what it makes, so neither the member task nor the transport waits and
    /// at most [`SNAP_CHUNKS_IN_FLIGHT`] chunks of it are in memory.
    pub(super) fn stream_snap(&self, to: Sid, view: Box<crate::persist::snapshot::View>) {
        let (tx, rx) = mpsc::channel(SNAP_CHUNKS_IN_FLIGHT);
        let _ = self.tx.send(Outgoing::Stream(rx));
        let spawned = std::thread::Builder::new()
            .name("zabd-snap-send".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let mut bytes = 0usize;
                let whole = view.write_stream(SNAP_CHUNK, |c| {
                    bytes += c.len();
                    tx.blocking_send(c).is_ok()
                });
                tracing::info!(
                    to,
                    nodes = view.node_count(),
                    bytes,
                    ms = started.elapsed().as_millis() as u64,
                    complete = whole,
                    "SNAP state serialized and handed to the connection"
                );
            });
        if let Err(e) = spawned {
            // The receiver is dropped with the closure: the writer sees an empty stream and
            // the learner a truncated SNAP, which it refuses; it reconnects.
            tracing::error!(to, error = %e, "cannot start a thread to send a SNAP");
        }
    }
}

/// The most a writer gathers from its queue into one write.
const WRITE_BATCH: usize = 256 * 1024;

/// A connection's writer task: writes what is queued, in order, until the queue closes or
/// a write fails. Packets already queued behind the first go out in the same write (up to
/// [`WRITE_BATCH`]): a leader under load queues many PROPOSALs and COMMITs per pass, and one
/// write per packet cost a send and a wake-up on each side for every one of them.
pub(super) fn spawn_writer(
    mut wr: PeerWrite,
) -> (
    mpsc::UnboundedSender<Outgoing>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    let queued = Arc::new(AtomicUsize::new(0));
    let left = queued.clone();
    let writer = tokio::spawn(async move {
        let mut batch: Vec<u8> = Vec::new();
        let mut next = rx.recv().await;
        while let Some(out) = next.take() {
            match out {
                Outgoing::Counted(b) if rx.is_empty() => {
                    if wr.write_all(&b).await.is_err() {
                        return;
                    }
                    left.fetch_sub(b.len(), Ordering::Relaxed);
                }
                Outgoing::Counted(b) => {
                    batch.clear();
                    batch.extend_from_slice(&b);
                    while batch.len() < WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(Outgoing::Counted(b)) => batch.extend_from_slice(&b),
                            // A SNAP's stream goes after what was gathered.
                            Ok(stream) => {
                                next = Some(stream);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if wr.write_all(&batch).await.is_err() {
                        return;
                    }
                    left.fetch_sub(batch.len(), Ordering::Relaxed);
                    if batch.capacity() > 4 * WRITE_BATCH {
                        batch = Vec::new();
                    }
                    if next.is_some() {
                        continue;
                    }
                }
                Outgoing::Stream(mut chunks) => {
                    while let Some(b) = chunks.recv().await {
                        if wr.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // TLS keeps what it has not sent yet until a flush (plain TCP has nothing to
            // flush): once the queue is drained, push it out.
            if rx.is_empty() && wr.flush().await.is_err() {
                return;
            }
            next = rx.recv().await;
        }
    });
    (tx, queued, writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets queued faster than they are written go out gathered, yet in order, with a
    /// SNAP's stream between them kept in its place, and the queue's byte count back at 0.
    #[tokio::test]
    async fn queued_packets_are_written_gathered_in_order_around_a_snap_stream() {
        use tokio::io::AsyncReadExt;
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let (tx, queued, writer) = spawn_writer(Box::new(near));
        let mut want = Vec::new();
        let mut counted = |tx: &mpsc::UnboundedSender<Outgoing>, b: Vec<u8>| {
            queued.fetch_add(b.len(), Ordering::Relaxed);
            want.extend_from_slice(&b);
            tx.send(Outgoing::Counted(Bytes::from(b)))
                .expect("writer alive");
        };
        for i in 0..100u8 {
            counted(&tx, vec![i; 1 + i as usize]);
        }
        let (chunks, stream) = mpsc::channel(4);
        tx.send(Outgoing::Stream(stream)).expect("writer alive");
        for i in 100..200u8 {
            counted(&tx, vec![i; 3]);
        }
        let mut snap = Vec::new();
        for c in 0..3u8 {
            let b = vec![0xEE - c; 1000];
            snap.extend_from_slice(&b);
            chunks
                .send(Bytes::from(b))
                .await
                .expect("writer takes the stream");
        }
        drop(chunks);
        drop(tx);
        writer.await.expect("writer ends with its queue");
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.expect("read all");
        let first: usize = (0..100usize).map(|i| i + 1).sum();
        let mut expected = want[..first].to_vec();
        expected.extend_from_slice(&snap);
        expected.extend_from_slice(&want[first..]);
        assert_eq!(got, expected);
        assert_eq!(queued.load(Ordering::Relaxed), 0);
    }
}
