//! The central base's directory and the work it does here: keys, the node CA, and cutting
//! signed, encrypted regional snapshots from a person CSV.
//!
//! Layout: `central.key` (Ed25519 signing key, 0600), `central.pub`, `person-id.key` (0600),
//! `ca.pem` and `ca.key` (0600), `snapshots/<id>.key` (each snapshot's data key, 0600) and
//! `snapshots/<id>.json` (its manifest), `nodes/<id>.pub` (each node's public keys) and
//! `nodes/<id>.seal0` (each node's audit seal key of epoch 0, 0600: the one key that checks the
//! node's sealed audit log). The data key never goes into the snapshot file.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::clock::Clock;
use chrono::{DateTime, Utc};

use crate::authz::{self, Authorization, NodeGrant, Role, Section};
use crate::contract::{BUNDLE_FORMAT, Bundle, node_key_message};
use crate::keys::{
    AuditSealKey, CentralPublicKey, CentralSigningKey, DataKey, KeyError, NodePublicKey, NodeSecretKey, PersonIdKey,
    create_private_dir, write_file_atomic, write_secret_file,
};
use crate::limits::CSV_ERRORS_SHOWN_MAX;
use crate::model::{MunicipalityCode, OfficeNumber};
use crate::person_csv::{self, CsvEncoding, CsvError, ReadReport};
use crate::progress::Progress;
use crate::region::{self, Region};
use crate::snapshot::{self, BuildParams, Manifest, SnapshotError};
use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    #[error("{0} にはすでに中央の鍵があります（central.key）。上書きはしません。別のディレクトリを指定してください")]
    AlreadyInitialized(String),
    #[error(
        "{0} は中央のディレクトリではありません（central.key がありません）。先に `kaigo-field central init --dir {0}` を実行してください"
    )]
    NotInitialized(String),
    #[error(
        "CSVに誤りのある行が {rows} 行あります。直してからやり直すか、誤りのある行を除いて作るなら --skip-invalid を付けてください"
    )]
    InvalidRows { rows: u64, report: Box<ReadReport> },
    #[error("CSVに有効な行が1行もありません")]
    Empty,
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("ノードID「{0}」は使えません: 英小文字・数字・ハイフン40文字まで")]
    BadNodeId(String),
    #[error("ノード {0} はすでに登録されています。別のIDを使ってください")]
    AlreadyEnrolled(String),
    #[error("認可を出せません: {0}")]
    Authorize(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CentralError + '_ {
    move |cause| CentralError::Io { path: path.display().to_string(), cause }
}

#[derive(Debug, Clone)]
pub struct CentralDir {
    pub root: PathBuf,
}

impl CentralDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CentralDir { root: root.into() }
    }
    pub fn signing_key(&self) -> PathBuf {
        self.root.join("central.key")
    }
    pub fn public_key(&self) -> PathBuf {
        self.root.join("central.pub")
    }
    pub fn person_id_key(&self) -> PathBuf {
        self.root.join("person-id.key")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub fn data_key(&self, snapshot_id: &str) -> PathBuf {
        self.snapshots().join(format!("{snapshot_id}.key"))
    }

    fn require(&self) -> Result<(), CentralError> {
        if !self.signing_key().exists() {
            return Err(CentralError::NotInitialized(self.root.display().to_string()));
        }
        Ok(())
    }
}

/// Creates the central's keys and CA (valid from `clock`'s now). Refuses to overwrite an existing
/// central.
pub fn init(dir: &CentralDir, clock: &dyn Clock) -> Result<CentralPublicKey, CentralError> {
    if dir.signing_key().exists() {
        return Err(CentralError::AlreadyInitialized(dir.root.display().to_string()));
    }
    // Nothing in the central's directory is readable by others (directories 0700, files 0600).
    create_private_dir(&dir.root)?;
    create_private_dir(&dir.snapshots())?;
    let key = CentralSigningKey::generate();
    PersonIdKey::generate().save(&dir.person_id_key())?;
    tls::generate_ca(&dir.ca_cert(), &dir.ca_key(), clock.now())?;
    key.public().save(&dir.public_key())?;
    // The signing key last: its presence is what marks a finished init.
    key.save(&dir.signing_key())?;
    Ok(key.public())
}

/// Options of one snapshot build.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub encoding: Option<CsvEncoding>,
    pub skip_invalid: bool,
    pub synthetic: bool,
    pub quiet: bool,
}

/// What a build produced.
#[derive(Debug)]
pub struct SnapshotOutcome {
    pub manifest: Manifest,
    pub report: ReadReport,
}

