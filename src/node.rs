//! A node's directory: its identity, the central's public key, and the snapshot it holds.
//!
//! Layout (see ARCHITECTURE.md): `node.db` (the store), `central.pub`, `node.key`, `node.pub`
//! and `node.pub.sig`, `audit-seal.key` (the audit log's current seal epoch and key, 0600),
//! `snapshots/<id>.kfsnap` (verified copies, still encrypted), `tls/` (the HTTPS certificate). Import is atomic: the new
//! file is verified while it is copied, renamed into place, and only then made current in one
//! database transaction; a crash at any point leaves the previous snapshot in use.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};

use crate::clock::Clock;

use crate::audit::{
    self, Action, Actor, Anchor, AuditError, By, ChainWriter, Fault, HeadSeal, NewEntry, Outcome, Verifier,
    VerifyReport,
};
use crate::authz::Refusal;
use crate::contract::{BUNDLE_FORMAT, Bundle, node_key_message};
use crate::keys::{
    AuditSealKey, CentralPublicKey, KeyError, NodePublicKey, NodeSecretKey, SealState, UnwrapError, create_private_dir,
    write_secret_file,
};
use crate::model::MunicipalityCode;
use crate::progress::Progress;
use crate::region::{self, Region, RegionError};
use crate::snapshot::{self, Manifest, SnapshotError};
use crate::store::{HeldSnapshot, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "{0} はノードのディレクトリではありません（node.db がありません）。先に `kaigo-field node init --dir {0} …` を実行してください"
    )]
    NotInitialized(String),
    #[error("{0} にはすでにノードがあります（node.db）。作り直すなら別のディレクトリを指定してください")]
    AlreadyInitialized(String),
    #[error("ノードの設定 {0} が読めません: ノードを設定し直してください")]
    BadMeta(&'static str),
    #[error(
        "スナップショットの地域（{snapshot}）はこのノードの担当地域（{node}）に含まれません。担当地域のスナップショットを取得するか、ノードを設定し直してください"
    )]
    WrongRegion { snapshot: String, node: String },
    #[error(
        "このスナップショット（版 {offered}）は、すでに持っている版 {held} より新しくありません。最新のスナップショットを取得してください"
    )]
    NotNewer { offered: u64, held: u64 },
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Region(#[from] RegionError),
    #[error(
        "{0} はノードのプロビジョニングバンドルではありません（`kaigo-field central enroll-node` が作るファイルを指定してください）"
    )]
    BadBundle(String),
    #[error(transparent)]
    Unwrap(#[from] UnwrapError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Staff(#[from] crate::staff::StaffError),
    #[error("ノードの公開鍵（node.pub）に中央の署名がありません。ノードを設定し直してください")]
    UntrustedNodeKey,
    #[error("時計は進めることしかできません: 指定の {to} は、ノードの今の時刻 {now} より前です")]
    ClockBackwards { now: String, to: String },
    #[error(
        "時計を {to} までは進められません（{limit} まで）: ノードが信頼できる最後の時刻や認可の期間から大きく離れています。日付を確かめてください。長く保管していたノードなら、先に新しい認可を取り込もうとしてください（中央の発行時刻の近くまで進められるようになります）"
    )]
    ClockTooFar { to: String, limit: String },
    #[error(
        "ノードの時計（{now}）が、信頼できる最後の時刻（{mark}）より遅れています。時計を合わせるか、`kaigo-field clock forward` で進めてから取り込んでください"
    )]
    ClockBehindMark { now: String, mark: String },
    #[error(
        "監査ログの封印状態（audit-seal.key）を読めません（{0}）。ノードのディレクトリが完全ではありません（消された可能性があります）: 中央に連絡し、ノードを設定し直してください"
    )]
    SealState(KeyError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |cause| NodeError::Io { path: path.display().to_string(), cause }
}

/// Paths inside a node directory.
#[derive(Debug, Clone)]
pub struct NodeDir {
    pub root: PathBuf,
}

