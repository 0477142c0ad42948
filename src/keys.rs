//! Key material and the files that hold it.
//!
//! Secret keys are types that do not derive `Clone`, `Serialize` or a revealing `Debug`, and are
//! wiped from memory on drop. Files holding secrets are created with mode 0600 and written
//! atomically (temporary file, fsync, rename), so a crash never leaves half a key.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::model::{InsuredNumber, InsurerNumber, PersonId};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: 読み書きできません: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error(
        "{path}: kaigo-field の{what}ファイルではありません（先頭行が {expected:?} ではない、または内容が壊れています）"
    )]
    Format { path: PathBuf, what: &'static str, expected: &'static str },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |cause| KeyError::Io { path: path.to_owned(), cause }
}

/// Writes `contents` to `path` atomically with the given mode: a temporary file beside it,
/// fsync, rename, fsync of the directory.
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    // A bare file name has the empty path as its parent: that is the current directory.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp =
        dir.join(format!(".{}.tmp", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    let mut f =
        OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io_err(&tmp))?;
    // `mode` applies only to a file the open creates: a temporary file left by a crash keeps
    // whatever mode it had, so it is set again.
    f.set_permissions(fs::Permissions::from_mode(mode)).map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(())
}

/// Creates `path` and any missing parents with mode 0700, and sets 0700 on `path` itself if it
/// was already there (a directory made beforehand with `mkdir` is 0755): the node's and the
/// central's directories are readable by their owner only.
pub fn create_private_dir(path: &Path) -> Result<(), KeyError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_err(path))
}

/// Creates (or empties) `path` for writing, readable by its owner only, for outputs streamed
/// rather than written at once: a person CSV, its queries. An existing file is set to 0600 too.
pub fn create_private_file(path: &Path) -> Result<File, KeyError> {
    let f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io_err(path))?;
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    Ok(f)
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
    let bad = || KeyError::Format { path: path.to_owned(), what, expected: header };
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
        self.0.verify(message, &Signature::from_bytes(signature)).is_ok()
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        // Public, but it lives in the central's and nodes' directories, where nothing is
        // readable by others.
        write_secret_file(path, key_file_text(PUBLIC_HEADER, self.0.as_bytes()).as_bytes())
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

/// Bound into every `DataKey::seal`, so node-written data can never pass for a snapshot chunk.
const SEAL_DOMAIN: &[u8] = b"kaigo-field/node-sealed/v1\0";

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

    /// A keyed hash of an audit query summary: the central (which holds the data key) can check
    /// whether a log entry was a search for a given person; whoever takes the node, without an
    /// authorization, learns nothing from it.
    pub fn audit_query_hash(&self, summary: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"kaigo-field/audit-query/v1\0");
        mac.update(summary.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts what the node writes during an authorization (field events) under the data
    /// key: readable again only while an authorization carries the key, and by the central.
    /// The result is the random nonce followed by the ciphertext.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: &[SEAL_DOMAIN, aad].concat() })
            .expect("XChaCha20-Poly1305 encrypts any message under its size limit");
        [&nonce[..], &sealed].concat()
    }

    /// Opens what `seal` made with the same `aad`; `None` if the key or the bytes are wrong.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, body) = sealed.split_at(24);
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: &[SEAL_DOMAIN, aad].concat() })
            .ok()
            .map(Zeroizing::new)
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
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
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

const NODE_KEY_HEADER: &str = "kaigo-field node key v1";
const NODE_KEY_SEALED_HEADER: &str = "kaigo-field node key sealed v1";
const NODE_PUBLIC_HEADER: &str = "kaigo-field node public key v1";
const NODE_KEY_BYTES: usize = 64;

/// The node's secrets: an X25519 key that unwraps the snapshot data key an authorization carries
/// for this node, and an Ed25519 key that signs its audit checkpoints. On disk as 64 bytes
/// (X25519, then the Ed25519 seed), in clear (mode 0600) or sealed with the coordinator's
/// passphrase.
pub struct NodeSecretKey {
    boxing: crypto_box::SecretKey,
    signing: SigningKey,
}

impl fmt::Debug for NodeSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeSecretKey(public {})", self.public().key_id())
    }
}

