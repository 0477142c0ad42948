//! Every limit the node and the central enforce, in one place, with the unit last.
//!
//! A limit that lives here can be reviewed and reasoned about as a whole; a magic number in a
//! module cannot. Relations between limits are asserted at compile time at the bottom.

/// Records encrypted together in one snapshot chunk. Bigger chunks compress better; smaller ones
/// bound the memory a node needs to open one chunk.
pub const SNAPSHOT_CHUNK_RECORDS_MAX: usize = 2048;
/// The signed manifest is small JSON; anything larger is not a snapshot of ours.
pub const SNAPSHOT_MANIFEST_BYTES_MAX: usize = 64 * 1024;
/// One encrypted chunk, compressed, can never be larger than this.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The largest region a snapshot may hold (DESIGN.md §11: up to 1,000,000 people).
pub const SNAPSHOT_RECORDS_MAX: u64 = 2_000_000;
/// Municipalities in one snapshot (a whole prefecture has at most a few hundred).
pub const SNAPSHOT_MUNICIPALITIES_MAX: usize = 400;

/// One CSV field: long free text (care plan) fits, a runaway quote does not.
pub const CSV_FIELD_BYTES_MAX: usize = 16 * 1024;
/// Validation problems printed in full before the rest are only counted.
pub const CSV_ERRORS_SHOWN_MAX: usize = 200;
/// Bytes sniffed to detect UTF-8 versus Shift_JIS.
pub const CSV_SNIFF_BYTES: usize = 64 * 1024;

/// Persons the generator makes in one run.
pub const SYNTH_PERSONS_MAX: u64 = 5_000_000;

/// An HTTP request body; the status page takes none, later APIs take small JSON.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Seconds a connection may take to finish its TLS handshake before it is dropped. A phone on a
/// crowded shelter Wi-Fi needs a few round trips; ten seconds is far beyond that.
pub const TLS_HANDSHAKE_SECONDS_MAX: u64 = 10;
/// Seconds a connection gets to finish what it is doing once it is asked to close (server
/// shutdown, or idle): a response being sent completes; then the connection is dropped anyway.
pub const SHUTDOWN_GRACE_SECONDS_MAX: u64 = 10;
/// Connections served at once; more wait in the kernel's accept queue. Each holds a task, TLS
/// buffers and a file descriptor, so this bounds the node's memory for connections.
pub const CONNECTIONS_MAX: usize = 1024;
/// Connections one client address may hold at once; further ones from it are closed before the
/// TLS handshake. A browser opens at most 6 HTTP/1.1 connections to a host (1 with HTTP/2), so
/// this leaves room for a phone with a few tabs and the reconnections of a flaky Wi-Fi, or a few
/// devices behind one NAT. Each phone on the shelter's Wi-Fi has its own address, so one
/// misbehaving client (or attacker) holds at most this many; it takes
/// `CONNECTIONS_MAX / CONNECTIONS_PER_ADDRESS_MAX` (64) addresses to fill the server.
pub const CONNECTIONS_PER_ADDRESS_MAX: usize = 16;
/// Seconds an HTTP/1.1 request's head (request line and headers) may take to arrive, counted
/// from when the connection starts waiting for it: after the TLS handshake, or after the previous
/// response on a kept-alive connection. A head is a few hundred bytes; a client trickling it a
/// byte at a time (slowloris) is cut off. hyper's `header_read_timeout`, so it also ends an idle
/// HTTP/1.1 connection this long after its last response.
pub const REQUEST_HEAD_SECONDS_MAX: u64 = 10;
/// Seconds a connection (HTTP/1.1 or HTTP/2) may stay open with no request in flight before it
/// is closed gracefully. Long enough that a page's follow-up requests and a quick next click
/// reuse the connection; short enough that abandoned or idling clients give their slot back.
pub const CONNECTION_IDLE_SECONDS_MAX: u64 = 30;
/// Requests a single HTTP/2 connection may have open at once. A page here needs the page itself
/// and its stylesheet; browsers queue beyond the limit. hyper's default (200) would let one
/// connection hold more handlers than a whole shelter uses.
pub const H2_STREAMS_PER_CONNECTION_MAX: u32 = 16;
/// Seconds without a frame from an HTTP/2 client before the node pings it, and seconds it waits
/// for the answer before closing: a phone that left the Wi-Fi mid-request frees its connection.
pub const H2_KEEP_ALIVE_INTERVAL_SECONDS: u64 = 20;
pub const H2_KEEP_ALIVE_TIMEOUT_SECONDS: u64 = 10;
/// Requests being handled at once across the whole server. Beyond it a request is answered 503
/// at once (load shedding) rather than queued: a queue behind slow handlers only grows the wait
/// a phone cannot see, and memory with it, while a quick 503 tells staff to retry. Hundreds of
/// staff each waiting on one page stay well below it; one address cannot reach it alone (see
/// the assertion below), so a single client holding requests open cannot starve the others.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 512;

/// Seconds between two checks of the node's time and authorization window while serving: the
/// longest an expired authorization's data can stay in memory.
pub const TIME_TICK_SECONDS: u64 = 2;

/// Audit entries committed in one transaction (group commit): enough to absorb a burst of
/// requests in one disk flush, small enough that one commit stays short.
pub const AUDIT_BATCH_ENTRIES_MAX: usize = 256;
/// Audit entries waiting for the writer; beyond this a request is refused (503), not queued.
pub const AUDIT_QUEUE_ENTRIES_MAX: usize = 4096;

/// Candidates a search returns: enough to tell people apart, too few to browse.
pub const SEARCH_CANDIDATES_MAX: usize = 5;

