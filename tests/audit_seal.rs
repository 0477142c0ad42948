//! Forward-secure sealing of the audit log, on real node directories made by the real binary:
//! a node writes over many seal epochs (time driven by `ManualClock`), a thief copies the whole
//! node directory (database and every key) part way, and with what they took rewrites a middle
//! entry, deletes one, cuts the tail (with and without appending after), or wipes the log. The
//! central, with the starting seal key it kept at enrolment, catches each one with
//! `audit::verify_sealed`; a clean log, and one that went on after the theft unchanged, pass.
//! And `audit verify` and `serve` refuse a wiped log.

mod common;

use std::path::Path;

use common::copy_dir;
use std::sync::Arc;

use chrono::Duration;
use kaigo_field::audit::{self, Action, Checkpoint, Entry, Fault, HeadSeal, NewEntry, Outcome};
use kaigo_field::clock::{self, Clock, ManualClock};
use kaigo_field::keys::{AuditSealKey, NodeSecretKey, SealState};
use kaigo_field::limits::AUDIT_SEAL_EPOCH_SECONDS;
use kaigo_field::node::{Node, NodeDir};
use kaigo_field::store::Store;

const NODE: &str = "n";

/// Epochs written before the theft, and after it by the real node.
const EPOCHS_BEFORE: u64 = 6;
const EPOCHS_AFTER: u64 = 3;

/// Three commits of two entries in each epoch, the clock moved past the epoch's length first.
fn write_epochs(dir: &Path, clock: &ManualClock, epochs: u64) {
    let mut node = Node::open(&NodeDir::new(dir)).unwrap();
    let secret = Arc::new(node.secret_key(None).unwrap());
    for _ in 0..epochs {
        clock.advance(Duration::seconds(AUDIT_SEAL_EPOCH_SECONDS + 1));
        for i in 0..3 {
            let batch: Vec<NewEntry> =
                (0..2).map(|k| NewEntry::new(&format!("staff-{i}{k}"), Action::View, Outcome::Ok, "record")).collect();
            node.audit(secret.clone(), Arc::new(clock.clone()), &batch).unwrap();
            clock.advance(Duration::seconds(5));
        }
    }
}

fn log_of(dir: &Path) -> (Vec<Entry>, Vec<Checkpoint>) {
    let store = Store::open(&dir.join("node.db")).unwrap();
    (store.audit_entries(1).unwrap(), store.audit_checkpoints().unwrap())
}

/// A node whose log runs over `EPOCHS_BEFORE` epochs, and a copy of its directory: the theft.
struct Scene {
    f: common::Fixture,
    clock: ManualClock,
}

impl Scene {
    fn new() -> Scene {
        let f = common::Fixture::new(10);
        f.node(NODE, "17");
        // Past whatever the system clock said at `node init`, so the first write here starts
        // epoch 1.
        let clock = ManualClock::new(clock::system().now() + Duration::hours(1));
        write_epochs(&f.path(NODE), &clock, EPOCHS_BEFORE);
        copy_dir(&f.path(NODE), &f.path("stolen"));
        Scene { f, clock }
    }

    /// The central's check, with the seal key of epoch 0 it kept at enrolment.
    fn central_verify(&self, dir: &str, head: Option<&HeadSeal>) -> Result<audit::VerifyReport, Fault> {
        let key0 = AuditSealKey::load(&self.f.path(&format!("central/nodes/{NODE}.seal0"))).unwrap();
        let node = Node::open(&NodeDir::new(self.f.path(dir))).unwrap();
        let public = node.public_key().unwrap();
        let (entries, checkpoints) = log_of(&self.f.path(dir));
        audit::verify_sealed(&entries, &checkpoints, NODE, &public, &key0, head)
    }

    /// The head seal the node in `dir` would send with its log (the thief's, for a copy).
    fn head_seal(&self, dir: &str) -> HeadSeal {
        Node::open(&NodeDir::new(self.f.path(dir))).unwrap().head_seal(&self.clock).unwrap()
    }

    /// A fresh copy of the stolen directory to attack.
    fn attack(&self, name: &str) -> Thief {
        copy_dir(&self.f.path("stolen"), &self.f.path(name));
        let dir = self.f.path(name);
        let (entries, checkpoints) = log_of(&dir);
        Thief {
            secret: NodeSecretKey::load(&dir.join("node.key"), None).unwrap().unwrap(),
            seal: SealState::load(&dir.join("audit-seal.key")).unwrap(),
            dir,
            entries,
            checkpoints,
        }
    }
}

