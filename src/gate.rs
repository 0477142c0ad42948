//! The gate between a node's encrypted snapshot and anyone who wants to read it.
//!
//! Importing an authorization (`Node::import_authorization`) decides with `authz::decide` and
//! records the result; `Gate::access` is the one code path that hands out decrypted records, and
//! it re-checks the window and the trusted time on every call. Outside the window the data key
//! and the records are dropped (the key zeroized) and every call is refused with the reason.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::audit::{Action, By, ChainWriter, Outcome};
use crate::authz::{self, Authorization, Decision, SignedAuthorization, jst};
use crate::clock::Clock;
use crate::disclose::FieldEvent;
use crate::keys::{DataKey, NodeSecretKey};
use crate::model::PersonRecord;
use crate::node::{Node, NodeError};
use crate::search::matcher::Index;
use crate::snapshot::{self, RecordMap, SnapshotError};
use crate::staff::LoginError;
use crate::store::AuthorizationRow;
use crate::store::{FieldEventRow, StaffRow};
use zeroize::Zeroizing;

/// The opened region and the authorization that opened it. Dropped when the window closes.
/// It holds the matcher's index (built from the snapshot's search section) and the data key;
/// full records stay encrypted in the snapshot file until one is viewed.
pub struct OpenData {
    pub authorization: Authorization,
    /// Wiped (on drop) with the index it opened; also keys the audit query hashes.
    data_key: DataKey,
    pub index: Index,
    /// The snapshot file's name, and the file itself, open: records are read from this handle,
    /// so a snapshot imported meanwhile (which deletes the old file) never leaves the index
    /// without its records.
    file_name: String,
    file: File,
    records: RecordMap,
}

/// Reads a shared file at its own position (`pread`): concurrent record reads need no lock.
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for At<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let base = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.file.metadata()?.len().checked_add_signed(d),
        };
        self.pos = base.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}

impl OpenData {
    /// Seals a field event under the data key, bound to who wrote it about whom and when.
    pub fn seal_event(
        &self,
        event: &FieldEvent,
        person_id: &str,
        staff_id: &str,
        facility: &str,
        at: DateTime<Utc>,
    ) -> FieldEventRow {
        let plain = Zeroizing::new(serde_json::to_vec(event).expect("a field event serializes"));
        let aad = event_aad(person_id, staff_id, at);
        FieldEventRow {
            seq: 0,
            person_id: person_id.to_owned(),
            staff_id: staff_id.to_owned(),
            facility: facility.to_owned(),
            at,
            data_key_id: self.data_key.key_id(),
            sealed: self.data_key.seal(&aad, &plain),
        }
    }

    /// Opens a stored field event; `None` if it was sealed under another snapshot's data key
    /// (written before the node took a newer snapshot) or altered. Any authorization that opens
    /// this snapshot reads the events written under it, as the central can.
    pub fn open_event(&self, row: &FieldEventRow) -> Option<FieldEvent> {
        let plain = self.data_key.open(&event_aad(&row.person_id, &row.staff_id, row.at), &row.sealed)?;
        serde_json::from_slice(&plain).ok()
    }

    /// One person's full record, decrypted from the snapshot file now (one chunk is read).
    /// Never kept: the caller shows it and drops it.
    pub fn record(&self, person_id: &str) -> Result<Option<PersonRecord>, SnapshotError> {
        let Some(position) = self.index.position_of(person_id) else { return Ok(None) };
        let mut file = At { file: &self.file, pos: 0 };
        let record = snapshot::read_record(&mut file, &self.records, &self.data_key, u64::from(position))?;
        // The search section and the records were built together; a mismatch is an altered file.
        if record.person_id.as_str() != person_id {
            return Err(SnapshotError::Altered { what: "検索部と記録の順序が一致しません".into() });
        }
        // Checked again on the record itself, not only on the index that found it.
        if !self.authorization.covers_municipality(record.municipality.as_str()) {
            return Err(SnapshotError::Altered {
                what: "認可の対象外の市区町村の記録が索引にありました".into()
            });
        }
        Ok(Some(record))
    }

    /// The keyed hash of a search, for the audit log (see `DataKey::audit_query_hash`).
    pub fn query_hash(&self, summary: &str) -> [u8; 32] {
        self.data_key.audit_query_hash(summary)
    }
}

fn event_aad(person_id: &str, staff_id: &str, at: DateTime<Utc>) -> Vec<u8> {
    format!("kaigo-field/field-event/v1\0{person_id}\0{staff_id}\0{}", at.to_rfc3339()).into_bytes()
}

