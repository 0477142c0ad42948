//! Serving HTTPS: accept, TLS handshake (rustls), HTTP/1.1 or HTTP/2 (hyper), the limits on
//! connections and requests, and graceful shutdown. `run` is the seam tests use: they bind
//! `127.0.0.1:0`, pass the listener in, and shorten the timeouts through `ServerLimits`.
//!
//! Whatever a client does or fails to do, what it holds is bounded (docs/security.md):
//! - connections: `connections_max` in all, `connections_per_address_max` per client address
//!   (further ones are closed at once, before the TLS handshake);
//! - the TLS handshake must finish within `tls_handshake`;
//! - the protocol is the one agreed by ALPN (`h2`, else HTTP/1.1), never sniffed from bytes the
//!   client may hold back;
//! - an HTTP/1.1 request head must arrive within `request_head` (hyper's header-read timer, which
//!   also runs while a kept-alive connection waits for its next request);
//! - a connection with no request in flight for `connection_idle` is closed gracefully, HTTP/1.1
//!   and HTTP/2 alike; HTTP/2 also has a stream cap and keep-alive pings;
//! - at most `requests_in_flight_max` requests are handled at once across the server; beyond
//!   that a request is answered 503 at once (tower's load shedding), not queued.
//!
//! The protocol work is hyper's, hyper-util's and tower's; this module only wires them and keeps
//! two counts: connections per address, and requests in flight per connection.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use crate::limits::ServerLimits;

/// Serves `app` over TLS on `listener` within `limits` until `shutdown` is cancelled, then asks
/// every open connection to close, gives them `limits.shutdown_grace` to finish, and returns.
pub async fn run(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
    limits: ServerLimits,
) -> io::Result<()> {
    debug_assert!(limits.connections_per_address_max >= 1 && limits.requests_in_flight_max >= 1);
    let acceptor = TlsAcceptor::from(tls);
    let protocols = Arc::new(Protocols::new(&limits));
    // One semaphore for the whole server, shared by every clone of the stack: requests beyond it
    // are shed with 503 rather than queued.
    let app = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(shed))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(limits.requests_in_flight_max))
        .service(app);
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    let per_address = PerAddress::new(limits.connections_per_address_max);
    // Requests in flight per client address, across all its connections.
    let requests_per_address = PerAddress::new(limits.requests_per_address_max);
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(address_slot) = per_address.admit(peer.ip()) else {
            // Closed before any TLS work: an address at its cap costs the node one accept.
            tracing::debug!(%peer, "too many connections from this address; closed");
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let requests = requests_per_address.clone();
        let protocols = protocols.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _held = (permit, address_slot);
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => return,
                handshake = tokio::time::timeout(limits.tls_handshake, acceptor.accept(tcp)) => handshake,
            };
            let tls_stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let builder = match tls_stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => &protocols.h2,
                _ => &protocols.h1,
            };
            let (in_flight, idle) = InFlight::new();
            // Every request carries the client's address, for per-address limits and the
            // summaries of anonymous refusals (`http::client_addr`).
            // No address holds more than its share of the server's request slots: beyond it,
            // 503 at once, before the router or a slot of the global limit is touched.
            let service = tower::service_fn(move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                let busy = in_flight.begin();
                let slot = requests.admit(peer.ip());
                let app = app.clone();
                async move {
                    let response = match slot {
                        Some(_held_until_answered) => app.oneshot(request).await,
                        None => Ok(crate::http::overloaded()),
                    };
                    drop(busy);
                    response
                }
            });
            let conn = builder.serve_connection(TokioIo::new(tls_stream), TowerToHyperService::new(service));
            // Served until it ends by itself, or has been idle too long, or the server stops:
            // then asked to close gracefully (an HTTP/1.1 response being sent is finished first;
            // HTTP/2 sends GOAWAY and lets open streams end) and dropped if it has not closed
            // within the grace period.
            tokio::pin!(conn);
            let why = tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = idle_for(idle, limits.connection_idle) => "idle",
                () = shutdown.cancelled() => "shutdown",
            };
            tracing::debug!(%peer, why, "closing connection");
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.shutdown_grace, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error while closing"),
                Err(_) => tracing::debug!(%peer, "connection did not close within the grace period; dropped"),
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait()).await.is_err() {
        tracing::warn!("connections still open after the grace period; closing them");
    }
    Ok(())
}

