//! The regional snapshot file (`.kfsnap`), format v2 (`FORMAT_VERSION`), documented in
//! docs/snapshot-format.md.
//!
//! A signed manifest in clear (no personal data), then a body of chunks, each a batch of person
//! records serialized as JSON lines, compressed with zstd and encrypted with XChaCha20-Poly1305
//! under the snapshot's random data key. The manifest carries the SHA-256 of the body, so a node
//! without the data key can still verify the whole file; only the data key opens the records.
//!
//! This module never touches the disk by path: it reads and writes streams, so it can verify a
//! file while copying it and tests can flip bytes in memory.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::keys::{CentralPublicKey, CentralSigningKey, DataKey};
use crate::limits::{
    SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_CHUNK_RECORDS_MAX, SNAPSHOT_MANIFEST_BYTES_MAX, SNAPSHOT_MUNICIPALITIES_MAX,
    SNAPSHOT_RECORDS_MAX,
};
use crate::model::{MunicipalityCode, PersonRecord};
use crate::search::section::{SearchSection, SectionBuilder};

pub const MAGIC: &[u8; 6] = b"KFSNAP";
pub const FORMAT_VERSION: u16 = 2;
/// magic, format version (u16 LE), signing key id (8 bytes), manifest length (u32 LE).
pub const HEADER_BYTES: usize = 6 + 2 + 8 + 4;
pub const SIGNATURE_BYTES: usize = 64;
const SIGNATURE_DOMAIN: &[u8] = b"kaigo-field/snapshot/v1\0";
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
const ZSTD_LEVEL: i32 = 3;
/// Compressed bytes of the search section per chunk.
const SEARCH_PIECE_BYTES: usize = 4 * 1024 * 1024;

/// The signed, public part of a snapshot. Holds no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u16,
    pub snapshot_id: String,
    pub snapshot_version: u64,
    pub municipalities: Vec<MunicipalityCode>,
    pub created_at: DateTime<Utc>,
    pub record_count: u64,
    pub chunk_count: u32,
    /// Chunks of the search section, after the record chunks.
    pub search_chunk_count: u32,
    pub body_bytes: u64,
    /// "sha256:" and the hex SHA-256 of the body.
    pub content_hash: String,
    pub signing_key_id: String,
    pub data_key_id: String,
    /// True for generated data (drills, tests, demo); a drill can never open real data.
    pub synthetic: bool,
    pub cipher: String,
    pub compression: String,
    pub record_encoding: String,
    pub search_encoding: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("スナップショットを読み書きできません: {0}")]
    Io(#[from] io::Error),
    #[error(
        "このファイルは kaigo-field のスナップショットではありません（先頭の識別子 KFSNAP がありません）。中央が作った .kfsnap ファイルを指定してください"
    )]
    NotASnapshot,
    #[error(
        "スナップショット形式 v{0} はこの kaigo-field では読めません（読めるのは v{FORMAT_VERSION}）。kaigo-field を更新するか、中央に v{FORMAT_VERSION} で作り直してもらってください"
    )]
    UnknownFormatVersion(u16),
    #[error(
        "このスナップショットは知らない鍵（鍵ID {got}）で署名されています。このノードが信頼する中央の鍵は {expected} です。正しい中央のファイルか確かめ、必要ならノードを中央の鍵で設定し直してください"
    )]
    UnknownKey { got: String, expected: String },
    #[error(
        "スナップショットの署名が正しくありません（見出しが改ざんまたは破損しています）。中央から取り直してください"
    )]
    BadSignature,
    #[error("スナップショットが途中で切れています（{what}）。転送が最後まで終わったか確かめ、取り直してください")]
    Truncated { what: String },
    #[error(
        "スナップショットの中身が署名された内容と一致しません（{what}）。改ざんまたは破損です。中央から取り直してください"
    )]
    Altered { what: String },
    #[error("データ鍵でスナップショットを開けません（鍵が違うか、データが壊れています）")]
    Decrypt,
    #[error("スナップショットを作れません: {0}")]
    Build(String),
}