impl std::fmt::Debug for OpenData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenData({} #{}, {} persons)", self.authorization.id, self.authorization.serial, self.index.len())
    }
}

/// Why the data cannot be read now. Each says what to do; the web pages show these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("災害認可がありません。コーディネーターが中央から認可を受け取り、取り込むまで検索できません")]
    NoAuthorization,
    #[error(
        "災害認可（{disaster}）は終了しました（{reason}、{at}）。必要なら中央に延長を依頼し、新しい認可を取り込んでください"
    )]
    Closed { disaster: String, reason: String, at: String },
    #[error("災害認可（{disaster}）はまだ始まっていません（{from} から）")]
    NotYetValid { disaster: String, from: String },
    #[error(
        "ノードの時計（{now}）が、信頼できる最後の時刻（{mark}）より遅れているため停止しています。時計を合わせるか、コーディネーターが `kaigo-field clock forward` で進めてください"
    )]
    ClockBehind { now: String, mark: String },
    /// A newer snapshot is current, and the authorization in force was cut for the one before
    /// (after a restart, the older file is gone): its own authorization opens it.
    #[error(
        "新しいスナップショットを取り込みましたが、それに対応する災害認可がまだありません。中央から届いた認可を取り込むまで検索できません"
    )]
    AwaitingAuthorization,
    /// A fault of the node: the incident number its detail is logged under (`incident`).
    #[error("認可されたデータを開けません。コーディネーターに連絡してください（障害番号 {0}）")]
    Unavailable(String),
}

/// What importing an authorization did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    Activated {
        id: String,
        serial: u32,
        until: DateTime<Utc>,
    },
    /// A newer serial whose window is over: the authorization was ended.
    Closed {
        id: String,
        serial: u32,
    },
}

impl ImportOutcome {
    /// What the audit log says of an accepted import: its action, outcome and detail.
    fn entry(&self, by: By<'_>) -> crate::audit::NewEntry {
        let detail = match self {
            ImportOutcome::Activated { id, serial, .. } => format!("{id} #{serial} activated"),
            ImportOutcome::Closed { id, serial } => format!("{id} #{serial} ended it"),
        };
        by(Action::AuthorizationImport, Outcome::Ok, detail)
    }
}

pub const REASON_EXPIRED: &str = "期限切れ";
pub const REASON_CLOSED: &str = "コーディネーターが終了";
pub const REASON_REVOKED: &str = "中央が終了（取り消し・短縮）";
pub const REASON_REPLACED: &str = "別の認可に置き換え";

impl Node {
    /// Checks an authorization code and, if it is good, makes it the one in force (or ends the
    /// one it supersedes). The key is unwrapped here once to prove it opens this snapshot.
    /// The decision, the authorization's row and its audit entry commit together; a refusal
    /// is recorded on its own.
    pub fn import_authorization(
        &self,
        code: &str,
        secret: &NodeSecretKey,
        clock: &dyn Clock,
        writer: &ChainWriter,
        by: By<'_>,
    ) -> Result<ImportOutcome, NodeError> {
        // An authentic authorization for this node carries the central's clock, even if it is
        // refused below (for instance because this node's clock is far behind): it bounds how
        // far the coordinator may then move the clock forward. Noted before the import's
        // transaction, which a refusal undoes.
        if let Ok(signed) = SignedAuthorization::parse(code) {
            let a = &signed.authorization;
            if signed.signature_valid(&self.info.central_key) && a.grant_for(&self.info.node_id).is_some() {
                self.note_central_time(a.issued_at())?;
            }
        }
        writer.commit(
            &self.store,
            || {
                let outcome = self.import_authorization_now(code, secret, clock)?;
                let entry = outcome.entry(by);
                Ok((outcome, entry))
            },
            |e: &NodeError| Some(by(Action::AuthorizationRefused, Outcome::Denied, e.to_string())),
        )
    }