impl NodeDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NodeDir { root: root.into() }
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("node.db")
    }
    pub fn central_key(&self) -> PathBuf {
        self.root.join("central.pub")
    }
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn node_key(&self) -> PathBuf {
        self.root.join("node.key")
    }
    pub fn node_public_key(&self) -> PathBuf {
        self.root.join("node.pub")
    }
    pub fn node_public_key_signature(&self) -> PathBuf {
        self.root.join("node.pub.sig")
    }
    /// The audit log's seal state: current epoch and key (`keys::SealState`).
    pub fn audit_seal(&self) -> PathBuf {
        self.root.join("audit-seal.key")
    }
}

/// What the node is, as the store records it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub region: Region,
    pub central_key: CentralPublicKey,
}

/// An opened node: its info and its store.
pub struct Node {
    pub dir: NodeDir,
    pub info: NodeInfo,
    pub store: Store,
}

/// `node_meta` keys of the audit verification anchor and its signature
/// (`Node::verify_audit_at_start`).
const AUDIT_ANCHOR: &str = "audit_anchor";
const AUDIT_ANCHOR_SIGNATURE: &str = "audit_anchor_signature";

fn anchor_text(a: &Anchor) -> String {
    format!("{} {} {} {}", a.seq, a.head_hash, a.epoch, a.checkpoints)
}

fn anchor_parse(text: &str) -> Option<Anchor> {
    let mut parts = text.split(' ');
    let seq = parts.next()?.parse().ok()?;
    let head_hash = parts.next()?.to_owned();
    let epoch = parts.next()?.parse().ok()?;
    let checkpoints = parts.next()?.parse().ok()?;
    Some(Anchor { seq, head_hash, epoch, checkpoints })
}

/// `node_meta` key of `Node::central_time_seen`.
const CENTRAL_TIME_SEEN: &str = "central_time_seen";

/// Installs a provisioning bundle into a new node directory. With a passphrase, the node's
/// secret key is sealed with it (see ARCHITECTURE.md for the trade).
pub fn init(dir: &NodeDir, bundle_path: &Path, passphrase: Option<&str>) -> Result<NodeInfo, NodeError> {
    if dir.db().exists() {
        return Err(NodeError::AlreadyInitialized(dir.root.display().to_string()));
    }
    let text = zeroize::Zeroizing::new(fs::read_to_string(bundle_path).map_err(io(bundle_path))?);
    let bundle: Bundle =
        serde_json::from_str(&text).map_err(|_| NodeError::BadBundle(bundle_path.display().to_string()))?;
    if bundle.format != BUNDLE_FORMAT {
        return Err(NodeError::BadBundle(bundle_path.display().to_string()));
    }
    let region = Region::parse(&bundle.region)?;
    // Nothing in a node's directory is readable by others (directories 0700, files 0600), public
    // keys and certificates included: one rule is easier to keep than a list of exceptions.
    for d in [dir.root.clone(), dir.snapshots(), dir.tls()] {
        create_private_dir(&d)?;
    }
    write_secret_file(&dir.central_key(), bundle.central_public_key.as_bytes())?;
    let central_key = CentralPublicKey::load(&dir.central_key())?;
    write_secret_file(&dir.tls().join("ca.pem"), bundle.ca_cert_pem.as_bytes())?;
    write_secret_file(&dir.tls().join("cert.pem"), bundle.tls_cert_pem.as_bytes())?;
    write_secret_file(&dir.tls().join("key.pem"), bundle.tls_key_pem.as_bytes())?;
    let secret = NodeSecretKey::from_file_text(&bundle.node_secret_key)
        .ok_or_else(|| NodeError::BadBundle(bundle_path.display().to_string()))?;
    let signature: Option<[u8; 64]> =
        hex::decode(&bundle.node_public_key_signature).ok().and_then(|s| s.try_into().ok());
    let vouched = signature
        .is_some_and(|sig| central_key.verify(&node_key_message(&bundle.node_id, &bundle.node_public_key), &sig));
    if !vouched || NodePublicKey::from_text(&bundle.node_public_key) != Some(secret.public()) {
        return Err(NodeError::BadBundle(bundle_path.display().to_string()));
    }
    let seal_key0 = AuditSealKey::from_file_text(&bundle.audit_seal_key)
        .ok_or_else(|| NodeError::BadBundle(bundle_path.display().to_string()))?;
    secret.save(&dir.node_key(), passphrase)?;
    write_secret_file(&dir.node_public_key(), bundle.node_public_key.as_bytes())?;
    write_secret_file(&dir.node_public_key_signature(), bundle.node_public_key_signature.as_bytes())?;
    let store = Store::open(&dir.db())?;
    store.set_meta("node_id", &bundle.node_id)?;
    store.set_meta("region", &region.to_string())?;
    let clock = crate::clock::system();
    SealState::genesis(seal_key0, clock.now()).save(&dir.audit_seal())?;
    let writer = ChainWriter::new(&bundle.node_id, std::sync::Arc::new(secret), dir.audit_seal(), clock);
    writer.append(&store, &[NewEntry::by(Actor::Coordinator, Action::NodeInit, Outcome::Ok, "provisioned")])?;
    Ok(NodeInfo { node_id: bundle.node_id.clone(), region, central_key })
}

