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
/// The largest region a snapshot may hold: regions of up to 1,000,000 people are served (Tokyo
/// has about 650,000 certified care recipients), with room to spare.
pub const SNAPSHOT_RECORDS_MAX: u64 = 2_000_000;
/// Municipalities in one snapshot (a whole prefecture has at most a few hundred).
pub const SNAPSHOT_MUNICIPALITIES_MAX: usize = 400;

/// One CSV field: long free text (care plan) fits, a runaway quote does not.
pub const CSV_FIELD_BYTES_MAX: usize = 16 * 1024;
/// Validation problems printed in full before the rest are only counted.
pub const CSV_ERRORS_SHOWN_MAX: usize = 200;
/// Bytes sniffed to detect UTF-8 versus Shift_JIS.
pub const CSV_SNIFF_BYTES: usize = 64 * 1024;
/// A sniffed prefix with invalid UTF-8 is still read as UTF-8 when it has at least this many
/// valid multi-byte characters per invalid sequence: a stray byte in a UTF-8 file is then
/// reported on its line instead of the whole file being garbled as Shift_JIS. Shift_JIS text
/// makes mostly invalid sequences (its common lead bytes 0x81–0x9F cannot start UTF-8), so it
/// stays far below this.
pub const CSV_UTF8_MULTIBYTE_PER_INVALID_MIN: usize = 10;

/// Persons the generator makes in one run.
pub const SYNTH_PERSONS_MAX: u64 = 5_000_000;

/// An HTTP request body; the status page takes none, later APIs take small JSON.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Days a node's TLS certificate is valid from its issue: a node is enrolled in peacetime and may
/// first serve years later, so it must outlast the wait; a lost node's certificate still stops
/// being trusted on its own. Re-enrol a node before then.
pub const TLS_NODE_CERT_DAYS: i64 = 5 * 365;
/// Days the central's node CA is valid: longer than any node certificate, so enrolments stay
/// possible for years; node certificates never outlive it (they are cut at its end).
pub const TLS_CA_CERT_DAYS: i64 = 20 * 365;
/// Seconds a certificate's not-before is set back from the time it is made, so that a node or a
/// phone whose clock is behind (a time zone set wrong is nine hours) still accepts it.
pub const TLS_CERT_BACKDATE_SECONDS: i64 = 24 * 60 * 60;
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
/// Requests being handled at once for one client address; beyond it, 503 at once. A phone
/// loads a page and its stylesheet; a facility's system makes a few calls at a time. Without it
/// two addresses holding slow requests (16 connections × 16 streams each) took every slot.
pub const REQUESTS_IN_FLIGHT_PER_ADDRESS_MAX: usize = 32;
/// Seconds a request body may take to arrive in full (bodies are at most 64 KiB: a form, a
/// small JSON, an authorization file): a body trickled a byte at a time holds its request slot
/// no longer than this (408).
pub const REQUEST_BODY_SECONDS_MAX: u64 = 10;

/// Seconds between two checks of the node's time and authorization window while serving: the
/// longest an expired authorization's data can stay in memory.
pub const TIME_TICK_SECONDS: u64 = 2;

/// Audit entries committed in one transaction (group commit): enough to absorb a burst of
/// requests in one disk flush, small enough that one commit stays short.
pub const AUDIT_BATCH_ENTRIES_MAX: usize = 256;
/// Audit entries waiting for the writer; beyond this a request is refused (503), not queued.
pub const AUDIT_QUEUE_ENTRIES_MAX: usize = 4096;

/// Seconds of the node's time an audit seal epoch lasts before the next checkpoint evolves the
/// seal key (and erases the old one). A thief who copies the node can rewrite or cut only what
/// was sealed in the epoch they find and the one before it, so shorter is safer; each step
/// costs one small atomic file write (two flushes), so a minute keeps that cost invisible next
/// to the commits themselves. Time rather than a count of checkpoints: it bounds the exposure
/// by the same clock on a busy node and on a quiet one.
pub const AUDIT_SEAL_EPOCH_SECONDS: i64 = 60;

/// Candidates a search returns: enough to tell people apart, too few to browse.
pub const SEARCH_CANDIDATES_MAX: usize = 5;

