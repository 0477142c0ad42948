//! Snapshot benchmark: synth, build, import and file size for a large synthetic region.
//!
//! `cargo bench --bench snapshot` (1,000,000 persons by default; set KF_BENCH_PERSONS to change).
//! Targets on the reference 2-core machine: build ≤ 60 s, import ≤ 30 s, ≤ 1.5 KB per person.
//! Prints its figures; asserts nothing about time, because a benchmark is not a test.

use std::time::Instant;

use kaigo_field::central::{self, CentralDir, SnapshotOptions};
use kaigo_field::cli::{SynthArgs, synth_command};
use kaigo_field::clock;
use kaigo_field::node::{self, Node, NodeDir};
use kaigo_field::region::Region;

fn main() {
    let persons: u64 = std::env::var("KF_BENCH_PERSONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let root = tmp.path();
    let clock = clock::system();
    let central_dir = CentralDir::new(root.join("central"));
    central::init(&central_dir, clock.as_ref()).expect("central init");

    let csv = root.join("persons.csv");
    let started = Instant::now();
    synth_command(&SynthArgs {
        municipalities: "172014,172049,172057,174611,174637,172031".into(),
        persons,
        seed: 1,
        out: csv.clone(),
        queries: None,
        query_count: 0,
        as_of: None,
        quiet: true,
    })
    .expect("synth");
    let synth_secs = started.elapsed().as_secs_f64();
    let csv_bytes = std::fs::metadata(&csv).expect("csv").len();

    let snap = root.join("region.kfsnap");
    let options = SnapshotOptions { encoding: None, skip_invalid: false, synthetic: true, quiet: true };
    let started = Instant::now();
    let outcome = central::build_snapshot(&central_dir, &csv, &snap, &options, clock.as_ref()).expect("build");
    let build_secs = started.elapsed().as_secs_f64();
    let snap_bytes = std::fs::metadata(&snap).expect("snapshot").len();
    assert_eq!(outcome.manifest.record_count, persons, "every synthetic row is valid");

    let node_dir = NodeDir::new(root.join("node"));
    let bundle = root.join("bench.bundle");
    central::enroll_node(&central_dir, "bench", &Region::parse("17").expect("region"), &bundle, clock.as_ref())
        .expect("enroll");
    node::init(&node_dir, &bundle, None).expect("node init");
    let node = Node::open(&node_dir).expect("node open");
    let started = Instant::now();
    let writer = node.writer(std::sync::Arc::new(node.secret_key(None).expect("node key")), clock.clone());
    node.import(&snap, clock.as_ref(), true, &writer, &kaigo_field::audit::by_coordinator).expect("import");
    let import_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut opened = 0u64;
    central::open_snapshot(&central_dir, &snap, |_| opened += 1).expect("open");
    let open_secs = started.elapsed().as_secs_f64();
    assert_eq!(opened, persons);

    println!("snapshot benchmark, {persons} persons");
    println!("  synth (CSV {:.1} MB)            {synth_secs:8.2} s", csv_bytes as f64 / 1e6);
    println!("  build snapshot                  {build_secs:8.2} s   (target ≤ 60 s)");
    println!("  import on node (verify + copy)  {import_secs:8.2} s   (target ≤ 30 s)");
    println!("  decrypt all records (with key)  {open_secs:8.2} s");
    println!("  snapshot size                   {:8.1} MB", snap_bytes as f64 / 1e6);
    println!("  per person                      {:8.0} B    (target ≤ 1536 B)", snap_bytes as f64 / persons as f64);
}
