//! Verifying the audit log at start without reading all of it: a start verifies what was
//! written since the anchor the previous start left (signed, in the store), in one read
//! transaction, row by row; `audit verify` still checks the whole log. And a verification never
//! raises a false alarm while a writer commits.

mod common;

use std::path::Path;
use std::sync::Arc;

use kaigo_field::audit::{Action, NewEntry, Outcome};
use kaigo_field::clock::ManualClock;
use kaigo_field::node::{Node, NodeDir};

/// A node `n` (real binary), then `batches` commits of 10 entries through the library.
fn node_with_entries(batches: usize) -> (common::Fixture, NodeDir) {
    let f = common::Fixture::new(10);
    f.node("n", "17");
    let dir = NodeDir::new(f.path("n"));
    append(&dir.root, batches);
    (f, dir)
}

fn append(dir: &Path, batches: usize) {
    let mut node = Node::open(&NodeDir::new(dir)).unwrap();
    let secret = Arc::new(node.secret_key(None).unwrap());
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    for b in 0..batches {
        let batch: Vec<NewEntry> =
            (0..10).map(|i| NewEntry::new(&format!("S{b}-{i}"), Action::View, Outcome::Ok, "record")).collect();
        node.audit(secret.clone(), clock.clone(), &batch).unwrap();
    }
}

/// Rewrites the detail of entry `seq` behind the triggers' back, as someone with the disk could.
fn tamper(dir: &Path, seq: u64) {
    let db = rusqlite::Connection::open(dir.join("node.db")).unwrap();
    db.execute_batch("DROP TRIGGER audit_no_update").unwrap();
    db.execute("UPDATE audit SET detail = 'nothing to see' WHERE seq = ?1", [seq as i64]).unwrap();
}

#[test]
fn a_start_verifies_what_was_written_since_the_last_start_and_audit_verify_all_of_it() {
    let (_f, dir) = node_with_entries(20);
    let node = Node::open(&dir).unwrap();
    let secret = node.secret_key(None).unwrap();
    let first = node.verify_audit_at_start(&secret).unwrap().expect("a clean log");
    assert_eq!(first.entries, node.store.audit_head().unwrap().unwrap().0);
    assert!(first.entries > 200);
    drop(node);

    // Entries written after the anchor are verified at the next start, and a change to them is
    // caught there.
    append(&dir.root, 5);
    let changed = first.entries + 29;
    tamper(&dir.root, changed);
    let node = Node::open(&dir).unwrap();
    let fault = node.verify_audit_at_start(&secret).unwrap().expect_err("a change after the anchor");
    assert_eq!(fault.seq, changed);
    drop(node);

    // A change before the anchor is not re-read at start (that is what makes a start cheap), but
    // the full verification finds it.
    let (_f, dir) = node_with_entries(20);
    let node = Node::open(&dir).unwrap();
    let secret = node.secret_key(None).unwrap();
    node.verify_audit_at_start(&secret).unwrap().expect("a clean log");
    drop(node);
    tamper(&dir.root, 50);
    let node = Node::open(&dir).unwrap();
    assert!(node.verify_audit_at_start(&secret).unwrap().is_ok());
    assert_eq!(node.verify_audit().unwrap().expect_err("the full check").seq, 50);
}

#[test]
fn an_anchor_not_signed_by_the_node_or_past_a_cut_tail_is_not_trusted() {
    let (_f, dir) = node_with_entries(10);
    let node = Node::open(&dir).unwrap();
    let secret = node.secret_key(None).unwrap();
    node.verify_audit_at_start(&secret).unwrap().expect("a clean log");
    drop(node);

    // An anchor moved forward by hand (to skip entries) fails its signature: the whole log is
    // verified, and a change anywhere is found.
    tamper(&dir.root, 20);
    let db = rusqlite::Connection::open(dir.root.join("node.db")).unwrap();
    let anchor: String =
        db.query_row("SELECT value FROM node_meta WHERE key = 'audit_anchor'", [], |r| r.get(0)).unwrap();
    let mut parts: Vec<String> = anchor.split(' ').map(str::to_owned).collect();
    parts[0] = "100".into();
    db.execute("UPDATE node_meta SET value = ?1 WHERE key = 'audit_anchor'", [parts.join(" ")]).unwrap();
    let node = Node::open(&dir).unwrap();
    assert_eq!(node.verify_audit_at_start(&secret).unwrap().expect_err("the whole log").seq, 20);
    drop(node);

    // The entries up to the anchor cut off (with their checkpoints): the anchor's entry is gone.
    let (_f, dir) = node_with_entries(10);
    let node = Node::open(&dir).unwrap();
    let secret = node.secret_key(None).unwrap();
    let report = node.verify_audit_at_start(&secret).unwrap().expect("a clean log");
    drop(node);
    let db = rusqlite::Connection::open(dir.root.join("node.db")).unwrap();
    db.execute_batch(
        "DROP TRIGGER audit_no_delete; DROP TRIGGER audit_checkpoint_no_delete;
         DELETE FROM audit WHERE seq > 50; DELETE FROM audit_checkpoint WHERE seq > 50;",
    )
    .unwrap();
    let node = Node::open(&dir).unwrap();
    let fault = node.verify_audit_at_start(&secret).unwrap().expect_err("a cut tail");
    assert_eq!(fault.seq, report.entries);
}

/// Finding (reliability 4): `audit verify` on a live node raised false alarms (entries and
/// checkpoints read in two statements outside one transaction). One read transaction for the
/// whole verification: a writer committing all the while never makes it fail.
#[test]
fn verifying_while_a_writer_commits_raises_no_false_alarm() {
    let (_f, dir) = node_with_entries(5);
    let writer_dir = dir.root.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut commits = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && commits < 5_000 {
                append(&writer_dir, 1);
                commits += 1;
            }
            commits
        })
    };
    let node = Node::open(&dir).unwrap();
    for run in 0..50 {
        let report = node.verify_audit().unwrap().unwrap_or_else(|f| panic!("run {run}: false alarm: {f}"));
        assert!(report.entries >= 51);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0, "the writer committed while the log was verified");
}

/// Finding (reliability 2): the writer read the head outside its write transaction, so a
/// command beside the serving node's writer failed with `UNIQUE constraint failed: audit.seq`.
/// Two writers on their own connections now take turns: every batch lands, the log verifies.
#[test]
fn two_writers_take_turns_and_never_chain_to_the_same_head() {
    let (_f, dir) = node_with_entries(1);
    let before = Node::open(&dir).unwrap().store.audit_head().unwrap().unwrap().0;
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let root = dir.root.clone();
            std::thread::spawn(move || {
                let mut node = Node::open(&NodeDir::new(&root)).unwrap();
                let secret = Arc::new(node.secret_key(None).unwrap());
                let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
                let mut failed = 0;
                for _ in 0..150 {
                    let batch = [NewEntry::new("K7QM-3XDA", Action::View, Outcome::Ok, "record")];
                    if let Err(e) = node.audit(secret.clone(), clock.clone(), &batch) {
                        eprintln!("{e}");
                        failed += 1;
                    }
                }
                failed
            })
        })
        .collect();
    let failed: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(failed, 0, "no batch failed for a race");
    let node = Node::open(&dir).unwrap();
    let report = node.verify_audit().unwrap().expect("the log verifies");
    assert_eq!(report.entries, before + 300);
}