impl Node {
    pub fn open(dir: &NodeDir) -> Result<Node, NodeError> {
        if !dir.db().exists() {
            return Err(NodeError::NotInitialized(dir.root.display().to_string()));
        }
        let store = Store::open(&dir.db())?;
        let node_id = store.meta("node_id")?.ok_or(NodeError::BadMeta("node_id"))?;
        let region = Region::parse(&store.meta("region")?.ok_or(NodeError::BadMeta("region"))?)?;
        let central_key = CentralPublicKey::load(&dir.central_key())?;
        Ok(Node { dir: dir.clone(), info: NodeInfo { node_id, region, central_key }, store })
    }

    /// The node's time: the clock plus whatever the coordinator has moved it forward by.
    pub fn now(&self, clock: &dyn Clock) -> Result<DateTime<Utc>, NodeError> {
        Ok(clock.now() + Duration::seconds(self.store.trusted_time()?.offset_seconds))
    }

    /// The latest trusted time, if any: the node refuses to serve while its time is earlier.
    pub fn high_water(&self) -> Result<Option<DateTime<Utc>>, NodeError> {
        Ok(self.store.trusted_time()?.high_water)
    }

    /// Notes the node's own running time as trusted, unless the clock is behind the mark (then
    /// the mark stays and the node refuses to serve until the clock is right). Written at most
    /// every `TRUSTED_TIME_STEP_SECONDS`, so that a busy node does not flush the disk for it on
    /// every request.
    pub fn note_running_time(&self, clock: &dyn Clock) -> Result<(), NodeError> {
        let now = self.now(clock)?;
        let step = Duration::seconds(crate::limits::TRUSTED_TIME_STEP_SECONDS);
        if self.high_water()?.is_none_or(|hw| now >= hw + step) {
            self.store.raise_high_water(now)?;
        }
        Ok(())
    }

    /// Moves the node's time forward to `to` (never back), for a coordinator whose device clock
    /// is behind; the move and its audit entry commit together. Returns the node's time before.
    pub fn move_clock_forward(
        &self,
        to: DateTime<Utc>,
        clock: &dyn Clock,
        writer: &ChainWriter,
        by: By<'_>,
    ) -> Result<DateTime<Utc>, NodeError> {
        writer.commit(
            &self.store,
            || {
                let now = self.check_clock_move(to, clock)?;
                // Whole seconds, rounded up: rounded down, the node's time would sit just below
                // the new high-water mark and refuse to serve for up to a second.
                let offset = ((to - clock.now()).num_milliseconds() + 999).div_euclid(1000).max(0);
                self.store.move_clock(now, to, offset)?;
                let detail = format!("{} -> {}", now.to_rfc3339(), to.to_rfc3339());
                Ok((now, by(Action::ClockMove, Outcome::Ok, detail)))
            },
            |e: &NodeError| Some(by(Action::ClockMove, Outcome::Denied, e.to_string())),
        )
    }

