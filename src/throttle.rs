//! What a client may cost the node before it has proved who it is: sign-in attempts (Argon2
//! runs in a small bounded queue; failures are counted per address and per address and staff
//! id; the addresses a holder signed in from are remembered, so guesses from elsewhere do not
//! hold them out) and requests refused for having no session or token (rate-limited, and written
//! to the audit log as one summary per address per interval instead of one entry each). And
//! what refusals may cost once it has: an enrolled operator's refused requests beyond an
//! allowance are answered 429 and summarised the same way.
//!
//! Everything here is in memory and counts with the monotonic clock (`Instant`), which a wrong
//! wall clock cannot move. It must not hold anything personal: addresses, staff ids as typed and
//! counts only. Every map is bounded; when one is full the stalest address is forgotten.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::mpsc::{SyncSender, sync_channel};

use crate::audit::{Action, Actor, NewEntry, Outcome};
use crate::limits::{
    ANONYMOUS_REFUSALS_PER_ADDRESS_MAX, ANONYMOUS_SUMMARY_ADDRESSES_MAX, ANONYMOUS_SUMMARY_SECONDS,
    LOGIN_ADDRESS_FAILURES_MAX, LOGIN_ADDRESS_WINDOW_SECONDS, LOGIN_FAILURES_MAX, LOGIN_HASHES_CONCURRENT_MAX,
    LOGIN_HASHES_WAITING_MAX, LOGIN_IN_FLIGHT_PER_ADDRESS_MAX, LOGIN_KNOWN_DEVICE_SECONDS, LOGIN_LOCKOUT_SECONDS,
    OPERATOR_REFUSALS_PER_INTERVAL_MAX, THROTTLE_ADDRESSES_MAX,
};

/// Why a sign-in may not even be tried now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// This address has failed too often for this staff id: wait this long.
    PairLocked(Duration),
    /// This address has failed too often, whatever the ids: wait this long.
    AddressLocked(Duration),
    /// This address already has sign-ins being checked.
    AddressBusy,
    /// The node is checking as many secrets as it can hold in memory, and the queue is full.
    Overloaded,
}

/// Counts a sign-in in flight for an address until dropped.
struct InFlight<'a> {
    throttle: &'a Throttle,
    address: IpAddr,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.throttle.lock();
        if let Some(n) = state.in_flight.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.in_flight.remove(&self.address);
            }
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Refusals {
    count: u64,
    /// Within the current rate window.
    recent: u64,
    window_start: Option<Instant>,
    last: Option<Instant>,
    kinds: Vec<&'static str>,
}

#[derive(Default)]
struct State {
    /// Failed sign-ins per address, newest last, within `LOGIN_ADDRESS_WINDOW_SECONDS`.
    address_failures: HashMap<IpAddr, VecDeque<Instant>>,
    /// Failed sign-ins per (address, staff id as typed), within `LOGIN_LOCKOUT_SECONDS`.
    pair_failures: HashMap<(IpAddr, String), VecDeque<Instant>>,
    in_flight: HashMap<IpAddr, usize>,
    /// (address, staff id) pairs that signed in correctly, newest last: the holder's own
    /// devices, which a rest imposed by guesses from elsewhere does not hold out.
    signed_in: HashMap<(IpAddr, String), VecDeque<Instant>>,
    anonymous: HashMap<IpAddr, Refusals>,
    /// Addresses forgotten from `anonymous` (the table was full) in this interval, and their
    /// refusals: still counted in the summary.
    forgotten: (u64, u64),
    /// Refusals of each enrolled operator in the current interval: (interval start, refusals in
    /// it, refusals beyond `OPERATOR_REFUSALS_PER_INTERVAL_MAX`, answered 429 and summarised).
    operators: HashMap<String, (Instant, u64, u64)>,
    anonymous_since: Option<Instant>,
}

/// See the module comment. One per serving node, shared by every request.
pub struct Throttle {
    state: Mutex<State>,
    /// The Argon2 queue: `LOGIN_HASHES_CONCURRENT_MAX` threads of their own take jobs from a
    /// channel of `LOGIN_HASHES_WAITING_MAX`. Their own threads, not the runtime's blocking pool:
    /// the allocator keeps a freed 19 MiB block in the arena of the thread that used it, so
    /// hashing on whichever pool thread is free would grow memory with every thread touched.
    jobs: SyncSender<Job>,
}