/// Someone holding a copy of the node directory: the database, `node.key` and the seal state.
struct Thief {
    dir: std::path::PathBuf,
    secret: NodeSecretKey,
    seal: SealState,
    entries: Vec<Entry>,
    checkpoints: Vec<Checkpoint>,
}

/// How the thief labels a checkpoint they seal again: with its old epoch (and the stolen key,
/// which is not that epoch's), or with the epoch of the key they hold.
#[derive(Debug, Clone, Copy)]
enum Label {
    Keep,
    Stolen,
}

impl Thief {
    /// Chains every entry again from 1, and signs and seals again with the stolen keys every
    /// checkpoint from the first whose head changed (checkpoints past the end are dropped, two
    /// that now end at the same entry become one).
    fn rechain_and_reseal(&mut self, label: Label) {
        let before: Vec<String> = self.entries.iter().map(|e| e.hash.clone()).collect();
        let mut prev = hex::encode(audit::GENESIS);
        for (i, e) in self.entries.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
            e.prev_hash = prev;
            e.hash = e.compute_hash();
            prev = e.hash.clone();
        }
        let len = self.entries.len() as u64;
        let mut out: Vec<Checkpoint> = Vec::new();
        let mut changed = false;
        for c in &self.checkpoints {
            let seq = c.seq.min(len);
            if seq == 0 || out.last().is_some_and(|l| l.seq >= seq) {
                continue;
            }
            let head = self.entries[seq as usize - 1].hash.clone();
            changed |= before.get(seq as usize - 1) != Some(&head) || seq != c.seq;
            if !changed {
                out.push(c.clone());
                continue;
            }
            let epoch = match label {
                Label::Keep => c.seal.as_ref().unwrap().epoch,
                Label::Stolen => self.seal.epoch,
            };
            let checkpoint =
                audit::make_checkpoint(NODE, seq, head, c.wall_time.clone(), &self.secret, epoch, self.seal.key());
            out.push(checkpoint);
        }
        self.checkpoints = out;
    }

    /// Appends `count` entries of the thief's own, sealed with the stolen key.
    fn append(&mut self, count: usize, label: Label) {
        let last_epoch = self.checkpoints.last().map_or(0, |c| c.seal.as_ref().unwrap().epoch);
        for k in 0..count {
            let mut e = self.entries.last().unwrap().clone();
            e.seq += 1;
            e.operator = format!("intruder-{k}");
            e.prev_hash = e.hash.clone();
            e.hash = e.compute_hash();
            self.entries.push(e);
        }
        let last = self.entries.last().unwrap();
        let epoch = match label {
            Label::Keep => last_epoch,
            Label::Stolen => self.seal.epoch,
        };
        let c = audit::make_checkpoint(
            NODE,
            last.seq,
            last.hash.clone(),
            last.wall_time.clone(),
            &self.secret,
            epoch,
            self.seal.key(),
        );
        self.checkpoints.push(c);
    }

    /// Writes the doctored log over the database in the copy, past the guard triggers.
    fn write_back(&self) {
        let db = rusqlite::Connection::open(self.dir.join("node.db")).unwrap();
        db.execute_batch(
            "DROP TRIGGER IF EXISTS audit_no_delete; DROP TRIGGER IF EXISTS audit_checkpoint_no_delete;
             DELETE FROM audit; DELETE FROM audit_checkpoint;",
        )
        .unwrap();
        drop(db);
        let store = Store::open(&self.dir.join("node.db")).unwrap();
        let mut from = 0;
        for c in &self.checkpoints {
            let batch: Vec<Entry> = self.entries.iter().filter(|e| e.seq > from && e.seq <= c.seq).cloned().collect();
            store.append_audit(&batch, c).unwrap();
            from = c.seq;
        }
    }
}

fn assert_fault(result: Result<audit::VerifyReport, Fault>, words: &[&str], case: &str) -> Fault {
    let fault = result.expect_err(case);
    assert!(words.iter().any(|w| fault.what.contains(w)), "{case}: {fault}");
    fault
}