fn truncated(what: impl Into<String>) -> SnapshotError {
    SnapshotError::Truncated { what: what.into() }
}

fn altered(what: impl Into<String>) -> SnapshotError {
    SnapshotError::Altered { what: what.into() }
}

/// What `finish` needs besides the records.
pub struct BuildParams<'a> {
    pub snapshot_version: u64,
    pub created_at: DateTime<Utc>,
    pub synthetic: bool,
    pub signing_key: &'a CentralSigningKey,
    pub data_key: &'a DataKey,
}

/// Builds a snapshot body in memory, chunk by chunk, as records arrive.
pub struct Builder {
    snapshot_id: String,
    cipher: XChaCha20Poly1305,
    pending: Vec<u8>,
    pending_records: usize,
    chunks: Vec<Vec<u8>>,
    record_count: u64,
    municipalities: BTreeSet<MunicipalityCode>,
    section: SectionBuilder,
}

impl Builder {
    pub fn new(data_key: &DataKey) -> Self {
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        Builder {
            snapshot_id: hex::encode(id),
            cipher: XChaCha20Poly1305::new(data_key.bytes().into()),
            pending: Vec::new(),
            pending_records: 0,
            chunks: Vec::new(),
            record_count: 0,
            municipalities: BTreeSet::new(),
            section: SectionBuilder::new(),
        }
    }

    pub fn snapshot_id(&self) -> &str {
        &self.snapshot_id
    }

    pub fn push(&mut self, record: &PersonRecord) -> Result<(), SnapshotError> {
        if self.record_count >= SNAPSHOT_RECORDS_MAX {
            return Err(SnapshotError::Build(format!(
                "1つのスナップショットに入る人数の上限（{SNAPSHOT_RECORDS_MAX}人）を超えました"
            )));
        }
        self.municipalities.insert(record.municipality);
        self.section.push(record);
        serde_json::to_writer(&mut self.pending, record).map_err(|e| SnapshotError::Build(e.to_string()))?;
        self.pending.push(b'\n');
        self.pending_records += 1;
        self.record_count += 1;
        if self.pending_records == SNAPSHOT_CHUNK_RECORDS_MAX {
            self.seal_pending()?;
        }
        Ok(())
    }

