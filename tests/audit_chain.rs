//! The audit chain: over 10,000 random single mutations (edit, deletion, reordering, insertion,
//! truncation followed by re-appending), `audit::verify` finds every one; and the `audit`
//! commands find tampering done to the database file itself.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kaigo_field::audit::{self, Action, ChainWriter, Checkpoint, Entry, NewEntry, Outcome};
use kaigo_field::clock::ManualClock;
use kaigo_field::keys::{AuditSealKey, NodeSecretKey, SealState};
use kaigo_field::model::PersonId;
use kaigo_field::store::Store;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const NODE: &str = "n1";

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-02T09:00:00+09:00").unwrap().with_timezone(&Utc)
}

fn person(i: usize) -> PersonId {
    PersonId::parse(&format!("{i:032x}")).unwrap()
}

fn entry(i: usize) -> NewEntry {
    let mut e = NewEntry::new(&format!("staff-{}", i % 7), Action::View, Outcome::Ok, "record");
    e.subjects = vec![person(i % 13)];
    e.purpose = Some("避難所での支援".into());
    e.facility = Some("1772090005".into());
    e
}

/// A real log written by the real writer: 120 entries (the node's init first) in batches of
/// 1–20, each batch with its signed and sealed checkpoint.
fn log() -> (Vec<Entry>, Vec<Checkpoint>, Arc<NodeSecretKey>, ChainWriter) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("node.db")).unwrap();
    let secret = Arc::new(NodeSecretKey::generate());
    let clock = ManualClock::new(start());
    let seal = tmp.path().join("audit-seal.key");
    SealState::genesis(AuditSealKey::generate(), start()).save(&seal).unwrap();
    let writer = ChainWriter::new(NODE, secret.clone(), seal, Arc::new(clock.clone()));
    let mut i = 0;
    let mut size = 1;
    while i < 120 {
        let batch: Vec<NewEntry> = (i..(i + size).min(120))
            .map(|i| {
                if i == 0 {
                    NewEntry::new("coordinator", Action::NodeInit, Outcome::Ok, "provisioned")
                } else {
                    entry(i)
                }
            })
            .collect();
        writer.append(&store, &batch).unwrap();
        clock.advance(chrono::Duration::seconds(7));
        i += batch.len();
        size = size % 20 + 3;
    }
    (store.audit_entries(1).unwrap(), store.audit_checkpoints().unwrap(), secret, writer)
}

#[derive(Debug, Clone)]
enum Mutation {
    Edit {
        at: usize,
        field: u8,
        salt: u16,
    },
    Delete {
        at: usize,
    },
    Swap {
        a: usize,
        b: usize,
    },
    Insert {
        at: usize,
        copy_of: usize,
    },
    /// The attacker cuts the log at `at` and appends `count` entries of their own, with hashes
    /// recomputed so that the chain itself is consistent.
    TruncateAndAppend {
        at: usize,
        count: usize,
    },
}

fn mutation(len: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..len, 0u8..10, any::<u16>()).prop_map(|(at, field, salt)| Mutation::Edit { at, field, salt }),
        (0..len).prop_map(|at| Mutation::Delete { at }),
        (0..len, 0..len).prop_filter("two places", |(a, b)| a != b).prop_map(|(a, b)| Mutation::Swap { a, b }),
        (0..=len, 0..len).prop_map(|(at, copy_of)| Mutation::Insert { at, copy_of }),
        (0..len, 1usize..6).prop_map(|(at, count)| Mutation::TruncateAndAppend { at, count }),
    ]
}

/// Applies a mutation; returns false when it happens to change nothing (then it is not a
/// mutation and nothing must be detected).
fn apply(m: &Mutation, entries: &mut Vec<Entry>) -> bool {
    let before = entries.clone();
    match *m {
        Mutation::Edit { at, field, salt } => {
            let e = &mut entries[at];
            let tag = format!("x{salt}");
            match field {
                0 => e.operator.push_str(&tag),
                1 => e.action = "export".into(),
                2 => e.subjects = vec![person(usize::from(salt) + 1000).as_str().to_owned()],
                3 => e.purpose = Some(tag),
                4 => e.outcome = if e.outcome == "ok" { "denied".into() } else { "ok".into() },
                5 => e.wall_time = "2023-12-31T00:00:00.000Z".into(),
                6 => e.facility = None,
                7 => e.detail.push_str(&tag),
                8 => e.hash = e.compute_hash().replace('a', "b").replace('1', "2"),
                _ => e.mono_ms += u64::from(salt) + 1,
            }
        }
        Mutation::Delete { at } => {
            entries.remove(at);
        }
        Mutation::Swap { a, b } => entries.swap(a, b),
        Mutation::Insert { at, copy_of } => {
            let copy = entries[copy_of].clone();
            entries.insert(at, copy);
        }
        Mutation::TruncateAndAppend { at, count } => {
            entries.truncate(at);
            let (mut seq, mut prev) =
                entries.last().map_or((0, hex::encode(audit::GENESIS)), |e| (e.seq, e.hash.clone()));
            for k in 0..count {
                seq += 1;
                let mut e = before[0].clone();
                e.seq = seq;
                e.operator = format!("intruder-{k}");
                e.prev_hash = prev.clone();
                e.hash = e.compute_hash();
                prev = e.hash.clone();
                entries.push(e);
            }
        }
    }
    *entries != before
}