#[test]
fn a_clean_log_and_one_that_went_on_after_the_theft_unchanged_pass_at_the_central() {
    let s = Scene::new();
    let head = s.head_seal("stolen");
    let report = s.central_verify("stolen", Some(&head)).unwrap();
    assert_eq!(report.epoch, EPOCHS_BEFORE, "one epoch per stretch of time");
    assert_eq!(report.entries, 2 + EPOCHS_BEFORE * 6, "node init, the first coordinator, then ours");

    write_epochs(&s.f.path(NODE), &s.clock, EPOCHS_AFTER);
    let head = s.head_seal(NODE);
    let report = s.central_verify(NODE, Some(&head)).unwrap();
    assert_eq!(report.epoch, EPOCHS_BEFORE + EPOCHS_AFTER);
    let out = common::ok(&["audit", "verify", "--dir", NODE], s.f.dir());
    assert!(out.contains("監査ログは正常です") && out.contains("中央"), "{out}");

    // The seal state file holds only the current key: not the one the central keeps.
    let key0 = AuditSealKey::load(&s.f.path(&format!("central/nodes/{NODE}.seal0"))).unwrap();
    let state = std::fs::read(s.f.path(&format!("{NODE}/audit-seal.key"))).unwrap();
    let key0_text = key0.to_file_text();
    let key0_b64 = key0_text.lines().nth(1).unwrap();
    assert!(!String::from_utf8_lossy(&state).contains(key0_b64));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.f.path(&format!("{NODE}/audit-seal.key"))).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_middle_entry_rewritten_with_the_stolen_keys_passes_on_the_node_but_not_at_the_central() {
    let s = Scene::new();
    for label in [Label::Keep, Label::Stolen] {
        let name = format!("rewrite-{label:?}");
        let mut t = s.attack(&name);
        let middle = t.entries.len() / 2;
        t.entries[middle].operator = "someone-else".into();
        t.rechain_and_reseal(label);
        t.write_back();
        if let Label::Keep = label {
            // What the outside test did: the node alone cannot tell, and says so.
            let out = common::ok(&["audit", "verify", "--dir", &name], s.f.dir());
            assert!(out.contains("中央との照合でだけ"), "{out}");
        }
        let head = s.head_seal(&name);
        assert_fault(s.central_verify(&name, Some(&head)), &["書き換え", "削除"], &name);
        assert_fault(s.central_verify(&name, None), &["書き換え", "削除"], &name);
    }
}

#[test]
fn a_middle_entry_deleted_with_the_stolen_keys_is_caught_at_the_central() {
    let s = Scene::new();
    for label in [Label::Keep, Label::Stolen] {
        let name = format!("delete-{label:?}");
        let mut t = s.attack(&name);
        let middle = t.entries.len() / 2;
        t.entries.remove(middle);
        t.rechain_and_reseal(label);
        t.write_back();
        let head = s.head_seal(&name);
        assert_fault(s.central_verify(&name, Some(&head)), &["書き換え", "削除"], &name);
    }
}

#[test]
fn a_cut_off_tail_is_caught_at_the_central_with_or_without_entries_appended_after() {
    let s = Scene::new();
    // Back to the end of epoch 2: what epochs 3 to 6 sealed is gone.
    let keep_to = |t: &Thief| t.checkpoints.iter().rfind(|c| c.seal.as_ref().unwrap().epoch == 2).unwrap().seq;

    let mut t = s.attack("cut");
    let end = keep_to(&t);
    t.entries.truncate(end as usize);
    t.checkpoints.retain(|c| c.seq <= end);
    t.write_back();
    // The node's own writer will not add to it: its seal state is ahead of the log.
    let mut node = Node::open(&NodeDir::new(&t.dir)).unwrap();
    let err = node
        .audit(
            Arc::new(NodeSecretKey::load(&t.dir.join("node.key"), None).unwrap().unwrap()),
            Arc::new(s.clock.clone()),
            &[NewEntry::new("x", Action::View, Outcome::Ok, "x")],
        )
        .unwrap_err();
    assert!(err.to_string().contains("末尾が消されています"), "{err}");
    let head = s.head_seal("cut");
    let fault = assert_fault(s.central_verify("cut", Some(&head)), &["切り詰め"], "cut");
    assert_eq!(fault.seq, end + 1);

    for label in [Label::Keep, Label::Stolen] {
        let name = format!("cut-append-{label:?}");
        let mut t = s.attack(&name);
        let end = keep_to(&t);
        t.entries.truncate(end as usize);
        t.checkpoints.retain(|c| c.seq <= end);
        t.append(3, label);
        t.write_back();
        let head = s.head_seal(&name);
        assert_fault(s.central_verify(&name, Some(&head)), &["切り詰め", "書き換え", "削除"], &name);
        assert_fault(s.central_verify(&name, None), &["切り詰め", "書き換え", "削除"], &name);
    }
}