    /// Whether the node's time may be moved forward to `to` now; the node's time if so. Never
    /// back; at most `CLOCK_FORWARD_STEP_SECONDS_MAX` at once; and never past the latest time
    /// the node has seen vouched for (its trusted time, the central's signed issue time of an
    /// authorization offered to it, the end of any authorization it has held) plus
    /// `CLOCK_FORWARD_MARGIN_SECONDS`.
    pub fn check_clock_move(&self, to: DateTime<Utc>, clock: &dyn Clock) -> Result<DateTime<Utc>, NodeError> {
        use crate::limits::{CLOCK_FORWARD_MARGIN_SECONDS, CLOCK_FORWARD_STEP_SECONDS_MAX};
        let now = self.now(clock)?;
        if to <= now {
            return Err(NodeError::ClockBackwards { now: crate::authz::jst(now), to: crate::authz::jst(to) });
        }
        let seen = [self.high_water()?, self.central_time_seen()?, self.store.latest_not_after()?]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(now)
            .max(now);
        let limit = (seen + Duration::seconds(CLOCK_FORWARD_MARGIN_SECONDS))
            .min(now + Duration::seconds(CLOCK_FORWARD_STEP_SECONDS_MAX));
        if to > limit {
            return Err(NodeError::ClockTooFar { to: crate::authz::jst(to), limit: crate::authz::jst(limit) });
        }
        Ok(now)
    }

    /// The latest issue time of an authentic authorization offered to this node (imported or
    /// not): the central's clock, which bounds how far the coordinator may move the node's.
    pub fn central_time_seen(&self) -> Result<Option<DateTime<Utc>>, NodeError> {
        Ok(self.store.meta(CENTRAL_TIME_SEEN)?.and_then(|t| DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.to_utc()))
    }

    /// Notes the central's signed time `t` (see `central_time_seen`); never lowers it.
    pub fn note_central_time(&self, t: DateTime<Utc>) -> Result<(), NodeError> {
        if self.central_time_seen()?.is_none_or(|seen| t > seen) {
            self.store.set_meta(CENTRAL_TIME_SEEN, &t.to_rfc3339())?;
        }
        Ok(())
    }

    /// The node's public keys, trusted only with the central's signature over them.
    pub fn public_key(&self) -> Result<NodePublicKey, NodeError> {
        let text = fs::read_to_string(self.dir.node_public_key()).map_err(io(&self.dir.node_public_key()))?;
        let sig_path = self.dir.node_public_key_signature();
        let sig = fs::read_to_string(&sig_path).map_err(io(&sig_path))?;
        let sig: Option<[u8; 64]> = hex::decode(sig.trim()).ok().and_then(|s| s.try_into().ok());
        let vouched =
            sig.is_some_and(|s| self.info.central_key.verify(&node_key_message(&self.info.node_id, &text), &s));
        if !vouched {
            return Err(NodeError::UntrustedNodeKey);
        }
        NodePublicKey::from_text(&text).ok_or(NodeError::UntrustedNodeKey)
    }

    /// Enrols a member of staff under the authorization in force; their row and its audit
    /// entry commit together, and a refusal is recorded on its own.
    pub fn enrol(
        &mut self,
        name: &str,
        facility: &str,
        role: crate::authz::Role,
        clock: &dyn Clock,
        writer: &ChainWriter,
        by: By<'_>,
    ) -> Result<crate::staff::Enrolled, NodeError> {
        let authorization = self.active_authorization(clock)?;
        writer.commit(
            &self.store,
            || {
                let now = self.now(clock)?;
                let enrolled = crate::staff::add(&self.store, authorization.as_ref(), name, facility, role, now)?;
                let entry = NewEntry {
                    facility: Some(facility.trim().to_owned()).filter(|f| !f.is_empty()),
                    role: Some(role),
                    ..by(Action::Enrol, Outcome::Ok, enrolled.id.clone())
                };
                Ok((enrolled, entry))
            },
            |e: &NodeError| Some(by(Action::Enrol, Outcome::Denied, e.to_string())),
        )
    }