/// Searches one operator may make in `SEARCH_RATE_WINDOW_SECONDS`: a busy shelter desk makes a
/// few a minute; walking a region takes thousands.
pub const SEARCH_RATE_PER_OPERATOR_MAX: usize = 30;
pub const SEARCH_RATE_WINDOW_SECONDS: u64 = 60;
/// Newest audit entries a start reads to go on counting each operator's searches of the last
/// window (a restart must not reset the limit): more than a busy node writes in a window.
pub const RATE_SEED_ENTRIES_MAX: u64 = 100_000;

/// Granularity of the trusted-time mark while running: the node's own time is written at most
/// this often, so a clock set back by less than this goes unnoticed (a window can stretch by at
/// most this much).
pub const TRUSTED_TIME_STEP_SECONDS: i64 = 10;

/// Failed sign-ins from one client address for one staff id before that address must wait
/// `LOGIN_LOCKOUT_SECONDS` to try that id again. The person on their own phone is not locked
/// out by someone guessing from another.
pub const LOGIN_FAILURES_MAX: u32 = 5;
pub const LOGIN_LOCKOUT_SECONDS: i64 = 15 * 60;
/// Failed sign-ins from one address, whatever the ids, in `LOGIN_ADDRESS_WINDOW_SECONDS`:
/// a tired worker mistypes a few times; a guesser walking the staff list makes many.
pub const LOGIN_ADDRESS_FAILURES_MAX: usize = 20;
pub const LOGIN_ADDRESS_WINDOW_SECONDS: u64 = 15 * 60;
/// Failed sign-ins to one account from anywhere, since its last success, before each further
/// attempt must wait a backoff that starts at `LOGIN_BACKOFF_BASE_SECONDS` and doubles up to
/// `LOGIN_BACKOFF_SECONDS_MAX`: slows guessing from many addresses, and never locks the
/// account holder out for longer than the cap.
pub const LOGIN_ACCOUNT_FAILURES_FREE: u32 = 10;
pub const LOGIN_BACKOFF_BASE_SECONDS: i64 = 5;
pub const LOGIN_BACKOFF_SECONDS_MAX: i64 = 60;
/// How long a sign-in being checked holds its account, so that parallel guesses at one account
/// are refused instead of each being checked; released as soon as the check ends.
pub const LOGIN_ATTEMPT_HOLD_SECONDS: i64 = 30;
/// How long an address the holder signed in from stays theirs: the account's rest after
/// failures from elsewhere does not hold it out (a shift, so the phone of the day).
pub const LOGIN_KNOWN_DEVICE_SECONDS: u64 = SESSION_MAX_SECONDS as u64;
/// Argon2 hashes running at once (each takes 19 MiB): the memory sign-in may use, however many
/// try. Further sign-ins wait in a queue of `LOGIN_HASHES_WAITING_MAX`; beyond it, 503.
pub const LOGIN_HASHES_CONCURRENT_MAX: usize = 2;
pub const LOGIN_HASHES_WAITING_MAX: usize = 16;
/// Sign-ins in flight from one client address: a person presses the button once or twice.
pub const LOGIN_IN_FLIGHT_PER_ADDRESS_MAX: usize = 2;
/// Client addresses remembered for sign-in failures and anonymous refusals; the stalest is
/// forgotten beyond this (a shelter has hundreds of phones, not thousands).
pub const THROTTLE_ADDRESSES_MAX: usize = 4096;
/// Requests refused for having no session or token are written to the audit log as one
/// summary per address every this many seconds (and at shutdown), not one entry each: nobody
/// can grow the log by knocking. Beyond `ANONYMOUS_REFUSALS_PER_ADDRESS_MAX` in one interval an
/// address gets 429 at once.
pub const ANONYMOUS_SUMMARY_SECONDS: u64 = 60;
pub const ANONYMOUS_REFUSALS_PER_ADDRESS_MAX: u64 = 120;
/// Addresses named in a summary entry of their own each interval, the busiest first; the rest
/// share one entry with their number and total. A client rotating addresses cannot grow the log
/// by one entry per address.
pub const ANONYMOUS_SUMMARY_ADDRESSES_MAX: usize = 32;
/// Refused requests of one enrolled operator written one entry each in an interval of
/// `ANONYMOUS_SUMMARY_SECONDS`; beyond, 429 and a count in a summary. A worker whose requests are
/// refused a few times a minute has each one written; a script hammering with a token does not.
pub const OPERATOR_REFUSALS_PER_INTERVAL_MAX: u64 = 60;
/// The coordinator moves the node's clock forward at most this far in one step (a node stored
/// for a year boots a year behind), and never past the latest time the node has seen vouched
/// for (trusted time, an authorization's end) plus `CLOCK_FORWARD_MARGIN_SECONDS`: a typo such
/// as year 9999 would otherwise refuse every fresh authorization as expired.
pub const CLOCK_FORWARD_STEP_SECONDS_MAX: i64 = 400 * 24 * 60 * 60;
pub const CLOCK_FORWARD_MARGIN_SECONDS: i64 = 3 * 24 * 60 * 60;
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
/// Characters in one field of a search (a name, a date, a place): a full name with its reading,
/// or an address to the building, fits with room to spare; the matcher's work grows with it.
pub const SEARCH_FIELD_CHARS_MAX: usize = 100;
pub const FIELD_PLACE_CHARS_MAX: usize = 200;