/// The node's public keys: X25519 (the central wraps data keys for it) and Ed25519 (audit
/// checkpoints verify with it).
#[derive(Clone, PartialEq, Eq)]
pub struct NodePublicKey {
    boxing: crypto_box::PublicKey,
    signing: VerifyingKey,
}

impl fmt::Debug for NodePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodePublicKey({})", self.key_id())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnwrapError {
    #[error("データ鍵を開けません（このノード用に包まれた鍵ではありません）")]
    WrongKey,
    #[error("パスフレーズが違います（ノード鍵を開けません）")]
    WrongPassphrase,
    #[error(
        "ノード鍵はパスフレーズで封印されています。KAIGO_FIELD_PASSPHRASE か端末の入力でパスフレーズを与えてください"
    )]
    PassphraseNeeded,
}

impl NodeSecretKey {
    pub fn generate() -> Self {
        NodeSecretKey { boxing: crypto_box::SecretKey::generate(&mut OsRng), signing: SigningKey::generate(&mut OsRng) }
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let boxing: [u8; 32] = bytes.get(..32)?.try_into().ok()?;
        let seed: [u8; 32] = bytes.get(32..NODE_KEY_BYTES)?.try_into().ok()?;
        (bytes.len() == NODE_KEY_BYTES).then(|| NodeSecretKey {
            boxing: crypto_box::SecretKey::from_bytes(boxing),
            signing: SigningKey::from_bytes(&seed),
        })
    }

    fn to_bytes(&self) -> Zeroizing<[u8; NODE_KEY_BYTES]> {
        let mut out = Zeroizing::new([0u8; NODE_KEY_BYTES]);
        out[..32].copy_from_slice(&self.boxing.to_bytes());
        out[32..].copy_from_slice(&self.signing.to_bytes());
        out
    }

    pub fn public(&self) -> NodePublicKey {
        NodePublicKey { boxing: self.boxing.public_key(), signing: self.signing.verifying_key() }
    }

    /// Signs an audit checkpoint (or anything else the node vouches for).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Opens a data key sealed for this node.
    pub fn unwrap_data_key(&self, wrapped: &[u8]) -> Result<DataKey, UnwrapError> {
        let plain = Zeroizing::new(self.boxing.unseal(wrapped).map_err(|_| UnwrapError::WrongKey)?);
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| UnwrapError::WrongKey)?;
        Ok(DataKey(bytes))
    }

    /// The key file's text: in clear, or sealed under a key derived from `passphrase` with
    /// Argon2id (random salt) and XChaCha20-Poly1305.
    pub fn to_file_text(&self, passphrase: Option<&str>) -> Zeroizing<String> {
        let secret = self.to_bytes();
        let Some(passphrase) = passphrase else {
            return key_file_text(NODE_KEY_HEADER, &*secret);
        };
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let kek = passphrase_key(passphrase, &salt);
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let sealed = XChaCha20Poly1305::new((&*kek).into())
            .encrypt(XNonce::from_slice(&nonce), secret.as_slice())
            .expect("encrypting 64 bytes cannot fail");
        Zeroizing::new(format!(
            "{NODE_KEY_SEALED_HEADER}\n{}\n{}\n{}\n",
            B64.encode(salt),
            B64.encode(nonce),
            B64.encode(sealed)
        ))
    }

    /// Reads an unsealed key file's text (as a bundle carries it).
    pub fn from_file_text(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next() != Some(NODE_KEY_HEADER) {
            return None;
        }
        let bytes = Zeroizing::new(B64.decode(lines.next()?.trim()).ok()?);
        Self::from_bytes(&bytes)
    }

    pub fn save(&self, path: &Path, passphrase: Option<&str>) -> Result<(), KeyError> {
        write_secret_file(path, self.to_file_text(passphrase).as_bytes())
    }

    /// Whether the key file at `path` is sealed with a passphrase.
    pub fn is_sealed(path: &Path) -> Result<bool, KeyError> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io_err(path))?);
        Ok(text.starts_with(NODE_KEY_SEALED_HEADER))
    }

    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<Result<Self, UnwrapError>, KeyError> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io_err(path))?);
        let bad = || KeyError::Format { path: path.to_owned(), what: "ノード鍵", expected: NODE_KEY_HEADER };
        if !text.starts_with(NODE_KEY_SEALED_HEADER) {
            let bytes = read_key_file::<NODE_KEY_BYTES>(path, NODE_KEY_HEADER, "ノード鍵")?;
            return Ok(Ok(Self::from_bytes(&*bytes).expect("64 bytes read")));
        }
        let Some(passphrase) = passphrase else { return Ok(Err(UnwrapError::PassphraseNeeded)) };
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() != 4 {
            return Err(bad());
        }
        let field = |i: usize| B64.decode(lines[i].trim()).map_err(|_| bad());
        let (salt, nonce, sealed) = (field(1)?, field(2)?, field(3)?);
        if nonce.len() != 24 {
            return Err(bad());
        }
        let kek = passphrase_key(passphrase, &salt);
        let Ok(plain) = XChaCha20Poly1305::new((&*kek).into()).decrypt(XNonce::from_slice(&nonce), sealed.as_slice())
        else {
            return Ok(Err(UnwrapError::WrongPassphrase));
        };
        let plain = Zeroizing::new(plain);
        Ok(Ok(Self::from_bytes(&plain).ok_or_else(bad)?))
    }
}

