//! One client connection: a reader loop (frames in → engine events) and a writer task
//! (engine frames → socket). Also answers four-letter words. The socket is first opened as
//! its port's transport says (`tls::open`: plain, TLS, or either by the first byte), within
//! the handshake deadline; a TLS client certificate's identities go to the engine with the
//! connection. A `sasl` request's token is evaluated here by the connection's SASL exchange
//! (`sasl::SaslConn`) before it goes to the engine.
//!
//! The reader hands the core a request only when the connection has room (see
//! [`Throttle`]): fewer than `max_outstanding` requests without a reply written; its share
//! of `globalOutstandingLimit` (see [`Outstanding`]); and, by bytes, no more than a few MiB
//! of replies waiting, with what the requests in flight may add still within half of
//! `max_queued_bytes_per_connection`. Backpressure, never a dropped request: a client that
//! reads slowly is slowed. A client that does not read its replies at all is closed, once
//! more than `max_queued_bytes` wait for it (the core says so through `ConnHandle::kill`,
//! which tears the connection down past a writer stuck on the socket) or once one write has
//! stalled for [`WRITE_STALL`]; one line names the peer, and the engine hears
//! `Event::Closed`. A frame over the size limit or one that does not decode closes this
//! connection — logged with the peer and the reason — and nothing else.