    /// Compresses the pending records into one plaintext chunk. Encryption waits for `finish`,
    /// when the chunk count (bound into every chunk) is known.
    fn seal_pending(&mut self) -> Result<(), SnapshotError> {
        let plain = Zeroizing::new(std::mem::take(&mut self.pending));
        let compressed = zstd::bulk::compress(&plain, ZSTD_LEVEL)?;
        if compressed.len() + NONCE_BYTES + TAG_BYTES > SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(SnapshotError::Build(
                "1チャンクが大きすぎます（1件の記録が長すぎないか確認してください）".into(),
            ));
        }
        self.chunks.push(compressed);
        self.pending_records = 0;
        Ok(())
    }

    /// Encrypts the chunks, signs the manifest and writes the whole file to `out`.
    pub fn finish(mut self, params: BuildParams<'_>, out: &mut impl Write) -> Result<Manifest, SnapshotError> {
        if self.pending_records > 0 {
            self.seal_pending()?;
        }
        if self.municipalities.len() > SNAPSHOT_MUNICIPALITIES_MAX {
            return Err(SnapshotError::Build(format!("市区町村が多すぎます（上限 {SNAPSHOT_MUNICIPALITIES_MAX}）")));
        }
        let too_many = || SnapshotError::Build("チャンクが多すぎます".into());
        let chunk_count = u32::try_from(self.chunks.len()).map_err(|_| too_many())?;
        // The search section: postcard, compressed as a whole, cut into pieces after the records.
        let section = postcard::to_stdvec(&std::mem::take(&mut self.section).finish())
            .map_err(|e| SnapshotError::Build(e.to_string()))?;
        let compressed = zstd::bulk::compress(&section, ZSTD_LEVEL)?;
        for piece in compressed.chunks(SEARCH_PIECE_BYTES) {
            self.chunks.push(piece.to_vec());
        }
        let search_chunk_count = u32::try_from(self.chunks.len()).map_err(|_| too_many())? - chunk_count;
        let total = chunk_count + search_chunk_count;
        let id = hex::decode(&self.snapshot_id).expect("hex we made");
        let mut body = Vec::with_capacity(self.chunks.iter().map(|c| c.len() + 44).sum());
        for (index, compressed) in self.chunks.iter().enumerate() {
            let mut nonce = [0u8; NONCE_BYTES];
            OsRng.fill_bytes(&mut nonce);
            let aad = chunk_aad(&id, index as u32, total);
            let sealed = self
                .cipher
                .encrypt(XNonce::from_slice(&nonce), Payload { msg: compressed, aad: &aad })
                .map_err(|_| SnapshotError::Build("暗号化に失敗しました".into()))?;
            body.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
            body.extend_from_slice(&nonce);
            body.extend_from_slice(&sealed);
        }
        let public = params.signing_key.public();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            snapshot_id: self.snapshot_id.clone(),
            snapshot_version: params.snapshot_version,
            municipalities: self.municipalities.iter().copied().collect(),
            created_at: params.created_at,
            record_count: self.record_count,
            chunk_count,
            search_chunk_count,
            body_bytes: body.len() as u64,
            content_hash: format!("sha256:{}", hex::encode(Sha256::digest(&body))),
            signing_key_id: public.key_id(),
            data_key_id: params.data_key.key_id(),
            synthetic: params.synthetic,
            cipher: "XChaCha20-Poly1305".into(),
            compression: "zstd".into(),
            record_encoding: "json-lines".into(),
            search_encoding: "postcard".into(),
        };
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| SnapshotError::Build(e.to_string()))?;
        assert!(manifest_bytes.len() <= SNAPSHOT_MANIFEST_BYTES_MAX, "manifest within its limit");
        let header = header_bytes(&public.key_id(), manifest_bytes.len() as u32);
        let signature = params.signing_key.sign(&signed_message(&header, &manifest_bytes));
        out.write_all(&header)?;
        out.write_all(&manifest_bytes)?;
        out.write_all(&signature)?;
        out.write_all(&body)?;
        out.flush()?;
        Ok(manifest)
    }
}

fn chunk_aad(snapshot_id: &[u8], index: u32, count: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(snapshot_id.len() + 8 + 16);
    aad.extend_from_slice(b"kaigo-field/chunk/v2");
    aad.extend_from_slice(snapshot_id);
    aad.extend_from_slice(&index.to_le_bytes());
    aad.extend_from_slice(&count.to_le_bytes());
    aad
}

fn header_bytes(key_id_hex: &str, manifest_len: u32) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..6].copy_from_slice(MAGIC);
    h[6..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // A key id is 16 hex digits we made ourselves.
    h[8..16].copy_from_slice(&hex::decode(key_id_hex).expect("key id is hex"));
    h[16..20].copy_from_slice(&manifest_len.to_le_bytes());
    h
}

fn signed_message(header: &[u8], manifest: &[u8]) -> Vec<u8> {
    [SIGNATURE_DOMAIN, header, manifest].concat()
}