/// Argon2id with its default (OWASP-recommended) cost: about 19 MiB and a fraction of a second on
/// a Raspberry Pi, once per start.
fn passphrase_key(passphrase: &str, salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    argon2::Argon2::default()
        .hash_password_into(passphrase.as_bytes(), salt, &mut *out)
        .expect("a 16-byte salt and 32-byte output are within Argon2's limits");
    out
}

impl NodePublicKey {
    fn bytes(&self) -> [u8; NODE_KEY_BYTES] {
        let mut out = [0u8; NODE_KEY_BYTES];
        out[..32].copy_from_slice(self.boxing.as_bytes());
        out[32..].copy_from_slice(self.signing.as_bytes());
        out
    }

    pub fn key_id(&self) -> String {
        key_id("kaigo-field/node-key-id/v1", &self.bytes())
    }

    /// Seals a data key so that only this node's secret opens it.
    pub fn wrap_data_key(&self, key: &DataKey) -> Vec<u8> {
        self.boxing.seal(&mut OsRng, &key.0).expect("sealing 32 bytes cannot fail")
    }

    /// Checks a signature made by this node (an audit checkpoint).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.signing.verify(message, &Signature::from_bytes(signature)).is_ok()
    }

    pub fn to_text(&self) -> String {
        format!("{NODE_PUBLIC_HEADER}\n{}\n", B64.encode(self.bytes()))
    }

    pub fn from_text(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next() != Some(NODE_PUBLIC_HEADER) {
            return None;
        }
        let bytes = B64.decode(lines.next()?.trim()).ok()?;
        let boxing: [u8; 32] = bytes.get(..32)?.try_into().ok()?;
        let signing: [u8; 32] = bytes.get(32..)?.try_into().ok()?;
        Some(NodePublicKey {
            boxing: crypto_box::PublicKey::from_bytes(boxing),
            signing: VerifyingKey::from_bytes(&signing).ok()?,
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        // Public, but kept in the central's directory, where nothing is readable by others.
        write_secret_file(path, self.to_text().as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = fs::read_to_string(path).map_err(io_err(path))?;
        Self::from_text(&text).ok_or_else(|| KeyError::Format {
            path: path.to_owned(),
            what: "ノード公開鍵",
            expected: NODE_PUBLIC_HEADER,
        })
    }
}

impl CentralPublicKey {
    /// The key file's text, for bundles.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_HEADER}\n{}\n", B64.encode(self.0.as_bytes()))
    }

    /// The raw 8 bytes behind `key_id`.
    pub fn key_id_bytes(&self) -> [u8; 8] {
        let id = hex::decode(self.key_id()).expect("key ids are hex");
        id.try_into().expect("8 bytes")
    }
}

const AUDIT_SEAL_KEY_HEADER: &str = "kaigo-field audit seal key v1";
const AUDIT_SEAL_STATE_HEADER: &str = "kaigo-field audit seal state v1";
/// What `AuditSealKey::evolve` hashes: the next key is HMAC-SHA256 of this under the current one.
const SEAL_EVOLVE_DOMAIN: &[u8] = b"kaigo-field/audit-seal/evolve/v1";

/// The key that seals a node's audit checkpoints during one epoch (forward-secure sealing, see
/// docs/audit.md). Epoch 0's key is made by the central at enrolment and kept there; the node
/// only ever holds the current one, and `evolve` replaces it with the next, so whoever copies
/// the node later cannot seal anything for an epoch that has passed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct AuditSealKey([u8; 32]);

impl fmt::Debug for AuditSealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditSealKey(..)")
    }
}