/// The next snapshot version: one more than any this central has cut.
fn next_version(dir: &CentralDir) -> Result<u64, CentralError> {
    let mut max = 0;
    let entries = fs::read_dir(dir.snapshots()).map_err(io(&dir.snapshots()))?;
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            let text = fs::read_to_string(entry.path()).map_err(io(&entry.path()))?;
            if let Ok(m) = serde_json::from_str::<Manifest>(&text) {
                max = max.max(m.snapshot_version);
            }
        }
    }
    Ok(max + 1)
}

/// Reads and validates a person CSV and writes a signed, encrypted snapshot to `out`.
pub fn build_snapshot(
    dir: &CentralDir,
    input: &Path,
    out: &Path,
    options: &SnapshotOptions,
    clock: &dyn Clock,
) -> Result<SnapshotOutcome, CentralError> {
    dir.require()?;
    let signing_key = CentralSigningKey::load(&dir.signing_key())?;
    let ids = PersonIdKey::load(&dir.person_id_key())?;
    let data_key = DataKey::generate();
    let len = fs::metadata(input).map_err(io(input))?.len();
    let file = File::open(input).map_err(io(input))?;
    let mut progress = Progress::new("検証と暗号化", len, options.quiet);
    let mut builder = snapshot::Builder::new(&data_key);
    let mut push_error = None;
    let report = {
        let progress_reader =
            ProgressReader { inner: BufReader::with_capacity(1 << 20, file), read: 0, progress: &mut progress };
        person_csv::read(progress_reader, options.encoding, &ids, CSV_ERRORS_SHOWN_MAX, |record| {
            if push_error.is_none() {
                push_error = builder.push(&record).err();
            }
        })?
    };
    progress.finish();
    if let Some(e) = push_error {
        return Err(e.into());
    }
    if report.rows_with_errors > 0 && !options.skip_invalid {
        return Err(CentralError::InvalidRows { rows: report.rows_with_errors, report: Box::new(report) });
    }
    if report.valid == 0 {
        return Err(CentralError::Empty);
    }
    let snapshot_id = builder.snapshot_id().to_owned();
    // The key is kept before the file exists, so there is never a snapshot nobody can open.
    data_key.save(&dir.data_key(&snapshot_id))?;
    let tmp = out.with_extension("kfsnap.tmp");
    let manifest = {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io(&tmp))?);
        let params = BuildParams {
            snapshot_version: next_version(dir)?,
            created_at: clock.now(),
            synthetic: options.synthetic,
            signing_key: &signing_key,
            data_key: &data_key,
        };
        let m = builder.finish(params, &mut w)?;
        let f =
            w.into_inner().map_err(|e| CentralError::Io { path: tmp.display().to_string(), cause: e.into_error() })?;
        f.sync_all().map_err(io(&tmp))?;
        m
    };
    fs::rename(&tmp, out).map_err(io(out))?;
    let manifest_path = dir.snapshots().join(format!("{snapshot_id}.json"));
    write_secret_file(&manifest_path, &serde_json::to_vec_pretty(&manifest).expect("manifest serializes"))?;
    Ok(SnapshotOutcome { manifest, report })
}

/// Opens a snapshot this central cut, with the data key it kept: for tests and, later, for
/// wrapping the key into authorizations.
pub fn open_snapshot(
    dir: &CentralDir,
    file: &Path,
    each: impl FnMut(crate::model::PersonRecord),
) -> Result<Manifest, CentralError> {
    let public = CentralPublicKey::load(&dir.public_key())?;
    let head = snapshot::read_manifest(BufReader::new(File::open(file).map_err(io(file))?), &public)?;
    let data_key = DataKey::load(&dir.data_key(&head.snapshot_id))?;
    let input = BufReader::new(File::open(file).map_err(io(file))?);
    Ok(snapshot::open(input, &public, &data_key, each)?)
}

/// Reports bytes read as progress.
struct ProgressReader<'a, R> {
    inner: R,
    read: u64,
    progress: &'a mut Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.progress.set_position(self.read);
        Ok(n)
    }
}

impl CentralDir {
    pub fn nodes(&self) -> PathBuf {
        self.root.join("nodes")
    }
    pub fn node_public_key(&self, node_id: &str) -> PathBuf {
        self.nodes().join(format!("{node_id}.pub"))
    }
    /// The node's audit seal key of epoch 0 (`AuditSealKey`, 0600), for `audit::verify_sealed`.
    pub fn node_seal_key(&self, node_id: &str) -> PathBuf {
        self.nodes().join(format!("{node_id}.seal0"))
    }
    pub fn authorizations(&self) -> PathBuf {
        self.root.join("authorizations")
    }
}