#[test]
fn ten_thousand_random_mutations_are_all_detected() {
    let (entries, checkpoints, secret, _) = log();
    let key = secret.public();
    assert_eq!(audit::verify(&entries, &checkpoints, NODE, &key).unwrap().entries, 120);
    let mut runner = TestRunner::new(Config { cases: 10_000, failure_persistence: None, ..Config::default() });
    let detected = std::cell::Cell::new(0);
    runner
        .run(&mutation(entries.len()), |m| {
            let mut mutated = entries.clone();
            if apply(&m, &mut mutated) {
                let result = audit::verify(&mutated, &checkpoints, NODE, &key);
                prop_assert!(result.is_err(), "{m:?} went undetected");
                detected.set(detected.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    assert!(detected.get() > 9_000, "most mutations change something: {}", detected.get());
}

#[test]
fn checkpoints_cannot_be_forged_or_dropped_to_hide_a_truncation() {
    let (entries, checkpoints, secret, _) = log();
    let key = secret.public();
    // A checkpoint re-signed by another key.
    let stranger = NodeSecretKey::generate();
    let mut forged = checkpoints.clone();
    let last = forged.last_mut().unwrap();
    last.signature = hex::encode(stranger.sign(b"anything"));
    let fault = audit::verify(&entries, &forged, NODE, &key).unwrap_err();
    assert!(fault.what.contains("署名"), "{fault}");
    // Entries cut off below the last checkpoint.
    let fault = audit::verify(&entries[..100], &checkpoints, NODE, &key).unwrap_err();
    assert_eq!(fault.seq, 101);
    // Entries with no checkpoint over them (the checkpoint rows dropped).
    let fault = audit::verify(&entries, &checkpoints[..checkpoints.len() - 1], NODE, &key).unwrap_err();
    assert!(fault.what.contains("チェックポイントのない"), "{fault}");
}

#[test]
fn audit_commands_verify_export_and_list_and_catch_tampering_in_the_file() {
    let f = common::Fixture::new(20);
    f.authorized_node();
    common::ok(&["authz", "close", "--dir", "n"], f.dir());
    let out = common::ok(&["audit", "verify", "--dir", "n"], f.dir());
    assert!(out.contains("監査ログは正常です: 5 件"), "{out}");

    let jsonl = common::ok(&["audit", "export", "--dir", "n"], f.dir());
    let actions: Vec<String> = jsonl
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].as_str().unwrap().to_owned())
        .collect();
    // `node init` makes the first coordinator, and that enrolment is logged too.
    assert_eq!(actions, ["node_init", "enrol", "snapshot_import", "authorization_import", "authorization_close"]);
    let fhir = common::ok(&["audit", "export", "--dir", "n", "--from", "3", "--format", "fhir"], f.dir());
    let first: serde_json::Value = serde_json::from_str(fhir.lines().next().unwrap()).unwrap();
    assert_eq!(first["resourceType"], "AuditEvent");
    assert_eq!(first["id"], "n-3");
    let none = common::ok(&["audit", "person", "--dir", "n", &format!("{:032x}", 5)], f.dir());
    assert!(none.contains("アクセスはありません"), "{none}");

    // Someone edits the file directly: drops the guard triggers and rewrites entry 2.
    let db = rusqlite::Connection::open(f.path("n/node.db")).unwrap();
    db.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit SET operator = 'someone-else' WHERE seq = 2;")
        .unwrap();
    drop(db);
    let err = common::fails(&["audit", "verify", "--dir", "n"], f.dir());
    assert!(err.contains("2 番に不正があります") && err.contains("書き換え"), "{err}");
    // And the node refuses to serve on a log that does not verify.
    let err = common::fails(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir());
    assert!(err.contains("起動しません"), "{err}");
}