/// The hyper builders, one per protocol, with the limits set. The protocol comes from ALPN, so
/// hyper-util's auto builder never has to read the client's first bytes to guess it (a read that
/// no timer watches).
struct Protocols {
    h1: Builder<TokioExecutor>,
    h2: Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &ServerLimits) -> Protocols {
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.request_head).keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_streams_per_connection_max)
            .keep_alive_interval(limits.h2_keep_alive_interval)
            .keep_alive_timeout(limits.h2_keep_alive_timeout);
        Protocols { h1: builder.clone().http1_only(), h2: builder.http2_only() }
    }
}

/// Resolves once nothing has been in flight on the connection for `idle` (the count watched is
/// `InFlight`'s). A request that starts restarts the wait when it ends.
async fn idle_for(mut in_flight: watch::Receiver<usize>, idle: Duration) {
    loop {
        if in_flight.wait_for(|n| *n == 0).await.is_err() {
            // The connection's service is gone, so the connection is ending by itself.
            return std::future::pending().await;
        }
        match tokio::time::timeout(idle, in_flight.changed()).await {
            Err(_) => return,
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return std::future::pending().await,
        }
    }
}

/// Requests in flight on one connection, from the moment its service is called until its
/// response is ready. A response body still being sent is not counted; that is harmless, since
/// closing gracefully lets it finish.
#[derive(Clone)]
struct InFlight(Arc<watch::Sender<usize>>);

/// One request in flight; counted down when dropped, whether the request finished or was
/// cancelled (HTTP/2 stream reset).
struct Busy(Arc<watch::Sender<usize>>);

impl InFlight {
    fn new() -> (InFlight, watch::Receiver<usize>) {
        let (tx, rx) = watch::channel(0);
        (InFlight(Arc::new(tx)), rx)
    }

    fn begin(&self) -> Busy {
        self.0.send_modify(|n| *n += 1);
        Busy(self.0.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Connections open per client address. An address has an entry only while it holds a
/// connection, so the table never has more than `connections_max` entries.
#[derive(Clone)]
struct PerAddress {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

/// One connection counted against its address; given back when dropped.
struct AddressSlot {
    table: PerAddress,
    ip: IpAddr,
}

impl PerAddress {
    fn new(max: usize) -> PerAddress {
        PerAddress { open: Arc::new(Mutex::new(HashMap::new())), max }
    }

    /// A slot for one more connection from `ip`, or `None` when it holds `max` already. An
    /// IPv4 client seen through a dual-stack socket (`::ffff:a.b.c.d`) counts as its IPv4
    /// address. IPv6 addresses count one by one, not by /64 prefix: on a shelter's Wi-Fi the
    /// /64 is every phone at once, so a prefix cap would let one client lock out all the rest.
    fn admit(&self, ip: IpAddr) -> Option<AddressSlot> {
        let ip = ip.to_canonical();
        // The critical sections only count, so a poisoned lock still holds consistent counts.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let held = open.entry(ip).or_insert(0);
        if *held >= self.max {
            return None;
        }
        *held += 1;
        Some(AddressSlot { table: self.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = open.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The answer to a request the server had no room for (`requests_in_flight_max` in hand). The
/// stack below it is a router, which never fails, so load shedding is the only error here.
async fn shed(error: BoxError) -> Response {
    debug_assert!(error.is::<tower::load_shed::error::Overloaded>(), "{error}");
    tracing::debug!(%error, "request shed");
    crate::http::overloaded()
}

/// Resolves when SIGINT (Ctrl-C) or SIGTERM arrives, then cancels `token`.
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    // Both handlers are in place when this returns (not at the future's first poll): a signal
    // that comes while the server is still starting stops it too.
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
            _ = token.cancelled() => return,
        }
        tracing::info!("shutdown signal received");
        token.cancel();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_at_its_cap_is_refused_and_others_are_not() {
        let table = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = table.admit(a).unwrap();
        let _second = table.admit(a).unwrap();
        assert!(table.admit(a).is_none());
        // The same client through a dual-stack socket is the same address.
        assert!(table.admit("::ffff:192.0.2.1".parse().unwrap()).is_none());
        assert!(table.admit(b).is_some());
        drop(first);
        assert!(table.admit(a).is_some(), "a closed connection gives its slot back");
    }

    #[test]
    fn the_table_forgets_an_address_with_no_connection() {
        let table = PerAddress::new(1);
        let slot = table.admit("192.0.2.1".parse().unwrap()).unwrap();
        drop(slot);
        assert!(table.open.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_is_counted_from_the_end_of_the_last_request() {
        let (in_flight, rx) = InFlight::new();
        let idle = tokio::spawn(idle_for(rx, Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let busy = in_flight.begin();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!idle.is_finished(), "a request in flight is not idle, however long it takes");
        drop(busy);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!idle.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(idle.is_finished());
    }
}