impl Default for Throttle {
    fn default() -> Self {
        let (jobs, queue) = sync_channel::<Job>(LOGIN_HASHES_WAITING_MAX);
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for i in 0..LOGIN_HASHES_CONCURRENT_MAX {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("sign-in-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job, never while it runs.
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // The throttle was dropped.
                        }
                    }
                })
                .expect("a sign-in hashing thread starts");
        }
        Throttle { state: Mutex::new(State::default()), jobs }
    }
}

fn prune(list: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while list.front().is_some_and(|t| now.duration_since(*t) >= window) {
        list.pop_front();
    }
}

/// How long until the oldest of `max` failures in `window` leaves it, if there are that many.
fn wait_left(list: &VecDeque<Instant>, max: usize, window: Duration, now: Instant) -> Option<Duration> {
    if list.len() < max {
        return None;
    }
    let oldest = list[list.len() - max];
    Some(window.saturating_sub(now.duration_since(oldest)))
}

/// Keeps a map within `THROTTLE_ADDRESSES_MAX` keys by forgetting one whose newest event is the
/// oldest: an attacker with many addresses pushes out only other stale entries.
fn bound<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, VecDeque<Instant>>) {
    while map.len() > THROTTLE_ADDRESSES_MAX {
        let stalest = map.iter().min_by_key(|(_, v)| v.back().copied()).map(|(k, _)| k.clone());
        match stalest {
            Some(k) => map.remove(&k),
            None => break,
        };
    }
}