/// A node id: short, safe in a file name and an mDNS name.
pub fn valid_node_id(id: &str) -> bool {
    (1..=40).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// Makes a node's identity (X25519 key for data keys, TLS certificate from the central's CA)
/// and its audit seal key of epoch 0, and writes the provisioning bundle (mode 0600). The
/// central keeps the public key and the seal key, which it keeps before the bundle exists, so
/// there is never a node whose log the central cannot check.
pub fn enroll_node(
    dir: &CentralDir,
    node_id: &str,
    region: &Region,
    out: &Path,
    clock: &dyn Clock,
) -> Result<NodePublicKey, CentralError> {
    dir.require()?;
    if !valid_node_id(node_id) {
        return Err(CentralError::BadNodeId(node_id.to_owned()));
    }
    if dir.node_public_key(node_id).exists() {
        return Err(CentralError::AlreadyEnrolled(node_id.to_owned()));
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir.nodes()).map_err(io(&dir.nodes()))?;
    let secret = NodeSecretKey::generate();
    let seal_key0 = AuditSealKey::generate();
    seal_key0.save(&dir.node_seal_key(node_id))?;
    let (tls_cert_pem, tls_key_pem) = tls::issue_node_cert(&dir.ca_cert(), &dir.ca_key(), node_id, clock.now())?;
    let bundle = Bundle {
        format: BUNDLE_FORMAT.to_owned(),
        node_id: node_id.to_owned(),
        region: region.to_string(),
        central_public_key: CentralPublicKey::load(&dir.public_key())?.to_text(),
        ca_cert_pem: fs::read_to_string(dir.ca_cert()).map_err(io(&dir.ca_cert()))?,
        tls_cert_pem,
        tls_key_pem,
        node_secret_key: secret.to_file_text(None).to_string(),
        node_public_key: secret.public().to_text(),
        node_public_key_signature: hex::encode(
            CentralSigningKey::load(&dir.signing_key())?.sign(&node_key_message(node_id, &secret.public().to_text())),
        ),
        audit_seal_key: seal_key0.to_file_text().to_string(),
    };
    let json = zeroize::Zeroizing::new(serde_json::to_vec_pretty(&bundle).expect("a bundle serializes"));
    write_secret_file(out, &json)?;
    secret.public().save(&dir.node_public_key(node_id))?;
    Ok(secret.public())
}

/// What `central authorize` is asked for.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub disaster: String,
    pub municipalities: Vec<MunicipalityCode>,
    pub nodes: Vec<String>,
    pub facilities: Vec<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    pub days: Option<u32>,
    pub drill: bool,
    pub id: Option<String>,
    pub serial: Option<u32>,
    pub snapshot_id: Option<String>,
    pub sections: Option<Vec<(Role, Vec<Section>)>>,
}

/// The window of the medical disaster mode: one week from the first report.
pub const DEFAULT_WINDOW_DAYS: u32 = 7;

fn valid_facility_rule(rule: &str) -> bool {
    let ok_chars = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    match rule.strip_suffix('*') {
        Some(prefix) => (1..=9).contains(&prefix.len()) && ok_chars(prefix),
        None => OfficeNumber::parse(rule).is_ok(),
    }
}

