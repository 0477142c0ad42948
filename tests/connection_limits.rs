//! Connection limits (security finding 2): idle TLS connections, a request head trickled a byte
//! at a time, and one address opening too many connections cannot keep the node from serving
//! anyone else, and are dropped at their timeouts.
//!
//! Runs the real `server::run` in process on 127.0.0.1 over real TLS (a node certificate issued
//! by a central CA, as enrolment does), with the production limits except the timeouts, which
//! are shortened to seconds. Clients bind other loopback addresses (127.0.0.x) to stand for
//! other phones on the Wi-Fi.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kaigo_field::limits::{CONNECTIONS_PER_ADDRESS_MAX, ServerLimits};
use kaigo_field::{server, tls};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// The shortened timeouts: an HTTP/1.1 head (and so an idle HTTP/1.1 connection) gets `HEAD`,
/// any connection with nothing in flight `IDLE`.
const HEAD: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(4);
/// What a connection asked to close gets to finish before it is dropped.
const GRACE: Duration = Duration::from_secs(1);
/// How late a close may come on a busy machine, and how early: the server starts a timer a
/// little before the client sees what it notes as "ready" (the end of the handshake, or of a
/// response still being delivered).
const LATE: Duration = Duration::from_millis(1500);
const EARLY: Duration = Duration::from_millis(250);

/// Addresses that each open the per-address maximum of idle HTTP/1.1 connections: 7 × 16 = 112.
const IDLE_H1_ADDRESSES: u8 = 7;
/// Idle connections that agreed on h2 by ALPN and then sent nothing at all.
const IDLE_H2: usize = 8;
const IDLE_H2_SILENT: &str = "idle HTTP/2 (nothing sent)";
const HTTP2_AFTER_REQUEST: &str = "HTTP/2 after a request";

fn short_limits() -> ServerLimits {
    ServerLimits {
        tls_handshake: Duration::from_secs(2),
        request_head: HEAD,
        connection_idle: IDLE,
        shutdown_grace: GRACE,
        ..ServerLimits::default()
    }
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A node's TLS identity issued from a fresh central CA; the server config and the CA's path.
fn identity(dir: &Path) -> (Arc<rustls::ServerConfig>, std::path::PathBuf) {
    let ca = dir.join("ca.pem");
    let now = chrono::Utc::now();
    tls::generate_ca(&ca, &dir.join("ca.key"), now).unwrap();
    let (cert, key) = tls::issue_node_cert(&ca, &dir.join("ca.key"), "n", now).unwrap();
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    std::fs::write(dir.join("tls/cert.pem"), cert).unwrap();
    std::fs::write(dir.join("tls/key.pem"), key).unwrap();
    let config = tls::server_config(tls::ensure_server_identity(&dir.join("tls"), "n", now).unwrap()).unwrap();
    (config, ca)
}

struct Node {
    addr: SocketAddr,
    shutdown: CancellationToken,
    served: JoinHandle<std::io::Result<()>>,
    ca: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl Node {
    async fn start(app: Router, limits: ServerLimits) -> Node {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tmp = tempfile::tempdir().unwrap();
        let (config, ca) = identity(tmp.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(server::run(listener, config, app, shutdown.clone(), limits));
        Node { addr, shutdown, served, ca, _tmp: tmp }
    }

    fn connector(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&self.ca).unwrap();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }

    /// A TCP connection from `from`, then the TLS handshake.
    async fn tls(&self, from: IpAddr, connector: &TlsConnector) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
        tls_to(self.addr, from, connector).await
    }

    /// An HTTPS client like a phone's browser at `from` (HTTP/1.1), trusting the central CA.
    fn https(&self, from: IpAddr) -> reqwest::Client {
        let pem = std::fs::read(&self.ca).unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .local_address(from)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.served).await.expect("the server stops").unwrap().unwrap();
    }
}

