//! The audit log: every access and every change, appended to a hash chain in the node's SQLite
//! database and made durable before the response it records is sent.
//!
//! Each entry's hash covers the previous entry's hash and the entry's canonical encoding
//! (postcard of `Body`). Every commit also writes a checkpoint (sequence, head hash, time, seal
//! epoch) signed with the node's Ed25519 key and sealed with the epoch's forward-secure seal key
//! (`keys::SealState`), so every durable entry is covered by both. The seal key evolves one way
//! and the old one is erased; the central holds epoch 0's key, so only it can check the seals,
//! and a thief who copies the node cannot reseal what an earlier epoch sealed (docs/audit.md).
//! `AuditLog` is
//! the writer: a dedicated thread that takes entries from a bounded queue and commits all that
//! are waiting in one transaction (group commit), then answers each caller with a `Receipt`.
//! `Audited` is the only way for an HTTP handler to send personal data, and it needs a
//! `Receipt`. `verify` (what the node can check alone) and `verify_sealed` (what the central
//! checks) are pure: rows and checkpoints in, the first fault out.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::authz::Role;
use crate::clock::SharedClock;
use crate::keys::{AuditSealKey, KeyError, NodePublicKey, NodeSecretKey, SealKeyChain, SealState};
use crate::limits::{AUDIT_BATCH_ENTRIES_MAX, AUDIT_QUEUE_ENTRIES_MAX, AUDIT_SEAL_EPOCH_SECONDS};
use crate::model::PersonId;
use crate::store::{Store, StoreError};

const ENTRY_DOMAIN: &[u8] = b"kaigo-field/audit/v1\0";
/// v2: the message covers the seal epoch too.
const CHECKPOINT_DOMAIN: &[u8] = b"kaigo-field/audit-checkpoint/v2\0";
/// Put before the checkpoint message when it is sealed, so a seal is never a valid anything else.
const CHECKPOINT_SEAL_DOMAIN: &[u8] = b"kaigo-field/audit-seal/checkpoint/v1\0";
const HEAD_SEAL_DOMAIN: &[u8] = b"kaigo-field/audit-seal/head/v1\0";
pub const GENESIS: [u8; 32] = [0; 32];

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    NodeInit,
    NodeStart,
    NodeStop,
    SnapshotImport,
    AuthorizationImport,
    AuthorizationRefused,
    AuthorizationClose,
    ClockMove,
    Login,
    Search,
    View,
    Print,
    Export,
    FieldEvent,
    Denied,
    Enrol,
    Revoke,
    DrillStart,
    DrillEnd,
}

impl Action {
    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    pub fn parse(s: &str) -> Option<Action> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Denied,
    Failed,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Ok, Outcome::Denied, Outcome::Failed].into_iter().find(|o| o.name() == s)
    }
}

/// An entry as a caller asks for it; the log adds sequence, times and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The end of the window the access is allowed in (an authorization's not-after). The
    /// entry's own time is the time the access is decided at: if the writer stamps it at or
    /// after this, the entry is written as refused and its `Receipt` says so, so no answer goes
    /// out later than its window, however long the request waited.
    pub valid_until: Option<DateTime<Utc>>,
    /// Who: a staff id, or an `Actor` that is not one (`Actor::id`).
    pub operator: String,
    /// 事業所番号 of the operator's facility, if any.
    pub facility: Option<String>,
    pub role: Option<Role>,
    pub action: Action,
    /// The persons concerned, by pseudonymous id: never names or numbers in clear.
    pub subjects: Vec<PersonId>,
    /// A keyed hash of what was searched for (`DataKey::audit_query_hash`), never the query.
    pub query_hash: Option<[u8; 32]>,
    pub purpose: Option<String>,
    pub outcome: Outcome,
    /// What, in a few words that hold no personal data ("search page", "snapshot v3").
    pub detail: String,
}

/// Who did something, when it is not an enrolled operator's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The node itself: starting, stopping.
    Node,
    /// Whoever runs a command at the node's terminal (`node init`, imports, `staff add`, clock
    /// moves): the coordinator, who holds the node's key.
    Coordinator,
    /// A request from nobody (no session, no token), in the minute's summary.
    Anonymous,
}

impl Actor {
    /// The `operator` of its entries; never a staff id (`XXXX-XXXX`).
    pub const fn id(self) -> &'static str {
        match self {
            Actor::Node => "node",
            Actor::Coordinator => "coordinator",
            Actor::Anonymous => "anonymous",
        }
    }
}

impl NewEntry {
    /// An entry of `actor`'s.
    pub fn by(actor: Actor, action: Action, outcome: Outcome, detail: impl Into<String>) -> NewEntry {
        NewEntry::new(actor.id(), action, outcome, detail)
    }

    /// An entry of the operator with this staff id.
    pub fn new(operator: &str, action: Action, outcome: Outcome, detail: impl Into<String>) -> NewEntry {
        NewEntry {
            valid_until: None,
            operator: operator.to_owned(),
            facility: None,
            role: None,
            action,
            subjects: Vec::new(),
            query_hash: None,
            purpose: None,
            outcome,
            detail: detail.into(),
        }
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// The node's time (clock plus the coordinator's forward offset), RFC 3339 with milliseconds.
    pub wall_time: String,
    /// Milliseconds since the process that wrote it started: order within one run, whatever the
    /// wall clock did.
    pub mono_ms: u64,
    /// Random per process start: which run `mono_ms` counts from.
    pub boot_id: String,
    pub operator: String,
    pub facility: Option<String>,
    pub role: Option<String>,
    pub action: String,
    pub subjects: Vec<String>,
    pub query_hash: Option<String>,
    pub purpose: Option<String>,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The part of an entry its hash covers, in a fixed order.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    wall_time: &'a str,
    mono_ms: u64,
    boot_id: &'a str,
    operator: &'a str,
    facility: &'a Option<String>,
    role: &'a Option<String>,
    action: &'a str,
    subjects: &'a [String],
    query_hash: &'a Option<String>,
    purpose: &'a Option<String>,
    outcome: &'a str,
    detail: &'a str,
}

impl Entry {
    /// SHA-256 over the domain, the previous hash and the canonical body.
    pub fn compute_hash(&self) -> String {
        let body = Body {
            seq: self.seq,
            wall_time: &self.wall_time,
            mono_ms: self.mono_ms,
            boot_id: &self.boot_id,
            operator: &self.operator,
            facility: &self.facility,
            role: &self.role,
            action: &self.action,
            subjects: &self.subjects,
            query_hash: &self.query_hash,
            purpose: &self.purpose,
            outcome: &self.outcome,
            detail: &self.detail,
        };
        let encoded = postcard::to_stdvec(&body).expect("an entry body serializes");
        let mut h = Sha256::new();
        h.update(ENTRY_DOMAIN);
        h.update(self.prev_hash.as_bytes());
        h.update(&encoded);
        hex::encode(h.finalize())
    }
}

/// A signed and sealed statement by the node: "the log had `seq` entries, ending in
/// `head_hash`, at `wall_time`, in seal epoch `seal.epoch`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub head_hash: String,
    pub wall_time: String,
    pub signature: String,
    /// `None` only for a checkpoint written before sealing existed (a fault everywhere now).
    pub seal: Option<CheckpointSeal>,
}

