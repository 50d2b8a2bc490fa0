//! `verify_dane`: DANE for SMTP (RFC 7672 §3) on certificate chains generated here with rcgen.
//! Digests are computed with ring and public keys taken from rcgen, not from the code under
//! test.
//!
//! Requirement D12 (REQUIREMENTS.md).

use mta_sts_core::Tlsa;
use mta_sts_net::rustls::pki_types::{CertificateDer, UnixTime};
use mta_sts_net::rustls::{CertificateError, Error as TlsError};
use mta_sts_net::{ChainProblem, DaneVerifyError, MatchedBy, certificate_problem, verify_dane};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData, date_time_ymd,
};
use ring::digest;

const MX: &str = "mx1.example.com";

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

type Ca = CertifiedIssuer<'static, KeyPair>;

fn root(cn: &str) -> Ca {
    CertifiedIssuer::self_signed(ca_params(cn), KeyPair::generate().unwrap()).unwrap()
}

fn intermediate(cn: &str, issuer: &Ca) -> Ca {
    CertifiedIssuer::signed_by(ca_params(cn), KeyPair::generate().unwrap(), issuer).unwrap()
}

/// A leaf for `names`, issued by `issuer` (self-signed when `None`), expired when asked.
struct Leaf {
    der: CertificateDer<'static>,
    spki: Vec<u8>,
}

fn leaf_with(names: &[&str], issuer: Option<&Ca>, expired: bool) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if expired {
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
    }
    let cert = match issuer {
        Some(ca) => p.signed_by(&key, ca).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    Leaf {
        der: cert.der().clone(),
        spki: key.subject_public_key_info(),
    }
}

fn leaf(names: &[&str], issuer: &Ca) -> Leaf {
    leaf_with(names, Some(issuer), false)
}

fn ca_spki(ca: &Ca) -> Vec<u8> {
    ca.key().subject_public_key_info()
}

/// The association data for `selected` under a matching type.
fn data(matching: u8, selected: &[u8]) -> Vec<u8> {
    match matching {
        0 => selected.to_vec(),
        1 => digest::digest(&digest::SHA256, selected).as_ref().to_vec(),
        2 => digest::digest(&digest::SHA512, selected).as_ref().to_vec(),
        _ => unreachable!(),
    }
}

fn record(usage: u8, selector: u8, matching: u8, cert: &[u8], spki: &[u8]) -> Tlsa {
    let selected = if selector == 0 { cert } else { spki };
    Tlsa::new(usage, selector, matching, data(matching, selected))
}

fn now() -> UnixTime {
    UnixTime::now()
}

#[test]
fn dane_ee_matches_the_leaf_for_every_selector_and_matching_type() {
    let ca = root("Root");
    let leaf = leaf(&[MX], &ca);
    for selector in [0, 1] {
        for matching in [0, 1, 2] {
            let r = record(3, selector, matching, &leaf.der, &leaf.spki);
            assert!(r.is_usable(), "{r}");
            let m = verify_dane(&leaf.der, &[], std::slice::from_ref(&r), MX, now())
                .unwrap_or_else(|e| panic!("3 {selector} {matching}: {e}"));
            assert_eq!(m.matched_by(), MatchedBy::EndEntity);
            assert_eq!(m.record(), &r);
            assert!(!m.is_trust_anchor());
            assert!(m.to_string().starts_with("DANE-EE 3 "), "{m}");
        }
    }
}

#[test]
fn dane_ee_ignores_the_name_the_expiry_and_the_issuer() {
    // Self-signed, expired, for another name: DANE-EE still authenticates (RFC 7672 §3.1.1).
    let leaf = leaf_with(&["other.invalid"], None, true);
    for selector in [0, 1] {
        let r = record(3, selector, 1, &leaf.der, &leaf.spki);
        let m = verify_dane(&leaf.der, &[], &[r], MX, now()).unwrap();
        assert_eq!(m.matched_by(), MatchedBy::EndEntity);
    }
}

#[test]
fn dane_ee_ignores_garbage_intermediates() {
    let leaf = leaf_with(&[MX], None, false);
    let junk = CertificateDer::from(vec![0xde, 0xad, 0xbe, 0xef]);
    let r = record(3, 1, 1, &leaf.der, &leaf.spki);
    assert!(verify_dane(&leaf.der, &[junk], &[r], MX, now()).is_ok());
}