impl Throttle {
    pub fn new() -> std::sync::Arc<Throttle> {
        std::sync::Arc::new(Throttle::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `address` may try to sign in as `staff_id` now, before any secret is checked.
    pub fn may_try(&self, address: IpAddr, staff_id: &str) -> Result<(), Held> {
        self.may_try_at(address, staff_id, Instant::now())
    }

    fn may_try_at(&self, address: IpAddr, staff_id: &str, now: Instant) -> Result<(), Held> {
        let mut state = self.lock();
        let address_window = Duration::from_secs(LOGIN_ADDRESS_WINDOW_SECONDS);
        if let Some(list) = state.address_failures.get_mut(&address) {
            prune(list, address_window, now);
            if let Some(wait) = wait_left(list, LOGIN_ADDRESS_FAILURES_MAX, address_window, now) {
                return Err(Held::AddressLocked(wait));
            }
        }
        let pair_window = Duration::from_secs(LOGIN_LOCKOUT_SECONDS as u64);
        if let Some(list) = state.pair_failures.get_mut(&(address, staff_id.to_owned())) {
            prune(list, pair_window, now);
            if let Some(wait) = wait_left(list, LOGIN_FAILURES_MAX as usize, pair_window, now) {
                return Err(Held::PairLocked(wait));
            }
        }
        Ok(())
    }

    /// Records a failed sign-in; returns how many more this address may make for this id
    /// before it must wait.
    pub fn failed(&self, address: IpAddr, staff_id: &str) -> u32 {
        self.failed_at(address, staff_id, Instant::now())
    }

    fn failed_at(&self, address: IpAddr, staff_id: &str, now: Instant) -> u32 {
        let mut state = self.lock();
        state.address_failures.entry(address).or_default().push_back(now);
        bound(&mut state.address_failures);
        let pair = state.pair_failures.entry((address, staff_id.to_owned())).or_default();
        pair.push_back(now);
        prune(pair, Duration::from_secs(LOGIN_LOCKOUT_SECONDS as u64), now);
        let left = (LOGIN_FAILURES_MAX as usize).saturating_sub(pair.len()) as u32;
        bound(&mut state.pair_failures);
        left
    }

    /// A correct sign-in clears this address's count for this id (not the address's total), and
    /// remembers the address as one the holder uses.
    pub fn succeeded(&self, address: IpAddr, staff_id: &str) {
        self.succeeded_at(address, staff_id, Instant::now());
    }

    fn succeeded_at(&self, address: IpAddr, staff_id: &str, now: Instant) {
        let mut state = self.lock();
        state.pair_failures.remove(&(address, staff_id.to_owned()));
        let seen = state.signed_in.entry((address, staff_id.to_owned())).or_default();
        seen.clear();
        seen.push_back(now);
        bound(&mut state.signed_in);
    }

    /// Whether `address` signed in as `staff_id` within `LOGIN_KNOWN_DEVICE_SECONDS`: then the
    /// account's rest after failures from elsewhere does not refuse it (failures from it still
    /// count as any other's).
    pub fn known_device(&self, address: IpAddr, staff_id: &str) -> bool {
        self.known_device_at(address, staff_id, Instant::now())
    }

    fn known_device_at(&self, address: IpAddr, staff_id: &str, now: Instant) -> bool {
        let window = Duration::from_secs(LOGIN_KNOWN_DEVICE_SECONDS);
        self.lock()
            .signed_in
            .get(&(address, staff_id.to_owned()))
            .and_then(|seen| seen.back())
            .is_some_and(|at| now.duration_since(*at) < window)
    }

    /// Runs `work` (an Argon2 hash) in the bounded queue for `address` and returns its result;
    /// refused at once if the address already has `LOGIN_IN_FLIGHT_PER_ADDRESS_MAX` sign-ins in
    /// flight or the queue holds `LOGIN_HASHES_WAITING_MAX`.
    pub async fn hash<T: Send + 'static>(
        &self,
        address: IpAddr,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Held> {
        {
            let mut state = self.lock();
            let n = state.in_flight.entry(address).or_default();
            if *n >= LOGIN_IN_FLIGHT_PER_ADDRESS_MAX {
                return Err(Held::AddressBusy);
            }
            *n += 1;
        }
        let _in_flight = InFlight { throttle: self, address };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs.try_send(job).map_err(|_| Held::Overloaded)?;
        answer.await.map_err(|_| Held::Overloaded)
    }

    /// Counts a request refused for having no session or token; false if this address has made
    /// too many such requests in the current interval (answer 429 without further work).
    pub fn refused_anonymous(&self, address: IpAddr, kind: &'static str) -> bool {
        self.refused_anonymous_at(address, kind, Instant::now())
    }

    fn refused_anonymous_at(&self, address: IpAddr, kind: &'static str, now: Instant) -> bool {
        let mut state = self.lock();
        state.anonymous_since.get_or_insert(now);
        if !state.anonymous.contains_key(&address) && state.anonymous.len() >= THROTTLE_ADDRESSES_MAX {
            // Full: the address seen least recently is forgotten (its count kept for the
            // summary), so a new phone gets an allowance of its own rather than a bucket shared
            // with whoever filled the table.
            let stalest = state.anonymous.iter().min_by_key(|(_, r)| r.last).map(|(a, _)| *a);
            if let Some(r) = stalest.and_then(|a| state.anonymous.remove(&a)) {
                state.forgotten.0 += 1;
                state.forgotten.1 += r.count;
            }
        }
        self.count_refusal(&mut state, address, kind, now)
    }

    fn count_refusal(&self, state: &mut State, address: IpAddr, kind: &'static str, now: Instant) -> bool {
        let r = state.anonymous.entry(address).or_default();
        let window = Duration::from_secs(ANONYMOUS_SUMMARY_SECONDS);
        if r.window_start.is_none_or(|s| now.duration_since(s) >= window) {
            r.window_start = Some(now);
            r.recent = 0;
        }
        r.count += 1;
        r.recent += 1;
        r.last = Some(now);
        if !r.kinds.contains(&kind) {
            r.kinds.push(kind);
        }
        r.recent <= ANONYMOUS_REFUSALS_PER_ADDRESS_MAX
    }

    /// Counts a refusal of an enrolled operator's request: true while the operator is within
    /// `OPERATOR_REFUSALS_PER_INTERVAL_MAX` in the interval (write its entry as usual); false
    /// beyond it (answer 429 without an entry of its own; the count goes into a summary). An
    /// operator, or a stolen token, cannot grow the log at the disk's speed with refused
    /// requests.
    pub fn refused_operator(&self, operator: &str) -> bool {
        self.refused_operator_at(operator, Instant::now())
    }

    fn refused_operator_at(&self, operator: &str, now: Instant) -> bool {
        let mut state = self.lock();
        state.anonymous_since.get_or_insert(now);
        if !state.operators.contains_key(operator) && state.operators.len() >= THROTTLE_ADDRESSES_MAX {
            return false;
        }
        let (start, recent, beyond) = state.operators.entry(operator.to_owned()).or_insert((now, 0, 0));
        if now.duration_since(*start) >= Duration::from_secs(ANONYMOUS_SUMMARY_SECONDS) {
            *start = now;
            *recent = 0;
        }
        *recent += 1;
        if *recent <= OPERATOR_REFUSALS_PER_INTERVAL_MAX {
            return true;
        }
        *beyond += 1;
        false
    }

    /// The summaries due: one audit entry per address with its count, if the interval has
    /// passed since the first refusal counted (or at once with `force`, at shutdown).
    pub fn take_summaries(&self, force: bool) -> Vec<NewEntry> {
        self.take_summaries_at(force, Instant::now())
    }

    fn take_summaries_at(&self, force: bool, now: Instant) -> Vec<NewEntry> {
        let mut state = self.lock();
        let due = state
            .anonymous_since
            .is_some_and(|since| force || now.duration_since(since) >= Duration::from_secs(ANONYMOUS_SUMMARY_SECONDS));
        if !due {
            return Vec::new();
        }
        state.anonymous_since = None;
        let mut operators: Vec<(String, u64)> = state
            .operators
            .drain()
            .filter(|(_, (_, _, beyond))| *beyond > 0)
            .map(|(operator, (_, _, beyond))| (operator, beyond))
            .collect();
        operators.sort();
        let operator_entries = operators.into_iter().map(|(operator, beyond)| {
            NewEntry::new(
                &operator,
                Action::Denied,
                Outcome::Denied,
                format!("{beyond} further refused requests beyond the limit, answered 429, not written one by one"),
            )
        });
        // The busiest addresses by name, the rest (and those forgotten) in one entry.
        let mut summaries: Vec<(IpAddr, Refusals)> = state.anonymous.drain().collect();
        summaries.sort_by(|(a, x), (b, y)| y.count.cmp(&x.count).then(a.cmp(b)));
        let rest = summaries.split_off(summaries.len().min(ANONYMOUS_SUMMARY_ADDRESSES_MAX));
        let (forgotten_addresses, forgotten_count) = std::mem::take(&mut state.forgotten);
        let others =
            (rest.len() as u64 + forgotten_addresses, rest.iter().map(|(_, r)| r.count).sum::<u64>() + forgotten_count);
        let other_entry = (others.0 > 0).then(|| {
            NewEntry::by(
                Actor::Anonymous,
                Action::Denied,
                Outcome::Denied,
                format!("{} other addresses: {} requests refused without a session or token", others.0, others.1),
            )
        });
        summaries
            .into_iter()
            .map(|(address, r)| {
                NewEntry::by(
                    Actor::Anonymous,
                    Action::Denied,
                    Outcome::Denied,
                    format!(
                        "{address}: {} requests refused without a session or token ({})",
                        r.count,
                        r.kinds.join(", ")
                    ),
                )
            })
            .chain(other_entry)
            .chain(operator_entries)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n))
    }