    fn import_authorization_now(
        &self,
        code: &str,
        secret: &NodeSecretKey,
        clock: &dyn Clock,
    ) -> Result<ImportOutcome, NodeError> {
        let signed = SignedAuthorization::parse(code)?;
        let a = &signed.authorization;
        let now = self.now(clock)?;
        let manifest = self.current_manifest()?.map(|(_, m)| m);
        let seen = self.store.authorization(&a.id)?.map(|r| r.serial);
        let high_water = self.high_water()?.unwrap_or(DateTime::<Utc>::MIN_UTC);
        let ctx = authz::Context {
            central_key: &self.info.central_key,
            node_id: &self.info.node_id,
            snapshot: manifest.as_ref(),
            now,
            high_water,
            seen_serial: seen,
        };
        let decision = authz::decide(&signed, &ctx)?;
        let mut row = AuthorizationRow {
            id: a.id.clone(),
            serial: a.serial,
            code: None,
            disaster: a.disaster.clone(),
            not_before: a.not_before(),
            not_after: a.not_after(),
            drill: a.drill,
            active: false,
            closed_reason: None,
            updated_at: now,
        };
        let outcome = match decision {
            Decision::Activate => {
                let grant = a.grant_for(&self.info.node_id).expect("decide checked the node is listed");
                let key = secret.unwrap_data_key(&grant.wrapped_key).map_err(|_| authz::Refusal::KeyDoesNotOpen)?;
                let held = manifest.as_ref().expect("decide checked a snapshot is held");
                if key.key_id() != held.data_key_id {
                    return Err(authz::Refusal::KeyDoesNotOpen.into());
                }
                row.code = Some(code.trim().to_owned());
                row.active = true;
                ImportOutcome::Activated { id: a.id.clone(), serial: a.serial, until: a.not_after() }
            }
            Decision::Close => {
                row.closed_reason = Some(REASON_REVOKED.to_owned());
                if self.store.active_authorization()?.is_some_and(|r| r.id == a.id) {
                    self.store.close_active_authorization(REASON_REVOKED, now)?;
                }
                ImportOutcome::Closed { id: a.id.clone(), serial: a.serial }
            }
        };
        self.store.put_authorization(&row, REASON_REPLACED)?;
        // The central's clock when it issued this is trusted time.
        self.store.raise_high_water(a.issued_at())?;
        Ok(outcome)
    }

    /// Ends the authorization in force, if any (the coordinator's `authz close`); the close and
    /// its audit entry commit together.
    pub fn close_authorization(
        &self,
        clock: &dyn Clock,
        writer: &ChainWriter,
        by: By<'_>,
    ) -> Result<Option<String>, NodeError> {
        writer.commit(
            &self.store,
            || {
                let now = self.now(clock)?;
                let closed = self.store.close_active_authorization(REASON_CLOSED, now)?;
                let detail = closed.clone().unwrap_or_else(|| "none active".into());
                Ok((closed, by(Action::AuthorizationClose, Outcome::Ok, detail)))
            },
            |e: &NodeError| Some(by(Action::AuthorizationClose, Outcome::Failed, e.to_string())),
        )
    }

    /// The authorization in force and readable now, or why not. Ends an authorization whose
    /// window is over (recording it), so that a restart after not-after comes back inactive.
    pub fn check_access(&mut self, clock: &dyn Clock) -> Result<AuthorizationRow, Denied> {
        let broken = |e: NodeError| Denied::Unavailable(crate::incident::record("認可の状態を読めません", e));
        let now = self.now(clock).map_err(broken)?;
        if let Some(mark) = self.high_water().map_err(broken)?
            && now < mark
        {
            return Err(Denied::ClockBehind { now: jst(now), mark: jst(mark) });
        }
        // The node's own clock while it runs is trusted time from here on.
        self.note_running_time(clock).map_err(broken)?;
        let Some(row) = self.store.active_authorization().map_err(|e| broken(e.into()))? else {
            return Err(match self.store.latest_authorization().map_err(|e| broken(e.into()))? {
                Some(last) => Denied::Closed {
                    disaster: last.disaster,
                    reason: last.closed_reason.unwrap_or_default(),
                    at: jst(last.updated_at),
                },
                None => Denied::NoAuthorization,
            });
        };
        if now >= row.not_after {
            self.store.close_active_authorization(REASON_EXPIRED, now).map_err(|e| broken(e.into()))?;
            return Err(Denied::Closed { disaster: row.disaster, reason: REASON_EXPIRED.into(), at: jst(now) });
        }
        if now < row.not_before {
            return Err(Denied::NotYetValid { disaster: row.disaster, from: jst(row.not_before) });
        }
        Ok(row)
    }