/// Reads exactly `buf.len()` bytes, or says how many there were.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads and checks the header, manifest and signature; returns the manifest and the bytes read
/// so far (to be copied along with the body).
fn read_head(r: &mut impl Read, key: &CentralPublicKey) -> Result<(Manifest, Vec<u8>), SnapshotError> {
    let mut header = [0u8; HEADER_BYTES];
    let n = read_full(r, &mut header)?;
    if n < MAGIC.len() || &header[..6] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    if n < HEADER_BYTES {
        return Err(truncated("見出しの途中で終わっています"));
    }
    let version = u16::from_le_bytes([header[6], header[7]]);
    if version != FORMAT_VERSION {
        return Err(SnapshotError::UnknownFormatVersion(version));
    }
    let key_id = hex::encode(&header[8..16]);
    if key_id != key.key_id() {
        return Err(SnapshotError::UnknownKey { got: key_id, expected: key.key_id() });
    }
    let manifest_len = u32::from_le_bytes([header[16], header[17], header[18], header[19]]) as usize;
    if manifest_len > SNAPSHOT_MANIFEST_BYTES_MAX {
        // The length is covered by the signature; a wrong one is an altered header.
        return Err(SnapshotError::BadSignature);
    }
    let mut manifest_bytes = vec![0u8; manifest_len];
    let mut signature = [0u8; SIGNATURE_BYTES];
    if read_full(r, &mut manifest_bytes)? < manifest_len || read_full(r, &mut signature)? < SIGNATURE_BYTES {
        return Err(truncated("署名付きの見出しの途中で終わっています"));
    }
    if !key.verify(&signed_message(&header, &manifest_bytes), &signature) {
        return Err(SnapshotError::BadSignature);
    }
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| altered(format!("署名は正しいのに manifest が読めません: {e}")))?;
    if manifest.format_version != FORMAT_VERSION || manifest.signing_key_id != key_id {
        return Err(altered("manifest と見出しの形式・鍵IDが一致しません"));
    }
    let head = [&header[..], &manifest_bytes, &signature].concat();
    Ok((manifest, head))
}

/// Reads the body frame by frame, checking framing, length and hash; every byte read is also
/// written to `copy` and each chunk is handed to `chunk` (index, nonce, sealed bytes).
fn read_body(
    r: &mut impl Read,
    manifest: &Manifest,
    copy: &mut impl Write,
    mut chunk: impl FnMut(u32, &[u8; NONCE_BYTES], &[u8]) -> Result<(), SnapshotError>,
    mut progress: impl FnMut(u64),
) -> Result<(), SnapshotError> {
    let mut hasher = Sha256::new();
    let mut read_total: u64 = 0;
    let mut frame = Vec::new();
    let total = manifest
        .chunk_count
        .checked_add(manifest.search_chunk_count)
        .ok_or_else(|| altered("チャンク数がありえない値です"))?;
    for index in 0..total {
        let mut len = [0u8; 4];
        if read_full(r, &mut len)? < 4 {
            return Err(truncated(format!("{index} / {total} チャンクで終わっています")));
        }
        let sealed_len = u32::from_le_bytes(len) as usize;
        if !(TAG_BYTES..=SNAPSHOT_CHUNK_BYTES_MAX).contains(&sealed_len) {
            return Err(altered(format!("チャンク {index} の長さがありえない値です")));
        }
        frame.resize(NONCE_BYTES + sealed_len, 0);
        if read_full(r, &mut frame)? < frame.len() {
            return Err(truncated(format!("チャンク {index} の途中で終わっています")));
        }
        hasher.update(len);
        hasher.update(&frame);
        copy.write_all(&len)?;
        copy.write_all(&frame)?;
        read_total += 4 + frame.len() as u64;
        if read_total > manifest.body_bytes {
            return Err(altered("本体が manifest の長さより長くなっています"));
        }
        let nonce: &[u8; NONCE_BYTES] = frame[..NONCE_BYTES].try_into().expect("frame holds a nonce");
        chunk(index, nonce, &frame[NONCE_BYTES..])?;
        progress(read_total);
    }
    let mut extra = [0u8; 1];
    if read_full(r, &mut extra)? != 0 {
        return Err(altered("最後のチャンクの後に余分なデータがあります"));
    }
    if read_total != manifest.body_bytes {
        return Err(altered("本体の長さが manifest と違います"));
    }
    let hash = format!("sha256:{}", hex::encode(hasher.finalize()));
    if hash != manifest.content_hash {
        return Err(altered("本体のハッシュが manifest と違います"));
    }
    Ok(())
}

