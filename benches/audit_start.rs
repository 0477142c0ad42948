//! Start-up benchmark: how long `serve` takes to listen, and its peak memory by then, with an
//! audit log of 10,000, 100,000 and 1,000,000 entries; the first start after the entries were
//! written (it verifies them) and the next (nothing new to verify); and a full `audit verify`.
//!
//! `cargo bench --bench audit_start` (KF_BENCH_START_SIZES=10000,100000 to change; temporary
//! files under KF_BENCH_DIR or the system temp directory). Prints figures; asserts nothing.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaigo_field::audit::{Action, ChainWriter, NewEntry, Outcome};
use kaigo_field::clock;
use kaigo_field::limits::AUDIT_BATCH_ENTRIES_MAX;
use kaigo_field::model::PersonId;
use kaigo_field::node::{Node, NodeDir};

const BIN: &str = env!("CARGO_BIN_EXE_kaigo-field");

fn kf(args: &[&str], cwd: &Path) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("KAIGO_FIELD_COORDINATOR_PASSPHRASE", "bench passphrase")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Appends entries until the log holds `total`, in batches as the server commits them.
fn grow(dir: &NodeDir, total: u64) {
    let node = Node::open(dir).expect("node");
    let secret = Arc::new(node.secret_key(None).expect("key"));
    let writer = ChainWriter::new(&node.info.node_id, secret, dir.audit_seal(), clock::system());
    let mut have = node.store.audit_head().expect("head").map_or(0, |(seq, _)| seq);
    while have < total {
        let n = (total - have).min(AUDIT_BATCH_ENTRIES_MAX as u64);
        let batch: Vec<NewEntry> = (0..n)
            .map(|i| {
                let mut e = NewEntry::new("K7QM-3XDA", Action::View, Outcome::Ok, "web: sections card,care");
                e.subjects = vec![PersonId::parse(&format!("{:032x}", have + i)).expect("hex id")];
                e.purpose = Some("生活支援".into());
                e
            })
            .collect();
        writer.append(&node.store, &batch).expect("append");
        have += n;
    }
}

/// `VmHWM` of a process: its peak resident memory, in MiB.
fn peak_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Starts `serve`, waits for it to listen: (seconds to listen, peak MiB then). Stops it.
fn start(cwd: &Path) -> (Duration, f64) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["serve", "--dir", "n", "--listen", "127.0.0.1:0"])
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let listening = loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("URL: ") => break started.elapsed(),
            Some(_) => {}
            None => panic!("serve ended before it listened"),
        }
    };
    let peak = peak_mib(child.id());
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    std::thread::spawn(move || lines.for_each(drop));
    child.wait().expect("serve stops");
    (listening, peak)
}

/// A full `audit verify`: seconds, and the peak MiB sampled while it runs.
fn verify_all(cwd: &Path) -> (Duration, f64) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["audit", "verify", "--dir", "n"])
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("audit verify starts");
    let mut peak: f64 = 0.0;
    loop {
        peak = peak.max(peak_mib(child.id()));
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "audit verify failed");
            return (started.elapsed(), peak);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn main() {
    let sizes: Vec<u64> = std::env::var("KF_BENCH_START_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let base = std::env::var_os("KF_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).expect("temporary directory");
    let d = tmp.path();
    kf(&["central", "init", "--dir", "central"], d);
    kf(&["central", "enroll-node", "--dir", "central", "--node-id", "n", "--region", "17", "--out", "n.bundle"], d);
    kf(&["node", "init", "--dir", "n", "--bundle", "n.bundle"], d);
    let dir = NodeDir::new(d.join("n"));
    println!("start-up with an audit log of N entries (serve: time to listen and peak memory then)");
    println!(
        "  {:>9}  {:>24}  {:>22}  {:>22}",
        "entries", "first start (new since)", "next start", "audit verify (all)"
    );
    for n in sizes {
        grow(&dir, n);
        let (first, first_mib) = start(d);
        let (next, next_mib) = start(d);
        let (all, all_mib) = verify_all(d);
        println!(
            "  {n:>9}  {:>10.2?} {:>7.1} MiB  {:>10.2?} {:>7.1} MiB  {:>10.2?} {:>7.1} MiB",
            first, first_mib, next, next_mib, all, all_mib
        );
    }
}
