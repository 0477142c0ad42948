//! On a simulated clock, over random sequences of authorization imports (new, extended, revoked,
//! replayed), clock moves (forward for everyone, backward for the node's clock only), restarts
//! and closes: no lookup succeeds outside the window of the newest serial, and inside it (with a
//! trustworthy clock) lookups do succeed.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration, Utc};
use kaigo_field::audit::by_coordinator;
use kaigo_field::central::{self, AuthorizeRequest, CentralDir, SnapshotOptions};
use kaigo_field::cli::{SynthArgs, synth_command};
use kaigo_field::clock::{Clock, ManualClock};
use kaigo_field::gate::{Gate, ImportOutcome};
use kaigo_field::model::MunicipalityCode;
use kaigo_field::node::{self, Node, NodeDir};
use kaigo_field::region::Region;
use proptest::prelude::*;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T16:00:00+09:00").unwrap().with_timezone(&Utc)
}

/// A central with a 20-person snapshot and an enrolled node holding it, made once and copied
/// for every case.
fn template() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let clock = ManualClock::new(start());
        let central_dir = CentralDir::new(root.join("central"));
        central::init(&central_dir, &clock).unwrap();
        synth_command(&SynthArgs {
            municipalities: "172049,172057".into(),
            persons: 20,
            seed: 3,
            out: root.join("p.csv"),
            queries: None,
            query_count: 0,
            as_of: None,
            quiet: true,
        })
        .unwrap();
        let options = SnapshotOptions { encoding: None, skip_invalid: false, synthetic: false, quiet: true };
        central::build_snapshot(&central_dir, &root.join("p.csv"), &root.join("r.kfsnap"), &options, &clock).unwrap();
        central::enroll_node(&central_dir, "n1", &Region::parse("17").unwrap(), &root.join("n1.bundle"), &clock)
            .unwrap();
        let node_dir = NodeDir::new(root.join("node"));
        node::init(&node_dir, &root.join("n1.bundle"), None).unwrap();
        let node = Node::open(&node_dir).unwrap();
        let writer = node.writer(Arc::new(node.secret_key(None).unwrap()), Arc::new(clock.clone()));
        node.import(&root.join("r.kfsnap"), &clock, true, &writer, &by_coordinator).unwrap();
        tmp
    })
    .path()
}