/// Reads and checks only the signed head (header, manifest, signature): enough to refuse a
/// wrong file before a long copy. The body is not checked; `verify` does that.
pub fn read_manifest(mut input: impl Read, key: &CentralPublicKey) -> Result<Manifest, SnapshotError> {
    Ok(read_head(&mut input, key)?.0)
}

/// Verifies a snapshot (signature, framing, length and content hash) without the data key,
/// copying every byte read to `copy` (`io::sink()` to only verify). On error the copy is
/// incomplete and must be thrown away.
pub fn verify(
    mut input: impl Read,
    key: &CentralPublicKey,
    copy: &mut impl Write,
    progress: impl FnMut(u64),
) -> Result<Manifest, SnapshotError> {
    let (manifest, head) = read_head(&mut input, key)?;
    copy.write_all(&head)?;
    let head_len = head.len() as u64;
    let mut progress = progress;
    read_body(&mut input, &manifest, copy, |_, _, _| Ok(()), |body| progress(head_len + body))?;
    Ok(manifest)
}

/// Opens the chunks of one kind: the records (`Part::Records`) or the search section
/// (`Part::Search`), handing each decrypted, decompressed-as-stored plaintext to `each`. Chunks of
/// the other kind are verified (hash, framing) but not decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Records,
    Search,
}

fn open_part(
    mut input: impl Read,
    key: &CentralPublicKey,
    data_key: &DataKey,
    part: Part,
    mut each: impl FnMut(Zeroizing<Vec<u8>>) -> Result<(), SnapshotError>,
) -> Result<(Manifest, RecordMap), SnapshotError> {
    let (manifest, head) = read_head(&mut input, key)?;
    let mut offsets = Vec::with_capacity(manifest.chunk_count as usize);
    let mut offset = head.len() as u64;
    if manifest.data_key_id != data_key.key_id() {
        return Err(SnapshotError::Decrypt);
    }
    let cipher = XChaCha20Poly1305::new(data_key.bytes().into());
    let id = hex::decode(&manifest.snapshot_id).map_err(|_| altered("snapshot_id が16進数ではありません"))?;
    let total = manifest.chunk_count + manifest.search_chunk_count;
    read_body(
        &mut input,
        &manifest,
        &mut io::sink(),
        |index, nonce, sealed| {
            let is_record = index < manifest.chunk_count;
            if is_record {
                offsets.push(offset);
            }
            offset += (4 + NONCE_BYTES + sealed.len()) as u64;
            if is_record != (part == Part::Records) {
                return Ok(());
            }
            let aad = chunk_aad(&id, index, total);
            let plain = cipher
                .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
                .map_err(|_| SnapshotError::Decrypt)?;
            each(Zeroizing::new(plain))
        },
        |_| {},
    )?;
    let map = RecordMap { snapshot_id: id, total, record_count: manifest.record_count, offsets };
    Ok((manifest, map))
}

/// Verifies and decrypts a snapshot's records, handing each to `each` in file order. Records
/// come before the whole file is checked; on error the caller must discard what it received.
pub fn open(
    input: impl Read,
    key: &CentralPublicKey,
    data_key: &DataKey,
    mut each: impl FnMut(PersonRecord),
) -> Result<Manifest, SnapshotError> {
    let mut records: u64 = 0;
    let (manifest, _) = open_part(input, key, data_key, Part::Records, |compressed| {
        for line in record_lines(&compressed)?.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            records += 1;
            each(parse_record(line)?);
        }
        Ok(())
    })?;
    if records != manifest.record_count {
        return Err(altered("記録の件数が manifest と違います"));
    }
    Ok(manifest)
}

