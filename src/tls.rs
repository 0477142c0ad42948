//! Certificates and the rustls server configuration. One crypto provider: ring.
//!
//! The central holds a CA for node certificates (`central init`); enrolment issues each node a
//! certificate from it. A node that has none makes a self-signed certificate on first start and
//! the status page shows its SHA-256 fingerprint so staff can check what they reach.
//!
//! Every certificate carries what strict verifiers (webpki, OpenSSL's strict mode as current
//! Python uses it) look for: key identifiers (a leaf's Authority Key Identifier is its issuer's
//! Subject Key Identifier), key usages, the extended key usages of a TLS server that is also a
//! client of the central, and a validity of years that starts a little in the past.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::keys::{KeyError, write_secret_file};
use crate::limits::{TLS_CA_CERT_DAYS, TLS_CERT_BACKDATE_SECONDS, TLS_NODE_CERT_DAYS};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("証明書を作れません: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("証明書ファイル {path} が読めません: {why}。ファイルを消すと次の起動で作り直します")]
    Read { path: String, why: String },
    #[error("TLSの設定に失敗しました: {0}")]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("時刻 {0} では証明書の有効期間を決められません。この機械の時計を合わせてからやり直してください")]
    Clock(DateTime<Utc>),
    #[error(
        "中央のCA証明書（ca.pem）の有効期限 {0} が過ぎています。CAを作り直し（central init）、ノードを登録し直してください"
    )]
    CaExpired(String),
}

/// The process-wide rustls provider. Every TLS config in the crate is built from it, so only
/// ring is ever linked or used.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `now` as rcgen's time type; only a clock set to an absurd year (beyond 9999) fails.
fn offset_time(at: DateTime<Utc>) -> Result<OffsetDateTime, TlsError> {
    OffsetDateTime::from_unix_timestamp(at.timestamp()).map_err(|_| TlsError::Clock(at))
}

/// Sets a validity of `days` from `now`, starting `TLS_CERT_BACKDATE_SECONDS` before it so that a
/// verifier whose clock is somewhat behind still accepts the certificate.
fn set_validity(params: &mut CertificateParams, now: DateTime<Utc>, days: i64) -> Result<(), TlsError> {
    params.not_before = offset_time(now - Duration::seconds(TLS_CERT_BACKDATE_SECONDS))?;
    params.not_after = offset_time(now + Duration::days(days))?;
    Ok(())
}

/// The CA's parameters at `now`.
fn ca_params(now: DateTime<Utc>) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kaigo-field central CA");
    dn.push(DnType::OrganizationName, "kaigo-field");
    params.distinguished_name = dn;
    // A CA certificate always gets a Subject Key Identifier from rcgen (SHA-256 of the key).
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, now, TLS_CA_CERT_DAYS)?;
    Ok(params)
}

/// A node's serving certificate at `now`: a TLS server for staff's phones and a TLS client of the
/// central (mutual TLS), valid for `TLS_NODE_CERT_DAYS`.
fn node_params(node_id: &str, now: DateTime<Utc>) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(node_names(node_id))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("kaigo-field node {node_id}"));
    params.distinguished_name = dn;
    // ExplicitNoCa, not NoCa: only then does rcgen write the leaf's Subject Key Identifier (with
    // basicConstraints cA=false).
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    // The issuer's Subject Key Identifier, which strict verifiers use to find the issuer.
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, TLS_NODE_CERT_DAYS)?;
    Ok(params)
}

/// Writes a new CA certificate and key for the central, both 0600 (the certificate is public,
/// but nothing in the central's directory is readable by others).
pub fn generate_ca(cert_path: &Path, key_path: &Path, now: DateTime<Utc>) -> Result<(), TlsError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(now)?.self_signed(&key)?;
    write_secret_file(key_path, key.serialize_pem().as_bytes())?;
    write_secret_file(cert_path, cert.pem().as_bytes())?;
    Ok(())
}

/// The node's serving identity: certificate chain, key and fingerprint.
pub struct ServerIdentity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate, as colon-separated upper-case hex.
    pub fingerprint: String,
}

/// Loads `tls/cert.pem` and `tls/key.pem`, generating a self-signed pair (valid from `now`, both
/// 0600) first if missing.
pub fn ensure_server_identity(dir: &Path, node_id: &str, now: DateTime<Utc>) -> Result<ServerIdentity, TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if !cert_path.exists() || !key_path.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|cause| TlsError::Io { path: dir.display().to_string(), cause })?;
        let key = KeyPair::generate()?;
        // Self-signed: its Authority Key Identifier is its own Subject Key Identifier.
        let cert = node_params(node_id, now)?.self_signed(&key)?;
        write_secret_file(&key_path, key.serialize_pem().as_bytes())?;
        write_secret_file(&cert_path, cert.pem().as_bytes())?;
    }
    let read_err = |path: &Path| {
        let path = path.display().to_string();
        move |e: rustls::pki_types::pem::Error| TlsError::Read { path, why: e.to_string() }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(read_err(&cert_path))?
        .collect::<Result<_, _>>()
        .map_err(read_err(&cert_path))?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(read_err(&key_path))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::Read {
            path: cert_path.display().to_string(), why: "証明書がありません".into()
        })?;
    Ok(ServerIdentity { fingerprint: fingerprint(leaf), certs, key })
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

pub fn server_config(identity: ServerIdentity) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.certs, identity.key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Issues a node's TLS certificate from the central's CA at `now`: (certificate PEM, private key
/// PEM). The certificate never outlives the CA.
pub fn issue_node_cert(
    ca_cert: &Path,
    ca_key: &Path,
    node_id: &str,
    now: DateTime<Utc>,
) -> Result<(String, String), TlsError> {
    let read = |p: &Path| fs::read_to_string(p).map_err(|cause| TlsError::Io { path: p.display().to_string(), cause });
    let ca_pem = read(ca_cert)?;
    // The issuer is read from the CA certificate itself (its subject and Subject Key
    // Identifier), so the node certificate's issuer and Authority Key Identifier match it
    // byte for byte, whichever version of this program made the CA.
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, KeyPair::from_pem(&read(ca_key)?)?)?;
    let ca_not_after =
        ca_not_after(&ca_pem).map_err(|why| TlsError::Read { path: ca_cert.display().to_string(), why })?;
    let mut params = node_params(node_id, now)?;
    if ca_not_after <= offset_time(now)? {
        return Err(TlsError::CaExpired(ca_not_after.date().to_string()));
    }
    params.not_after = params.not_after.min(ca_not_after);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The end of a PEM certificate's validity.
fn ca_not_after(pem: &str) -> Result<OffsetDateTime, String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
    Ok(cert.validity().not_after.to_datetime())
}

/// The names a node's certificate is valid for: loopback for the node's own machine and the
/// mDNS name staff reach it by.
fn node_names(node_id: &str) -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned(), format!("{node_id}.local")]
}