/// Milliseconds between two progress lines on long work.
pub const PROGRESS_INTERVAL_MILLIS: u64 = 1000;

const _: () = assert!(SNAPSHOT_CHUNK_RECORDS_MAX as u64 <= SNAPSHOT_RECORDS_MAX);
const _: () = assert!(SESSION_TOUCH_SECONDS < SESSION_IDLE_SECONDS && SESSION_IDLE_SECONDS < SESSION_MAX_SECONDS);
const _: () = assert!(FIELD_NOTE_CHARS_MAX * 4 < REQUEST_BODY_BYTES_MAX);
const _: () = assert!(CSV_FIELD_BYTES_MAX * 4 < SNAPSHOT_CHUNK_BYTES_MAX / SNAPSHOT_CHUNK_RECORDS_MAX * 64);
const _: () = assert!(CSV_SNIFF_BYTES >= 4096);
const _: () = assert!(AUDIT_BATCH_ENTRIES_MAX <= AUDIT_QUEUE_ENTRIES_MAX);
const _: () = assert!(LOGIN_IN_FLIGHT_PER_ADDRESS_MAX <= LOGIN_HASHES_CONCURRENT_MAX);
const _: () = assert!((LOGIN_FAILURES_MAX as usize) < LOGIN_ADDRESS_FAILURES_MAX);
const _: () = assert!(LOGIN_FAILURES_MAX < LOGIN_ACCOUNT_FAILURES_FREE);
const _: () = assert!(LOGIN_BACKOFF_BASE_SECONDS <= LOGIN_BACKOFF_SECONDS_MAX);
const _: () = assert!(LOGIN_ATTEMPT_HOLD_SECONDS < LOGIN_LOCKOUT_SECONDS);
const _: () = assert!(CLOCK_FORWARD_MARGIN_SECONDS < CLOCK_FORWARD_STEP_SECONDS_MAX);
const _: () = assert!(TLS_NODE_CERT_DAYS < TLS_CA_CERT_DAYS);
// One address is a small share of the server's connections: at least 64 are needed to fill it.
const _: () = assert!(CONNECTIONS_PER_ADDRESS_MAX >= 6 && CONNECTIONS_PER_ADDRESS_MAX * 64 <= CONNECTIONS_MAX);
// Everything one address can have in flight (all its connections HTTP/2, every stream busy)
// leaves at least half of the server's request slots to everyone else.
const _: () =
    assert!(CONNECTIONS_PER_ADDRESS_MAX * H2_STREAMS_PER_CONNECTION_MAX as usize * 2 <= REQUESTS_IN_FLIGHT_MAX);
// A client gets the whole head limit to send its request before the idle limit could close the
// connection under it (a head being read is not yet a request in flight).
const _: () = assert!(REQUEST_HEAD_SECONDS_MAX <= CONNECTION_IDLE_SECONDS_MAX);
// It takes at least 16 addresses to hold every request slot.
const _: () = assert!(REQUESTS_IN_FLIGHT_PER_ADDRESS_MAX * 16 <= REQUESTS_IN_FLIGHT_MAX);

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
    /// `REQUESTS_IN_FLIGHT_PER_ADDRESS_MAX`.
    pub requests_per_address_max: usize,
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
            requests_per_address_max: REQUESTS_IN_FLIGHT_PER_ADDRESS_MAX,
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
