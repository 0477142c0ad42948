//! The central base's directory and the work it does here: keys, the node CA, and cutting
//! signed, encrypted regional snapshots from a person CSV.
//!
//! Layout: `central.key` (Ed25519 signing key, 0600), `central.pub`, `person-id.key` (0600),
//! `ca.pem` and `ca.key` (0600), `snapshots/<id>.key` (each snapshot's data key, 0600) and
//! `snapshots/<id>.json` (its manifest). The data key never goes into the snapshot file.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::clock::Clock;
use crate::keys::{
    CentralPublicKey, CentralSigningKey, DataKey, KeyError, PersonIdKey, write_file_atomic,
};
use crate::limits::CSV_ERRORS_SHOWN_MAX;
use crate::person_csv::{self, CsvEncoding, CsvError, ReadReport};
use crate::progress::Progress;
use crate::snapshot::{self, BuildParams, Manifest, SnapshotError};
use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    #[error(
        "{0} にはすでに中央の鍵があります（central.key）。上書きはしません。別のディレクトリを指定してください"
    )]
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
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CentralError + '_ {
    move |source| CentralError::Io {
        path: path.display().to_string(),
        source,
    }
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
            return Err(CentralError::NotInitialized(
                self.root.display().to_string(),
            ));
        }
        Ok(())
    }
}

/// Creates the central's keys and CA. Refuses to overwrite an existing central.
pub fn init(dir: &CentralDir) -> Result<CentralPublicKey, CentralError> {
    if dir.signing_key().exists() {
        return Err(CentralError::AlreadyInitialized(
            dir.root.display().to_string(),
        ));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.snapshots())
        .map_err(io(&dir.root))?;
    let key = CentralSigningKey::generate();
    PersonIdKey::generate().save(&dir.person_id_key())?;
    tls::generate_ca(&dir.ca_cert(), &dir.ca_key())?;
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
        let progress_reader = ProgressReader {
            inner: BufReader::with_capacity(1 << 20, file),
            read: 0,
            progress: &mut progress,
        };
        person_csv::read(
            progress_reader,
            options.encoding,
            &ids,
            CSV_ERRORS_SHOWN_MAX,
            |record| {
                if push_error.is_none() {
                    push_error = builder.push(&record).err();
                }
            },
        )?
    };
    progress.finish();
    if let Some(e) = push_error {
        return Err(e.into());
    }
    if report.rows_with_errors > 0 && !options.skip_invalid {
        return Err(CentralError::InvalidRows {
            rows: report.rows_with_errors,
            report: Box::new(report),
        });
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
        let f = w.into_inner().map_err(|e| CentralError::Io {
            path: tmp.display().to_string(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io(&tmp))?;
        m
    };
    fs::rename(&tmp, out).map_err(io(out))?;
    let manifest_path = dir.snapshots().join(format!("{snapshot_id}.json"));
    write_file_atomic(
        &manifest_path,
        &serde_json::to_vec_pretty(&manifest).expect("manifest serializes"),
        0o644,
    )?;
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
    let head =
        snapshot::read_manifest(BufReader::new(File::open(file).map_err(io(file))?), &public)?;
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