    /// The id of the authorization in force, after ending it if its window is over. A clock
    /// fault or a window not yet begun does not end it: staff enrolled under it keep their
    /// enrolment, and the gate refuses their requests with that reason instead.
    pub fn authorization_in_force(&mut self, clock: &dyn Clock) -> Option<String> {
        let _ = self.check_access(clock);
        self.store.active_authorization().ok().flatten().map(|row| row.id)
    }

    /// Whether `staff` may act now: not revoked, and enrolled under the authorization in force.
    /// If not, why, in the words staff see: for an ended authorization, the reason the data is
    /// closed comes first.
    pub fn staff_may_act(&mut self, staff: &StaffRow, clock: &dyn Clock) -> Result<(), (LoginError, String)> {
        let in_force = self.authorization_in_force(clock);
        crate::staff::still_allowed(staff, in_force.as_deref()).map_err(|why| {
            // Why the data is closed comes first, when that is the story (ended, none); a clock
            // behind its mark is a fault of the node, not why this person's access ended.
            let message = match (&why, self.check_access(clock)) {
                (LoginError::AuthorizationEnded, Err(closed @ (Denied::Closed { .. } | Denied::NoAuthorization))) => {
                    format!("{closed}。{why}")
                }
                _ => why.to_string(),
            };
            (why, message)
        })
    }

    /// The authorization in force, decoded (for its facility rules and scope), if any.
    pub fn active_authorization(&mut self, clock: &dyn Clock) -> Result<Option<Authorization>, NodeError> {
        let Ok(row) = self.check_access(clock) else { return Ok(None) };
        let code = row.code.as_deref().expect("an active authorization keeps its code");
        Ok(Some(SignedAuthorization::parse(code)?.authorization))
    }

    /// What opening the data of `row` needs from the node, taken while the node is locked; the
    /// opening itself (`Plan::open`) needs no lock.
    fn plan(&self, row: AuthorizationRow) -> Result<Plan, NodeError> {
        let (held, manifest) = self.current_manifest()?.ok_or(authz::Refusal::NoSnapshot)?;
        Ok(Plan {
            path: self.dir.snapshots().join(&held.file_name),
            file_name: held.file_name,
            data_key_id: manifest.data_key_id,
            row,
            central_key: self.info.central_key.clone(),
            node_id: self.info.node_id.clone(),
        })
    }
}

/// Everything needed to open one authorization's data over one snapshot file, without the node.
pub struct Plan {
    row: AuthorizationRow,
    path: std::path::PathBuf,
    file_name: String,
    data_key_id: String,
    central_key: crate::keys::CentralPublicKey,
    node_id: String,
}

impl Plan {
    fn opens(&self, data: &OpenData) -> bool {
        data.authorization.id == self.row.id && data.authorization.serial == self.row.serial
    }

    /// Unwraps the data key of the authorization and decrypts the snapshot's search section
    /// into the index: the long part of activation (about a second at a million persons).
    fn open(&self, secret: &NodeSecretKey) -> Result<OpenData, NodeError> {
        let code = self.row.code.as_deref().expect("an active authorization keeps its code");
        let signed = SignedAuthorization::parse(code)?;
        // The stored code was checked on import; check the signature again in case the database
        // was edited.
        if !signed.signature_valid(&self.central_key) {
            return Err(authz::Refusal::ForgedSignature.into());
        }
        let grant = signed
            .authorization
            .grant_for(&self.node_id)
            .ok_or_else(|| NodeError::Refused(authz::Refusal::NodeNotListed(self.node_id.clone())))?;
        let data_key = secret.unwrap_data_key(&grant.wrapped_key)?;
        if data_key.key_id() != self.data_key_id {
            return Err(authz::Refusal::KeyDoesNotOpen.into());
        }
        let path = &self.path;
        let file = File::open(path).map_err(|cause| NodeError::Io { path: path.display().to_string(), cause })?;
        let (section, records) =
            snapshot::open_search(std::io::BufReader::new(At { file: &file, pos: 0 }), &self.central_key, &data_key)?;
        // Only the people of the authorization's municipalities are held: a snapshot covers a
        // whole region, an authorization only the areas the Disaster Relief Act applies to.
        let index = Index::from_section_within(section, |code| signed.authorization.covers_municipality(code));
        Ok(OpenData {
            authorization: signed.authorization,
            data_key,
            index,
            file_name: self.file_name.clone(),
            file,
            records,
        })
    }
}

/// What the gate says under the node's lock: the data is open, or what to open (outside it).
pub enum Step {
    Ready(Arc<OpenData>),
    Open(Box<Plan>),
}

