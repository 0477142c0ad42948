//! Key material and the files that hold it.
//!
//! Secret keys are types that do not derive `Clone`, `Serialize` or a revealing `Debug`, and are
//! wiped from memory on drop. Files holding secrets are created with mode 0600 and written
//! atomically (temporary file, fsync, rename), so a crash never leaves half a key.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::model::{InsuredNumber, InsurerNumber, PersonId};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: 読み書きできません: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: kaigo-field の{what}ファイルではありません（先頭行が {expected:?} ではない、または内容が壊れています）"
    )]
    Format {
        path: PathBuf,
        what: &'static str,
        expected: &'static str,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `contents` to `path` atomically with the given mode: a temporary file beside it,
/// fsync, rename, fsync of the directory.
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

/// Writes a secret: mode 0600.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    write_file_atomic(path, contents, 0o600)
}

const SIGNING_HEADER: &str = "kaigo-field central signing key v1";
const PUBLIC_HEADER: &str = "kaigo-field central public key v1";
const DATA_KEY_HEADER: &str = "kaigo-field snapshot data key v1";
const PERSON_ID_HEADER: &str = "kaigo-field person id key v1";

/// Reads a two-line key file ("header\nbase64\n") into exactly `N` bytes, wiped on drop.
fn read_key_file<const N: usize>(
    path: &Path,
    header: &'static str,
    what: &'static str,
) -> Result<Zeroizing<[u8; N]>, KeyError> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io_err(path))?);
    let bad = || KeyError::Format {
        path: path.to_owned(),
        what,
        expected: header,
    };
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Err(bad());
    }
    let body = lines.next().ok_or_else(bad)?;
    let bytes = Zeroizing::new(B64.decode(body.trim()).map_err(|_| bad())?);
    let mut out = Zeroizing::new([0u8; N]);
    if bytes.len() != N {
        return Err(bad());
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

fn key_file_text(header: &str, bytes: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(format!("{header}\n{}\n", B64.encode(bytes)))
}

/// A short, public id of a key: the first 8 bytes of SHA-256 over a domain tag and the key, in
/// hex. It names a key without revealing it.
fn key_id(domain: &str, bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update(bytes);
    hex::encode(&h.finalize()[..8])
}

/// The central's Ed25519 signing key.
pub struct CentralSigningKey(SigningKey);

impl fmt::Debug for CentralSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CentralSigningKey({})", self.public().key_id())
    }
}

impl CentralSigningKey {
    pub fn generate() -> Self {
        CentralSigningKey(SigningKey::generate(&mut OsRng))
    }

    pub fn public(&self) -> CentralPublicKey {
        CentralPublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let seed = Zeroizing::new(self.0.to_bytes());
        write_secret_file(path, key_file_text(SIGNING_HEADER, &*seed).as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let seed = read_key_file::<32>(path, SIGNING_HEADER, "中央署名鍵")?;
        Ok(CentralSigningKey(SigningKey::from_bytes(&seed)))
    }
}

/// The central's public key, which every node holds to verify snapshots and authorizations.
#[derive(Clone, PartialEq, Eq)]
pub struct CentralPublicKey(VerifyingKey);

impl fmt::Debug for CentralPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CentralPublicKey({})", self.key_id())
    }
}

impl CentralPublicKey {
    pub fn key_id(&self) -> String {
        key_id("kaigo-field/central-key-id/v1", self.0.as_bytes())
    }

    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0
            .verify(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_file_atomic(
            path,
            key_file_text(PUBLIC_HEADER, self.0.as_bytes()).as_bytes(),
            0o644,
        )
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = read_key_file::<32>(path, PUBLIC_HEADER, "中央公開鍵")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Format {
            path: path.to_owned(),
            what: "中央公開鍵",
            expected: PUBLIC_HEADER,
        })?;
        Ok(CentralPublicKey(key))
    }
}

/// The random per-snapshot key that encrypts all personal data in a snapshot. Never in the
/// snapshot file: the central keeps it, and only an authorization carries it (wrapped) to a node.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({})", self.key_id())
    }
}

impl DataKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        DataKey(k)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn key_id(&self) -> String {
        key_id("kaigo-field/data-key-id/v1", &self.0)
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_secret_file(path, key_file_text(DATA_KEY_HEADER, &self.0).as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = read_key_file::<32>(path, DATA_KEY_HEADER, "スナップショット データ鍵")?;
        Ok(DataKey(*bytes))
    }
}

/// The central's secret for deriving pseudonymous person ids (HMAC-SHA256).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PersonIdKey([u8; 32]);

impl fmt::Debug for PersonIdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonIdKey(..)")
    }
}

impl PersonIdKey {
    /// A key from given bytes: for the generator, whose records' ids are never written out.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PersonIdKey(bytes)
    }

    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        PersonIdKey(k)
    }

    /// The person's pseudonymous id: HMAC-SHA256 over the paying 保険者番号 and the
    /// 被保険者番号, the first 16 bytes in hex. Stable across snapshots from the same central.
    pub fn person_id(&self, insurer: &InsurerNumber, insured: &InsuredNumber) -> PersonId {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(insurer.as_str().as_bytes());
        mac.update(b"/");
        mac.update(insured.as_str().as_bytes());
        let tag = mac.finalize().into_bytes();
        PersonId::parse(&hex::encode(&tag[..16])).expect("32 lower-case hex digits")
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_secret_file(path, key_file_text(PERSON_ID_HEADER, &self.0).as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = read_key_file::<32>(path, PERSON_ID_HEADER, "個人ID鍵")?;
        Ok(PersonIdKey(*bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_round_trip_through_files_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let sk = CentralSigningKey::generate();
        sk.save(&dir.path().join("c.key")).unwrap();
        sk.public().save(&dir.path().join("c.pub")).unwrap();
        let back = CentralSigningKey::load(&dir.path().join("c.key")).unwrap();
        let public = CentralPublicKey::load(&dir.path().join("c.pub")).unwrap();
        let sig = back.sign(b"hello");
        assert!(public.verify(b"hello", &sig));
        assert!(!public.verify(b"hellp", &sig));
        let mode = fs::metadata(dir.path().join("c.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let dk = DataKey::generate();
        dk.save(&dir.path().join("d.key")).unwrap();
        assert_eq!(
            DataKey::load(&dir.path().join("d.key")).unwrap().bytes(),
            dk.bytes()
        );
        assert_eq!(
            fs::metadata(dir.path().join("d.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    #[test]
    fn a_public_key_file_is_not_taken_for_a_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        CentralSigningKey::generate()
            .public()
            .save(&dir.path().join("c.pub"))
            .unwrap();
        let err = CentralSigningKey::load(&dir.path().join("c.pub")).unwrap_err();
        assert!(err.to_string().contains("中央署名鍵"), "{err}");
    }
}