/// A checkpoint's forward-secure seal: the epoch and HMAC-SHA256 under that epoch's key, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSeal {
    pub epoch: u64,
    pub mac: String,
}

fn checkpoint_message(node_id: &str, seq: u64, head_hash: &str, wall_time: &str, epoch: u64) -> Vec<u8> {
    [
        CHECKPOINT_DOMAIN,
        node_id.as_bytes(),
        b"\0",
        &seq.to_le_bytes(),
        head_hash.as_bytes(),
        wall_time.as_bytes(),
        b"\0",
        &epoch.to_le_bytes(),
    ]
    .concat()
}

fn seal_message(node_id: &str, seq: u64, head_hash: &str, wall_time: &str, epoch: u64) -> Vec<u8> {
    [CHECKPOINT_SEAL_DOMAIN, &checkpoint_message(node_id, seq, head_hash, wall_time, epoch)].concat()
}

/// Signs and seals a checkpoint. What the writer does; and, with keys copied from a node, all
/// that a thief can do (the tests use it so).
pub fn make_checkpoint(
    node_id: &str,
    seq: u64,
    head_hash: String,
    wall_time: String,
    secret: &NodeSecretKey,
    epoch: u64,
    seal_key: &AuditSealKey,
) -> Checkpoint {
    let signature = hex::encode(secret.sign(&checkpoint_message(node_id, seq, &head_hash, &wall_time, epoch)));
    let mac = hex::encode(seal_key.seal(&seal_message(node_id, seq, &head_hash, &wall_time, epoch)));
    Checkpoint { seq, head_hash, wall_time, signature, seal: Some(CheckpointSeal { epoch, mac }) }
}

/// A fresh statement of the log's head, sealed with the node's current seal key: sent with the
/// log when the link returns, so the central can tell a log whose newest part was cut off
/// (`verify_sealed`). Made by `Node::head_seal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadSeal {
    pub epoch: u64,
    pub seq: u64,
    pub head_hash: String,
    pub wall_time: String,
    pub mac: String,
}

fn head_message(node_id: &str, epoch: u64, seq: u64, head_hash: &str, wall_time: &str) -> Vec<u8> {
    [
        HEAD_SEAL_DOMAIN,
        node_id.as_bytes(),
        b"\0",
        &epoch.to_le_bytes(),
        &seq.to_le_bytes(),
        head_hash.as_bytes(),
        wall_time.as_bytes(),
    ]
    .concat()
}

impl HeadSeal {
    pub fn make(
        node_id: &str,
        epoch: u64,
        seq: u64,
        head_hash: String,
        wall_time: String,
        key: &AuditSealKey,
    ) -> HeadSeal {
        let mac = hex::encode(key.seal(&head_message(node_id, epoch, seq, &head_hash, &wall_time)));
        HeadSeal { epoch, seq, head_hash, wall_time, mac }
    }
}

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("監査ログの {seq} 番に不正があります: {what}")]
pub struct Fault {
    pub seq: u64,
    pub what: String,
}

/// What a clean verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: u64,
    pub head_hash: String,
    /// The seal epoch of the last checkpoint.
    pub epoch: u64,
}

/// Checks what the node can check alone: the log is not empty and starts with the node's
/// `node_init` entry, the chain, every checkpoint's Ed25519 signature, and the epoch rule
/// (sealed, starting at 0, never falling, never skipping). Entries must be in `seq` order as
/// stored, from 1. Pure: the caller loads rows and supplies the node's public key.
///
/// It cannot see a cut-off tail taken together with its checkpoints, nor a rewrite by someone
/// holding the node's keys: `verify_sealed`, at the central, can.
pub fn verify(
    entries: &[Entry],
    checkpoints: &[Checkpoint],
    node_id: &str,
    key: &NodePublicKey,
) -> Result<VerifyReport, Fault> {
    let mut v = Verifier::new(node_id, key);
    if entries.is_empty() {
        // A wiped log says so, whatever checkpoints are left.
        return v.finish();
    }
    let mut checkpoints = checkpoints.iter().peekable();
    for e in entries {
        v.entry(e)?;
        while let Some(c) = checkpoints.next_if(|c| c.seq <= e.seq) {
            v.checkpoint(c)?;
        }
    }
    for c in checkpoints {
        v.checkpoint(c)?;
    }
    v.finish()
}

/// Where a verification may resume: the last checkpoint of a log verified before, with the
/// epoch it was sealed in. Kept in the store, signed with the node's key, so that a start
/// verifies only what was written since (`Verifier::resume`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub head_hash: String,
    pub epoch: u64,
    pub checkpoints: u64,
}

impl Anchor {
    fn message(&self, node_id: &str) -> Vec<u8> {
        [
            ANCHOR_DOMAIN,
            node_id.as_bytes(),
            b"\0",
            &self.seq.to_le_bytes(),
            self.head_hash.as_bytes(),
            b"\0",
            &self.epoch.to_le_bytes(),
            &self.checkpoints.to_le_bytes(),
        ]
        .concat()
    }

    /// The anchor a clean verification ends on.
    pub fn of(report: &VerifyReport) -> Anchor {
        Anchor {
            seq: report.entries,
            head_hash: report.head_hash.clone(),
            epoch: report.epoch,
            checkpoints: report.checkpoints,
        }
    }