/// Issues a signed authorization; returns it and its text code. Also kept under
/// `authorizations/`, so the next serial for the same id is known.
pub fn authorize(
    dir: &CentralDir,
    req: &AuthorizeRequest,
    clock: &dyn Clock,
) -> Result<(Authorization, String), CentralError> {
    dir.require()?;
    let key = CentralSigningKey::load(&dir.signing_key())?;
    if req.disaster.trim().is_empty() {
        return Err(CentralError::Authorize("災害名（--disaster）を指定してください".into()));
    }
    if let Err(bad) = crate::model::text::clean(req.disaster.trim(), false) {
        return Err(CentralError::Authorize(format!("災害名（--disaster）に{bad}")));
    }
    if req.municipalities.is_empty() || req.nodes.is_empty() {
        return Err(CentralError::Authorize(
            "市区町村（--municipalities）とノード（--nodes）を1つ以上指定してください".into(),
        ));
    }
    let manifest = choose_snapshot(dir, req)?;
    if manifest.synthetic != req.drill {
        return Err(CentralError::Authorize(if req.drill {
            "訓練（--drill）の認可は合成データのスナップショットにしか出せません".into()
        } else {
            "このスナップショットは合成データです。訓練なら --drill を付けてください".into()
        }));
    }
    let data_key = DataKey::load(&dir.data_key(&manifest.snapshot_id))?;
    let mut nodes = Vec::new();
    for node_id in &req.nodes {
        let path = dir.node_public_key(node_id);
        if !path.exists() {
            return Err(CentralError::Authorize(format!(
                "ノード {node_id} は登録されていません（先に `central enroll-node`）"
            )));
        }
        let public = NodePublicKey::load(&path)?;
        nodes.push(NodeGrant { node_id: node_id.clone(), wrapped_key: public.wrap_data_key(&data_key) });
    }
    let facilities = if req.facilities.is_empty() {
        // Every facility of the prefectures concerned.
        let mut prefs: Vec<String> = req.municipalities.iter().map(|m| format!("{}*", m.prefecture())).collect();
        prefs.dedup();
        prefs
    } else {
        req.facilities.clone()
    };
    if let Some(bad) = facilities.iter().find(|r| !valid_facility_rule(r)) {
        return Err(CentralError::Authorize(format!(
            "事業所の指定「{bad}」が読めません: 10桁の事業所番号か、先頭の桁に * を付けたもの（例 17*）"
        )));
    }
    let now = clock.now();
    let not_before = req.not_before.unwrap_or(now);
    let not_after = match (req.not_after, req.days) {
        (Some(t), None) => t,
        (None, days) => not_before + chrono::Duration::days(i64::from(days.unwrap_or(DEFAULT_WINDOW_DAYS))),
        (Some(_), Some(_)) => {
            return Err(CentralError::Authorize("--not-after と --days は一緒に使えません".into()));
        }
    };
    if not_after < not_before {
        return Err(CentralError::Authorize("終わり（--not-after）が始まり（--not-before）より前です".into()));
    }
    let id = req.id.clone().unwrap_or_else(|| {
        let mut b = [0u8; 4];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        hex::encode(b)
    });
    if id.is_empty() || id.len() > 40 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(CentralError::Authorize("認可ID（--id）は英数字とハイフン40文字までです".into()));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.authorizations())
        .map_err(io(&dir.authorizations()))?;
    let last_path = dir.authorizations().join(format!("{id}.last"));
    let last: u32 = fs::read_to_string(&last_path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let serial = req.serial.unwrap_or(last + 1);
    if serial <= last {
        return Err(CentralError::Authorize(format!(
            "認可 {id} の連番はすでに {last} まで出しています。{} 以上を指定してください",
            last + 1
        )));
    }
    let authorization = Authorization {
        id: id.clone(),
        serial,
        issued_at: now.timestamp(),
        disaster: req.disaster.trim().to_owned(),
        municipalities: req.municipalities.clone(),
        facilities,
        not_before: not_before.timestamp(),
        not_after: not_after.timestamp(),
        snapshot_id: hex::decode(&manifest.snapshot_id)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| CentralError::Authorize("スナップショットIDが壊れています".into()))?,
        central_key_id: key.public().key_id_bytes(),
        nodes,
        sections: req.sections.clone().unwrap_or_else(authz::default_sections),
        drill: req.drill,
    };
    let code = authorization.sign(&key);
    write_file_atomic(
        &dir.authorizations().join(format!("{id}-{serial}.kfauth")),
        format!("{code}\n").as_bytes(),
        0o600,
    )?;
    write_file_atomic(&last_path, serial.to_string().as_bytes(), 0o600)?;
    Ok((authorization, code))
}

/// The snapshot an authorization carries the key of: the one named, or the newest that covers
/// every municipality asked for.
fn choose_snapshot(dir: &CentralDir, req: &AuthorizeRequest) -> Result<Manifest, CentralError> {
    let mut best: Option<Manifest> = None;
    for entry in fs::read_dir(dir.snapshots()).map_err(io(&dir.snapshots()))?.flatten() {
        if entry.path().extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = fs::read_to_string(entry.path()).map_err(io(&entry.path()))?;
        let Ok(m) = serde_json::from_str::<Manifest>(&text) else { continue };
        let wanted = match &req.snapshot_id {
            Some(id) => &m.snapshot_id == id,
            None => req.municipalities.iter().all(|c| m.municipalities.contains(c)),
        };
        if wanted && best.as_ref().is_none_or(|b| m.snapshot_version > b.snapshot_version) {
            best = Some(m);
        }
    }
    best.ok_or_else(|| {
        CentralError::Authorize(match &req.snapshot_id {
            Some(id) => format!("スナップショット {id} はこの中央にありません"),
            None => format!(
                "{} をすべて含むスナップショットがありません（先に `central snapshot`）",
                region::names(&req.municipalities)
            ),
        })
    })
}