/// Decompresses one record chunk into a buffer of exactly its size (the size is in the zstd
/// frame header, which `Builder` always writes). A buffer of the largest allowed size would be
/// allocated and, being plaintext, zeroized on every read: tens of milliseconds per record.
fn record_lines(compressed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SnapshotError> {
    let limit = SNAPSHOT_CHUNK_BYTES_MAX * 8;
    let size = match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(n)) if n <= limit as u64 => n as usize,
        Ok(Some(_)) => return Err(altered("記録のチャンクが展開後の上限を超えます")),
        _ => return Err(altered("記録のチャンクが zstd の形式ではありません")),
    };
    Ok(Zeroizing::new(zstd::bulk::decompress(compressed, size).map_err(|_| SnapshotError::Decrypt)?))
}

fn parse_record(line: &[u8]) -> Result<PersonRecord, SnapshotError> {
    serde_json::from_slice(line).map_err(|e| altered(format!("記録が読めません: {e}")))
}

/// Where each record chunk starts in a snapshot file, noted while the file was verified and its
/// search section opened, so one person's record can be read later without reading the rest.
#[derive(Debug, Clone)]
pub struct RecordMap {
    snapshot_id: Vec<u8>,
    total: u32,
    record_count: u64,
    offsets: Vec<u64>,
}

/// Reads and decrypts record number `record` (its position in the snapshot, as in the search
/// section) from the file the map was made from: one chunk is read, authenticated and
/// decompressed. A chunk altered or moved since fails authentication.
pub fn read_record(
    file: &mut (impl Read + io::Seek),
    map: &RecordMap,
    data_key: &DataKey,
    record: u64,
) -> Result<PersonRecord, SnapshotError> {
    if record >= map.record_count {
        return Err(altered(format!("記録 {record} はありません")));
    }
    let chunk = (record / SNAPSHOT_CHUNK_RECORDS_MAX as u64) as usize;
    let offset = *map.offsets.get(chunk).ok_or_else(|| altered("記録のチャンクがありません"))?;
    file.seek(io::SeekFrom::Start(offset))?;
    let mut len = [0u8; 4];
    if read_full(file, &mut len)? < 4 {
        return Err(truncated("記録のチャンクの途中で終わっています"));
    }
    let sealed_len = u32::from_le_bytes(len) as usize;
    if !(TAG_BYTES..=SNAPSHOT_CHUNK_BYTES_MAX).contains(&sealed_len) {
        return Err(altered("記録のチャンクの長さがありえない値です"));
    }
    let mut frame = vec![0u8; NONCE_BYTES + sealed_len];
    if read_full(file, &mut frame)? < frame.len() {
        return Err(truncated("記録のチャンクの途中で終わっています"));
    }
    let cipher = XChaCha20Poly1305::new(data_key.bytes().into());
    let aad = chunk_aad(&map.snapshot_id, chunk as u32, map.total);
    let (nonce, sealed) = frame.split_at(NONCE_BYTES);
    let compressed = Zeroizing::new(
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| SnapshotError::Decrypt)?,
    );
    let lines = record_lines(&compressed)?;
    let within = (record % SNAPSHOT_CHUNK_RECORDS_MAX as u64) as usize;
    let line = lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .nth(within)
        .ok_or_else(|| altered("チャンクの記録の数が足りません"))?;
    parse_record(line)
}

/// Verifies a snapshot and decrypts only its search section: what a node needs to activate,
/// without decoding every record. The map says where to read single records later.
pub fn open_search(
    input: impl Read,
    key: &CentralPublicKey,
    data_key: &DataKey,
) -> Result<(SearchSection, RecordMap), SnapshotError> {
    let mut compressed = Zeroizing::new(Vec::new());
    let (manifest, map) = open_part(input, key, data_key, Part::Search, |piece| {
        compressed.extend_from_slice(&piece);
        Ok(())
    })?;
    let plain =
        Zeroizing::new(zstd::stream::decode_all(&compressed[..]).map_err(|_| altered("検索部を展開できません"))?);
    let section: SearchSection =
        postcard::from_bytes(&plain).map_err(|e| altered(format!("検索部が読めません: {e}")))?;
    if section.rows.len() as u64 != manifest.record_count {
        return Err(altered("検索部の人数が manifest と違います"));
    }
    Ok((section, map))
}