async fn tls_to(
    node: SocketAddr,
    from: IpAddr,
    connector: &TlsConnector,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(node).await?;
    connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await
}

/// Answers with the client address the server noted on the request (`ConnectInfo`).
fn echo_app() -> Router {
    Router::new()
        .route("/", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { format!("ok {}", peer.ip()) }))
}

/// An open connection being watched: when it was ready, and a task that ends when the server
/// closes it (end of stream or reset), with the time it saw that.
struct Held {
    what: &'static str,
    ready: Instant,
    closed: JoinHandle<Instant>,
}

/// Reads (and ignores) whatever the server sends until the connection ends.
fn watch_raw(what: &'static str, ready: Instant, mut stream: TlsStream<tokio::net::TcpStream>) -> Held {
    let closed = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        // Bounded: the server sends at most a session ticket or two and a short error; a
        // thousand reads is far more than that.
        for _ in 0..1000 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        Instant::now()
    });
    Held { what, ready, closed }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_connections_are_dropped_and_do_not_block_others() {
    let node = Node::start(echo_app(), short_limits()).await;
    let plain = node.connector(&[]);
    let h2_alpn = node.connector(&[b"h2"]);
    let k = CONNECTIONS_PER_ADDRESS_MAX;

    // 112 idle TLS connections: 16 (the per-address maximum) from each of 7 addresses; after the
    // handshake they send nothing. Opened all at once.
    let mut opening = tokio::task::JoinSet::new();
    for a in 0..IDLE_H1_ADDRESSES {
        for _ in 0..k {
            let (node_addr, from, connector) = (node.addr, loopback(10 + a), plain.clone());
            opening.spawn(async move {
                let stream = tls_to(node_addr, from, &connector).await;
                (stream.expect("an idle connection within the cap is served"), Instant::now())
            });
        }
    }
    let mut held = Vec::new();
    while let Some(opened) = opening.join_next().await {
        let (stream, ready) = opened.unwrap();
        held.push(watch_raw("idle HTTP/1.1 (nothing sent)", ready, stream));
    }
    // 8 that agreed on HTTP/2 and send nothing, not even the connection preface.
    for _ in 0..IDLE_H2 {
        let stream = node.tls(loopback(17), &h2_alpn).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        held.push(watch_raw(IDLE_H2_SILENT, Instant::now(), stream));
    }
    // A request head trickled a byte every 250 ms (slowloris); the writer stops when the
    // connection is gone, or after 40 bytes (10 s).
    let trickle = node.tls(loopback(19), &plain).await.unwrap();
    let trickle_ready = Instant::now();
    let (mut trickle_read, mut trickle_write) = tokio::io::split(trickle);
    let trickler = tokio::spawn(async move {
        trickle_write.write_all(b"GET / HTTP/1.1\r\nHost: n\r\nX-Slow: ").await.unwrap();
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if trickle_write.write_all(b"a").await.is_err() || trickle_write.flush().await.is_err() {
                return;
            }
        }
    });
    let trickle_closed = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        for _ in 0..1000 {
            match trickle_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        Instant::now()
    });
    held.push(Held { what: "HTTP/1.1 head trickle", ready: trickle_ready, closed: trickle_closed });

    // Two real clients that made a request and then keep their connection open, idle: HTTP/1.1
    // keep-alive and HTTP/2, both over hyper's client.
    let (mut h1_sender, h1_conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(node.tls(loopback(18), &plain).await.unwrap()))
            .await
            .unwrap();
    let h1_closed = tokio::spawn(async move {
        let _ = h1_conn.await;
        Instant::now()
    });
    let h1_ready = get_ok(&mut h1_sender, "127.0.0.18").await;
    held.push(Held { what: "HTTP/1.1 keep-alive after a request", ready: h1_ready, closed: h1_closed });
    let (mut h2_sender, h2_conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(node.tls(loopback(18), &h2_alpn).await.unwrap()),
    )
    .await
    .unwrap();
    let h2_closed = tokio::spawn(async move {
        let ended = h2_conn.await;
        assert!(ended.is_ok(), "the idle HTTP/2 connection is closed gracefully (GOAWAY): {ended:?}");
        Instant::now()
    });
    let h2_ready = get_ok_h2(&mut h2_sender, "127.0.0.18").await;
    held.push(Held { what: HTTP2_AFTER_REQUEST, ready: h2_ready, closed: h2_closed });
    assert!(held.len() >= 100 + 3, "{} connections held", held.len());

    // While all of them are held, another phone gets its page, and the server saw its address.
    let page = node.https(loopback(2)).get(node.url("/")).send().await.expect("the node answers");
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), "ok 127.0.0.2");

    // The per-address cap: 127.0.0.10 holds 16 already, so a 17th from it is closed before the
    // TLS handshake, at once; another address still connects.
    let refused_at = Instant::now();
    let refused = node.tls(loopback(10), &plain).await;
    assert!(refused.is_err(), "connection {} from one address was accepted", k + 1);
    assert!(refused_at.elapsed() < Duration::from_secs(1), "the refusal took {:?}", refused_at.elapsed());
    let other = node.tls(loopback(20), &plain).await.expect("another address is not affected");

    let still_open = held.iter().filter(|h| !h.closed.is_finished()).count();
    assert_eq!(still_open, held.len(), "a connection closed before its timeout while the checks ran");

    // Every held connection is closed at its timeout: HTTP/1.1 ones when their head is due,
    // HTTP/2 ones when idle. The wait itself is bounded.
    let deadline = tokio::time::Instant::now() + IDLE + GRACE + LATE;
    for h in held {
        let closed = tokio::time::timeout_at(deadline, h.closed)
            .await
            .unwrap_or_else(|_| panic!("{}: still open {:?} after it was ready", h.what, h.ready.elapsed()))
            .unwrap();
        let after = closed - h.ready;
        let due = match h.what {
            // hyper finishes an HTTP/2 handshake before it closes gracefully; a client that
            // never sends the preface is dropped when the grace period runs out.
            IDLE_H2_SILENT => IDLE + GRACE,
            HTTP2_AFTER_REQUEST => IDLE,
            _ => HEAD,
        };
        assert!(after + EARLY >= due && after <= due + LATE, "{}: closed after {after:?}, due at {due:?}", h.what);
    }
    trickler.await.unwrap();
    drop((h1_sender, h2_sender, other));

    // The address at its cap got its slots back when its connections were closed.
    node.tls(loopback(10), &plain).await.expect("a capped address connects again once its connections are gone");
    node.stop().await;
}