    /// The node's first coordinator (made at `node init`), with its audit entry.
    pub fn enrol_first_coordinator(
        &self,
        name: &str,
        passphrase: &str,
        clock: &dyn Clock,
        writer: &ChainWriter,
    ) -> Result<String, NodeError> {
        writer.commit(
            &self.store,
            || {
                let now = self.now(clock)?;
                let (id, _token) = crate::staff::add_first_coordinator(&self.store, name, passphrase, now)?;
                let entry = NewEntry {
                    role: Some(crate::authz::Role::Coordinator),
                    ..NewEntry::by(Actor::Coordinator, Action::Enrol, Outcome::Ok, id.clone())
                };
                Ok((id, entry))
            },
            |e: &NodeError| Some(NewEntry::by(Actor::Coordinator, Action::Enrol, Outcome::Denied, e.to_string())),
        )
    }

    /// Revokes `target` for `actor` (never oneself, never the first coordinator); the revocation
    /// and its audit entry commit together. `Ok(false)`: no such member, or already revoked.
    pub fn revoke(
        &self,
        actor: &str,
        target: &str,
        clock: &dyn Clock,
        writer: &ChainWriter,
        by: By<'_>,
    ) -> Result<bool, NodeError> {
        writer.commit(
            &self.store,
            || {
                let now = self.now(clock)?;
                let Some(row) = self.store.staff(target)? else {
                    return Ok((false, by(Action::Revoke, Outcome::Failed, target.to_owned())));
                };
                crate::staff::may_revoke(actor, &row)?;
                let revoked = self.store.revoke_staff(target, now)?;
                let outcome = if revoked { Outcome::Ok } else { Outcome::Failed };
                Ok((revoked, by(Action::Revoke, outcome, target.to_owned())))
            },
            |e: &NodeError| Some(by(Action::Revoke, Outcome::Denied, format!("{target}: {e}"))),
        )
    }

    /// The writer a command run on the node records with: it takes turns with a serving
    /// node's writer through the database's write lock (`Store::append_audit_with`).
    pub fn writer(&self, secret: std::sync::Arc<NodeSecretKey>, clock: crate::clock::SharedClock) -> ChainWriter {
        ChainWriter::new(&self.info.node_id, secret, self.dir.audit_seal(), clock)
    }

    /// Appends audit entries now, durably (for commands run on the node).
    pub fn audit(
        &mut self,
        secret: std::sync::Arc<NodeSecretKey>,
        clock: crate::clock::SharedClock,
        entries: &[NewEntry],
    ) -> Result<(), NodeError> {
        self.writer(secret, clock).append(&self.store, entries)?;
        Ok(())
    }

    /// Verifies the whole audit log as far as the node can alone (`audit::verify`: not empty,
    /// the chain, signatures, the epoch rule) with its (central-vouched) public key, and that
    /// the seal state file is there and not ahead of the log by more than the one step a crash
    /// can leave. The seals themselves only the central can check (`audit::verify_sealed`).
    /// Streams the log in one read transaction: constant memory, and no false alarm from a
    /// writer committing meanwhile.
    pub fn verify_audit(&self) -> Result<Result<VerifyReport, Fault>, NodeError> {
        self.verify_audit_after(None)
    }

    /// What a start verifies: only what was written since the anchor a previous start left
    /// (kept in the store, signed with the node's key), then a new anchor at the head. Time and
    /// memory do not grow with the log. Without a valid anchor, the whole log. A change to
    /// entries before the anchor is found by `verify_audit` (`audit verify`), not here.
    pub fn verify_audit_at_start(&self, secret: &NodeSecretKey) -> Result<Result<VerifyReport, Fault>, NodeError> {
        let key = self.public_key()?;
        let anchor = self.audit_anchor(&key)?;
        let report = match self.verify_audit_after(anchor.as_ref())? {
            Ok(report) => report,
            Err(fault) => return Ok(Err(fault)),
        };
        let next = Anchor::of(&report);
        self.store.set_meta(AUDIT_ANCHOR, &anchor_text(&next))?;
        self.store.set_meta(AUDIT_ANCHOR_SIGNATURE, &next.sign(&self.info.node_id, secret))?;
        Ok(Ok(report))
    }