    #[test]
    fn failures_lock_the_address_for_that_id_only_and_say_how_many_are_left() {
        let t = Throttle::default();
        let now = Instant::now();
        for left in (0..LOGIN_FAILURES_MAX).rev() {
            assert_eq!(t.may_try_at(addr(1), "K7QM-3XDA", now), Ok(()));
            assert_eq!(t.failed_at(addr(1), "K7QM-3XDA", now), left);
        }
        assert!(matches!(t.may_try_at(addr(1), "K7QM-3XDA", now), Err(Held::PairLocked(_))));
        // The person on their own phone, and the same phone for another id, are not locked out.
        assert_eq!(t.may_try_at(addr(2), "K7QM-3XDA", now), Ok(()));
        assert_eq!(t.may_try_at(addr(1), "ABCD-EFGH", now), Ok(()));
        // Not for long: the lock ends with the window.
        let later = now + Duration::from_secs(LOGIN_LOCKOUT_SECONDS as u64);
        assert_eq!(t.may_try_at(addr(1), "K7QM-3XDA", later), Ok(()));
    }

    #[test]
    fn a_device_the_holder_signed_in_from_is_known_for_a_while() {
        let t = Throttle::default();
        let now = Instant::now();
        assert!(!t.known_device_at(addr(7), "K7QM-3XDA", now));
        t.succeeded_at(addr(7), "K7QM-3XDA", now);
        assert!(t.known_device_at(addr(7), "K7QM-3XDA", now + Duration::from_secs(60)));
        assert!(!t.known_device_at(addr(8), "K7QM-3XDA", now), "another address is not the holder's");
        assert!(!t.known_device_at(addr(7), "ABCD-EFGH", now), "nor is the same phone for another id");
        assert!(!t.known_device_at(addr(7), "K7QM-3XDA", now + Duration::from_secs(LOGIN_KNOWN_DEVICE_SECONDS)));
    }