    /// Hex Ed25519 signature by the node.
    pub fn sign(&self, node_id: &str, secret: &NodeSecretKey) -> String {
        hex::encode(secret.sign(&self.message(node_id)))
    }

    pub fn signed_by(&self, node_id: &str, key: &NodePublicKey, signature: &str) -> bool {
        let signature: Option<[u8; 64]> = hex::decode(signature).ok().and_then(|s| s.try_into().ok());
        signature.is_some_and(|sig| key.verify(&self.message(node_id), &sig))
    }
}

const ANCHOR_DOMAIN: &[u8] = b"kaigo-field/audit-verified/v1\0";

/// `verify` one row at a time: feed entries in `seq` order with `entry`, and each checkpoint with
/// `checkpoint` once the entry it names has been fed; `finish` checks the end. Holds one hash
/// and a few numbers, whatever the length of the log, so a node verifies a log of millions of
/// entries in constant memory.
pub struct Verifier<'a> {
    node_id: &'a str,
    key: &'a NodePublicKey,
    /// The next entry's number, and the hash it must chain to.
    next_seq: u64,
    prev: String,
    /// The hash of the last entry fed, for the checkpoints that name it.
    last_hash: Option<(u64, String)>,
    last_checkpoint: u64,
    last_epoch: Option<u64>,
    entries: u64,
    checkpoints: u64,
}

impl<'a> Verifier<'a> {
    /// A verifier for a whole log, from its first entry.
    pub fn new(node_id: &'a str, key: &'a NodePublicKey) -> Verifier<'a> {
        Verifier {
            node_id,
            key,
            next_seq: 1,
            prev: hex::encode(GENESIS),
            last_hash: None,
            last_checkpoint: 0,
            last_epoch: None,
            entries: 0,
            checkpoints: 0,
        }
    }

    /// A verifier that continues after `anchor`: feed the entries and checkpoints after its
    /// `seq`. What came before was verified when the anchor was made; a change to it since is
    /// found by a full verification, not by this one.
    pub fn resume(node_id: &'a str, key: &'a NodePublicKey, anchor: &Anchor) -> Verifier<'a> {
        Verifier {
            next_seq: anchor.seq + 1,
            prev: anchor.head_hash.clone(),
            last_hash: Some((anchor.seq, anchor.head_hash.clone())),
            last_checkpoint: anchor.seq,
            last_epoch: Some(anchor.epoch),
            entries: anchor.seq,
            checkpoints: anchor.checkpoints,
            ..Verifier::new(node_id, key)
        }
    }

    pub fn entry(&mut self, e: &Entry) -> Result<(), Fault> {
        if e.seq == 1 && e.action != Action::NodeInit.name() {
            return Err(Fault {
                seq: 1,
                what: format!(
                    "最初の記録が初期設定（node_init）ではなく {} です（先頭の削除・消去後の書き直し）",
                    e.action
                ),
            });
        }
        if e.seq != self.next_seq {
            return Err(Fault {
                seq: self.next_seq,
                what: format!("番号が {} になっています（抜け・挿入・並べ替え）", e.seq),
            });
        }
        if e.prev_hash != self.prev {
            return Err(Fault {
                seq: e.seq,
                what: "前の記録のハッシュとつながっていません（削除・挿入・並べ替え）".into(),
            });
        }
        if e.compute_hash() != e.hash {
            return Err(Fault {
                seq: e.seq, what: "内容がハッシュと一致しません（書き換え）".into()
            });
        }
        self.prev = e.hash.clone();
        self.last_hash = Some((e.seq, e.hash.clone()));
        self.next_seq += 1;
        self.entries = e.seq;
        Ok(())
    }

    pub fn checkpoint(&mut self, c: &Checkpoint) -> Result<(), Fault> {
        if c.seq < self.last_checkpoint {
            return Err(Fault { seq: c.seq, what: "チェックポイントの順序が不正です".into() });
        }
        self.last_checkpoint = c.seq;
        let Some(seal) = &c.seal else {
            return Err(Fault {
                seq: c.seq,
                what: "チェックポイントに封印がありません（封印のない古い版のログか、封印を消した書き換え）".into(),
            });
        };
        // The epoch rule: a legitimate writer starts at 0 and moves the key one step at a time,
        // always before the checkpoint that first uses it.
        let allowed = match self.last_epoch {
            None => seal.epoch == 0,
            Some(e) => seal.epoch == e || seal.epoch == e + 1,
        };
        if !allowed {
            return Err(Fault {
                seq: c.seq,
                what: match self.last_epoch {
                    None => format!(
                        "最初のチェックポイントの封印の期が 0 ではなく {} です（消去後の書き直し・先頭の削除）",
                        seal.epoch
                    ),
                    Some(e) => format!(
                        "封印の期が {e} から {} になっています（封印後の書き換え・削除・切り詰めの跡）",
                        seal.epoch
                    ),
                },
            });
        }
        self.last_epoch = Some(seal.epoch);
        let signature: Option<[u8; 64]> = hex::decode(&c.signature).ok().and_then(|s| s.try_into().ok());
        let message = checkpoint_message(self.node_id, c.seq, &c.head_hash, &c.wall_time, seal.epoch);
        if !signature.is_some_and(|sig| self.key.verify(&message, &sig)) {
            return Err(Fault {
                seq: c.seq, what: "チェックポイントの署名が正しくありません".into()
            });
        }
        match &self.last_hash {
            Some((seq, hash)) if *seq == c.seq && *hash == c.head_hash => {}
            Some((seq, _)) if *seq == c.seq => {
                return Err(Fault {
                    seq: c.seq,
                    what: "署名されたチェックポイントとハッシュが一致しません（書き換え・切り詰め後の追記）".into(),
                });
            }
            // A checkpoint names an entry that was not fed before it: there is no such entry.
            _ => {
                return Err(Fault {
                    seq: self.entries + 1,
                    what: format!(
                        "署名されたチェックポイントは {} 番まであるのに、記録がありません（切り詰め）",
                        c.seq
                    ),
                });
            }
        }
        self.checkpoints += 1;
        Ok(())
    }

    /// The end of the log: it is not empty, and every entry is covered by a checkpoint.
    pub fn finish(self) -> Result<VerifyReport, Fault> {
        if self.entries == 0 {
            return Err(Fault {
                seq: 1,
                what:
                    "記録が1件もありません（消去）。ノードの監査ログは必ず初期設定（node_init）の記録から始まります: \
                       ログが消されたか、ノードのディレクトリが完全ではありません。中央に連絡してください"
                        .into(),
            });
        }
        if self.last_checkpoint < self.entries {
            return Err(Fault {
                seq: self.last_checkpoint + 1,
                what: "署名されたチェックポイントのない記録があります".into(),
            });
        }
        Ok(VerifyReport {
            entries: self.entries,
            checkpoints: self.checkpoints,
            head_hash: self.prev,
            epoch: self.last_epoch.unwrap_or(0),
        })
    }
}

