//! `dane_starttls_config` end to end: STARTTLS to the testkit's fake MX, then the TLS handshake
//! with the DANE configuration, for TLSA records made from what the MX presents.
//!
//! The fake MX sends its leaf certificate and then the world's CA (RFC 7672 §3.1.2: a server
//! with DANE-TA records must send the anchor), so a DANE-TA(2) record for the world's CA works in
//! every form: the anchor whole (`2 0 0`, `2 1 0`) or a digest of it (`2 0 1`, `2 1 1`).
//!
//! Requirement D12 (REQUIREMENTS.md).

use std::io::{BufReader, Write};
use std::sync::{Arc, Mutex};

use mta_sts_core::Tlsa;
use mta_sts_net::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use mta_sts_net::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use mta_sts_net::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use mta_sts_net::{DaneVerifyError, dane_starttls_config};
use mta_sts_testkit::{Cert, Domain, World, probe};
use ring::digest;

const MX: &str = "mx1.example.com";
const EXPIRED_MX: &str = "mx-expired.example.com";
const WRONG_MX: &str = "mx-wrong.example.com";

fn world() -> World {
    World::builder()
        .domain("example.com", Domain::enforce([MX, EXPIRED_MX, WRONG_MX]))
        .mx_cert(EXPIRED_MX, Cert::Expired)
        .mx_cert(WRONG_MX, Cert::WrongName)
        .build()
        .unwrap()
}

/// Greeting, EHLO, STARTTLS, then the TLS handshake with `config` and SNI `host`; after the
/// handshake, EHLO again under TLS.
fn starttls(w: &World, config: Arc<ClientConfig>, host: &str) -> Result<(), rustls::Error> {
    let tls = probe::smtp_starttls(w, config, host)?;
    let mut tls = BufReader::new(tls);
    tls.get_mut().write_all(b"EHLO client.example\r\n").unwrap();
    assert!(probe::read_smtp_reply(&mut tls)[0].starts_with("250"));
    Ok(())
}

/// A verifier that records the presented leaf and refuses it: to learn what the MX presents.
#[derive(Debug, Default)]
struct Capture(Mutex<Option<CertificateDer<'static>>>);

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.clone().into_owned());
        Err(rustls::Error::General("captured".into()))
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        unreachable!()
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        unreachable!()
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        mta_sts_net::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The leaf certificate the MX presents for `host`.
fn presented_leaf(w: &World, host: &str) -> CertificateDer<'static> {
    let capture = Arc::new(Capture::default());
    let config = ClientConfig::builder_with_provider(mta_sts_net::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    assert!(starttls(w, Arc::new(config), host).is_err());
    capture.0.lock().unwrap().clone().expect("a certificate")
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

/// The SubjectPublicKeyInfo DER of a certificate (rustls-webpki's parse, as the verifier's).
fn spki(cert: &CertificateDer<'_>) -> Vec<u8> {
    let anchor = webpki::anchor_from_trusted_cert(cert).unwrap();
    webpki::spki_for_anchor(&anchor).as_ref().to_vec()
}

fn handshake(w: &World, records: &[Tlsa], host: &str) -> Result<(), rustls::Error> {
    starttls(w, dane_starttls_config(records, host).unwrap(), host)
}

fn assert_dane_error(result: Result<(), rustls::Error>, check: impl Fn(&DaneVerifyError) -> bool) {
    match result {
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(o))) => {
            let e = o.0.downcast_ref::<DaneVerifyError>().expect("a DANE error");
            assert!(check(e), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dane_ee_hash_of_the_presented_certificate_lets_the_handshake_succeed() {
    let w = world();
    let leaf = presented_leaf(&w, MX);
    for record in [
        Tlsa::new(3, 1, 1, sha256(&spki(&leaf))),
        Tlsa::new(3, 0, 1, sha256(&leaf)),
    ] {
        handshake(&w, std::slice::from_ref(&record), MX)
            .unwrap_or_else(|e| panic!("{record}: {e}"));
    }
}

#[test]
fn dane_ee_ignores_an_expired_certificate_end_to_end() {
    let w = world();
    let leaf = presented_leaf(&w, EXPIRED_MX);
    let record = Tlsa::new(3, 1, 1, sha256(&spki(&leaf)));
    handshake(&w, &[record], EXPIRED_MX).unwrap();
}

#[test]
fn dane_ee_wrong_hash_fails_the_handshake_with_a_certificate_error() {
    let w = world();
    let leaf = presented_leaf(&w, MX);
    let mut hash = sha256(&spki(&leaf));
    hash[0] ^= 0xff;
    let result = handshake(&w, &[Tlsa::new(3, 1, 1, hash)], MX);
    assert_dane_error(result, |e| matches!(e, DaneVerifyError::NoMatch { .. }));
}

#[test]
fn dane_ta_for_the_worlds_ca_succeeds_for_the_right_host_name() {
    let w = world();
    let ca = w.ca_der();
    for record in [
        Tlsa::new(2, 0, 0, ca.to_vec()),
        Tlsa::new(2, 1, 0, spki(&ca)),
    ] {
        handshake(&w, std::slice::from_ref(&record), MX)
            .unwrap_or_else(|e| panic!("{}: {e}", record.usage()));
    }
}

#[test]
fn dane_ta_for_the_worlds_ca_fails_for_a_certificate_of_another_name() {
    let w = world();
    let ca = w.ca_der();
    let result = handshake(&w, &[Tlsa::new(2, 1, 0, spki(&ca))], WRONG_MX);
    assert_eq!(
        result,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName
        ))
    );
}

#[test]
fn dane_ta_for_the_worlds_ca_fails_for_an_expired_leaf() {
    let w = world();
    let ca = w.ca_der();
    let result = handshake(&w, &[Tlsa::new(2, 0, 0, ca.to_vec())], EXPIRED_MX);
    assert_eq!(
        result,
        Err(rustls::Error::InvalidCertificate(CertificateError::Expired))
    );
}

/// The testkit's MX sends its issuer after the leaf (RFC 7672 §3.1.2: a DANE-TA server must), so
/// a digest of that CA anchors the chain. (A digest of a CA the server does not send cannot match:
/// `dane_verifier.rs` checks that on its own chains.)
#[test]
fn dane_ta_digest_of_the_ca_the_mx_sends_lets_the_handshake_succeed() {
    let w = world();
    let ca = w.ca_der();
    for record in [
        Tlsa::new(2, 0, 1, sha256(&ca)),
        Tlsa::new(2, 1, 1, sha256(&spki(&ca))),
    ] {
        handshake(&w, std::slice::from_ref(&record), MX)
            .unwrap_or_else(|e| panic!("{record}: {e}"));
    }
}

#[test]
fn dane_ta_for_another_ca_fails() {
    let w = world();
    let other = w.untrusted_ca_der();
    let result = handshake(&w, &[Tlsa::new(2, 1, 0, spki(&other))], MX);
    assert_dane_error(result, |e| matches!(e, DaneVerifyError::Chain { .. }));
}