    /// The anchor a previous start left, if it is there and signed by this node.
    fn audit_anchor(&self, key: &NodePublicKey) -> Result<Option<Anchor>, NodeError> {
        let (Some(text), Some(signature)) = (self.store.meta(AUDIT_ANCHOR)?, self.store.meta(AUDIT_ANCHOR_SIGNATURE)?)
        else {
            return Ok(None);
        };
        let anchor = anchor_parse(&text).filter(|a| a.signed_by(&self.info.node_id, key, &signature));
        if anchor.is_none() {
            tracing::warn!("the audit log's verification anchor is not signed by this node; verifying the whole log");
        }
        Ok(anchor)
    }

    fn verify_audit_after(&self, anchor: Option<&Anchor>) -> Result<Result<VerifyReport, Fault>, NodeError> {
        let key = self.public_key()?;
        let node_id = self.info.node_id.as_str();
        let after = anchor.map_or(0, |a| a.seq);
        let verified = self.store.audit_stream(after, |at_anchor, entries, checkpoints| {
            let mut v = match anchor {
                Some(a) => {
                    if at_anchor.as_deref() != Some(a.head_hash.as_str()) {
                        return Ok(Err(Fault {
                            seq: a.seq,
                            what: format!(
                                "前回の起動時に確かめた {} 番の記録が、なくなったか変わっています（切り詰め・書き換え）",
                                a.seq
                            ),
                        }));
                    }
                    Verifier::resume(node_id, &key, a)
                }
                None => Verifier::new(node_id, &key),
            };
            let mut checkpoints = checkpoints.peekable();
            let mut fed = 0u64;
            for e in entries {
                let e = e?;
                if let Err(fault) = v.entry(&e) {
                    return Ok(Err(fault));
                }
                fed += 1;
                while let Some(c) = checkpoints.next_if(|c| c.as_ref().map_or(true, |c| c.seq <= e.seq)) {
                    if let Err(fault) = v.checkpoint(&c?) {
                        return Ok(Err(fault));
                    }
                }
            }
            // A wiped log says so, whatever checkpoints are left.
            if fed > 0 || anchor.is_some() {
                for c in checkpoints {
                    if let Err(fault) = v.checkpoint(&c?) {
                        return Ok(Err(fault));
                    }
                }
            }
            Ok::<_, StoreError>(v.finish())
        })??;
        let report = match verified {
            Ok(r) => r,
            Err(fault) => return Ok(Err(fault)),
        };
        let state = SealState::load(&self.dir.audit_seal()).map_err(NodeError::SealState)?;
        if state.epoch > report.epoch + 1 {
            return Ok(Err(Fault {
                seq: report.entries + 1,
                what: format!(
                    "封印の期は {} まで進んでいるのに、ログの最後のチェックポイントは期 {} です（末尾の切り詰め）",
                    state.epoch, report.epoch
                ),
            }));
        }
        Ok(Ok(report))
    }

    /// A fresh seal over the log's head (epoch, seq, head hash, the node's time) with the
    /// current seal key, to go with the log to the central (`audit::verify_sealed`). Writes
    /// nothing: the key moves on only when a checkpoint needs it.
    pub fn head_seal(&self, clock: &dyn Clock) -> Result<HeadSeal, NodeError> {
        let (seq, head) = self.store.audit_head()?.unwrap_or((0, hex::encode(audit::GENESIS)));
        let last = self.store.audit_last_checkpoint()?.and_then(|c| c.seal).map(|s| s.epoch);
        let mut state = SealState::load(&self.dir.audit_seal()).map_err(NodeError::SealState)?;
        // A writer that lost a race can leave the file behind the log (see `ChainWriter`); the
        // key of the log's epoch is one walk forward.
        while last.is_some_and(|l| state.epoch < l) {
            state.evolve(state.started);
        }
        let wall_time = self.now(clock)?.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Ok(HeadSeal::make(&self.info.node_id, state.epoch, seq, head, wall_time, state.key()))
    }