/// What the central checks when a node's log comes back: everything `verify` checks, every
/// checkpoint's seal with the key of its epoch derived from `seal_key0` (the key the central made
/// at enrolment and kept), and, given the node's head seal, that the log reaches the head the
/// node sealed last. Pure.
///
/// A thief with a copy of the node and every key on it holds only the current epoch's seal key:
/// resealing an older checkpoint under it breaks its seal, relabelling it with the current epoch
/// breaks the epoch rule, and dropping the newest checkpoints leaves the log behind the head seal.
pub fn verify_sealed(
    entries: &[Entry],
    checkpoints: &[Checkpoint],
    node_id: &str,
    key: &NodePublicKey,
    seal_key0: &AuditSealKey,
    head: Option<&HeadSeal>,
) -> Result<VerifyReport, Fault> {
    let report = verify(entries, checkpoints, node_id, key)?;
    let mut keys = SealKeyChain::new(seal_key0);
    for c in checkpoints {
        let seal = c.seal.as_ref().expect("verify refuses an unsealed checkpoint");
        // `verify` has checked the epoch rule, so the epochs only rise, one step at a time.
        let sealed = keys.at(seal.epoch).is_some_and(|k| {
            hex::decode(&seal.mac)
                .is_ok_and(|mac| k.check(&seal_message(node_id, c.seq, &c.head_hash, &c.wall_time, seal.epoch), &mac))
        });
        if !sealed {
            return Err(Fault {
                seq: c.seq,
                what: format!(
                    "チェックポイントの封印（期 {}）が中央の鍵と合いません: ノードの鍵を持つ者による書き換え・削除の跡です",
                    seal.epoch
                ),
            });
        }
    }
    let Some(h) = head else { return Ok(report) };
    let next = report.entries + 1;
    if h.epoch > report.epoch + 1 {
        return Err(Fault {
            seq: next,
            what: format!(
                "ノードの封印は期 {} まで進んでいるのに、ログの最後のチェックポイントは期 {} です（末尾の切り詰め）",
                h.epoch, report.epoch
            ),
        });
    }
    let sealed = (h.epoch >= report.epoch).then(|| keys.at(h.epoch)).flatten().is_some_and(|k| {
        hex::decode(&h.mac)
            .is_ok_and(|mac| k.check(&head_message(node_id, h.epoch, h.seq, &h.head_hash, &h.wall_time), &mac))
    });
    if !sealed {
        return Err(Fault {
            seq: next,
            what: format!("先頭の封印（期 {}）が中央の鍵と合いません（偽造、または期の古い封印）", h.epoch),
        });
    }
    if h.seq > report.entries {
        return Err(Fault {
            seq: next,
            what: format!(
                "ノードは {} 番まで記録したと封印しているのに、ログは {} 番までしかありません（末尾の切り詰め）",
                h.seq, report.entries
            ),
        });
    }
    if h.seq < report.entries {
        return Err(Fault {
            seq: h.seq + 1,
            what: format!("先頭の封印（{} 番まで）より後に記録があります（封印の後の追記・差し替え）", h.seq),
        });
    }
    if h.head_hash != report.head_hash {
        return Err(Fault {
            seq: h.seq, what: "最新の記録のハッシュが先頭の封印と一致しません（書き換え）".into()
        });
    }
    Ok(report)
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("監査ログに書けません: {0}")]
    Store(#[from] StoreError),
    #[error("監査ログに書けません: {0}")]
    Write(String),
    #[error("監査ログの書き込みが止まっています")]
    Stopped,
    #[error("監査ログの待ち行列があふれています")]
    Overloaded,
    #[error(
        "監査ログの封印状態を読み書きできません（{0}）。ノードのディレクトリが完全ではありません: 中央に連絡し、ノードを設定し直してください"
    )]
    Seal(#[from] KeyError),
    #[error(
        "監査ログの封印の期（{state}）が、ログの最後のチェックポイント（{log}）より2つ以上先です: ログの末尾が消されています。中央に連絡してください"
    )]
    SealAhead { state: u64, log: String },
    #[error("監査ログに封印のないチェックポイントがあります（古い版のログ）: ノードを設定し直してください")]
    Unsealed,
}

/// Proof that an entry is durable on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    seq: u64,
    /// The entry was stamped at or after its `valid_until`, and written as refused.
    late: bool,
}

impl Receipt {
    pub fn seq(self) -> u64 {
        self.seq
    }

    /// Whether the access this entry records came too late for its window (see
    /// `NewEntry::valid_until`): then nothing may be answered.
    pub fn late(self) -> bool {
        self.late
    }
}

/// A response that may carry personal data: it can only be built from a `Receipt`, so a
/// handler cannot send such data without a durable audit entry. The entry's number goes out in
/// the `x-audit-seq` header.
pub struct Audited<T>(Receipt, T);

impl<T> Audited<T> {
    pub fn new(receipt: Receipt, body: T) -> Self {
        Audited(receipt, body)
    }
}

impl<T> Audited<T> {
    /// The entry's number and the body, for the face that sends it (`http`).
    pub fn into_parts(self) -> (Receipt, T) {
        (self.0, self.1)
    }
}

/// How the writer commits: all waiting entries in one transaction (the default), or one
/// transaction and flush per entry (for comparison in the benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    Group,
    PerEntry,
}