/// The persons of 輪島市 (172049) in the template's CSV: all an authorization for it opens.
fn wajima_persons() -> usize {
    let mut reader = csv::Reader::from_path(template().join("p.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = headers.iter().position(|h| h == "municipality_code").unwrap();
    let count = reader.records().filter(|r| &r.as_ref().unwrap()[column] == "172049").count();
    assert!(count > 0 && count < 20, "both municipalities have people");
    count
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A new serial with a window starting `start_min` from now, `len_min` long.
    Issue {
        start_min: i64,
        len_min: i64,
    },
    /// The central ends the authorization now (a newer serial whose window is over).
    Revoke,
    /// Someone imports an old code again.
    Replay {
        which: usize,
    },
    Advance {
        minutes: i64,
    },
    /// The node's clock (only) falls back, as a Raspberry Pi's does without its battery clock.
    NodeClockBack {
        minutes: i64,
    },
    Restart,
    Close,
    Lookup,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (-120i64..120, 0i64..900).prop_map(|(start_min, len_min)| Op::Issue { start_min, len_min }),
        1 => Just(Op::Revoke),
        1 => (0usize..8).prop_map(|which| Op::Replay { which }),
        3 => (0i64..600).prop_map(|minutes| Op::Advance { minutes }),
        1 => (1i64..240).prop_map(|minutes| Op::NodeClockBack { minutes }),
        1 => Just(Op::Restart),
        1 => Just(Op::Close),
        5 => Just(Op::Lookup),
    ]
}

struct Accepted {
    serial: u32,
    activate: bool,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

fn run(ops: &[Op]) -> Result<(tempfile::TempDir, usize), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    copy_dir(template(), root);
    let central_dir = CentralDir::new(root.join("central"));
    let node_dir = NodeDir::new(root.join("node"));
    let true_clock = ManualClock::new(start());
    let node_clock = ManualClock::new(start());
    let mut node = Node::open(&node_dir).unwrap();
    let mut gate = Gate::new();
    let secret = node.secret_key(None).unwrap();
    let writer = node.writer(Arc::new(node.secret_key(None).unwrap()), Arc::new(node_clock.clone()));

    let mut codes: Vec<String> = Vec::new();
    let mut newest: Option<Accepted> = None;
    let mut closed_since_newest = false;
    // The node's trusted-time mark as the rules define it: the snapshot's creation time, raised
    // by every accepted authorization's issue time and by every lookup made with a clock at least
    // TRUSTED_TIME_STEP_SECONDS past it.
    let mut mark: DateTime<Utc> = start();
    let mut successes = 0;

    let issue = |req_window: Option<(DateTime<Utc>, DateTime<Utc>)>, codes: &mut Vec<String>| {
        let now = true_clock.now();
        let (not_before, not_after) = req_window.unwrap_or((now, now));
        let req = AuthorizeRequest {
            disaster: "訓練ではない地震".into(),
            municipalities: vec![MunicipalityCode::parse("172049").unwrap()],
            nodes: vec!["n1".into()],
            facilities: vec![],
            not_before: Some(not_before),
            not_after: Some(not_after),
            days: None,
            drill: false,
            id: Some("p".into()),
            serial: None,
            snapshot_id: None,
            sections: None,
        };
        let (_, code) = central::authorize(&central_dir, &req, &true_clock).unwrap();
        codes.push(code.clone());
        code
    };

    for op in ops {
        let code = match op {
            Op::Issue { start_min, len_min } => {
                let nb = true_clock.now() + Duration::minutes(*start_min);
                Some(issue(Some((nb, nb + Duration::minutes(*len_min))), &mut codes))
            }
            Op::Revoke => Some(issue(None, &mut codes)),
            Op::Replay { which } if !codes.is_empty() => Some(codes[which % codes.len()].clone()),
            Op::Replay { .. } => None,
            Op::Advance { minutes } => {
                true_clock.advance(Duration::minutes(*minutes));
                node_clock.advance(Duration::minutes(*minutes));
                None
            }
            Op::NodeClockBack { minutes } => {
                node_clock.advance(Duration::minutes(-minutes));
                None
            }
            Op::Restart => {
                drop(gate);
                drop(node);
                node = Node::open(&node_dir).unwrap();
                gate = Gate::new();
                None
            }
            Op::Close => {
                node.close_authorization(&node_clock, &writer, &by_coordinator).unwrap();
                closed_since_newest = true;
                None
            }
            Op::Lookup => {
                let t = node.now(&node_clock).unwrap();
                let result = gate.access(&mut node, &secret, &node_clock);
                let allowed = newest.as_ref().is_some_and(|a| {
                    a.activate && !closed_since_newest && a.not_before <= t && t < a.not_after && t >= mark
                });
                match &result {
                    Ok(open) => {
                        prop_assert!(allowed, "lookup at {t} succeeded outside the newest window (mark {mark})");
                        // Only the authorization's municipality (輪島市) is open, not the
                        // whole snapshot of 20.
                        prop_assert_eq!(open.index.len(), wajima_persons());
                        prop_assert_eq!(open.authorization.serial, newest.as_ref().unwrap().serial);
                        successes += 1;
                    }
                    Err(denied) => prop_assert!(!allowed, "lookup at {t} refused inside the window: {denied}"),
                }
                // The node writes its running time at most every TRUSTED_TIME_STEP_SECONDS.
                if t >= mark + Duration::seconds(kaigo_field::limits::TRUSTED_TIME_STEP_SECONDS) {
                    mark = t;
                }
                if result.is_err() && newest.as_ref().is_some_and(|a| t >= a.not_after) {
                    // The node records an expiry it notices as a close.
                    closed_since_newest = true;
                }
                None
            }
        };
        if let Some(code) = code {
            // Refused imports change nothing; the model only follows accepted ones.
            if let Ok(outcome) = node.import_authorization(&code, &secret, &node_clock, &writer, &by_coordinator) {
                let signed = kaigo_field::authz::SignedAuthorization::parse(&code).unwrap();
                let a = &signed.authorization;
                if let Some(prev) = &newest {
                    prop_assert!(a.serial > prev.serial, "serial {} accepted after {}", a.serial, prev.serial);
                }
                newest = Some(Accepted {
                    serial: a.serial,
                    activate: matches!(outcome, ImportOutcome::Activated { .. }),
                    not_before: a.not_before(),
                    not_after: a.not_after(),
                });
                closed_since_newest = false;
                mark = mark.max(a.issued_at());
            }
        }
    }
    drop(gate);
    drop(node);
    Ok((tmp, successes))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_lookup_succeeds_outside_the_window_of_the_newest_serial(ops in proptest::collection::vec(op(), 1..30)) {
        run(&ops)?;
    }
}

#[test]
fn a_restart_inside_the_window_comes_back_active_and_after_it_inactive_without_the_code() {
    let ops = [
        Op::Issue { start_min: 0, len_min: 60 },
        Op::Lookup,
        Op::Restart,
        Op::Advance { minutes: 30 },
        Op::Lookup,
        Op::Advance { minutes: 31 },
        Op::Restart,
        Op::Lookup,
    ];
    let (tmp, successes) = run(&ops).unwrap();
    assert_eq!(successes, 2, "both lookups inside the window succeeded, across a restart");
    // After the window the node keeps no code, so no wrapped data key, on disk.
    let node = Node::open(&NodeDir::new(tmp.path().join("node"))).unwrap();
    let row = node.store.authorization("p").unwrap().unwrap();
    assert!(!row.active && row.code.is_none(), "{row:?}");
    assert_eq!(row.closed_reason.as_deref(), Some(kaigo_field::gate::REASON_EXPIRED));
}

#[test]
fn a_clock_moved_forward_to_a_whole_minute_is_not_behind_its_own_mark() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(template(), tmp.path());
    let mut node = Node::open(&NodeDir::new(tmp.path().join("node"))).unwrap();
    // The device clock has a fraction of a second; the coordinator types whole minutes.
    let clock = ManualClock::new(start() + chrono::Duration::milliseconds(25_700));
    let to = start() + chrono::Duration::hours(5);
    let writer = node.writer(Arc::new(node.secret_key(None).unwrap()), Arc::new(clock.clone()));
    node.move_clock_forward(to, &clock, &writer, &by_coordinator).unwrap();
    let now = node.now(&clock).unwrap();
    assert!(now >= to, "the node's time {now} is behind the mark {to} it just set");
    assert!(now - to < chrono::Duration::seconds(1));
    assert!(!matches!(node.check_access(&clock), Err(kaigo_field::gate::Denied::ClockBehind { .. })));
}