#[test]
fn dane_ee_mismatch_is_no_match() {
    let ca = root("Root");
    let leaf = leaf(&[MX], &ca);
    let other = leaf_with(&[MX], None, false);
    let records = [
        record(3, 0, 1, &other.der, &other.spki),
        record(3, 1, 1, &other.der, &other.spki),
        record(3, 1, 2, &other.der, &other.spki),
        record(3, 1, 0, &other.der, &other.spki),
    ];
    let e = verify_dane(&leaf.der, &[], &records, MX, now()).unwrap_err();
    assert_eq!(
        e,
        DaneVerifyError::NoMatch {
            host: MX.into(),
            records: 4
        }
    );
    assert!(e.to_string().contains(MX), "{e}");
    // One bit off in the digest is enough.
    let mut digest = data(1, &leaf.spki);
    digest[31] ^= 1;
    let e = verify_dane(&leaf.der, &[], &[Tlsa::new(3, 1, 1, digest)], MX, now()).unwrap_err();
    assert!(matches!(e, DaneVerifyError::NoMatch { .. }), "{e}");
    // The handshake error carries the typed error.
    match TlsError::from(e) {
        TlsError::InvalidCertificate(CertificateError::Other(o)) => {
            assert!(o.0.downcast_ref::<DaneVerifyError>().is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dane_ta_matches_the_issuing_ca_by_certificate_or_key() {
    let ca = root("Root");
    let leaf = leaf(&[MX], &ca);
    let chain = [ca.der().clone()];
    for selector in [0, 1] {
        for matching in [0, 1, 2] {
            let r = record(2, selector, matching, ca.der(), &ca_spki(&ca));
            let m = verify_dane(&leaf.der, &chain, std::slice::from_ref(&r), MX, now())
                .unwrap_or_else(|e| panic!("2 {selector} {matching}: {e}"));
            assert_eq!(
                m.matched_by(),
                MatchedBy::Chain(1),
                "2 {selector} {matching}"
            );
            assert!(m.is_trust_anchor());
        }
    }
}

#[test]
fn dane_ta_on_a_root_or_an_intermediate_of_a_longer_chain() {
    let root = root("Root");
    let inter = intermediate("Intermediate", &root);
    let leaf = leaf(&[MX], &inter);
    let chain = [inter.der().clone(), root.der().clone()];
    let on_root = record(2, 0, 1, root.der(), &ca_spki(&root));
    let m = verify_dane(&leaf.der, &chain, &[on_root], MX, now()).unwrap();
    assert_eq!(m.matched_by(), MatchedBy::Chain(2));
    let on_inter = record(2, 1, 1, inter.der(), &ca_spki(&inter));
    let m = verify_dane(&leaf.der, &chain, &[on_inter], MX, now()).unwrap();
    assert_eq!(m.matched_by(), MatchedBy::Chain(1));
}

#[test]
fn dane_ta_full_certificate_or_key_in_the_record_needs_no_presented_anchor() {
    // 2 0 0 and 2 1 0 carry the anchor whole (RFC 7672 §3.1.2): the server may omit it.
    let root = root("Root");
    let inter = intermediate("Intermediate", &root);
    let leaf = leaf(&[MX], &inter);
    let chain = [inter.der().clone()];
    for r in [
        record(2, 0, 0, root.der(), &ca_spki(&root)),
        record(2, 1, 0, root.der(), &ca_spki(&root)),
    ] {
        let m = verify_dane(&leaf.der, &chain, std::slice::from_ref(&r), MX, now())
            .unwrap_or_else(|e| panic!("{r}: {e}"));
        assert_eq!(m.matched_by(), MatchedBy::RecordData, "{r}");
    }
    // Directly under the key-only anchor, with nothing but the leaf presented.
    let leaf = self::leaf(&[MX], &root);
    let r = record(2, 1, 0, root.der(), &ca_spki(&root));
    assert!(verify_dane(&leaf.der, &[], &[r], MX, now()).is_ok());
}

#[test]
fn dane_ta_digest_of_an_anchor_not_presented_is_no_match() {
    let ca = root("Root");
    let leaf = leaf(&[MX], &ca);
    let r = record(2, 0, 1, ca.der(), &ca_spki(&ca));
    let e = verify_dane(&leaf.der, &[], &[r], MX, now()).unwrap_err();
    assert!(matches!(e, DaneVerifyError::NoMatch { .. }), "{e}");
}

#[test]
fn dane_ta_leaf_for_another_name_is_a_name_mismatch() {
    let ca = root("Root");
    let leaf = leaf(&["mx2.example.com"], &ca);
    let chain = [ca.der().clone()];
    let r = record(2, 1, 1, ca.der(), &ca_spki(&ca));
    let e = verify_dane(&leaf.der, &chain, std::slice::from_ref(&r), MX, now()).unwrap_err();
    assert_eq!(
        e,
        DaneVerifyError::NameMismatch {
            host: MX.into(),
            record: r
        }
    );
    assert!(
        e.to_string().contains("not valid for mx1.example.com"),
        "{e}"
    );
    let TlsError::InvalidCertificate(c) = TlsError::from(e) else {
        panic!()
    };
    assert_eq!(
        certificate_problem(&c),
        mta_sts_core::io::CertificateProblem::NameMismatch
    );
    // The same chain under the right name, and a wildcard, pass.
    let wild = self::leaf(&["*.example.com"], &ca);
    let r = record(2, 1, 1, ca.der(), &ca_spki(&ca));
    assert!(verify_dane(&wild.der, &chain, std::slice::from_ref(&r), MX, now()).is_ok());
    assert!(verify_dane(&leaf.der, &chain, &[r], "MX2.Example.COM.", now()).is_ok());
}

#[test]
fn dane_ta_chain_that_does_not_lead_to_the_anchor_is_refused() {
    // The server presents CA "A" (matching the record) but its leaf was issued by CA "B".
    let a = root("A");
    let b = root("B");
    let leaf = leaf(&[MX], &b);
    let chain = [a.der().clone()];
    let r = record(2, 0, 1, a.der(), &ca_spki(&a));
    let e = verify_dane(&leaf.der, &chain, std::slice::from_ref(&r), MX, now()).unwrap_err();
    assert_eq!(
        e,
        DaneVerifyError::Chain {
            host: MX.into(),
            record: r,
            problem: ChainProblem::DoesNotLeadToAnchor
        }
    );
    // A key-only anchor that is not the issuer's key: the signature does not verify.
    let r = record(2, 1, 0, a.der(), &ca_spki(&a));
    let e = verify_dane(&leaf.der, &[], &[r], MX, now()).unwrap_err();
    assert!(
        matches!(
            e,
            DaneVerifyError::Chain {
                problem: ChainProblem::DoesNotLeadToAnchor,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn dane_ta_checks_the_leaf_validity_period() {
    let ca = root("Root");
    let leaf = leaf_with(&[MX], Some(&ca), true);
    let r = record(2, 0, 1, ca.der(), &ca_spki(&ca));
    let e = verify_dane(&leaf.der, &[ca.der().clone()], &[r], MX, now()).unwrap_err();
    assert!(
        matches!(
            e,
            DaneVerifyError::Chain {
                problem: ChainProblem::Expired,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        TlsError::from(e),
        TlsError::InvalidCertificate(CertificateError::Expired)
    );
}

#[test]
fn dane_records_that_are_not_usable_are_ignored() {
    let ca = root("Root");
    let leaf = leaf(&[MX], &ca);
    let sha = data(1, &leaf.spki);
    let unusable = [
        Tlsa::new(0, 1, 1, data(1, &ca_spki(&ca))), // PKIX-TA
        Tlsa::new(1, 1, 1, sha.clone()),            // PKIX-EE
        Tlsa::new(3, 2, 1, sha.clone()),            // selector 2
        Tlsa::new(3, 1, 3, sha.clone()),            // matching type 3
        Tlsa::new(3, 1, 2, sha.clone()),            // SHA2-512 with 32 bytes
        Tlsa::new(3, 1, 0, vec![1, 2, 3]),          // exact data that is not DER
    ];
    let e = verify_dane(&leaf.der, &[ca.der().clone()], &unusable, MX, now()).unwrap_err();
    assert_eq!(e, DaneVerifyError::NoUsableRecord { host: MX.into() });
    let e = verify_dane(&leaf.der, &[], &[], MX, now()).unwrap_err();
    assert_eq!(e, DaneVerifyError::NoUsableRecord { host: MX.into() });
    // Beside a usable matching record, they do not get in the way.
    let mut records = unusable.to_vec();
    records.push(Tlsa::new(3, 1, 1, sha));
    assert!(verify_dane(&leaf.der, &[], &records, MX, now()).is_ok());
}

#[test]
fn dane_garbage_leaf_is_a_typed_error() {
    let r = Tlsa::new(3, 1, 1, vec![0x11; 32]);
    for der in [vec![], vec![0x30, 0x00], vec![0xff; 100]] {
        let leaf = CertificateDer::from(der);
        let e = verify_dane(&leaf, &[], std::slice::from_ref(&r), MX, now()).unwrap_err();
        assert!(
            matches!(e, DaneVerifyError::BadCertificate { position: 0, .. }),
            "{e}"
        );
        assert!(e.to_string().contains(MX), "{e}");
        assert_eq!(
            TlsError::from(e),
            TlsError::InvalidCertificate(CertificateError::BadEncoding)
        );
    }
}

#[test]
fn dane_ta_with_an_address_for_host_is_refused() {
    let ca = root("Root");
    let leaf = leaf(&[MX], &ca);
    let r = record(2, 0, 1, ca.der(), &ca_spki(&ca));
    let e = verify_dane(&leaf.der, &[ca.der().clone()], &[r], "192.0.2.1", now()).unwrap_err();
    assert!(matches!(e, DaneVerifyError::InvalidHost { .. }), "{e}");
}

#[test]
fn dane_any_matching_record_wins_and_name_mismatch_is_reported_over_no_match() {
    let ca = root("Root");
    let other = root("Other");
    let leaf = leaf(&["mx2.example.com"], &ca);
    let chain = [ca.der().clone()];
    let records = [
        record(2, 0, 1, other.der(), &ca_spki(&other)),
        record(2, 0, 1, ca.der(), &ca_spki(&ca)),
    ];
    let e = verify_dane(&leaf.der, &chain, &records, MX, now()).unwrap_err();
    assert!(matches!(e, DaneVerifyError::NameMismatch { .. }), "{e}");
    // Add the leaf's own DANE-EE record: it matches, names do not matter.
    let mut with_ee = records.to_vec();
    with_ee.push(record(3, 1, 1, &leaf.der, &leaf.spki));
    let m = verify_dane(&leaf.der, &chain, &with_ee, MX, now()).unwrap();
    assert_eq!(m.matched_by(), MatchedBy::EndEntity);
}
