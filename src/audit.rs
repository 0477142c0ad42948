//! The audit log: every access and every change, appended to a hash chain in the node's SQLite
//! database and made durable before the response it records is sent.
//!
//! Each entry's hash covers the previous entry's hash and the entry's canonical encoding
//! (postcard of `Body`). Every commit also writes a checkpoint (sequence, head hash, time) signed
//! with the node's Ed25519 key, so every durable entry is covered by a signature. `AuditLog` is
//! the writer: a dedicated thread that takes entries from a bounded queue and commits all that
//! are waiting in one transaction (group commit), then answers each caller with a `Receipt`.
//! `Audited` is the only way for an HTTP handler to send personal data, and it needs a
//! `Receipt`. `verify` is pure: rows and checkpoints in, the first fault out.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::authz::Role;
use crate::clock::SharedClock;
use crate::keys::{NodePublicKey, NodeSecretKey};
use crate::limits::{AUDIT_BATCH_ENTRIES_MAX, AUDIT_QUEUE_ENTRIES_MAX};
use crate::model::PersonId;
use crate::store::{Store, StoreError};

const ENTRY_DOMAIN: &[u8] = b"kaigo-field/audit/v1\0";
const CHECKPOINT_DOMAIN: &[u8] = b"kaigo-field/audit-checkpoint/v1\0";
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
    /// Who: a staff id, "coordinator" for commands run on the node, "anonymous" for a browser
    /// that has not signed in, "node" for the node itself.
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

impl NewEntry {
    pub fn new(operator: &str, action: Action, outcome: Outcome, detail: impl Into<String>) -> NewEntry {
        NewEntry {
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

/// A signed statement by the node: "the log had `seq` entries, ending in `head_hash`, at
/// `wall_time`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub head_hash: String,
    pub wall_time: String,
    pub signature: String,
}

fn checkpoint_message(node_id: &str, seq: u64, head_hash: &str, wall_time: &str) -> Vec<u8> {
    [CHECKPOINT_DOMAIN, node_id.as_bytes(), b"\0", &seq.to_le_bytes(), head_hash.as_bytes(), wall_time.as_bytes()]
        .concat()
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
}

/// Checks the chain and every checkpoint; entries must be in `seq` order as stored, from 1.
/// Pure: the caller loads rows and supplies the node's public key.
pub fn verify(
    entries: &[Entry],
    checkpoints: &[Checkpoint],
    node_id: &str,
    key: &NodePublicKey,
) -> Result<VerifyReport, Fault> {
    let mut prev = hex::encode(GENESIS);
    for (i, e) in entries.iter().enumerate() {
        let expected_seq = i as u64 + 1;
        if e.seq != expected_seq {
            return Err(Fault {
                seq: expected_seq,
                what: format!("番号が {} になっています（抜け・挿入・並べ替え）", e.seq),
            });
        }
        if e.prev_hash != prev {
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
        prev = e.hash.clone();
    }
    let mut last_checkpoint = 0;
    for c in checkpoints {
        if c.seq < last_checkpoint {
            return Err(Fault { seq: c.seq, what: "チェックポイントの順序が不正です".into() });
        }
        last_checkpoint = c.seq;
        let signature: Option<[u8; 64]> = hex::decode(&c.signature).ok().and_then(|s| s.try_into().ok());
        let signed = signature
            .is_some_and(|sig| key.verify(&checkpoint_message(node_id, c.seq, &c.head_hash, &c.wall_time), &sig));
        if !signed {
            return Err(Fault {
                seq: c.seq, what: "チェックポイントの署名が正しくありません".into()
            });
        }
        match entries.get((c.seq as usize).wrapping_sub(1)) {
            Some(e) if e.hash == c.head_hash => {}
            Some(_) => {
                return Err(Fault {
                    seq: c.seq,
                    what: "署名されたチェックポイントとハッシュが一致しません（書き換え・切り詰め後の追記）".into(),
                });
            }
            None => {
                return Err(Fault {
                    seq: entries.len() as u64 + 1,
                    what: format!(
                        "署名されたチェックポイントは {} 番まであるのに、記録がありません（切り詰め）",
                        c.seq
                    ),
                });
            }
        }
    }
    if let Some(last) = entries.last() {
        if last_checkpoint < last.seq {
            return Err(Fault {
                seq: last_checkpoint + 1,
                what: "署名されたチェックポイントのない記録があります".into(),
            });
        }
    }
    Ok(VerifyReport { entries: entries.len() as u64, checkpoints: checkpoints.len() as u64, head_hash: prev })
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
}

/// Proof that an entry is durable on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    seq: u64,
}

impl Receipt {
    pub fn seq(self) -> u64 {
        self.seq
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

impl<T: IntoResponse> IntoResponse for Audited<T> {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        response.headers_mut().insert("x-audit-seq", self.0.seq.into());
        response
    }
}

/// How the writer commits: all waiting entries in one transaction (the default), or one
/// transaction and flush per entry (for comparison in the benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    Group,
    PerEntry,
}

/// Writes entries to the chain: one transaction with the entries and a signed checkpoint. The
/// one function through which entries reach the store.
pub struct ChainWriter {
    node_id: String,
    secret: Arc<NodeSecretKey>,
    clock: SharedClock,
    boot_id: String,
    started: Instant,
}

impl ChainWriter {
    pub fn new(node_id: &str, secret: Arc<NodeSecretKey>, clock: SharedClock) -> ChainWriter {
        let mut b = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        ChainWriter { node_id: node_id.to_owned(), secret, clock, boot_id: hex::encode(b), started: Instant::now() }
    }

    /// Appends `batch` durably; returns the receipts in order. On error nothing was written.
    pub fn append(&self, store: &mut Store, batch: &[NewEntry]) -> Result<Vec<Receipt>, AuditError> {
        let (mut seq, mut prev) = store.audit_head()?.unwrap_or((0, hex::encode(GENESIS)));
        let now: DateTime<Utc> = self.clock.now() + chrono::Duration::seconds(store.trusted_time()?.offset_seconds);
        let wall_time = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mono_ms = self.started.elapsed().as_millis() as u64;
        let mut entries = Vec::with_capacity(batch.len());
        for n in batch {
            seq += 1;
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
                outcome: n.outcome.name().to_owned(),
                detail: n.detail.clone(),
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            e.hash = e.compute_hash();
            // The chain is asserted where it is written, as `verify` checks it where it is read.
            assert_eq!(e.prev_hash, prev, "entry chained to the head");
            prev = e.hash.clone();
            entries.push(e);
        }
        let signature = self.secret.sign(&checkpoint_message(&self.node_id, seq, &prev, &wall_time));
        let checkpoint = Checkpoint { seq, head_hash: prev, wall_time, signature: hex::encode(signature) };
        store.append_audit(&entries, &checkpoint)?;
        Ok(entries.iter().map(|e| Receipt { seq: e.seq }).collect())
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
    pub fn start(mut store: Store, writer: ChainWriter, mode: CommitMode) -> AuditLog {
        let (queue, jobs) = sync_channel::<Job>(AUDIT_QUEUE_ENTRIES_MAX);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(&mut store, &writer, &jobs, mode))
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

fn write_loop(store: &mut Store, writer: &ChainWriter, jobs: &Receiver<Job>, mode: CommitMode) {
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