/// Who a change is recorded under: makes its audit entry from the action, outcome and detail
/// (`by_coordinator` for a command, or the signed-in coordinator's `Operator::entry`).
pub type By<'a> = &'a dyn Fn(Action, Outcome, String) -> NewEntry;

/// The `By` of a command run at the node's terminal.
pub fn by_coordinator(action: Action, outcome: Outcome, detail: String) -> NewEntry {
    NewEntry::by(Actor::Coordinator, action, outcome, detail)
}

/// Writes entries to the chain: one transaction with the entries and a signed, sealed
/// checkpoint. The one function through which entries reach the store.
#[derive(Clone)]
pub struct ChainWriter {
    node_id: String,
    secret: Arc<NodeSecretKey>,
    /// The node's seal state file (`NodeDir::audit_seal`): read again for every commit, never
    /// kept in memory between commits, so two writers see each other's evolutions.
    seal_path: PathBuf,
    clock: SharedClock,
    boot_id: String,
    started: Instant,
}

impl ChainWriter {
    pub fn new(
        node_id: &str,
        secret: Arc<NodeSecretKey>,
        seal_path: impl Into<PathBuf>,
        clock: SharedClock,
    ) -> ChainWriter {
        let mut b = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        ChainWriter {
            node_id: node_id.to_owned(),
            secret,
            seal_path: seal_path.into(),
            clock,
            boot_id: hex::encode(b),
            started: Instant::now(),
        }
    }

    /// The seal state the next checkpoint uses, after `last` (the last checkpoint's epoch, if
    /// any). Evolves the key one step when the epoch is used and older than
    /// `AUDIT_SEAL_EPOCH_SECONDS`, and saves the evolved state (atomically, flushed) before it
    /// returns, so the old key is off the disk before the commit that first uses the new one: a
    /// crash leaves at worst an epoch without a checkpoint, which the next write uses.
    fn seal_state(&self, last: Option<u64>, now: DateTime<Utc>) -> Result<SealState, AuditError> {
        let mut state = SealState::load(&self.seal_path)?;
        let target = match last {
            // A new log: the node's init entry, sealed with the central's key of epoch 0.
            None if state.epoch == 0 => 0,
            Some(last) if state.epoch == last + 1 => state.epoch,
            // Behind the log happens only when another writer's older state was written over a
            // newer one; walking forward is always safe (anyone with a key can).
            Some(last) if state.epoch <= last => {
                let due = now >= state.started + chrono::Duration::seconds(AUDIT_SEAL_EPOCH_SECONDS);
                if due { last + 1 } else { last }
            }
            _ => {
                return Err(AuditError::SealAhead {
                    state: state.epoch,
                    log: last.map_or_else(|| "なし".to_owned(), |l| l.to_string()),
                });
            }
        };
        if target > state.epoch {
            while state.epoch < target {
                state.evolve(now);
            }
            state.save(&self.seal_path)?;
        }
        Ok(state)
    }

    /// Appends `batch` durably; returns the receipts in order. On error no entry was written
    /// (the seal key may have moved on by one epoch, which is harmless).
    pub fn append(&self, store: &Store, batch: &[NewEntry]) -> Result<Vec<Receipt>, AuditError> {
        store.append_audit_with(|store| self.chain(store, batch))
    }

    /// Makes a change to the node and writes its audit entry in one transaction: `change` runs
    /// inside the write transaction (its store writes nest in it) and returns its result with
    /// the entry that records it; both commit together, or neither does. If `change` fails,
    /// nothing of it stays, and the entry `failed` makes of the error (if any) is appended on
    /// its own, so a refused attempt is on the record too.
    pub fn commit<T, E>(
        &self,
        store: &Store,
        change: impl FnOnce() -> Result<(T, NewEntry), E>,
        failed: impl FnOnce(&E) -> Option<NewEntry>,
    ) -> Result<T, E>
    where
        E: From<AuditError> + From<StoreError>,
    {
        let result = store.append_audit_with(|store| {
            let (out, entry) = change()?;
            let (entries, checkpoint, _) = self.chain(store, std::slice::from_ref(&entry))?;
            Ok::<_, E>((entries, checkpoint, out))
        });
        match result {
            Ok(out) => {
                // What a change forgot (a closed authorization's code) leaves the WAL now.
                store.forget_old_pages()?;
                Ok(out)
            }
            Err(e) => {
                if let Some(entry) = failed(&e) {
                    self.append(store, &[entry])?;
                }
                Err(e)
            }
        }
    }

    /// The entries of `batch` chained to the head, and their checkpoint; inside the write
    /// transaction.
    fn chain(&self, store: &Store, batch: &[NewEntry]) -> Result<(Vec<Entry>, Checkpoint, Vec<Receipt>), AuditError> {
        // Everything is read inside the write transaction: the head, then the seal state (a
        // state read after the head is never older than the checkpoint at that head), so two
        // writers (the server's, a command's) take turns and never chain to the same head.
        let (mut seq, mut prev) = store.audit_head()?.unwrap_or((0, hex::encode(GENESIS)));
        let last_epoch = match store.audit_last_checkpoint()? {
            Some(c) => Some(c.seal.ok_or(AuditError::Unsealed)?.epoch),
            None => None,
        };
        let now: DateTime<Utc> = self.clock.now() + chrono::Duration::seconds(store.trusted_time()?.offset_seconds);
        let seal = self.seal_state(last_epoch, now)?;
        let wall_time = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mono_ms = self.started.elapsed().as_millis() as u64;
        let mut entries = Vec::with_capacity(batch.len());
        let mut late = Vec::with_capacity(batch.len());
        for n in batch {
            seq += 1;
            let too_late = n.valid_until.is_some_and(|until| now >= until);
            late.push(too_late);
            let (outcome, detail) = if too_late {
                (Outcome::Denied, format!("{} (refused: the window ended before this entry)", n.detail))
            } else {
                (n.outcome, n.detail.clone())
            };
            let mut e = Entry {
                seq,
                wall_time: wall_time.clone(),
                mono_ms,
                boot_id: self.boot_id.clone(),
                operator: n.operator.clone(),
                facility: n.facility.clone(),
                role: n.role.map(|r| r.name().to_owned()),
                action: n.action.name(),
                subjects: n.subjects.iter().map(|p| p.as_str().to_owned()).collect(),
                query_hash: n.query_hash.map(hex::encode),
                purpose: n.purpose.clone(),
                outcome: outcome.name().to_owned(),
                detail,
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            e.hash = e.compute_hash();
            // The store checks again, against the head it reads in the same transaction, that
            // every entry follows it (`Store::insert_audit`), as `verify` checks where it reads.
            prev = e.hash.clone();
            entries.push(e);
        }
        let checkpoint = make_checkpoint(&self.node_id, seq, prev, wall_time, &self.secret, seal.epoch, seal.key());
        let receipts = entries.iter().zip(late).map(|(e, late)| Receipt { seq: e.seq, late }).collect();
        Ok((entries, checkpoint, receipts))
    }
}

struct Job {
    entry: NewEntry,
    reply: tokio::sync::oneshot::Sender<Result<Receipt, String>>,
}

/// The audit writer of a serving node: a dedicated thread with its own connection, fed by a
/// bounded queue; see the module comment.
pub struct AuditLog {
    queue: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl AuditLog {
    /// Starts the writer on its own connection to the node's database.
    pub fn start(store: Store, writer: ChainWriter, mode: CommitMode) -> AuditLog {
        let (queue, jobs) = sync_channel::<Job>(AUDIT_QUEUE_ENTRIES_MAX);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(&store, &writer, &jobs, mode))
            .expect("the audit writer thread starts");
        AuditLog { queue: Some(queue), thread: Some(thread) }
    }