/// The node's open data in this process. At most one `OpenData` exists, and only while the
/// authorization in force allows it.
#[derive(Default)]
pub struct Gate {
    open: Mutex<Open>,
    /// Held through an opening (`Gate::open`), so only one request decrypts and builds the
    /// index while the others that need the data wait for it; nobody else waits: the node's
    /// lock and `open` are not held meanwhile.
    opening: Mutex<()>,
}

#[derive(Default)]
struct Open {
    data: Option<Arc<OpenData>>,
    /// A snapshot file made current after `data` was opened, which the authorization in force
    /// cannot open (it was cut for the snapshot before): `data` is served until an
    /// authorization for the new file arrives, without trying the key on every request.
    newer_unopened: Option<String>,
}

impl Gate {
    pub fn new() -> Self {
        Gate::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open data if reading is allowed right now; otherwise drops it and says why. The only
    /// way to reach decrypted records. Opens the data while the caller holds `node`: for
    /// commands and tests; a serving node uses `check` and `open` so that the opening does not
    /// hold the node.
    pub fn access(&self, node: &mut Node, secret: &NodeSecretKey, clock: &dyn Clock) -> Result<Arc<OpenData>, Denied> {
        match self.check(node, clock)? {
            Step::Ready(data) => Ok(data),
            Step::Open(plan) => self.open(plan, secret),
        }
    }

    /// Under the node's lock, quickly: whether reading is allowed now (if not, the data is
    /// dropped and the reason given), and the open data if it is the right one, or what to open.
    pub fn check(&self, node: &mut Node, clock: &dyn Clock) -> Result<Step, Denied> {
        let row = match node.check_access(clock) {
            Ok(row) => row,
            Err(denied) => {
                *self.lock() = Open::default();
                return Err(denied);
            }
        };
        let plan = node
            .plan(row)
            .map_err(|e| Denied::Unavailable(crate::incident::record("スナップショットを見つけられません", e)))?;
        Ok(match self.current(&plan) {
            Some(data) => Step::Ready(data),
            None => Step::Open(Box::new(plan)),
        })
    }

    /// The open data, if it stands for the plan's authorization (id and serial) over the plan's
    /// file, or over the file before it while the authorization cannot open the newer one.
    fn current(&self, plan: &Plan) -> Option<Arc<OpenData>> {
        let open = self.lock();
        let data = open.data.as_ref().filter(|d| plan.opens(d))?;
        (data.file_name == plan.file_name || open.newer_unopened.as_ref() == Some(&plan.file_name))
            .then(|| data.clone())
    }

    /// Opens what `check` planned, without the node: one opening at a time, and whoever waited
    /// for another's takes its result.
    pub fn open(&self, plan: Box<Plan>, secret: &NodeSecretKey) -> Result<Arc<OpenData>, Denied> {
        let _one = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(data) = self.current(&plan) {
            return Ok(data);
        }
        // The open data stands for one authorization over one snapshot file: a newer serial, or
        // a snapshot imported while serving, reopens it, so the index and the records always
        // come from one file (the open data holds that file open).
        match plan.open(secret) {
            Ok(data) => {
                let data = Arc::new(data);
                *self.lock() = Open { data: Some(data.clone()), newer_unopened: None };
                Ok(data)
            }
            // A newer snapshot was imported under an authorization cut for the one before (its
            // own authorization follows): until then the authorization keeps opening what it was
            // issued for, from the file this process still holds open.
            Err(NodeError::Refused(authz::Refusal::KeyDoesNotOpen)) => {
                let mut open = self.lock();
                match open.data.clone().filter(|d| plan.opens(d)) {
                    Some(data) => {
                        tracing::info!(file = %plan.file_name, "the authorization in force cannot open the new snapshot; serving the one it was cut for");
                        open.newer_unopened = Some(plan.file_name);
                        Ok(data)
                    }
                    None => {
                        *open = Open::default();
                        Err(Denied::AwaitingAuthorization)
                    }
                }
            }
            Err(e) => {
                *self.lock() = Open::default();
                Err(Denied::Unavailable(crate::incident::record("認可されたデータを開けません", e)))
            }
        }
    }

    /// Drops the open data now (closing, shutdown).
    pub fn close(&self) {
        *self.lock() = Open::default();
    }

    /// The file name of the snapshot the open data was read from, if it is open.
    pub fn serving_file(&self) -> Option<String> {
        self.lock().data.as_ref().map(|d| d.file_name.clone())
    }
}