/// GET / over an HTTP/1.1 connection; checks the answer; returns when it was read.
async fn get_ok(sender: &mut hyper::client::conn::http1::SendRequest<axum::body::Body>, ip: &str) -> Instant {
    let request = hyper::Request::get("/").header("host", "127.0.0.1").body(axum::body::Body::empty()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1024).await.unwrap();
    assert_eq!(body, format!("ok {ip}").as_bytes());
    Instant::now()
}

async fn get_ok_h2(sender: &mut hyper::client::conn::http2::SendRequest<axum::body::Body>, ip: &str) -> Instant {
    let request = hyper::Request::get("https://127.0.0.1/").body(axum::body::Body::empty()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1024).await.unwrap();
    assert_eq!(body, format!("ok {ip}").as_bytes());
    Instant::now()
}

/// `/hold` requests, each keeping its request slot until the test releases it.
struct Hold {
    entered: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Semaphore>,
}

impl Hold {
    /// Until `n` holding requests have reached the handler (a few seconds at most).
    async fn wait_entered(&self, n: usize) {
        for _ in 0..100 {
            if self.entered.load(Ordering::SeqCst) == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(self.entered.load(Ordering::SeqCst), n, "the holding requests reached the handler");
    }

    fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

/// `/` answers "ok"; `/hold` answers once released (see `Hold`).
fn holding_app() -> (Router, Hold) {
    let hold = Hold { entered: Arc::new(AtomicUsize::new(0)), release: Arc::new(tokio::sync::Semaphore::new(0)) };
    let app = Router::new().route("/", get(|| async { "ok" })).route(
        "/hold",
        get({
            let (entered, release) = (hold.entered.clone(), hold.release.clone());
            move || async move {
                entered.fetch_add(1, Ordering::SeqCst);
                let _ = release.acquire().await.unwrap();
                "held"
            }
        }),
    );
    (app, hold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_server_bound_are_answered_503_at_once() {
    // Two slots; `/hold` keeps its slot until the test lets it go.
    let (app, hold) = holding_app();
    let node = Node::start(app, ServerLimits { requests_in_flight_max: 2, ..short_limits() }).await;
    let http = node.https(loopback(1));
    let holds: Vec<_> = (0..2).map(|_| tokio::spawn(http.get(node.url("/hold")).send())).collect();
    hold.wait_entered(2).await;

    let asked = Instant::now();
    let shed = http.get(node.url("/")).send().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert!(asked.elapsed() < Duration::from_secs(1), "shedding took {:?}", asked.elapsed());
    assert_eq!(shed.headers()["retry-after"], "2");
    assert_eq!(shed.headers()["x-content-type-options"], "nosniff");
    assert!(shed.text().await.unwrap().contains("混み合っています"));

    hold.release(2);
    for hold in holds {
        assert_eq!(hold.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(http.get(node.url("/")).send().await.unwrap().status(), 200, "slots come back");
    node.stop().await;
}

/// Found by the outside probe after the limits landed: slow request bodies from two addresses
/// (16 connections × 16 streams each) held all 512 request slots, and every other client got
/// 503. One address now holds at most its share of the slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_no_more_than_its_share_of_the_request_slots() {
    let (app, hold) = holding_app();
    let node = Node::start(app, ServerLimits { requests_per_address_max: 2, ..short_limits() }).await;
    let greedy = node.https(loopback(1));
    let holds: Vec<_> = (0..2).map(|_| tokio::spawn(greedy.get(node.url("/hold")).send())).collect();
    hold.wait_entered(2).await;
    let asked = Instant::now();
    assert_eq!(greedy.get(node.url("/")).send().await.unwrap().status(), 503, "the greedy address is at its share");
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(node.https(loopback(2)).get(node.url("/")).send().await.unwrap().status(), 200, "others are served");
    hold.release(2);
    for hold in holds {
        assert_eq!(hold.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(greedy.get(node.url("/")).send().await.unwrap().status(), 200, "slots come back");
    node.stop().await;
}

/// The same finding: a body trickled a byte at a time held its slot without end. Bodies are read
/// in full within `REQUEST_BODY_SECONDS_MAX`, or answered 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_a_byte_at_a_time_is_answered_408_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = Router::new()
        .route("/in", axum::routing::post(|body: String| async move { format!("got {}", body.len()) }))
        .layer(axum::middleware::from_fn(kaigo_field::http::read_body_in_time));
    let node = Node::start(app, short_limits()).await;
    let mut tls = node.tls(loopback(3), &node.connector(&[b"http/1.1"])).await.unwrap();
    let head = "POST /in HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\nx";
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let sent = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(tls);
    // One more byte every second, far slower than any phone, while waiting for the answer.
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(b"x").await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
    });
    let limit = Duration::from_secs(kaigo_field::limits::REQUEST_BODY_SECONDS_MAX);
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(limit + Duration::from_secs(5), reader.read(&mut answer))
        .await
        .expect("an answer while the body is still trickling")
        .unwrap();
    trickle.abort();
    let text = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(sent.elapsed() >= limit - Duration::from_millis(500), "not before the deadline: {:?}", sent.elapsed());
    node.stop().await;
}