    /// Appends an entry and waits until it is durable.
    pub async fn record(&self, entry: NewEntry) -> Result<Receipt, AuditError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queue = self.queue.as_ref().ok_or(AuditError::Stopped)?;
        queue.try_send(Job { entry, reply }).map_err(|e| match e {
            TrySendError::Full(_) => AuditError::Overloaded,
            TrySendError::Disconnected(_) => AuditError::Stopped,
        })?;
        match answer.await {
            Ok(Ok(receipt)) => Ok(receipt),
            Ok(Err(message)) => Err(AuditError::Write(message)),
            Err(_) => Err(AuditError::Stopped),
        }
    }

    /// Lets the queue drain and stops the writer.
    pub fn stop(mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(store: &Store, writer: &ChainWriter, jobs: &Receiver<Job>, mode: CommitMode) {
    let batch_max = match mode {
        CommitMode::Group => AUDIT_BATCH_ENTRIES_MAX,
        CommitMode::PerEntry => 1,
    };
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let entries: Vec<NewEntry> = batch.iter().map(|j| j.entry.clone()).collect();
        match writer.append(store, &entries) {
            Ok(receipts) => {
                for (job, receipt) in batch.into_iter().zip(receipts) {
                    let _ = job.reply.send(Ok(receipt));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, entries = entries.len(), "audit write failed; the requests are refused");
                for job in batch {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// FHIR AuditEvent-shaped JSON for one entry (R4 field names; codes are this project's).
pub fn fhir_audit_event(e: &Entry, node_id: &str) -> serde_json::Value {
    serde_json::json!({
        "resourceType": "AuditEvent",
        "id": format!("{node_id}-{}", e.seq),
        "type": { "system": "https://kaigo-field.example/audit-action", "code": e.action },
        "recorded": e.wall_time,
        "outcome": match e.outcome.as_str() { "ok" => "0", "denied" => "4", _ => "8" },
        "outcomeDesc": e.detail,
        "purposeOfEvent": e.purpose.iter().map(|p| serde_json::json!({ "text": p })).collect::<Vec<_>>(),
        "agent": [{
            "who": { "identifier": { "value": e.operator } },
            "role": e.role.iter().map(|r| serde_json::json!({ "text": r })).collect::<Vec<_>>(),
            "location": e.facility.as_ref().map(|f| serde_json::json!({ "identifier": { "value": f } })),
            "requestor": true,
        }],
        "source": { "observer": { "identifier": { "value": node_id } } },
        "entity": e.subjects.iter().map(|s| serde_json::json!({ "what": { "identifier": { "value": s } } })).collect::<Vec<_>>(),
        "extension": [
            { "url": "seq", "valueInteger": e.seq },
            { "url": "hash", "valueString": e.hash },
            { "url": "prevHash", "valueString": e.prev_hash },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "n1";

    /// Finding (issue 13): the writer's chain assertion compared a value with its own clone. The
    /// store now refuses, inside the transaction, entries that do not follow the head it reads.
    #[test]
    fn the_store_refuses_entries_that_do_not_follow_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        let e1 = entry(1, &hex::encode(GENESIS));
        let checkpoint = |e: &Entry| Checkpoint {
            seq: e.seq,
            head_hash: e.hash.clone(),
            wall_time: e.wall_time.clone(),
            signature: String::new(),
            seal: None,
        };
        store.append_audit(std::slice::from_ref(&e1), &checkpoint(&e1)).unwrap();
        // Another writer's entry 1, or an entry 2 chained to something else: refused whole.
        let again = entry(1, &hex::encode(GENESIS));
        let astray = entry(2, &hex::encode([7u8; 32]));
        let gap = entry(3, &e1.hash);
        for wrong in [again, astray, gap] {
            let refused = store.append_audit(std::slice::from_ref(&wrong), &checkpoint(&wrong));
            assert!(matches!(refused, Err(StoreError::NotChained { head: 1, .. })), "{refused:?}");
        }
        let good = entry(2, &e1.hash);
        let not_next = entry(3, &hex::encode([7u8; 32]));
        assert!(store.append_audit(&[good.clone(), not_next], &checkpoint(&good)).is_err(), "a batch is refused whole");
        assert_eq!(store.audit_entries(1).unwrap().len(), 1);
        store.append_audit(std::slice::from_ref(&good), &checkpoint(&good)).unwrap();
        assert_eq!(store.audit_head().unwrap().map(|h| h.0), Some(2));
    }

    #[test]
    fn an_access_stamped_at_or_after_its_window_is_written_as_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        let seal = dir.path().join("audit-seal.key");
        let start = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        SealState::genesis(AuditSealKey::generate(), start).save(&seal).unwrap();
        let clock = crate::clock::ManualClock::new(start);
        let writer = ChainWriter::new(
            NODE,
            std::sync::Arc::new(NodeSecretKey::generate()),
            &seal,
            std::sync::Arc::new(clock.clone()),
        );
        writer
            .append(&store, &[NewEntry::by(Actor::Coordinator, Action::NodeInit, Outcome::Ok, "provisioned")])
            .unwrap();
        let until = start + chrono::Duration::seconds(10);
        let view =
            |valid_until| NewEntry { valid_until, ..NewEntry::new("K7QM-3XDA", Action::View, Outcome::Ok, "web") };
        let inside = writer.append(&store, &[view(Some(until))]).unwrap();
        assert!(!inside[0].late());
        // The request waited: by the time its entry is stamped the window is over.
        clock.advance(chrono::Duration::seconds(10));
        let late = writer.append(&store, &[view(Some(until)), view(None)]).unwrap();
        assert!(late[0].late() && !late[1].late());
        let written = store.audit_entries(late[0].seq()).unwrap();
        assert_eq!(written[0].outcome, "denied");
        assert!(written[0].detail.contains("window ended"), "{}", written[0].detail);
        assert_eq!(written[1].outcome, "ok");
    }

    /// A log as the writer makes it, in memory: two entries per checkpoint, the node's init first.
    struct Log {
        entries: Vec<Entry>,
        checkpoints: Vec<Checkpoint>,
        secret: NodeSecretKey,
        key0: AuditSealKey,
    }

    fn entry(seq: u64, prev: &str) -> Entry {
        let action = if seq == 1 { Action::NodeInit } else { Action::View };
        let mut e = Entry {
            seq,
            wall_time: "2024-01-01T00:00:00.000Z".into(),
            mono_ms: seq,
            boot_id: "b".into(),
            operator: format!("staff-{}", seq % 3),
            facility: None,
            role: None,
            action: action.name(),
            subjects: Vec::new(),
            query_hash: None,
            purpose: None,
            outcome: "ok".into(),
            detail: "record".into(),
            prev_hash: prev.to_owned(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }

    fn key_at(key0: &AuditSealKey, epoch: u64) -> SealKeyChain {
        let mut chain = SealKeyChain::new(key0);
        chain.at(epoch).expect("a chain from epoch 0 reaches any epoch");
        chain
    }

    fn sealed(log: &Log, seq: u64, head_hash: &str, wall_time: &str, epoch: u64, key: &AuditSealKey) -> Checkpoint {
        make_checkpoint(NODE, seq, head_hash.to_owned(), wall_time.to_owned(), &log.secret, epoch, key)
    }

    /// `epochs[i]` is the seal epoch of checkpoint i.
    fn build(epochs: &[u64]) -> Log {
        let mut log = Log {
            entries: Vec::new(),
            checkpoints: Vec::new(),
            secret: NodeSecretKey::generate(),
            key0: AuditSealKey::generate(),
        };
        let mut prev = hex::encode(GENESIS);
        for (i, &epoch) in epochs.iter().enumerate() {
            for _ in 0..2 {
                let e = entry(log.entries.len() as u64 + 1, &prev);
                prev = e.hash.clone();
                log.entries.push(e);
            }
            let mut chain = key_at(&log.key0, epoch);
            let key = chain.at(epoch).expect("reached");
            let c = sealed(&log, log.entries.len() as u64, &prev, &format!("2024-01-01T00:{i:02}:00.000Z"), epoch, key);
            log.checkpoints.push(c);
        }
        log
    }

    fn head(log: &Log, epoch: u64, key: &AuditSealKey) -> HeadSeal {
        let last = log.entries.last().expect("a log with entries");
        HeadSeal::make(NODE, epoch, last.seq, last.hash.clone(), "2024-01-01T01:00:00.000Z".into(), key)
    }

    fn central(log: &Log, head: Option<&HeadSeal>) -> Result<VerifyReport, Fault> {
        verify_sealed(&log.entries, &log.checkpoints, NODE, &log.secret.public(), &log.key0, head)
    }

    const MANY_EPOCHS: &[u64] = &[0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 6, 6, 6, 7];

    #[test]
    fn a_clean_log_over_many_epochs_passes_with_a_head_seal_of_its_epoch_or_the_next() {
        let log = build(MANY_EPOCHS);
        let report = central(&log, None).unwrap();
        assert_eq!((report.entries, report.checkpoints, report.epoch), (28, 14, 7));
        for epoch in [7, 8] {
            let h = head(&log, epoch, key_at(&log.key0, epoch).at(epoch).unwrap());
            assert_eq!(central(&log, Some(&h)).unwrap(), report);
        }
    }

    #[test]
    fn an_empty_log_is_a_fault_that_says_it_was_wiped() {
        let key = NodeSecretKey::generate().public();
        let fault = verify(&[], &[], NODE, &key).unwrap_err();
        assert_eq!(fault.seq, 1);
        assert!(fault.what.contains("消去") && fault.what.contains("node_init"), "{fault}");
        let fault = verify_sealed(&[], &[], NODE, &key, &AuditSealKey::generate(), None).unwrap_err();
        assert!(fault.what.contains("消去"), "{fault}");
    }

    #[test]
    fn a_log_that_does_not_begin_with_the_node_init_entry_is_a_fault() {
        let mut log = build(&[0, 0]);
        log.entries[0].action = Action::View.name();
        let fault = central(&log, None).unwrap_err();
        assert!(fault.seq == 1 && fault.what.contains("node_init"), "{fault}");
    }

    #[test]
    fn epochs_that_skip_fall_or_do_not_start_at_zero_are_faults_even_on_the_node() {
        for (epochs, bad_checkpoint) in
            [(&[0, 2][..], 1), (&[0, 1, 0][..], 2), (&[1, 1][..], 0), (&[0, 1, 3, 3][..], 2)]
        {
            let log = build(epochs);
            let fault = verify(&log.entries, &log.checkpoints, NODE, &log.secret.public()).unwrap_err();
            assert_eq!(fault.seq, log.checkpoints[bad_checkpoint].seq, "{epochs:?}: {fault}");
            assert!(fault.what.contains("封印の期"), "{fault}");
        }
    }

    #[test]
    fn an_unsealed_checkpoint_is_a_fault() {
        let mut log = build(&[0, 1]);
        log.checkpoints[1].seal = None;
        let fault = central(&log, None).unwrap_err();
        assert!(fault.seq == 4 && fault.what.contains("封印がありません"), "{fault}");
    }

    /// The thief's rewrite: entry 3 changed, the chain and every checkpoint from it on signed
    /// again with the node's key and sealed with the stolen key of `stolen` epoch, each labelled
    /// `label(its old epoch)`.
    fn rewrite_with_stolen_keys(log: &mut Log, stolen: u64, label: impl Fn(u64) -> u64) {
        log.entries[2].operator = "someone-else".into();
        let mut prev = hex::encode(GENESIS);
        for e in &mut log.entries {
            e.prev_hash = prev;
            e.hash = e.compute_hash();
            prev = e.hash.clone();
        }
        let mut chain = key_at(&log.key0, stolen);
        let key = chain.at(stolen).unwrap();
        let resealed: Vec<Checkpoint> = log
            .checkpoints
            .iter()
            .map(|c| {
                let old = c.seal.as_ref().unwrap().epoch;
                if c.seq < 3 {
                    return c.clone();
                }
                let head = &log.entries[c.seq as usize - 1].hash;
                sealed(log, c.seq, head, &c.wall_time, label(old), key)
            })
            .collect();
        log.checkpoints = resealed;
    }

    #[test]
    fn a_rewrite_resealed_with_a_stolen_later_key_passes_on_the_node_but_not_at_the_central() {
        let mut log = build(MANY_EPOCHS);
        rewrite_with_stolen_keys(&mut log, 7, |old| old);
        verify(&log.entries, &log.checkpoints, NODE, &log.secret.public())
            .expect("the node alone cannot tell: chain, signatures and epochs are all consistent");
        let fault = central(&log, None).unwrap_err();
        assert_eq!(fault.seq, 4, "the first resealed checkpoint: {fault}");
        assert!(fault.what.contains("書き換え") && fault.what.contains("期 0"), "{fault}");
    }

    #[test]
    fn a_rewrite_relabelled_with_the_stolen_epoch_breaks_the_epoch_rule() {
        let mut log = build(MANY_EPOCHS);
        rewrite_with_stolen_keys(&mut log, 7, |_| 7);
        let fault = central(&log, None).unwrap_err();
        assert_eq!(fault.seq, 4, "{fault}");
        assert!(fault.what.contains("0 から 7"), "{fault}");
    }

    #[test]
    fn a_rewrite_within_the_stolen_epoch_is_not_seen_which_is_the_documented_limit() {
        // Checkpoint 13 (entries 27–28) and checkpoint 12 are in epochs 6 and 7; the thief holds
        // epoch 7's key. What was sealed in epoch 6 after its first checkpoint can be resealed
        // as epoch 7 (a one-step rise is legitimate): docs/audit.md says so.
        let mut log = build(MANY_EPOCHS);
        let mut chain = key_at(&log.key0, 7);
        let key = chain.at(7).unwrap();
        log.entries[27].detail = "changed".into();
        log.entries[27].hash = log.entries[27].compute_hash();
        let last = log.checkpoints.len() - 1;
        let c = log.checkpoints[last].clone();
        log.checkpoints[last] = sealed(&log, c.seq, &log.entries[27].hash, &c.wall_time, 7, key);
        assert!(central(&log, None).is_ok());
        // One checkpoint further back, in epoch 6, is out of reach.
        let mut log = build(MANY_EPOCHS);
        let mut chain = key_at(&log.key0, 7);
        let key = chain.at(7).unwrap();
        let c = log.checkpoints[10].clone();
        log.checkpoints[10] = sealed(&log, c.seq, &c.head_hash, &c.wall_time, 7, key);
        assert!(central(&log, None).is_err(), "epoch 6's first checkpoint cannot be resealed");
    }

    #[test]
    fn the_head_seal_shows_a_cut_off_tail_and_a_forged_or_stale_head() {
        let full = build(MANY_EPOCHS);
        let mut chain = key_at(&full.key0, 7);
        let k7 = chain.at(7).unwrap();
        // Cut back to the end of epoch 3 (checkpoints 0–7, 16 entries): the node is at epoch 7.
        let cut = Log {
            entries: full.entries[..16].to_vec(),
            checkpoints: full.checkpoints[..8].to_vec(),
            secret: NodeSecretKey::from_file_text(&full.secret.to_file_text(None)).unwrap(),
            key0: AuditSealKey::from_file_text(&full.key0.to_file_text()).unwrap(),
        };
        assert!(central(&cut, None).is_ok(), "without a head seal a clean cut at a checkpoint is not seen");
        // The thief's own head seal over the cut log, with the key they hold.
        let fault = central(&cut, Some(&head(&cut, 7, k7))).unwrap_err();
        assert!(fault.seq == 17 && fault.what.contains("切り詰め") && fault.what.contains("期 3"), "{fault}");
        // The node's honest head seal over the whole log, against the cut log.
        let fault = central(&cut, Some(&head(&full, 7, k7))).unwrap_err();
        assert!(fault.what.contains("切り詰め"), "{fault}");
        // A head seal that does not reach the end of the log, or does not match its hash.
        let mut short = head(&full, 7, k7);
        short = HeadSeal::make(NODE, 7, short.seq - 2, full.entries[25].hash.clone(), short.wall_time, k7);
        let fault = central(&full, Some(&short)).unwrap_err();
        assert!(fault.seq == 27 && fault.what.contains("後に記録"), "{fault}");
        let other = HeadSeal::make(NODE, 7, 28, full.entries[26].hash.clone(), "t".into(), k7);
        assert!(central(&full, Some(&other)).unwrap_err().what.contains("一致しません"));
        // Forged with another key, or sealed with an epoch before the log's last.
        let forged = head(&full, 7, &AuditSealKey::generate());
        assert!(central(&full, Some(&forged)).unwrap_err().what.contains("合いません"));
        let stale = head(&full, 6, key_at(&full.key0, 6).at(6).unwrap());
        assert!(central(&full, Some(&stale)).unwrap_err().what.contains("合いません"));
        // Two epochs ahead of the log's last checkpoint.
        let ahead = head(&full, 9, key_at(&full.key0, 9).at(9).unwrap());
        assert!(central(&full, Some(&ahead)).unwrap_err().what.contains("切り詰め"));
    }
}