    /// The node's secret key, unsealed with the passphrase if it is sealed.
    pub fn secret_key(&self, passphrase: Option<&str>) -> Result<NodeSecretKey, NodeError> {
        Ok(NodeSecretKey::load(&self.dir.node_key(), passphrase)??)
    }

    pub fn current_manifest(&self) -> Result<Option<(HeldSnapshot, Manifest)>, NodeError> {
        let Some(held) = self.store.current_snapshot()? else {
            return Ok(None);
        };
        let manifest =
            serde_json::from_str(&held.manifest_json).map_err(|_| NodeError::BadMeta("snapshot.manifest"))?;
        Ok(Some((held, manifest)))
    }

    /// Whether this node could take the snapshot: its region and its version.
    fn check_fits(&self, m: &Manifest) -> Result<(), NodeError> {
        let outside: Vec<MunicipalityCode> =
            m.municipalities.iter().copied().filter(|c| !self.info.region.contains(*c)).collect();
        if !outside.is_empty() {
            return Err(NodeError::WrongRegion {
                snapshot: region::names(&m.municipalities),
                node: describe_region(&self.info.region),
            });
        }
        if let Some((held, _)) = self.current_manifest()?
            && m.snapshot_version <= held.snapshot_version
        {
            return Err(NodeError::NotNewer { offered: m.snapshot_version, held: held.snapshot_version });
        }
        Ok(())
    }

    /// Verifies a snapshot file completely and checks that this node could import it.
    pub fn verify(&self, file: &Path, quiet: bool) -> Result<Manifest, NodeError> {
        let len = fs::metadata(file).map_err(io(file))?.len();
        let input = BufReader::new(File::open(file).map_err(io(file))?);
        let mut progress = Progress::new("検証", len, quiet);
        let m = snapshot::verify(input, &self.info.central_key, &mut std::io::sink(), |n| progress.set_position(n))?;
        progress.finish();
        self.check_fits(&m)?;
        Ok(m)
    }

    /// Verifies and imports a snapshot; see the module comment for why this is atomic. The
    /// switch and its audit entry commit together; a refused or failed import is recorded too.
    pub fn import(
        &self,
        file: &Path,
        clock: &dyn Clock,
        quiet: bool,
        writer: &ChainWriter,
        by: By<'_>,
    ) -> Result<Manifest, NodeError> {
        let failed = |e: &NodeError| by(Action::SnapshotImport, Outcome::Failed, e.to_string());
        // One import at a time on this node, whichever process runs it: an import removes the
        // files the store does not name, which would include another import's file not yet
        // switched to. Released when `_one` drops, or when the process dies.
        let lock_path = self.dir.root.join("import.lock");
        let _one = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .and_then(|f| f.lock().map(|()| f))
            .map_err(io(&lock_path))?;
        let copied = self.copy_in(file, clock, quiet);
        let (manifest, now) = match copied {
            Ok(done) => done,
            Err(e) => {
                writer.append(&self.store, &[failed(&e)])?;
                return Err(e);
            }
        };
        let dir = self.dir.snapshots();
        let file_name = format!("{}.kfsnap", manifest.snapshot_id);
        let old = writer.commit(
            &self.store,
            || {
                // Checked again under the write lock: another import may have switched meanwhile.
                self.check_fits(&manifest)?;
                let manifest_json = serde_json::to_string(&manifest).expect("a manifest serializes");
                let old = self.store.switch_snapshot(&HeldSnapshot {
                    snapshot_id: manifest.snapshot_id.clone(),
                    snapshot_version: manifest.snapshot_version,
                    manifest_json,
                    file_name: file_name.clone(),
                    imported_at: now,
                })?;
                // The central's clock when it cut the snapshot is trusted time.
                self.store.raise_high_water(manifest.created_at)?;
                let detail = format!("snapshot v{} {}", manifest.snapshot_version, manifest.snapshot_id);
                Ok((old, by(Action::SnapshotImport, Outcome::Ok, detail)))
            },
            |e: &NodeError| Some(failed(e)),
        )?;
        if let Some(old) = old.filter(|o| *o != file_name) {
            // The switch is committed; the old file is garbage now, and a failure to delete it
            // is cleaned up by the next import.
            let _ = fs::remove_file(dir.join(old));
        }
        Ok(manifest)
    }