impl AuditSealKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        AuditSealKey(k)
    }

    /// Replaces this key with the next epoch's, HMAC-SHA256(k, domain), overwriting the old one
    /// in place: one way, so the next key tells nothing about this one.
    pub fn evolve(&mut self) {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(SEAL_EVOLVE_DOMAIN);
        let next: Zeroizing<[u8; 32]> = Zeroizing::new(mac.finalize().into_bytes().into());
        self.0.copy_from_slice(&*next);
    }

    /// A second copy, for walking forward from epoch 0 without giving up the original. Private:
    /// the type is not `Clone`, so copies are made only here, on purpose.
    fn duplicate(&self) -> Self {
        AuditSealKey(self.0)
    }

    /// HMAC-SHA256 of `message` under this key.
    pub fn seal(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is this key's seal over `message`, compared in constant time.
    pub fn check(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }

    /// The key file's text, as the bundle carries it.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        key_file_text(AUDIT_SEAL_KEY_HEADER, &self.0)
    }

    pub fn from_file_text(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next() != Some(AUDIT_SEAL_KEY_HEADER) {
            return None;
        }
        let bytes = Zeroizing::new(B64.decode(lines.next()?.trim()).ok()?);
        let key: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(AuditSealKey(key))
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_secret_file(path, self.to_file_text().as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = read_key_file::<32>(path, AUDIT_SEAL_KEY_HEADER, "監査封印鍵")?;
        Ok(AuditSealKey(*bytes))
    }
}

/// Walks seal keys forward from epoch 0: the central's way to the key of any epoch of a node's
/// log. It only goes forward, as the node's own key does.
pub struct SealKeyChain {
    epoch: u64,
    key: AuditSealKey,
}

impl fmt::Debug for SealKeyChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKeyChain(epoch {})", self.epoch)
    }
}

impl SealKeyChain {
    pub fn new(key0: &AuditSealKey) -> Self {
        SealKeyChain { epoch: 0, key: key0.duplicate() }
    }

    /// The key of `epoch`, evolving forward to it; `None` for an epoch already passed. The
    /// caller bounds `epoch` (each evolution is one HMAC).
    pub fn at(&mut self, epoch: u64) -> Option<&AuditSealKey> {
        if epoch < self.epoch {
            return None;
        }
        while self.epoch < epoch {
            self.key.evolve();
            self.epoch += 1;
        }
        Some(&self.key)
    }
}

/// The node's seal state: the current epoch, when it began (the node's time), and its key. Kept
/// in its own file in the node directory (`audit-seal.key`, mode 0600), outside the database,
/// and replaced atomically when the key evolves.
pub struct SealState {
    pub epoch: u64,
    pub started: DateTime<Utc>,
    key: AuditSealKey,
}

impl fmt::Debug for SealState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealState(epoch {}, started {})", self.epoch, self.started)
    }
}

impl SealState {
    /// Epoch 0 with the central's starting key.
    pub fn genesis(key0: AuditSealKey, started: DateTime<Utc>) -> Self {
        SealState { epoch: 0, started, key: key0 }
    }

    pub fn key(&self) -> &AuditSealKey {
        &self.key
    }