#[test]
fn a_wiped_log_is_caught_and_so_is_one_started_again_with_the_stolen_keys() {
    let s = Scene::new();
    let mut t = s.attack("wiped");
    t.entries.clear();
    t.checkpoints.clear();
    t.write_back();
    assert_fault(s.central_verify("wiped", None), &["消去"], "wiped");

    for label in [Label::Keep, Label::Stolen] {
        let name = format!("restarted-{label:?}");
        let mut t = s.attack(&name);
        t.entries.truncate(1);
        t.checkpoints.clear();
        t.entries[0].detail = "provisioned again".into();
        let e = &mut t.entries[0];
        e.hash = e.compute_hash();
        let epoch = match label {
            Label::Keep => 0,
            Label::Stolen => t.seal.epoch,
        };
        let c = audit::make_checkpoint(NODE, 1, e.hash.clone(), e.wall_time.clone(), &t.secret, epoch, t.seal.key());
        t.checkpoints.push(c);
        t.write_back();
        let head = s.head_seal(&name);
        assert_fault(s.central_verify(&name, Some(&head)), &["書き換え", "消去", "切り詰め"], &name);
    }
}

#[test]
fn audit_verify_and_serve_refuse_a_log_that_was_wiped() {
    let f = common::Fixture::new(10);
    f.node(NODE, "17");
    let db = rusqlite::Connection::open(f.path(&format!("{NODE}/node.db"))).unwrap();
    db.execute_batch(
        "DROP TRIGGER audit_no_delete; DROP TRIGGER audit_checkpoint_no_delete;
         DELETE FROM audit; DELETE FROM audit_checkpoint;",
    )
    .unwrap();
    drop(db);
    let err = common::fails(&["audit", "verify", "--dir", NODE], f.dir());
    assert!(err.contains("記録が1件もありません（消去）") && err.contains("node_init"), "{err}");
    let err = common::fails(&["serve", "--dir", NODE, "--listen", "127.0.0.1:0"], f.dir());
    assert!(err.contains("消去") && err.contains("起動しません"), "{err}");
}

/// One commit of one entry on the node in `dir`, at the clock's time.
fn commit_one(dir: &Path, clock: &ManualClock) {
    let mut node = Node::open(&NodeDir::new(dir)).unwrap();
    let secret = Arc::new(node.secret_key(None).unwrap());
    node.audit(secret, Arc::new(clock.clone()), &[NewEntry::new("staff-1", Action::View, Outcome::Ok, "record")])
        .unwrap();
}

#[test]
fn a_crash_between_evolving_and_committing_and_an_older_state_put_back_both_leave_a_log_that_verifies() {
    let s = Scene::new();
    let dir = s.f.path(NODE);
    let state_path = dir.join("audit-seal.key");
    let older = std::fs::read(&state_path).unwrap();
    // A crash after the evolved state was written, before its commit: the state is one epoch
    // ahead of the log, and the next commit uses that epoch rather than skipping it.
    let mut state = SealState::load(&state_path).unwrap();
    state.evolve(s.clock.now());
    state.save(&state_path).unwrap();
    commit_one(&dir, &s.clock);
    let report = s.central_verify(NODE, Some(&s.head_seal(NODE))).unwrap();
    assert_eq!(report.epoch, EPOCHS_BEFORE + 1);
    // A second writer wrote its older state over the newer one: the next commit walks the key
    // forward to the log's epoch instead of sealing with one that has passed.
    std::fs::write(&state_path, &older).unwrap();
    assert_eq!(s.head_seal(NODE).epoch, EPOCHS_BEFORE + 1, "the head seal walks forward too");
    commit_one(&dir, &s.clock);
    let report = s.central_verify(NODE, Some(&s.head_seal(NODE))).unwrap();
    assert_eq!(report.epoch, EPOCHS_BEFORE + 1);
    assert_eq!(SealState::load(&state_path).unwrap().epoch, EPOCHS_BEFORE + 1, "and saved it");
}