    #[test]
    fn an_operators_refusals_beyond_the_limit_are_counted_not_written() {
        let t = Throttle::default();
        let now = Instant::now();
        let written =
            (0..OPERATOR_REFUSALS_PER_INTERVAL_MAX + 25).filter(|_| t.refused_operator_at("K7QM-3XDA", now)).count();
        assert_eq!(written as u64, OPERATOR_REFUSALS_PER_INTERVAL_MAX);
        assert!(t.refused_operator_at("ABCD-EFGH", now), "another operator is not affected");
        let later = now + Duration::from_secs(ANONYMOUS_SUMMARY_SECONDS);
        let entries = t.take_summaries_at(false, later);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].operator, "K7QM-3XDA");
        assert!(entries[0].detail.starts_with("25 further refused requests"), "{:?}", entries[0]);
        assert!(t.refused_operator_at("K7QM-3XDA", later), "a new interval, a new allowance");
    }

    #[test]
    fn one_address_guessing_many_ids_is_stopped() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..LOGIN_ADDRESS_FAILURES_MAX {
            assert_eq!(t.may_try_at(addr(3), &format!("id-{i}"), now), Ok(()));
            t.failed_at(addr(3), &format!("id-{i}"), now);
        }
        assert!(matches!(t.may_try_at(addr(3), "fresh-id", now), Err(Held::AddressLocked(_))));
        assert_eq!(t.may_try_at(addr(4), "fresh-id", now), Ok(()));
    }

    #[test]
    fn anonymous_refusals_become_one_summary_per_address_and_are_rate_limited() {
        let t = Throttle::default();
        let now = Instant::now();
        let mut allowed = 0;
        for _ in 0..ANONYMOUS_REFUSALS_PER_ADDRESS_MAX + 10 {
            if t.refused_anonymous_at(addr(5), "no session", now) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, ANONYMOUS_REFUSALS_PER_ADDRESS_MAX);
        t.refused_anonymous_at(addr(6), "no token", now);
        assert!(t.take_summaries_at(false, now).is_empty(), "not due before the interval");
        let due = now + Duration::from_secs(ANONYMOUS_SUMMARY_SECONDS);
        let entries = t.take_summaries_at(false, due);
        assert_eq!(entries.len(), 2);
        let expected = ANONYMOUS_REFUSALS_PER_ADDRESS_MAX + 10;
        assert!(entries[0].detail.starts_with(&format!("127.0.0.5: {expected} requests")), "{:?}", entries[0]);
        assert!(entries[1].detail.contains("no token"));
        assert!(t.take_summaries_at(true, due).is_empty(), "each refusal is summarised once");
    }

    #[tokio::test]
    async fn the_argon2_queue_is_bounded_per_address_and_in_all() {
        let t = Throttle::new();
        // Hold both hashing threads with work that says it started, then waits for a signal.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = std::sync::Arc::new(Mutex::new(hold));
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let busy = |a: IpAddr| {
            let (t, hold, started_tx) = (t.clone(), hold.clone(), started_tx.clone());
            tokio::spawn(async move {
                t.hash(a, move || {
                    let _ = started_tx.send(());
                    let _ = hold.lock().unwrap().recv();
                })
                .await
            })
        };
        // Polls `done` for up to ten seconds, letting the spawned tasks and threads run.
        async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
            for _ in 0..2000 {
                if done() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            done()
        }
        let mut running: Vec<_> = (0..LOGIN_IN_FLIGHT_PER_ADDRESS_MAX).map(|_| busy(addr(10))).collect();
        let mut seen = 0;
        assert!(
            wait_until(|| {
                seen += started.try_iter().count();
                seen == LOGIN_IN_FLIGHT_PER_ADDRESS_MAX
            })
            .await,
            "both hashing threads are busy"
        );
        assert!(matches!(t.hash(addr(10), || ()).await, Err(Held::AddressBusy)), "one address cannot queue more");
        // Fill the rest of the threads and the whole queue from other addresses.
        let others = LOGIN_HASHES_CONCURRENT_MAX - LOGIN_IN_FLIGHT_PER_ADDRESS_MAX + LOGIN_HASHES_WAITING_MAX;
        running.extend((0..others).map(|i| busy(addr(100 + i as u8))));
        let waiting = 1 + others;
        assert!(wait_until(|| t.lock().in_flight.len() == waiting).await, "every busy sign-in is running or queued");
        // The queue is full now: the next is turned away at once.
        assert!(matches!(t.hash(addr(200), || ()).await, Err(Held::Overloaded)), "the queue is bounded");
        for _ in 0..running.len() {
            release.send(()).unwrap();
        }
        for r in running {
            assert!(r.await.expect("the task ran").is_ok(), "every queued sign-in gets its turn");
        }
        assert_eq!(t.hash(addr(10), || 7).await, Ok(7), "places come back when the work is done");
    }

    /// Finding (probe C): with the address table full, every new address shared one bucket, so
    /// a phone that joined the Wi-Fi after someone filled it was answered 429 at once.
    #[test]
    fn a_new_address_has_its_own_allowance_even_when_the_table_is_full() {
        let t = Throttle::default();
        let now = Instant::now();
        let many = |i: usize| IpAddr::V6(std::net::Ipv6Addr::from(0xfd00_u128 << 112 | i as u128));
        for i in 0..THROTTLE_ADDRESSES_MAX + 500 {
            for _ in 0..ANONYMOUS_REFUSALS_PER_ADDRESS_MAX + 1 {
                t.refused_anonymous_at(many(i), "no session", now);
            }
        }
        let phone = addr(200);
        for n in 0..ANONYMOUS_REFUSALS_PER_ADDRESS_MAX {
            assert!(t.refused_anonymous_at(phone, "no session", now), "refusal {n} of a new phone answered 429");
        }
        assert!(!t.refused_anonymous_at(phone, "no session", now), "its own allowance still ends");
    }

    /// Finding (probe C): addresses rotated by one client added one summary entry each, about
    /// 4,100 a minute. The summaries stay few, and nothing refused goes uncounted.
    #[test]
    fn summaries_of_many_addresses_are_few_and_count_every_refusal() {
        let t = Throttle::default();
        let now = Instant::now();
        let many = |i: usize| IpAddr::V6(std::net::Ipv6Addr::from(0xfd00_u128 << 112 | i as u128));
        let addresses = THROTTLE_ADDRESSES_MAX + 904;
        for i in 0..addresses {
            t.refused_anonymous_at(many(i), "no session", now);
        }
        // One address that knocks far more than the others is named on its own.
        for _ in 0..50 {
            t.refused_anonymous_at(addr(9), "no token", now);
        }
        let entries = t.take_summaries_at(true, now);
        assert!(entries.len() <= ANONYMOUS_SUMMARY_ADDRESSES_MAX + 1, "{} entries", entries.len());
        assert!(entries.iter().any(|e| e.detail.starts_with("127.0.0.9: 50 requests")), "{:?}", entries[0].detail);
        let counted: u64 = entries
            .iter()
            .map(|e| {
                let d = &e.detail;
                let n = d.split(": ").nth(1).unwrap_or(d);
                n.split(' ').next().unwrap().parse::<u64>().unwrap_or_else(|_| panic!("no count in {d}"))
            })
            .sum();
        assert_eq!(counted, addresses as u64 + 50, "every refusal is in a summary");
        assert!(entries.last().unwrap().detail.contains("other addresses"), "{:?}", entries.last());
    }
}