    /// Moves to the next epoch, beginning `at`; the old key is overwritten in memory. The caller
    /// saves the state before using the new key, so the old one is gone from disk too.
    pub fn evolve(&mut self, at: DateTime<Utc>) {
        self.key.evolve();
        self.epoch += 1;
        self.started = at;
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let text = Zeroizing::new(format!(
            "{AUDIT_SEAL_STATE_HEADER}\n{}\n{}\n{}\n",
            self.epoch,
            self.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            B64.encode(self.key.0)
        ));
        write_secret_file(path, text.as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io_err(path))?);
        let bad =
            || KeyError::Format {
                path: path.to_owned(), what: "監査封印状態", expected: AUDIT_SEAL_STATE_HEADER
            };
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() != 4 || lines[0] != AUDIT_SEAL_STATE_HEADER {
            return Err(bad());
        }
        let epoch = lines[1].trim().parse().map_err(|_| bad())?;
        let started = DateTime::parse_from_rfc3339(lines[2].trim()).map_err(|_| bad())?.with_timezone(&Utc);
        let bytes = Zeroizing::new(B64.decode(lines[3].trim()).map_err(|_| bad())?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
        Ok(SealState { epoch, started, key: AuditSealKey(key) })
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
        let mode = fs::metadata(dir.path().join("c.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let dk = DataKey::generate();
        dk.save(&dir.path().join("d.key")).unwrap();
        assert_eq!(DataKey::load(&dir.path().join("d.key")).unwrap().bytes(), dk.bytes());
        assert_eq!(fs::metadata(dir.path().join("d.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_public_key_file_is_not_taken_for_a_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        CentralSigningKey::generate().public().save(&dir.path().join("c.pub")).unwrap();
        let err = CentralSigningKey::load(&dir.path().join("c.pub")).unwrap_err();
        assert!(err.to_string().contains("中央署名鍵"), "{err}");
    }

    #[test]
    fn a_sealed_node_key_needs_its_passphrase_and_unwraps_what_was_wrapped_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let node = NodeSecretKey::generate();
        node.save(&path, Some("correct horse")).unwrap();
        assert!(NodeSecretKey::is_sealed(&path).unwrap());
        assert!(matches!(NodeSecretKey::load(&path, None).unwrap(), Err(UnwrapError::PassphraseNeeded)));
        assert!(matches!(NodeSecretKey::load(&path, Some("wrong")).unwrap(), Err(UnwrapError::WrongPassphrase)));
        let back = NodeSecretKey::load(&path, Some("correct horse")).unwrap().unwrap();
        let data = DataKey::generate();
        let wrapped = node.public().wrap_data_key(&data);
        assert_eq!(back.unwrap_data_key(&wrapped).unwrap().bytes(), data.bytes());
        let stranger = NodeSecretKey::generate();
        assert!(stranger.unwrap_data_key(&wrapped).is_err());
        let text = std::fs::read_to_string(&path).unwrap();
        let secret_b64 = B64.encode(*node.to_bytes());
        assert!(!text.contains(&secret_b64), "the sealed file does not hold the key in clear");
    }

    #[test]
    fn seal_keys_evolve_one_way_and_the_chain_reaches_any_later_epoch_only() {
        let k0 = AuditSealKey::generate();
        let mut node = SealState::genesis(k0.duplicate(), DateTime::from_timestamp(0, 0).unwrap());
        let mut chain = SealKeyChain::new(&k0);
        let seal0 = node.key().seal(b"m");
        assert!(chain.at(0).unwrap().check(b"m", &seal0));
        for _ in 0..5 {
            node.evolve(DateTime::from_timestamp(60, 0).unwrap());
        }
        assert_eq!(node.epoch, 5);
        let seal5 = node.key().seal(b"m");
        assert_ne!(seal5, seal0, "an evolved key seals differently");
        assert!(!chain.at(0).unwrap().check(b"m", &seal5));
        assert!(chain.at(5).unwrap().check(b"m", &seal5));
        assert!(chain.at(4).is_none(), "the chain never walks back");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-seal.key");
        node.save(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let back = SealState::load(&path).unwrap();
        assert_eq!((back.epoch, back.started), (5, node.started));
        assert!(back.key().check(b"m", &seal5));
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&B64.encode(k0.0)), "the file holds the current key, not the first");
        assert!(!format!("{node:?} {k0:?} {chain:?}").contains(&B64.encode(node.key().0)));
    }

    #[test]
    fn debug_output_of_keys_reveals_no_key_material() {
        let data = DataKey::generate();
        let node = NodeSecretKey::generate();
        let central = CentralSigningKey::generate();
        let printed = format!("{data:?} {node:?} {central:?} {:?}", PersonIdKey::generate());
        for secret in [
            B64.encode(data.bytes()),
            hex::encode(data.bytes()),
            B64.encode(*node.to_bytes()),
            hex::encode(central.0.to_bytes()),
        ] {
            assert!(!printed.contains(&secret));
        }
        assert!(!printed.contains(&format!("{:?}", data.bytes())));
    }
}
