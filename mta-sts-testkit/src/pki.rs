//! The world's PKI: a trusted CA and an untrusted one, generated at start with rcgen, and the
//! leaf certificates for each policy host and [`Cert`] kind, made on first use.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData, date_time_ymd,
};
use ring::digest;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::scenario::Cert;
use crate::state::lock;

/// Leaf certificates kept; beyond this the cache is cleared (they are cheap to remake).
const MAX_CACHED_LEAVES: usize = 100_000;

pub(crate) fn rcgen_err(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("certificate generation: {e}"))
}

/// A certificate and its private key issued by the world's CA, for servers an embedder runs
/// itself (e.g. a fake MX with STARTTLS). See [`World::issue_cert`](crate::World::issue_cert).
#[derive(Debug)]
pub struct IssuedCert {
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), DER.
    pub key_der: PrivatePkcs8KeyDer<'static>,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
}

pub(crate) struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    untrusted: CertifiedIssuer<'static, KeyPair>,
    leaf_key: KeyPair,
    provider: Arc<CryptoProvider>,
    cache: Mutex<HashMap<(String, Cert), Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

fn ca(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate()?)
}

fn leaf_params(sans: Vec<String>, cn: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(sans)?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

impl Pki {
    pub(crate) fn new(provider: Arc<CryptoProvider>) -> io::Result<Self> {
        Ok(Self {
            ca: ca("mta-sts-testkit CA").map_err(rcgen_err)?,
            untrusted: ca("mta-sts-testkit untrusted CA").map_err(rcgen_err)?,
            leaf_key: KeyPair::generate().map_err(rcgen_err)?,
            provider,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    pub(crate) fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    pub(crate) fn untrusted_ca_pem(&self) -> String {
        self.untrusted.pem()
    }

    pub(crate) fn untrusted_ca_der(&self) -> CertificateDer<'static> {
        self.untrusted.der().clone()
    }

    /// The certified key a policy `host` presents for `kind`.
    pub(crate) fn certified(&self, host: &str, kind: Cert) -> io::Result<Arc<CertifiedKey>> {
        let key = (host.to_owned(), kind);
        if let Some(ck) = lock(&self.cache).get(&key) {
            return Ok(Arc::clone(ck));
        }
        let der = self.leaf_der(host, kind).map_err(rcgen_err)?;
        let ck = CertifiedKey::from_der(
            vec![der],
            PrivateKeyDer::Pkcs8(self.leaf_key.serialize_der().into()),
            &self.provider,
        )
        .map_err(io::Error::other)?;
        let ck = Arc::new(ck);
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED_LEAVES {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&ck));
        Ok(ck)
    }

    fn leaf_der(&self, host: &str, kind: Cert) -> Result<CertificateDer<'static>, rcgen::Error> {
        let parent = host.split_once('.').map_or(host, |(_, p)| p);
        let sans = match kind {
            Cert::Wildcard => vec![format!("*.{parent}")],
            Cert::PartialWildcard => vec![format!("m*.{parent}")],
            Cert::CommonNameOnly => vec![],
            Cert::WrongName => vec!["mta-sts.wrong-name.invalid".to_owned()],
            _ => vec![host.to_owned()],
        };
        let mut p = leaf_params(sans, host)?;
        match kind {
            Cert::Expired => {
                p.not_before = date_time_ymd(2000, 1, 1);
                p.not_after = date_time_ymd(2001, 1, 1);
            }
            Cert::NotYetValid => {
                p.not_before = date_time_ymd(2090, 1, 1);
                p.not_after = date_time_ymd(2091, 1, 1);
            }
            _ => {}
        }
        let cert = match kind {
            Cert::UntrustedCa => p.signed_by(&self.leaf_key, &self.untrusted)?,
            Cert::SelfSigned => p.self_signed(&self.leaf_key)?,
            _ => p.signed_by(&self.leaf_key, &self.ca)?,
        };
        Ok(cert.der().clone())
    }

    /// The certificate that issued the leaf of `kind` and its SubjectPublicKeyInfo, DER: the
    /// world's CA, the untrusted CA, or (self-signed) `None`.
    fn issuer(&self, kind: Cert) -> Option<(CertificateDer<'static>, Vec<u8>)> {
        let ca = match kind {
            Cert::SelfSigned => return None,
            Cert::UntrustedCa => &self.untrusted,
            _ => &self.ca,
        };
        Some((ca.der().clone(), ca.key().subject_public_key_info()))
    }

    /// The certified key the fake MX presents for `host` and `kind`: the leaf followed by its
    /// issuer's certificate (RFC 7672 §3.1.2: a server relying on DANE-TA(2) includes the TA
    /// certificate in its chain), or the self-signed leaf alone.
    pub(crate) fn mx_certified(&self, host: &str, kind: Cert) -> io::Result<Arc<CertifiedKey>> {
        let leaf = self.certified(host, kind)?;
        let Some((issuer, _)) = self.issuer(kind) else {
            return Ok(leaf);
        };
        let mut chained = CertifiedKey::clone(&leaf);
        chained.cert.push(issuer);
        Ok(Arc::new(chained))
    }

    /// The certificate association data of a TLSA record (RFC 6698 §2.1) for the certificate
    /// `host` presents with `kind`: usages 1 and 3 (PKIX-EE, DANE-EE) select the leaf, usages 0
    /// and 2 (PKIX-TA, DANE-TA) its issuer (the leaf itself when self-signed).
    pub(crate) fn tlsa_data(
        &self,
        host: &str,
        kind: Cert,
        usage: u8,
        selector: u8,
        matching_type: u8,
    ) -> io::Result<Vec<u8>> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        let (cert, spki) = match usage {
            1 | 3 => {
                let ck = self.certified(host, kind)?;
                let leaf = ck.cert.first().cloned().ok_or_else(|| invalid("no leaf"))?;
                (leaf, self.leaf_key.subject_public_key_info())
            }
            0 | 2 => match self.issuer(kind) {
                Some(issuer) => issuer,
                None => {
                    let ck = self.certified(host, kind)?;
                    let leaf = ck.cert.first().cloned().ok_or_else(|| invalid("no leaf"))?;
                    (leaf, self.leaf_key.subject_public_key_info())
                }
            },
            _ => return Err(invalid("TLSA usage must be 0, 1, 2 or 3")),
        };
        let selected: &[u8] = match selector {
            0 => cert.as_ref(),
            1 => &spki,
            _ => return Err(invalid("TLSA selector must be 0 or 1")),
        };
        tlsa_hash(selected, matching_type)
    }

    /// A fresh key and a certificate for `names`, issued by the trusted CA.
    pub(crate) fn issue(&self, names: &[&str]) -> io::Result<IssuedCert> {
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let sans: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let cn = names.first().copied().unwrap_or("mta-sts-testkit leaf");
        let cert = leaf_params(sans, cn)
            .and_then(|p| p.signed_by(&key, &self.ca))
            .map_err(rcgen_err)?;
        Ok(IssuedCert {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The certificate association data for the selected bytes (a certificate or a
/// SubjectPublicKeyInfo, DER) and a TLSA matching type: 0 the bytes themselves, 1 their SHA-256,
/// 2 their SHA-512 (RFC 6698 §2.1.3).
pub(crate) fn tlsa_hash(selected: &[u8], matching_type: u8) -> io::Result<Vec<u8>> {
    Ok(match matching_type {
        0 => selected.to_vec(),
        1 => digest::digest(&digest::SHA256, selected).as_ref().to_vec(),
        2 => digest::digest(&digest::SHA512, selected).as_ref().to_vec(),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLSA matching type must be 0, 1 or 2",
            ));
        }
    })
}