    /// The long part of an import, before the write lock: checks, then the file verified while
    /// copied into the node's directory under its final name (not yet current). Returns its
    /// manifest and the node's time.
    fn copy_in(&self, file: &Path, clock: &dyn Clock, quiet: bool) -> Result<(Manifest, DateTime<Utc>), NodeError> {
        let len = fs::metadata(file).map_err(io(file))?.len();
        // A clock behind the trusted time would stamp the import (and its audit entry) in the
        // past: refused, as the gate refuses to serve then.
        let now = self.now(clock)?;
        if let Some(mark) = self.high_water()?.filter(|mark| now < *mark) {
            return Err(NodeError::ClockBehindMark { now: crate::authz::jst(now), mark: crate::authz::jst(mark) });
        }
        // Cheap checks first, so a wrong file is refused before a long copy.
        let head =
            snapshot::read_manifest(BufReader::new(File::open(file).map_err(io(file))?), &self.info.central_key)?;
        self.check_fits(&head)?;
        self.remove_orphans()?;

        let dir = self.dir.snapshots();
        create_private_dir(&dir)?;
        let tmp = dir.join(format!(".import-{}.tmp", head.snapshot_id));
        let result = (|| {
            let input = BufReader::new(File::open(file).map_err(io(file))?);
            // 0600 like everything in the node's directory; a leftover of a crashed import was
            // removed by `remove_orphans` above, so this open creates the file.
            let out = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
            let mut writer = BufWriter::with_capacity(1 << 20, out);
            let mut progress = Progress::new("取り込み", len, quiet);
            let m = snapshot::verify(input, &self.info.central_key, &mut writer, |n| progress.set_position(n))?;
            let out = writer
                .into_inner()
                .map_err(|e| NodeError::Io { path: tmp.display().to_string(), cause: e.into_error() })?;
            out.sync_all().map_err(io(&tmp))?;
            progress.finish();
            if m != head {
                return Err(SnapshotError::Altered {
                    what: "読んでいる間にファイルが変わりました".into()
                }
                .into());
            }
            Ok(m)
        })();
        let manifest = match result {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let file_name = format!("{}.kfsnap", manifest.snapshot_id);
        let final_path = dir.join(&file_name);
        fs::rename(&tmp, &final_path).map_err(io(&final_path))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io(&dir))?;
        Ok((manifest, now))
    }

    /// Deletes snapshot files that the store does not name: leftovers of an import that crashed
    /// before its switch committed.
    fn remove_orphans(&self) -> Result<(), NodeError> {
        let dir = self.dir.snapshots();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let current = self.store.current_snapshot()?.map(|h| h.file_name);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if Some(&name) != current.as_ref() {
                fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        Ok(())
    }
}

/// "石川県 全域、高知市" for people; codes where a name is unknown.
pub fn describe_region(r: &Region) -> String {
    let prefs = r.prefectures.iter().map(|p| {
        region::municipalities()
            .iter()
            .find(|m| m.code.prefecture() == p)
            .map_or_else(|| format!("都道府県 {p}"), |m| format!("{} 全域", m.prefecture))
    });
    let codes: Vec<MunicipalityCode> = r.municipalities.iter().copied().collect();
    let munis = (!codes.is_empty()).then(|| region::names(&codes));
    prefs.chain(munis).collect::<Vec<_>>().join("、")
}
