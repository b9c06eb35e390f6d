//! The controller's HTTP endpoints: `/metrics`, `/healthz`, `/readyz` and
//! `POST /hooks/git`. A small blocking server on its own thread; a hook
//! that passes verification sends a trigger to the controller's loop.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tiny_http::{Header, Method, Request, Response, Server};
use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::webhook::{self, Seen};
use super::Trigger;
use crate::source::git::Secret;

/// What the endpoints read.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    /// Set once the first reconcile attempt has finished (or this replica
    /// is a standby).
    pub ready: AtomicBool,
    /// Unix seconds of the loop's last turn: `/healthz` fails when the
    /// loop is stuck.
    pub heartbeat: AtomicU64,
    /// Longest acceptable silence of the loop, in seconds.
    pub stall_after: u64,
}

impl Shared {
    pub fn beat(&self) {
        self.heartbeat.store(unix_now(), Ordering::Relaxed);
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Largest webhook body read (GitHub's limit is 25 MiB; a push payload is
/// far smaller, and the body is only hashed).
const MAX_BODY: u64 = 1 << 20;

/// Starts serving on `addr`; returns the bound address (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
    secret: Option<Secret>,
    triggers: mpsc::UnboundedSender<Trigger>,
) -> std::io::Result<SocketAddr> {
    let server = Server::http(addr).map_err(std::io::Error::other)?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    std::thread::Builder::new()
        .name("meshplan-http".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                handle(req, &shared, secret.as_ref(), &triggers, &seen);
            }
        })?;
    Ok(bound)
}

fn handle(
    mut req: Request,
    shared: &Shared,
    secret: Option<&Secret>,
    triggers: &mpsc::UnboundedSender<Trigger>,
    seen: &Mutex<Seen>,
) {
    let path = req.url().split('?').next().unwrap_or("").to_owned();
    let (status, body, content_type): (u16, String, &str) = match (req.method(), path.as_str()) {
        (Method::Get, "/metrics") => (
            200,
            shared.metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (Method::Get, "/healthz") => {
            let silent = unix_now().saturating_sub(shared.heartbeat.load(Ordering::Relaxed));
            if silent <= shared.stall_after {
                (200, "ok\n".into(), "text/plain")
            } else {
                (
                    500,
                    format!("the reconcile loop has been silent for {silent}s\n"),
                    "text/plain",
                )
            }
        }
        (Method::Get, "/readyz") => {
            if shared.ready.load(Ordering::Relaxed) {
                (200, "ok\n".into(), "text/plain")
            } else {
                (
                    503,
                    "the first reconcile has not finished\n".into(),
                    "text/plain",
                )
            }
        }
        (Method::Post, "/hooks/git") => hook(&mut req, secret, triggers, seen),
        (_, "/metrics" | "/healthz" | "/readyz" | "/hooks/git") => {
            (405, "method not allowed\n".into(), "text/plain")
        }
        _ => (404, "not found\n".into(), "text/plain"),
    };
    let mut resp = Response::from_string(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes("Content-Type", content_type) {
        resp = resp.with_header(h);
    }
    let _ = req.respond(resp);
}

fn hook(
    req: &mut Request,
    secret: Option<&Secret>,
    triggers: &mpsc::UnboundedSender<Trigger>,
    seen: &Mutex<Seen>,
) -> (u16, String, &'static str) {
    let Some(secret) = secret else {
        return (
            404,
            "webhooks are off: start meshplan run with --webhook-secret-file\n".into(),
            "text/plain",
        );
    };
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_owned()))
        .collect();
    let mut body = Vec::new();
    if req
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .is_err()
        || body.len() as u64 > MAX_BODY
    {
        return (413, "body too large or unreadable\n".into(), "text/plain");
    }
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let verdict = webhook::verify(
        &lookup,
        &body,
        secret.expose().as_bytes(),
        SystemTime::now(),
        &mut seen.lock().unwrap_or_else(|p| p.into_inner()),
    );
    match verdict {
        Ok(()) => {
            let _ = triggers.send(Trigger::Webhook);
            (202, "fetch triggered\n".into(), "text/plain")
        }
        Err(r) => (r.status, format!("{}\n", r.message), "text/plain"),
    }
}
