//! Audit benchmark: audited operations per second and latency with group commit and with one
//! flush per entry, and the disk's raw flush latency for reference.
//!
//! `cargo bench --bench audit` (KF_BENCH_AUDIT_OPS, KF_BENCH_AUDIT_CONCURRENCY to change; the
//! temporary files go under KF_BENCH_DIR or the system temp directory: put them on the disk a
//! node really uses, not on tmpfs, or the flush figures mean nothing). Prints figures; asserts
//! nothing about time.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaigo_field::audit::{Action, AuditLog, ChainWriter, CommitMode, NewEntry, Outcome};
use kaigo_field::clock;
use kaigo_field::keys::{AuditSealKey, NodeSecretKey, SealState};
use kaigo_field::model::PersonId;
use kaigo_field::store::Store;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn run(mode: CommitMode, ops: usize, concurrency: usize, dir: &std::path::Path) -> (f64, Duration, Duration) {
    let store = Store::open(&dir.join(format!("{mode:?}.db"))).expect("store");
    let seal = dir.join(format!("{mode:?}.seal"));
    SealState::genesis(AuditSealKey::generate(), clock::system().now()).save(&seal).expect("seal state");
    let writer = ChainWriter::new("bench", Arc::new(NodeSecretKey::generate()), seal, clock::system());
    let log = Arc::new(AuditLog::start(store, writer, mode));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let started = Instant::now();
    let latencies = runtime.block_on(async {
        let per_task = ops / concurrency;
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per_task);
                    for i in 0..per_task {
                        let mut e = NewEntry::new(&format!("staff-{t}"), Action::View, Outcome::Ok, "record");
                        e.subjects = vec![PersonId::parse(&format!("{:032x}", t * per_task + i)).expect("hex id")];
                        let t0 = Instant::now();
                        log.record(e).await.expect("audit write");
                        lat.push(t0.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    });
    let secs = started.elapsed().as_secs_f64();
    let mut sorted = latencies;
    sorted.sort();
    (sorted.len() as f64 / secs, percentile(&sorted, 0.5), percentile(&sorted, 0.99))
}

fn raw_flush(dir: &std::path::Path, n: usize) -> (Duration, Duration) {
    let mut f = std::fs::File::create(dir.join("flush.bin")).expect("file");
    let block = [0u8; 4096];
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        f.write_all(&block).expect("write");
        let t0 = Instant::now();
        f.sync_data().expect("fdatasync");
        lat.push(t0.elapsed());
    }
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

fn main() {
    let ops = env("KF_BENCH_AUDIT_OPS", 20_000);
    let concurrency = env("KF_BENCH_AUDIT_CONCURRENCY", 64);
    let base = std::env::var_os("KF_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).expect("temporary directory");
    let (p50, p99) = raw_flush(tmp.path(), 500);
    println!("audit benchmark, {ops} audited operations from {concurrency} concurrent requesters");
    println!("  raw disk flush (4 KiB write + fdatasync)   p50 {p50:>10.2?}   p99 {p99:>10.2?}");
    for (mode, n) in [(CommitMode::Group, ops), (CommitMode::PerEntry, ops / 4)] {
        let (rate, p50, p99) = run(mode, n, concurrency, tmp.path());
        println!("  {:<10} {n:>6} ops  {rate:>9.0} ops/s   p50 {p50:>10.2?}   p99 {p99:>10.2?}", format!("{mode:?}"));
    }
}