use super::core_task::{ConnHandle, CoreMsg};
use super::tls::{ClientRead, ClientWrite, Transport};
use super::ConnLimits;
use crate::admin;
use crate::engine::{ConnId, Event};
use crate::jute::records::ConnectRequest;
use crate::jute::Record;
use crate::proto::{frame, request, response};
use bytes::{Buf, Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
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

/// One connection's requests in flight (read and not answered), and its share of
/// `globalOutstandingLimit`, as ZooKeeper throttles: a request is read only while the
/// server has fewer than the limit outstanding, except that a connection with nothing
/// outstanding may always send one (so no connection starves, as in ZooKeeper's
/// `shouldThrottle`). The limit is a semaphore shared by every connection; this
/// connection's permits are given back as the core produces its answers (as ZooKeeper
/// counts a request done once its response is queued, so a client that does not read holds
/// no more than it has in flight), and all at once when it closes.
pub struct Outstanding {
    global: Option<Arc<Semaphore>>,
    /// Requests read and not answered.
    inflight: AtomicUsize,
    /// Global permits this connection holds.
    held: AtomicUsize,
    /// The size of this connection's large replies: the largest recent one, decaying by a
    /// sixteenth with each smaller reply. What a request in flight may cost when answered.
    reply_size: AtomicUsize,
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

    /// An answer of `bytes` was produced.
    pub(super) fn answered(&self, bytes: usize) {
        let _ = self
            .reply_size
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some(bytes.max(s - s / 16))
            });
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
    Frame(response::Frame, bool, super::core_task::Accounted),
    /// Close after writing what came before; `true`: wait a moment for the client to close first.
    Close(&'static str, bool),
}

pub async fn serve(
    conn: ConnId,
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    core: mpsc::UnboundedSender<CoreMsg>,
    limits: ConnLimits,
) {
    let opened = match tokio::time::timeout(HANDSHAKE_TIMEOUT, super::tls::open(stream, &transport))
        .await
    {
        Ok(Ok(o)) => o,
        Ok(Err(reason)) => {
            super::counters::COUNTERS.unsuccessful_handshake();
            tracing::warn!(%peer, "closing connection: {reason}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "closing connection: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let (mut rd, wr, ids) = (opened.rd, opened.wr, opened.ids);
    let mut buf = BytesMut::with_capacity(4096);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, fill(&mut rd, &mut buf, 4)).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(_) => {
            super::counters::COUNTERS.sessionless_expired();
            tracing::info!(%peer, "closing connection: no handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    }
    if let Some(word) = admin::is_word(&buf[..4]) {
        // `stmk` carries its mask: 8 more bytes.
        let mut arg = None;
        if word == "stmk" {
            let got = tokio::time::timeout(HANDSHAKE_TIMEOUT, fill(&mut rd, &mut buf, 12)).await;
            if !matches!(got, Ok(true)) {
                return;
            }
            arg = Some(i64::from_be_bytes(buf[4..12].try_into().expect("8 bytes")));
        }
        four_letter(word, arg, rd, wr, &core).await;
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let throttle = Arc::new(Throttle {
        permits: Semaphore::new(limits.max_outstanding),
        outstanding: Arc::new(Outstanding {
            global: limits.global.clone(),
            inflight: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            reply_size: AtomicUsize::new(0),
        }),
        queued: queued.clone(),
        room: tokio::sync::Notify::new(),
        pause: read_pause(limits.max_queued_bytes),
        owed_max: limits.max_queued_bytes / 2,
    });
    let kill = Arc::new(tokio::sync::Notify::new());
    let handle = ConnHandle {
        tx,
        queued: queued.clone(),
        max_queued: limits.max_queued_bytes,
        max_queued_total: limits.max_queued_total,
        total_queued: limits.total_queued.clone(),
        kill: kill.clone(),
        outstanding: throttle.outstanding.clone(),
        peer: peer.to_string(),
    };
    let ip = peer.ip().to_string();
    if core
        .send(CoreMsg::Register {
            conn,
            ip,
            ids,
            handle,
        })
        .is_err()
    {
        return;
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let writer = tokio::spawn(write_loop(wr, rx, throttle.clone(), stop_tx));
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
        r = read_loop(conn, &mut rd, buf, &core, limits, &throttle) => r,
        r = stop_rx => r.ok().flatten(),
    };
    if let Some(reason) = reason {
        tracing::warn!(%peer, conn, "closing connection: {reason}");
    }
    let _ = core.send(CoreMsg::Event(Event::Closed { conn }));
    // What is left to write goes out, unless the client stopped reading it.
    if tokio::time::timeout(WRITE_STALL, writer).await.is_err() {
        stuck.abort();
    }
    throttle.outstanding.release_all();
}

/// Unwritten reply bytes past which the reader stops taking requests from the client:
/// 4 MiB, or half the per-connection bound when that is smaller.
fn read_pause(max_queued: usize) -> usize {
    (4 << 20).min(max_queued / 2)
}

/// What the reader waits for before it hands the core another request: the client's
/// unwritten replies below [`read_pause`], and what it may yet be owed (those, plus the
/// requests in flight at its recent reply size) within half of
/// `max_queued_bytes_per_connection`, so that a client that reads slowly is slowed and
/// not closed, however far the core lags behind the reader, and one that does not read
/// stops being read; then one of its `max_outstanding` permits (given back as each reply is
/// written) and its share of `globalOutstandingLimit`.
struct Throttle {
    permits: Semaphore,
    outstanding: Arc<Outstanding>,
    /// Reply bytes queued for the writer (kept by the core's `Accounted` shares).
    queued: Arc<AtomicUsize>,
    /// Signalled by the writer after each frame it writes.
    room: tokio::sync::Notify,
    pause: usize,
    owed_max: usize,
}

impl Throttle {
    /// Waits until another request may go to the core; false once the server is stopping.
    async fn admit(&self) -> bool {
        while !self.has_room() {
            self.room.notified().await;
        }
        match self.permits.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        self.outstanding.admit().await
    }

    fn has_room(&self) -> bool {
        let queued = self.queued.load(Ordering::Acquire);
        let o = &self.outstanding;
        let owed = (o.inflight.load(Ordering::Acquire))
            .saturating_mul(o.reply_size.load(Ordering::Acquire));
        queued <= self.pause && queued.saturating_add(owed) <= self.owed_max
    }

    /// A frame was written to the socket; `completes` if it answered a request.
    fn written(&self, completes: bool) {
        if completes {
            self.permits.add_permits(1);
        }
        self.room.notify_one();
    }
}

/// Reads until `buf` holds at least `n` bytes; false on EOF or error.
async fn fill(rd: &mut ClientRead, buf: &mut BytesMut, n: usize) -> bool {
    while buf.len() < n {
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => super::counters::COUNTERS.bytes_received(n),
        }
    }
    true
}

/// Waits for the next whole frame. `Ok(None)` on a clean EOF; `Err` with the reason otherwise.
async fn next_frame(
    rd: &mut ClientRead,
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
                    Ok(n) => super::counters::COUNTERS.bytes_received(n),
                    Err(e) => return Err(format!("read error: {e}")),
                }
            }
        }
    }
}

/// The reader: handshake, then requests. Returns why it stopped, if abnormal.
async fn read_loop(
    conn: ConnId,
    rd: &mut ClientRead,
    mut buf: BytesMut,
    core: &mpsc::UnboundedSender<CoreMsg>,
    limits: ConnLimits,
    throttle: &Throttle,
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
    let mut sasl = limits.sasl.clone().map(super::sasl::SaslConn::new);
    loop {
        let payload = match next_frame(rd, &mut buf, limits.max_frame).await {
            Ok(Some(p)) => p,
            Ok(None) => return None,
            Err(e) => return Some(e),
        };
        let body = payload.slice(8.min(payload.len())..);
        let (hdr, mut req) = match request::decode(payload) {
            Ok(x) => x,
            Err(e) => return Some(format!("malformed request: {e}")),
        };
        if let (request::Request::Sasl(token), Some(exchange)) = (&mut req, sasl.as_mut()) {
            let t = std::mem::replace(token, request::Sasl::Token(Bytes::new()));
            *token = exchange.evaluate(t);
        }
        if !throttle.admit().await {
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
    wr: ClientWrite,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    throttle: Arc<Throttle>,
    stop: oneshot::Sender<Option<String>>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(mut out) = rx.recv().await {
        loop {
            match out {
                Outbound::Frame(f, completes, share) => {
                    drop(share);
                    let all = async {
                        for part in f.parts() {
                            w.write_all(part).await?;
                        }
                        Ok(())
                    };
                    if let Err(why) = written(tokio::time::timeout(WRITE_STALL, all).await) {
                        let _ = stop.send(why);
                        return;
                    }
                    throttle.written(completes);
                }
                Outbound::Close(reason, linger) => {
                    tracing::debug!(reason, "closing connection");
                    let _ = w.flush().await;
                    if linger {
                        tokio::time::sleep(CLOSE_LINGER).await;
                    }
                    let _ = w.shutdown().await;
                    let _ = stop.send(None);
                    return;
                }
            }
            match rx.try_recv() {
                Ok(next) => out = next,
                Err(_) => break,
            }
        }
        if let Err(why) = written(tokio::time::timeout(WRITE_STALL, w.flush()).await) {
            let _ = stop.send(why);
            return;
        }
    }
}

/// Whether a write went out; if not, why the connection ends: a stall is worth a log line
/// (the serving task's, which names the peer), a failed write is a client gone.
fn written(
    r: Result<std::io::Result<()>, tokio::time::error::Elapsed>,
) -> Result<(), Option<String>> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "write to the client failed");
            Err(None)
        }
        Err(_) => Err(Some(format!(
            "client is not reading its replies (a write stalled for {WRITE_STALL:?})"
        ))),
    }
}

async fn four_letter(
    word: &'static str,
    arg: Option<i64>,
    rd: ClientRead,
    mut wr: ClientWrite,
    core: &mpsc::UnboundedSender<CoreMsg>,
) {
    let (tx, rx) = oneshot::channel();
    let question = super::core_task::Question::Word { word, arg };
    if core
        .send(CoreMsg::Ask {
            question,
            reply: tx,
        })
        .is_err()
    {
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
