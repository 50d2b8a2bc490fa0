//! Prometheus metrics: the `metrics` facade rendered by metrics-exporter-prometheus, served at
//! `GET /metrics` by a small HTTP/1 responder of the daemon's own (so that the listener can be
//! moved on reload and stopped on shutdown).
//!
//! Names: the adapters' (`mta_sts_policy_fetch_total{result}`, `mta_sts_enforcement_total`,
//! `mta_sts_cache_size`, `mta_sts_negative_cache_entries`, see mta-sts-net's `export_metrics`) and the daemon's
//! (`mta_sts_daemon_requests_total{reply}`, `mta_sts_daemon_connections`,
//! `mta_sts_daemon_connections_evicted_total`).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::timeout;

/// Longest request head read from a scraper.
const MAX_HEAD: usize = 8 * 1024;
/// Time a scraper gets to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapers served at once.
const MAX_SCRAPERS: usize = 16;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use (the `metrics` facade takes
/// one recorder per process; until then every metric is a no-op).
pub(crate) fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        metrics::describe_counter!(
            "mta_sts_daemon_requests_total",
            "Socketmap requests answered, by reply (ok, notfound, temp, perm)"
        );
        metrics::describe_gauge!(
            "mta_sts_daemon_connections",
            "Socketmap connections being served"
        );
        metrics::describe_counter!(
            "mta_sts_daemon_connections_evicted_total",
            "Idle socketmap connections closed to make room for a new one at max_connections"
        );
        metrics::describe_counter!(
            "mta_sts_policy_fetch_total",
            "Policy lookups by result (success, failure, cached)"
        );
        metrics::describe_gauge!("mta_sts_cache_size", "Entries in the policy cache");
        metrics::describe_gauge!(
            "mta_sts_negative_cache_entries",
            "Negative answers (no _mta-sts record) remembered until their negative TTL"
        );
        // Shown from the start (at 0), so that an alert or a scrape needs no first connection
        // or eviction.
        metrics::gauge!("mta_sts_daemon_connections").set(0.0);
        metrics::counter!("mta_sts_daemon_connections_evicted_total").absolute(0);
        handle
    })
}

/// The metrics listener.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `host:port` and serves `/metrics`.
    pub(crate) async fn start(host: &str, port: u16) -> io::Result<Self> {
        let handle = handle();
        let listener = TcpListener::bind((host, port)).await?;
        let addr = listener.local_addr()?;
        let (stop, mut stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(MAX_SCRAPERS));
        let task = tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    _ = stop_rx.changed() => return,
                };
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop_rx.changed() => return,
                };
                match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(async move {
                            let _ = scrape(stream, handle).await;
                            drop(permit);
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ok(Self { stop, task, addr })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening.
    pub(crate) async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Answers one HTTP request: `GET /metrics` (or `HEAD`) gets the metrics, anything else an error.
async fn scrape(mut stream: tokio::net::TcpStream, handle: &PrometheusHandle) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let complete = timeout(READ_TIMEOUT, async {
        loop {
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return true;
            }
            if head.len() >= MAX_HEAD {
                return false;
            }
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&chunk[..n.min(MAX_HEAD - head.len())]),
            }
        }
    })
    .await
    .unwrap_or(false);
    if !complete {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            true,
        )
        .await;
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => {
            handle.run_upkeep();
            let body = handle.render();
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                method == b"GET",
            )
            .await
        }
        (b"GET" | b"HEAD", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"see /metrics\n",
                true,
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                b"GET /metrics\n",
                true,
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    timeout(READ_TIMEOUT, stream.write_all(&out))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let _ = stream.shutdown().await;
    Ok(())
}
