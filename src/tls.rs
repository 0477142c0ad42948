//! Certificates and the rustls server configuration. One crypto provider: ring.
//!
//! The central holds a CA for node certificates (`central init`); enrolment will issue node
//! certificates from it. Until a node has one, `serve` makes a self-signed certificate on first
//! start and the status page shows its SHA-256 fingerprint so staff can check what they reach.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};

use crate::keys::{KeyError, write_file_atomic, write_secret_file};

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
}

/// The process-wide rustls provider. Every TLS config in the crate is built from it, so only
/// ring is ever linked or used.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The CA's parameters. The same every time, so that an `Issuer` rebuilt from them and the CA key
/// matches the CA certificate (same subject, same key identifier), without parsing it back.
fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kaigo-field central CA");
    dn.push(DnType::OrganizationName, "kaigo-field");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// Writes a new CA certificate and key (0600) for the central.
pub fn generate_ca(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    write_secret_file(key_path, key.serialize_pem().as_bytes())?;
    write_file_atomic(cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// The node's serving identity: certificate chain, key and fingerprint.
pub struct ServerIdentity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate, as colon-separated upper-case hex.
    pub fingerprint: String,
}

/// Loads `tls/cert.pem` and `tls/key.pem`, generating a self-signed pair first if missing.
pub fn ensure_server_identity(dir: &Path, node_id: &str) -> Result<ServerIdentity, TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if !cert_path.exists() || !key_path.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|cause| TlsError::Io { path: dir.display().to_string(), cause })?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(node_names(node_id))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("kaigo-field node {node_id}"));
        params.distinguished_name = dn;
        let cert = params.self_signed(&key)?;
        write_secret_file(&key_path, key.serialize_pem().as_bytes())?;
        write_file_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
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

/// Issues a node's TLS certificate from the central's CA: (certificate PEM, private key PEM).
pub fn issue_node_cert(ca_cert: &Path, ca_key: &Path, node_id: &str) -> Result<(String, String), TlsError> {
    let read = |p: &Path| fs::read_to_string(p).map_err(|cause| TlsError::Io { path: p.display().to_string(), cause });
    let ca_key = KeyPair::from_pem(&read(ca_key)?)?;
    // The CA certificate is only read to check it is there; the issuer is rebuilt from its
    // fixed parameters and key.
    read(ca_cert)?;
    let issuer = rcgen::Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(node_names(node_id))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("kaigo-field node {node_id}"));
    params.distinguished_name = dn;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The names a node's certificate is valid for: loopback for the node's own machine and the
/// mDNS name staff reach it by.
fn node_names(node_id: &str) -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned(), format!("{node_id}.local")]
}
