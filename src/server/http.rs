//! The HTTP side of the operator's surface: ZooKeeper's AdminServer (`admin.*`: the
//! `/commands` list and `/commands/<name>` JSON) and the Prometheus endpoint
//! (`metricsProvider.*`: `/metrics`), on hyper over the server's own runtime.
//!
//! Owns: the listeners and HTTP connections only. Each answer is asked of the task that
//! owns the engine (`CoreMsg::Ask`), with a deadline; nothing here reads server state.
//! Bounds: at most [`MAX_CONNECTIONS`] HTTP connections at once, headers within
//! [`HEADER_TIMEOUT`], each connection closed after `admin.idleTimeout`.

use super::core_task::{CoreMsg, Question};
use crate::admin::commands;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

pub const MAX_CONNECTIONS: usize = 64;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer from the engine's owner may take.
const ASK_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
enum Site {
    Admin,
    Metrics,
}

/// Starts the AdminServer and the metrics endpoint that the settings ask for. A port the
/// AdminServer cannot take is a warning (as on a ZooKeeper quorum peer: coordination
/// matters more than the admin page); a metrics endpoint asked for and not served is an
/// error naming the address, as ZooKeeper's Prometheus provider fails the start.
pub async fn start(
    s: &crate::config::Settings,
    core: &mpsc::UnboundedSender<CoreMsg>,
) -> std::io::Result<()> {
    if s.admin.enable {
        let addr = super::client_addr(&s.admin.address, s.admin.port);
        match super::bind("the AdminServer", &addr).await {
            Ok(l) => {
                println!("zabd: admin server on {}", l.local_addr()?);
                let idle = Duration::from_millis(s.admin.idle_timeout_ms.max(1000));
                let base = s.admin.command_url.trim_end_matches('/').to_string();
                tokio::spawn(serve(l, Site::Admin, Arc::new(base), idle, core.clone()));
            }
            Err(e) => tracing::warn!(
                "{e}; serving without the AdminServer (admin.enableServer=false turns it off)"
            ),
        }
    }
    if s.metrics.enable {
        let addr = super::client_addr(&s.metrics.host, s.metrics.port);
        let l = super::bind("Prometheus metrics", &addr).await?;
        println!("zabd: metrics on {}", l.local_addr()?);
        let idle = Duration::from_secs(30);
        tokio::spawn(serve(
            l,
            Site::Metrics,
            Arc::new(String::new()),
            idle,
            core.clone(),
        ));
    }
    Ok(())
}

async fn serve(
    listener: TcpListener,
    site: Site,
    base: Arc<String>,
    idle: Duration,
    core: mpsc::UnboundedSender<CoreMsg>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed on an HTTP port");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many HTTP connections ({MAX_CONNECTIONS}); closing");
            continue;
        };
        let (core, base) = (core.clone(), base.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (core, base) = (core.clone(), base.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(req, site, &base, &core).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(idle, conn).await;
            drop(slot);
        });
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    site: Site,
    base: &str,
    core: &mpsc::UnboundedSender<CoreMsg>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let params = query(req.uri().query().unwrap_or(""));
    match site {
        Site::Metrics if path.is_empty() || path == "/metrics" => {
            match ask(core, Question::Metrics).await {
                Some(text) => reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text,
                ),
                None => unavailable(),
            }
        }
        Site::Admin if path == base => reply(StatusCode::OK, "text/html", listing(base)),
        Site::Admin => {
            let name = path.strip_prefix(base).and_then(|r| r.strip_prefix('/'));
            match name.and_then(commands::primary) {
                Some(name) => match ask(core, Question::Command { name, params }).await {
                    Some(json) => reply(StatusCode::OK, "application/json", json),
                    None => unavailable(),
                },
                None => not_found(&path),
            }
        }
        Site::Metrics => not_found(&path),
    }
}

async fn ask(core: &mpsc::UnboundedSender<CoreMsg>, question: Question) -> Option<String> {
    let (reply, answer) = oneshot::channel();
    core.send(CoreMsg::Ask { question, reply }).ok()?;
    tokio::time::timeout(ASK_DEADLINE, answer).await.ok()?.ok()
}

fn reply(status: StatusCode, kind: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", kind)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"error": format!("Unknown command: {path}")}).to_string();
    reply(StatusCode::NOT_FOUND, "application/json", body)
}

fn unavailable() -> Response<Full<Bytes>> {
    let body = serde_json::json!({"error": "the server did not answer in time"}).to_string();
    reply(StatusCode::SERVICE_UNAVAILABLE, "application/json", body)
}

/// `/commands`: a link per command, as ZooKeeper's page lists them.
fn listing(base: &str) -> String {
    commands::COMMANDS
        .iter()
        .map(|(name, _)| format!("<a href=\"{base}/{name}\">{name}</a>\n<br/>\n"))
        .collect()
}

fn query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