/// Searches one operator may make in `SEARCH_RATE_WINDOW_SECONDS`: a busy shelter desk makes a
/// few a minute; walking a region takes thousands.
pub const SEARCH_RATE_PER_OPERATOR_MAX: usize = 30;
pub const SEARCH_RATE_WINDOW_SECONDS: u64 = 60;

/// Granularity of the trusted-time mark while running: the node's own time is written at most
/// this often, so a clock set back by less than this goes unnoticed (a window can stretch by at
/// most this much).
pub const TRUSTED_TIME_STEP_SECONDS: i64 = 10;

/// Failed sign-ins in a row before an account is locked for `LOGIN_LOCKOUT_SECONDS`.
pub const LOGIN_FAILURES_MAX: u32 = 5;
pub const LOGIN_LOCKOUT_SECONDS: i64 = 15 * 60;
/// A chosen PIN has at least this many digits; a passphrase at least this many characters.
pub const SECRET_PIN_DIGITS_MIN: usize = 6;
pub const SECRET_PASSPHRASE_CHARS_MIN: usize = 8;
/// A web session ends after this long without a request, and after `SESSION_MAX_SECONDS` in all
/// (a shift).
pub const SESSION_IDLE_SECONDS: i64 = 20 * 60;
pub const SESSION_MAX_SECONDS: i64 = 12 * 60 * 60;
/// A session's last-seen time is written at most this often.
pub const SESSION_TOUCH_SECONDS: i64 = 30;
/// Audit entries on one page of the coordinator's log view.
pub const AUDIT_PAGE_ENTRIES: usize = 100;
/// A handover note or a place name, in characters.
pub const FIELD_NOTE_CHARS_MAX: usize = 2000;
pub const FIELD_PLACE_CHARS_MAX: usize = 200;

/// Milliseconds between two progress lines on long work.
pub const PROGRESS_INTERVAL_MILLIS: u64 = 1000;

const _: () = assert!(SNAPSHOT_CHUNK_RECORDS_MAX as u64 <= SNAPSHOT_RECORDS_MAX);
const _: () = assert!(SESSION_TOUCH_SECONDS < SESSION_IDLE_SECONDS && SESSION_IDLE_SECONDS < SESSION_MAX_SECONDS);
const _: () = assert!(FIELD_NOTE_CHARS_MAX * 4 < REQUEST_BODY_BYTES_MAX);
const _: () = assert!(CSV_FIELD_BYTES_MAX * 4 < SNAPSHOT_CHUNK_BYTES_MAX / SNAPSHOT_CHUNK_RECORDS_MAX * 64);
const _: () = assert!(CSV_SNIFF_BYTES >= 4096);
const _: () = assert!(AUDIT_BATCH_ENTRIES_MAX <= AUDIT_QUEUE_ENTRIES_MAX);
// One address is a small share of the server's connections: at least 64 are needed to fill it.
const _: () = assert!(CONNECTIONS_PER_ADDRESS_MAX >= 6 && CONNECTIONS_PER_ADDRESS_MAX * 64 <= CONNECTIONS_MAX);
// Everything one address can have in flight (all its connections HTTP/2, every stream busy)
// leaves at least half of the server's request slots to everyone else.
const _: () =
    assert!(CONNECTIONS_PER_ADDRESS_MAX * H2_STREAMS_PER_CONNECTION_MAX as usize * 2 <= REQUESTS_IN_FLIGHT_MAX);
// A client gets the whole head limit to send its request before the idle limit could close the
// connection under it (a head being read is not yet a request in flight).
const _: () = assert!(REQUEST_HEAD_SECONDS_MAX <= CONNECTION_IDLE_SECONDS_MAX);

/// The connection limits `server::run` enforces, as a value so that tests can shorten the
/// timeouts. `Default` is what the node serves with: the constants above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// `CONNECTIONS_MAX`.
    pub connections_max: usize,
    /// `CONNECTIONS_PER_ADDRESS_MAX`.
    pub connections_per_address_max: usize,
    /// `REQUESTS_IN_FLIGHT_MAX`.
    pub requests_in_flight_max: usize,
    /// `H2_STREAMS_PER_CONNECTION_MAX`.
    pub h2_streams_per_connection_max: u32,
    /// `TLS_HANDSHAKE_SECONDS_MAX`.
    pub tls_handshake: std::time::Duration,
    /// `REQUEST_HEAD_SECONDS_MAX`.
    pub request_head: std::time::Duration,
    /// `CONNECTION_IDLE_SECONDS_MAX`.
    pub connection_idle: std::time::Duration,
    /// `H2_KEEP_ALIVE_INTERVAL_SECONDS` and `H2_KEEP_ALIVE_TIMEOUT_SECONDS`.
    pub h2_keep_alive_interval: std::time::Duration,
    pub h2_keep_alive_timeout: std::time::Duration,
    /// `SHUTDOWN_GRACE_SECONDS_MAX`.
    pub shutdown_grace: std::time::Duration,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        use std::time::Duration;
        ServerLimits {
            connections_max: CONNECTIONS_MAX,
            connections_per_address_max: CONNECTIONS_PER_ADDRESS_MAX,
            requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX,
            h2_streams_per_connection_max: H2_STREAMS_PER_CONNECTION_MAX,
            tls_handshake: Duration::from_secs(TLS_HANDSHAKE_SECONDS_MAX),
            request_head: Duration::from_secs(REQUEST_HEAD_SECONDS_MAX),
            connection_idle: Duration::from_secs(CONNECTION_IDLE_SECONDS_MAX),
            h2_keep_alive_interval: Duration::from_secs(H2_KEEP_ALIVE_INTERVAL_SECONDS),
            h2_keep_alive_timeout: Duration::from_secs(H2_KEEP_ALIVE_TIMEOUT_SECONDS),
            shutdown_grace: Duration::from_secs(SHUTDOWN_GRACE_SECONDS_MAX),
        }
    }
}
