//! Finding 9.1: the certificates a strict verifier meets. The node certificate the central issues
//! carries a Subject Key Identifier, an Authority Key Identifier equal to the CA's, the key and
//! extended key usages of a TLS server that is also a client of the central, and a validity of
//! years, not centuries; webpki accepts it for `localhost` with the CA as its only root. The same
//! for the self-signed certificate a node makes when it has none.

use std::sync::Arc;

use kaigo_field::central::{self, CentralDir};
use kaigo_field::contract::Bundle;
use kaigo_field::limits::{TLS_CA_CERT_DAYS, TLS_CERT_BACKDATE_SECONDS, TLS_NODE_CERT_DAYS};
use kaigo_field::region::Region;
use kaigo_field::tls;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::*;

const DAY_SECONDS: i64 = 24 * 60 * 60;

fn der_of(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("one PEM certificate")
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
        _ => None,
    })
}

fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|id| id.0.to_vec()),
        _ => None,
    })
}

/// Asserts what every leaf we serve with must have: SKI, serverAuth and clientAuth,
/// digitalSignature, not a CA, and a validity that starts a little before `now` and lasts
/// `TLS_NODE_CERT_DAYS` at most.
fn assert_leaf(cert: &X509Certificate<'_>, now: i64) {
    assert!(subject_key_id(cert).is_some_and(|id| !id.is_empty()), "leaf has a Subject Key Identifier");
    let eku = cert.extended_key_usage().unwrap().expect("leaf has an extended key usage").value;
    assert!(eku.server_auth && eku.client_auth, "serverAuth and clientAuth: {eku:?}");
    let ku = cert.key_usage().unwrap().expect("leaf has a key usage").value;
    assert!(ku.digital_signature() && !ku.key_cert_sign(), "digitalSignature, and no certificate signing");
    assert!(cert.basic_constraints().unwrap().is_none_or(|bc| !bc.value.ca), "a leaf is not a CA");
    let v = cert.validity();
    let (from, to) = (v.not_before.timestamp(), v.not_after.timestamp());
    assert!(from <= now - TLS_CERT_BACKDATE_SECONDS + 60 && from >= now - TLS_CERT_BACKDATE_SECONDS - 60, "not_before");
    assert!(to > now + 365 * DAY_SECONDS, "valid for more than a year");
    assert!(to <= now + TLS_NODE_CERT_DAYS * DAY_SECONDS + 60, "valid for years, not centuries: {}", v.not_after);
}

fn verify_for_localhost(root: &CertificateDer<'static>, leaf: &CertificateDer<'static>) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("the root is a certificate webpki can use as a trust anchor");
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), tls::provider())
        .build()
        .expect("a verifier with one root");
    let name = ServerName::try_from("localhost").expect("a DNS name");
    verifier.verify_server_cert(leaf, &[], &name, &[], UnixTime::now()).map(|_| ())
}

#[test]
fn the_node_certificate_names_its_ca_key_and_usages_and_lasts_years() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CentralDir::new(tmp.path().join("central"));
    let clock = kaigo_field::clock::system();
    central::init(&dir, clock.as_ref()).unwrap();
    let bundle_path = tmp.path().join("n1.bundle");
    central::enroll_node(&dir, "n1", &Region::parse("17").unwrap(), &bundle_path, clock.as_ref()).unwrap();
    let now = clock.now().timestamp();
    let bundle: Bundle = serde_json::from_slice(&std::fs::read(&bundle_path).unwrap()).unwrap();

    let ca_der = der_of(&bundle.ca_cert_pem);
    let leaf_der = der_of(&bundle.tls_cert_pem);
    let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
    let (_, leaf) = parse_x509_certificate(&leaf_der).unwrap();

    let ca_ski = subject_key_id(&ca).expect("the CA has a Subject Key Identifier");
    assert!(ca.basic_constraints().unwrap().expect("CA basic constraints").value.ca);
    let ca_ku = ca.key_usage().unwrap().expect("CA key usage").value;
    assert!(ca_ku.key_cert_sign() && ca_ku.crl_sign());
    let ca_validity = ca.validity();
    assert!(ca_validity.not_before.timestamp() <= now - TLS_CERT_BACKDATE_SECONDS + 60);
    assert!(
        ca_validity.not_after.timestamp() <= now + TLS_CA_CERT_DAYS * DAY_SECONDS + 60,
        "the CA lasts years, not centuries: {}",
        ca_validity.not_after
    );
    assert!(ca_validity.not_after.timestamp() >= leaf.validity().not_after.timestamp(), "the CA outlives the leaf");

    assert_eq!(authority_key_id(&leaf), Some(ca_ski), "the leaf's AKI is the CA's SKI");
    assert_eq!(leaf.issuer(), ca.subject());
    assert_leaf(&leaf, now);
    verify_for_localhost(&ca_der, &leaf_der).expect("webpki accepts the node certificate for localhost");
}

#[test]
fn the_self_signed_fallback_has_a_key_identifier_usages_and_a_validity_of_years() {
    let tmp = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let identity = tls::ensure_server_identity(&tmp.path().join("tls"), "n1", now).unwrap();
    let now = now.timestamp();
    let leaf_der = identity.certs[0].clone();
    let (_, leaf) = parse_x509_certificate(&leaf_der).unwrap();
    assert_leaf(&leaf, now);
    let ski = subject_key_id(&leaf).expect("SKI");
    // Self-signed: if it names an authority key, that is its own.
    assert!(authority_key_id(&leaf).is_none_or(|aki| aki == ski));
    verify_for_localhost(&leaf_der, &leaf_der).expect("webpki accepts the self-signed certificate when pinned as root");
}
