//! A graceful stop on SIGTERM or SIGINT: stop accepting clients, let the writes already
//! under way finish (their replies go out), sync the log, say so in one log line, and
//! return so that the process exits 0 — all within [`DRAIN_BOUND`] + [`FLUSH_BOUND`].
//!
//! Owns: the signal wait and the deadlines. The task that owns the engine (the core task
//! of a standalone server, the member task) does the draining itself on
//! [`CoreMsg::Drain`]: it stops taking new requests and handshakes, and answers once
//! `Engine::writes_in_flight()` is zero, with a receiver that fires when the log writer
//! has synced everything appended before. Sessions are not closed: they live on for their
//! timeout, as after a ZooKeeper restart, and their clients reconnect here or elsewhere.
//!
//! A leader that stops closes its peer connections as the process ends, so its followers
//! see the connection drop and elect at once rather than waiting out a sync limit.

use super::core_task::CoreMsg;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Longest wait for the writes under way (a follower whose leader is gone may never hear).
pub const DRAIN_BOUND: Duration = Duration::from_secs(5);
/// Longest wait for the log's final sync.
pub const FLUSH_BOUND: Duration = Duration::from_secs(5);

/// What the engine's owner answers to a drain.
pub struct Drained {
    /// Writes that were under way when the drain began and finished since.
    pub finished: usize,
    /// Fires once the log writer has synced everything appended before the drain ended.
    pub flushed: std::sync::mpsc::Receiver<()>,
}

/// The draining state the engine's owner keeps.
pub struct Draining {
    pub reply: oneshot::Sender<Drained>,
    pub in_flight_at_start: usize,
}

impl Draining {
    /// The answer, once no write is in flight: asks the log writer for a final sync.
    pub fn finish(self, log: &std::sync::mpsc::Sender<super::disk::LogCmd>) {
        let (done, flushed) = std::sync::mpsc::channel();
        let _ = log.send(super::disk::LogCmd::Flush { done });
        let _ = self.reply.send(Drained {
            finished: self.in_flight_at_start,
            flushed,
        });
    }
}

/// Installs the SIGTERM/SIGINT handlers now (before the server announces itself, so no
/// signal slips through to the default action) and returns the wait for either.
pub fn signals() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::warn!(
                "cannot install the SIGTERM/SIGINT handlers; they stop the process at once"
            );
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}

/// Drains the engine's owner after `signal`, within the bounds, and logs the one line.
pub async fn drain(signal: &str, core_tx: &mpsc::UnboundedSender<CoreMsg>) {
    let started = Instant::now();
    tracing::info!("{signal} received: no new clients; finishing the writes under way");
    let (reply, answer) = oneshot::channel();
    let _ = core_tx.send(CoreMsg::Drain { reply });
    let drained = tokio::time::timeout(DRAIN_BOUND, answer).await;
    let (finished, synced) = match drained {
        Ok(Ok(d)) => {
            let synced =
                tokio::task::spawn_blocking(move || d.flushed.recv_timeout(FLUSH_BOUND).is_ok())
                    .await
                    .unwrap_or(false);
            (Some(d.finished), synced)
        }
        _ => (None, false),
    };
    let ms = started.elapsed().as_millis() as u64;
    match (finished, synced) {
        (Some(n), true) => tracing::info!(
            writes_finished = n,
            ms,
            "zabd stopped on {signal}: writes finished, log synced; sessions live on for their timeout"
        ),
        (Some(n), false) => tracing::warn!(
            writes_finished = n,
            ms,
            "zabd stopped on {signal}: writes finished, but the log's final sync did not answer in time"
        ),
        (None, _) => tracing::warn!(
            ms,
            "zabd stopped on {signal}: writes still under way after {}s are left to the ensemble (their clients see a connection loss)",
            DRAIN_BOUND.as_secs()
        ),
    }
}
