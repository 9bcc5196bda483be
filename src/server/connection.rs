//! One client connection: a reader loop (frames in → engine events) and a writer task
//! (engine frames → socket). Also answers four-letter words.
//!
//! The reader stops reading while the connection has `max_outstanding` requests without a
//! reply, or while the server as a whole has `globalOutstandingLimit` and this connection
//! has one of them (see [`Outstanding`]): backpressure, never a dropped request. A client that does not read its replies is closed once more than
//! `max_queued_bytes` wait for it (the core says so through `ConnHandle::kill`, which
//! tears the connection down past a writer stuck on the socket) or once one write has
//! stalled for [`WRITE_STALL`]; either way the engine hears `Event::Closed`. A frame over the size limit or one that does not decode closes
//! this connection — logged with the peer and the reason — and nothing else.

use super::core_task::{ConnHandle, CoreMsg};
use super::ConnLimits;
use crate::admin;
use crate::engine::{ConnId, Event};
use crate::jute::records::ConnectRequest;
use crate::jute::Record;
use crate::proto::{frame, request};
use bytes::{Buf, Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// A connection must send its ConnectRequest (or a four-letter word) within this time, as
/// ZooKeeper's sessionlessCnxnTimeout.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a connection stays open after closeSession for the client to close it first.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// Longest a single write to a client may stall (the client reads nothing) before the
/// connection is closed.
const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// One connection's share of `globalOutstandingLimit`, as ZooKeeper throttles: a request
/// is read only while the server has fewer than the limit outstanding, except that a
/// connection with nothing outstanding may always send one (so no connection starves, as
/// in ZooKeeper's `shouldThrottle`). The limit is a semaphore shared by every connection;
/// this connection's permits are given back as the core produces its answers (as
/// ZooKeeper counts a request done once its response is queued, so a client that does
/// not read holds no more than it has in flight), and all at once when it closes.
pub struct Outstanding {
    global: Option<Arc<Semaphore>>,
    /// Requests read and not answered.
    inflight: AtomicUsize,
    /// Global permits this connection holds.
    held: AtomicUsize,
}

impl Outstanding {
    /// Waits until this connection may read another request.
    async fn admit(&self) -> bool {
        if let Some(g) = &self.global {
            if self.inflight.load(Ordering::Acquire) > 0 {
                match g.acquire().await {
                    Ok(p) => p.forget(),
                    Err(_) => return false,
                }
                self.held.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.inflight.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// An answer was produced.
    pub(super) fn answered(&self) {
        let _ = self
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if let Some(g) = &self.global {
            let took = self
                .held
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            if took.is_ok() {
                g.add_permits(1);
            }
        }
    }

    /// The connection is gone: what it held goes back.
    fn release_all(&self) {
        if let Some(g) = &self.global {
            let n = self.held.swap(0, Ordering::AcqRel);
            if n > 0 {
                g.add_permits(n);
            }
        }
    }
}

pub enum Outbound {
    /// A frame; `true` when it answers a request; its share of the unwritten-bytes counts.
    Frame(Bytes, bool, super::core_task::Accounted),
    /// Close after writing what came before; `true`: wait a moment for the client to close first.
    Close(&'static str, bool),
}

pub async fn serve(
    conn: ConnId,
    stream: TcpStream,
    peer: SocketAddr,
    core: mpsc::UnboundedSender<CoreMsg>,
    limits: ConnLimits,
) {
    let (mut rd, wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(4096);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, fill(&mut rd, &mut buf, 4)).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(_) => {
            tracing::info!(%peer, "closing connection: no handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    }
    if let Some(word) = admin::is_word(&buf[..4]) {
        four_letter(word, rd, wr, &core).await;
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(limits.max_outstanding));
    let outstanding = Arc::new(Outstanding {
        global: limits.global.clone(),
        inflight: AtomicUsize::new(0),
        held: AtomicUsize::new(0),
    });
    let kill = Arc::new(tokio::sync::Notify::new());
    let handle = ConnHandle {
        tx,
        queued: queued.clone(),
        max_queued: limits.max_queued_bytes,
        max_queued_total: limits.max_queued_total,
        total_queued: limits.total_queued.clone(),
        kill: kill.clone(),
        outstanding: outstanding.clone(),
    };
    let ip = peer.ip().to_string();
    if core.send(CoreMsg::Register { conn, ip, handle }).is_err() {
        return;
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let writer = tokio::spawn(write_loop(wr, rx, permits.clone(), stop_tx));
    let stuck = writer.abort_handle();
    let (max_queued, max_queued_total) = (limits.max_queued_bytes, limits.max_queued_total);
    // The kill comes first: once the core closes a slow reader it also drops the queue, so
    // a writer that had room left in the socket buffer may end at the same moment, and the
    // close must still be told as what it is.
    let reason = tokio::select! {
        biased;
        _ = kill.notified() => {
            stuck.abort();
            Some(format!(
                "client is not reading its replies ({} bytes queued; at most {} per \
                 connection, {} over all of them)",
                queued.load(Ordering::Relaxed),
                max_queued,
                max_queued_total
            ))
        }
        r = read_loop(conn, &mut rd, buf, &core, limits, (&permits, &outstanding)) => r,
        _ = stop_rx => None,
    };
    if let Some(reason) = reason {
        tracing::warn!(%peer, conn, "closing connection: {reason}");
    }
    let _ = core.send(CoreMsg::Event(Event::Closed { conn }));
    // What is left to write goes out, unless the client stopped reading it.
    if tokio::time::timeout(WRITE_STALL, writer).await.is_err() {
        stuck.abort();
    }
    outstanding.release_all();
}

/// Reads until `buf` holds at least `n` bytes; false on EOF or error.
async fn fill(rd: &mut OwnedReadHalf, buf: &mut BytesMut, n: usize) -> bool {
    while buf.len() < n {
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    true
}

/// Waits for the next whole frame. `Ok(None)` on a clean EOF; `Err` with the reason otherwise.
async fn next_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Option<Bytes>, String> {
    loop {
        match frame::check(buf, limit) {
            Err(e) => return Err(e.to_string()),
            Ok(Some(n)) => {
                buf.advance(4);
                return Ok(Some(buf.split_to(n).freeze()));
            }
            Ok(None) => {
                let had = buf.len();
                match rd.read_buf(buf).await {
                    Ok(0) if had == 0 => return Ok(None),
                    Ok(0) => {
                        return Err(format!(
                            "connection closed inside a frame ({had} bytes buffered)"
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("read error: {e}")),
                }
            }
        }
    }
}

/// The reader: handshake, then requests. Returns why it stopped, if abnormal.
async fn read_loop(
    conn: ConnId,
    rd: &mut OwnedReadHalf,
    mut buf: BytesMut,
    core: &mpsc::UnboundedSender<CoreMsg>,
    limits: ConnLimits,
    (permits, outstanding): (&Semaphore, &Outstanding),
) -> Option<String> {
    let first = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        next_frame(rd, &mut buf, limits.max_frame),
    )
    .await
    {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => return Some(e),
        Err(_) => return Some(format!("no ConnectRequest within {HANDSHAKE_TIMEOUT:?}")),
    };
    let len = first.len();
    let req = match ConnectRequest::from_bytes(first) {
        Ok(r) => r,
        Err(e) => return Some(format!("bad ConnectRequest ({len} bytes): {e}")),
    };
    if core
        .send(CoreMsg::Event(Event::Handshake { conn, req }))
        .is_err()
    {
        return None;
    }
    loop {
        let payload = match next_frame(rd, &mut buf, limits.max_frame).await {
            Ok(Some(p)) => p,
            Ok(None) => return None,
            Err(e) => return Some(e),
        };
        let body = payload.slice(8.min(payload.len())..);
        let (hdr, req) = match request::decode(payload) {
            Ok(x) => x,
            Err(e) => return Some(format!("malformed request: {e}")),
        };
        match permits.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => return None,
        }
        if !outstanding.admit().await {
            return None;
        }
        let ev = Event::Request {
            conn,
            xid: hdr.xid,
            req,
            body,
        };
        if core.send(CoreMsg::Event(ev)).is_err() {
            return None;
        }
    }
}

async fn write_loop(
    wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    permits: Arc<Semaphore>,
    stop: oneshot::Sender<()>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(mut out) = rx.recv().await {
        loop {
            match out {
                Outbound::Frame(f, completes, share) => {
                    drop(share);
                    if !written(tokio::time::timeout(WRITE_STALL, w.write_all(&f)).await) {
                        let _ = stop.send(());
                        return;
                    }
                    if completes {
                        permits.add_permits(1);
                    }
                }
                Outbound::Close(reason, linger) => {
                    tracing::debug!(reason, "closing connection");
                    let _ = w.flush().await;
                    if linger {
                        tokio::time::sleep(CLOSE_LINGER).await;
                    }
                    let _ = w.shutdown().await;
                    let _ = stop.send(());
                    return;
                }
            }
            match rx.try_recv() {
                Ok(next) => out = next,
                Err(_) => break,
            }
        }
        if !written(tokio::time::timeout(WRITE_STALL, w.flush()).await) {
            let _ = stop.send(());
            return;
        }
    }
}

/// Whether a write went out; a stall is logged (a failed write is a client gone).
fn written(r: Result<std::io::Result<()>, tokio::time::error::Elapsed>) -> bool {
    match r {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "write to the client failed");
            false
        }
        Err(_) => {
            tracing::warn!("closing connection: a write to the client stalled for {WRITE_STALL:?}");
            false
        }
    }
}

async fn four_letter(
    word: &'static str,
    rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    core: &mpsc::UnboundedSender<CoreMsg>,
) {
    let (tx, rx) = oneshot::channel();
    if core.send(CoreMsg::FourLetter { word, reply: tx }).is_err() {
        return;
    }
    if let Ok(text) = rx.await {
        let _ = wr.write_all(text.as_bytes()).await;
        let _ = wr.flush().await;
    }
    let _ = wr.shutdown().await;
    drain(rd).await;
}

/// Reads and discards what the client still sends (briefly): closing a socket with unread
/// input makes the kernel reset the connection, which can destroy the answer in flight.
async fn drain(mut rd: impl tokio::io::AsyncRead + Unpin) {
    let mut sink = [0u8; 256];
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        while let Ok(n) = rd.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
