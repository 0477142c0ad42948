//! Every command that changes a node, killed at each of its flushes: afterwards the change and its
//! audit entry are both on disk, or neither is.
//!
//! Finding (reliability 3): killing `snapshot import` and `authz import` at their fsyncs left a new
//! snapshot current (3 of 10 kill points), a new authorization active (5 of 10) or an
//! authorization closed (9 of 13) with no audit entry; staff enrolment had the same order.
//!
//! The kill is `strace`'s fault injection: SIGKILL on entry to the N-th `fsync` (or `fdatasync`)
//! the command makes, for every N until the command runs to its end.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Fixture, copy_dir, ok};
use kaigo_field::audit::{Action, Outcome};
use kaigo_field::node::{Node, NodeDir};

/// What a command changes, and how to see whether it did.
struct Case {
    name: &'static str,
    args: Vec<String>,
    action: Action,
    /// Whether the change is in the store.
    changed: Box<dyn Fn(&Node) -> bool>,
}

/// The commands, given the id of the authorization in `b.kfauth`.
fn cases(b: String) -> Vec<Case> {
    let to = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let strings = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        Case {
            name: "snapshot import",
            args: strings(&["snapshot", "import", "--dir", "n", "v2.kfsnap", "--quiet"]),
            action: Action::SnapshotImport,
            changed: Box::new(|node| node.current_manifest().unwrap().unwrap().1.snapshot_version == 2),
        },
        Case {
            name: "authz import",
            args: strings(&["authz", "import", "--dir", "n", "b.kfauth"]),
            action: Action::AuthorizationImport,
            changed: Box::new(move |node| node.store.active_authorization().unwrap().is_some_and(|a| a.id == b)),
        },
        Case {
            name: "authz close",
            args: strings(&["authz", "close", "--dir", "n"]),
            action: Action::AuthorizationClose,
            changed: Box::new(|node| node.store.active_authorization().unwrap().is_none()),
        },
        Case {
            name: "staff add",
            args: strings(&[
                "staff",
                "add",
                "--dir",
                "n",
                "--name",
                "能登 花子",
                "--facility",
                "1772090005",
                "--role",
                "support",
            ]),
            action: Action::Enrol,
            changed: Box::new(|node| node.store.all_staff().unwrap().iter().any(|s| s.name == "能登 花子")),
        },
        Case {
            name: "clock forward",
            args: vec!["clock".into(), "forward".into(), "--dir".into(), "n".into(), "--to".into(), to, "--yes".into()],
            action: Action::ClockMove,
            changed: Box::new(|node| node.store.trusted_time().unwrap().offset_seconds > 0),
        },
    ]
}

/// The successful entries of `action` in the node's log.
fn recorded(node: &Node, action: Action) -> usize {
    let entries = node.store.audit_entries(1).unwrap();
    entries.iter().filter(|e| e.action == action.name() && e.outcome == Outcome::Ok.name()).count()
}

/// Runs `args` under strace, killed on entry to its `n`-th call of `syscall`. Returns whether
/// it was killed (false: it ran to its end first).
fn run_killed_at(dir: &Path, args: &[String], syscall: &str, n: u32) -> bool {
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={syscall}"))
        .arg("-e")
        .arg(format!("inject={syscall}:signal=KILL:when={n}"))
        .arg(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "error")
        .output()
        .expect("strace runs (the CI installs it)");
    let killed = !out.status.success();
    if killed {
        // Killed by the injected signal, not refused: a refusal says why on stderr.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("エラー") && !stderr.contains("Error"), "{args:?} failed rather than died: {stderr}");
    }
    killed
}

#[test]
fn a_command_killed_at_any_flush_leaves_its_change_and_its_entry_together_or_neither() {
    let f = Fixture::new(20);
    f.authorized_node();
    // Another authorization for the snapshot the node holds, then the next snapshot.
    let mut args = Fixture::drill_args("n", "172049,172057", "b.kfauth");
    args.extend(["--days", "20"]);
    ok(&args, f.dir());
    f.snapshot("v2.kfsnap");
    let code = std::fs::read_to_string(f.path("b.kfauth")).unwrap();
    let b = kaigo_field::authz::SignedAuthorization::parse(&code).unwrap().authorization.id;

    let mut kill_points = 0;
    let mut seen = Vec::new();
    for case in cases(b) {
        let before_case = kill_points;
        for syscall in ["fsync", "fdatasync"] {
            for n in 1.. {
                assert!(n < 200, "{}: more flushes than expected", case.name);
                let run = tempfile::tempdir().unwrap();
                copy_dir(f.dir(), run.path());
                let before = {
                    let node = Node::open(&NodeDir::new(run.path().join("n"))).unwrap();
                    assert!(!(case.changed)(&node), "{}: the template already has the change", case.name);
                    recorded(&node, case.action)
                };
                let killed = run_killed_at(run.path(), &case.args, syscall, n);
                let node = Node::open(&NodeDir::new(run.path().join("n"))).unwrap();
                let changed = (case.changed)(&node);
                let entry = recorded(&node, case.action) > before;
                assert_eq!(
                    changed, entry,
                    "{} killed at {syscall} #{n}: change on disk {changed}, its audit entry {entry}",
                    case.name
                );
                let verified = node.verify_audit().unwrap();
                assert!(verified.is_ok(), "{} killed at {syscall} #{n}: {verified:?}", case.name);
                if !killed {
                    assert!(changed, "{} ran to its end without its change", case.name);
                    break;
                }
                kill_points += 1;
            }
        }
        seen.push(format!("{} {}", case.name, kill_points - before_case));
    }
    // Each command flushes several times (its file, the seal state, the log's commit).
    assert!(kill_points >= 10, "only {kill_points} kill points: is strace injecting?");
    eprintln!("{kill_points} kill points ({}), each left both or neither", seen.join(", "));
}
